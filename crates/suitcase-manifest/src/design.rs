//! Design notes: the threat model, the defaults and why. Documentation only.
//!
//! # What an attacker controls
//!
//! Everything that reaches the device before authentication: the envelope bytes, severed
//! members, integrated payloads and fetched payloads. The processor therefore
//!
//! * decodes the outer envelope with a strict reader (no indefinite lengths, no duplicate map
//!   keys, no trailing bytes, lengths checked against the input, bounded nesting) and parses
//!   **nothing inside the manifest** until its digest and a trusted signature have been checked;
//! * checks every severed member against the digest inside the signed manifest before use;
//! * treats fetched payloads as untrusted until `condition-image-match` succeeds; digests are
//!   compared in constant time.
//!
//! # Attacks considered
//!
//! | attack | defence | where |
//! |---|---|---|
//! | forged or modified manifest | SUIT_Digest over the bstr-wrapped manifest, COSE signature over the digest | `Envelope::verify` |
//! | replayed old manifest (rollback) | sequence number strictly greater than the installed one | `Processor::new` |
//! | auth wrapper moved to another manifest | digest mismatch | `Envelope::verify` |
//! | swapped severed member | severed-member digest | `Envelope::verify` |
//! | wrong device (mix-and-match) | vendor/class/device conditions | `Processor` |
//! | algorithm substitution | `alg` must be in the protected header | `cose` |
//! | unknown critical extension | unknown commands, parameters, members and COSE `crit` labels are refused | `command`, `params`, `manifest`, `cose` |
//! | resource exhaustion | bounded map sizes, nesting, component counts; declared sizes checked against capacity before fetching | `cbor`, `validate`, `Processor` |
//! | stack exhaustion by nesting | try-each / run-sequence nesting limited to [`crate::MAX_NESTING`] while parsing | `command` |
//! | timing side channel on check-content | constant-time comparison | `Processor` |
//!
//! # Defaults
//!
//! * One trusted signature suffices ([`crate::TrustPolicy::default`]); thresholds are opt-in.
//! * An equal sequence number is refused for updates; a bootloader that re-validates the
//!   installed manifest sets [`crate::ProcessorPolicy::allow_same_sequence`].
//! * SHA-256 or stronger digests only; SHA-1 and truncated SHA-256 are refused.
//! * A manifest or envelope member, command or parameter this implementation does not know is
//!   refused rather than skipped: skipping would execute something other than what was signed.
//!
//! # Deviations from the drafts
//!
//! * Off-spec: `try-each` with one branch plus a trailing `nil` is accepted (the CDDL asks for
//!   two branches); it is the only way to say "try this, never mind if it fails".
//! * Off-spec: a `crit` header that names a text label is refused, since no text label is
//!   defined for SUIT.

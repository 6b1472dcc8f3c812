//! A root of trust separate from release signing, for devices that outlive their keys.
//!
//! The device holds a [`TrustState`]: **root keys** with a threshold (k-of-n), the **release
//! signers** (per component prefix and action), the release thresholds, and **revoked key
//! ids**. Only a **trust update** changes it: a SUIT envelope whose manifest names the single
//! component [`TRUST_COMPONENT`], carries the new trust document as the integrated payload
//! [`TRUST_PAYLOAD`] bound by `suit-parameter-image-digest`/`image-size` in the shared
//! sequence, and is signed by at least `root_threshold` distinct root keys of the state in
//! force. This is the separation of TUF's root role from its targets role (TUF specification
//! §2.1.1 "root role", §5.3 "update the root role"), applied to SUIT: RFC 8240 §3 (keys must be
//! replaceable over a device's life) and §5 (ownership transfer).
//!
//! ```text
//!  TrustState(n) ──apply_update(envelope)──▶ TrustState(n+k)      (roots k-of-n, anti-rollback)
//!  TrustState    ──verify_release(envelope)─▶ VerifiedManifest    (release signers, revocation)
//! ```
//!
//! The crate is `#![no_std]`, performs no I/O, never allocates and never panics on input: an
//! agent, the bootloader and the host tools use the same code. Every count is bounded
//! ([`MAX_ROOTS`], [`MAX_SIGNERS`], [`MAX_RULES`], [`MAX_REVOKED`]) and the state serialises to
//! a CBOR record of at most [`RECORD_SIZE`] bytes, padded with zeros to exactly that size for
//! a bootloader's protected state ([`TrustState::encode_record`]).
//!
//! Keys are P-256 (ESP256/ES256, SEC1 uncompressed, 65 bytes) or Ed25519 (32 bytes); a key id
//! is the first 8 bytes of SHA-256 over those bytes, the kid `suitcase key generate` derives
//! and `suitcase release` puts in every COSE block.

#![no_std]
#![deny(clippy::indexing_slicing)]

mod document;
pub mod freshness;
mod state;
mod update;

pub use freshness::{Freshness, FreshnessError};

pub use update::names_trust_store;

pub use state::{
    Key, KeyId, KeyKind, Prefix, ReleaseSigner, ThresholdRule, TrustError, TrustState,
};

/// The most root keys a state holds.
pub const MAX_ROOTS: usize = 4;
/// The most release signers a state holds.
pub const MAX_SIGNERS: usize = 8;
/// The most per-component threshold rules a state holds.
pub const MAX_RULES: usize = 4;
/// The most revoked key ids a state remembers.
pub const MAX_REVOKED: usize = 16;
/// The most freshness signers a state holds: two, so that a server's freshness key can be
/// replaced without a gap (add the new, move the servers to it, remove the old).
pub const MAX_FRESHNESS_SIGNERS: usize = 2;
/// The longest public key (P-256 SEC1 uncompressed).
pub const MAX_KEY_LEN: usize = 65;
/// The longest component prefix, as an encoded SUIT_Component_Identifier.
pub const MAX_PREFIX_LEN: usize = 32;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 8;
/// The size of the fixed trust-state record ([`TrustState::encode_record`]): the largest
/// state encodes to [`MAX_DOCUMENT_LEN`] bytes; the rest is zero padding.
pub const RECORD_SIZE: usize = 1536;
/// The largest encoded trust document (all lists full, longest keys and prefixes): map header
/// (1), sequence (1+9), root threshold (1+2), roots (1+2 + 4 × key 70), release threshold
/// (1+2), signers (1+2 + 8 × (1 + key 70 + actions 1 + prefix 2+32)), rules (1+2 + 4 × (1 +
/// prefix 2+32 + threshold 2)), revoked (1+2 + 16 × 9). A key is `[kind, bstr]`: 1+1+2+65=69,
/// rounded up to 70; freshness signers (1+1 + 2 × Ed25519 key 36).
pub const MAX_DOCUMENT_LEN: usize = 1
    + (1 + 9)
    + (1 + 2)
    + (1 + 2 + MAX_ROOTS * 70)
    + (1 + 2)
    + (1 + 2 + MAX_SIGNERS * (1 + 70 + 1 + 2 + MAX_PREFIX_LEN))
    + (1 + 2 + MAX_RULES * (1 + 2 + MAX_PREFIX_LEN + 2))
    + (1 + 2 + MAX_REVOKED * (1 + KEY_ID_LEN))
    + (1 + 1 + MAX_FRESHNESS_SIGNERS * 36);
const _: () = assert!(MAX_DOCUMENT_LEN <= RECORD_SIZE);

/// The component a trust update names (`["suitcase-trust"]`): the device's trust store.
pub const TRUST_COMPONENT: &[u8] = b"suitcase-trust";
/// The envelope key of the integrated trust document (manifest §7.5: integrated payloads are
/// envelope members keyed by a text string the manifest's `uri` parameter names).
pub const TRUST_PAYLOAD: &str = "#suitcase-trust";

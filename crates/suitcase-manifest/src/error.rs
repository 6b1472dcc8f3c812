//! The crate's one error type, and the stable reason codes it maps to.

use core::fmt;

/// Everything that can make this crate refuse an envelope or stop processing it.
///
/// Errors caused by hostile input never carry secret material. Cryptographic failures are
/// deliberately opaque ([`AuthError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not the CBOR structure the SUIT specification requires.
    Malformed {
        /// Byte offset in the buffer being decoded (the envelope, or the bstr-wrapped member
        /// being parsed).
        at: usize,
        /// What was expected or what is wrong.
        what: &'static str,
    },
    /// try-each / run-sequence nested deeper than [`crate::MAX_NESTING`].
    NestingLimit {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// `suit-manifest-version` is not 1 (manifest §8.4.2).
    UnsupportedVersion {
        /// The version found in the manifest.
        version: u64,
    },
    /// Something the processor must understand but does not: a command, a parameter, a
    /// manifest or envelope member, a COSE `crit` header label or a component.
    UnsupportedCritical {
        /// Which registry the identifier comes from.
        what: Unsupported,
        /// The identifier.
        id: i64,
    },
    /// A digest, signature, MAC or encryption algorithm this build does not implement.
    UnsupportedAlgorithm {
        /// The COSE algorithm identifier.
        alg: i64,
    },
    /// The manifest is not authentic.
    Unauthenticated(AuthError),
    /// A severable member in the envelope does not match the digest in the signed manifest
    /// (manifest §8.4.12).
    SeveredMemberMismatch {
        /// The envelope key of the member.
        key: u64,
    },
    /// A section is needed but was severed and is not in the envelope.
    SectionMissing {
        /// The manifest key of the section.
        key: u64,
    },
    /// The sequence number is not greater than the installed one (manifest §8.4.3).
    SequenceRollback {
        /// The sequence number of the installed manifest.
        installed: u64,
        /// The sequence number of the offered manifest.
        offered: u64,
    },
    /// A condition failed outside a try-each/run-sequence that would absorb it.
    ConditionFailed {
        /// The condition.
        condition: crate::command::Condition,
        /// The component index it was evaluated for.
        component: usize,
    },
    /// A command needed a parameter that the manifest never set (manifest §6.4: "If a
    /// Recipient attempts to process a condition that expects additional information and that
    /// information has not been set, it MUST report a failure").
    MissingParameter {
        /// The parameter key.
        parameter: i64,
        /// The component index.
        component: usize,
    },
    /// A declared or written size exceeds what the component can hold.
    TooLarge {
        /// The component index.
        component: usize,
        /// Bytes the manifest declares or would write.
        size: u64,
        /// Bytes the component can hold.
        capacity: u64,
    },
    /// The manifest lists more components than the device has (manifest §6.2).
    TooManyComponents {
        /// Components listed by the manifest.
        manifest: usize,
        /// Components this processor can track.
        limit: usize,
    },
    /// A component index points outside the manifest's component list.
    ComponentIndex {
        /// The index.
        index: u64,
    },
    /// A payload could not be decrypted (wrong key, tampered ciphertext or tag).
    Decrypt,
    /// A delta patch (suitcase-parameter-delta-base) could not be applied.
    Delta {
        /// The component being written.
        component: usize,
        /// Why.
        cause: DeltaCause,
    },
    /// The platform failed an operation it was asked to do.
    Platform {
        /// The operation.
        op: Operation,
        /// The component index.
        component: usize,
    },
}

/// Why a delta patch was refused (`Error::Delta`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaCause {
    /// The base component does not hold the image the patch was made from.
    WrongBase,
    /// The patch makes an image other than the one the manifest names (digest or size).
    WrongResult,
    /// The patch is damaged, truncated or forged.
    Corrupt,
    /// The patch is not one this device can apply (format version, mode, flags, RAM).
    Unsupported,
}

/// Authentication failures. Opaque on purpose: a forger learns nothing from which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// The authentication wrapper holds only the digest (manifest §8.3: an envelope without
    /// an authentication block must be rejected).
    NoAuthenticationBlock,
    /// The SUIT_Digest in the authentication wrapper does not match the manifest.
    DigestMismatch,
    /// No authentication block verified against a trusted key.
    NoTrustedSignature,
    /// Not enough distinct trusted signers for the policy.
    ThresholdNotMet {
        /// Signers required.
        required: usize,
        /// Distinct trusted signers that verified.
        verified: usize,
    },
    /// The hybrid policy needs both a classical and a post-quantum signer.
    HybridNotMet,
    /// No verified signer is permitted to authorise this component (or this action on it).
    NotAuthorized,
}

/// Which registry an unsupported identifier belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// A SUIT command (condition or directive).
    Command,
    /// A SUIT parameter.
    Parameter,
    /// A SUIT_Manifest member.
    ManifestMember,
    /// A SUIT_Envelope member.
    EnvelopeMember,
    /// A SUIT_Common member.
    CommonMember,
    /// A label listed in a COSE `crit` header.
    CoseCritical,
    /// A COSE structure (tag) that is not accepted as an authentication block.
    CoseStructure,
    /// A component the device does not have (the id is its index in the manifest).
    Component,
}

/// Operations the platform performs on the processor's behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Fetching a payload from a URI.
    Fetch,
    /// Reading, writing, copying or swapping component storage.
    Storage,
    /// Transferring execution to a component.
    Invoke,
    /// Waiting for or asking about an event (update-management).
    Query,
}

/// A stable, machine-readable reason code. The CLI prints these; scripts match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Any authentication failure, including an untrusted key or a manifest digest mismatch.
    Signature,
    /// An image or severed-member digest does not match.
    Digest,
    /// The vendor identifier condition failed.
    VendorId,
    /// The class identifier condition failed.
    ClassId,
    /// The device identifier condition failed.
    DeviceId,
    /// The sequence number is not newer than the installed one.
    SequenceRollback,
    /// The manifest version is not supported.
    Version,
    /// The encoding is invalid.
    Malformed,
    /// Something critical is not understood.
    UnsupportedCritical,
    /// An algorithm is not implemented.
    UnsupportedAlgorithm,
    /// A size exceeds a component's capacity (or the device's component count).
    Size,
    /// Command sequences nest too deeply.
    NestingLimit,
    /// A payload could not be decrypted.
    Decrypt,
    /// A payload could not be fetched.
    Fetch,
    /// Another condition failed (component slot, abort, use-before, battery, version...).
    Condition,
    /// The device could not write, copy, swap or invoke a component.
    Storage,
}

impl Reason {
    /// The code as printed by `suitcase manifest check --json`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Signature => "signature",
            Self::Digest => "digest",
            Self::VendorId => "vendor-id",
            Self::ClassId => "class-id",
            Self::DeviceId => "device-id",
            Self::SequenceRollback => "sequence-rollback",
            Self::Version => "version",
            Self::Malformed => "malformed",
            Self::UnsupportedCritical => "unsupported-critical",
            Self::UnsupportedAlgorithm => "unsupported-algorithm",
            Self::Size => "size",
            Self::NestingLimit => "nesting-limit",
            Self::Decrypt => "decrypt",
            Self::Fetch => "fetch",
            Self::Condition => "condition",
            Self::Storage => "storage",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Error {
    /// The stable reason code for this error.
    pub fn reason(&self) -> Reason {
        use crate::command::Condition as C;
        match self {
            Self::Malformed { .. }
            | Self::MissingParameter { .. }
            | Self::ComponentIndex { .. } => Reason::Malformed,
            Self::SectionMissing { .. } => Reason::Malformed,
            Self::NestingLimit { .. } => Reason::NestingLimit,
            Self::UnsupportedVersion { .. } => Reason::Version,
            Self::UnsupportedCritical { .. } => Reason::UnsupportedCritical,
            Self::UnsupportedAlgorithm { .. } => Reason::UnsupportedAlgorithm,
            Self::Unauthenticated(_) => Reason::Signature,
            Self::SeveredMemberMismatch { .. } => Reason::Digest,
            Self::SequenceRollback { .. } => Reason::SequenceRollback,
            Self::ConditionFailed { condition, .. } => match condition {
                C::VendorIdentifier => Reason::VendorId,
                C::ClassIdentifier => Reason::ClassId,
                C::DeviceIdentifier => Reason::DeviceId,
                C::ImageMatch | C::ImageNotMatch | C::CheckContent | C::DependencyIntegrity => {
                    Reason::Digest
                }
                _ => Reason::Condition,
            },
            Self::TooLarge { .. } | Self::TooManyComponents { .. } => Reason::Size,
            Self::Decrypt => Reason::Decrypt,
            Self::Delta { cause, .. } => match cause {
                DeltaCause::Unsupported => Reason::UnsupportedAlgorithm,
                DeltaCause::WrongBase | DeltaCause::WrongResult | DeltaCause::Corrupt => {
                    Reason::Digest
                }
            },
            Self::Platform {
                op: Operation::Fetch,
                ..
            } => Reason::Fetch,
            Self::Platform { .. } => Reason::Storage,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { at, what } => write!(f, "malformed CBOR at byte {at}: {what}"),
            Self::NestingLimit { limit } => {
                write!(f, "try-each/run-sequence nested deeper than {limit} levels")
            }
            Self::UnsupportedVersion { version } => {
                write!(f, "manifest version {version} is not supported (only 1)")
            }
            Self::UnsupportedCritical { what, id } => {
                let what = match what {
                    Unsupported::Command => "command",
                    Unsupported::Parameter => "parameter",
                    Unsupported::ManifestMember => "manifest member",
                    Unsupported::EnvelopeMember => "envelope member",
                    Unsupported::CommonMember => "common member",
                    Unsupported::CoseCritical => "COSE critical header label",
                    Unsupported::CoseStructure => "COSE structure (tag)",
                    Unsupported::Component => "component index",
                };
                write!(f, "unsupported {what} {id}")
            }
            Self::UnsupportedAlgorithm { alg } => write!(f, "unsupported algorithm {alg}"),
            Self::Unauthenticated(e) => match e {
                AuthError::NoAuthenticationBlock => {
                    f.write_str("envelope carries no signature or MAC (unsigned)")
                }
                AuthError::DigestMismatch => {
                    f.write_str("manifest does not match the digest in the authentication wrapper")
                }
                AuthError::NoTrustedSignature => {
                    f.write_str("no signature or MAC verified against a trusted key")
                }
                AuthError::ThresholdNotMet { required, verified } => write!(
                    f,
                    "{verified} trusted signer(s) verified but the policy requires {required}"
                ),
                AuthError::HybridNotMet => f.write_str(
                    "the hybrid policy needs both a classical and a post-quantum signature",
                ),
                AuthError::NotAuthorized => f.write_str(
                    "no verified signer is permitted to authorise this component or action",
                ),
            },
            Self::SeveredMemberMismatch { key } => {
                write!(
                    f,
                    "severable member {key} does not match its digest in the manifest"
                )
            }
            Self::SectionMissing { key } => {
                write!(
                    f,
                    "section {key} is needed but was severed and is not in the envelope"
                )
            }
            Self::SequenceRollback { installed, offered } => write!(
                f,
                "sequence number {offered} is not newer than the installed {installed}"
            ),
            Self::ConditionFailed {
                condition,
                component,
            } => {
                write!(
                    f,
                    "condition {} failed on component {component}",
                    condition.name()
                )
            }
            Self::MissingParameter {
                parameter,
                component,
            } => write!(
                f,
                "parameter {} is needed on component {component} but was never set",
                crate::params::parameter_name(*parameter)
            ),
            Self::TooLarge {
                component,
                size,
                capacity,
            } => write!(
                f,
                "component {component} holds {capacity} bytes but the manifest needs {size}"
            ),
            Self::TooManyComponents { manifest, limit } => {
                write!(
                    f,
                    "manifest lists {manifest} components but the device has {limit}"
                )
            }
            Self::ComponentIndex { index } => {
                write!(f, "component index {index} is outside the component list")
            }
            Self::Decrypt => f.write_str("payload decryption failed (wrong key or tampered)"),
            Self::Delta { component, cause } => match cause {
                DeltaCause::WrongBase => write!(
                    f,
                    "delta patch for component {component} was made from another image than \
                     the installed one; fetch the full image"
                ),
                DeltaCause::WrongResult => write!(
                    f,
                    "delta patch for component {component} makes an image other than the \
                     manifest's image digest and size"
                ),
                DeltaCause::Corrupt => write!(
                    f,
                    "delta patch for component {component} is damaged or truncated; fetch it again"
                ),
                DeltaCause::Unsupported => write!(
                    f,
                    "delta patch for component {component} uses a format, mode or RAM bound \
                     this device does not support"
                ),
            },
            Self::Platform { op, component } => {
                let op = match op {
                    Operation::Fetch => "fetch",
                    Operation::Storage => "storage operation",
                    Operation::Invoke => "invoke",
                    Operation::Query => "platform query",
                };
                write!(f, "{op} failed on component {component}")
            }
        }
    }
}

impl core::error::Error for Error {}

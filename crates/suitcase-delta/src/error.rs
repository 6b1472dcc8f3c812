//! The one error type of the applier (and of header parsing).

use core::fmt;

/// Why a patch was refused or could not be applied.
///
/// Every variant is final: an [`crate::Applier`] that returned an error stays failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The first four bytes are not `SCDP`: this is not a suitcase delta patch.
    BadMagic,
    /// The format version is not one this applier knows.
    UnsupportedVersion(u8),
    /// The mode byte names no known mode.
    UnsupportedMode(u8),
    /// Reserved header bits are set (a newer encoder's feature).
    UnsupportedFlags(u8),
    /// The patch claims more applier RAM than this device allows.
    RamBoundTooLarge {
        /// Bytes the patch header declares.
        declared: u32,
        /// Bytes the device allows.
        limit: u32,
    },
    /// The patch declares less RAM than applying it takes: the header is inconsistent.
    RamBoundTooSmall {
        /// Bytes the patch header declares.
        declared: u32,
        /// Bytes this applier needs.
        required: u32,
    },
    /// The new image (or, in place, old image plus shift) does not fit the slot.
    TooLargeForSlot {
        /// Bytes needed.
        needed: u64,
        /// Bytes in the slot.
        slot: u32,
    },
    /// A size the patch header declares exceeds what the applier allows (host applier:
    /// `host::MAX_IMAGE_SIZE` or the caller's slot size); refused before any
    /// allocation, as a forged header can claim gigabytes in a few bytes.
    ImageTooLarge {
        /// Which size: "new image", "old image" or "old image plus in-place shift".
        what: &'static str,
        /// Bytes the header declares.
        size: u64,
        /// Bytes allowed.
        limit: u64,
    },
    /// The installed image has the wrong size for this patch.
    SourceSizeMismatch,
    /// The installed image is not the one this patch was made for (its SHA-256 differs).
    SourceDigestMismatch,
    /// The patch ended before the image was complete.
    Truncated,
    /// Bytes follow the end of the patch.
    TrailingData,
    /// The patch stream is malformed (a corrupted or forged patch).
    Corrupt,
    /// The rebuilt image does not have the SHA-256 the patch promised; do not boot it.
    ResultDigestMismatch,
    /// The caller's storage reported an error.
    Io,
    /// In-place geometry in the header is invalid (block size, shift or segment size).
    BadGeometry,
    /// The persisted progress record does not belong to this patch or is damaged.
    BadProgressRecord,
    /// `finish` was called before the whole patch was fed.
    Incomplete,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not a suitcase delta patch (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported patch format version {v}"),
            Self::UnsupportedMode(m) => write!(f, "unsupported patch mode {m}"),
            Self::UnsupportedFlags(x) => write!(f, "unsupported patch flags {x:#04x}"),
            Self::RamBoundTooLarge { declared, limit } => write!(
                f,
                "patch needs {declared} bytes of applier RAM, the device allows {limit}"
            ),
            Self::RamBoundTooSmall { declared, required } => write!(
                f,
                "patch declares {declared} bytes of applier RAM but applying needs {required}"
            ),
            Self::TooLargeForSlot { needed, slot } => {
                write!(f, "patch needs {needed} bytes of slot, the slot has {slot}")
            }
            Self::ImageTooLarge { what, size, limit } => write!(
                f,
                "patch header declares a {what} of {size} bytes, more than the {limit} bytes \
                 allowed"
            ),
            Self::SourceSizeMismatch => {
                f.write_str("installed image has the wrong size for this patch")
            }
            Self::SourceDigestMismatch => {
                f.write_str("installed image is not the patch's source image (SHA-256 differs)")
            }
            Self::Truncated => f.write_str("patch is truncated"),
            Self::TrailingData => f.write_str("data after the end of the patch"),
            Self::Corrupt => f.write_str("patch is corrupt"),
            Self::ResultDigestMismatch => f.write_str("rebuilt image has the wrong SHA-256"),
            Self::Io => f.write_str("storage error"),
            Self::BadGeometry => f.write_str("invalid in-place geometry in patch header"),
            Self::BadProgressRecord => f.write_str("progress record does not match this patch"),
            Self::Incomplete => f.write_str("patch not completely applied"),
        }
    }
}

#[cfg(feature = "std")]
impl core::error::Error for Error {}

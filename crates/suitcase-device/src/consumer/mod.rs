//! The firmware consumer: one update as a chain of typed states, sans-IO and without
//! allocation, shared by the Linux agent, the simulated MCU and the Cortex-M firmware.
//!
//! In the manner of rustls' `Expect*` states, each state is a value that only the step before
//! it can construct (every field is private to this module), so holding one is proof that the steps before it
//! ran and passed:
//!
//! ```text
//!           Offer::receive / Offer::new
//!                      │ envelope bytes only
//!                      ▼
//!   Offer ──authenticate──▶ Authenticated ──fetch──▶ Fetched ──verify──▶ VerifiedCandidates
//!          RFC 9124:         (VerifiedManifest,       (install section     (validate section's
//!          signature,         checks passed; no        ran: payload         image-match on the
//!          rollback,          payload byte yet)        streamed into        bytes read back
//!          identity, size,                             the slot)            from the slot)
//!          decryption key                                                        │ stage
//!                                                                                ▼
//!                    Confirmed ◀──confirm── Activated ◀──activate── Staged (pending)
//!                    Reverted  ◀──revert───┘   (on trial)  └─refused─▶ Reverted
//!
//!   resume(journal) ──re-reads the envelope from the slot──▶ Offer::authenticate ──▶ the state
//!                     the journal names (Fetching at block k, Staged, Activated)
//! ```
//!
//! [`Offer::authenticate`] is the only way to an [`Authenticated`], and [`resume`] goes through
//! it too: an update interrupted by a power cut is authenticated again from the envelope
//! stored in the slot, never trusted from the journal.
//!
//! A device whose components the caller routes (the Linux agent) takes the branch
//! `Offer ──verify──▶ Authentic ──image_match──▶ Matched` ([`Offer::verify`],
//! [`Authentic::image_match`]); `verify` is also the signature check inside
//! [`Offer::authenticate`], so every chain authenticates through one function.
//!
//! The device comes in through three traits ([`Transport`], [`Slots`], [`Journal`]) and a
//! [`Device`] value (trust anchors, identity, decryption keys). RAM is bounded: the caller's
//! envelope buffer, two [`BLOCK`]-sized buffers and the SUIT processor's fixed tables; the
//! payload streams block by block through the processor (digest, decryption, delta patch)
//! into the slot.

mod boot;
mod check;
mod fetched;
mod host;
mod io;
mod offer;
mod pipeline;
mod resume;
mod staged;

use core::fmt;

use suitcase_manifest::encryption::DecryptionKey;
use suitcase_manifest::{ComponentId, TrustAnchor, TrustPolicy};

pub use boot::{BootSlots, Reset};
pub use fetched::Fetched;
pub use host::{Authentic, DependencyTrust, MAX_FLAT_COMPONENTS, MatchError, Matched};
pub use io::{IoError, Journal, Progress, SlotRole, Slots, Transport};
pub use offer::{Authenticated, Offer};
pub use pipeline::MAX_URI;
pub use resume::{Resumed, resume};
pub use staged::{Activated, Activation, Confirmed, Reverted, Staged, VerifiedCandidates};

use crate::{DeviceIdentity, HEADER_SIZE};

/// The transport block and flash write unit: payloads are requested and written in blocks of
/// this many bytes (CoAP Block2 SZX 5), and the image starts at a multiple of it in the slot.
pub const BLOCK: usize = 512;

/// What the device trusts and is: fixed for its lifetime (or until a key rotation).
#[derive(Clone, Copy, Debug)]
pub struct Device<'k> {
    /// The keys that may sign manifests.
    pub anchors: &'k [TrustAnchor<'k>],
    /// How many of them must sign, and for what.
    pub policy: TrustPolicy<'k>,
    /// The vendor, class and device identifiers manifests must name.
    pub identity: DeviceIdentity<'k>,
    /// The component identifier of the image in manifests (e.g. `["mcu"]`).
    pub component: ComponentId<'k>,
    /// Keys for encrypted payloads.
    pub keys: &'k [DecryptionKey<'k>],
}

/// The step an error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Receiving the envelope.
    Receive,
    /// Authenticating and checking it.
    Authenticate,
    /// Fetching payload blocks into the slot.
    Fetch,
    /// Reading the slot back.
    Verify,
    /// Marking the update pending.
    Stage,
    /// Resetting into the new image.
    Activate,
    /// Confirming or reverting it.
    Settle,
    /// Reading or writing the journal.
    Journal,
}

/// Why a release was refused before any payload byte was requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The envelope does not parse or does not authenticate (manifest §6.2, RFC 9124
    /// REQ.SEC.AUTHENTIC); the SUIT error says which.
    Unauthenticated(suitcase_manifest::Error),
    /// Not newer than the installed manifest (RFC 9124 REQ.SEC.SEQUENCE, manifest §8.4.3).
    Rollback {
        /// The installed sequence number.
        installed: u64,
        /// The offered one.
        offered: u64,
    },
    /// For another vendor (RFC 9124 REQ.SEC.COMPATIBLE, manifest §8.4.9.1).
    WrongVendor,
    /// For another device class (same clauses).
    WrongClass,
    /// For another device (same clauses).
    WrongDevice,
    /// A component this device does not have (manifest §6.2).
    UnsupportedComponent {
        /// Its index in the manifest.
        index: usize,
    },
    /// The manifest names no component that is this device's image.
    NoImage,
    /// The manifest has no install section in the envelope.
    NoInstall,
    /// The image's size is not declared (suit-parameter-image-size), so it cannot be checked
    /// against the slot before downloading.
    NoImageSize,
    /// The slot image would not fit the slot (RFC 9124 REQ.USE.MFST.PRE_CHECK: decided from the
    /// declared image size before downloading).
    TooLarge {
        /// Bytes the slot image needs.
        size: u64,
        /// Bytes the slot holds.
        capacity: u64,
    },
    /// An encrypted payload the device holds no key for (RFC 9124 REQ.SEC.IMG.CONFIDENTIALITY,
    /// the firmware-encryption draft).
    NoDecryptionKey,
    /// A command sequence this check cannot follow (nesting beyond the processor's limit, an
    /// index out of range).
    Malformed,
}

/// Why an update stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Refused before fetching.
    Refused(Refusal),
    /// A device operation failed.
    Io(Step, IoError),
    /// The SUIT processor refused while installing or verifying (a digest mismatch, a
    /// decryption failure, a failed condition).
    Processing(suitcase_manifest::Error),
    /// The install section ran but did not produce the image.
    NotInstalled,
    /// The validate section does not check the staged image with image-match, so nothing
    /// proves the slot holds what was signed.
    NotVerified,
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated(e) => write!(f, "the envelope is not authentic: {e}"),
            Self::Rollback { installed, offered } => write!(
                f,
                "sequence number {offered} is not newer than the installed {installed}"
            ),
            Self::WrongVendor => f.write_str("the release is for another vendor"),
            Self::WrongClass => f.write_str("the release is for another device class"),
            Self::WrongDevice => f.write_str("the release is for another device"),
            Self::UnsupportedComponent { index } => {
                write!(f, "component {index} is not one this device has")
            }
            Self::NoImage => f.write_str("the manifest installs no image of this device"),
            Self::NoInstall => f.write_str("the manifest has no install section"),
            Self::NoImageSize => f.write_str("the manifest does not declare the image size"),
            Self::TooLarge { size, capacity } => {
                write!(
                    f,
                    "the update needs {size} bytes; the slot holds {capacity}"
                )
            }
            Self::NoDecryptionKey => {
                f.write_str("an encrypted payload is for keys this device does not hold")
            }
            Self::Malformed => f.write_str("a command sequence cannot be checked"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(r) => write!(f, "refused before download: {r}"),
            Self::Io(step, e) => write!(f, "{step:?}: device operation failed ({e:?})"),
            Self::Processing(e) => write!(f, "the SUIT processor refused: {e}"),
            Self::NotInstalled => f.write_str("the install section did not write the image"),
            Self::NotVerified => {
                f.write_str("the validate section does not check the image (no image-match)")
            }
        }
    }
}

/// Where the parts of the slot image go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) envelope_len: u32,
    pub(crate) image_offset: u32,
    pub(crate) image_len: u64,
    /// The slot image length, a multiple of [`BLOCK`].
    pub(crate) slot_len: u64,
}

impl Layout {
    /// `min_offset`: [`Slots::min_image_offset`].
    fn new(envelope_len: usize, image_len: u64, min_offset: u32) -> Option<Self> {
        let envelope_len = u32::try_from(envelope_len).ok()?;
        let image_offset = HEADER_SIZE
            .checked_add(envelope_len)?
            .max(min_offset)
            .checked_next_multiple_of(u32::try_from(BLOCK).ok()?)?;
        u32::try_from(image_len).ok()?;
        let slot_len = u64::from(image_offset)
            .checked_add(image_len)?
            .checked_next_multiple_of(BLOCK as u64)?;
        Some(Self {
            envelope_len,
            image_offset,
            image_len,
            slot_len,
        })
    }

    pub(crate) fn image_len_u32(&self) -> u32 {
        u32::try_from(self.image_len).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn the_image_starts_at_the_slots_minimum_offset_or_after_the_envelope() {
        let at = |envelope, min| Layout::new(envelope, 1000, min).map(|l| l.image_offset);
        // Packed right after header and envelope, rounded up to a block.
        assert_eq!(at(100, 0), Some(512));
        // An image linked to run in place 8 KiB into the slot (the Cortex-M application).
        assert_eq!(at(100, 0x2000), Some(0x2000));
        // An envelope longer than the minimum pushes the image further, never over it.
        assert_eq!(at(9000, 0x2000), Some(9216));
        // A minimum off the block grid is rounded up to it.
        assert_eq!(at(100, 0x2001), Some(0x2200));
    }
}

//! Errors, and the reasons the bootloader records or reports.

use core::fmt;

use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind};

use crate::Slot;
use crate::record::Phase;
use crate::verify::{ImageIndex, SecurityVersion, VerifyError};

/// Why an update was not installed or did not stay installed. Persisted in the state record
/// and reported to the application through [`crate::BootStatus::last_failure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The trial image was booted the maximum number of times without being confirmed, so the
    /// previous image was restored.
    NotConfirmed,
    /// An image of the update failed verification (before install, or before a trial boot).
    Invalid {
        /// Which image.
        image: ImageIndex,
        /// What the verifier said.
        error: VerifyError,
    },
    /// An image of the update is authentic but older than the anti-rollback counter allows.
    Rollback {
        /// Which image.
        image: ImageIndex,
        /// The image's security version.
        offered: SecurityVersion,
        /// The counter: the lowest security version this device still accepts.
        minimum: SecurityVersion,
    },
    /// An image of the update, or the image it replaces, does not fit the slots of a swap
    /// layout (one sector of the primary in swap mode, of the secondary in swap-offset mode, is
    /// the swap's spare).
    TooLarge {
        /// Which image.
        image: ImageIndex,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConfirmed => f.write_str("trial image not confirmed; reverted"),
            Self::Invalid { image, error } => write!(f, "image {image} invalid: {error}"),
            Self::Rollback {
                image,
                offered,
                minimum,
            } => write!(
                f,
                "image {image} rolls back: security version {offered} is below {minimum}"
            ),
            Self::TooLarge { image } => write!(f, "image {image} does not fit its slots"),
        }
    }
}

/// Why the bootloader will not boot anything and stays in recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryReason {
    /// The image the state selects failed verification and there is no other image the state
    /// allows to run.
    Invalid {
        /// The slot that was checked.
        slot: Slot,
        /// Which image.
        image: ImageIndex,
        /// What the verifier said.
        error: VerifyError,
    },
    /// The image the state selects is authentic but below the anti-rollback counter: someone
    /// wrote an old image into the slot.
    Rollback {
        /// The slot that was checked.
        slot: Slot,
        /// Which image.
        image: ImageIndex,
        /// The image's security version.
        offered: SecurityVersion,
        /// The counter.
        minimum: SecurityVersion,
    },
    /// The state record was written by a newer bootloader (a format version this one does not
    /// know); guessing could undo an update in progress.
    UnsupportedState {
        /// The format version found.
        version: u8,
    },
    /// The state record describes a different layout (mode or image count) than this
    /// bootloader was built with.
    StateMismatch,
}

impl fmt::Display for RecoveryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { slot, image, error } => {
                write!(f, "image {image} in slot {slot} invalid: {error}")
            }
            Self::Rollback {
                slot,
                image,
                offered,
                minimum,
            } => write!(
                f,
                "image {image} in slot {slot} rolls back: security version {offered} is below {minimum}"
            ),
            Self::UnsupportedState { version } => {
                write!(f, "state record format {version} is not supported")
            }
            Self::StateMismatch => f.write_str("state record describes a different layout"),
        }
    }
}

/// The bootloader could not reach a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// A flash operation failed. Nothing is lost: run the bootloader again (after a reset).
    Flash(NorFlashErrorKind),
    /// The state machine did not settle within its step bound: a bug, never input-driven.
    NoProgress,
}

impl<E: NorFlashError> From<E> for BootError {
    fn from(error: E) -> Self {
        Self::Flash(error.kind())
    }
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flash(kind) => write!(f, "flash error: {kind}"),
            Self::NoProgress => f.write_str("boot state machine did not settle"),
        }
    }
}

/// Why the application-side [`crate::Updater`] refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateError {
    /// A flash operation failed.
    Flash(NorFlashErrorKind),
    /// The running image is on trial: confirm it (or reboot to revert) before staging another
    /// update, because the other slot holds the only known-good image.
    TrialNotConfirmed,
    /// The request does not fit the current phase (for example confirming while the bootloader
    /// is in the middle of a swap, which a running application never sees).
    WrongPhase {
        /// The phase found in the state record.
        phase: Phase,
    },
    /// The image does not fit the slot it is staged into.
    TooLarge {
        /// Which image.
        image: ImageIndex,
        /// The size asked for.
        size: u32,
        /// The most that fits.
        capacity: u32,
    },
    /// An image of size zero.
    EmptyImage {
        /// Which image.
        image: ImageIndex,
    },
    /// A write outside the staged image, or not aligned to the flash write size.
    BadWrite {
        /// Which image.
        image: ImageIndex,
        /// Offset of the write.
        offset: u32,
        /// Length of the write.
        len: usize,
    },
    /// There is no image with this index in the layout.
    NoSuchImage {
        /// The index asked for.
        image: ImageIndex,
    },
    /// The state record was written by a newer bootloader.
    UnsupportedState {
        /// The format version found.
        version: u8,
    },
    /// The state record describes a different layout.
    StateMismatch,
}

impl<E: NorFlashError> From<E> for UpdateError {
    fn from(error: E) -> Self {
        Self::Flash(error.kind())
    }
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flash(kind) => write!(f, "flash error: {kind}"),
            Self::TrialNotConfirmed => {
                f.write_str("running image is on trial; confirm it before staging an update")
            }
            Self::WrongPhase { phase } => write!(f, "not possible while the state is {phase}"),
            Self::TooLarge {
                image,
                size,
                capacity,
            } => write!(
                f,
                "image {image} of {size} bytes does not fit its slot of {capacity} bytes"
            ),
            Self::EmptyImage { image } => write!(f, "image {image} is empty"),
            Self::BadWrite { image, offset, len } => write!(
                f,
                "write of {len} bytes at {offset:#x} to image {image} is out of range or unaligned"
            ),
            Self::NoSuchImage { image } => write!(f, "no image {image} in this layout"),
            Self::UnsupportedState { version } => {
                write!(f, "state record format {version} is not supported")
            }
            Self::StateMismatch => f.write_str("state record describes a different layout"),
        }
    }
}

/// A layout the bootloader refuses to run with. These are integration mistakes, caught when
/// the [`crate::BootLoader`] or [`crate::Updater`] is built rather than half-way through a
/// swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The image count `N` is zero or above [`crate::MAX_IMAGES`].
    ImageCount,
    /// The sector size is zero or not a multiple of the slots' erase and write sizes.
    SectorSize,
    /// A write size above [`crate::MAX_WRITE_SIZE`], or a read size that does not divide it.
    WriteSize,
    /// A slot is empty or not a whole number of sectors.
    SlotSize {
        /// Which image.
        image: ImageIndex,
        /// Which slot.
        slot: Slot,
    },
    /// Swap layout: the primary slot needs one sector more than the secondary.
    NoSpareSector {
        /// Which image.
        image: ImageIndex,
    },
    /// Swap-offset layout: the secondary slot needs one sector more than the primary (the
    /// update is staged one sector into it).
    NoOffsetSector {
        /// Which image.
        image: ImageIndex,
    },
    /// The state partition is not two equal, erasable halves, or a half cannot hold the record
    /// plus the progress marks the layout needs.
    StateSize {
        /// Bytes a half needs.
        needed: u32,
        /// Bytes a half has.
        available: u32,
    },
    /// `max_trial_boots` is zero.
    TrialBoots,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImageCount => f.write_str("image count must be 1 or 2"),
            Self::SectorSize => {
                f.write_str("sector size must be a non-zero multiple of the erase and write sizes")
            }
            Self::WriteSize => f.write_str("flash write or read size not supported"),
            Self::SlotSize { image, slot } => write!(
                f,
                "slot {slot} of image {image} is not a non-zero whole number of sectors"
            ),
            Self::NoSpareSector { image } => write!(
                f,
                "primary slot of image {image} needs one sector more than its secondary"
            ),
            Self::NoOffsetSector { image } => write!(
                f,
                "secondary slot of image {image} needs one sector more than its primary"
            ),
            Self::StateSize { needed, available } => write!(
                f,
                "state partition halves need {needed} bytes each, have {available}"
            ),
            Self::TrialBoots => f.write_str("max_trial_boots must be at least 1"),
        }
    }
}

impl core::error::Error for BootError {}
impl core::error::Error for UpdateError {}
impl core::error::Error for ConfigError {}

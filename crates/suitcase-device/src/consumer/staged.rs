//! From verified candidates to the end: [`VerifiedCandidates`] are staged (pending), activated
//! (on trial), and confirmed or reverted.

use suitcase_manifest::{SuitDigest, VerifiedManifest};

use super::io::{Journal, Progress, Slots};
use super::{Error, Layout, Step};

/// The image in the slot matches the digest the authenticated manifest commits to, as read
/// back from the flash. Only [`super::Fetched::verify`] (or [`super::resume`], through it) makes one; it is
/// what staging takes.
#[derive(Debug)]
pub struct VerifiedCandidates<'e> {
    pub(super) manifest: VerifiedManifest<'e>,
    pub(super) layout: Layout,
    pub(super) digest: SuitDigest<'e>,
}

impl<'e> VerifiedCandidates<'e> {
    /// The authenticated manifest.
    pub fn manifest(&self) -> &VerifiedManifest<'e> {
        &self.manifest
    }

    /// The image digest that matched.
    pub fn digest(&self) -> &SuitDigest<'e> {
        &self.digest
    }

    /// The image length.
    pub fn image_len(&self) -> u64 {
        self.layout.image_len
    }

    /// Marks the slot image pending, so that the bootloader installs it at the next reset
    /// (RFC 9019 §4's bootloader hand-over); the journal records it.
    ///
    /// # Errors
    /// [`Error::Io`] for flash or journal failures.
    pub fn stage<S: Slots, J: Journal>(
        self,
        slots: &mut S,
        journal: &mut J,
    ) -> Result<Staged<'e>, Error> {
        slots
            .mark_pending()
            .map_err(|e| Error::Io(Step::Stage, e))?;
        journal
            .store(Some(Progress::Staged))
            .map_err(|e| Error::Io(Step::Journal, e))?;
        Ok(Staged {
            manifest: self.manifest,
        })
    }
}

/// A verified update, pending: the next reset hands it to the bootloader.
#[derive(Debug)]
pub struct Staged<'e> {
    pub(super) manifest: VerifiedManifest<'e>,
}

/// How activation ended.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "no_std without alloc: no Box, and the value is moved once"
)]
pub enum Activation<'e> {
    /// The bootloader verified the new image and runs it on trial.
    Trial(Activated<'e>),
    /// The bootloader refused it; the previous image runs.
    Refused(Reverted),
}

impl<'e> Staged<'e> {
    /// The authenticated manifest.
    pub fn manifest(&self) -> &VerifiedManifest<'e> {
        &self.manifest
    }

    /// Resets into the bootloader, which verifies the image again (secure boot,
    /// [`crate::SuitVerifier`]) and boots it on trial. The journal says `Activated` first: on
    /// a real MCU the reset does not return, and [`super::resume`] continues from there.
    ///
    /// # Errors
    /// [`Error::Io`] for flash or journal failures.
    pub fn activate<S: Slots, J: Journal>(
        self,
        slots: &mut S,
        journal: &mut J,
    ) -> Result<Activation<'e>, Error> {
        journal
            .store(Some(Progress::Activated))
            .map_err(|e| Error::Io(Step::Journal, e))?;
        let trial = slots.activate().map_err(|e| Error::Io(Step::Activate, e))?;
        let sequence = self.manifest.sequence_number();
        if trial {
            Ok(Activation::Trial(Activated {
                manifest: self.manifest,
            }))
        } else {
            journal
                .store(None)
                .map_err(|e| Error::Io(Step::Journal, e))?;
            Ok(Activation::Refused(Reverted { sequence }))
        }
    }
}

/// The new image runs on trial: confirm it once the application works, or revert.
#[derive(Debug)]
pub struct Activated<'e> {
    pub(super) manifest: VerifiedManifest<'e>,
}

impl<'e> Activated<'e> {
    /// The authenticated manifest of the running image.
    pub fn manifest(&self) -> &VerifiedManifest<'e> {
        &self.manifest
    }

    /// Confirms the image: it becomes the fallback, and the anti-rollback counter advances to
    /// its sequence number.
    ///
    /// # Errors
    /// [`Error::Io`] for flash or journal failures.
    pub fn confirm<S: Slots, J: Journal>(
        self,
        slots: &mut S,
        journal: &mut J,
    ) -> Result<Confirmed, Error> {
        slots.confirm().map_err(|e| Error::Io(Step::Settle, e))?;
        journal
            .store(None)
            .map_err(|e| Error::Io(Step::Journal, e))?;
        Ok(Confirmed {
            sequence: self.manifest.sequence_number(),
        })
    }

    /// Gives the image up (it failed its health check): the bootloader returns to the
    /// confirmed image.
    ///
    /// # Errors
    /// [`Error::Io`] for flash or journal failures.
    pub fn revert<S: Slots, J: Journal>(
        self,
        slots: &mut S,
        journal: &mut J,
    ) -> Result<Reverted, Error> {
        slots.revert().map_err(|e| Error::Io(Step::Settle, e))?;
        journal
            .store(None)
            .map_err(|e| Error::Io(Step::Journal, e))?;
        Ok(Reverted {
            sequence: self.manifest.sequence_number(),
        })
    }
}

/// The update is installed and confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmed {
    sequence: u64,
}

impl Confirmed {
    /// The installed sequence number.
    pub fn sequence_number(&self) -> u64 {
        self.sequence
    }
}

/// The update was given up after staging; the previous image runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reverted {
    sequence: u64,
}

impl Reverted {
    /// The sequence number of the update that was reverted.
    pub fn sequence_number(&self) -> u64 {
        self.sequence
    }
}

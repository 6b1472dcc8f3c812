//! Where an image goes: the [`SlotBackend`] of an A/B component, one implementation per kind
//! of slot. Linux file or block-device slots ([`file::FileSlotBackend`], switched by a pointer
//! file or a bootloader) and simulated MCUs ([`mcu::McuBackend`]: `suitcase-boot` slots on
//! simulated flash; a secondary MCU is one whose verifier is its own) answer the same seven
//! questions, so the steps hold no per-kind code for slots. An update module is not a slot
//! backend: its handler installs in place ([`crate::module`]); [`Installer`] tells them apart.

use std::path::{Path, PathBuf};

use crate::candidates::{VerifiedCandidate, VerifiedCandidates};

use crate::config::{ComponentConfig, Kind, ModuleConfig};
use crate::ctx::Ctx;
use crate::error::{AgentError, Stop};
use crate::platform::Content;
use crate::slot::Slot;

pub(crate) mod file;
pub(crate) mod mcu;

/// Which slot runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotStatus {
    /// The slot running now.
    pub(crate) running: Slot,
    /// It runs on trial: not confirmed yet.
    pub(crate) trial: bool,
}

/// Where an update goes (Distribute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SlotTarget {
    /// The slot running before the update (what a revert returns to).
    pub(crate) from: Slot,
    /// The slot the update is written to.
    pub(crate) to: Slot,
    /// What kind of slot, for the report ("file slot", "MCU slot").
    pub(crate) what: &'static str,
}

/// One image to write (Apply), resumed from `resume_at` bytes already in the slot: a
/// candidate of [`VerifiedCandidates`] (the consumer core's `Matched`), the only thing it is
/// made from ([`Image::of`]).
pub(crate) struct Image<'a> {
    /// The name of the target, for messages.
    pub(crate) name: &'a str,
    candidate: &'a VerifiedCandidate,
    envelope: &'a [u8],
    /// Bytes already in the slot (an Apply checkpoint).
    pub(crate) resume_at: u64,
    /// The slot running (not written).
    pub(crate) from: Option<Slot>,
    /// The slot to write.
    pub(crate) to: Slot,
}

impl<'a> Image<'a> {
    /// The candidate of manifest component `index` in `verified`, to be written to `to`.
    pub(crate) fn of(
        verified: &'a VerifiedCandidates<'_>,
        index: usize,
        name: &'a str,
        resume_at: u64,
        from: Option<Slot>,
        to: Slot,
    ) -> Option<Self> {
        Some(Self {
            name,
            candidate: verified.candidates().get(index)?,
            envelope: verified.envelope(),
            resume_at,
            from,
            to,
        })
    }

    /// The file holding the verified candidate.
    pub(crate) fn path(&self) -> &Path {
        self.candidate.path()
    }

    /// Its length.
    pub(crate) fn len(&self) -> u64 {
        self.candidate.len()
    }

    /// The authenticated envelope (a slot image carries it).
    pub(crate) fn envelope(&self) -> &'a [u8] {
        self.envelope
    }
}

/// What Apply wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    /// The slot it went to.
    pub(crate) slot: Slot,
    /// Bytes in the slot (a slot header and the envelope included).
    pub(crate) total: u64,
    /// Where the image starts in the slot.
    pub(crate) image_offset: u64,
    /// SHA-256 of the image, hex.
    pub(crate) digest: String,
    /// For the report.
    pub(crate) note: String,
}

/// How Activate left a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Activated {
    /// Activated earlier (before a reboot, or booted already): the journal stays as it is.
    Earlier(String),
    /// The new image runs on trial now.
    Running(String),
    /// Switched: it runs the new image after this restart command (none configured: empty).
    Restart(Vec<String>),
    /// Switched: the device reboots into it with this command (empty: a simulated reboot).
    Reboot(Vec<String>),
}

/// What a revert did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reverted {
    /// For the report; `None` when there was nothing to revert.
    pub(crate) note: Option<String>,
    /// A restart command to run now (the component runs the old slot after it).
    pub(crate) restart: Vec<String>,
}

/// An A/B component's slots. Errors that fail a step are [`Stop::Fail`] with that step's
/// reason; anything else stops the agent ([`Stop::Interrupt`]) and the step runs again.
pub(crate) trait SlotBackend: Send {
    /// Which slot runs, and whether on trial (check-in).
    ///
    /// # Errors
    /// The slots' state cannot be read.
    fn status(&self) -> Result<SlotStatus, AgentError>;

    /// Where an update goes: the slot not running. Refuses while a trial is unconfirmed
    /// (Distribute).
    ///
    /// # Errors
    /// A Distribute failure.
    fn target(&self) -> Result<SlotTarget, Stop>;

    /// Writes `image` into its slot, calling `checkpoint` with the bytes durably written
    /// (Apply).
    ///
    /// # Errors
    /// An Apply failure (no space, storage).
    fn write(
        &self,
        image: &Image<'_>,
        checkpoint: &mut dyn FnMut(u64) -> Result<(), AgentError>,
    ) -> Result<Written, Stop>;

    /// Where the written image can be read back (Re-verify).
    fn read_back(&self, slot: Slot, image_offset: u64, len: u64) -> Content;

    /// The component's own verifier run on `slot`, if it has one (Re-verify): what it said.
    ///
    /// # Errors
    /// A Re-verify failure: it refuses the image.
    fn verify_own(&self, name: &str, slot: Slot) -> Result<Option<String>, Stop>;

    /// Switches to `to` on trial (Activate); `earlier` when the journal says it was.
    ///
    /// # Errors
    /// An Activate failure (e.g. the bootloader fell back).
    fn activate(&self, from: Slot, to: Slot, earlier: bool) -> Result<Activated, Stop>;

    /// Confirms `to` (Clean-up).
    ///
    /// # Errors
    /// The slots' state cannot be written.
    fn confirm(&self, to: Slot) -> Result<(), AgentError>;

    /// Returns to `from` if `to` was activated (undo).
    ///
    /// # Errors
    /// The slots' state cannot be written.
    fn revert(&self, from: Option<Slot>, to: Option<Slot>) -> Result<Reverted, AgentError>;

    /// After a revert is reported: the reboot command that brings the device back into
    /// `from`, if it still runs `to` and only a reboot switches.
    fn reboot_after_revert(&self, from: Slot, to: Slot) -> Option<Vec<String>>;

    /// The path of `slot`, for the commands' `SUITCASE_SLOT_PATH` (none for MCU slots).
    fn slot_path(&self, slot: Slot) -> Option<PathBuf>;
}

/// How a configured component takes an update.
pub(crate) enum Installer<'c> {
    /// Into one of two slots.
    Slots(Box<dyn SlotBackend + 'static>),
    /// By an update module's handler, in place.
    Module(&'c ModuleConfig),
}

/// The installer of configured component `c`.
pub(crate) fn installer<'c>(ctx: &Ctx, c: &'c ComponentConfig, index: usize) -> Installer<'c> {
    match &c.kind {
        Kind::Module(m) => Installer::Module(m),
        Kind::File(s) => Installer::Slots(Box::new(file::FileSlotBackend::new(
            &c.name,
            s.clone(),
            ctx.state.durability.clone(),
        ))),
        Kind::Mcu(_) => Installer::Slots(Box::new(mcu::McuBackend::new(ctx, index))),
    }
}

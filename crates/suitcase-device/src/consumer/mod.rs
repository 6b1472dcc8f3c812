//! The firmware consumer: one update as a chain of typed states, sans-IO and without
//! allocation, shared by the Linux agent, the simulated MCU and the Cortex-M firmware.
//!
//! In the manner of rustls' `Expect*` states, each state is a value that only the step before
//! it can construct (every field is private), so holding one is proof that the steps before it
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
mod host;
mod io;
mod pipeline;

use core::fmt;

use suitcase_manifest::encryption::DecryptionKey;
use suitcase_manifest::{
    ComponentId, Processor, ProcessorPolicy, Section, SuitDigest, TrustAnchor, TrustPolicy,
    VerifiedManifest,
};

pub use boot::{BootSlots, Reset};
pub use host::{Authentic, MatchError, Matched};
pub use io::{IoError, Journal, Progress, SlotRole, Slots, Transport};
pub use pipeline::MAX_URI;

use crate::{DeviceIdentity, HEADER_SIZE, SlotHeader};
use check::Roles;
use pipeline::Pipeline;

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
    fn new(envelope_len: usize, image_len: u64) -> Option<Self> {
        let envelope_len = u32::try_from(envelope_len).ok()?;
        let image_offset = HEADER_SIZE
            .checked_add(envelope_len)?
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

/// An envelope offered to the device, not yet authenticated: nothing in it is trusted.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'e> {
    envelope: &'e [u8],
}

impl<'e> Offer<'e> {
    /// Receives the offered envelope from the transport into `buf` (the only bytes fetched
    /// before authentication).
    ///
    /// # Errors
    /// [`Error::Io`] with [`Step::Receive`].
    pub fn receive<T: Transport>(transport: &mut T, buf: &'e mut [u8]) -> Result<Self, Error> {
        let n = transport
            .envelope(buf)
            .map_err(|e| Error::Io(Step::Receive, e))?;
        let envelope = buf
            .get(..n)
            .ok_or(Error::Io(Step::Receive, IoError::TooLarge))?;
        Ok(Self { envelope })
    }

    /// An envelope the caller already holds (a bundle, a push).
    pub fn new(envelope: &'e [u8]) -> Self {
        Self { envelope }
    }

    /// The envelope bytes.
    pub fn envelope(&self) -> &'e [u8] {
        self.envelope
    }

    /// Authenticates the envelope and decides, before any payload byte is requested, whether
    /// the device will take it: signature and digest (manifest §6.2), sequence number above
    /// the installed one, every component one the device has, the vendor, class and device
    /// conditions, the slot image against the slot's capacity, and a decryption key for every
    /// encrypted payload.
    ///
    /// # Errors
    /// [`Error::Refused`] with the reason; [`Error::Io`] if the slots cannot be read.
    pub fn authenticate<S: Slots>(
        self,
        device: &Device<'_>,
        slots: &mut S,
    ) -> Result<Authenticated<'e>, Error> {
        let io = |e| Error::Io(Step::Authenticate, e);
        // The one signature check of every chain (the Linux agent's too): `Offer::verify`.
        let manifest = *self
            .verify(device.anchors, &device.policy, |_| None)
            .map_err(Refusal::Unauthenticated)?
            .manifest();
        let installed = slots.installed_sequence().map_err(io)?;
        let offered = manifest.sequence_number();
        if offered <= installed {
            return Err(Refusal::Rollback { installed, offered }.into());
        }
        let roles = Roles::of(&manifest, &device.component)?;
        let image_len = check::check(device, &manifest, &roles)?;
        let capacity = slots.capacity().map_err(io)?;
        let layout = Layout::new(self.envelope.len(), image_len).ok_or(Refusal::TooLarge {
            size: image_len,
            capacity,
        })?;
        if layout.slot_len > capacity {
            return Err(Refusal::TooLarge {
                size: layout.slot_len,
                capacity,
            }
            .into());
        }
        Ok(Authenticated {
            manifest,
            envelope: self.envelope,
            roles,
            layout,
            installed,
            durable: 0,
        })
    }
}

/// An authentic manifest that this device will take: every check that can be made before
/// downloading has passed. Only [`Offer::authenticate`] makes one.
#[derive(Debug)]
pub struct Authenticated<'e> {
    manifest: VerifiedManifest<'e>,
    envelope: &'e [u8],
    roles: Roles,
    layout: Layout,
    installed: u64,
    /// Slot bytes already written before a restart ([`resume`]).
    durable: u64,
}

impl<'e> Authenticated<'e> {
    /// The authenticated manifest.
    pub fn manifest(&self) -> &VerifiedManifest<'e> {
        &self.manifest
    }

    /// The image's declared size.
    pub fn image_len(&self) -> u64 {
        self.layout.image_len
    }

    /// Bytes of the slot image already written before a restart (0 for a new update).
    pub fn resumed_at(&self) -> u64 {
        self.durable
    }

    /// Writes the slot header and envelope into the slot not in use, then runs the manifest's
    /// update sections up to install (manifest §6.7): the processor fetches the payload block
    /// by block from the transport, decrypts and patches it as the manifest says, and writes
    /// it into the slot; the journal records each block. The install section's own conditions
    /// (image-match) run here too.
    ///
    /// # Errors
    /// [`Error::Io`] for transport, flash or journal failures, [`Error::Processing`] for what
    /// the processor refused, [`Error::NotInstalled`].
    pub fn fetch<T: Transport, S: Slots, J: Journal>(
        self,
        device: &Device<'_>,
        transport: &mut T,
        slots: &mut S,
        journal: &mut J,
    ) -> Result<Fetched<'e>, Error> {
        let len = self.layout.slot_len;
        if self.durable == 0 {
            slots.begin(len).map_err(|e| Error::Io(Step::Fetch, e))?;
            journal
                .store(Some(Progress::Fetching { len, written: 0 }))
                .map_err(|e| Error::Io(Step::Journal, e))?;
        } else {
            slots.resume(len).map_err(|e| Error::Io(Step::Fetch, e))?;
        }
        let mut pipeline = Pipeline::new(
            device,
            Some(transport),
            slots,
            Some(journal),
            self.roles,
            self.layout,
        );
        pipeline.durable = self.durable;
        pipeline.put_prefix(self.envelope)?;
        let result = run(
            &self.manifest,
            &mut pipeline,
            self.installed,
            &[
                Section::DependencyResolution,
                Section::PayloadFetch,
                Section::CandidateVerification,
                Section::Install,
            ],
            self.roles.image,
        );
        finish(&mut pipeline, result)?;
        if !pipeline.image_written() {
            return Err(Error::NotInstalled);
        }
        Ok(Fetched {
            manifest: self.manifest,
            roles: self.roles,
            layout: self.layout,
            installed: self.installed,
            blocks: pipeline.blocks,
        })
    }
}

/// Runs `sections` in order; returns the image digest the manifest set for component
/// `image`, or the processor's error.
fn run<'e, T: Transport, S: Slots, J: Journal>(
    manifest: &VerifiedManifest<'e>,
    pipeline: &mut Pipeline<'_, T, S, J>,
    installed: u64,
    sections: &[Section],
    image: usize,
) -> Result<Option<SuitDigest<'e>>, suitcase_manifest::Error> {
    let policy = ProcessorPolicy {
        installed_sequence: Some(installed),
        allow_same_sequence: false,
    };
    let mut processor = Processor::new(manifest, pipeline, policy)?;
    for &section in sections {
        processor.run(section)?;
    }
    Ok(processor.parameters(image).and_then(|p| p.image_digest))
}

/// The platform's own error explains a processor error better than the processor can.
fn finish<T, S, J, R>(
    pipeline: &mut Pipeline<'_, T, S, J>,
    result: Result<R, suitcase_manifest::Error>,
) -> Result<R, Error> {
    match (result, pipeline.error.take()) {
        (Ok(r), None) => Ok(r),
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(Error::Processing(e)),
    }
}

/// The install section has run: the payload is in the slot, unverified as read back.
#[derive(Debug)]
pub struct Fetched<'e> {
    manifest: VerifiedManifest<'e>,
    roles: Roles,
    layout: Layout,
    installed: u64,
    blocks: u64,
}

impl<'e> Fetched<'e> {
    /// Payload blocks requested from the transport.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Reads the image back from the slot and runs the manifest's validate section on it
    /// (manifest §7.2: image-match against the digest the authenticated manifest commits
    /// to). Only then does a [`VerifiedCandidates`] exist.
    ///
    /// # Errors
    /// [`Error::Processing`] on a mismatch, [`Error::NotVerified`] if the validate section
    /// does not match the image, [`Error::Io`] for flash errors.
    pub fn verify<S: Slots>(
        self,
        device: &Device<'_>,
        slots: &mut S,
    ) -> Result<VerifiedCandidates<'e>, Error> {
        verify(
            self.manifest,
            device,
            slots,
            self.roles,
            self.layout,
            self.installed,
        )
    }
}

fn verify<'e, S: Slots>(
    manifest: VerifiedManifest<'e>,
    device: &Device<'_>,
    slots: &mut S,
    roles: Roles,
    layout: Layout,
    installed: u64,
) -> Result<VerifiedCandidates<'e>, Error> {
    let mut pipeline: Pipeline<'_, NoTransport, S, NoJournal> =
        Pipeline::new(device, None, slots, None, roles, layout).written();
    let result = run(
        &manifest,
        &mut pipeline,
        installed,
        &[Section::Validate],
        roles.image,
    );
    let digest = finish(&mut pipeline, result)?;
    if !pipeline.matched {
        return Err(Error::NotVerified);
    }
    let digest = digest.ok_or(Error::NotVerified)?;
    Ok(VerifiedCandidates {
        manifest,
        layout,
        digest,
    })
}

/// The image in the slot matches the digest the authenticated manifest commits to, as read
/// back from the flash. Only [`Fetched::verify`] (or [`resume`], through it) makes one; it is
/// what staging takes.
#[derive(Debug)]
pub struct VerifiedCandidates<'e> {
    manifest: VerifiedManifest<'e>,
    layout: Layout,
    digest: SuitDigest<'e>,
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
    manifest: VerifiedManifest<'e>,
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
    /// a real MCU the reset does not return, and [`resume`] continues from there.
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
    manifest: VerifiedManifest<'e>,
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

/// Where [`resume`] re-entered the chain.
#[derive(Debug)]
pub enum Resumed<'e> {
    /// No update was in progress.
    Idle,
    /// The journal named an update whose envelope is not (wholly) in the slot yet: receive
    /// the offer again.
    Restart,
    /// A download was cut short; fetching continues after the durable blocks.
    Fetching(Authenticated<'e>),
    /// The update was staged and is still pending.
    Staged(Staged<'e>),
    /// The device reset into the new image, which runs on trial.
    Activated(Activated<'e>),
    /// The device reset, and the bootloader refused or reverted the new image: the previous
    /// image runs and the journal is cleared.
    Reverted,
}

/// Re-enters the typestate after a restart. Whatever the journal says, the envelope is read
/// from the slot into `buf` and goes through [`Offer::authenticate`] again; the journal only
/// says which state to rebuild, never that anything is authentic.
///
/// # Errors
/// [`Error::Refused`] if the stored envelope no longer passes (the journal is then cleared),
/// [`Error::Io`], or what [`Fetched::verify`] says for a staged image.
pub fn resume<'e, S: Slots, J: Journal>(
    device: &Device<'_>,
    slots: &mut S,
    journal: &mut J,
    buf: &'e mut [u8],
) -> Result<Resumed<'e>, Error> {
    let jio = |e| Error::Io(Step::Journal, e);
    let Some(progress) = journal.load().map_err(jio)? else {
        return Ok(Resumed::Idle);
    };
    let role = match progress {
        Progress::Activated => {
            if !slots.on_trial().map_err(|e| Error::Io(Step::Activate, e))? {
                journal.store(None).map_err(jio)?;
                return Ok(Resumed::Reverted);
            }
            SlotRole::Running
        }
        Progress::Fetching { .. } | Progress::Staged => SlotRole::Update,
    };
    let Some(envelope) = stored_envelope(slots, role, buf)? else {
        journal.store(None).map_err(jio)?;
        return Ok(Resumed::Restart);
    };
    let mut authenticated = match Offer::new(envelope).authenticate(device, slots) {
        Ok(a) => a,
        Err(e) => {
            journal.store(None).map_err(jio)?;
            return Err(e);
        }
    };
    match progress {
        Progress::Fetching { len, written } => {
            if len != authenticated.layout.slot_len
                || written < u64::from(authenticated.layout.image_offset)
            {
                journal.store(None).map_err(jio)?;
                return Ok(Resumed::Restart);
            }
            // The journal is written after each block; a cut between the two leaves one block
            // written that the journal does not count. It cannot be written again without an
            // erase, so then the download starts over.
            authenticated.durable = if written >= len || block_erased(slots, written)? {
                written
            } else {
                0
            };
            Ok(Resumed::Fetching(authenticated))
        }
        Progress::Staged => {
            let candidates = verify(
                authenticated.manifest,
                device,
                slots,
                authenticated.roles,
                authenticated.layout,
                authenticated.installed,
            )?;
            Ok(Resumed::Staged(Staged {
                manifest: candidates.manifest,
            }))
        }
        Progress::Activated => Ok(Resumed::Activated(Activated {
            manifest: authenticated.manifest,
        })),
    }
}

/// Reads the envelope of the slot image in `role` into `buf`.
fn stored_envelope<'e, S: Slots>(
    slots: &mut S,
    role: SlotRole,
    buf: &'e mut [u8],
) -> Result<Option<&'e [u8]>, Error> {
    let io = |e| Error::Io(Step::Verify, e);
    let mut raw = [0u8; HEADER_SIZE as usize];
    slots.read(role, 0, &mut raw).map_err(io)?;
    let Some(header) = SlotHeader::parse(&raw).ok().flatten() else {
        return Ok(None);
    };
    let Some(dst) = usize::try_from(header.envelope_len)
        .ok()
        .and_then(|n| buf.get_mut(..n))
    else {
        return Ok(None);
    };
    slots.read(role, u64::from(HEADER_SIZE), dst).map_err(io)?;
    Ok(Some(dst))
}

fn block_erased<S: Slots>(slots: &mut S, at: u64) -> Result<bool, Error> {
    let mut block = [0u8; BLOCK];
    slots
        .read(SlotRole::Update, at, &mut block)
        .map_err(|e| Error::Io(Step::Verify, e))?;
    Ok(block.iter().all(|b| *b == 0xFF))
}

/// No transport: reading back never requests a payload.
struct NoTransport;

impl Transport for NoTransport {
    fn envelope(&mut self, _: &mut [u8]) -> Result<usize, IoError> {
        Err(IoError::Failed)
    }
    fn payload(&mut self, _: &str, _: u64, _: &mut [u8]) -> Result<usize, IoError> {
        Err(IoError::Failed)
    }
}

/// No journal: reading back records nothing.
struct NoJournal;

impl Journal for NoJournal {
    fn load(&mut self) -> Result<Option<Progress>, IoError> {
        Ok(None)
    }
    fn store(&mut self, _: Option<Progress>) -> Result<(), IoError> {
        Ok(())
    }
}

//! The first two states: the [`Offer`] (envelope bytes, nothing in them trusted) and the
//! [`Authenticated`] manifest the device will take, which fetches the payload into the slot.

use suitcase_manifest::{Section, VerifiedManifest};

use super::check::{self, Roles};
use super::fetched::{Fetched, finish, run};
use super::io::{IoError, Journal, Progress, Slots, Transport};
use super::pipeline::Pipeline;
use super::{Device, Error, Layout, Refusal, Step};

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
        let layout = Layout::new(self.envelope.len(), image_len, slots.min_image_offset()).ok_or(
            Refusal::TooLarge {
                size: image_len,
                capacity,
            },
        )?;
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
    pub(super) manifest: VerifiedManifest<'e>,
    envelope: &'e [u8],
    pub(super) roles: Roles,
    pub(super) layout: Layout,
    pub(super) installed: u64,
    /// Slot bytes already written before a restart ([`super::resume`]).
    pub(super) durable: u64,
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

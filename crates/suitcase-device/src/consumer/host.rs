//! The chain for a device whose components the caller routes (the Linux agent: several
//! components, file slots, update modules, payloads downloaded to files first):
//!
//! ```text
//! Offer ──verify(anchors, policy, installed)──▶ Authentic ──image_match(platform)──▶ Matched<C>
//!        manifest §6.2: digest and signature      every processor it builds      every component
//!        before parsing anything else             enforces anti-rollback         the caller installs
//!                                                 (manifest §8.4.3)              image-matched
//! ```
//!
//! [`Offer::verify`] is the signature check [`Offer::authenticate`] makes too; what the
//! one-image MCU chain decides from its slot layout (components, identity, sizes, keys) the
//! caller decides with its own platform in [`Authentic::run`]. [`Authentic::image_match`] runs
//! sections over the caller's [`Platform`] and records, per component, whether an image-match
//! condition (manifest §8.4.9.2) accepted its current content; new content forgets the match.
//! Only then does it take the caller's candidates out of that platform into a [`Matched`],
//! which only it makes.

use suitcase_manifest::encryption::EncryptionInfo;
use suitcase_manifest::{
    Command, Component, Condition, CustomArg, FetchRequest, Identifier, IdentityKind,
    MAX_COMPONENTS, Platform, PlatformError, Processor, ProcessorPolicy, Record, Section,
    TrustAnchor, TrustPolicy, VerifiedManifest,
};

use super::Offer;

impl<'e> Offer<'e> {
    /// Authenticates the envelope (manifest §6.2: digest and signatures against `anchors` under
    /// `policy`, before anything else in it is parsed); `installed` gives the sequence number
    /// installed for the manifest's components, which every processor built from the result
    /// must exceed.
    ///
    /// # Errors
    /// What [`suitcase_manifest::Envelope::verify`] refuses.
    pub fn verify(
        self,
        anchors: &[TrustAnchor<'_>],
        policy: &TrustPolicy<'_>,
        installed: impl FnOnce(&VerifiedManifest<'e>) -> Option<u64>,
    ) -> Result<Authentic<'e>, suitcase_manifest::Error> {
        let manifest = self.verified(anchors, policy)?;
        let installed = installed(&manifest);
        Ok(Authentic {
            envelope: self.envelope,
            manifest,
            installed,
        })
    }
}

/// An authentic envelope and the installed sequence number it must exceed. Only
/// [`Offer::verify`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Authentic<'e> {
    envelope: &'e [u8],
    manifest: VerifiedManifest<'e>,
    installed: Option<u64>,
}

/// Why [`Authentic::image_match`] made no [`Matched`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchError {
    /// The processor refused (a failed condition, a platform error, a rollback).
    Processing(suitcase_manifest::Error),
    /// None of the sections is in the manifest, so nothing matched component `index`, which
    /// is to be installed.
    NotRun {
        /// Its index in the manifest.
        index: usize,
    },
    /// Component `index` is to be installed but no image-match accepted its content.
    Unmatched {
        /// Its index in the manifest.
        index: usize,
    },
}

impl<'e> Authentic<'e> {
    /// The envelope's bytes.
    pub fn envelope(&self) -> &'e [u8] {
        self.envelope
    }

    /// The authenticated manifest.
    pub fn manifest(&self) -> &VerifiedManifest<'e> {
        &self.manifest
    }

    /// The installed sequence number the manifest's must exceed.
    pub fn installed(&self) -> Option<u64> {
        self.installed
    }

    fn policy(&self) -> ProcessorPolicy {
        ProcessorPolicy {
            installed_sequence: self.installed,
            allow_same_sequence: false,
        }
    }

    /// Runs `sections` in order on `platform`, anti-rollback enforced; whether any of them is
    /// in the manifest.
    ///
    /// # Errors
    /// What the processor refuses.
    pub fn run<P: Platform>(
        &self,
        platform: &mut P,
        sections: &[Section],
    ) -> Result<bool, suitcase_manifest::Error> {
        let mut processor = Processor::new(&self.manifest, platform, self.policy())?;
        let mut ran = false;
        for &section in sections {
            ran |= processor.run(section)?;
        }
        Ok(ran)
    }

    /// Runs `sections` on `platform` and then requires an image-match (manifest §8.4.9.2) of
    /// the current content of every component `index` for which `install(platform, index)`
    /// holds; then takes the candidates out of the platform with `take`.
    ///
    /// # Errors
    /// [`MatchError`].
    pub fn image_match<P: Platform, C>(
        &self,
        platform: &mut P,
        sections: &[Section],
        install: impl Fn(&P, usize) -> bool,
        take: impl FnOnce(&P) -> C,
    ) -> Result<Matched<'e, C>, MatchError> {
        let mut recording = Recording {
            inner: platform,
            matched: [false; MAX_COMPONENTS],
        };
        let ran = self
            .run(&mut recording, sections)
            .map_err(MatchError::Processing)?;
        let Recording { inner, matched } = recording;
        let components = self.manifest.manifest().components.len();
        if let Some(index) = (0..components)
            .find(|&i| install(inner, i) && !matched.get(i).copied().unwrap_or(false))
        {
            return Err(if ran {
                MatchError::Unmatched { index }
            } else {
                MatchError::NotRun { index }
            });
        }
        Ok(Matched {
            envelope: self.envelope,
            manifest: self.manifest,
            ran,
            candidates: take(inner),
        })
    }
}

/// Candidates `C` whose every image to install an image-match of an authentic manifest
/// accepted. Only [`Authentic::image_match`] makes one.
#[derive(Debug)]
pub struct Matched<'e, C> {
    envelope: &'e [u8],
    manifest: VerifiedManifest<'e>,
    ran: bool,
    candidates: C,
}

impl<'e, C> Matched<'e, C> {
    /// The authentic envelope (a slot image carries it).
    pub fn envelope(&self) -> &'e [u8] {
        self.envelope
    }

    /// Its manifest.
    pub fn manifest(&self) -> &VerifiedManifest<'e> {
        &self.manifest
    }

    /// Whether any of the sections was in the manifest.
    pub fn ran(&self) -> bool {
        self.ran
    }

    /// The candidates.
    pub fn candidates(&self) -> &C {
        &self.candidates
    }
}

/// The caller's platform, recording which components' current content an image-match
/// accepted.
struct Recording<'p, P> {
    inner: &'p mut P,
    matched: [bool; MAX_COMPONENTS],
}

impl<P> Recording<'_, P> {
    /// New content for a component forgets its match.
    fn forget(&mut self, index: usize) {
        if let Some(m) = self.matched.get_mut(index) {
            *m = false;
        }
    }
}

impl<P: Platform> Platform for Recording<'_, P> {
    fn capacity(&self, component: &Component<'_>) -> Option<u64> {
        self.inner.capacity(component)
    }
    fn identity(&self, component: &Component<'_>, kind: IdentityKind) -> Option<Identifier<'_>> {
        self.inner.identity(component, kind)
    }
    fn read(
        &mut self,
        c: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        self.inner.read(c, offset, buf)
    }
    fn write_begin(&mut self, c: &Component<'_>, size: Option<u64>) -> Result<(), PlatformError> {
        self.forget(c.index);
        self.inner.write_begin(c, size)
    }
    fn write(&mut self, c: &Component<'_>, offset: u64, data: &[u8]) -> Result<(), PlatformError> {
        self.forget(c.index);
        self.inner.write(c, offset, data)
    }
    fn write_end(&mut self, c: &Component<'_>) -> Result<(), PlatformError> {
        self.forget(c.index);
        self.inner.write_end(c)
    }
    fn read_staged(
        &mut self,
        c: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        self.inner.read_staged(c, offset, buf)
    }
    fn slot(&self, c: &Component<'_>) -> Option<u64> {
        self.inner.slot(c)
    }
    fn fetch(
        &mut self,
        c: &Component<'_>,
        request: &FetchRequest<'_>,
    ) -> Result<(), PlatformError> {
        self.forget(c.index);
        self.inner.fetch(c, request)
    }
    fn swap(&mut self, a: &Component<'_>, b: &Component<'_>) -> Result<(), PlatformError> {
        self.forget(a.index);
        self.forget(b.index);
        self.inner.swap(a, b)
    }
    fn invoke(&mut self, c: &Component<'_>, args: Option<&[u8]>) -> Result<(), PlatformError> {
        self.inner.invoke(c, args)
    }
    fn now(&self) -> Option<u64> {
        self.inner.now()
    }
    fn battery_mwh(&self) -> Option<u64> {
        self.inner.battery_mwh()
    }
    fn authorize(&mut self, priority: Option<i64>) -> Result<bool, PlatformError> {
        self.inner.authorize(priority)
    }
    fn version(&self, c: &Component<'_>) -> Option<&[i64]> {
        self.inner.version(c)
    }
    fn wait(&mut self, c: &Component<'_>, wait_info: &[u8]) -> Result<(), PlatformError> {
        self.inner.wait(c, wait_info)
    }
    fn custom(
        &mut self,
        c: &Component<'_>,
        id: i64,
        arg: CustomArg<'_>,
    ) -> Result<bool, PlatformError> {
        self.inner.custom(c, id, arg)
    }
    fn content_key(
        &mut self,
        info: &EncryptionInfo<'_>,
        cek: &mut [u8; 32],
    ) -> Result<usize, PlatformError> {
        self.inner.content_key(info, cek)
    }
    fn record(&mut self, record: &Record<'_>) {
        if record.success
            && matches!(record.command, Command::Condition(Condition::ImageMatch, _))
            && let Some(m) = self.matched.get_mut(record.component)
        {
            *m = true;
        }
        self.inner.record(record);
    }
}

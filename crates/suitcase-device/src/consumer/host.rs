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
//! [`Offer::verify`] is the signature check [`Offer::authenticate`] (and so [`super::resume`])
//! makes too; what the
//! one-image MCU chain decides from its slot layout (components, identity, sizes, keys) the
//! caller decides with its own platform in [`Authentic::run`]. [`Authentic::image_match`] runs
//! sections over the caller's [`Platform`] and records, per component, whether an image-match
//! condition (manifest §8.4.9.2) accepted its current content; new content forgets the match.
//! Only then does it take the caller's candidates out of that platform into a [`Matched`],
//! which only it makes.

use suitcase_manifest::encryption::EncryptionInfo;
use suitcase_manifest::{
    Command, Component, ComponentId, Condition, CustomArg, DependencyFailure, Envelope,
    FetchRequest, Identifier, IdentityKind, MAX_COMPONENTS, Platform, PlatformError, Processor,
    ProcessorPolicy, Record, Section, TrustAnchor, TrustPolicy, VerifiedManifest,
};

use super::Offer;

impl<'e> Offer<'e> {
    /// Authenticates the envelope (manifest §6.2: digest and signatures against `anchors` under
    /// `policy`, before anything else in it is parsed): the one signature check of every chain,
    /// [`Offer::authenticate`] and [`super::resume`] included; `installed` gives the sequence number
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
        let envelope = self.envelope();
        let manifest = Envelope::decode(envelope).and_then(|e| e.verify(anchors, policy))?;
        let installed = installed(&manifest);
        Ok(Authentic {
            envelope,
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

/// The anchors and policy a dependency is authenticated under
/// ([`Authentic::run_with_dependencies`]): usually the device's anchors, whose permissions keep
/// each signer to its own components (manifest §9).
#[derive(Clone, Copy, Debug)]
pub struct DependencyTrust<'a> {
    /// The anchors.
    pub anchors: &'a [TrustAnchor<'a>],
    /// The policy.
    pub policy: TrustPolicy<'a>,
    /// What the device refuses in any dependency, as in a release (e.g.
    /// `suitcase_trust::names_trust_store`): the dependency is authenticated with its own
    /// signers (trust-domains §5.1), so the release's own checks are not made on it otherwise.
    pub refuse: Option<fn(&VerifiedManifest<'_>) -> bool>,
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

    /// As [`Authentic::run`], for a manifest with SUIT dependencies
    /// (draft-ietf-suit-trust-domains): each dependency is authenticated under `trust` with
    /// its own signers and their permissions before any of its commands runs; `buffer` holds
    /// dependencies fetched by URI (integrated ones are used in the envelope). A refused
    /// dependency is named with the clause in the second value.
    ///
    /// # Errors
    /// What the processor refuses, with [`suitcase_manifest::DependencyFailure`] when a
    /// dependency was the cause.
    pub fn run_with_dependencies<'a, P: Platform>(
        &'a self,
        platform: &mut P,
        sections: &[Section],
        trust: DependencyTrust<'a>,
        buffer: &'a mut [u8],
    ) -> Result<bool, (suitcase_manifest::Error, Option<DependencyFailure>)> {
        let mut processor = Processor::new(&self.manifest, platform, self.policy())
            .map_err(|e| (e, None))?
            .with_dependency_trust(trust.anchors, trust.policy)
            .with_dependency_buffer(buffer);
        if let Some(refuse) = trust.refuse {
            processor = processor.with_dependency_rule(refuse);
        }
        let mut ran = false;
        for &section in sections {
            ran |= processor
                .run(section)
                .map_err(|e| (e, processor.dependency_failure()))?;
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
        let mut recording = Recording::new(platform, None);
        let ran = self
            .run(&mut recording, sections)
            .map_err(MatchError::Processing)?;
        let Recording { inner, matched, .. } = recording;
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

    /// As [`Authentic::run_with_dependencies`], with the components of the manifest and of its
    /// dependencies given to `platform` under one index each: their position in `components`,
    /// which the caller lists by identifier (a root manifest's own indices first, so they keep
    /// their index). Trust-domains §5.4 shares a component between a dependent and its
    /// dependency by identifier; a dependency's indices are its own, so without this a
    /// platform keyed by index would take the dependency's component 0 for the root's. A
    /// component not in `components` has no capacity (the processor refuses the manifest
    /// naming it, manifest §6.1) and no storage.
    ///
    /// # Errors
    /// As [`Authentic::run_with_dependencies`]; [`suitcase_manifest::Error::TooManyComponents`]
    /// if `components` lists more than [`MAX_FLAT_COMPONENTS`].
    pub fn run_flat<'a, P: Platform>(
        &'a self,
        platform: &mut P,
        sections: &[Section],
        trust: DependencyTrust<'a>,
        buffer: &'a mut [u8],
        components: &[ComponentId<'_>],
    ) -> Result<bool, (suitcase_manifest::Error, Option<DependencyFailure>)> {
        let mut flat = Flat::new(platform, components).map_err(|e| (e, None))?;
        self.run_with_dependencies(&mut flat, sections, trust, buffer)
    }

    /// [`Authentic::image_match`] for a manifest with SUIT dependencies
    /// (draft-ietf-suit-trust-domains): the sections run as in [`Authentic::run_flat`], and an
    /// image-match (manifest §8.4.9.2) by the root or by a dependency counts for the component
    /// it names, by identifier: the author's image-match in the author's dependency, under the
    /// author's digest, is what accepts the author's image. `install` and `take` see indices
    /// into `components`. New content (a write, fetch or swap, by either manifest) forgets a
    /// match. A refused dependency is named in the second value.
    ///
    /// # Errors
    /// [`MatchError`], and the [`DependencyFailure`] when a dependency was the cause.
    #[expect(
        clippy::too_many_arguments,
        reason = "the run's inputs and the caller's two views of its platform"
    )]
    pub fn image_match_with_dependencies<'a, P: Platform, C>(
        &'a self,
        platform: &mut P,
        sections: &[Section],
        trust: DependencyTrust<'a>,
        buffer: &'a mut [u8],
        components: &[ComponentId<'_>],
        install: impl Fn(&P, usize) -> bool,
        take: impl FnOnce(&P) -> C,
    ) -> Result<Matched<'e, C>, (MatchError, Option<DependencyFailure>)> {
        let mut flat =
            Flat::new(platform, components).map_err(|e| (MatchError::Processing(e), None))?;
        let ran = self
            .run_with_dependencies(&mut flat, sections, trust, buffer)
            .map_err(|(e, f)| (MatchError::Processing(e), f))?;
        let Flat { inner, matched, .. } = flat;
        if let Some(index) = (0..components.len())
            .find(|&i| install(inner, i) && !matched.get(i).copied().unwrap_or(false))
        {
            return Err((
                if ran {
                    MatchError::Unmatched { index }
                } else {
                    MatchError::NotRun { index }
                },
                None,
            ));
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
/// (manifest §8.4.9.2) accepted: the one image-match tracking of both chains,
/// [`Authentic::image_match`] and the one-image chain's [`super::Fetched::verify`].
pub(super) struct Recording<'p, P> {
    inner: &'p mut P,
    /// Only matches in this section count; `None`: any, the shared sequence included.
    only: Option<Section>,
    matched: [bool; MAX_COMPONENTS],
}

impl<'p, P> Recording<'p, P> {
    /// Records image-matches on `inner`, those in section `only` if it is given.
    pub(super) fn new(inner: &'p mut P, only: Option<Section>) -> Self {
        Self {
            inner,
            only,
            matched: [false; MAX_COMPONENTS],
        }
    }

    /// Whether an image-match accepted the current content of component `index`.
    pub(super) fn matched(&self, index: usize) -> bool {
        self.matched.get(index).copied().unwrap_or(false)
    }

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
        // Only the manifest's own commands: a dependency's component indices are its own
        // (trust-domains), so its matches say nothing about this manifest's components.
        if record.success
            && record.depth == 0
            && matches!(record.command, Command::Condition(Condition::ImageMatch, _))
            && self.only.is_none_or(|s| record.section == Some(s))
            && let Some(m) = self.matched.get_mut(record.component)
        {
            *m = true;
        }
        self.inner.record(record);
    }
}

/// The most components [`Authentic::run_flat`] and [`Authentic::image_match_with_dependencies`]
/// index across a root manifest and its dependencies.
pub const MAX_FLAT_COMPONENTS: usize = 2 * MAX_COMPONENTS;

/// The caller's platform, seeing the components of a manifest and its dependencies under one
/// index each (their position in `ids`), and recording which ones an image-match accepted, by
/// the identifier the processor's record names. A match counts only from the manifest depth
/// that last wrote the component (fetch, write, copy, swap; trust-domains §5.1: each manifest
/// acts under its own signers, whose INSTALL permission the processor checked for that
/// write): a dependency's image-match is its signer's check of its own component, and a root
/// cannot vouch with its own digest for what the author's manifest wrote (or left open).
struct Flat<'p, 'c, P> {
    inner: &'p mut P,
    ids: &'c [ComponentId<'c>],
    matched: [bool; MAX_FLAT_COMPONENTS],
    /// The depth of the manifest that last wrote each component in this run.
    writer: [Option<usize>; MAX_FLAT_COMPONENTS],
}

impl<'p, 'c, P> Flat<'p, 'c, P> {
    fn new(inner: &'p mut P, ids: &'c [ComponentId<'c>]) -> Result<Self, suitcase_manifest::Error> {
        if ids.len() > MAX_FLAT_COMPONENTS {
            return Err(suitcase_manifest::Error::TooManyComponents {
                manifest: ids.len(),
                limit: MAX_FLAT_COMPONENTS,
            });
        }
        Ok(Self {
            inner,
            ids,
            matched: [false; MAX_FLAT_COMPONENTS],
            writer: [None; MAX_FLAT_COMPONENTS],
        })
    }

    fn position(&self, id: &ComponentId<'_>) -> Option<usize> {
        self.ids.iter().position(|x| x.as_cbor() == id.as_cbor())
    }

    /// `c` under its flat index; a component not listed has no storage.
    fn flat<'x>(&self, c: &Component<'x>) -> Result<Component<'x>, PlatformError> {
        self.position(&c.id)
            .map(|index| Component { index, id: c.id })
            .ok_or(PlatformError::Failed)
    }

    fn forget(&mut self, index: usize) {
        if let Some(m) = self.matched.get_mut(index) {
            *m = false;
        }
    }
}

impl<P: Platform> Platform for Flat<'_, '_, P> {
    fn capacity(&self, component: &Component<'_>) -> Option<u64> {
        self.inner.capacity(&self.flat(component).ok()?)
    }
    fn identity(&self, component: &Component<'_>, kind: IdentityKind) -> Option<Identifier<'_>> {
        let c = self.flat(component).ok()?;
        self.inner.identity(&c, kind)
    }
    fn read(
        &mut self,
        c: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        let c = self.flat(c)?;
        self.inner.read(&c, offset, buf)
    }
    fn write_begin(&mut self, c: &Component<'_>, size: Option<u64>) -> Result<(), PlatformError> {
        let c = self.flat(c)?;
        self.forget(c.index);
        self.inner.write_begin(&c, size)
    }
    fn write(&mut self, c: &Component<'_>, offset: u64, data: &[u8]) -> Result<(), PlatformError> {
        let c = self.flat(c)?;
        self.forget(c.index);
        self.inner.write(&c, offset, data)
    }
    fn write_end(&mut self, c: &Component<'_>) -> Result<(), PlatformError> {
        let c = self.flat(c)?;
        self.forget(c.index);
        self.inner.write_end(&c)
    }
    fn read_staged(
        &mut self,
        c: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        let c = self.flat(c)?;
        self.inner.read_staged(&c, offset, buf)
    }
    fn slot(&self, c: &Component<'_>) -> Option<u64> {
        self.inner.slot(&self.flat(c).ok()?)
    }
    fn fetch(
        &mut self,
        c: &Component<'_>,
        request: &FetchRequest<'_>,
    ) -> Result<(), PlatformError> {
        let c = self.flat(c)?;
        self.forget(c.index);
        self.inner.fetch(&c, request)
    }
    fn swap(&mut self, a: &Component<'_>, b: &Component<'_>) -> Result<(), PlatformError> {
        let (a, b) = (self.flat(a)?, self.flat(b)?);
        self.forget(a.index);
        self.forget(b.index);
        self.inner.swap(&a, &b)
    }
    fn invoke(&mut self, c: &Component<'_>, args: Option<&[u8]>) -> Result<(), PlatformError> {
        let c = self.flat(c)?;
        self.inner.invoke(&c, args)
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
        self.inner.version(&self.flat(c).ok()?)
    }
    fn wait(&mut self, c: &Component<'_>, wait_info: &[u8]) -> Result<(), PlatformError> {
        let c = self.flat(c)?;
        self.inner.wait(&c, wait_info)
    }
    fn custom(
        &mut self,
        c: &Component<'_>,
        id: i64,
        arg: CustomArg<'_>,
    ) -> Result<bool, PlatformError> {
        let c = self.flat(c)?;
        self.inner.custom(&c, id, arg)
    }
    fn content_key(
        &mut self,
        info: &EncryptionInfo<'_>,
        cek: &mut [u8; 32],
    ) -> Result<usize, PlatformError> {
        self.inner.content_key(info, cek)
    }
    fn record(&mut self, record: &Record<'_>) {
        let flat = record.id.and_then(|id| self.position(&id));
        if record.success
            && matches!(
                record.command,
                Command::Directive(
                    suitcase_manifest::Directive::Fetch
                        | suitcase_manifest::Directive::Write
                        | suitcase_manifest::Directive::Copy
                        | suitcase_manifest::Directive::Swap,
                    _
                )
            )
            && let Some(w) = flat.and_then(|i| self.writer.get_mut(i))
        {
            *w = Some(record.depth);
        }
        // Not written in this run (content the platform already held): any depth's match,
        // as before.
        let by_writer = flat
            .and_then(|i| self.writer.get(i).copied().flatten())
            .is_none_or(|w| w == record.depth);
        if record.success
            && by_writer
            && matches!(record.command, Command::Condition(Condition::ImageMatch, _))
            && let Some(m) = flat.and_then(|i| self.matched.get_mut(i))
        {
            *m = true;
        }
        self.inner.record(&Record {
            component: flat.unwrap_or(record.component),
            ..*record
        });
    }
}

#[cfg(test)]
pub(super) mod tests {
    extern crate alloc;

    use alloc::vec;
    use alloc::vec::Vec;

    use ed25519_dalek::Signer as _;
    use suitcase_manifest::build::{Cmd, EnvelopeBuilder, Index, ManifestBuilder, Param};
    use suitcase_manifest::codepoints::alg;
    use suitcase_manifest::{DigestAlgorithm, Directive, PublicKey};

    use super::*;

    const IMAGE: &[u8] = b"the image the manifest commits to";

    /// The author's key.
    pub(in crate::consumer) fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
    }

    /// An envelope signed with [`key`]: sequence number 5, one component `[name]`, these
    /// sequences (SHA-256).
    pub(in crate::consumer) fn signed(
        name: &[u8],
        shared: Vec<Cmd>,
        install: Vec<Cmd>,
        validate: Vec<Cmd>,
    ) -> Vec<u8> {
        let m = ManifestBuilder {
            sequence_number: 5,
            components: vec![vec![name.to_vec()]],
            shared_sequence: Some(shared),
            install: Some(install),
            validate: Some(validate),
            ..Default::default()
        };
        let mut b = EnvelopeBuilder::new(&m, DigestAlgorithm::Sha256);
        b.sign1(alg::ED25519, None, |tbs| {
            key().sign(tbs).to_bytes().to_vec()
        });
        b.encode()
    }

    /// Copies `src` from `at` into `buf`, as much as fits; the bytes copied.
    pub(in crate::consumer) fn read_at(src: &[u8], at: u64, buf: &mut [u8]) -> usize {
        let rest = src.get(usize::try_from(at).unwrap()..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap()
            .copy_from_slice(rest.get(..n).unwrap());
        n
    }

    /// An envelope for one component `["app"]` with `IMAGE`'s digest, these sections.
    fn envelope(install: Vec<Cmd>, validate: Vec<Cmd>) -> Vec<u8> {
        let sha = DigestAlgorithm::Sha256;
        let shared = vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::OverrideParameters(vec![
                Param::ImageDigest(sha, sha.digest(IMAGE).as_bytes().to_vec()),
                Param::ImageSize(IMAGE.len() as u64),
            ]),
        ];
        signed(b"app", shared, install, validate)
    }

    fn image_match() -> Vec<Cmd> {
        vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]
    }

    /// One component held in memory; a fetch replaces it with `fetched`.
    struct Memory {
        content: Vec<u8>,
        fetched: Vec<u8>,
    }

    impl Platform for Memory {
        fn capacity(&self, _: &Component<'_>) -> Option<u64> {
            Some(1 << 20)
        }
        fn identity(&self, _: &Component<'_>, _: IdentityKind) -> Option<Identifier<'_>> {
            None
        }
        fn read(
            &mut self,
            _: &Component<'_>,
            at: u64,
            buf: &mut [u8],
        ) -> Result<usize, PlatformError> {
            Ok(read_at(&self.content, at, buf))
        }
        fn write_begin(&mut self, _: &Component<'_>, _: Option<u64>) -> Result<(), PlatformError> {
            Err(PlatformError::Unsupported)
        }
        fn write(&mut self, _: &Component<'_>, _: u64, _: &[u8]) -> Result<(), PlatformError> {
            Err(PlatformError::Unsupported)
        }
        fn write_end(&mut self, _: &Component<'_>) -> Result<(), PlatformError> {
            Err(PlatformError::Unsupported)
        }
        fn fetch(&mut self, _: &Component<'_>, _: &FetchRequest<'_>) -> Result<(), PlatformError> {
            self.content = self.fetched.clone();
            Ok(())
        }
    }

    fn check(
        envelope: &[u8],
        installed: Option<u64>,
        content: &[u8],
        sections: &[Section],
    ) -> Result<Matched<'static, Vec<u8>>, MatchError> {
        let envelope: &'static [u8] = Vec::leak(envelope.to_vec());
        let anchors = [TrustAnchor::new(
            "author",
            PublicKey::Ed25519(key().verifying_key()),
        )];
        let a = Offer::new(envelope)
            .verify(&anchors, &TrustPolicy::default(), |_| installed)
            .unwrap();
        let mut p = Memory {
            content: content.to_vec(),
            fetched: b"other bytes".to_vec(),
        };
        a.image_match(
            &mut p,
            sections,
            |p, i| i == 0 && !p.content.is_empty(),
            |p| p.content.clone(),
        )
    }

    #[test]
    fn the_candidate_an_image_match_accepted_is_matched() {
        let e = envelope(image_match(), image_match());
        let m = check(&e, Some(4), IMAGE, &[Section::Validate]).unwrap();
        assert!(m.ran());
        assert_eq!(m.candidates(), IMAGE);
        assert_eq!(m.manifest().sequence_number(), 5);
    }

    #[test]
    fn attack_tampered_candidate_is_not_matched() {
        let e = envelope(image_match(), image_match());
        let err = check(&e, None, b"tampered", &[Section::Validate]).unwrap_err();
        assert!(matches!(err, MatchError::Processing(_)), "{err:?}");
    }

    #[test]
    fn attack_candidate_no_image_match_names_is_not_matched() {
        let e = envelope(image_match(), vec![Cmd::SetComponentIndex(Index::One(0))]);
        let err = check(&e, None, IMAGE, &[Section::Validate]).unwrap_err();
        assert_eq!(err, MatchError::Unmatched { index: 0 });
    }

    #[test]
    fn attack_content_replaced_after_its_match_is_not_matched() {
        let mut install = image_match();
        install.extend([
            Cmd::OverrideParameters(vec![Param::Uri("https://x/app".into())]),
            Cmd::Directive(Directive::Fetch, 2),
        ]);
        let e = envelope(install, image_match());
        let err = check(&e, None, IMAGE, &[Section::Install]).unwrap_err();
        assert_eq!(err, MatchError::Unmatched { index: 0 });
    }

    #[test]
    fn no_section_run_matches_nothing() {
        let e = envelope(image_match(), image_match());
        let err = check(&e, None, IMAGE, &[Section::DependencyResolution]).unwrap_err();
        assert_eq!(err, MatchError::NotRun { index: 0 });
    }

    #[test]
    fn attack_rollback_builds_no_processor() {
        let e = envelope(image_match(), image_match());
        let err = check(&e, Some(5), IMAGE, &[Section::Validate]).unwrap_err();
        assert!(
            matches!(
                err,
                MatchError::Processing(suitcase_manifest::Error::SequenceRollback { .. })
            ),
            "{err:?}"
        );
    }

    /// Components by identifier, written in memory.
    #[derive(Default)]
    struct Named {
        components: Vec<(Vec<u8>, Vec<u8>)>,
    }

    impl Named {
        fn slot(&mut self, c: &Component<'_>) -> Result<&mut Vec<u8>, PlatformError> {
            self.components
                .iter_mut()
                .find(|(id, _)| c.id.eq_segments(&[id]))
                .map(|(_, content)| content)
                .ok_or(PlatformError::Failed)
        }
    }

    impl Platform for Named {
        fn capacity(&self, c: &Component<'_>) -> Option<u64> {
            self.components
                .iter()
                .any(|(id, _)| c.id.eq_segments(&[id]))
                .then_some(1 << 16)
        }
        fn identity(&self, _: &Component<'_>, _: IdentityKind) -> Option<Identifier<'_>> {
            None
        }
        fn read(
            &mut self,
            c: &Component<'_>,
            at: u64,
            buf: &mut [u8],
        ) -> Result<usize, PlatformError> {
            Ok(read_at(self.slot(c)?, at, buf))
        }
        fn write_begin(&mut self, c: &Component<'_>, _: Option<u64>) -> Result<(), PlatformError> {
            self.slot(c)?.clear();
            Ok(())
        }
        fn write(&mut self, c: &Component<'_>, _: u64, data: &[u8]) -> Result<(), PlatformError> {
            self.slot(c)?.extend_from_slice(data);
            Ok(())
        }
        fn write_end(&mut self, _: &Component<'_>) -> Result<(), PlatformError> {
            Ok(())
        }
    }

    fn operator() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[8; 32])
    }

    /// An operator's root (component `["cfg"]`, dependency 1 at `["author.suit"]`,
    /// integrated) wrapping `dependency`.
    fn wrapping(dependency: Vec<u8>) -> Vec<u8> {
        let sha = DigestAlgorithm::Sha256;
        let digest = {
            let e = Envelope::decode(&dependency).unwrap();
            sha.digest(e.manifest_wrapped()).as_bytes().to_vec()
        };
        let m = ManifestBuilder {
            sequence_number: 9,
            components: vec![vec![b"cfg".to_vec()]],
            dependencies: vec![(1, Some(vec![b"author.suit".to_vec()]))],
            dependency_resolution: Some(vec![
                Cmd::SetComponentIndex(Index::One(1)),
                Cmd::OverrideParameters(vec![
                    Param::ImageDigest(sha, digest),
                    Param::Uri("#author.suit".into()),
                ]),
                Cmd::Directive(Directive::Fetch, 15),
                Cmd::Condition(Condition::DependencyIntegrity, 15),
                Cmd::Directive(Directive::ProcessDependency, 15),
            ]),
            install: Some(vec![
                Cmd::SetComponentIndex(Index::One(1)),
                Cmd::Condition(Condition::DependencyIntegrity, 15),
                Cmd::Directive(Directive::ProcessDependency, 15),
            ]),
            ..Default::default()
        };
        let mut b = EnvelopeBuilder::new(&m, sha);
        b.integrate("#author.suit", dependency);
        b.sign1(alg::ED25519, None, |tbs| {
            operator().sign(tbs).to_bytes().to_vec()
        });
        b.encode()
    }

    /// The author's manifest writing `IMAGE` into `["app"]` and checking it.
    fn authors(signer: &ed25519_dalek::SigningKey) -> Vec<u8> {
        authors_checking(signer, true)
    }

    /// The author's manifest writing `IMAGE` into `["app"]`, image-matching it if `check`.
    fn authors_checking(signer: &ed25519_dalek::SigningKey, check: bool) -> Vec<u8> {
        let sha = DigestAlgorithm::Sha256;
        let mut install = vec![
            Cmd::OverrideParameters(vec![
                Param::ImageDigest(sha, sha.digest(IMAGE).as_bytes().to_vec()),
                Param::Content(IMAGE.to_vec()),
            ]),
            Cmd::Directive(Directive::Write, 15),
        ];
        if check {
            install.push(Cmd::Condition(Condition::ImageMatch, 15));
        }
        let m = ManifestBuilder {
            sequence_number: 5,
            components: vec![vec![b"app".to_vec()]],
            install: Some(install),
            ..Default::default()
        };
        let mut b = EnvelopeBuilder::new(&m, sha);
        b.sign1(alg::ED25519, None, |tbs| {
            signer.sign(tbs).to_bytes().to_vec()
        });
        b.encode()
    }

    fn run_two_domains(
        root: &[u8],
    ) -> Result<Named, (suitcase_manifest::Error, Option<DependencyFailure>)> {
        let cfg = ComponentId::decode(&[0x81, 0x43, b'c', b'f', b'g']).unwrap();
        let slot = ComponentId::decode(&[
            0x81, 0x4b, b'a', b'u', b't', b'h', b'o', b'r', b'.', b's', b'u', b'i', b't',
        ])
        .unwrap();
        let app = ComponentId::decode(&[0x81, 0x43, b'a', b'p', b'p']).unwrap();
        let (operator_ids, author_ids) = ([cfg, slot], [app]);
        let only = |ids| suitcase_manifest::Permissions {
            components: Some(ids),
            actions: suitcase_manifest::Actions::ALL,
        };
        let anchors = [
            TrustAnchor {
                permissions: only(&operator_ids[..]),
                ..TrustAnchor::new("operator", PublicKey::Ed25519(operator().verifying_key()))
            },
            TrustAnchor {
                permissions: only(&author_ids[..]),
                ..TrustAnchor::new("author", PublicKey::Ed25519(key().verifying_key()))
            },
        ];
        let a = Offer::new(root)
            .verify(&anchors, &TrustPolicy::default(), |_| Some(8))
            .unwrap();
        let mut p = Named {
            components: vec![(b"cfg".to_vec(), vec![]), (b"app".to_vec(), vec![])],
        };
        let trust = DependencyTrust {
            anchors: &anchors,
            policy: TrustPolicy::default(),
            refuse: Some(suitcase_trust::names_trust_store),
        };
        a.run_with_dependencies(&mut p, &Section::UPDATE, trust, &mut [])?;
        Ok(p)
    }

    /// [`Authentic::image_match_with_dependencies`] on `root` over the components `cfg`, the
    /// dependency's slot and `app` (flat indices 0, 1, 2), `app` to be installed.
    fn match_two_domains(root: &[u8]) -> Result<Vec<u8>, MatchError> {
        let root: &'static [u8] = Vec::leak(root.to_vec());
        let ids: Vec<&'static [u8]> = vec![
            &[0x81, 0x43, b'c', b'f', b'g'],
            &[
                0x81, 0x4b, b'a', b'u', b't', b'h', b'o', b'r', b'.', b's', b'u', b'i', b't',
            ],
            &[0x81, 0x43, b'a', b'p', b'p'],
        ];
        let ids: Vec<ComponentId<'static>> = ids
            .into_iter()
            .map(|raw| ComponentId::decode(raw).unwrap())
            .collect();
        let anchors = [
            TrustAnchor::new("operator", PublicKey::Ed25519(operator().verifying_key())),
            TrustAnchor::new("author", PublicKey::Ed25519(key().verifying_key())),
        ];
        let a = Offer::new(root)
            .verify(&anchors, &TrustPolicy::default(), |_| Some(8))
            .unwrap();
        let mut p = Named {
            components: vec![(b"cfg".to_vec(), vec![]), (b"app".to_vec(), vec![])],
        };
        let trust = DependencyTrust {
            anchors: &anchors,
            policy: TrustPolicy::default(),
            refuse: None,
        };
        a.image_match_with_dependencies(
            &mut p,
            &Section::UPDATE,
            trust,
            &mut [],
            &ids,
            |_, i| i == 2,
            |p: &Named| p.components[1].1.clone(),
        )
        .map(|m| m.candidates().clone())
        .map_err(|(e, _)| e)
    }

    #[test]
    fn a_dependencys_image_match_accepts_the_component_it_names() {
        let root = wrapping(authors(&key()));
        assert_eq!(match_two_domains(&root).unwrap(), IMAGE);
    }

    /// The operator's root naming `app` itself and image-matching it with its own digest after
    /// the author's dependency wrote `app` without an image-match of its own: the root's match
    /// is not the writer's (trust-domains §5.1, each manifest under its own signers), so it
    /// does not accept `app`.
    #[test]
    fn attack_root_image_match_for_component_the_dependency_wrote_is_not_matched() {
        let sha = DigestAlgorithm::Sha256;
        let dependency = authors_checking(&key(), false);
        let digest = {
            let e = Envelope::decode(&dependency).unwrap();
            sha.digest(e.manifest_wrapped()).as_bytes().to_vec()
        };
        let m = ManifestBuilder {
            sequence_number: 9,
            components: vec![vec![b"cfg".to_vec()], vec![b"app".to_vec()]],
            dependencies: vec![(2, Some(vec![b"author.suit".to_vec()]))],
            dependency_resolution: Some(vec![
                Cmd::SetComponentIndex(Index::One(2)),
                Cmd::OverrideParameters(vec![
                    Param::ImageDigest(sha, digest),
                    Param::Uri("#author.suit".into()),
                ]),
                Cmd::Directive(Directive::Fetch, 15),
                Cmd::Condition(Condition::DependencyIntegrity, 15),
                Cmd::Directive(Directive::ProcessDependency, 15),
            ]),
            install: Some(vec![
                Cmd::SetComponentIndex(Index::One(2)),
                Cmd::Condition(Condition::DependencyIntegrity, 15),
                Cmd::Directive(Directive::ProcessDependency, 15),
                Cmd::SetComponentIndex(Index::One(1)),
                Cmd::OverrideParameters(vec![Param::ImageDigest(
                    sha,
                    sha.digest(IMAGE).as_bytes().to_vec(),
                )]),
                Cmd::Condition(Condition::ImageMatch, 15),
            ]),
            ..Default::default()
        };
        let mut b = EnvelopeBuilder::new(&m, sha);
        b.integrate("#author.suit", dependency);
        b.sign1(alg::ED25519, None, |tbs| {
            operator().sign(tbs).to_bytes().to_vec()
        });
        assert_eq!(
            match_two_domains(&b.encode()).unwrap_err(),
            MatchError::Unmatched { index: 2 }
        );
    }

    #[test]
    fn attack_component_the_dependency_writes_without_image_match_is_not_matched() {
        let root = wrapping(authors_checking(&key(), false));
        assert_eq!(
            match_two_domains(&root).unwrap_err(),
            MatchError::Unmatched { index: 2 }
        );
    }

    #[test]
    fn an_operator_root_wrapping_the_authors_manifest_installs_it() {
        let root = wrapping(authors(&key()));
        let p = run_two_domains(&root).unwrap();
        assert_eq!(p.components[1].1, IMAGE);
    }

    #[test]
    fn attack_operator_signing_the_authors_manifest_is_refused() {
        let root = wrapping(authors(&operator()));
        let (err, failure) = run_two_domains(&root).err().unwrap();
        assert_eq!(err.reason(), suitcase_manifest::Reason::Signature);
        assert_eq!(failure.unwrap().index, 1);
    }
}

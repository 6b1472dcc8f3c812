//! What a verified release installs, for the servers and tools that store and target it.
//!
//! A server must know, without running the manifest against a device, which vendor and class
//! a release is for, which components it writes, which payloads devices will fetch (by URI) and
//! the digest and size each image must have. This module reads that from the command sequences
//! of a [`VerifiedManifest`] by following set-component-index and the parameter commands, the
//! way a processor would (manifest §8.4.10 for override-parameters, trust-domains §6.4 for
//! set-parameters). It is a description, not an enforcement: devices still run every
//! condition themselves.

use serde::{Deserialize, Serialize};
use suitcase_manifest::{
    Command, CommandSequence, Identifier, IndexArg, Parameter, ParameterMap, Section, SectionState,
    VerifiedManifest,
};

/// One component a release writes or checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentSummary {
    /// The component identifier's segments, hex.
    pub id: Vec<String>,
    /// The vendor identifier (UUID text, or hex for a PEN) the manifest checks, if any.
    pub vendor_id: Option<String>,
    /// The class identifier the manifest checks, if any.
    pub class_id: Option<String>,
    /// A device identifier, if the release targets one device.
    pub device_id: Option<String>,
    /// The image digest the component must have after installation: (algorithm, hex).
    pub image_digest: Option<(String, String)>,
    /// The image size.
    pub image_size: Option<u64>,
    /// Where the payload is fetched from (absent for integrated payloads or copies).
    pub uri: Option<String>,
    /// Whether the payload is encrypted (an encryption-info parameter is set).
    pub encrypted: bool,
    /// The component index it is copied or patched from (source-component), if any.
    pub source_component: Option<u64>,
    /// For a delta copy: the component holding the image the patch applies to.
    #[serde(default)]
    pub delta_base: Option<u64>,
}

/// A release as a server sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    /// The manifest sequence number (anti-rollback counter).
    pub sequence_number: u64,
    /// The manifest digest: (algorithm, hex).
    pub manifest_digest: (String, String),
    /// The components, in manifest order.
    pub components: Vec<ComponentSummary>,
    /// Integrated payloads: (key, bytes).
    pub integrated: Vec<(String, usize)>,
    /// The SUIT dependencies the release wraps (draft-ietf-suit-trust-domains; `suitcase
    /// manifest wrap`): each integrated envelope whose manifest digest the release's manifest
    /// sets as an image-digest (§5.2.2). Their components follow the release's own in
    /// `components` (their source and delta-base indices shifted to match), so the payloads
    /// they fetch are the release's too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<DependencySummary>,
    /// The image digests the manifest sets, while it is summarised.
    #[serde(skip)]
    digests: Vec<(String, String)>,
}

/// A SUIT dependency a release wraps, as its envelope says (not authenticated here: a device
/// authenticates it under its own signer's key, trust-domains §5.1; the server only names it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencySummary {
    /// Its envelope key in the release's envelope (`#name`).
    pub name: String,
    /// Its own sequence number.
    pub sequence_number: u64,
    /// Its manifest digest: (algorithm, hex), as the release names it.
    pub manifest_digest: (String, String),
    /// How many of `ReleaseSummary::components` are its, from the first after those before.
    pub components: usize,
}

impl ReleaseSummary {
    /// The vendor identifiers the release checks (deduplicated).
    pub fn vendor_ids(&self) -> Vec<String> {
        dedup(self.components.iter().filter_map(|c| c.vendor_id.clone()))
    }

    /// The class identifiers the release checks (deduplicated).
    pub fn class_ids(&self) -> Vec<String> {
        dedup(self.components.iter().filter_map(|c| c.class_id.clone()))
    }

    /// The components that hold an installed image: all but the intermediate ones another
    /// component copies or patches from (a staging area, a decrypted patch, the base of a
    /// delta), which a device keeps only while it processes the release.
    pub fn images(&self) -> impl Iterator<Item = &ComponentSummary> {
        let helper = |i: usize| {
            self.components
                .iter()
                .any(|c| c.source_component == Some(i as u64) || c.delta_base == Some(i as u64))
        };
        self.components
            .iter()
            .enumerate()
            .filter(move |(i, _)| !helper(*i))
            .map(|(_, c)| c)
    }

    /// The payload URIs devices fetch, with the component each is for.
    pub fn fetched(&self) -> impl Iterator<Item = (&str, &ComponentSummary)> {
        self.components
            .iter()
            .filter_map(|c| c.uri.as_deref().map(|u| (u, c)))
            .filter(|(u, _)| !u.starts_with('#'))
    }
}

fn dedup(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in it {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

/// Summarises a verified manifest. Severed sections missing from the envelope are skipped.
pub fn summarize(verified: &VerifiedManifest<'_>) -> ReleaseSummary {
    let digest = verified.digest();
    let mut s = walk(verified.manifest(), |section| verified.section(section));
    s.manifest_digest = (
        digest_name(verified.envelope()),
        hex::encode(digest.as_bytes()),
    );
    s.integrated = integrated(verified.envelope());
    if !verified.manifest().dependencies.is_empty() {
        add_dependencies(&mut s, verified.envelope(), 0);
    }
    s.digests.clear();
    s
}

/// Appends the dependencies `envelope` integrates and `s`'s manifest names by digest (see
/// [`ReleaseSummary::dependencies`]); theirs in turn, `depth` being `envelope`'s below the
/// root, down to `suitcase_manifest::MAX_DEPENDENCY_DEPTH` (what a device processes,
/// trust-domains §5.1 as bounded there): the envelope is not authenticated yet (an offline
/// bundle's), so nesting beyond the limit is not followed rather than recursed into until
/// the stack overflows.
fn add_dependencies(
    s: &mut ReleaseSummary,
    envelope: &suitcase_manifest::Envelope<'_>,
    depth: usize,
) {
    let named = std::mem::take(&mut s.digests);
    if depth >= suitcase_manifest::MAX_DEPENDENCY_DEPTH {
        return;
    }
    for (name, bytes) in envelope.integrated_payloads() {
        let Ok(dep) = suitcase_manifest::Envelope::decode(bytes) else {
            continue;
        };
        let Ok(d) = summarize_at(&dep, depth + 1) else {
            continue;
        };
        if !named.contains(&d.manifest_digest) {
            continue;
        }
        let offset = s.components.len() as u64;
        s.dependencies.push(DependencySummary {
            name: name.to_owned(),
            sequence_number: d.sequence_number,
            manifest_digest: d.manifest_digest.clone(),
            components: d.components.len(),
        });
        s.components.extend(d.components.into_iter().map(|mut c| {
            c.source_component = c.source_component.map(|i| i.saturating_add(offset));
            c.delta_base = c.delta_base.map(|i| i.saturating_add(offset));
            c
        }));
    }
}

/// Summarises an envelope **without authenticating it**: what its manifest says, for tools
/// that carry a release to devices that verify it themselves (`suitcase bundle create`).
/// Severed members in the envelope are used only if they match the manifest's digest of
/// them; the manifest digest is the one the authentication wrapper states, checked against
/// the manifest. Nothing here may decide whether to install.
///
/// # Errors
/// The envelope or its manifest does not parse, or the stated manifest digest does not
/// match the manifest.
pub fn summarize_unauthenticated(
    envelope: &suitcase_manifest::Envelope<'_>,
) -> Result<ReleaseSummary, suitcase_manifest::Error> {
    summarize_at(envelope, 0)
}

/// [`summarize_unauthenticated`] of an envelope `depth` dependencies below the root.
fn summarize_at<'a>(
    envelope: &suitcase_manifest::Envelope<'a>,
    depth: usize,
) -> Result<ReleaseSummary, suitcase_manifest::Error> {
    use suitcase_manifest::{Manifest, Severable, codepoints::manifest as k};
    let auth = envelope.authentication()?;
    let computed = envelope.manifest_digest(auth.digest.algorithm);
    if !auth.digest.matches_value(&computed) {
        return Err(suitcase_manifest::Error::Malformed {
            at: 0,
            what: "the authentication wrapper's digest does not match the manifest",
        });
    }
    let m = Manifest::decode_unauthenticated(envelope.manifest_bytes())?;
    let severable = |key: u64, s: Option<Severable<'a, CommandSequence<'a>>>| match s {
        None => SectionState::Absent,
        Some(Severable::Inline(seq)) => SectionState::Present(seq),
        Some(Severable::Severed(d)) => envelope
            .member(key)
            .filter(|(wrapped, _)| d.matches(wrapped))
            .and_then(|(_, content)| CommandSequence::decode(content).ok())
            .map_or(SectionState::Severed, SectionState::Present),
    };
    let mut s = walk(&m, |section| match section {
        Section::DependencyResolution => {
            severable(k::DEPENDENCY_RESOLUTION, m.dependency_resolution)
        }
        Section::PayloadFetch => severable(k::PAYLOAD_FETCH, m.payload_fetch),
        Section::Install => severable(k::INSTALL, m.install),
        Section::Validate => m
            .validate
            .map_or(SectionState::Absent, SectionState::Present),
        _ => SectionState::Absent,
    });
    s.manifest_digest = (digest_name(envelope), hex::encode(computed.as_bytes()));
    s.integrated = integrated(envelope);
    if !m.dependencies.is_empty() {
        add_dependencies(&mut s, envelope, depth);
    }
    s.digests.clear();
    Ok(s)
}

fn integrated(envelope: &suitcase_manifest::Envelope<'_>) -> Vec<(String, usize)> {
    envelope
        .integrated_payloads()
        .map(|(k, v)| (k.to_owned(), v.len()))
        .collect()
}

/// What the command sequences say; the digest and integrated payloads are the caller's.
fn walk<'a>(
    m: &suitcase_manifest::Manifest<'a>,
    section: impl Fn(Section) -> SectionState<'a>,
) -> ReleaseSummary {
    let mut comps: Vec<ComponentSummary> = m
        .components
        .iter()
        .map(|c| ComponentSummary {
            id: c.segments().map(hex::encode).collect(),
            ..ComponentSummary::default()
        })
        .collect();
    let mut digests = Vec::new();
    let mut walker = Walker {
        comps: &mut comps,
        current: vec![0],
        depth: 0,
        digests: &mut digests,
    };
    if let Some(seq) = m.shared_sequence {
        walker.sequence(&seq);
    }
    for s in [
        Section::DependencyResolution,
        Section::PayloadFetch,
        Section::Install,
        Section::Validate,
    ] {
        if let SectionState::Present(seq) = section(s) {
            walker.current = vec![0];
            walker.sequence(&seq);
        }
    }
    ReleaseSummary {
        sequence_number: m.sequence_number,
        manifest_digest: (String::new(), String::new()),
        components: comps,
        integrated: Vec::new(),
        dependencies: Vec::new(),
        digests,
    }
}

fn digest_name(envelope: &suitcase_manifest::Envelope<'_>) -> String {
    envelope
        .authentication()
        .map(|a| a.digest.algorithm.name().to_owned())
        .unwrap_or_default()
}

/// Walks command sequences, tracking the selected components. Nesting is bounded by the
/// decoder (MAX_NESTING), and `depth` guards again so a hand-built manifest cannot recurse
/// without end.
struct Walker<'c> {
    comps: &'c mut Vec<ComponentSummary>,
    current: Vec<usize>,
    depth: usize,
    /// Every image digest set, for any index (a dependency's is beyond the component list).
    digests: &'c mut Vec<(String, String)>,
}

impl Walker<'_> {
    fn sequence(&mut self, seq: &CommandSequence<'_>) {
        if self.depth > 8 {
            return;
        }
        self.depth += 1;
        for (_, command) in seq.iter() {
            self.command(&command);
        }
        self.depth -= 1;
    }

    fn command(&mut self, command: &Command<'_>) {
        match command {
            Command::SetComponentIndex(IndexArg::One(i)) => {
                self.current = usize::try_from(*i).map(|i| vec![i]).unwrap_or_default();
            }
            Command::SetComponentIndex(IndexArg::All) => {
                self.current = (0..self.comps.len()).collect();
            }
            Command::SetComponentIndex(IndexArg::List(list)) => {
                self.current = list
                    .iter()
                    .filter_map(|i| usize::try_from(i).ok())
                    .collect();
            }
            Command::OverrideParameters(p) => self.params(p, true, None),
            Command::SetParameters(p) => self.params(p, false, None),
            Command::OverrideMultiple(mp) => {
                for (i, p) in mp.iter() {
                    if let Ok(i) = usize::try_from(i) {
                        self.params(&p, true, Some(i));
                    }
                }
            }
            Command::TryEach(t) => {
                // The first branch is the one a device normally takes; the others are fallbacks.
                if let Some(first) = t.branches().next() {
                    let saved = self.current.clone();
                    self.sequence(&first);
                    self.current = saved;
                }
            }
            Command::RunSequence(s) => {
                let saved = self.current.clone();
                self.sequence(s);
                self.current = saved;
            }
            _ => {}
        }
    }

    fn params(&mut self, p: &ParameterMap<'_>, overwrite: bool, only: Option<usize>) {
        for param in p.iter() {
            if let Parameter::ImageDigest(d) = param {
                self.digests
                    .push((d.algorithm.name().to_owned(), hex::encode(d.bytes)));
            }
        }
        let targets = only.map_or_else(|| self.current.clone(), |i| vec![i]);
        for index in targets {
            let Some(c) = self.comps.get_mut(index) else {
                continue;
            };
            for param in p.iter() {
                apply(c, &param, overwrite);
            }
        }
    }
}

fn set<T>(slot: &mut Option<T>, value: T, overwrite: bool) {
    if overwrite || slot.is_none() {
        *slot = Some(value);
    }
}

fn apply(c: &mut ComponentSummary, p: &Parameter<'_>, overwrite: bool) {
    match p {
        Parameter::VendorIdentifier(Identifier::Uuid(b)) => {
            set(&mut c.vendor_id, uuid(b), overwrite)
        }
        Parameter::VendorIdentifier(Identifier::Pen(b)) => {
            set(
                &mut c.vendor_id,
                format!("pen:{}", hex::encode(b)),
                overwrite,
            );
        }
        Parameter::ClassIdentifier(b) => set(&mut c.class_id, uuid(b), overwrite),
        Parameter::DeviceIdentifier(b) => set(&mut c.device_id, uuid(b), overwrite),
        Parameter::ImageDigest(d) => set(
            &mut c.image_digest,
            (d.algorithm.name().to_owned(), hex::encode(d.bytes)),
            overwrite,
        ),
        Parameter::ImageSize(n) => set(&mut c.image_size, *n, overwrite),
        Parameter::Uri(u) => set(&mut c.uri, (*u).to_owned(), overwrite),
        Parameter::EncryptionInfo(_) => c.encrypted = true,
        Parameter::SourceComponent(n) => set(&mut c.source_component, *n, overwrite),
        Parameter::DeltaBase(n) => set(&mut c.delta_base, *n, overwrite),
        _ => {}
    }
}

fn uuid(b: &[u8]) -> String {
    <[u8; 16]>::try_from(b).map_or_else(|_| hex::encode(b), |u| crate::uuid::to_string(&u))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod nesting_tests {
    use suitcase_manifest::DigestAlgorithm;
    use suitcase_manifest::build::{EnvelopeBuilder, ManifestBuilder};

    /// An unauthenticated envelope (an offline bundle's, read before any signature check)
    /// nesting 4000 integrated "dependencies", each a manifest with `suit-dependencies`:
    /// summarised without following them past `MAX_DEPENDENCY_DEPTH` (trust-domains §5.1 as
    /// the processor bounds it), where it used to recurse until the stack overflowed and the
    /// process aborted.
    #[test]
    fn attack_deeply_nested_dependencies_in_bundle_refused_not_crashed() {
        let sha = DigestAlgorithm::Sha256;
        let mut inner: Option<Vec<u8>> = None;
        for n in 0..4000_u64 {
            let m = ManifestBuilder {
                sequence_number: n,
                components: vec![vec![b"dep".to_vec()]],
                dependencies: vec![(0, None)],
                ..Default::default()
            };
            let mut b = EnvelopeBuilder::from_encoded(m.encode(sha), sha);
            if let Some(bytes) = inner.take() {
                b.integrate("#d", bytes);
            }
            inner = Some(b.encode());
        }
        let bytes = inner.unwrap();
        let s = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let e = suitcase_manifest::Envelope::decode(&bytes).unwrap();
                super::summarize_unauthenticated(&e).map(|s| s.sequence_number)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(s.unwrap(), 3999);
    }
}

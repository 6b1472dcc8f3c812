//! The way to a [`VerifiedManifest`]: the stored envelope read back (bounded) and
//! authenticated by the firmware-consumer core (`suitcase_device::consumer::Offer::verify`,
//! the signature check the MCU chain makes too), and what the steps that hold one share (the
//! installed sequence numbers, the running images as delta bases, SUIT failures as reports).

use std::io::Read as _;
use std::path::PathBuf;

use suitcase_device::consumer::{self, Offer};
use suitcase_manifest::{ComponentId, DependencyFailure, Section, VerifiedManifest};
use suitcase_protocol::Step;

use crate::ctx::Ctx;
use crate::error::{AgentError, StepFailure, Stop, fail, reason};
use crate::platform::{self, DevicePlatform, Mode, Route};
use crate::state::{Journal, WriterSequence};

/// The reason code of an anti-rollback refusal.
const ROLLBACK: &str = "sequence-rollback";

/// The largest envelope the agent accepts (it is held in memory to be verified).
pub const MAX_ENVELOPE: u64 = 1 << 20;

/// The stored envelope, authenticated again by the core ([`consumer::Authentic`]: the
/// envelope, its manifest and the installed sequence number every processor built from it
/// must exceed), and the names of the anchors whose signatures verified.
pub(crate) struct Authentic<'e> {
    core: consumer::Authentic<'e>,
    /// The names of the anchors whose signatures verified.
    pub(crate) signers: Vec<String>,
    /// What a SUIT dependency of the manifest (draft-ietf-suit-trust-domains §5.1) is
    /// authenticated under: the same anchors and policy as the release (fixed anchors, or the
    /// trust state's release signers each limited to its components), and a dependency naming
    /// the trust store refused as a release naming it is.
    pub(crate) dependencies: consumer::DependencyTrust<'e>,
    /// The manifest's SUIT dependencies (draft-ietf-suit-trust-domains), authenticated: see
    /// [`dependencies_of`]. Empty for a release without `suit-dependencies`.
    pub(crate) wrapped: Vec<VerifiedManifest<'e>>,
    /// Every component the update touches, one index each: the manifest's own indices first
    /// (its components and dependency slots, so a release without dependencies keeps its
    /// indices), then its dependencies' components by identifier (trust-domains §5.4 shares a
    /// component between a dependent and its dependency by identifier). The journal's
    /// targets and candidates are indices into this list.
    pub(crate) components: Vec<ComponentId<'e>>,
}

impl<'e> Authentic<'e> {
    /// Whether entry `index` of [`Authentic::components`] is the root manifest's dependency
    /// slot (where a dependency's envelope is held, never an image).
    pub(crate) fn is_dependency_slot(&self, index: usize) -> bool {
        let m = self.core.manifest().manifest();
        index < m.index_count() && m.dependencies.get(index as u64).is_some()
    }

    /// Runs `sections` on `p` (Check's probe), with the dependencies authenticated under
    /// [`Authentic::dependencies`] when the manifest has some; what the processor refused,
    /// and the dependency that caused it.
    pub(crate) fn run_sections(
        &self,
        p: &mut DevicePlatform<'_>,
        sections: &[Section],
    ) -> Result<bool, (suitcase_manifest::Error, Option<DependencyFailure>)> {
        if self.manifest().manifest().dependencies.is_empty() {
            return self.core.run(p, sections).map_err(|e| (e, None));
        }
        let mut none: [u8; 0] = [];
        self.core
            .run_flat(p, sections, self.dependencies, &mut none, &self.components)
    }

    /// The core's image-match (`consumer::Authentic::image_match`), or for a manifest with
    /// dependencies `image_match_with_dependencies` over [`Authentic::components`]: an
    /// image-match in the dependency that names a component (its signer's digest) is what
    /// accepts it. A refused dependency is named in `p.problem`, for the report.
    pub(crate) fn image_match<C>(
        &self,
        p: &mut DevicePlatform<'_>,
        sections: &[Section],
        install: impl Fn(&DevicePlatform<'_>, usize) -> bool,
        take: impl FnOnce(&DevicePlatform<'_>) -> C,
    ) -> Result<consumer::Matched<'e, C>, consumer::MatchError> {
        if self.manifest().manifest().dependencies.is_empty() {
            return self.core.image_match(p, sections, install, take);
        }
        let mut none: [u8; 0] = [];
        let r = self.core.image_match_with_dependencies(
            p,
            sections,
            self.dependencies,
            &mut none,
            &self.components,
            install,
            take,
        );
        r.map_err(|(e, failure)| {
            if let Some(failure) = failure {
                p.problem = Some(match p.problem.take() {
                    Some(problem) => format!("{failure}: {problem}"),
                    None => failure.to_string(),
                });
            }
            e
        })
    }
}

/// The SUIT dependencies of `root` (draft-ietf-suit-trust-domains), as far as this agent runs
/// them: each envelope integrated in an authentic envelope (§8.1.1, `suitcase manifest wrap`)
/// whose manifest digest is an image-digest that envelope's signed manifest sets (§5.2.2:
/// how a dependent names its dependency), authenticated under `trust` with its own signers
/// (§5.1); then theirs, down to `MAX_DEPENDENCY_DEPTH`. What they name is what Distribute
/// routes, Check lets the offer fetch and anti-rollback compares; the processor still checks
/// each dependency itself (dependency-integrity, process-dependency) before any of its
/// commands runs, and refuses one that is not authentic or not the one named. A member the
/// signed manifest does not name by digest is left out: an envelope added to the offer's
/// root (another authentic release of the author's) must not let the offer fetch its
/// payloads (RFC 9019 §4, TUF extraneous dependencies).
pub(crate) fn dependencies_of<'e>(
    root: &VerifiedManifest<'e>,
    trust: &consumer::DependencyTrust<'_>,
) -> Vec<VerifiedManifest<'e>> {
    fn walk<'e>(
        m: &VerifiedManifest<'e>,
        trust: &consumer::DependencyTrust<'_>,
        depth: usize,
        out: &mut Vec<VerifiedManifest<'e>>,
    ) {
        if depth >= suitcase_manifest::MAX_DEPENDENCY_DEPTH || m.manifest().dependencies.is_empty()
        {
            return;
        }
        let digests = crate::steps::check::image_digests(m);
        for (_, bytes) in m.envelope().integrated_payloads() {
            let Ok(envelope) = suitcase_manifest::Envelope::decode(bytes) else {
                continue;
            };
            if !digests
                .iter()
                .any(|d| d.matches(envelope.manifest_wrapped()))
            {
                continue;
            }
            if let Ok(v) = envelope.verify(trust.anchors, &trust.policy) {
                out.push(v);
                walk(&v, trust, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, trust, 0, &mut out);
    out
}

/// [`Authentic::components`] for `root` and its dependencies.
fn components_of<'e>(
    root: &VerifiedManifest<'e>,
    wrapped: &[VerifiedManifest<'e>],
) -> Vec<ComponentId<'e>> {
    let m = root.manifest();
    let mut ids: Vec<ComponentId<'e>> = (0..m.index_count())
        .filter_map(|i| m.component_id(i))
        .collect();
    for d in wrapped {
        let dm = d.manifest();
        for (i, id) in dm.components.iter().enumerate() {
            if dm.dependencies.get(i as u64).is_none()
                && !ids.iter().any(|x| x.as_cbor() == id.as_cbor())
            {
                ids.push(id);
            }
        }
    }
    ids
}

/// The components each SUIT dependency in `wrapped` writes (its own components, not its
/// dependency slots), with that dependency's sequence number: the sequence in the
/// dependency's signer's trust domain (draft-ietf-suit-trust-domains §5.1: each manifest
/// under its own signer). A component two of them name is the deeper one's.
fn written_by_dependencies(wrapped: &[VerifiedManifest<'_>]) -> Vec<WriterSequence> {
    let mut out: Vec<WriterSequence> = Vec::new();
    for d in wrapped {
        let dm = d.manifest();
        for (i, id) in dm.components.iter().enumerate() {
            if dm.dependencies.get(i as u64).is_some() {
                continue;
            }
            let w = WriterSequence {
                id: hex_id(&id),
                sequence: d.sequence_number(),
            };
            match out.iter_mut().find(|x| x.id == w.id) {
                Some(x) => *x = w,
                None => out.push(w),
            }
        }
    }
    out
}

/// What Check journals for Clean-up to record as [`crate::state::Installed::writers`]: the
/// components the release's SUIT dependencies write, each with its dependency's sequence
/// number.
pub(crate) fn writers_of(a: &Authentic<'_>) -> Vec<WriterSequence> {
    written_by_dependencies(&a.wrapped)
}

/// What the root's sequence number must exceed (anti-rollback, manifest §8.4.2, RFC 9124
/// REQ.SEC.SEQUENCE): the root's installed sequence number (`sequence_number`, the root
/// domain's counter) of every component `v` and its dependencies name, and for a component
/// `v` writes itself (none of its dependencies names it: a release installed directly is
/// the writer of all its components) also the sequence number of the manifest that last
/// wrote it ([`crate::state::Installed::writers`]): after an author's release 7 was
/// installed wrapped in an operator's root 2, the author's release 5 offered alone is
/// refused (its counter is the author's, not the operator's). A dependency is compared
/// with its own domain's counter by [`dependency_rollback`]. Conservative for a component
/// that changes hands: a release installed directly after a wrapped one must exceed both
/// counters.
fn installed_sequence(
    installed: &crate::state::Installed,
    v: &VerifiedManifest<'_>,
    trust: &consumer::DependencyTrust<'_>,
) -> Option<u64> {
    let wrapped = dependencies_of(v, trust);
    let written = written_by_dependencies(&wrapped);
    components_of(v, &wrapped)
        .iter()
        .filter_map(|c| {
            let id = hex_id(c);
            let root = installed.sequence(&id);
            if written.iter().any(|w| w.id == id) {
                root
            } else {
                root.max(installed.writer_sequence(&id))
            }
        })
        .max()
}

/// Anti-rollback of each SUIT dependency in its own signer's domain (manifest §8.4.2 applies
/// to every manifest processed; RFC 9124 THREAT.MFST.OLD): a dependency's sequence number
/// must be at least the installed writer's sequence number of every component it writes
/// (equal: the same author release wrapped again in a newer root). The root's digest pins
/// which manifest it is, not that it is not older, so without this an operator alone could
/// downgrade an author's component by wrapping an old author release in a new root. A
/// component with no writer recorded (installed before it was kept) is not compared. What is
/// wrong, for a `sequence-rollback` refusal.
fn dependency_rollback(
    installed: &crate::state::Installed,
    wrapped: &[VerifiedManifest<'_>],
) -> Option<String> {
    written_by_dependencies(wrapped).into_iter().find_map(|w| {
        let have = installed.writer_sequence(&w.id)?;
        (w.sequence < have).then(|| {
            format!(
                "sequence number rollback of a SUIT dependency (manifest §8.4.2, in the dependency's own signer's domain): the dependency writing component {} has sequence number {}, but the installed image was written by a manifest with sequence number {have}; wrap the author's release {have} or newer",
                suitcase_protocol::component_label(&w.id),
                w.sequence
            )
        })
    })
}

impl<'e> std::ops::Deref for Authentic<'e> {
    type Target = consumer::Authentic<'e>;
    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

/// The one way a step after Receive gets at the update's manifest: the stored envelope
/// read back (bounded), authenticated by the core with the trust anchors under the trust
/// policy at the current time, and handed to `f` with the installed sequence number (the
/// highest of the manifest's components). Check, Distribute, Process, Apply (through
/// `crate::candidates::resume`) and Re-verify all enter here.
pub(crate) fn authenticated<T>(
    ctx: &Ctx,
    j: &Journal,
    step: Step,
    f: impl FnOnce(&Authentic<'_>) -> Result<T, Stop>,
) -> Result<T, Stop> {
    let bytes = read_envelope(ctx, j)?;
    let installed = ctx.state.installed()?;
    if let Some(state) = crate::trust::in_force(ctx)? {
        return with_trust_state(&state, &bytes, ctx.now(), step, &installed, f);
    }
    let anchors = ctx.cfg.trust.anchors();
    let policy = ctx.cfg.trust.policy(ctx.now());
    let dependencies = consumer::DependencyTrust {
        anchors: &anchors,
        policy,
        refuse: Some(suitcase_trust::names_trust_store),
    };
    let core = Offer::new(&bytes)
        .verify(&anchors, &policy, |v| {
            installed_sequence(&installed, v, &dependencies)
        })
        .map_err(|e| Stop::Fail(StepFailure::suit(step, &e)))?;
    let signers = core
        .manifest()
        .signers()
        .iter()
        .filter_map(|i| anchors.get(i))
        .map(|a| a.name.to_owned())
        .collect();
    let wrapped = dependencies_of(core.manifest(), &dependencies);
    if let Some(detail) = dependency_rollback(&installed, &wrapped) {
        return Err(fail(step, ROLLBACK, detail));
    }
    let components = components_of(core.manifest(), &wrapped);
    f(&Authentic {
        core,
        signers,
        dependencies,
        wrapped,
        components,
    })
}

/// [`authenticated`] under a trust state (docs/trust.md): the core authenticates the release
/// with the state's release signers, each limited to its component prefix and actions, under
/// the state's release threshold and rules (`TrustState::with_release_policy`, manifest §9
/// access control). A refusal whose blocks carry the kid of a revoked key is reported as
/// reason `signature` naming the revocation (`TrustState::explain_release_failure`, RFC 8240
/// §3), and a release naming the trust store is refused: only a root-signed trust update may
/// change it.
fn with_trust_state<T>(
    state: &suitcase_trust::TrustState,
    bytes: &[u8],
    now: u64,
    step: Step,
    installed: &crate::state::Installed,
    f: impl FnOnce(&Authentic<'_>) -> Result<T, Stop>,
) -> Result<T, Stop> {
    // The whole step runs inside the policy's scope: a dependency is authenticated under the
    // same anchors (trust-domains §5.1).
    state.with_release_policy(Some(now), |anchors, policy| {
        let dependencies = consumer::DependencyTrust {
            anchors,
            policy: *policy,
            refuse: Some(suitcase_trust::names_trust_store),
        };
        let installed_of =
            |v: &VerifiedManifest<'_>| installed_sequence(installed, v, &dependencies);
        let core = match Offer::new(bytes).verify(anchors, policy, installed_of) {
            Ok(core) => core,
            Err(e) => {
                let detail = match suitcase_manifest::Envelope::decode(bytes) {
                    Ok(envelope) => state.explain_release_failure(&envelope, e).to_string(),
                    Err(_) => e.to_string(),
                };
                return Err(fail(step, e.reason().code(), detail));
            }
        };
        if suitcase_trust::names_trust_store(core.manifest()) {
            let e = suitcase_trust::TrustError::ReleaseTouchesTrust;
            return Err(fail(step, e.reason().code(), e.to_string()));
        }
        let signers = core
            .manifest()
            .signers()
            .iter()
            .filter_map(|i| state.signers().get(i))
            .map(|s| format!("release signer {}", hex::encode(s.key.id())))
            .collect();
        let wrapped = dependencies_of(core.manifest(), &dependencies);
        if let Some(detail) = dependency_rollback(installed, &wrapped) {
            return Err(fail(step, ROLLBACK, detail));
        }
        let components = components_of(core.manifest(), &wrapped);
        f(&Authentic {
            core,
            signers,
            dependencies,
            wrapped,
            components,
        })
    })
}

/// A platform in `mode` for the authenticated envelope.
pub(crate) fn platform<'c>(
    ctx: &'c Ctx,
    a: &Authentic<'_>,
    mode: Mode,
    payloads: Vec<(String, PathBuf, u64)>,
) -> DevicePlatform<'c> {
    DevicePlatform::new(
        &ctx.cfg,
        mode,
        a.envelope().len() as u64,
        ctx.state.work(),
        payloads,
        // Without a real-time clock, the time of the last freshness statement (use-before).
        crate::freshness::now(ctx),
    )
}

/// The stored envelope, at most [`MAX_ENVELOPE`] bytes of it.
pub(crate) fn read_envelope(ctx: &Ctx, j: &Journal) -> Result<Vec<u8>, AgentError> {
    let path = ctx.state.work_file(&j.envelope.file);
    let mut f = std::fs::File::open(&path).map_err(crate::error::local(format!(
        "cannot read {}",
        path.display()
    )))?;
    let mut bytes = Vec::new();
    f.by_ref()
        .take(MAX_ENVELOPE)
        .read_to_end(&mut bytes)
        .map_err(crate::error::local(format!(
            "cannot read {}",
            path.display()
        )))?;
    Ok(bytes)
}

pub(crate) fn hex_id(id: &ComponentId<'_>) -> Vec<String> {
    id.segments().map(hex::encode).collect()
}

/// Points each `<id>/installed` helper of the manifest at the image its component runs now
/// (the base of a delta patch). The manifest names that image by digest (image-match,
/// draft-ietf-suit-manifest §8.4.9.2) before anything is fetched or patched, so Check refuses a
/// delta built for another image and the applier only ever reads a verified base.
pub(crate) fn preset_running(
    ctx: &Ctx,
    a: &Authentic<'_>,
    p: &mut DevicePlatform<'_>,
) -> Result<(), AgentError> {
    for (index, id) in a.components.iter().enumerate() {
        let Some(Route::Running(ci)) = platform::route(&ctx.cfg, id) else {
            continue;
        };
        match crate::delta::running(ctx, ci)? {
            Some(src) => p.set_content(index, src.content()),
            None => {
                let name = ctx.cfg.components.get(ci).map_or("?", |c| c.name.as_str());
                p.problem.get_or_insert_with(|| {
                    format!("the release is a delta from an installed image, but nothing is installed in {name}")
                });
            }
        }
    }
    Ok(())
}

pub(crate) fn suit_failure(
    step: Step,
    e: &suitcase_manifest::Error,
    p: &DevicePlatform<'_>,
) -> Stop {
    let mut detail = e.to_string();
    if let Some(problem) = &p.problem {
        detail.push_str(": ");
        detail.push_str(problem);
    }
    if let Some(f) = &p.last_failed {
        detail.push_str(&format!(" (at {f})"));
    }
    if p.no_space {
        return fail(step, reason::NO_SPACE, detail);
    }
    if let suitcase_manifest::Error::UnsupportedCritical {
        what: suitcase_manifest::Unsupported::Component,
        ..
    } = e
    {
        detail.push_str(
            ": the manifest names a component this device does not have (agent.toml [[component]])",
        );
    }
    fail(step, e.reason().code(), detail)
}

pub(crate) const UPDATE_SECTIONS: [Section; 4] = [
    Section::DependencyResolution,
    Section::PayloadFetch,
    Section::CandidateVerification,
    Section::Install,
];

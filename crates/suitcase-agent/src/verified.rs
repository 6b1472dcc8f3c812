//! The way to a [`VerifiedManifest`]: the stored envelope read back (bounded) and
//! authenticated by the firmware-consumer core (`suitcase_device::consumer::Offer::verify`,
//! the signature check the MCU chain makes too), and what the steps that hold one share (the
//! installed sequence numbers, the running images as delta bases, SUIT failures as reports).

use std::io::Read as _;
use std::path::PathBuf;

use suitcase_device::consumer::{self, Offer};
use suitcase_manifest::{Section, VerifiedManifest};
use suitcase_protocol::Step;

use crate::ctx::Ctx;
use crate::error::{AgentError, StepFailure, Stop, fail, reason};
use crate::platform::{self, DevicePlatform, Mode, Route};
use crate::state::Journal;

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
    let installed_of = |v: &VerifiedManifest<'_>| {
        v.manifest()
            .components
            .iter()
            .filter_map(|c| installed.sequence(&hex_id(&c)))
            .max()
    };
    if let Some(state) = crate::trust::in_force(ctx)? {
        return with_trust_state(&state, &bytes, ctx.now(), step, installed_of, f);
    }
    let anchors = ctx.cfg.trust.anchors();
    let policy = ctx.cfg.trust.policy(ctx.now());
    let core = Offer::new(&bytes)
        .verify(&anchors, &policy, installed_of)
        .map_err(|e| Stop::Fail(StepFailure::suit(step, &e)))?;
    let signers = core
        .manifest()
        .signers()
        .iter()
        .filter_map(|i| anchors.get(i))
        .map(|a| a.name.to_owned())
        .collect();
    let dependencies = consumer::DependencyTrust {
        anchors: &anchors,
        policy,
        refuse: Some(suitcase_trust::names_trust_store),
    };
    f(&Authentic {
        core,
        signers,
        dependencies,
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
    installed_of: impl FnOnce(&VerifiedManifest<'_>) -> Option<u64>,
    f: impl FnOnce(&Authentic<'_>) -> Result<T, Stop>,
) -> Result<T, Stop> {
    // The whole step runs inside the policy's scope: a dependency is authenticated under the
    // same anchors (trust-domains §5.1).
    state.with_release_policy(Some(now), |anchors, policy| {
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
        let dependencies = consumer::DependencyTrust {
            anchors,
            policy: *policy,
            refuse: Some(suitcase_trust::names_trust_store),
        };
        f(&Authentic {
            core,
            signers,
            dependencies,
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

pub(crate) fn hex_id(id: &suitcase_manifest::ComponentId<'_>) -> Vec<String> {
    id.segments().map(hex::encode).collect()
}

/// Points each `<id>/installed` helper of the manifest at the image its component runs now
/// (the base of a delta patch). The manifest names that image by digest (image-match,
/// draft-ietf-suit-manifest §8.4.9.2) before anything is fetched or patched, so Check refuses a
/// delta built for another image and the applier only ever reads a verified base.
pub(crate) fn preset_running(
    ctx: &Ctx,
    v: &VerifiedManifest<'_>,
    p: &mut DevicePlatform<'_>,
) -> Result<(), AgentError> {
    for (index, id) in v.manifest().components.iter().enumerate() {
        let Some(Route::Running(ci)) = platform::route(&ctx.cfg, &id) else {
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

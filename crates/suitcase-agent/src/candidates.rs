//! The seam between verification and installation: [`VerifiedCandidates`], the images of an
//! update each matched against the image digest of an authenticated manifest
//! (draft-ietf-suit-manifest §8.4.9.2, image-match). Only this module makes one: Process
//! ([`process`]) after the processor's install section matched every candidate, and a step
//! that re-enters the install path from the journal ([`resume`]), which authenticates the
//! stored envelope again and runs the manifest's image-match over the journalled candidates
//! before handing them on. Apply takes nothing else: not the journal's plain
//! [`Candidate`] records, not raw envelope bytes.

use std::path::{Path, PathBuf};

use suitcase_manifest::{Processor, ProcessorPolicy, Section};
use suitcase_protocol::Step;

use crate::ctx::Ctx;
use crate::error::{Stop, fail};
use crate::platform::{Content, DevicePlatform, Mode};
use crate::state::{Candidate, Journal, Role};
use crate::verified::{Authentic, UPDATE_SECTIONS, authenticated, preset_running, suit_failure};

/// One candidate image, as matched.
#[derive(Debug)]
pub(crate) struct VerifiedCandidate {
    index: usize,
    path: PathBuf,
    len: u64,
}

impl VerifiedCandidate {
    /// The file holding it.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Its length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// The candidates of an update and the authenticated envelope they matched (module docs).
#[derive(Debug)]
pub(crate) struct VerifiedCandidates {
    envelope: Vec<u8>,
    items: Vec<VerifiedCandidate>,
}

impl VerifiedCandidates {
    /// The authenticated envelope (a slot image carries it).
    pub(crate) fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The candidate for manifest component `index`, if it has one.
    pub(crate) fn get(&self, index: usize) -> Option<&VerifiedCandidate> {
        self.items.iter().find(|c| c.index == index)
    }

    /// As the journal records them.
    pub(crate) fn records(&self) -> Vec<Candidate> {
        self.items
            .iter()
            .map(|c| Candidate {
                index: c.index,
                file: c
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                len: c.len,
            })
            .collect()
    }
}

/// What Process made: the candidates, and how many payloads it decrypted.
pub(crate) struct Processed {
    pub(crate) candidates: VerifiedCandidates,
    pub(crate) decrypted: usize,
}

/// Process: the update sections run for real on the downloaded payloads (fetched in place,
/// decrypted as a stream); the install section's image-match checks each candidate.
pub(crate) fn process(ctx: &Ctx, j: &Journal, step: Step) -> Result<Processed, Stop> {
    authenticated(ctx, j, step, |a| run_process(ctx, j, step, a))
}

fn run_process(ctx: &Ctx, j: &Journal, step: Step, a: &Authentic<'_>) -> Result<Processed, Stop> {
    let payloads = j
        .offer
        .payloads
        .iter()
        .zip(&j.payloads)
        .map(|(o, d)| (o.uri.clone(), ctx.state.work_file(&d.file), d.size))
        .collect();
    let mut p = DevicePlatform::new(
        &ctx.cfg,
        Mode::Process,
        a.bytes.len() as u64,
        ctx.state.work(),
        payloads,
        ctx.now(),
    );
    preset_running(ctx, &a.manifest, &mut p)?;
    let outcome = Processor::new(&a.manifest, &mut p, policy(a)).and_then(|mut proc| {
        UPDATE_SECTIONS
            .iter()
            .try_for_each(|s| proc.run(*s).map(|_| ()))
    });
    if let Err(e) = outcome {
        return Err(suit_failure(step, &e, &p));
    }
    if let Some(name) = unmatched(j, &p, p.with_content()) {
        return Err(fail(
            step,
            suitcase_manifest::Reason::Digest.code(),
            format!(
                "the manifest's install section does not image-match {name}: its candidate is unverified and is not installed"
            ),
        ));
    }
    let mut items = Vec::new();
    for (index, c) in p.content.iter().enumerate() {
        // A running image is read in place; it is no candidate (nothing of it is written).
        if j.targets
            .iter()
            .any(|t| t.index == index && t.role == Role::Running)
        {
            continue;
        }
        if let Some(c) = c {
            items.push(VerifiedCandidate {
                index,
                path: c.path.clone(),
                len: c.len,
            });
        }
    }
    Ok(Processed {
        candidates: VerifiedCandidates {
            envelope: a.bytes.to_vec(),
            items,
        },
        decrypted: p.decrypted,
    })
}

/// Re-enters the install path from the journal: the stored envelope authenticated again
/// with the trust anchors, and the journalled candidates checked against its image digests
/// by its validate section (image-match, in place); a manifest without one, or whose
/// validate section image-matches not every image to install, has its update sections run
/// again, as Process did.
pub(crate) fn resume(ctx: &Ctx, j: &Journal, step: Step) -> Result<VerifiedCandidates, Stop> {
    authenticated(ctx, j, step, |a| {
        let items: Vec<VerifiedCandidate> = j
            .candidates
            .iter()
            .map(|c| VerifiedCandidate {
                index: c.index,
                path: ctx.state.work_file(&c.file),
                len: c.len,
            })
            .collect();
        let mut p = DevicePlatform::new(
            &ctx.cfg,
            Mode::Reverify,
            a.bytes.len() as u64,
            ctx.state.work(),
            Vec::new(),
            ctx.now(),
        );
        for c in &items {
            p.set_content(
                c.index,
                Content {
                    path: c.path.clone(),
                    offset: 0,
                    len: c.len,
                },
            );
        }
        let ran = Processor::new(&a.manifest, &mut p, policy(a))
            .and_then(|mut proc| proc.run(Section::Validate))
            .map_err(|e| suit_failure(step, &e, &p))?;
        // A validate section checked only the components it image-matches: any other
        // candidate to be installed is matched again by running Process over.
        if !ran || unmatched(j, &p, items.iter().map(|c| c.index)).is_some() {
            return Ok(run_process(ctx, j, step, a)?.candidates);
        }
        Ok(VerifiedCandidates {
            envelope: a.bytes.to_vec(),
            items,
        })
    })
}

/// The name of the first of `indices` that is an image to install (not a helper) and that no
/// image-match condition accepted in `p`.
pub(crate) fn unmatched(
    j: &Journal,
    p: &DevicePlatform<'_>,
    indices: impl IntoIterator<Item = usize>,
) -> Option<String> {
    indices.into_iter().find_map(|index| {
        let t = j
            .targets
            .iter()
            .find(|t| t.index == index && t.role == Role::Image)?;
        (!p.image_matched(index)).then(|| t.name.clone())
    })
}

fn policy(a: &Authentic<'_>) -> ProcessorPolicy {
    ProcessorPolicy {
        installed_sequence: a.installed,
        allow_same_sequence: false,
    }
}

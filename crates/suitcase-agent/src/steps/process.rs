//! NTIA step 8, Process: the manifest's sections run for real; payloads decrypted as a
//! stream into candidates, each matched against the manifest's image digest.

use suitcase_manifest::{Processor, ProcessorPolicy};
use suitcase_protocol::Step;

use super::{Done, StepResult};
use crate::ctx::Ctx;
use crate::platform::{DevicePlatform, Mode};
use crate::state::{Candidate, Journal, Role};
use crate::verified::{
    UPDATE_SECTIONS, installed_sequence, preset_running, read_envelope, suit_failure, verify,
};

pub(crate) fn process(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Process;
    let bytes = read_envelope(ctx, j)?;
    let anchors = ctx.cfg.trust.anchors();
    let v = verify(ctx, step, &bytes, &anchors)?;
    let installed = installed_sequence(ctx, &v)?;
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
        bytes.len() as u64,
        ctx.state.work(),
        payloads,
        ctx.now(),
    );
    preset_running(ctx, &v, &mut p)?;
    let outcome = match Processor::new(
        &v,
        &mut p,
        ProcessorPolicy {
            installed_sequence: installed,
            allow_same_sequence: false,
        },
    ) {
        Ok(mut proc) => UPDATE_SECTIONS
            .iter()
            .try_for_each(|s| proc.run(*s).map(|_| ())),
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        return Err(suit_failure(step, &e, &p));
    }
    let mut candidates = Vec::new();
    for (index, c) in p.content.iter().enumerate() {
        // A running image is read in place; it is no candidate (nothing of it is written).
        if j.targets
            .iter()
            .any(|t| t.index == index && t.role == Role::Running)
        {
            continue;
        }
        if let Some(c) = c {
            let file = c
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            candidates.push(Candidate {
                index,
                file,
                len: c.len,
            });
        }
    }
    let images = candidates
        .iter()
        .filter(|c| {
            j.targets
                .iter()
                .any(|t| t.index == c.index && !t.role.is_helper())
        })
        .count();
    j.candidates = candidates;
    Ok(Done::Success(format!(
        "{images} candidate image(s) ready and matching the manifest's digests; {} payload(s) decrypted as a stream",
        p.decrypted
    )))
}

//! NTIA step 10, Apply: each candidate written to its component's inactive slot (with
//! checkpoints), staged as an MCU slot image, or staged for an update module's handler.

use suitcase_protocol::Step;

use super::{Done, StepResult, installer};
use crate::backend::{Image, Installer, Written};
use crate::candidates::{self, VerifiedCandidates};
use crate::ctx::Ctx;
use crate::error::{AgentError, fail, reason};
use crate::slot::Slot;
use crate::state::{Journal, TargetState};
use crate::verified::authenticated;

pub(crate) fn apply(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Apply;
    let stored = j.clone();
    // Only candidates matched against the authenticated manifest are written: the core's
    // `Matched`, made by its image-match over the envelope authenticated again.
    authenticated(ctx, &stored, step, |a| {
        let verified = candidates::resume(ctx, &stored, step, a)?;
        write(ctx, j, &verified)
    })
}

/// Writes each verified candidate to its target.
fn write(ctx: &Ctx, j: &mut Journal, verified: &VerifiedCandidates<'_>) -> StepResult {
    let step = Step::Apply;
    let mut notes = Vec::new();
    for ti in 0..j.targets.len() {
        let Some(t) = j.targets.get(ti).cloned() else {
            continue;
        };
        if t.role.is_helper() {
            continue;
        }
        let Some(cand) = verified.candidates().get(t.index) else {
            notes.push(format!("{}: nothing to write", t.name));
            continue;
        };
        if t.state.applied() {
            notes.push(format!("{}: written earlier", t.name));
            continue;
        }
        let (c, how) = installer(ctx, &t)?;
        let done = match how {
            Installer::Module(m) => {
                if cand.len() > m.capacity {
                    return Err(fail(
                        step,
                        reason::NO_SPACE,
                        format!(
                            "{}: the payload is {} bytes but capacity = {}",
                            t.name,
                            cand.len(),
                            m.capacity
                        ),
                    ));
                }
                let digest = crate::module::stage(m, cand.path())
                    .map_err(|why| fail(step, reason::STORAGE, format!("{}: {why}", t.name)))?;
                notes.push(format!(
                    "{}: {} bytes staged for the {} handler",
                    t.name,
                    cand.len(),
                    m.handler.name()
                ));
                Written {
                    slot: Slot::A,
                    total: cand.len(),
                    image_offset: 0,
                    digest,
                    note: String::new(),
                }
            }
            Installer::Slots(b) => {
                let to = t.to_slot.ok_or_else(|| {
                    fail(step, reason::STORAGE, format!("{}: no target slot", c.name))
                })?;
                let mut snapshot = j.clone();
                let state = ctx.state.clone();
                let mut checkpoint = |done: u64| -> Result<(), AgentError> {
                    if let Some(x) = snapshot.targets.get_mut(ti) {
                        x.written = done;
                    }
                    state.save_journal(&snapshot)
                };
                let image = Image::of(verified, t.index, &t.name, t.written, t.from_slot, to)
                    .ok_or_else(|| {
                        fail(step, reason::STORAGE, format!("{}: no candidate", t.name))
                    })?;
                let w = b.write(&image, &mut checkpoint)?;
                notes.push(w.note.clone());
                w
            }
        };
        if let Some(x) = j.targets.get_mut(ti) {
            x.written = done.total;
            x.len = cand.len();
            x.image_offset = done.image_offset;
            x.digest = Some(done.digest);
            if x.to_slot.is_some() {
                x.to_slot = Some(done.slot);
            }
            x.state = TargetState::Applied;
        }
        ctx.state.save_journal(j)?;
    }
    Ok(Done::Success(notes.join("; ")))
}

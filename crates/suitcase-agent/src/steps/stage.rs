//! NTIA step 9, Stage: the pre-update state journalled (installed sequence numbers; nothing
//! written yet).

use super::{Done, StepResult};
use crate::ctx::Ctx;
use crate::slot::Slot;
use crate::state::{Journal, TargetState};

pub(crate) fn stage(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let installed = ctx.state.installed()?;
    let mut notes = Vec::new();
    for t in &mut j.targets {
        t.installed_sequence = installed.sequence(&t.id);
        t.written = 0;
        t.state = TargetState::Planned;
        if !t.role.is_helper() {
            notes.push(format!(
                "{} runs slot {} (sequence {})",
                t.name,
                t.from_slot.map_or("?", Slot::name),
                t.installed_sequence
                    .map_or_else(|| "none".to_owned(), |s| s.to_string())
            ));
        }
    }
    Ok(Done::Success(format!(
        "pre-update state journalled: {}",
        notes.join(", ")
    )))
}

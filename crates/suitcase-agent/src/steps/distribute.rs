//! NTIA step 7, Distribute: each manifest component routed to a configured component, and
//! for a slotted one the slot it runs and the slot the update goes to.

use suitcase_protocol::Step;

use super::{Done, StepResult};
use crate::backend::{Installer, SlotTarget, installer};
use crate::ctx::Ctx;
use crate::error::{Stop, fail};
use crate::platform::{self, Route};
use crate::state::{Journal, Role, Target, TargetState};
use crate::verified::{Authentic, authenticated, hex_id};

pub(crate) fn distribute(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Distribute;
    let (targets, notes) = authenticated(ctx, j, step, |a| route(ctx, step, a))?;
    j.targets = targets;
    Ok(Done::Success(notes.join("; ")))
}

/// Where each component of the authenticated manifest goes, and the notes for the report:
/// its own components and those of its SUIT dependencies (trust-domains; `Authentic::
/// components`), not the slots that hold a dependency's envelope.
fn route(ctx: &Ctx, step: Step, a: &Authentic<'_>) -> Result<(Vec<Target>, Vec<String>), Stop> {
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    for (index, id) in a.components.iter().enumerate() {
        if a.is_dependency_slot(index) {
            continue;
        }
        let Some(r) = platform::route(&ctx.cfg, id) else {
            return Err(fail(
                step,
                "unsupported-critical",
                format!(
                    "the manifest names component {:?}, which this device does not have",
                    hex_id(id)
                ),
            ));
        };
        let ci = r.component();
        let role = match r {
            Route::Image(_) => Role::Image,
            Route::Running(_) => Role::Running,
            Route::Work(_) => Role::Helper,
        };
        let Some(c) = ctx.cfg.components.get(ci) else {
            return Err(fail(step, "unsupported-critical", "component index"));
        };
        let mut t = Target {
            index,
            component: ci,
            id: hex_id(id),
            name: format!("{}{}", c.name, r.suffix(id)),
            role,
            from_slot: None,
            to_slot: None,
            installed_sequence: None,
            written: 0,
            len: 0,
            image_offset: 0,
            state: TargetState::Planned,
            digest: None,
        };
        match (role, installer(ctx, c, ci)) {
            (Role::Image, Installer::Module(m)) => {
                // No slots: the handler installs in place and keeps what it replaces.
                notes.push(format!(
                    "{} → update module ({} handler; {})",
                    c.name,
                    m.handler.name(),
                    if crate::module::can_roll_back(m) {
                        "can roll back"
                    } else {
                        "cannot roll back"
                    }
                ));
            }
            (Role::Image, Installer::Slots(b)) => {
                let SlotTarget { from, to, what } = b.target()?;
                notes.push(format!("{} → {what} {to}", c.name));
                t.from_slot = Some(from);
                t.to_slot = Some(to);
            }
            (Role::Running, _) => {
                notes.push(format!("{} ← the running image (delta base)", t.name));
            }
            (Role::Helper, _) => notes.push(format!("{} → work area", t.name)),
        }
        targets.push(t);
    }
    Ok((targets, notes))
}

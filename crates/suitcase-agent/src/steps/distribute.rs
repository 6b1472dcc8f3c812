//! NTIA step 7, Distribute: each manifest component routed to a configured component, and
//! for a slotted one the slot it runs and the slot the update goes to.

use suitcase_protocol::Step;

use super::{Done, StepResult};
use crate::config::Kind;
use crate::ctx::Ctx;
use crate::error::{fail, reason};
use crate::mcu::{self, Mcu};
use crate::platform::{self, Route};
use crate::slots;
use crate::state::{Journal, Target};
use crate::verified::{hex_id, read_envelope, verify};

pub(crate) fn distribute(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Distribute;
    let bytes = read_envelope(ctx, j)?;
    let anchors = ctx.cfg.trust.anchors();
    let v = verify(ctx, step, &bytes, &anchors)?;
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    for (index, id) in v.manifest().components.iter().enumerate() {
        let Some(r) = platform::route(&ctx.cfg, &id) else {
            return Err(fail(
                step,
                "unsupported-critical",
                format!(
                    "the manifest names component {:?}, which this device does not have",
                    hex_id(&id)
                ),
            ));
        };
        let ci = r.component();
        let helper = !matches!(r, Route::Image(_));
        let Some(c) = ctx.cfg.components.get(ci) else {
            return Err(fail(step, "unsupported-critical", "component index"));
        };
        let mut t = Target {
            index,
            component: ci,
            id: hex_id(&id),
            name: format!("{}{}", c.name, r.suffix(&id)),
            helper,
            running: r == Route::Running(ci),
            from_slot: None,
            to_slot: None,
            installed_sequence: None,
            written: 0,
            len: 0,
            image_offset: 0,
            applied: false,
            activated: false,
            digest: None,
        };
        if !helper {
            let (from, to, what) = match &c.kind {
                Kind::Module(m) => {
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
                    targets.push(t);
                    continue;
                }
                Kind::File(s) => {
                    slots::check(s).map_err(|m| fail(step, reason::STORAGE, m))?;
                    // With a bootloader backend, also checks that the system booted the slot
                    // the record names: the inactive slot is written next, and it must not be
                    // the one running.
                    let p = slots::running(s)
                        .map_err(|m| fail(step, reason::STORAGE, format!("{}: {m}", c.name)))?;
                    if p.trial() {
                        return Err(fail(
                            step,
                            reason::STORAGE,
                            format!(
                                "{}: slot {} is on trial and not confirmed ({}); confirm or revert it first",
                                c.name,
                                slots::name(p.active),
                                s.pointer.display()
                            ),
                        ));
                    }
                    (
                        slots::name(p.active),
                        slots::name(1 - p.active.min(1)),
                        "file slot",
                    )
                }
                Kind::Mcu(m) => {
                    let mcu = Mcu::open(m, &ctx.state.durability)?;
                    let st = mcu.status()?;
                    if st.phase == suitcase_boot::Phase::Trial {
                        return Err(fail(
                            step,
                            reason::STORAGE,
                            format!("{}: the MCU runs an unconfirmed trial image", c.name),
                        ));
                    }
                    (
                        mcu::slot_name(st.confirmed),
                        mcu::slot_name(st.confirmed.other()),
                        if m.secondary.is_some() {
                            "secondary MCU (verifies its own manifest), slot"
                        } else {
                            "MCU slot"
                        },
                    )
                }
            };
            notes.push(format!("{} → {what} {to}", c.name));
            t.from_slot = Some(from.into());
            t.to_slot = Some(to.into());
        } else if t.running {
            notes.push(format!("{} ← the running image (delta base)", t.name));
        } else {
            notes.push(format!("{} → work area", t.name));
        }
        targets.push(t);
    }
    j.targets = targets;
    Ok(Done::Success(notes.join("; ")))
}

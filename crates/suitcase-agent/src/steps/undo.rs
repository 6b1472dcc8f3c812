//! Undo after a failed step: what was activated reverted (slots switched back, a module
//! rolled back, an MCU's pending image withdrawn or its trial reverted), and after the
//! failure is reported, a reboot into the reverted slot where the bootloader needs one.

use suitcase_protocol::Step;

use super::{module_env, slot_env};
use crate::backend::{Installer, Reverted};
use crate::command;
use crate::ctx::{Ctx, off_worker};
use crate::error::AgentError;
use crate::machine::Undo;
use crate::state::Journal;

pub(crate) async fn undo(ctx: &Ctx, j: &mut Journal, u: Undo) -> Result<String, AgentError> {
    let mut notes = Vec::new();
    if u == Undo::Discard {
        return Ok(String::new());
    }
    for t in j.targets.clone().iter().filter(|t| !t.role.is_helper()) {
        let Some(c) = ctx.cfg.components.get(t.component) else {
            continue;
        };
        match crate::backend::installer(ctx, c, t.component) {
            Installer::Module(m) => {
                if !t.state.activated() {
                    continue;
                }
                let env = module_env(j, Step::CleanUp, &c.name, m);
                let (mc, e2, timeout) = (m.clone(), env.clone(), ctx.cfg.health.timeout);
                let rolled = off_worker("module", move || {
                    crate::module::roll_back(&mc, &e2, timeout)
                })
                .await?;
                ctx.state.durability.wrote()?;
                match rolled {
                    Ok(note) => {
                        let mut note = format!("{}: {note}", c.name);
                        if !m.restart.is_empty() {
                            let exit = command::run(&m.restart, &env, timeout).await;
                            note.push_str(&format!(" ({})", exit.describe("restart")));
                        }
                        notes.push(note);
                    }
                    Err(why) => notes.push(format!("{}: not rolled back: {why}", c.name)),
                }
            }
            Installer::Slots(b) => {
                let (from, to) = (t.from_slot, t.to_slot);
                let (b, reverted) = off_worker("bootloader", move || {
                    let r = b.revert(from, to);
                    (b, r)
                })
                .await?;
                let Reverted { note, restart } = reverted?;
                let Some(mut note) = note else { continue };
                if let Some(from) = from
                    && !restart.is_empty()
                {
                    let env = slot_env(j, Step::CleanUp, &c.name, &*b, from);
                    let exit = command::run(&restart, &env, ctx.cfg.health.timeout).await;
                    note.push_str(&format!(" ({})", exit.describe("restart")));
                }
                notes.push(note);
            }
        }
    }
    if u == Undo::Revert {
        let mut installed = ctx.state.installed()?;
        installed.reverted = true;
        ctx.state.save_installed(&installed)?;
    }
    Ok(notes.join("; "))
}

/// After a revert, the reported failure delivered: a component whose bootloader switches
/// slots at boot and that still runs the reverted slot (its health check failed on it) is
/// rebooted into the old slot with its `reboot` command; otherwise it would keep running the
/// image it just refused until something else reboots it. Returns what it did.
pub(crate) async fn reboot_into_reverted(ctx: &Ctx, j: &Journal) -> String {
    for t in j
        .targets
        .iter()
        .filter(|t| !t.role.is_helper() && t.state.activated())
    {
        let Some(c) = ctx.cfg.components.get(t.component) else {
            continue;
        };
        let Installer::Slots(b) = crate::backend::installer(ctx, c, t.component) else {
            continue;
        };
        let (Some(from), Some(to)) = (t.from_slot, t.to_slot) else {
            continue;
        };
        let Ok((b, Some(reboot))) = off_worker("bootloader", move || {
            let r = b.reboot_after_revert(from, to);
            (b, r)
        })
        .await
        else {
            continue;
        };
        let env = slot_env(j, Step::CleanUp, &c.name, &*b, from);
        let exit = command::run(&reboot, &env, ctx.cfg.health.timeout).await;
        // One reboot brings every component back; the first one is enough.
        return format!(
            "{}: rebooting into slot {from} ({})",
            c.name,
            exit.describe("the reboot command")
        );
    }
    String::new()
}

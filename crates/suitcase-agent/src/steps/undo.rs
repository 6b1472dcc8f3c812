//! Undo after a failed step: what was activated reverted (slots switched back, a module
//! rolled back, an MCU's pending image withdrawn or its trial reverted), and after the
//! failure is reported, a reboot into the reverted slot where the bootloader needs one.

use suitcase_protocol::Step;

use super::{module_env, slot_env};
use crate::command;
use crate::config::{ActivateMode, Kind};
use crate::ctx::{Ctx, off_worker};
use crate::error::AgentError;
use crate::machine::Undo;
use crate::mcu::{Mcu, verifier_spec};
use crate::slots;
use crate::state::Journal;

pub(crate) async fn undo(ctx: &Ctx, j: &mut Journal, u: Undo) -> Result<String, AgentError> {
    let mut notes = Vec::new();
    if u == Undo::Discard {
        return Ok(String::new());
    }
    for t in j.targets.clone().iter().filter(|t| !t.helper) {
        let Some(c) = ctx.cfg.components.get(t.component) else {
            continue;
        };
        match &c.kind {
            Kind::Module(m) => {
                if !t.activated {
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
            Kind::File(s) => {
                let (Some(from), Some(to)) = (
                    t.from_slot.as_deref().and_then(slots::index),
                    t.to_slot.as_deref().and_then(slots::index),
                ) else {
                    continue;
                };
                let p = slots::read_pointer(&s.pointer)?;
                if p.active == to || p.confirmed == to {
                    let sc = s.clone();
                    off_worker("bootloader", move || slots::revert(&sc, from)).await??;
                    ctx.state.durability.wrote()?;
                    let mut note = format!("{} reverted to slot {}", c.name, slots::name(from));
                    if s.activate == ActivateMode::Restart && !s.restart.is_empty() {
                        let env = slot_env(j, Step::CleanUp, &c.name, s, from);
                        let exit = command::run(&s.restart, &env, ctx.cfg.health.timeout).await;
                        note.push_str(&format!(" ({})", exit.describe("restart")));
                    }
                    notes.push(note);
                }
            }
            Kind::Mcu(_) => {
                let cfg = ctx.cfg.clone();
                let state = ctx.state.clone();
                let clock = ctx.clock.clone();
                let ci = t.component;
                let name = c.name.clone();
                let note =
                    tokio::task::spawn_blocking(move || -> Result<Option<String>, AgentError> {
                        let c = cfg
                            .components
                            .get(ci)
                            .ok_or_else(|| AgentError::Local("component".into()))?;
                        let Kind::Mcu(m) = &c.kind else {
                            return Ok(None);
                        };
                        let device = Mcu::open(m, &state.durability)?;
                        let st = device.status()?;
                        let note = match st.phase {
                            suitcase_boot::Phase::Pending => {
                                device.cancel()?;
                                Some(format!("{name}: pending update withdrawn"))
                            }
                            suitcase_boot::Phase::Trial => {
                                let spec = verifier_spec(&cfg, clock(), c, m);
                                Some(format!("{name}: {}", device.revert(&spec)?))
                            }
                            _ => None,
                        };
                        device.save(&state.durability)?;
                        Ok(note)
                    })
                    .await
                    .map_err(|e| AgentError::Local(format!("revert worker: {e}")))??;
                notes.extend(note);
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
    for t in j.targets.iter().filter(|t| !t.helper && t.activated) {
        let Some(c) = ctx.cfg.components.get(t.component) else {
            continue;
        };
        let Kind::File(s) = &c.kind else { continue };
        let (Some(from), Some(to)) = (
            t.from_slot.as_deref().and_then(slots::index),
            t.to_slot.as_deref().and_then(slots::index),
        ) else {
            continue;
        };
        if s.activate != ActivateMode::Reboot || s.reboot.is_empty() {
            continue;
        }
        let sc = s.clone();
        let booted = match off_worker("bootloader", move || sc.bootloader.status(&sc.slots)).await {
            Ok(Ok(Some(st))) => st.booted,
            _ => continue,
        };
        if booted != to {
            continue;
        }
        let env = slot_env(j, Step::CleanUp, &c.name, s, from);
        let exit = command::run(&s.reboot, &env, ctx.cfg.health.timeout).await;
        // One reboot brings every component back; the first one is enough.
        return format!(
            "{}: rebooting into slot {} ({})",
            c.name,
            slots::name(from),
            exit.describe("the reboot command")
        );
    }
    String::new()
}

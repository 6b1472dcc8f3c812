//! NTIA step 12, Activate: each written component switched to its new image on trial (a
//! restart, a reboot through the bootloader, an MCU boot), or installed by its handler.

use suitcase_protocol::Step;

use super::{Done, StepResult, component, module_env, slot_env};
use crate::command;
use crate::config::{ActivateMode, FileSlots, Kind};
use crate::ctx::{Ctx, off_worker};
use crate::error::{AgentError, StepFailure, Stop, fail, reason};
use crate::mcu::{self, Mcu, verifier_spec};
use crate::slots;
use crate::state::Journal;

pub(crate) async fn activate(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Activate;
    let mut notes = Vec::new();
    for ti in 0..j.targets.len() {
        let Some(t) = j.targets.get(ti).cloned() else {
            continue;
        };
        if t.helper || !t.applied {
            continue;
        }
        let c = component(ctx, &t)?;
        match &c.kind {
            Kind::Module(m) => {
                // Marked first: a power cut during the install leaves a journal that rolls it
                // back (every handler's rollback also undoes a half-done install).
                if let Some(x) = j.targets.get_mut(ti) {
                    x.activated = true;
                }
                ctx.state.save_journal(j)?;
                let env = module_env(j, step, &c.name, m);
                let (mc, e2, timeout) = (m.clone(), env.clone(), ctx.cfg.health.timeout);
                let digest = t.digest.clone().ok_or_else(|| {
                    fail(
                        step,
                        reason::STORAGE,
                        "the staged payload's digest is not journalled",
                    )
                })?;
                let note = off_worker("module", move || {
                    crate::module::install(&mc, &digest, &e2, timeout)
                })
                .await?
                .map_err(|why| fail(step, reason::ACTIVATE, format!("{}: {why}", c.name)))?;
                ctx.state.durability.wrote()?;
                restart(&c.name, &m.restart, &env, timeout).await?;
                notes.push(format!(
                    "{}: {note}{}",
                    c.name,
                    if m.restart.is_empty() {
                        ""
                    } else {
                        ", restarted"
                    }
                ));
            }
            Kind::File(s) => {
                let (Some(from), Some(to)) = (
                    t.from_slot.as_deref().and_then(slots::index),
                    t.to_slot.as_deref().and_then(slots::index),
                ) else {
                    return Err(fail(
                        step,
                        reason::STORAGE,
                        "slots missing from the journal",
                    ));
                };
                if t.activated && s.activate == ActivateMode::Reboot {
                    let (name, sc) = (c.name.clone(), s.clone());
                    match off_worker("bootloader", move || after_reboot(&name, &sc, from, to))
                        .await??
                    {
                        AfterReboot::Booted(note) => {
                            notes.push(note);
                            continue;
                        }
                        AfterReboot::FellBack(why) => {
                            return Err(fail(step, reason::BOOT_REFUSED, why));
                        }
                    }
                }
                let sc = s.clone();
                off_worker("bootloader", move || slots::activate(&sc, from, to)).await??;
                ctx.state.durability.wrote()?;
                if let Some(x) = j.targets.get_mut(ti) {
                    x.activated = true;
                }
                ctx.state.save_journal(j)?;
                let env = slot_env(j, step, &c.name, s, to);
                match s.activate {
                    ActivateMode::Restart => {
                        restart(&c.name, &s.restart, &env, ctx.cfg.health.timeout).await?;
                        notes.push(format!(
                            "{}: slot {} active on trial{}",
                            c.name,
                            slots::name(to),
                            if s.restart.is_empty() {
                                String::new()
                            } else {
                                ", restarted".to_owned()
                            }
                        ));
                    }
                    ActivateMode::Reboot => {
                        if s.reboot.is_empty() {
                            notes.push(format!(
                                "{}: slot {} active on trial (no reboot command: reboot simulated)",
                                c.name,
                                slots::name(to)
                            ));
                        } else {
                            let exit = command::run(&s.reboot, &env, ctx.cfg.health.timeout).await;
                            if !exit.success() {
                                return Err(fail(
                                    step,
                                    reason::ACTIVATE,
                                    exit.describe("the reboot command"),
                                ));
                            }
                            return Err(Stop::Interrupt(AgentError::Rebooting));
                        }
                    }
                }
            }
            Kind::Mcu(m) => {
                if t.activated {
                    notes.push(format!("{}: booted earlier", t.name));
                    continue;
                }
                let to = t
                    .to_slot
                    .as_deref()
                    .and_then(mcu::slot_of)
                    .unwrap_or(suitcase_boot::Slot::B);
                let cfg = ctx.cfg.clone();
                let state = ctx.state.clone();
                let clock = ctx.clock.clone();
                let ci = t.component;
                let decision = tokio::task::spawn_blocking(move || -> Result<_, AgentError> {
                    let c = cfg
                        .components
                        .get(ci)
                        .ok_or_else(|| AgentError::Local("component".into()))?;
                    let Kind::Mcu(m) = &c.kind else {
                        return Err(AgentError::Local("component kind".into()));
                    };
                    let device = Mcu::open(m, &state.durability)?;
                    let spec = verifier_spec(&cfg, clock(), c, m);
                    let d = device.boot(&spec)?;
                    device.save(&state.durability)?;
                    Ok(d)
                })
                .await
                .map_err(|e| AgentError::Local(format!("boot worker: {e}")))??;
                match decision {
                    suitcase_boot::BootDecision::Boot(b)
                        if b.slot == to
                            && matches!(b.state, suitcase_boot::ImageState::Trial { .. }) =>
                    {
                        let suitcase_boot::ImageState::Trial { boot, max } = b.state else {
                            continue;
                        };
                        notes.push(format!(
                            "{}: the bootloader booted slot {to} on trial ({boot}/{max})",
                            c.name
                        ));
                        let _ = m;
                    }
                    suitcase_boot::BootDecision::Boot(b) => {
                        return Err(fail(
                            step,
                            reason::BOOT_REFUSED,
                            format!(
                                "{}: the bootloader kept slot {}{}",
                                c.name,
                                b.slot,
                                b.last_failure.map(|f| format!(": {f}")).unwrap_or_default()
                            ),
                        ));
                    }
                    suitcase_boot::BootDecision::Recovery { reason: r } => {
                        return Err(fail(
                            step,
                            reason::BOOT_REFUSED,
                            format!("{}: the bootloader stays in recovery: {r}", c.name),
                        ));
                    }
                }
                if let Some(x) = j.targets.get_mut(ti) {
                    x.activated = true;
                }
                ctx.state.save_journal(j)?;
            }
        }
    }
    Ok(Done::Success(notes.join("; ")))
}

/// Runs a component's `restart` command at Activate: its failure (with the end of its output)
/// fails the step.
pub(crate) async fn restart(
    name: &str,
    argv: &[String],
    env: &[(String, String)],
    timeout: std::time::Duration,
) -> Result<(), Stop> {
    let (exit, log) = command::run_captured(argv, env, timeout).await;
    if exit.success() {
        return Ok(());
    }
    Err(Stop::Fail(
        StepFailure::new(
            Step::Activate,
            reason::ACTIVATE,
            format!("{name}: {}", exit.describe("the restart command")),
        )
        .with_log(log),
    ))
}

/// What the bootloader did with a slot activated before a reboot.
pub(crate) enum AfterReboot {
    /// The new slot runs (on trial): go on to Clean-up.
    Booted(String),
    /// The old slot runs: the bootloader gave up on the new slot, or never tried it. Revert
    /// and report.
    FellBack(String),
}

/// After a reboot: which slot runs, read back from the bootloader (the pointer backend has no
/// other witness than its own record: the new slot counts as booted, as before).
pub(crate) fn after_reboot(
    name: &str,
    s: &FileSlots,
    from: usize,
    to: usize,
) -> Result<AfterReboot, Stop> {
    let Some(st) = s
        .bootloader
        .status(&s.slots)
        .map_err(|m| Stop::Interrupt(AgentError::Local(format!("{name}: {m}"))))?
    else {
        return Ok(AfterReboot::Booted(format!(
            "{}: slot {} active after the reboot",
            name,
            slots::name(to)
        )));
    };
    Ok(if st.booted == to {
        AfterReboot::Booted(format!(
            "{}: the {} bootloader booted slot {} on trial ({})",
            name,
            s.bootloader.name(),
            slots::name(to),
            st.detail
        ))
    } else if st.next == Some(to) && st.booted == from {
        // Not rebooted through the boot script (or the agent was started again before the
        // reboot): rebooting again could loop for ever on a device whose bootloader never
        // runs the script, so this is a failure too, bounded and reported.
        AfterReboot::FellBack(format!(
            "{}: slot {} runs after the reboot and the {} bootloader has not tried slot {} \
             ({}): the reboot did not go through the suitcase boot script \
             (docs/bootloaders.md), or the agent ran before the reboot",
            name,
            slots::name(from),
            s.bootloader.name(),
            slots::name(to),
            st.detail
        ))
    } else {
        AfterReboot::FellBack(format!(
            "{}: the {} bootloader fell back to slot {}: slot {} did not come up within its \
             boot attempts ({})",
            name,
            s.bootloader.name(),
            slots::name(st.booted),
            slots::name(to),
            st.detail
        ))
    })
}

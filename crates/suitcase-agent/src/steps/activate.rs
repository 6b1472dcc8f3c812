//! NTIA step 12, Activate: each written component switched to its new image on trial (a
//! restart, a reboot through the bootloader, an MCU boot), or installed by its handler.

use suitcase_protocol::Step;

use super::{Done, StepResult, installer, module_env, slot_env};
use crate::backend::{Activated, Installer};
use crate::command;
use crate::ctx::{Ctx, off_worker};
use crate::error::{AgentError, StepFailure, Stop, fail, reason};
use crate::state::{Journal, TargetState};

pub(crate) async fn activate(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Activate;
    let mut notes = Vec::new();
    for ti in 0..j.targets.len() {
        let Some(t) = j.targets.get(ti).cloned() else {
            continue;
        };
        if t.role.is_helper() || !t.state.applied() {
            continue;
        }
        let (c, how) = installer(ctx, &t)?;
        match how {
            Installer::Module(m) => {
                // Marked first: a power cut during the install leaves a journal that rolls it
                // back (every handler's rollback also undoes a half-done install).
                if let Some(x) = j.targets.get_mut(ti) {
                    x.state = TargetState::Activated;
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
            Installer::Slots(b) => {
                let (Some(from), Some(to)) = (t.from_slot, t.to_slot) else {
                    return Err(fail(
                        step,
                        reason::STORAGE,
                        "slots missing from the journal",
                    ));
                };
                let earlier = t.state.activated();
                let (b, activated) = off_worker("bootloader", move || {
                    let r = b.activate(from, to, earlier);
                    (b, r)
                })
                .await?;
                let then = match activated? {
                    Activated::Earlier(note) => {
                        notes.push(note);
                        continue;
                    }
                    then => then,
                };
                if let Some(x) = j.targets.get_mut(ti) {
                    x.state = TargetState::Activated;
                }
                ctx.state.save_journal(j)?;
                let env = slot_env(j, step, &c.name, &*b, to);
                let timeout = ctx.cfg.health.timeout;
                match then {
                    Activated::Earlier(note) | Activated::Running(note) => notes.push(note),
                    Activated::Restart(argv) => {
                        restart(&c.name, &argv, &env, timeout).await?;
                        notes.push(format!(
                            "{}: slot {to} active on trial{}",
                            c.name,
                            if argv.is_empty() { "" } else { ", restarted" }
                        ));
                    }
                    Activated::Reboot(argv) if argv.is_empty() => notes.push(format!(
                        "{}: slot {to} active on trial (no reboot command: reboot simulated)",
                        c.name
                    )),
                    Activated::Reboot(argv) => {
                        let exit = command::run(&argv, &env, timeout).await;
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

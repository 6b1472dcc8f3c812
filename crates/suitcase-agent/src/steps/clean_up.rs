//! NTIA step 13, Clean-up: the health check, then each new image confirmed and the
//! installed inventory updated.

use suitcase_protocol::{InstalledComponent, Step};

use super::{Done, StepResult, env_of, installer, module_env};
use crate::backend::Installer;
use crate::command;
use crate::ctx::{Ctx, blocking};
use crate::error::{StepFailure, Stop, fail, reason};
use crate::slot::Slot;
use crate::state::{Journal, WriterSequence};

pub(crate) async fn clean_up(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::CleanUp;
    let (exit, log) = match &ctx.health {
        Some(hook) => {
            let healthy = hook(&crate::hooks::HealthCheck {
                release_id: j.offer.release_id.clone(),
                sequence: j.sequence,
            });
            (
                command::Exit::Code(Some(if healthy { 0 } else { 1 })),
                String::new(),
            )
        }
        None => {
            command::run_captured(
                &ctx.cfg.health.command,
                &env_of(j, step),
                ctx.cfg.health.timeout,
            )
            .await
        }
    };
    if !exit.success() {
        return Err(Stop::Fail(
            StepFailure::new(
                step,
                reason::HEALTH_CHECK,
                exit.describe("the health check"),
            )
            .with_log(log),
        ));
    }
    let names = blocking(ctx, j, confirm).await?;
    Ok(Done::Success(format!(
        "{}; confirmed {names}; sequence number {} installed; removing temporary data",
        if ctx.cfg.health.command.is_empty() && ctx.health.is_none() {
            "no health check configured"
        } else {
            "health check passed"
        },
        j.sequence
    )))
}

pub(crate) fn confirm(ctx: &Ctx, j: &mut Journal) -> Result<String, Stop> {
    let mut names = Vec::new();
    for t in j
        .targets
        .iter()
        .filter(|t| !t.role.is_helper() && t.state.activated())
    {
        let (c, how) = installer(ctx, t)?;
        match how {
            Installer::Module(m) => {
                let env = module_env(j, Step::CleanUp, &c.name, m);
                // The update is installed and healthy: a failed discard of the old content
                // is logged, not a reason to roll back.
                if let Err(why) = crate::module::commit(m, &env, ctx.cfg.health.timeout) {
                    tracing::warn!("{}: {why}", c.name);
                }
                names.push(format!("{} ({} handler)", t.name, m.handler.name()));
                continue;
            }
            Installer::Slots(b) => {
                let to = t.to_slot.ok_or_else(|| {
                    fail(
                        Step::CleanUp,
                        reason::STORAGE,
                        format!("{}: no target slot in the journal", c.name),
                    )
                })?;
                b.confirm(to)?;
            }
        }
        names.push(format!(
            "{} (slot {})",
            t.name,
            t.to_slot.map_or("?", Slot::name)
        ));
    }
    let mut installed = ctx.state.installed()?;
    // The images, not the helper components (staging, patch, the delta base): nothing of
    // those stays on the device.
    for t in j.targets.iter().filter(|t| !t.role.is_helper()) {
        let c = ctx.cfg.components.get(t.component);
        installed.set(InstalledComponent {
            id: t.id.clone(),
            sequence_number: j.sequence,
            digest: t.digest.clone(),
            size: (t.len > 0).then_some(t.len),
            version: c.and_then(|c| c.version.clone()),
            ..InstalledComponent::default()
        });
        // The writer's own counter (docs/trust.md "Trust domains"): a SUIT dependency's
        // sequence number for a component it wrote, else the release's.
        let sequence = j
            .writers
            .iter()
            .find(|w| w.id == t.id)
            .map_or(j.sequence, |w| w.sequence);
        installed.set_writer(WriterSequence {
            id: t.id.clone(),
            sequence,
        });
    }
    installed.reverted = false;
    installed.last_release = Some(j.offer.release_id.clone());
    ctx.state.save_installed(&installed)?;
    Ok(if names.is_empty() {
        "nothing to confirm".to_owned()
    } else {
        names.join(", ")
    })
}

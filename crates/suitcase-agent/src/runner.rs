//! Runs an update: each NTIA step (`crate::steps`) in turn, the step machine
//! ([`crate::machine`]) between them, the journal written after every step, and a report for
//! every step end. A failed step is undone ([`crate::steps::undo`]) before the failure is
//! reported.

use suitcase_protocol::{Outcome, Step, StepReport};

use crate::ctx::{Ctx, blocking};
use crate::error::{AgentError, StepFailure, Stop};
use crate::events::Event;
use crate::machine::{self, Ended, Then, Undo};
use crate::report::{flush_quietly, report, step_report};
use crate::state::{Journal, StepStarted, Undoing};
use crate::steps::activate::activate;
use crate::steps::announce::announce;
use crate::steps::apply::apply;
use crate::steps::check::check;
use crate::steps::clean_up::clean_up;
use crate::steps::distribute::distribute;
use crate::steps::process::process;
use crate::steps::receive::receive;
use crate::steps::reverify::reverify;
use crate::steps::stage::stage;
use crate::steps::undo::{reboot_into_reverted, undo};
use crate::steps::{Done, StepResult};

/// How an update ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Every step succeeded; the new images are confirmed.
    Installed,
    /// A step failed; the device was returned to its previous state.
    Failed(StepFailure),
    /// Announce deferred it; ask again after this many seconds (or at the next poll).
    Deferred(Option<u64>),
}

/// When the journal's step began: the journalled start if it is this step's (a resumed step
/// keeps its original start: a new journal and every step transition journal it), or now
/// (a journal written by an older agent), journalled with the step's next checkpoint.
pub(crate) fn step_started(ctx: &Ctx, j: &mut Journal) -> u64 {
    if let Some(t) = j.started_at(j.step) {
        return t;
    }
    let at = ctx.now();
    j.started = Some(StepStarted { step: j.step, at });
    at
}

/// Runs (or resumes) the update in `j` until it is installed, fails, is deferred, or is
/// interrupted.
pub(crate) async fn run(ctx: &Ctx, mut j: Journal) -> Result<Finished, AgentError> {
    // An update from a bundle reports offline, also when it is finished by a later run
    // online (after a crash or a reboot).
    let offline_ctx;
    let ctx = if crate::bundle::is_bundle_offer(&j.offer) && !ctx.offline {
        offline_ctx = Ctx {
            offline: true,
            ..ctx.clone()
        };
        &offline_ctx
    } else {
        ctx
    };
    let start = ctx.http.traffic();
    let release = j.release().to_owned();
    loop {
        if let Some(u) = j.undoing.clone() {
            let note = undo(ctx, &mut j, u.undo).await?;
            let detail = if note.is_empty() {
                u.detail.clone()
            } else {
                format!("{}; {note}", u.detail)
            };
            report(
                ctx,
                StepReport {
                    reason: Some(u.reason.clone()),
                    detail: Some(detail.clone()),
                    started_at: j.started_at(u.step),
                    log: u.log.clone(),
                    ..step_report(&release, u.step, Outcome::Failure)
                },
            )?;
            ctx.state.finish()?;
            flush_quietly(ctx).await?;
            let rebooted = if u.undo == Undo::Revert {
                reboot_into_reverted(ctx, &j).await
            } else {
                String::new()
            };
            let detail = if rebooted.is_empty() {
                detail
            } else {
                format!("{detail}; {rebooted}")
            };
            (ctx.events)(&Event::Update {
                release_id: release.clone(),
                result: "failed".into(),
                traffic: Some(ctx.http.traffic().since(&start)),
            });
            return Ok(Finished::Failed(StepFailure {
                step: u.step,
                reason: u.reason,
                detail,
                log: u.log,
            }));
        }
        let step = j.step;
        let started_at = step_started(ctx, &mut j);
        match run_step(ctx, &mut j, step).await {
            Ok(Done::Success(detail)) => {
                report(
                    ctx,
                    StepReport {
                        detail: Some(detail),
                        started_at: Some(started_at),
                        ..step_report(&release, step, Outcome::Success)
                    },
                )?;
                match machine::after(step, Ended::Success).then {
                    Then::Run(next) => {
                        j.step = next;
                        j.started = Some(StepStarted {
                            step: next,
                            at: ctx.now(),
                        });
                        ctx.state.save_journal(&j)?;
                        flush_quietly(ctx).await?;
                    }
                    _ => {
                        ctx.state.finish()?;
                        flush_quietly(ctx).await?;
                        (ctx.events)(&Event::Update {
                            release_id: release.clone(),
                            result: "installed".into(),
                            traffic: Some(ctx.http.traffic().since(&start)),
                        });
                        return Ok(Finished::Installed);
                    }
                }
            }
            Ok(Done::Deferred { detail, retry }) => {
                if !j.deferred_reported {
                    report(
                        ctx,
                        StepReport {
                            detail: Some(detail),
                            started_at: Some(started_at),
                            ..step_report(&release, step, Outcome::Deferred)
                        },
                    )?;
                    j.deferred_reported = true;
                    ctx.state.save_journal(&j)?;
                    flush_quietly(ctx).await?;
                }
                (ctx.events)(&Event::Update {
                    release_id: release.clone(),
                    result: "deferred".into(),
                    traffic: None,
                });
                return Ok(Finished::Deferred(retry));
            }
            Err(Stop::Fail(f)) => {
                let undo = match machine::after(step, Ended::Failure).then {
                    Then::Undo(u) => u,
                    _ => Undo::Revert,
                };
                j.undoing = Some(Undoing {
                    undo,
                    step: f.step,
                    reason: f.reason,
                    detail: f.detail,
                    log: f.log,
                });
                ctx.state.save_journal(&j)?;
            }
            Err(Stop::Interrupt(e)) => {
                if matches!(e, AgentError::Rebooting) {
                    // Activated on trial, not confirmed: Clean-up (health check, confirm) runs
                    // when the agent starts again after the reboot. Not "installed".
                    (ctx.events)(&Event::Update {
                        release_id: release.clone(),
                        result: "rebooting".into(),
                        traffic: Some(ctx.http.traffic().since(&start)),
                    });
                }
                return Err(e);
            }
        }
    }
}

pub(crate) async fn run_step(ctx: &Ctx, j: &mut Journal, step: Step) -> StepResult {
    if j.trust_update.is_some() && !matches!(step, Step::Receive | Step::Check) {
        // A trust update is applied and stored by Check (`steps::check`); it installs no
        // image, so the later steps succeed with nothing to do and the update is reported
        // installed like any other.
        return Ok(Done::Success(format!(
            "nothing to do for a trust update (trust state {} is in force since Check)",
            j.trust_update.unwrap_or_default()
        )));
    }
    match step {
        Step::Receive => receive(ctx, j).await,
        Step::Check => blocking(ctx, j, check).await,
        Step::Announce => announce(ctx, j).await,
        Step::Distribute => blocking(ctx, j, distribute).await,
        Step::Process => blocking(ctx, j, process).await,
        Step::Stage => blocking(ctx, j, stage).await,
        Step::Apply => blocking(ctx, j, apply).await,
        Step::Reverify => blocking(ctx, j, reverify).await,
        Step::Activate => activate(ctx, j).await,
        Step::CleanUp => clean_up(ctx, j).await,
    }
}

//! Step reports: queued durably in the bounded outbox, emitted as events, and delivered in
//! order when the server can be reached.

use suitcase_protocol::{Outcome, Step, StepReport};

use crate::ctx::Ctx;
use crate::error::AgentError;
use crate::events::Event;

/// A report of `step` with nothing but its outcome; callers add the rest.
pub(crate) fn step_report(release: &str, step: Step, outcome: Outcome) -> StepReport {
    StepReport {
        release_id: release.to_owned(),
        step,
        outcome,
        reason: None,
        detail: None,
        progress: None,
        started_at: None,
        log: None,
        suit_report: None,
        offline: false,
    }
}

/// Queues a report (durably, in the bounded outbox: [`crate::state::MAX_OUTBOX`]) and emits
/// its event. The report of an update from a bundle is marked `offline`.
pub(crate) fn report(ctx: &Ctx, mut r: StepReport) -> Result<(), AgentError> {
    r.offline |= ctx.offline;
    (ctx.events)(&Event::Step {
        release_id: r.release_id.clone(),
        step: r.step.name().into(),
        outcome: r.outcome.name().into(),
        reason: r.reason.clone(),
        detail: r.detail.clone(),
        progress: r.progress,
    });
    let mut outbox = ctx.state.outbox()?;
    outbox.push(r);
    let dropped = crate::state::bound_outbox(&mut outbox);
    if dropped > 0 {
        tracing::warn!(
            "the report outbox is full ({} reports); dropped the {dropped} oldest report(s), progress first, failures last",
            crate::state::MAX_OUTBOX
        );
    }
    ctx.state.save_outbox(&outbox)
}

/// Sends queued reports in order; stops at the first that cannot be delivered now.
pub(crate) async fn flush(ctx: &Ctx) -> Result<(), AgentError> {
    let outbox = ctx.state.outbox()?;
    if outbox.is_empty() {
        return Ok(());
    }
    let mut sent = 0;
    let mut error = None;
    for r in &outbox {
        match ctx.http.report(r).await {
            Ok(crate::http::Delivery::Delivered) => sent += 1,
            Ok(crate::http::Delivery::Refused(status)) => {
                tracing::warn!(
                    "the server refused the {} report for {} (HTTP {status}); dropping it",
                    r.step.name(),
                    r.release_id
                );
                sent += 1;
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let rest: Vec<StepReport> = outbox.into_iter().skip(sent).collect();
    ctx.state.save_outbox(&rest)?;
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub(crate) async fn flush_quietly(ctx: &Ctx) -> Result<(), AgentError> {
    if ctx.bundle.is_some() {
        // Installing from a bundle: the server is not there; the reports wait in the outbox
        // (one delivery attempt after the update, then at the next cycle online).
        return Ok(());
    }
    match flush(ctx).await {
        Err(AgentError::Server(e)) => {
            tracing::info!("reports stay queued: {e}");
            Ok(())
        }
        other => other,
    }
}

//! Back-off with jitter between retries, and the pacing of Receive's progress reports.

use suitcase_protocol::{Outcome, Step, StepReport};

use crate::ctx::Ctx;
use crate::report::{flush_quietly, report, step_report};

/// Exponential back-off with jitter: `min × 2^(n-1)`, capped at `max`, times [0.5, 1).
pub(crate) fn backoff(
    min: std::time::Duration,
    max: std::time::Duration,
    n: u32,
) -> std::time::Duration {
    let base = min
        .saturating_mul(
            1u32.checked_shl(n.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        )
        .min(max);
    let r = crate::config::random_bytes::<2>();
    let unit = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX);
    base.mul_f64(0.5 + 0.5 * unit)
}

/// Paces Receive's progress reports: one when the bytes held have grown by a tenth of the
/// total since the last report *and* [`PROGRESS_SECONDS`] have passed, whichever is later;
/// never one per chunk.
pub(crate) struct Pacer {
    pub(crate) release: String,
    pub(crate) started_at: Option<u64>,
    /// The envelope and every payload, in bytes.
    pub(crate) total: u64,
    /// Bytes held at the last report.
    pub(crate) reported: u64,
    /// When the last report was queued.
    pub(crate) at: u64,
}

/// The least time between two download progress reports.
pub(crate) const PROGRESS_SECONDS: u64 = 5;

impl Pacer {
    /// A progress report if one is due with `held` bytes held, queued; the flush of the
    /// queue to await.
    pub(crate) fn due(&mut self, ctx: &Ctx, held: u64) -> Option<crate::http::Pending> {
        if held < self.reported.saturating_add(self.total / 10).max(1) {
            return None;
        }
        let now = ctx.now();
        if now < self.at.saturating_add(PROGRESS_SECONDS) {
            return None;
        }
        self.reported = held;
        self.at = now;
        let r = StepReport {
            detail: Some(format!("downloaded {held} of {} bytes", self.total)),
            progress: Some(held),
            started_at: self.started_at,
            ..step_report(&self.release, Step::Receive, Outcome::InProgress)
        };
        if let Err(e) = report(ctx, r) {
            tracing::warn!("progress report not queued: {e}");
            return None;
        }
        let ctx = ctx.clone();
        Some(Box::pin(async move {
            if let Err(e) = flush_quietly(&ctx).await {
                tracing::warn!("progress report not sent: {e}");
            }
        }))
    }
}

//! Receive's downloads: one file of the offer (the envelope, a payload or a delta patch)
//! fetched with resumption and checkpoints, checked against its offered digest, retried with
//! back-off.

use suitcase_protocol::Step;

use crate::ctx::Ctx;
use crate::error::{AgentError, Stop, fail, reason};
use crate::events::Event;
use crate::http::DownloadError;
use crate::pacing::{Pacer, backoff};
use crate::state::{Download, Journal};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Envelope,
    Payload(usize),
    /// The delta patch offered for payload `i`.
    Delta(usize),
}

pub(crate) fn slot_of(j: &mut Journal, w: Which) -> Option<&mut Download> {
    match w {
        Which::Envelope => Some(&mut j.envelope),
        Which::Payload(i) => j.payloads.get_mut(i),
        Which::Delta(i) => j
            .deltas
            .iter_mut()
            .find(|d| d.index == i)
            .map(|d| &mut d.patch),
    }
}

/// Bytes of the envelope, payloads and delta patches held, but for `skip`'s.
pub(crate) fn held_but(j: &Journal, skip: Which) -> u64 {
    let held = |d: &Download| if d.complete { d.size } else { d.durable };
    let mut n = 0u64;
    if skip != Which::Envelope {
        n = n.saturating_add(held(&j.envelope));
    }
    for (i, p) in j.payloads.iter().enumerate() {
        let delta = j.deltas.iter().find(|d| d.index == i && !d.abandoned);
        if p.complete || delta.is_none() {
            if skip != Which::Payload(i) {
                n = n.saturating_add(held(p));
            }
        } else if let Some(d) = delta
            && skip != Which::Delta(i)
        {
            n = n.saturating_add(held(&d.patch));
        }
    }
    n
}

pub(crate) async fn download(
    ctx: &Ctx,
    j: &mut Journal,
    which: Which,
    pace: &mut Pacer,
) -> Result<(), Stop> {
    let step = Step::Receive;
    let attempts = ctx.cfg.polling.download_attempts;
    let mut failures = 0u32;
    let mut mismatches = 0u32;
    loop {
        let Some(d) = slot_of(j, which).cloned() else {
            return Ok(());
        };
        if d.complete {
            return Ok(());
        }
        let path = ctx.state.work_file(&d.file);
        let mut current = d.clone();
        let r = {
            let mut snapshot = j.clone();
            let state = ctx.state.clone();
            let mut checkpoint = move |dl: &Download| -> Result<(), AgentError> {
                if let Some(s) = slot_of(&mut snapshot, which) {
                    *s = dl.clone();
                }
                state.save_journal(&snapshot)
            };
            let base = held_but(j, which);
            let mut progress = |n: u64| pace.due(ctx, base.saturating_add(n));
            match &ctx.bundle {
                Some(b) if current.url.starts_with(crate::bundle::SCHEME) => {
                    b.download(&mut current, &path, &mut checkpoint, &mut progress)
                        .await
                }
                _ => {
                    ctx.http
                        .download(&mut current, &path, &mut checkpoint, &mut progress)
                        .await
                }
            }
        };
        if let Some(s) = slot_of(j, which) {
            *s = current.clone();
        }
        match r {
            Ok(()) => {
                if let Some(want) = &current.sha256 {
                    let p = path.clone();
                    let got = tokio::task::spawn_blocking(move || crate::http::sha256_file(&p))
                        .await
                        .map_err(|e| AgentError::Local(format!("hash worker: {e}")))??;
                    if !got.eq_ignore_ascii_case(want) {
                        mismatches += 1;
                        if let Some(s) = slot_of(j, which) {
                            s.durable = 0;
                            s.etag = None;
                            s.restarts += 1;
                        }
                        ctx.state.save_journal(j)?;
                        if mismatches >= 2 {
                            return Err(fail(
                                step,
                                reason::DOWNLOAD,
                                format!(
                                    "{} does not match the offered SHA-256 {want} (got {got}) after two downloads",
                                    current.url
                                ),
                            ));
                        }
                        continue;
                    }
                }
                if let Some(s) = slot_of(j, which) {
                    s.complete = true;
                }
                ctx.state.save_journal(j)?;
                return Ok(());
            }
            Err(DownloadError::Gone(m) | DownloadError::Refused(m)) => {
                return Err(fail(step, reason::DOWNLOAD, m));
            }
            Err(DownloadError::Local(e)) => return Err(Stop::Interrupt(e)),
            Err(DownloadError::Transient(m)) => {
                ctx.state.save_journal(j)?;
                failures += 1;
                if failures >= attempts {
                    return Err(Stop::Interrupt(AgentError::Server(format!(
                        "{m} (gave up after {failures} attempts; the download resumes at the next cycle)"
                    ))));
                }
                let wait = backoff(
                    ctx.cfg.polling.backoff_min,
                    ctx.cfg.polling.backoff_max,
                    failures,
                );
                (ctx.events)(&Event::Error {
                    message: m,
                    retry_in_seconds: Some(wait.as_secs_f64()),
                });
                tokio::time::sleep(wait).await;
            }
        }
    }
}

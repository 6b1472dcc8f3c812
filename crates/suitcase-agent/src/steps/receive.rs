//! NTIA step 4, Receive: the offer's URLs admitted, space checked, the envelope downloaded
//! and authenticated (all of Check) before any payload byte is requested, then each payload,
//! by a delta patch against the running image when one is offered.

use suitcase_protocol::{Outcome, Step, StepReport};

use super::check::check;
use super::download::{Which, download};
use super::{Done, StepResult};
use crate::config::{Config, Kind};
use crate::ctx::{Ctx, blocking};
use crate::error::{AgentError, Stop, fail, reason};
use crate::pacing::Pacer;
use crate::report::{flush_quietly, report, step_report};
use crate::state::{Download, Journal};
use crate::verified::MAX_ENVELOPE;

pub(crate) fn largest_capacity(cfg: &Config) -> u64 {
    cfg.components
        .iter()
        .map(|c| match &c.kind {
            Kind::File(s) => s.capacity,
            Kind::Mcu(m) => m.slot_size(),
            Kind::Module(m) => m.capacity,
        })
        .max()
        .unwrap_or(0)
}

pub(crate) async fn receive(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Receive;
    if j.envelope.size > MAX_ENVELOPE {
        return Err(fail(
            step,
            reason::ENVELOPE_SIZE,
            format!(
                "the envelope is {} bytes; this agent accepts at most {MAX_ENVELOPE}",
                j.envelope.size
            ),
        ));
    }
    // Every URL the offer names passes the transport policy before any byte is downloaded
    // (credentials to the server's origin only, no plain HTTP from an HTTPS server: see
    // `Http::admit`).
    let downloads = || std::iter::once(&j.envelope).chain(&j.payloads);
    for d in downloads() {
        let admitted = if d.url.starts_with(crate::bundle::SCHEME) {
            // A bundle member: read from the bundle the agent was started with, never
            // fetched. Without one (a run online resuming a bundle's Receive) it cannot be.
            match &ctx.bundle {
                Some(_) => Ok(()),
                None => Err(format!(
                    "{}: a member of an offline bundle, but the agent is not installing from one (run `suitcase agent --bundle PATH` again)",
                    d.url
                )),
            }
        } else {
            ctx.http.check_url(&d.url)
        };
        if let Err(m) = admitted {
            return Err(fail(step, reason::DOWNLOAD, m));
        }
    }
    // Space before any byte is downloaded (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION).
    let remaining: u64 = downloads()
        .filter(|d| !d.complete)
        .map(|d| d.size.saturating_sub(d.durable))
        .sum();
    let total: u64 = downloads().map(|d| d.size).sum();
    let done: u64 = downloads()
        .map(|d| if d.complete { d.size } else { d.durable })
        .sum();
    if let Some(free) = ctx.state.free_bytes() {
        let need = remaining.saturating_add(ctx.cfg.reserve_bytes);
        if need > free {
            return Err(fail(
                step,
                reason::NO_SPACE,
                format!(
                    "the update needs {remaining} more bytes in {} but {free} are free (storage.reserve_bytes = {})",
                    ctx.state.dir.display(),
                    ctx.cfg.reserve_bytes
                ),
            ));
        }
    }
    let largest = largest_capacity(&ctx.cfg);
    for (i, p) in j.offer.payloads.iter().enumerate() {
        // A little room for an AEAD tag: the payload may be ciphertext of an image that fits.
        if p.size > largest.saturating_add(64) {
            return Err(fail(
                step,
                reason::NO_SPACE,
                format!(
                    "payload {i} ({}) is {} bytes but the largest component slot holds {largest}",
                    p.uri, p.size
                ),
            ));
        }
    }
    let mut pace = Pacer {
        release: j.release().to_owned(),
        started_at: j.started_at(step),
        total,
        reported: done,
        at: ctx.now(),
    };
    if remaining > 0 {
        report(
            ctx,
            StepReport {
                detail: Some(if done > 0 {
                    format!("resuming the download at {done} of {total} bytes")
                } else {
                    format!("downloading {total} bytes")
                }),
                progress: Some(done),
                started_at: j.started_at(step),
                ..step_report(j.release(), step, Outcome::InProgress)
            },
        )?;
        flush_quietly(ctx).await?;
    }
    download(ctx, j, Which::Envelope, &mut pace).await?;
    // Authenticate before download: the whole of Check (signature and trust anchors,
    // anti-rollback, vendor, class and components, sizes against capacity, a decryption key
    // for every encrypted payload) runs on the envelope before a payload byte is requested,
    // so a release this device will refuse costs the envelope and nothing more (the TUF
    // "endless data" attack; RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION). A refusal is reported as
    // the Check failure it is; the Check step after Receive runs it again on the same bytes.
    blocking(ctx, j, check).await?;
    for i in 0..j.payloads.len() {
        if !by_delta(ctx, j, i, &mut pace).await? {
            download(ctx, j, Which::Payload(i), &mut pace).await?;
        }
    }
    let resumes: u32 = std::iter::once(&j.envelope)
        .chain(&j.payloads)
        .chain(j.deltas.iter().map(|d| &d.patch))
        .map(|d| d.resumes)
        .sum();
    let deltas: Vec<String> = j
        .deltas
        .iter()
        .map(|d| match (&d.reason, d.abandoned) {
            (_, false) => format!(
                "payload {} rebuilt from a {}-byte delta patch against the installed image",
                d.index, d.patch.size
            ),
            (Some(r), true) => format!("delta for payload {} not used: {r}", d.index),
            (None, true) => format!("delta for payload {} not used", d.index),
        })
        .collect();
    Ok(Done::Success(format!(
        "envelope ({} bytes) and {} payload(s) ({} bytes) downloaded{}{}",
        j.envelope.size,
        j.payloads.len(),
        j.payloads.iter().map(|d| d.size).sum::<u64>(),
        if resumes > 0 {
            format!(", resumed {resumes} time(s) with range requests")
        } else {
            String::new()
        },
        if deltas.is_empty() {
            String::new()
        } else {
            format!("; {}", deltas.join("; "))
        }
    )))
}

/// Tries the delta patch the server offered for payload `i`: `Ok(true)` when the payload
/// file was rebuilt from it, `Ok(false)` when the full payload must be downloaded (no
/// offer, no matching installed image, or the delta was abandoned).
pub(crate) async fn by_delta(
    ctx: &Ctx,
    j: &mut Journal,
    i: usize,
    pace: &mut Pacer,
) -> Result<bool, Stop> {
    let Some(p) = j.payloads.get(i).cloned() else {
        return Ok(false);
    };
    if p.complete || p.durable > 0 {
        // Done, or a full download is under way: finish that.
        return Ok(false);
    }
    let Some(offer) = j.offer.payloads.get(i).and_then(|o| o.delta.clone()) else {
        return Ok(false);
    };
    if j.deltas.iter().any(|d| d.index == i && d.abandoned) {
        return Ok(false);
    }
    if offer.size > p.size {
        // A patch is read to a file up to its offered size; one larger than the full payload
        // would only cost more disk and time (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION).
        return abandon(
            ctx,
            j,
            i,
            format!(
                "the patch ({} bytes) is larger than the full payload ({} bytes)",
                offer.size, p.size
            ),
        );
    }
    if offer.ram_bound > suitcase_delta::MAX_RAM_BOUND {
        return abandon(
            ctx,
            j,
            i,
            format!("it needs {} bytes of applier RAM", offer.ram_bound),
        );
    }
    let Some(src) = crate::delta::source(ctx, &offer.source_sha256)? else {
        return abandon(
            ctx,
            j,
            i,
            "no installed image matches its source digest".into(),
        );
    };
    if !j.deltas.iter().any(|d| d.index == i) {
        j.deltas.push(crate::delta::DeltaState {
            index: i,
            patch: Download::new(
                offer.url.clone(),
                offer.size,
                Some(offer.sha256.clone()),
                format!("delta-{i}.patch"),
            ),
            abandoned: false,
            reason: None,
        });
        ctx.state.save_journal(j)?;
    }
    match download(ctx, j, Which::Delta(i), pace).await {
        Ok(()) => {}
        Err(Stop::Fail(f)) => return abandon(ctx, j, i, f.detail),
        Err(e) => return Err(e),
    }
    let Some(d) = j.deltas.iter().find(|d| d.index == i) else {
        return Ok(false);
    };
    let patch = ctx.state.work_file(&d.patch.file);
    let out = ctx.state.work_file(&p.file);
    let (size, want) = (p.size, p.sha256.clone().unwrap_or_default());
    let got = tokio::task::spawn_blocking(move || crate::delta::apply(&src, &patch, &out, size))
        .await
        .map_err(|e| AgentError::Local(format!("delta worker: {e}")))?;
    match got {
        Ok(got) if got.eq_ignore_ascii_case(&want) => {
            if let Some(p) = j.payloads.get_mut(i) {
                p.durable = p.size;
                p.complete = true;
            }
            ctx.state.save_journal(j)?;
            Ok(true)
        }
        Ok(got) => abandon(
            ctx,
            j,
            i,
            format!("the patched image hashes to {got}, not the offered {want}"),
        ),
        Err(m) => abandon(ctx, j, i, m),
    }
}

/// Gives the delta for payload `i` up: the full payload is downloaded instead.
pub(crate) fn abandon(ctx: &Ctx, j: &mut Journal, i: usize, reason: String) -> Result<bool, Stop> {
    tracing::info!("delta for payload {i} not used: {reason}; downloading the full payload");
    match j.deltas.iter_mut().find(|d| d.index == i) {
        Some(d) => {
            d.abandoned = true;
            d.reason = Some(reason);
        }
        None => j.deltas.push(crate::delta::DeltaState {
            index: i,
            patch: Download::new(String::new(), 0, None, format!("delta-{i}.patch")),
            abandoned: true,
            reason: Some(reason),
        }),
    }
    if let Some(p) = j.payloads.get(i) {
        // A half-written result must not pass for downloaded bytes.
        let _ = std::fs::remove_file(ctx.state.work_file(&p.file));
    }
    ctx.state.save_journal(j)?;
    Ok(false)
}

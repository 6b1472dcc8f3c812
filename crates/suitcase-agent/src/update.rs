//! Runs an update: each NTIA step as a function, the step machine ([`crate::machine`]) between
//! them, the journal written after every step and at checkpoints inside the long ones, and a
//! report for every step end.

use std::io::Read as _;
use std::sync::Arc;

use suitcase_manifest::{
    Envelope, Processor, ProcessorPolicy, Section, TrustAnchor, VerifiedManifest,
};
use suitcase_protocol::{BootStatus, CheckIn, InstalledComponent, Outcome, Step, StepReport};

use crate::command;
use crate::config::{
    ActivateMode, ComponentConfig, Config, FileSlots, ImageFormat, Kind, McuConfig, ModuleConfig,
};
use crate::consent::{self, Decision};
use crate::error::{AgentError, StepFailure, Stop, reason};
use crate::events::{Event, EventSink};
use crate::http::{DownloadError, Http};
use crate::machine::{self, Ended, Then, Undo};
use crate::mcu::{self, Mcu, VerifierSpec};
use crate::platform::{self, Content, DevicePlatform, Mode, Route};
use crate::slots;
use crate::state::{Candidate, Download, Journal, StateDir, StepStarted, Target, Undoing};

/// The largest envelope the agent accepts (it is held in memory to be verified).
pub const MAX_ENVELOPE: u64 = 1 << 20;

/// The clock: seconds since 1970.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What every step needs.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) cfg: Arc<Config>,
    pub(crate) http: Http,
    pub(crate) state: StateDir,
    pub(crate) events: EventSink,
    pub(crate) clock: Clock,
    pub(crate) health: Option<crate::agent::HealthHook>,
    /// Installing from this offline bundle (docs/bundles.md): `bundle:` URLs are read from
    /// it, and reports are only queued while the update runs (no server is reachable).
    pub(crate) bundle: Option<Arc<crate::bundle::Source>>,
    /// The update in progress came from a bundle: its reports are marked `offline`.
    pub(crate) offline: bool,
}

impl Ctx {
    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }
}

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

/// How a step ended when it did not stop.
enum Done {
    Success(String),
    Deferred { detail: String, retry: Option<u64> },
}

type StepResult = Result<Done, Stop>;

fn fail(step: Step, reason: &str, detail: impl Into<String>) -> Stop {
    Stop::Fail(StepFailure::new(step, reason, detail))
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

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

/// When the journal's step began: the journalled start if it is this step's (a resumed step
/// keeps its original start: a new journal and every step transition journal it), or now
/// (a journal written by an older agent), journalled with the step's next checkpoint.
fn step_started(ctx: &Ctx, j: &mut Journal) -> u64 {
    if let Some(t) = j.started_at(j.step) {
        return t;
    }
    let at = ctx.now();
    j.started = Some(StepStarted { step: j.step, at });
    at
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

async fn flush_quietly(ctx: &Ctx) -> Result<(), AgentError> {
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

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

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

async fn run_step(ctx: &Ctx, j: &mut Journal, step: Step) -> StepResult {
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

/// Runs file-heavy work (a step, or part of one) on the blocking pool.
async fn blocking<T: Send + 'static>(
    ctx: &Ctx,
    j: &mut Journal,
    f: fn(&Ctx, &mut Journal) -> Result<T, Stop>,
) -> Result<T, Stop> {
    let c = ctx.clone();
    let mut owned = j.clone();
    let (owned, r) = off_worker("step", move || {
        let r = f(&c, &mut owned);
        (owned, r)
    })
    .await?;
    *j = owned;
    r
}

/// Runs `f` on the blocking pool, off the async worker: file-heavy work, and every bootloader
/// operation (`fw_printenv`, `fw_setenv`, `grub-editenv`, the custom commands: `bootloader.rs`
/// waits for them with `std::process`, each up to its timeout).
pub(crate) async fn off_worker<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Local(format!("{what} worker: {e}")))
}

fn env_of(j: &Journal, step: Step) -> Vec<(String, String)> {
    vec![
        ("SUITCASE_RELEASE_ID".into(), j.offer.release_id.clone()),
        ("SUITCASE_SEQUENCE".into(), j.sequence.to_string()),
        (
            "SUITCASE_REQUIRES_CONSENT".into(),
            u8::from(j.offer.requires_consent).to_string(),
        ),
        (
            "SUITCASE_ROLLBACK".into(),
            u8::from(j.offer.rollback).to_string(),
        ),
        ("SUITCASE_STEP".into(), step.name().into()),
    ]
}

/// The environment of a file component's command: [`env_of`] plus the component, the slot
/// and the slot's path.
fn slot_env(
    j: &Journal,
    step: Step,
    component: &str,
    s: &FileSlots,
    slot: usize,
) -> Vec<(String, String)> {
    let mut env = env_of(j, step);
    env.push(("SUITCASE_COMPONENT".into(), component.to_owned()));
    env.push(("SUITCASE_SLOT".into(), slots::name(slot).into()));
    env.push((
        "SUITCASE_SLOT_PATH".into(),
        s.slots
            .get(slot)
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    ));
    env
}

/// The environment of an update module's commands: [`env_of`] plus the component, its
/// handler and the staged payload.
fn module_env(j: &Journal, step: Step, component: &str, m: &ModuleConfig) -> Vec<(String, String)> {
    let mut env = env_of(j, step);
    env.push(("SUITCASE_COMPONENT".into(), component.to_owned()));
    env.push(("SUITCASE_MODULE".into(), m.handler.name().into()));
    env.push((
        "SUITCASE_MODULE_FILE".into(),
        m.staged.display().to_string(),
    ));
    env
}

// ---------------------------------------------------------------------------------------------
// 4 Receive
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Envelope,
    Payload(usize),
    /// The delta patch offered for payload `i`.
    Delta(usize),
}

fn slot_of(j: &mut Journal, w: Which) -> Option<&mut Download> {
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

fn largest_capacity(cfg: &Config) -> u64 {
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

async fn receive(ctx: &Ctx, j: &mut Journal) -> StepResult {
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
async fn by_delta(ctx: &Ctx, j: &mut Journal, i: usize, pace: &mut Pacer) -> Result<bool, Stop> {
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
fn abandon(ctx: &Ctx, j: &mut Journal, i: usize, reason: String) -> Result<bool, Stop> {
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
struct Pacer {
    release: String,
    started_at: Option<u64>,
    /// The envelope and every payload, in bytes.
    total: u64,
    /// Bytes held at the last report.
    reported: u64,
    /// When the last report was queued.
    at: u64,
}

/// The least time between two download progress reports.
const PROGRESS_SECONDS: u64 = 5;

impl Pacer {
    /// A progress report if one is due with `held` bytes held, queued; the flush of the
    /// queue to await.
    fn due(&mut self, ctx: &Ctx, held: u64) -> Option<crate::http::Pending> {
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

/// Bytes of the envelope, payloads and delta patches held, but for `skip`'s.
fn held_but(j: &Journal, skip: Which) -> u64 {
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

async fn download(ctx: &Ctx, j: &mut Journal, which: Which, pace: &mut Pacer) -> Result<(), Stop> {
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

// ---------------------------------------------------------------------------------------------
// Helpers for the verified manifest
// ---------------------------------------------------------------------------------------------

fn read_envelope(ctx: &Ctx, j: &Journal) -> Result<Vec<u8>, AgentError> {
    let path = ctx.state.work_file(&j.envelope.file);
    let mut f = std::fs::File::open(&path).map_err(crate::error::local(format!(
        "cannot read {}",
        path.display()
    )))?;
    let mut bytes = Vec::new();
    f.by_ref()
        .take(MAX_ENVELOPE)
        .read_to_end(&mut bytes)
        .map_err(crate::error::local(format!(
            "cannot read {}",
            path.display()
        )))?;
    Ok(bytes)
}

/// Authenticates the envelope: the only way to a [`VerifiedManifest`].
fn verify<'e>(
    ctx: &Ctx,
    step: Step,
    bytes: &'e [u8],
    anchors: &[TrustAnchor<'_>],
) -> Result<VerifiedManifest<'e>, Stop> {
    let policy = ctx.cfg.trust.policy(ctx.now());
    Envelope::decode(bytes)
        .and_then(|e| e.verify(anchors, &policy))
        .map_err(|e| Stop::Fail(StepFailure::suit(step, &e)))
}

fn hex_id(id: &suitcase_manifest::ComponentId<'_>) -> Vec<String> {
    id.segments().map(hex::encode).collect()
}

fn installed_sequence(ctx: &Ctx, v: &VerifiedManifest<'_>) -> Result<Option<u64>, AgentError> {
    let installed = ctx.state.installed()?;
    Ok(v.manifest()
        .components
        .iter()
        .filter_map(|c| installed.sequence(&hex_id(&c)))
        .max())
}

/// Points each `<id>/installed` helper of the manifest at the image its component runs now
/// (the base of a delta patch). The manifest names that image by digest (image-match,
/// draft-ietf-suit-manifest §8.4.9.2) before anything is fetched or patched, so Check refuses a
/// delta built for another image and the applier only ever reads a verified base.
fn preset_running(
    ctx: &Ctx,
    v: &VerifiedManifest<'_>,
    p: &mut DevicePlatform<'_>,
) -> Result<(), AgentError> {
    for (index, id) in v.manifest().components.iter().enumerate() {
        let Some(Route::Running(ci)) = platform::route(&ctx.cfg, &id) else {
            continue;
        };
        match crate::delta::running(ctx, ci)? {
            Some(src) => p.set_content(index, src.content()),
            None => {
                let name = ctx.cfg.components.get(ci).map_or("?", |c| c.name.as_str());
                p.problem.get_or_insert_with(|| {
                    format!("the release is a delta from an installed image, but nothing is installed in {name}")
                });
            }
        }
    }
    Ok(())
}

fn suit_failure(step: Step, e: &suitcase_manifest::Error, p: &DevicePlatform<'_>) -> Stop {
    let mut detail = e.to_string();
    if let Some(problem) = &p.problem {
        detail.push_str(": ");
        detail.push_str(problem);
    }
    if let Some(f) = &p.last_failed {
        detail.push_str(&format!(" (at {f})"));
    }
    if p.no_space {
        return fail(step, reason::NO_SPACE, detail);
    }
    if let suitcase_manifest::Error::UnsupportedCritical {
        what: suitcase_manifest::Unsupported::Component,
        ..
    } = e
    {
        detail.push_str(
            ": the manifest names a component this device does not have (agent.toml [[component]])",
        );
    }
    fail(step, e.reason().code(), detail)
}

const UPDATE_SECTIONS: [Section; 4] = [
    Section::DependencyResolution,
    Section::PayloadFetch,
    Section::CandidateVerification,
    Section::Install,
];

// ---------------------------------------------------------------------------------------------
// 5 Check
// ---------------------------------------------------------------------------------------------

fn check(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Check;
    let bytes = read_envelope(ctx, j)?;
    let anchors = ctx.cfg.trust.anchors();
    let v = verify(ctx, step, &bytes, &anchors)?;
    // A bundle's index is not trusted, and the release id of a bundle offer comes from it:
    // it must name the manifest that was verified (its digest, `bundle_release_id`), or the
    // reports, `SUITCASE_RELEASE_ID` and `installed` would credit another release (docs/bundles.md
    // §4: the server records an offline install under the release its reports name).
    if crate::bundle::is_bundle_offer(&j.offer) {
        let id = crate::bundle::bundle_release_id(&hex::encode(v.digest().as_bytes()));
        if j.offer.release_id != id {
            return Err(fail(
                step,
                suitcase_manifest::Reason::Digest.code(),
                format!(
                    "the bundle's index names this release {:?}, but its envelope's manifest digest is {id}: refused",
                    j.offer.release_id
                ),
            ));
        }
    }
    let signers: Vec<&str> = v
        .signers()
        .iter()
        .filter_map(|i| anchors.get(i))
        .map(|a| a.name)
        .collect();
    let installed = installed_sequence(ctx, &v)?;
    let mut probe = DevicePlatform::new(
        &ctx.cfg,
        Mode::Probe,
        bytes.len() as u64,
        ctx.state.work(),
        Vec::new(),
        ctx.now(),
    );
    preset_running(ctx, &v, &mut probe)?;
    let outcome = match Processor::new(
        &v,
        &mut probe,
        ProcessorPolicy {
            installed_sequence: installed,
            allow_same_sequence: false,
        },
    ) {
        Ok(mut p) => UPDATE_SECTIONS
            .iter()
            .try_for_each(|s| p.run(*s).map(|_| ())),
        Err(e) => return Err(suit_failure(step, &e, &probe)),
    };
    if let Err(e) = outcome
        && !probe.side_effect
    {
        return Err(suit_failure(step, &e, &probe));
    }
    let encrypted = decryptable(ctx, &v).map_err(|detail| {
        fail(
            step,
            suitcase_manifest::Error::Decrypt.reason().code(),
            detail,
        )
    })?;
    j.sequence = v.sequence_number();
    Ok(Done::Success(format!(
        "authentic (signed by {}); sequence number {} {}; applicable to this device (vendor, class, components, sizes){}",
        signers.join(", "),
        v.sequence_number(),
        installed.map_or_else(
            || "(nothing installed yet)".to_owned(),
            |s| format!("is newer than the installed {s}")
        ),
        match encrypted {
            0 => String::new(),
            n => format!("; holds the key for {n} encrypted payload(s)"),
        },
    )))
}

/// Whether this device holds a key for every encrypted payload of the update: each
/// encryption-info parameter (SUIT_Encryption_Info, draft-ietf-suit-firmware-encryption-26
/// §5, as `suitcase_manifest::encryption` cites it) the shared sequence and the update
/// sections set must give up its content key to one of `trust.decrypt`, so that a release
/// encrypted for other devices is refused at Check, before its payloads are downloaded. In a try-each, one branch whose payloads can all be decrypted is enough (the
/// processor takes the first branch that succeeds). Returns how many encryption infos were
/// unwrapped, or what is missing.
fn decryptable(ctx: &Ctx, v: &VerifiedManifest<'_>) -> Result<usize, String> {
    use suitcase_manifest::{Command, CommandSequence, Parameter, ParameterMap, SectionState};

    /// Nesting is bounded by the decoder already (try-each and run-sequence depth); this is
    /// a second bound that never panics or recurses without end whatever the input.
    const MAX_DEPTH: usize = 16;

    fn map(ctx: &Ctx, p: &ParameterMap<'_>, n: &mut usize) -> Result<(), String> {
        for param in p.iter() {
            let Parameter::EncryptionInfo(raw) = param else {
                continue;
            };
            let info = suitcase_manifest::encryption::EncryptionInfo::decode(raw)
                .map_err(|e| format!("the manifest's encryption info is unreadable: {e}"))?;
            let mut cek = [0u8; 32];
            let unwrapped = ctx.cfg.trust.keys.content_key(&info, &mut cek);
            cek.fill(0);
            if unwrapped.is_err() {
                return Err("a payload is encrypted for other devices: no key in trust.decrypt recovers its content key (nothing downloaded)".into());
            }
            *n += 1;
        }
        Ok(())
    }

    fn walk(
        ctx: &Ctx,
        seq: &CommandSequence<'_>,
        depth: usize,
        n: &mut usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("the manifest's command sequences nest too deeply".into());
        }
        for (_, command) in seq.iter() {
            match command {
                Command::OverrideParameters(p) | Command::SetParameters(p) => map(ctx, &p, n)?,
                Command::OverrideMultiple(m) => {
                    for (_, p) in m.iter() {
                        map(ctx, &p, n)?;
                    }
                }
                Command::RunSequence(s) => walk(ctx, &s, depth + 1, n)?,
                Command::TryEach(t) => {
                    let mut first_error = None;
                    let mut ok = t.allow_all_fail;
                    for branch in t.branches() {
                        let mut k = 0;
                        match walk(ctx, &branch, depth + 1, &mut k) {
                            Ok(()) => {
                                ok = true;
                                *n += k;
                                break;
                            }
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    if !ok && let Some(e) = first_error {
                        return Err(e);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    let mut n = 0;
    if let Some(shared) = &v.manifest().shared_sequence {
        walk(ctx, shared, 0, &mut n)?;
    }
    for section in UPDATE_SECTIONS {
        if let SectionState::Present(seq) = v.section(section) {
            walk(ctx, &seq, 0, &mut n)?;
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// 6 Announce
// ---------------------------------------------------------------------------------------------

async fn announce(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Announce;
    if j.consent_granted {
        return Ok(Done::Success("consent was given earlier".into()));
    }
    let c = &ctx.cfg.consent;
    let decision = match c.mode {
        crate::config::ConsentMode::Auto => Decision::Granted(if j.offer.requires_consent {
            "the operator asked for consent; consent.mode = \"auto\" gives it".into()
        } else {
            "installing automatically (consent.mode = \"auto\")".into()
        }),
        crate::config::ConsentMode::Command => {
            match command::run(&c.command, &env_of(j, step), c.timeout).await {
                command::Exit::Code(code) => consent::from_exit(code),
                other => Decision::Deferred {
                    detail: other.describe("the consent command"),
                    retry_seconds: None,
                },
            }
        }
        crate::config::ConsentMode::Window => match &c.window {
            Some(w) => consent::from_window(w, ctx.now()),
            None => Decision::Granted("no window configured".into()),
        },
    };
    match decision {
        Decision::Granted(s) => {
            j.consent_granted = true;
            Ok(Done::Success(s))
        }
        Decision::Deferred {
            detail,
            retry_seconds,
        } => Ok(Done::Deferred {
            detail,
            retry: retry_seconds,
        }),
        Decision::Refused(s) => Err(fail(step, reason::CONSENT, s)),
    }
}

// ---------------------------------------------------------------------------------------------
// 7 Distribute
// ---------------------------------------------------------------------------------------------

fn distribute(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Distribute;
    let bytes = read_envelope(ctx, j)?;
    let anchors = ctx.cfg.trust.anchors();
    let v = verify(ctx, step, &bytes, &anchors)?;
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    for (index, id) in v.manifest().components.iter().enumerate() {
        let Some(r) = platform::route(&ctx.cfg, &id) else {
            return Err(fail(
                step,
                "unsupported-critical",
                format!(
                    "the manifest names component {:?}, which this device does not have",
                    hex_id(&id)
                ),
            ));
        };
        let ci = r.component();
        let helper = !matches!(r, Route::Image(_));
        let Some(c) = ctx.cfg.components.get(ci) else {
            return Err(fail(step, "unsupported-critical", "component index"));
        };
        let mut t = Target {
            index,
            component: ci,
            id: hex_id(&id),
            name: format!("{}{}", c.name, r.suffix(&id)),
            helper,
            running: r == Route::Running(ci),
            from_slot: None,
            to_slot: None,
            installed_sequence: None,
            written: 0,
            len: 0,
            image_offset: 0,
            applied: false,
            activated: false,
            digest: None,
        };
        if !helper {
            let (from, to, what) = match &c.kind {
                Kind::Module(m) => {
                    // No slots: the handler installs in place and keeps what it replaces.
                    notes.push(format!(
                        "{} → update module ({} handler; {})",
                        c.name,
                        m.handler.name(),
                        if crate::module::can_roll_back(m) {
                            "can roll back"
                        } else {
                            "cannot roll back"
                        }
                    ));
                    targets.push(t);
                    continue;
                }
                Kind::File(s) => {
                    slots::check(s).map_err(|m| fail(step, reason::STORAGE, m))?;
                    // With a bootloader backend, also checks that the system booted the slot
                    // the record names: the inactive slot is written next, and it must not be
                    // the one running.
                    let p = slots::running(s)
                        .map_err(|m| fail(step, reason::STORAGE, format!("{}: {m}", c.name)))?;
                    if p.trial() {
                        return Err(fail(
                            step,
                            reason::STORAGE,
                            format!(
                                "{}: slot {} is on trial and not confirmed ({}); confirm or revert it first",
                                c.name,
                                slots::name(p.active),
                                s.pointer.display()
                            ),
                        ));
                    }
                    (
                        slots::name(p.active),
                        slots::name(1 - p.active.min(1)),
                        "file slot",
                    )
                }
                Kind::Mcu(m) => {
                    let mcu = Mcu::open(m, &ctx.state.durability)?;
                    let st = mcu.status()?;
                    if st.phase == suitcase_boot::Phase::Trial {
                        return Err(fail(
                            step,
                            reason::STORAGE,
                            format!("{}: the MCU runs an unconfirmed trial image", c.name),
                        ));
                    }
                    (
                        mcu::slot_name(st.confirmed),
                        mcu::slot_name(st.confirmed.other()),
                        if m.secondary.is_some() {
                            "secondary MCU (verifies its own manifest), slot"
                        } else {
                            "MCU slot"
                        },
                    )
                }
            };
            notes.push(format!("{} → {what} {to}", c.name));
            t.from_slot = Some(from.into());
            t.to_slot = Some(to.into());
        } else if t.running {
            notes.push(format!("{} ← the running image (delta base)", t.name));
        } else {
            notes.push(format!("{} → work area", t.name));
        }
        targets.push(t);
    }
    j.targets = targets;
    Ok(Done::Success(notes.join("; ")))
}

// ---------------------------------------------------------------------------------------------
// 8 Process
// ---------------------------------------------------------------------------------------------

fn process(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Process;
    let bytes = read_envelope(ctx, j)?;
    let anchors = ctx.cfg.trust.anchors();
    let v = verify(ctx, step, &bytes, &anchors)?;
    let installed = installed_sequence(ctx, &v)?;
    let payloads = j
        .offer
        .payloads
        .iter()
        .zip(&j.payloads)
        .map(|(o, d)| (o.uri.clone(), ctx.state.work_file(&d.file), d.size))
        .collect();
    let mut p = DevicePlatform::new(
        &ctx.cfg,
        Mode::Process,
        bytes.len() as u64,
        ctx.state.work(),
        payloads,
        ctx.now(),
    );
    preset_running(ctx, &v, &mut p)?;
    let outcome = match Processor::new(
        &v,
        &mut p,
        ProcessorPolicy {
            installed_sequence: installed,
            allow_same_sequence: false,
        },
    ) {
        Ok(mut proc) => UPDATE_SECTIONS
            .iter()
            .try_for_each(|s| proc.run(*s).map(|_| ())),
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        return Err(suit_failure(step, &e, &p));
    }
    let mut candidates = Vec::new();
    for (index, c) in p.content.iter().enumerate() {
        // A running image is read in place; it is no candidate (nothing of it is written).
        if j.targets.iter().any(|t| t.index == index && t.running) {
            continue;
        }
        if let Some(c) = c {
            let file = c
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            candidates.push(Candidate {
                index,
                file,
                len: c.len,
            });
        }
    }
    let images = candidates
        .iter()
        .filter(|c| j.targets.iter().any(|t| t.index == c.index && !t.helper))
        .count();
    j.candidates = candidates;
    Ok(Done::Success(format!(
        "{images} candidate image(s) ready and matching the manifest's digests; {} payload(s) decrypted as a stream",
        p.decrypted
    )))
}

// ---------------------------------------------------------------------------------------------
// 9 Stage
// ---------------------------------------------------------------------------------------------

fn stage(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let installed = ctx.state.installed()?;
    let mut notes = Vec::new();
    for t in &mut j.targets {
        t.installed_sequence = installed.sequence(&t.id);
        t.written = 0;
        t.applied = false;
        t.activated = false;
        if !t.helper {
            notes.push(format!(
                "{} runs slot {} (sequence {})",
                t.name,
                t.from_slot.as_deref().unwrap_or("?"),
                t.installed_sequence
                    .map_or_else(|| "none".to_owned(), |s| s.to_string())
            ));
        }
    }
    Ok(Done::Success(format!(
        "pre-update state journalled: {}",
        notes.join(", ")
    )))
}

// ---------------------------------------------------------------------------------------------
// 10 Apply
// ---------------------------------------------------------------------------------------------

fn component<'c>(ctx: &'c Ctx, t: &Target) -> Result<&'c ComponentConfig, Stop> {
    ctx.cfg.components.get(t.component).ok_or_else(|| {
        fail(
            Step::Apply,
            reason::STORAGE,
            "component vanished from the configuration",
        )
    })
}

fn apply(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Apply;
    let envelope = read_envelope(ctx, j)?;
    let mut notes = Vec::new();
    for ti in 0..j.targets.len() {
        let Some(t) = j.targets.get(ti).cloned() else {
            continue;
        };
        if t.helper {
            continue;
        }
        let Some(cand) = j.candidates.iter().find(|c| c.index == t.index).cloned() else {
            notes.push(format!("{}: nothing to write", t.name));
            continue;
        };
        if t.applied {
            notes.push(format!("{}: written earlier", t.name));
            continue;
        }
        let src = ctx.state.work_file(&cand.file);
        let c = component(ctx, &t)?;
        match &c.kind {
            Kind::Module(m) => {
                if cand.len > m.capacity {
                    return Err(fail(
                        step,
                        reason::NO_SPACE,
                        format!(
                            "{}: the payload is {} bytes but capacity = {}",
                            t.name, cand.len, m.capacity
                        ),
                    ));
                }
                let digest = crate::module::stage(m, &src)
                    .map_err(|why| fail(step, reason::STORAGE, format!("{}: {why}", t.name)))?;
                notes.push(format!(
                    "{}: {} bytes staged for the {} handler",
                    t.name,
                    cand.len,
                    m.handler.name()
                ));
                if let Some(x) = j.targets.get_mut(ti) {
                    x.written = cand.len;
                    x.len = cand.len;
                    x.digest = Some(digest);
                    x.applied = true;
                }
            }
            Kind::File(s) => {
                let to = t
                    .to_slot
                    .as_deref()
                    .and_then(slots::index)
                    .ok_or_else(|| fail(step, reason::STORAGE, "no target slot"))?;
                if t.written == 0
                    && let Some(from) = t.from_slot.as_deref().and_then(slots::index)
                {
                    // The bootloader must not fall back into a slot holding half an image.
                    // Nothing is switched yet: a bootloader that cannot be written fails
                    // Apply (unstaged, reported) rather than stopping the agent at every start.
                    slots::prepare(s, from)
                        .map_err(|e| fail(step, reason::STORAGE, format!("{}: {e}", c.name)))?;
                }
                let mut snapshot = j.clone();
                let state = ctx.state.clone();
                let mut checkpoint = |done: u64| -> Result<(), AgentError> {
                    if let Some(x) = snapshot.targets.get_mut(ti) {
                        x.written = done;
                    }
                    state.save_journal(&snapshot)
                };
                let digest = slots::write_slot(s, to, &src, cand.len, t.written, &mut checkpoint)
                    .map_err(|e| match e {
                    slots::SlotError::NoSpace(m) => fail(step, reason::NO_SPACE, m),
                    slots::SlotError::Storage(m) => fail(step, reason::STORAGE, m),
                    slots::SlotError::Agent(e) => Stop::Interrupt(e),
                })?;
                notes.push(format!(
                    "{}: {} bytes into slot {} (sha-256 {})",
                    t.name,
                    cand.len,
                    slots::name(to),
                    digest.get(..16).unwrap_or_default()
                ));
                if let Some(x) = j.targets.get_mut(ti) {
                    x.written = cand.len;
                    x.len = cand.len;
                    x.image_offset = 0;
                    x.digest = Some(digest);
                    x.applied = true;
                }
            }
            Kind::Mcu(m) => {
                let (total, offset, prefix) = match m.image {
                    ImageFormat::Raw => {
                        let env_len = envelope.len() as u64;
                        let off = mcu::image_offset(env_len);
                        let mut prefix = mcu::slot_header(
                            u32::try_from(env_len).unwrap_or(u32::MAX),
                            u32::try_from(off).unwrap_or(u32::MAX),
                            u32::try_from(cand.len).unwrap_or(u32::MAX),
                        )
                        .to_vec();
                        prefix.extend_from_slice(&envelope);
                        prefix.resize(usize::try_from(off).unwrap_or(0), 0);
                        (off + cand.len, off, prefix)
                    }
                    ImageFormat::SlotImage => (cand.len, 0, Vec::new()),
                };
                if total > m.slot_size() {
                    return Err(fail(
                        step,
                        reason::NO_SPACE,
                        format!(
                            "{}: the slot image is {total} bytes but a slot holds {}",
                            t.name,
                            m.slot_size()
                        ),
                    ));
                }
                let file = std::fs::File::open(&src).map_err(crate::error::local(format!(
                    "cannot read {}",
                    src.display()
                )))?;
                let mut reader = std::io::Cursor::new(prefix).chain(file.take(cand.len));
                let device = Mcu::open(m, &ctx.state.durability)?;
                let slot = device
                    .stage(total, &mut reader)
                    .map_err(|e| fail(step, reason::STORAGE, format!("{}: {e}", t.name)))?;
                device.save(&ctx.state.durability)?;
                let digest = crate::http::sha256_file(&src)?;
                notes.push(format!(
                    "{}: {total} bytes staged in MCU slot {} (pending)",
                    t.name,
                    mcu::slot_name(slot)
                ));
                if let Some(x) = j.targets.get_mut(ti) {
                    x.written = total;
                    x.len = cand.len;
                    x.image_offset = offset;
                    x.digest = Some(digest);
                    x.to_slot = Some(mcu::slot_name(slot).into());
                    x.applied = true;
                }
            }
        }
        ctx.state.save_journal(j)?;
    }
    Ok(Done::Success(notes.join("; ")))
}

// ---------------------------------------------------------------------------------------------
// 11 Re-verify
// ---------------------------------------------------------------------------------------------

fn verifier_spec<'c>(
    cfg: &'c Config,
    now: u64,
    c: &'c ComponentConfig,
    m: &'c McuConfig,
) -> VerifierSpec<'c> {
    match &m.secondary {
        Some(s) => VerifierSpec {
            anchors: crate::config::anchors_of(&s.anchors),
            policy: suitcase_manifest::TrustPolicy {
                time: Some(now),
                ..suitcase_manifest::TrustPolicy::default()
            },
            identity: s.identity,
            component: suitcase_manifest::build::encode_component_id(&s.inner_component),
        },
        None => VerifierSpec {
            anchors: cfg.trust.anchors(),
            policy: cfg.trust.policy(now),
            identity: cfg.identity,
            component: suitcase_manifest::build::encode_component_id(&c.id),
        },
    }
}

fn mcu_slot_offset(m: &McuConfig, slot: &str) -> u64 {
    let s = u64::from(m.sector_size);
    if slot == "b" {
        2 * s + m.slot_size()
    } else {
        2 * s
    }
}

fn reverify(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Reverify;
    let bytes = read_envelope(ctx, j)?;
    let anchors = ctx.cfg.trust.anchors();
    let v = verify(ctx, step, &bytes, &anchors)?;
    let installed = installed_sequence(ctx, &v)?;
    let mut p = DevicePlatform::new(
        &ctx.cfg,
        Mode::Reverify,
        bytes.len() as u64,
        ctx.state.work(),
        Vec::new(),
        ctx.now(),
    );
    for t in &j.targets {
        let content = if t.helper || !t.applied {
            j.candidates
                .iter()
                .find(|c| c.index == t.index)
                .map(|c| Content {
                    path: ctx.state.work_file(&c.file),
                    offset: 0,
                    len: c.len,
                })
        } else {
            let c = component(ctx, t)?;
            let slot = t.to_slot.as_deref().unwrap_or("b");
            Some(match &c.kind {
                Kind::Module(m) => Content {
                    path: m.staged.clone(),
                    offset: 0,
                    len: t.len,
                },
                Kind::File(s) => Content {
                    path: s
                        .slots
                        .get(slots::index(slot).unwrap_or(1))
                        .cloned()
                        .unwrap_or_default(),
                    offset: 0,
                    len: t.len,
                },
                Kind::Mcu(m) => Content {
                    path: m.flash.clone(),
                    offset: mcu_slot_offset(m, slot) + t.image_offset,
                    len: t.len,
                },
            })
        };
        if let Some(content) = content {
            p.set_content(t.index, content);
        }
    }
    let outcome = match Processor::new(
        &v,
        &mut p,
        ProcessorPolicy {
            installed_sequence: installed,
            allow_same_sequence: false,
        },
    ) {
        Ok(mut proc) => proc.run(Section::Validate),
        Err(e) => Err(e),
    };
    let ran = match outcome {
        Ok(ran) => ran,
        Err(e) => return Err(suit_failure(step, &e, &p)),
    };
    let mut notes = vec![if ran {
        "the manifest's validate section accepts what was written".to_owned()
    } else {
        "the manifest has no validate section".to_owned()
    }];
    for t in j.targets.iter().filter(|t| !t.helper && t.applied) {
        let c = component(ctx, t)?;
        if let Kind::Mcu(m) = &c.kind {
            let device = Mcu::open(m, &ctx.state.durability)?;
            let spec = verifier_spec(&ctx.cfg, ctx.now(), c, m);
            let slot = t
                .to_slot
                .as_deref()
                .and_then(mcu::slot_of)
                .unwrap_or(suitcase_boot::Slot::B);
            let measured = device
                .verify(&spec, slot)
                .map_err(|e| fail(step, reason::BOOT_REFUSED, format!("{}: {e}", t.name)))?;
            notes.push(format!(
                "{}: {} accepts slot {slot} (security version {})",
                t.name,
                if m.secondary.is_some() {
                    "the secondary MCU's own verifier"
                } else {
                    "the MCU's boot verifier"
                },
                measured.security_version.0
            ));
        }
    }
    Ok(Done::Success(notes.join("; ")))
}

// ---------------------------------------------------------------------------------------------
// 12 Activate
// ---------------------------------------------------------------------------------------------

async fn activate(ctx: &Ctx, j: &mut Journal) -> StepResult {
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
async fn restart(
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

/// After a revert, the reported failure delivered: a component whose bootloader switches
/// slots at boot and that still runs the reverted slot (its health check failed on it) is
/// rebooted into the old slot with its `reboot` command; otherwise it would keep running the
/// image it just refused until something else reboots it. Returns what it did.
async fn reboot_into_reverted(ctx: &Ctx, j: &Journal) -> String {
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

/// What the bootloader did with a slot activated before a reboot.
enum AfterReboot {
    /// The new slot runs (on trial): go on to Clean-up.
    Booted(String),
    /// The old slot runs: the bootloader gave up on the new slot, or never tried it. Revert
    /// and report.
    FellBack(String),
}

/// After a reboot: which slot runs, read back from the bootloader (the pointer backend has no
/// other witness than its own record: the new slot counts as booted, as before).
fn after_reboot(name: &str, s: &FileSlots, from: usize, to: usize) -> Result<AfterReboot, Stop> {
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

// ---------------------------------------------------------------------------------------------
// 13 Clean-up
// ---------------------------------------------------------------------------------------------

async fn clean_up(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::CleanUp;
    let (exit, log) = match &ctx.health {
        Some(hook) => {
            let healthy = hook(&crate::agent::HealthCheck {
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

fn confirm(ctx: &Ctx, j: &mut Journal) -> Result<String, Stop> {
    let mut names = Vec::new();
    for t in j.targets.iter().filter(|t| !t.helper && t.activated) {
        let c = component(ctx, t)?;
        match &c.kind {
            Kind::Module(m) => {
                let env = module_env(j, Step::CleanUp, &c.name, m);
                // The update is installed and healthy: a failed discard of the old content
                // is logged, not a reason to roll back.
                if let Err(why) = crate::module::commit(m, &env, ctx.cfg.health.timeout) {
                    tracing::warn!("{}: {why}", c.name);
                }
                names.push(format!("{} ({} handler)", t.name, m.handler.name()));
                continue;
            }
            Kind::File(s) => {
                let to = t.to_slot.as_deref().and_then(slots::index).unwrap_or(1);
                slots::confirm(s, to)?;
                ctx.state.durability.wrote()?;
            }
            Kind::Mcu(m) => {
                let device = Mcu::open(m, &ctx.state.durability)?;
                device.confirm()?;
                device.save(&ctx.state.durability)?;
            }
        }
        names.push(format!(
            "{} (slot {})",
            t.name,
            t.to_slot.as_deref().unwrap_or("?")
        ));
    }
    let mut installed = ctx.state.installed()?;
    // The images, not the helper components (staging, patch, the delta base): nothing of
    // those stays on the device.
    for t in j.targets.iter().filter(|t| !t.helper) {
        let c = ctx.cfg.components.get(t.component);
        installed.set(InstalledComponent {
            id: t.id.clone(),
            sequence_number: j.sequence,
            digest: t.digest.clone(),
            size: (t.len > 0).then_some(t.len),
            version: c.and_then(|c| c.version.clone()),
            ..InstalledComponent::default()
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

// ---------------------------------------------------------------------------------------------
// Undo
// ---------------------------------------------------------------------------------------------

async fn undo(ctx: &Ctx, j: &mut Journal, u: Undo) -> Result<String, AgentError> {
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

// ---------------------------------------------------------------------------------------------
// Inventory
// ---------------------------------------------------------------------------------------------

/// What the device reports at check-in.
pub(crate) fn inventory(ctx: &Ctx) -> Result<CheckIn, AgentError> {
    let installed = ctx.state.installed()?;
    let mut components = Vec::new();
    let mut boot: Option<BootStatus> = None;
    for c in &ctx.cfg.components {
        let id = c.id_hex();
        let known = installed.components.iter().find(|x| x.id == id);
        components.push(InstalledComponent {
            id: id.clone(),
            sequence_number: known.map_or(0, |k| k.sequence_number),
            digest: known.and_then(|k| k.digest.clone()),
            size: known.and_then(|k| k.size),
            version: c
                .version
                .clone()
                .or_else(|| known.and_then(|k| k.version.clone())),
            // What a campaign warns about before it starts (docs/agent.md §5.4): slot images
            // and MCUs keep the other slot; a module can roll back as its handler can.
            handler: match &c.kind {
                Kind::Module(m) => Some(m.handler.name().to_owned()),
                Kind::File(_) | Kind::Mcu(_) => None,
            },
            rollback: Some(match &c.kind {
                Kind::Module(m) => crate::module::can_roll_back(m),
                Kind::File(_) | Kind::Mcu(_) => true,
            }),
        });
        let (slot, trial) = match &c.kind {
            // No slot and no boot state: what runs is what was installed last.
            Kind::Module(_) => continue,
            Kind::File(s) => {
                let p = slots::read_pointer(&s.pointer)?;
                (slots::name(p.active).to_owned(), p.trial())
            }
            Kind::Mcu(m) => {
                let st = Mcu::open(m, &ctx.state.durability)?.status()?;
                (
                    mcu::slot_name(st.running).to_owned(),
                    st.phase == suitcase_boot::Phase::Trial,
                )
            }
        };
        match &mut boot {
            None => {
                boot = Some(BootStatus {
                    slot: Some(slot),
                    trial,
                    reverted: installed.reverted,
                });
            }
            Some(b) => b.trial |= trial,
        }
    }
    for k in &installed.components {
        if !components.iter().any(|c| c.id == k.id) {
            components.push(k.clone());
        }
    }
    Ok(CheckIn {
        vendor_id: Some(suitcase_author::uuid::to_string(&ctx.cfg.identity.vendor)),
        class_id: Some(suitcase_author::uuid::to_string(&ctx.cfg.identity.class)),
        components,
        free_storage: ctx
            .state
            .free_bytes()
            .map(|f| f.saturating_sub(ctx.cfg.reserve_bytes)),
        boot,
        agent: Some(crate::AGENT.into()),
    })
}

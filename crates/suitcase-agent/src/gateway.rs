//! Gateway mode (RFC 8240 §3, RFC 9019 §5.5; docs/gateway.md): the agent fronts sub-devices
//! without IP on serial links. Each sub-device speaks CoAP (RFC 7252) in SLIP frames with an
//! FCS ([`slip`]) and uses the resource paths of the server's CoAP API (docs/coap.md); the
//! gateway answers them and relays to the server's HTTP device API with the sub-device's
//! own token, and **stores and forwards**:
//!
//! ```text
//!  sub-device ─serial─▶ link.rs ─┬ POST /d/checkin ─▶ server (HTTP, its token) ─▶ answer kept on disk
//!  (SLIP+FCS, CoAP)             │                      └ unreachable: the kept answer
//!                               ├ GET  /d/releases|payloads|deltas ─▶ cache.rs (by digest, LRU)
//!                               │                      └ not cached: fetched in the background, 5.03 meanwhile
//!                               └ POST /d/reports ─▶ queue.rs (fsync'd) ─▶ sync task ─▶ server
//! ```
//!
//! The gateway is trusted for availability and for relaying status, never for integrity: the
//! SUIT envelope is signed end to end and the sub-device verifies it (and every payload's
//! digest) itself, so a gateway that alters a byte gets the update refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use suitcase_protocol::CheckInAnswer;
use tokio::sync::Notify;

use crate::config::{Config, Server};
use crate::error::AgentError;
use crate::http::{Delivery, Http};

pub mod cache;
pub(crate) mod config;
mod link;
pub mod queue;
pub mod serial;
pub use suitcase_link::slip;

pub use config::{GatewayConfig, Link, Subdevice};

/// The largest CoAP message on a serial link, in either direction (a 1024-byte block and
/// its header and options fit; as the server's `MAX_DATAGRAM`).
pub const MAX_MESSAGE: usize = 1280;
/// Downloads from the server running at once (each fills the cache with one object).
pub const MAX_FETCHES: usize = 4;
/// Reports sent per round of the sync task before the queue is read again.
const SYNC_BATCH: usize = 64;

/// A running gateway's shared state.
#[derive(Debug)]
pub struct Gateway {
    dir: PathBuf,
    cfg: GatewayConfig,
    cache: cache::Cache,
    queue: queue::Queue,
    subs: Vec<Sub>,
    wake: Notify,
    fetches: Mutex<HashMap<String, Fetch>>,
    /// Reports the server refused for their sub-device's credential (set aside or dropped).
    refused_reports: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Sub {
    cfg: Subdevice,
    http: Http,
    /// The last check-in answer the server gave this sub-device (HTTP paths), also on disk.
    answer: Mutex<Option<CheckInAnswer>>,
    /// The server refused this sub-device's check-in or a report for its credential (HTTP
    /// 4xx but 408/429): its reports are not accepted until a check-in succeeds.
    refused: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone)]
enum Fetch {
    Running,
    /// The last attempt failed; `partial` is how far it got (the next attempt resumes there
    /// with `Range` and `If-Range`, as the agent's own downloads do).
    Failed {
        error: String,
        at: Instant,
        partial: Option<crate::state::Download>,
    },
}

/// What a sub-device may download: an object of its last offer.
#[derive(Clone, Debug)]
pub(crate) struct Offered {
    http_url: String,
    size: u64,
    sha256: Option<String>,
}

impl Gateway {
    /// Opens the gateway's state (`STATE_DIR/gateway/`: cache, report queue, the last
    /// answer per sub-device) for `config`, whose `[gateway]` section must be present.
    ///
    /// # Errors
    /// `Config` without a `[gateway]` section or with unusable TLS settings; `Local` if the
    /// state directory cannot be used.
    pub fn open(config: &Config, gw: &GatewayConfig) -> Result<Arc<Self>, AgentError> {
        let dir = config.state_dir.join("gateway");
        let cache = cache::Cache::open(&dir.join("cache"), gw.cache_bytes)?;
        let queue = queue::Queue::open(&dir.join("reports"), gw.queue_reports)?;
        let answers = dir.join("subdevices");
        std::fs::create_dir_all(&answers)
            .map_err(|e| AgentError::Local(format!("{}: {e}", answers.display())))?;
        let mut subs = Vec::with_capacity(gw.subdevices.len());
        for s in &gw.subdevices {
            // The sub-device's own credential; the gateway's TLS client certificate is the
            // gateway's identity, not the sub-device's, so it is not sent for it.
            let server = Server {
                url: config.server.url.clone(),
                token: Some(s.token.clone()),
                ca_pem: config.server.ca_pem.clone(),
                identity_pem: None,
                timeout: config.server.timeout,
                min_rate: config.server.min_rate,
            };
            let answer = std::fs::read(answers.join(format!("{}.json", s.id)))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            subs.push(Sub {
                cfg: s.clone(),
                http: Http::new(&server, Vec::new())?,
                answer: Mutex::new(answer),
                refused: std::sync::atomic::AtomicBool::new(false),
            });
        }
        Ok(Arc::new(Self {
            dir,
            cfg: gw.clone(),
            cache,
            queue,
            subs,
            wake: Notify::new(),
            fetches: Mutex::new(HashMap::new()),
            refused_reports: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Serves every sub-device's link and sends the queued reports, until dropped (the
    /// tasks live in a `JoinSet` this future owns). Returns only if a task panics.
    ///
    /// # Errors
    /// `Local` naming the task that ended.
    pub async fn run(self: Arc<Self>) -> Result<(), AgentError> {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..self.subs.len() {
            tasks.spawn(link::run(Arc::clone(&self), i));
        }
        tasks.spawn(sync(Arc::clone(&self)));
        match tasks.join_next().await {
            Some(Err(e)) => Err(AgentError::Local(format!("gateway task failed: {e}"))),
            _ => Err(AgentError::Local("a gateway task ended".into())),
        }
    }

    /// Step reports waiting for the server.
    pub fn queued_reports(&self) -> usize {
        self.queue.len()
    }

    /// Reports the server refused for their sub-device's credential since the gateway started
    /// (set aside in `reports/refused/`, or dropped once that holds `queue_reports` files).
    pub fn refused_reports(&self) -> u64 {
        self.refused_reports
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The reports each sub-device may have queued: an equal share of `queue_reports`, at
    /// least 1, so one sub-device cannot fill the queue for the others.
    pub(crate) fn queue_share(&self) -> usize {
        (self.cfg.queue_reports / self.subs.len().max(1)).max(1)
    }

    /// Whether the server refused sub-device `i` (its reports are then not accepted).
    pub(crate) fn is_refused(&self, i: usize) -> bool {
        self.subs
            .get(i)
            .is_some_and(|s| s.refused.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn set_refused(&self, i: usize, refused: bool) {
        if let Some(s) = self.subs.get(i) {
            s.refused
                .store(refused, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Bytes in the cache.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.bytes()
    }

    fn answers_file(&self, id: &str) -> PathBuf {
        self.dir.join("subdevices").join(format!("{id}.json"))
    }

    /// Keeps `answer` as sub-device `i`'s last, in memory and on disk.
    fn keep_answer(&self, i: usize, answer: &CheckInAnswer) -> Result<(), AgentError> {
        let Some(sub) = self.subs.get(i) else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(answer)
            .map_err(|e| AgentError::Local(format!("check-in answer: {e}")))?;
        cache::write_atomic(&self.answers_file(&sub.cfg.id), &bytes)?;
        *lock(&sub.answer) = Some(answer.clone());
        self.set_refused(i, false);
        Ok(())
    }

    /// Forgets sub-device `i`'s kept answer (the server refused its check-in).
    fn forget_answer(&self, i: usize) {
        let Some(sub) = self.subs.get(i) else { return };
        self.set_refused(i, true);
        *lock(&sub.answer) = None;
        let file = self.answers_file(&sub.cfg.id);
        if std::fs::remove_file(&file).is_ok() {
            let _ = cache::sync_dir(&file);
        }
    }

    /// The object at CoAP `path` in sub-device `i`'s last offer.
    fn offered(&self, i: usize, path: &str) -> Option<Offered> {
        let sub = self.subs.get(i)?;
        let answer = lock(&sub.answer);
        let offer = answer.as_ref()?.update.as_ref()?;
        if coap_path(&offer.manifest_url) == path {
            return Some(Offered {
                http_url: offer.manifest_url.clone(),
                size: offer.manifest_size,
                sha256: None,
            });
        }
        offer.payloads.iter().find_map(|p| {
            if coap_path(&p.url) == path {
                return Some(Offered {
                    http_url: p.url.clone(),
                    size: p.size,
                    sha256: Some(p.sha256.clone()),
                });
            }
            let d = p.delta.as_ref()?;
            (coap_path(&d.url) == path).then(|| Offered {
                http_url: d.url.clone(),
                size: d.size,
                sha256: Some(d.sha256.clone()),
            })
        })
    }

    /// Every object of an offer, as (CoAP path, what to fetch).
    fn objects_of(answer: &CheckInAnswer) -> Vec<(String, Offered)> {
        let Some(offer) = &answer.update else {
            return Vec::new();
        };
        let mut out = vec![(
            coap_path(&offer.manifest_url),
            Offered {
                http_url: offer.manifest_url.clone(),
                size: offer.manifest_size,
                sha256: None,
            },
        )];
        for p in &offer.payloads {
            out.push((
                coap_path(&p.url),
                Offered {
                    http_url: p.url.clone(),
                    size: p.size,
                    sha256: Some(p.sha256.clone()),
                },
            ));
        }
        out
    }

    /// Starts fetching `path` for sub-device `i` unless it is under way or failed a moment
    /// ago; says what the sub-device is told meanwhile.
    fn start_fetch(self: &Arc<Self>, i: usize, path: &str, what: Offered) -> String {
        let mut fetches = lock(&self.fetches);
        match fetches.get(path) {
            Some(Fetch::Running) => return "fetching it from the server; ask again".into(),
            Some(Fetch::Failed { error, at, .. }) if at.elapsed() < self.cfg.retry_min => {
                return format!("not cached, and the server cannot be reached: {error}");
            }
            _ => {}
        }
        let running = fetches
            .values()
            .filter(|f| matches!(f, Fetch::Running))
            .count();
        if running >= MAX_FETCHES {
            return format!("{MAX_FETCHES} downloads under way; ask again");
        }
        let partial = match fetches.insert(path.to_owned(), Fetch::Running) {
            Some(Fetch::Failed { partial, .. }) => partial,
            _ => None,
        };
        let gw = Arc::clone(self);
        let path = path.to_owned();
        tokio::spawn(async move {
            let r = gw.fetch(i, &path, &what, partial).await;
            let mut fetches = lock(&gw.fetches);
            match r {
                Ok(()) => {
                    fetches.remove(&path);
                }
                Err((error, partial)) => {
                    tracing::info!(%path, %error, "gateway: fetch failed");
                    fetches.insert(
                        path,
                        Fetch::Failed {
                            error,
                            at: Instant::now(),
                            partial,
                        },
                    );
                }
            }
        });
        "fetching it from the server; ask again".into()
    }

    /// Downloads one object of sub-device `i`'s offer into the cache, checked: its size,
    /// and its SHA-256 where the offer gives one (payloads, deltas). Resumes `partial` (an
    /// earlier attempt of the same object) where it can; on failure, says why and how far
    /// this attempt got.
    async fn fetch(
        &self,
        i: usize,
        path: &str,
        what: &Offered,
        partial: Option<crate::state::Download>,
    ) -> Result<(), (String, Option<crate::state::Download>)> {
        let sub = self
            .subs
            .get(i)
            .ok_or_else(|| ("no such sub-device".to_owned(), None))?;
        if what.size > self.cfg.cache_bytes {
            return Err((
                format!(
                    "{path} is {} bytes, more than the whole cache (gateway.cache_bytes = {})",
                    what.size, self.cfg.cache_bytes
                ),
                None,
            ));
        }
        let name: String = path
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let file = self.cache.partial(&name);
        let mut d = partial
            .filter(|d| d.url == what.http_url && d.size == what.size)
            .unwrap_or_else(|| crate::state::Download {
                url: what.http_url.clone(),
                size: what.size,
                sha256: what.sha256.clone(),
                file: name,
                durable: 0,
                etag: None,
                complete: false,
                resumes: 0,
                restarts: 0,
            });
        if let Err(e) = sub
            .http
            .download(&mut d, &file, &mut |_| Ok(()), &mut |_| None)
            .await
        {
            return Err((format!("{e:?}"), Some(d)));
        }
        let sha = crate::http::sha256_file(&file).map_err(|e| (e.to_string(), None))?;
        if let Some(want) = &what.sha256
            && !want.eq_ignore_ascii_case(&sha)
        {
            let _ = std::fs::remove_file(&file);
            return Err((
                format!("{path}: SHA-256 {sha} is not the offered {want}"),
                None,
            ));
        }
        self.cache
            .insert(path, &file, &sha, what.size)
            .map_err(|e| (e.to_string(), None))?;
        tracing::info!(%path, bytes = what.size, resumes = d.resumes, "gateway: cached");
        Ok(())
    }
}

/// Runs the gateway of `config` (its `[gateway]` section) until the process ends.
///
/// # Errors
/// `Config` without a `[gateway]` section; as [`Gateway::open`] and [`Gateway::run`].
pub async fn run(config: &Config) -> Result<(), AgentError> {
    let gw = config.gateway.as_ref().ok_or_else(|| {
        AgentError::Config(format!(
            "{}: no [gateway] section: add one with [[gateway.subdevice]] entries (docs/gateway.md)",
            config.path.display()
        ))
    })?;
    Gateway::open(config, gw)?.run().await
}

/// The HTTP device API's path of a download as the CoAP path the server's CoAP API uses
/// (docs/coap.md): `/api/v1/device/X` → `/d/X`.
pub(crate) fn coap_path(http: &str) -> String {
    match http.strip_prefix("/api/v1/device/") {
        Some(rest) => format!("/d/{rest}"),
        None => http.to_owned(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a report error is the server refusing it for its sub-device (HTTP 4xx but 408
/// and 429, read from the agent's error text `report: HTTP 401 Unauthorized: …`: the
/// credential is unknown, revoked or mistyped) rather than the server being unreachable.
fn report_refused(error: &str) -> bool {
    error
        .split("report: HTTP ")
        .nth(1)
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
        .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429)
}

/// Sends the queued reports, each sub-device's in order; each is removed once the server
/// answered it (taken, or refused for good). A sub-device whose report cannot be delivered
/// waits (with back-off) without holding up the others': when the server cannot be reached
/// its reports stay queued; when the server refuses its credential (HTTP 401/403/404…) they
/// are set aside in `reports/refused/` and it is refused new ones until a check-in succeeds.
async fn sync(gw: Arc<Gateway>) {
    let mut wait = gw.cfg.retry_min;
    loop {
        // Sub-devices whose oldest report is not delivered this round: their later ones wait
        // (order per sub-device), the others' go on.
        let mut blocked = std::collections::HashSet::new();
        let mut last_error = None;
        loop {
            let batch = gw.queue.oldest_except(SYNC_BATCH, &blocked);
            if batch.is_empty() {
                break;
            }
            for (seq, q) in batch {
                if blocked.contains(&q.subdevice) {
                    continue;
                }
                let Some((i, sub)) = gw
                    .subs
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.cfg.id == q.subdevice)
                else {
                    tracing::warn!(subdevice = %q.subdevice, "a queued report of a sub-device no longer configured: dropped");
                    if gw.queue.remove(seq).is_err() {
                        blocked.insert(q.subdevice);
                    }
                    continue;
                };
                let done = match sub.http.report(&q.report).await {
                    Ok(Delivery::Delivered) => gw.queue.remove(seq),
                    Ok(Delivery::Refused(status)) => {
                        tracing::warn!(
                            subdevice = %q.subdevice, status,
                            "the server refused a {} report for {}; dropped",
                            q.report.step.name(), q.report.release_id
                        );
                        gw.queue.remove(seq)
                    }
                    Err(e) if report_refused(&e.to_string()) => {
                        gw.set_refused(i, true);
                        gw.refused_reports
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let parked = gw.queue.park(seq);
                        tracing::warn!(
                            subdevice = %q.subdevice, error = %e,
                            kept = matches!(parked, Ok(true)),
                            "the server refused this sub-device's report (its credential): set aside in reports/refused/; its reports are refused until a check-in succeeds"
                        );
                        parked.map(|_| ())
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = done {
                    blocked.insert(q.subdevice);
                    last_error = Some(e);
                }
            }
        }
        match last_error {
            None => {
                wait = gw.cfg.retry_min;
                // Woken by a new report; the timeout only bounds the wait.
                let _ = tokio::time::timeout(Duration::from_secs(30), gw.wake.notified()).await;
            }
            Some(e) => {
                tracing::info!(error = %e, queued = gw.queue.len(), "gateway: reports stay queued");
                // A new report (of another sub-device) starts a round early.
                let _ = tokio::time::timeout(wait, gw.wake.notified()).await;
                wait = wait.saturating_mul(2).min(gw.cfg.retry_max);
            }
        }
    }
}

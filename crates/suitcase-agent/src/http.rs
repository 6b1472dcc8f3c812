//! The HTTP adapter: check-in, reports and resumable downloads against the server's device
//! API, counting every byte it sends and receives.
//!
//! Downloads go to a file in chunks as they arrive (never whole into memory). An interrupted
//! download resumes with `Range: bytes=N-` and `If-Range: <ETag>`: the server answers 206 with
//! the rest of the same bytes, or 200 with the whole current payload if it changed, which
//! restarts the file from zero. Nothing beyond the last flushed length is trusted after a crash.

use std::collections::VecDeque;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, IF_RANGE, RANGE};
use serde::Serialize;
use suitcase_protocol::{CheckIn, CheckInAnswer, StepReport};

use crate::config::Server;
use crate::error::{AgentError, local};
use crate::state::Download;

/// Bytes between flushes (and journal checkpoints) of a download.
pub const CHECKPOINT_BYTES: u64 = 4 << 20;

/// Traffic counters, at the HTTP layer: request and status lines, headers and bodies as
/// HTTP/1.1 frames them (TLS and TCP overhead not included).
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    download_body: AtomicU64,
    partial: AtomicU64,
    ranged: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Requests made.
    pub requests: u64,
    /// Bytes sent (request lines, headers, bodies).
    pub sent: u64,
    /// Bytes received (status lines, headers, bodies).
    pub received: u64,
    /// Of `received`, body bytes of envelope and payload downloads.
    pub download_body: u64,
    /// 206 Partial Content answers.
    pub partial_responses: u64,
    /// Requests that asked for a range (resumptions).
    pub ranged_requests: u64,
}

impl Traffic {
    /// The difference `self - earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            requests: self.requests.saturating_sub(earlier.requests),
            sent: self.sent.saturating_sub(earlier.sent),
            received: self.received.saturating_sub(earlier.received),
            download_body: self.download_body.saturating_sub(earlier.download_body),
            partial_responses: self
                .partial_responses
                .saturating_sub(earlier.partial_responses),
            ranged_requests: self.ranged_requests.saturating_sub(earlier.ranged_requests),
        }
    }
}

impl Counters {
    /// A snapshot.
    pub fn snapshot(&self) -> Traffic {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Traffic {
            requests: g(&self.requests),
            sent: g(&self.sent),
            received: g(&self.received),
            download_body: g(&self.download_body),
            partial_responses: g(&self.partial),
            ranged_requests: g(&self.ranged),
        }
    }
}

/// How a download ended when it did not complete.
#[derive(Debug)]
pub enum DownloadError {
    /// Try again (network, server error, cut transfer).
    Transient(String),
    /// The server no longer offers it (404/410).
    Gone(String),
    /// A local problem (disk) or the injected crash.
    Local(AgentError),
}

impl From<AgentError> for DownloadError {
    fn from(e: AgentError) -> Self {
        Self::Local(e)
    }
}

/// What the server did with a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Recorded.
    Delivered,
    /// Refused for good (e.g. 409: the release was never offered); drop it.
    Refused(u16),
}

/// The device API client.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    counters: Arc<Counters>,
    cuts: Arc<Mutex<VecDeque<u64>>>,
}

fn header_bytes(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.as_bytes().len() + 4) as u64)
        .sum()
}

impl Http {
    /// A client for `server`. `cuts` is a test hook: download transfers are cut after
    /// `cuts[0]`, `cuts[1]`, ... body bytes, as if the connection dropped (each cut applies to
    /// the next transfer that would carry more bytes than it).
    ///
    /// # Errors
    /// [`AgentError::Config`] for unusable certificates or keys.
    pub fn new(server: &Server, cuts: Vec<u64>) -> Result<Self, AgentError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(server.timeout)
            .read_timeout(server.timeout)
            .user_agent(crate::AGENT);
        if let Some(pem) = &server.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| AgentError::Config(format!("server.ca_file: {e}")))?;
            b = b.tls_certs_only(certs);
        }
        if let Some(pem) = &server.identity_pem {
            let id = reqwest::Identity::from_pem(pem).map_err(|e| {
                AgentError::Config(format!(
                    "server.client_cert/client_key: {e} (PEM certificate and PEM private key)"
                ))
            })?;
            b = b.identity(id);
        }
        let client = b
            .build()
            .map_err(|e| AgentError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            base: server.url.clone(),
            token: server.token.clone(),
            counters: Arc::new(Counters::default()),
            cuts: Arc::new(Mutex::new(cuts.into())),
        })
    }

    /// A client for `server` over an existing (shared) `client`; the device's token is
    /// still sent, the TLS settings of `server` are the shared client's business.
    pub fn with_client(client: reqwest::Client, server: &Server, cuts: Vec<u64>) -> Self {
        Self {
            client,
            base: server.url.clone(),
            token: server.token.clone(),
            counters: Arc::new(Counters::default()),
            cuts: Arc::new(Mutex::new(cuts.into())),
        }
    }

    /// The traffic so far.
    pub fn traffic(&self) -> Traffic {
        self.counters.snapshot()
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn send(&self, mut req: reqwest::Request) -> Result<reqwest::Response, reqwest::Error> {
        if let Some(t) = &self.token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            req.headers_mut().insert(reqwest::header::AUTHORIZATION, v);
        }
        let url = req.url();
        let target = url.path().len() + url.query().map_or(0, |q| q.len() + 1);
        let host = url.host_str().map_or(0, str::len) + 12;
        let body = req
            .body()
            .and_then(reqwest::Body::as_bytes)
            .map_or(0, <[u8]>::len);
        // "GET /path HTTP/1.1\r\n", the headers, "host:", "accept:", "user-agent:", a
        // content-length for bodies and the blank line.
        let line = req.method().as_str().len() + target + 12;
        let implicit = host + 13 + crate::AGENT.len() + 14 + if body > 0 { 22 } else { 0 } + 2;
        let sent = (line + implicit + body) as u64 + header_bytes(req.headers());
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.counters.sent.fetch_add(sent, Ordering::Relaxed);
        if req.headers().contains_key(RANGE) {
            self.counters.ranged.fetch_add(1, Ordering::Relaxed);
        }
        let resp = self.client.execute(req).await?;
        // "HTTP/1.1 200 OK\r\n" + headers + blank line.
        let head = 17 + header_bytes(resp.headers()) + 2;
        self.counters.received.fetch_add(head, Ordering::Relaxed);
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            self.counters.partial.fetch_add(1, Ordering::Relaxed);
        }
        Ok(resp)
    }

    async fn body(&self, resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
        let bytes = resp.bytes().await?;
        self.counters
            .received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes.to_vec())
    }

    fn server_error(what: &str, status: StatusCode, body: &[u8]) -> AgentError {
        let msg = serde_json::from_slice::<suitcase_protocol::ApiError>(body)
            .map(|e| format!("{}: {}", e.error, e.message))
            .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect());
        let hint = if status == StatusCode::UNAUTHORIZED {
            " (check server.token / the client certificate: the server does not know this device)"
        } else {
            ""
        };
        AgentError::Server(format!("{what}: HTTP {status}: {msg}{hint}"))
    }

    /// Checks in.
    ///
    /// # Errors
    /// [`AgentError::Server`] for network errors and error answers.
    pub async fn checkin(&self, c: &CheckIn) -> Result<CheckInAnswer, AgentError> {
        let req = self
            .client
            .post(self.url("/api/v1/device/checkin"))
            .json(c)
            .build()
            .map_err(|e| AgentError::Server(format!("check-in: {e}")))?;
        let resp = self
            .send(req)
            .await
            .map_err(|e| AgentError::Server(format!("check-in: {e}")))?;
        let status = resp.status();
        let body = self
            .body(resp)
            .await
            .map_err(|e| AgentError::Server(format!("check-in: {e}")))?;
        if status != StatusCode::OK {
            return Err(Self::server_error("check-in", status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| AgentError::Server(format!("check-in: the answer does not parse: {e}")))
    }

    /// Sends a step report.
    ///
    /// # Errors
    /// [`AgentError::Server`] when it may be delivered later.
    pub async fn report(&self, r: &StepReport) -> Result<Delivery, AgentError> {
        let req = self
            .client
            .post(self.url("/api/v1/device/reports"))
            .json(r)
            .build()
            .map_err(|e| AgentError::Server(format!("report: {e}")))?;
        let resp = self
            .send(req)
            .await
            .map_err(|e| AgentError::Server(format!("report: {e}")))?;
        let status = resp.status();
        let body = self
            .body(resp)
            .await
            .map_err(|e| AgentError::Server(format!("report: {e}")))?;
        if status.is_success() {
            Ok(Delivery::Delivered)
        } else if status.is_client_error()
            && status != StatusCode::UNAUTHORIZED
            && status != StatusCode::TOO_MANY_REQUESTS
            && status != StatusCode::REQUEST_TIMEOUT
        {
            Ok(Delivery::Refused(status.as_u16()))
        } else {
            Err(Self::server_error("report", status, &body))
        }
    }

    /// Downloads `d` into `path`, resuming from `d.durable`. `checkpoint` is called after each
    /// flush with the updated state (the caller journals it).
    ///
    /// # Errors
    /// [`DownloadError`].
    pub async fn download(
        &self,
        d: &mut Download,
        path: &Path,
        checkpoint: &mut (dyn FnMut(&Download) -> Result<(), AgentError> + Send),
    ) -> Result<(), DownloadError> {
        let what = format!("cannot write {}", path.display());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(local(&what))?;
        // Bytes past the last flush may be garbage after a power cut: drop them.
        let on_disk = file.metadata().map_err(local(&what))?.len();
        if on_disk < d.durable {
            // The file lost data it had flushed (or was replaced): start again.
            d.durable = 0;
            d.etag = None;
        }
        file.set_len(d.durable).map_err(local(&what))?;
        file.seek(SeekFrom::Start(d.durable))
            .map_err(local(&what))?;

        let mut rb = self.client.get(self.url(&d.url));
        let resuming = d.durable > 0 && d.etag.is_some();
        if resuming {
            rb = rb.header(RANGE, format!("bytes={}-", d.durable));
            if let Some(tag) = &d.etag {
                rb = rb.header(IF_RANGE, tag.as_str());
            }
        } else if d.durable > 0 {
            // No entity tag to resume safely with: start over.
            d.durable = 0;
            file.set_len(0).map_err(local(&what))?;
            file.seek(SeekFrom::Start(0)).map_err(local(&what))?;
        }
        let req = rb
            .build()
            .map_err(|e| DownloadError::Transient(format!("{}: {e}", d.url)))?;
        let mut resp = self
            .send(req)
            .await
            .map_err(|e| DownloadError::Transient(format!("{}: {e}", d.url)))?;
        let status = resp.status();
        match status {
            StatusCode::OK => {
                if d.durable > 0 {
                    // If-Range did not match: the payload changed; the whole new one follows.
                    d.durable = 0;
                    d.restarts += 1;
                    file.set_len(0).map_err(local(&what))?;
                    file.seek(SeekFrom::Start(0)).map_err(local(&what))?;
                }
                d.etag = resp
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
            }
            StatusCode::PARTIAL_CONTENT => {
                let start = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(a, _)| a.trim().parse::<u64>().ok());
                if start != Some(d.durable) {
                    return Err(DownloadError::Transient(format!(
                        "{}: the server answered a range that does not start at byte {}",
                        d.url, d.durable
                    )));
                }
                d.resumes += 1;
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // Asked past the end: what we hold is at least the whole file; check it.
                d.durable = 0;
                d.etag = None;
                file.set_len(0).map_err(local(&what))?;
                return Err(DownloadError::Transient(format!(
                    "{}: range not satisfiable; downloading again",
                    d.url
                )));
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(DownloadError::Gone(format!(
                    "{}: the server no longer offers it (HTTP {status})",
                    d.url
                )));
            }
            s => {
                let body = self.body(resp).await.unwrap_or_default();
                return Err(DownloadError::Transient(
                    Self::server_error(&d.url, s, &body).to_string(),
                ));
            }
        }
        // Test hook: the next cut applies to the first transfer long enough to reach it.
        let left = d.size.saturating_sub(d.durable);
        let cut = self.cuts.lock().ok().and_then(|mut c| {
            if c.front().is_some_and(|n| *n < left) {
                c.pop_front()
            } else {
                None
            }
        });
        let mut this_transfer = 0u64;
        let mut since_flush = 0u64;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    flush(&mut file, d, &what)?;
                    checkpoint(d)?;
                    return Err(DownloadError::Transient(format!(
                        "{}: transfer broke after {} bytes: {e}",
                        d.url, d.durable
                    )));
                }
            };
            let mut data: &[u8] = &chunk;
            if let Some(limit) = cut {
                let room =
                    usize::try_from(limit.saturating_sub(this_transfer)).unwrap_or(usize::MAX);
                data = data.get(..room.min(data.len())).unwrap_or_default();
            }
            let n = data.len() as u64;
            if d.durable + since_flush + n > d.size {
                return Err(DownloadError::Transient(format!(
                    "{}: the server sent more than the offered {} bytes",
                    d.url, d.size
                )));
            }
            file.write_all(data).map_err(local(&what))?;
            self.counters.received.fetch_add(n, Ordering::Relaxed);
            self.counters.download_body.fetch_add(n, Ordering::Relaxed);
            this_transfer += n;
            since_flush += n;
            if since_flush >= CHECKPOINT_BYTES {
                file.sync_data().map_err(local(&what))?;
                d.durable += since_flush;
                since_flush = 0;
                checkpoint(d)?;
            }
            if cut.is_some_and(|limit| this_transfer >= limit) {
                file.sync_data().map_err(local(&what))?;
                d.durable += since_flush;
                checkpoint(d)?;
                return Err(DownloadError::Transient(format!(
                    "{}: connection cut after {this_transfer} bytes (injected fault)",
                    d.url
                )));
            }
        }
        file.sync_data().map_err(local(&what))?;
        d.durable += since_flush;
        if d.durable != d.size {
            checkpoint(d)?;
            return Err(DownloadError::Transient(format!(
                "{}: the transfer ended at {} of {} bytes",
                d.url, d.durable, d.size
            )));
        }
        Ok(())
    }
}

fn flush(file: &mut std::fs::File, d: &mut Download, what: &str) -> Result<(), AgentError> {
    file.flush().map_err(local(what))?;
    file.sync_data().map_err(local(what))?;
    let len = file.metadata().map_err(local(what))?.len();
    d.durable = len.min(d.size);
    Ok(())
}

/// SHA-256 of a file, hex, read in chunks.
///
/// # Errors
/// [`AgentError::Local`].
pub fn sha256_file(path: &Path) -> Result<String, AgentError> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let what = format!("cannot read {}", path.display());
    let mut f = std::fs::File::open(path).map_err(local(&what))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(local(&what))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(h.finalize()))
}

//! The HTTP adapter: check-in, reports and resumable downloads against the server's device
//! API, counting every byte it sends and receives.
//!
//! Downloads go to a file in chunks as they arrive (never whole into memory). An interrupted
//! download resumes with `Range: bytes=N-` and `If-Range: <ETag>`: the server answers 206 with
//! the rest of the same bytes, or 200 with the whole current payload if it changed, which
//! restarts the file from zero. Nothing beyond the last flushed length is trusted after a crash.
//!
//! **Credentials go to the configured server only.** Every request, and every redirect hop,
//! passes [`Http::admit`]: the bearer token and the TLS client certificate are used only for
//! the origin (scheme, host, port) of `server.url`; any other origin is fetched anonymously,
//! and over plain `http://` not at all when the server is `https://`. Redirects are followed
//! here (at most [`MAX_REDIRECTS`], GET only), not inside reqwest, so each hop is judged
//! by the same rule.
//!
//! **Every answer is read in bounded memory.** Check-in answers, report answers and error
//! bodies are read up to a limit by type ([`MAX_CHECKIN_ANSWER`], [`MAX_SMALL_ANSWER`],
//! [`MAX_ERROR_BODY`]), within a total time; envelopes and payloads stream to files and
//! never beyond the size the offer declared (the envelope at most
//! [`crate::MAX_ENVELOPE`], a payload at most the largest slot), and **in bounded time**:
//! a download slower than [`MinRate`] over a window is cut, so a server that trickles a
//! byte within each read timeout cannot hold the agent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::header::{AUTHORIZATION, HeaderMap, LOCATION, RANGE};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use suitcase_protocol::{CheckIn, CheckInAnswer, StepReport};

use crate::config::Server;
use crate::error::AgentError;

mod download;

pub(crate) use download::open_resumable;
pub use download::sha256_file;

/// Work a download's progress callback hands back to be awaited (sending a progress report).
pub(crate) type Pending = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Bytes between flushes (and journal checkpoints) of a download.
pub const CHECKPOINT_BYTES: u64 = 4 << 20;

/// The largest check-in answer the agent reads: 256 KiB. An answer is a few hundred bytes
/// plus about 300 per offered payload, so this leaves room for hundreds of payloads; a
/// server that sends more is refused (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION).
pub const MAX_CHECKIN_ANSWER: usize = 256 << 10;
/// The largest answer to a step report the agent reads: 16 KiB (it only needs the status).
pub const MAX_SMALL_ANSWER: usize = 16 << 10;
/// The most bytes of an error body the agent reads: 16 KiB (it shows the first 200
/// characters); the rest is not read.
pub const MAX_ERROR_BODY: usize = 16 << 10;
/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 5;

/// The slowest a download may go: at least `bytes` body bytes in every `window`
/// (`server.download_min_bytes` per `server.download_window_seconds`), and its answer's
/// head within the first window. The read timeout alone bounds a mirror that stalls, not
/// one that trickles a byte within each read timeout (TUF "slow retrieval"; RFC 9019 §4,
/// availability; RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION): with this bound an attempt at an
/// `n`-byte download lasts at most about `n / bytes` windows, however the server paces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    /// Body bytes that must arrive in each window.
    pub bytes: core::num::NonZeroU64,
    /// The window (not zero).
    pub window: std::time::Duration,
}

impl MinRate {
    /// The default: 8 KiB per 30 s (about 270 bytes per second, far below any link an
    /// update can be delivered over in practice).
    pub const DEFAULT: Self = Self {
        bytes: core::num::NonZeroU64::MIN.saturating_add((8 << 10) - 1),
        window: std::time::Duration::from_secs(30),
    };
}

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

/// Why a request got no usable answer.
#[derive(Debug)]
enum SendError {
    /// The agent's transport policy refuses the URL (plain HTTP from an HTTPS server, not
    /// HTTP at all, credentials in the URL, too many redirects): retrying does not help.
    Refused(String),
    /// The network or the server failed.
    Net(reqwest::Error),
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Refused(m) => f.write_str(m),
            Self::Net(e) => write!(f, "{e}"),
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
    /// The transport policy refuses its URL (see [`Http::admit`]).
    Refused(String),
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
    /// For the server's origin: its TLS client identity, if configured.
    client: reqwest::Client,
    /// For every other origin: the same trust roots, no client identity.
    anonymous: reqwest::Client,
    base: String,
    /// `server.url`, parsed: its origin is the only one that gets credentials (`None` if it
    /// does not parse: then no request does).
    server: Option<Url>,
    token: Option<String>,
    /// Total time for a request with a small answer (check-in, report), body included.
    small_timeout: std::time::Duration,
    /// The slowest a download may go.
    min_rate: MinRate,
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
        let builder = |identity: bool| -> Result<reqwest::Client, AgentError> {
            let mut b = reqwest::Client::builder()
                .connect_timeout(server.timeout)
                .read_timeout(server.timeout)
                // Redirects are followed by `send`, which judges every hop (see `admit`).
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(crate::AGENT);
            if let Some(pem) = &server.ca_pem {
                let certs = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| AgentError::Config(format!("server.ca_file: {e}")))?;
                b = b.tls_certs_only(certs);
            }
            if identity && let Some(pem) = &server.identity_pem {
                let id = reqwest::Identity::from_pem(pem).map_err(|e| {
                    AgentError::Config(format!(
                        "server.client_cert/client_key: {e} (PEM certificate and PEM private key)"
                    ))
                })?;
                b = b.identity(id);
            }
            b.build().map_err(|e| {
                // reqwest's own text is "builder error": the cause is in its sources.
                let mut msg = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg.push_str(&format!(": {s}"));
                    source = s.source();
                }
                if server.ca_pem.is_none() && msg.contains("CA certificates") {
                    msg.push_str(
                        " (without server.ca_file the agent checks servers against the \
                         system's CA certificates, which it could not load: install them, \
                         e.g. Debian's ca-certificates, or set server.ca_file)",
                    );
                }
                AgentError::Config(format!("HTTP client: {msg}"))
            })
        };
        let client = builder(true)?;
        let anonymous = if server.identity_pem.is_some() {
            builder(false)?
        } else {
            client.clone()
        };
        Ok(Self::make(client, anonymous, server, cuts))
    }

    /// A client for `server` over an existing (shared) `client`, used for every origin; the
    /// device's token is still sent to the server's origin only, and redirects are still
    /// judged hop by hop if the shared client does not follow them itself (build it with
    /// `redirect(Policy::none())`); the TLS settings of `server` are the shared client's
    /// business.
    pub fn with_client(client: reqwest::Client, server: &Server, cuts: Vec<u64>) -> Self {
        Self::make(client.clone(), client, server, cuts)
    }

    fn make(
        client: reqwest::Client,
        anonymous: reqwest::Client,
        server: &Server,
        cuts: Vec<u64>,
    ) -> Self {
        Self {
            client,
            anonymous,
            base: server.url.trim_end_matches('/').to_owned(),
            server: Url::parse(&server.url).ok(),
            token: server.token.clone(),
            small_timeout: server.timeout.saturating_mul(2),
            min_rate: server.min_rate,
            counters: Arc::new(Counters::default()),
            cuts: Arc::new(Mutex::new(cuts.into())),
        }
    }

    /// The traffic so far.
    pub fn traffic(&self) -> Traffic {
        self.counters.snapshot()
    }

    /// Resolves a URL the server named (an offer's `manifest_url`, a payload's or a delta's
    /// `url`): a path (`/…`) on the server, or an absolute `http(s)://` URL. Anything else —
    /// another scheme, a relative or scheme-relative reference, credentials in the URL — is
    /// refused: pasted after the base URL, `@evil.example/x` would turn the server's
    /// address into a user name and send the request, token and all, to another host.
    ///
    /// # Errors
    /// What is wrong with the URL.
    pub fn resolve(&self, url: &str) -> Result<Url, String> {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        let parsed = if url.starts_with('/') && !url.starts_with("//") {
            Url::parse(&format!("{}{url}", self.base))
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            Url::parse(url)
        } else {
            return Err(format!(
                "{url:?} is neither a path on the server nor an http(s):// URL; refused"
            ));
        };
        let parsed = parsed.map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!(
                "{url:?} carries credentials in the URL; refused (the agent sends only its own, and only to its server)"
            ));
        }
        Ok(parsed)
    }

    /// The transport policy for one request or redirect hop: `Ok(true)` sends the device's
    /// credentials (bearer token, TLS client certificate), `Ok(false)` fetches anonymously.
    ///
    /// * Credentials go only to the origin (scheme, host and port, RFC 6454) of `server.url`.
    ///   A token is the device's identity for the status tracker (RFC 9019 §3, §6: the
    ///   device authenticates to it); handed to any host an offer names, it lets that host
    ///   impersonate the device (RFC 8240 §3: a device's credentials identify it and must not
    ///   cross the network in the clear or to the wrong party). Any other origin — a CDN the
    ///   manifest names, a redirect target — is fetched without them: what it serves is
    ///   authenticated by the SUIT manifest's signature and digests, not by the transport
    ///   (RFC 9019 §5, draft-ietf-suit-manifest §8.4.8.5 image-match).
    /// * When the server is `https://`, nothing is fetched over plain `http://`: a downgrade
    ///   would expose what the device fetches (an unencrypted image, its timing) and let any
    ///   on-path party withhold or stall it (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION, RFC 9019
    ///   §6 on confidentiality of images), even though it could not alter it.
    /// * Only `http` and `https`.
    ///
    /// # Errors
    /// Why the URL is refused.
    pub fn admit(&self, url: &Url) -> Result<bool, String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{url}: only http and https URLs are fetched; refused"
            ));
        }
        let Some(server) = &self.server else {
            return Ok(false);
        };
        if server.scheme() == "https" && url.scheme() == "http" {
            return Err(format!(
                "{url}: refusing plain HTTP while the server is HTTPS (a downgrade); serve it over https"
            ));
        }
        Ok(url.origin() == server.origin())
    }

    /// Resolves and judges `url` without fetching it (for checks before a download starts).
    ///
    /// # Errors
    /// Why the URL is refused.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        self.resolve(url).and_then(|u| self.admit(&u)).map(|_| ())
    }

    /// Sends `req`, following redirects of GET requests (at most [`MAX_REDIRECTS`]); every
    /// hop goes through [`Self::admit`], so credentials never follow a redirect to another
    /// origin and no hop downgrades to plain HTTP.
    async fn send(&self, req: reqwest::Request) -> Result<reqwest::Response, SendError> {
        let mut req = req;
        let mut hops = 0usize;
        loop {
            let credentials = self.admit(req.url()).map_err(SendError::Refused)?;
            // Only this function sets Authorization, and the follow-up is cloned before it
            // does: a redirect hop starts without credentials and earns them from `admit`.
            let follow_up = if req.method() == Method::GET {
                req.try_clone()
            } else {
                None
            };
            if credentials
                && let Some(t) = &self.token
                && let Ok(v) = format!("Bearer {t}").parse()
            {
                req.headers_mut().insert(AUTHORIZATION, v);
            }
            let client = if credentials {
                &self.client
            } else {
                &self.anonymous
            };
            let resp = self.execute(client, req).await.map_err(SendError::Net)?;
            let redirect = matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308);
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (Some(mut next), true, Some(location)) = (follow_up, redirect, location) else {
                return Ok(resp);
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(SendError::Refused(format!(
                    "{}: more than {MAX_REDIRECTS} redirects; refused",
                    resp.url()
                )));
            }
            let target = resp.url().join(&location).map_err(|e| {
                SendError::Refused(format!(
                    "{}: redirect to {location:?}, which is not a URL: {e}",
                    resp.url()
                ))
            })?;
            if !target.username().is_empty() || target.password().is_some() {
                return Err(SendError::Refused(format!(
                    "{}: redirect to a URL with credentials in it; refused",
                    resp.url()
                )));
            }
            *next.url_mut() = target;
            req = next;
        }
    }

    /// One request, counted.
    async fn execute(
        &self,
        client: &reqwest::Client,
        req: reqwest::Request,
    ) -> Result<reqwest::Response, reqwest::Error> {
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
        let resp = client.execute(req).await?;
        // "HTTP/1.1 200 OK\r\n" + headers + blank line.
        let head = 17 + header_bytes(resp.headers()) + 2;
        self.counters.received.fetch_add(head, Ordering::Relaxed);
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            self.counters.partial.fetch_add(1, Ordering::Relaxed);
        }
        Ok(resp)
    }

    /// Reads a whole body of at most `limit` bytes. A larger one — by its Content-Length, or
    /// once more than `limit` bytes have arrived — is an error naming `what` and the limit,
    /// and reading stops there: memory stays bounded whatever the server sends (RFC 9124
    /// REQ.SEC.RESOURCE-EXHAUSTION).
    async fn body(
        &self,
        mut resp: reqwest::Response,
        limit: usize,
        what: &str,
    ) -> Result<Vec<u8>, String> {
        if let Some(n) = resp.content_length()
            && n > limit as u64
        {
            return Err(format!(
                "{what} is {n} bytes, more than the {limit} this agent reads; refused"
            ));
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            self.counters
                .received
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if out.len().saturating_add(chunk.len()) > limit {
                return Err(format!(
                    "{what} is larger than the {limit} bytes this agent reads; stopped reading"
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The error an error answer stands for, its body read up to [`MAX_ERROR_BODY`].
    async fn error_answer(
        &self,
        what: &str,
        status: StatusCode,
        resp: reqwest::Response,
    ) -> AgentError {
        match self.body(resp, MAX_ERROR_BODY, "the error body").await {
            Ok(body) => Self::server_error(what, status, &body),
            Err(e) => AgentError::Server(format!("{what}: HTTP {status} ({e})")),
        }
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
        let resp = self.post("check-in", "/api/v1/device/checkin", c).await?;
        let status = resp.status();
        if status != StatusCode::OK {
            return Err(self.error_answer("check-in", status, resp).await);
        }
        let body = self
            .body(resp, MAX_CHECKIN_ANSWER, "the check-in answer")
            .await
            .map_err(|e| AgentError::Server(format!("check-in: {e}")))?;
        serde_json::from_slice(&body)
            .map_err(|e| AgentError::Server(format!("check-in: the answer does not parse: {e}")))
    }

    /// POSTs `body` as JSON to the server's `path`, within the total time for small answers.
    async fn post(
        &self,
        what: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<reqwest::Response, AgentError> {
        let url = self
            .resolve(path)
            .map_err(|e| AgentError::Server(format!("{what}: {e}")))?;
        let req = self
            .client
            .post(url)
            .json(body)
            .timeout(self.small_timeout)
            .build()
            .map_err(|e| AgentError::Server(format!("{what}: {e}")))?;
        self.send(req)
            .await
            .map_err(|e| AgentError::Server(format!("{what}: {e}")))
    }

    /// Sends a step report.
    ///
    /// # Errors
    /// [`AgentError::Server`] when it may be delivered later.
    pub async fn report(&self, r: &StepReport) -> Result<Delivery, AgentError> {
        let resp = self.post("report", "/api/v1/device/reports", r).await?;
        let status = resp.status();
        if status.is_success() {
            // The server took the report: an oversized answer to it changes nothing (sending
            // the report again would only duplicate it). The answer is read, bounded, so the
            // connection is reused.
            if let Err(e) = self.body(resp, MAX_SMALL_ANSWER, "the report answer").await {
                tracing::debug!(error = %e, "report answer ignored");
            }
            Ok(Delivery::Delivered)
        } else if status.is_client_error()
            && status != StatusCode::UNAUTHORIZED
            && status != StatusCode::TOO_MANY_REQUESTS
            && status != StatusCode::REQUEST_TIMEOUT
        {
            Ok(Delivery::Refused(status.as_u16()))
        } else {
            Err(self.error_answer("report", status, resp).await)
        }
    }
}

#[cfg(test)]
mod tests;

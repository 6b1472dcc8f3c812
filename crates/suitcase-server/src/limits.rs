//! What a client can hold on the server without sending a request's worth of bytes, bounded:
//! open connections (with the longest-idle one closed to make room), time to send headers,
//! idle keep-alive, and request bodies (a deadline for small ones, a stall timeout and a
//! minimum rate for payload uploads). docs/server.md §7 lists every limit.
//!
//! A slow client costs a socket and a task, nothing else; these limits give both back, so a
//! thousand slow or idle connections do not keep well-behaved devices out.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http_body::Frame;
use tokio::sync::Notify;

use crate::error::ApiErr;

/// Raises this process's soft limit on open files to its hard limit, and returns the number
/// of connections that leaves room for (three quarters of it: the database, payload files
/// and logs need descriptors too).
pub(crate) fn connection_room() -> Option<usize> {
    let soft = rlimit::increase_nofile_limit(u64::MAX).ok()?;
    usize::try_from(soft / 4 * 3).ok()
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Requests whose answer has not been sent in full.
    in_flight: AtomicUsize,
    /// When the last request ended, in milliseconds since the registry was made.
    last_active: AtomicU64,
    /// Closes the connection (eviction).
    close: Notify,
}

impl Conn {
    pub(crate) async fn closed(&self) {
        self.close.notified().await;
    }

    pub(crate) fn is_idle_for(&self, reg: &Registry, d: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && reg
                .now_ms()
                .saturating_sub(self.last_active.load(Ordering::Acquire))
                >= u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// A request started; the guard ends it when the answer's body is sent or dropped.
    pub(crate) fn begin(self: &Arc<Self>, reg: &Arc<Registry>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard {
            conn: self.clone(),
            reg: reg.clone(),
        }
    }
}

/// Ends a request when dropped.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    conn: Arc<Conn>,
    reg: Arc<Registry>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.conn
            .last_active
            .store(self.reg.now_ms(), Ordering::Release);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections.
#[derive(Debug)]
pub(crate) struct Registry {
    start: Instant,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            next: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a new connection; it counts as idle since now until its first request.
    pub(crate) fn open(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        if let Ok(mut m) = self.conns.lock() {
            m.insert(id, c.clone());
        }
        (id, c)
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut m) = self.conns.lock() {
            m.remove(&id);
        }
    }

    /// Closes the connection idle the longest, to make room for a new one. `false` if every
    /// connection is in the middle of a request.
    pub(crate) fn evict_idlest(&self) -> bool {
        let Ok(m) = self.conns.lock() else {
            return false;
        };
        let idlest = m
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.last_active.load(Ordering::Acquire));
        match idlest {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Set on a request whose body timed out, so the answer becomes `408`.
#[derive(Clone, Debug, Default)]
struct TimedOut(Arc<AtomicBool>);

/// How a request body is bounded in time.
#[derive(Clone, Copy, Debug)]
enum Pace {
    /// The whole body by this deadline.
    Deadline(Duration),
    /// No gap longer than `stall`, and at least `min_rate` bytes a second over each `stall`.
    Stream { stall: Duration, min_rate: u64 },
}

/// The bytes a second an upload must average over each stall window.
pub(crate) const UPLOAD_MIN_RATE: u64 = 1024;

struct PacedBody {
    inner: Body,
    pace: Pace,
    timer: Pin<Box<tokio::time::Sleep>>,
    window_start: tokio::time::Instant,
    window_bytes: u64,
    flag: TimedOut,
}

impl PacedBody {
    fn new(inner: Body, pace: Pace, flag: TimedOut) -> Self {
        let now = tokio::time::Instant::now();
        let first = match pace {
            Pace::Deadline(d) => d,
            Pace::Stream { stall, .. } => stall,
        };
        Self {
            inner,
            pace,
            timer: Box::pin(tokio::time::sleep_until(now + first)),
            window_start: now,
            window_bytes: 0,
            flag,
        }
    }

    fn timed_out(&self, what: &str) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.flag.0.store(true, Ordering::Release);
        Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            what.to_owned(),
        )))))
    }
}

impl http_body::Body for PacedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Pace::Stream { stall, min_rate } = self.pace {
                    let now = tokio::time::Instant::now();
                    self.window_bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if now.duration_since(self.window_start) >= stall {
                        if self.window_bytes < min_rate.saturating_mul(stall.as_secs().max(1)) {
                            return self
                                .timed_out("the upload is slower than the server's minimum rate");
                        }
                        self.window_start = now;
                        self.window_bytes = 0;
                    }
                    self.timer.as_mut().reset(now + stall);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if self.timer.as_mut().poll(cx).is_ready() {
                    return self.timed_out("the request body did not arrive in time");
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Bounds request bodies in time (payload uploads by pace, everything else by a deadline)
/// and answers `408` when one is too slow.
pub(crate) async fn pace_bodies(
    axum::extract::State(limits): axum::extract::State<crate::Limits>,
    req: Request,
    next: Next,
) -> Response {
    let upload = req.method() == axum::http::Method::PUT && req.uri().path().contains("/payloads/");
    let pace = if upload {
        Pace::Stream {
            stall: limits.upload_stall,
            min_rate: UPLOAD_MIN_RATE,
        }
    } else {
        Pace::Deadline(limits.body_timeout)
    };
    let flag = TimedOut::default();
    let req = req.map(|b| Body::new(PacedBody::new(b, pace, flag.clone())));
    let res = next.run(req).await;
    if flag.0.load(Ordering::Acquire) {
        let mut r = ApiErr::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            match pace {
                Pace::Deadline(d) => {
                    format!("the request body did not arrive within {} s", d.as_secs())
                }
                Pace::Stream { stall, min_rate } => format!(
                    "the upload stalled: no data for {} s, or less than {min_rate} bytes a second",
                    stall.as_secs()
                ),
            },
        )
        .hint("send the body at network speed; resend the request")
        .into_response();
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return r;
    }
    res
}

//! A TCP proxy between the agent and the server: counts the bytes each way, notices range
//! requests and 206 answers in the HTTP/1.1 stream, and can cut connections after a number of
//! bytes towards the agent (a network that drops).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "test code"
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
pub struct Stats {
    pub up: AtomicU64,
    pub down: AtomicU64,
    pub range_requests: AtomicU64,
    pub partial_answers: AtomicU64,
    pub connections: AtomicU64,
    pub cuts_done: AtomicU64,
}

impl Stats {
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::SeqCst)
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts occurrences of `needle` (lower case) in a stream, case-insensitively.
struct Finder {
    needle: &'static [u8],
    tail: Vec<u8>,
}

impl Finder {
    fn new(needle: &'static [u8]) -> Self {
        Self {
            needle,
            tail: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8]) -> u64 {
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend(data.iter().map(u8::to_ascii_lowercase));
        let n = buf
            .windows(self.needle.len())
            .filter(|w| *w == self.needle)
            .count() as u64;
        let keep = self.needle.len().saturating_sub(1).min(buf.len());
        self.tail = buf[buf.len() - keep..].to_vec();
        n
    }
}

impl Proxy {
    /// Forwards to `target`; the i-th connection towards the agent is cut after `cuts[i]`
    /// bytes (connections beyond the list are not cut).
    pub async fn start(target: SocketAddr, cuts: Vec<u64>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let cuts = Arc::new(Mutex::new(VecDeque::from(cuts)));
        let s = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let cut = cuts.lock().unwrap().pop_front();
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let s1 = s.clone();
                    let up = tokio::spawn(async move {
                        let mut f = Finder::new(b"\r\nrange: bytes=");
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            s1.up.fetch_add(n as u64, Ordering::SeqCst);
                            s1.range_requests
                                .fetch_add(f.feed(&buf[..n]), Ordering::SeqCst);
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                    });
                    let mut f = Finder::new(b"http/1.1 206");
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut sent = 0u64;
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let n = match cut {
                            Some(c) if sent + n as u64 >= c => {
                                let n = usize::try_from(c - sent).unwrap();
                                let _ = cw.write_all(&buf[..n]).await;
                                s.down.fetch_add(n as u64, Ordering::SeqCst);
                                s.partial_answers
                                    .fetch_add(f.feed(&buf[..n]), Ordering::SeqCst);
                                s.cuts_done.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            _ => n,
                        };
                        sent += n as u64;
                        s.down.fetch_add(n as u64, Ordering::SeqCst);
                        s.partial_answers
                            .fetch_add(f.feed(&buf[..n]), Ordering::SeqCst);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    // Closing both directions: the agent sees the connection drop.
                    drop(cw);
                    up.abort();
                });
            }
        });
        Self { addr, stats, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

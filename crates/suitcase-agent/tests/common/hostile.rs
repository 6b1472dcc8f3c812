//! A small HTTP/1.1 server on a loopback socket that answers what the test tells it to: an
//! update server that lies (offers URLs on other hosts, redirects, endless bodies) or a
//! "CDN" on another origin. It records every request with its Authorization header, and
//! counts the body bytes it managed to send before the client hung up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation,
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The Authorization header, if any.
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// What to answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A complete answer.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A status line and headers, then body bytes without end (chunked, or after a lying
    /// Content-Length), until the client hangs up or `cap` bytes are sent.
    Endless {
        status: u16,
        content_length: Option<u64>,
        cap: u64,
    },
}

impl Answer {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn bytes(body: &[u8]) -> Self {
        Self::Full {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
        }
    }

    pub fn redirect(to: &str) -> Self {
        Self::Full {
            status: 302,
            headers: vec![("location".into(), to.into())],
            body: vec![],
        }
    }

    pub fn not_found() -> Self {
        Self::Full {
            status: 404,
            headers: vec![],
            body: b"no".to_vec(),
        }
    }
}

/// A signed one-image release: (envelope, payload uri, payload bytes).
pub fn release(fleet: &super::Fleet, sequence: u64, img: &[u8]) -> (Vec<u8>, String, Vec<u8>) {
    let built = fleet.build(&fleet.request(sequence, vec![fleet.app(img, sequence)]));
    let p = &built.payloads[0];
    (
        built.envelope.clone(),
        p.uri.clone().unwrap(),
        p.bytes.clone(),
    )
}

/// A check-in answer offering the release at these URLs.
pub fn offer(
    sequence: u64,
    envelope: &[u8],
    manifest_url: &str,
    uri: &str,
    payload: &[u8],
    payload_url: &str,
) -> serde_json::Value {
    serde_json::json!({
        "action": "update",
        "next_poll_seconds": 60,
        "update": {
            "release_id": "rel_hostile",
            "sequence_number": sequence,
            "manifest_url": manifest_url,
            "manifest_size": envelope.len(),
            "payloads": [{
                "uri": uri,
                "url": payload_url,
                "size": payload.len(),
                "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(payload)),
            }],
            "requires_consent": false,
            "rollback": false,
        }
    })
}

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

pub struct Hostile {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Body bytes written to clients (what they accepted before hanging up).
    pub body_sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    pub async fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let body_sent = Arc::new(AtomicU64::new(0));
        let handler: Handler = Arc::new(handler);
        let (s, b) = (seen.clone(), body_sent.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (s, b, h) = (s.clone(), b.clone(), handler.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, &s, &b, &h).await;
                });
            }
        });
        Self {
            addr,
            seen,
            body_sent,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn sent(&self) -> u64 {
        self.body_sent.load(Ordering::SeqCst)
    }
}

/// A request as read off the socket: header names lowercased, values trimmed.
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 request (head at most 64 KiB, body at most 1 MiB); `None` if the
/// client hung up first.
pub async fn read_request(sock: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 << 10 {
            return Ok(None);
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length.min(1 << 20) {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

/// Writes a complete answer with `connection: close` and flushes it.
pub async fn write_answer(
    sock: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    sock.write_all(out.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.flush().await
}

/// One request per connection (answers say `connection: close`).
async fn serve(
    mut sock: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    sent: &AtomicU64,
    handler: &Handler,
) -> std::io::Result<()> {
    let Some(r) = read_request(&mut sock).await? else {
        return Ok(());
    };
    let request = Seen {
        authorization: r.header("authorization").map(str::to_owned),
        method: r.method,
        path: r.path,
        body: r.body,
    };
    seen.lock().unwrap().push(request.clone());
    match handler(&request) {
        Answer::Full {
            status,
            headers,
            body,
        } => {
            write_answer(&mut sock, status, &headers, &body).await?;
            sent.fetch_add(body.len() as u64, Ordering::SeqCst);
        }
        Answer::Endless {
            status,
            content_length,
            cap,
        } => {
            let framing = match content_length {
                Some(n) => format!("content-length: {n}"),
                None => "transfer-encoding: chunked".to_owned(),
            };
            sock.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
            // JSON-looking filler: an array of zeros that never closes.
            let mut piece = vec![b'['];
            while piece.len() < 64 << 10 {
                piece.extend_from_slice(b"0,");
            }
            let mut done = 0u64;
            while done < cap {
                let wire = if content_length.is_some() {
                    piece.clone()
                } else {
                    let mut c = format!("{:x}\r\n", piece.len()).into_bytes();
                    c.extend_from_slice(&piece);
                    c.extend_from_slice(b"\r\n");
                    c
                };
                sock.write_all(&wire).await?;
                done += piece.len() as u64;
                sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
                piece[0] = b'0';
            }
        }
    }
    sock.flush().await?;
    Ok(())
}

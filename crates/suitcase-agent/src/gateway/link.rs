//! One sub-device's serial link: SLIP frames in, CoAP requests answered (docs/gateway.md §2),
//! the same resource paths as the server's CoAP API (docs/coap.md).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use suitcase_protocol::{Action, CheckIn, CheckInAnswer, StepReport};

use super::queue::{Pushed, Queued};
use super::serial::Serial;
use super::slip::{self, Decoder};
use super::{Gateway, Link, MAX_MESSAGE, coap_path, lock};

/// RFC 7252 §12.3 content-formats.
const CF_LINK: u16 = 40;
const CF_OCTETS: u16 = 42;
const CF_CBOR: u16 = 60;
/// RFC 7959 §2.2: the largest block (SZX 6) and the most block numbers (20 bits).
const MAX_BLOCK: u32 = 1024;
const MAX_BLOCK_NUM: u64 = (1 << 20) - 1;
/// Answers kept for retransmissions (RFC 7252 §4.5), per link.
const RECENT: usize = 16;
/// The longest diagnostic payload (RFC 7252 §5.5.2).
const DIAGNOSTIC_MAX: usize = 200;
/// Max-Age of a 5.03 while an object is fetched (RFC 7252 §5.9.3.4: when to ask again).
const FETCH_RETRY_S: u64 = 1;

const WELL_KNOWN_CORE: &str = concat!(
    "</d/checkin>;rt=\"suitcase.checkin\";ct=60,",
    "</d/reports>;rt=\"suitcase.reports\";ct=60,",
    "</d/releases>;rt=\"suitcase.envelopes\";ct=42,",
    "</d/payloads>;rt=\"suitcase.payloads\";ct=42,",
    "</d/deltas>;rt=\"suitcase.deltas\";ct=42"
);

/// Serves sub-device `i`'s link forever: opens the serial device, or listens on the socket
/// and accepts one connection at a time (again after an error, with back-off up to 5 s),
/// and answers its frames.
pub(super) async fn run(gw: Arc<Gateway>, i: usize) {
    let Some(sub) = gw.subs.get(i) else { return };
    let first = Duration::from_millis(100);
    let mut wait = first;
    let mut mid = u16::from_be_bytes(rand2());
    let mut listener = None;
    loop {
        let port = match &sub.cfg.link {
            Link::Serial(path) => Serial::open(path),
            Link::Socket(path) => accept(&mut listener, path).await,
        };
        let path = sub.cfg.link.path().display();
        match port {
            Ok(port) => {
                tracing::info!(subdevice = %sub.cfg.id, link = %path, "gateway: link open");
                wait = first;
                if let Err(e) = serve(&gw, i, &port, &mut mid).await {
                    tracing::info!(subdevice = %sub.cfg.id, error = %e, "gateway: link closed");
                }
            }
            Err(e) => {
                tracing::debug!(subdevice = %sub.cfg.id, link = %path, error = %e, "gateway: cannot open the link");
            }
        }
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2).min(Duration::from_secs(5));
    }
}

/// The next connection on the socket at `path`, bound on first use (a socket file left by
/// an earlier run is replaced; any other file there is an error).
async fn accept(
    listener: &mut Option<tokio::net::UnixListener>,
    path: &std::path::Path,
) -> std::io::Result<Serial> {
    if listener.is_none() {
        use std::os::unix::fs::FileTypeExt as _;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(path)?;
        }
        *listener = Some(tokio::net::UnixListener::bind(path)?);
    }
    let Some(l) = listener.as_ref() else {
        return Err(std::io::Error::other("no listener"));
    };
    let (stream, _) = l.accept().await?;
    Ok(Serial::from_stream(stream))
}

/// The first message ID of a link, randomized as RFC 7252 §4.4 recommends (so that IDs from
/// before a gateway restart are not taken as duplicates). Without a random source it starts
/// at 0: on a point-to-point serial link there is no off-path sender to guess it, and the
/// sub-device's duplicate detection only ever sees this gateway's IDs.
fn rand2() -> [u8; 2] {
    let mut b = [0u8; 2];
    if let Err(e) = getrandom::fill(&mut b) {
        tracing::warn!(error = %e, "gateway: no random source for the first CoAP message ID; starting at 0");
    }
    b
}

async fn serve(gw: &Arc<Gateway>, i: usize, port: &Serial, mid: &mut u16) -> std::io::Result<()> {
    // The decoder holds one frame: the largest message and its 2-byte FCS.
    let mut decoder = Box::new(Decoder::<{ MAX_MESSAGE + 2 }>::new());
    let mut buf = [0u8; 512];
    let mut recent: VecDeque<(u16, Vec<u8>, Vec<u8>)> = VecDeque::with_capacity(RECENT);
    let mut out = vec![0u8; slip::encoded_max(MAX_MESSAGE)];
    loop {
        let n = port.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "end of the link",
            ));
        }
        for b in buf.get(..n).unwrap_or_default() {
            let message = match decoder.push(*b) {
                None => continue,
                Some(Ok(m)) => m.to_vec(),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "gateway: frame dropped");
                    continue;
                }
            };
            let Some(answer) = answer(gw, i, &message, &mut recent, mid).await else {
                continue;
            };
            match slip::encode(&answer, &mut out) {
                Ok(len) => port.write_all(out.get(..len).unwrap_or_default()).await?,
                Err(e) => tracing::warn!(error = %e, "gateway: answer not framed"),
            }
        }
    }
}

/// The answer to one message, if it gets one.
async fn answer(
    gw: &Arc<Gateway>,
    i: usize,
    message: &[u8],
    recent: &mut VecDeque<(u16, Vec<u8>, Vec<u8>)>,
    mid: &mut u16,
) -> Option<Vec<u8>> {
    let req = match Packet::from_bytes(message) {
        Ok(p) => p,
        Err(e) => {
            // RFC 7252 §4.2/§4.3: a message that does not parse is rejected or ignored;
            // over a link without addresses, ignoring it costs the sub-device one timeout.
            tracing::debug!(error = ?e, "gateway: not a CoAP message");
            return None;
        }
    };
    let t = req.header.get_type();
    if matches!(t, MessageType::Acknowledgement | MessageType::Reset) {
        return None; // the gateway sends no confirmable message of its own
    }
    if req.header.code == MessageClass::Empty {
        // RFC 7252 §4.3: a CoAP ping (empty confirmable) is answered with a Reset.
        return (t == MessageType::Confirmable)
            .then(|| empty_reset(req.header.message_id))
            .flatten();
    }
    let MessageClass::Request(method) = req.header.code else {
        return None;
    };
    // RFC 7252 §4.5: a duplicate (same message id and token) gets the same answer again,
    // and is not acted on twice (a report is queued once).
    let id = req.header.message_id;
    if let Some((_, _, a)) = recent
        .iter()
        .find(|(m, tok, _)| *m == id && tok.as_slice() == req.get_token())
    {
        return Some(a.clone());
    }
    let mut out = Packet::new();
    if t == MessageType::Confirmable {
        out.header.set_type(MessageType::Acknowledgement);
        out.header.message_id = id;
    } else {
        out.header.set_type(MessageType::NonConfirmable);
        *mid = mid.wrapping_add(1);
        out.header.message_id = *mid;
    }
    out.set_token(req.get_token().to_vec());
    let mut routed = route(gw, i, method, &req, &mut out).await;
    // An answer longer than a frame holds (a check-in answer with a long freshness statement
    // or many payloads) would be dropped by the sub-device's decoder as too long, and asked
    // again forever: it is answered 5.00 naming why instead (RFC 7252 §5.9.3.1).
    // (coap-lite refuses to encode a message over 1280 bytes: that is too long as well.)
    if routed.is_ok() && !matches!(out.to_bytes(), Ok(b) if b.len() <= MAX_MESSAGE) {
        let n = out.payload.len();
        tracing::warn!(
            subdevice = i,
            payload = n,
            "gateway: answer too large for the link"
        );
        routed = Err(fail(
            ResponseType::InternalServerError,
            format!(
                "too-large: the answer's {n}-byte payload does not fit the {MAX_MESSAGE} bytes a frame holds (the gateway does not send it block-wise)"
            ),
        ));
    }
    if let Err(f) = routed {
        out.clear_all_options();
        out.header.code = MessageClass::Response(f.code);
        if let Some(age) = f.max_age {
            out.add_option(CoapOption::MaxAge, uint(age));
        }
        let mut text = f.text;
        if text.len() > DIAGNOSTIC_MAX {
            let mut cut = DIAGNOSTIC_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        out.payload = text.into_bytes();
    }
    let bytes = out.to_bytes().ok()?;
    if recent.len() >= RECENT {
        recent.pop_front();
    }
    recent.push_back((id, req.get_token().to_vec(), bytes.clone()));
    Some(bytes)
}

fn empty_reset(id: u16) -> Option<Vec<u8>> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Reset);
    p.header.message_id = id;
    p.to_bytes().ok()
}

struct Failure {
    code: ResponseType,
    text: String,
    max_age: Option<u64>,
}

fn fail(code: ResponseType, text: impl Into<String>) -> Failure {
    Failure {
        code,
        text: text.into(),
        max_age: None,
    }
}

fn unavailable(text: impl Into<String>, max_age: u64) -> Failure {
    Failure {
        code: ResponseType::ServiceUnavailable,
        text: text.into(),
        max_age: Some(max_age),
    }
}

type Res<T> = Result<T, Failure>;

fn uint(v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b.get(skip..).map(<[u8]>::to_vec).unwrap_or_default()
}

fn uint_of(v: &[u8]) -> u64 {
    v.iter().take(8).fold(0u64, |a, b| (a << 8) | u64::from(*b))
}

async fn route(
    gw: &Arc<Gateway>,
    i: usize,
    method: RequestType,
    req: &Packet,
    out: &mut Packet,
) -> Res<()> {
    check_options(req)?;
    let segs: Vec<String> = match req.get_option(CoapOption::UriPath) {
        None => Vec::new(),
        Some(l) => l
            .iter()
            .map(|s| String::from_utf8(s.clone()))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                fail(
                    ResponseType::BadRequest,
                    "bad-path: a Uri-Path segment is not UTF-8",
                )
            })?,
    };
    let path = format!("/{}", segs.join("/"));
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let known = matches!(
        s.as_slice(),
        [".well-known", "core"]
            | ["d", "checkin" | "reports" | "offer"]
            | ["d", "releases", _, "envelope"]
            | ["d", "payloads", _, _]
            | ["d", "deltas", _]
    );
    match (method, s.as_slice()) {
        (RequestType::Get, [".well-known", "core"]) => {
            out.header.code = MessageClass::Response(ResponseType::Content);
            out.add_option(CoapOption::ContentFormat, uint(CF_LINK.into()));
            out.payload = WELL_KNOWN_CORE.as_bytes().to_vec();
            Ok(())
        }
        (RequestType::Post, ["d", "checkin"]) => checkin(gw, i, req, out).await,
        (RequestType::Post, ["d", "reports"]) => report(gw, i, req, out).await,
        (RequestType::Get, ["d", "offer"]) => Err(fail(
            ResponseType::NotFound,
            "not-relayed: the gateway does not relay /d/offer (no Observe over the serial link); POST /d/checkin every next_poll_seconds",
        )),
        (
            RequestType::Get,
            ["d", "releases", _, "envelope"] | ["d", "payloads", _, _] | ["d", "deltas", _],
        ) => download(gw, i, &path, req, out),
        _ if known => Err(fail(
            ResponseType::MethodNotAllowed,
            format!("method-not-allowed: {method:?} on {path}"),
        )),
        _ => Err(fail(
            ResponseType::NotFound,
            format!("no-such-resource: no resource {path}; GET /.well-known/core lists them"),
        )),
    }
}

/// RFC 7252 §5.4.1: an unrecognized critical option is answered 4.02; §5.7.2: the proxy
/// options 5.05 (the gateway answers from its own resources, it is no forward proxy).
fn check_options(req: &Packet) -> Res<()> {
    for (number, values) in req.options() {
        match CoapOption::from(*number) {
            CoapOption::ProxyUri | CoapOption::ProxyScheme => {
                return Err(fail(
                    ResponseType::ProxyingNotSupported,
                    "the gateway serves /d/… itself and forwards no Proxy-Uri (RFC 7252 §5.7.2)",
                ));
            }
            CoapOption::Block1 => {
                let whole = values
                    .front()
                    .is_some_and(|v| uint_of(v) & 0xF8 == 0 && uint_of(v) >> 4 == 0);
                if !whole {
                    return Err(fail(
                        ResponseType::RequestEntityTooLarge,
                        "too-large: request bodies are sent whole in one frame, not block-wise",
                    ));
                }
            }
            CoapOption::Unknown(n) if n % 2 == 1 => {
                return Err(fail(
                    ResponseType::BadOption,
                    format!("bad-option: critical option {n} is not understood (RFC 7252 §5.4.1)"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn cbor_body<T: serde::de::DeserializeOwned>(req: &Packet, what: &str) -> Res<T> {
    let cf = req
        .get_first_option(CoapOption::ContentFormat)
        .map(|v| uint_of(v));
    if cf != Some(u64::from(CF_CBOR)) {
        return Err(fail(
            ResponseType::UnsupportedContentFormat,
            format!(
                "unsupported-content-format: the body must be CBOR (content-format 60), not {}",
                cf.map_or("unset".into(), |c| c.to_string())
            ),
        ));
    }
    ciborium::from_reader(req.payload.as_slice()).map_err(|e| {
        fail(
            ResponseType::BadRequest,
            format!("bad-body: the {what} does not parse: {e}"),
        )
    })
}

fn cbor_answer<T: serde::Serialize>(out: &mut Packet, code: ResponseType, v: &T) -> Res<()> {
    let mut body = Vec::new();
    ciborium::into_writer(v, &mut body).map_err(|e| {
        fail(
            ResponseType::InternalServerError,
            format!("internal: CBOR: {e}"),
        )
    })?;
    out.header.code = MessageClass::Response(code);
    out.add_option(CoapOption::ContentFormat, uint(CF_CBOR.into()));
    out.payload = body;
    Ok(())
}

/// The answer as the server's CoAP API gives it: its download URLs as CoAP paths, no MQTT.
fn as_coap(a: &CheckInAnswer) -> CheckInAnswer {
    let mut a = a.clone();
    a.push = None;
    if let Some(u) = &mut a.update {
        u.manifest_url = coap_path(&u.manifest_url);
        for p in &mut u.payloads {
            p.url = coap_path(&p.url);
            if let Some(d) = &mut p.delta {
                d.url = coap_path(&d.url);
            }
        }
    }
    a
}

/// POST /d/checkin: relayed with the sub-device's token; the answer is kept (on disk) and
/// its objects fetched into the cache at once. When the server cannot be reached or fails,
/// the kept answer is given again (the offer as the server last made it).
async fn checkin(gw: &Arc<Gateway>, i: usize, req: &Packet, out: &mut Packet) -> Res<()> {
    let c: CheckIn = cbor_body(req, "check-in")?;
    let sub = gw
        .subs
        .get(i)
        .ok_or_else(|| fail(ResponseType::InternalServerError, "internal"))?;
    match sub.http.checkin(&c).await {
        Ok(a) => {
            if let Err(e) = gw.keep_answer(i, &a) {
                tracing::warn!(error = %e, "gateway: check-in answer not kept");
            }
            for (path, what) in Gateway::objects_of(&a) {
                if gw.cache.lookup(&path).is_none()
                    && what
                        .sha256
                        .as_ref()
                        .is_none_or(|s| gw.cache.by_digest(&path, s).ok().flatten().is_none())
                {
                    gw.start_fetch(i, &path, what);
                }
            }
            cbor_answer(out, ResponseType::Changed, &as_coap(&a))
        }
        Err(e) => {
            // The server answered and refused (4xx but 408 and 429: the device is unknown,
            // decommissioned, or its check-in is wrong): relayed, and the kept answer is
            // forgotten, so a sub-device the server no longer serves gets no old offer.
            if let Some(code) = refused(&e.to_string()) {
                gw.forget_answer(i);
                return Err(fail(code, format!("refused by the server: {e}")));
            }
            let kept = lock(&sub.answer).clone();
            match kept {
                Some(a) => {
                    tracing::info!(subdevice = %sub.cfg.id, error = %e, "gateway: server unreachable; answering the kept check-in answer");
                    let mut a = as_coap(&a);
                    if a.update.is_none() {
                        a.action = Action::None;
                    }
                    cbor_answer(out, ResponseType::Changed, &a)
                }
                None => Err(unavailable(
                    format!(
                        "unreachable: the server cannot be reached and this sub-device has no kept answer: {e}"
                    ),
                    gw.cfg.retry_min.as_secs().max(1),
                )),
            }
        }
    }
}

/// The CoAP code for a check-in the server refused for good (HTTP 4xx but 408 and 429,
/// read from the agent's error text `check-in: HTTP 401 Unauthorized: …`).
fn refused(error: &str) -> Option<ResponseType> {
    let status: u16 = error
        .split("check-in: HTTP ")
        .nth(1)?
        .get(..3)?
        .parse()
        .ok()?;
    Some(match status {
        401 => ResponseType::Unauthorized,
        403 => ResponseType::Forbidden,
        404 => ResponseType::NotFound,
        409 => ResponseType::Conflict,
        413 => ResponseType::RequestEntityTooLarge,
        415 => ResponseType::UnsupportedContentFormat,
        422 => ResponseType::UnprocessableEntity,
        408 | 429 => return None,
        400..=499 => ResponseType::BadRequest,
        _ => return None,
    })
}

/// POST /d/reports: queued durably (synced before the 2.04, on the blocking pool: an fsync
/// must not hold up the other links), sent by the sync task.
async fn report(gw: &Arc<Gateway>, i: usize, req: &Packet, out: &mut Packet) -> Res<()> {
    let report: StepReport = cbor_body(req, "step report")?;
    let sub = gw
        .subs
        .get(i)
        .ok_or_else(|| fail(ResponseType::InternalServerError, "internal"))?;
    if gw.is_refused(i) {
        // Queuing it would only hold it for a server that refuses it (docs/gateway.md §4).
        return Err(fail(
            ResponseType::Forbidden,
            "refused: the server refused this sub-device's credential (its token is unknown, revoked or mistyped); reports are not accepted until a check-in succeeds",
        ));
    }
    let q = Queued {
        subdevice: sub.cfg.id.clone(),
        report,
    };
    let g = Arc::clone(gw);
    let share = gw.queue_share();
    let pushed = tokio::task::spawn_blocking(move || g.queue.push(&q, share))
        .await
        .unwrap_or_else(|e| {
            Err(crate::error::AgentError::Local(format!(
                "report queue: {e}"
            )))
        });
    match pushed {
        Ok(Pushed::Queued) => {
            gw.wake.notify_one();
            out.header.code = MessageClass::Response(ResponseType::Changed);
            Ok(())
        }
        Ok(Pushed::Full) => Err(unavailable(
            format!(
                "queue-full: the queue holds {} reports, or {share} of this sub-device's (its share); send this one again later",
                gw.cfg.queue_reports
            ),
            60,
        )),
        Err(e) => {
            tracing::error!(error = %e, "gateway: report not queued");
            Err(unavailable(
                "disk: the report could not be stored; send it again",
                5,
            ))
        }
    }
}

/// GET of an envelope, payload or delta of the sub-device's last offer, block-wise
/// (RFC 7959) from the cache; fetched first if it is not cached (5.03 meanwhile).
fn download(gw: &Arc<Gateway>, i: usize, path: &str, req: &Packet, out: &mut Packet) -> Res<()> {
    // As the server: an object is served only to a sub-device it was offered to.
    let Some(what) = gw.offered(i, path) else {
        return Err(fail(
            ResponseType::NotFound,
            format!("not-offered: {path} is not in this sub-device's last offer; check in first"),
        ));
    };
    let cached = match gw.cache.lookup(path) {
        Some(o) => Some(o),
        None => match &what.sha256 {
            Some(sha) => gw.cache.by_digest(path, sha).ok().flatten(),
            None => None,
        },
    };
    let Some(object) = cached else {
        let note = gw.start_fetch(i, path, what);
        return Err(unavailable(format!("fetching: {note}"), FETCH_RETRY_S));
    };
    let asked = req.get_first_option(CoapOption::Block2);
    let (num, size) = match asked {
        None => (0u64, MAX_BLOCK),
        Some(v) => {
            if v.len() > 3 {
                return Err(fail(
                    ResponseType::BadOption,
                    "bad-block: the Block2 option is longer than 3 bytes (RFC 7959 §2.2)",
                ));
            }
            let v = uint_of(v);
            let szx = u32::try_from(v & 7).unwrap_or(7);
            if szx == 7 {
                return Err(fail(
                    ResponseType::BadOption,
                    "bad-block: SZX 7 is reserved (RFC 7959 §2.2); use 0 to 6",
                ));
            }
            (v >> 4, 1u32 << (szx + 4))
        }
    };
    let total = object.size;
    let blocks = total.div_ceil(u64::from(size)).max(1);
    if blocks > MAX_BLOCK_NUM + 1 {
        return Err(fail(
            ResponseType::BadRequest,
            format!(
                "too-many-blocks: {total} bytes in {size}-byte blocks need more than 20-bit block numbers; ask for larger blocks"
            ),
        ));
    }
    let start = num.saturating_mul(u64::from(size));
    if num >= blocks {
        return Err(fail(
            ResponseType::BadRequest,
            format!(
                "bad-block: block {num} of {size} bytes starts beyond the {total}-byte representation; the last block is {}",
                blocks - 1
            ),
        ));
    }
    let end = (start + u64::from(size)).min(total);
    let body = super::cache::read_range(&object, start, usize::try_from(end - start).unwrap_or(0))
        .map_err(|e| {
            tracing::error!(error = %e, "gateway: cached object unreadable");
            unavailable("disk: the cached object cannot be read", 5)
        })?;
    out.header.code = MessageClass::Response(ResponseType::Content);
    // RFC 7252 §5.10.6: the first 8 bytes of the content's SHA-256, as the server sends.
    if let Ok(tag) = hex::decode(object.sha256.get(..16).unwrap_or_default()) {
        out.add_option(CoapOption::ETag, tag);
    }
    out.add_option(CoapOption::ContentFormat, uint(CF_OCTETS.into()));
    let whole = asked.is_none() && total <= u64::from(size);
    if !whole {
        let szx = u64::from(size.trailing_zeros() - 4);
        let more = u64::from(end < total);
        out.add_option(CoapOption::Block2, uint((num << 4) | (more << 3) | szx));
        out.add_option(CoapOption::Size2, uint(total));
    }
    out.payload = body;
    Ok(())
}

//! The CoAP resources (docs/coap.md): each one calls what the HTTP device API calls
//! (`api::device::check_in`, `record_report`, the store and payload store) and only maps the
//! answer to CoAP: CBOR bodies (content-format 60), Block2 downloads, error codes with a
//! diagnostic payload (RFC 7252 §5.5.2).

use std::sync::Arc;

use axum::http::StatusCode;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use suitcase_protocol::{Action, CheckIn, CheckInAnswer, StepReport};

use super::block::{self, Block};
use super::{Endpoint, MAX_BODY, Peer};
use crate::AppState;
use crate::api::device;
use crate::devices::DeviceEntry;
use crate::error::ApiErr;

/// RFC 7252 §12.3 content-formats.
const CF_LINK: u16 = 40;
const CF_OCTETS: u16 = 42;
const CF_CBOR: u16 = 60;

/// The block size used when the client does not ask for one (RFC 7959 §2.4: the client may
/// ask for smaller ones; never larger, at most 1024).
const PREFERRED_BLOCK: u32 = 1024;

/// Where the HTTP device API's paths live; the CoAP ones are under `/d/` (shorter on a
/// constrained link: the offer's URLs are rewritten).
const HTTP_PREFIX: &str = "/api/v1/device/";

/// RFC 6690 link format of the resources.
const WELL_KNOWN_CORE: &str = concat!(
    "</d/checkin>;rt=\"suitcase.checkin\";ct=60,",
    "</d/offer>;rt=\"suitcase.offer\";obs;ct=60,",
    "</d/reports>;rt=\"suitcase.reports\";ct=60,",
    "</d/releases>;rt=\"suitcase.envelopes\";ct=42,",
    "</d/payloads>;rt=\"suitcase.payloads\";ct=42,",
    "</d/deltas>;rt=\"suitcase.deltas\";ct=42"
);

/// A failure answered as a CoAP error with a diagnostic payload.
struct Failure {
    code: ResponseType,
    text: String,
}

impl Failure {
    fn new(code: ResponseType, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

impl From<ApiErr> for Failure {
    fn from(e: ApiErr) -> Self {
        let code = match e.status {
            StatusCode::BAD_REQUEST => ResponseType::BadRequest,
            StatusCode::UNAUTHORIZED => ResponseType::Unauthorized,
            StatusCode::FORBIDDEN => ResponseType::Forbidden,
            StatusCode::NOT_FOUND => ResponseType::NotFound,
            StatusCode::CONFLICT => ResponseType::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ResponseType::RequestEntityTooLarge,
            StatusCode::UNPROCESSABLE_ENTITY => ResponseType::UnprocessableEntity,
            StatusCode::TOO_MANY_REQUESTS => ResponseType::TooManyRequests,
            StatusCode::SERVICE_UNAVAILABLE => ResponseType::ServiceUnavailable,
            s if s.is_client_error() => ResponseType::BadRequest,
            _ => ResponseType::InternalServerError,
        };
        if code == ResponseType::InternalServerError {
            tracing::warn!(error = %e.body.message, "CoAP request failed");
            return Self::new(code, "internal: internal error");
        }
        let mut text = format!("{}: {}", e.body.error, e.body.message);
        if let Some(h) = e.body.hint {
            text.push_str(" (");
            text.push_str(&h);
            text.push(')');
        }
        Self::new(code, text)
    }
}

type Res<T> = Result<T, Failure>;

/// An answer to `req`: piggybacked on the ACK of a confirmable request (RFC 7252 §5.2.1),
/// or a non-confirmable message with a fresh id for a non-confirmable one (§5.2.3).
fn answer_to(ep: &Endpoint, req: &Packet) -> Packet {
    let mut p = Packet::new();
    if req.header.get_type() == MessageType::Confirmable {
        p.header.set_type(MessageType::Acknowledgement);
        p.header.message_id = req.header.message_id;
    } else {
        p.header.set_type(MessageType::NonConfirmable);
        p.header.message_id = ep.next_mid();
    }
    p.set_token(req.get_token().to_vec());
    p
}

fn uint(v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b.get(skip..).map(<[u8]>::to_vec).unwrap_or_default()
}

/// Answers one request.
pub(super) async fn handle(
    ep: &Arc<Endpoint>,
    peer: Peer,
    device: Option<(String, String)>,
    req: &Packet,
) -> Packet {
    let mut out = answer_to(ep, req);
    let r = route(ep, peer, device.as_ref(), req, &mut out).await;
    if let Err(f) = r {
        out.clear_all_options();
        out.header.code = MessageClass::Response(f.code);
        // RFC 7252 §5.5.2: a diagnostic payload, UTF-8, no content-format; kept short enough
        // for any datagram. RFC 7252 §11.3: on the plain listener, where a source address is
        // not verified, at most 16 characters, so that an error amplifies next to nothing.
        let limit = if peer.session == 0 { 16 } else { 400 };
        out.payload = crate::error::clip(&f.text, limit).into_bytes();
    }
    out
}

async fn route(
    ep: &Arc<Endpoint>,
    peer: Peer,
    device: Option<&(String, String)>,
    req: &Packet,
    out: &mut Packet,
) -> Res<()> {
    check_options(req)?;
    let MessageClass::Request(method) = req.header.code else {
        return Err(Failure::new(ResponseType::BadRequest, "not a request"));
    };
    let path = path_of(req)?;
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    let state = &ep.state;
    match (method, segs.as_slice()) {
        (RequestType::Get, [".well-known", "core"]) => {
            out.set_content_format(coap_lite::ContentFormat::ApplicationLinkFormat);
            let body = WELL_KNOWN_CORE.as_bytes();
            let total = body.len() as u64;
            let etag = etag_of(body);
            send_blocks(req, out, total, &etag, CF_LINK, |r| async move {
                Ok(slice(body, r))
            })
            .await
        }
        (RequestType::Post, ["d", "checkin"]) => {
            let dev = authenticated(state, device).await?;
            let c: CheckIn = cbor_body(req)?;
            let answer = checkin(state, &dev, &c).await?;
            cbor_answer(out, ResponseType::Changed, &answer)
        }
        (RequestType::Post, ["d", "reports"]) => {
            let dev = authenticated(state, device).await?;
            let r: StepReport = cbor_body(req)?;
            device::record_report(state, &dev, &r, true).await?;
            out.header.code = MessageClass::Response(ResponseType::Changed);
            Ok(())
        }
        (RequestType::Get, ["d", "offer"]) => {
            let dev = authenticated(state, device).await?;
            let repr = offer_state(state, &dev.id, &dev.name).await?;
            let token = req.get_token();
            match req
                .get_first_option(CoapOption::Observe)
                .map(|v| uint_of(v))
            {
                // RFC 7641 §3.1/§4.1: register; the first answer carries a sequence number.
                // Over the bounds the answer has no Observe option: the client is not
                // registered.
                Some(0) if ep.observe(peer, token, &dev.id, &dev.name, &repr) => {
                    out.add_option(CoapOption::Observe, uint(2));
                }
                Some(1) => ep.unobserve(peer, token),
                _ => {}
            }
            // RFC 7641 §3.3.1: the client registers again when this expires, before the
            // session's idle limit ends the observation.
            out.add_option(CoapOption::MaxAge, uint(super::OBSERVE_REFRESH_S));
            cbor_raw(out, ResponseType::Content, repr);
            Ok(())
        }
        (RequestType::Get, ["d", "releases", release_id, "envelope"]) => {
            let dev = authenticated(state, device).await?;
            authorize(state, &dev, release_id).await?;
            let bytes = state
                .db
                .release_envelope(release_id)
                .await
                .map_err(ApiErr::from)?
                .ok_or_else(|| ApiErr::not_found("release", release_id))?;
            let etag = etag_of(&bytes);
            let total = bytes.len() as u64;
            let bytes = &bytes;
            send_blocks(req, out, total, &etag, CF_OCTETS, |r| async move {
                Ok(slice(bytes, r))
            })
            .await
        }
        (RequestType::Get, ["d", "payloads", release_id, index]) => {
            let dev = authenticated(state, device).await?;
            authorize(state, &dev, release_id).await?;
            let index: u32 = index.parse().map_err(|_| {
                Failure::new(
                    ResponseType::BadRequest,
                    format!("bad-index: payload index {index:?} is not a number"),
                )
            })?;
            let release = crate::api::release_found(state, release_id).await?;
            let p = release
                .payloads
                .iter()
                .find(|p| p.idx == index)
                .ok_or_else(|| ApiErr::not_found("payload", &index.to_string()))?;
            let (Some(key), Some(size), Some(sha)) = (&p.object_key, p.size, &p.sha256) else {
                return Err(ApiErr::not_found("uploaded payload", &p.uri).into());
            };
            serve_object(state, req, out, key, size, sha).await
        }
        (RequestType::Get, ["d", "deltas", delta_id]) => {
            let dev = authenticated(state, device).await?;
            let d = state
                .deltas
                .get(delta_id)
                .ok_or_else(|| ApiErr::not_found("delta", delta_id))?;
            authorize(state, &dev, &d.release_id).await?;
            serve_object(state, req, out, &d.object_key, d.size, &d.sha256).await
        }
        (_, [".well-known", "core"] | ["d", "checkin" | "reports" | "offer"])
        | (_, ["d", "releases", _, "envelope"] | ["d", "payloads", _, _] | ["d", "deltas", _]) => {
            Err(Failure::new(
                ResponseType::MethodNotAllowed,
                format!(
                    "method-not-allowed: {method:?} on /{}; GET /.well-known/core lists each resource's use (docs/coap.md)",
                    path.join("/")
                ),
            ))
        }
        _ => Err(Failure::new(
            ResponseType::NotFound,
            format!(
                "no-such-resource: no resource /{}; GET /.well-known/core lists them",
                crate::error::clip(&path.join("/"), 80)
            ),
        )),
    }
}

/// RFC 7252 §5.4.1: an unrecognized critical option (odd number) in a request is answered
/// 4.02; the proxy options 5.05 (§5.7.2: this is no proxy).
fn check_options(req: &Packet) -> Res<()> {
    for (number, values) in req.options() {
        match CoapOption::from(*number) {
            CoapOption::ProxyUri | CoapOption::ProxyScheme => {
                return Err(Failure::new(
                    ResponseType::ProxyingNotSupported,
                    "this server is no proxy (RFC 7252 §5.7.2)",
                ));
            }
            CoapOption::Block1 => {
                // A body in one block (block 0, no more) is an ordinary body.
                let whole = values
                    .front()
                    .and_then(|v| Block::parse(v).ok())
                    .is_some_and(|b| b.num == 0 && !b.more);
                if !whole {
                    return Err(Failure::new(
                        ResponseType::RequestEntityTooLarge,
                        format!(
                            "too-large: request bodies are sent whole (at most {MAX_BODY} bytes), not block-wise"
                        ),
                    ));
                }
            }
            CoapOption::Oscore => {
                return Err(Failure::new(
                    ResponseType::BadOption,
                    "bad-option: OSCORE is not supported; use coaps:// (DTLS 1.2 PSK)",
                ));
            }
            CoapOption::Unknown(n) if n % 2 == 1 => {
                return Err(Failure::new(
                    ResponseType::BadOption,
                    format!("bad-option: critical option {n} is not understood (RFC 7252 §5.4.1)"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn uint_of(v: &[u8]) -> u64 {
    v.iter().take(8).fold(0u64, |a, b| (a << 8) | u64::from(*b))
}

fn path_of(req: &Packet) -> Res<Vec<String>> {
    let Some(segs) = req.get_option(CoapOption::UriPath) else {
        return Ok(Vec::new());
    };
    segs.iter()
        .map(|s| {
            String::from_utf8(s.clone()).map_err(|_| {
                Failure::new(
                    ResponseType::BadRequest,
                    "bad-path: a Uri-Path segment is not UTF-8",
                )
            })
        })
        .collect()
}

/// The device its DTLS session authenticated, as the HTTP API's `DeviceAuth` resolves one:
/// through the credential cache, refused when decommissioned.
async fn authenticated(
    state: &AppState,
    device: Option<&(String, String)>,
) -> Res<Arc<DeviceEntry>> {
    // RFC 8240 §3: the device's credential identifies it, so the device resources are not
    // served without DTLS. RFC 7252 §11.3: on the plain listener (source addresses
    // unverified) the answer is kept no larger than a request, so it amplifies nothing.
    let Some((id, name)) = device else {
        return Err(Failure::new(ResponseType::Unauthorized, "coaps only"));
    };
    let entry = state.devices.by_name(state, name, false).await?;
    match entry {
        Some(e) if &e.id == id && !e.revoked() => Ok(e),
        Some(e) if &e.id == id => {
            Err(ApiErr::unauthorized("this device was decommissioned").into())
        }
        _ => Err(ApiErr::unauthorized("unknown device credentials").into()),
    }
}

/// Not 4.03: a device must not learn which releases exist for others (as the HTTP API).
async fn authorize(state: &AppState, dev: &DeviceEntry, release_id: &str) -> Res<()> {
    if state
        .db
        .device_offered(&dev.id, release_id)
        .await
        .map_err(ApiErr::from)?
    {
        Ok(())
    } else {
        Err(ApiErr::not_found("release", release_id).into())
    }
}

fn cbor_body<T: serde::de::DeserializeOwned>(req: &Packet) -> Res<T> {
    match req
        .get_first_option(CoapOption::ContentFormat)
        .map(|v| uint_of(v))
    {
        Some(n) if n == u64::from(CF_CBOR) => {}
        other => {
            return Err(Failure::new(
                ResponseType::UnsupportedContentFormat,
                format!(
                    "unsupported-content-format: the body must be CBOR (content-format 60), not {}",
                    other.map_or("unset".to_owned(), |n| n.to_string())
                ),
            ));
        }
    }
    if req.payload.len() > MAX_BODY {
        return Err(Failure::new(
            ResponseType::RequestEntityTooLarge,
            format!(
                "too-large: the body is {} bytes; at most {MAX_BODY}",
                req.payload.len()
            ),
        ));
    }
    ciborium::from_reader(req.payload.as_slice()).map_err(|e| {
        Failure::new(
            ResponseType::BadRequest,
            format!("bad-body: the CBOR body does not match: {e}"),
        )
    })
}

fn cbor_answer<T: serde::Serialize>(out: &mut Packet, code: ResponseType, v: &T) -> Res<()> {
    let mut buf = Vec::new();
    ciborium::into_writer(v, &mut buf)
        .map_err(|e| Failure::from(ApiErr::internal(format!("CBOR encoding: {e}"))))?;
    cbor_raw(out, code, buf);
    Ok(())
}

fn cbor_raw(out: &mut Packet, code: ResponseType, body: Vec<u8>) {
    out.header.code = MessageClass::Response(code);
    out.add_option(CoapOption::ContentFormat, uint(CF_CBOR.into()));
    out.payload = body;
}

/// A check-in: the HTTP API's decision (`device::check_in`), its offer with CoAP paths.
async fn checkin(state: &AppState, dev: &DeviceEntry, c: &CheckIn) -> Res<CheckInAnswer> {
    let now = state.now();
    let d = device::check_in(state, dev, c, now).await?;
    // The same statement as over HTTP (docs/trust.md, "Freshness"): CoAP devices get the
    // challenge/response too.
    let freshness = device::freshness_of(state, dev, c, d.offer.as_ref().map(|(r, ..)| &**r), now)?;
    let update = d.offer.map(|(r, rollback, consent)| {
        device::update_offer(state, c, &r, rollback, consent, coap_path)
    });
    Ok(CheckInAnswer {
        action: if update.is_some() {
            Action::Update
        } else {
            Action::None
        },
        next_poll_seconds: device::next_poll(state.config.poll_interval, d.retry_after),
        update,
        // Over CoAP the push is Observe on /d/offer (docs/coap.md), not MQTT.
        push: None,
        freshness,
    })
}

/// The HTTP device API's path of a download, as a CoAP path.
fn coap_path(http: &str) -> String {
    match http.strip_prefix(HTTP_PREFIX) {
        Some(rest) => format!("/d/{rest}"),
        None => http.to_owned(),
    }
}

/// The offer resource's representation: whether the device has an update to check in for
/// (it is in an open wave of a running campaign, or its update is under way or rolling
/// back), as CBOR `{"check_in": bool}`. Like the MQTT push it carries no more than "check in
/// now": the offer itself comes from the check-in, with the device's inventory.
pub(super) async fn offer_state(
    state: &AppState,
    device_id: &str,
    _name: &str,
) -> Result<Vec<u8>, ApiErr> {
    use crate::engine::MState;
    let member = state.db.member_live(device_id).await?;
    let mut due = member.as_ref().is_some_and(|m| {
        m.wave < m.opened_waves
            && match m.state {
                MState::Pending => m.campaign_state == suitcase_protocol::CampaignState::Running,
                MState::Notified | MState::InProgress | MState::RollingBack => true,
                _ => false,
            }
    });
    // RFC 8240 §9, docs/server.md §8: a quarantined device is offered only remediation
    // releases (quarantine::offerable, the rule of the HTTP check-in and the push), so it is
    // not told to check in for another.
    if due && let Some(m) = member.filter(|m| m.quarantined) {
        // The release the check-in would offer (engine::decide): a member rolling back is
        // offered the campaign's rollback release, every other member its release.
        let release = state.db.campaign_get(&m.campaign_id).await?.and_then(|c| {
            if m.state == MState::RollingBack {
                c.spec.rollback_release_id
            } else {
                Some(c.spec.release_id)
            }
        });
        due = match release {
            Some(r) => crate::quarantine::release_allowed(state, device_id, &r).await?,
            None => false,
        };
    }
    let mut buf = Vec::new();
    ciborium::into_writer(&serde_json::json!({ "check_in": due }), &mut buf)
        .map_err(|e| ApiErr::internal(format!("CBOR encoding: {e}")))?;
    Ok(buf)
}

/// RFC 7252 §5.10.6: an ETag is at most 8 bytes; the first 8 of the content's SHA-256.
fn etag_of(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes)
        .get(..8)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

fn etag_of_hex(sha256_hex: &str) -> Vec<u8> {
    hex::decode(sha256_hex.get(..16).unwrap_or("")).unwrap_or_default()
}

fn slice(bytes: &[u8], r: core::ops::Range<u64>) -> Vec<u8> {
    let (Ok(a), Ok(b)) = (usize::try_from(r.start), usize::try_from(r.end)) else {
        return Vec::new();
    };
    bytes.get(a..b).map(<[u8]>::to_vec).unwrap_or_default()
}

/// A stored object (payload or delta), one block at a time from the payload store.
async fn serve_object(
    state: &AppState,
    req: &Packet,
    out: &mut Packet,
    key: &str,
    size: u64,
    sha: &str,
) -> Res<()> {
    let etag = etag_of_hex(sha);
    send_blocks(req, out, size, &etag, CF_OCTETS, |r| async move {
        let len = r.end - r.start;
        metrics::counter!("suitcase_payload_bytes_total").increment(len);
        let mut stream = state.blobs.get_range(key, r).await.map_err(ApiErr::from)?;
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(ApiErr::from)?);
        }
        Ok(buf)
    })
    .await
}

/// Block-wise transfer (RFC 7959 §2): the block the client asks for in Block2 at its size
/// (§2.4: the server never answers with larger blocks than asked), any block in any order,
/// so a download resumes at any block; without Block2 the whole representation if it fits
/// in one block, else block 0 at [`PREFERRED_BLOCK`]. Each answer carries the ETag of the
/// whole representation (a client checks it did not change between blocks) and Size2
/// (§4: its total size).
async fn send_blocks<F, Fut>(
    req: &Packet,
    out: &mut Packet,
    total: u64,
    etag: &[u8],
    cf: u16,
    fetch: F,
) -> Res<()>
where
    F: FnOnce(core::ops::Range<u64>) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, ApiErr>>,
{
    let asked = match req.get_first_option(CoapOption::Block2) {
        Some(v) => Some(
            Block::parse(v)
                .map_err(|e| Failure::new(ResponseType::BadOption, format!("bad-block: {e}")))?,
        ),
        None => None,
    };
    let size = asked.map_or(PREFERRED_BLOCK, |b| b.size().min(PREFERRED_BLOCK));
    let num = asked.map_or(0, |b| b.num);
    let blocks = total.div_ceil(u64::from(size)).max(1);
    if blocks > u64::from(block::MAX_NUM) + 1 {
        return Err(Failure::new(
            ResponseType::BadRequest,
            format!(
                "too-many-blocks: {total} bytes in {size}-byte blocks are {blocks} blocks, more than RFC 7959's 20-bit block number allows; ask for larger blocks"
            ),
        ));
    }
    let whole = asked.is_none() && total <= u64::from(size);
    let (range, more) = block::slice(num, size, total).ok_or_else(|| {
        Failure::new(
            ResponseType::BadRequest,
            format!(
                "bad-block: block {num} of {size} bytes starts beyond the {total}-byte representation; the last block is {}",
                blocks - 1
            ),
        )
    })?;
    let body = fetch(range).await?;
    out.header.code = MessageClass::Response(ResponseType::Content);
    // RFC 7252 §5.10.6: an ETag is 1 to 8 bytes; without one (no digest known) none is sent.
    if !etag.is_empty() {
        out.add_option(CoapOption::ETag, etag.to_vec());
    }
    out.add_option(CoapOption::ContentFormat, uint(cf.into()));
    if !whole {
        let b = Block {
            num,
            more,
            szx: Block::szx_for(size),
        };
        out.add_option(CoapOption::Block2, b.encode());
        out.add_option(CoapOption::Size2, uint(total));
    }
    out.payload = body;
    Ok(())
}

/// An Observe notification (RFC 7641 §4.2), non-confirmable.
pub(super) fn notification(mid: u16, token: &[u8], seq: u32, repr: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::NonConfirmable);
    p.header.message_id = mid;
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.set_token(token.to_vec());
    p.add_option(CoapOption::Observe, uint(seq.into()));
    p.add_option(CoapOption::ContentFormat, uint(CF_CBOR.into()));
    p.add_option(CoapOption::MaxAge, uint(super::OBSERVE_REFRESH_S));
    p.payload = repr.to_vec();
    p
}

/// An empty message (RFC 7252 §4.1) of this type and id.
pub(super) fn empty(t: MessageType, mid: u16) -> Option<Vec<u8>> {
    let mut p = Packet::new();
    p.header.set_type(t);
    p.header.message_id = mid;
    p.header.code = MessageClass::Empty;
    p.to_bytes().ok()
}

/// A message that did not parse: a Reset if it was confirmable (RFC 7252 §4.2).
pub(super) fn reset_malformed(bytes: &[u8]) -> Option<Vec<u8>> {
    let (first, mid) = (bytes.first()?, bytes.get(2..4)?);
    if (first >> 6) != 1 || (first >> 4) & 0x3 != 0 {
        return None;
    }
    empty(MessageType::Reset, u16::from_be_bytes([mid[0], mid[1]]))
}

/// A datagram over [`super::MAX_MESSAGE`]: 4.13 with Size1 (RFC 7959 §2.9.3), to its token.
pub(super) fn too_large(bytes: &[u8]) -> Option<Vec<u8>> {
    let first = *bytes.first()?;
    let code = *bytes.get(1)?;
    let mid = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
    let tkl = usize::from(first & 0x0F);
    if (first >> 6) != 1 || tkl > 8 || code == 0 || code >= 0x20 {
        return None;
    }
    let token = bytes.get(4..4 + tkl)?;
    let mut p = Packet::new();
    if (first >> 4) & 0x3 == 0 {
        p.header.set_type(MessageType::Acknowledgement);
    } else {
        p.header.set_type(MessageType::NonConfirmable);
    }
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p.header.code = MessageClass::Response(ResponseType::RequestEntityTooLarge);
    p.add_option(CoapOption::Size1, uint(MAX_BODY as u64));
    p.payload = format!(
        "too-large: the message is over {} bytes; request bodies are at most {MAX_BODY} bytes, sent whole",
        super::MAX_MESSAGE
    )
    .into_bytes();
    p.to_bytes().ok()
}

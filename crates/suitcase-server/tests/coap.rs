//! The CoAP device API (docs/coap.md) driven over real UDP sockets: a small client on
//! coap-lite (plain) and dimpl (DTLS 1.2 PSK), and libcoap's real `coap-client` where it is
//! installed (Debian libcoap3-bin; `.ci/run` installs it, scripts/coap-test.sh also runs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    missing_docs,
    reason = "test code"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{Backend, Harness};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use suitcase_protocol::{CheckIn, CheckInAnswer, Outcome, Step, StepReport};
use tokio::net::UdpSocket;

async fn harness() -> Harness {
    Harness::with(Backend::Sqlite, |c| {
        c.coap_listen = Some("127.0.0.1:0".parse().unwrap());
        c.coaps_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

fn coap_addr(h: &Harness) -> SocketAddr {
    h.server.as_ref().unwrap().coap_addr.unwrap()
}

fn coaps_addr(h: &Harness) -> SocketAddr {
    h.server.as_ref().unwrap().coaps_addr.unwrap()
}

fn request(method: RequestType, path: &str, mid: u16) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    for seg in path.trim_start_matches('/').split('/') {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p
}

/// A POST of `body` as CBOR (content-format 60).
fn post_cbor<T: serde::Serialize>(path: &str, mid: u16, body: &T) -> Packet {
    let mut p = request(RequestType::Post, path, mid);
    p.add_option(CoapOption::ContentFormat, vec![60]);
    ciborium::into_writer(body, &mut p.payload).unwrap();
    p
}

/// A successful Receive step report on `release_id`.
fn received(release_id: String) -> StepReport {
    StepReport {
        release_id,
        step: Step::Receive,
        outcome: Outcome::Success,
        reason: None,
        detail: None,
        progress: None,
        started_at: None,
        log: None,
        suit_report: None,
        offline: false,
    }
}

fn block2(num: u32, szx: u8) -> Vec<u8> {
    let v = (num << 4) | u32::from(szx);
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

fn parse_block(v: &[u8]) -> (u32, bool, u8) {
    let v = v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
    (v >> 4, v & 8 != 0, (v & 7) as u8)
}

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn text(p: &Packet) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

/// Plain CoAP over UDP.
async fn plain(addr: SocketAddr, p: &Packet) -> Packet {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&p.to_bytes().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("no answer in 5 s")
        .unwrap();
    Packet::from_bytes(&buf[..n]).unwrap()
}

struct Key(Vec<u8>);

impl dimpl::PskResolver for Key {
    fn resolve(&self, _identity: &[u8]) -> Option<Vec<u8>> {
        Some(self.0.clone())
    }
}

/// A CoAP client over DTLS 1.2 PSK, recording every datagram both ways.
struct Coaps {
    sock: UdpSocket,
    dtls: dimpl::Dtls,
    wake: Option<Instant>,
    inbox: Vec<Vec<u8>>,
    wire: Vec<Vec<u8>>,
    connected: bool,
    mid: u16,
}

impl Coaps {
    async fn connect(addr: SocketAddr, identity: &str, key: &str) -> Result<Self, String> {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Self::connect_on(sock, addr, identity, key).await
    }

    /// A handshake from this socket (its address chosen by the test).
    async fn connect_on(
        sock: UdpSocket,
        addr: SocketAddr,
        identity: &str,
        key: &str,
    ) -> Result<Self, String> {
        sock.connect(addr).await.unwrap();
        let config = dimpl::Config::builder()
            .with_psk_client(
                identity.as_bytes().to_vec(),
                Arc::new(Key(key.as_bytes().to_vec())),
            )
            .build()
            .unwrap();
        let now = Instant::now();
        let mut dtls = dimpl::Dtls::new_12_psk(Arc::new(config), now);
        dtls.set_active(true);
        dtls.handle_timeout(now).map_err(|e| e.to_string())?;
        let mut c = Self {
            sock,
            dtls,
            wake: None,
            inbox: Vec::new(),
            wire: Vec::new(),
            connected: false,
            mid: 0x100,
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        while !c.connected {
            if Instant::now() > deadline {
                return Err("no DTLS handshake in 3 s".into());
            }
            c.pump(deadline).await?;
        }
        Ok(c)
    }

    async fn flush(&mut self) {
        let mut buf = vec![0u8; 4096];
        let mut out = Vec::new();
        loop {
            match self.dtls.poll_output(&mut buf) {
                dimpl::Output::Packet(p) => out.push(p.to_vec()),
                dimpl::Output::Timeout(t) => {
                    self.wake = Some(t);
                    break;
                }
                dimpl::Output::Connected => self.connected = true,
                dimpl::Output::ApplicationData(d) => self.inbox.push(d.to_vec()),
                dimpl::Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                _ => {}
            }
        }
        for p in out {
            self.wire.push(p.clone());
            let _ = self.sock.send(&p).await;
        }
    }

    /// One step: output, then one datagram or timer.
    async fn pump(&mut self, deadline: Instant) -> Result<(), String> {
        self.flush().await;
        let until = self
            .wake
            .unwrap_or(deadline)
            .min(deadline)
            .max(Instant::now());
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout_at(until.into(), self.sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                self.wire.push(buf[..n].to_vec());
                let r = self.dtls.handle_packet(&buf[..n]);
                // Once connected, a record that does not fit (the server's answer to a
                // spoofed ClientHello in the attack tests) is discarded, as the server does.
                if !self.connected {
                    r.map_err(|e| format!("DTLS: {e}"))?;
                }
            }
            Ok(Err(e)) => return Err(format!("recv: {e}")),
            Err(_) => self
                .dtls
                .handle_timeout(Instant::now())
                .map_err(|e| format!("DTLS: {e}"))?,
        }
        self.flush().await;
        Ok(())
    }

    async fn send(&mut self, p: &Packet) {
        self.dtls
            .send_application_data(&p.to_bytes_with_limit(4096).unwrap())
            .unwrap();
        self.flush().await;
    }

    /// The next CoAP message, within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = Instant::now() + wait;
        loop {
            if !self.inbox.is_empty() {
                let m = self.inbox.remove(0);
                return Some(Packet::from_bytes(&m).unwrap());
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.pump(deadline).await.unwrap();
        }
    }

    async fn call(&mut self, p: Packet) -> Packet {
        let token = (self.mid + 1).to_be_bytes().to_vec();
        self.call_as(p, token).await
    }

    /// Sends `p` with the next message id and `token`, and waits for the answer to it.
    async fn call_as(&mut self, mut p: Packet, token: Vec<u8>) -> Packet {
        self.mid += 1;
        p.header.message_id = self.mid;
        p.set_token(token);
        self.send(&p).await;
        loop {
            let m = self.next(Duration::from_secs(10)).await.expect("no answer");
            if m.get_token() == p.get_token() {
                return m;
            }
        }
    }

    async fn get(&mut self, path: &str) -> Packet {
        self.call(request(RequestType::Get, path, 0)).await
    }

    async fn post_cbor<T: serde::Serialize>(&mut self, path: &str, body: &T) -> Packet {
        self.call(post_cbor(path, 0, body)).await
    }
}

/// A device with a CoAP credential, and a release offered to it by a running campaign.
struct Setup {
    h: Harness,
    device_id: String,
    device_name: String,
    identity: String,
    key: String,
    image: Vec<u8>,
}

async fn setup(campaign: bool) -> Setup {
    let h = harness().await;
    let devices = h.devices("coap", 1, &["coap"]).await;
    let (device_id, _) = devices[0].clone();
    let device_name = "coap-0".to_owned();
    let cred = suitcase_server::coap_credential(
        &h.config,
        &device_name,
        suitcase_server::CoapKeyLength::Full,
    )
    .await
    .unwrap();
    let image: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let s = Setup {
        h,
        device_id,
        device_name,
        identity: cred.identity,
        key: cred.key,
        image,
    };
    if campaign {
        s.offer("coap").await;
    }
    s
}

impl Setup {
    /// A DTLS session with the device's credential.
    async fn connect(&self) -> Coaps {
        Coaps::connect(coaps_addr(&self.h), &self.identity, &self.key)
            .await
            .unwrap()
    }

    /// Uploads the image as a release and starts a campaign `name` offering it to the device.
    async fn offer(&self, name: &str) -> String {
        let release = self.h.release(2, &self.image).await;
        self.h
            .campaign(json!({"name": name, "release_id": release, "filter": {"tags": ["coap"]}}))
            .await;
        release
    }

    /// How many Receive steps the server holds for the device's update, and the device as
    /// the management API shows it.
    async fn receive_steps(&self) -> (usize, serde_json::Value) {
        let (st, v) = self
            .h
            .get(
                &self.h.admin,
                &format!("/api/v1/devices/{}", self.device_id),
            )
            .await;
        assert_eq!(st, reqwest::StatusCode::OK, "{v}");
        let steps = v["update"]["steps"].as_array().unwrap();
        (steps.iter().filter(|x| x["step"] == "receive").count(), v)
    }
}

async fn checkin(c: &mut Coaps, h: &Harness) -> CheckInAnswer {
    let r = c.post_cbor("/d/checkin", &h.inventory(1)).await;
    assert_eq!(code(&r), ResponseType::Changed, "{}", text(&r));
    ciborium::from_reader(r.payload.as_slice()).unwrap()
}

#[tokio::test]
async fn well_known_core_lists_the_resources() {
    let h = harness().await;
    let r = plain(
        coap_addr(&h),
        &request(RequestType::Get, "/.well-known/core", 1),
    )
    .await;
    assert_eq!(code(&r), ResponseType::Content);
    assert_eq!(r.header.get_type(), MessageType::Acknowledgement);
    let links = text(&r);
    for res in [
        "</d/checkin>",
        "</d/offer>",
        "</d/reports>",
        "</d/payloads>",
    ] {
        assert!(links.contains(res), "{links}");
    }
    assert!(links.contains("obs"), "the offer is observable: {links}");
    h.stop().await;
}

#[tokio::test]
async fn attack_unauthenticated_checkin_refused() {
    let s = setup(true).await;
    // Plain CoAP carries no credential: RFC 8240 §3, the device resources need DTLS.
    let p = post_cbor("/d/checkin", 2, &s.h.inventory(1));
    let r = plain(coap_addr(&s.h), &p).await;
    assert_eq!(code(&r), ResponseType::Unauthorized, "{}", text(&r));
    assert_eq!(text(&r), "coaps only");
    // RFC 7252 §11.3: no answer on the plain listener is larger than its request.
    let ask = request(RequestType::Get, "/d/payloads/x/0", 3);
    let r = plain(coap_addr(&s.h), &ask).await;
    assert_eq!(code(&r), ResponseType::Unauthorized);
    assert!(r.to_bytes().unwrap().len() <= ask.to_bytes().unwrap().len() + 2);
    let ask = request(RequestType::Get, "/no/such", 4);
    let r = plain(coap_addr(&s.h), &ask).await;
    assert!(text(&r).chars().count() <= 17, "{}", text(&r));
    s.h.stop().await;
}

#[tokio::test]
async fn attack_wrong_psk_or_forged_identity_fails_the_handshake() {
    let s = setup(false).await;
    let addr = coaps_addr(&s.h);
    assert!(
        Coaps::connect(addr, &s.identity, "not-the-key")
            .await
            .is_err()
    );
    // An identity of the device's id in clear, with the right key for that string.
    let forged = s.device_id.clone();
    assert!(Coaps::connect(addr, &forged, &s.key).await.is_err());
    // The real credential works.
    let mut c = Coaps::connect(addr, &s.identity, &s.key).await.unwrap();
    let a = checkin(&mut c, &s.h).await;
    assert!(a.update.is_none());
    s.h.stop().await;
}

#[tokio::test]
async fn attack_device_id_not_in_clear() {
    let s = setup(true).await;
    let mut c = s.connect().await;
    let a = checkin(&mut c, &s.h).await;
    assert!(a.update.is_some());
    // RFC 8240 §3: nothing on the wire names the device: not its id, not its name (the
    // credential's identity is sealed; everything after the handshake is encrypted).
    let wire: Vec<u8> = c.wire.concat();
    for needle in [
        s.device_id.as_bytes(),
        s.device_id.trim_start_matches("dev_").as_bytes(),
        &hex::decode(s.device_id.trim_start_matches("dev_")).unwrap(),
        s.device_name.as_bytes(),
    ] {
        assert!(
            !wire.windows(needle.len()).any(|w| w == needle),
            "{:?} appears on the wire",
            String::from_utf8_lossy(needle)
        );
    }
    assert!(
        wire.windows(s.identity.len())
            .any(|w| w == s.identity.as_bytes())
    );
    s.h.stop().await;
}

#[tokio::test]
async fn blockwise_download_at_every_size_and_resumed_from_any_block() {
    let s = setup(true).await;
    let mut c = s.connect().await;
    let a = checkin(&mut c, &s.h).await;
    let offer = a.update.unwrap();
    let url = offer.payloads[0].url.clone();
    assert!(url.starts_with("/d/payloads/"), "{url}");
    let want = Sha256::digest(&s.image);
    let mut etags = Vec::new();
    for szx in [6u8, 2] {
        let size = 16usize << szx;
        let blocks = s.image.len().div_ceil(size) as u32;
        // Resume: start in the middle, then go back for the beginning.
        let order: Vec<u32> = (blocks / 2..blocks).chain(0..blocks / 2).collect();
        let mut got = vec![0u8; s.image.len()];
        for num in order {
            let mut p = request(RequestType::Get, &url, 0);
            p.add_option(CoapOption::Block2, block2(num, szx));
            let r = c.call(p).await;
            assert_eq!(code(&r), ResponseType::Content, "{}", text(&r));
            let (n, more, z) = parse_block(r.get_first_option(CoapOption::Block2).unwrap());
            assert_eq!((n, z), (num, szx));
            assert_eq!(more, num + 1 < blocks);
            let at = num as usize * size;
            got[at..at + r.payload.len()].copy_from_slice(&r.payload);
            etags.push(r.get_first_option(CoapOption::ETag).unwrap().clone());
        }
        assert_eq!(Sha256::digest(&got), want, "block size {size}");
    }
    etags.dedup();
    assert_eq!(etags.len(), 1, "one ETag for the whole payload");
    // The envelope too.
    let r = c.get(&offer.manifest_url).await;
    assert_eq!(code(&r), ResponseType::Content, "{}", text(&r));
    s.h.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let s = setup(true).await;
    let mut c = s.connect().await;
    let offer = checkin(&mut c, &s.h).await.update.unwrap();
    let url = offer.payloads[0].url.clone();
    // A block beyond the end.
    let mut p = request(RequestType::Get, &url, 0);
    p.add_option(CoapOption::Block2, block2(5000, 6));
    let r = c.call(p).await;
    assert_eq!(code(&r), ResponseType::BadRequest);
    assert!(text(&r).contains("the last block is 68"), "{}", text(&r));
    // A block number beyond coap-lite's u16 (RFC 7959 allows 20 bits): an answer, no panic.
    let mut p = request(RequestType::Get, &url, 0);
    p.add_option(CoapOption::Block2, block2(1_000_000, 0));
    let r = c.call(p).await;
    assert_eq!(code(&r), ResponseType::BadRequest, "{}", text(&r));
    // The reserved size exponent 7.
    let mut p = request(RequestType::Get, &url, 0);
    p.add_option(CoapOption::Block2, vec![0x07]);
    let r = c.call(p).await;
    assert_eq!(code(&r), ResponseType::BadOption);
    assert!(text(&r).contains("reserves"), "{}", text(&r));
    // Unknown paths and methods.
    let r = c.get("/d/nothing").await;
    assert_eq!(code(&r), ResponseType::NotFound);
    assert!(text(&r).contains("/.well-known/core"));
    let r = c.call(request(RequestType::Delete, "/d/checkin", 0)).await;
    assert_eq!(code(&r), ResponseType::MethodNotAllowed);
    // A body that is not CBOR, and one of the wrong content-format.
    let mut p = request(RequestType::Post, "/d/checkin", 0);
    p.add_option(CoapOption::ContentFormat, vec![60]);
    p.payload = b"\xff\xff".to_vec();
    let r = c.call(p).await;
    assert_eq!(code(&r), ResponseType::BadRequest);
    assert!(text(&r).contains("CBOR"), "{}", text(&r));
    let mut p = request(RequestType::Post, "/d/checkin", 0);
    p.payload = b"{}".to_vec();
    let r = c.call(p).await;
    assert_eq!(code(&r), ResponseType::UnsupportedContentFormat);
    // An oversized request.
    let mut p = request(RequestType::Post, "/d/reports", 0);
    p.add_option(CoapOption::ContentFormat, vec![60]);
    p.payload = vec![0x40; 1400];
    let r = c.call(p).await;
    assert_eq!(
        code(&r),
        ResponseType::RequestEntityTooLarge,
        "{}",
        text(&r)
    );
    // An unknown critical option.
    let mut p = request(RequestType::Get, "/d/offer", 0);
    p.add_option(CoapOption::Unknown(65001), vec![1]);
    let r = c.call(p).await;
    assert_eq!(code(&r), ResponseType::BadOption);
    // A release never offered to this device: not found, as over HTTP.
    let r = c.get("/d/payloads/rel_nope/0").await;
    assert_eq!(code(&r), ResponseType::NotFound);
    s.h.stop().await;
}

#[tokio::test]
async fn reports_are_stored_once_when_resent() {
    let s = setup(true).await;
    let mut c = s.connect().await;
    let offer = checkin(&mut c, &s.h).await.update.unwrap();
    let report = received(offer.release_id.clone());
    let p = post_cbor("/d/reports", 0x777, &report);
    // The same message id twice: a retransmission (RFC 7252 §4.5).
    c.send(&p).await;
    let a = c.next(Duration::from_secs(10)).await.unwrap();
    c.send(&p).await;
    let b = c.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(code(&a), ResponseType::Changed, "{}", text(&a));
    assert_eq!(a, b);
    let (receives, v) = s.receive_steps().await;
    assert_eq!(receives, 1, "{v}");
    // A report on a release never offered: 4.09, as 409 over HTTP.
    let mut bad = report.clone();
    bad.release_id = "rel_other".into();
    let r = c.post_cbor("/d/reports", &bad).await;
    assert_eq!(code(&r), ResponseType::Conflict, "{}", text(&r));
    s.h.stop().await;
}

#[tokio::test]
async fn observe_notifies_when_a_campaign_offers() {
    let s = setup(false).await;
    let mut c = s.connect().await;
    let mut p = request(RequestType::Get, "/d/offer", 0x500);
    p.add_option(CoapOption::Observe, vec![]);
    c.send(&p).await;
    let first = c.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(code(&first), ResponseType::Content);
    assert!(
        first.get_first_option(CoapOption::Observe).is_some(),
        "registered"
    );
    let v: serde_json::Value = ciborium::from_reader(first.payload.as_slice()).unwrap();
    assert_eq!(v["check_in"], false);
    s.offer("obs").await;
    let n = c
        .next(Duration::from_secs(10))
        .await
        .expect("a notification after the campaign started");
    assert_eq!(n.get_token(), p.get_token());
    let v: serde_json::Value = ciborium::from_reader(n.payload.as_slice()).unwrap();
    assert_eq!(v["check_in"], true);
    let seq = |m: &Packet| {
        m.get_first_option(CoapOption::Observe)
            .unwrap()
            .iter()
            .fold(0u32, |a, b| (a << 8) | u32::from(*b))
    };
    assert!(seq(&n) > seq(&first));
    // RFC 7252 §5.10.5, RFC 7641 §3.3.1: Max-Age 300 on the answer and the notification, so
    // the client registers again within the session's 600 s idle limit.
    for m in [&first, &n] {
        assert_eq!(
            m.get_first_option(CoapOption::MaxAge).map(Vec::as_slice),
            Some(&300u16.to_be_bytes()[..])
        );
    }
    // The check-in the notification asks for gets the offer.
    assert!(checkin(&mut c, &s.h).await.update.is_some());
    s.h.stop().await;
}

#[tokio::test]
async fn observers_are_bounded_per_device() {
    let s = setup(false).await;
    let mut c = s.connect().await;
    let mut registered = 0;
    for i in 0..4u16 {
        let mut p = request(RequestType::Get, "/d/offer", 0x600 + i);
        p.add_option(CoapOption::Observe, vec![]);
        let r = c.call(p).await;
        assert_eq!(code(&r), ResponseType::Content);
        registered += usize::from(r.get_first_option(CoapOption::Observe).is_some());
    }
    // RFC 7641 §4.1: over the bound, an answer without Observe (not registered).
    assert_eq!(registered, 2);
    s.h.stop().await;
}

/// libcoap's coap-client (Debian libcoap3-bin), if installed: the real client fetches the
/// payload block-wise over DTLS PSK, byte for byte.
#[tokio::test]
async fn libcoap_client_fetches_a_payload_blockwise() {
    let Some(client) = ["coap-client-openssl", "coap-client-gnutls", "coap-client"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("-h").output().is_ok())
    else {
        // CI sets SUITCASE_REQUIRE_COAP_CLIENT after installing it: there, missing fails.
        assert!(
            std::env::var_os("SUITCASE_REQUIRE_COAP_CLIENT").is_none(),
            "coap-client (Debian libcoap3-bin) is required but not installed"
        );
        eprintln!("skipped: coap-client (Debian libcoap3-bin) is not installed");
        return;
    };
    let s = setup(true).await;
    let mut c = s.connect().await;
    let offer = checkin(&mut c, &s.h).await.update.unwrap();
    let out = s.h.dir.path().join("payload.bin");
    let uri = format!("coaps://{}{}", coaps_addr(&s.h), offer.payloads[0].url);
    let (identity, key, out2) = (s.identity.clone(), s.key.clone(), out.clone());
    // coap-client's own -B bounds its wait (seconds).
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(client)
            .args([
                "-m", "get", "-B", "60", "-b", "256", "-u", &identity, "-k", &key, "-o",
            ])
            .arg(&out2)
            .arg(&uri)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = std::fs::read(&out).unwrap();
    assert_eq!(Sha256::digest(&got), Sha256::digest(&s.image));
    s.h.stop().await;
}

/// RFC 7641 §3.6: a GET with Observe 1, or a Reset to a notification, ends an observation (its
/// place under the per-device bound is free again).
#[tokio::test]
async fn observers_deregister_on_cancel_and_reset() {
    let s = setup(false).await;
    let mut c = s.connect().await;
    let register = async |c: &mut Coaps, token: u16, value: Vec<u8>| {
        let mut p = request(RequestType::Get, "/d/offer", 0);
        p.add_option(CoapOption::Observe, value);
        let m = c.call_as(p, token.to_be_bytes().to_vec()).await;
        m.get_first_option(CoapOption::Observe).is_some()
    };
    assert!(register(&mut c, 0xA, vec![]).await);
    assert!(register(&mut c, 0xB, vec![]).await);
    assert!(!register(&mut c, 0xC, vec![]).await, "over the bound");
    // Cancel A (Observe 1): C fits.
    assert!(!register(&mut c, 0xA, vec![1]).await);
    assert!(register(&mut c, 0xC, vec![]).await);
    // A campaign: B and C are notified; a Reset to B's notification ends B.
    s.offer("rst").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let n = c
            .next(Duration::from_secs(10))
            .await
            .expect("notifications");
        assert_eq!(n.header.get_type(), MessageType::NonConfirmable);
        seen.push(n);
    }
    let b = seen
        .iter()
        .find(|n| n.get_token() == 0xBu16.to_be_bytes())
        .expect("B notified");
    let mut rst = Packet::new();
    rst.header.set_type(MessageType::Reset);
    rst.header.message_id = b.header.message_id;
    c.send(&rst).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(register(&mut c, 0xD, vec![]).await, "B's place is free");
    s.h.stop().await;
}

/// RFC 7252 §9.1: message ids are matched within a DTLS session. A new session from the same
/// address and port (the device again, or another device behind the same NAT) that reuses a
/// message id gets its own answer, never the one kept for the old session.
#[tokio::test]
async fn attack_new_session_from_same_address_gets_no_old_answer() {
    let s = setup(true).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let mut c1 = Coaps::connect_on(sock, coaps_addr(&s.h), &s.identity, &s.key)
        .await
        .unwrap();
    let mut p = request(RequestType::Get, "/.well-known/core", 0x4242);
    p.set_token(b"first".to_vec());
    c1.send(&p).await;
    let a = c1.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(a.get_token(), b"first");
    drop(c1);
    // The same address and port, a new session, the same message id.
    let sock = UdpSocket::bind(local).await.unwrap();
    let mut c2 = Coaps::connect_on(sock, coaps_addr(&s.h), &s.identity, &s.key)
        .await
        .unwrap();
    let report = received(checkin(&mut c2, &s.h).await.update.unwrap().release_id);
    let mut p = post_cbor("/d/reports", 0x4242, &report);
    p.set_token(b"second".to_vec());
    c2.send(&p).await;
    let b = c2.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        b.get_token(),
        b"second",
        "the old session's answer was replayed"
    );
    assert_eq!(code(&b), ResponseType::Changed, "{}", text(&b));
    let (receives, v) = s.receive_steps().await;
    assert_eq!(receives, 1, "the report was not stored: {v}");
    s.h.stop().await;
}

/// RFC 6347 §4.1.2.7: invalid records are discarded. Junk, a forged record of the session's
/// epoch and plaintext ClientHellos with message_seq ahead of the session's, all from the
/// device's own address, leave its session working (dimpl 0.9 itself discards these on a
/// connected session; the server would keep the session on any error it returned, and a
/// ClientHello starts a handshake beside the session rather than reaching it).
#[tokio::test]
async fn attack_spoofed_records_do_not_end_a_session() {
    let s = setup(false).await;
    let mut c = s.connect().await;
    assert_eq!(code(&c.get("/d/offer").await), ResponseType::Content);
    let hello = c.wire[0].clone();
    assert!(hello.len() > 20 && hello[0] == 22 && hello[13] == 1);
    let mut forged = vec![23, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 99, 0, 24];
    forged.extend_from_slice(&[0xAB; 24]);
    let mut junks = vec![b"junk".to_vec(), vec![0u8; 13], forged];
    // Plaintext ClientHellos with message_seq (handshake header bytes 4..6) ahead of the
    // session's.
    for seq in [1u16, 2, 3, 4, 5, 6, 7, 8, 16, 0x7FFF] {
        let mut h = hello.clone();
        h[17..19].copy_from_slice(&seq.to_be_bytes());
        junks.push(h);
    }
    for junk in junks {
        c.sock.send(&junk).await.unwrap();
        c.pump(Instant::now() + Duration::from_millis(200))
            .await
            .unwrap();
    }
    let r = c.get("/d/offer").await;
    assert_eq!(code(&r), ResponseType::Content, "{}", text(&r));
    s.h.stop().await;
}

/// A flood of ClientHellos from many source ports (four times the handshake limit) fills only
/// the handshakes' own map: the connected device's session survives, and a new handshake
/// still completes (the oldest junk handshake makes room for it).
#[tokio::test]
async fn attack_client_hello_flood_does_not_evict_connected_sessions() {
    let s = setup(false).await;
    let server = coaps_addr(&s.h);
    let mut c = s.connect().await;
    assert_eq!(code(&c.get("/d/offer").await), ResponseType::Content);
    let hello = c.wire[0].clone();
    // Every socket kept open, so that each ClientHello comes from its own port; each batch
    // waits for the server's answers (HelloVerifyRequests), so that none is lost to a full
    // receive buffer.
    let mut socks = Vec::new();
    for _ in 0..10 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            sock.send_to(&hello, server).await.unwrap();
            batch.push(sock);
        }
        for sock in &batch {
            let mut buf = [0u8; 512];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await;
        }
        socks.push(batch);
    }
    drop(socks);
    let r = c.get("/d/offer").await;
    assert_eq!(code(&r), ResponseType::Content, "{}", text(&r));
    let mut again = s.connect().await;
    assert_eq!(code(&again.get("/d/offer").await), ResponseType::Content);
    s.h.stop().await;
}

/// RFC 8240 §9 (docs/server.md §8): a quarantined device in a campaign's open wave is not
/// told to check in for a release that is not remediation; once the release is marked
/// remediation, it is.
#[tokio::test]
async fn attack_quarantined_device_not_told_to_check_in() {
    let s = setup(false).await;
    let (st, v) =
        s.h.post(
            &s.h.admin,
            &format!("/api/v1/devices/{}/quarantine", s.device_id),
            &json!({"reason": "test"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let release = s.offer("coap").await;
    let mut c = s.connect().await;
    let offer =
        |p: &Packet| -> serde_json::Value { ciborium::from_reader(p.payload.as_slice()).unwrap() };
    let r = c.get("/d/offer").await;
    assert_eq!(code(&r), ResponseType::Content, "{}", text(&r));
    assert_eq!(offer(&r), json!({"check_in": false}));
    s.h.mark_remediation(&release).await;
    let r = c.get("/d/offer").await;
    assert_eq!(offer(&r), json!({"check_in": true}));
    s.h.stop().await;
}

/// RFC 8240 §9 (docs/server.md §8): a quarantined member rolling back is judged on the
/// release the check-in would offer it, the campaign's rollback release (engine::decide),
/// not on the campaign's release: told to check in once the rollback release is remediation.
#[tokio::test]
async fn quarantined_member_rolling_back_is_judged_on_the_rollback_release() {
    let s = setup(false).await;
    let release = s.h.release(2, &s.image).await;
    let back = s.h.release(3, &s.image).await;
    let campaign =
        s.h.campaign(json!({"name": "coap-rb", "release_id": release,
                         "rollback_release_id": back, "filter": {"tags": ["coap"]}}))
            .await;
    let mut c = s.connect().await;
    let answer = checkin(&mut c, &s.h).await;
    assert!(
        answer.update.is_some(),
        "the device is offered the release first"
    );
    let (st, v) =
        s.h.post(
            &s.h.admin,
            &format!("/api/v1/devices/{}/quarantine", s.device_id),
            &json!({"reason": "test"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let (st, v) =
        s.h.post(
            &s.h.admin,
            &format!("/api/v1/campaigns/{campaign}/rollback"),
            &json!({}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let offer =
        |p: &Packet| -> serde_json::Value { ciborium::from_reader(p.payload.as_slice()).unwrap() };
    assert_eq!(offer(&c.get("/d/offer").await), json!({"check_in": false}));
    s.h.mark_remediation(&back).await;
    assert_eq!(offer(&c.get("/d/offer").await), json!({"check_in": true}));
    s.h.stop().await;
}

/// Freshness over CoAP (docs/trust.md, "Freshness"): a check-in with a nonce gets the same
/// statement as over HTTP, signed with DATA/freshness-key, binding the nonce, the device's
/// name and the offer; it verifies under a trust state listing that key and refuses another
/// device's name (mix-and-match) and another nonce (a replay). A nonce outside 8 to 32 bytes
/// is a bad request.
#[tokio::test]
async fn checkin_nonce_gets_a_freshness_statement() {
    let s = setup(true).await;
    let mut c = s.connect().await;
    let nonce = vec![0x42u8; 16];
    let body = CheckIn {
        nonce: Some(nonce.clone()),
        ..s.h.inventory(1)
    };
    let r = c.post_cbor("/d/checkin", &body).await;
    assert_eq!(code(&r), ResponseType::Changed, "{}", text(&r));
    let answer: CheckInAnswer = ciborium::from_reader(r.payload.as_slice()).unwrap();
    let statement = answer.freshness.expect("a statement for the nonce");
    let offer = answer.update.unwrap();

    let (pem, _) = suitcase_server::freshness_public_key(&s.h.config.data_dir).unwrap();
    let suitcase_host::keys::PublicKey::Ed25519(vk) =
        suitcase_host::keys::parse_public(std::path::Path::new("freshness.pub"), pem.as_bytes())
            .unwrap()
    else {
        panic!("the freshness key is Ed25519");
    };
    let ed = suitcase_trust::KeyKind::Ed25519;
    let root = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    let mut trust = suitcase_trust::TrustState::genesis(
        &[suitcase_trust::Key::new(ed, root.as_bytes()).unwrap()],
        1,
    )
    .unwrap();
    trust
        .add_freshness_signer(suitcase_trust::Key::new(ed, vk.as_bytes()).unwrap())
        .unwrap();
    let f = trust
        .verify_freshness(&statement, &nonce, &s.device_name)
        .unwrap();
    assert_eq!(f.check_sequence(Some(offer.sequence_number)), Ok(()));
    assert!(
        trust
            .verify_freshness(&statement, &nonce, "coap-other")
            .is_err()
    );
    assert!(
        trust
            .verify_freshness(&statement, &[0x43; 16], &s.device_name)
            .is_err()
    );

    let short = CheckIn {
        nonce: Some(vec![1; 7]),
        ..s.h.inventory(1)
    };
    let r = c.post_cbor("/d/checkin", &short).await;
    assert_eq!(code(&r), ResponseType::BadRequest, "{}", text(&r));
    s.h.stop().await;
}

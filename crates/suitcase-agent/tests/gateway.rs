//! Gateway mode (docs/gateway.md) end to end: a real `suitcase server`, the gateway of
//! `suitcase_agent::gateway` on pseudo-terminals, and simulated sub-devices on the other
//! side of each pty speaking CoAP in SLIP frames with an FCS. The server is stopped and
//! started again in the middle: the cached release is still served, the reports wait on the
//! gateway's disk and reach the server's timeline after, each once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "test code"
)]

mod common;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::proxy::{Proxy, Stats};
use common::{ALL_STEPS, Device, Fleet, image, server_steps, wait_campaign};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use suitcase_agent::Config;
use suitcase_agent::gateway::{Gateway, slip};
use suitcase_protocol::CheckInAnswer;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::unix::pipe;

/// The sub-device's side of a pty: a CoAP client speaking the gateway's framing.
struct SubDevice {
    rx: Box<dyn AsyncRead + Unpin + Send>,
    tx: Box<dyn AsyncWrite + Unpin + Send>,
    decoder: Box<slip::Decoder<1290>>,
    mid: u16,
    /// The pty's terminal side, held open so the line stays up (and raw) between the
    /// gateway's opens.
    _slave: Option<OwnedFd>,
    path: PathBuf,
}

impl SubDevice {
    fn new() -> Self {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let path = PathBuf::from(ptsname(&master, Vec::new()).unwrap().into_string().unwrap());
        let slave = rustix::fs::open(
            &path,
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let mut t = rustix::termios::tcgetattr(&slave).unwrap();
        t.make_raw();
        rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &t).unwrap();
        rustix::io::ioctl_fionbio(&master, true).unwrap();
        let write = rustix::io::fcntl_dupfd_cloexec(&master, 0).unwrap();
        Self {
            rx: Box::new(pipe::Receiver::from_owned_fd_unchecked(master).unwrap()),
            tx: Box::new(pipe::Sender::from_owned_fd_unchecked(write).unwrap()),
            decoder: Box::new(slip::Decoder::new()),
            mid: 0x1000,
            _slave: Some(slave),
            path,
        }
    }

    /// A sub-device on the gateway's UNIX socket at `path` (as QEMU's `-serial unix:PATH`).
    async fn socket(path: PathBuf) -> Self {
        for _ in 0..100 {
            if let Ok(stream) = tokio::net::UnixStream::connect(&path).await {
                let (rx, tx) = stream.into_split();
                return Self {
                    rx: Box::new(rx),
                    tx: Box::new(tx),
                    decoder: Box::new(slip::Decoder::new()),
                    mid: 0x7000,
                    _slave: None,
                    path,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the gateway never listened on {}", path.display());
    }

    async fn send_raw(&mut self, p: &Packet) {
        let bytes = p.to_bytes().unwrap();
        let mut out = vec![0u8; slip::encoded_max(bytes.len())];
        let n = slip::encode(&bytes, &mut out).unwrap();
        self.tx.write_all(&out[..n]).await.unwrap();
    }

    /// The next answer with message id `mid` (10 s at most).
    async fn answer(&mut self, mid: u16) -> Packet {
        let mut buf = [0u8; 256];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n = tokio::time::timeout_at(deadline, self.rx.read(&mut buf))
                .await
                .expect("the gateway answers within 10 s")
                .unwrap();
            for b in &buf[..n] {
                if let Some(Ok(m)) = self.decoder.push(*b) {
                    let p = Packet::from_bytes(m).unwrap();
                    if p.header.message_id == mid {
                        return p;
                    }
                }
            }
        }
    }

    fn request(&mut self, method: RequestType, path: &str, body: Option<Vec<u8>>) -> Packet {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        self.mid = self.mid.wrapping_add(1);
        p.header.message_id = self.mid;
        p.header.code = MessageClass::Request(method);
        p.set_token(self.mid.to_be_bytes().to_vec());
        for seg in path.trim_start_matches('/').split('/') {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        if let Some(b) = body {
            p.add_option(CoapOption::ContentFormat, vec![60]);
            p.payload = b;
        }
        p
    }

    async fn call(&mut self, p: &Packet) -> Packet {
        self.send_raw(p).await;
        self.answer(p.header.message_id).await
    }

    /// A request, asked again (new message id) while the gateway answers 5.03 with Max-Age.
    async fn call_patiently(
        &mut self,
        method: RequestType,
        path: &str,
        body: Option<Vec<u8>>,
        block2: Option<Vec<u8>>,
    ) -> Packet {
        for _ in 0..100 {
            let mut p = self.request(method, path, body.clone());
            if let Some(b) = &block2 {
                p.add_option(CoapOption::Block2, b.clone());
            }
            let a = self.call(&p).await;
            if a.header.code != MessageClass::Response(ResponseType::ServiceUnavailable) {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{path}: 5.03 for 20 s");
    }

    async fn checkin(&mut self, fleet: &Fleet) -> Packet {
        let body = cbor(&json!({
            "vendor_id": suitcase_host::uuid::to_string(&fleet.vendor),
            "class_id": suitcase_host::uuid::to_string(&fleet.class),
            "components": [],
        }));
        self.call_patiently(RequestType::Post, "/d/checkin", Some(body), None)
            .await
    }

    /// Downloads `path` in 256-byte blocks (Block2, RFC 7959), checking Size2 and the ETag.
    async fn download(&mut self, path: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut etag = None;
        for num in 0u32..10_000 {
            let a = self
                .call_patiently(RequestType::Get, path, None, Some(block2(num, false, 4)))
                .await;
            assert_eq!(
                a.header.code,
                MessageClass::Response(ResponseType::Content),
                "{path} block {num}: {}",
                diag(&a)
            );
            let tag = a.get_first_option(CoapOption::ETag).cloned();
            assert!(tag.is_some());
            if etag.is_none() {
                etag = tag.clone();
            }
            assert_eq!(etag, tag, "one ETag for every block");
            let b = uint(a.get_first_option(CoapOption::Block2).unwrap());
            assert_eq!(b >> 4, u64::from(num));
            out.extend_from_slice(&a.payload);
            if b & 8 == 0 {
                assert_eq!(
                    uint(a.get_first_option(CoapOption::Size2).unwrap()),
                    out.len() as u64
                );
                return out;
            }
        }
        panic!("{path}: more than 10,000 blocks");
    }

    fn report_packet(&mut self, release: &str, step: &str) -> Packet {
        let body = cbor(&json!({"release_id": release, "step": step, "outcome": "success"}));
        self.request(RequestType::Post, "/d/reports", Some(body))
    }

    async fn report_all(&mut self, release: &str) {
        self.report_steps(release, &ALL_STEPS).await;
    }

    async fn report_steps(&mut self, release: &str, steps: &[&str]) {
        for step in steps {
            let p = self.report_packet(release, step);
            let a = self.call(&p).await;
            assert_eq!(
                a.header.code,
                MessageClass::Response(ResponseType::Changed),
                "{step}: {}",
                diag(&a)
            );
        }
    }
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut b = Vec::new();
    ciborium::into_writer(v, &mut b).unwrap();
    b
}

fn uint(v: &[u8]) -> u64 {
    v.iter().fold(0, |a, b| (a << 8) | u64::from(*b))
}

fn block2(num: u32, more: bool, szx: u8) -> Vec<u8> {
    let v = (num << 4) | (u32::from(more) << 3) | u32::from(szx);
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

fn diag(p: &Packet) -> String {
    format!(
        "{:?} {}",
        p.header.code,
        String::from_utf8_lossy(&p.payload)
    )
}

fn offer(a: &Packet) -> CheckInAnswer {
    assert_eq!(
        a.header.code,
        MessageClass::Response(ResponseType::Changed),
        "{}",
        diag(a)
    );
    ciborium::from_reader(a.payload.as_slice()).unwrap()
}

/// The gateway device: an agent configuration with a `[gateway]` section for `subs`.
async fn gateway_config(fleet: &Fleet, subs: &[(&str, &str, &PathBuf)]) -> Config {
    gateway_config_via(fleet, subs, None).await
}

/// As [`gateway_config`], the gateway reaching the server at `base` (a proxy).
async fn gateway_config_via(
    fleet: &Fleet,
    subs: &[(&str, &str, &PathBuf)],
    base: Option<String>,
) -> Config {
    let mut dev = Device::new(fleet, "gateway").await;
    dev.base = base;
    let mut extra = String::from(
        "[gateway]\nretry_min_seconds = 0.2\nretry_max_seconds = 0.5\ncache_bytes = 16777216\n",
    );
    for (id, token, path) in subs {
        extra.push_str(&format!(
            "[[gateway.subdevice]]\nid = \"{id}\"\nserial = \"{}\"\ntoken = \"{token}\"\n",
            path.display()
        ));
    }
    dev.extra = extra;
    dev.config(fleet)
}

async fn restart(fleet: &mut Fleet, addr: std::net::SocketAddr) {
    let mut config = suitcase_server::Config::new(fleet.dir.path().join("data"));
    config.listen = addr;
    config.poll_interval = 3600;
    config.flush_interval = Duration::from_millis(50);
    let mut last = None;
    for _ in 0..50 {
        match suitcase_server::start(config.clone()).await {
            Ok((server, _)) => {
                fleet.server = Some(server);
                return;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server does not start again: {last:?}");
}

/// The tests that make the server store reports run one at a time: the counter
/// `reports_stored` reads is the process's, shared by every server a test starts.
static REPORTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Step reports the server stored, per step (its Prometheus counter).
async fn reports_stored(fleet: &Fleet) -> std::collections::HashMap<String, i64> {
    let mut out = std::collections::HashMap::new();
    for line in fleet.metrics().await.lines() {
        let Some(rest) = line.strip_prefix("suitcase_reports_total{") else {
            continue;
        };
        let step = rest
            .split("step=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        let n: f64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry(step.to_owned()).or_insert(0) += n as i64;
    }
    out
}

async fn wait_drained(gw: &Gateway) {
    for _ in 0..200 {
        if gw.queued_reports() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} reports still queued after 20 s", gw.queued_reports());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_serves_a_cached_release_while_the_server_is_down_and_syncs_every_report_once() {
    let _one_at_a_time = REPORTING.lock().await;
    let mut fleet = Fleet::new().await;
    let payload = image(7, 5000);
    let built = fleet.build(&fleet.request(2, vec![fleet.app(&payload, 2)]));
    let release = fleet.upload(&built).await;
    let (id1, token1) = fleet.device("sub-1").await;
    let (id2, token2) = fleet.device("sub-2").await;
    let campaign = fleet.campaign(&release, &[&id1, &id2], json!({})).await;

    let mut s1 = SubDevice::new();
    let mut s2 = SubDevice::new();
    let config = gateway_config(
        &fleet,
        &[("sub-1", &token1, &s1.path), ("sub-2", &token2, &s2.path)],
    )
    .await;
    let gw = Gateway::open(&config, config.gateway.as_ref().unwrap()).unwrap();
    let task = tokio::spawn(Arc::clone(&gw).run());

    // Sub-device 1, online: check in, download block-wise, report every step.
    let a = offer(&s1.checkin(&fleet).await);
    let u = a.update.expect("an offer");
    assert_eq!(u.release_id, release);
    assert_eq!(u.manifest_url, format!("/d/releases/{release}/envelope"));
    assert_eq!(u.payloads[0].url, format!("/d/payloads/{release}/0"));
    let envelope = s1.download(&u.manifest_url).await;
    assert_eq!(Sha256::digest(&envelope), Sha256::digest(&built.envelope));
    let got = s1.download(&u.payloads[0].url).await;
    assert_eq!(hex::encode(Sha256::digest(&got)), u.payloads[0].sha256);
    assert_eq!(Sha256::digest(&got), Sha256::digest(&payload));
    s1.report_all(&release).await;
    wait_drained(&gw).await;
    assert_eq!(
        server_steps(&fleet.device_info(&id1).await).len(),
        ALL_STEPS.len()
    );

    // attack_download_not_offered_to_this_subdevice: sub-device 2 has not checked in; the
    // cached payload is not served to it.
    let p = s2.request(RequestType::Get, &u.payloads[0].url, None);
    let a = s2.call(&p).await;
    assert_eq!(
        a.header.code,
        MessageClass::Response(ResponseType::NotFound),
        "{}",
        diag(&a)
    );

    // Sub-device 2 checks in while the server is up, then the server goes down.
    let a2 = offer(&s2.checkin(&fleet).await);
    assert_eq!(a2.update.as_ref().unwrap().release_id, release);
    let addr = fleet.addr();
    let before = reports_stored(&fleet).await;
    fleet.server.take().unwrap().shutdown().await;

    // While it is down: sub-device 2 downloads the cached release and reports every step;
    // sub-device 1, restarted, checks in and is given its kept answer.
    let envelope2 = s2.download(&u.manifest_url).await;
    assert_eq!(envelope2, envelope);
    let got2 = s2.download(&u.payloads[0].url).await;
    assert_eq!(Sha256::digest(&got2), Sha256::digest(&payload));
    let (last, first_steps) = ALL_STEPS.split_last().unwrap();
    s2.report_steps(&release, first_steps).await;
    // The last report is retransmitted (same message id and token, RFC 7252 §4.5), as after
    // a lost answer: answered again, queued once.
    let p = s2.report_packet(&release, last);
    let first = s2.call(&p).await;
    assert_eq!(
        first.header.code,
        MessageClass::Response(ResponseType::Changed),
        "{}",
        diag(&first)
    );
    let again = s2.call(&p).await;
    assert_eq!(first.to_bytes().unwrap(), again.to_bytes().unwrap());
    assert_eq!(gw.queued_reports(), ALL_STEPS.len());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        gw.queued_reports(),
        ALL_STEPS.len(),
        "nothing leaves the queue while the server is down"
    );

    // The gateway itself restarts (its tasks end, a new one opens the same state): the
    // queued reports and the kept answers come back from its disk.
    task.abort();
    let _ = task.await;
    drop(gw);
    let gw = Gateway::open(&config, config.gateway.as_ref().unwrap()).unwrap();
    assert_eq!(gw.queued_reports(), ALL_STEPS.len());
    let task = tokio::spawn(Arc::clone(&gw).run());
    // Sub-device 1, restarted too, checks in while the server is still down: its kept answer.
    let kept = offer(&s1.checkin(&fleet).await);
    assert_eq!(kept.update.unwrap().release_id, release);
    let again = s2.download(&u.payloads[0].url).await;
    assert_eq!(Sha256::digest(&again), Sha256::digest(&payload));

    // The server returns: every queued report reaches it, once.
    restart(&mut fleet, addr).await;
    wait_drained(&gw).await;
    let steps: Vec<String> = server_steps(&fleet.device_info(&id2).await)
        .into_iter()
        .map(|(s, o, _)| format!("{s}:{o}"))
        .collect();
    let want: Vec<String> = ALL_STEPS.iter().map(|s| format!("{s}:success")).collect();
    assert_eq!(steps, want, "sub-device 2's timeline: every step");
    // Counted: the server stored exactly one report per step since it stopped (the counter
    // is the process's, so it carries over the restart): none lost, none duplicated.
    let after = reports_stored(&fleet).await;
    for step in ALL_STEPS {
        let n = after.get(step).copied().unwrap_or(0) - before.get(step).copied().unwrap_or(0);
        assert_eq!(n, 1, "{step}: {n} reports stored after the server returned");
    }
    assert_eq!(
        server_steps(&fleet.device_info(&id1).await).len(),
        ALL_STEPS.len()
    );
    wait_campaign(&fleet, &campaign, "succeeded", 2).await;
    task.abort();
}

#[tokio::test]
async fn gateway_config_mistakes_are_named() {
    let fleet = Fleet::new().await;
    let cases = [
        ("[gateway]\n", "has no sub-device"),
        (
            "[gateway]\n[[gateway.subdevice]]\nid = \"a\"\nserial = \"/dev/null\"\n",
            "give token or token_file",
        ),
        (
            "[gateway]\n[[gateway.subdevice]]\nid = \"a b\"\nserial = \"/dev/x\"\ntoken = \"t\"\n",
            "id \"a b\"",
        ),
        (
            "[gateway]\n[[gateway.subdevice]]\nid = \"a\"\nserial = \"/dev/x\"\ntoken = \"t\"\n[[gateway.subdevice]]\nid = \"b\"\nserial = \"/dev/x\"\ntoken = \"t\"\n",
            "each needs its own",
        ),
        (
            "[gateway]\nqueue_reports = 0\n[[gateway.subdevice]]\nid = \"a\"\nserial = \"/dev/x\"\ntoken = \"t\"\n",
            "gateway.queue_reports = 0",
        ),
        (
            "[gateway]\ncache_bytes = 10\n[[gateway.subdevice]]\nid = \"a\"\nserial = \"/dev/x\"\ntoken = \"t\"\n",
            "gateway.cache_bytes = 10",
        ),
        ("[gateway]\nbogus = 1\n", "unknown field `bogus`"),
        (
            "[gateway]\n[[gateway.subdevice]]\nid = \"a\"\nserial = \"/dev/x\"\nsocket = \"/tmp/x\"\ntoken = \"t\"\n",
            "give serial (a character device) or socket",
        ),
    ];
    for (n, (section, want)) in cases.into_iter().enumerate() {
        let mut d = Device::new(&fleet, &format!("gw-{n}")).await;
        d.extra = section.into();
        let path = d.write_config(&fleet);
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains(want), "{section}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_serves_a_subdevice_on_a_unix_socket() {
    let _one_at_a_time = REPORTING.lock().await;
    let fleet = Fleet::new().await;
    let payload = image(9, 3000);
    let release = fleet.release(3, &payload).await;
    let (id, token) = fleet.device("sub-sock").await;
    let campaign = fleet.campaign(&release, &[&id], json!({})).await;
    let mut dev = Device::new(&fleet, "gateway-sock").await;
    let sock = dev.dir.join("sub.sock");
    dev.extra = format!(
        "[gateway]\n[[gateway.subdevice]]\nid = \"sub-sock\"\nsocket = \"{}\"\ntoken = \"{token}\"\n",
        sock.display()
    );
    let config = dev.config(&fleet);
    let gw = Gateway::open(&config, config.gateway.as_ref().unwrap()).unwrap();
    let task = tokio::spawn(Arc::clone(&gw).run());
    let mut s = SubDevice::socket(sock).await;
    let u = offer(&s.checkin(&fleet).await).update.expect("an offer");
    let got = s.download(&u.payloads[0].url).await;
    assert_eq!(Sha256::digest(&got), Sha256::digest(&payload));
    s.report_all(&release).await;
    wait_drained(&gw).await;
    assert_eq!(
        server_steps(&fleet.device_info(&id).await).len(),
        ALL_STEPS.len()
    );
    wait_campaign(&fleet, &campaign, "succeeded", 1).await;

    // attack_decommissioned_subdevice_gets_no_kept_offer: the server refuses the
    // sub-device's check-in (decommissioned): relayed as 4.01, and the kept answer is
    // forgotten, so the cached release is no longer served to it.
    let r = fleet
        .client
        .delete(fleet.url(&format!("/api/v1/devices/{id}")))
        .bearer_auth(&fleet.admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let a = s.checkin(&fleet).await;
    assert_eq!(
        a.header.code,
        MessageClass::Response(ResponseType::Unauthorized),
        "{}",
        diag(&a)
    );
    let p = s.request(RequestType::Get, &u.payloads[0].url, None);
    let a = s.call(&p).await;
    assert_eq!(
        a.header.code,
        MessageClass::Response(ResponseType::NotFound),
        "{}",
        diag(&a)
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_fetch_resumes_after_the_connection_to_the_server_is_cut() {
    let fleet = Fleet::new().await;
    let payload = image(11, 200_000);
    let release = fleet.release(4, &payload).await;
    let (id, token) = fleet.device("sub-cut").await;
    fleet.campaign(&release, &[&id], json!({})).await;
    // Every connection towards the gateway is cut after 60,000 bytes, for the first six
    // (small answers pass whole): the payload needs Range resumptions to arrive.
    let proxy = Proxy::start(fleet.addr(), vec![60_000; 6]).await;
    let mut s = SubDevice::new();
    let config =
        gateway_config_via(&fleet, &[("sub-cut", &token, &s.path)], Some(proxy.url())).await;
    let gw = Gateway::open(&config, config.gateway.as_ref().unwrap()).unwrap();
    let task = tokio::spawn(Arc::clone(&gw).run());
    let u = offer(&s.checkin(&fleet).await).update.expect("an offer");
    let got = s.download(&u.payloads[0].url).await;
    assert_eq!(Sha256::digest(&got), Sha256::digest(&payload));
    assert!(
        Stats::get(&proxy.stats.cuts_done) >= 1,
        "no connection was cut"
    );
    assert!(
        Stats::get(&proxy.stats.range_requests) >= 1,
        "the cut fetch was not resumed with a Range request"
    );
    task.abort();
}

/// A sub-device whose token the server refuses (revoked, decommissioned, mistyped) must not
/// hold up the other sub-devices' reports (docs/gateway.md §4): its report is set aside, the
/// others reach the server, and it is refused new reports until a check-in succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_revoked_subdevice_does_not_block_other_subdevices_reports() {
    let _one_at_a_time = REPORTING.lock().await;
    let fleet = Fleet::new().await;
    let release = fleet.release(5, &image(13, 3000)).await;
    let (id, token) = fleet.device("sub-good").await;
    let (bad_id, _) = fleet.device("sub-revoked").await;
    fleet.campaign(&release, &[&id, &bad_id], json!({})).await;
    let mut good = SubDevice::new();
    let mut bad = SubDevice::new();
    let config = gateway_config(
        &fleet,
        &[
            ("sub-revoked", "not-the-token-the-server-knows", &bad.path),
            ("sub-good", &token, &good.path),
        ],
    )
    .await;
    let gw = Gateway::open(&config, config.gateway.as_ref().unwrap()).unwrap();
    let task = tokio::spawn(Arc::clone(&gw).run());

    // The good one is offered the release; the refused sub-device's report is queued first
    // (the gateway cannot know yet), then the good one's.
    let u = offer(&good.checkin(&fleet).await).update.expect("an offer");
    assert_eq!(u.release_id, release);
    bad.report_steps(&release, &ALL_STEPS[..1]).await;
    good.report_all(&release).await;
    wait_drained(&gw).await;
    assert_eq!(
        server_steps(&fleet.device_info(&id).await).len(),
        ALL_STEPS.len(),
        "the good sub-device's timeline: every step"
    );
    assert_eq!(gw.refused_reports(), 1);
    // The refused one is now told so, clearly, instead of filling the queue.
    let p = bad.report_packet(&release, ALL_STEPS[1]);
    let a = bad.call(&p).await;
    assert_eq!(
        a.header.code,
        MessageClass::Response(ResponseType::Forbidden),
        "{}",
        diag(&a)
    );
    assert!(diag(&a).contains("refused"), "{}", diag(&a));
    assert_eq!(gw.queued_reports(), 0);
    task.abort();
}

/// A check-in answer longer than a frame holds (many payloads) is answered 5.00 naming why,
/// not sent whole for the sub-device's decoder to drop as too long (asked again forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_answer_longer_than_a_frame_is_refused_with_a_diagnostic() {
    let fleet = Fleet::new().await;
    let images = (0..16u8)
        .map(|n| {
            let mut app = fleet.app(&image(n, 100), 3);
            app.name = format!("app{n}");
            app.component = vec![format!("app{n}").into_bytes()];
            app.uri = Some(format!("https://fw.example/app{n}-3.bin"));
            app
        })
        .collect();
    let built = fleet.build(&fleet.request(3, images));
    let release = fleet.upload(&built).await;
    let (id, token) = fleet.device("sub-many").await;
    fleet.campaign(&release, &[&id], json!({})).await;
    let mut s = SubDevice::new();
    let config = gateway_config(&fleet, &[("sub-many", &token, &s.path)]).await;
    let gw = Gateway::open(&config, config.gateway.as_ref().unwrap()).unwrap();
    let task = tokio::spawn(Arc::clone(&gw).run());
    let a = s.checkin(&fleet).await;
    assert_eq!(
        a.header.code,
        MessageClass::Response(ResponseType::InternalServerError),
        "{}",
        diag(&a)
    );
    assert!(diag(&a).contains("too-large"), "{}", diag(&a));
    task.abort();
}

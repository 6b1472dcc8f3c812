//! Transports and stores against the real thing: TLS and mutual TLS with a device certificate,
//! MQTT push through the local Mosquitto broker, and payloads in an S3-compatible store
//! (moto_server on loopback).

#![expect(clippy::unwrap_used, clippy::std_instead_of_core, reason = "test code")]

mod common;

use std::time::Duration;

use common::{Backend, Harness, mqtt_harness, mqtt_listener};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use suitcase_protocol::{Action, CheckInAnswer};

struct Pki {
    dir: tempfile::TempDir,
    server_ca_pem: String,
    device_cert_pem: String,
    device_key_pem: String,
    device_der: Vec<u8>,
    rogue_pem: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    name: &str,
    sans: Vec<String>,
    issuer: &CertifiedIssuer<'_, KeyPair>,
) -> (String, String, Vec<u8>) {
    let mut p = CertificateParams::new(sans).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("suitcase test server CA");
    let device_ca = ca("suitcase test device CA");
    let rogue_ca = ca("someone else's CA");
    let (server_pem, server_key, _) = leaf(
        "server",
        vec!["localhost".into(), "127.0.0.1".into()],
        &server_ca,
    );
    let (device_cert_pem, device_key_pem, device_der) = leaf("device-7", vec![], &device_ca);
    let (rogue_cert, rogue_key, _) = leaf("device-7", vec![], &rogue_ca);
    std::fs::write(dir.path().join("server.pem"), &server_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key).unwrap();
    std::fs::write(dir.path().join("device-ca.pem"), device_ca.pem()).unwrap();
    Pki {
        dir,
        server_ca_pem: server_ca.pem(),
        device_cert_pem,
        device_key_pem,
        device_der,
        rogue_pem: format!("{rogue_cert}{rogue_key}"),
    }
}

fn client(pki: &Pki, identity: Option<String>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.server_ca_pem.as_bytes()).unwrap()]);
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// Devices authenticate with a TLS client certificate instead of a token; a certificate from
/// another CA is refused at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_identifies_the_device_by_its_certificate() {
    let pki = pki();
    let d = pki.dir.path().to_path_buf();
    let admin = client(&pki, None);
    let h = Harness::with_client(
        Backend::Sqlite,
        |c| {
            c.tls = Some(suitcase_server::TlsConfig {
                cert: d.join("server.pem"),
                key: d.join("server.key"),
                client_ca: Some(d.join("device-ca.pem")),
            });
        },
        admin.clone(),
    )
    .await;
    assert!(h.base.starts_with("https://"));
    let base = h.base.clone();
    let fp = hex::encode(Sha256::digest(&pki.device_der));
    let r = admin
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(&h.admin)
        .json(&json!({"name": "device-7", "certificate_sha256": fp}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // The device, with its certificate and no token.
    let device = client(
        &pki,
        Some(format!("{}{}", pki.device_cert_pem, pki.device_key_pem)),
    );
    let r = device
        .post(format!("{base}/api/v1/device/checkin"))
        .json(&h.inventory(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let a: CheckInAnswer = r.json().await.unwrap();
    assert_eq!(a.action, Action::None);
    let me: serde_json::Value = device
        .get(format!("{base}/api/v1/device/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "device-7");
    // No certificate and no token: 401. A certificate from another CA: no connection at all.
    let r = admin
        .post(format!("{base}/api/v1/device/checkin"))
        .json(&h.inventory(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let rogue = client(&pki, Some(pki.rogue_pem.clone()));
    let err = rogue
        .post(format!("{base}/api/v1/device/checkin"))
        .json(&h.inventory(1))
        .send()
        .await;
    assert!(
        err.is_err(),
        "a certificate from an unknown CA must not get through"
    );
    h.stop().await;
}

/// Hybrid updates: starting a campaign pushes "check in now" to each targeted device's own
/// topic (an opaque id, never the device identifier) and to a targeted group's topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_start_pushes_to_device_and_group_topics() {
    let (h, prefix) = mqtt_harness().await;
    let rel = h.release(3, &[3u8; 300]).await;
    let devs = h.devices("push", 3, &[]).await;
    let (s, v) = h
        .post(
            &h.admin,
            "/api/v1/groups",
            &json!({"name": "lab", "devices": ["push-2"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut topics = Vec::new();
    for (id, t) in &devs {
        let a = h.checkin(t, 1).await;
        let push = a.push.expect("push settings in the answer");
        assert_eq!(push.broker, "mqtt://127.0.0.1:1883");
        assert!(
            push.topics
                .iter()
                .all(|t| t.starts_with(&prefix) && !t.contains(id.as_str()))
        );
        topics.push(push.topics);
    }
    assert_eq!(
        topics[2].len(),
        2,
        "push-2 also listens on its group's topic"
    );
    let all: Vec<String> = topics.iter().flatten().cloned().collect();
    let (_client, mut rx) = mqtt_listener(&all).await;
    h.campaign(json!({"name": "p0", "release_id": rel, "filter": {"devices": ["push-0"]}}))
        .await;
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, topics[0][0]);
    // A campaign for the group notifies the group topic (and its member's own topic).
    let rel2 = h.release(4, &[4u8; 300]).await;
    h.campaign(json!({"name": "g", "release_id": rel2, "filter": {"group": "lab"}}))
        .await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    seen.sort();
    let mut want = topics[2].clone();
    want.sort();
    assert_eq!(seen, want);
    // Nothing for push-1, which no campaign targets.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
    h.stop().await;
}

/// Payloads in an S3-compatible object store: upload, then a ranged download, through the
/// same API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_can_live_in_an_s3_store() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut moto = std::process::Command::new("moto_server")
        .args(["-p", &port.to_string(), "-H", "127.0.0.1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]') is needed; .ci/run installs it");
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http.get(&endpoint).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "moto_server did not start");
    // Create the bucket (moto accepts any credentials).
    let r = http
        .put(format!("{endpoint}/fw-bucket"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // Store settings can travel in the URL (here) or in the AWS_* environment variables.
    let h = Harness::with(Backend::Sqlite, |c| {
        c.payloads = Some(format!(
            "s3://fw-bucket/suitcase?endpoint={endpoint}&region=us-east-1&access_key_id=test&secret_access_key=test"
        ));
    })
    .await;
    let image: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let rel = h.release(9, &image).await;
    let devs = h.devices("s3", 1, &[]).await;
    h.campaign(json!({"name": "s3", "release_id": rel, "filter": {"devices": ["s3-0"]}}))
        .await;
    let offer = h.checkin(&devs[0].1, 1).await.update.unwrap();
    let r = h
        .client
        .get(h.url(&offer.payloads[0].url))
        .bearer_auth(&devs[0].1)
        .header("range", "bytes=40000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &image[40_000..]);
    // The object really is in the bucket.
    let list = http
        .get(format!("{endpoint}/fw-bucket?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("suitcase/releases/"), "{list}");
    h.stop().await;
    let _ = moto.kill();
    let _ = moto.wait();
}

//! The server under races, floods, hostile devices and common operator mistakes (the
//! hardening issue): each test is named after what it defends, and runs against the real
//! server on a loopback socket with a real database (SQLite, and PostgreSQL where the race
//! depends on the database).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "test code"
)]

mod common;

use std::time::Duration;

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::{Value, json};
use suitcase_protocol::{Action, Outcome, Step};

both_backends!(
    device_already_running_the_release_counts_as_succeeded_without_an_offer,
    offer_gate_pending_wave_device_cannot_fetch_or_report,
    offer_gate_cancelled_before_offer_device_cannot_fetch,
    race_two_admins_revoke_each_other_leaves_a_working_admin,
    race_concurrent_creates_answer_409_with_the_existing_id,
    race_concurrent_payload_uploads_one_wins,
    campaign_filter_naming_40000_devices_works,
);

/// A fresh client per request, so that connection reuse plays no part.
fn one_shot() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn members(h: &Harness, campaign: &str) -> Vec<Value> {
    let (s, v) = h
        .get(&h.admin, &format!("/api/v1/campaigns/{campaign}/devices"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

async fn device_get(h: &Harness, token: &str, path: &str) -> StatusCode {
    h.client
        .get(h.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// docs/server.md §3: a device whose inventory shows the release installed counts as
/// succeeded. It used to be offered the release, download it, fail Check with
/// sequence-rollback and trip the campaign's error threshold.
async fn device_already_running_the_release_counts_as_succeeded_without_an_offer(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(5, b"image five").await;
    let devs = h.devices("current", 2, &["t"]).await;
    let cid = h
        .campaign(
            json!({"name": "c", "release_id": rel, "filter": {"tags_all": ["t"]},
                         "error_threshold": 0.5}),
        )
        .await;
    // Both already run sequence 5 (one even runs 6): nothing to offer, both succeeded.
    for (i, (_, tok)) in devs.iter().enumerate() {
        let a = h.checkin(tok, 5 + i as u64).await;
        assert_eq!(
            a.action,
            Action::None,
            "device {i} was offered what it runs"
        );
        assert!(a.update.is_none());
        assert_eq!(
            device_get(&h, tok, &format!("/api/v1/device/releases/{rel}/envelope")).await,
            StatusCode::OK,
            "a device counted as succeeded may still read the envelope"
        );
    }
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "completed", "{info}");
    assert_eq!(info["waves_progress"][0]["succeeded"], 2, "{info}");
    assert_eq!(info["waves_progress"][0]["failed"], 0, "{info}");
    h.stop().await;
}

/// docs/server.md §3: a device can fetch and report on only what it was offered. A device of
/// a wave that is not open yet used to download the release and move its campaign state with
/// a report.
async fn offer_gate_pending_wave_device_cannot_fetch_or_report(b: Backend) {
    let h = Harness::new(b).await;
    // Release 7 has a delta from release 6, so that a delta URL exists to be asked for.
    let old: Vec<u8> = (0..24_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut new = old.clone();
    new[12_000] ^= 0xff;
    h.release(6, &old).await;
    let rel = h.release(7, &new).await;
    for _ in 0..600 {
        let (_, v) = h.get(&h.admin, &format!("/api/v1/releases/{rel}")).await;
        if !v["deltas"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let devs = h.devices("w", 4, &["w"]).await;
    let cid = h
        .campaign(
            json!({"name": "c", "release_id": rel, "filter": {"tags_all": ["w"]},
                         "waves": [{"count": 1}, {"percent": 100}], "success_threshold": 1.0}),
        )
        .await;
    let waiting: Vec<&(String, String)> = {
        let m = members(&h, &cid).await;
        devs.iter()
            .filter(|(id, _)| {
                m.iter()
                    .any(|x| x["device_id"] == id.as_str() && x["wave"] == 1)
            })
            .collect()
    };
    assert_eq!(waiting.len(), 3);
    // The device of the open wave runs release 6: it is offered the delta, and may fetch it.
    let first = devs.iter().find(|d| !waiting.contains(d)).unwrap();
    let mut inventory = h.inventory(6);
    inventory.components[0].digest =
        Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&old)));
    let offer: suitcase_protocol::CheckInAnswer = h
        .client
        .post(h.url("/api/v1/device/checkin"))
        .bearer_auth(&first.1)
        .json(&inventory)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delta_url = offer.update.expect("an offer").payloads[0]
        .delta
        .as_ref()
        .expect("a delta offer")
        .url
        .clone();
    assert_eq!(device_get(&h, &first.1, &delta_url).await, StatusCode::OK);
    for (id, tok) in waiting {
        // It checks in: nothing for it yet.
        assert_eq!(h.checkin(tok, 1).await.action, Action::None);
        for path in [
            format!("/api/v1/device/releases/{rel}/envelope"),
            format!("/api/v1/device/payloads/{rel}/0"),
            delta_url.clone(),
        ] {
            assert_eq!(
                device_get(&h, tok, &path).await,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        let r = h
            .client
            .post(h.url("/api/v1/device/reports"))
            .bearer_auth(tok)
            .json(&json!({"release_id": rel, "step": "check", "outcome": "failure", "reason": "condition"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "not-offered", "{v}");
        let m = members(&h, &cid).await;
        let me = m.iter().find(|x| x["device_id"] == id.as_str()).unwrap();
        assert_eq!(
            me["state"], "pending",
            "a report moved a device never offered: {me}"
        );
    }
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "running", "{info}");
    assert_eq!(info["waves_progress"][1]["failed"], 0, "{info}");
    h.stop().await;
}

/// A campaign cancelled before the device was offered anything: the device gets nothing.
async fn offer_gate_cancelled_before_offer_device_cannot_fetch(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(7, b"seven").await;
    let devs = h.devices("x", 1, &["x"]).await;
    let cid = h
        .campaign(json!({"name": "c", "release_id": rel, "filter": {"tags_all": ["x"]}}))
        .await;
    h.cancel_campaign(&cid).await;
    let tok = &devs[0].1;
    assert_eq!(h.checkin(tok, 1).await.action, Action::None);
    assert_eq!(
        device_get(&h, tok, &format!("/api/v1/device/payloads/{rel}/0")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.report(tok, &rel, Step::Receive, Outcome::Failure, Some("x"))
            .await,
        StatusCode::CONFLICT
    );
    h.stop().await;
}

async fn revoke(h: &Harness, by: &str, id: &str) -> StatusCode {
    h.status_of(h.client.delete(h.url(&format!("/api/v1/tokens/{id}"))), by)
        .await
}

async fn working_admins(h: &Harness, token: &str) -> Vec<String> {
    let (s, v) = h.get(token, "/api/v1/tokens").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "admin" && t["revoked"] == false)
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Two admins revoking each other at the same moment must not leave zero admin tokens (the
/// last-admin guard is one database step). Repeated, so that the race is really run.
async fn race_two_admins_revoke_each_other_leaves_a_working_admin(b: Backend) {
    let h = Harness::new(b).await;
    let (_, list) = h.get(&h.admin, "/api/v1/tokens").await;
    let mut a = (list[0]["id"].as_str().unwrap().to_owned(), h.admin.clone());
    for round in 0..15 {
        let (s, v) = h
            .post(
                &a.1,
                "/api/v1/tokens",
                &json!({"name": format!("admin-{round}"), "role": "admin"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let bb = (
            v["id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        );
        let (ra, rb) = tokio::join!(revoke(&h, &a.1, &bb.0), revoke(&h, &bb.1, &a.0));
        let ok = [ra, rb]
            .iter()
            .filter(|s| **s == StatusCode::NO_CONTENT)
            .count();
        assert_eq!(
            ok, 1,
            "round {round}: both revocations answered {ra} and {rb}"
        );
        a = if ra == StatusCode::NO_CONTENT { a } else { bb };
        assert_eq!(
            working_admins(&h, &a.1).await,
            vec![a.0.clone()],
            "round {round}"
        );
    }
    h.stop().await;
}

/// The recovery when no admin token works: `reset_admin_token` (the CLI's `suitcase server
/// admin-token --reset`) writes a working one and audits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_reset_recovers_a_locked_out_server() {
    let h = Harness::new(Backend::Sqlite).await;
    let before = suitcase_server::admin_token_count(&h.config).await.unwrap();
    assert_eq!(before, 1);
    let done = suitcase_server::reset_admin_token(&h.config).await.unwrap();
    assert_eq!(done.working_before, 1);
    assert_eq!(
        std::fs::read_to_string(&done.file).unwrap().trim(),
        done.token
    );
    let (s, _) = h.get(&done.token, "/api/v1/tokens").await;
    assert_eq!(s, StatusCode::OK, "the reset token works at once");
    let (_, audit) = h.get(&done.token, "/api/v1/audit?limit=1000").await;
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "token.reset")
        .expect("the reset is audited");
    assert_eq!(entry["actor"], "local");
    h.stop().await;
}

/// Concurrent creates of the same device, key, group or release used to pass the
/// database's unique-constraint error through as a 500.
async fn race_concurrent_creates_answer_409_with_the_existing_id(b: Backend) {
    let h = Harness::new(b).await;
    let pem = {
        let g =
            suitcase_author::keys::generate(suitcase_author::keys::KeyAlg::Ed25519, "").unwrap();
        let p = h.dir.path().join("k2.key");
        suitcase_author::keys::write_atomic(&p, &g.private, true).unwrap();
        let (pem, _) = suitcase_author::keys::load_public(&p)
            .unwrap()
            .encode()
            .unwrap();
        String::from_utf8(pem).unwrap()
    };
    let envelope = h.build(3, b"three", "https://fw.example/3.bin");
    let cases: Vec<(&str, Value)> = vec![
        ("/api/v1/devices", json!({"name": "same-device"})),
        ("/api/v1/keys", json!({"name": "same-key", "key": pem})),
        ("/api/v1/groups", json!({"name": "same-group"})),
    ];
    for (path, body) in cases {
        let tries = (0..8).map(|_| h.post(&h.admin, path, &body));
        let answers = futures::future::join_all(tries).await;
        let created: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(created.len(), 1, "{path}: {answers:?}");
        let id = created[0]
            .get("id")
            .or_else(|| created[0].get("name"))
            .unwrap()
            .clone();
        for (s, v) in &answers {
            if *s != StatusCode::CREATED {
                assert_eq!(*s, StatusCode::CONFLICT, "{path}: {v}");
                assert_eq!(v["id"], id, "{path}: the 409 names the existing one: {v}");
            }
        }
    }
    let tries = (0..6).map(|_| h.upload_envelope(&h.admin, &envelope));
    let answers = futures::future::join_all(tries).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (s, v) in &answers {
        if *s != StatusCode::CREATED {
            assert_eq!(*s, StatusCode::CONFLICT, "{v}");
            assert_eq!(v["error"], "duplicate-release");
            assert_eq!(v["id"], created[0]["id"]);
        }
    }
    h.stop().await;
}

fn payload_files(h: &Harness) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![h.config.data_dir.join("payloads")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

/// Of concurrent uploads of one payload exactly one is stored; the others are told at once
/// (they used to all succeed, last write winning, with orphan files left behind).
async fn race_concurrent_payload_uploads_one_wins(b: Backend) {
    let h = Harness::new(b).await;
    let image = vec![7u8; 256 * 1024];
    let env = h.build(4, &image, "https://fw.example/4.bin");
    let (s, v) = h.upload_envelope(&h.admin, &env).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rel = v["id"].as_str().unwrap().to_owned();
    // A slow upload holds the payload: it sends half, then waits before the rest.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let first_half = image[..128 * 1024].to_vec();
    let second_half = image[128 * 1024..].to_vec();
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(first_half) }).chain(
        futures::stream::once(async move {
            let _ = rx.await;
            Ok(second_half)
        }),
    );
    use futures::StreamExt as _;
    let slow = {
        let client = h.client.clone();
        let url = h.url(&format!("/api/v1/releases/{rel}/payloads/0"));
        let admin = h.admin.clone();
        tokio::spawn(async move {
            client
                .put(url)
                .bearer_auth(admin)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, v) = h.upload_payload(&h.admin, &rel, 0, &image).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "upload-in-progress", "{v}");
    tx.send(()).unwrap();
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    let (s, v) = h.upload_payload(&h.admin, &rel, 0, &image).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"], "payload-exists", "{v}");
    assert_eq!(payload_files(&h).len(), 1, "{:?}", payload_files(&h));
    h.stop().await;
}

/// A payload larger than the manifest says is stopped as it streams in, not written in full
/// first, and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_oversized_payload_is_stopped_at_the_declared_size() {
    let h = Harness::with(Backend::Sqlite, |c| c.deltas = false).await;
    let image = vec![1u8; 4096];
    let env = h.build(2, &image, "https://fw.example/2.bin");
    let (_, v) = h.upload_envelope(&h.admin, &env).await;
    let rel = v["id"].as_str().unwrap().to_owned();
    // 64 MiB of body for a 4 KiB image: refused once 4 KiB + 1 arrived. The server stops
    // reading there, so the client never gets to send most of it (it used to store all 64
    // MiB before comparing sizes).
    let pulled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = pulled.clone();
    let chunks = futures::stream::iter((0..64).map(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(vec![1u8; 1 << 20])
    }));
    let r = h
        .client
        .put(h.url(&format!("/api/v1/releases/{rel}/payloads/0")))
        .bearer_auth(&h.admin)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "payload-mismatch", "{v}");
        assert!(v["message"].as_str().unwrap().contains("4096"), "{v}");
    }
    let sent = pulled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 32, "the server read {sent} MiB of a 4 KiB payload");
    assert!(payload_files(&h).is_empty(), "{:?}", payload_files(&h));
    // The slot is free again: the right image completes the release.
    let (s, v) = h.upload_payload(&h.admin, &rel, 0, &image).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.stop().await;
}

/// Staging files of uploads cut off by a killed server, and stored objects no row refers
/// to, are removed when the server starts; what the database refers to stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_upload_leftovers_are_removed_at_start() {
    let mut h = Harness::new(Backend::Sqlite).await;
    let rel = h.release(3, b"keep me").await;
    h.server.take().unwrap().shutdown().await;
    let dir = h
        .config
        .data_dir
        .join("payloads")
        .join("releases")
        .join(&rel);
    std::fs::write(dir.join("0-cutoff#1"), b"half an upload").unwrap();
    std::fs::write(dir.join("0-unrecorded"), b"stored, never recorded").unwrap();
    let kept = payload_files(&h);
    assert_eq!(kept.len(), 3);
    let mut config = h.config.clone();
    config.orphan_age = Duration::ZERO;
    let (server, _) = suitcase_server::start(config).await.unwrap();
    let mut left = payload_files(&h);
    for _ in 0..100 {
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = payload_files(&h);
    }
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left[0].contains('#') && !left[0].ends_with("0-unrecorded"));
    // The release still downloads.
    let r = h
        .client
        .get(format!("{}/api/v1/releases/{rel}", server.url()))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.shutdown().await;
}

/// POST /keys with a private key used to store the PEM in the database, where any viewer
/// could list it. Refused, and the answer holds none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_private_key_registered_as_release_key_is_refused() {
    let h = Harness::new(Backend::Sqlite).await;
    let private = String::from_utf8(std::fs::read(&h.key).unwrap()).unwrap();
    assert!(private.contains("PRIVATE KEY"));
    let (s, v) = h
        .post(
            &h.admin,
            "/api/v1/keys",
            &json!({"name": "oops", "key": private}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "private-key");
    let text = v.to_string();
    let body_line = private.lines().nth(1).unwrap();
    assert!(!text.contains(body_line), "key material echoed: {text}");
    assert!(v["hint"].as_str().unwrap().contains("key public"), "{v}");
    let (_, keys) = h.get(&h.admin, "/api/v1/keys").await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    h.stop().await;
}

/// One device used to add 29 MB to the database in 0.3 s with 1 MB report details. Sizes
/// are capped (413; a 1 MB detail is over the body limit already) and so is the rate (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_report_flood_cannot_grow_the_database() {
    let h = Harness::new(Backend::Sqlite).await;
    let rel = h.release(2, b"two").await;
    let devs = h.devices("f", 1, &["f"]).await;
    h.campaign(json!({"name": "c", "release_id": rel, "filter": {"tags_all": ["f"]}}))
        .await;
    let tok = &devs[0].1;
    assert_eq!(h.checkin(tok, 1).await.action, Action::Update);
    let post = |detail: String| {
        h.client
            .post(h.url("/api/v1/device/reports"))
            .bearer_auth(tok)
            .json(&json!({"release_id": rel, "step": "receive", "outcome": "in-progress", "detail": detail}))
            .send()
    };
    let r = post("x".repeat(100_000)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "report-too-large", "{v}");
    let mut statuses = Vec::new();
    for _ in 0..200 {
        statuses.push(post("progress".into()).await.unwrap().status());
    }
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::NO_CONTENT)
        .count();
    assert!(
        (100..=130).contains(&accepted),
        "a burst of about 120 is accepted, got {accepted}"
    );
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS));
    h.stop().await;
}

/// A filter with 1,500 tags used to give SQLite's "expression tree is too large" as a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_filter_with_1500_tags_is_refused_with_400() {
    let h = Harness::new(Backend::Sqlite).await;
    let tags: Vec<String> = (0..1500).map(|i| format!("t{i}")).collect();
    let (s, v) = h
        .get(
            &h.admin,
            &format!("/api/v1/devices?tags={}", tags.join(",")),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "filter-too-large");
    let rel = h.release(2, b"two").await;
    let (s, v) = h
        .post(
            &h.admin,
            "/api/v1/campaigns",
            &json!({"name": "c", "release_id": rel, "filter": {"tags_any": tags}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    h.stop().await;
}

/// A campaign naming 40,000 devices used to fail with "too many SQL variables"; large
/// fleets are queried in chunks.
async fn campaign_filter_naming_40000_devices_works(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(2, b"two").await;
    let mut names = Vec::new();
    for batch in 0..4 {
        let list: Vec<Value> = (0..10_000)
            .map(|i| json!({"name": format!("n-{batch}-{i}")}))
            .collect();
        let (s, v) = h
            .post(&h.admin, "/api/v1/devices/batch", &Value::Array(list))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        names.extend((0..10_000).map(|i| format!("n-{batch}-{i}")));
    }
    let cid = h
        .campaign(json!({"name": "big", "release_id": rel, "filter": {"devices": names}}))
        .await;
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["waves_progress"][0]["devices"], 40_000, "{info}");
    h.stop().await;
}

/// One rule for every human-facing name: newlines, escape sequences and 100 KB are refused
/// for campaigns, tokens, keys and releases as they were for devices, tags and groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_names_with_newlines_escapes_or_100_kb_are_refused_everywhere() {
    let h = Harness::new(Backend::Sqlite).await;
    let rel = h.release(2, b"two").await;
    let pem = String::from_utf8(
        suitcase_author::keys::load_public(&h.key)
            .unwrap()
            .encode()
            .unwrap()
            .0,
    )
    .unwrap();
    let big = "n".repeat(100_000);
    for bad in ["forged\nline", "\u{1b}[2Jclear", big.as_str(), "   "] {
        let bodies = [
            ("/api/v1/campaigns", json!({"name": bad, "release_id": rel})),
            ("/api/v1/tokens", json!({"name": bad, "role": "viewer"})),
            ("/api/v1/keys", json!({"name": bad, "key": pem})),
            ("/api/v1/devices", json!({"name": bad})),
            ("/api/v1/devices", json!({"name": "ok", "tags": [bad]})),
            ("/api/v1/groups", json!({"name": bad})),
        ];
        for (path, body) in bodies {
            let (s, v) = h.post(&h.admin, path, &body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {bad:?}: {v}");
            assert_eq!(v["error"], "bad-name", "{path}: {v}");
            assert!(
                v.to_string().len() < 1000,
                "the answer echoes the name: {path}"
            );
        }
    }
    let env = h.build(9, b"nine", "https://fw.example/9.bin");
    let r = h
        .client
        .post(h.url("/api/v1/releases?name=a%0Ab"))
        .bearer_auth(&h.admin)
        .body(env)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    h.stop().await;
}

/// Rotating a decommissioned device's token used to answer 200 with a token that was then
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommissioned_device_token_cannot_be_rotated() {
    let h = Harness::new(Backend::Sqlite).await;
    let devs = h.devices("d", 1, &[]).await;
    let r = h
        .client
        .delete(h.url(&format!("/api/v1/devices/{}", devs[0].0)))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, v) = h
        .post(
            &h.admin,
            &format!("/api/v1/devices/{}/token", devs[0].0),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "device-decommissioned");
    h.stop().await;
}

/// Path, query, method and size errors come in the API's JSON error format, not text/plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_query_method_and_size_errors_answer_in_json() {
    let h = Harness::new(Backend::Sqlite).await;
    let devs = h.devices("j", 1, &[]).await;
    let cases = [
        (
            h.client
                .get(h.url("/api/v1/device/payloads/rel_x/not-a-number"))
                .bearer_auth(&devs[0].1),
            StatusCode::BAD_REQUEST,
        ),
        (
            h.client
                .get(h.url("/api/v1/devices?limit=many"))
                .bearer_auth(&h.admin),
            StatusCode::BAD_REQUEST,
        ),
        (
            h.client.put(h.url("/api/v1/devices")).bearer_auth(&h.admin),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            h.client
                .post(h.url("/api/v1/devices"))
                .bearer_auth(&h.admin)
                .header("content-type", "application/json")
                .body(vec![b' '; 2 << 20]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (req, want) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), want);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("application/json"), "{want}: {ct}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
    }
    h.stop().await;
}

/// A campaign whose filter matches no device (a typo in the vendor) used to go straight to
/// `completed`; shrinking waves (50%, 20%) were accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_campaigns_and_shrinking_waves_are_refused() {
    let h = Harness::new(Backend::Sqlite).await;
    let rel = h.release(2, b"two").await;
    h.devices("e", 2, &["e"]).await;
    let (s, v) = h
        .post(
            &h.admin,
            "/api/v1/campaigns",
            &json!({"name": "typo", "release_id": rel, "filter": {"vendor_id": "exmaple.com"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let cid = v["id"].as_str().unwrap();
    let (s, v) = h
        .post(
            &h.admin,
            &format!("/api/v1/campaigns/{cid}/start"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "no-devices");
    assert_eq!(h.campaign_info(cid).await["state"], "draft");
    let (s, v) = h
        .post(
            &h.admin,
            "/api/v1/campaigns",
            &json!({"name": "w", "release_id": rel, "waves": [{"percent": 50}, {"percent": 20}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().unwrap().contains("wave 2"), "{v}");
    h.stop().await;
}

/// An envelope uploaded alone, then uploaded again with its payload (as `suitcase fleet
/// release upload` does), is finished, not refused with a bare 409; the plaintext image of
/// an encrypted payload is named as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_only_upload_is_finished_by_uploading_again() {
    let h = Harness::new(Backend::Sqlite).await;
    let env = h.build(6, b"six", "https://fw.example/6.bin");
    let (s, v) = h.upload_envelope(&h.admin, &env).await;
    assert_eq!(s, StatusCode::CREATED);
    let rel = v["id"].as_str().unwrap().to_owned();
    let (s, v) = h.upload_envelope(&h.admin, &env).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["id"], rel.as_str(), "{v}");
    assert!(v["hint"].as_str().unwrap().contains("lacks payload"), "{v}");
    let (s, _) = h.upload_payload(&h.admin, &rel, 0, b"six").await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = h.upload_envelope(&h.admin, &env).await;
    assert!(v["hint"].as_str().unwrap().contains("complete"), "{v}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_plaintext_of_an_encrypted_payload_is_refused() {
    use suitcase_author::keys::{self, KeyAlg};
    use suitcase_author::release::{self, ImageInput, ReleaseRequest};
    let h = Harness::new(Backend::Sqlite).await;
    let g = keys::generate(KeyAlg::A128Kw, "").unwrap();
    let recipient = h.dir.path().join("device.key");
    keys::write_atomic(&recipient, &g.private, true).unwrap();
    let image = b"secret firmware image".to_vec();
    let req = ReleaseRequest {
        sequence: 3,
        tier: suitcase_author::Tier::Upgraded,
        vendor: h.vendor,
        class: h.class,
        device: None,
        images: vec![ImageInput {
            name: "app".into(),
            bytes: image.clone(),
            component: vec![b"app".to_vec()],
            uri: Some("https://fw.example/enc.bin".into()),
            integrated: false,
            invoke: false,
            delta_from: None,
        }],
        sign: vec![h.key.clone()],
        encrypt_for: vec![recipient],
        x5chain: vec![],
        content: None,
        reference_uri: None,
        description: None,
    };
    let built = release::build(&req, &mut |_, _, _| {}).unwrap();
    let (s, v) = h.upload_envelope(&h.admin, &built.envelope).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rel = v["id"].as_str().unwrap().to_owned();
    let (s, v) = h.upload_payload(&h.admin, &rel, 0, &image).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "plaintext-of-encrypted", "{v}");
    let (s, v) = h
        .upload_payload(&h.admin, &rel, 0, &built.payloads[0].bytes)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["complete"], true);
    h.stop().await;
}

/// Slow and idle clients: 1,000 connections that send nothing (four times the connection
/// limit) and one that sends a body at a byte a second do not keep a device from checking
/// in, and the server gives their sockets back. (They used to stay open for ever, and 1,100
/// of them under a 1,024-descriptor limit failed every check-in.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_slowloris_idle_connections_and_a_slow_body_do_not_keep_devices_out() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let h = Harness::with(Backend::Sqlite, |c| {
        c.limits.max_connections = 256;
        c.limits.header_timeout = Duration::from_secs(2);
        c.limits.idle_timeout = Duration::from_secs(3);
        c.limits.body_timeout = Duration::from_secs(3);
    })
    .await;
    let devs = h.devices("s", 1, &[]).await;
    let client = one_shot();
    let checkin_time = || async {
        let t = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            client
                .post(h.url("/api/v1/device/checkin"))
                .bearer_auth(&devs[0].1)
                .json(&h.inventory(1))
                .send(),
        )
        .await
        .expect("a check-in is answered while slow clients hold connections")
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        t.elapsed()
    };
    // The normal latency, without slow clients: the slowest of a few check-ins (a loaded
    // machine makes some slow; the bound below is generous on purpose).
    let mut baseline = Duration::ZERO;
    for _ in 0..5 {
        baseline = baseline.max(checkin_time().await);
    }
    let addr = h.server.as_ref().unwrap().addr;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // A check-in body at one byte a second.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = serde_json::to_vec(&h.inventory(1)).unwrap();
    let head = format!(
        "POST /api/v1/device/checkin HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        devs[0].1,
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let dribble = tokio::spawn(async move {
        let mut answer = Vec::new();
        for b in body {
            if slow.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::select! {
                r = slow.read_to_end(&mut answer) => { let _ = r; break; }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    // Devices keep checking in, each on a new connection, within their normal latency: the
    // 95th percentile under ten times the slowest of the baseline, or a second.
    let mut under_flood = Vec::new();
    for _ in 0..20 {
        under_flood.push(checkin_time().await);
    }
    under_flood.sort();
    let p95 = under_flood[18];
    let bound = (baseline * 10).max(Duration::from_secs(1));
    assert!(
        p95 < bound,
        "check-ins under the flood: p95 {p95:?} over {bound:?} (baseline {baseline:?}): {under_flood:?}"
    );
    let answer = tokio::time::timeout(Duration::from_secs(15), dribble)
        .await
        .expect("the slow body is cut off")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The idle sockets were closed by the server (read gives end of file or a reset).
    let mut closed = 0;
    for mut s in idle {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 1000);
    h.stop().await;
}

/// A payload upload that dribbles in below the minimum rate (1 KiB/s over each stall window)
/// is cut with `408 body-timeout` instead of holding its upload slot and a socket for as
/// long as the client likes; it leaves nothing behind and the slot is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_slow_payload_upload_is_cut_with_408() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let h = Harness::with(Backend::Sqlite, |c| {
        c.limits.upload_stall = Duration::from_secs(1);
    })
    .await;
    let image = vec![5u8; 64 * 1024];
    let env = h.build(2, &image, "https://fw.example/2.bin");
    let (s, v) = h.upload_envelope(&h.admin, &env).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rel = v["id"].as_str().unwrap().to_owned();
    let addr = h.server.as_ref().unwrap().addr;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/releases/{rel}/payloads/0 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        h.admin,
        image.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // 100 bytes every 200 ms: 500 bytes a second, never a gap as long as the stall timeout.
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    for piece in image.chunks(100) {
        if slow.write_all(piece).await.is_err() {
            break;
        }
        tokio::select! {
            r = slow.read_to_end(&mut answer) => { let _ = r; break; }
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a 500 B/s upload is still read after 20 s"
        );
    }
    if answer.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body-timeout"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut after {:?}",
        started.elapsed()
    );
    assert!(payload_files(&h).is_empty(), "{:?}", payload_files(&h));
    // At network speed the same upload goes through.
    let (s, v) = h.upload_payload(&h.admin, &rel, 0, &image).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.stop().await;
}

/// Orphans appear while the server runs too (an upload whose client vanished and whose
/// staging file a crash kept, a stored object whose row was never written): the periodic
/// sweep (`Config::sweep_interval`, `--sweep-interval`) removes them, not only the sweep at
/// start; what the database refers to stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_appearing_after_start_are_removed_by_the_periodic_sweep() {
    let h = Harness::with(Backend::Sqlite, |c| {
        c.orphan_age = Duration::from_secs(1);
        c.sweep_interval = Some(Duration::from_millis(200));
    })
    .await;
    let rel = h.release(3, b"keep me").await;
    let kept = payload_files(&h);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let dir = h
        .config
        .data_dir
        .join("payloads")
        .join("releases")
        .join(&rel);
    std::fs::write(dir.join("0-cutoff#1"), b"half an upload").unwrap();
    std::fs::write(dir.join("0-unrecorded"), b"stored, never recorded").unwrap();
    assert_eq!(payload_files(&h).len(), 3);
    let mut left = payload_files(&h);
    for _ in 0..200 {
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = payload_files(&h);
    }
    assert_eq!(left, kept, "the orphans are gone, the payload stays");
    let r = h
        .client
        .get(h.url(&format!("/api/v1/releases/{rel}")))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.stop().await;
}

/// The OpenAPI description states the limits the server enforces: the name rule on every tag
/// (body lists and `?tags=`), the tag counts, body sizes, timeouts and report rates; and the
/// server refuses what the description rules out (`?tags=` with a control character).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_states_the_name_rule_on_tags_and_every_limit() {
    use suitcase_protocol::limits::{
        DEVICE_TAGS_MAX, FILTER_TAGS_MAX, NAME_MAX_CHARS, NAME_PATTERN,
    };
    let h = Harness::with(Backend::Sqlite, |c| {
        c.limits.upload_stall = Duration::from_secs(17);
        c.limits.body_timeout = Duration::from_secs(23);
    })
    .await;
    let spec: Value = h
        .client
        .get(h.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &spec["components"]["schemas"];
    for (schema, field, max) in [
        ("DeviceCreate", "tags", DEVICE_TAGS_MAX),
        ("DevicePatch", "add_tags", DEVICE_TAGS_MAX),
        ("DevicePatch", "remove_tags", DEVICE_TAGS_MAX),
        ("Filter", "tags_all", FILTER_TAGS_MAX),
        ("Filter", "tags_any", FILTER_TAGS_MAX),
    ] {
        let p = &schemas[schema]["properties"][field];
        assert_eq!(p["maxItems"], max, "{schema}.{field}: {p}");
        assert_eq!(
            p["items"]["maxLength"], NAME_MAX_CHARS,
            "{schema}.{field}: {p}"
        );
        assert_eq!(p["items"]["pattern"], NAME_PATTERN, "{schema}.{field}: {p}");
    }
    let list = &spec["paths"]["/api/v1/devices"]["get"];
    let tags = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tags")
        .unwrap();
    assert!(
        tags["schema"]["maxLength"].as_u64().unwrap() >= NAME_MAX_CHARS as u64,
        "{tags}"
    );
    assert!(tags["schema"]["pattern"].is_string(), "{tags}");
    let answer = |path: &str, method: &str, code: &str| {
        spec["paths"][path][method]["responses"][code]["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} lacks {code}"))
            .to_owned()
    };
    assert!(answer("/api/v1/devices", "post", "413").contains("1 MiB"));
    assert!(answer("/api/v1/devices", "post", "408").contains("23 s"));
    assert!(answer("/api/v1/releases", "post", "413").contains("64 MiB"));
    let put = "/api/v1/releases/{id}/payloads/{index}";
    assert!(answer(put, "put", "413").contains("4 GiB"));
    assert!(answer(put, "put", "408").contains("17 s"));
    assert!(answer("/api/v1/device/reports", "post", "429").contains("120"));
    assert!(answer("/api/v1/device/reports", "post", "413").contains("4096"));
    let info = spec["info"]["description"].as_str().unwrap();
    for want in [
        "200 characters",
        "1 MiB",
        "64 MiB",
        "23 s",
        "17 s",
        "1024 bytes a second",
        "120 reports",
    ] {
        assert!(
            info.contains(want),
            "info.description lacks {want:?}: {info}"
        );
    }
    // What the description rules out, the server refuses.
    let (s, v) = h.get(&h.admin, "/api/v1/devices?tags=a%0A").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "bad-name", "{v}");
    let long = "t".repeat(FILTER_TAGS_MAX * (NAME_MAX_CHARS + 1));
    let (s, v) = h
        .get(&h.admin, &format!("/api/v1/devices?tags={long}"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = h.get(&h.admin, "/api/v1/devices?tags=a,%20b").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.stop().await;
}

/// A check-in nonce outside 8 to 32 bytes (docs/trust.md, "Freshness": at least 64 bits so
/// that a recorded answer cannot match a later check-in by chance, at most 32 bytes so that a
/// device cannot grow the signed answer) is refused with 400 `bad-nonce` over HTTP; a
/// 16-byte nonce gets a freshness statement.
#[tokio::test]
async fn oversized_checkin_nonce_is_refused_and_a_good_one_gets_a_statement() {
    let h = Harness::new(Backend::Sqlite).await;
    let devs = h.devices("nonce", 1, &["n"]).await;
    let tok = &devs[0].1;
    let checkin = |nonce: Vec<u8>| {
        let mut c = h.inventory(1);
        c.nonce = Some(nonce);
        h.client
            .post(h.url("/api/v1/device/checkin"))
            .bearer_auth(tok)
            .json(&c)
            .send()
    };
    for bad in [vec![1u8; 7], vec![1u8; 33], vec![1u8; 4096]] {
        let r = checkin(bad.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{} bytes", bad.len());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "bad-nonce", "{v}");
    }
    let r = checkin(vec![9u8; 16]).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let a: suitcase_protocol::CheckInAnswer = r.json().await.unwrap();
    assert!(a.freshness.is_some_and(|s| !s.is_empty()), "no statement");
}

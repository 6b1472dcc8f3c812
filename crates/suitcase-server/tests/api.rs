//! The server's API end to end over a loopback socket, on SQLite and on PostgreSQL: releases,
//! resumable downloads, campaigns that advance, pause and roll back, windows, rate limits,
//! consent, CBOR, jitter and the operational endpoints.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::std_instead_of_alloc,
    reason = "test code"
)]

mod common;

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::json;
use suitcase_protocol::{Action, CheckInAnswer, Outcome, Step};

both_backends!(
    openapi_health_and_metrics,
    release_upload_is_verified_against_registered_keys,
    interrupted_download_resumes_with_range,
    campaign_opens_waves_at_the_success_threshold,
    campaign_pauses_when_failures_reach_the_error_threshold,
    failed_wave_is_rolled_back_to_the_previous_release,
    window_rate_limit_and_consent,
    inventory_showing_the_release_counts_as_success,
    device_status_shows_every_step,
    campaign_aborts_on_errors_when_asked,
);

async fn campaign_aborts_on_errors_when_asked(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(60, &[6u8; 500]).await;
    let devs = h.devices("ab", 3, &["ab"]).await;
    let cid = h
        .campaign(
            json!({"name": "a", "release_id": rel, "filter": {"tags_all": ["ab"]},
                         "error_threshold": 0.3, "on_error": "abort"}),
        )
        .await;
    for (_, t) in &devs {
        assert_eq!(h.checkin(t, 1).await.action, Action::Update);
    }
    h.report(
        &devs[0].1,
        &rel,
        Step::Check,
        Outcome::Failure,
        Some("unauthenticated"),
    )
    .await;
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "cancelled", "{info}");
    assert_eq!(info["waves_progress"][0]["cancelled"], 2);
    // Nobody is offered the release any more.
    for (_, t) in &devs {
        assert_eq!(h.checkin(t, 1).await.action, Action::None);
    }
    h.stop().await;
}

async fn openapi_health_and_metrics(b: Backend) {
    let h = Harness::new(b).await;
    let r = h.client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: serde_json::Value = h
        .client
        .get(h.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/device/checkin",
        "/api/v1/device/reports",
        "/api/v1/device/payloads/{release_id}/{index}",
        "/api/v1/device/releases/{release_id}/envelope",
        "/api/v1/releases",
        "/api/v1/releases/{id}/payloads/{index}",
        "/api/v1/devices",
        "/api/v1/campaigns",
        "/api/v1/campaigns/{id}/{action}",
        "/api/v1/keys",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "openapi.json lacks {p}");
    }
    assert!(doc["components"]["schemas"]["CheckInAnswer"].is_object());
    // Metrics need a token; then they count what happened.
    let r = h.client.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let text = h
        .client
        .get(h.url("/metrics"))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("suitcase_http_requests_total"), "{text}");
    // An unknown endpoint says where the list is.
    let (s, v) = h.get(&h.admin, "/api/v1/nothing").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["hint"].as_str().unwrap().contains("openapi"));
    h.stop().await;
}

async fn release_upload_is_verified_against_registered_keys(b: Backend) {
    let h = Harness::new(b).await;
    let image = vec![7u8; 5000];
    // Signed by a key the server does not know: refused.
    let stranger = h.dir.path().join("stranger.key");
    let g = suitcase_author::keys::generate(suitcase_author::keys::KeyAlg::Es256, "h5w4").unwrap();
    suitcase_author::keys::write_atomic(&stranger, &g.private, true).unwrap();
    let mut forged = h.build(3, &image, "https://fw.example/x.bin");
    let env = h.build_signed(&stranger, 3, &image, "https://fw.example/x.bin");
    let (s, v) = h.upload_envelope(&h.admin, &env).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "untrusted-release");
    // Tampered after signing: refused.
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let (s, v) = h.upload_envelope(&h.admin, &forged).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Not an envelope at all.
    let (s, v) = h.upload_envelope(&h.admin, b"hello").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"], "not-an-envelope");
    // Genuine: accepted, incomplete until the payload arrives.
    let env = h.build(3, &image, "https://fw.example/x.bin");
    let (s, v) = h.upload_envelope(&h.admin, &env).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["sequence_number"], 3);
    assert_eq!(v["complete"], false);
    assert_eq!(v["signed_by"], json!(["author"]));
    assert_eq!(v["payloads"][0]["uri"], "https://fw.example/x.bin");
    let id = v["id"].as_str().unwrap().to_owned();
    // The same manifest twice: refused.
    let (s, v) = h.upload_envelope(&h.admin, &env).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"], "duplicate-release");
    // A payload that does not match the manifest: refused, nothing stored.
    let (s, v) = h.upload_payload(&h.admin, &id, 0, &[8u8; 5000]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "payload-mismatch");
    let (s, v) = h.upload_payload(&h.admin, &id, 0, &image[..4000]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A campaign cannot start on an incomplete release.
    let (s, v) = h
        .post(
            &h.admin,
            "/api/v1/campaigns",
            &json!({"name": "c", "release_id": id}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "release-incomplete");
    let (s, v) = h.upload_payload(&h.admin, &id, 0, &image).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["complete"], true);
    let (s, _) = h.upload_payload(&h.admin, &id, 0, &image).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Every step is in the audit log.
    let (_, audit) = h.get(&h.admin, "/api/v1/audit?limit=1000").await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"key.register"));
    assert!(actions.contains(&"release.upload"));
    assert!(actions.contains(&"release.payload"));
    h.stop().await;
}

async fn interrupted_download_resumes_with_range(b: Backend) {
    let h = Harness::new(b).await;
    let image: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let rel = h.release(5, &image).await;
    let devs = h.devices("dl", 2, &["dl"]).await;
    h.campaign(json!({"name": "dl", "release_id": rel, "filter": {"devices": [devs[0].0]}}))
        .await;
    let offer = h.checkin(&devs[0].1, 1).await.update.expect("an offer");
    let url = h.url(&offer.payloads[0].url);
    // The whole payload.
    let full = h
        .client
        .get(&url)
        .bearer_auth(&devs[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    let etag = full.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.bytes().await.unwrap().as_ref(), image.as_slice());
    // Cut after 30,000 bytes: resume from there, guarded by If-Range.
    let part = h
        .client
        .get(&url)
        .bearer_auth(&devs[0].1)
        .header("range", "bytes=30000-")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 30000-99999/100000");
    let mut joined = image[..30_000].to_vec();
    joined.extend_from_slice(&part.bytes().await.unwrap());
    assert_eq!(joined, image);
    // A stale validator gets the whole (current) payload, never a splice.
    let r = h
        .client
        .get(&url)
        .bearer_auth(&devs[0].1)
        .header("range", "bytes=30000-")
        .header("if-range", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), image.len());
    // Beyond the end: 416 with the size.
    let r = h
        .client
        .get(&url)
        .bearer_auth(&devs[0].1)
        .header("range", "bytes=200000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */100000");
    // Unchanged: 304.
    let r = h
        .client
        .get(&url)
        .bearer_auth(&devs[0].1)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // The envelope too.
    let r = h
        .client
        .get(h.url(&offer.manifest_url))
        .bearer_auth(&devs[0].1)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().len(), 10);
    // A device that was not offered the release cannot fetch it.
    let r = h
        .client
        .get(&url)
        .bearer_auth(&devs[1].1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    h.stop().await;
}

async fn campaign_opens_waves_at_the_success_threshold(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(10, &[1u8; 3000]).await;
    let devs = h.devices("w", 10, &["eu"]).await;
    let cid = h
        .campaign(json!({
            "name": "waves", "release_id": rel, "filter": {"tags_all": ["eu"]},
            "waves": [{"count": 2}, {"percent": 100.0}], "success_threshold": 1.0, "error_threshold": 0.5
        }))
        .await;
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "running");
    assert_eq!(info["opened_waves"], 1);
    assert_eq!(info["waves_progress"][0]["devices"], 2);
    assert_eq!(info["waves_progress"][1]["devices"], 8);
    // Only wave 0 is offered the update.
    let mut first = Vec::new();
    for (_, t) in &devs {
        let a = h.checkin(t, 1).await;
        if a.action == Action::Update {
            assert_eq!(a.update.as_ref().unwrap().release_id, rel);
            first.push(t.clone());
        }
    }
    assert_eq!(first.len(), 2);
    // One success is not enough (threshold 100%).
    h.succeed(&first[0], &rel).await;
    assert_eq!(h.campaign_info(&cid).await["opened_waves"], 1);
    h.succeed(&first[1], &rel).await;
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["opened_waves"], 2, "{info}");
    // Now everyone else is offered it, and finishing completes the campaign.
    let mut offered = 0;
    for (_, t) in &devs {
        if first.contains(t) {
            assert_eq!(h.checkin(t, 10).await.action, Action::None);
            continue;
        }
        let a = h.checkin(t, 1).await;
        assert_eq!(a.action, Action::Update);
        offered += 1;
        h.succeed(t, &rel).await;
    }
    assert_eq!(offered, 8);
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "completed", "{info}");
    assert_eq!(info["waves_progress"][1]["succeeded"], 8);
    h.stop().await;
}

async fn campaign_pauses_when_failures_reach_the_error_threshold(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(10, &[1u8; 3000]).await;
    let devs = h.devices("p", 8, &["p"]).await;
    let cid = h
        .campaign(json!({
            "name": "pause", "release_id": rel, "filter": {"tags_all": ["p"]},
            "waves": [{"count": 4}, {"percent": 100.0}], "error_threshold": 0.5
        }))
        .await;
    let mut wave0 = Vec::new();
    for (_, t) in &devs {
        if h.checkin(t, 1).await.action == Action::Update {
            wave0.push(t.clone());
        }
    }
    assert_eq!(wave0.len(), 4);
    h.report(&wave0[0], &rel, Step::Receive, Outcome::Success, None)
        .await;
    assert_eq!(
        h.report(
            &wave0[0],
            &rel,
            Step::Check,
            Outcome::Failure,
            Some("condition")
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.campaign_info(&cid).await["state"], "running");
    h.report(
        &wave0[1],
        &rel,
        Step::Apply,
        Outcome::Failure,
        Some("storage"),
    )
    .await;
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "paused", "{info}");
    assert!(
        info["state_reason"].as_str().unwrap().contains("2 of 4"),
        "{info}"
    );
    assert_eq!(info["waves_progress"][0]["failed"], 2);
    // Paused: devices already updating may finish, nobody new starts, no wave opens.
    assert_eq!(h.checkin(&wave0[2], 1).await.action, Action::Update);
    h.succeed(&wave0[2], &rel).await;
    h.succeed(&wave0[3], &rel).await;
    for (_, t) in &devs {
        if !wave0.contains(t) {
            assert_eq!(h.checkin(t, 1).await.action, Action::None);
        }
    }
    // The failed devices and their reasons are listed.
    let (_, failed) = h
        .get(
            &h.admin,
            &format!("/api/v1/campaigns/{cid}/devices?state=failed"),
        )
        .await;
    assert_eq!(failed.as_array().unwrap().len(), 2);
    // An operator cancels.
    let (s, v) = h
        .post(
            &h.admin,
            &format!("/api/v1/campaigns/{cid}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "cancelled");
    let (s, v) = h
        .post(
            &h.admin,
            &format!("/api/v1/campaigns/{cid}/resume"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    h.stop().await;
}

async fn failed_wave_is_rolled_back_to_the_previous_release(b: Backend) {
    let h = Harness::new(b).await;
    let bad = h.release(20, &[2u8; 3000]).await;
    // The previous image, re-signed above the bad release (anti-rollback).
    let good_again = h.release(21, &[1u8; 3000]).await;
    let too_low = h.release(19, &[1u8; 3001]).await;
    let devs = h.devices("rb", 4, &["rb"]).await;
    let (s, v) = h
        .post(&h.admin, "/api/v1/campaigns", &json!({
            "name": "x", "release_id": bad, "on_error": "rollback", "rollback_release_id": too_low
        }))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "rollback-sequence");
    let cid = h
        .campaign(json!({
            "name": "rb", "release_id": bad, "filter": {"tags_all": ["rb"]},
            "waves": [{"count": 2}, {"percent": 100.0}],
            "error_threshold": 0.5, "on_error": "rollback", "rollback_release_id": good_again
        }))
        .await;
    let mut wave0 = Vec::new();
    for (_, t) in &devs {
        if h.checkin(t, 1).await.action == Action::Update {
            wave0.push(t.clone());
        }
    }
    assert_eq!(wave0.len(), 2);
    // One installs it, the other fails its health check after activation.
    h.succeed(&wave0[0], &bad).await;
    h.report(
        &wave0[1],
        &bad,
        Step::CleanUp,
        Outcome::Failure,
        Some("health-check"),
    )
    .await;
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "rolled_back", "{info}");
    // Both wave-0 devices are now offered the rollback release; the rest nothing.
    for t in &wave0 {
        let a = h.checkin(t, 20).await;
        let offer = a.update.expect("a rollback offer");
        assert!(offer.rollback);
        assert_eq!(offer.release_id, good_again);
        assert_eq!(offer.sequence_number, 21);
        h.succeed(t, &good_again).await;
    }
    for (_, t) in &devs {
        if !wave0.contains(t) {
            assert_eq!(h.checkin(t, 1).await.action, Action::None);
        }
    }
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["waves_progress"][0]["rolled_back"], 2, "{info}");
    assert_eq!(info["waves_progress"][1]["cancelled"], 2, "{info}");
    h.stop().await;
}

async fn window_rate_limit_and_consent(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(30, &[3u8; 1000]).await;
    let devs = h.devices("win", 3, &["win"]).await;
    // The harness clock starts at 1_800_000_000 = 2027-01-15 08:00 UTC (a Friday).
    let now = 1_800_000_000i64;
    let minute = (now % 86_400) / 60;
    let start = (minute + 60) % 1440; // opens in an hour, for two hours
    h.campaign(json!({
        "name": "w", "release_id": rel, "filter": {"tags_all": ["win"]},
        "window": {"start_minute": start, "end_minute": (start + 120) % 1440},
        "rate_per_minute": 1, "requires_consent": true
    }))
    .await;
    let a = h.checkin(&devs[0].1, 1).await;
    assert_eq!(a.action, Action::None);
    assert!(
        (3600..=3960).contains(&a.next_poll_seconds),
        "{}",
        a.next_poll_seconds
    );
    h.advance(3600);
    // Inside the window, one device per minute starts; the offer asks for consent.
    let a = h.checkin(&devs[0].1, 1).await;
    let offer = a.update.expect("offer inside the window");
    assert!(offer.requires_consent);
    assert!(!offer.rollback);
    let b2 = h.checkin(&devs[1].1, 1).await;
    assert_eq!(
        b2.action,
        Action::None,
        "the rate limit holds the second device"
    );
    h.advance(61);
    assert_eq!(h.checkin(&devs[1].1, 1).await.action, Action::Update);
    // A device that already started keeps its offer even when the window closes.
    h.advance(3 * 3600);
    assert_eq!(h.checkin(&devs[0].1, 1).await.action, Action::Update);
    assert_eq!(h.checkin(&devs[2].1, 1).await.action, Action::None);
    h.stop().await;
}

async fn inventory_showing_the_release_counts_as_success(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(40, &[4u8; 1000]).await;
    let devs = h.devices("inv", 1, &["inv"]).await;
    let cid = h
        .campaign(json!({"name": "i", "release_id": rel, "filter": {"tags_all": ["inv"]}}))
        .await;
    assert_eq!(h.checkin(&devs[0].1, 1).await.action, Action::Update);
    // The device's reports were lost, but it now runs sequence 40: success.
    assert_eq!(h.checkin(&devs[0].1, 40).await.action, Action::None);
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "completed", "{info}");
    // Its inventory is stored.
    let (_, d) = h
        .get(&h.admin, &format!("/api/v1/devices/{}", devs[0].0))
        .await;
    assert_eq!(d["sequence_number"], 40);
    assert_eq!(d["inventory"]["components"][0]["sequence_number"], 40);
    h.stop().await;
}

async fn device_status_shows_every_step(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(50, &[5u8; 1000]).await;
    let devs = h.devices("st", 1, &[]).await;
    h.campaign(json!({"name": "s", "release_id": rel, "filter": {"devices": ["st-0"]}}))
        .await;
    h.checkin(&devs[0].1, 1).await;
    for step in [Step::Receive, Step::Check, Step::Announce] {
        h.report(&devs[0].1, &rel, step, Outcome::Success, None)
            .await;
    }
    h.report(
        &devs[0].1,
        &rel,
        Step::Distribute,
        Outcome::InProgress,
        None,
    )
    .await;
    let (_, d) = h.get(&h.admin, "/api/v1/devices/st-0").await;
    let steps = d["update"]["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["receive", "check", "announce", "distribute"]);
    assert_eq!(steps[3]["outcome"], "in-progress");
    assert_eq!(d["update"]["state"], "in_progress");
    // The device sees the same through its own endpoint, in CBOR if it likes.
    let r = h
        .client
        .get(h.url("/api/v1/device/state"))
        .bearer_auth(&devs[0].1)
        .header("accept", "application/cbor")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/cbor");
    let me: suitcase_protocol::DeviceSelf =
        ciborium::from_reader(r.bytes().await.unwrap().as_ref()).unwrap();
    assert_eq!(me.name, "st-0");
    assert_eq!(me.update.unwrap().steps.len(), 4);
    // A CBOR check-in gets a CBOR answer.
    let mut body = Vec::new();
    ciborium::into_writer(&h.inventory(1), &mut body).unwrap();
    let r = h
        .client
        .post(h.url("/api/v1/device/checkin"))
        .bearer_auth(&devs[0].1)
        .header("content-type", "application/cbor")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let a: CheckInAnswer = ciborium::from_reader(r.bytes().await.unwrap().as_ref()).unwrap();
    assert_eq!(a.action, Action::Update);
    // Next-poll times are jittered around the interval (300 s by default).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let n = h.checkin(&devs[0].1, 1).await.next_poll_seconds;
        assert!((225..=375).contains(&n), "{n}");
        seen.insert(n);
    }
    assert!(seen.len() > 5, "no jitter: {seen:?}");
    h.stop().await;
}

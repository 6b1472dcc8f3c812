//! Quarantine (RFC 8240 §9) end to end over a loopback socket, on SQLite and on PostgreSQL:
//! an operator's quarantine, the server's own on suspicious reports, remediation releases,
//! release from quarantine, and the fleet posture (docs/server.md §8).

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use core::time::Duration;

use common::{Backend, Harness, mqtt_harness, mqtt_listener, next_topic};
use reqwest::StatusCode;
use serde_json::{Value, json};
use suitcase_protocol::{Action, Outcome, Step};

both_backends!(
    operator_quarantine_offers_only_remediation_releases,
    release_from_quarantine_restores_offers,
    attack_compromised_device_repeated_signature_failures_quarantined,
    attack_report_for_release_never_offered_quarantines,
    attack_rollback_refusal_contradicting_the_inventory_quarantines,
    posture_counts_up_to_date_out_of_date_quarantined_unreachable,
    bad_quarantine_requests_are_clear_4xx,
    console_quarantines_with_confirmation_and_shows_badges_and_posture,
    ddi_poll_of_a_quarantined_device_offers_only_remediation,
    attack_signature_failures_on_two_nodes_at_once_quarantine_and_audit_once,
    attack_author_token_cannot_mark_remediation,
);

/// MQTT push (docs/server.md §6) to a quarantined device: only for a remediation release.
/// Needs the broker on 127.0.0.1:1883 that .ci/run starts (as tests/transport.rs does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_wakes_a_quarantined_device_only_for_a_remediation_release() {
    let (h, _) = mqtt_harness().await;
    let rel = h.release(3, &[11u8; 300]).await;
    let devs = h.devices("mp", 3, &[]).await;
    let mut topics = Vec::new();
    for (_, t) in &devs {
        topics.push(h.checkin(t, 1).await.push.unwrap().topics[0].clone());
    }
    let (_client, mut rx) = mqtt_listener(&topics).await;
    assert_eq!(quarantine(&h, &devs[0].0, "check").await.0, StatusCode::OK);
    assert_eq!(quarantine(&h, &devs[2].0, "check").await.0, StatusCode::OK);
    h.campaign(json!({"name": "n", "release_id": rel, "filter": {"devices": ["mp-0", "mp-1"]}}))
        .await;
    assert_eq!(
        next_topic(&mut rx, 10_000).await.as_deref(),
        Some(topics[1].as_str())
    );
    assert_eq!(
        next_topic(&mut rx, 500).await,
        None,
        "no push to the quarantined mp-0"
    );
    // A remediation release wakes the quarantined mp-2.
    let fix = h.release(4, &[12u8; 300]).await;
    h.mark_remediation(&fix).await;
    h.campaign(json!({"name": "r", "release_id": fix, "filter": {"devices": ["mp-2"]}}))
        .await;
    assert_eq!(
        next_topic(&mut rx, 10_000).await.as_deref(),
        Some(topics[2].as_str())
    );
    h.stop().await;
}

/// A group's topic reaches every member, so it is not pushed at campaign start while the
/// group holds a quarantined device, unless the release is remediation (RFC 8240 §9); the
/// healthy member is still woken on its own topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_push_skips_a_group_holding_a_quarantined_device() {
    let (h, _) = mqtt_harness().await;
    let rel = h.release(3, &[13u8; 300]).await;
    let devs = h.devices("gp", 2, &[]).await;
    let (s, v) = h
        .post(
            &h.admin,
            "/api/v1/groups",
            &json!({"name": "lab", "devices": ["gp-0", "gp-1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut topics = Vec::new();
    for (_, t) in &devs {
        topics.push(h.checkin(t, 1).await.push.unwrap().topics);
    }
    let own: Vec<String> = topics.iter().map(|t| t[0].clone()).collect();
    let group = topics[0][1].clone();
    assert_eq!(topics[1][1], group);
    let all = vec![own[0].clone(), own[1].clone(), group.clone()];
    let (_client, mut rx) = mqtt_listener(&all).await;
    assert_eq!(quarantine(&h, &devs[0].0, "check").await.0, StatusCode::OK);
    let first = h
        .campaign(json!({"name": "g", "release_id": rel, "filter": {"group": "lab"}}))
        .await;
    assert_eq!(
        next_topic(&mut rx, 10_000).await.as_deref(),
        Some(own[1].as_str())
    );
    assert_eq!(
        next_topic(&mut rx, 500).await,
        None,
        "neither the group topic nor the quarantined gp-0's own"
    );
    // A remediation release may use the group topic.
    let fix = h.release(4, &[14u8; 300]).await;
    h.mark_remediation(&fix).await;
    h.cancel_campaign(&first).await;
    h.campaign(json!({"name": "r", "release_id": fix, "filter": {"group": "lab"}}))
        .await;
    let mut seen = Vec::new();
    while let Some(t) = next_topic(&mut rx, 3_000).await {
        seen.push(t);
        assert!(seen.len() <= 3, "{seen:?}");
    }
    seen.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(seen, want, "the group topic and both members' own");
    h.stop().await;
}

/// A release of `sequence` (a 300-byte image of `byte`) offered by a campaign that no error
/// threshold stops to one device tagged `tag`, which has checked in and been told to update:
/// the release and the device's id and token.
async fn offered_one(h: &Harness, sequence: u64, byte: u8, tag: &str) -> (String, String, String) {
    let rel = h.release(sequence, &[byte; 300]).await;
    let (id, token) = h.devices(tag, 1, &[tag]).await.remove(0);
    h.campaign(
        json!({"name": "c", "release_id": rel, "filter": {"tags_all": [tag]},
                      "error_threshold": 1.0}),
    )
    .await;
    assert_eq!(h.checkin(&token, 1).await.action, Action::Update);
    (rel, id, token)
}

async fn quarantine(h: &Harness, device: &str, reason: &str) -> (StatusCode, Value) {
    h.post(
        &h.admin,
        &format!("/api/v1/devices/{device}/quarantine"),
        &json!({ "reason": reason }),
    )
    .await
}

async fn unquarantine(h: &Harness, device: &str) -> (StatusCode, Value) {
    common_send(
        h.client
            .delete(h.url(&format!("/api/v1/devices/{device}/quarantine")))
            .bearer_auth(&h.admin),
    )
    .await
}

async fn common_send(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
    suitcase_test_support::send(r).await
}

async fn quarantine_of(h: &Harness, device: &str) -> Value {
    let (s, v) = h
        .get(&h.admin, &format!("/api/v1/devices/{device}/quarantine"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn envelope_status(h: &Harness, device_token: &str, release: &str) -> StatusCode {
    h.status_of(
        h.client
            .get(h.url(&format!("/api/v1/device/releases/{release}/envelope"))),
        device_token,
    )
    .await
}

async fn audit_actions(h: &Harness, action: &str) -> Vec<Value> {
    let (s, v) = h.get(&h.admin, "/api/v1/audit").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

async fn operator_quarantine_offers_only_remediation_releases(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(2, &[2u8; 300]).await;
    let devs = h.devices("oq", 2, &["oq"]).await;
    let (quarantined, healthy) = (&devs[0], &devs[1]);
    let (s, v) = quarantine(&h, &quarantined.0, "tampering suspected").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["quarantined"], true);
    assert_eq!(v["quarantine"]["by"], "operator");
    assert_eq!(v["quarantine"]["reason"], "tampering suspected");
    h.campaign(json!({"name": "c", "release_id": rel, "filter": {"tags_all": ["oq"]}}))
        .await;
    // A normal release: not offered, not downloadable; the healthy device gets it.
    assert_eq!(h.checkin(&quarantined.1, 1).await.action, Action::None);
    assert_eq!(h.checkin(&healthy.1, 1).await.action, Action::Update);
    assert_eq!(
        envelope_status(&h, &quarantined.1, &rel).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(envelope_status(&h, &healthy.1, &rel).await, StatusCode::OK);
    // Marked remediation by an admin: now the quarantined device is offered it.
    let (s, v) = h
        .post(
            &h.admin,
            &format!("/api/v1/releases/{rel}/remediation"),
            &json!({"remediation": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["remediation"], true);
    let answer = h.checkin(&quarantined.1, 1).await;
    assert_eq!(answer.action, Action::Update);
    assert_eq!(answer.update.unwrap().release_id, rel);
    assert_eq!(
        envelope_status(&h, &quarantined.1, &rel).await,
        StatusCode::OK
    );
    // Its reports are stored flagged; the healthy device's are not.
    h.succeed(&quarantined.1, &rel).await;
    h.succeed(&healthy.1, &rel).await;
    let q = quarantine_of(&h, &quarantined.0).await;
    assert_eq!(
        q["flagged_reports"].as_array().unwrap().len(),
        Step::ALL.len(),
        "{q}"
    );
    assert_eq!(q["flagged_reports"][0]["release_id"], rel.as_str());
    let q = quarantine_of(&h, &healthy.0).await;
    assert_eq!(q["quarantined"], false);
    assert!(q["flagged_reports"].as_array().unwrap().is_empty(), "{q}");
    let audit = audit_actions(&h, "device.quarantine").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["target"], quarantined.0.as_str());
    assert_eq!(audit[0]["role"], "admin");
    assert_eq!(audit_actions(&h, "release.remediation").await.len(), 1);
    h.stop().await;
}

async fn release_from_quarantine_restores_offers(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(2, &[3u8; 300]).await;
    let devs = h.devices("rq", 1, &["rq"]).await;
    let (id, token) = &devs[0];
    assert_eq!(quarantine(&h, id, "check").await.0, StatusCode::OK);
    // Twice is a conflict naming the device, not a second audit entry.
    let (s, v) = quarantine(&h, id, "again").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "already-quarantined");
    h.campaign(json!({"name": "c", "release_id": rel, "filter": {"tags_all": ["rq"]}}))
        .await;
    assert_eq!(h.checkin(token, 1).await.action, Action::None);
    let (s, v) = unquarantine(&h, id).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["quarantined"], false);
    // The device carries on in its campaign.
    let answer = h.checkin(token, 1).await;
    assert_eq!(answer.action, Action::Update);
    assert_eq!(envelope_status(&h, token, &rel).await, StatusCode::OK);
    h.succeed(token, &rel).await;
    let q = quarantine_of(&h, id).await;
    assert!(q["flagged_reports"].as_array().unwrap().is_empty(), "{q}");
    let (s, v) = unquarantine(&h, id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "not-quarantined");
    assert_eq!(audit_actions(&h, "device.quarantine").await.len(), 1);
    assert_eq!(audit_actions(&h, "device.unquarantine").await.len(), 1);
    h.stop().await;
}

/// RFC 8240 §9: a device that keeps refusing the signatures of releases the server verified
/// at upload (manifest §6.2) is quarantined by the server, once, with the reports as evidence.
async fn attack_compromised_device_repeated_signature_failures_quarantined(b: Backend) {
    let h = Harness::new(b).await;
    let (rel, id, token) = offered_one(&h, 2, 4, "sf").await;
    let (id, token) = (&id, &token);
    let fail = || {
        h.report(
            token,
            &rel,
            Step::Check,
            Outcome::Failure,
            Some("signature"),
        )
    };
    // Other failures do not count.
    assert_eq!(
        h.report(token, &rel, Step::Receive, Outcome::Failure, Some("fetch"))
            .await,
        StatusCode::NO_CONTENT
    );
    for _ in 0..2 {
        assert_eq!(fail().await, StatusCode::NO_CONTENT);
    }
    assert_eq!(quarantine_of(&h, id).await["quarantined"], false);
    assert_eq!(fail().await, StatusCode::NO_CONTENT);
    let q = quarantine_of(&h, id).await;
    assert_eq!(q["quarantined"], true, "{q}");
    assert_eq!(q["quarantine"]["by"], "rule");
    assert_eq!(q["quarantine"]["rule"], "signature-failures");
    assert_eq!(
        q["quarantine"]["evidence"].as_array().unwrap().len(),
        3,
        "{q}"
    );
    // The evidence is flagged; the fetch failure is not.
    let flagged = q["flagged_reports"].as_array().unwrap();
    assert_eq!(flagged.len(), 3, "{q}");
    assert!(flagged.iter().all(|r| r["reason"] == "signature"), "{q}");
    // A fourth failure is stored flagged and quarantines nothing again.
    assert_eq!(fail().await, StatusCode::NO_CONTENT);
    assert_eq!(
        quarantine_of(&h, id).await["flagged_reports"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let audit = audit_actions(&h, "device.quarantine").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["actor"], "server");
    h.stop().await;
}

/// RFC 8240 §9 (docs/server.md §3): a genuine agent reports only on what it was offered; a
/// device reporting on a release it was never a member for is quarantined. One whose offer
/// was withdrawn (campaign cancelled) is only told `409 not-offered`.
async fn attack_report_for_release_never_offered_quarantines(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(2, &[5u8; 300]).await;
    let devs = h.devices("no", 2, &["no"]).await;
    let (rogue, cancelled) = (&devs[0], &devs[1]);
    let cid = h
        .campaign(json!({"name": "c", "release_id": rel, "filter": {"devices": [cancelled.0]}}))
        .await;
    h.cancel_campaign(&cid).await;
    assert_eq!(
        h.report(&cancelled.1, &rel, Step::Receive, Outcome::InProgress, None)
            .await,
        StatusCode::CONFLICT
    );
    assert_eq!(quarantine_of(&h, &cancelled.0).await["quarantined"], false);
    // A release never offered, and one that does not exist.
    assert_eq!(
        h.report(&rogue.1, &rel, Step::CleanUp, Outcome::Success, None)
            .await,
        StatusCode::CONFLICT
    );
    let q = quarantine_of(&h, &rogue.0).await;
    assert_eq!(q["quarantined"], true, "{q}");
    assert_eq!(q["quarantine"]["rule"], "never-offered");
    let evidence = q["quarantine"]["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 1, "{q}");
    assert_eq!(q["flagged_reports"][0]["id"], evidence[0]);
    assert_eq!(q["flagged_reports"][0]["step"], "clean-up");
    // More such reports are refused and not kept: growth is bounded.
    assert_eq!(
        h.report(
            &rogue.1,
            "rel_madeup",
            Step::CleanUp,
            Outcome::Success,
            None
        )
        .await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        quarantine_of(&h, &rogue.0).await["flagged_reports"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(audit_actions(&h, "device.quarantine").await.len(), 1);
    h.stop().await;
}

/// Manifest §8.4.2: the server offered release 5 because the check-in said 1 is installed;
/// a refusal of 5 as a rollback contradicts that inventory.
async fn attack_rollback_refusal_contradicting_the_inventory_quarantines(b: Backend) {
    let h = Harness::new(b).await;
    let (rel, id, token) = offered_one(&h, 5, 6, "rb").await;
    let (id, token) = (&id, &token);
    assert_eq!(
        h.report(
            token,
            &rel,
            Step::Check,
            Outcome::Failure,
            Some("sequence-rollback")
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let q = quarantine_of(&h, id).await;
    assert_eq!(q["quarantined"], true, "{q}");
    assert_eq!(q["quarantine"]["rule"], "rollback-attempt");
    assert_eq!(q["quarantine"]["evidence"].as_array().unwrap().len(), 1);
    h.stop().await;
}

async fn posture_counts_up_to_date_out_of_date_quarantined_unreachable(b: Backend) {
    let h = Harness::with(b, |c| {
        c.quarantine.unreachable_after = Duration::from_secs(1000);
    })
    .await;
    h.release(2, &[7u8; 300]).await;
    let devs = h.devices("po", 4, &[]).await;
    // po-3 checks in long ago, at sequence 1: out of date and unreachable.
    h.checkin(&devs[3].1, 1).await;
    h.advance(2000);
    h.checkin(&devs[0].1, 2).await; // up to date
    h.checkin(&devs[1].1, 1).await; // out of date
    // po-2 never checks in.
    assert_eq!(quarantine(&h, &devs[1].0, "check").await.0, StatusCode::OK);
    let (s, p) = h.get(&h.admin, "/api/v1/fleet/posture").await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["devices"], 4, "{p}");
    assert_eq!(p["up_to_date"], 1, "{p}");
    assert_eq!(p["out_of_date"], 2, "{p}");
    assert_eq!(p["unknown"], 1, "{p}");
    assert_eq!(p["quarantined"], 1, "{p}");
    assert_eq!(p["unreachable"], 1, "{p}");
    assert_eq!(p["never_seen"], 1, "{p}");
    assert_eq!(p["unreachable_after_seconds"], 1000, "{p}");
    // A viewer may read it.
    let viewer = h.token("viewer").await;
    assert_eq!(
        h.get(&viewer, "/api/v1/fleet/posture").await.0,
        StatusCode::OK
    );
    h.stop().await;
}

async fn bad_quarantine_requests_are_clear_4xx(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(2, &[8u8; 300]).await;
    let devs = h.devices("bq", 1, &[]).await;
    let (s, v) = quarantine(&h, "no-such-device", "x").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("no-such-device"),
        "{v}"
    );
    let (s, v) = unquarantine(&h, "no-such-device").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let path = format!("/api/v1/devices/{}/quarantine", devs[0].0);
    for bad in [
        json!({}),
        json!({"reason": 5}),
        json!({"reason": ""}),
        json!({"reason": "a\nb"}),
        json!({"reason": "x", "extra": 1}),
    ] {
        let (s, v) = h.post(&h.admin, &path, &bad).await;
        assert!(s.is_client_error(), "{bad}: {s} {v}");
        assert!(
            v["error"].is_string() && v["message"].is_string(),
            "{bad}: {v}"
        );
    }
    assert_eq!(quarantine_of(&h, &devs[0].0).await["quarantined"], false);
    // Only an admin quarantines or marks remediation.
    let operator = h.token("operator").await;
    let (s, _) = h.post(&operator, &path, &json!({"reason": "x"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h
        .post(
            &operator,
            &format!("/api/v1/releases/{rel}/remediation"),
            &json!({"remediation": true}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h
        .post(
            &h.admin,
            "/api/v1/releases/rel_nope/remediation",
            &json!({"remediation": true}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = h
        .post(
            &h.admin,
            &format!("/api/v1/releases/{rel}/remediation"),
            &json!({"remediation": "yes"}),
        )
        .await;
    assert!(s.is_client_error(), "{s} {v}");
    // The endpoints are described, with their conflicts and the reason's name rule.
    let (s, spec) = h.get(&h.admin, "/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let q = &spec["paths"]["/api/v1/devices/{id}/quarantine"];
    assert!(q["post"]["responses"]["409"].is_object(), "{q}");
    assert!(q["delete"]["responses"]["409"].is_object(), "{q}");
    assert!(q["post"]["responses"]["400"].is_object(), "{q}");
    assert!(spec["paths"]["/api/v1/fleet/posture"]["get"].is_object());
    assert!(spec["paths"]["/api/v1/releases/{id}/remediation"]["post"].is_object());
    let reason = &spec["components"]["schemas"]["QuarantineRequest"]["properties"]["reason"];
    assert!(reason["pattern"].is_string(), "{reason}");
    // The answers are suitcase-protocol's types (mgmt.rs), under their names.
    assert!(spec["components"]["schemas"]["FleetPosture"]["properties"]["out_of_date"].is_object());
    let dq = &spec["components"]["schemas"]["DeviceQuarantine"]["properties"];
    assert!(dq["flagged_reports"].is_object(), "{dq}");
    let (s, v) = h
        .get(&h.admin, &format!("/api/v1/releases/{rel}/remediation"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["remediation"], false);
    h.stop().await;
}

/// A console POST as a browser sends it: a form, the session cookie, this origin.
async fn console_post(
    h: &Harness,
    client: &reqwest::Client,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect();
    client
        .post(h.url(path))
        .header("cookie", cookie)
        .header("origin", &h.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap()
}

async fn console_page(h: &Harness, client: &reqwest::Client, cookie: &str, path: &str) -> String {
    let r = client
        .get(h.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.text().await.unwrap()
}

async fn console_quarantines_with_confirmation_and_shows_badges_and_posture(b: Backend) {
    let h = Harness::new(b).await;
    let devs = h.devices("cq", 1, &[]).await;
    let id = &devs[0].0;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signin = |token: String| {
        let client = client.clone();
        let h = &h;
        async move {
            let r = console_post(h, &client, "", "/ui/signin", &[("token", &token)]).await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
            let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
            set.split(';').next().unwrap().to_owned()
        }
    };
    let admin = signin(h.admin.clone()).await;
    let page = console_page(&h, &client, &admin, &format!("/ui/devices/{id}")).await;
    assert!(page.contains("Not quarantined."), "{page}");
    assert!(
        page.contains("name=\"confirm\" value=\"yes\" required"),
        "{page}"
    );
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page[at..at + page[at..].find('"').unwrap()].to_owned();
    let path = format!("/ui/devices/{id}/quarantine");
    // Not confirmed: refused, nothing changes.
    let r = console_post(
        &h,
        &client,
        &admin,
        &path,
        &[("csrf", &csrf), ("reason", "odd")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(quarantine_of(&h, id).await["quarantined"], false);
    let r = console_post(
        &h,
        &client,
        &admin,
        &path,
        &[
            ("csrf", &csrf),
            ("reason", "odd traffic"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let q = quarantine_of(&h, id).await;
    assert_eq!(q["quarantine"]["reason"], "odd traffic", "{q}");
    let page = console_page(&h, &client, &admin, &format!("/ui/devices/{id}")).await;
    assert!(page.contains("s-quarantined"), "{page}");
    assert!(page.contains("Release from quarantine"), "{page}");
    let fleet = console_page(&h, &client, &admin, "/ui/fleet").await;
    assert!(fleet.contains("s-quarantined"), "{fleet}");
    assert!(fleet.contains("<dt>Quarantined</dt><dd>1</dd>"), "{fleet}");
    // A viewer sees the state but no action, and its POST is refused.
    let viewer = signin(h.token("viewer").await).await;
    let page = console_page(&h, &client, &viewer, &format!("/ui/devices/{id}")).await;
    assert!(page.contains("s-quarantined") && !page.contains("Release from quarantine"));
    let r = console_post(
        &h,
        &client,
        &viewer,
        &format!("/ui/devices/{id}/unquarantine"),
        &[("csrf", &csrf), ("confirm", "yes")],
    )
    .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = console_post(
        &h,
        &client,
        &admin,
        &format!("/ui/devices/{id}/unquarantine"),
        &[("csrf", &csrf), ("confirm", "yes")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(quarantine_of(&h, id).await["quarantined"], false);
    h.stop().await;
}

/// A hawkBit DDI poll (docs/ddi.md) of device `name`: its deploymentBase link, if any.
async fn ddi_deployment(h: &Harness, name: &str, token: &str) -> Option<String> {
    let r = h
        .client
        .get(h.url(&format!("/DEFAULT/controller/v1/{name}")))
        .header("authorization", format!("TargetToken {token}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["_links"]["deploymentBase"]["href"]
        .as_str()
        .map(str::to_owned)
}

async fn ddi_poll_of_a_quarantined_device_offers_only_remediation(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(2, &[9u8; 300]).await;
    let devs = h.devices("dq", 2, &["dq"]).await;
    assert_eq!(quarantine(&h, &devs[0].0, "check").await.0, StatusCode::OK);
    h.campaign(json!({"name": "c", "release_id": rel, "filter": {"tags_all": ["dq"]}}))
        .await;
    assert_eq!(ddi_deployment(&h, "dq-0", &devs[0].1).await, None);
    let healthy = ddi_deployment(&h, "dq-1", &devs[1].1).await;
    assert!(healthy.is_some());
    let (s, _) = h
        .post(
            &h.admin,
            &format!("/api/v1/releases/{rel}/remediation"),
            &json!({"remediation": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let href = ddi_deployment(&h, "dq-0", &devs[0].1)
        .await
        .expect("a remediation release is offered over DDI");
    // Marked normal again: the open action's deployment is not served any more.
    let (s, _) = h
        .post(
            &h.admin,
            &format!("/api/v1/releases/{rel}/remediation"),
            &json!({"remediation": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = h
        .client
        .get(&href)
        .header("authorization", format!("TargetToken {}", devs[0].1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    h.stop().await;
}

/// Two server nodes on one database judge the same device's signature failures at the same
/// moment: the device is quarantined once, with one audit entry.
async fn attack_signature_failures_on_two_nodes_at_once_quarantine_and_audit_once(b: Backend) {
    let h = Harness::with(b, |c| c.quarantine.signature_failures = 2).await;
    let (node_b, _) = suitcase_server::start(h.config.clone()).await.unwrap();
    let other = node_b.url();
    let (rel, id, token) = offered_one(&h, 2, 10, "mq").await;
    let (id, token) = (&id, &token);
    let report = |base: String, detail: &'static str| {
        let client = h.client.clone();
        let token = token.clone();
        let rel = rel.clone();
        async move {
            client
                .post(format!("{base}/api/v1/device/reports"))
                .bearer_auth(token)
                .json(
                    &json!({"release_id": rel, "step": "check", "outcome": "failure",
                              "reason": "signature", "detail": detail}),
                )
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        report(h.base.clone(), "first").await,
        StatusCode::NO_CONTENT
    );
    // Both nodes see two failures at once, and both try to quarantine.
    let (a, b2) = tokio::join!(
        report(h.base.clone(), "second"),
        report(other.clone(), "third")
    );
    assert_eq!((a, b2), (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT));
    let q = quarantine_of(&h, id).await;
    assert_eq!(q["quarantine"]["rule"], "signature-failures", "{q}");
    let audit = audit_actions(&h, "device.quarantine").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    node_b.shutdown().await;
    h.stop().await;
}

async fn upload_remediation(h: &Harness, token: &str, envelope: &[u8]) -> (StatusCode, Value) {
    common_send(
        h.client
            .post(h.url("/api/v1/releases?name=fix&remediation=true"))
            .bearer_auth(token)
            .header("content-type", suitcase_protocol::SUIT_MEDIA_TYPE)
            .body(envelope.to_vec()),
    )
    .await
}

/// RFC 8240 §9, docs/server.md §8: remediation is the only release a quarantined device is
/// offered, and marking one is the admin's. An author token uploading with
/// `?remediation=true` is refused (403 naming the admin role) and stores nothing, so it
/// cannot reach a quarantined device; the admin's upload is marked in the same write.
async fn attack_author_token_cannot_mark_remediation(b: Backend) {
    let h = Harness::new(b).await;
    let author = h.token("author").await;
    let devs = h.devices("ar", 1, &["ar"]).await;
    let (id, token) = &devs[0];
    assert_eq!(quarantine(&h, id, "suspect").await.0, StatusCode::OK);
    let image = [7u8; 300];
    let env = h.build(5, &image, "https://fw.example/fix.bin");
    let (s, v) = upload_remediation(&h, &author, &env).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "forbidden");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("remediation") && message.contains("admin role"),
        "{v}"
    );
    assert!(v["hint"].as_str().unwrap().contains("remediation"), "{v}");
    // Nothing was stored or audited.
    let (s, list) = h.get(&h.admin, "/api/v1/releases").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    assert!(audit_actions(&h, "release.upload").await.is_empty());
    // The author may upload it unmarked; the quarantined device is still offered nothing.
    let (s, v) = h.upload_envelope(&author, &env).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rel = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.upload_payload(&author, &rel, 0, &image).await.0,
        StatusCode::OK
    );
    let (s, v) = h
        .get(&h.admin, &format!("/api/v1/releases/{rel}/remediation"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["remediation"], false);
    h.campaign(json!({"name": "c", "release_id": rel, "filter": {"tags_all": ["ar"]}}))
        .await;
    assert_eq!(h.checkin(token, 1).await.action, Action::None);
    // Changing the mark afterwards is the admin's too.
    let (s, v) = h
        .post(
            &author,
            &format!("/api/v1/releases/{rel}/remediation"),
            &json!({"remediation": true}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(h.checkin(token, 1).await.action, Action::None);
    // The admin's upload with the mark: stored marked, audited as such.
    let env2 = h.build(6, &image, "https://fw.example/fix2.bin");
    let (s, v) = upload_remediation(&h, &h.admin, &env2).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rel2 = v["id"].as_str().unwrap().to_owned();
    let (s, v) = h
        .get(&h.admin, &format!("/api/v1/releases/{rel2}/remediation"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["remediation"], true);
    let audit = audit_actions(&h, "release.upload").await;
    let marked: Vec<&Value> = audit
        .iter()
        .filter(|e| e["target"] == rel2.as_str())
        .collect();
    assert_eq!(marked.len(), 1, "{audit:?}");
    let detail: Value = serde_json::from_str(marked[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["remediation"], true, "{audit:?}");
    h.stop().await;
}

//! Reports of an install from an offline bundle (docs/bundles.md, `StepReport.offline`): the
//! server accepts them for a release it knows (by id or manifest digest) although it never
//! offered it, records them in the device's timeline marked offline, moves no campaign, and
//! still refuses an online report on a release it never offered (the offer gate).

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::{Value, json};
use suitcase_protocol::{Outcome, Step, StepReport};

both_backends!(
    offline_reports_are_recorded_marked_offline_and_move_no_campaign,
    attack_offline_report_on_a_release_for_another_class_is_refused,
    offline_reports_do_not_enter_a_campaigns_status_of_the_same_release,
    rollback_check_is_bounded_over_the_campaigns_devices_not_the_fleet,
    offline_report_names_a_release_by_the_first_64_characters_of_its_digest,
);

fn report(release: &str, step: Step, offline: bool) -> StepReport {
    StepReport {
        release_id: release.into(),
        step,
        outcome: Outcome::Success,
        reason: None,
        detail: Some("from a bundle".into()),
        progress: None,
        started_at: None,
        log: None,
        suit_report: None,
        offline,
    }
}

async fn send(h: &Harness, token: &str, r: &StepReport) -> (StatusCode, Value) {
    let resp = h
        .client
        .post(h.url("/api/v1/device/reports"))
        .bearer_auth(token)
        .json(r)
        .send()
        .await
        .unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

async fn offline_reports_are_recorded_marked_offline_and_move_no_campaign(backend: Backend) {
    let h = Harness::new(backend).await;
    let rel = h.release(4, b"offline image").await;
    let (s, info) = h.get(&h.admin, &format!("/api/v1/releases/{rel}")).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    let digest = info["manifest_digest"].as_str().unwrap().to_owned();
    let devs = h.devices("off", 2, &["t"]).await;
    let (dev, token) = &devs[0];
    // A campaign of the same release for the other device only.
    let campaign = h
        .campaign(json!({"name": "c", "release_id": rel, "filter": {"devices": [devs[1].0]}}))
        .await;

    // The offer gate stays for online reports: never offered to this device → 409.
    let (s, v) = send(&h, token, &report(&rel, Step::Receive, false)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "not-offered", "{v}");

    // Offline, on a release the server does not know → 404 unknown-release.
    let (s, v) = send(&h, token, &report(&"ab".repeat(32), Step::Receive, true)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"], "unknown-release", "{v}");
    let (s, v) = send(&h, token, &report("rel_nonesuch", Step::Receive, true)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // Offline, named by manifest digest (as a bundle names it) or by id: recorded.
    for (i, step) in Step::ALL.iter().enumerate() {
        let name = if i % 2 == 0 {
            digest.as_str()
        } else {
            rel.as_str()
        };
        let (s, v) = send(&h, token, &report(name, *step, true)).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{step:?}: {v}");
    }
    let (s, d) = h.get(&h.admin, &format!("/api/v1/devices/{dev}")).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let u = &d["update"];
    assert_eq!(u["offline"], true, "{d}");
    assert_eq!(u["release_id"], rel.as_str(), "{d}");
    assert!(u["campaign_id"].is_null(), "{d}");
    assert_eq!(u["state"], "succeeded", "{d}");
    assert_eq!(u["steps"].as_array().unwrap().len(), Step::ALL.len(), "{d}");

    // No campaign counted it.
    let c = h.campaign_info(&campaign).await;
    let sum = |f: &str| -> u64 {
        c["waves_progress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w[f].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!((sum("succeeded"), sum("failed")), (0, 0), "{c}");

    // The other device, a campaign member, still reports online as before.
    let (s, v) = send(&h, &devs[1].1, &report(&rel, Step::Receive, false)).await;
    assert!(
        s == StatusCode::NO_CONTENT || s == StatusCode::CONFLICT,
        "{s} {v}"
    );
    h.stop().await;
}

/// A bundle's release id comes from its index, which is not trusted: a device must not be
/// able to claim (in its timeline) a release for another vendor or class than its own.
async fn attack_offline_report_on_a_release_for_another_class_is_refused(backend: Backend) {
    let h = Harness::new(backend).await;
    let rel = h.release(4, b"offline image").await;
    let devs = h.devices("cls", 3, &["t"]).await;
    // devs[0]: the release's class (checked in); devs[1]: another class; devs[2]: another
    // vendor. Each checks in once so that the server knows its vendor and class.
    h.checkin(&devs[0].1, 1).await;
    let mut other_class = h.inventory(1);
    other_class.class_id = Some(suitcase_author::uuid::to_string(
        &suitcase_author::uuid::class(&h.vendor, "kettle"),
    ));
    let mut other_vendor = h.inventory(1);
    other_vendor.vendor_id = Some(suitcase_author::uuid::to_string(
        &suitcase_author::uuid::vendor("other.example"),
    ));
    for (token, inv) in [(&devs[1].1, &other_class), (&devs[2].1, &other_vendor)] {
        let r = h
            .client
            .post(h.url("/api/v1/device/checkin"))
            .bearer_auth(token)
            .json(inv)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let (s, v) = send(&h, &devs[0].1, &report(&rel, Step::Receive, true)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "the device's own class: {v}");
    for (dev, token) in &devs[1..] {
        let (s, v) = send(&h, token, &report(&rel, Step::CleanUp, true)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"], "not-for-device", "{v}");
        let (s, d) = h.get(&h.admin, &format!("/api/v1/devices/{dev}")).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        assert!(d["update"].is_null(), "nothing recorded: {d}");
    }
    h.stop().await;
}

/// A campaign's status of a device shows the campaign's reports only, not those of an
/// offline install of the same release.
async fn offline_reports_do_not_enter_a_campaigns_status_of_the_same_release(backend: Backend) {
    let h = Harness::new(backend).await;
    let rel = h.release(4, b"campaign image").await;
    let devs = h.devices("mix", 1, &["t"]).await;
    let (dev, token) = &devs[0];
    let campaign = h
        .campaign(json!({"name": "c", "release_id": rel, "filter": {"devices": [dev]}}))
        .await;
    let answer = h.checkin(token, 1).await;
    assert!(answer.update.is_some(), "{answer:?}");
    let mut failed = report(&rel, Step::Check, true);
    failed.outcome = Outcome::Failure;
    failed.reason = Some("digest".into());
    let (s, v) = send(&h, token, &failed).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = send(&h, token, &report(&rel, Step::Receive, false)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, d) = h.get(&h.admin, &format!("/api/v1/devices/{dev}")).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let u = &d["update"];
    assert_eq!(u["campaign_id"], campaign.as_str(), "{d}");
    assert_ne!(u["offline"], true, "{d}");
    let steps = u["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "the campaign's Receive only: {d}");
    assert_eq!(steps[0]["step"], "receive", "{d}");
    assert!(
        steps.iter().all(|s| s["outcome"] != "failure"),
        "the offline failure is not the campaign's: {d}"
    );
    h.stop().await;
}

/// The rollback check (campaigns warn of devices that cannot roll back) reads at most 10,000
/// inventories of the campaign's own devices: 10,001 other devices that cannot roll back,
/// whose ids all sort before the targeted one, neither hide it nor make the answer partial.
async fn rollback_check_is_bounded_over_the_campaigns_devices_not_the_fleet(backend: Backend) {
    let h = Harness::new(backend).await;
    let rel = h.release(2, b"rollback image").await;
    let mut ids: Vec<String> = h
        .devices("many", 10_000, &["x"])
        .await
        .into_iter()
        .chain(h.devices("more", 2, &["x"]).await)
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    let target = ids.last().unwrap().clone();
    // Every device's stored inventory: `app` cannot be rolled back (written as the server
    // writes a check-in: compact JSON).
    let mut inv = h.inventory(1);
    inv.components[0].handler = Some("deb".into());
    inv.components[0].rollback = Some(false);
    let json = serde_json::to_string(&inv).unwrap();
    assert!(json.contains("\"rollback\":false"), "{json}");
    let pool = database(&h).await;
    sqlx::query("UPDATE devices SET inventory = $1")
        .bind(&json)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let spec = json!({"name": "one", "release_id": rel, "filter": {"devices": [target]}});
    let (s, v) = h.post(&h.admin, "/api/v1/campaigns/dry-run", &spec).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["no_rollback"],
        json!([{"component": ["617070"], "handler": "deb", "devices": 1, "of": 1}]),
        "{v}"
    );
    assert!(v.get("no_rollback_partial").is_none(), "{v}");
    h.stop().await;
}

/// The server's database, opened beside it (to seed what an HTTP client cannot reach).
async fn database(h: &Harness) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = h.config.database.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            h.config.data_dir.join("suitcase.db").display()
        )
    });
    sqlx::AnyPool::connect(&url).await.unwrap()
}

/// A bundle names a release by the first 64 hex characters of its manifest digest: the
/// whole of a SHA-256 digest (found by the unique index, in any case), the start of a longer
/// one (SHAKE256 and the like; found by a range on the same index). Neither the 63 first
/// characters nor 64 that only share a shorter prefix name it.
async fn offline_report_names_a_release_by_the_first_64_characters_of_its_digest(backend: Backend) {
    let h = Harness::new(backend).await;
    let short = h.release(4, b"sha-256 image").await;
    let long = h.release(5, b"long digest image").await;
    let digest_of = |v: &Value| v["manifest_digest"].as_str().unwrap().to_owned();
    let (_, v) = h.get(&h.admin, &format!("/api/v1/releases/{short}")).await;
    let short_digest = digest_of(&v);
    let (_, v) = h.get(&h.admin, &format!("/api/v1/releases/{long}")).await;
    // A 128-character digest, as SHAKE256 or SHA-512 gives.
    let long_digest = format!("{}{}", digest_of(&v), "0123456789abcdef".repeat(4));
    let pool = database(&h).await;
    sqlx::query("UPDATE releases SET manifest_digest = $1 WHERE id = $2")
        .bind(&long_digest)
        .bind(&long)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let devs = h.devices("dig", 1, &["t"]).await;
    let token = &devs[0].1;
    for (name, want) in [
        (short_digest.to_ascii_uppercase(), Some(short.as_str())),
        (long_digest[..64].to_owned(), Some(long.as_str())),
        (
            format!(
                "{}{}",
                &long_digest[..63],
                if long_digest.as_bytes()[63] == b'0' {
                    '1'
                } else {
                    '0'
                }
            ),
            None,
        ),
        (long_digest[..63].to_owned(), None),
    ] {
        let (s, v) = send(&h, token, &report(&name, Step::Receive, true)).await;
        match want {
            Some(rel) => {
                assert_eq!(s, StatusCode::NO_CONTENT, "{name}: {v}");
                let (_, d) = h
                    .get(&h.admin, &format!("/api/v1/devices/{}", devs[0].0))
                    .await;
                assert_eq!(d["update"]["release_id"], rel, "{name}: {d}");
            }
            None => assert_eq!(s, StatusCode::NOT_FOUND, "{name}: {v}"),
        }
    }
    h.stop().await;
}

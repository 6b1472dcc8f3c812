//! Two server nodes on one database (docs/server.md §7, "Several nodes"): devices check in and
//! report through either node at the same time, and each wave opening and the threshold trip
//! happen exactly once (one audit entry), whichever node judges. scripts/multinode-test.sh
//! does the same with three processes behind haproxy and a node killed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    missing_docs,
    reason = "test code"
)]

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::{Value, json};
use suitcase_protocol::{Action, CheckInAnswer, Outcome, Step, StepReport};

both_backends!(
    waves_open_and_thresholds_trip_once_whichever_node_judges,
    a_campaign_started_on_one_node_is_offered_by_the_other_within_the_sync_bound,
    attack_a_report_resent_through_both_nodes_at_once_is_stored_once,
    attack_racing_check_ins_of_one_device_take_one_start_from_the_rate_limit,
    a_campaign_that_cannot_load_keeps_neither_the_node_nor_other_campaigns_down
);

async fn checkin(h: &Harness, base: &str, token: &str, sequence: u64) -> CheckInAnswer {
    let r = h
        .client
        .post(format!("{base}/api/v1/device/checkin"))
        .bearer_auth(token)
        .json(&h.inventory(sequence))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn report(h: &Harness, base: &str, token: &str, release: &str, step: Step, outcome: Outcome) {
    let rep = StepReport {
        release_id: release.into(),
        step,
        outcome,
        reason: (outcome == Outcome::Failure).then(|| "health".to_owned()),
        detail: None,
        progress: None,
        started_at: None,
        log: None,
        suit_report: None,
        offline: false,
    };
    let r = h
        .client
        .post(format!("{base}/api/v1/device/reports"))
        .bearer_auth(token)
        .json(&rep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

async fn audit_count(h: &Harness, action: &str, target: &str) -> usize {
    let (_, audit) = h.get(&h.admin, "/api/v1/audit?limit=1000").await;
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == action && a["target"] == target)
        .count()
}

async fn waves_open_and_thresholds_trip_once_whichever_node_judges(b: Backend) {
    let h = Harness::new(b).await;
    let (node_b, _) = suitcase_server::start(h.config.clone()).await.unwrap();
    let bases = [h.base.clone(), node_b.url()];
    let rel = h.release(10, &[7u8; 2000]).await;
    let devs = h.devices("mn", 12, &["mn"]).await;
    let cid = h
        .campaign(json!({
            "name": "mn", "release_id": rel, "filter": {"tags_all": ["mn"]},
            "waves": [{"count": 4}, {"count": 4}, {"percent": 100.0}],
            "success_threshold": 1.0, "error_threshold": 0.5
        }))
        .await;
    // Node B learns of the campaign within its sync interval (the next test measures it).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Wave 1: every device is offered the release (through either node) and all four
    // finish at the same moment, half through each node: both nodes judge.
    let mut offered = Vec::new();
    for (i, (_, token)) in devs.iter().enumerate() {
        let a = checkin(&h, &bases[i % 2], token, 1).await;
        if a.action == Action::Update {
            offered.push(token.clone());
        }
    }
    assert_eq!(offered.len(), 4, "only the first wave is offered");
    let done = offered.iter().enumerate().map(|(i, token)| {
        let base = bases[i % 2].clone();
        let h = &h;
        let rel = rel.clone();
        async move {
            for step in Step::ALL {
                report(h, &base, token, &rel, step, Outcome::Success).await;
            }
        }
    });
    futures::future::join_all(done).await;
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["opened_waves"], 2, "{info}");
    assert_eq!(audit_count(&h, "campaign.advance", &cid).await, 1);
    // A succeeded device is offered nothing again, through either node.
    for base in &bases {
        assert_eq!(checkin(&h, base, &offered[0], 1).await.action, Action::None);
    }
    // Wave 2: all four fail at once, through both nodes: one trip.
    let mut second = Vec::new();
    for (i, (_, token)) in devs.iter().enumerate() {
        if offered.contains(token) {
            continue;
        }
        if checkin(&h, &bases[i % 2], token, 1).await.action == Action::Update {
            second.push(token.clone());
        }
    }
    assert_eq!(second.len(), 4);
    let fail = second.iter().enumerate().map(|(i, token)| {
        let base = bases[i % 2].clone();
        let h = &h;
        let rel = rel.clone();
        async move { report(h, &base, token, &rel, Step::Apply, Outcome::Failure).await }
    });
    futures::future::join_all(fail).await;
    let info: Value = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "paused", "{info}");
    assert_eq!(audit_count(&h, "campaign.pause", &cid).await, 1);
    assert_eq!(info["waves_progress"][1]["failed"], 4, "{info}");
    // Paused: the last wave's devices are not offered it, on either node.
    let last = devs
        .iter()
        .map(|(_, t)| t)
        .find(|t| !offered.contains(*t) && !second.contains(*t))
        .unwrap();
    for base in &bases {
        assert_eq!(checkin(&h, base, last, 1).await.action, Action::None);
    }
    node_b.shutdown().await;
    h.stop().await;
}

async fn a_campaign_started_on_one_node_is_offered_by_the_other_within_the_sync_bound(b: Backend) {
    let h = Harness::new(b).await;
    let (node_b, _) = suitcase_server::start(h.config.clone()).await.unwrap();
    let other = node_b.url();
    let rel = h.release(20, &[9u8; 1000]).await;
    let devs = h.devices("sync", 1, &["sync"]).await;
    // Node B has seen the device (and cached that it is in no campaign).
    assert_eq!(
        checkin(&h, &other, &devs[0].1, 1).await.action,
        Action::None
    );
    h.campaign(json!({"name": "sync", "release_id": rel, "filter": {"tags_all": ["sync"]}}))
        .await;
    // docs/server.md §7: about one second plus a load; allow three for a loaded machine.
    let start = Instant::now();
    loop {
        if checkin(&h, &other, &devs[0].1, 1).await.action == Action::Update {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "node B offered nothing {:?} after the start on node A",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node_b.shutdown().await;
    h.stop().await;
}

/// A report whose answer was lost is sent again; an agent whose first copy is still in flight
/// on one node may reach the other with the second. Eight copies of one report, through both
/// nodes at the same moment: one row.
async fn attack_a_report_resent_through_both_nodes_at_once_is_stored_once(b: Backend) {
    let h = Harness::new(b).await;
    let (node_b, _) = suitcase_server::start(h.config.clone()).await.unwrap();
    let bases = [h.base.clone(), node_b.url()];
    let rel = h.release(10, &[7u8; 2000]).await;
    let devs = h.devices("resend", 1, &["resend"]).await;
    h.campaign(json!({
        "name": "resend", "release_id": rel, "filter": {"tags_all": ["resend"]},
        "waves": [{"percent": 100.0}]
    }))
    .await;
    assert_eq!(h.checkin(&devs[0].1, 1).await.action, Action::Update);
    let rep = StepReport {
        release_id: rel.as_str().into(),
        step: Step::Apply,
        outcome: Outcome::Success,
        reason: None,
        detail: None,
        progress: None,
        started_at: Some(1_799_999_990),
        log: None,
        suit_report: None,
        offline: false,
    };
    let sends = (0..8).map(|i| {
        let url = format!("{}/api/v1/device/reports", bases[i % 2]);
        let req = h.client.post(url).bearer_auth(&devs[0].1).json(&rep);
        async move { req.send().await.unwrap().status() }
    });
    for status in futures::future::join_all(sends).await {
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let url = h.config.database.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            h.config.data_dir.join("suitcase.db").display()
        )
    });
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE device_id = $1")
        .bind(&devs[0].0)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(rows, 1);
    node_b.shutdown().await;
    h.stop().await;
}

/// One device checking in many times at once through both nodes: the check-ins that lose the
/// race to offer it the release give back the start they took, so the campaign's rate limit
/// (2 a minute, both at once) still has a start for another device.
async fn attack_racing_check_ins_of_one_device_take_one_start_from_the_rate_limit(b: Backend) {
    let h = Harness::new(b).await;
    let (node_b, _) = suitcase_server::start(h.config.clone()).await.unwrap();
    let bases = [h.base.clone(), node_b.url()];
    let rel = h.release(10, &[7u8; 2000]).await;
    let devs = h.devices("rate", 2, &["rate"]).await;
    h.campaign(json!({
        "name": "rate", "release_id": rel, "filter": {"tags_all": ["rate"]},
        "waves": [{"percent": 100.0}], "rate_per_minute": 2
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let racing = (0..8).map(|i| checkin(&h, &bases[i % 2], &devs[0].1, 1));
    let answers = futures::future::join_all(racing).await;
    assert!(answers.iter().any(|a| a.action == Action::Update));
    assert_eq!(
        checkin(&h, &h.base, &devs[1].1, 1).await.action,
        Action::Update
    );
    node_b.shutdown().await;
    h.stop().await;
}

/// A campaign whose release row is gone cannot be loaded; a node starting (and every sync)
/// logs it and loads the other campaigns, whose devices are offered their release.
async fn a_campaign_that_cannot_load_keeps_neither_the_node_nor_other_campaigns_down(b: Backend) {
    let h = Harness::new(b).await;
    let broken_rel = h.release(10, &[7u8; 2000]).await;
    let rel = h.release(11, &[8u8; 2000]).await;
    h.devices("broken", 1, &["broken"]).await;
    let devs = h.devices("fine", 1, &["fine"]).await;
    let broken = h
        .campaign(json!({
            "name": "broken", "release_id": broken_rel, "filter": {"tags_all": ["broken"]},
            "waves": [{"percent": 100.0}]
        }))
        .await;
    h.campaign(json!({
        "name": "fine", "release_id": rel, "filter": {"tags_all": ["fine"]},
        "waves": [{"percent": 100.0}]
    }))
    .await;
    // The broken campaign's specification names a release that does not exist.
    let url = h.config.database.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            h.config.data_dir.join("suitcase.db").display()
        )
    });
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE campaigns SET spec = REPLACE(spec, $1, 'rel_gone') WHERE id = $2")
        .bind(&broken_rel)
        .bind(&broken)
        .execute(&pool)
        .await
        .unwrap();
    let spec: String = sqlx::query_scalar("SELECT spec FROM campaigns WHERE id = $1")
        .bind(&broken)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(spec.contains("rel_gone"), "{spec}");
    pool.close().await;
    let (node_b, _) = suitcase_server::start(h.config.clone()).await.unwrap();
    assert_eq!(
        checkin(&h, &node_b.url(), &devs[0].1, 1).await.action,
        Action::Update
    );
    node_b.shutdown().await;
    h.stop().await;
}

/// An operator's request cancelled (the client gave up) while its node waits for the
/// fleet-wide operator lock must not leave that lock held by a pooled connection: once the
/// holder lets go, nobody holds it, and the next operator action goes through. PostgreSQL
/// only (SQLite has no advisory lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_operator_request_cancelled_while_waiting_for_the_lock_leaves_it_free() {
    use sqlx::Connection as _;
    /// engine::OPS_LOCK, as pg_locks shows a bigint key: its high and low 32 bits.
    const OPS_LOCK: i64 = 0x5375_6974_6361_0001;
    let held = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                AND classid = 1398106484 AND objid = 1667301377 AND objsubid = 1";
    let h = Harness::new(Backend::Postgres).await;
    let rel = h.release(10, &[7u8; 2000]).await;
    let mut holder = sqlx::PgConnection::connect(common::POSTGRES).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(OPS_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    // The archive waits for the lock; the client gives up after 500 ms.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let r = impatient
        .post(h.url(&format!("/api/v1/releases/{rel}/archive")))
        .bearer_auth(&h.admin)
        .send()
        .await;
    assert!(r.is_err(), "the request should have timed out: {r:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(OPS_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    // Other tests on this PostgreSQL take the same lock for a moment; a leaked one stays.
    let start = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar(held)
            .fetch_one(&mut holder)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the operator lock is still held after the cancelled request"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    holder.close().await.unwrap();
    let r = h
        .client
        .post(h.url(&format!("/api/v1/releases/{rel}/archive")))
        .bearer_auth(&h.admin)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    h.stop().await;
}

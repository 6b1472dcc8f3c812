//! What step reports carry for the console (docs/server.md §3): the device's step start
//! (`started_at`, clamped), and download progress that replaces itself instead of growing the
//! database. On SQLite and on PostgreSQL.

#![expect(clippy::unwrap_used, clippy::std_instead_of_core, reason = "test code")]

mod common;

use std::sync::atomic::Ordering;

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::{Value, json};
use suitcase_protocol::Action;

both_backends!(
    report_started_at_is_stored_and_served,
    attack_report_started_at_from_a_wrong_clock_is_clamped_or_ignored,
    attack_progress_flood_keeps_one_row_per_step,
    attack_report_log_flood_is_clipped,
);

/// A device offered a fresh release: (harness, release id, device token).
async fn offered(b: Backend, tag: &str) -> (Harness, String, String) {
    let h = Harness::new(b).await;
    let rel = h.release(2, b"observed image").await;
    let (_, tok) = h.devices(tag, 1, &[tag]).await.pop().unwrap();
    h.campaign(json!({"name": tag, "release_id": rel, "filter": {"tags_all": [tag]}}))
        .await;
    assert_eq!(h.checkin(&tok, 1).await.action, Action::Update);
    (h, rel, tok)
}

async fn post(h: &Harness, tok: &str, body: &Value) -> StatusCode {
    h.client
        .post(h.url("/api/v1/device/reports"))
        .bearer_auth(tok)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
}

fn now(h: &Harness) -> i64 {
    h.clock.load(Ordering::SeqCst)
}

/// The device's update steps as the management API shows them.
async fn steps(h: &Harness, name: &str) -> Vec<Value> {
    let (s, d) = h.get(&h.admin, &format!("/api/v1/devices/{name}")).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    d["update"]["steps"].as_array().cloned().unwrap_or_default()
}

/// The reports table's rows for a release, read straight from the database.
async fn rows(h: &Harness, release: &str) -> i64 {
    use sqlx::Row as _;
    sqlx::any::install_default_drivers();
    let url = h.config.database.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            h.config.data_dir.join("suitcase.db").display()
        )
    });
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM reports WHERE release_id = $1")
        .bind(release)
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    pool.close().await;
    n
}

async fn report_started_at_is_stored_and_served(b: Backend) {
    let (h, rel, tok) = offered(b, "sa").await;
    let t = now(&h);
    let body =
        json!({"release_id": rel, "step": "receive", "outcome": "success", "started_at": t - 42});
    assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    // An older agent's report has none: nothing is made up.
    let body = json!({"release_id": rel, "step": "check", "outcome": "success"});
    assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    let s = steps(&h, "sa-0").await;
    assert_eq!(s[0]["step"], "receive");
    assert_eq!(s[0]["started_at"], t - 42, "{s:?}");
    assert_eq!(s[0]["at"], t);
    assert!(s[1].get("started_at").is_none(), "{s:?}");
    h.stop().await;
}

async fn attack_report_started_at_from_a_wrong_clock_is_clamped_or_ignored(b: Backend) {
    let (h, rel, tok) = offered(b, "wc").await;
    let t = now(&h);
    // In the future (a clock ahead, or a lie to look fast): the time it arrived.
    let body = json!({"release_id": rel, "step": "receive", "outcome": "success", "started_at": t + 86_400});
    assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    // Beyond any i64: still no 500.
    let body =
        json!({"release_id": rel, "step": "check", "outcome": "success", "started_at": u64::MAX});
    assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    // In 1970 (a clock never set): ignored, not a 56-year step.
    let body =
        json!({"release_id": rel, "step": "announce", "outcome": "success", "started_at": 5});
    assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    // Not a number: a 4xx naming the field.
    let body = json!({"release_id": rel, "step": "distribute", "outcome": "success", "started_at": "yesterday"});
    assert!(post(&h, &tok, &body).await.is_client_error());
    let s = steps(&h, "wc-0").await;
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!(s[0]["started_at"], t, "{s:?}");
    assert_eq!(s[1]["started_at"], t, "{s:?}");
    assert!(s[2].get("started_at").is_none(), "{s:?}");
    h.stop().await;
}

async fn attack_progress_flood_keeps_one_row_per_step(b: Backend) {
    let (h, rel, tok) = offered(b, "pf").await;
    let t = now(&h);
    for i in 0..60u64 {
        h.advance(1);
        let body = json!({"release_id": rel, "step": "receive", "outcome": "in-progress",
                          "progress": i * 1000, "started_at": t});
        assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    }
    assert_eq!(rows(&h, &rel).await, 1, "progress replaces progress");
    let s = steps(&h, "pf-0").await;
    assert_eq!(s[0]["outcome"], "in-progress");
    assert_eq!(s[0]["progress"], 59_000);
    assert_eq!(s[0]["started_at"], t);
    assert_eq!(s[0]["at"], t + 60);
    // The end of the step is a row of its own; the next step's progress starts a new row.
    let body = json!({"release_id": rel, "step": "receive", "outcome": "success", "started_at": t});
    assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    let body = json!({"release_id": rel, "step": "receive", "outcome": "in-progress", "started_at": t + 61});
    assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    assert_eq!(rows(&h, &rel).await, 3);
    // Progress without a start (older agents, DDI feedback with its log lines) is kept.
    for _ in 0..3 {
        let body = json!({"release_id": rel, "step": "check", "outcome": "in-progress"});
        assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    }
    assert_eq!(rows(&h, &rel).await, 6);
    h.stop().await;
}

/// A failure report with a 100 KB log: stored (the failure is never lost for its log), the log
/// clipped to its last 16 KiB and marked.
async fn attack_report_log_flood_is_clipped(b: Backend) {
    let (h, rel, tok) = offered(b, "lf").await;
    let log = format!("{}\nERROR: the real reason é\n", "noise ".repeat(20_000));
    let body = json!({"release_id": rel, "step": "clean-up", "outcome": "failure",
                      "reason": "health-check", "log": log});
    assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    let s = steps(&h, "lf-0").await;
    let kept = s[0]["log"].as_str().unwrap();
    assert!(kept.len() <= 16 * 1024, "{}", kept.len());
    assert!(kept.len() > 15 * 1024, "{}", kept.len());
    assert!(kept.starts_with("[clipped"), "{kept}");
    assert!(kept.ends_with("ERROR: the real reason é\n"));
    // A short log is kept whole.
    let body = json!({"release_id": rel, "step": "clean-up", "outcome": "failure",
                      "reason": "health-check", "log": "short"});
    assert_eq!(post(&h, &tok, &body).await, StatusCode::NO_CONTENT);
    assert_eq!(steps(&h, "lf-0").await[0]["log"], "short");
    h.stop().await;
}

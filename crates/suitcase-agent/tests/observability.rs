//! What the agent reports for the console (docs/agent.md "Reports"): when each step began
//! (`started_at`, from the agent's clock, kept by the server), and download progress paced at
//! a tenth of the download or 5 s, whichever is later, never per chunk.

#![expect(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "test code"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Device, Fleet, image};
use serde_json::json;
use suitcase_agent::{Event, Finished, Hooks};

fn system_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `(progress, started_at)` of every Receive `in-progress` report the agent queued.
fn receive_progress(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step {
                step,
                outcome,
                progress,
                ..
            } if step == "receive" && outcome == "in-progress" => Some(progress.unwrap()),
            _ => None,
        })
        .collect()
}

/// An agent whose clock stands still an hour ago: every step reports that start, and the
/// server keeps it; with no time passing, the download sends no progress beyond its first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_report_when_they_began_and_the_server_keeps_it() {
    let fleet = Fleet::new().await;
    let dev = Device::new(&fleet, "started").await;
    let rel = fleet.release(2, &image(3, 3 << 20)).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let then = system_now() - 3600;
    let hooks = Hooks {
        clock: Some(Arc::new(move || then)),
        ..Hooks::default()
    };
    let (mut agent, events) = dev.agent(&fleet, hooks);
    let update = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());
    let info = fleet.device_info(&dev.id).await;
    let steps = info["update"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 10, "{info}");
    for s in steps {
        assert_eq!(s["started_at"], then, "{s}");
        assert!(s["at"].as_u64().unwrap() >= then + 3600, "{s}");
    }
    assert_eq!(receive_progress(&events.all()), [0], "5 s never passed");
    fleet.stop().await;
}

/// A 6 MiB download on a clock that runs 7 s per reading: progress goes out at about every
/// tenth of the download (at most ten more reports, rising), not once per chunk, and the
/// server holds the latest in one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_progress_is_paced_not_per_chunk() {
    let fleet = Fleet::new().await;
    let dev = Device::new(&fleet, "progress").await;
    let img = image(4, 6 << 20);
    let rel = fleet.release(2, &img).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let t = Arc::new(AtomicU64::new(system_now() - 20 * 24 * 3600));
    let hooks = Hooks {
        clock: Some(Arc::new(move || t.fetch_add(7, Ordering::SeqCst))),
        ..Hooks::default()
    };
    let (mut agent, events) = dev.agent(&fleet, hooks);
    let update = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());
    let p = receive_progress(&events.all());
    assert!(
        (5..=11).contains(&p.len()),
        "the first report and one per tenth at most: {p:?}"
    );
    assert!(p.windows(2).all(|w| w[0] < w[1]), "rising: {p:?}");
    let total = img.len() as u64;
    assert!(p.windows(2).all(|w| w[1] - w[0] >= total / 10), "{p:?}");
    assert!(*p.last().unwrap() <= total + (1 << 20), "{p:?}");
    let info = fleet.device_info(&dev.id).await;
    assert_eq!(info["update"]["steps"][0]["outcome"], "success", "{info}");
    assert!(info["update"]["steps"][0]["started_at"].is_u64(), "{info}");
    fleet.stop().await;
}

/// A failing health check that floods its output and prints the device's token: the failure
/// report carries the end of the output (at most 8 KiB), the token redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_health_check_log_is_bounded_and_redacted() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "logs").await;
    let token = dev.token.clone();
    dev.script(
        "health.sh",
        &format!(
            "i=0; while [ $i -lt 2000 ]; do echo \"line $i of noise\"; i=$((i+1)); done\n\
             echo \"token {token} header Authorization: Bearer secret-value\"\n\
             sleep 0.5\n\
             echo 'ERROR: the app did not answer on :8080' >&2\nexit 3"
        ),
    );
    dev.extra = format!(
        "[health]\ncommand = [\"{}\"]\n",
        dev.path("health.sh").display()
    );
    let rel = fleet.release(2, &image(5, 100_000)).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (_, f) = dev.failed_cycle(&fleet).await;
    assert_eq!(f.reason, "health-check");
    let log = f.log.expect("the health check's output");
    assert!(log.len() <= 8 * 1024, "{}", log.len());
    // Both streams, as they came. Their order across the two pipes is only as good as the
    // readers' timing: the stderr line comes half a second after the flood (written at once,
    // the stderr reader could take it before the stdout reader had drained the flood, and the
    // tail would clip it away; a CI run saw that).
    assert!(log.contains("line 1999 of noise\ntoken "), "{log}");
    assert!(
        log.ends_with("ERROR: the app did not answer on :8080\n"),
        "{log}"
    );
    assert!(!log.contains(&token[4..]), "{log}");
    assert!(!log.contains("secret-value"), "{log}");
    assert!(
        log.contains("sct_***") && log.contains("Bearer ***"),
        "{log}"
    );
    assert!(!log.contains("line 0 of noise"), "only the end: {log}");
    let info = fleet.device_info(&dev.id).await;
    let steps = info["update"]["steps"].as_array().unwrap();
    let clean = steps.iter().find(|s| s["step"] == "clean-up").unwrap();
    assert_eq!(clean["outcome"], "failure");
    assert_eq!(clean["log"].as_str(), Some(log.as_str()), "{clean}");
    fleet.stop().await;
}

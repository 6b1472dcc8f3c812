//! The agent against a real server: a normal update reports all ten NTIA steps and completes
//! the campaign; a failing health check is rolled back; attacks and faults are refused at the
//! step that must catch them, and reported with a reason.

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

use common::{ALL_STEPS, Device, Fleet, image, server_steps, wait_campaign};
use serde_json::json;
use suitcase_agent::{Finished, Hooks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_update_runs_and_reports_all_ten_steps() {
    let fleet = Fleet::new().await;
    let dev = Device::new(&fleet, "normal").await;
    let img = image(1, 300_000);
    let rel = fleet.release(2, &img).await;
    let campaign = fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());

    let cycle = agent.cycle().await.unwrap();
    let update = cycle.update.expect("an update ran");
    assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(update.release_id, rel);

    // Every step succeeded, in order, locally and on the server.
    let ok: Vec<&str> = events
        .steps()
        .iter()
        .filter(|(_, o, _)| o == "success")
        .map(|(s, _, _)| s.as_str())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|s| ALL_STEPS.iter().copied().find(|x| *x == s).unwrap())
        .collect();
    assert_eq!(ok, ALL_STEPS);
    let info = fleet.device_info(&dev.id).await;
    let steps = server_steps(&info);
    assert_eq!(
        steps.iter().map(|(s, _, _)| s.as_str()).collect::<Vec<_>>(),
        ALL_STEPS
    );
    assert!(steps.iter().all(|(_, o, _)| o == "success"), "{steps:?}");
    assert_eq!(info["update"]["state"], "succeeded");
    let c = wait_campaign(&fleet, &campaign, "succeeded", 1).await;
    assert_eq!(c["state"], "completed", "{c}");

    // The new image is in slot b, confirmed; the restart hook ran on slot b; nothing is left
    // over.
    assert_eq!(dev.read("app-b.bin"), img);
    assert_eq!(dev.text("app.slot"), "active=b\nconfirmed=b\n");
    assert_eq!(dev.text("app-b.bin.restarts"), "b\n");
    assert_eq!(dev.installed()["components"][0]["sequence_number"], 2);
    assert!(!dev.path("state/journal.json").exists());
    assert!(dev.work_is_empty());

    // The next check-in reports the new image; nothing more is offered.
    let next = agent.cycle().await.unwrap();
    assert!(next.update.is_none());
    let inv = agent.inventory().unwrap();
    assert_eq!(inv.components[0].sequence_number, 2);
    assert_eq!(inv.boot.as_ref().unwrap().slot.as_deref(), Some("b"));
    assert!(!inv.boot.unwrap().trial);
    fleet.stop().await;
}

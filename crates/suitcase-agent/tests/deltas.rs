//! Delta payloads end to end: the server makes a `suitcase-delta` patch from the installed
//! release's image when the new release is uploaded and offers it to devices that report that
//! image; the agent downloads the patch instead of the payload, rebuilds the image against
//! its active slot in bounded RAM, and the SUIT processor checks the result against the
//! signed digest like any download. When the source does not match, it downloads the full
//! payload.

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

use common::{Device, Fleet, image};
use serde_json::json;
use suitcase_agent::{Event, Finished, Hooks};

/// The second version of an image: the first with a few bytes changed every 4 KiB.
fn edited(img: &[u8]) -> Vec<u8> {
    let mut v = img.to_vec();
    for at in (100..v.len() - 4).step_by(4096) {
        v[at..at + 4].copy_from_slice(&(at as u32).to_le_bytes());
    }
    v
}

async fn wait_for_delta(fleet: &Fleet, release: &str) -> serde_json::Value {
    for _ in 0..200 {
        let (_, v) = fleet.get(&format!("/api/v1/releases/{release}")).await;
        if v["deltas"].as_array().is_some_and(|d| !d.is_empty()) {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server made no delta for {release}");
}

fn receive_detail(events: &common::Events) -> String {
    events
        .all()
        .into_iter()
        .find_map(|e| match e {
            Event::Step {
                step,
                outcome,
                detail: Some(d),
                ..
            } if step == "receive" && outcome == "success" => Some(d),
            _ => None,
        })
        .unwrap_or_default()
}

/// Installs v1 (full), then v2 by delta: far fewer bytes, the exact v2 image in slot a.
async fn install_v1(fleet: &Fleet, dev: &Device, v1: &[u8]) {
    let r1 = fleet.release(1, v1).await;
    fleet.campaign(&r1, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(fleet, Hooks::default());
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(dev.read("app-b.bin"), v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_patch_replaces_the_full_download() {
    let fleet = Fleet::new().await;
    let dev = Device::new(&fleet, "delta").await;
    let v1 = image(21, 400_000);
    let v2 = edited(&v1);
    install_v1(&fleet, &dev, &v1).await;

    let r2 = fleet.release(2, &v2).await;
    let rel = wait_for_delta(&fleet, &r2).await;
    let patch_size = rel["deltas"][0]["size"].as_u64().unwrap();
    assert!(patch_size < 40_000, "{rel}");
    fleet.campaign(&r2, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let before = agent.traffic();
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    let t = agent.traffic().since(&before);
    // The envelope and the patch, not the 400 kB payload.
    assert!(t.download_body < patch_size + 2_000, "{t:?}");
    // The image is exact (Check and Process verified it against the signed digest, and so
    // did the slot write); it went to the other slot, a.
    assert_eq!(dev.read("app-a.bin"), v2);
    assert_eq!(dev.text("app.slot"), "active=a\nconfirmed=a\n");
    let detail = receive_detail(&events);
    assert!(
        detail.contains("rebuilt from a") && detail.contains("delta patch"),
        "{detail}"
    );
    // The server's view of the step says so too.
    let info = fleet.device_info(&dev.id).await;
    let steps = info["update"]["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["step"] == "receive" && s["detail"].as_str().unwrap().contains("delta")),
        "{info}"
    );
    fleet.stop().await;
}

/// The active slot was changed behind the agent's back (its bytes no longer hash to the
/// digest the device reported, so the patch's source is not there): the agent does not
/// apply the patch to the wrong bytes; it downloads the full payload and installs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_delta_against_a_tampered_slot_falls_back_to_the_full_payload() {
    let fleet = Fleet::new().await;
    let dev = Device::new(&fleet, "delta-tampered").await;
    let v1 = image(22, 300_000);
    let v2 = edited(&v1);
    install_v1(&fleet, &dev, &v1).await;
    let mut slot = dev.read("app-b.bin");
    slot[1000] ^= 0xFF;
    std::fs::write(dev.path("app-b.bin"), &slot).unwrap();

    let r2 = fleet.release(2, &v2).await;
    wait_for_delta(&fleet, &r2).await;
    fleet.campaign(&r2, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let before = agent.traffic();
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    let t = agent.traffic().since(&before);
    assert!(t.download_body >= 300_000, "{t:?}");
    assert_eq!(dev.read("app-a.bin"), v2);
    let detail = receive_detail(&events);
    assert!(detail.contains("delta for payload 0 not used"), "{detail}");
    fleet.stop().await;
}

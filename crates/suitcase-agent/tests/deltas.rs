//! Delta payloads end to end: the server makes a `suitcase-delta` patch from the installed
//! release's image when the new release is uploaded and offers it to devices that report that
//! image; the agent downloads the patch instead of the payload, rebuilds the image against
//! its active slot in bounded RAM, and the SUIT processor checks the result against the
//! signed digest like any download. When the source does not match, it downloads the full
//! payload.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::cast_possible_truncation,
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

/// Builds and uploads a delta release of `app` (sequence `sequence`) from `old` to `new`, as
/// `suitcase release build --delta-from` does; returns the release id and the patch size.
async fn delta_release(
    fleet: &Fleet,
    sequence: u64,
    old: &[u8],
    new: &[u8],
    tweak: impl FnOnce(&mut suitcase_author::release::ReleaseRequest),
) -> (String, usize) {
    let mut app = fleet.app(new, sequence);
    app.delta_from = Some(old.to_vec());
    let mut req = fleet.request(sequence, vec![app]);
    tweak(&mut req);
    let built = fleet.build(&req);
    let p = &built.payloads[0];
    assert!(p.delta_from.is_some(), "the author made no delta");
    (fleet.upload(&built).await, p.bytes.len())
}

fn step_detail(events: &common::Events, name: &str) -> String {
    events
        .all()
        .into_iter()
        .find_map(|e| match e {
            Event::Step {
                step,
                detail: Some(d),
                ..
            } if step == name => Some(d),
            _ => None,
        })
        .unwrap_or_default()
}

/// A delta release signed by the author (manifest-level: image-match on `app/installed`,
/// the patch fetched into `app/staging`, a copy with suitcase-parameter-delta-base into
/// `app`): the agent patches the running slot into a candidate, the manifest's image-match
/// accepts it, and it is installed like a full image, for a fraction of the download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_release_is_patched_from_the_running_image() {
    let fleet = Fleet::with(|c| c.deltas = false).await;
    let dev = Device::new(&fleet, "delta-release").await;
    let v1 = image(23, 300_000);
    // New code the old image lacks, three times: the patch copies its later copies from the
    // image it is writing (the platform's read_staged).
    let mut v2 = edited(&v1);
    let fresh = image(99, 16_000);
    for _ in 0..3 {
        v2.extend_from_slice(&fresh);
    }
    install_v1(&fleet, &dev, &v1).await;

    let (r2, patch_len) = delta_release(&fleet, 2, &v1, &v2, |_| {}).await;
    assert!(patch_len < 40_000, "patch of {patch_len} bytes");
    fleet.campaign(&r2, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let before = agent.traffic();
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    let t = agent.traffic().since(&before);
    assert!(t.download_body < patch_len as u64 + 4_000, "{t:?}");
    assert_eq!(dev.read("app-a.bin"), v2);
    assert_eq!(dev.read("app-b.bin"), v1, "the old slot is untouched");
    assert_eq!(dev.text("app.slot"), "active=a\nconfirmed=a\n");
    let distribute = step_detail(&events, "distribute");
    assert!(
        distribute.contains("app/installed ← the running image"),
        "{distribute}"
    );
    assert!(
        dev.work_is_empty(),
        "the patch and candidate are cleaned up"
    );
    // The inventory names the new image, so a next delta can start from it.
    let v3 = edited(&v2);
    let (r3, _) = delta_release(&fleet, 3, &v2, &v3, |_| {}).await;
    fleet.campaign(&r3, &[&dev.id], json!({})).await;
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(dev.read("app-b.bin"), v3);
    fleet.stop().await;
}

/// A delta release built for another image than the one the device reports: the server
/// does not offer it (the device would download the patch only to refuse it at Check); it
/// records the failure of step check with reason `digest`, as the device would, and the
/// campaign counts the device as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_delta_release_for_another_image_is_not_offered() {
    let fleet = Fleet::with(|c| c.deltas = false).await;
    let dev = Device::new(&fleet, "delta-other-base").await;
    let v1 = image(24, 200_000);
    install_v1(&fleet, &dev, &v1).await;
    let elsewhere = image(25, 200_000);
    let v2 = edited(&elsewhere);
    let (r2, _) = delta_release(&fleet, 2, &elsewhere, &v2, |_| {}).await;
    let campaign = fleet.campaign(&r2, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let before = agent.traffic();
    let cycle = agent.cycle().await.unwrap();
    assert!(cycle.update.is_none(), "offered: {:?}", events.all());
    assert_eq!(agent.traffic().since(&before).download_body, 0);
    assert_eq!(dev.read("app-b.bin"), v1);
    assert_eq!(dev.text("app.slot"), "active=b\nconfirmed=b\n");
    let steps = common::server_steps(&fleet.device_info(&dev.id).await);
    let check = steps.iter().find(|s| s.0 == "check").unwrap();
    assert_eq!(
        (check.1.as_str(), check.2.as_deref()),
        ("failure", Some("digest")),
        "{steps:?}"
    );
    let info = common::wait_campaign(&fleet, &campaign, "failed", 1).await;
    assert_eq!(info["waves_progress"][0]["succeeded"], 0, "{info}");
    // The device does not get it on its next check-in either.
    assert!(agent.cycle().await.unwrap().update.is_none());
    fleet.stop().await;
}

/// The running slot was changed behind the agent's back (the inventory still names v1):
/// the image-match on `app/installed` hashes the slot's bytes, not the inventory, so Check
/// refuses the patch and nothing is written to a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_delta_release_against_a_tampered_running_slot_writes_nothing() {
    let fleet = Fleet::with(|c| c.deltas = false).await;
    let dev = Device::new(&fleet, "delta-release-tampered").await;
    let v1 = image(26, 200_000);
    let v2 = edited(&v1);
    install_v1(&fleet, &dev, &v1).await;
    let mut slot = dev.read("app-b.bin");
    slot[5000] ^= 0x01;
    std::fs::write(dev.path("app-b.bin"), &slot).unwrap();
    let (r2, _) = delta_release(&fleet, 2, &v1, &v2, |_| {}).await;
    fleet.campaign(&r2, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let Finished::Failed(f) = agent.cycle().await.unwrap().update.unwrap().finished else {
        panic!("patched a tampered base: {:?}", events.all());
    };
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("check", "digest"),
        "{f:?}"
    );
    assert!(!dev.path("app-a.bin").exists() || dev.read("app-a.bin").is_empty());
    assert_eq!(dev.text("app.slot"), "active=b\nconfirmed=b\n");
    fleet.stop().await;
}

/// An encrypted delta release (Upgraded tier): the patch's ciphertext is decrypted into
/// `app/patch` in the work area, then applied to the running image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_delta_release_is_decrypted_then_patched() {
    let fleet = Fleet::with(|c| c.deltas = false).await;
    let (kek, _) = common::keypair(
        fleet.dir.path(),
        "device-kek",
        suitcase_author::keys::KeyAlg::A128Kw,
    );
    let dev = Device::new(&fleet, "delta-enc").await;
    let v1 = image(27, 250_000);
    let v2 = edited(&v1);
    install_v1(&fleet, &dev, &v1).await;
    let (r2, _) = delta_release(&fleet, 2, &v1, &v2, |req| {
        req.tier = suitcase_author::Tier::Upgraded;
        req.encrypt_for = vec![kek.clone()];
    })
    .await;
    fleet.campaign(&r2, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent_with_key(&fleet, &kek);
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(dev.read("app-a.bin"), v2);
    let process = step_detail(&events, "process");
    assert!(process.contains("1 payload(s) decrypted"), "{process}");
    fleet.stop().await;
}

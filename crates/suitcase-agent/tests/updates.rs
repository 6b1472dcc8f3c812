//! The agent against a real server: a normal update reports all ten NTIA steps and completes
//! the campaign; a failing health check is rolled back; attacks and faults are refused at the
//! step that must catch them, and reported with a reason.

#![expect(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "test code"
)]

mod common;

use common::hostile::{self, Answer, Hostile};
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

/// The new image's health check fails: the agent reverts to the previous slot, restarts the
/// old image, reports Clean-up failure `health-check`, and the campaign counts the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_failed_health_check_is_rolled_back() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "sick").await;
    std::fs::write(dev.path("app-a.bin"), b"the old image").unwrap();
    dev.extra = "[health]\ncommand = [\"sh\", \"-c\", \"exit 1\"]\n".into();
    let rel = fleet.release(2, &image(2, 100_000)).await;
    let campaign = fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let update = agent.cycle().await.unwrap().update.unwrap();
    let Finished::Failed(f) = update.finished else {
        panic!("expected a failure: {:?}", events.all());
    };
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("clean-up", "health-check")
    );
    assert!(f.detail.contains("reverted to slot a"), "{}", f.detail);
    // Back on slot a, confirmed; the hook restarted b, then a again.
    assert_eq!(dev.text("app.slot"), "active=a\nconfirmed=a\n");
    assert_eq!(dev.read("app-a.bin"), b"the old image");
    assert_eq!(dev.text("app-b.bin.restarts"), "b\n");
    assert_eq!(dev.text("app-a.bin.restarts"), "a\n");
    assert!(dev.installed()["reverted"].as_bool().unwrap());
    assert!(dev.work_is_empty());
    let info = fleet.device_info(&dev.id).await;
    assert_eq!(info["update"]["state"], "failed");
    let steps = server_steps(&info);
    assert!(steps.contains(&(
        "clean-up".into(),
        "failure".into(),
        Some("health-check".into())
    )));
    assert!(steps.contains(&("activate".into(), "success".into(), None)));
    wait_campaign(&fleet, &campaign, "failed", 1).await;
    // The check-in after the revert says so, once.
    let inv = agent.inventory().unwrap();
    assert!(inv.boot.as_ref().unwrap().reverted);
    assert_eq!(inv.components[0].sequence_number, 0);
    agent.cycle().await.unwrap();
    assert!(!agent.inventory().unwrap().boot.unwrap().reverted);
    fleet.stop().await;
}

/// An authentic manifest for another vendor's devices (same class UUID, so the server offers
/// it): refused at Check with the processor's reason, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_wrong_vendor_manifest_is_refused_at_check() {
    let fleet = Fleet::new().await;
    let dev = Device::new(&fleet, "vendor").await;
    let mut req = fleet.request(3, vec![fleet.app(&image(3, 20_000), 3)]);
    req.vendor = suitcase_author::uuid::vendor("evil.example");
    let built = fleet.build(&req);
    let rel = fleet.upload(&built).await;
    let campaign = fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, _events) = dev.agent(&fleet, Hooks::default());
    let update = agent.cycle().await.unwrap().update.unwrap();
    let Finished::Failed(f) = update.finished else {
        panic!("the wrong vendor's manifest was installed");
    };
    assert_eq!((f.step.name(), f.reason.as_str()), ("check", "vendor-id"));
    // Refused on the envelope alone: not one payload byte was downloaded.
    assert_eq!(
        agent.traffic().download_body,
        built.envelope.len() as u64,
        "only the envelope"
    );
    assert!(!dev.path("app-b.bin").exists());
    assert!(!dev.path("app.slot").exists());
    let steps = server_steps(&fleet.device_info(&dev.id).await);
    assert!(steps.contains(&("check".into(), "failure".into(), Some("vendor-id".into()))));
    wait_campaign(&fleet, &campaign, "failed", 1).await;
    fleet.stop().await;
}

/// An authentic but older manifest (sequence 3 after 5 is installed): anti-rollback refuses
/// it at Check. Our server no longer offers a release older than what a device runs, so the
/// offer comes from a hostile server (a compromised or impersonated one is exactly who would
/// try a rollback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_rollback_to_an_older_authentic_release_is_refused() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "rollback").await;
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let new = fleet.release(5, &image(5, 10_000)).await;
    let c1 = fleet.campaign(&new, &[&dev.id], json!({})).await;
    assert_eq!(
        agent.cycle().await.unwrap().update.unwrap().finished,
        Finished::Installed
    );
    wait_campaign(&fleet, &c1, "succeeded", 1).await;
    let (envelope, uri, payload) = hostile::release(&fleet, 3, &image(3, 10_000));
    let answer = hostile::offer(3, &envelope, "/envelope", &uri, &payload, "/payload");
    let home = Hostile::start(move |r| match r.path.as_str() {
        "/api/v1/device/checkin" => Answer::json(200, &answer),
        "/envelope" => Answer::bytes(&envelope),
        "/payload" => Answer::bytes(&payload),
        _ => Answer::json(200, &json!({})),
    })
    .await;
    dev.base = Some(home.url());
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let update = agent.cycle().await.unwrap().update.unwrap();
    let Finished::Failed(f) = update.finished else {
        panic!("an older release was installed");
    };
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("check", "sequence-rollback")
    );
    assert_eq!(dev.read("app-b.bin"), image(5, 10_000));
    assert_eq!(dev.text("app.slot"), "active=b\nconfirmed=b\n");
    fleet.stop().await;
}

/// A payload larger than the component's slot: refused at Receive with `no-space` before a
/// single payload byte is downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_image_larger_than_the_slot_is_refused_before_download() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "small").await;
    dev.components = common::APP_COMPONENT.replace("capacity = 67108864", "capacity = 50000");
    let rel = fleet.release(2, &image(4, 200_000)).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let update = agent.cycle().await.unwrap().update.unwrap();
    let Finished::Failed(f) = update.finished else {
        panic!("expected no-space");
    };
    assert_eq!((f.step.name(), f.reason.as_str()), ("receive", "no-space"));
    assert_eq!(agent.traffic().download_body, 0);
    let steps = server_steps(&fleet.device_info(&dev.id).await);
    assert!(steps.contains(&("receive".into(), "failure".into(), Some("no-space".into()))));
    fleet.stop().await;
}

/// Consent by command: exit 75 defers (reported once as `deferred`, downloads kept), exit 0
/// later installs without downloading again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_command_defers_then_installs() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "consent").await;
    let answer = dev.path("answer");
    std::fs::write(&answer, "75").unwrap();
    let script = dev.script(
        "consent.sh",
        &format!(
            "test \"$SUITCASE_REQUIRES_CONSENT\" = 1 || exit 9\nexit $(cat {})",
            answer.display()
        ),
    );
    dev.extra = format!(
        "[consent]\nmode = \"command\"\ncommand = [\"{}\"]\n",
        script.display()
    );
    let img = image(6, 64_000);
    let rel = fleet.release(2, &img).await;
    fleet
        .campaign(&rel, &[&dev.id], json!({"requires_consent": true}))
        .await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let first = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(first.finished, Finished::Deferred(None));
    let steps = server_steps(&fleet.device_info(&dev.id).await);
    assert!(steps.contains(&("announce".into(), "deferred".into(), None)));
    let downloaded = agent.traffic().download_body;
    // Still deferred: no second report.
    let again = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(again.finished, Finished::Deferred(None));
    assert_eq!(
        events
            .steps()
            .iter()
            .filter(|(_, o, _)| o == "deferred")
            .count(),
        1
    );
    std::fs::write(&answer, "0").unwrap();
    let last = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(last.finished, Finished::Installed);
    assert_eq!(
        agent.traffic().download_body,
        downloaded,
        "downloaded twice"
    );
    assert_eq!(dev.read("app-b.bin"), img);
    fleet.stop().await;
}

/// Consent refused by the command (any exit but 0 and 75): Announce fails with `consent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_refused_ends_the_update() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "refuse").await;
    dev.extra = "[consent]\nmode = \"command\"\ncommand = [\"false\"]\n".into();
    let rel = fleet.release(2, &image(7, 1000)).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let Finished::Failed(f) = agent.cycle().await.unwrap().update.unwrap().finished else {
        panic!("installed without consent");
    };
    assert_eq!((f.step.name(), f.reason.as_str()), ("announce", "consent"));
    assert!(!dev.path("app-b.bin").exists());
    fleet.stop().await;
}

/// A maintenance window: outside it the update is deferred with the time until it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_window_defers_until_it_opens() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "window").await;
    dev.extra =
        "[consent]\nmode = \"window\"\nwindow = { start = \"02:00\", end = \"03:00\" }\n".into();
    let rel = fleet.release(2, &image(8, 1000)).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
        1_800_000_000 - 1_800_000_000 % 86_400 + 3600,
    ));
    let c2 = clock.clone();
    let hooks = Hooks {
        clock: Some(std::sync::Arc::new(move || {
            c2.load(std::sync::atomic::Ordering::SeqCst)
        })),
        ..Hooks::default()
    };
    let (mut agent, _) = dev.agent(&fleet, hooks);
    let first = agent.cycle().await.unwrap();
    assert_eq!(
        first.update.unwrap().finished,
        Finished::Deferred(Some(3600))
    );
    assert!(first.next_poll <= std::time::Duration::from_secs(3600));
    clock.fetch_add(3600, std::sync::atomic::Ordering::SeqCst);
    let second = agent.cycle().await.unwrap();
    assert_eq!(second.update.unwrap().finished, Finished::Installed);
    fleet.stop().await;
}

/// An encrypted payload (Upgraded tier, A128KW + A128GCM): the processor decrypts it as a
/// stream with the device's key; a device without the key refuses it at Check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_payload_is_decrypted_as_a_stream() {
    let fleet = Fleet::new().await;
    let (kek, _) = common::keypair(
        fleet.dir.path(),
        "device-kek",
        suitcase_author::keys::KeyAlg::A128Kw,
    );
    let dev = Device::new(&fleet, "enc").await;
    let other = Device::new(&fleet, "enc-other").await;
    let img = image(9, 250_000);
    let mut req = fleet.request(2, vec![fleet.app(&img, 2)]);
    req.tier = suitcase_author::Tier::Upgraded;
    req.encrypt_for = vec![kek.clone()];
    let rel = fleet.upload(&fleet.build(&req)).await;
    fleet.campaign(&rel, &[&dev.id, &other.id], json!({})).await;

    // The device with the key.
    let (mut agent, events) = dev.agent_with_key(&fleet, &kek);
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(dev.read("app-b.bin"), img);
    let process = events
        .all()
        .into_iter()
        .find_map(|e| match e {
            suitcase_agent::Event::Step { step, detail, .. } if step == "process" => detail,
            _ => None,
        })
        .unwrap();
    assert!(process.contains("1 payload(s) decrypted"), "{process}");
    // The inventory names the image, not the staging component the ciphertext went to.
    let inventory = agent.inventory().unwrap();
    assert_eq!(inventory.components.len(), 1, "{inventory:?}");
    assert_eq!(inventory.components[0].id, vec![hex::encode("app")]);

    // The device without it: refused at Check, on the envelope alone (the attack test
    // below has the details).
    let (mut agent, _) = other.agent(&fleet, Hooks::default());
    let Finished::Failed(f) = agent.cycle().await.unwrap().update.unwrap().finished else {
        panic!("decrypted without the key");
    };
    assert_eq!((f.step.name(), f.reason.as_str()), ("check", "decrypt"));
    assert!(!other.path("app-b.bin").exists());
    fleet.stop().await;
}

/// The TUF "endless data" attack (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION): whoever can make
/// the server offer a release (a rogue signer the server knows, a release for other devices)
/// must not make a device download its payloads. Authenticate before download: each
/// refusal costs the envelope and not one payload byte, counted on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_endless_data_refused_envelope_downloads_no_payload() {
    let fleet = Fleet::new().await;
    let payload = 1 << 20;

    // 1. Signed by a key the server accepts but the device does not trust.
    let (rogue, rogue_pub) = common::keypair(
        fleet.dir.path(),
        "rogue",
        suitcase_author::keys::KeyAlg::Es256,
    );
    let public = suitcase_author::keys::load_public(&rogue_pub).unwrap();
    let (pem, _) = public.encode().unwrap();
    let (s, v) = fleet
        .post(
            "/api/v1/keys",
            &json!({"name": "rogue", "key": String::from_utf8(pem).unwrap()}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
    let dev = Device::new(&fleet, "untrusted").await;
    let mut req = fleet.request(2, vec![fleet.app(&image(2, payload), 2)]);
    req.sign = vec![rogue];
    let built = fleet.build(&req);
    let rel = fleet.upload(&built).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let Finished::Failed(f) = agent.cycle().await.unwrap().update.unwrap().finished else {
        panic!("a release signed by an untrusted key was installed");
    };
    assert_eq!(f.step.name(), "check", "{f:?}");
    assert_eq!(f.reason, "signature", "{f:?}");
    assert_eq!(
        agent.traffic().download_body,
        built.envelope.len() as u64,
        "the envelope only, not the {payload}-byte payload"
    );
    let steps = server_steps(&fleet.device_info(&dev.id).await);
    assert!(
        steps.iter().any(|(s, o, _)| s == "check" && o == "failure"),
        "{steps:?}"
    );
    assert!(!dev.path("app-b.bin").exists());

    // 2. Encrypted for other devices: this one holds no key for it.
    let (kek, _) = common::keypair(
        fleet.dir.path(),
        "others-kek",
        suitcase_author::keys::KeyAlg::A128Kw,
    );
    let dev = Device::new(&fleet, "no-key").await;
    let mut req = fleet.request(3, vec![fleet.app(&image(3, payload), 3)]);
    req.tier = suitcase_author::Tier::Upgraded;
    req.encrypt_for = vec![kek];
    let built = fleet.build(&req);
    let rel = fleet.upload(&built).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let Finished::Failed(f) = agent.cycle().await.unwrap().update.unwrap().finished else {
        panic!("installed a release it cannot decrypt");
    };
    assert_eq!((f.step.name(), f.reason.as_str()), ("check", "decrypt"));
    assert!(f.detail.contains("trust.decrypt"), "{f:?}");
    assert_eq!(
        agent.traffic().download_body,
        built.envelope.len() as u64,
        "the envelope only, not the {payload}-byte ciphertext"
    );
    fleet.stop().await;
}

//! Simulated MCUs: `suitcase-boot` on `suitcase-flash-sim` flash persisted to a file. The
//! agent's own MCU boots the update on trial through the bootloader and confirms it; a
//! secondary MCU receives its component in a multi-component update and verifies its own
//! manifest with its own trust anchors.

#![expect(clippy::unwrap_used, clippy::panic, reason = "test code")]

mod common;

use common::{APP_COMPONENT, Device, Fleet, image, keypair, server_steps};
use serde_json::json;
use suitcase_agent::config::Kind;
use suitcase_agent::mcu::Mcu;
use suitcase_agent::state::Durability;
use suitcase_agent::{Finished, Hooks};
use suitcase_author::keys::KeyAlg;
use suitcase_author::release::ImageInput;
use suitcase_boot::{Phase, Slot};

fn mcu_status(dev: &Device, fleet: &Fleet, name: &str) -> suitcase_boot::BootStatus<1> {
    let cfg = dev.config(fleet);
    let c = cfg.components.iter().find(|c| c.name == name).unwrap();
    let Kind::Mcu(m) = &c.kind else {
        panic!("not an MCU")
    };
    Mcu::open(m, &Durability::default())
        .unwrap()
        .status()
        .unwrap()
}

/// The agent's own MCU: the image goes into slot B as a slot image (header, the signed
/// envelope, the image), the bootloader's SUIT verifier accepts it, boots it on trial, and
/// the agent confirms it after the health check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcu_update_boots_on_trial_through_the_bootloader_and_is_confirmed() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "mcu").await;
    dev.components = common::MCU_COMPONENT.into();
    let img = image(11, 60_000);
    let built = fleet.build(&fleet.request(
        4,
        vec![ImageInput {
            name: "mcu".into(),
            bytes: img.clone(),
            component: vec![b"mcu".to_vec()],
            uri: Some("https://fw.example/mcu-4.bin".into()),
            integrated: false,
            invoke: false,
            delta_from: None,
        }],
    ));
    let rel = fleet.upload(&built).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    let details: Vec<String> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            suitcase_agent::Event::Step {
                step,
                detail: Some(d),
                ..
            } if step == "activate" || step == "reverify" => Some(d),
            _ => None,
        })
        .collect();
    assert!(
        details.iter().any(|d| d.contains("booted slot B on trial")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("boot verifier accepts slot B")),
        "{details:?}"
    );
    let st = mcu_status(&dev, &fleet, "mcu");
    assert_eq!((st.phase, st.running), (Phase::Confirmed, Slot::B));
    assert_eq!(
        st.min_security_versions[0].0, 4,
        "anti-rollback counter advanced"
    );
    // The slot holds the envelope and the image the manifest names.
    let flash = dev.read("mcu.flash");
    let slot_b = &flash[2 * 4096 + 32 * 4096..];
    let header = suitcase_device::SlotHeader::parse(slot_b[..32].try_into().unwrap())
        .unwrap()
        .unwrap();
    let off = header.image_offset as usize;
    assert_eq!(&slot_b[off..off + img.len()], &img[..]);
    assert_eq!(
        &slot_b[32..32 + header.envelope_len as usize],
        &built.envelope[..]
    );
    assert_eq!(
        agent.inventory().unwrap().boot.unwrap().slot.as_deref(),
        Some("b")
    );
    fleet.stop().await;
}

/// The MCU's new image fails its health check: the bootloader is reset until it reverts the
/// unconfirmed trial image (its own revert, `NotConfirmed`), and the failure is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_mcu_health_check_failure_reverts_through_the_bootloader() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "mcu-sick").await;
    dev.components = common::MCU_COMPONENT.into();
    dev.extra = "[health]\ncommand = [\"false\"]\n".into();
    let built = fleet.build(&fleet.request(
        4,
        vec![ImageInput {
            name: "mcu".into(),
            bytes: image(12, 5000),
            component: vec![b"mcu".to_vec()],
            uri: Some("https://fw.example/mcu.bin".into()),
            integrated: false,
            invoke: false,
            delta_from: None,
        }],
    ));
    let rel = fleet.upload(&built).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let Finished::Failed(f) = agent.cycle().await.unwrap().update.unwrap().finished else {
        panic!("expected a health-check failure");
    };
    assert_eq!(f.reason, "health-check");
    assert!(
        f.detail.contains("bootloader reverted to slot A"),
        "{}",
        f.detail
    );
    let st = mcu_status(&dev, &fleet, "mcu");
    assert_eq!((st.phase, st.running), (Phase::Confirmed, Slot::A));
    assert_eq!(st.last_failure, Some(suitcase_boot::Failure::NotConfirmed));
    fleet.stop().await;
}

struct Secondary {
    key: std::path::PathBuf,
    key_pub: std::path::PathBuf,
    vendor: [u8; 16],
    class: [u8; 16],
}

fn secondary(fleet: &Fleet) -> Secondary {
    let (key, key_pub) = keypair(fleet.dir.path(), "radio-author", KeyAlg::Ed25519);
    let vendor = suitcase_author::uuid::vendor("radio.example");
    Secondary {
        key,
        key_pub,
        vendor,
        class: suitcase_author::uuid::class(&vendor, "radio-v1"),
    }
}

/// The secondary MCU's slot image: its own manifest (signed by `key`), then its image.
fn radio_slot_image(
    fleet: &Fleet,
    s: &Secondary,
    key: &std::path::Path,
    img: &[u8],
    seq: u64,
) -> Vec<u8> {
    let mut req = fleet.request(
        seq,
        vec![ImageInput {
            name: "radio".into(),
            bytes: img.to_vec(),
            component: vec![vec![0]],
            uri: Some("https://fw.example/radio.bin".into()),
            integrated: false,
            invoke: false,
            delta_from: None,
        }],
    );
    req.vendor = s.vendor;
    req.class = s.class;
    req.sign = vec![key.to_path_buf()];
    let inner = fleet.build(&req);
    suitcase_device::pack(&inner.envelope, img, 64).unwrap()
}

fn radio_component(s: &Secondary) -> String {
    format!(
        r#"
[[component]]
name = "radio"
id = "726164696f"
kind = "secondary"
flash = "radio.flash"
sector_size = 4096
slot_sectors = 16
trust = ["{}"]
vendor = "radio.example"
class = "radio-v1"
"#,
        s.key_pub.display()
    )
}

/// One manifest, two components: the application on Linux A/B file slots and a radio MCU
/// behind a bus. The agent delivers the radio's slot image; the radio's bootloader verifies
/// the radio's own manifest with the radio's own key and identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_component_update_with_a_secondary_mcu() {
    let fleet = Fleet::new().await;
    let radio = secondary(&fleet);
    let mut dev = Device::new(&fleet, "gateway").await;
    dev.components = format!("{APP_COMPONENT}{}", radio_component(&radio));
    let app = image(21, 120_000);
    let radio_img = image(22, 30_000);
    let slot_image = radio_slot_image(&fleet, &radio, &radio.key, &radio_img, 9);
    let built = fleet.build(&fleet.request(
        6,
        vec![
            fleet.app(&app, 6),
            ImageInput {
                name: "radio".into(),
                bytes: slot_image.clone(),
                component: vec![b"radio".to_vec()],
                uri: Some("https://fw.example/radio-6.bin".into()),
                integrated: false,
                invoke: false,
                delta_from: None,
            },
        ],
    ));
    let rel = fleet.upload(&built).await;
    let campaign = fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(dev.read("app-b.bin"), app);
    let st = mcu_status(&dev, &fleet, "radio");
    assert_eq!((st.phase, st.running), (Phase::Confirmed, Slot::B));
    assert_eq!(
        st.min_security_versions[0].0, 9,
        "the radio's counter follows its own manifest's sequence number"
    );
    let distribute = events
        .all()
        .into_iter()
        .find_map(|e| match e {
            suitcase_agent::Event::Step { step, detail, .. } if step == "distribute" => detail,
            _ => None,
        })
        .unwrap();
    assert!(distribute.contains("app → file slot b"), "{distribute}");
    assert!(distribute.contains("radio → secondary MCU"), "{distribute}");
    common::wait_campaign(&fleet, &campaign, "succeeded", 1).await;
    let inv = agent.inventory().unwrap();
    assert!(inv.components.iter().all(|c| c.sequence_number == 6));
    fleet.stop().await;
}

/// The outer manifest is authentic, but the radio's own manifest inside its slot image is
/// signed by a key the radio does not trust: the radio's verifier refuses it at Re-verify,
/// the staged radio update is withdrawn, and the application is not switched either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_secondary_image_signed_by_an_untrusted_key_is_refused_by_the_secondary() {
    let fleet = Fleet::new().await;
    let radio = secondary(&fleet);
    let (rogue, _) = keypair(fleet.dir.path(), "rogue", KeyAlg::Ed25519);
    let mut dev = Device::new(&fleet, "gateway-2").await;
    dev.components = format!("{APP_COMPONENT}{}", radio_component(&radio));
    let slot_image = radio_slot_image(&fleet, &radio, &rogue, &image(23, 3000), 9);
    let built = fleet.build(&fleet.request(
        6,
        vec![
            fleet.app(&image(24, 3000), 6),
            ImageInput {
                name: "radio".into(),
                bytes: slot_image,
                component: vec![b"radio".to_vec()],
                uri: Some("https://fw.example/radio-6.bin".into()),
                integrated: false,
                invoke: false,
                delta_from: None,
            },
        ],
    ));
    let rel = fleet.upload(&built).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let Finished::Failed(f) = agent.cycle().await.unwrap().update.unwrap().finished else {
        panic!("the radio accepted an image signed by an untrusted key");
    };
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("reverify", "boot-refused")
    );
    assert!(f.detail.contains("radio"), "{}", f.detail);
    let st = mcu_status(&dev, &fleet, "radio");
    assert_eq!((st.phase, st.running), (Phase::Confirmed, Slot::A));
    assert!(
        !dev.path("app.slot").exists(),
        "the application was switched"
    );
    let steps = server_steps(&fleet.device_info(&dev.id).await);
    assert!(steps.contains(&(
        "reverify".into(),
        "failure".into(),
        Some("boot-refused".into())
    )));
    fleet.stop().await;
}

/// A delta release for the MCU: the patch applies to the image in the running slot (after
/// its slot header), the candidate goes into the other slot with the delta manifest, and the
/// bootloader's SUIT verifier accepts that manifest (its helper components name no slot) and
/// boots the image on trial before the agent confirms it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcu_delta_release_patches_the_running_slot() {
    let fleet = Fleet::with(|c| c.deltas = false).await;
    let mut dev = Device::new(&fleet, "mcu-delta").await;
    dev.components = common::MCU_COMPONENT.into();
    let mcu_image = |bytes: &[u8], seq: u64, from: Option<&[u8]>| ImageInput {
        name: "mcu".into(),
        bytes: bytes.to_vec(),
        component: vec![b"mcu".to_vec()],
        uri: Some(format!("https://fw.example/mcu-{seq}.bin")),
        integrated: false,
        invoke: false,
        delta_from: from.map(<[u8]>::to_vec),
    };
    let v1 = image(12, 60_000);
    let mut v2 = v1.clone();
    for at in (300..v2.len()).step_by(5000) {
        v2[at] ^= 0x5A;
    }
    let r1 = fleet
        .upload(&fleet.build(&fleet.request(4, vec![mcu_image(&v1, 4, None)])))
        .await;
    fleet.campaign(&r1, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());

    let built = fleet.build(&fleet.request(5, vec![mcu_image(&v2, 5, Some(&v1))]));
    let patch = built.payloads[0].bytes.len();
    assert!(
        built.payloads[0].delta_from.is_some() && patch < 6_000,
        "{patch}"
    );
    let r2 = fleet.upload(&built).await;
    fleet.campaign(&r2, &[&dev.id], json!({})).await;
    let before = agent.traffic();
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    assert!(agent.traffic().since(&before).download_body < patch as u64 + 4_000);
    let st = mcu_status(&dev, &fleet, "mcu");
    assert_eq!((st.phase, st.running), (Phase::Confirmed, Slot::A));
    assert_eq!(st.min_security_versions[0].0, 5);
    let flash = dev.read("mcu.flash");
    let slot_a = &flash[2 * 4096..2 * 4096 + 32 * 4096];
    let header = suitcase_device::SlotHeader::parse(slot_a[..32].try_into().unwrap())
        .unwrap()
        .unwrap();
    let off = header.image_offset as usize;
    assert_eq!(&slot_a[off..off + v2.len()], &v2[..]);
    fleet.stop().await;
}

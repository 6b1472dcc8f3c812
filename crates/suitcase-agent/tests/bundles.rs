//! Offline bundles (docs/bundles.md): a device that cannot reach the server installs a
//! release from a bundle with the same steps and checks as online, queues its reports, and
//! sends them when it reaches the server again, which records them in the device's timeline
//! marked offline without moving any campaign.

#![expect(clippy::unwrap_used, clippy::std_instead_of_core, reason = "test code")]

mod common;

use std::path::{Path, PathBuf};

use common::{ALL_STEPS, Device, Fleet, image, server_steps};
use serde_json::json;
use suitcase_agent::bundle::{self, Entry, Index, Member, Payload, Release};
use suitcase_agent::{AgentError, Finished, Hooks};
use suitcase_author::release::BuiltRelease;

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Writes `built` releases as a bundle at `out` (a tar file, or a directory with `dir`), the
/// way `suitcase bundle create` does.
fn make_bundle(out: &Path, dir: bool, releases: &[&BuiltRelease]) {
    let src = out.with_extension("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut index = Index {
        format: bundle::FORMAT.into(),
        version: bundle::VERSION,
        created_at: 1,
        releases: Vec::new(),
    };
    let mut entries = Vec::new();
    for (ri, b) in releases.iter().enumerate() {
        let env = suitcase_manifest::Envelope::decode(&b.envelope).unwrap();
        let s = suitcase_author::summary::summarize_unauthenticated(&env).unwrap();
        let env_file = src.join(format!("{ri}.suit"));
        std::fs::write(&env_file, &b.envelope).unwrap();
        let envelope = Member {
            path: format!("releases/{ri}/envelope.suit"),
            size: b.envelope.len() as u64,
            sha256: sha256(&b.envelope),
        };
        entries.push(Entry {
            name: envelope.path.clone(),
            from: env_file,
        });
        let mut payloads = Vec::new();
        for (pi, p) in b.payloads.iter().enumerate() {
            let Some(uri) = &p.uri else { continue };
            let f = src.join(format!("{ri}-{pi}.bin"));
            std::fs::write(&f, &p.bytes).unwrap();
            let m = Member {
                path: format!("releases/{ri}/payload-{pi}.bin"),
                size: p.bytes.len() as u64,
                sha256: sha256(&p.bytes),
            };
            entries.push(Entry {
                name: m.path.clone(),
                from: f,
            });
            payloads.push(Payload {
                uri: uri.clone(),
                member: m,
            });
        }
        index.releases.push(Release {
            id: bundle::bundle_release_id(&s.manifest_digest.1),
            sequence_number: s.sequence_number,
            manifest_digest: s.manifest_digest.clone(),
            vendor_ids: s.vendor_ids(),
            class_ids: s.class_ids(),
            components: s.images().map(|c| c.id.clone()).collect(),
            name: None,
            envelope,
            payloads,
        });
    }
    bundle::write(out, dir, &index, &entries).unwrap();
}

/// A device whose configured server is not there (a closed port on loopback).
async fn offline_device(fleet: &Fleet, name: &str) -> Device {
    let mut dev = Device::new(fleet, name).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    dev.base = Some(format!("http://127.0.0.1:{port}"));
    dev
}

fn outbox(dev: &Device) -> Vec<serde_json::Value> {
    serde_json::from_slice(&dev.read("state/outbox.json")).unwrap_or_default()
}

#[tokio::test]
async fn bundle_installs_offline_and_its_reports_appear_on_the_server_after_reconnection() {
    let fleet = Fleet::new().await;
    let bytes = image(7, 300_000);
    let built = fleet.build(&fleet.request(4, vec![fleet.app(&bytes, 4)]));
    // The server knows the release (uploaded) but never offers it to this device; another
    // device's campaign of the same release must not count the offline install.
    let rel = fleet.upload(&built).await;
    let other = Device::new(&fleet, "other").await;
    let campaign = fleet.campaign(&rel, &[&other.id], json!({})).await;
    let mut dev = offline_device(&fleet, "offline").await;
    let path = fleet.dir.path().join("update.bundle");
    make_bundle(&path, false, &[&built]);

    // 1. Offline: installed from the bundle, every step, reports queued.
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let cycle = agent.install_bundle(&path).await.unwrap();
    let update = cycle.update.unwrap();
    assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(
        dev.read("app-b.bin").get(..bytes.len()),
        Some(bytes.as_slice())
    );
    assert_eq!(dev.text("app.slot"), "active=b\nconfirmed=b\n");
    let steps: Vec<String> = events
        .steps()
        .into_iter()
        .filter(|(_, o, _)| o == "success")
        .map(|(s, _, _)| s)
        .collect();
    assert_eq!(steps, ALL_STEPS, "the same ten steps as online");
    assert_eq!(
        agent.traffic().download_body,
        0,
        "nothing came over the network"
    );
    let queued = outbox(&dev);
    assert!(queued.len() >= 10, "{queued:?}");
    assert!(queued.iter().all(|r| r["offline"] == true), "{queued:?}");
    assert_eq!(dev.installed()["components"][0]["sequence_number"], 4);
    drop(agent);

    // 2. Online again: the queued reports are delivered first, then the check-in shows the
    // installed release; the server's timeline has the offline update.
    dev.base = None;
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let cycle = agent.cycle().await.unwrap();
    assert!(cycle.update.is_none(), "nothing offered: {cycle:?}");
    assert!(outbox(&dev).is_empty(), "{:?}", outbox(&dev));
    let info = fleet.device_info(&dev.id).await;
    assert_eq!(info["update"]["offline"], true, "{info}");
    assert_eq!(info["update"]["release_id"], rel.as_str(), "{info}");
    assert_eq!(info["update"]["state"], "succeeded", "{info}");
    assert!(info["update"]["campaign_id"].is_null(), "{info}");
    let on_server: Vec<String> = server_steps(&info)
        .into_iter()
        .filter(|(_, o, _)| o == "success")
        .map(|(s, _, _)| s)
        .collect();
    assert_eq!(on_server, ALL_STEPS, "{info}");
    assert_eq!(info["sequence_number"], 4, "the inventory shows it: {info}");
    // No campaign moved.
    let c = fleet.campaign_info(&campaign).await;
    let sum = |f: &str| -> u64 {
        c["waves_progress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w[f].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!((sum("succeeded"), sum("failed")), (0, 0), "{c}");
    fleet.stop().await;
}

#[tokio::test]
async fn bundle_directory_with_several_releases_installs_the_newest_for_this_device() {
    let fleet = Fleet::new().await;
    let older = fleet.build(&fleet.request(2, vec![fleet.app(&image(2, 50_000), 2)]));
    let newer = fleet.build(&fleet.request(3, vec![fleet.app(&image(3, 60_000), 3)]));
    let mut other_class = fleet.request(9, vec![fleet.app(&image(9, 10_000), 9)]);
    other_class.class = suitcase_author::uuid::class(&fleet.vendor, "kettle");
    let other_class = fleet.build(&other_class);
    let dev = offline_device(&fleet, "usb").await;
    let path = fleet.dir.path().join("usb-stick");
    make_bundle(&path, true, &[&older, &other_class, &newer]);
    assert!(path.join("index.json").is_file());
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let update = agent.install_bundle(&path).await.unwrap().update.unwrap();
    assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(dev.installed()["components"][0]["sequence_number"], 3);
    // Again: nothing newer in it.
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let e = agent.install_bundle(&path).await.unwrap_err();
    assert!(matches!(e, AgentError::NothingInBundle(_)), "{e}");
    assert!(e.to_string().contains("nothing new"), "{e}");
    fleet.stop().await;
}

#[tokio::test]
async fn bundle_with_nothing_for_this_device_changes_nothing() {
    let fleet = Fleet::new().await;
    let mut req = fleet.request(5, vec![fleet.app(&image(5, 10_000), 5)]);
    req.class = suitcase_author::uuid::class(&fleet.vendor, "kettle");
    let built = fleet.build(&req);
    let dev = offline_device(&fleet, "nothing").await;
    let path = fleet.dir.path().join("kettle.bundle");
    make_bundle(&path, false, &[&built]);
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let e = agent.install_bundle(&path).await.unwrap_err();
    assert!(matches!(e, AgentError::NothingInBundle(_)), "{e}");
    assert!(
        e.to_string()
            .contains("nothing in the bundle for this device"),
        "{e}"
    );
    assert!(events.steps().is_empty(), "{:?}", events.all());
    assert!(!dev.path("state/journal.json").exists());
    assert!(outbox(&dev).is_empty());
    assert!(!dev.path("app-b.bin").exists());
    assert!(!dev.path("app.slot").exists());
    fleet.stop().await;
}

fn flip_payload_byte(bundle_dir: &Path, fix_index: bool) {
    let p = bundle_dir.join("releases/0/payload-0.bin");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&p, &bytes).unwrap();
    if fix_index {
        // The index is not trusted: a consistent lie must fail on the signed manifest.
        let ip = bundle_dir.join("index.json");
        let mut index: Index = serde_json::from_slice(&std::fs::read(&ip).unwrap()).unwrap();
        index.releases[0].payloads[0].member.sha256 = sha256(&bytes);
        std::fs::write(&ip, serde_json::to_vec(&index).unwrap()).unwrap();
    }
}

#[tokio::test]
async fn attack_bundle_payload_byte_flipped_is_refused() {
    let fleet = Fleet::new().await;
    let built = fleet.build(&fleet.request(4, vec![fleet.app(&image(4, 80_000), 4)]));
    for (name, fix_index, step, reason) in [
        // The index's SHA-256 catches it at Receive, as an offer's does online.
        ("flip", false, "receive", "download"),
        // An index that lies consistently: the manifest's image digest catches it.
        ("flip-and-lie", true, "process", ""),
    ] {
        let dev = offline_device(&fleet, name).await;
        let path: PathBuf = fleet.dir.path().join(format!("{name}-bundle"));
        make_bundle(&path, true, &[&built]);
        flip_payload_byte(&path, fix_index);
        let (mut agent, events) = dev.agent(&fleet, Hooks::default());
        let update = agent.install_bundle(&path).await.unwrap().update.unwrap();
        let Finished::Failed(f) = update.finished else {
            panic!(
                "{name}: a tampered payload was installed: {:?}",
                events.all()
            );
        };
        assert!(
            f.step.name() == step || (fix_index && f.step.name() == "check"),
            "{name}: {f:?}"
        );
        if !reason.is_empty() {
            assert_eq!(f.reason, reason, "{name}: {f:?}");
        }
        assert_eq!(
            dev.text("app.slot").lines().next().unwrap_or("active=a"),
            "active=a",
            "{name}"
        );
        assert_eq!(
            dev.installed()["components"][0]["sequence_number"],
            serde_json::Value::Null
        );
        assert!(
            outbox(&dev)
                .iter()
                .any(|r| r["outcome"] == "failure" && r["offline"] == true)
        );
    }
    fleet.stop().await;
}

#[tokio::test]
async fn attack_bundle_signed_by_an_untrusted_key_is_refused_at_check() {
    let fleet = Fleet::new().await;
    let (rogue, _) = common::keypair(
        fleet.dir.path(),
        "rogue",
        suitcase_author::keys::KeyAlg::Es256,
    );
    let mut req = fleet.request(6, vec![fleet.app(&image(6, 40_000), 6)]);
    req.sign = vec![rogue];
    let built = fleet.build(&req);
    let dev = offline_device(&fleet, "rogue").await;
    let path = fleet.dir.path().join("rogue.bundle");
    make_bundle(&path, false, &[&built]);
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    let update = agent.install_bundle(&path).await.unwrap().update.unwrap();
    let Finished::Failed(f) = update.finished else {
        panic!("a release signed by an untrusted key was installed from a bundle");
    };
    // Exactly as online (updates::attack_… : check / signature), before any payload is read.
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("check", "signature"),
        "{f:?}"
    );
    assert!(!dev.path("app-b.bin").exists());
    assert!(!dev.path("app.slot").exists());
    fleet.stop().await;
}

#[tokio::test]
async fn attack_bundle_member_outside_the_bundle_is_refused() {
    let fleet = Fleet::new().await;
    let built = fleet.build(&fleet.request(4, vec![fleet.app(&image(4, 1000), 4)]));
    let path = fleet.dir.path().join("escape");
    make_bundle(&path, true, &[&built]);
    let ip = path.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ip).unwrap()).unwrap();
    index["releases"][0]["payloads"][0]["path"] = json!("../../etc/passwd");
    std::fs::write(&ip, serde_json::to_vec(&index).unwrap()).unwrap();
    let e = bundle::Source::open(&path).unwrap_err();
    assert!(e.to_string().contains("not a plain relative path"), "{e}");
    fleet.stop().await;
}

#[tokio::test]
async fn watch_installs_each_new_bundle_in_a_mount_point_once() {
    let fleet = Fleet::new().await;
    let first = fleet.build(&fleet.request(2, vec![fleet.app(&image(2, 20_000), 2)]));
    let second = fleet.build(&fleet.request(3, vec![fleet.app(&image(3, 20_000), 3)]));
    let dev = offline_device(&fleet, "watcher").await;
    let mount = fleet.dir.path().join("media-usb");
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::write(mount.join("README.txt"), "not a bundle").unwrap();
    make_bundle(&mount.join("first"), true, &[&first]);
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let every = std::time::Duration::from_millis(10);
    agent.watch(&mount, every, Some(3)).await.unwrap();
    let installed = |events: &common::Events| {
        events
            .all()
            .into_iter()
            .filter(|e| matches!(e, suitcase_agent::Event::Update { result, .. } if result == "installed"))
            .count()
    };
    assert_eq!(
        installed(&events),
        1,
        "once, not every round: {:?}",
        events.all()
    );
    assert_eq!(dev.installed()["components"][0]["sequence_number"], 2);

    // A second bundle arrives as a file.
    make_bundle(&mount.join("second.bundle"), false, &[&second]);
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    agent.watch(&mount, every, Some(1)).await.unwrap();
    assert_eq!(installed(&events), 1, "{:?}", events.all());
    assert_eq!(dev.installed()["components"][0]["sequence_number"], 3);
    // The first one, seen by this new watcher, is older: a note, nothing installed.
    assert!(
        events.all().iter().any(|e| matches!(e, suitcase_agent::Event::Bundle { note: Some(n), .. } if n.contains("nothing new"))),
        "{:?}",
        events.all()
    );
    fleet.stop().await;
}

#[tokio::test]
async fn attack_bundle_index_names_another_release_than_its_envelope_is_refused() {
    let fleet = Fleet::new().await;
    // A: an older, authentic release; B: the (security) release the index claims to carry.
    let a = fleet.build(&fleet.request(4, vec![fleet.app(&image(4, 20_000), 4)]));
    let b = fleet.build(&fleet.request(5, vec![fleet.app(&image(5, 20_000), 5)]));
    let digest_of = |built: &BuiltRelease| {
        let env = suitcase_manifest::Envelope::decode(&built.envelope).unwrap();
        let s = suitcase_author::summary::summarize_unauthenticated(&env).unwrap();
        bundle::bundle_release_id(&s.manifest_digest.1)
    };
    let b_id = digest_of(&b);
    let dev = offline_device(&fleet, "liar").await;
    let path = fleet.dir.path().join("liar-bundle");
    make_bundle(&path, true, &[&a]);
    let ip = path.join("index.json");
    let mut index: Index = serde_json::from_slice(&std::fs::read(&ip).unwrap()).unwrap();
    index.releases[0].id.clone_from(&b_id);
    index.releases[0].sequence_number = 5;
    std::fs::write(&ip, serde_json::to_vec(&index).unwrap()).unwrap();

    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let update = agent.install_bundle(&path).await.unwrap().update.unwrap();
    let Finished::Failed(f) = update.finished else {
        panic!("A was installed under B's name: {:?}", events.all());
    };
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("check", "digest"),
        "{f:?}"
    );
    assert!(f.detail.contains(&digest_of(&a)), "{f:?}");
    // Nothing written, nothing recorded as installed, no report claims success.
    assert!(!dev.path("app-b.bin").exists());
    assert!(!dev.path("app.slot").exists());
    assert_eq!(
        dev.installed()["components"][0]["sequence_number"],
        serde_json::Value::Null
    );
    assert!(
        outbox(&dev)
            .iter()
            .all(|r| r["outcome"] != "success" || r["step"] == "receive"),
        "{:?}",
        outbox(&dev)
    );
    fleet.stop().await;
}

/// A tar header block by hand: ustar, `kind`, the size field as given (octal text).
fn tar_header(name: &str, kind: u8, size_octal: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    let size = format!("{size_octal:0>11}");
    h[124..135].copy_from_slice(size.as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

#[tokio::test]
async fn attack_bundle_with_a_huge_pax_header_is_refused_in_bounded_memory() {
    let fleet = Fleet::new().await;
    // Extension entries whose size fields claim 4 GiB (0o40000000000), in a file of a few
    // blocks: refused from the header, before a byte of them is read (the tar crate would
    // read each whole into memory).
    for kind in [b'x', b'L', b'g'] {
        let path = fleet
            .dir
            .path()
            .join(format!("huge-{}.bundle", char::from(kind)));
        let mut bytes = tar_header("PaxHeaders/index.json", kind, "40000000000").to_vec();
        bytes.extend_from_slice(&[b'9'; 1024]);
        std::fs::write(&path, &bytes).unwrap();
        let e = bundle::Source::open(&path).unwrap_err();
        assert!(
            e.to_string().contains("extension entry") && e.to_string().contains("4294967296"),
            "{e}"
        );
    }
    // Small extensions (what GNU tar or bsdtar may add) are read: a pax header naming the
    // index by a path longer than a ustar name field holds.
    let built = fleet.build(&fleet.request(4, vec![fleet.app(&image(4, 1000), 4)]));
    let dir = fleet.dir.path().join("pax-src");
    make_bundle(&dir, true, &[&built]);
    let mut tarball = Vec::new();
    let mut add = |name: &str, data: &[u8], pax_path: Option<&str>| {
        if let Some(p) = pax_path {
            let rec = format!("path={p}\n");
            let mut len = rec.len() + 3;
            len = rec.len() + 1 + len.to_string().len();
            let rec = format!("{len} {rec}");
            assert_eq!(rec.len(), len);
            tarball.extend_from_slice(&tar_header("pax", b'x', &format!("{:o}", rec.len())));
            let mut body = rec.into_bytes();
            body.resize(body.len().div_ceil(512) * 512, 0);
            tarball.extend_from_slice(&body);
        }
        tarball.extend_from_slice(&tar_header(name, b'0', &format!("{:o}", data.len())));
        let mut body = data.to_vec();
        body.resize(body.len().div_ceil(512) * 512, 0);
        tarball.extend_from_slice(&body);
    };
    add(
        "x",
        &std::fs::read(dir.join("index.json")).unwrap(),
        Some("./index.json"),
    );
    for m in ["releases/0/envelope.suit", "releases/0/payload-0.bin"] {
        add(m, &std::fs::read(dir.join(m)).unwrap(), None);
    }
    tarball.extend_from_slice(&[0u8; 1024]);
    let path = fleet.dir.path().join("pax.bundle");
    std::fs::write(&path, &tarball).unwrap();
    let s = bundle::Source::open(&path).unwrap();
    assert_eq!(s.index.releases.len(), 1);
    let dev = offline_device(&fleet, "pax").await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let update = agent.install_bundle(&path).await.unwrap().update.unwrap();
    assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());
    fleet.stop().await;
}

#[tokio::test]
async fn watch_retries_a_bundle_whose_install_was_deferred_by_consent() {
    let fleet = Fleet::new().await;
    let built = fleet.build(&fleet.request(3, vec![fleet.app(&image(3, 20_000), 3)]));
    let mut dev = offline_device(&fleet, "defer").await;
    // The consent command defers the first time it is asked, and grants after that.
    let asked = dev.path("asked");
    let script = dev.script(
        "consent.sh",
        &format!(
            "if [ -e {0} ]; then exit 0; fi\ntouch {0}\nexit 75",
            asked.display()
        ),
    );
    dev.extra = format!(
        "[consent]\nmode = \"command\"\ncommand = [\"{}\"]\n",
        script.display()
    );
    let mount = fleet.dir.path().join("defer-usb");
    std::fs::create_dir_all(&mount).unwrap();
    make_bundle(&mount.join("update.bundle"), false, &[&built]);
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let every = std::time::Duration::from_millis(10);
    agent.watch(&mount, every, Some(3)).await.unwrap();
    let results: Vec<String> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            suitcase_agent::Event::Update { result, .. } => Some(result),
            _ => None,
        })
        .collect();
    assert!(asked.exists(), "consent was asked");
    assert!(results.len() >= 2, "deferred, then installed: {results:?}");
    assert_ne!(results[0], "installed", "{results:?}");
    assert_eq!(
        results.last().map(String::as_str),
        Some("installed"),
        "the deferred bundle is tried again in the next round: {:?}",
        events.all()
    );
    assert_eq!(
        results.iter().filter(|r| *r == "installed").count(),
        1,
        "{results:?}"
    );
    assert_eq!(dev.installed()["components"][0]["sequence_number"], 3);
    fleet.stop().await;
}

#[tokio::test]
async fn bundle_run_finishes_an_interrupted_update_then_installs_the_newest() {
    let fleet = Fleet::new().await;
    let two = fleet.build(&fleet.request(2, vec![fleet.app(&image(2, 20_000), 2)]));
    let three = fleet.build(&fleet.request(3, vec![fleet.app(&image(3, 20_000), 3)]));
    let first = fleet.dir.path().join("two.bundle");
    make_bundle(&first, false, &[&two]);
    // How many durable writes a whole install takes, on a twin device.
    let twin = offline_device(&fleet, "twin").await;
    let (mut agent, _) = twin.agent(&fleet, Hooks::default());
    agent.install_bundle(&first).await.unwrap();
    let total = agent.durable_writes();
    // Crashed late in the install (the device already changed): a journal is left.
    let dev = offline_device(&fleet, "crashed").await;
    let (mut agent, _) = dev.agent(
        &fleet,
        Hooks {
            crash_after_writes: Some(total - 3),
            ..Hooks::default()
        },
    );
    let e = agent.install_bundle(&first).await.unwrap_err();
    assert!(matches!(e, AgentError::InjectedCrash), "{e}");
    let journal: serde_json::Value =
        serde_json::from_slice(&dev.read("state/journal.json")).unwrap();
    assert!(
        ["apply", "reverify", "activate", "clean-up"]
            .contains(&journal["step"].as_str().unwrap_or_default()),
        "the crash must leave an update that changed the device: {journal}"
    );
    drop(agent);
    // A bundle with 2 and 3: 2 is finished from the journal first, then 3 is picked.
    let both = fleet.dir.path().join("both.bundle");
    make_bundle(&both, false, &[&two, &three]);
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let cycle = agent.install_bundle(&both).await.unwrap();
    assert_eq!(
        cycle.update.map(|u| u.finished),
        Some(Finished::Installed),
        "{journal} {:?}",
        events.all()
    );
    assert_eq!(
        dev.installed()["components"][0]["sequence_number"],
        3,
        "{journal} {:?}",
        events.all()
    );
    assert!(
        events
            .all()
            .iter()
            .any(|e| matches!(e, suitcase_agent::Event::Resume { .. })),
        "{:?}",
        events.all()
    );
    fleet.stop().await;
}

#[tokio::test]
async fn attack_directory_bundle_symlinked_directory_is_refused() {
    let fleet = Fleet::new().await;
    let built = fleet.build(&fleet.request(4, vec![fleet.app(&image(4, 5000), 4)]));
    let path = fleet.dir.path().join("links");
    make_bundle(&path, true, &[&built]);
    // `releases -> elsewhere` (think `releases -> /` and `releases/etc/shadow`): the files
    // are there through the link, but outside the bundle.
    let elsewhere = fleet.dir.path().join("outside-the-bundle");
    std::fs::rename(path.join("releases"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, path.join("releases")).unwrap();
    let s = bundle::Source::open(&path).unwrap();
    let e = s.member("releases/0/envelope.suit").err().unwrap();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let dev = offline_device(&fleet, "links").await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let update = agent.install_bundle(&path).await.unwrap().update.unwrap();
    let Finished::Failed(f) = update.finished else {
        panic!("read through a symbolic link: {:?}", events.all());
    };
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("receive", "download"),
        "{f:?}"
    );
    assert!(!dev.path("app-b.bin").exists());

    // A symbolic link as the member itself, and as the index.
    std::fs::remove_file(path.join("releases")).unwrap();
    std::fs::create_dir_all(path.join("releases/0")).unwrap();
    for f in ["envelope.suit", "payload-0.bin"] {
        std::os::unix::fs::symlink(elsewhere.join("0").join(f), path.join("releases/0").join(f))
            .unwrap();
    }
    let s = bundle::Source::open(&path).unwrap();
    assert!(s.member("releases/0/envelope.suit").is_err());
    let index = fleet.dir.path().join("index-elsewhere.json");
    std::fs::rename(path.join("index.json"), &index).unwrap();
    std::os::unix::fs::symlink(&index, path.join("index.json")).unwrap();
    assert!(bundle::Source::open(&path).is_err());
    fleet.stop().await;
}

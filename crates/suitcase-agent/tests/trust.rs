//! The agent with a trust state (docs/trust.md): releases checked against the state's release
//! signers and revocations, and trust updates delivered through the real server like a
//! release (uploaded, offered by a campaign), applied under the root keys in force and stored
//! atomically. Keys and updates are made with `suitcase_author::trust`, as `suitcase trust`
//! makes them.

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

use std::path::{Path, PathBuf};

use common::trust::{config, cycle, key, register, write_genesis};
use common::{Device, Fleet, image, keypair};
use serde_json::json;
use suitcase_agent::{Config, Finished, Hooks};
use suitcase_author::keys::KeyAlg;
use suitcase_author::signer::Signer;
use suitcase_manifest::Actions;
use suitcase_trust::{Prefix, ReleaseSigner, TrustState};

fn signer(public: &Path) -> ReleaseSigner {
    ReleaseSigner {
        key: key(public),
        actions: Actions::ALL,
        component: Prefix::ALL,
    }
}

/// The keys of a fleet with a 2-of-2 root: `author` (the fleet's, registered) signs releases.
struct Keys {
    root1: PathBuf,
    root2: PathBuf,
    author2: (PathBuf, PathBuf),
    genesis: TrustState,
}

async fn keys(fleet: &Fleet) -> Keys {
    let dir = fleet.dir.path();
    let (root1, root1_pub) = keypair(dir, "root1", KeyAlg::Es256);
    let (root2, root2_pub) = keypair(dir, "root2", KeyAlg::Es256);
    let author2 = keypair(dir, "author2", KeyAlg::Es256);
    // The server takes uploads signed by registered keys: the root keys (trust updates) and
    // the new author. The device trusts none of them by this registration.
    for (name, p) in [
        ("root1", &root1_pub),
        ("root2", &root2_pub),
        ("author2", &author2.1),
    ] {
        register(fleet, name, p).await;
    }
    let mut genesis = TrustState::genesis(&[key(&root1_pub), key(&root2_pub)], 2).unwrap();
    genesis.add_signer(signer(&fleet.key_pub)).unwrap();
    Keys {
        root1,
        root2,
        author2,
        genesis,
    }
}

fn sign(state: &TrustState, with: &[&Path]) -> Vec<u8> {
    let signers: Vec<Box<dyn Signer>> = with
        .iter()
        .map(|p| suitcase_author::signer::open(p).unwrap())
        .collect();
    let refs: Vec<&dyn Signer> = signers.iter().map(AsRef::as_ref).collect();
    suitcase_author::trust::build_update(state, &refs).unwrap()
}

/// Offers a one-image release signed by `key` to `dev`; the envelope's size.
async fn offer_release(fleet: &Fleet, dev: &Device, sequence: u64, key: &Path, seed: u8) -> u64 {
    let mut req = fleet.request(sequence, vec![fleet.app(&image(seed, 30_000), sequence)]);
    req.sign = vec![key.to_path_buf()];
    let built = fleet.build(&req);
    let id = fleet.upload(&built).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    built.envelope.len() as u64
}

/// A device whose `agent.toml` names the trust state file `trust.cbor` (genesis).
async fn device(fleet: &Fleet, name: &str, genesis: &TrustState) -> Device {
    let dev = Device::new(fleet, name).await;
    write_genesis(&dev, genesis);
    dev
}

fn stored(dev: &Device) -> TrustState {
    TrustState::decode(&dev.read("state/trust.cbor")).unwrap()
}

/// The revocation walk-through of docs/trust.md, through the server and the agent: a release
/// by the author is accepted; a trust update (2-of-2 roots) revokes the author and adds
/// author2; the revoked author's next release is refused at Check with nothing but the
/// envelope downloaded, reason `signature` naming the revocation (RFC 8240 §3); author2's is
/// accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_revoked_key_release_refused_by_agent() {
    let fleet = Fleet::new().await;
    let k = keys(&fleet).await;
    let dev = device(&fleet, "d1", &k.genesis).await;

    offer_release(&fleet, &dev, 1, &fleet.key, 1).await;
    let (f, events) = cycle(&fleet, &dev).await;
    assert_eq!(f, Finished::Installed, "{:?}", events.all());
    assert!(
        events.detail("check").unwrap().contains("release signer"),
        "{:?}",
        events.detail("check")
    );

    let mut next = k.genesis;
    next.set_sequence(1);
    next.add_signer(signer(&k.author2.1)).unwrap();
    let author_kid = key(&fleet.key_pub).id();
    next.revoke(author_kid).unwrap();
    let update = sign(&next, &[&k.root1, &k.root2]);
    fleet.offer_trust_update(&dev, &update).await;
    let (f, events) = cycle(&fleet, &dev).await;
    assert_eq!(f, Finished::Installed, "{:?}", events.all());
    let detail = events.detail("check").unwrap();
    assert!(detail.contains("trust update applied"), "{detail}");
    assert_eq!(stored(&dev), next);
    // The server got the ten step reports of an installed update.
    let info = fleet.device_info(&dev.id).await;
    let steps = common::server_steps(&info);
    assert_eq!(
        steps.iter().map(|(s, _, _)| s.as_str()).collect::<Vec<_>>(),
        common::ALL_STEPS
    );
    assert!(steps.iter().all(|(_, o, _)| o == "success"), "{steps:?}");
    assert_eq!(info["update"]["state"], "succeeded");
    // The provisioned file is never written.
    assert_eq!(
        TrustState::decode(&dev.read("genesis.cbor")).unwrap(),
        k.genesis
    );

    let envelope = offer_release(&fleet, &dev, 2, &fleet.key, 2).await;
    let (f, events) = cycle(&fleet, &dev).await;
    let Finished::Failed(failure) = f else {
        panic!(
            "the revoked key's release was not refused: {:?}",
            events.all()
        );
    };
    assert_eq!(failure.step, suitcase_protocol::Step::Check);
    assert_eq!(failure.reason, "signature");
    assert!(
        failure.detail.contains(&hex::encode(author_kid)) && failure.detail.contains("revoked"),
        "{}",
        failure.detail
    );
    let traffic = events
        .all()
        .iter()
        .find_map(|e| match e {
            suitcase_agent::Event::Update { traffic, .. } => *traffic,
            _ => None,
        })
        .unwrap();
    // The envelope and not one payload byte (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION).
    assert_eq!(traffic.download_body, envelope, "{traffic:?}");

    offer_release(&fleet, &dev, 3, &k.author2.0, 3).await;
    let (f, events) = cycle(&fleet, &dev).await;
    assert_eq!(f, Finished::Installed, "{:?}", events.all());
    fleet.stop().await;
}

/// A trust update signed by the release signer (not a root key) is refused with reason
/// `signature` and the state in force is kept (TUF §2.1.1: the root role alone changes trust).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_release_signer_trust_update_refused_by_agent() {
    let fleet = Fleet::new().await;
    let k = keys(&fleet).await;
    let dev = device(&fleet, "d2", &k.genesis).await;
    let mut next = k.genesis;
    next.set_sequence(1);
    next.add_signer(signer(&k.author2.1)).unwrap();
    let update = sign(&next, &[&fleet.key]);
    fleet.offer_trust_update(&dev, &update).await;
    let (f, events) = cycle(&fleet, &dev).await;
    let Finished::Failed(failure) = f else {
        panic!("accepted: {:?}", events.all());
    };
    assert_eq!(failure.step, suitcase_protocol::Step::Check);
    assert_eq!(failure.reason, "signature", "{}", failure.detail);
    assert!(
        failure.detail.contains("trust update refused"),
        "{}",
        failure.detail
    );
    assert!(!dev.path("state/trust.cbor").exists());
    let steps = common::server_steps(&fleet.device_info(&dev.id).await);
    assert!(
        steps.contains(&("check".into(), "failure".into(), Some("signature".into()))),
        "{steps:?}"
    );
    // author2 is still not trusted.
    offer_release(&fleet, &dev, 1, &k.author2.0, 1).await;
    let (f, _) = cycle(&fleet, &dev).await;
    assert!(
        matches!(f, Finished::Failed(ref e) if e.reason == "signature"),
        "{f:?}"
    );
    fleet.stop().await;
}

/// After trust updates 1 and 2, replaying update 1 (an older trust sequence number) is
/// refused as `sequence-rollback` and the state in force stays 2 (manifest §8.4.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_trust_update_replay_refused_by_agent() {
    let fleet = Fleet::new().await;
    let k = keys(&fleet).await;
    let dev = device(&fleet, "d3", &k.genesis).await;
    let mut one = k.genesis;
    one.set_sequence(1);
    one.add_signer(signer(&k.author2.1)).unwrap();
    let update1 = sign(&one, &[&k.root1, &k.root2]);
    let mut two = one;
    two.set_sequence(2);
    two.set_release_threshold(1);
    two.revoke(key(&fleet.key_pub).id()).unwrap();
    let update2 = sign(&two, &[&k.root1, &k.root2]);
    let mut ids = Vec::new();
    for u in [&update1, &update2] {
        ids.push(fleet.offer_trust_update(&dev, u).await);
        let (f, events) = cycle(&fleet, &dev).await;
        assert_eq!(f, Finished::Installed, "{:?}", events.all());
    }
    assert_eq!(stored(&dev), two);
    // Update 1 offered again by a new campaign.
    fleet
        .campaign(&ids[0], &[&dev.id], json!({"name": "replay"}))
        .await;
    let (f, events) = cycle(&fleet, &dev).await;
    let Finished::Failed(failure) = f else {
        panic!("replay accepted: {:?}", events.all());
    };
    assert_eq!(failure.reason, "sequence-rollback", "{}", failure.detail);
    assert_eq!(stored(&dev), two);
    fleet.stop().await;
}

/// `trust.state` replaces the fixed-anchor settings: given beside `anchors` (or `threshold`)
/// the configuration is refused naming both, and a file that is not a trust state is refused
/// naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_state_config_mistakes_are_named() {
    let fleet = Fleet::new().await;
    let k = keys(&fleet).await;
    let dev = device(&fleet, "d4", &k.genesis).await;
    let path = dev.path("agent.toml");
    let both = dev
        .toml(&fleet)
        .replace("[trust]\n", "[trust]\nstate = \"genesis.cbor\"\n");
    std::fs::write(&path, both).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("trust.state") && e.contains("trust.anchors"),
        "{e}"
    );
    let anchors = format!("anchors = [\"{}\"]\n", fleet.key_pub.display());
    let not_state = dev.toml(&fleet).replace(
        &anchors,
        &format!("state = \"{}\"\n", fleet.key_pub.display()),
    );
    std::fs::write(&path, not_state).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("trust state") && e.contains(&fleet.key_pub.display().to_string()),
        "{e}"
    );
    fleet.stop().await;
}

/// A crash after each durable write of a trust update (the agent restarted from its state
/// directory each time): the update ends applied exactly as without the crash, and at every
/// crash the trust state in force is the old or the new one, whole (write temp + fsync +
/// rename; the journal's `trust_update` lets a Check run again find the new state in force).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_crash_after_every_durable_write_of_a_trust_update_applies_it_once() {
    const DEVICES: usize = 40;
    let fleet = Fleet::new().await;
    let k = keys(&fleet).await;
    let mut next = k.genesis;
    next.set_sequence(1);
    next.add_signer(signer(&k.author2.1)).unwrap();
    next.revoke(key(&fleet.key_pub).id()).unwrap();
    let update = sign(&next, &[&k.root1, &k.root2]);
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        devices.push(device(&fleet, &format!("c{i}"), &k.genesis).await);
    }
    let r = fleet
        .client
        .post(fleet.url("/api/v1/releases?name=trust-1"))
        .bearer_auth(&fleet.admin)
        .header("content-type", suitcase_protocol::SUIT_MEDIA_TYPE)
        .body(update)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    fleet
        .campaign(v["id"].as_str().unwrap(), &ids, json!({}))
        .await;
    let mut crashes = 0;
    let mut completed = false;
    for (i, dev) in devices.iter().enumerate() {
        let hooks = Hooks {
            crash_after_writes: Some(i as u64 + 1),
            ..Hooks::default()
        };
        let events = common::Events::default();
        let mut agent =
            suitcase_agent::Agent::new(config(&fleet, dev), hooks, events.sink()).unwrap();
        match agent.cycle().await {
            Err(suitcase_agent::AgentError::InjectedCrash) => crashes += 1,
            Ok(c) => {
                assert_eq!(
                    c.update.unwrap().finished,
                    Finished::Installed,
                    "{:?}",
                    events.all()
                );
                assert_eq!(stored(dev), next);
                completed = true;
                break;
            }
            Err(e) => panic!("crash at write {}: {e}", i + 1),
        }
        // What is in force at the crash: the provisioned state or the new one, whole.
        if dev.path("state/trust.cbor").exists() {
            assert_eq!(stored(dev), next, "crash at write {}", i + 1);
        }
        let mut ended = false;
        for _ in 0..5 {
            let events = common::Events::default();
            let mut agent =
                suitcase_agent::Agent::new(config(&fleet, dev), Hooks::default(), events.sink())
                    .unwrap();
            let c = agent.cycle().await.unwrap();
            if let Some(u) = c.update {
                assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
                ended = true;
                break;
            }
            if c.answer.is_some_and(|a| a.update.is_none()) {
                ended = true;
                break;
            }
        }
        assert!(ended, "crash at write {}: the update never ended", i + 1);
        assert_eq!(stored(dev), next, "crash at write {}", i + 1);
        assert!(!dev.path("state/journal.json").exists());
    }
    assert!(completed, "more than {DEVICES} durable writes");
    assert!(crashes >= 3, "{crashes}");
    fleet.stop().await;
}

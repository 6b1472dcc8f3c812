//! Trust updates in offline bundles (docs/bundles.md §3, docs/trust.md): a device that never
//! reaches the server applies the trust updates a bundle carries, under the root in force and
//! above its trust sequence number, before it picks a release of the bundle, which is then
//! checked against the new state. Bundles are written with `suitcase_agent::bundle::write`,
//! as `suitcase bundle create --trust-update` writes them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::std_instead_of_core,
    missing_docs,
    reason = "test code"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{Device, Fleet, image, keypair};
use suitcase_agent::bundle::{self, Entry, Index, Member, Payload, Release};
use suitcase_agent::{AgentError, Config, Event, Finished, Hooks};
use suitcase_author::keys::KeyAlg;
use suitcase_author::release::BuiltRelease;
use suitcase_test_support::trust;
use suitcase_trust::TrustState;

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Writes a tar bundle at `out`: `updates` (trust updates) listed as `bundle create
/// --trust-update` lists them, then `releases` with their payloads.
fn make_bundle(out: &Path, updates: &[&[u8]], releases: &[&BuiltRelease]) {
    let src = out.with_extension("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut index = Index {
        format: bundle::FORMAT.into(),
        version: bundle::VERSION,
        created_at: 1,
        releases: Vec::new(),
    };
    let mut entries = Vec::new();
    let envelopes = updates
        .iter()
        .map(|u| (u.to_vec(), Vec::new()))
        .chain(releases.iter().map(|b| {
            let payloads: Vec<(String, Vec<u8>)> = b
                .payloads
                .iter()
                .filter_map(|p| Some((p.uri.clone()?, p.bytes.clone())))
                .collect();
            (b.envelope.clone(), payloads)
        }));
    for (ri, (envelope, payloads)) in envelopes.enumerate() {
        let env = suitcase_manifest::Envelope::decode(&envelope).unwrap();
        let s = suitcase_author::summary::summarize_unauthenticated(&env).unwrap();
        let file = src.join(format!("{ri}.suit"));
        std::fs::write(&file, &envelope).unwrap();
        let member = Member {
            path: format!("releases/{ri}/envelope.suit"),
            size: envelope.len() as u64,
            sha256: sha256(&envelope),
        };
        entries.push(Entry {
            name: member.path.clone(),
            from: file,
        });
        let trust_update = bundle::is_trust_update(&envelope);
        let mut listed = Vec::new();
        for (pi, (uri, bytes)) in payloads.into_iter().enumerate() {
            let f = src.join(format!("{ri}-{pi}.bin"));
            std::fs::write(&f, &bytes).unwrap();
            let m = Member {
                path: format!("releases/{ri}/payload-{pi}.bin"),
                size: bytes.len() as u64,
                sha256: sha256(&bytes),
            };
            entries.push(Entry {
                name: m.path.clone(),
                from: f,
            });
            listed.push(Payload { uri, member: m });
        }
        index.releases.push(Release {
            id: bundle::bundle_release_id(&s.manifest_digest.1),
            sequence_number: s.sequence_number,
            manifest_digest: s.manifest_digest.clone(),
            vendor_ids: if trust_update { vec![] } else { s.vendor_ids() },
            class_ids: if trust_update { vec![] } else { s.class_ids() },
            components: if trust_update {
                vec![bundle::trust_component()]
            } else {
                s.images().map(|c| c.id.clone()).collect()
            },
            name: None,
            envelope: member,
            payloads: listed,
        });
    }
    bundle::write(out, false, &index, &entries).unwrap();
}

/// Root keys `root1`, `root2` (2 of 2), the fleet's author and `author2`'s key pair; the
/// genesis state trusts the author only.
struct Keys {
    root1: PathBuf,
    root2: PathBuf,
    author2: (PathBuf, PathBuf),
    genesis: TrustState,
}

fn keys(fleet: &Fleet) -> Keys {
    let dir = fleet.dir.path();
    let (root1, root1_pub) = keypair(dir, "root1", KeyAlg::Es256);
    let (root2, root2_pub) = keypair(dir, "root2", KeyAlg::Es256);
    let author2 = keypair(dir, "author2", KeyAlg::Es256);
    let mut genesis =
        TrustState::genesis(&[trust::key(&root1_pub), trust::key(&root2_pub)], 2).unwrap();
    genesis.add_signer(trust::signer(&fleet.key_pub)).unwrap();
    Keys {
        root1,
        root2,
        author2,
        genesis,
    }
}

/// Trust update 1 of `k`: author2 in, the fleet's author revoked.
fn rotation(fleet: &Fleet, k: &Keys) -> TrustState {
    let mut next = k.genesis;
    next.set_sequence(1);
    next.add_signer(trust::signer(&k.author2.1)).unwrap();
    next.revoke(trust::key(&fleet.key_pub).id()).unwrap();
    next
}

/// A device provisioned with `genesis`, its server a closed port (it never reaches one).
async fn device(fleet: &Fleet, name: &str, genesis: &TrustState) -> Device {
    let mut dev = Device::new(fleet, name).await;
    std::fs::write(dev.path("genesis.cbor"), trust::document(genesis)).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    dev.base = Some(format!("http://127.0.0.1:{port}"));
    dev
}

fn agent(fleet: &Fleet, dev: &Device, state: bool) -> (suitcase_agent::Agent, common::Events) {
    let mut toml = dev.toml(fleet);
    if state {
        toml = toml.replace(
            &format!("anchors = [\"{}\"]\n", fleet.key_pub.display()),
            "state = \"genesis.cbor\"\n",
        );
        assert!(toml.contains("state = \"genesis.cbor\""));
    }
    let path = dev.path("agent.toml");
    std::fs::write(&path, toml).unwrap();
    let events = common::Events::default();
    let agent = suitcase_agent::Agent::new(
        Config::load(&path).unwrap(),
        Hooks::default(),
        events.sink(),
    )
    .unwrap();
    (agent, events)
}

fn release(fleet: &Fleet, sequence: u64, key: &Path, seed: u8) -> BuiltRelease {
    let mut req = fleet.request(sequence, vec![fleet.app(&image(seed, 20_000), sequence)]);
    req.sign = vec![key.to_path_buf()];
    fleet.build(&req)
}

fn notes(events: &common::Events) -> Vec<String> {
    events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::Bundle { note: Some(n), .. } => Some(n),
            _ => None,
        })
        .collect()
}

/// Asserts that a bundle note among `events` contains `needle`.
fn assert_note(events: &common::Events, needle: &str) {
    assert!(
        notes(events).iter().any(|n| n.contains(needle)),
        "{:?}",
        notes(events)
    );
}

/// Writes `file` in the fleet's directory: a bundle of `updates` and `releases`.
fn bundle_at(fleet: &Fleet, file: &str, updates: &[&[u8]], releases: &[&BuiltRelease]) -> PathBuf {
    let path = fleet.dir.path().join(file);
    make_bundle(&path, updates, releases);
    path
}

/// Installs the bundle at `path` with a fresh agent on the trust state: how its update ended,
/// and the events.
async fn install(fleet: &Fleet, dev: &Device, path: &Path) -> (Finished, common::Events) {
    let (mut a, events) = agent(fleet, dev, true);
    let end = a
        .install_bundle(path)
        .await
        .unwrap()
        .update
        .unwrap()
        .finished;
    (end, events)
}

fn stored(dev: &Device) -> Option<TrustState> {
    dev.path("state/trust.cbor")
        .exists()
        .then(|| TrustState::decode(&dev.read("state/trust.cbor")).unwrap())
}

/// A bundle with the rotation (author2 in, the author revoked, signed by both roots) and
/// author2's release: the update is applied first, so author2's release installs; the state
/// is stored. A second bundle with the same update (now in force: passed over, not applied
/// again) and the revoked author's newer release: refused at Check (`signature`, naming the
/// revocation), as online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_trust_update_is_applied_before_its_releases() {
    let fleet = Fleet::new().await;
    let k = keys(&fleet);
    let dev = device(&fleet, "d1", &k.genesis).await;
    let next = rotation(&fleet, &k);
    let update = trust::update(&next, &[&k.root1, &k.root2]);

    // Without the update, author2's release is refused: the control.
    let by_author2 = release(&fleet, 2, &k.author2.0, 2);
    let plain = bundle_at(&fleet, "plain.bundle", &[], &[&by_author2]);
    let (end, events) = install(&fleet, &dev, &plain).await;
    let Finished::Failed(f) = end else {
        panic!("installed without the trust update: {:?}", events.all());
    };
    assert_eq!((f.step.name(), f.reason.as_str()), ("check", "signature"));

    let path = bundle_at(&fleet, "rotation.bundle", &[&update], &[&by_author2]);
    let (end, events) = install(&fleet, &dev, &path).await;
    assert_eq!(end, Finished::Installed, "{:?}", events.all());
    assert_eq!(stored(&dev), Some(next));
    assert_note(&events, "trust update applied from the bundle");
    assert_eq!(dev.read("app-b.bin"), image(2, 20_000));

    let by_revoked = release(&fleet, 3, &fleet.key, 3);
    let again = bundle_at(&fleet, "again.bundle", &[&update], &[&by_revoked]);
    let (end, events) = install(&fleet, &dev, &again).await;
    let Finished::Failed(f) = end else {
        panic!("the revoked key's release installed: {:?}", events.all());
    };
    assert_eq!((f.step.name(), f.reason.as_str()), ("check", "signature"));
    assert!(f.detail.contains("revoked"), "{}", f.detail);
    assert_note(&events, "not applied (sequence-rollback)");
    assert_eq!(stored(&dev), Some(next));
    assert_eq!(dev.read("app-b.bin"), image(2, 20_000));
    fleet.stop().await;
}

/// A trust update signed by one root key of a 2-of-2 root (a compromised key), or by the
/// release signer (not a root key at all), in a bundle with a release it would authorise:
/// refused naming the reason (`signature`), the state in force kept (nothing stored), nothing
/// from the bundle installed (TUF §2.1.1, RFC 8240 §3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_bundle_trust_update_below_the_root_threshold_is_refused() {
    let fleet = Fleet::new().await;
    let k = keys(&fleet);
    let dev = device(&fleet, "d2", &k.genesis).await;
    let next = rotation(&fleet, &k);
    let by_author2 = release(&fleet, 2, &k.author2.0, 2);
    for (name, signers) in [
        ("one-root", vec![k.root1.as_path()]),
        ("release-signer", vec![fleet.key.as_path()]),
    ] {
        let update = trust::update(&next, &signers);
        let path = bundle_at(
            &fleet,
            &format!("{name}.bundle"),
            &[&update],
            &[&by_author2],
        );
        let (mut a, events) = agent(&fleet, &dev, true);
        let e = match a.install_bundle(&path).await {
            Err(e @ AgentError::Local(_)) => e.to_string(),
            other => panic!("{name}: not refused: {other:?} {:?}", events.all()),
        };
        assert!(
            e.contains("refused (signature)") && e.contains("nothing from this bundle"),
            "{name}: {e}"
        );
        assert_eq!(stored(&dev), None, "{name}");
        assert!(!dev.path("app-b.bin").exists(), "{name}");
        assert!(!dev.path("state/journal.json").exists(), "{name}");
    }
    fleet.stop().await;
}

/// A device with fixed trust anchors (no trust state) refuses a bundle carrying a trust
/// update, naming `trust.state`, and installs nothing from it: a trust update it cannot apply
/// must not be silently dropped while the bundle's releases assume it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_trust_update_for_a_device_with_fixed_anchors_is_refused() {
    let fleet = Fleet::new().await;
    let k = keys(&fleet);
    let dev = device(&fleet, "d3", &k.genesis).await;
    let update = trust::update(&rotation(&fleet, &k), &[&k.root1, &k.root2]);
    let by_signer = release(&fleet, 2, &fleet.key, 2);
    let path = bundle_at(&fleet, "fixed.bundle", &[&update], &[&by_signer]);
    let (mut a, _) = agent(&fleet, &dev, false);
    let e = a.install_bundle(&path).await.unwrap_err().to_string();
    assert!(e.contains("trust.state"), "{e}");
    assert!(!dev.path("app-b.bin").exists());
    fleet.stop().await;
}

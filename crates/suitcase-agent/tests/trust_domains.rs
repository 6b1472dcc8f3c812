//! Trust domains (draft-ietf-suit-trust-domains-12, docs/trust.md "Trust domains") through the
//! real server and the agent: an operator's root manifest wrapping an author's signed manifest
//! as an integrated SUIT dependency (`suitcase_author::wrap`, as `suitcase manifest wrap`
//! builds it), uploaded, offered by a campaign, checked and installed by an agent whose trust
//! state keeps each release signer to its components (the author to `app`, the operator to the
//! dependency's slot); and the attacks on it, each refused at Check before any payload byte.

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

use common::hostile::{Answer, Hostile};
use common::trust::{cycle, key, register, write_genesis};
use common::{Device, Fleet, image, keypair};
use serde_json::{Value, json};
use suitcase_agent::Finished;
use suitcase_author::keys::KeyAlg;
use suitcase_author::release::BuiltRelease;
use suitcase_author::wrap::{WrapRequest, wrap};
use suitcase_manifest::Actions;
use suitcase_protocol::Step;
use suitcase_trust::{Prefix, ReleaseSigner, TrustState};

/// The dependency's slot (`suitcase manifest wrap`'s default) and the author's component,
/// as encoded SUIT_Component_Identifiers.
const SLOT: &[u8] = b"\x81\x4fdependency.suit";
const APP: &[u8] = b"\x81\x43app";

fn signer(public: &Path, prefix: &[u8]) -> ReleaseSigner {
    ReleaseSigner {
        key: key(public),
        actions: Actions::ALL,
        component: Prefix::new(prefix).unwrap(),
    }
}

/// The operator's key pair (registered with the server) and a device whose trust state
/// trusts the fleet's author for `app` and the operator for the dependency's slot only.
async fn setup(fleet: &Fleet) -> (PathBuf, Device) {
    let dir = fleet.dir.path();
    let (_, root_pub) = keypair(dir, "root", KeyAlg::Es256);
    let (operator, operator_pub) = keypair(dir, "operator", KeyAlg::Es256);
    register(fleet, "operator", &operator_pub).await;
    let mut genesis = TrustState::genesis(&[key(&root_pub)], 1).unwrap();
    genesis.add_signer(signer(&fleet.key_pub, APP)).unwrap();
    genesis.add_signer(signer(&operator_pub, SLOT)).unwrap();
    let dev = Device::new(fleet, "d1").await;
    write_genesis(&dev, &genesis);
    (operator, dev)
}

/// The author's one-image (`app`) release of `bytes` at `sequence`, signed with `author`.
fn authors(fleet: &Fleet, author: &Path, sequence: u64, bytes: &[u8]) -> BuiltRelease {
    let mut req = fleet.request(sequence, vec![fleet.app(bytes, sequence)]);
    req.sign = vec![author.to_path_buf()];
    fleet.build(&req)
}

/// `built` (the author's release) wrapped in a root at `sequence` signed by `operator`, as
/// `suitcase manifest wrap` does; its payloads are still the author's.
fn wrapped(built: &BuiltRelease, operator: &Path, sequence: u64) -> BuiltRelease {
    let request = WrapRequest {
        sequence,
        name: "#dependency.suit".into(),
        slot: vec![b"dependency.suit".to_vec()],
    };
    let signer = suitcase_author::signer::open(operator).unwrap();
    let mut root = built.clone();
    root.envelope = wrap(&built.envelope, &request, signer.as_ref())
        .unwrap()
        .envelope;
    let e = suitcase_manifest::Envelope::decode(&root.envelope).unwrap();
    root.manifest_digest = e
        .manifest_digest(suitcase_manifest::DigestAlgorithm::Sha256)
        .as_bytes()
        .to_vec();
    root
}

/// Builds the author's one-image (`app`) release signed with `author`, wraps it in a root
/// signed by `operator`, uploads the root and offers it to `dev`; the payload's bytes and the
/// release id.
async fn offer_wrapped(
    fleet: &Fleet,
    dev: &Device,
    author: &Path,
    operator: &Path,
) -> (Vec<u8>, String) {
    let bytes = image(7, 30_000);
    let root = wrapped(&authors(fleet, author, 1, &bytes), operator, 1);
    let id = fleet.upload(&root).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    (bytes, id)
}

/// The failure an update ended with.
fn failed(f: Finished, events: &common::Events, what: &str) -> suitcase_agent::StepFailure {
    let Finished::Failed(failure) = f else {
        panic!("{what}: {:?}", events.all());
    };
    failure
}

/// The operator's root wrapping the author's release, each signed by the signer the device
/// trusts for its components, end to end: the server takes the root (signed by the operator's
/// registered key) and lists the dependency's component and payload; the agent's Check
/// authenticates the root under the operator's key and the dependency under the author's
/// (trust-domains §5.1), downloads the payload the dependency fetches, Process runs the
/// author's image-match on it (the author's digest: the dependency's commands on its own
/// components, §5.4), and the image is installed, reported and confirmed under the root's
/// sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_release_installs_through_the_server() {
    let fleet = Fleet::new().await;
    let (operator, dev) = setup(&fleet).await;
    let (bytes, id) = offer_wrapped(&fleet, &dev, &fleet.key, &operator).await;
    // The server verified the root against the registered keys (the operator's) and lists
    // what the dependency installs and fetches.
    let (_, info) = fleet.get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(info["signed_by"], json!(["operator"]), "{info}");
    assert_eq!(info["components"][0]["id"], json!(["617070"]), "{info}");
    assert_eq!(
        info["payloads"][0]["uri"],
        json!("https://fw.example/app-1.bin"),
        "{info}"
    );
    assert_eq!(info["complete"], json!(true), "{info}");
    let (f, events) = cycle(&fleet, &dev).await;
    assert_eq!(f, Finished::Installed, "{:?}", events.all());
    let check = events.detail("check").unwrap_or_default();
    assert!(
        check.contains("1 SUIT dependency authenticated under its own signer"),
        "{check}"
    );
    // The image is in the slot written, confirmed, under the root's sequence number.
    assert_eq!(dev.read("app-b.bin"), bytes);
    assert_eq!(dev.text("app.slot"), "active=b\nconfirmed=b\n");
    let installed = dev.installed();
    assert_eq!(
        installed["components"][0]["id"],
        json!(["617070"]),
        "{installed}"
    );
    assert_eq!(
        installed["components"][0]["sequence_number"],
        json!(1),
        "{installed}"
    );
    assert!(dev.work_is_empty());
    // Reported to the server, every step a success.
    let info = fleet.device_info(&dev.id).await;
    assert_eq!(info["update"]["state"], "succeeded", "{info}");
    let steps = common::server_steps(&info);
    assert!(steps.iter().all(|(_, o, _)| o == "success"), "{steps:?}");
    assert!(steps.iter().any(|(s, _, _)| s == "process"), "{steps:?}");
}

/// No slot of `app` was written and no installed image recorded.
fn nothing_installed(dev: &Device) {
    for slot in ["app-a.bin", "app-b.bin"] {
        assert!(!dev.path(slot).exists(), "{slot} was written");
    }
    assert_eq!(dev.installed(), Value::Null);
}

/// An operator's root wrapping a manifest for `app` that the operator signed itself: the
/// operator is trusted for the dependency's slot only, so the dependency's signature is not
/// trusted for `app` (trust-domains §5.1, manifest §9) and Check refuses it as `signature`,
/// naming the dependency; nothing is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_root_wrapping_untrusted_author_manifest_refused_at_check() {
    let fleet = Fleet::new().await;
    let (operator, dev) = setup(&fleet).await;
    offer_wrapped(&fleet, &dev, &operator, &operator).await;
    let (f, events) = cycle(&fleet, &dev).await;
    let failure = failed(f, &events, "the untrusted dependency was not refused");
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "signature", "{failure:?}");
    assert!(
        failure.detail.contains("dependency 0"),
        "{}",
        failure.detail
    );
    nothing_installed(&dev);
}

/// An untrusted key's manifest wrapped by the operator: the author key is not in the device's
/// trust state at all (the server knows it), so the dependency does not authenticate
/// (trust-domains §5.1: "any signature of a Dependency MUST be verified"; §5.6.4 step 1) and
/// Check refuses the root as `signature` naming the dependency, before any payload is
/// downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_dependency_signed_by_untrusted_key_refused_at_check() {
    let fleet = Fleet::new().await;
    let (operator, dev) = setup(&fleet).await;
    let (stranger, stranger_pub) = keypair(fleet.dir.path(), "stranger", KeyAlg::Es256);
    register(&fleet, "stranger", &stranger_pub).await;
    offer_wrapped(&fleet, &dev, &stranger, &operator).await;
    let (f, events) = cycle(&fleet, &dev).await;
    let failure = failed(f, &events, "the untrusted dependency was not refused");
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "signature", "{failure:?}");
    assert!(
        failure.detail.contains("dependency 0") && failure.detail.contains("§5.1"),
        "{}",
        failure.detail
    );
    nothing_installed(&dev);
}

const CHECKIN: &str = "/api/v1/device/checkin";

/// A man in the middle (or a compromised server) between the agent and the real server:
/// check-ins are relayed and their answer points the envelope at `evil`; anything else (a
/// payload, a report) is recorded and answered 404. The device checks in through it.
async fn swapping(fleet: &Fleet, dev: &mut Device, evil: Vec<u8>) -> Hostile {
    let (base, token) = (fleet.base.clone(), dev.token.clone());
    let h = Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => {
            let (url, token, body) = (format!("{base}{CHECKIN}"), token.clone(), r.body.clone());
            let mut a: Value = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    reqwest::Client::new()
                        .post(url)
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                        .json::<Value>()
                        .await
                        .unwrap()
                })
            });
            a["update"]["manifest_url"] = json!("/evil/envelope");
            a["update"]["manifest_size"] = json!(evil.len());
            Answer::json(200, &a)
        }
        "/evil/envelope" => Answer::bytes(&evil),
        _ => Answer::not_found(),
    })
    .await;
    dev.base = Some(h.url());
    h
}

/// What the agent asked the attacker for besides check-ins, reports and the envelope: a
/// payload request would show here.
fn payload_requests(h: &Hostile) -> Vec<String> {
    h.seen()
        .into_iter()
        .map(|s| s.path)
        .filter(|p| p != CHECKIN && p != "/evil/envelope" && !p.contains("report"))
        .collect()
}

/// `root` with its integrated dependency (the author's envelope, `dependency`) replaced in
/// place by `other`, of the same length: the root's signature still verifies (it covers the
/// root's manifest, which names the dependency by digest, not the envelope's members).
fn replace_dependency(root: &[u8], dependency: &[u8], other: &[u8]) -> Vec<u8> {
    assert_eq!(dependency.len(), other.len());
    let at = root
        .windows(dependency.len())
        .position(|w| w == dependency)
        .unwrap();
    let mut evil = root.to_vec();
    evil[at..at + other.len()].copy_from_slice(other);
    assert!(suitcase_manifest::Envelope::decode(&evil).is_ok());
    evil
}

/// The author's manifest changed after the operator wrapped it (one byte of its payload URI,
/// in transit): the root's digest of it no longer matches, so condition-dependency-integrity
/// in the root's dependency-resolution refuses it (trust-domains §5.6.4 step 2: "the Manifest
/// Processor MUST immediately Abort") at Check, before any payload byte is requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_dependency_tampered_after_wrapping_refused_at_check() {
    let fleet = Fleet::new().await;
    let (operator, mut dev) = setup(&fleet).await;
    let author = authors(&fleet, &fleet.key, 1, &image(7, 30_000));
    let root = wrapped(&author, &operator, 1);
    let id = fleet.upload(&root).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let mut tampered = author.envelope.clone();
    let at = tampered.windows(9).position(|w| w == b"app-1.bin").unwrap();
    tampered[at + 4] = b'9';
    let evil = replace_dependency(&root.envelope, &author.envelope, &tampered);
    let h = swapping(&fleet, &mut dev, evil).await;
    let (f, events) = cycle(&fleet, &dev).await;
    let failure = failed(f, &events, "the tampered dependency was not refused");
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "digest", "{failure:?}");
    assert!(
        failure.detail.contains("dependency 0") && failure.detail.contains("§5.6.4"),
        "{}",
        failure.detail
    );
    assert_eq!(payload_requests(&h), Vec::<String>::new());
    nothing_installed(&dev);
}

/// The dependency swapped for another authentic release of the same author (same signer,
/// another image: mix-and-match, RFC 9124 THREAT.UPD.MIX): every signature still verifies,
/// but its manifest digest is not the one the operator's root names (trust-domains §5.6.4
/// step 2, §5.2.2), so Check refuses it before any payload byte is requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_dependency_swapped_for_other_authentic_release_refused_at_check() {
    let fleet = Fleet::new().await;
    let (operator, mut dev) = setup(&fleet).await;
    let one = authors(&fleet, &fleet.key, 1, &image(7, 30_000));
    let two = authors(&fleet, &fleet.key, 2, &image(8, 30_000));
    let root = wrapped(&one, &operator, 1);
    let id = fleet.upload(&root).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let evil = replace_dependency(&root.envelope, &one.envelope, &two.envelope);
    let h = swapping(&fleet, &mut dev, evil).await;
    let (f, events) = cycle(&fleet, &dev).await;
    let failure = failed(f, &events, "the swapped dependency was not refused");
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "digest", "{failure:?}");
    assert!(
        failure.detail.contains("dependency 0") && failure.detail.contains("§5.6.4"),
        "{}",
        failure.detail
    );
    assert_eq!(payload_requests(&h), Vec::<String>::new());
    nothing_installed(&dev);
}

/// An operator's root that installs `app` itself (its own image, beside processing the
/// author's dependency): the operator's key is a release signer for the dependency's slot
/// only, so its signature does not authorize a manifest naming `app` (manifest §9 access
/// control lists; trust-domains §5.1: each manifest acts under its own signer's permissions).
/// Check refuses it as `signature`, before any payload byte is requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_operator_root_installing_unpermitted_component_refused_at_check() {
    use suitcase_manifest::build::{Cmd, EnvelopeBuilder, Index, ManifestBuilder, Param};
    use suitcase_manifest::{Condition, DigestAlgorithm, Directive};
    let fleet = Fleet::new().await;
    let (operator, mut dev) = setup(&fleet).await;
    let author = authors(&fleet, &fleet.key, 1, &image(7, 30_000));
    let root = wrapped(&author, &operator, 1);
    let id = fleet.upload(&root).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    // The operator's own image for `app`, fetched from the URI the offer lists.
    let sha = DigestAlgorithm::Sha256;
    let own = image(9, 30_000);
    let dep = suitcase_manifest::Envelope::decode(&author.envelope).unwrap();
    let process = |i: u64| {
        vec![
            Cmd::SetComponentIndex(Index::One(i)),
            Cmd::Directive(Directive::Fetch, 15),
            Cmd::Condition(Condition::DependencyIntegrity, 15),
            Cmd::Directive(Directive::ProcessDependency, 15),
        ]
    };
    let mut install = process(1);
    install.extend([
        Cmd::SetComponentIndex(Index::One(0)),
        Cmd::Directive(Directive::Fetch, 15),
        Cmd::Condition(Condition::ImageMatch, 15),
    ]);
    let m = ManifestBuilder {
        sequence_number: 2,
        components: vec![vec![b"app".to_vec()]],
        dependencies: vec![(1, Some(vec![b"dependency.suit".to_vec()]))],
        shared_sequence: Some(vec![
            Cmd::SetComponentIndex(Index::One(1)),
            Cmd::OverrideParameters(vec![
                Param::ImageDigest(sha, sha.digest(dep.manifest_wrapped()).as_bytes().to_vec()),
                Param::ImageSize(author.envelope.len() as u64),
                Param::Uri("#dependency.suit".into()),
            ]),
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::OverrideParameters(vec![
                Param::ImageDigest(sha, sha.digest(&own).as_bytes().to_vec()),
                Param::ImageSize(own.len() as u64),
                Param::Uri("https://fw.example/app-1.bin".into()),
            ]),
        ]),
        dependency_resolution: Some(process(1)),
        install: Some(install),
        ..Default::default()
    };
    let mut b = EnvelopeBuilder::from_encoded(m.encode(sha), sha);
    b.integrate("#dependency.suit", author.envelope.clone());
    let signer = suitcase_author::signer::open(&operator).unwrap();
    let block =
        suitcase_author::signer::sign_block(signer.as_ref(), &[], b.digest_bytes()).unwrap();
    b.raw_block(block.bytes);
    let h = swapping(&fleet, &mut dev, b.encode()).await;
    let (f, events) = cycle(&fleet, &dev).await;
    let failure = failed(f, &events, "the operator's write to app was not refused");
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "signature", "{failure:?}");
    assert_eq!(payload_requests(&h), Vec::<String>::new());
    nothing_installed(&dev);
}

/// Anti-rollback of the root (manifest §8.4.2; the root's sequence number is the one the
/// device compares, whatever its dependency's, docs/trust.md): after root 2 is installed, root
/// 2 replayed and root 1 (wrapping a newer author release) are refused at Check as
/// `sequence-rollback`, before any payload byte is requested, while a genuine root 3 is
/// offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_wrapped_root_replay_and_rollback_refused_at_check() {
    let fleet = Fleet::new().await;
    let (operator, mut dev) = setup(&fleet).await;
    let two = wrapped(
        &authors(&fleet, &fleet.key, 1, &image(7, 30_000)),
        &operator,
        2,
    );
    let id = fleet.upload(&two).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let (f, events) = cycle(&fleet, &dev).await;
    assert_eq!(f, Finished::Installed, "{:?}", events.all());
    let three = wrapped(
        &authors(&fleet, &fleet.key, 3, &image(8, 30_000)),
        &operator,
        3,
    );
    let id = fleet.upload(&three).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let one = wrapped(
        &authors(&fleet, &fleet.key, 7, &image(9, 30_000)),
        &operator,
        1,
    );
    for (what, evil) in [("replayed root 2", &two), ("older root 1", &one)] {
        let h = swapping(&fleet, &mut dev, evil.envelope.clone()).await;
        let (f, events) = cycle(&fleet, &dev).await;
        let failure = failed(f, &events, what);
        assert_eq!(failure.step, Step::Check, "{what}: {failure:?}");
        assert_eq!(failure.reason, "sequence-rollback", "{what}: {failure:?}");
        assert_eq!(payload_requests(&h), Vec::<String>::new(), "{what}");
    }
    assert_eq!(
        dev.installed()["components"][0]["sequence_number"],
        json!(2)
    );
}

/// A dependency naming the trust store (`["suitcase-trust"]`), wrapped by the operator, on a
/// device with fixed anchors (every anchor may act on every component, so the author's
/// signature alone would authorize it): the device refuses any release naming the trust
/// store, which only a root-signed trust update may change (docs/trust.md, TUF §2.1.1 role
/// separation), and a dependency is authenticated with its own signers (trust-domains §5.1),
/// so the same rule is applied to it (`names_trust_store`, the processor's dependency rule).
/// Check refuses the root as `signature` naming the dependency; nothing is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_dependency_naming_the_trust_store_refused_at_check() {
    let fleet = Fleet::new().await;
    let dir = fleet.dir.path();
    let (operator, operator_pub) = keypair(dir, "operator", KeyAlg::Es256);
    register(&fleet, "operator", &operator_pub).await;
    let dev = Device::new(&fleet, "d1").await;
    let mut trust_store = fleet.app(&image(7, 2_000), 1);
    trust_store.component = vec![b"suitcase-trust".to_vec()];
    let root = wrapped(
        &fleet.build(&fleet.request(1, vec![trust_store])),
        &operator,
        1,
    );
    let id = fleet.upload(&root).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let anchors = format!("anchors = [\"{}\"]", fleet.key_pub.display());
    let both = format!(
        "anchors = [\"{}\", \"{}\"]",
        fleet.key_pub.display(),
        operator_pub.display()
    );
    let path = dev.path("agent.toml");
    std::fs::write(&path, dev.toml(&fleet).replace(&anchors, &both)).unwrap();
    let events = common::Events::default();
    let mut agent = suitcase_agent::Agent::new(
        suitcase_agent::Config::load(&path).unwrap(),
        suitcase_agent::Hooks::default(),
        events.sink(),
    )
    .unwrap();
    let f = agent.cycle().await.unwrap().update.unwrap().finished;
    let failure = failed(
        f,
        &events,
        "the dependency naming the trust store was not refused",
    );
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "signature", "{failure:?}");
    assert!(
        failure.detail.contains("dependency 0") && failure.detail.contains("refuses a dependency"),
        "{}",
        failure.detail
    );
    nothing_installed(&dev);
}

/// Installs root 2 wrapping the author's release 7 on `dev` (the author's counter ahead of
/// the operator's).
async fn install_root_2_wrapping_author_7(fleet: &Fleet, dev: &Device, operator: &Path) {
    let root = wrapped(
        &authors(fleet, &fleet.key, 7, &image(7, 30_000)),
        operator,
        2,
    );
    let id = fleet.upload(&root).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let (f, events) = cycle(fleet, dev).await;
    assert_eq!(f, Finished::Installed, "{:?}", events.all());
}

/// Zero-key rollback of the author's component (RFC 9124 REQ.SEC.SEQUENCE,
/// THREAT.MFST.OLD; manifest §8.4.2): after root 2 wrapping the author's release 7 is
/// installed, an older author-signed envelope (release 5, sequence above the root's 2; an
/// integrated dependency of an earlier root is public, anyone can cut it out) is offered
/// alone. It verifies under the author's key, but the author's counter for `app` is 7, not the
/// operator's 2: Check refuses it as `sequence-rollback` and `app` keeps release 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_author_release_cut_from_earlier_root_rolls_back_refused() {
    let fleet = Fleet::new().await;
    let (operator, dev) = setup(&fleet).await;
    install_root_2_wrapping_author_7(&fleet, &dev, &operator).await;
    let old = authors(&fleet, &fleet.key, 5, &image(5, 30_000));
    let id = fleet.upload(&old).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let (f, events) = cycle(&fleet, &dev).await;
    let failure = failed(f, &events, "the author's older release 5 was installed");
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "sequence-rollback", "{failure:?}");
    assert_eq!(dev.read("app-b.bin"), image(7, 30_000));
}

/// The operator alone downgrading the author's component (manifest §8.4.2 applied to every
/// manifest processed, RFC 9124 THREAT.MFST.OLD; the root's digest pins which author release,
/// not that it is not older): after root 2 wrapping the author's release 7, a root 3 wrapping
/// release 7 again installs (the same author release re-wrapped: equal is allowed), and a new
/// root 4 wrapping the author's older release 5 is refused at Check as `sequence-rollback`
/// naming the dependency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_new_root_wrapping_old_author_release_refused() {
    let fleet = Fleet::new().await;
    let (operator, dev) = setup(&fleet).await;
    install_root_2_wrapping_author_7(&fleet, &dev, &operator).await;
    let three = wrapped(
        &authors(&fleet, &fleet.key, 7, &image(7, 30_000)),
        &operator,
        3,
    );
    let id = fleet.upload(&three).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let (f, events) = cycle(&fleet, &dev).await;
    assert_eq!(f, Finished::Installed, "{:?}", events.all());
    assert_eq!(
        dev.installed()["components"][0]["sequence_number"],
        json!(3)
    );
    let four = wrapped(
        &authors(&fleet, &fleet.key, 5, &image(5, 30_000)),
        &operator,
        4,
    );
    let id = fleet.upload(&four).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let (f, events) = cycle(&fleet, &dev).await;
    let failure = failed(
        f,
        &events,
        "root 4 wrapping the author's release 5 was installed",
    );
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "sequence-rollback", "{failure:?}");
    assert!(failure.detail.contains("dependency"), "{}", failure.detail);
    assert_eq!(
        dev.installed()["components"][0]["sequence_number"],
        json!(3)
    );
}

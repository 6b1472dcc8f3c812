//! Trust domains (draft-ietf-suit-trust-domains, docs/trust.md "Trust domains") through the
//! real server and the agent: an operator's root manifest wrapping an author's signed manifest
//! as an integrated SUIT dependency (`suitcase_author::wrap`, as `suitcase manifest wrap`
//! builds it), uploaded, offered by a campaign and checked by an agent whose trust state keeps
//! each release signer to its components (the author to `app`, the operator to the
//! dependency's slot).

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

use common::trust::{cycle, key, register, write_genesis};
use common::{Device, Fleet, image, keypair};
use serde_json::json;
use suitcase_agent::Finished;
use suitcase_author::keys::KeyAlg;
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

/// Builds the author's one-image (`app`) release signed with `author`, wraps it in a root
/// signed by `operator`, uploads the root and offers it to `dev`; the payload's bytes.
async fn offer_wrapped(
    fleet: &Fleet,
    dev: &Device,
    author: &Path,
    operator: &Path,
) -> (Vec<u8>, String) {
    let bytes = image(7, 30_000);
    let mut req = fleet.request(1, vec![fleet.app(&bytes, 1)]);
    req.sign = vec![author.to_path_buf()];
    let mut built = fleet.build(&req);
    let request = WrapRequest {
        sequence: 1,
        name: "#dependency.suit".into(),
        slot: vec![b"dependency.suit".to_vec()],
    };
    let signer = suitcase_author::signer::open(operator).unwrap();
    built.envelope = wrap(&built.envelope, &request, signer.as_ref())
        .unwrap()
        .envelope;
    let id = fleet.upload(&built).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    (bytes, id)
}

/// The operator's root wrapping the author's release, each signed by the signer the device
/// trusts for its components: uploaded (the operator's key registered) and offered; the
/// agent's Check authenticates the dependency under the trust state (trust-domains §5.1).
/// The agent does not install from a dependency yet (docs/agent.md), so Check refuses it as
/// unsupported after the dependency proved authentic, with nothing installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_release_dependency_authenticated_at_check() {
    let fleet = Fleet::new().await;
    let (operator, dev) = setup(&fleet).await;
    let (_, id) = offer_wrapped(&fleet, &dev, &fleet.key, &operator).await;
    // The server verified the root against the registered keys: the operator's.
    let (_, info) = fleet.get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(info["signed_by"], json!(["operator"]), "{info}");
    let (f, events) = cycle(&fleet, &dev).await;
    let Finished::Failed(failure) = f else {
        panic!("{:?}", events.all());
    };
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "unsupported-critical", "{failure:?}");
    assert!(
        failure
            .detail
            .contains("dependencies Check processed are authentic"),
        "{}",
        failure.detail
    );
    nothing_installed(&dev);
}

/// No slot of `app` was written and no installed image recorded.
fn nothing_installed(dev: &Device) {
    for slot in ["app-a.bin", "app-b.bin"] {
        assert!(!dev.path(slot).exists(), "{slot} was written");
    }
    assert_eq!(dev.installed(), serde_json::Value::Null);
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
    let Finished::Failed(failure) = f else {
        panic!(
            "the untrusted dependency was not refused: {:?}",
            events.all()
        );
    };
    assert_eq!(failure.step, Step::Check, "{failure:?}");
    assert_eq!(failure.reason, "signature", "{failure:?}");
    assert!(
        failure.detail.contains("dependency 0"),
        "{}",
        failure.detail
    );
    nothing_installed(&dev);
}

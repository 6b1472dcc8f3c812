//! The simulated MCU's bootloader under a trust state (issue 18 item 2): trust updates are
//! staged by the consumer, verified and committed by the bootloader at reset through its
//! protected trust area, and then the revoked key's releases are refused at boot naming the
//! revocation while the new key's boot. Keys, releases and trust updates are built with the
//! real author tools (`suitcase-author`), as `suitcase release build` and `suitcase trust
//! update` build them.

#![expect(clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::path::PathBuf;

use suitcase_author::keys::{KeyAlg, generate};
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::signer::{self, Signer};
use suitcase_author::trust::{build_update, trust_key};
use suitcase_author::{Tier, uuid};
use suitcase_boot::{BootDecision, Failure, ImageState, RecoveryReason, Slot};
use suitcase_manifest::{Actions, Reason};
use suitcase_sim::trust_mcu::{TrustEvent, TrustMcu};
use suitcase_trust::{Prefix, ReleaseSigner, TrustState};

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in ["root1", "root2", "root3", "author1", "author2"] {
            let k = generate(KeyAlg::Ed25519, "").unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), k.private).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.key"))
    }

    fn signer(&self, name: &str) -> Box<dyn Signer> {
        signer::open(&self.path(name)).unwrap()
    }

    fn release_signer(&self, name: &str) -> ReleaseSigner {
        ReleaseSigner {
            key: trust_key(self.signer(name).public_key()).unwrap(),
            actions: Actions::ALL,
            component: Prefix::ALL,
        }
    }

    fn kid(&self, name: &str) -> String {
        let key = trust_key(self.signer(name).public_key()).unwrap();
        key.id().iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn vendor() -> [u8; 16] {
    uuid::vendor("example.com")
}

fn class() -> [u8; 16] {
    uuid::class(&vendor(), "thermostat")
}

fn component() -> Vec<u8> {
    suitcase_manifest::build::encode_component_id(&[suitcase_sim::COMPONENT.to_vec()])
}

/// The slot image of release `sequence` (image bytes depend on it), signed by `key`.
fn release(keys: &Keys, sequence: u64, key: &str) -> Vec<u8> {
    let image: Vec<u8> = (0..3000u32)
        .map(|i| i.to_le_bytes()[0] ^ sequence.to_le_bytes()[0])
        .collect();
    let req = ReleaseRequest {
        sequence,
        tier: Tier::Basic,
        vendor: vendor(),
        class: class(),
        device: None,
        images: vec![ImageInput {
            name: "mcu".into(),
            bytes: image.clone(),
            component: vec![suitcase_sim::COMPONENT.to_vec()],
            uri: Some(format!("https://sim.invalid/app-{sequence}.bin")),
            integrated: false,
            invoke: false,
            delta_from: None,
        }],
        sign: vec![keys.path(key)],
        encrypt_for: vec![],
        x5chain: vec![],
        content: None,
        reference_uri: None,
        description: None,
    };
    let built = release::build(&req, &mut |_, _, _| {}).unwrap();
    suitcase_device::pack(&built.envelope, &image, 64).unwrap()
}

/// Roots 1-3 (2-of-3) and author 1: the provisioned state.
fn genesis(keys: &Keys) -> TrustState {
    let roots: Vec<_> = ["root1", "root2", "root3"]
        .iter()
        .map(|n| trust_key(keys.signer(n).public_key()).unwrap())
        .collect();
    let mut s = TrustState::genesis(&roots, 2).unwrap();
    s.add_signer(keys.release_signer("author1")).unwrap();
    s
}

/// Trust update 1: author 2 in, author 1 revoked, signed by `signers`.
fn rotation(keys: &Keys, signers: &[&str]) -> Vec<u8> {
    let mut next = genesis(keys);
    next.set_sequence(1);
    next.add_signer(keys.release_signer("author2")).unwrap();
    next.revoke(keys.release_signer("author1").key.id())
        .unwrap();
    let boxed: Vec<Box<dyn Signer>> = signers.iter().map(|n| keys.signer(n)).collect();
    let refs: Vec<&dyn Signer> = boxed.iter().map(|b| b.as_ref()).collect();
    build_update(&next, &refs).unwrap()
}

fn mcu(keys: &Keys) -> TrustMcu {
    TrustMcu::new(
        &genesis(keys),
        &release(keys, 1, "author1"),
        vendor(),
        class(),
        component(),
    )
    .unwrap()
}

fn booted(decision: &BootDecision<1>) -> (Slot, ImageState, u64) {
    match decision {
        BootDecision::Boot(t) => (t.slot, t.state, t.measurements[0].security_version.0),
        BootDecision::Recovery { reason } => panic!("recovery: {reason}"),
    }
}

#[test]
fn attack_revoked_key_release_refused_by_the_simulated_mcu_bootloader() {
    let keys = Keys::new();
    let mcu = mcu(&keys);
    let r = mcu.reset().unwrap();
    assert_eq!((r.trust, r.trust_sequence), (TrustEvent::Nothing, 0));
    assert_eq!(booted(&r.decision), (Slot::A, ImageState::Confirmed, 1));

    // The rotation reaches the MCU with the new key's release: the trust update is committed
    // first, then the release is verified under it.
    mcu.deliver_trust_update(&rotation(&keys, &["root1", "root2"]))
        .unwrap();
    mcu.stage_release(&release(&keys, 2, "author2")).unwrap();
    let r = mcu.reset().unwrap();
    assert_eq!(r.trust, TrustEvent::Committed { from: 0, to: 1 });
    assert_eq!(r.trust_sequence, 1);
    assert_eq!(
        booted(&r.decision),
        (Slot::B, ImageState::Trial { boot: 1, max: 3 }, 2)
    );
    mcu.confirm().unwrap();
    assert_eq!(mcu.trust_state().unwrap().sequence(), 1);

    // A newer release by the revoked key: refused at boot, the revocation named.
    mcu.stage_release(&release(&keys, 3, "author1")).unwrap();
    let r = mcu.reset().unwrap();
    assert_eq!(r.trust, TrustEvent::Nothing);
    assert_eq!(booted(&r.decision), (Slot::B, ImageState::Confirmed, 2));
    let BootDecision::Boot(t) = &r.decision else {
        panic!()
    };
    assert!(matches!(t.last_failure, Some(Failure::Invalid { .. })));
    let (reason, detail) = r.refusal.unwrap();
    assert_eq!(reason, Some(Reason::Signature));
    assert!(
        detail.contains(&format!(
            "signed by revoked key {} (revoked by trust state 1)",
            keys.kid("author1")
        )),
        "{detail}"
    );

    // The new key's next release: accepted.
    mcu.stage_release(&release(&keys, 4, "author2")).unwrap();
    let r = mcu.reset().unwrap();
    assert_eq!(
        booted(&r.decision),
        (Slot::A, ImageState::Trial { boot: 1, max: 3 }, 4)
    );
    assert!(r.refusal.is_none());
}

#[test]
fn attack_running_image_by_a_revoked_key_is_not_booted_after_the_trust_update() {
    let keys = Keys::new();
    let mcu = mcu(&keys);
    mcu.deliver_trust_update(&rotation(&keys, &["root2", "root3"]))
        .unwrap();
    let r = mcu.reset().unwrap();
    assert_eq!(r.trust, TrustEvent::Committed { from: 0, to: 1 });
    assert!(matches!(
        r.decision,
        BootDecision::Recovery {
            reason: RecoveryReason::Invalid { slot: Slot::A, .. }
        }
    ));
    let (reason, detail) = r.refusal.unwrap();
    assert_eq!(reason, Some(Reason::Signature));
    assert!(detail.contains("revoked by trust state 1"), "{detail}");
}

#[test]
fn attack_trust_updates_the_mcu_bootloader_refuses() {
    let keys = Keys::new();
    let mcu = mcu(&keys);
    // Signed by one root of a 2-of-3 root: below the threshold.
    mcu.deliver_trust_update(&rotation(&keys, &["root1"]))
        .unwrap();
    let r = mcu.reset().unwrap();
    let TrustEvent::Refused { reason, .. } = r.trust else {
        panic!("{:?}", r.trust)
    };
    assert_eq!((reason, r.trust_sequence), (Reason::Signature, 0));
    // Signed by the release signer: release keys never count for trust updates.
    mcu.deliver_trust_update(&rotation(&keys, &["author1"]))
        .unwrap();
    let r = mcu.reset().unwrap();
    assert!(matches!(
        r.trust,
        TrustEvent::Refused {
            reason: Reason::Signature,
            ..
        }
    ));
    assert_eq!(booted(&r.decision), (Slot::A, ImageState::Confirmed, 1));
    // Accepted once; the same update replayed is a rollback, refused and cleared.
    let good = rotation(&keys, &["root1", "root3"]);
    mcu.deliver_trust_update(&good).unwrap();
    mcu.stage_release(&release(&keys, 2, "author2")).unwrap();
    assert_eq!(
        mcu.reset().unwrap().trust,
        TrustEvent::Committed { from: 0, to: 1 }
    );
    mcu.deliver_trust_update(&good).unwrap();
    let r = mcu.reset().unwrap();
    assert!(matches!(
        r.trust,
        TrustEvent::Refused {
            reason: Reason::SequenceRollback,
            ..
        }
    ));
    assert_eq!(mcu.reset().unwrap().trust, TrustEvent::Nothing);
}

#[test]
fn fault_power_cut_at_every_flash_operation_of_a_trust_update_reset() {
    let keys = Keys::new();
    let update = rotation(&keys, &["root1", "root2"]);
    let new_release = release(&keys, 2, "author2");
    let ops = {
        let mcu = mcu(&keys);
        mcu.deliver_trust_update(&update).unwrap();
        mcu.stage_release(&new_release).unwrap();
        let before = mcu.flash().with(|f| f.stats().mutations()).unwrap();
        mcu.reset().unwrap();
        mcu.flash().with(|f| f.stats().mutations()).unwrap() - before
    };
    assert!(ops >= 4, "{ops}");
    for n in 0..ops {
        let mcu = mcu(&keys);
        mcu.deliver_trust_update(&update).unwrap();
        mcu.stage_release(&new_release).unwrap();
        mcu.flash().with(|f| f.cut_power_after(n)).unwrap();
        assert!(mcu.reset().is_err(), "cut {n}");
        mcu.flash().with(|f| f.power_on()).unwrap();
        let seen = mcu.trust_state().unwrap().sequence();
        let r = mcu.reset().unwrap();
        assert!(r.trust_sequence >= seen, "cut {n}: trust state went back");
        assert_eq!(r.trust_sequence, 1, "cut {n}");
        // Whatever the cut interrupted, the new key's release is what runs now.
        assert_eq!(booted(&r.decision).2, 2, "cut {n}");
    }
}

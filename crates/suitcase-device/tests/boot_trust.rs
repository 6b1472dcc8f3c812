//! The boot path under a trust state (`boot_trust`, issue 18 item 2): the anchors in force come
//! from the protected trust area; after a trust update that revokes the old author key, a
//! release signed by it is refused at boot naming the revocation, and the new key's accepted.

#![expect(clippy::unwrap_used, reason = "test code")]

use std::path::Path;

use suitcase_author::keys::PrivateKey;
use suitcase_author::signer::{Signer, SoftwareSigner, sign_block};
use suitcase_author::trust::{build_update, trust_key};
use suitcase_boot::ImageIndex;
use suitcase_boot::trust_store::{Commit, CommitBuffers, TrustStaging, TrustStore, commit_staged};
use suitcase_device::boot_trust::{
    BootTrustRefusal, TRUST_RECORD_LEN, apply_staged, state_of, with_trusted_verifier,
};
use suitcase_device::{BootRefusal, DeviceIdentity, Sha256Only, pack};
use suitcase_flash_sim::{SharedFlash, SimFlash};
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, ManifestBuilder, Param};
use suitcase_manifest::{Actions, ComponentId, Condition, DigestAlgorithm, Directive, Reason};
use suitcase_trust::{Key, Prefix, ReleaseSigner, TrustError, TrustState};

const VENDOR: [u8; 16] = [0xfa; 16];
const CLASS: [u8; 16] = [0x14; 16];
const COMPONENT: [u8; 3] = [0x81, 0x41, 0x00];
const ROOT1: u8 = 1;
const ROOT2: u8 = 2;
const ROOT3: u8 = 3;
const AUTHOR1: u8 = 10;
const AUTHOR2: u8 = 11;

fn signer(seed: u8) -> SoftwareSigner {
    let key = PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
    SoftwareSigner::new(key, Path::new(&format!("key{seed}"))).unwrap()
}

fn key(seed: u8) -> Key {
    trust_key(signer(seed).public_key()).unwrap()
}

fn release_signer(seed: u8) -> ReleaseSigner {
    ReleaseSigner {
        key: key(seed),
        actions: Actions::ALL,
        component: Prefix::ALL,
    }
}

/// Roots 1-3 (2-of-3), author 1: what the device is provisioned with.
fn genesis() -> TrustState {
    let mut s = TrustState::genesis(&[key(ROOT1), key(ROOT2), key(ROOT3)], 2).unwrap();
    s.add_signer(release_signer(AUTHOR1)).unwrap();
    s
}

/// Trust update 1: author 2 in, author 1 revoked; signed by roots 1 and 2.
fn rotation() -> (TrustState, Vec<u8>) {
    let mut next = genesis();
    next.set_sequence(1);
    next.add_signer(release_signer(AUTHOR2)).unwrap();
    next.revoke(key(AUTHOR1).id()).unwrap();
    let signers = [signer(ROOT1), signer(ROOT2)];
    let refs: Vec<&dyn Signer> = signers.iter().map(|s| s as &dyn Signer).collect();
    (next, build_update(&next, &refs).unwrap())
}

fn image(version: u8) -> Vec<u8> {
    (0..900u32)
        .map(|i| {
            i.to_le_bytes()[0]
                .wrapping_mul(version)
                .wrapping_add(version)
        })
        .collect()
}

/// A slot image: a release of `image(version)` at `sequence`, signed by `author` (with its kid,
/// as `suitcase release build` signs).
fn release(sequence: u64, version: u8, author: u8) -> Vec<u8> {
    let img = image(version);
    let digest = DigestAlgorithm::Sha256;
    let m = ManifestBuilder {
        sequence_number: sequence,
        components: vec![vec![vec![0]]],
        shared_sequence: Some(vec![
            Cmd::OverrideParameters(vec![
                Param::VendorIdentifier(VENDOR.to_vec()),
                Param::ClassIdentifier(CLASS.to_vec()),
                Param::ImageDigest(digest, digest.digest(&img).as_bytes().to_vec()),
                Param::ImageSize(img.len() as u64),
            ]),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
        ]),
        validate: Some(vec![Cmd::Condition(Condition::ImageMatch, 15)]),
        invoke: Some(vec![Cmd::Directive(Directive::Invoke, 2)]),
        ..Default::default()
    };
    let mut env = EnvelopeBuilder::new(&m, digest);
    let block = sign_block(&signer(author), &[], env.digest_bytes()).unwrap();
    env.raw_block(block.bytes);
    pack(&env.encode(), &img, 64).unwrap()
}

fn check(state: &TrustState, slot: &[u8]) -> Result<u64, BootTrustRefusal> {
    let flash = SharedFlash::new(SimFlash::<4, 256>::uniform(256, 16, 1).unwrap());
    flash.with(|f| f.load(0, slot)).unwrap().unwrap();
    let mut part = flash.partition(0, 16 * 256).unwrap();
    let components = [ComponentId::decode(&COMPONENT).unwrap()];
    let identity = DeviceIdentity {
        vendor: &VENDOR,
        class: &CLASS,
        device: None,
    };
    with_trusted_verifier::<Sha256Only, 256, _>(state, identity, &components, None, |v| {
        v.check(ImageIndex(0), &mut part)
            .map(|m| m.security_version.0)
    })
}

#[test]
fn attack_revoked_key_release_refused_at_boot_naming_the_revocation() {
    let s0 = genesis();
    assert_eq!(check(&s0, &release(1, 1, AUTHOR1)), Ok(1));
    let (_, update) = rotation();
    let s1 = s0.apply_update(&update).unwrap();
    let refusal = check(&s1, &release(2, 2, AUTHOR1)).unwrap_err();
    assert_eq!(
        refusal,
        BootTrustRefusal::Revoked {
            kid: key(AUTHOR1).id(),
            by: 1
        }
    );
    assert_eq!(refusal.reason(), Some(Reason::Signature));
    let text = refusal.to_string();
    assert!(text.contains("signed by revoked key") && text.contains("(revoked by trust state 1)"));
    // The new key's release boots.
    assert_eq!(check(&s1, &release(3, 3, AUTHOR2)), Ok(3));
    // A key that was never trusted is refused without naming a revocation.
    assert!(matches!(
        check(&s1, &release(3, 3, 12)).unwrap_err(),
        BootTrustRefusal::Boot(BootRefusal::Unauthenticated(_))
    ));
}

#[test]
fn attack_release_by_a_signer_limited_to_another_component_refused_at_boot() {
    let mut s = genesis();
    s.remove_signer(&key(AUTHOR1).id());
    s.add_signer(ReleaseSigner {
        component: Prefix::new(&[0x81, 0x43, b'o', b't', b'h']).unwrap(),
        ..release_signer(AUTHOR1)
    })
    .unwrap();
    assert!(matches!(
        check(&s, &release(1, 1, AUTHOR1)).unwrap_err(),
        BootTrustRefusal::Boot(BootRefusal::NotAuthorized(_))
    ));
}

/// The bootloader's trust area: the genesis record provisioned, the trust update staged by the
/// application, committed at reset by `commit_staged` with `apply_staged`.
#[test]
fn a_staged_trust_update_is_committed_at_reset_and_a_replay_refused() {
    let flash = SharedFlash::new(SimFlash::<4, 256>::uniform(256, 24, 1).unwrap());
    let area = || TrustStore::new(flash.partition(0, 16 * 256).unwrap(), TRUST_RECORD_LEN).unwrap();
    let staging = || TrustStaging::new(flash.partition(16 * 256, 8 * 256).unwrap()).unwrap();
    area().write(None, 0, &genesis().encode_record()).unwrap();
    let (expected, update) = rotation();
    let mut record = vec![0u8; TRUST_RECORD_LEN];
    let mut next = vec![0u8; TRUST_RECORD_LEN];
    let mut envelope = vec![0u8; 2048];
    let mut reset = |record: &mut Vec<u8>| {
        commit_staged(
            &mut area(),
            &mut staging(),
            CommitBuffers {
                record,
                next: &mut next,
                envelope: &mut envelope,
            },
            apply_staged,
        )
        .unwrap()
        .unwrap()
    };
    assert_eq!(reset(&mut record).1, Commit::Nothing);
    staging().stage(&update).unwrap();
    let (in_force, commit) = reset(&mut record);
    assert_eq!(commit, Commit::Committed { from: 0, to: 1 });
    assert_eq!(in_force.sequence, 1);
    assert_eq!(state_of(&record).unwrap(), expected);
    // The same update again: refused as not above the state in force, cleared.
    staging().stage(&update).unwrap();
    let (_, commit) = reset(&mut record);
    assert_eq!(
        commit,
        Commit::Refused(TrustError::Rollback {
            current: 1,
            offered: 1
        })
    );
    assert_eq!(reset(&mut record).1, Commit::Nothing);
    // A trust update signed by one root only (below the 2-of-3 threshold) is refused.
    let mut next_state = expected;
    next_state.set_sequence(2);
    next_state.add_signer(release_signer(12)).unwrap();
    let one = signer(ROOT3);
    let weak = build_update(&next_state, &[&one as &dyn Signer]).unwrap();
    staging().stage(&weak).unwrap();
    let (in_force, commit) = reset(&mut record);
    assert!(
        matches!(commit, Commit::Refused(TrustError::Manifest(_))),
        "{commit:?}"
    );
    assert_eq!(in_force.sequence, 1);
    assert_eq!(state_of(&record).unwrap(), expected);
}

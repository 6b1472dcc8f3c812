//! The trust state end to end with real keys and real envelopes: trust updates built and
//! signed by `suitcase-author`, applied and checked by this crate.

#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use std::path::Path;

use suitcase_author::keys::{PrivateKey, public_of};
use suitcase_author::signer::{Signer, SoftwareSigner, sign_block};
use suitcase_author::trust::{build_update, trust_key};
use suitcase_manifest::build::{EnvelopeBuilder, ManifestBuilder};
use suitcase_manifest::{Actions, AuthError, DigestAlgorithm, Envelope, Error, Reason};
use suitcase_trust::{
    Key, MAX_REVOKED, MAX_ROOTS, MAX_RULES, MAX_SIGNERS, Prefix, RECORD_SIZE, ReleaseSigner,
    ThresholdRule, TrustError, TrustState,
};

fn signer(seed: u8) -> SoftwareSigner {
    let key = PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
    SoftwareSigner::new(key, Path::new(&format!("key{seed}"))).unwrap()
}

fn key(seed: u8) -> Key {
    trust_key(signer(seed).public_key()).unwrap()
}

fn p256_key(seed: u8) -> Key {
    let mut bytes = [seed; 32];
    bytes[0] = 1;
    let sk = p256::SecretKey::from_slice(&bytes).unwrap();
    trust_key(&public_of(&PrivateKey::P256(sk)).unwrap()).unwrap()
}

fn release_signer(seed: u8) -> ReleaseSigner {
    ReleaseSigner {
        key: key(seed),
        actions: Actions::ALL,
        component: Prefix::ALL,
    }
}

/// Roots 1, 2, 3 (2-of-3); release signer 10.
fn genesis() -> TrustState {
    TrustState::genesis(&[key(1), key(2), key(3)], 2).unwrap()
}

fn update(state: &TrustState, seq: u64, signed_by: &[u8]) -> Vec<u8> {
    let mut next = *state;
    next.set_sequence(seq);
    let signers: Vec<SoftwareSigner> = signed_by.iter().map(|s| signer(*s)).collect();
    let refs: Vec<&dyn Signer> = signers.iter().map(|s| s as &dyn Signer).collect();
    build_update(&next, &refs).unwrap()
}

fn with_signer_10() -> TrustState {
    let mut s = genesis();
    s.add_signer(release_signer(10)).unwrap();
    s
}

fn release(component: &[u8], seq: u64, signed_by: &[u8]) -> Vec<u8> {
    let manifest = ManifestBuilder {
        sequence_number: seq,
        components: vec![vec![component.to_vec()]],
        ..ManifestBuilder::default()
    };
    let mut env = EnvelopeBuilder::new(&manifest, DigestAlgorithm::Sha256);
    for s in signed_by {
        let block = sign_block(&signer(*s), &[], env.digest_bytes()).unwrap();
        env.raw_block(block.bytes);
    }
    env.encode()
}

fn check_release(state: &TrustState, bytes: &[u8]) -> Result<u64, TrustError> {
    let env = Envelope::decode(bytes).unwrap();
    state
        .verify_release(&env, None)
        .map(|v| v.sequence_number())
}

#[test]
fn document_and_record_round_trip() {
    let mut s = with_signer_10();
    s.add_rule(ThresholdRule {
        component: Prefix::new(&[0x81, 0x43, b'a', b'p', b'p']).unwrap(),
        threshold: 1,
    })
    .unwrap();
    s.revoke(key(11).id()).unwrap();
    s.set_sequence(7);
    let mut buf = [0u8; 2048];
    let n = s.encode(&mut buf).unwrap();
    assert_eq!(TrustState::decode(&buf[..n]).unwrap(), s);
    assert_eq!(TrustState::decode_record(&s.encode_record()).unwrap(), s);
}

#[test]
fn the_largest_state_fits_the_record() {
    let roots: Vec<Key> = (1..=MAX_ROOTS as u8).map(p256_key).collect();
    let mut s = TrustState::genesis(&roots, MAX_ROOTS as u8).unwrap();
    s.set_sequence(u64::MAX);
    for i in 0..MAX_SIGNERS as u8 {
        s.add_signer(ReleaseSigner {
            key: p256_key(100 + i),
            actions: Actions::INSTALL,
            component: Prefix::new(&[
                0x81, 0x58, 0x1d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0,
            ])
            .unwrap(),
        })
        .unwrap();
    }
    for _ in 0..MAX_RULES {
        s.add_rule(ThresholdRule {
            component: Prefix::new(&[
                0x81, 0x58, 0x1d, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0,
            ])
            .unwrap(),
            threshold: 255,
        })
        .unwrap();
    }
    for i in 0..MAX_REVOKED as u8 {
        s.revoke([i; 8]).unwrap();
    }
    for i in 0..suitcase_trust::MAX_FRESHNESS_SIGNERS as u8 {
        s.add_freshness_signer(key(200 + i)).unwrap();
    }
    let mut buf = [0u8; 4096];
    let n = s.encode(&mut buf).unwrap();
    assert!(n <= suitcase_trust::MAX_DOCUMENT_LEN, "{n}");
    assert!(n <= RECORD_SIZE);
    assert_eq!(TrustState::decode_record(&s.encode_record()).unwrap(), s);
    // One more of anything is refused, not stored.
    assert!(matches!(
        s.revoke([0xff; 8]),
        Err(TrustError::RevocationFull)
    ));
    assert!(matches!(
        s.add_signer(release_signer(50)),
        Err(TrustError::Capacity { .. })
    ));
}

#[test]
fn every_truncation_and_bit_flip_of_a_document_is_refused_or_consistent() {
    // Property-ish: no input derived from a valid document panics, and whatever decodes
    // passes the consistency check and re-encodes to the same bytes.
    let mut s = with_signer_10();
    s.revoke(key(11).id()).unwrap();
    let mut buf = [0u8; 2048];
    let n = s.encode(&mut buf).unwrap();
    let doc = &buf[..n];
    for cut in 0..n {
        assert!(TrustState::decode(&doc[..cut]).is_err());
    }
    for i in 0..n {
        for bit in 0..8 {
            let mut m = doc.to_vec();
            m[i] ^= 1 << bit;
            if let Ok(t) = TrustState::decode(&m) {
                t.check().unwrap();
                let mut again = [0u8; 2048];
                let k = t.encode(&mut again).unwrap();
                assert_eq!(&again[..k], &m[..]);
            }
        }
    }
}

#[test]
fn inconsistent_documents_are_refused() {
    assert!(
        TrustState::genesis(&[key(1), key(1)], 2).is_err(),
        "duplicate root"
    );
    assert!(TrustState::genesis(&[key(1)], 2).is_err(), "k > n");
    assert!(TrustState::genesis(&[key(1)], 0).is_err(), "k = 0");
    assert!(TrustState::genesis(&[], 1).is_err(), "no root");
    let mut s = genesis();
    s.add_signer(release_signer(1)).unwrap();
    assert!(s.check().is_err(), "a root key as release signer");
    let mut s = genesis();
    s.revoke(key(1).id()).unwrap();
    assert!(s.check().is_err(), "a revoked root");
}

#[test]
fn trust_update_signed_by_threshold_applies() {
    let g = genesis();
    let mut next = with_signer_10();
    next.set_sequence(1);
    let applied = g
        .apply_update(&update(&with_signer_10(), 1, &[1, 3]))
        .unwrap();
    assert_eq!(applied, next);
    assert_eq!(
        check_release(&applied, &release(b"app", 5, &[10])).unwrap(),
        5
    );
}

#[test]
fn attack_trust_update_below_threshold_refused() {
    // One compromised root key of a 2-of-3 root (key compromise below threshold, RFC 8240 §3).
    let err = genesis()
        .apply_update(&update(&with_signer_10(), 1, &[2]))
        .unwrap_err();
    assert_eq!(
        err,
        TrustError::Manifest(Error::Unauthenticated(AuthError::ThresholdNotMet {
            required: 2,
            verified: 1
        }))
    );
    assert_eq!(err.reason(), Reason::Signature);
    // The same key signing twice still counts once.
    let err = genesis()
        .apply_update(&update(&with_signer_10(), 1, &[2, 2]))
        .unwrap_err();
    assert!(matches!(
        err,
        TrustError::Manifest(Error::Unauthenticated(AuthError::ThresholdNotMet {
            verified: 1,
            ..
        }))
    ));
}

#[test]
fn attack_release_signer_cannot_issue_trust_update() {
    let state = {
        let mut s = with_signer_10();
        s.add_signer(release_signer(11)).unwrap();
        s
    };
    // Two release signers (a release threshold's worth) sign a trust update adding a third.
    let mut evil = state;
    evil.add_signer(release_signer(12)).unwrap();
    let err = state
        .apply_update(&update(&evil, 1, &[10, 11]))
        .unwrap_err();
    assert_eq!(
        err,
        TrustError::Manifest(Error::Unauthenticated(AuthError::NoTrustedSignature))
    );
    // One root plus release signers: still below the root threshold.
    let err = state
        .apply_update(&update(&evil, 1, &[1, 10, 11]))
        .unwrap_err();
    assert!(matches!(
        err,
        TrustError::Manifest(Error::Unauthenticated(AuthError::ThresholdNotMet {
            verified: 1,
            ..
        }))
    ));
}

#[test]
fn attack_trust_update_rollback_refused() {
    let s5 = genesis()
        .apply_update(&update(&with_signer_10(), 5, &[1, 2]))
        .unwrap();
    for seq in [0, 4, 5] {
        let err = s5
            .apply_update(&update(&genesis(), seq, &[1, 2]))
            .unwrap_err();
        assert_eq!(
            err,
            TrustError::Rollback {
                current: 5,
                offered: seq
            }
        );
        assert_eq!(err.reason(), Reason::SequenceRollback);
    }
}

#[test]
fn attack_tampered_trust_document_refused() {
    let bytes = update(&with_signer_10(), 1, &[1, 2]);
    // Swap the integrated document for another valid one: the signed digest no longer matches.
    let mut other = genesis();
    other.add_signer(release_signer(12)).unwrap();
    other.set_sequence(1);
    let mut doc_a = [0u8; 2048];
    let na = with_signer_10_at(1).encode(&mut doc_a).unwrap();
    let mut doc_b = [0u8; 2048];
    let nb = other.encode(&mut doc_b).unwrap();
    assert_eq!(na, nb);
    let at = bytes.windows(na).position(|w| w == &doc_a[..na]).unwrap();
    let mut tampered = bytes;
    tampered[at..at + na].copy_from_slice(&doc_b[..nb]);
    assert_eq!(
        genesis().apply_update(&tampered).unwrap_err(),
        TrustError::PayloadMismatch
    );
}

fn with_signer_10_at(seq: u64) -> TrustState {
    let mut s = with_signer_10();
    s.set_sequence(seq);
    s
}

#[test]
fn rotation_and_revocation() {
    let s1 = genesis()
        .apply_update(&update(&with_signer_10(), 1, &[1, 2]))
        .unwrap();
    let old = release(b"app", 2, &[10]);
    assert!(check_release(&s1, &old).is_ok());
    // Rotate: add 11, revoke 10.
    let mut next = s1;
    next.add_signer(release_signer(11)).unwrap();
    next.revoke(key(10).id()).unwrap();
    let s2 = s1.apply_update(&update(&next, 2, &[2, 3])).unwrap();
    let err = check_release(&s2, &old).unwrap_err();
    assert_eq!(
        err,
        TrustError::Revoked {
            kid: key(10).id(),
            by: 2
        }
    );
    assert_eq!(err.reason(), Reason::Signature);
    assert!(err.to_string().contains("revoked"));
    assert_eq!(check_release(&s2, &release(b"app", 3, &[11])).unwrap(), 3);
    // A release by a key that was never trusted is refused without naming a revocation.
    assert!(matches!(
        check_release(&s2, &release(b"app", 3, &[12])).unwrap_err(),
        TrustError::Manifest(_)
    ));
}

#[test]
fn release_signers_are_limited_to_their_components_and_thresholds() {
    let mut s = genesis();
    s.add_signer(ReleaseSigner {
        key: key(10),
        actions: Actions::ALL,
        component: Prefix::new(&[0x81, 0x43, b'a', b'p', b'p']).unwrap(),
    })
    .unwrap();
    s.add_signer(release_signer(11)).unwrap();
    assert!(check_release(&s, &release(b"app", 1, &[10])).is_ok());
    assert!(check_release(&s, &release(b"radio", 1, &[10])).is_err());
    assert!(check_release(&s, &release(b"radio", 1, &[11])).is_ok());
    s.add_rule(ThresholdRule {
        component: Prefix::new(&[0x81, 0x43, b'a', b'p', b'p']).unwrap(),
        threshold: 2,
    })
    .unwrap();
    assert!(check_release(&s, &release(b"app", 1, &[10])).is_err());
    assert!(check_release(&s, &release(b"app", 1, &[10, 11])).is_ok());
    s.set_release_threshold(2);
    assert!(check_release(&s, &release(b"radio", 1, &[11])).is_err());
}

#[test]
fn attack_release_naming_the_trust_store_refused() {
    let s = with_signer_10();
    assert_eq!(
        check_release(&s, &release(b"suitcase-trust", 1, &[10])).unwrap_err(),
        TrustError::ReleaseTouchesTrust
    );
    // And a trust update is not a release: root keys are not release signers.
    let u = update(&with_signer_10(), 1, &[1, 2, 3]);
    assert!(check_release(&s, &u).is_err());
}

#[test]
fn root_rotation_chain_needs_old_and_new_thresholds() {
    // Root {1,2,3} 2-of-3 → {4,5} 2-of-2 → {6} 1-of-1, each step signed by the previous root's
    // threshold and the new root's (TUF §5.3.4).
    let g = with_signer_10();
    let mut r2 = g;
    r2.set_roots(&[key(4), key(5)], 2).unwrap();
    // Old threshold only: refused, the new keys never signed.
    let err = g.apply_update(&update(&r2, 1, &[1, 2])).unwrap_err();
    assert!(matches!(err, TrustError::NewRootNotSigned(_)), "{err:?}");
    // New keys only: refused, the old root never agreed.
    let err = g.apply_update(&update(&r2, 1, &[4, 5])).unwrap_err();
    assert!(matches!(err, TrustError::Manifest(_)), "{err:?}");
    let s1 = g.apply_update(&update(&r2, 1, &[1, 2, 4, 5])).unwrap();
    let mut r3 = s1;
    r3.set_roots(&[key(6)], 1).unwrap();
    let s2 = s1.apply_update(&update(&r3, 2, &[4, 5, 6])).unwrap();
    assert_eq!(s2.roots(), &[key(6)]);
    // The first root can authorise nothing any more.
    let mut evil = s2;
    evil.add_signer(release_signer(12)).unwrap();
    assert!(s2.apply_update(&update(&evil, 3, &[1, 2, 3])).is_err());
    // Releases keep working across root rotations.
    assert!(check_release(&s2, &release(b"app", 1, &[10])).is_ok());
}

#[test]
fn attack_old_owner_after_handover_refused() {
    // RFC 8240 §5: the vendor root {1} hands the device to the owner root {7}, removing
    // itself and its release signer; afterwards nothing the vendor signs is accepted.
    let vendor = {
        let mut s = TrustState::genesis(&[key(1)], 1).unwrap();
        s.add_signer(release_signer(10)).unwrap();
        s
    };
    let mut handover = TrustState::genesis(&[key(7)], 1).unwrap();
    handover.add_signer(release_signer(20)).unwrap();
    handover.revoke(key(10).id()).unwrap();
    let owned = vendor.apply_update(&update(&handover, 1, &[1, 7])).unwrap();
    let mut evil = owned;
    evil.set_roots(&[key(1)], 1).unwrap();
    let err = owned.apply_update(&update(&evil, 2, &[1])).unwrap_err();
    assert_eq!(
        err,
        TrustError::Manifest(Error::Unauthenticated(AuthError::NoTrustedSignature))
    );
    assert!(matches!(
        check_release(&owned, &release(b"app", 9, &[10])).unwrap_err(),
        TrustError::Revoked { .. }
    ));
    assert!(check_release(&owned, &release(b"app", 9, &[20])).is_ok());
}

#[test]
fn removing_a_signer_gives_the_state_a_device_decodes() {
    let mut s = with_signer_10();
    s.add_signer(release_signer(11)).unwrap();
    s.add_signer(release_signer(12)).unwrap();
    assert!(s.remove_signer(&key(10).id()));
    assert!(!s.remove_signer(&key(10).id()));
    s.set_sequence(1);
    let applied = genesis().apply_update(&update(&s, 1, &[1, 2])).unwrap();
    assert_eq!(applied, s);
    assert_eq!(
        applied.signers().iter().map(|x| x.key).collect::<Vec<_>>(),
        vec![key(11), key(12)]
    );
}

#[test]
fn every_bit_flip_of_a_trust_update_is_refused_or_changes_nothing() {
    // Property-ish: the signatures cover the manifest, the manifest binds the document; a flip
    // in an unsigned part (a COSE kid, a hint) may still verify, but can never yield another
    // state. And nothing panics.
    let g = genesis();
    let bytes = update(&with_signer_10(), 1, &[1, 2]);
    let good = g.apply_update(&bytes).unwrap();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut m = bytes.clone();
            m[i] ^= 1 << bit;
            if let Ok(s) = g.apply_update(&m) {
                assert_eq!(s, good, "byte {i} bit {bit}");
            }
        }
    }
}

/// State 2 of `rotation_and_revocation`: signer 11, signer 10 revoked.
fn with_10_revoked() -> TrustState {
    let s1 = genesis()
        .apply_update(&update(&with_signer_10(), 1, &[1, 2]))
        .unwrap();
    let mut next = s1;
    next.add_signer(release_signer(11)).unwrap();
    next.revoke(key(10).id()).unwrap();
    s1.apply_update(&update(&next, 2, &[2, 3])).unwrap()
}

/// Signer 11 and the roots of `genesis`, no revocation: what state 2 looks like to an update
/// that forgets the revocation of 10.
fn forgetting() -> TrustState {
    let mut s = genesis();
    s.add_signer(release_signer(11)).unwrap();
    s
}

#[test]
fn attack_trust_update_unrevoking_key_refused() {
    let s2 = with_10_revoked();
    // Root-signed (2 of 3), above the sequence, consistent on its own: but it drops the
    // revocation of 10 (RFC 8240 §3: revocation is permanent).
    let err = s2
        .apply_update(&update(&forgetting(), 3, &[1, 2]))
        .unwrap_err();
    assert_eq!(err, TrustError::Unrevoked { kid: key(10).id() });
    assert!(err.to_string().contains("permanent"), "{err}");
    assert_eq!(err.reason(), Reason::Malformed);
    // Signed by every root, it is refused all the same: no root threshold lifts it.
    let err = s2
        .apply_update(&update(&forgetting(), 3, &[1, 2, 3]))
        .unwrap_err();
    assert_eq!(err, TrustError::Unrevoked { kid: key(10).id() });
}

#[test]
fn attack_trust_update_readmitting_revoked_signer_refused() {
    let s2 = with_10_revoked();
    // Unrevoke and re-add 10 as a release signer in one update.
    let mut next = forgetting();
    next.add_signer(release_signer(10)).unwrap();
    let err = s2.apply_update(&update(&next, 3, &[1, 2])).unwrap_err();
    assert_eq!(err, TrustError::Unrevoked { kid: key(10).id() });
    // The old release stays refused as revoked.
    let old = release(b"app", 2, &[10]);
    assert!(matches!(
        check_release(&s2, &old).unwrap_err(),
        TrustError::Revoked { .. }
    ));
}

#[test]
fn attack_trust_update_readmitting_revoked_key_as_root_refused() {
    let s2 = with_10_revoked();
    // A root rotation to {1, 2, 10}, signed by old and new thresholds, that drops the
    // revocation: refused.
    let mut next = forgetting();
    next.set_roots(&[key(1), key(2), key(10)], 2).unwrap();
    let err = s2.apply_update(&update(&next, 3, &[1, 2])).unwrap_err();
    assert_eq!(err, TrustError::Unrevoked { kid: key(10).id() });
    // Keeping the revocation, the new state itself is inconsistent.
    let mut next = s2;
    next.set_roots(&[key(1), key(2), key(10)], 2).unwrap();
    assert!(matches!(next.check(), Err(TrustError::Document { .. })));
}

#[test]
fn revocations_carry_through_later_updates() {
    let s2 = with_10_revoked();
    // An ordinary later update (a new signer) keeps the revocation and applies.
    let mut next = s2;
    next.add_signer(release_signer(12)).unwrap();
    let s3 = s2.apply_update(&update(&next, 3, &[1, 3])).unwrap();
    assert_eq!(s3.revoked(), &[key(10).id()]);
    assert!(matches!(
        check_release(&s3, &release(b"app", 4, &[10])).unwrap_err(),
        TrustError::Revoked { by: 3, .. }
    ));
}

#[test]
fn a_full_revocation_list_refuses_one_more_and_names_the_way_out() {
    let mut s = genesis();
    for i in 0..MAX_REVOKED {
        s.revoke([i as u8 + 100; 8]).unwrap();
    }
    s.add_signer(release_signer(10)).unwrap();
    let before = s;
    let err = s.revoke(key(10).id()).unwrap_err();
    assert_eq!(err, TrustError::RevocationFull);
    assert!(
        err.to_string()
            .contains("remove the key as a release signer"),
        "{err}"
    );
    // Nothing changed: 10 is still a signer.
    assert_eq!(s, before);
    // Dropping an old revocation to make room is what the device refuses.
    let mut s16 = s;
    s16.set_sequence(1);
    let applied = genesis().apply_update(&update(&s16, 1, &[1, 2])).unwrap();
    assert_eq!(applied.revoked().len(), MAX_REVOKED);
    let mut room = genesis();
    for i in 1..MAX_REVOKED {
        room.revoke([i as u8 + 100; 8]).unwrap();
    }
    room.revoke(key(10).id()).unwrap();
    assert_eq!(
        applied
            .apply_update(&update(&room, 2, &[1, 2]))
            .unwrap_err(),
        TrustError::Unrevoked { kid: [100; 8] }
    );
    // Removing the signer instead applies: 10 is no longer trusted.
    let mut removed = applied;
    assert!(removed.remove_signer(&key(10).id()));
    let s2 = applied.apply_update(&update(&removed, 2, &[1, 2])).unwrap();
    assert!(check_release(&s2, &release(b"app", 3, &[10])).is_err());
}

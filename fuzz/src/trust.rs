//! `trust`: the `suitcase-trust` root of trust (docs/trust.md), as a device runs it. The first
//! byte picks what the rest is:
//! 0. a trust document: `TrustState::decode`; a decoded state passes `check`, encodes to the
//!    same bytes (one encoding) and round-trips through the fixed-size record;
//! 1. a trust-state record (clipped or zero-padded to `RECORD_SIZE`): `decode_record`; a
//!    decoded record encodes to the same bytes;
//! 2. the trust document of a trust update, which the harness wraps in a trust update with the
//!    document's own sequence number and signs with roots 1 and 2 (bit 2 of the first byte: all
//!    three) of the state in force (fix-up: a fuzzer cannot forge root signatures):
//!    `apply_update` on [`in_force`]. An applied state must be consistent, above the state in
//!    force, keep every revocation (RFC 8240 §3), be signed by its own root threshold when the
//!    root changed (TUF §5.3.4), and still refuse a release by the revoked key;
//! 3. an envelope, unchanged: `apply_update` and `verify_release` on [`in_force`] (the
//!    revocation explanation reads the unprotected kids of any block).

use std::path::Path;
use std::sync::OnceLock;

use suitcase_author::keys::PrivateKey;
use suitcase_author::signer::{Signer, SoftwareSigner, sign_block};
use suitcase_author::trust::{envelope_for_document, sign_update, trust_key};
use suitcase_manifest::build::{EnvelopeBuilder, ManifestBuilder};
use suitcase_manifest::{Actions, DigestAlgorithm, Envelope};
use suitcase_trust::{
    Key, MAX_DOCUMENT_LEN, Prefix, RECORD_SIZE, ReleaseSigner, TrustError, TrustState,
};

/// The fuzzing key with seed `seed`: Ed25519 from 32 copies of the byte (test keys).
pub fn signer(seed: u8) -> SoftwareSigner {
    let key = PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
    SoftwareSigner::new(key, Path::new(&format!("trust-fuzz-{seed}"))).unwrap()
}

/// The trust-state form of [`signer`]'s public key.
pub fn key(seed: u8) -> Key {
    trust_key(signer(seed).public_key()).unwrap()
}

/// Root keys 1, 2, 3 (2-of-3) and their signers, made once.
fn roots() -> &'static [SoftwareSigner; 3] {
    static ROOTS: OnceLock<[SoftwareSigner; 3]> = OnceLock::new();
    ROOTS.get_or_init(|| [signer(1), signer(2), signer(3)])
}

/// The state in force: sequence 1, roots 1, 2, 3 (2-of-3), release signer 10 for every
/// component, key 11 revoked.
pub fn in_force() -> TrustState {
    static STATE: OnceLock<TrustState> = OnceLock::new();
    *STATE.get_or_init(|| {
        let mut s = TrustState::genesis(&[key(1), key(2), key(3)], 2).unwrap();
        s.add_signer(ReleaseSigner {
            key: key(10),
            actions: Actions::ALL,
            component: Prefix::ALL,
        })
        .unwrap();
        s.revoke(key(11).id()).unwrap();
        s.set_sequence(1);
        s.check().unwrap();
        s
    })
}

/// A release of component `["app"]` signed by the revoked key 11.
fn revoked_release() -> &'static [u8] {
    static REL: OnceLock<Vec<u8>> = OnceLock::new();
    REL.get_or_init(|| {
        let manifest = ManifestBuilder {
            sequence_number: 7,
            components: vec![vec![b"app".to_vec()]],
            ..ManifestBuilder::default()
        };
        let mut env = EnvelopeBuilder::new(&manifest, DigestAlgorithm::Sha256);
        let block = sign_block(&signer(11), &[], env.digest_bytes()).unwrap();
        env.raw_block(block.bytes);
        env.encode()
    })
}

/// `document` as a trust update signed by roots 1 and 2 (`all`: 1, 2 and 3), with the
/// document's sequence number when it decodes (else 2).
pub fn signed_update(document: &[u8], all: bool) -> Vec<u8> {
    let sequence = TrustState::decode(document).map_or(2, |s| s.sequence());
    let r = roots();
    let signers: Vec<&dyn Signer> = if all {
        vec![&r[0], &r[1], &r[2]]
    } else {
        vec![&r[0], &r[1]]
    };
    sign_update(envelope_for_document(sequence, document.to_vec()), &signers).unwrap()
}

/// The encoded document of `state`.
pub fn encode(state: &TrustState) -> Vec<u8> {
    let mut out = vec![0; MAX_DOCUMENT_LEN];
    let n = state.encode(&mut out).unwrap();
    out.truncate(n);
    out
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&ctl, bytes)) = data.split_first() else {
        return;
    };
    match ctl % 4 {
        0 => {
            if let Ok(s) = TrustState::decode(bytes) {
                s.check().expect("a decoded document is consistent");
                assert_eq!(encode(&s), bytes, "a document has one encoding");
                assert_eq!(TrustState::decode_record(&s.encode_record()), Ok(s));
            }
        }
        1 => {
            let mut record = [0; RECORD_SIZE];
            for (d, b) in record.iter_mut().zip(bytes) {
                *d = *b;
            }
            if let Ok(s) = TrustState::decode_record(&record) {
                s.check().expect("a decoded record is consistent");
                assert_eq!(s.encode_record(), record, "a record has one encoding");
            }
        }
        2 => applied(&signed_update(bytes, ctl & 4 != 0), ctl & 4 != 0),
        _ => {
            let _ = in_force().apply_update(bytes);
            if let Ok(e) = Envelope::decode(bytes) {
                let _ = in_force().verify_release(&e, None);
            }
        }
    }
}

/// Applies a root-signed update to [`in_force`] and checks what an accepted one may do.
fn applied(update: &[u8], all: bool) {
    let cur = in_force();
    let next = match cur.apply_update(update) {
        Ok(next) => next,
        Err(TrustError::Unrevoked { kid }) => {
            assert!(
                cur.revoked().contains(&kid),
                "Unrevoked names a revoked key"
            );
            return;
        }
        Err(_) => return,
    };
    next.check().expect("an applied state is consistent");
    assert!(next.sequence() > cur.sequence(), "anti-rollback");
    for kid in cur.revoked() {
        assert!(
            next.revoked().contains(kid),
            "RFC 8240 §3: revocation is permanent"
        );
    }
    if next.roots() != cur.roots() || next.root_threshold() != cur.root_threshold() {
        let signed = if all { 3 } else { 2 };
        let by_new = (1..=signed)
            .filter(|&i| next.roots().contains(&key(i)))
            .count();
        assert!(
            by_new >= usize::from(next.root_threshold()),
            "TUF §5.3.4: a new root is signed by its own threshold"
        );
    }
    assert_eq!(TrustState::decode(&encode(&next)), Ok(next));
    let release = Envelope::decode(revoked_release()).unwrap();
    assert!(
        next.verify_release(&release, None).is_err(),
        "the revoked key 11 signs nothing a later state accepts"
    );
}

/// The committed seeds (`cargo run --example seeds`): documents, records and updates of the
/// walk-through's kind, and the unrevoking attack.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let cur = in_force();
    let mut out = Vec::new();
    let mut put = |name: &str, ctl: u8, bytes: &[u8]| {
        let mut seed = vec![ctl];
        seed.extend_from_slice(bytes);
        out.push((name.to_owned(), seed));
    };
    put("document-in-force", 0, &encode(&cur));
    put("record-in-force", 1, &cur.encode_record());
    // Rotation: signer 12 in, 10 revoked.
    let mut rotate = cur;
    rotate.set_sequence(2);
    rotate
        .add_signer(ReleaseSigner {
            key: key(12),
            actions: Actions::INSTALL,
            component: Prefix::new(&[0x81, 0x43, b'a', b'p', b'p']).unwrap(),
        })
        .unwrap();
    rotate.revoke(key(10).id()).unwrap();
    put("document-rotation", 0, &encode(&rotate));
    put("update-rotation", 2, &encode(&rotate));
    // Root rotation to 1, 2, 4 (2-of-3): signed by 1 and 2, old and new thresholds.
    let mut root = cur;
    root.set_sequence(3);
    root.set_roots(&[key(1), key(2), key(4)], 2).unwrap();
    put("update-root-rotation", 2, &encode(&root));
    // The attack: the revocation of 11 dropped, 11 a signer again.
    let mut unrevoke = TrustState::genesis(&[key(1), key(2), key(3)], 2).unwrap();
    unrevoke.set_sequence(4);
    unrevoke
        .add_signer(ReleaseSigner {
            key: key(11),
            actions: Actions::ALL,
            component: Prefix::ALL,
        })
        .unwrap();
    put("update-unrevoking", 6, &encode(&unrevoke));
    // Each update seed reaches what it is for.
    assert!(
        cur.apply_update(&signed_update(&encode(&rotate), false))
            .is_ok()
    );
    assert!(
        cur.apply_update(&signed_update(&encode(&root), false))
            .is_ok()
    );
    assert_eq!(
        cur.apply_update(&signed_update(&encode(&unrevoke), true)),
        Err(TrustError::Unrevoked { kid: key(11).id() })
    );
    put(
        "envelope-update",
        3,
        &signed_update(&encode(&rotate), false),
    );
    put("envelope-revoked-release", 3, revoked_release());
    out
}

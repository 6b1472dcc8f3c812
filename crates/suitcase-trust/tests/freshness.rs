//! Freshness statements (docs/trust.md, "Freshness"): written as the server writes them,
//! verified as the agent does, and each attack refused with its own error. The freshness
//! signers in the trust document: encoded only when present, so older documents are unchanged.

#![expect(clippy::unwrap_used, reason = "tests")]

use ed25519_dalek::Signer as _;
use suitcase_trust::freshness::{Claims, MAX_STATEMENT_LEN, Offered, encode_statement};
use suitcase_trust::{FreshnessError, Key, KeyKind, TrustError, TrustState};

fn sk(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn key(seed: u8) -> Key {
    Key::new(KeyKind::Ed25519, sk(seed).verifying_key().as_bytes()).unwrap()
}

/// Root 1; freshness signer 50 (the server's key).
fn state() -> TrustState {
    let mut s = TrustState::genesis(&[key(1)], 1).unwrap();
    s.add_freshness_signer(key(50)).unwrap();
    s.check().unwrap();
    s
}

const NONCE: [u8; 16] = [7; 16];
const DIGEST: [u8; 32] = [9; 32];

fn statement(seed: u8, nonce: &[u8], device: &str, offer: Option<(u64, &[u8])>) -> Vec<u8> {
    let claims = Claims {
        nonce,
        device,
        offer: offer.map(|(sequence, digest)| Offered { sequence, digest }),
        time: 1_800_000_000,
    };
    let signer = sk(seed);
    let mut out = vec![0; MAX_STATEMENT_LEN];
    let n = encode_statement(
        &claims,
        &key(seed).id(),
        |tbs| signer.sign(tbs).to_bytes(),
        &mut out,
    )
    .unwrap();
    out.truncate(n);
    out
}

#[test]
fn a_fresh_statement_verifies_and_says_the_time_and_the_offer() {
    let s = state();
    let st = statement(50, &NONCE, "sn-1", Some((3, &DIGEST)));
    let f = s.verify_freshness(&st, &NONCE, "sn-1").unwrap();
    assert_eq!(f.time, 1_800_000_000);
    assert_eq!(f.offer.unwrap().sequence, 3);
    assert_eq!(f.offer.unwrap().digest, DIGEST);
    assert_eq!(f.signer, key(50).id());
    assert_eq!(f.check_sequence(Some(3)), Ok(()));
    // The same statement for "no offer", or another sequence, is another offer.
    assert_eq!(f.check_sequence(None), Err(FreshnessError::Offer));
    assert_eq!(f.check_sequence(Some(4)), Err(FreshnessError::Offer));
    let none = statement(50, &NONCE, "sn-1", None);
    let f = s.verify_freshness(&none, &NONCE, "sn-1").unwrap();
    assert_eq!(f.offer, None);
    assert_eq!(f.check_sequence(None), Ok(()));
}

#[test]
fn replayed_statement_for_an_old_nonce_is_refused() {
    let st = statement(50, &[1; 16], "sn-1", Some((3, &DIGEST)));
    assert_eq!(
        state().verify_freshness(&st, &NONCE, "sn-1"),
        Err(FreshnessError::Nonce)
    );
}

#[test]
fn mix_and_match_statement_for_other_device_is_refused() {
    let st = statement(50, &NONCE, "sn-2", Some((3, &DIGEST)));
    assert_eq!(
        state().verify_freshness(&st, &NONCE, "sn-1"),
        Err(FreshnessError::Device)
    );
}

#[test]
fn statement_by_a_key_that_is_not_a_freshness_signer_is_refused() {
    // A release signer's or a root's key is not a freshness signer (role separation).
    let st = statement(1, &NONCE, "sn-1", None);
    assert_eq!(
        state().verify_freshness(&st, &NONCE, "sn-1"),
        Err(FreshnessError::Signature)
    );
    let no_signer = TrustState::genesis(&[key(1)], 1).unwrap();
    let st = statement(50, &NONCE, "sn-1", None);
    assert_eq!(
        no_signer.verify_freshness(&st, &NONCE, "sn-1"),
        Err(FreshnessError::NoSigner)
    );
}

#[test]
fn tampered_claims_break_the_signature() {
    let mut st = statement(50, &NONCE, "sn-1", Some((3, &DIGEST)));
    // The time is the last claim, before the COSE_Sign1: flip a bit of it.
    let at = st
        .windows(4)
        .position(|w| w == [0x04, 0x1a, 0x6b, 0x49])
        .unwrap()
        + 5;
    st[at] ^= 1;
    assert_eq!(
        state().verify_freshness(&st, &NONCE, "sn-1"),
        Err(FreshnessError::Signature)
    );
}

#[test]
fn malformed_statements_are_refused_without_panic() {
    let s = state();
    let good = statement(50, &NONCE, "sn-1", Some((3, &DIGEST)));
    for n in 0..good.len() {
        assert!(
            s.verify_freshness(&good[..n], &NONCE, "sn-1").is_err(),
            "{n}"
        );
    }
    let mut trailing = good;
    trailing.push(0);
    assert!(matches!(
        s.verify_freshness(&trailing, &NONCE, "sn-1"),
        Err(FreshnessError::Malformed { .. })
    ));
    let huge = vec![0x80; MAX_STATEMENT_LEN + 1];
    assert!(matches!(
        s.verify_freshness(&huge, &NONCE, "sn-1"),
        Err(FreshnessError::Malformed { .. })
    ));
    // The server never writes a nonce outside 8..=32 bytes.
    let claims = Claims {
        nonce: &[1; 7],
        device: "sn-1",
        offer: None,
        time: 0,
    };
    assert!(claims.encode(&mut [0; 64]).is_err());
}

#[test]
fn freshness_signers_round_trip_and_older_documents_are_unchanged() {
    let plain = TrustState::genesis(&[key(1)], 1).unwrap();
    let mut buf = [0u8; 2048];
    let n = plain.encode(&mut buf).unwrap();
    assert_eq!(
        buf[0], 0xa7,
        "no freshness signer: the 7-entry document as before"
    );
    let s = state();
    let n2 = s.encode(&mut buf).unwrap();
    assert_eq!(buf[0], 0xa8);
    assert_ne!(n, n2);
    assert_eq!(TrustState::decode(&buf[..n2]).unwrap(), s);
    assert_eq!(TrustState::decode_record(&s.encode_record()).unwrap(), s);
    // At most two; a P-256 key or a root key is refused.
    let mut full = state();
    full.add_freshness_signer(key(51)).unwrap();
    assert!(matches!(
        full.add_freshness_signer(key(52)),
        Err(TrustError::Capacity { .. })
    ));
    let mut root_as_fresh = TrustState::genesis(&[key(1)], 1).unwrap();
    root_as_fresh.add_freshness_signer(key(1)).unwrap();
    assert!(matches!(
        root_as_fresh.check(),
        Err(TrustError::Document { .. })
    ));
    assert!(full.remove_freshness_signer(&key(50).id()));
    assert_eq!(full.freshness_signers(), &[key(51)]);
    // Revoking a freshness key removes it for good.
    full.revoke(key(51).id()).unwrap();
    assert!(full.freshness_signers().is_empty());
}

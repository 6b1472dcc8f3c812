//! `auth`: every signature the device verifies. The fuzzed envelope's manifest digest is
//! recomputed in place (the one thing a forger can always get right), so mutated
//! authentication blocks reach the COSE parsing (Sign1, Sign, Mac0, Mac), the key-id binding,
//! and each verifier: ES256/ESP256, Ed25519, HSS-LMS, ML-DSA-65, HMAC-256 and X.509 chains
//! (`x5chain`, rustls-webpki) to a trust-anchor certificate, under three policies (one
//! signer, two signers, hybrid classical + post-quantum).

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use suitcase_author::keys::PublicKey as AuthorKey;
use suitcase_manifest::{Envelope, PublicKey, TrustAnchor, TrustPolicy};

use crate::{FUZZ_KEY, patch_subslice};

/// The trust anchors: every `fuzz/keys/author-*` public key (written by the seed generator
/// with the private halves that signed the seeds) and the draft examples' ES256 key.
pub fn author_keys() -> &'static [(String, AuthorKey)] {
    static KEYS: OnceLock<Vec<(String, AuthorKey)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut files =
            vec![crate::testdata_dir().join("vectors/keys/suit-example-es256-public.pem")];
        if let Ok(dir) = std::fs::read_dir(crate::keys_dir()) {
            let mut found: Vec<_> = dir
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("author-") && n.ends_with(".pub"))
                })
                .collect();
            found.sort();
            files.extend(found);
        }
        files
            .iter()
            .filter_map(|f| {
                let key = suitcase_author::keys::load_public(f).ok()?;
                Some((f.file_name()?.to_string_lossy().into_owned(), key))
            })
            .collect()
    })
}

/// The time X.509 validity is checked at: when the seed generator issued the committed
/// certificates (`fuzz/keys/now.txt`), else 2026-01-01.
pub fn now() -> u64 {
    static NOW: OnceLock<u64> = OnceLock::new();
    *NOW.get_or_init(|| {
        std::fs::read_to_string(crate::keys_dir().join("now.txt"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1_767_225_600)
    })
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Ok(e) = Envelope::decode(data) else {
        return;
    };
    let Ok(a) = e.authentication() else {
        return;
    };
    let digest = e.manifest_digest(a.digest.algorithm);
    let mut fixed = data.to_vec();
    patch_subslice(&mut fixed, data, a.digest.bytes, digest.as_bytes());
    let Ok(e) = Envelope::decode(&fixed) else {
        return;
    };
    let mut anchors: Vec<TrustAnchor<'_>> = author_keys()
        .iter()
        .filter_map(|(name, k)| Some(TrustAnchor::new(name, k.as_trust_key()?)))
        .collect();
    anchors.push(TrustAnchor::new("fuzz", PublicKey::Hmac256(FUZZ_KEY)));
    let policies = [
        TrustPolicy {
            time: Some(now()),
            ..TrustPolicy::default()
        },
        TrustPolicy {
            threshold: NonZeroUsize::new(2).unwrap(),
            time: Some(now()),
            ..TrustPolicy::default()
        },
        TrustPolicy {
            hybrid: true,
            time: Some(now()),
            ..TrustPolicy::default()
        },
    ];
    for policy in &policies {
        let _ = e.verify(&anchors, policy);
    }
}

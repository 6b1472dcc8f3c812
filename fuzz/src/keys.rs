//! `keys`: every key and certificate loader. The first byte picks one:
//! 0. `CoseKey::decode` (the device's COSE_Key parser) and `p256_public_from_cose`;
//! 1. `suitcase_author::keys::parse_public` (PEM SPKI, PEM PKCS#8/SEC1 private keys, COSE_Key
//!    of every algorithm, HSS-LMS key files, hex), then the loaded key's kid, encodings and
//!    trust-anchor form;
//! 2. `suitcase_author::x509::parse_certs` (PEM chains or one DER certificate) and the P-256
//!    key of each certificate;
//! 3. the bytes as a trust-anchor certificate (DER) on the device: a committed envelope
//!    signed with an `x5chain` is verified against it (rustls-webpki parses the anchor).

use std::path::Path;
use std::sync::OnceLock;

use suitcase_manifest::{Envelope, PublicKey, TrustAnchor, TrustPolicy};

/// The committed envelope signed by a leaf certificate, with its chain in `x5chain`.
pub fn x509_envelope() -> &'static [u8] {
    static ENV: OnceLock<Vec<u8>> = OnceLock::new();
    ENV.get_or_init(|| {
        std::fs::read(crate::keys_dir().join("x509-signed.suit")).unwrap_or_default()
    })
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = suitcase_manifest::key::CoseKey::decode(bytes);
            let _ = suitcase_manifest::key::p256_public_from_cose(bytes);
        }
        1 => {
            if let Ok(k) = suitcase_author::keys::parse_public(Path::new("fuzz"), bytes) {
                let _ = k.kid();
                let _ = k.kind();
                let _ = k.encode();
                let _ = k.as_trust_key();
                let _ = k.is_post_quantum();
            }
        }
        2 => {
            if let Ok(certs) = suitcase_author::x509::parse_certs(Path::new("fuzz"), bytes) {
                for c in &certs {
                    let _ = suitcase_author::x509::p256_public_key(c);
                }
            }
        }
        _ => {
            let Ok(e) = Envelope::decode(x509_envelope()) else {
                return;
            };
            let anchors = [TrustAnchor::new("root", PublicKey::X509Root(bytes))];
            let policy = TrustPolicy {
                time: Some(crate::auth::now()),
                ..TrustPolicy::default()
            };
            let _ = e.verify(&anchors, &policy);
        }
    }
}

//! Loading the SUIT working group's vectors (`testdata/vectors/`) and their keys, shared by the
//! manifest crate's integration tests.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "test code: each test uses a part"
)]

use p256::pkcs8::DecodePublicKey;
use suitcase_manifest::{PublicKey, TrustAnchor};

/// The path of `path` below `testdata/vectors/`.
fn path_of(path: &str) -> String {
    format!(
        "{}/../../testdata/vectors/{path}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A hex-encoded vector, decoded.
pub fn vector(path: &str) -> Vec<u8> {
    let full = path_of(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    hex::decode(text.trim()).unwrap()
}

/// A text file (a PEM key, a README...).
pub fn file(path: &str) -> String {
    std::fs::read_to_string(path_of(path)).unwrap()
}

/// An anchor that may authorise everything, from a P-256 public key in PEM.
pub fn p256_anchor(pem_path: &'static str) -> TrustAnchor<'static> {
    let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&file(pem_path)).unwrap();
    TrustAnchor::new(pem_path, PublicKey::P256(key))
}

/// The key the working group's examples are signed with.
pub fn example_key() -> TrustAnchor<'static> {
    p256_anchor("keys/suit-example-es256-public.pem")
}

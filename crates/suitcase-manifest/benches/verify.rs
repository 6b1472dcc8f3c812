//! Decode + authenticate an envelope, next to the bare signature verification it contains.
//!
//! `cargo bench -p suitcase-manifest --bench verify` — results in docs/benchmarks.md.

#![expect(clippy::unwrap_used, reason = "benchmark code")]

use core::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, ManifestBuilder, Param};
use suitcase_manifest::codepoints::alg;
use suitcase_manifest::{
    Condition, DigestAlgorithm, Directive, Envelope, PublicKey, TrustAnchor, TrustPolicy,
};

/// A manifest shaped like the specification's example 1: identity checks, digest, size, URI.
fn manifest() -> ManifestBuilder {
    ManifestBuilder {
        sequence_number: 1,
        components: vec![vec![vec![0]]],
        shared_sequence: Some(vec![
            Cmd::OverrideParameters(vec![
                Param::VendorIdentifier(vec![0xfa; 16]),
                Param::ClassIdentifier(vec![0x14; 16]),
                Param::ImageDigest(DigestAlgorithm::Sha256, vec![0x11; 32]),
                Param::ImageSize(34768),
            ]),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
        ]),
        validate: Some(vec![Cmd::Condition(Condition::ImageMatch, 15)]),
        install: Some(vec![
            Cmd::OverrideParameters(vec![Param::Uri("http://example.com/file.bin".into())]),
            Cmd::Directive(Directive::Fetch, 2),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("authenticate");

    // ES256: decode + digest + COSE_Sign1 verify + full manifest parse and validation.
    let p256_key = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
    let mut b = EnvelopeBuilder::new(&manifest(), DigestAlgorithm::Sha256);
    let mut tbs = Vec::new();
    let mut sig = Vec::new();
    b.sign1(alg::ESP256, None, |m| {
        tbs = m.to_vec();
        let s: p256::ecdsa::Signature = p256_key.sign(m);
        sig = s.to_bytes().to_vec();
        sig.clone()
    });
    let envelope = b.encode();
    let vk = *p256_key.verifying_key();
    let anchors = [TrustAnchor {
        name: "p256",
        key: PublicKey::P256(vk),
        kid: None,
        permissions: suitcase_manifest::Permissions::ALL,
    }];
    group.bench_function("es256/decode+verify", |bench| {
        bench.iter(|| {
            let env = Envelope::decode(black_box(&envelope)).unwrap();
            env.verify(&anchors, &TrustPolicy::default())
                .unwrap()
                .sequence_number()
        });
    });
    let signature = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    group.bench_function("es256/bare-verify", |bench| {
        use p256::ecdsa::signature::Verifier;
        bench.iter(|| vk.verify(black_box(&tbs), &signature).unwrap());
    });

    // Ed25519.
    let ed_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let mut b = EnvelopeBuilder::new(&manifest(), DigestAlgorithm::Sha256);
    let mut ed_tbs = Vec::new();
    b.sign1(alg::ED25519, None, |m| {
        ed_tbs = m.to_vec();
        ed_key.sign(m).to_bytes().to_vec()
    });
    let ed_envelope = b.encode();
    let ed_vk = ed_key.verifying_key();
    let ed_anchors = [TrustAnchor {
        name: "ed25519",
        key: PublicKey::Ed25519(ed_vk),
        kid: None,
        permissions: suitcase_manifest::Permissions::ALL,
    }];
    group.bench_function("ed25519/decode+verify", |bench| {
        bench.iter(|| {
            let env = Envelope::decode(black_box(&ed_envelope)).unwrap();
            env.verify(&ed_anchors, &TrustPolicy::default())
                .unwrap()
                .sequence_number()
        });
    });
    let ed_sig = ed_key.sign(&ed_tbs);
    group.bench_function("ed25519/bare-verify", |bench| {
        bench.iter(|| ed_vk.verify_strict(black_box(&ed_tbs), &ed_sig).unwrap());
    });

    // The specification's own example 0 (ES256, 237 bytes).
    let example0 =
        hex::decode(include_str!("../../../testdata/vectors/manifest/example0.signed.hex").trim())
            .unwrap();
    let example_key = {
        use p256::pkcs8::DecodePublicKey;
        p256::ecdsa::VerifyingKey::from_public_key_pem(include_str!(
            "../../../testdata/vectors/keys/suit-example-es256-public.pem"
        ))
        .unwrap()
    };
    let example_anchors = [TrustAnchor {
        name: "example",
        key: PublicKey::P256(example_key),
        kid: None,
        permissions: suitcase_manifest::Permissions::ALL,
    }];
    group.bench_function("spec-example0/decode+verify", |bench| {
        bench.iter(|| {
            Envelope::decode(black_box(&example0))
                .unwrap()
                .verify(&example_anchors, &TrustPolicy::default())
                .unwrap()
                .sequence_number()
        });
    });

    // Decoding alone, to show where the time is not.
    group.bench_function("decode-only", |bench| {
        bench.iter(|| {
            let env = Envelope::decode(black_box(&envelope)).unwrap();
            suitcase_manifest::Manifest::decode_unauthenticated(env.manifest_bytes())
                .unwrap()
                .sequence_number
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

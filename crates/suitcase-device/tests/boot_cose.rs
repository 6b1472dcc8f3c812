//! The boot path's own COSE_Sign1 reader with one built-in key (`OneKey`, issue 20): the attacks
//! it must refuse with ES256 (the Cortex-M bootloader's `Es256` over a platform P-256, here
//! RustCrypto's) and Ed25519, and a cross-check against the full processor on the SUIT working
//! group's vectors and on every bit flip and truncation of them: the lean reader never lets an
//! envelope through authentication that the manifest crate's COSE decoder refuses.

#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::pkcs8::DecodePublicKey;
use suitcase_boot::{ImageIndex, Measurement};
use suitcase_device::{
    BootRefusal, BootVerifier, DeviceIdentity, Ed25519, Es256, OneKey, Sha256Only, pack,
};
use suitcase_flash_sim::{SharedFlash, SimFlash};
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, ManifestBuilder, Param};
use suitcase_manifest::codepoints::alg;
use suitcase_manifest::{
    AuthError, ComponentId, Condition, DigestAlgorithm, Envelope, Error, P256PrehashVerifier,
    PublicKey, TrustAnchor, TrustPolicy,
};

const SECTOR: u32 = 4096;
const SLOT: u32 = 32 * SECTOR;

/// A platform P-256 verification as the bootloader provides one (there: P256-Cortex-M4).
struct Platform(p256::ecdsa::VerifyingKey);

impl P256PrehashVerifier for Platform {
    fn verify_prehash(&self, digest: &[u8; 32], signature: &[u8; 64]) -> bool {
        p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|sig| self.0.verify_prehash(digest, &sig).is_ok())
    }
}

fn partition(slot: &[u8]) -> suitcase_flash_sim::Partition<4, 256> {
    let flash = SharedFlash::new(SimFlash::<4, 256>::uniform(SECTOR, 32, 1).unwrap());
    flash.with(|f| f.load(0, slot)).unwrap().unwrap();
    flash.partition(0, SLOT).unwrap()
}

const COMPONENT: [u8; 3] = [0x81, 0x41, 0x00];

/// `[h'00']`, and the identity the SUIT examples are for (manifest draft, Appendix A).
const VENDOR: [u8; 16] = [
    0xfa, 0x6b, 0x4a, 0x53, 0xd5, 0xad, 0x5f, 0xdf, 0xbe, 0x9d, 0xe6, 0x63, 0xe4, 0xd4, 0x1f, 0xfe,
];
const CLASS: [u8; 16] = [
    0x14, 0x92, 0xaf, 0x14, 0x25, 0x69, 0x5e, 0x48, 0xbf, 0x42, 0x9b, 0x2d, 0x51, 0xf2, 0xab, 0x45,
];

fn identity() -> DeviceIdentity<'static> {
    DeviceIdentity {
        vendor: &VENDOR,
        class: &CLASS,
        device: None,
    }
}

/// The lean path with `key` on `slot`.
fn one_key<K: suitcase_device::BootKey>(key: &K, slot: &[u8]) -> Result<Measurement, BootRefusal> {
    let components = [ComponentId::decode(&COMPONENT).unwrap()];
    BootVerifier::<Sha256Only, 0, _>::with_authority(OneKey(key), identity(), &components)
        .check(ImageIndex(0), &mut partition(slot))
}

/// The lean path with the manifest crate's COSE decoder and `anchor` on `slot`.
fn anchors(anchor: PublicKey<'_>, slot: &[u8]) -> Result<Measurement, BootRefusal> {
    let anchors = [TrustAnchor::new("author", anchor)];
    let components = [ComponentId::decode(&COMPONENT).unwrap()];
    BootVerifier::<Sha256Only, 1024>::new(&anchors, TrustPolicy::default(), identity(), &components)
        .check(ImageIndex(0), &mut partition(slot))
}

fn p256_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[5; 32]).unwrap()
}

fn ed25519_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[6; 32])
}

fn image() -> Vec<u8> {
    (0..2000u32).map(|i| (i * 7) as u8).collect()
}

/// A release as `suitcase release build` makes it: identity conditions, image digest and size,
/// image-match in validate; signed by `sign` with `alg`.
fn release(
    sequence: u64,
    vendor: [u8; 16],
    alg: i64,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let img = image();
    let m = ManifestBuilder {
        sequence_number: sequence,
        components: vec![vec![vec![0]]],
        shared_sequence: Some(vec![
            Cmd::OverrideParameters(vec![
                Param::VendorIdentifier(vendor.to_vec()),
                Param::ClassIdentifier(CLASS.to_vec()),
                Param::ImageDigest(
                    DigestAlgorithm::Sha256,
                    DigestAlgorithm::Sha256.digest(&img).as_bytes().to_vec(),
                ),
                Param::ImageSize(img.len() as u64),
            ]),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
        ]),
        validate: Some(vec![Cmd::Condition(Condition::ImageMatch, 15)]),
        ..Default::default()
    };
    let mut b = EnvelopeBuilder::new(&m, DigestAlgorithm::Sha256);
    b.sign1(alg, None, sign);
    pack(&b.encode(), &img, 64).unwrap()
}

fn es256_release(sequence: u64, vendor: [u8; 16], key: &p256::ecdsa::SigningKey) -> Vec<u8> {
    release(sequence, vendor, alg::ES256, |tbs| {
        let s: p256::ecdsa::Signature = key.sign(tbs);
        s.to_bytes().to_vec()
    })
}

fn ed25519_release(sequence: u64, key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    use ed25519_dalek::Signer as _;
    release(sequence, VENDOR, alg::EDDSA, |tbs| {
        key.sign(tbs).to_bytes().to_vec()
    })
}

fn es256() -> Es256<Platform> {
    Es256(Platform(*p256_key().verifying_key()))
}

fn no_trusted_signature() -> BootRefusal {
    BootRefusal::Unauthenticated(Error::Unauthenticated(AuthError::NoTrustedSignature))
}

/// The offset of the envelope's manifest bstr content in a slot image.
fn manifest_at(slot: &[u8]) -> usize {
    let len = u32::from_le_bytes(slot[8..12].try_into().unwrap()) as usize;
    let e = Envelope::decode(&slot[32..32 + len]).unwrap();
    e.manifest_bytes().as_ptr() as usize - slot.as_ptr() as usize
}

#[test]
fn es256_and_ed25519_releases_boot_with_the_same_measurement_as_the_anchors_path() {
    let slot = es256_release(3, VENDOR, &p256_key());
    let m = one_key(&es256(), &slot).unwrap();
    assert_eq!(m.security_version.0, 3);
    let full = anchors(PublicKey::P256(*p256_key().verifying_key()), &slot).unwrap();
    assert_eq!((m.digest, m.size), (full.digest, full.size));

    let ed = Ed25519::from_bytes(ed25519_key().verifying_key().as_bytes()).unwrap();
    let slot = ed25519_release(4, &ed25519_key());
    assert_eq!(one_key(&ed, &slot).unwrap().security_version.0, 4);
}

#[test]
fn attack_tampered_image() {
    let mut slot = es256_release(1, VENDOR, &p256_key());
    *slot.last_mut().unwrap() ^= 1;
    assert_eq!(
        one_key(&es256(), &slot).unwrap_err(),
        BootRefusal::ImageMismatch { component: 0 }
    );
}

#[test]
fn attack_tampered_manifest() {
    let mut slot = es256_release(7, VENDOR, &p256_key());
    // `a? 01 01 02 07`: the sequence number.
    let at = manifest_at(&slot) + 4;
    assert_eq!(slot[at], 7);
    slot[at] = 9;
    assert_eq!(
        one_key(&es256(), &slot).unwrap_err(),
        BootRefusal::ManifestDigestMismatch
    );
}

#[test]
fn attack_untrusted_signer() {
    let stranger = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
    let slot = es256_release(1, VENDOR, &stranger);
    assert_eq!(
        one_key(&es256(), &slot).unwrap_err(),
        no_trusted_signature()
    );
    let ed = Ed25519::from_bytes(ed25519_key().verifying_key().as_bytes()).unwrap();
    let slot = ed25519_release(1, &ed25519_dalek::SigningKey::from_bytes(&[8; 32]));
    assert_eq!(one_key(&ed, &slot).unwrap_err(), no_trusted_signature());
    // A block for an algorithm the key does not verify is skipped, and then nothing verified.
    let slot = es256_release(1, VENDOR, &p256_key());
    assert_eq!(one_key(&ed, &slot).unwrap_err(), no_trusted_signature());
}

#[test]
fn attack_rollback_reports_the_older_sequence_number() {
    // The anti-rollback decision is suitcase-boot's (boot_path.rs runs it end to end): the
    // lean path must hand it the signed sequence number, not anything else.
    for sequence in [1, 5, 1_000_000] {
        let slot = es256_release(sequence, VENDOR, &p256_key());
        assert_eq!(
            one_key(&es256(), &slot).unwrap().security_version.0,
            sequence
        );
    }
}

#[test]
fn attack_wrong_vendor() {
    let slot = es256_release(1, [0x11; 16], &p256_key());
    assert_eq!(
        one_key(&es256(), &slot).unwrap_err(),
        BootRefusal::VendorMismatch { component: 0 }
    );
}

#[test]
fn attack_small_order_ed25519_key_is_not_a_key() {
    // The identity point: with R = identity and S = 0 it "verifies" every message.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(Ed25519::from_bytes(&identity).is_none());
}

#[test]
fn attack_non_canonical_ed25519_s_is_refused() {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    use ed25519_dalek::Signer as _;
    let slot = release(1, VENDOR, alg::EDDSA, |tbs| {
        let mut sig = ed25519_key().sign(tbs).to_bytes().to_vec();
        // S + L: the same scalar, a second signature of the same message (malleability).
        let mut carry = 0u16;
        for (byte, l) in sig[32..].iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = sum.to_le_bytes()[0];
            carry = sum >> 8;
        }
        sig
    });
    let ed = Ed25519::from_bytes(ed25519_key().verifying_key().as_bytes()).unwrap();
    assert_eq!(one_key(&ed, &slot).unwrap_err(), no_trusted_signature());
}

#[test]
fn attack_small_order_ed25519_r_is_refused() {
    // R = the identity (order 1) and S = k·a: [S]B = R + [k]A holds, so only verify_strict's
    // small-order check of R (which the equation alone does not make) refuses it. Anyone
    // holding the key can make such a signature; it is refused so that the boot path accepts
    // no signature verify_strict refuses.
    use curve25519_dalek::{EdwardsPoint, Scalar, scalar::clamp_integer};
    use sha2::Digest as _;
    let key = ed25519_key();
    let h = sha2::Sha512::digest(key.to_bytes());
    let a = Scalar::from_bytes_mod_order(clamp_integer(h[..32].try_into().unwrap()));
    let public = key.verifying_key().to_bytes();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut equation_holds = false;
    let slot = release(1, VENDOR, alg::EDDSA, |tbs| {
        let k = Scalar::from_hash(
            sha2::Sha512::new()
                .chain_update(identity)
                .chain_update(public)
                .chain_update(tbs),
        );
        let s = k * a;
        let a_point = EdwardsPoint::mul_base(&a);
        equation_holds = EdwardsPoint::mul_base(&s) - k * a_point
            == curve25519_dalek::edwards::CompressedEdwardsY(identity)
                .decompress()
                .unwrap();
        [identity, s.to_bytes()].concat()
    });
    assert!(
        equation_holds,
        "the forged signature must satisfy the equation"
    );
    let ed = Ed25519::from_bytes(&public).unwrap();
    assert_eq!(one_key(&ed, &slot).unwrap_err(), no_trusted_signature());
}

#[test]
fn attack_unsigned_envelope_is_refused() {
    let img = image();
    let m = ManifestBuilder {
        sequence_number: 1,
        components: vec![vec![vec![0]]],
        ..Default::default()
    };
    let slot = pack(
        &EnvelopeBuilder::new(&m, DigestAlgorithm::Sha256).encode(),
        &img,
        64,
    )
    .unwrap();
    assert_eq!(
        one_key(&es256(), &slot).unwrap_err(),
        BootRefusal::Unauthenticated(Error::Unauthenticated(AuthError::NoAuthenticationBlock))
    );
}

/// Whether the boot path got past authentication: it accepted, or refused for a reason found
/// only after the signatures (the manifest's conditions, the image).
fn authenticated(r: &Result<Measurement, BootRefusal>) -> bool {
    matches!(
        r,
        Ok(_)
            | Err(BootRefusal::ImageMismatch { .. }
                | BootRefusal::TooLarge { .. }
                | BootRefusal::VendorMismatch { .. }
                | BootRefusal::ClassMismatch { .. }
                | BootRefusal::DeviceMismatch { .. }
                | BootRefusal::MissingParameter { .. }
                | BootRefusal::NoImageMatch
                | BootRefusal::ComponentNotFound
                | BootRefusal::ManifestVersion { .. }
                | BootRefusal::SeveredMemberMismatch { .. })
    )
}

/// Whether the full processor authenticates the envelope in `slot` (decode, digest and
/// signatures: `Envelope::verify`).
fn full_authenticates(slot: &[u8], anchor: PublicKey<'_>) -> bool {
    let len = u32::from_le_bytes(slot[8..12].try_into().unwrap()) as usize;
    let Some(env) = slot.get(32..32 + len) else {
        return false;
    };
    let anchors = [TrustAnchor::new("author", anchor)];
    Envelope::decode(env).is_ok_and(|e| e.verify(&anchors, &TrustPolicy::default()).is_ok())
}

/// `slot` and every single-bit flip of its envelope and every truncation of it (the header
/// saying the shorter length): whenever the lean reader gets past authentication, the full
/// processor authenticates the same envelope, and the anchors path decides the same.
fn never_more_lenient(name: &str, slot: &[u8], key: &Es256<Platform>, anchor: PublicKey<'_>) {
    let len = u32::from_le_bytes(slot[8..12].try_into().unwrap()) as usize;
    let check = |what: &str, bad: &[u8]| {
        let lean = one_key(key, bad);
        if authenticated(&lean) {
            assert!(full_authenticates(bad, anchor), "{name} {what}: {lean:?}");
            assert_eq!(lean, anchors(anchor, bad), "{name} {what}");
        }
        lean
    };
    assert!(authenticated(&check("as is", slot)), "{name}");
    for i in 0..len {
        for bit in 0..8 {
            let mut bad = slot.to_vec();
            bad[32 + i] ^= 1 << bit;
            let _ = check(&format!("byte {i} bit {bit}"), &bad);
        }
    }
    for cut in 0..len {
        let mut bad = slot.to_vec();
        bad[8..12].copy_from_slice(&(cut as u32).to_le_bytes());
        assert!(
            !authenticated(&check(&format!("cut at {cut}"), &bad)),
            "{name} cut at {cut}"
        );
    }
}

#[test]
fn never_accepts_what_the_full_processor_refuses_on_flips_and_truncations() {
    let slot = es256_release(1, VENDOR, &p256_key());
    never_more_lenient(
        "release",
        &slot,
        &es256(),
        PublicKey::P256(*p256_key().verifying_key()),
    );
}

fn vector(path: &str) -> Vec<u8> {
    let full = format!(
        "{}/../../testdata/vectors/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    hex::decode(text.trim()).unwrap()
}

#[test]
fn suit_vectors_authenticate_alike_and_no_flip_or_truncation_gets_further() {
    let pem = std::fs::read_to_string(format!(
        "{}/../../testdata/vectors/keys/suit-example-es256-public.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).unwrap();
    let platform = Es256(Platform(key));
    // The examples' images are not published: a zero image of their declared size (34,768
    // bytes) stops both paths at image-match, after authentication.
    let img = vec![0u8; 34_768];
    for name in [
        "manifest/example0.signed.hex",
        "manifest/example1.signed.hex",
        "manifest/example2.signed.hex",
        "manifest/example2.severed-signed.hex",
        "manifest/example3.signed.hex",
        "manifest/example4.signed.hex",
        "manifest/example5.signed.hex",
    ] {
        let slot = pack(&vector(name), &img, 64).unwrap();
        let lean = one_key(&platform, &slot);
        assert_eq!(lean, anchors(PublicKey::P256(key), &slot), "{name}");
        if name.contains("example0") {
            assert_eq!(
                lean,
                Err(BootRefusal::ImageMismatch { component: 0 }),
                "{name}"
            );
            never_more_lenient(name, &slot, &platform, PublicKey::P256(key));
        }
    }
    for name in [
        "negative/example0.auth-wrapper-from-example1.hex",
        "negative/example0.bad-signature.hex",
        "negative/example0.digest-recomputed-old-signature.hex",
        "negative/example0.manifest-tampered.hex",
    ] {
        let slot = pack(&vector(name), &img, 64).unwrap();
        assert!(!authenticated(&one_key(&platform, &slot)), "{name}");
    }
}

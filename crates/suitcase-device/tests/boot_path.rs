//! The lean boot path (`BootVerifier`, issue 20) on a simulated NOR flash: what it must refuse,
//! each attack with the specific refusal, and a cross-check with the full SUIT processor
//! (`SuitVerifier`): on every envelope here both accept with the same measurement, or both
//! refuse.

#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use ed25519_dalek::Signer as _;
use suitcase_boot::{
    BootDecision, BootLoader, Config, ImageIndex, ImageSlots, ImageVerifier, Measurement, Updater,
};
use suitcase_device::{
    BootRefusal, BootVerifier, DeviceIdentity, Ed25519, OneKey, Sha256Only, SuitVerifier, pack,
};
use suitcase_flash_sim::{SharedFlash, SimFlash};
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, Index, ManifestBuilder, Param};
use suitcase_manifest::codepoints::{alg, manifest as mkey, text};
use suitcase_manifest::{
    Actions, AuthError, ComponentId, Condition, DigestAlgorithm, Directive, Envelope, Error,
    Hasher, Permissions, PublicKey, TrustAnchor, TrustPolicy,
};

const VENDOR: [u8; 16] = [0xfa; 16];
const CLASS: [u8; 16] = [0x14; 16];
const DEVICE: [u8; 16] = [0x77; 16];
const SECTOR: u32 = 256;
const SLOT: u32 = 16 * SECTOR;
const COMPONENT: [u8; 3] = [0x81, 0x41, 0x00];

fn author() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[3; 32])
}

fn image(version: u8) -> Vec<u8> {
    (0..1500u32)
        .map(|i| (i as u8).wrapping_mul(version).wrapping_add(version))
        .collect()
}

/// How a test manifest differs from the plain one.
#[derive(Clone, Default)]
struct Shape {
    sequence: u64,
    vendor: Option<[u8; 16]>,
    class: Option<[u8; 16]>,
    digest: Option<DigestAlgorithm>,
    /// Declared image size instead of the real one.
    size: Option<u64>,
    /// The layout `suitcase release build` writes: all components get the identity, a staging
    /// component, a severed text section, the image's parameters under set-component-index.
    release: bool,
    /// set-parameters in validate (a device identifier, and an image size that must not
    /// replace the one already set), and a device-identifier condition.
    set_parameters: bool,
    /// A validate section without image-match.
    no_image_match: bool,
    /// A try-each in the shared sequence.
    try_each: bool,
    signer: Option<ed25519_dalek::SigningKey>,
    /// A key identifier in the COSE_Sign1's unprotected header.
    kid: Option<&'static [u8]>,
}

fn envelope(shape: &Shape, image: &[u8]) -> Vec<u8> {
    let digest = shape.digest.unwrap_or(DigestAlgorithm::Sha256);
    let identity = vec![
        Param::VendorIdentifier(shape.vendor.unwrap_or(VENDOR).to_vec()),
        Param::ClassIdentifier(shape.class.unwrap_or(CLASS).to_vec()),
    ];
    let image_params = vec![
        Param::ImageDigest(digest, digest.digest(image).as_bytes().to_vec()),
        Param::ImageSize(shape.size.unwrap_or(image.len() as u64)),
    ];
    let params = Cmd::OverrideParameters;
    let mut m = ManifestBuilder {
        sequence_number: shape.sequence,
        components: vec![vec![vec![0]]],
        invoke: Some(vec![Cmd::Directive(Directive::Invoke, 2)]),
        ..Default::default()
    };
    let mut shared = Vec::new();
    let mut validate = Vec::new();
    if shape.release {
        m.components.push(vec![vec![0], b"staging".to_vec()]);
        shared.extend([
            Cmd::SetComponentIndex(Index::All),
            params(identity),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
            Cmd::SetComponentIndex(Index::One(0)),
            params(image_params),
            Cmd::SetComponentIndex(Index::One(1)),
            params(vec![Param::ImageSize(4000)]),
        ]);
        validate.push(Cmd::SetComponentIndex(Index::One(0)));
        m.text = vec![(
            "en".to_owned(),
            Some(vec![vec![0]]),
            text::COMPONENT_DESCRIPTION,
            "firmware".to_owned(),
        )];
        m.sever = vec![mkey::TEXT];
        m.invoke = Some(vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::Directive(Directive::Invoke, 2),
        ]);
    } else {
        let mut p = identity;
        p.extend(image_params);
        shared.extend([
            params(p),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
        ]);
    }
    if shape.set_parameters {
        validate.extend([
            Cmd::SetParameters(vec![Param::DeviceIdentifier(DEVICE.to_vec())]),
            Cmd::SetParameters(vec![Param::ImageSize(1)]),
            Cmd::Condition(Condition::DeviceIdentifier, 15),
        ]);
    }
    if shape.try_each {
        shared.push(Cmd::TryEach(
            vec![vec![Cmd::Condition(Condition::VendorIdentifier, 15)]],
            false,
        ));
    }
    if !shape.no_image_match {
        validate.push(Cmd::Condition(Condition::ImageMatch, 15));
    } else {
        validate.push(Cmd::Condition(Condition::ClassIdentifier, 15));
    }
    m.shared_sequence = Some(shared);
    m.validate = Some(validate);
    let mut b = EnvelopeBuilder::new(&m, digest);
    let signer = shape.signer.clone().unwrap_or_else(author);
    b.sign1(alg::ED25519, shape.kid, |tbs| {
        signer.sign(tbs).to_bytes().to_vec()
    });
    b.encode()
}

fn plain(sequence: u64) -> Shape {
    Shape {
        sequence,
        ..Shape::default()
    }
}

fn slot_image(shape: &Shape, version: u8) -> Vec<u8> {
    let img = image(version);
    pack(&envelope(shape, &img), &img, 64).unwrap()
}

fn anchors() -> [TrustAnchor<'static>; 1] {
    [TrustAnchor::new(
        "author",
        PublicKey::Ed25519(author().verifying_key()),
    )]
}

fn identity() -> DeviceIdentity<'static> {
    DeviceIdentity {
        vendor: &VENDOR,
        class: &CLASS,
        device: Some(&DEVICE),
    }
}

fn component() -> [ComponentId<'static>; 1] {
    [ComponentId::decode(&COMPONENT).unwrap()]
}

/// A flash with `slot` at its start, as a partition the verifiers read.
fn partition(slot: &[u8]) -> suitcase_flash_sim::Partition<4, 256> {
    let flash = SharedFlash::new(SimFlash::<4, 256>::uniform(SECTOR, 16, 1).unwrap());
    flash.with(|f| f.load(0, slot)).unwrap().unwrap();
    flash.partition(0, SLOT).unwrap()
}

/// The lean path with every digest (`Hasher`) on `slot`, with the manifest crate's COSE
/// decoder under the trust anchors (`Anchors`); on every slot the tests build, the same path
/// with the bootloader's own COSE_Sign1 reader and one key (`OneKey`) must not accept what it
/// refuses, and must find the same measurement.
fn lean(slot: &[u8]) -> Result<Measurement, BootRefusal> {
    let anchors = lean_with(slot, &anchors());
    if let Ok(one) = one_key(slot) {
        let same = anchors.as_ref().is_ok_and(|a| {
            (a.digest, a.security_version, a.size) == (one.digest, one.security_version, one.size)
        });
        assert!(same, "OneKey accepted a slot Anchors refused: {anchors:?}");
    }
    anchors
}

/// The lean path with one built-in Ed25519 key and its own COSE_Sign1 reader.
fn one_key(slot: &[u8]) -> Result<Measurement, BootRefusal> {
    let key = Ed25519::from_bytes(author().verifying_key().as_bytes()).unwrap();
    let components = component();
    BootVerifier::<Hasher, 0, _>::with_authority(OneKey(&key), identity(), &components)
        .check(ImageIndex(0), &mut partition(slot))
}

fn lean_with(slot: &[u8], anchors: &[TrustAnchor<'_>]) -> Result<Measurement, BootRefusal> {
    let components = component();
    BootVerifier::<Hasher, 512>::new(anchors, TrustPolicy::default(), identity(), &components)
        .check(ImageIndex(0), &mut partition(slot))
}

/// The full processor on `slot`.
fn full(slot: &[u8]) -> Result<Measurement, suitcase_boot::VerifyError> {
    let anchors = anchors();
    let components = component();
    SuitVerifier::<4096>::new(&anchors, TrustPolicy::default(), identity(), &components)
        .verify(ImageIndex(0), &mut partition(slot))
}

/// Both paths accept `slot` with the same measurement, or both refuse it.
fn agree(name: &str, slot: &[u8]) {
    match (lean(slot), full(slot)) {
        (Ok(l), Ok(f)) => assert_eq!(
            (l.digest, l.security_version, l.size),
            (f.digest, f.security_version, f.size),
            "{name}"
        ),
        (Err(_), Err(_)) => {}
        (l, f) => panic!("{name}: lean {l:?}, full {f:?}"),
    }
}

/// The offset in `slot` of the first byte of the manifest map.
fn manifest_offset(slot: &[u8]) -> usize {
    let e = Envelope::decode(&slot[32..32 + envelope_len(slot)]).unwrap();
    e.manifest_bytes().as_ptr() as usize - slot.as_ptr() as usize
}

fn envelope_len(slot: &[u8]) -> usize {
    u32::from_le_bytes(slot[8..12].try_into().unwrap()) as usize
}

#[test]
fn accepts_what_the_full_processor_accepts_with_the_same_measurement() {
    let shapes = [
        ("plain", plain(1)),
        (
            "release layout",
            Shape {
                release: true,
                ..plain(2)
            },
        ),
        (
            "set-parameters and device identifier",
            Shape {
                set_parameters: true,
                ..plain(3)
            },
        ),
        (
            "SHAKE256 digests",
            Shape {
                digest: Some(DigestAlgorithm::Shake256),
                release: true,
                ..plain(4)
            },
        ),
        (
            "SHA-512 digests",
            Shape {
                digest: Some(DigestAlgorithm::Sha512),
                ..plain(5)
            },
        ),
    ];
    for (name, shape) in shapes {
        let slot = slot_image(&shape, 1);
        let m = lean(&slot).unwrap_or_else(|e| panic!("{name}: {e}"));
        let one = one_key(&slot).unwrap_or_else(|e| panic!("{name}: OneKey: {e}"));
        assert_eq!(one.digest, m.digest, "{name}");
        assert_eq!(m.security_version.0, shape.sequence, "{name}");
        let digest = shape.digest.unwrap_or(DigestAlgorithm::Sha256);
        assert_eq!(
            m.digest.as_bytes(),
            digest.digest(&image(1)).as_bytes(),
            "{name}"
        );
        agree(name, &slot);
    }
}

/// Both paths refuse `slot`.
fn both_refuse(name: &str, slot: &[u8]) {
    let (l, f) = (lean(slot), full(slot));
    assert!(l.is_err() && f.is_err(), "{name}: lean {l:?}, full {f:?}");
}

#[test]
fn refuses_what_the_full_processor_refuses() {
    let good = slot_image(&plain(1), 1);
    assert!(lean(&good).is_ok() && full(&good).is_ok());
    let mut image_bit = good;
    *image_bit.last_mut().unwrap() ^= 1;
    both_refuse("image bit", &image_bit);
    for shape in [
        Shape {
            vendor: Some([0x11; 16]),
            ..plain(1)
        },
        Shape {
            class: Some([0x11; 16]),
            ..plain(1)
        },
        Shape {
            size: Some(SLOT.into()),
            ..plain(1)
        },
        Shape {
            no_image_match: true,
            ..plain(1)
        },
        Shape {
            signer: Some(ed25519_dalek::SigningKey::from_bytes(&[9; 32])),
            ..plain(1)
        },
    ] {
        both_refuse("shape", &slot_image(&shape, 1));
    }
}

/// Flips every byte of the envelope in turn: each flip must be refused by both paths, except the
/// bytes listed in `accepted`, which both must accept with the same measurement.
fn sweep(name: &str, good: &[u8], accepted: &[usize]) {
    let n = envelope_len(good);
    for i in 0..n {
        let mut bad = good.to_vec();
        bad[32 + i] ^= 0x01;
        let what = format!("{name}: envelope byte {i} ({:#04x})", good[32 + i]);
        if accepted.contains(&i) {
            assert!(lean(&bad).is_ok(), "{what}");
            agree(&what, &bad);
        } else {
            both_refuse(&what, &bad);
        }
    }
}

#[test]
fn every_flipped_envelope_byte_is_refused_on_both_paths() {
    // Without a key identifier every envelope byte is covered: the manifest by the SUIT_Digest,
    // the SUIT_Digest and the protected header by the signature, the rest is structure.
    sweep("no kid", &slot_image(&plain(1), 1), &[]);
}

#[test]
fn a_flipped_key_identifier_is_accepted_on_both_paths_and_nothing_else() {
    let good = slot_image(
        &Shape {
            kid: Some(b"author"),
            ..plain(1)
        },
        1,
    );
    let env = &good[32..32 + envelope_len(&good)];
    let kid = env.windows(6).position(|w| w == b"author").unwrap();
    // The unprotected header `{4: h'617574686f72'}` (RFC 9052 §3.1) is outside the signature
    // (the Sig_structure holds the protected header only, RFC 9052 §4.4).
    assert_eq!(env[kid - 3..kid], [0xa1, 0x04, 0x46]);
    let mut accepted = vec![
        // Label 4 (kid) becomes 5 (IV): a Sign1 verifier does not use an IV.
        kid - 2,
    ];
    // The kid's value: a hint to find the key (RFC 9052 §3.1); both paths try every trust
    // anchor, so another kid selects nothing else.
    accepted.extend(kid..kid + 6);
    sweep("kid", &good, &accepted);
}

#[test]
fn attack_tampered_image() {
    let mut slot = slot_image(&plain(1), 1);
    *slot.last_mut().unwrap() ^= 0x01;
    assert_eq!(
        lean(&slot).unwrap_err(),
        BootRefusal::ImageMismatch { component: 0 }
    );
}

#[test]
fn attack_tampered_manifest() {
    let mut slot = slot_image(&plain(7), 1);
    // The sequence number is the manifest map's second entry: `a? 01 01 02 07`.
    let at = manifest_offset(&slot) + 4;
    assert_eq!(slot[at], 0x07);
    slot[at] = 0x09;
    assert_eq!(
        lean(&slot).unwrap_err(),
        BootRefusal::ManifestDigestMismatch
    );
}

#[test]
fn attack_tampered_signature() {
    let slot = slot_image(&plain(1), 1);
    let mut bad = slot.clone();
    // The signature's last byte comes just before the manifest member (key 3).
    let at = manifest_offset(&slot) - 4;
    bad[at] ^= 0x01;
    assert_eq!(
        lean(&bad).unwrap_err(),
        BootRefusal::Unauthenticated(Error::Unauthenticated(AuthError::NoTrustedSignature))
    );
}

#[test]
fn attack_untrusted_signer() {
    let slot = slot_image(
        &Shape {
            signer: Some(ed25519_dalek::SigningKey::from_bytes(&[9; 32])),
            ..plain(9)
        },
        1,
    );
    assert_eq!(
        lean(&slot).unwrap_err(),
        BootRefusal::Unauthenticated(Error::Unauthenticated(AuthError::NoTrustedSignature))
    );
}

#[test]
fn attack_signer_trusted_for_another_component_only() {
    let slot = slot_image(&plain(1), 1);
    let other = [ComponentId::decode(&[0x81, 0x41, 0x01]).unwrap()];
    let limited = [TrustAnchor {
        permissions: Permissions {
            components: Some(&other),
            actions: Actions::ALL,
        },
        ..anchors()[0]
    }];
    assert_eq!(
        lean_with(&slot, &limited).unwrap_err(),
        BootRefusal::NotAuthorized(AuthError::NotAuthorized)
    );
}

#[test]
fn attack_wrong_vendor() {
    let slot = slot_image(
        &Shape {
            vendor: Some([0x11; 16]),
            ..plain(1)
        },
        1,
    );
    assert_eq!(
        lean(&slot).unwrap_err(),
        BootRefusal::VendorMismatch { component: 0 }
    );
}

#[test]
fn attack_wrong_class() {
    let slot = slot_image(
        &Shape {
            class: Some([0x11; 16]),
            release: true,
            ..plain(1)
        },
        1,
    );
    assert_eq!(
        lean(&slot).unwrap_err(),
        BootRefusal::ClassMismatch { component: 0 }
    );
}

#[test]
fn attack_image_size_beyond_the_image_in_the_slot() {
    let slot = slot_image(
        &Shape {
            size: Some(1501),
            ..plain(1)
        },
        1,
    );
    assert_eq!(
        lean(&slot).unwrap_err(),
        BootRefusal::TooLarge {
            size: 1501,
            capacity: 1500
        }
    );
}

#[test]
fn attack_manifest_whose_validate_does_not_check_the_image() {
    let slot = slot_image(
        &Shape {
            no_image_match: true,
            ..plain(1)
        },
        1,
    );
    assert_eq!(lean(&slot).unwrap_err(), BootRefusal::NoImageMatch);
}

#[test]
fn attack_tampered_severed_text() {
    let slot = slot_image(
        &Shape {
            release: true,
            ..plain(1)
        },
        1,
    );
    let text = slot
        .windows(8)
        .position(|w| w == b"firmware")
        .expect("the severed text is in the envelope");
    let mut bad = slot;
    bad[text] ^= 0x20;
    assert_eq!(
        lean(&bad).unwrap_err(),
        BootRefusal::SeveredMemberMismatch { key: mkey::TEXT }
    );
    assert!(full(&bad).is_err());
}

#[test]
fn attack_commands_the_boot_path_does_not_interpret_are_refused_not_skipped() {
    let slot = slot_image(
        &Shape {
            try_each: true,
            ..plain(1)
        },
        1,
    );
    assert_eq!(
        lean(&slot).unwrap_err(),
        BootRefusal::Unsupported {
            what: "command",
            id: 15
        }
    );
}

#[test]
fn attack_image_for_another_component() {
    let slot = slot_image(&plain(1), 1);
    let anchors = anchors();
    let other = [ComponentId::decode(&[0x81, 0x41, 0x01]).unwrap()];
    let verifier =
        BootVerifier::<Hasher, 512>::new(&anchors, TrustPolicy::default(), identity(), &other);
    assert_eq!(
        verifier
            .check(ImageIndex(0), &mut partition(&slot))
            .unwrap_err(),
        BootRefusal::ComponentNotFound
    );
}

#[test]
fn attack_envelope_length_beyond_the_envelope() {
    let mut slot = slot_image(&plain(1), 1);
    let len = envelope_len(&slot) as u32 + 8;
    slot[8..12].copy_from_slice(&len.to_le_bytes());
    assert!(matches!(
        lean(&slot).unwrap_err(),
        BootRefusal::Malformed { .. } | BootRefusal::BadHeader
    ));
}

#[test]
fn sha256_only_refuses_other_digests_by_name() {
    let slot = slot_image(
        &Shape {
            digest: Some(DigestAlgorithm::Shake256),
            ..plain(1)
        },
        1,
    );
    let anchors = anchors();
    let components = component();
    let verifier = BootVerifier::<Sha256Only, 512>::new(
        &anchors,
        TrustPolicy::default(),
        identity(),
        &components,
    );
    assert_eq!(
        verifier
            .check(ImageIndex(0), &mut partition(&slot))
            .unwrap_err(),
        BootRefusal::UnsupportedDigest { alg: alg::SHAKE256 }
    );
    let sha256 = slot_image(&plain(1), 1);
    assert!(
        verifier
            .check(ImageIndex(0), &mut partition(&sha256))
            .is_ok()
    );
}

#[test]
fn attack_authentication_wrapper_larger_than_the_buffer() {
    let slot = slot_image(&plain(1), 1);
    let anchors = anchors();
    let components = component();
    let verifier =
        BootVerifier::<Hasher, 64>::new(&anchors, TrustPolicy::default(), identity(), &components);
    assert!(matches!(
        verifier
            .check(ImageIndex(0), &mut partition(&slot))
            .unwrap_err(),
        BootRefusal::AuthenticationTooLarge { .. }
    ));
}

/// The bootloader with the lean verifier: update, then the rollback attack.
#[test]
fn attack_rollback_to_an_older_authentic_image() {
    let flash = SharedFlash::new(SimFlash::<4, 256>::uniform(SECTOR, 2 + 2 * 16, 1).unwrap());
    flash
        .with(|f| f.load(2 * SECTOR, &slot_image(&plain(1), 1)))
        .unwrap()
        .unwrap();
    let parts = || {
        let a = flash.partition(2 * SECTOR, SLOT).unwrap();
        let b = flash.partition(2 * SECTOR + SLOT, SLOT).unwrap();
        (
            [ImageSlots::new(a, b)],
            flash.partition(0, 2 * SECTOR).unwrap(),
        )
    };
    let anchors = anchors();
    let components = component();
    let boot = || {
        let verifier = BootVerifier::<Sha256Only, 256>::new(
            &anchors,
            TrustPolicy::default(),
            identity(),
            &components,
        );
        let (slots, state) = parts();
        BootLoader::new(Config::ab(SECTOR), slots, state, verifier)
            .unwrap()
            .boot()
            .unwrap()
    };
    let stage = |slot: &[u8]| {
        let (slots, state) = parts();
        let mut updater = Updater::new(Config::ab(SECTOR), slots, state).unwrap();
        let mut staging = updater.begin([slot.len() as u32]).unwrap();
        staging.write(ImageIndex(0), 0, slot).unwrap();
        staging.finish().unwrap();
    };
    let confirm = || {
        let (slots, state) = parts();
        Updater::new(Config::ab(SECTOR), slots, state)
            .unwrap()
            .confirm()
            .unwrap();
    };
    stage(&slot_image(&plain(5), 5));
    let BootDecision::Boot(t) = boot() else {
        panic!("the update boots")
    };
    assert_eq!(t.measurements[0].security_version.0, 5);
    confirm();
    // An attacker stages the old, correctly signed sequence 1.
    let old = slot_image(&plain(1), 1);
    assert_eq!(lean(&old).unwrap().security_version.0, 1);
    stage(&old);
    let BootDecision::Boot(t) = boot() else {
        panic!("the current image keeps running")
    };
    assert_eq!(
        t.measurements[0].security_version.0, 5,
        "the counter refuses the old image"
    );
    assert_eq!(
        t.last_failure.map(|f| f.to_string()),
        Some("image 0 rolls back: security version 1 is below 5".to_owned())
    );
}

/// Hostile slot contents: every truncation of the envelope (its header still claiming the full
/// length) and pseudo-random garbage in place of it are refused, never a panic or a hang.
#[test]
fn attack_truncated_and_random_envelopes_are_refused() {
    let good = slot_image(
        &Shape {
            release: true,
            ..plain(1)
        },
        1,
    );
    let len = envelope_len(&good);
    for cut in 0..len {
        let mut bad = good.clone();
        // The envelope ends early: what follows is erased flash.
        bad[32 + cut..32 + len].fill(0xFF);
        assert!(lean(&bad).is_err(), "cut at {cut}");
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..300 {
        let mut bad = good.clone();
        for byte in &mut bad[32..32 + len] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Keep a third of the bytes so that some structure survives.
            if !state.is_multiple_of(3) {
                *byte = (state >> 24) as u8;
            }
        }
        assert!(lean(&bad).is_err(), "round {round}");
    }
}

/// The envelope of `slot` with `before` and `after` added as integrated payloads (`tstr =>
/// bstr`, short keys and values) before and after its members, packed again.
fn with_integrated(slot: &[u8], before: &[(&[u8], &[u8])], after: &[(&[u8], &[u8])]) -> Vec<u8> {
    let env = &slot[32..32 + envelope_len(slot)];
    assert_eq!(env[..2], [0xd8, 0x6b]);
    let members = env[2] & 0x1f;
    assert!(env[2] >> 5 == 5 && members < 24);
    let entry = |(k, v): &(&[u8], &[u8])| {
        assert!(k.len() < 24 && v.len() < 24);
        let mut e = vec![0x60 | k.len() as u8];
        e.extend(*k);
        e.push(0x40 | v.len() as u8);
        e.extend(*v);
        e
    };
    let count = members as usize + before.len() + after.len();
    assert!(count < 24);
    let mut out = vec![0xd8, 0x6b, 0xa0 | count as u8];
    out.extend(before.iter().flat_map(entry));
    out.extend(&env[3..]);
    out.extend(after.iter().flat_map(entry));
    pack(&out, &image(1), 64).unwrap()
}

fn full_decode(slot: &[u8]) -> Result<(), Error> {
    Envelope::decode(&slot[32..32 + envelope_len(slot)]).map(|_| ())
}

#[test]
fn attack_integrated_payload_before_the_authentication_wrapper() {
    let good = slot_image(&plain(1), 1);
    // After the manifest, as in every public example: both paths accept it.
    let after = with_integrated(&good, &[], &[(b"#fw", b"payload")]);
    assert!(lean(&after).is_ok());
    agree("integrated payload last", &after);
    // Manifest §8.3: "All validators MUST reject any SUIT_Envelope that begins with any
    // element other than a suit-authentication-wrapper".
    let first = with_integrated(&good, &[(b"#fw", b"payload")], &[]);
    assert!(matches!(
        lean(&first).unwrap_err(),
        BootRefusal::Malformed {
            what: "envelope must begin with the authentication wrapper",
            ..
        }
    ));
    assert!(matches!(
        full_decode(&first).unwrap_err(),
        Error::Malformed {
            what: "envelope must begin with the authentication wrapper",
            ..
        }
    ));
    assert!(full(&first).is_err());
}

#[test]
fn attack_duplicate_integrated_payload_keys() {
    let good = slot_image(&plain(1), 1);
    let twice = with_integrated(&good, &[], &[(b"#fw", b"one"), (b"#fw", b"two")]);
    assert!(matches!(
        lean(&twice).unwrap_err(),
        BootRefusal::Malformed {
            what: "duplicate envelope member",
            ..
        }
    ));
    assert!(matches!(
        full_decode(&twice).unwrap_err(),
        Error::Malformed {
            what: "duplicate map key",
            ..
        }
    ));
    assert!(full(&twice).is_err());
    // Same length, different key: no duplicate.
    let distinct = with_integrated(&good, &[], &[(b"#fw", b"one"), (b"#fx", b"two")]);
    assert!(lean(&distinct).is_ok());
    agree("distinct keys", &distinct);
}

#[test]
fn attack_more_integrated_payloads_than_the_boot_path_tracks() {
    let good = slot_image(&plain(1), 1);
    let keys: Vec<[u8; 2]> = (0..9u8).map(|i| [b'#', b'a' + i]).collect();
    let entries: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &b"x"[..])).collect();
    let eight = with_integrated(&good, &[], &entries[..8]);
    assert!(lean(&eight).is_ok());
    agree("eight integrated payloads", &eight);
    // The boot path keeps a bounded list of keys to refuse duplicates; beyond it it refuses
    // (stricter than the full processor, docs/boot-path.md).
    let nine = with_integrated(&good, &[], &entries);
    assert_eq!(
        lean(&nine).unwrap_err(),
        BootRefusal::Unsupported {
            what: "more integrated payloads than the boot path tracks",
            id: 8
        }
    );
    assert!(full(&nine).is_ok());
}

//! Hostile and malformed envelopes, each test named after the attack or defect it shows, with
//! the exact error a correct processor must produce. Envelopes are built with the crate's own
//! encoder and authenticated with real keys, so that each case fails for the reason under test
//! and not for a bad signature.

#![expect(clippy::unwrap_used, reason = "test code")]

use hmac::{KeyInit, Mac};
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, Index, ManifestBuilder, Param, raw};
use suitcase_manifest::codepoints::alg;
use suitcase_manifest::memory::{Effect, MemoryComponent, MemoryDevice};
use suitcase_manifest::{
    AuthError, Condition, DigestAlgorithm, Directive, Envelope, Error, Processor, ProcessorPolicy,
    PublicKey, Reason, Section, TrustAnchor, TrustPolicy, Unsupported,
};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const VENDOR: [u8; 16] = [0xfa; 16];
const CLASS: [u8; 16] = [0x14; 16];

fn hmac(data: &[u8]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn anchors() -> [TrustAnchor<'static>; 1] {
    [TrustAnchor {
        name: "mac",
        key: PublicKey::Hmac256(KEY),
        kid: None,
        permissions: suitcase_manifest::Permissions::ALL,
    }]
}

/// A valid one-component manifest: identity checks, then writes `content` on install.
fn manifest(content: &[u8]) -> ManifestBuilder {
    ManifestBuilder {
        sequence_number: 7,
        components: vec![vec![vec![0]]],
        shared_sequence: Some(vec![
            Cmd::OverrideParameters(vec![
                Param::VendorIdentifier(VENDOR.to_vec()),
                Param::ClassIdentifier(CLASS.to_vec()),
                Param::ImageDigest(
                    DigestAlgorithm::Sha256,
                    DigestAlgorithm::Sha256.digest(content).as_bytes().to_vec(),
                ),
                Param::ImageSize(content.len() as u64),
            ]),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
        ]),
        install: Some(vec![
            Cmd::OverrideParameters(vec![Param::Content(content.to_vec())]),
            Cmd::Directive(Directive::Write, 15),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]),
        validate: Some(vec![Cmd::Condition(Condition::ImageMatch, 15)]),
        invoke: Some(vec![Cmd::Directive(Directive::Invoke, 2)]),
        ..Default::default()
    }
}

fn signed(m: &ManifestBuilder) -> Vec<u8> {
    let mut b = EnvelopeBuilder::new(m, DigestAlgorithm::Sha256);
    b.mac0(alg::HMAC_256, None, hmac);
    b.encode()
}

/// Signs an arbitrary (possibly malformed) manifest map.
fn signed_raw_manifest(manifest: Vec<u8>) -> Vec<u8> {
    let digest = raw::array(&[
        raw::int(-16),
        raw::bstr(
            DigestAlgorithm::Sha256
                .digest(&raw::bstr(&manifest))
                .as_bytes(),
        ),
    ]);
    let protected = raw::map(vec![(raw::int(1), raw::int(alg::HMAC_256))]);
    let tbs = raw::array(&[
        raw::tstr("MAC0"),
        raw::bstr(&protected),
        raw::bstr(&[]),
        raw::bstr(&digest),
    ]);
    let block = raw::tagged(
        17,
        &raw::array(&[
            raw::bstr(&protected),
            raw::map(vec![]),
            vec![0xf6],
            raw::bstr(&hmac(&tbs)),
        ]),
    );
    let auth = raw::array(&[raw::bstr(&digest), raw::bstr(&block)]);
    raw::tagged(
        107,
        &raw::map(vec![
            (raw::uint(2), raw::bstr(&auth)),
            (raw::uint(3), raw::bstr(&manifest)),
        ]),
    )
}

fn verify(bytes: &[u8]) -> Result<(), Error> {
    Envelope::decode(bytes)?
        .verify(&anchors(), &TrustPolicy::default())
        .map(|_| ())
}

fn device() -> MemoryDevice {
    MemoryDevice {
        vendor_id: Some((false, VENDOR.to_vec())),
        class_id: Some(CLASS.to_vec()),
        components: vec![MemoryComponent {
            id: vec![vec![0]],
            capacity: 4096,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn run(bytes: &[u8], dev: &mut MemoryDevice) -> Result<(), Error> {
    let v = Envelope::decode(bytes)?.verify(&anchors(), &TrustPolicy::default())?;
    let mut p = Processor::new(&v, dev, ProcessorPolicy::default())?;
    p.update()?;
    p.invoke()
}

#[test]
fn a_well_formed_update_installs_verifies_and_invokes() {
    let bytes = signed(&manifest(b"firmware v7"));
    let mut dev = device();
    run(&bytes, &mut dev).unwrap();
    assert_eq!(dev.components[0].content, b"firmware v7");
    assert_eq!(
        dev.effects.last(),
        Some(&Effect::Invoked {
            component: 0,
            args: None
        })
    );
}

#[test]
fn attack_trailing_bytes_after_envelope() {
    let mut bytes = signed(&manifest(b"x"));
    bytes.push(0x00);
    assert!(matches!(
        verify(&bytes),
        Err(Error::Malformed {
            what: "trailing bytes after envelope",
            ..
        })
    ));
}

#[test]
fn attack_truncated_envelope_length_beyond_input() {
    let bytes = signed(&manifest(b"x"));
    for cut in [1, 2, 10, bytes.len() / 2, bytes.len() - 1] {
        let err = verify(&bytes[..cut]).unwrap_err();
        assert_eq!(err.reason(), Reason::Malformed, "cut at {cut}: {err}");
    }
}

#[test]
fn attack_duplicate_key_in_manifest_replaces_sequence_number() {
    // {1: 1, 2: 9, 2: 0, 3: <<{}>>}: a later duplicate could lower the checked sequence number.
    let common = raw::bstr(&raw::map(vec![]));
    let mut m = vec![0xa4];
    for (k, v) in [
        (1, raw::uint(1)),
        (2, raw::uint(9)),
        (2, raw::uint(0)),
        (3, common),
    ] {
        m.extend(raw::uint(k));
        m.extend(v);
    }
    let err = verify(&signed_raw_manifest(m)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Malformed {
                what: "duplicate map key",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn attack_duplicate_key_in_parameter_map() {
    // override-parameters {14: 1, 14: 4096}
    let mut params = vec![0xa2];
    params.extend([0x0e, 0x01, 0x0e, 0x19, 0x10, 0x00]);
    let seq = raw::array(&[raw::uint(20), params, raw::uint(23), raw::uint(2)]);
    let m = raw::map(vec![
        (raw::uint(1), raw::uint(1)),
        (raw::uint(2), raw::uint(1)),
        (
            raw::uint(3),
            raw::bstr(&raw::map(vec![(
                raw::uint(2),
                raw::array(&[raw::array(&[raw::bstr(&[0])])]),
            )])),
        ),
        (raw::uint(9), raw::bstr(&seq)),
    ]);
    let err = verify(&signed_raw_manifest(m)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Malformed {
                what: "duplicate map key",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn attack_indefinite_length_manifest() {
    // The same members as a valid manifest, in an indefinite-length map.
    let mut m = vec![0xbf];
    m.extend(raw::uint(1));
    m.extend(raw::uint(1));
    m.extend(raw::uint(2));
    m.extend(raw::uint(1));
    m.extend(raw::uint(3));
    m.extend(raw::bstr(&raw::map(vec![])));
    m.push(0xff);
    let err = verify(&signed_raw_manifest(m)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Malformed {
                what: "indefinite-length item",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn attack_manifest_placed_before_auth_wrapper() {
    let bytes = signed(&manifest(b"x"));
    let good = Envelope::decode(&bytes).unwrap();
    // Rebuild the map with key 3 first.
    let auth = good.member(2).unwrap().0.to_vec();
    let mut m = vec![0xa2];
    m.extend(raw::uint(3));
    m.extend(good.manifest_wrapped());
    m.extend(raw::uint(2));
    m.extend(auth);
    let err = verify(&raw::tagged(107, &m)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Malformed {
                what: "envelope must begin with the authentication wrapper",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn attack_untagged_envelope() {
    let bytes = signed(&manifest(b"x"));
    // Drop the two-byte tag 107 header.
    assert!(matches!(verify(&bytes[2..]), Err(Error::Malformed { .. })));
}

#[test]
fn attack_unsigned_envelope_from_the_builder() {
    let bytes = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256).encode();
    assert_eq!(
        verify(&bytes).unwrap_err(),
        Error::Unauthenticated(AuthError::NoAuthenticationBlock)
    );
}

#[test]
fn attack_mac_with_the_wrong_key() {
    let mut b = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256);
    b.mac0(alg::HMAC_256, None, |tbs| {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"another key another key another!")
            .unwrap();
        m.update(tbs);
        m.finalize().into_bytes().to_vec()
    });
    assert_eq!(
        verify(&b.encode()).unwrap_err(),
        Error::Unauthenticated(AuthError::NoTrustedSignature)
    );
}

#[test]
fn attack_weak_manifest_digest_algorithm() {
    // SHA-256/64 (-15) in the authentication wrapper.
    let m = manifest(b"x").encode(DigestAlgorithm::Sha256).manifest;
    let digest = raw::array(&[raw::int(-15), raw::bstr(&[0; 8])]);
    let auth = raw::array(&[raw::bstr(&digest)]);
    let env = raw::tagged(
        107,
        &raw::map(vec![
            (raw::uint(2), raw::bstr(&auth)),
            (raw::uint(3), raw::bstr(&m)),
        ]),
    );
    let err = verify(&env).unwrap_err();
    assert_eq!(err, Error::UnsupportedAlgorithm { alg: -15 });
}

#[test]
fn sha512_and_shake256_manifest_digests_are_accepted() {
    for alg in [
        DigestAlgorithm::Sha384,
        DigestAlgorithm::Sha512,
        DigestAlgorithm::Shake128,
        DigestAlgorithm::Shake256,
    ] {
        let mut b = EnvelopeBuilder::new(&manifest(b"x"), alg);
        b.mac0(alg::HMAC_256, None, hmac);
        let bytes = b.encode();
        let v = Envelope::decode(&bytes)
            .unwrap()
            .verify(&anchors(), &TrustPolicy::default())
            .unwrap();
        assert_eq!(v.digest().algorithm, alg);
    }
}

#[test]
fn attack_unknown_critical_cose_header() {
    // crit: [99] in the protected header: a verifier that ignored it would miss a constraint.
    let protected = raw::map(vec![
        (raw::int(1), raw::int(alg::HMAC_256)),
        (raw::int(2), raw::array(&[raw::int(99)])),
        (raw::int(99), raw::uint(1)),
    ]);
    let mut b = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256);
    let tbs = raw::array(&[
        raw::tstr("MAC0"),
        raw::bstr(&protected),
        raw::bstr(&[]),
        raw::bstr(b.digest_bytes()),
    ]);
    let block = raw::tagged(
        17,
        &raw::array(&[
            raw::bstr(&protected),
            raw::map(vec![]),
            vec![0xf6],
            raw::bstr(&hmac(&tbs)),
        ]),
    );
    b.raw_block(block);
    let err = verify(&b.encode()).unwrap_err();
    assert_eq!(
        err,
        Error::UnsupportedCritical {
            what: Unsupported::CoseCritical,
            id: 99
        }
    );
    assert_eq!(err.reason(), Reason::UnsupportedCritical);
    // A second, understood block from a trusted key still authenticates the envelope.
    b.mac0(alg::HMAC_256, None, hmac);
    verify(&b.encode()).unwrap();
}

#[test]
fn attack_algorithm_in_unprotected_header() {
    let mut b = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256);
    let tbs = raw::array(&[
        raw::tstr("MAC0"),
        raw::bstr(&[]),
        raw::bstr(&[]),
        raw::bstr(b.digest_bytes()),
    ]);
    let block = raw::tagged(
        17,
        &raw::array(&[
            raw::bstr(&[]),
            raw::map(vec![(raw::int(1), raw::int(5))]),
            vec![0xf6],
            raw::bstr(&hmac(&tbs)),
        ]),
    );
    b.raw_block(block);
    let err = verify(&b.encode()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Malformed {
                what: "COSE alg must be a protected header",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn attack_attached_payload_instead_of_detached() {
    let mut b = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256);
    let protected = raw::map(vec![(raw::int(1), raw::int(5))]);
    let block = raw::tagged(
        17,
        &raw::array(&[
            raw::bstr(&protected),
            raw::map(vec![]),
            raw::bstr(b.digest_bytes()),
            raw::bstr(&[0; 32]),
        ]),
    );
    b.raw_block(block);
    assert!(matches!(
        verify(&b.encode()),
        Err(Error::Malformed {
            what: "COSE payload must be nil (detached)",
            ..
        })
    ));
}

#[test]
fn attack_manifest_version_2() {
    let m = raw::map(vec![
        (raw::uint(1), raw::uint(2)),
        (raw::uint(2), raw::uint(1)),
        (raw::uint(3), raw::bstr(&raw::map(vec![]))),
    ]);
    let err = verify(&signed_raw_manifest(m)).unwrap_err();
    assert_eq!(err, Error::UnsupportedVersion { version: 2 });
    assert_eq!(err.reason(), Reason::Version);
}

#[test]
fn attack_unknown_manifest_member() {
    let m = raw::map(vec![
        (raw::uint(1), raw::uint(1)),
        (raw::uint(2), raw::uint(1)),
        (raw::uint(3), raw::bstr(&raw::map(vec![]))),
        (raw::uint(99), raw::uint(0)),
    ]);
    assert_eq!(
        verify(&signed_raw_manifest(m)).unwrap_err(),
        Error::UnsupportedCritical {
            what: Unsupported::ManifestMember,
            id: 99
        }
    );
}

#[test]
fn attack_unknown_command() {
    // Command 30 is unassigned.
    let seq = raw::array(&[raw::uint(30), raw::uint(0)]);
    let raw_manifest = raw::map(vec![
        (raw::uint(1), raw::uint(1)),
        (raw::uint(2), raw::uint(1)),
        (
            raw::uint(3),
            raw::bstr(&raw::map(vec![(
                raw::uint(2),
                raw::array(&[raw::array(&[raw::bstr(&[0])])]),
            )])),
        ),
        (raw::uint(9), raw::bstr(&seq)),
    ]);
    let err = verify(&signed_raw_manifest(raw_manifest)).unwrap_err();
    assert_eq!(
        err,
        Error::UnsupportedCritical {
            what: Unsupported::Command,
            id: 30
        }
    );
}

#[test]
fn attack_unknown_parameter() {
    let seq = raw::array(&[raw::uint(20), raw::map(vec![(raw::uint(31), raw::uint(0))])]);
    let m = raw::map(vec![
        (raw::uint(1), raw::uint(1)),
        (raw::uint(2), raw::uint(1)),
        (
            raw::uint(3),
            raw::bstr(&raw::map(vec![(
                raw::uint(2),
                raw::array(&[raw::array(&[raw::bstr(&[0])])]),
            )])),
        ),
        (raw::uint(9), raw::bstr(&seq)),
    ]);
    assert_eq!(
        verify(&signed_raw_manifest(m)).unwrap_err(),
        Error::UnsupportedCritical {
            what: Unsupported::Parameter,
            id: 31
        }
    );
}

fn nested(depth: usize) -> Vec<Cmd> {
    let mut seq = vec![Cmd::Directive(Directive::Invoke, 0)];
    for _ in 0..depth {
        seq = vec![Cmd::RunSequence(seq)];
    }
    seq
}

#[test]
fn attack_nesting_beyond_the_limit() {
    let mut m = manifest(b"x");
    m.invoke = Some(nested(17));
    let err = verify(&signed(&m)).unwrap_err();
    assert_eq!(err, Error::NestingLimit { limit: 16 });
    assert_eq!(err.reason(), Reason::NestingLimit);
    m.invoke = Some(nested(16));
    let mut dev = device();
    run(&signed(&m), &mut dev).unwrap();
    assert_eq!(
        dev.effects.last(),
        Some(&Effect::Invoked {
            component: 0,
            args: None
        })
    );
}

#[test]
fn attack_deep_nesting_cannot_exhaust_the_stack() {
    // 50,000 levels of run-sequence, each level a few bytes: refused while parsing.
    let mut seq = raw::array(&[raw::uint(23), raw::uint(0)]);
    for _ in 0..50_000 {
        seq = raw::array(&[raw::uint(32), raw::bstr(&seq)]);
    }
    let m = raw::map(vec![
        (raw::uint(1), raw::uint(1)),
        (raw::uint(2), raw::uint(1)),
        (raw::uint(3), raw::bstr(&raw::map(vec![]))),
        (raw::uint(9), raw::bstr(&seq)),
    ]);
    assert_eq!(
        verify(&signed_raw_manifest(m)).unwrap_err(),
        Error::NestingLimit { limit: 16 }
    );
}

#[test]
fn attack_soft_failure_set_outside_try_each() {
    let mut m = manifest(b"x");
    m.invoke = Some(vec![
        Cmd::OverrideParameters(vec![Param::SoftFailure(true)]),
        Cmd::Condition(Condition::Abort, 0),
    ]);
    assert!(matches!(
        verify(&signed(&m)),
        Err(Error::Malformed {
            what: "soft-failure set outside try-each or run-sequence",
            ..
        })
    ));
}

#[test]
fn attack_custom_command_in_shared_sequence() {
    let mut m = manifest(b"x");
    m.shared_sequence.as_mut().unwrap().push(Cmd::Custom(
        -300,
        suitcase_manifest::build::CustomValue::Nil,
    ));
    assert!(matches!(verify(&signed(&m)), Err(Error::Malformed { .. })));
}

#[test]
fn attack_directive_in_shared_sequence() {
    let mut m = manifest(b"x");
    m.shared_sequence
        .as_mut()
        .unwrap()
        .push(Cmd::Directive(Directive::Invoke, 0));
    assert!(matches!(verify(&signed(&m)), Err(Error::Malformed { .. })));
}

#[test]
fn attack_component_index_out_of_range() {
    let mut m = manifest(b"x");
    m.invoke = Some(vec![
        Cmd::SetComponentIndex(Index::One(5)),
        Cmd::Directive(Directive::Invoke, 0),
    ]);
    assert_eq!(
        verify(&signed(&m)).unwrap_err(),
        Error::ComponentIndex { index: 5 }
    );
}

#[test]
fn attack_multi_component_sequence_without_set_component_index() {
    let mut m = manifest(b"x");
    m.components.push(vec![vec![1]]);
    assert!(matches!(verify(&signed(&m)), Err(Error::Malformed { .. })));
}

#[test]
fn attack_severed_member_without_digest_in_manifest() {
    // The manifest keeps install inline; an extra install copy is added to the envelope.
    let m = manifest(b"x");
    let mut enc = m.encode(DigestAlgorithm::Sha256);
    enc.severed.push((
        20,
        suitcase_manifest::build::encode_sequence(&[Cmd::Directive(Directive::Invoke, 0)]),
    ));
    let mut b = EnvelopeBuilder::from_encoded(enc, DigestAlgorithm::Sha256);
    b.mac0(alg::HMAC_256, None, hmac);
    assert!(matches!(verify(&b.encode()), Err(Error::Malformed { .. })));
}

#[test]
fn severed_members_round_trip_and_are_checked() {
    let mut m = manifest(b"severed firmware");
    m.text = vec![("en".into(), None, 1, "a description".into())];
    m.sever = vec![20, 23];
    let bytes = signed(&m);
    let mut dev = device();
    run(&bytes, &mut dev).unwrap();
    assert_eq!(dev.components[0].content, b"severed firmware");
}

#[test]
fn attack_rollback_to_older_sequence() {
    let bytes = signed(&manifest(b"x"));
    let v = Envelope::decode(&bytes)
        .unwrap()
        .verify(&anchors(), &TrustPolicy::default())
        .unwrap();
    let mut dev = device();
    let policy = ProcessorPolicy {
        installed_sequence: Some(8),
        ..Default::default()
    };
    assert_eq!(
        Processor::new(&v, &mut dev, policy).unwrap_err(),
        Error::SequenceRollback {
            installed: 8,
            offered: 7
        }
    );
}

#[test]
fn attack_wrong_vendor_stops_before_any_write() {
    let bytes = signed(&manifest(b"x"));
    let mut dev = device();
    dev.vendor_id = Some((false, vec![0; 16]));
    assert_eq!(
        run(&bytes, &mut dev).unwrap_err().reason(),
        Reason::VendorId
    );
    assert!(dev.effects.is_empty());
}

#[test]
fn attack_wrong_device_identifier() {
    let mut m = manifest(b"x");
    let shared = m.shared_sequence.as_mut().unwrap();
    shared.push(Cmd::OverrideParameters(vec![Param::DeviceIdentifier(
        vec![7; 16],
    )]));
    shared.push(Cmd::Condition(Condition::DeviceIdentifier, 15));
    let bytes = signed(&m);
    let mut dev = device();
    dev.device_id = Some(vec![8; 16]);
    assert_eq!(
        run(&bytes, &mut dev).unwrap_err().reason(),
        Reason::DeviceId
    );
    dev.device_id = Some(vec![7; 16]);
    run(&bytes, &mut dev).unwrap();
}

#[test]
fn attack_image_tampered_after_write_fails_validation() {
    let bytes = signed(&manifest(b"good image"));
    let v = Envelope::decode(&bytes)
        .unwrap()
        .verify(&anchors(), &TrustPolicy::default())
        .unwrap();
    let mut dev = device();
    Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap();
    dev.components[0].content[0] ^= 1;
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .invoke()
        .unwrap_err();
    assert_eq!(
        err,
        Error::ConditionFailed {
            condition: Condition::ImageMatch,
            component: 0
        }
    );
    assert_eq!(
        dev.effects
            .iter()
            .filter(|e| matches!(e, Effect::Invoked { .. }))
            .count(),
        0
    );
}

#[test]
fn try_each_takes_the_first_branch_that_passes() {
    let mut m = manifest(b"x");
    m.invoke = Some(vec![
        Cmd::TryEach(
            vec![
                vec![
                    Cmd::Condition(Condition::Abort, 0),
                    Cmd::OverrideParameters(vec![Param::InvokeArgs(b"first".to_vec())]),
                ],
                vec![Cmd::OverrideParameters(vec![Param::InvokeArgs(
                    b"second".to_vec(),
                )])],
                vec![Cmd::OverrideParameters(vec![Param::InvokeArgs(
                    b"third".to_vec(),
                )])],
            ],
            false,
        ),
        Cmd::Directive(Directive::Invoke, 0),
    ]);
    let mut dev = device();
    run(&signed(&m), &mut dev).unwrap();
    assert_eq!(
        dev.effects.last(),
        Some(&Effect::Invoked {
            component: 0,
            args: Some(b"second".to_vec())
        })
    );
}

#[test]
fn try_each_without_a_passing_branch_fails_unless_nil_is_given() {
    let branches = vec![
        vec![Cmd::Condition(Condition::Abort, 0)],
        vec![Cmd::Condition(Condition::Abort, 0)],
    ];
    let mut m = manifest(b"x");
    m.invoke = Some(vec![
        Cmd::TryEach(branches.clone(), false),
        Cmd::Directive(Directive::Invoke, 0),
    ]);
    let mut dev = device();
    assert!(matches!(
        run(&signed(&m), &mut dev),
        Err(Error::ConditionFailed {
            condition: Condition::Abort,
            ..
        })
    ));
    m.invoke = Some(vec![
        Cmd::TryEach(branches, true),
        Cmd::Directive(Directive::Invoke, 0),
    ]);
    let mut dev = device();
    run(&signed(&m), &mut dev).unwrap();
}

#[test]
fn try_each_branch_with_soft_failure_false_aborts_the_try_each() {
    let mut m = manifest(b"x");
    m.invoke = Some(vec![
        Cmd::TryEach(
            vec![
                vec![
                    Cmd::OverrideParameters(vec![Param::SoftFailure(false)]),
                    Cmd::Condition(Condition::Abort, 0),
                ],
                vec![Cmd::OverrideParameters(vec![Param::InvokeArgs(
                    b"never".to_vec(),
                )])],
            ],
            true,
        ),
        Cmd::Directive(Directive::Invoke, 0),
    ]);
    let mut dev = device();
    let err = run(&signed(&m), &mut dev).unwrap_err();
    assert_eq!(
        err,
        Error::ConditionFailed {
            condition: Condition::Abort,
            component: 0
        }
    );
}

#[test]
fn run_sequence_with_soft_failure_continues_after_a_failed_condition() {
    let mut m = manifest(b"x");
    m.invoke = Some(vec![
        Cmd::RunSequence(vec![
            Cmd::OverrideParameters(vec![Param::SoftFailure(true)]),
            Cmd::Condition(Condition::Abort, 0),
            Cmd::OverrideParameters(vec![Param::InvokeArgs(b"skipped".to_vec())]),
        ]),
        Cmd::Directive(Directive::Invoke, 0),
    ]);
    let mut dev = device();
    run(&signed(&m), &mut dev).unwrap();
    assert_eq!(
        dev.effects.last(),
        Some(&Effect::Invoked {
            component: 0,
            args: None
        })
    );
    // Without soft-failure the same condition aborts.
    m.invoke = Some(vec![
        Cmd::RunSequence(vec![Cmd::Condition(Condition::Abort, 0)]),
        Cmd::Directive(Directive::Invoke, 0),
    ]);
    assert!(run(&signed(&m), &mut device()).is_err());
}

#[test]
fn component_index_true_and_lists_select_components() {
    let mut m = manifest(b"x");
    m.components = vec![vec![vec![0]], vec![vec![1]], vec![vec![2]]];
    let content = |c: &[u8]| Cmd::OverrideParameters(vec![Param::Content(c.to_vec())]);
    m.shared_sequence = None;
    m.install = Some(vec![
        Cmd::SetComponentIndex(Index::All),
        content(b"all"),
        Cmd::Directive(Directive::Write, 0),
        Cmd::SetComponentIndex(Index::List(vec![0, 2])),
        content(b"list"),
        Cmd::Directive(Directive::Write, 0),
    ]);
    m.validate = None;
    m.invoke = None;
    let mut dev = device();
    dev.components = (0..3)
        .map(|i| MemoryComponent {
            id: vec![vec![i]],
            capacity: 64,
            ..Default::default()
        })
        .collect();
    run(&signed(&m), &mut dev).unwrap();
    let contents: Vec<&[u8]> = dev
        .components
        .iter()
        .map(|c| c.content.as_slice())
        .collect();
    assert_eq!(contents, [&b"list"[..], b"all", b"list"]);
}

#[test]
fn integrated_payload_is_fetched_from_the_envelope() {
    let payload = b"integrated firmware image".to_vec();
    let mut m = manifest(&payload);
    m.install = Some(vec![
        Cmd::OverrideParameters(vec![Param::Uri("#fw.bin".into())]),
        Cmd::Directive(Directive::Fetch, 2),
        Cmd::Condition(Condition::ImageMatch, 15),
    ]);
    let mut b = EnvelopeBuilder::new(&m, DigestAlgorithm::Sha256);
    b.integrate("#fw.bin", payload.clone());
    b.mac0(alg::HMAC_256, None, hmac);
    let mut dev = device();
    run(&b.encode(), &mut dev).unwrap();
    assert_eq!(dev.components[0].content, payload);
}

#[test]
fn attack_swapped_integrated_payload_fails_image_match() {
    let mut m = manifest(b"the real image");
    m.install = Some(vec![
        Cmd::OverrideParameters(vec![Param::Uri("#fw.bin".into())]),
        Cmd::Directive(Directive::Fetch, 2),
        Cmd::Condition(Condition::ImageMatch, 15),
    ]);
    let mut b = EnvelopeBuilder::new(&m, DigestAlgorithm::Sha256);
    b.integrate("#fw.bin", b"an evil image!".to_vec());
    b.mac0(alg::HMAC_256, None, hmac);
    let err = run(&b.encode(), &mut device()).unwrap_err();
    assert_eq!(err.reason(), Reason::Digest);
}

#[test]
fn check_content_compares_whole_content() {
    let mut m = manifest(b"abc");
    m.validate = Some(vec![
        Cmd::OverrideParameters(vec![Param::Content(b"abc".to_vec())]),
        Cmd::Condition(Condition::CheckContent, 15),
    ]);
    let bytes = signed(&m);
    let mut dev = device();
    run(&bytes, &mut dev).unwrap();
    for other in [&b"abd"[..], b"ab", b"abcd"] {
        dev.components[0].content = other.to_vec();
        let v = Envelope::decode(&bytes)
            .unwrap()
            .verify(&anchors(), &TrustPolicy::default())
            .unwrap();
        let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
            .unwrap()
            .run(Section::Validate)
            .unwrap_err();
        assert_eq!(
            err,
            Error::ConditionFailed {
                condition: Condition::CheckContent,
                component: 0
            },
            "{other:?}"
        );
    }
}

#[test]
fn copy_and_swap_move_content_between_components() {
    let mut m = manifest(b"x");
    m.components = vec![vec![vec![0]], vec![vec![1]]];
    m.shared_sequence = None;
    m.install = Some(vec![
        Cmd::SetComponentIndex(Index::One(1)),
        Cmd::OverrideParameters(vec![Param::Content(b"staged".to_vec())]),
        Cmd::Directive(Directive::Write, 0),
        Cmd::SetComponentIndex(Index::One(0)),
        Cmd::OverrideParameters(vec![Param::SourceComponent(1)]),
        Cmd::Directive(Directive::Copy, 0),
    ]);
    m.validate = None;
    m.invoke = Some(vec![
        Cmd::SetComponentIndex(Index::One(0)),
        Cmd::OverrideParameters(vec![Param::SourceComponent(1)]),
        Cmd::Directive(Directive::Swap, 0),
    ]);
    let mut dev = device();
    dev.components = (0..2)
        .map(|i| MemoryComponent {
            id: vec![vec![i]],
            capacity: 64,
            content: vec![i],
            ..Default::default()
        })
        .collect();
    let bytes = signed(&m);
    let v = Envelope::decode(&bytes)
        .unwrap()
        .verify(&anchors(), &TrustPolicy::default())
        .unwrap();
    Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .run(Section::Install)
        .unwrap();
    assert_eq!(dev.components[0].content, b"staged");
    dev.components[1].content = b"other".to_vec();
    Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .run(Section::Invoke)
        .unwrap();
    assert_eq!(dev.components[0].content, b"other");
    assert_eq!(dev.components[1].content, b"staged");
}

#[test]
fn attack_parameter_used_but_never_set() {
    let mut m = manifest(b"x");
    m.shared_sequence = None;
    m.validate = Some(vec![Cmd::Condition(Condition::ImageMatch, 15)]);
    m.install = None;
    let err = run(&signed(&m), &mut device()).unwrap_err();
    assert_eq!(
        err,
        Error::MissingParameter {
            parameter: 3,
            component: 0
        }
    );
    assert_eq!(err.reason(), Reason::Malformed);
}

mod signatures {
    use super::*;
    use ed25519_dalek::Signer as _;

    fn ed25519() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
    }

    fn p256_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap()
    }

    fn es256(tbs: &[u8]) -> Vec<u8> {
        let s: p256::ecdsa::Signature = p256_key().sign(tbs);
        s.to_bytes().to_vec()
    }

    #[test]
    fn es256_esp256_and_ed25519_blocks_verify() {
        for a in [alg::ES256, alg::ESP256, alg::EDDSA, alg::ED25519] {
            let mut b = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256);
            if a == alg::ES256 || a == alg::ESP256 {
                b.sign1(a, None, es256);
            } else {
                b.sign1(a, None, |tbs| ed25519().sign(tbs).to_bytes().to_vec());
            }
            let bytes = b.encode();
            let anchors = [
                TrustAnchor {
                    name: "p256",
                    key: PublicKey::P256(*p256_key().verifying_key()),
                    kid: None,
                    permissions: suitcase_manifest::Permissions::ALL,
                },
                TrustAnchor {
                    name: "ed25519",
                    key: PublicKey::Ed25519(ed25519().verifying_key()),
                    kid: None,
                    permissions: suitcase_manifest::Permissions::ALL,
                },
            ];
            let v = Envelope::decode(&bytes)
                .unwrap()
                .verify(&anchors, &TrustPolicy::default())
                .unwrap();
            let expected = usize::from(a == alg::EDDSA || a == alg::ED25519);
            assert_eq!(
                v.signers().iter().collect::<Vec<_>>(),
                [expected],
                "alg {a}"
            );
        }
    }

    #[test]
    fn attack_signature_algorithm_confusion_hmac_key_for_es256_block() {
        // An ES256 block must never be checked against an HMAC secret.
        let mut b = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256);
        b.sign1(alg::ES256, None, hmac);
        assert_eq!(
            verify(&b.encode()).unwrap_err(),
            Error::Unauthenticated(AuthError::NoTrustedSignature)
        );
    }

    #[test]
    fn kid_restricts_which_anchor_is_tried() {
        let mut b = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256);
        b.sign1(alg::ESP256, Some(b"author-2026"), es256);
        let bytes = b.encode();
        let verify_with = |kid: &'static [u8]| {
            let anchors = [TrustAnchor {
                name: "a",
                key: PublicKey::P256(*p256_key().verifying_key()),
                kid: Some(kid),
                permissions: suitcase_manifest::Permissions::ALL,
            }];
            Envelope::decode(&bytes)
                .unwrap()
                .verify(&anchors, &TrustPolicy::default())
                .map(|_| ())
        };
        verify_with(b"author-2026").unwrap();
        assert!(verify_with(b"someone-else").is_err());
    }

    #[test]
    fn two_signer_policy_rejects_one_signature_and_accepts_two() {
        let anchors = [
            TrustAnchor {
                name: "author",
                key: PublicKey::P256(*p256_key().verifying_key()),
                kid: None,
                permissions: suitcase_manifest::Permissions::ALL,
            },
            TrustAnchor {
                name: "operator",
                key: PublicKey::Ed25519(ed25519().verifying_key()),
                kid: None,
                permissions: suitcase_manifest::Permissions::ALL,
            },
        ];
        let two = TrustPolicy::threshold(core::num::NonZeroUsize::new(2).unwrap());
        let mut b = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256);
        b.sign1(alg::ESP256, None, es256);
        let one_signature = b.encode();
        let err = Envelope::decode(&one_signature)
            .unwrap()
            .verify(&anchors, &two)
            .unwrap_err();
        assert_eq!(
            err,
            Error::Unauthenticated(AuthError::ThresholdNotMet {
                required: 2,
                verified: 1
            })
        );
        // The same signer twice is still one signer.
        b.sign1(alg::ES256, None, es256);
        let err = Envelope::decode(&b.encode())
            .unwrap()
            .verify(&anchors, &two)
            .unwrap_err();
        assert_eq!(
            err,
            Error::Unauthenticated(AuthError::ThresholdNotMet {
                required: 2,
                verified: 1
            })
        );
        b.sign1(alg::ED25519, None, |tbs| {
            ed25519().sign(tbs).to_bytes().to_vec()
        });
        let both = b.encode();
        let v = Envelope::decode(&both)
            .unwrap()
            .verify(&anchors, &two)
            .unwrap();
        assert_eq!(v.signers().count(), 2);
    }

    #[test]
    fn cose_sign_with_two_signatures_in_one_block() {
        let digest_builder = EnvelopeBuilder::new(&manifest(b"x"), DigestAlgorithm::Sha256);
        let payload = digest_builder.digest_bytes().to_vec();
        let body_protected: Vec<u8> = Vec::new();
        let sig = |alg_id: i64, f: &dyn Fn(&[u8]) -> Vec<u8>| {
            let protected = raw::map(vec![(raw::int(1), raw::int(alg_id))]);
            let tbs = raw::array(&[
                raw::tstr("Signature"),
                raw::bstr(&body_protected),
                raw::bstr(&protected),
                raw::bstr(&[]),
                raw::bstr(&payload),
            ]);
            raw::array(&[raw::bstr(&protected), raw::map(vec![]), raw::bstr(&f(&tbs))])
        };
        let s1 = sig(alg::ESP256, &es256);
        let s2 = sig(alg::ED25519, &|tbs| ed25519().sign(tbs).to_bytes().to_vec());
        let block = raw::tagged(
            98,
            &raw::array(&[
                raw::bstr(&body_protected),
                raw::map(vec![]),
                vec![0xf6],
                raw::array(&[s1, s2]),
            ]),
        );
        let mut b = digest_builder;
        b.raw_block(block);
        let anchors = [
            TrustAnchor {
                name: "author",
                key: PublicKey::P256(*p256_key().verifying_key()),
                kid: None,
                permissions: suitcase_manifest::Permissions::ALL,
            },
            TrustAnchor {
                name: "operator",
                key: PublicKey::Ed25519(ed25519().verifying_key()),
                kid: None,
                permissions: suitcase_manifest::Permissions::ALL,
            },
        ];
        let two = TrustPolicy::threshold(core::num::NonZeroUsize::new(2).unwrap());
        let bytes = b.encode();
        let v = Envelope::decode(&bytes)
            .unwrap()
            .verify(&anchors, &two)
            .unwrap();
        assert_eq!(v.signers().count(), 2);
    }
}

/// The authentication wrapper of `bytes` (the content of envelope member 2).
fn wrapper(bytes: &[u8]) -> Vec<u8> {
    Envelope::decode(bytes)
        .unwrap()
        .member(2)
        .unwrap()
        .1
        .to_vec()
}

#[test]
fn the_authentication_wrapper_alone_verifies_as_the_envelope_does() {
    // What a boot-time verifier holds in RAM: the wrapper, not the manifest.
    let bytes = signed(&manifest(b"firmware v7"));
    let raw = wrapper(&bytes);
    let auth = suitcase_manifest::Authentication::decode(&raw).unwrap();
    let signers = auth
        .verify_signatures(&anchors(), &TrustPolicy::default())
        .unwrap();
    let verified = Envelope::decode(&bytes)
        .unwrap()
        .verify(&anchors(), &TrustPolicy::default())
        .unwrap();
    assert_eq!(signers, verified.signers());
    // The caller hashes the manifest itself: the wrapper's digest is the envelope's.
    assert!(
        auth.digest
            .matches(Envelope::decode(&bytes).unwrap().manifest_wrapped())
    );
    let component = suitcase_manifest::ComponentId::decode(&[0x81, 0x41, 0x00]).unwrap();
    assert_eq!(
        signers.authorize(
            &component,
            suitcase_manifest::Actions::INVOKE,
            &anchors(),
            &TrustPolicy::default()
        ),
        Ok(())
    );
}

#[test]
fn attack_authentication_wrapper_checked_against_the_wrong_key() {
    let bytes = signed(&manifest(b"firmware v7"));
    let raw = wrapper(&bytes);
    let auth = suitcase_manifest::Authentication::decode(&raw).unwrap();
    let other = [TrustAnchor::new(
        "other",
        PublicKey::Hmac256(b"another key, another key, anothe"),
    )];
    assert_eq!(
        auth.verify_signatures(&other, &TrustPolicy::default()),
        Err(Error::Unauthenticated(AuthError::NoTrustedSignature))
    );
    // A signer whose anchor covers another component may not authorise this one.
    let prefix = [suitcase_manifest::ComponentId::decode(&[0x81, 0x41, 0x01]).unwrap()];
    let limited = [TrustAnchor {
        permissions: suitcase_manifest::Permissions {
            components: Some(&prefix),
            actions: suitcase_manifest::Actions::ALL,
        },
        ..anchors()[0]
    }];
    let signers = auth
        .verify_signatures(&limited, &TrustPolicy::default())
        .unwrap();
    let component = suitcase_manifest::ComponentId::decode(&[0x81, 0x41, 0x00]).unwrap();
    assert_eq!(
        signers.authorize(
            &component,
            suitcase_manifest::Actions::INVOKE,
            &limited,
            &TrustPolicy::default()
        ),
        Err(AuthError::NotAuthorized)
    );
}

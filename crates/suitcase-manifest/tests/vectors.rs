//! Every envelope in `testdata/vectors/` (the SUIT working group's own examples, plus derived
//! negative cases) with the conclusion its README says a correct processor must reach.

#![expect(clippy::unwrap_used, clippy::panic, reason = "test code")]

use p256::pkcs8::DecodePrivateKey;
use suitcase_manifest::encryption::{DecryptionKey, EncryptionInfo, KeyMaterial, decrypt_payload};
use suitcase_manifest::memory::{Effect, MemoryComponent, MemoryDevice};
use suitcase_manifest::{
    AuthError, Condition, Envelope, Error, Processor, ProcessorPolicy, PublicKey, Reason, Section,
    SectionState, TrustAnchor, TrustPolicy, Unsupported, VerifiedManifest,
};

mod common;

use common::{example_key, file, p256_anchor, vector};

const MAC_KEY: &[u8] = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEK: [u8; 16] = *b"aaaaaaaaaaaaaaaa";
const PLAINTEXT: &[u8] = b"This is a real firmware image.";

fn mac_key() -> TrustAnchor<'static> {
    TrustAnchor {
        name: "mac",
        key: PublicKey::Hmac256(MAC_KEY),
        kid: None,
        permissions: suitcase_manifest::Permissions::ALL,
    }
}

fn verify<'a>(bytes: &'a [u8], anchor: TrustAnchor<'_>) -> Result<VerifiedManifest<'a>, Error> {
    Envelope::decode(bytes)?.verify(&[anchor], &TrustPolicy::default())
}

const VENDOR: &str = "fa6b4a53d5ad5fdfbe9de663e4d41ffe";
const CLASS: &str = "1492af1425695e48bf429b2d51f2ab45";

fn device(components: &[&[&[u8]]]) -> MemoryDevice {
    MemoryDevice {
        vendor_id: Some((false, hex::decode(VENDOR).unwrap())),
        class_id: Some(hex::decode(CLASS).unwrap()),
        components: components
            .iter()
            .map(|id| MemoryComponent {
                id: id.iter().map(|s| s.to_vec()).collect(),
                capacity: 1 << 20,
                content: vec![0x5a; 64],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn manifest_examples_authenticate_with_the_published_key() {
    for (n, seq) in [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)] {
        let bytes = vector(&format!("manifest/example{n}.signed.hex"));
        let verified = verify(&bytes, example_key()).unwrap_or_else(|e| panic!("example{n}: {e}"));
        assert_eq!(verified.sequence_number(), seq, "example{n}");
    }
}

#[test]
fn unsigned_examples_are_rejected() {
    for name in [
        "example0.unsigned",
        "example1.unsigned",
        "example2.severed-unsigned",
        "example3.unsigned",
        "example4.unsigned",
        "example5.unsigned",
    ] {
        let bytes = vector(&format!("manifest/{name}.hex"));
        let err = verify(&bytes, example_key()).expect_err(name);
        assert_eq!(
            err,
            Error::Unauthenticated(AuthError::NoAuthenticationBlock),
            "{name}"
        );
        assert_eq!(err.reason(), Reason::Signature);
    }
}

#[test]
fn example_digests_match_the_readme() {
    let cases = [
        ("manifest/example0.signed.hex", "6658ea56"),
        ("manifest/example1.signed.hex", "1f2e7acc"),
        ("manifest/example2.signed.hex", "6a5197ed"),
        ("manifest/example3.signed.hex", "f6d44a62"),
        ("manifest/example4.signed.hex", "5b5f6586"),
        ("manifest/example5.signed.hex", "15ce60f7"),
        ("trust-domains/example0_dependent.hex", "0f02caf6"),
        ("trust-domains/example1_process.hex", "aeba316a"),
    ];
    for (path, prefix) in cases {
        let bytes = vector(path);
        let v = verify(&bytes, example_key()).unwrap();
        assert!(
            hex::encode(v.digest().as_bytes()).starts_with(prefix),
            "{path}"
        );
    }
}

#[test]
fn es256_and_esp256_signatures_of_the_same_manifest_both_verify() {
    let es256 = vector("manifest/example0.signed.hex");
    let esp256 = vector("libcsuit-extra/suit_manifest_exp0.resigned.hex");
    let a = verify(&es256, example_key()).unwrap();
    let b = verify(&esp256, example_key()).unwrap();
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn attack_bad_signature_is_rejected() {
    let bytes = vector("negative/example0.bad-signature.hex");
    assert_eq!(
        verify(&bytes, example_key()).unwrap_err(),
        Error::Unauthenticated(AuthError::NoTrustedSignature)
    );
}

#[test]
fn attack_manifest_tampered_after_signing_is_rejected() {
    let bytes = vector("negative/example0.manifest-tampered.hex");
    assert_eq!(
        verify(&bytes, example_key()).unwrap_err(),
        Error::Unauthenticated(AuthError::DigestMismatch)
    );
}

#[test]
fn attack_digest_recomputed_but_old_signature_is_rejected() {
    let bytes = vector("negative/example0.digest-recomputed-old-signature.hex");
    assert_eq!(
        verify(&bytes, example_key()).unwrap_err(),
        Error::Unauthenticated(AuthError::NoTrustedSignature)
    );
}

#[test]
fn attack_auth_wrapper_replayed_onto_another_manifest_is_rejected() {
    let bytes = vector("negative/example0.auth-wrapper-from-example1.hex");
    assert_eq!(
        verify(&bytes, example_key()).unwrap_err(),
        Error::Unauthenticated(AuthError::DigestMismatch)
    );
}

#[test]
fn attack_severed_install_swapped_for_evil_uri_is_rejected() {
    let bytes = vector("negative/example2.severed-install-tampered.hex");
    let err = verify(&bytes, example_key()).unwrap_err();
    assert_eq!(err, Error::SeveredMemberMismatch { key: 20 });
    assert_eq!(err.reason(), Reason::Digest);
}

#[test]
fn attack_signer_not_trusted_is_rejected() {
    // README: verifying any signed vector against the dependent signer's key must fail.
    let other = p256_anchor("keys/fwenc-dependent-signer-public.pem");
    for path in [
        "manifest/example0.signed.hex",
        "manifest/example3.signed.hex",
        "trust-domains/example1_process.hex",
    ] {
        let bytes = vector(path);
        assert_eq!(
            verify(&bytes, other).unwrap_err(),
            Error::Unauthenticated(AuthError::NoTrustedSignature),
            "{path}"
        );
    }
}

#[test]
fn severed_text_and_install_are_checked_and_available() {
    let bytes = vector("manifest/example2.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    assert!(matches!(
        v.section(Section::Install),
        SectionState::Present(_)
    ));
    let text = v.text().expect("text is in the envelope");
    let entries: Vec<_> = text.entries().collect();
    assert!(entries.iter().any(|e| matches!(
        e,
        suitcase_manifest::TextEntry::Component {
            key: 3,
            text: "arm.com",
            ..
        }
    )));
    assert_eq!(v.manifest().reference_uri, Some("https://git.io/JJYoj"));
}

#[test]
fn severed_envelope_supports_secure_boot_but_not_install() {
    let bytes = vector("manifest/example2.severed-signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    assert!(matches!(v.section(Section::Install), SectionState::Severed));
    assert!(matches!(
        v.section(Section::Validate),
        SectionState::Present(_)
    ));
    assert!(v.text().is_none());
    let mut dev = device(&[&[&[0]]]);
    let mut p = Processor::new(&v, &mut dev, ProcessorPolicy::default()).unwrap();
    assert_eq!(
        p.run(Section::Install).unwrap_err(),
        Error::SectionMissing { key: 20 }
    );
}

#[test]
fn example0_secure_boot_checks_identity_then_the_image() {
    let bytes = vector("manifest/example0.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    // The example's digest is a made-up pattern: no content can match it.
    let mut dev = device(&[&[&[0]]]);
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
    assert_eq!(err.reason(), Reason::Digest);
    // Vendor and class passed before it.
    let passed: Vec<_> = dev
        .records
        .iter()
        .filter(|r| r.success)
        .map(|r| r.command)
        .collect();
    assert_eq!(passed, ["vendor-identifier", "class-identifier"]);
    assert_eq!(
        dev.records
            .last()
            .map(|r| (r.section, r.command, r.success)),
        Some(("validate", "image-match", false))
    );
    assert!(
        dev.effects.is_empty(),
        "nothing may be invoked after a failed image match"
    );
}

#[test]
fn attack_wrong_vendor_is_refused() {
    let bytes = vector("manifest/example0.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]]]);
    dev.vendor_id = Some((false, vec![0x11; 16]));
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .invoke()
        .unwrap_err();
    assert_eq!(err.reason(), Reason::VendorId);
}

#[test]
fn attack_wrong_device_class_is_refused() {
    let bytes = vector("manifest/example1.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]]]);
    dev.class_id = Some(vec![0x22; 16]);
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap_err();
    assert_eq!(err.reason(), Reason::ClassId);
    assert!(
        dev.effects.is_empty(),
        "nothing may be fetched for the wrong class"
    );
}

#[test]
fn attack_rollback_sequence_is_refused() {
    // README: after accepting example1 (seq 1), example0 (seq 0) must be rejected.
    let bytes = vector("manifest/example0.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]]]);
    let policy = ProcessorPolicy {
        installed_sequence: Some(1),
        ..Default::default()
    };
    let err = Processor::new(&v, &mut dev, policy).unwrap_err();
    assert_eq!(
        err,
        Error::SequenceRollback {
            installed: 1,
            offered: 0
        }
    );
    // Re-applying the installed manifest is refused for updates, accepted for re-validation.
    let bytes1 = vector("manifest/example1.signed.hex");
    let v1 = verify(&bytes1, example_key()).unwrap();
    let same = ProcessorPolicy {
        installed_sequence: Some(1),
        ..Default::default()
    };
    assert!(Processor::new(&v1, &mut dev, same).is_err());
    let revalidate = ProcessorPolicy {
        installed_sequence: Some(1),
        allow_same_sequence: true,
    };
    assert!(Processor::new(&v1, &mut dev, revalidate).is_ok());
}

#[test]
fn example1_fetches_then_checks_the_image() {
    let bytes = vector("manifest/example1.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]]]);
    dev.payloads
        .push(("http://example.com/file.bin".into(), vec![1, 2, 3]));
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap_err();
    assert_eq!(
        err,
        Error::ConditionFailed {
            condition: Condition::ImageMatch,
            component: 0
        }
    );
    assert_eq!(
        dev.effects,
        [Effect::Fetched {
            component: 0,
            uri: "http://example.com/file.bin".into(),
            bytes: 3
        }]
    );
}

#[test]
fn example1_unreachable_payload_is_a_fetch_failure() {
    let bytes = vector("manifest/example1.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]]]);
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap_err();
    assert_eq!(err.reason(), Reason::Fetch);
}

#[test]
fn example3_picks_the_image_for_the_devices_slot() {
    let bytes = vector("manifest/example3.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    for (slot, uri) in [
        (0, "http://example.com/file1.bin"),
        (1, "http://example.com/file2.bin"),
    ] {
        let mut dev = device(&[&[&[0]]]);
        dev.components[0].slot = Some(slot);
        dev.payloads.push((uri.into(), vec![0; 8]));
        let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
            .unwrap()
            .update()
            .unwrap_err();
        assert_eq!(err.reason(), Reason::Digest, "slot {slot}");
        assert_eq!(
            dev.effects,
            [Effect::Fetched {
                component: 0,
                uri: uri.into(),
                bytes: 8
            }]
        );
        let size = if slot == 0 { 34768 } else { 76834 };
        // The try-each in the shared sequence set the slot's image size.
        let mut dev2 = device(&[&[&[0]]]);
        dev2.components[0].slot = Some(slot);
        let mut p = Processor::new(&v, &mut dev2, ProcessorPolicy::default()).unwrap();
        let _ = p.run(Section::Validate);
        assert_eq!(p.parameters(0).unwrap().image_size, Some(size));
    }
}

#[test]
fn example3_device_in_neither_slot_fails_the_try_each() {
    let bytes = vector("manifest/example3.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]]]);
    dev.components[0].slot = Some(7);
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap_err();
    assert_eq!(
        err,
        Error::ConditionFailed {
            condition: Condition::ComponentSlot,
            component: 0
        }
    );
}

#[test]
fn attack_oversized_image_is_refused_before_fetching() {
    let bytes = vector("manifest/example1.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]]]);
    dev.components[0].capacity = 1024;
    dev.payloads
        .push(("http://example.com/file.bin".into(), vec![0; 8]));
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap_err();
    assert_eq!(
        err,
        Error::TooLarge {
            component: 0,
            size: 34768,
            capacity: 1024
        }
    );
    assert!(dev.effects.is_empty());
}

#[test]
fn example4_uses_component_indices_not_identifier_bytes() {
    let bytes = vector("manifest/example4.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]], &[&[2]], &[&[1]]]);
    dev.payloads
        .push(("http://example.com/file.bin".into(), vec![7; 4]));
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .run(Section::PayloadFetch)
        .unwrap_err();
    // Index 1 is [h'02'].
    assert_eq!(
        err,
        Error::ConditionFailed {
            condition: Condition::ImageMatch,
            component: 1
        }
    );
    assert_eq!(dev.component(&[&[2]]).unwrap().content, vec![7; 4]);
}

#[test]
fn attack_unknown_component_is_refused() {
    let bytes = vector("manifest/example5.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]]]);
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default()).unwrap_err();
    assert_eq!(
        err,
        Error::UnsupportedCritical {
            what: Unsupported::Component,
            id: 1
        }
    );
}

#[test]
fn example5_fetches_both_images() {
    let bytes = vector("manifest/example5.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[&[0]], &[&[1]]]);
    dev.payloads
        .push(("http://example.com/file1.bin".into(), vec![1; 4]));
    dev.payloads
        .push(("http://example.com/file2.bin".into(), vec![2; 4]));
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .run(Section::Install)
        .unwrap_err();
    // The first image is fetched and fails its (made-up) digest.
    assert_eq!(
        err,
        Error::ConditionFailed {
            condition: Condition::ImageMatch,
            component: 0
        }
    );
}

#[test]
fn trust_domain_dependency_installs_and_invokes() {
    let bytes = vector("trust-domains/example0_dependent.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[b"00"]]);
    let mut p = Processor::new(&v, &mut dev, ProcessorPolicy::default()).unwrap();
    p.update().unwrap();
    p.invoke().unwrap();
    assert_eq!(dev.component(&[b"00"]).unwrap().content, b"hello world");
    assert_eq!(
        dev.effects.last(),
        Some(&Effect::Invoked {
            component: 0,
            args: Some(b"cat 00".to_vec())
        })
    );
}

#[test]
fn trust_domain_dependents_authenticate() {
    for path in [
        "trust-domains/example1_process.hex",
        "trust-domains/example2_integrated.hex",
    ] {
        let bytes = vector(path);
        let v = verify(&bytes, example_key()).unwrap();
        assert!(!v.manifest().dependencies.is_empty(), "{path}");
        assert_eq!(v.manifest().index_count(), 2);
    }
    let integrated = vector("trust-domains/example2_integrated.hex");
    let env = Envelope::decode(&integrated).unwrap();
    assert_eq!(
        env.integrated("#dependent.suit").unwrap(),
        vector("trust-domains/example0_dependent.hex")
    );
}

#[test]
fn encrypted_write_with_aes_kw_decrypts_into_the_component() {
    let bytes = vector("encryption/suit-manifest-aes-kw-content.signed.hex");
    let v = verify(&bytes, mac_key()).unwrap();
    let mut dev = device(&[&[b"plaintext-firmware"]]);
    dev.keys
        .keys
        .push((Some(b"kid-1".to_vec()), KeyMaterial::Aes128Kw(KEK)));
    Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap();
    assert_eq!(
        dev.component(&[b"plaintext-firmware"]).unwrap().content,
        PLAINTEXT
    );
}

#[test]
fn encrypted_fetch_then_copy_decrypts() {
    for (path, dst, src) in [
        (
            "encryption/suit-manifest-aes-kw.signed.hex",
            &b"plaintext-firmware"[..],
            &b"encrypted-firmware"[..],
        ),
        (
            "encryption/suit-manifest-aes-kw-slot.signed.hex",
            &[0u8][..],
            &[1u8][..],
        ),
    ] {
        let bytes = vector(path);
        let v = verify(&bytes, mac_key()).unwrap();
        let mut dev = device(&[&[dst], &[src]]);
        dev.keys.keys.push((None, KeyMaterial::Aes128Kw(KEK)));
        let uri = "coaps://example.com/encrypted-firmware";
        dev.payloads.push((
            uri.into(),
            vector("encryption/encrypted-payload-aes-kw-aes-gcm.hex"),
        ));
        Processor::new(&v, &mut dev, ProcessorPolicy::default())
            .unwrap()
            .update()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(dev.component(&[dst]).unwrap().content, PLAINTEXT, "{path}");
    }
}

#[test]
fn attack_tampered_ciphertext_is_refused_and_nothing_written() {
    let bytes = vector("encryption/suit-manifest-aes-kw.signed.hex");
    let v = verify(&bytes, mac_key()).unwrap();
    let mut dev = device(&[&[b"plaintext-firmware"], &[b"encrypted-firmware"]]);
    dev.keys.keys.push((None, KeyMaterial::Aes128Kw(KEK)));
    let mut payload = vector("encryption/encrypted-payload-aes-kw-aes-gcm.hex");
    payload[3] ^= 0x80;
    dev.payloads
        .push(("coaps://example.com/encrypted-firmware".into(), payload));
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap_err();
    assert_eq!(err, Error::Decrypt);
    assert_eq!(
        dev.component(&[b"plaintext-firmware"]).unwrap().content,
        vec![0x5a; 64]
    );
}

#[test]
fn attack_wrong_kek_cannot_decrypt() {
    let bytes = vector("encryption/suit-manifest-aes-kw-content.signed.hex");
    let v = verify(&bytes, mac_key()).unwrap();
    let mut dev = device(&[&[b"plaintext-firmware"]]);
    dev.keys
        .keys
        .push((None, KeyMaterial::Aes128Kw(*b"bbbbbbbbbbbbbbbb")));
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap_err();
    assert_eq!(err.reason(), Reason::Decrypt);
}

fn recipient_key() -> KeyMaterial {
    KeyMaterial::P256(
        p256::SecretKey::from_pkcs8_pem(&file("keys/fwenc-esdh-recipient-p256-private.pem"))
            .unwrap(),
    )
}

#[test]
fn es_dh_write_decrypts_with_the_recipient_key() {
    let bytes = vector("encryption/suit-manifest-es-ecdh-content.signed.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let mut dev = device(&[&[b"decrypted-firmware"]]);
    dev.keys
        .keys
        .push((Some(b"kid-2".to_vec()), recipient_key()));
    Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap();
    assert_eq!(
        dev.component(&[b"decrypted-firmware"]).unwrap().content,
        PLAINTEXT
    );
}

#[test]
fn es_dh_dependency_root_authenticates_with_its_own_signer() {
    let bytes = vector("encryption/suit-manifest-es-ecdh-dependency.signed.hex");
    verify(
        &bytes,
        p256_anchor("keys/fwenc-dependent-signer-public.pem"),
    )
    .unwrap();
    assert!(verify(&bytes, example_key()).is_err());
    let env = Envelope::decode(&bytes).unwrap();
    let dep = env.integrated("#dependency-manifest").unwrap();
    verify(dep, example_key()).unwrap();
}

#[test]
fn standalone_encryption_infos_unwrap_and_decrypt() {
    let gcm_cek = hex::decode("15f785b5c931414411b4b71373a9c0f7").unwrap();
    let ctr_cek = hex::decode("261de6165070fb8951ec5d7b92a065fe").unwrap();
    for (name, key, cek) in [
        ("aes-kw-aes-gcm", KeyMaterial::Aes128Kw(KEK), &gcm_cek),
        ("aes-kw-aes-ctr", KeyMaterial::Aes128Kw(KEK), &ctr_cek),
        ("es-ecdh-aes-gcm", recipient_key(), &gcm_cek),
        ("es-ecdh-aes-ctr", recipient_key(), &ctr_cek),
    ] {
        let info_bytes = vector(&format!("encryption/suit-encryption-info-{name}.hex"));
        let info = EncryptionInfo::decode(&info_bytes).unwrap();
        let mut out = [0u8; 32];
        let n = DecryptionKey {
            kid: None,
            material: key,
        }
        .unwrap_cek(&info, &mut out)
        .unwrap();
        assert_eq!(&out[..n], &cek[..], "{name}");
        let payload = vector(&format!("encryption/encrypted-payload-{name}.hex"));
        assert_eq!(
            decrypt_payload(&info_bytes, cek, &payload).unwrap(),
            PLAINTEXT,
            "{name}"
        );
    }
}

#[test]
fn our_streaming_gcm_agrees_with_the_aes_gcm_crate() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    // Long enough to cross many chunk and block boundaries, with an odd length.
    let plaintext: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let info_bytes = vector("encryption/suit-encryption-info-aes-kw-aes-gcm.hex");
    let cek = hex::decode("15f785b5c931414411b4b71373a9c0f7").unwrap();
    let iv = hex::decode("f14aab9d81d51f7ad943fe87").unwrap();
    // Enc_structure ["Encrypt", h'a10101', h''].
    let aad = [
        0x83, 0x67, b'E', b'n', b'c', b'r', b'y', b'p', b't', 0x43, 0xa1, 0x01, 0x01, 0x40,
    ];
    let cipher = aes_gcm::Aes128Gcm::new_from_slice(&cek).unwrap();
    let ct = cipher
        .encrypt(
            &aes_gcm::Nonce::try_from(iv.as_slice()).unwrap(),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(decrypt_payload(&info_bytes, &cek, &ct).unwrap(), plaintext);
    let mut bad = ct;
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(
        decrypt_payload(&info_bytes, &cek, &bad).unwrap_err(),
        Error::Decrypt
    );
}

#[test]
fn update_management_examples_authenticate_and_parse() {
    for name in ["U0", "U1", "U2", "U3"] {
        let bytes = vector(&format!("libcsuit-extra/suit_manifest_exp{name}.hex"));
        let v = verify(&bytes, example_key()).unwrap_or_else(|e| panic!("{name}: {e}"));
        for section in Section::UPDATE.into_iter().chain(Section::INVOCATION) {
            if let SectionState::Present(seq) = v.section(section) {
                assert!(seq.iter().count() > 0);
            }
        }
    }
}

#[test]
fn update_management_conditions_run_against_the_device() {
    // U0: use-before, minimum-battery, update-authorized and version conditions.
    let bytes = vector("libcsuit-extra/suit_manifest_expU0.hex");
    let v = verify(&bytes, example_key()).unwrap();
    let m = v.manifest();
    let ids: Vec<Vec<Vec<u8>>> = m
        .components
        .iter()
        .map(|c| c.segments().map(<[u8]>::to_vec).collect())
        .collect();
    let mk = |now, battery, authorized| {
        let mut dev = MemoryDevice {
            components: ids
                .iter()
                .map(|id| MemoryComponent {
                    id: id.clone(),
                    capacity: 1 << 20,
                    version: Some(vec![1, 0, 1]),
                    ..Default::default()
                })
                .collect(),
            now: Some(now),
            battery_mwh: Some(battery),
            authorized: Some(authorized),
            ..Default::default()
        };
        dev.vendor_id = None;
        dev
    };
    let run = |mut dev: MemoryDevice| {
        let mut p = Processor::new(&v, &mut dev, ProcessorPolicy::default()).unwrap();
        let mut result = Ok(());
        for s in Section::UPDATE.into_iter().chain(Section::INVOCATION) {
            if let Err(e) = p.run(s) {
                result = Err(e);
                break;
            }
        }
        result
    };
    // 2023-10-03 is 1696291200: a clock before it, enough battery, authorized, version 1.0.1.
    run(mk(1_600_000_000, 100, true)).unwrap();
    let expired = run(mk(1_800_000_000, 100, true)).unwrap_err();
    assert_eq!(
        expired,
        Error::ConditionFailed {
            condition: Condition::UseBefore,
            component: 0
        }
    );
    let flat = run(mk(1_600_000_000, 1, true)).unwrap_err();
    assert_eq!(
        flat,
        Error::ConditionFailed {
            condition: Condition::MinimumBattery,
            component: 0
        }
    );
    let refused = run(mk(1_600_000_000, 100, false)).unwrap_err();
    assert_eq!(
        refused,
        Error::ConditionFailed {
            condition: Condition::UpdateAuthorized,
            component: 0
        }
    );
}

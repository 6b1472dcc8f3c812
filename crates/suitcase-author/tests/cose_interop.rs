//! An independent COSE implementation (Google's `coset`) reads what we write: it parses our
//! authentication blocks and encryption info, builds the Sig_structure / MAC_structure /
//! Enc_structure itself, and our signatures, tags and ciphertexts check out against those bytes.

#![expect(clippy::unwrap_used, reason = "test code")]

use coset::{CborSerializable, TaggedCborSerializable};
use suitcase_author::keys::{self, KeyAlg, PublicKey};
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::{Tier, uuid};
use suitcase_manifest::Envelope;

fn request(
    tier: Tier,
    sign: Vec<std::path::PathBuf>,
    encrypt_for: Vec<std::path::PathBuf>,
) -> ReleaseRequest {
    let vendor = uuid::vendor("example.com");
    ReleaseRequest {
        sequence: 1,
        tier,
        vendor,
        class: uuid::class(&vendor, "x"),
        device: None,
        images: vec![ImageInput {
            name: "a.bin".into(),
            bytes: b"interop payload".to_vec(),
            component: vec![vec![0]],
            uri: Some("https://x/a.bin".into()),
            integrated: false,
            invoke: false,
            delta_from: None,
        }],
        sign,
        encrypt_for,
        x5chain: vec![],
        content: None,
        reference_uri: None,
        description: None,
    }
}

fn key(dir: &std::path::Path, alg: KeyAlg) -> std::path::PathBuf {
    let path = dir.join(alg.name());
    keys::write_atomic(&path, &keys::generate(alg, "h5w1").unwrap().private, true).unwrap();
    path
}

#[test]
fn coset_verifies_our_signatures_and_macs() {
    let dir = tempfile::tempdir().unwrap();
    let signers = [
        KeyAlg::Es256,
        KeyAlg::Ed25519,
        KeyAlg::HssLms,
        KeyAlg::MlDsa65,
    ];
    let paths: Vec<_> = signers.iter().map(|a| key(dir.path(), *a)).collect();
    let built = release::build(
        &request(Tier::Quantum, paths.clone(), vec![]),
        &mut |_, _, _| {},
    )
    .unwrap();
    let env = Envelope::decode(&built.envelope).unwrap();
    let auth = env.authentication().unwrap();
    let payload = auth.digest_bytes;
    for (block, path) in auth.blocks().zip(&paths) {
        let sign1 = coset::CoseSign1::from_tagged_slice(block.as_cbor())
            .expect("coset parses our COSE_Sign1");
        assert!(sign1.payload.is_none(), "detached payload");
        let public = keys::load_public(path).unwrap();
        sign1
            .verify_detached_signature(payload, b"", |sig, data| verify(&public, sig, data))
            .unwrap_or_else(|e| panic!("{}: {e}", public.kind()));
        // The kid we put in the unprotected header is the key's id.
        assert_eq!(sign1.unprotected.key_id, public.kid());
    }
    // COSE_Mac0 with HMAC-256.
    let mac_key = key(dir.path(), KeyAlg::Hmac256);
    let built = release::build(
        &request(Tier::Basic, vec![mac_key.clone()], vec![]),
        &mut |_, _, _| {},
    )
    .unwrap();
    let env = Envelope::decode(&built.envelope).unwrap();
    let auth = env.authentication().unwrap();
    let block = auth.blocks().next().unwrap();
    let mut mac0 = coset::CoseMac0::from_tagged_slice(block.as_cbor()).unwrap();
    mac0.payload = Some(auth.digest_bytes.to_vec());
    let PublicKey::Symmetric { k, .. } = keys::load_public(&mac_key).unwrap() else {
        panic!()
    };
    mac0.verify_payload_tag(
        b"",
        || "no payload",
        |tag, data| {
            use hmac::{KeyInit, Mac};
            let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&k).unwrap();
            m.update(data);
            m.verify_slice(tag).map_err(|_| "bad tag")
        },
    )
    .unwrap();
}

fn verify(public: &PublicKey, sig: &[u8], data: &[u8]) -> Result<(), String> {
    match public {
        PublicKey::P256(k) => {
            use p256::ecdsa::signature::Verifier;
            let vk = p256::ecdsa::VerifyingKey::from(*k);
            vk.verify(
                data,
                &p256::ecdsa::Signature::from_slice(sig).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())
        }
        PublicKey::Ed25519(k) => k
            .verify_strict(
                data,
                &ed25519_dalek::Signature::from_slice(sig).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string()),
        PublicKey::HssLms(p) => {
            hbs_lms::verify::<hbs_lms::Sha256_256>(data, sig, p).map_err(|_| "hss".to_string())
        }
        PublicKey::MlDsa65(k) => {
            use ml_dsa::signature::Verifier;
            let s =
                ml_dsa::Signature::<ml_dsa::MlDsa65>::try_from(sig).map_err(|e| e.to_string())?;
            k.verify(data, &s).map_err(|e| e.to_string())
        }
        _ => Err("not a signing key".into()),
    }
}

#[test]
fn coset_reads_our_encryption_info_and_decrypts_with_its_own_aad() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let dir = tempfile::tempdir().unwrap();
    let signer = key(dir.path(), KeyAlg::Ed25519);
    let kek = key(dir.path(), KeyAlg::A128Kw);
    let built = release::build(
        &request(Tier::Upgraded, vec![signer], vec![kek.clone()]),
        &mut |_, _, _| {},
    )
    .unwrap();
    let env = Envelope::decode(&built.envelope).unwrap();
    let manifest =
        suitcase_manifest::Manifest::decode_unauthenticated(env.manifest_bytes()).unwrap();
    let Some(suitcase_manifest::Severable::Inline(install)) = manifest.install else {
        panic!("install inline")
    };
    let info = install
        .iter()
        .find_map(|(_, c)| match c {
            suitcase_manifest::Command::OverrideParameters(p) => p.iter().find_map(|p| match p {
                suitcase_manifest::Parameter::EncryptionInfo(b) => Some(b.to_vec()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap();
    let mut encrypt =
        coset::CoseEncrypt::from_tagged_slice(&info).expect("coset parses our COSE_Encrypt");
    assert_eq!(encrypt.recipients.len(), 1);
    let recipient = &encrypt.recipients[0];
    assert!(
        recipient
            .protected
            .original_data
            .as_deref()
            .unwrap_or_default()
            .is_empty(),
        "AES-KW recipient protected header is empty"
    );
    // Unwrap the CEK with the KEK.
    let private = keys::load_private(&kek).unwrap();
    let keys::PrivateKey::Symmetric { k, .. } = private else {
        panic!()
    };
    let wrapped = recipient.ciphertext.clone().unwrap();
    let mut cek = [0u8; 16];
    {
        use aes::cipher::KeyInit as _;
        aes_kw::KwAes128::new_from_slice(&k)
            .unwrap()
            .unwrap_key(&wrapped, &mut cek)
            .unwrap();
    }
    // coset builds the Enc_structure; AES-GCM with that AAD opens our ciphertext.
    encrypt.ciphertext = Some(built.payloads[0].bytes.clone());
    let iv = encrypt.unprotected.iv.clone();
    let plaintext = encrypt
        .decrypt_ciphertext(
            b"",
            || "missing",
            |ct, aad| {
                aes_gcm::Aes128Gcm::new_from_slice(&cek)
                    .unwrap()
                    .decrypt(
                        &aes_gcm::Nonce::try_from(iv.as_slice()).unwrap(),
                        Payload { msg: ct, aad },
                    )
                    .map_err(|_| "decrypt")
            },
        )
        .unwrap();
    assert_eq!(plaintext, b"interop payload");
    let _ = encrypt.to_vec();
}

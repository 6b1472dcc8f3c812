//! Every security tier end to end: generate keys, build a release, then authenticate, decrypt
//! and install it on a simulated device; and the same with the wrong keys, which must fail.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::{Tier, uuid};
use suitcase_manifest::memory::{Effect, MemoryComponent, MemoryDevice};
use suitcase_manifest::{
    AuthError, Envelope, Error, Permissions, Processor, ProcessorPolicy, Reason, Rule, TrustAnchor,
    TrustPolicy,
};

const HSS_TEST_PARAMS: &str = "h5w4";

fn key(dir: &Path, alg: KeyAlg, name: &str) -> PathBuf {
    let g = keys::generate(alg, HSS_TEST_PARAMS).unwrap();
    let path = dir.join(name);
    keys::write_atomic(&path, &g.private, true).unwrap();
    path
}

struct Keys {
    signers: Vec<PathBuf>,
    recipients_public: Vec<PathBuf>,
    recipients_private: Vec<PathBuf>,
}

fn keys_for(dir: &Path, tier: Tier) -> Keys {
    let (sign, recipients): (Vec<KeyAlg>, Vec<KeyAlg>) = match tier {
        Tier::Basic => (vec![KeyAlg::Es256], vec![]),
        Tier::Upgraded => (vec![KeyAlg::Ed25519], vec![KeyAlg::A128Kw]),
        Tier::Enhanced => (
            vec![KeyAlg::Es256, KeyAlg::Ed25519],
            vec![KeyAlg::P256Ecdh, KeyAlg::X25519],
        ),
        Tier::Quantum => (
            vec![KeyAlg::Ed25519, KeyAlg::HssLms, KeyAlg::MlDsa65],
            vec![KeyAlg::MlKem768],
        ),
    };
    let signers = sign
        .iter()
        .enumerate()
        .map(|(i, a)| key(dir, *a, &format!("{}-signer{i}.key", tier.name())))
        .collect();
    let recipients_private: Vec<PathBuf> = recipients
        .iter()
        .enumerate()
        .map(|(i, a)| key(dir, *a, &format!("{}-device{i}.key", tier.name())))
        .collect();
    let recipients_public = recipients_private
        .iter()
        .map(|p| {
            let public = keys::load_public(p).unwrap();
            let (bytes, _) = public.encode().unwrap();
            let out = p.with_extension("pub");
            std::fs::write(&out, bytes).unwrap();
            out
        })
        .collect();
    Keys {
        signers,
        recipients_public,
        recipients_private,
    }
}

fn image() -> Vec<u8> {
    (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn request(tier: Tier, k: &Keys) -> ReleaseRequest {
    let vendor = uuid::vendor("example.com");
    ReleaseRequest {
        sequence: 42,
        tier,
        vendor,
        class: uuid::class(&vendor, "thermostat"),
        device: None,
        images: vec![ImageInput {
            name: "app.bin".into(),
            bytes: image(),
            component: vec![vec![0]],
            uri: Some("https://fw.example.com/app.bin".into()),
            integrated: false,
            invoke: true,
            delta_from: None,
        }],
        sign: k.signers.clone(),
        encrypt_for: k.recipients_public.clone(),
        x5chain: vec![],
        content: None,
        reference_uri: None,
        description: Some(format!("{} tier test release", tier.name())),
    }
}

fn device(built: &release::BuiltRelease, decrypt: &[PathBuf]) -> MemoryDevice {
    let vendor = uuid::vendor("example.com");
    let mut dev = MemoryDevice {
        vendor_id: Some((false, vendor.to_vec())),
        class_id: Some(uuid::class(&vendor, "thermostat").to_vec()),
        components: built
            .components
            .iter()
            .map(|id| MemoryComponent {
                id: id.clone(),
                capacity: 1 << 20,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    for p in &built.payloads {
        dev.payloads.push((p.uri.clone().unwrap(), p.bytes.clone()));
    }
    for path in decrypt {
        let private = keys::load_private(path).unwrap();
        dev.keys.keys.push((None, private.key_material().unwrap()));
    }
    dev
}

fn install(
    envelope: &[u8],
    anchors: &[TrustAnchor<'_>],
    policy: &TrustPolicy<'_>,
    dev: &mut MemoryDevice,
) -> Result<(), Error> {
    let verified = Envelope::decode(envelope)?.verify(anchors, policy)?;
    let mut p = Processor::new(
        &verified,
        dev,
        ProcessorPolicy {
            installed_sequence: Some(41),
            ..Default::default()
        },
    )?;
    p.update()?;
    p.invoke()
}

fn policy_for(tier: Tier) -> TrustPolicy<'static> {
    let profile = tier.profile();
    TrustPolicy {
        threshold: NonZeroUsize::new(profile.device_threshold).unwrap(),
        hybrid: profile.hybrid,
        ..TrustPolicy::default()
    }
}

#[test]
fn every_tier_round_trips_and_rejects_wrong_keys() {
    let dir = tempfile::tempdir().unwrap();
    for tier in Tier::ALL {
        let k = keys_for(dir.path(), tier);
        let built = release::build(&request(tier, &k), &mut |_, _, _| {})
            .unwrap_or_else(|e| panic!("{}: {e}", tier.name()));
        assert_eq!(
            built.payloads[0].encrypted,
            tier != Tier::Basic,
            "{}",
            tier.name()
        );
        if tier != Tier::Basic {
            assert_ne!(
                built.payloads[0].bytes,
                image(),
                "the served payload must be ciphertext"
            );
        }
        let publics: Vec<_> = k
            .signers
            .iter()
            .map(|p| keys::load_public(p).unwrap())
            .collect();
        let anchors: Vec<TrustAnchor<'_>> = publics
            .iter()
            .map(|p| TrustAnchor::new("signer", p.as_trust_key().unwrap()))
            .collect();
        let policy = policy_for(tier);

        // The right keys: installed, verified, invoked.
        let mut dev = device(&built, &k.recipients_private);
        install(&built.envelope, &anchors, &policy, &mut dev)
            .unwrap_or_else(|e| panic!("{}: {e}", tier.name()));
        assert_eq!(dev.components[0].content, image(), "{}", tier.name());
        assert!(
            dev.effects
                .iter()
                .any(|e| matches!(e, Effect::Invoked { component: 0, .. }))
        );

        // A signer the device does not trust: reason `signature`.
        let stranger =
            keys::load_public(&key(dir.path(), KeyAlg::Ed25519, "stranger.key")).unwrap();
        let wrong = [TrustAnchor::new(
            "stranger",
            stranger.as_trust_key().unwrap(),
        )];
        let err = install(
            &built.envelope,
            &wrong,
            &TrustPolicy::default(),
            &mut device(&built, &k.recipients_private),
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::Signature, "{}: {err}", tier.name());

        // The wrong decryption key: reason `decrypt`, and nothing installed.
        if tier != Tier::Basic {
            let other_alg = match tier {
                Tier::Upgraded => KeyAlg::A128Kw,
                Tier::Enhanced => KeyAlg::X25519,
                _ => KeyAlg::MlKem768,
            };
            let other = key(dir.path(), other_alg, "other-device.key");
            let mut dev = device(&built, &[other]);
            let err = install(&built.envelope, &anchors, &policy, &mut dev).unwrap_err();
            assert_eq!(err.reason(), Reason::Decrypt, "{}: {err}", tier.name());
            assert!(dev.components[0].content.is_empty());
        }
    }
}

#[test]
fn quantum_tier_digests_with_shake256() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys_for(dir.path(), Tier::Quantum);
    let built = release::build(&request(Tier::Quantum, &k), &mut |_, _, _| {}).unwrap();
    assert_eq!(
        built.digest_algorithm,
        suitcase_manifest::DigestAlgorithm::Shake256
    );
    assert_eq!(built.manifest_digest.len(), 64);
    let algs: Vec<i64> = built.signatures.iter().map(|s| s.1).collect();
    assert_eq!(algs, [-19, -46, -49]);
}

#[test]
fn hybrid_policy_rejects_a_release_with_only_one_kind_of_signature() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys_for(dir.path(), Tier::Quantum);
    let built = release::build(&request(Tier::Quantum, &k), &mut |_, _, _| {}).unwrap();
    let publics: Vec<_> = k
        .signers
        .iter()
        .map(|p| keys::load_public(p).unwrap())
        .collect();
    let hybrid = policy_for(Tier::Quantum);
    // The device trusts only the classical key: a quantum device must refuse.
    let classical_only = [TrustAnchor::new(
        "ed25519",
        publics[0].as_trust_key().unwrap(),
    )];
    let err = Envelope::decode(&built.envelope)
        .unwrap()
        .verify(
            &classical_only,
            &TrustPolicy {
                threshold: NonZeroUsize::MIN,
                ..hybrid
            },
        )
        .unwrap_err();
    assert_eq!(err, Error::Unauthenticated(AuthError::HybridNotMet));
    // Only the post-quantum keys: refused too.
    let pq_only: Vec<_> = publics[1..]
        .iter()
        .map(|p| TrustAnchor::new("pq", p.as_trust_key().unwrap()))
        .collect();
    let err = Envelope::decode(&built.envelope)
        .unwrap()
        .verify(&pq_only, &hybrid)
        .unwrap_err();
    assert_eq!(err, Error::Unauthenticated(AuthError::HybridNotMet));
}

#[test]
fn profile_refuses_keys_that_do_not_fit_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let mut k = keys_for(dir.path(), Tier::Basic);
    // Basic sends plaintext: a recipient is refused.
    k.recipients_public = vec![key(dir.path(), KeyAlg::A128Kw, "kek.key")];
    let err = release::build(&request(Tier::Basic, &k), &mut |_, _, _| {}).unwrap_err();
    assert!(err.to_string().contains("plaintext"), "{err}");
    // Quantum without a post-quantum signer.
    let k = Keys {
        signers: vec![key(dir.path(), KeyAlg::Es256, "a.key")],
        recipients_public: vec![],
        recipients_private: vec![],
    };
    let err = release::build(&request(Tier::Quantum, &k), &mut |_, _, _| {}).unwrap_err();
    assert!(err.to_string().contains("post-quantum"), "{err}");
    // Enhanced does not take HMAC (no PKI).
    let k = Keys {
        signers: vec![key(dir.path(), KeyAlg::Hmac256, "m.key")],
        recipients_public: vec![],
        recipients_private: vec![],
    };
    assert!(release::build(&request(Tier::Enhanced, &k), &mut |_, _, _| {}).is_err());
}

#[test]
fn two_signer_rule_needs_the_operator_countersignature() {
    let dir = tempfile::tempdir().unwrap();
    let author = key(dir.path(), KeyAlg::Es256, "author.key");
    let operator = key(dir.path(), KeyAlg::Ed25519, "operator.key");
    let k = Keys {
        signers: vec![author.clone()],
        recipients_public: vec![],
        recipients_private: vec![],
    };
    let built = release::build(&request(Tier::Basic, &k), &mut |_, _, _| {}).unwrap();
    let (a, o) = (
        keys::load_public(&author).unwrap(),
        keys::load_public(&operator).unwrap(),
    );
    let anchors = [
        TrustAnchor::new("author", a.as_trust_key().unwrap()),
        TrustAnchor::new("operator", o.as_trust_key().unwrap()),
    ];
    let component = suitcase_manifest::ComponentId::decode(&[0x81, 0x41, 0x00]).unwrap();
    let rules = [Rule {
        components: component,
        threshold: NonZeroUsize::new(2).unwrap(),
        signers: Some(&[0, 1]),
    }];
    let policy = TrustPolicy {
        rules: &rules,
        ..TrustPolicy::default()
    };
    // Author alone: refused (k-1 signatures).
    let err = Envelope::decode(&built.envelope)
        .unwrap()
        .verify(&anchors, &policy)
        .unwrap_err();
    assert_eq!(
        err,
        Error::Unauthenticated(AuthError::ThresholdNotMet {
            required: 2,
            verified: 1
        })
    );
    // The operator countersigns: the manifest digest is unchanged, both signatures verify.
    let (countersigned, _) = release::countersign(&built.envelope, &operator, None).unwrap();
    let v = Envelope::decode(&countersigned)
        .unwrap()
        .verify(&anchors, &policy)
        .unwrap();
    assert_eq!(v.signers().count(), 2);
    assert_eq!(v.digest().as_bytes(), built.manifest_digest.as_slice());
    let mut dev = device(&built, &[]);
    let mut p = Processor::new(&v, &mut dev, ProcessorPolicy::default()).unwrap();
    p.update().unwrap();
}

#[test]
fn anchor_permissions_limit_what_a_signer_may_install() {
    let dir = tempfile::tempdir().unwrap();
    let author = key(dir.path(), KeyAlg::Es256, "author.key");
    let k = Keys {
        signers: vec![author.clone()],
        recipients_public: vec![],
        recipients_private: vec![],
    };
    let built = release::build(&request(Tier::Basic, &k), &mut |_, _, _| {}).unwrap();
    let a = keys::load_public(&author).unwrap();
    // The author may only touch component [h'01']: a manifest for [h'00'] is not authorised.
    let other = [suitcase_manifest::ComponentId::decode(&[0x81, 0x41, 0x01]).unwrap()];
    let limited = [TrustAnchor {
        permissions: Permissions {
            components: Some(&other),
            actions: suitcase_manifest::Actions::ALL,
        },
        ..TrustAnchor::new("author", a.as_trust_key().unwrap())
    }];
    let err = Envelope::decode(&built.envelope)
        .unwrap()
        .verify(&limited, &TrustPolicy::default())
        .unwrap_err();
    assert_eq!(err, Error::Unauthenticated(AuthError::NotAuthorized));
    // Invoke-only rights (a bootloader key): verification passes, but installing is refused.
    let boot_only = [TrustAnchor {
        permissions: Permissions {
            components: None,
            actions: suitcase_manifest::Actions::INVOKE,
        },
        ..TrustAnchor::new("author", a.as_trust_key().unwrap())
    }];
    let v = Envelope::decode(&built.envelope)
        .unwrap()
        .verify(&boot_only, &TrustPolicy::default())
        .unwrap();
    let mut dev = device(&built, &[]);
    let err = Processor::new(&v, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap_err();
    assert_eq!(err, Error::Unauthenticated(AuthError::NotAuthorized));
    assert!(
        dev.effects.is_empty(),
        "nothing fetched or written without INSTALL rights"
    );
}

#[test]
fn integrated_and_multi_image_releases() {
    let dir = tempfile::tempdir().unwrap();
    let signer = key(dir.path(), KeyAlg::Ed25519, "s.key");
    let kek = key(dir.path(), KeyAlg::A128Kw, "kek.key");
    let mut req = request(
        Tier::Upgraded,
        &Keys {
            signers: vec![signer.clone()],
            recipients_public: vec![kek.clone()],
            recipients_private: vec![],
        },
    );
    req.images.push(ImageInput {
        name: "radio.bin".into(),
        bytes: b"secondary MCU image".to_vec(),
        component: vec![b"radio".to_vec()],
        uri: None,
        integrated: true,
        invoke: false,
        delta_from: None,
    });
    let built = release::build(&req, &mut |_, _, _| {}).unwrap();
    assert_eq!(
        built.components.len(),
        4,
        "two targets and two staging components"
    );
    let public = keys::load_public(&signer).unwrap();
    let anchors = [TrustAnchor::new("s", public.as_trust_key().unwrap())];
    let mut dev = device(&MaybeIntegrated(&built).without_integrated(), &[kek]);
    install(&built.envelope, &anchors, &TrustPolicy::default(), &mut dev).unwrap();
    assert_eq!(dev.components[0].content, image());
    assert_eq!(dev.components[1].content, b"secondary MCU image");
}

/// Integrated payloads come from the envelope, not from a server.
struct MaybeIntegrated<'a>(&'a release::BuiltRelease);

impl MaybeIntegrated<'_> {
    fn without_integrated(&self) -> release::BuiltRelease {
        let mut b = self.0.clone();
        b.payloads.retain(|p| p.uri.is_some());
        b
    }
}

mod pki {
    use super::*;
    use suitcase_author::x509::{Issuer, issue};

    struct Pki {
        root: Vec<u8>,
        chain: PathBuf,
        signer: PathBuf,
    }

    fn pki(dir: &Path, prefix: &str) -> Pki {
        let root_key =
            keys::load_private(&key(dir, KeyAlg::Es256, &format!("{prefix}-root.key"))).unwrap();
        let inter_key =
            keys::load_private(&key(dir, KeyAlg::Es256, &format!("{prefix}-inter.key"))).unwrap();
        let signer = key(dir, KeyAlg::Es256, &format!("{prefix}-signer.key"));
        let signer_key = keys::load_private(&signer).unwrap();
        let (
            keys::PrivateKey::P256(root_key),
            keys::PrivateKey::P256(inter_key),
            keys::PrivateKey::P256(signer_key),
        ) = (root_key, inter_key, signer_key)
        else {
            panic!("P-256 keys");
        };
        let root = issue(
            &root_key.public_key(),
            &format!("{prefix} root"),
            true,
            3650,
            &Issuer::SelfSigned(&root_key),
        )
        .unwrap();
        let inter = issue(
            &inter_key.public_key(),
            &format!("{prefix} intermediate"),
            true,
            3650,
            &Issuer::Ca {
                key: &root_key,
                cert: &root,
            },
        )
        .unwrap();
        let leaf = issue(
            &signer_key.public_key(),
            &format!("{prefix} release signer"),
            false,
            365,
            &Issuer::Ca {
                key: &inter_key,
                cert: &inter,
            },
        )
        .unwrap();
        let chain = dir.join(format!("{prefix}-chain.pem"));
        std::fs::write(&chain, suitcase_author::x509::to_pem(&[leaf, inter])).unwrap();
        Pki {
            root,
            chain,
            signer,
        }
    }

    fn build_signed(pki: &Pki, chain: Option<PathBuf>) -> Vec<u8> {
        let k = Keys {
            signers: vec![pki.signer.clone()],
            recipients_public: vec![],
            recipients_private: vec![],
        };
        let mut req = request(Tier::Enhanced, &k);
        req.x5chain = chain.into_iter().collect();
        release::build(&req, &mut |_, _, _| {}).unwrap().envelope
    }

    fn verify_with_root(envelope: &[u8], root: &[u8], time: Option<u64>) -> Result<(), Error> {
        let anchors = [TrustAnchor::new(
            "root",
            suitcase_manifest::PublicKey::X509Root(root),
        )];
        let policy = TrustPolicy {
            time,
            ..TrustPolicy::default()
        };
        Envelope::decode(envelope)?
            .verify(&anchors, &policy)
            .map(|_| ())
    }

    #[test]
    fn a_signer_certified_by_the_trusted_root_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let p = pki(dir.path(), "acme");
        let envelope = build_signed(&p, Some(p.chain.clone()));
        verify_with_root(&envelope, &p.root, Some(release::now())).unwrap();
        let auth = Envelope::decode(&envelope).unwrap();
        let block = auth.authentication().unwrap().blocks().next().unwrap();
        assert!(block.signers().next().unwrap().headers.x5chain.is_some());
    }

    #[test]
    fn attack_certificate_used_after_it_expired() {
        let dir = tempfile::tempdir().unwrap();
        let p = pki(dir.path(), "acme");
        let envelope = build_signed(&p, Some(p.chain.clone()));
        let in_two_years = release::now() + 2 * 365 * 86_400;
        let err = verify_with_root(&envelope, &p.root, Some(in_two_years)).unwrap_err();
        assert_eq!(err, Error::Unauthenticated(AuthError::NoTrustedSignature));
        // Without a clock the device cannot check validity and trusts no chain.
        assert!(verify_with_root(&envelope, &p.root, None).is_err());
    }

    #[test]
    fn attack_chain_from_another_certificate_authority() {
        let dir = tempfile::tempdir().unwrap();
        let ours = pki(dir.path(), "acme");
        let theirs = pki(dir.path(), "evil");
        // A valid chain, but to a root this device does not trust.
        let envelope = build_signed(&theirs, Some(theirs.chain.clone()));
        assert!(verify_with_root(&envelope, &ours.root, Some(release::now())).is_err());
        // A signature without any chain cannot be tied to the root.
        let envelope = build_signed(&ours, None);
        assert!(verify_with_root(&envelope, &ours.root, Some(release::now())).is_err());
    }

    #[test]
    fn attack_signer_key_swapped_under_a_valid_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let p = pki(dir.path(), "acme");
        // Sign with another key but present acme's chain: the leaf key does not match.
        let intruder = key(dir.path(), KeyAlg::Es256, "intruder.key");
        let k = Keys {
            signers: vec![intruder],
            recipients_public: vec![],
            recipients_private: vec![],
        };
        let mut req = request(Tier::Enhanced, &k);
        req.x5chain = vec![p.chain];
        let err = release::build(&req, &mut |_, _, _| {}).unwrap_err();
        assert!(
            err.to_string()
                .contains("certifies none of the signing keys"),
            "{err}"
        );
    }
}

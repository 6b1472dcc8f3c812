//! SUIT dependencies (draft-ietf-suit-trust-domains-12): the working group's vectors processed
//! to the end on an in-memory device, an operator's root manifest wrapping an author's manifest
//! (two trust domains, two signers), and every way of tampering with a dependency, each test
//! named after the attack, with the clause that refuses it.

#![expect(clippy::unwrap_used, clippy::panic, reason = "test code")]

use ed25519_dalek::Signer as _;
use p256::pkcs8::DecodePrivateKey;
use suitcase_manifest::build::{
    Cmd, EncodedManifest, EnvelopeBuilder, Index, ManifestBuilder, Param,
};
use suitcase_manifest::codepoints::alg;
use suitcase_manifest::encryption::KeyMaterial;
use suitcase_manifest::memory::{MemoryComponent, MemoryDevice};
use suitcase_manifest::{
    Actions, AuthError, ComponentId, Condition, DependencyCause, DigestAlgorithm, Directive,
    Envelope, Error, MAX_DEPENDENCY_DEPTH, Permissions, Processor, ProcessorPolicy, PublicKey,
    Reason, TrustAnchor, TrustPolicy, Unsupported, VerifiedManifest,
};

mod common;

use common::{example_key, file, p256_anchor, vector};

fn device(components: &[&[u8]]) -> MemoryDevice {
    MemoryDevice {
        components: components
            .iter()
            .map(|id| MemoryComponent {
                id: vec![id.to_vec()],
                capacity: 1 << 16,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn content(dev: &MemoryDevice, id: &[u8]) -> Vec<u8> {
    dev.component(&[id]).unwrap().content.clone()
}

/// Runs the update procedure with dependencies authenticated under `anchors`; returns the
/// result and the dependency failure, if any.
fn update(
    envelope: &[u8],
    root: &[TrustAnchor<'_>],
    anchors: &[TrustAnchor<'_>],
    dev: &mut MemoryDevice,
    buffer: &mut [u8],
) -> (
    Result<(), Error>,
    Option<suitcase_manifest::DependencyFailure>,
) {
    let verified = verified(envelope, root);
    let mut p = Processor::new(&verified, dev, ProcessorPolicy::default())
        .unwrap()
        .with_dependency_trust(anchors, TrustPolicy::default())
        .with_dependency_buffer(buffer);
    let result = p.update();
    (result, p.dependency_failure())
}

/// `envelope` decoded and verified under `anchors` (the default policy).
fn verified<'a>(envelope: &'a [u8], anchors: &[TrustAnchor<'_>]) -> VerifiedManifest<'a> {
    Envelope::decode(envelope)
        .unwrap()
        .verify(anchors, &TrustPolicy::default())
        .unwrap()
}

/// Runs the update procedure of `envelope`, verified under `anchors`, on a processor without
/// dependency support; returns its error.
fn update_without_dependency_trust(
    envelope: &[u8],
    anchors: &[TrustAnchor<'_>],
    dev: &mut MemoryDevice,
) -> Error {
    let verified = verified(envelope, anchors);
    Processor::new(&verified, dev, ProcessorPolicy::default())
        .unwrap()
        .update()
        .unwrap_err()
}

// ---- The working group's vectors -------------------------------------------------------------

#[test]
fn trust_domains_example1_fetches_its_dependency_by_uri_and_installs_both() {
    let root = vector("trust-domains/example1_process.hex");
    let mut dev = device(&[b"00", b"10", b"dependent.suit"]);
    dev.payloads.push((
        "http://example.com/dependent.suit".into(),
        vector("trust-domains/example0_dependent.hex"),
    ));
    let mut buffer = [0u8; 512];
    let anchors = [example_key()];
    let (result, failure) = update(&root, &anchors, &anchors, &mut dev, &mut buffer);
    result.unwrap();
    assert_eq!(failure, None);
    // The dependency's install wrote its component, then the dependent's install its own.
    assert_eq!(content(&dev, b"00"), b"hello world");
    assert_eq!(content(&dev, b"10"), b" in multiple trust domains");
}

#[test]
fn trust_domains_example2_integrated_dependency_processes_after_image_match() {
    // The dependency is the envelope member "#dependent.suit"; install runs process-dependency
    // after dependency-resolution's fetch and image-match only (see the module doc of
    // suitcase_manifest::dependency for why that is accepted).
    let root = vector("trust-domains/example2_integrated.hex");
    let mut dev = device(&[b"00", b"10"]);
    let anchors = [example_key()];
    let (result, _) = update(&root, &anchors, &anchors, &mut dev, &mut []);
    result.unwrap();
    assert_eq!(content(&dev, b"00"), b"hello world");
    assert_eq!(content(&dev, b"10"), b" in multiple trust domains");
}

fn recipient_key() -> KeyMaterial {
    KeyMaterial::P256(
        p256::SecretKey::from_pkcs8_pem(&file("keys/fwenc-esdh-recipient-p256-private.pem"))
            .unwrap(),
    )
}

#[test]
fn encryption_with_dependency_decrypts_with_the_dependents_encryption_info() {
    // Root signed by the distribution system's key sets content and encryption info; the
    // author's dependency (another key) writes, decrypting, and image-matches the plaintext.
    let root = vector("encryption/suit-manifest-es-ecdh-dependency.signed.hex");
    let mut dev = device(&[b"decrypted-firmware"]);
    dev.keys
        .keys
        .push((Some(b"kid-2".to_vec()), recipient_key()));
    let operator = [p256_anchor("keys/fwenc-dependent-signer-public.pem")];
    let anchors = [
        p256_anchor("keys/fwenc-dependent-signer-public.pem"),
        example_key(),
    ];
    let (result, failure) = update(&root, &operator, &anchors, &mut dev, &mut []);
    result.unwrap();
    assert_eq!(failure, None);
    assert_eq!(
        content(&dev, b"decrypted-firmware"),
        b"This is a real firmware image."
    );
}

#[test]
fn without_dependency_trust_dependencies_stay_unsupported() {
    // Trust-domains §5.1: a processor that does not support dependencies must abort: before
    // any command, on the manifest's suit-dependencies.
    let root = vector("trust-domains/example2_integrated.hex");
    let mut dev = device(&[b"00", b"10"]);
    let err = update_without_dependency_trust(&root, &[example_key()], &mut dev);
    assert_eq!(
        err,
        Error::UnsupportedCritical {
            what: Unsupported::CommonMember,
            id: 1
        }
    );
}

// ---- Attacks on the vectors ------------------------------------------------------------------

#[test]
fn attack_dependency_signed_by_an_untrusted_key_is_refused() {
    // The device trusts the distribution system's key only: the dependency, signed by the
    // author's key, does not authenticate (trust-domains §5.1, §5.6.4 step 1), and nothing of
    // it is written.
    let root = vector("encryption/suit-manifest-es-ecdh-dependency.signed.hex");
    let mut dev = device(&[b"decrypted-firmware"]);
    dev.keys
        .keys
        .push((Some(b"kid-2".to_vec()), recipient_key()));
    let operator = [p256_anchor("keys/fwenc-dependent-signer-public.pem")];
    let (result, failure) = update(&root, &operator, &operator, &mut dev, &mut []);
    let err = result.unwrap_err();
    assert_eq!(err, Error::Unauthenticated(AuthError::NoTrustedSignature));
    assert_eq!(err.reason(), Reason::Signature);
    assert_eq!(
        failure.unwrap().cause,
        DependencyCause::Unauthenticated(AuthError::NoTrustedSignature)
    );
    assert!(content(&dev, b"decrypted-firmware").is_empty());
}

#[test]
fn attack_substituted_dependency_at_the_uri_is_refused_by_its_digest() {
    // The server hands out another manifest, validly signed by the same author, in place of
    // the one the dependent names: dependency-resolution's image-match over its manifest
    // digest refuses it (trust-domains §5.2.2) before anything is installed.
    let root = vector("trust-domains/example1_process.hex");
    let mut dev = device(&[b"00", b"10", b"dependent.suit"]);
    // Example 0's manifest with other content, signed with the same (published) key.
    let dependency = vector("trust-domains/example0_dependent.hex");
    let mut manifest = Envelope::decode(&dependency)
        .unwrap()
        .manifest_bytes()
        .to_vec();
    let at = manifest.windows(5).position(|w| w == b"hello").unwrap();
    manifest[at..at + 5].copy_from_slice(b"HACKD");
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&file("keys/suit-example-es256-private.pem"))
        .unwrap();
    let mut b = EnvelopeBuilder::from_encoded(
        EncodedManifest {
            manifest,
            severed: vec![],
        },
        DigestAlgorithm::Sha256,
    );
    b.sign1(alg::ESP256, None, |tbs| {
        let s: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&key, tbs);
        s.to_bytes().to_vec()
    });
    let other = b.encode();
    assert_eq!(other.len(), dependency.len());
    dev.payloads
        .push(("http://example.com/dependent.suit".into(), other));
    let mut buffer = [0u8; 512];
    let anchors = [example_key()];
    let (result, _) = update(&root, &anchors, &anchors, &mut dev, &mut buffer);
    let err = result.unwrap_err();
    assert_eq!(
        err,
        Error::ConditionFailed {
            condition: Condition::ImageMatch,
            component: 1
        }
    );
    assert_eq!(err.reason(), Reason::Digest);
    assert!(content(&dev, b"00").is_empty());
}

#[test]
fn attack_tampered_integrated_dependency_is_refused_by_its_digest() {
    // The integrated dependency is outside the root's signed manifest: a flipped byte in it
    // leaves the root authentic but the dependency no longer has the named digest.
    let mut root = vector("trust-domains/example2_integrated.hex");
    let dep = vector("trust-domains/example0_dependent.hex");
    let at = root.windows(dep.len()).position(|w| w == dep).unwrap();
    // 'hello world' in the dependency's install section.
    let hello = dep.windows(5).position(|w| w == b"hello").unwrap();
    root[at + hello] ^= 0x20;
    let mut dev = device(&[b"00", b"10"]);
    let anchors = [example_key()];
    let (result, _) = update(&root, &anchors, &anchors, &mut dev, &mut []);
    assert_eq!(result.unwrap_err().reason(), Reason::Digest);
    assert!(content(&dev, b"00").is_empty());
}

#[test]
fn attack_dependency_larger_than_the_buffer_is_refused() {
    let root = vector("trust-domains/example1_process.hex");
    let mut dev = device(&[b"00", b"10", b"dependent.suit"]);
    dev.payloads.push((
        "http://example.com/dependent.suit".into(),
        vector("trust-domains/example0_dependent.hex"),
    ));
    let mut buffer = [0u8; 100];
    let anchors = [example_key()];
    let (result, failure) = update(&root, &anchors, &anchors, &mut dev, &mut buffer);
    assert_eq!(result.unwrap_err().reason(), Reason::Size);
    assert_eq!(failure.unwrap().cause, DependencyCause::TooLarge);
}

#[test]
fn trust_domains_example2_updates_then_invokes_on_one_processor() {
    // Example 1's invoke section does not process its dependency, whose invoke section then
    // does not run: load and invoke are the dependent's to decide (see
    // suitcase_manifest::dependency); the update procedure's sections are held to §5.1.
    let root = vector("trust-domains/example2_integrated.hex");
    let anchors = [example_key()];
    let verified = verified(&root, &anchors);
    let mut dev = device(&[b"00", b"10"]);
    let mut p = Processor::new(&verified, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .with_dependency_trust(&anchors, TrustPolicy::default());
    p.update().unwrap();
    p.invoke().unwrap();
    assert_eq!(
        dev.effects.last(),
        Some(&suitcase_manifest::memory::Effect::Invoked {
            component: 0,
            args: Some(b"cat 00 10".to_vec())
        })
    );
}

// ---- An operator's root wrapping an author's manifest ----------------------------------------

fn operator_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[1; 32])
}

fn author_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[2; 32])
}

fn stranger_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[3; 32])
}

fn sign(
    m: &ManifestBuilder,
    key: &ed25519_dalek::SigningKey,
    integrated: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    let mut b = EnvelopeBuilder::new(m, DigestAlgorithm::Sha256);
    for (name, bytes) in integrated {
        b.integrate(name, bytes.clone());
    }
    b.sign1(alg::ED25519, None, |tbs| key.sign(tbs).to_bytes().to_vec());
    b.encode()
}

const FIRMWARE: &[u8] = b"author's firmware 1.2";

/// The author's manifest: writes its firmware into `["fw"]` and checks it.
fn author_manifest() -> ManifestBuilder {
    ManifestBuilder {
        sequence_number: 3,
        components: vec![vec![b"fw".to_vec()]],
        shared_sequence: Some(vec![Cmd::OverrideParameters(vec![
            Param::ImageDigest(
                DigestAlgorithm::Sha256,
                DigestAlgorithm::Sha256.digest(FIRMWARE).as_bytes().to_vec(),
            ),
            Param::ImageSize(FIRMWARE.len() as u64),
        ])]),
        install: Some(vec![
            Cmd::SetParameters(vec![Param::Content(FIRMWARE.to_vec())]),
            Cmd::Directive(Directive::Write, 15),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]),
        ..Default::default()
    }
}

fn digest_of(envelope: &[u8]) -> Vec<u8> {
    let env = Envelope::decode(envelope).unwrap();
    DigestAlgorithm::Sha256
        .digest(env.manifest_wrapped())
        .as_bytes()
        .to_vec()
}

/// The operator's root: one component of its own (`["config"]`), the author's envelope as
/// dependency 1 (integrated as `#author.suit`), and `install` as given.
fn operator_root(dependency: &[u8], install: Vec<Cmd>) -> ManifestBuilder {
    ManifestBuilder {
        sequence_number: 10,
        components: vec![vec![b"config".to_vec()]],
        dependencies: vec![(1, Some(vec![b"author.suit".to_vec()]))],
        shared_sequence: Some(vec![
            Cmd::SetComponentIndex(Index::One(1)),
            Cmd::OverrideParameters(vec![Param::ImageDigest(
                DigestAlgorithm::Sha256,
                digest_of(dependency),
            )]),
        ]),
        dependency_resolution: Some(vec![
            Cmd::SetComponentIndex(Index::One(1)),
            Cmd::OverrideParameters(vec![Param::Uri("#author.suit".into())]),
            Cmd::Directive(Directive::Fetch, 15),
            Cmd::Condition(Condition::DependencyIntegrity, 15),
            Cmd::Directive(Directive::ProcessDependency, 15),
        ]),
        install: Some(install),
        ..Default::default()
    }
}

fn checked_install() -> Vec<Cmd> {
    vec![
        Cmd::SetComponentIndex(Index::One(1)),
        Cmd::Condition(Condition::DependencyIntegrity, 15),
        Cmd::Directive(Directive::ProcessDependency, 15),
        Cmd::SetComponentIndex(Index::One(0)),
        Cmd::OverrideParameters(vec![Param::Content(b"region=eu".to_vec())]),
        Cmd::Directive(Directive::Write, 15),
    ]
}

fn ed(key: &ed25519_dalek::SigningKey) -> PublicKey<'static> {
    PublicKey::Ed25519(key.verifying_key())
}

/// The operator's and the author's keys as plain anchors (as `manifest check --trust` builds
/// them): each may name every component.
fn plain_anchors() -> [TrustAnchor<'static>; 2] {
    [
        TrustAnchor::new("operator", ed(&operator_key())),
        TrustAnchor::new("author", ed(&author_key())),
    ]
}

/// The device's anchors: the operator may act on `["config"]` and on the dependency's slot
/// `["author.suit"]`, the author on `["fw"]` only (manifest §9, access control lists).
fn two_domains<'k>(
    operator_ids: &'k [ComponentId<'k>],
    author_ids: &'k [ComponentId<'k>],
) -> [TrustAnchor<'k>; 2] {
    [
        TrustAnchor {
            name: "operator",
            key: ed(&operator_key()),
            kid: None,
            permissions: Permissions {
                components: Some(operator_ids),
                actions: Actions::ALL,
            },
        },
        TrustAnchor {
            name: "author",
            key: ed(&author_key()),
            kid: None,
            permissions: Permissions {
                components: Some(author_ids),
                actions: Actions::ALL,
            },
        },
    ]
}

const CONFIG_ID: &[u8] = &[0x81, 0x46, b'c', b'o', b'n', b'f', b'i', b'g'];
const SLOT_ID: &[u8] = &[
    0x81, 0x4b, b'a', b'u', b't', b'h', b'o', b'r', b'.', b's', b'u', b'i', b't',
];
const FW_ID: &[u8] = &[0x81, 0x42, b'f', b'w'];

fn run_two_domains(
    root: &[u8],
) -> (
    Result<(), Error>,
    Option<suitcase_manifest::DependencyFailure>,
    MemoryDevice,
) {
    let operator_ids = [
        ComponentId::decode(CONFIG_ID).unwrap(),
        ComponentId::decode(SLOT_ID).unwrap(),
    ];
    let author_ids = [ComponentId::decode(FW_ID).unwrap()];
    let anchors = two_domains(&operator_ids, &author_ids);
    let mut dev = device(&[b"config", b"fw"]);
    let (result, failure) = update(root, &anchors, &anchors, &mut dev, &mut []);
    (result, failure, dev)
}

#[test]
fn operator_root_wraps_the_authors_manifest_two_signers() {
    let author = sign(&author_manifest(), &author_key(), &[]);
    let root = sign(
        &operator_root(&author, checked_install()),
        &operator_key(),
        &[("#author.suit", author)],
    );
    let (result, failure, dev) = run_two_domains(&root);
    result.unwrap();
    assert_eq!(failure, None);
    assert_eq!(content(&dev, b"fw"), FIRMWARE);
    assert_eq!(content(&dev, b"config"), b"region=eu");
}

#[test]
fn attack_operator_signs_the_dependency_itself_is_refused() {
    // The operator, who may not touch ["fw"], builds the "author's" manifest and signs it
    // with its own key: the dependency is authenticated with its own signers' permissions,
    // not the dependent's (trust-domains §5.1, manifest §9).
    let forged = sign(&author_manifest(), &operator_key(), &[]);
    let root = sign(
        &operator_root(&forged, checked_install()),
        &operator_key(),
        &[("#author.suit", forged)],
    );
    let (result, failure, dev) = run_two_domains(&root);
    assert_eq!(
        result.unwrap_err(),
        Error::Unauthenticated(AuthError::NotAuthorized)
    );
    assert_eq!(
        failure.unwrap().cause,
        DependencyCause::Unauthenticated(AuthError::NotAuthorized)
    );
    assert!(content(&dev, b"fw").is_empty());
}

#[test]
fn attack_dependency_signed_by_a_stranger_is_refused() {
    let forged = sign(&author_manifest(), &stranger_key(), &[]);
    let root = sign(
        &operator_root(&forged, checked_install()),
        &operator_key(),
        &[("#author.suit", forged)],
    );
    let (result, failure, _) = run_two_domains(&root);
    assert_eq!(result.unwrap_err().reason(), Reason::Signature);
    assert!(matches!(
        failure.unwrap().cause,
        DependencyCause::Unauthenticated(_)
    ));
}

#[test]
fn attack_dependent_skips_its_dependencys_install_is_refused() {
    // The root processes the author's manifest in dependency-resolution, then its install
    // section writes only its own component: the author's install (and image-match) never
    // runs. Trust-domains §5.1: "At the end of each section in the dependent: The
    // corresponding section in each Dependency has been executed, if present."
    let author = sign(&author_manifest(), &author_key(), &[]);
    let install = vec![
        Cmd::SetComponentIndex(Index::One(0)),
        Cmd::OverrideParameters(vec![Param::Content(b"region=eu".to_vec())]),
        Cmd::Directive(Directive::Write, 15),
    ];
    let root = sign(
        &operator_root(&author, install),
        &operator_key(),
        &[("#author.suit", author)],
    );
    let (result, failure, _) = run_two_domains(&root);
    assert_eq!(result.unwrap_err().reason(), Reason::Malformed);
    let failure = failure.unwrap();
    assert_eq!(
        (failure.index, failure.cause),
        (1, DependencyCause::SectionSkipped(20))
    );
}

#[test]
fn attack_dependency_digest_mismatch_is_refused_by_dependency_integrity() {
    // The root names one author manifest; another one, also signed by the author (an older
    // release, say), is put in its place: condition-dependency-integrity compares digests
    // (trust-domains §5.6.4 step 2) and aborts before any signature work.
    let named = sign(&author_manifest(), &author_key(), &[]);
    let mut older = author_manifest();
    older.sequence_number = 1;
    let older = sign(&older, &author_key(), &[]);
    let root = sign(
        &operator_root(&named, checked_install()),
        &operator_key(),
        &[("#author.suit", older)],
    );
    let (result, failure, dev) = run_two_domains(&root);
    let err = result.unwrap_err();
    assert_eq!(
        err,
        Error::ConditionFailed {
            condition: Condition::DependencyIntegrity,
            component: 1
        }
    );
    assert_eq!(err.reason(), Reason::Digest);
    assert_eq!(failure.unwrap().cause, DependencyCause::DigestMismatch);
    assert!(content(&dev, b"fw").is_empty());
}

#[test]
fn attack_process_dependency_on_a_component_not_listed_is_refused() {
    // process-dependency on the operator's own component 0, which suit-dependencies does not
    // list (trust-domains §5.4 step 1, §5.6.2).
    let author = sign(&author_manifest(), &author_key(), &[]);
    let install = vec![
        Cmd::SetComponentIndex(Index::One(0)),
        Cmd::Directive(Directive::ProcessDependency, 15),
    ];
    let root = sign(
        &operator_root(&author, install),
        &operator_key(),
        &[("#author.suit", author)],
    );
    let (result, failure, _) = run_two_domains(&root);
    assert_eq!(result.unwrap_err().reason(), Reason::Malformed);
    let failure = failure.unwrap();
    assert_eq!(
        (failure.index, failure.cause),
        (0, DependencyCause::NotListed)
    );
    assert!(failure.to_string().contains("does not list"), "{failure}");
}

#[test]
fn attack_process_dependency_without_integrity_check_is_refused() {
    // A root that fetches its dependency and processes it with no dependency-integrity and
    // no image-match: any manifest the author ever signed could stand in for the one the
    // root names (trust-domains §5.6.2).
    let author = sign(&author_manifest(), &author_key(), &[]);
    let mut m = operator_root(&author, checked_install());
    m.dependency_resolution = Some(vec![
        Cmd::SetComponentIndex(Index::One(1)),
        Cmd::OverrideParameters(vec![Param::Uri("#author.suit".into())]),
        Cmd::Directive(Directive::Fetch, 15),
        Cmd::Directive(Directive::ProcessDependency, 15),
    ]);
    let root = sign(&m, &operator_key(), &[("#author.suit", author)]);
    let (result, failure, dev) = run_two_domains(&root);
    assert_eq!(result.unwrap_err().reason(), Reason::Malformed);
    assert_eq!(failure.unwrap().cause, DependencyCause::NotIntegrityChecked);
    assert!(content(&dev, b"fw").is_empty());
}

#[test]
fn attack_dependency_refetched_after_its_integrity_check_is_refused() {
    // Trust-domains §5.6.4: a fetch to the dependency's component forgets the check; the
    // second envelope fetched after it is never processed.
    let author = sign(&author_manifest(), &author_key(), &[]);
    let mut other = author_manifest();
    other.sequence_number = 1;
    let other = sign(&other, &author_key(), &[]);
    let mut m = operator_root(&author, checked_install());
    m.dependency_resolution = Some(vec![
        Cmd::SetComponentIndex(Index::One(1)),
        Cmd::OverrideParameters(vec![Param::Uri("#author.suit".into())]),
        Cmd::Directive(Directive::Fetch, 15),
        Cmd::Condition(Condition::DependencyIntegrity, 15),
        Cmd::OverrideParameters(vec![Param::Uri("#other.suit".into())]),
        Cmd::Directive(Directive::Fetch, 15),
        Cmd::Directive(Directive::ProcessDependency, 15),
    ]);
    let root = sign(
        &m,
        &operator_key(),
        &[("#author.suit", author), ("#other.suit", other)],
    );
    let (result, failure, _) = run_two_domains(&root);
    assert!(result.is_err());
    assert_eq!(failure.unwrap().cause, DependencyCause::NotIntegrityChecked);
}

#[test]
fn attack_dependent_substitutes_content_through_set_parameters_is_refused_by_image_match() {
    // The author's install uses set-parameters for its content (trust-domains §5.6.1): a
    // dependent that sets it first wins, as the draft intends for parameters meant to be
    // overridden, so the operator can hand the author's write other bytes; the author's
    // image-match (an override-parameters digest, which the dependent cannot change) refuses
    // them.
    let author = sign(&author_manifest(), &author_key(), &[]);
    let mut m = operator_root(&author, checked_install());
    m.components = vec![
        vec![b"config".to_vec()],
        vec![b"author.suit".to_vec()],
        vec![b"fw".to_vec()],
    ];
    // Index 2 is ["fw"]: the operator sets its content before processing the dependency.
    m.install = Some(vec![
        Cmd::SetComponentIndex(Index::One(2)),
        Cmd::SetParameters(vec![Param::Content(b"operator's firmware".to_vec())]),
        Cmd::SetComponentIndex(Index::One(1)),
        Cmd::Condition(Condition::DependencyIntegrity, 15),
        Cmd::Directive(Directive::ProcessDependency, 15),
    ]);
    let root = sign(&m, &operator_key(), &[("#author.suit", author)]);
    let operator_ids = [
        ComponentId::decode(CONFIG_ID).unwrap(),
        ComponentId::decode(SLOT_ID).unwrap(),
    ];
    let fw_ids = [ComponentId::decode(FW_ID).unwrap()];
    let [operator, author] = two_domains(&operator_ids, &fw_ids);
    // The operator may name ["fw"] (to invoke it) but not install it: its root verifies, and
    // the only install right on ["fw"] is the author's.
    let operator_invokes_fw = TrustAnchor {
        name: "operator (invoke fw)",
        key: ed(&operator_key()),
        kid: None,
        permissions: Permissions {
            components: Some(&fw_ids),
            actions: Actions::INVOKE,
        },
    };
    let anchors = [operator, author, operator_invokes_fw];
    let mut dev = device(&[b"config", b"fw", b"author.suit"]);
    let (result, _) = update(&root, &anchors, &anchors, &mut dev, &mut []);
    // The author's image-match refuses the operator's content: the update fails. The author's
    // write ran before its image-match, so ["fw"] holds the operator's bytes, never accepted
    // (an installer writes into a slot that a failed update does not make bootable).
    assert_eq!(
        result.unwrap_err(),
        Error::ConditionFailed {
            condition: Condition::ImageMatch,
            component: 0
        }
    );
    assert_eq!(content(&dev, b"fw"), b"operator's firmware");
}

#[test]
fn attack_dependency_chain_deeper_than_the_limit_is_refused() {
    // Each manifest wraps the next; the chain is one longer than MAX_DEPENDENCY_DEPTH.
    let mut inner = sign(&author_manifest(), &author_key(), &[]);
    for level in 0..=MAX_DEPENDENCY_DEPTH {
        let m = operator_root(&inner, vec![Cmd::SetComponentIndex(Index::One(0))]);
        let mut m = m;
        m.sequence_number = level as u64;
        m.install = None;
        inner = sign(&m, &operator_key(), &[("#author.suit", inner)]);
    }
    let operator_ids = [
        ComponentId::decode(CONFIG_ID).unwrap(),
        ComponentId::decode(SLOT_ID).unwrap(),
    ];
    let author_ids = [ComponentId::decode(FW_ID).unwrap()];
    let anchors = two_domains(&operator_ids, &author_ids);
    let mut dev = device(&[b"config", b"fw"]);
    let (result, failure) = update(&inner, &anchors, &anchors, &mut dev, &mut []);
    assert_eq!(
        result.unwrap_err(),
        Error::NestingLimit {
            limit: MAX_DEPENDENCY_DEPTH
        }
    );
    let failure = failure.unwrap();
    assert_eq!(
        (failure.depth, failure.cause),
        (MAX_DEPENDENCY_DEPTH, DependencyCause::DepthLimit)
    );
}

/// The author's staged manifest: payload-fetch writes the firmware into `["staging"]`,
/// candidate-verification checks it there, install copies it into `["fw"]`.
fn staged_author_manifest() -> ManifestBuilder {
    ManifestBuilder {
        sequence_number: 3,
        components: vec![vec![b"fw".to_vec()], vec![b"staging".to_vec()]],
        shared_sequence: Some(vec![
            Cmd::SetComponentIndex(Index::All),
            Cmd::OverrideParameters(vec![
                Param::ImageDigest(
                    DigestAlgorithm::Sha256,
                    DigestAlgorithm::Sha256.digest(FIRMWARE).as_bytes().to_vec(),
                ),
                Param::ImageSize(FIRMWARE.len() as u64),
            ]),
        ]),
        payload_fetch: Some(vec![
            Cmd::SetComponentIndex(Index::One(1)),
            Cmd::SetParameters(vec![Param::Content(FIRMWARE.to_vec())]),
            Cmd::Directive(Directive::Write, 15),
        ]),
        candidate_verification: Some(vec![
            Cmd::SetComponentIndex(Index::One(1)),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]),
        install: Some(vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::OverrideParameters(vec![Param::SourceComponent(1)]),
            Cmd::Directive(Directive::Copy, 15),
        ]),
        ..Default::default()
    }
}

#[test]
fn attack_root_without_fetch_and_verification_installs_unverified_candidate_is_refused() {
    // The operator's root has no payload-fetch and no candidate-verification section, and
    // processes the author's manifest in install only: the author's install would copy
    // whatever lies in ["staging"] (here the attacker's image) into ["fw"], its fetch and
    // its candidate check never run. Trust-domains §5.1 (the corresponding section of each
    // dependency has been executed) and §5.4 (a dependency's sections run as the dependent's
    // procedure reaches them): process-dependency in install is refused while an earlier
    // update section of the dependency was not processed, whether the root has it or not.
    let author = sign(&staged_author_manifest(), &author_key(), &[]);
    let root = sign(
        &operator_root(&author, checked_install()),
        &operator_key(),
        &[("#author.suit", author)],
    );
    let operator_ids = [
        ComponentId::decode(CONFIG_ID).unwrap(),
        ComponentId::decode(SLOT_ID).unwrap(),
    ];
    let staging_id: &[u8] = &[0x81, 0x47, b's', b't', b'a', b'g', b'i', b'n', b'g'];
    let author_ids = [
        ComponentId::decode(FW_ID).unwrap(),
        ComponentId::decode(staging_id).unwrap(),
    ];
    let anchors = two_domains(&operator_ids, &author_ids);
    let mut dev = device(&[b"config", b"fw", b"staging"]);
    let evil = b"attacker's image".to_vec();
    let i = dev
        .components
        .iter()
        .position(|c| c.id == vec![b"staging".to_vec()])
        .unwrap();
    dev.components[i].content = evil;
    let (result, failure) = update(&root, &anchors, &anchors, &mut dev, &mut []);
    assert_eq!(result.unwrap_err().reason(), Reason::Malformed);
    let failure = failure.unwrap();
    assert_eq!(
        (failure.index, failure.cause),
        (1, DependencyCause::SectionSkipped(16))
    );
    assert!(content(&dev, b"fw").is_empty());
}

#[test]
fn staged_author_manifest_installs_when_the_root_processes_every_section() {
    // The same author manifest, wrapped by a root that processes it in payload-fetch,
    // candidate-verification and install: accepted, the firmware installed.
    let author = sign(&staged_author_manifest(), &author_key(), &[]);
    let mut m = operator_root(&author, checked_install());
    let process = vec![
        Cmd::SetComponentIndex(Index::One(1)),
        Cmd::Condition(Condition::DependencyIntegrity, 15),
        Cmd::Directive(Directive::ProcessDependency, 15),
    ];
    m.payload_fetch = Some(process.clone());
    m.candidate_verification = Some(process);
    let root = sign(&m, &operator_key(), &[("#author.suit", author)]);
    let operator_ids = [
        ComponentId::decode(CONFIG_ID).unwrap(),
        ComponentId::decode(SLOT_ID).unwrap(),
    ];
    let staging_id: &[u8] = &[0x81, 0x47, b's', b't', b'a', b'g', b'i', b'n', b'g'];
    let author_ids = [
        ComponentId::decode(FW_ID).unwrap(),
        ComponentId::decode(staging_id).unwrap(),
    ];
    let anchors = two_domains(&operator_ids, &author_ids);
    let mut dev = device(&[b"config", b"fw", b"staging"]);
    let (result, failure) = update(&root, &anchors, &anchors, &mut dev, &mut []);
    result.unwrap();
    assert_eq!(failure, None);
    assert_eq!(content(&dev, b"fw"), FIRMWARE);
}

#[test]
fn attack_image_match_on_a_dependency_without_dependency_trust_is_refused() {
    // Component 0 is ["fw"] and also listed in suit-dependencies. A processor without
    // dependency support (a consumer's plain image-match run) must not treat it as one:
    // the fetch of "#x" would stay in the envelope and image-match would hash that
    // manifest, so ["fw"] would count as matched while it holds nothing. Trust-domains
    // §5.1: a processor that does not support dependencies aborts on a manifest with them.
    let other = sign(&author_manifest(), &author_key(), &[]);
    let m = ManifestBuilder {
        sequence_number: 4,
        components: vec![vec![b"fw".to_vec()]],
        dependencies: vec![(0, None)],
        shared_sequence: Some(vec![Cmd::OverrideParameters(vec![Param::ImageDigest(
            DigestAlgorithm::Sha256,
            digest_of(&other),
        )])]),
        install: Some(vec![
            Cmd::OverrideParameters(vec![Param::Uri("#x".into())]),
            Cmd::Directive(Directive::Fetch, 15),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]),
        ..Default::default()
    };
    let root = sign(&m, &author_key(), &[("#x", other)]);
    let anchors = [TrustAnchor::new("author", ed(&author_key()))];
    let mut dev = device(&[b"fw"]);
    let err = update_without_dependency_trust(&root, &anchors, &mut dev);
    assert_eq!(
        err,
        Error::UnsupportedCritical {
            what: Unsupported::CommonMember,
            id: 1
        }
    );
    assert!(content(&dev, b"fw").is_empty());
}

#[test]
fn attack_dependency_rebinds_its_dependents_next_dependency_is_ignored() {
    // The root has two dependencies: A in ["a.suit"], then B in ["b.suit"], each named by
    // URI and digest in the root's shared sequence. A lists a dependency slot ["b.suit"] of
    // its own and overrides its URI and digest to name C, another manifest its signer made.
    // Were parameters mapped through dependency slots, processing A would re-point the root's
    // binding of B, and the root would fetch, check and process C. Trust-domains §5.4 lets a
    // dependency's parameter changes persist in the dependent for the components they share,
    // not for the dependent's dependency slots, which its own digest pins (§5.6.4).
    let b = sign(&author_manifest(), &author_key(), &[]);
    let mut c = author_manifest();
    c.sequence_number = 1;
    c.install = Some(vec![
        Cmd::SetParameters(vec![Param::Content(b"old firmware".to_vec())]),
        Cmd::Directive(Directive::Write, 15),
    ]);
    let c = sign(&c, &author_key(), &[]);
    let a = ManifestBuilder {
        sequence_number: 5,
        components: vec![vec![b"unused".to_vec()]],
        dependencies: vec![(1, Some(vec![b"b.suit".to_vec()]))],
        shared_sequence: Some(vec![
            Cmd::SetComponentIndex(Index::One(1)),
            Cmd::OverrideParameters(vec![
                Param::Uri("#c.suit".into()),
                Param::ImageDigest(DigestAlgorithm::Sha256, digest_of(&c)),
            ]),
        ]),
        dependency_resolution: Some(vec![Cmd::SetComponentIndex(Index::One(0))]),
        ..Default::default()
    };
    let a = sign(&a, &author_key(), &[]);
    let process = |i: u64| {
        vec![
            Cmd::SetComponentIndex(Index::One(i)),
            Cmd::Directive(Directive::Fetch, 15),
            Cmd::Condition(Condition::DependencyIntegrity, 15),
            Cmd::Directive(Directive::ProcessDependency, 15),
        ]
    };
    let mut resolution = process(1);
    resolution.extend(process(2));
    let mut install = process(2);
    install.remove(1);
    let root = ManifestBuilder {
        sequence_number: 10,
        components: vec![vec![b"config".to_vec()]],
        dependencies: vec![
            (1, Some(vec![b"a.suit".to_vec()])),
            (2, Some(vec![b"b.suit".to_vec()])),
        ],
        shared_sequence: Some(vec![
            Cmd::SetComponentIndex(Index::One(1)),
            Cmd::OverrideParameters(vec![
                Param::Uri("#a.suit".into()),
                Param::ImageDigest(DigestAlgorithm::Sha256, digest_of(&a)),
            ]),
            Cmd::SetComponentIndex(Index::One(2)),
            Cmd::OverrideParameters(vec![
                Param::Uri("#b.suit".into()),
                Param::ImageDigest(DigestAlgorithm::Sha256, digest_of(&b)),
            ]),
        ]),
        dependency_resolution: Some(resolution),
        install: Some(install),
        ..Default::default()
    };
    let root = sign(
        &root,
        &operator_key(),
        &[("#a.suit", a), ("#b.suit", b), ("#c.suit", c)],
    );
    // Plain anchors (as `manifest check --trust` builds them): each may name every component.
    let anchors = plain_anchors();
    let mut dev = device(&[b"config", b"fw", b"unused"]);
    let (result, failure) = update(&root, &anchors, &anchors, &mut dev, &mut []);
    result.unwrap();
    assert_eq!(failure, None);
    assert_eq!(content(&dev, b"fw"), FIRMWARE);
}

/// A device's rule for dependencies, as for releases: none may name the trust store.
fn names_trust_store(m: &VerifiedManifest<'_>) -> bool {
    let m = m.manifest();
    (0..m.index_count())
        .filter_map(|i| m.component_id(i))
        .any(|c| c.segments().next() == Some(b"suitcase-trust".as_slice()))
}

#[test]
fn attack_release_signer_reaches_trust_store_through_a_dependency_is_refused() {
    // The author, a release signer whose anchor covers every component (Prefix::ALL), signs
    // a dependency writing ["suitcase-trust"]; the operator's root wraps it. A release naming
    // the trust store is refused (names_trust_store); the dependency is authenticated with its
    // own signers (trust-domains §5.1), so the device's rule is applied to it too.
    let mut m = author_manifest();
    m.components = vec![vec![b"suitcase-trust".to_vec()]];
    let author = sign(&m, &author_key(), &[]);
    let root = sign(
        &operator_root(&author, checked_install()),
        &operator_key(),
        &[("#author.suit", author)],
    );
    let anchors = plain_anchors();
    let mut dev = device(&[b"config", b"suitcase-trust"]);
    let verified = verified(&root, &anchors);
    let mut p = Processor::new(&verified, &mut dev, ProcessorPolicy::default())
        .unwrap()
        .with_dependency_trust(&anchors, TrustPolicy::default())
        .with_dependency_rule(names_trust_store)
        .with_dependency_buffer(&mut []);
    let err = p.update().unwrap_err();
    let failure = p.dependency_failure().unwrap();
    assert_eq!(err, Error::Unauthenticated(AuthError::NotAuthorized));
    assert_eq!(
        (failure.index, failure.cause),
        (1, DependencyCause::Refused)
    );
    assert!(content(&dev, b"suitcase-trust").is_empty());
}

#[test]
fn attack_slot_reloaded_with_another_manifest_inherits_processed_sections_is_refused() {
    // The root processes the author's staged manifest A in every section up to
    // candidate-verification, then in install re-points the slot to D (another manifest the
    // author signed, same sections) and processes D's install: D's fetch and candidate check
    // never ran. What was processed belongs to A's manifest, not to the slot (trust-domains
    // §5.1), so D's install is refused.
    let a = sign(&staged_author_manifest(), &author_key(), &[]);
    let mut d = staged_author_manifest();
    d.sequence_number = 1;
    let d = sign(&d, &author_key(), &[]);
    let mut m = operator_root(&a, checked_install());
    let process = vec![
        Cmd::SetComponentIndex(Index::One(1)),
        Cmd::Condition(Condition::DependencyIntegrity, 15),
        Cmd::Directive(Directive::ProcessDependency, 15),
    ];
    m.payload_fetch = Some(process.clone());
    m.candidate_verification = Some(process);
    m.install = Some(vec![
        Cmd::SetComponentIndex(Index::One(1)),
        Cmd::OverrideParameters(vec![
            Param::Uri("#d.suit".into()),
            Param::ImageDigest(DigestAlgorithm::Sha256, digest_of(&d)),
        ]),
        Cmd::Directive(Directive::Fetch, 15),
        Cmd::Condition(Condition::DependencyIntegrity, 15),
        Cmd::Directive(Directive::ProcessDependency, 15),
    ]);
    let root = sign(&m, &operator_key(), &[("#author.suit", a), ("#d.suit", d)]);
    let operator_ids = [
        ComponentId::decode(CONFIG_ID).unwrap(),
        ComponentId::decode(SLOT_ID).unwrap(),
    ];
    let staging_id: &[u8] = &[0x81, 0x47, b's', b't', b'a', b'g', b'i', b'n', b'g'];
    let author_ids = [
        ComponentId::decode(FW_ID).unwrap(),
        ComponentId::decode(staging_id).unwrap(),
    ];
    let anchors = two_domains(&operator_ids, &author_ids);
    let mut dev = device(&[b"config", b"fw", b"staging"]);
    let (result, failure) = update(&root, &anchors, &anchors, &mut dev, &mut []);
    assert_eq!(result.unwrap_err().reason(), Reason::Malformed);
    let failure = failure.unwrap();
    assert_eq!(
        (failure.index, failure.cause),
        (1, DependencyCause::SectionSkipped(16))
    );
}

//! `wrap`: an operator's root manifest around an author's release (SUIT trust domains), run on
//! an in-memory device with both signers as anchors, each limited to its own components.

#![expect(clippy::unwrap_used, reason = "test code")]

use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::wrap::{WrapRequest, wrap};
use suitcase_author::{Tier, uuid};
use suitcase_manifest::memory::{MemoryComponent, MemoryDevice};
use suitcase_manifest::{
    Actions, AuthError, ComponentId, Envelope, Error, Permissions, Processor, ProcessorPolicy,
    TrustAnchor, TrustPolicy,
};

const IMAGE: &[u8] = b"the author's firmware";

fn key(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    keys::write_atomic(
        &path,
        &keys::generate(KeyAlg::Ed25519, "").unwrap().private,
        true,
    )
    .unwrap();
    path
}

fn release(author: &std::path::Path) -> Vec<u8> {
    let vendor = uuid::vendor("example.com");
    let req = ReleaseRequest {
        sequence: 4,
        tier: Tier::Basic,
        vendor,
        class: uuid::class(&vendor, "x"),
        device: None,
        images: vec![ImageInput {
            name: "fw.bin".into(),
            bytes: IMAGE.to_vec(),
            component: vec![vec![0]],
            uri: None,
            integrated: true,
            invoke: false,
            delta_from: None,
        }],
        sign: vec![author.to_path_buf()],
        encrypt_for: vec![],
        x5chain: vec![],
        content: None,
        reference_uri: None,
        description: None,
    };
    release::build(&req, &mut |_, _, _| {}).unwrap().envelope
}

fn device() -> MemoryDevice {
    let vendor = uuid::vendor("example.com");
    MemoryDevice {
        vendor_id: Some((false, vendor.to_vec())),
        class_id: Some(uuid::class(&vendor, "x").to_vec()),
        components: vec![MemoryComponent {
            id: vec![vec![0]],
            capacity: 1 << 16,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Runs the root's update procedure with `operator` allowed only the dependency's slot and
/// `author` only component `[h'00']`.
fn run(
    root: &[u8],
    operator: &std::path::Path,
    author: &std::path::Path,
) -> Result<MemoryDevice, Error> {
    let (op, au) = (
        keys::load_public(operator).unwrap(),
        keys::load_public(author).unwrap(),
    );
    let slot = ComponentId::decode(&[
        0x81, 0x4f, b'd', b'e', b'p', b'e', b'n', b'd', b'e', b'n', b'c', b'y', b'.', b's', b'u',
        b'i', b't',
    ])
    .unwrap();
    let image = ComponentId::decode(&[0x81, 0x41, 0x00]).unwrap();
    let (op_ids, au_ids) = ([slot], [image]);
    let anchors = [
        TrustAnchor {
            permissions: Permissions {
                components: Some(&op_ids),
                actions: Actions::ALL,
            },
            ..TrustAnchor::new("operator", op.as_trust_key().unwrap())
        },
        TrustAnchor {
            permissions: Permissions {
                components: Some(&au_ids),
                actions: Actions::ALL,
            },
            ..TrustAnchor::new("author", au.as_trust_key().unwrap())
        },
    ];
    let verified = Envelope::decode(root)?.verify(&anchors, &TrustPolicy::default())?;
    let mut dev = device();
    let mut p = Processor::new(&verified, &mut dev, ProcessorPolicy::default())?
        .with_dependency_trust(&anchors, TrustPolicy::default());
    p.update()?;
    p.invoke()?;
    Ok(dev)
}

fn request() -> WrapRequest {
    WrapRequest {
        sequence: 10,
        name: "#dependency.suit".into(),
        slot: vec![b"dependency.suit".to_vec()],
    }
}

#[test]
fn the_operators_root_installs_the_authors_release_under_two_signers() {
    let dir = tempfile::tempdir().unwrap();
    let (operator, author) = (key(dir.path(), "operator"), key(dir.path(), "author"));
    let signer = suitcase_author::signer::open(&operator).unwrap();
    let wrapped = wrap(&release(&author), &request(), signer.as_ref()).unwrap();
    assert_eq!(wrapped.dependency_sequence, 4);
    assert!(
        wrapped.sections.contains(&"install"),
        "{:?}",
        wrapped.sections
    );
    let dev = run(&wrapped.envelope, &operator, &author).unwrap();
    assert_eq!(dev.components[0].content, IMAGE);
}

#[test]
fn attack_operator_wrapping_its_own_release_for_the_authors_component_is_refused() {
    // The operator signs the "author's" release itself: the dependency's signer has no right
    // to component [h'00'] (trust-domains §5.1, manifest §9).
    let dir = tempfile::tempdir().unwrap();
    let (operator, author) = (key(dir.path(), "operator"), key(dir.path(), "author"));
    let signer = suitcase_author::signer::open(&operator).unwrap();
    let wrapped = wrap(&release(&operator), &request(), signer.as_ref()).unwrap();
    let err = run(&wrapped.envelope, &operator, &author).unwrap_err();
    assert_eq!(err, Error::Unauthenticated(AuthError::NotAuthorized));
}

#[test]
fn an_unsigned_dependency_is_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let author = key(dir.path(), "author");
    let signed = release(&author);
    // The same manifest with an authentication wrapper holding only the digest.
    let env = Envelope::decode(&signed).unwrap();
    let encoded = suitcase_manifest::build::EncodedManifest {
        manifest: env.manifest_bytes().to_vec(),
        severed: vec![],
    };
    let unsigned = suitcase_manifest::build::EnvelopeBuilder::from_encoded(
        encoded,
        suitcase_manifest::DigestAlgorithm::Sha256,
    )
    .encode();
    let signer = suitcase_author::signer::open(&author).unwrap();
    let err = wrap(&unsigned, &request(), signer.as_ref()).unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
}

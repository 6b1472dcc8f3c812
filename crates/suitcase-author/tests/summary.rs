//! `summary::summarize` reports what a release installs, and `keys::parse_public` reads keys
//! that arrive as bytes (a server's key registry).

#![expect(clippy::unwrap_used, reason = "test code")]

use std::path::Path;

use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::summary::summarize;
use suitcase_author::{Tier, uuid};
use suitcase_manifest::{Envelope, TrustAnchor, TrustPolicy};

/// An ES256 author key in `dir`; returns its path.
fn author_key(dir: &Path) -> std::path::PathBuf {
    let g = keys::generate(KeyAlg::Es256, "h5w4").unwrap();
    let key_path = dir.join("a.key");
    keys::write_atomic(&key_path, &g.private, true).unwrap();
    key_path
}

/// A Basic-tier release request for the thermostat class, signed with `key`.
fn request(sequence: u64, key: &Path, images: Vec<ImageInput>) -> ReleaseRequest {
    let vendor = uuid::vendor("example.com");
    ReleaseRequest {
        sequence,
        tier: Tier::Basic,
        vendor,
        class: uuid::class(&vendor, "thermostat"),
        device: None,
        images,
        sign: vec![key.to_path_buf()],
        encrypt_for: vec![],
        x5chain: vec![],
        content: None,
        reference_uri: None,
        description: None,
    }
}

#[test]
fn summary_lists_components_identities_digests_and_uris() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = author_key(dir.path());
    let vendor = uuid::vendor("example.com");
    let class = uuid::class(&vendor, "thermostat");
    let app = vec![0x5a; 3000];
    let radio = vec![0x11; 777];
    let req = request(
        42,
        &key_path,
        vec![
            ImageInput {
                name: "app".into(),
                bytes: app,
                component: vec![b"app".to_vec()],
                uri: Some("https://fw.example/app-42.bin".into()),
                integrated: false,
                invoke: true,
                delta_from: None,
            },
            ImageInput {
                name: "radio".into(),
                bytes: radio,
                component: vec![b"radio".to_vec(), vec![0]],
                uri: None,
                integrated: true,
                invoke: false,
                delta_from: None,
            },
        ],
    );
    let built = release::build(&req, &mut |_, _, _| {}).unwrap();

    // The key arrives as bytes (as in an upload), not as a file.
    let public = keys::load_public(&key_path).unwrap();
    let (pub_bytes, _) = public.encode().unwrap();
    let parsed = keys::parse_public(Path::new("upload"), &pub_bytes).unwrap();
    let anchor = [TrustAnchor::new("author", parsed.as_trust_key().unwrap())];
    let env = Envelope::decode(&built.envelope).unwrap();
    let verified = env.verify(&anchor, &TrustPolicy::default()).unwrap();
    let s = summarize(&verified);

    assert_eq!(s.sequence_number, 42);
    assert_eq!(s.manifest_digest.1, hex::encode(&built.manifest_digest));
    assert_eq!(s.components.len(), 2);
    let a = &s.components[0];
    assert_eq!(a.id, vec![hex::encode(b"app")]);
    assert_eq!(a.uri.as_deref(), Some("https://fw.example/app-42.bin"));
    assert_eq!(a.image_size, Some(3000));
    assert_eq!(
        a.image_digest.as_ref().unwrap().1,
        hex::encode(&built.payloads[0].image_digest)
    );
    assert_eq!(
        a.vendor_id.as_deref(),
        Some(uuid::to_string(&vendor).as_str())
    );
    assert_eq!(s.vendor_ids().len(), 1);
    assert_eq!(s.class_ids(), vec![uuid::to_string(&class)]);
    let r = &s.components[1];
    assert_eq!(r.image_size, Some(777));
    assert!(r.uri.as_deref().unwrap_or("#").starts_with('#'));
    // Only the fetched payload is listed for download; the integrated one travels inside.
    let fetched: Vec<&str> = s.fetched().map(|(u, _)| u).collect();
    assert_eq!(fetched, vec!["https://fw.example/app-42.bin"]);
    assert_eq!(s.integrated.len(), 1);
}

#[test]
fn parse_public_names_the_origin_for_garbage() {
    let err = keys::parse_public(Path::new("upload:bad"), b"not a key").unwrap_err();
    assert!(err.to_string().contains("upload:bad"), "{err}");
}

/// A delta release names three components: the image, the staging area the patch is fetched
/// into and the installed base it applies to. Only the image is what a device keeps
/// (`images()`), which is what a server waits to see installed.
#[test]
fn delta_release_summary_separates_the_image_from_its_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = author_key(dir.path());
    let old: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let mut new = old.clone();
    new[7_000..7_010].fill(0xEE);
    let req = request(
        43,
        &key_path,
        vec![ImageInput {
            name: "app".into(),
            bytes: new,
            component: vec![b"app".to_vec()],
            uri: Some("https://fw.example/app-43.patch".into()),
            integrated: false,
            invoke: false,
            delta_from: Some(old),
        }],
    );
    let built = release::build(&req, &mut |_, _, _| {}).unwrap();
    let public = keys::load_public(&key_path).unwrap();
    let anchor = [TrustAnchor::new("author", public.as_trust_key().unwrap())];
    let env = Envelope::decode(&built.envelope).unwrap();
    let s = summarize(&env.verify(&anchor, &TrustPolicy::default()).unwrap());

    let ids: Vec<String> = s.components.iter().map(|c| c.id.join("/")).collect();
    let app = hex::encode(b"app");
    assert_eq!(
        ids,
        vec![
            app.clone(),
            format!("{app}/{}", hex::encode(b"staging")),
            format!("{app}/{}", hex::encode(b"installed")),
        ]
    );
    assert_eq!(s.components[0].delta_base, Some(2));
    assert_eq!(s.components[0].source_component, Some(1));
    let images: Vec<&Vec<String>> = s.images().map(|c| &c.id).collect();
    assert_eq!(images, vec![&vec![app]]);
    // The patch is what devices fetch, into the staging component.
    let fetched: Vec<(&str, usize)> = s
        .fetched()
        .map(|(u, c)| (u, s.components.iter().position(|x| x == c).unwrap()))
        .collect();
    assert_eq!(fetched, vec![("https://fw.example/app-43.patch", 1)]);
}

//! Delta payloads through the SUIT processor: `suit-directive-copy` with
//! suitcase-parameter-delta-base applies a `suitcase-delta` patch (fetched into a staging
//! component) to the installed image. Attacks are named after what they try.

#![expect(clippy::unwrap_used, reason = "test code")]

use hmac::{KeyInit, Mac};
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, Index, ManifestBuilder, Param};
use suitcase_manifest::codepoints::alg;
use suitcase_manifest::memory::{Effect, MemoryComponent, MemoryDevice};
use suitcase_manifest::{
    Condition, DeltaCause, DigestAlgorithm, Directive, Envelope, Error, Processor, ProcessorPolicy,
    PublicKey, Reason, TrustAnchor, TrustPolicy,
};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const VENDOR: [u8; 16] = [0xfa; 16];
const CLASS: [u8; 16] = [0x14; 16];
/// Components: the slot being written, the staging area the patch is fetched into, the slot
/// holding the installed image.
const TARGET: u8 = 0;
const STAGING: u8 = 1;
const INSTALLED: u8 = 2;

fn hmac(data: &[u8]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Deterministic firmware-like bytes: code-ish words with repeats.
fn image(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = (x % 64) as u8;
        out.extend_from_slice(&[w, 0x20 | (w & 7), 0x46, 0xf0 | (w >> 4)]);
    }
    out.truncate(len);
    out
}

/// The next version: a few bytes changed, a block inserted, the tail shifted.
fn next_version(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for i in (100..new.len()).step_by(997) {
        new[i] ^= 0x5a;
    }
    let at = new.len() / 3;
    new.splice(at..at, image(99, 700));
    new
}

fn sha256(b: &[u8]) -> Vec<u8> {
    DigestAlgorithm::Sha256.digest(b).as_bytes().to_vec()
}

/// Names the installed image by digest (when `check_base`), fetches the patch into staging,
/// applies it into the target with copy + delta-base, and checks the result's digest.
fn manifest(old: &[u8], new: &[u8], check_base: bool) -> ManifestBuilder {
    let mut install = Vec::new();
    if check_base {
        install.extend([
            Cmd::SetComponentIndex(Index::One(u64::from(INSTALLED))),
            Cmd::OverrideParameters(vec![
                Param::ImageDigest(DigestAlgorithm::Sha256, sha256(old)),
                Param::ImageSize(old.len() as u64),
            ]),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]);
    }
    install.extend([
        Cmd::SetComponentIndex(Index::One(u64::from(STAGING))),
        Cmd::OverrideParameters(vec![Param::Uri("https://fw.example/app-6-to-7.sdp".into())]),
        Cmd::Directive(Directive::Fetch, 2),
        Cmd::SetComponentIndex(Index::One(u64::from(TARGET))),
        Cmd::OverrideParameters(vec![
            Param::ImageDigest(DigestAlgorithm::Sha256, sha256(new)),
            Param::ImageSize(new.len() as u64),
            Param::SourceComponent(u64::from(STAGING)),
            Param::DeltaBase(u64::from(INSTALLED)),
        ]),
        Cmd::Directive(Directive::Copy, 2),
        Cmd::Condition(Condition::ImageMatch, 15),
    ]);
    ManifestBuilder {
        sequence_number: 7,
        components: vec![
            vec![vec![TARGET]],
            vec![vec![STAGING]],
            vec![vec![INSTALLED]],
        ],
        shared_sequence: Some(vec![
            Cmd::SetComponentIndex(Index::One(u64::from(TARGET))),
            Cmd::OverrideParameters(vec![
                Param::VendorIdentifier(VENDOR.to_vec()),
                Param::ClassIdentifier(CLASS.to_vec()),
            ]),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
        ]),
        install: Some(install),
        ..Default::default()
    }
}

fn device(installed: &[u8], patch: &[u8]) -> MemoryDevice {
    let comp = |id: u8, content: &[u8]| MemoryComponent {
        id: vec![vec![id]],
        capacity: 256 * 1024,
        content: content.to_vec(),
        ..Default::default()
    };
    MemoryDevice {
        vendor_id: Some((false, VENDOR.to_vec())),
        class_id: Some(CLASS.to_vec()),
        components: vec![
            comp(TARGET, b"previous"),
            comp(STAGING, &[]),
            comp(INSTALLED, installed),
        ],
        payloads: vec![("https://fw.example/app-6-to-7.sdp".into(), patch.to_vec())],
        ..Default::default()
    }
}

fn install(m: &ManifestBuilder, dev: &mut MemoryDevice) -> Result<(), Error> {
    let mut b = EnvelopeBuilder::new(m, DigestAlgorithm::Sha256);
    b.mac0(alg::HMAC_256, None, hmac);
    let bytes = b.encode();
    let anchors = [TrustAnchor {
        name: "mac",
        key: PublicKey::Hmac256(KEY),
        kid: None,
        permissions: suitcase_manifest::Permissions::ALL,
    }];
    let v = Envelope::decode(&bytes)?.verify(&anchors, &TrustPolicy::default())?;
    Processor::new(&v, dev, ProcessorPolicy::default())?.update()
}

fn patch(old: &[u8], new: &[u8]) -> Vec<u8> {
    suitcase_delta::create(old, new, &suitcase_delta::Options::default())
        .unwrap()
        .bytes
}

fn target_written(dev: &MemoryDevice) -> bool {
    dev.effects
        .iter()
        .any(|e| matches!(e, Effect::Written { component: 0, .. }))
}

#[test]
fn delta_copy_installs_the_patched_image() {
    let old = image(1, 60_000);
    let new = next_version(&old);
    let p = patch(&old, &new);
    assert!(p.len() * 10 < new.len(), "patch {} bytes", p.len());
    let mut dev = device(&old, &p);
    install(&manifest(&old, &new, true), &mut dev).unwrap();
    assert_eq!(dev.components[0].content, new);
    // The installed image is untouched (it may be the fallback) and only the patch travelled.
    assert_eq!(dev.components[2].content, old);
    assert!(
        dev.effects
            .iter()
            .any(|e| matches!(e, Effect::Fetched { component: 1, bytes, .. } if *bytes == p.len()))
    );
}

#[test]
fn full_image_patch_needs_no_matching_base() {
    // Where a delta does not pay the server ships a full-mode patch; it applies whatever the
    // base holds.
    let old = image(1, 20_000);
    let new = image(2, 20_000);
    let p = suitcase_delta::create(
        &old,
        &new,
        &suitcase_delta::Options {
            strategy: suitcase_delta::Strategy::Full,
            ..Default::default()
        },
    )
    .unwrap()
    .bytes;
    let mut dev = device(b"something else entirely", &p);
    install(&manifest(&old, &new, false), &mut dev).unwrap();
    assert_eq!(dev.components[0].content, new);
}

#[test]
fn attack_patch_applied_to_another_installed_image_is_refused_before_writing() {
    // The manifest forgot to name the base by image-match; the patch's own source digest
    // still refuses a device running another image, before the target is touched.
    let old = image(1, 30_000);
    let new = next_version(&old);
    let p = patch(&old, &new);
    let mut other = old.clone();
    other[12_345] ^= 1;
    let mut dev = device(&other, &p);
    let err = install(&manifest(&old, &new, false), &mut dev).unwrap_err();
    assert_eq!(
        err,
        Error::Delta {
            component: 0,
            cause: DeltaCause::WrongBase
        }
    );
    assert_eq!(err.reason(), Reason::Digest);
    assert_eq!(dev.components[0].content, b"previous");
    assert!(!target_written(&dev));
}

#[test]
fn attack_installed_image_mismatch_is_caught_by_the_manifest_condition_first() {
    let old = image(1, 30_000);
    let new = next_version(&old);
    let mut other = old.clone();
    other[5] ^= 1;
    let mut dev = device(&other, &patch(&old, &new));
    let err = install(&manifest(&old, &new, true), &mut dev).unwrap_err();
    assert_eq!(
        err,
        Error::ConditionFailed {
            condition: Condition::ImageMatch,
            component: usize::from(INSTALLED)
        }
    );
    assert!(!target_written(&dev));
}

#[test]
fn attack_patch_swapped_for_one_that_makes_another_image_is_refused_before_writing() {
    // A valid patch from the installed image, but to an image the manifest does not name
    // (e.g. an older, vulnerable build): refused from the header, nothing written.
    let old = image(1, 30_000);
    let new = next_version(&old);
    let mut evil = new.clone();
    evil[20_000] ^= 0xff;
    let mut dev = device(&old, &patch(&old, &evil));
    let err = install(&manifest(&old, &new, true), &mut dev).unwrap_err();
    assert_eq!(
        err,
        Error::Delta {
            component: 0,
            cause: DeltaCause::WrongResult
        }
    );
    assert!(!target_written(&dev));
    assert_eq!(dev.components[0].content, b"previous");
}

#[test]
fn attack_corrupted_patch_never_commits_the_target() {
    let old = image(1, 30_000);
    let new = next_version(&old);
    let good = patch(&old, &new);
    let header = suitcase_delta::Header::parse(&good).unwrap().len();
    for at in [
        header + 3,
        header + (good.len() - header) / 2,
        good.len() - 2,
    ] {
        let mut p = good.clone();
        p[at] ^= 0x10;
        let mut dev = device(&old, &p);
        let err = install(&manifest(&old, &new, true), &mut dev).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Delta {
                    component: 0,
                    cause: DeltaCause::Corrupt | DeltaCause::WrongResult
                }
            ),
            "byte {at}: {err:?}"
        );
        assert!(!target_written(&dev), "byte {at}");
        assert_eq!(dev.components[0].content, b"previous");
    }
}

#[test]
fn attack_truncated_or_extended_patch_is_refused() {
    let old = image(1, 30_000);
    let new = next_version(&old);
    let good = patch(&old, &new);
    let mut long = good.clone();
    long.push(0);
    for p in [&good[..good.len() - 1], &good[..10], &long[..]] {
        let mut dev = device(&old, p);
        let err = install(&manifest(&old, &new, true), &mut dev).unwrap_err();
        assert_eq!(
            err,
            Error::Delta {
                component: 0,
                cause: DeltaCause::Corrupt
            },
            "{} bytes",
            p.len()
        );
        assert!(!target_written(&dev));
    }
}

#[test]
fn attack_payload_that_is_not_a_patch_is_refused() {
    let old = image(1, 30_000);
    let new = next_version(&old);
    let mut dev = device(&old, &new);
    let err = install(&manifest(&old, &new, true), &mut dev).unwrap_err();
    assert_eq!(
        err,
        Error::Delta {
            component: 0,
            cause: DeltaCause::Unsupported
        }
    );
    assert!(!target_written(&dev));
}

#[test]
fn delta_base_naming_the_target_itself_is_malformed() {
    let old = image(1, 10_000);
    let new = next_version(&old);
    let mut m = manifest(&old, &new, false);
    for c in m.install.as_mut().unwrap() {
        if let Cmd::OverrideParameters(ps) = c {
            for p in ps {
                if let Param::DeltaBase(b) = p {
                    *b = u64::from(TARGET);
                }
            }
        }
    }
    let mut dev = device(&old, &patch(&old, &new));
    let err = install(&m, &mut dev).unwrap_err();
    assert_eq!(
        err,
        Error::Malformed {
            at: 0,
            what: "delta-base is the component being written"
        }
    );
    assert!(!target_written(&dev));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Any damage to the patch (flipped bytes, a cut, appended junk) either still produces
    /// exactly the signed image or is refused without committing the target: never a panic,
    /// never a wrong image in the slot.
    #[test]
    fn damaged_patches_never_commit_a_wrong_image(
        flips in proptest::collection::vec((0usize..4096, 1u8..=255), 0..4),
        cut in proptest::option::of(0usize..4096),
        junk in proptest::collection::vec(0u8..=255, 0..3),
    ) {
        use std::sync::OnceLock;
        static CASE: OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = OnceLock::new();
        let (old, new, good) = CASE.get_or_init(|| {
            let old = image(3, 12_000);
            let new = next_version(&old);
            let p = patch(&old, &new);
            (old, new, p)
        });
        let mut p = good.clone();
        for (at, x) in &flips {
            let i = at % p.len();
            p[i] ^= x;
        }
        if let Some(c) = cut {
            p.truncate(c % (p.len() + 1));
        }
        p.extend_from_slice(&junk);
        let mut dev = device(old, &p);
        match install(&manifest(old, new, true), &mut dev) {
            Ok(()) => proptest::prop_assert_eq!(&dev.components[0].content, new),
            Err(_) => {
                proptest::prop_assert!(!target_written(&dev));
                proptest::prop_assert_eq!(&dev.components[0].content, b"previous");
            }
        }
    }
}

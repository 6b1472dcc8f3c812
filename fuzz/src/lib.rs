//! The harnesses behind the fuzz targets in `fuzz_targets/` (docs/fuzzing.md). Each module's
//! `run` takes arbitrary bytes; a panic, an arithmetic overflow, a failed debug assertion or an
//! allocation over the memory limit is a finding.
//!
//! The harnesses *fix up* what a fuzzer cannot forge so that mutated input gets past it to the
//! code behind: [`reauthenticate`] re-MACs a mutated manifest (and recomputes the digests of
//! its severed members) with [`FUZZ_KEY`]; the delta harnesses recompute the source and
//! result digests of a patch; the boot harness recomputes the CRC of state records.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness: a panic is how a property failure is reported"
)]

pub mod auth;
pub mod boot_state;
pub mod ddi;
pub mod delta_host;
pub mod delta_in_place;
pub mod delta_sequential;
pub mod keys;
pub mod processor;
pub mod secure_boot;
pub mod trust;
pub mod wire;

mod delta_common;

use std::path::PathBuf;

use suitcase_manifest::build::{EncodedManifest, EnvelopeBuilder, bstr};
use suitcase_manifest::codepoints::{alg, manifest as key};
use suitcase_manifest::{DigestAlgorithm, Envelope, Manifest, Severable, SuitDigest};

/// The HMAC-256 key every re-authenticated envelope is MACed with (a test key, not a secret).
pub const FUZZ_KEY: &[u8] = b"suitcase fuzzing key, not a secret: 32+ bytes long";

/// The device identity the processor and secure-boot harnesses present: the vendor and class
/// of the SUIT manifest draft's examples, which the generated seeds use too.
pub const VENDOR: [u8; 16] = [
    0xfa, 0x6b, 0x4a, 0x53, 0xd5, 0xad, 0x5f, 0xdf, 0xbe, 0x9d, 0xe6, 0x63, 0xe4, 0xd4, 0x1f, 0xfe,
];
/// See [`VENDOR`].
pub const CLASS: [u8; 16] = [
    0x14, 0x92, 0xaf, 0x14, 0x26, 0x95, 0x5e, 0x48, 0xbf, 0x42, 0x9b, 0x6d, 0x0d, 0x7c, 0x7f, 0x1a,
];
/// The device identifier the harness device has.
pub const DEVICE: [u8; 16] = [0xde; 16];

/// An integrated payload with this name followed by a component index becomes that
/// component's content before the manifest runs (how seeds give a delta its base image).
pub const CONTENT_PREFIX: &str = "#fuzz-content-";

/// Where the committed fuzzing keys live (`fuzz/keys`, written by `cargo run --example seeds`).
pub fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// The repository's `testdata` directory (public vectors and their keys).
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// The HMAC-256 tag of `message` under [`FUZZ_KEY`].
pub fn fuzz_mac(message: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(FUZZ_KEY).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

const SEVERABLE: [u64; 6] = [
    key::DEPENDENCY_RESOLUTION,
    key::PAYLOAD_FETCH,
    key::CANDIDATE_VERIFICATION,
    key::INSTALL,
    key::TEXT,
    key::COSWID,
];

fn severed<'a, T>(m: Option<Severable<'a, T>>) -> Option<SuitDigest<'a>> {
    match m {
        Some(Severable::Severed(d)) => Some(d),
        _ => None,
    }
}

fn severed_digest<'a>(m: &Manifest<'a>, k: u64) -> Option<SuitDigest<'a>> {
    match k {
        key::DEPENDENCY_RESOLUTION => severed(m.dependency_resolution),
        key::PAYLOAD_FETCH => severed(m.payload_fetch),
        key::CANDIDATE_VERIFICATION => severed(m.candidate_verification),
        key::INSTALL => severed(m.install),
        key::TEXT => severed(m.text),
        _ => severed(m.coswid),
    }
}

/// Overwrites, in `copy` (a copy of `base`), the bytes `inner` (a subslice of `base`) with
/// `with`, if the lengths agree.
pub fn patch_subslice(copy: &mut [u8], base: &[u8], inner: &[u8], with: &[u8]) {
    let start = (inner.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    if inner.len() == with.len()
        && let Some(dst) = copy.get_mut(start..start.saturating_add(with.len()))
    {
        dst.copy_from_slice(with);
    }
}

/// Re-authenticates fuzzed bytes: an envelope (or, if they do not decode as one, a bare
/// manifest) comes back as an envelope around the same manifest with a correct digest, a
/// COSE_Mac0 under [`FUZZ_KEY`], its severed members (their digests in the manifest
/// recomputed) and its integrated payloads. Whatever the manifest says then gets past
/// authentication to the full parse, validation and the processor.
pub fn reauthenticate(data: &[u8]) -> Vec<u8> {
    let mut algorithm = DigestAlgorithm::Sha256;
    let mut severed_members = Vec::new();
    let mut integrated = Vec::new();
    let manifest = match Envelope::decode(data) {
        Ok(e) => {
            let raw = e.manifest_bytes();
            let mut manifest = raw.to_vec();
            let parsed = Manifest::decode_unauthenticated(raw).ok();
            for k in SEVERABLE {
                let Some((_, content)) = e.member(k) else {
                    continue;
                };
                if let Some(d) = parsed.as_ref().and_then(|m| severed_digest(m, k)) {
                    let fresh = d.algorithm.digest(&bstr(content));
                    patch_subslice(&mut manifest, raw, d.bytes, fresh.as_bytes());
                }
                severed_members.push((k, content.to_vec()));
            }
            for (name, bytes) in e.integrated_payloads() {
                integrated.push((name.to_owned(), bytes.to_vec()));
            }
            if let Ok(a) = e.authentication() {
                algorithm = a.digest.algorithm;
            }
            manifest
        }
        Err(_) => data.to_vec(),
    };
    let encoded = EncodedManifest {
        manifest,
        severed: severed_members,
    };
    let mut b = EnvelopeBuilder::from_encoded(encoded, algorithm);
    b.mac0(alg::HMAC_256, None, fuzz_mac);
    for (name, bytes) in integrated {
        b.integrate(&name, bytes);
    }
    b.encode()
}

/// Splits `data` into a part of the length its first two bytes give (little-endian, clipped)
/// and the rest.
pub fn split_len_prefixed(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (&[], data);
    };
    let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    rest.split_at(n)
}

/// An envelope around `envelope`'s manifest, re-authenticated like [`reauthenticate`], with
/// `extra` integrated payloads added (seeds use it to give components their content).
pub fn with_integrated(envelope: &[u8], extra: &[(String, Vec<u8>)]) -> Vec<u8> {
    let Ok(e) = Envelope::decode(envelope) else {
        return envelope.to_vec();
    };
    let severed_members = SEVERABLE
        .iter()
        .filter_map(|&k| Some((k, e.member(k)?.1.to_vec())))
        .collect();
    let algorithm = e
        .authentication()
        .map_or(DigestAlgorithm::Sha256, |a| a.digest.algorithm);
    let encoded = EncodedManifest {
        manifest: e.manifest_bytes().to_vec(),
        severed: severed_members,
    };
    let mut b = EnvelopeBuilder::from_encoded(encoded, algorithm);
    b.mac0(alg::HMAC_256, None, fuzz_mac);
    for (name, bytes) in e.integrated_payloads() {
        b.integrate(name, bytes.to_vec());
    }
    for (name, bytes) in extra {
        b.integrate(name, bytes.clone());
    }
    b.encode()
}

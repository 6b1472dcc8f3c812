//! `processor`: a fuzzed envelope (or bare manifest), re-authenticated with [`FUZZ_KEY`], is
//! verified (full parse, severed members, validation, authorisation) and run on an in-memory
//! device: the update procedure (dependency resolution, payload fetch, candidate
//! verification, install, validate), then the invocation procedure (validate, load, invoke).
//! Every command runs: parameters, conditions, try-each, run-sequence, copy, swap, fetch,
//! write, decryption (AES-KW, ECDH-ES with P-256 and X25519, ML-KEM-768 recipients, AES-GCM and
//! AES-CTR) and delta copies (suitcase-delta patches applied into a component).

use std::sync::OnceLock;

use suitcase_manifest::encryption::DeviceKeys;
use suitcase_manifest::memory::{MemoryComponent, MemoryDevice};
use suitcase_manifest::{
    Envelope, Processor, ProcessorPolicy, PublicKey, TrustAnchor, TrustPolicy, VerifiedManifest,
};

use crate::{CLASS, CONTENT_PREFIX, DEVICE, FUZZ_KEY, VENDOR, reauthenticate};

/// Bytes each component of the harness device holds at most.
pub const CAPACITY: u64 = 256 * 1024;

/// A payload every device serves at the draft examples' URI (they fetch it).
pub const EXAMPLE_URI: &str = "http://example.com/file.bin";

/// The device's decryption keys: the draft vectors' AES-KW key and P-256 recipient, and the
/// committed fuzzing keys (`fuzz/keys/device-*.key`: P-256, X25519, ML-KEM-768, A128KW,
/// A256KW), each read once.
pub fn device_keys() -> &'static DeviceKeys {
    static KEYS: OnceLock<DeviceKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut files =
            vec![crate::testdata_dir().join("vectors/keys/fwenc-esdh-recipient-p256-private.pem")];
        if let Ok(dir) = std::fs::read_dir(crate::keys_dir()) {
            let mut found: Vec<_> = dir
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("device-") && n.ends_with(".key"))
                })
                .collect();
            found.sort();
            files.extend(found);
        }
        let mut keys = DeviceKeys::default();
        // The draft's fwenc-kek (testdata/keys/fwenc-kek.hex): "aaaa...".
        keys.keys.push((
            None,
            suitcase_manifest::encryption::KeyMaterial::Aes128Kw([0x61; 16]),
        ));
        for f in files {
            if let Ok(k) = suitcase_author::keys::load_private(&f)
                && let Some(m) = k.key_material()
            {
                keys.keys.push((None, m));
            }
        }
        keys
    })
}

/// The harness device for a verified manifest: one component per manifest component (capacity
/// [`CAPACITY`], version 1.2.3, slots alternating 0/1, content from the envelope's
/// `#fuzz-content-<i>` payload if any), the [`VENDOR`]/[`CLASS`]/[`DEVICE`] identity, every
/// integrated payload and the examples' URI served by fetch, a clock, a battery, consent, and
/// [`device_keys`].
pub fn device(v: &VerifiedManifest<'_>, e: &Envelope<'_>) -> MemoryDevice {
    let mut payloads: Vec<(String, Vec<u8>)> = e
        .integrated_payloads()
        .map(|(n, b)| (n.to_owned(), b.to_vec()))
        .collect();
    payloads.push((
        EXAMPLE_URI.to_owned(),
        (0..=255u8).cycle().take(34768).collect(),
    ));
    let components = v
        .manifest()
        .components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = format!("{CONTENT_PREFIX}{i}");
            MemoryComponent {
                id: c.segments().map(<[u8]>::to_vec).collect(),
                capacity: CAPACITY,
                content: e.integrated(&name).map(<[u8]>::to_vec).unwrap_or_default(),
                slot: Some(i as u64 % 2),
                version: Some(vec![1, 2, 3]),
                staged: None,
            }
        })
        .collect();
    MemoryDevice {
        vendor_id: Some((false, VENDOR.to_vec())),
        class_id: Some(CLASS.to_vec()),
        device_id: Some(DEVICE.to_vec()),
        components,
        payloads,
        keys: device_keys().clone(),
        now: Some(1_750_000_000),
        battery_mwh: Some(10_000),
        authorized: Some(true),
        ..MemoryDevice::default()
    }
}

/// What one run reached (for the coverage report in docs/fuzzing.md and the seed tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// The envelope verified.
    pub verified: bool,
    /// The update procedure ran to the end.
    pub updated: bool,
    /// The invocation procedure ran to the end.
    pub invoked: bool,
}

/// The harness, reporting how far it got and the device afterwards.
pub fn run_reporting(data: &[u8]) -> (Reached, Option<MemoryDevice>) {
    let mut reached = Reached::default();
    let envelope = reauthenticate(data);
    let Ok(e) = Envelope::decode(&envelope) else {
        return (reached, None);
    };
    let anchors = [TrustAnchor::new("fuzz", PublicKey::Hmac256(FUZZ_KEY))];
    let Ok(v) = e.verify(&anchors, &TrustPolicy::default()) else {
        return (reached, None);
    };
    reached.verified = true;
    let _ = v.text();
    let mut dev = device(&v, &e);
    if let Ok(mut p) = Processor::new(&v, &mut dev, ProcessorPolicy::default()) {
        reached.updated = p.update().is_ok();
    }
    // Invocation after the update, as after a reboot: the installed manifest re-validates.
    let policy = ProcessorPolicy {
        installed_sequence: Some(v.sequence_number()),
        allow_same_sequence: true,
    };
    if let Ok(mut p) = Processor::new(&v, &mut dev, policy) {
        reached.invoked = p.invoke().is_ok();
    }
    (reached, Some(dev))
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let _ = run_reporting(data);
}

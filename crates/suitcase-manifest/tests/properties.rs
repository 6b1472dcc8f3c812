//! Property tests: the encoder and decoder agree, hostile bytes never panic and never
//! authenticate, and an independent CBOR decoder (ciborium) reads what we read.

#![expect(clippy::unwrap_used, reason = "test code")]

use hmac::{KeyInit, Mac};
use proptest::prelude::*;
use suitcase_manifest::build::{Cmd, CustomValue, EnvelopeBuilder, Index, ManifestBuilder, Param};
use suitcase_manifest::codepoints::alg;
use suitcase_manifest::{
    Condition, DigestAlgorithm, Directive, Envelope, Manifest, PublicKey, TrustAnchor, TrustPolicy,
};

const KEY: &[u8] = b"fuzz";

fn hmac(data: &[u8]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn encryption_info() -> Vec<u8> {
    let text = include_str!(
        "../../../testdata/vectors/encryption/suit-encryption-info-aes-kw-aes-gcm.hex"
    );
    hex::decode(text.trim()).unwrap()
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn param() -> impl Strategy<Value = Param> {
    prop_oneof![
        prop::array::uniform16(any::<u8>()).prop_map(|b| Param::VendorIdentifier(b.to_vec())),
        bytes(6)
            .prop_filter("non-empty", |b| !b.is_empty())
            .prop_map(Param::VendorPen),
        prop::array::uniform16(any::<u8>()).prop_map(|b| Param::ClassIdentifier(b.to_vec())),
        prop::array::uniform32(any::<u8>())
            .prop_map(|b| Param::ImageDigest(DigestAlgorithm::Sha256, b.to_vec())),
        any::<u64>().prop_map(Param::UseBefore),
        any::<u64>().prop_map(Param::ComponentSlot),
        any::<bool>().prop_map(Param::StrictOrder),
        any::<bool>().prop_map(Param::SoftFailure),
        any::<u64>().prop_map(Param::ImageSize),
        bytes(40).prop_map(Param::Content),
        Just(Param::EncryptionInfo(encryption_info())),
        "[a-z:/.#]{0,30}".prop_map(Param::Uri),
        (0u64..4).prop_map(Param::SourceComponent),
        bytes(8).prop_map(Param::InvokeArgs),
        prop::array::uniform16(any::<u8>()).prop_map(|b| Param::DeviceIdentifier(b.to_vec())),
        bytes(8).prop_map(Param::FetchArguments),
        any::<u64>().prop_map(Param::MinimumBattery),
        any::<i64>().prop_map(Param::UpdatePriority),
        ((1u64..=5), prop::collection::vec(any::<i64>(), 1..4))
            .prop_map(|(c, v)| Param::Version(c, v)),
        Just(Param::WaitInfo(vec![0xa1, 0x02, 0x0a])),
        Just(Param::ComponentMetadata(vec![0xa0])),
    ]
}

/// Parameter maps in the order the encoder writes them (sorted by encoded key, unique keys).
fn params() -> impl Strategy<Value = Vec<Param>> {
    prop::collection::vec(param(), 1..5).prop_map(|mut ps| {
        ps.sort_by_key(|p| encoded_key(p.key()));
        ps.dedup_by_key(|p| p.key());
        ps
    })
}

fn encoded_key(k: i64) -> Vec<u8> {
    suitcase_manifest::build::raw::int(k)
}

fn condition() -> impl Strategy<Value = Condition> {
    prop::sample::select(vec![
        Condition::VendorIdentifier,
        Condition::ClassIdentifier,
        Condition::ImageMatch,
        Condition::UseBefore,
        Condition::ComponentSlot,
        Condition::CheckContent,
        Condition::DependencyIntegrity,
        Condition::IsDependency,
        Condition::Abort,
        Condition::DeviceIdentifier,
        Condition::ImageNotMatch,
        Condition::MinimumBattery,
        Condition::UpdateAuthorized,
        Condition::Version,
    ])
}

fn directive() -> impl Strategy<Value = Directive> {
    prop::sample::select(vec![
        Directive::ProcessDependency,
        Directive::Write,
        Directive::Fetch,
        Directive::Copy,
        Directive::Invoke,
        Directive::Wait,
        Directive::Swap,
        Directive::Unlink,
    ])
}

fn command() -> impl Strategy<Value = Cmd> {
    let leaf = prop_oneof![
        (condition(), 0u64..16).prop_map(|(c, p)| Cmd::Condition(c, p)),
        (directive(), 0u64..16).prop_map(|(d, p)| Cmd::Directive(d, p)),
        prop_oneof![
            (0u64..4).prop_map(Index::One),
            Just(Index::All),
            prop::collection::vec(0u64..4, 1..3).prop_map(Index::List),
        ]
        .prop_map(Cmd::SetComponentIndex),
        params().prop_map(Cmd::OverrideParameters),
        params().prop_map(Cmd::SetParameters),
        (0u64..4, params()).prop_map(|(i, p)| Cmd::OverrideMultiple(vec![(i, p)])),
        (
            0u64..4,
            prop::collection::vec(prop::sample::select(vec![1i64, 3, 14, 21]), 1..3)
        )
            .prop_map(|(i, k)| Cmd::CopyParams(vec![(i, k)])),
        (
            -1000i64..=-256,
            prop_oneof![
                bytes(4).prop_map(CustomValue::Bytes),
                "[a-z]{0,5}".prop_map(CustomValue::Text),
                any::<i64>().prop_map(CustomValue::Int),
                Just(CustomValue::Nil),
            ]
        )
            .prop_map(|(id, v)| Cmd::Custom(id, v)),
    ];
    leaf.prop_recursive(3, 24, 3, |inner| {
        let seq = prop::collection::vec(inner, 1..4);
        prop_oneof![
            (prop::collection::vec(seq.clone(), 2..4), any::<bool>())
                .prop_map(|(b, nil)| Cmd::TryEach(b, nil)),
            seq.prop_map(Cmd::RunSequence),
        ]
    })
}

fn sequence() -> impl Strategy<Value = Option<Vec<Cmd>>> {
    prop::option::of(prop::collection::vec(command(), 1..5))
}

fn component_id() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(bytes(4), 0..3)
}

fn manifest() -> impl Strategy<Value = ManifestBuilder> {
    (
        any::<u64>(),
        prop::option::of("[a-z:/.]{0,20}"),
        prop::collection::vec(component_id(), 1..4),
        (sequence(), sequence(), sequence(), sequence()),
        (sequence(), sequence(), sequence(), sequence()),
        prop::option::of(component_id()),
    )
        .prop_map(
            |(
                seq,
                uri,
                components,
                (shared, dr, pf, cv),
                (install, validate, load, invoke),
                mcid,
            )| {
                ManifestBuilder {
                    sequence_number: seq,
                    reference_uri: uri,
                    components,
                    dependencies: Vec::new(),
                    shared_sequence: shared,
                    dependency_resolution: dr,
                    payload_fetch: pf,
                    candidate_verification: cv,
                    install,
                    validate,
                    load,
                    invoke,
                    text: Vec::new(),
                    manifest_component_id: mcid,
                    sever: Vec::new(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Encoding then decoding gives back the same manifest, the decoder consumes every byte,
    /// and re-encoding gives the same bytes (the encoding is deterministic).
    #[test]
    fn manifest_round_trip(m in manifest()) {
        let bytes = m.encode(DigestAlgorithm::Sha256).manifest;
        let decoded = Manifest::decode_unauthenticated(&bytes).unwrap();
        let back = ManifestBuilder::from_manifest(&decoded);
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.encode(DigestAlgorithm::Sha256).manifest, bytes);
    }

    /// Text maps and severed members survive a signed envelope round trip.
    #[test]
    fn envelope_round_trip_with_text_and_severing(
        m in manifest(),
        text in prop::collection::vec(("[a-z]{2}", prop::option::of(component_id()), 1i64..9, "[ -~]{0,20}"), 0..4),
        sever in prop::collection::vec(prop::sample::select(vec![15u64, 16, 18, 20, 23]), 0..3),
    ) {
        let mut m = m;
        let mut text = text;
        text.sort();
        text.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2);
        m.text = text;
        m.sever = sever;
        let mut b = EnvelopeBuilder::new(&m, DigestAlgorithm::Sha256);
        b.mac0(alg::HMAC_256, None, hmac);
        let bytes = b.encode();
        let env = Envelope::decode(&bytes).unwrap();
        let anchors = [TrustAnchor { name: "k", key: PublicKey::Hmac256(KEY), kid: None, permissions: suitcase_manifest::Permissions::ALL  }];
        // Validation may refuse what the generator produced (e.g. an index out of range), but
        // never for an authentication or structure reason.
        match env.verify(&anchors, &TrustPolicy::default()) {
            Ok(v) => prop_assert_eq!(v.sequence_number(), m.sequence_number),
            Err(e) => prop_assert!(
                matches!(e, suitcase_manifest::Error::ComponentIndex { .. }
                    | suitcase_manifest::Error::Malformed { at: 0, .. }),
                "unexpected {}", e
            ),
        }
        let reencoded = ManifestBuilder::from_manifest(&Manifest::decode_unauthenticated(env.manifest_bytes()).unwrap());
        prop_assert_eq!(reencoded.sequence_number, m.sequence_number);
    }

    /// Arbitrary bytes never panic anywhere and never authenticate.
    #[test]
    fn arbitrary_bytes_never_panic_or_accept(data in bytes(512)) {
        prop_assert!(!suitcase_manifest::__fuzz::decode_envelope(&data));
        suitcase_manifest::__fuzz::decode_manifest(&data);
        suitcase_manifest::__fuzz::decode_command_sequence(&data);
    }

    /// Bytes that start like an envelope (tag 107, a map) explore deeper paths.
    #[test]
    fn envelope_shaped_bytes_never_panic_or_accept(data in bytes(300)) {
        let mut input = vec![0xd8, 0x6b, 0xa2, 0x02];
        input.extend(data);
        prop_assert!(!suitcase_manifest::__fuzz::decode_envelope(&input));
    }
}

fn vectors() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vectors");
    let mut out = Vec::new();
    for sub in ["manifest", "trust-domains", "libcsuit-extra", "encryption"] {
        for entry in std::fs::read_dir(format!("{dir}/{sub}")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.display().to_string();
            if name.ends_with(".hex")
                && !name.contains("encryption-info")
                && !name.contains("encrypted-payload")
            {
                out.push((
                    name.clone(),
                    hex::decode(std::fs::read_to_string(&path).unwrap().trim()).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn example_anchor() -> TrustAnchor<'static> {
    use p256::pkcs8::DecodePublicKey;
    let pem = include_str!("../../../testdata/vectors/keys/suit-example-es256-public.pem");
    TrustAnchor {
        name: "example",
        key: PublicKey::P256(p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap()),
        kid: None,
        permissions: suitcase_manifest::Permissions::ALL,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any single-byte change, insertion, deletion or truncation of a signed spec vector is
    /// either refused or leaves the manifest bytes exactly as signed.
    #[test]
    fn mutated_vectors_never_accept_a_changed_manifest(
        which in 0usize..1000, pos in any::<prop::sample::Index>(), byte in any::<u8>(), kind in 0u8..4,
    ) {
        let all = vectors();
        let (name, original) = &all[which % all.len()];
        let mut data = original.clone();
        let i = pos.index(data.len());
        match kind {
            0 => data[i] ^= byte.max(1),
            1 => data.insert(i, byte),
            2 => { data.remove(i); }
            _ => data.truncate(i),
        }
        let anchors = [example_anchor(), TrustAnchor { name: "mac", key: PublicKey::Hmac256(&[b'a'; 32]), kid: None, permissions: suitcase_manifest::Permissions::ALL  }];
        if let Ok(env) = Envelope::decode(&data)
            && let Ok(v) = env.verify(&anchors, &TrustPolicy::default())
        {
            {
                let original_env = Envelope::decode(original).unwrap();
                prop_assert_eq!(v.manifest().raw, original_env.manifest_bytes(), "{} accepted a changed manifest", name);
            }
        }
    }
}

/// ciborium, an independent CBOR implementation, reads the same envelope structure and manifest
/// fields from every vector as we do.
#[test]
fn ciborium_agrees_on_every_vector() {
    use ciborium::value::Value;
    for (name, bytes) in vectors() {
        let value: Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        let Value::Tag(107, inner) = value else {
            panic!("{name}: not tag 107")
        };
        let Value::Map(entries) = *inner else {
            panic!("{name}: not a map")
        };
        let manifest_bytes = entries
            .iter()
            .find(|(k, _)| k.as_integer() == Some(3.into()))
            .and_then(|(_, v)| v.as_bytes().cloned())
            .unwrap();
        let ours = Envelope::decode(&bytes).unwrap();
        assert_eq!(ours.manifest_bytes(), manifest_bytes.as_slice(), "{name}");
        let m: Value = ciborium::from_reader(manifest_bytes.as_slice()).unwrap();
        let seq = m
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_integer() == Some(2.into()))
            .unwrap()
            .1
            .as_integer()
            .unwrap();
        let parsed = Manifest::decode_unauthenticated(ours.manifest_bytes()).unwrap();
        assert_eq!(
            u64::try_from(seq).unwrap(),
            parsed.sequence_number,
            "{name}"
        );
        assert_eq!(
            entries.len(),
            2 + ours.integrated_payloads().count()
                + [14u64, 15, 16, 18, 20, 23]
                    .iter()
                    .filter(|k| ours.member(**k).is_some())
                    .count(),
            "{name}"
        );
    }
}

/// ciborium reads our encoder's output as the structure we meant.
#[test]
fn ciborium_reads_our_encoding() {
    use ciborium::value::Value;
    let m = ManifestBuilder {
        sequence_number: 1_700_000_000,
        components: vec![vec![b"usr".to_vec(), b"bin".to_vec()]],
        install: Some(vec![Cmd::OverrideParameters(vec![
            Param::Uri("https://x/y.bin".into()),
            Param::ImageSize(5),
        ])]),
        ..Default::default()
    };
    let mut b = EnvelopeBuilder::new(&m, DigestAlgorithm::Sha256);
    b.mac0(alg::HMAC_256, None, hmac);
    let bytes = b.encode();
    let Value::Tag(107, inner) = ciborium::from_reader::<Value, _>(bytes.as_slice()).unwrap()
    else {
        panic!()
    };
    let map = inner.as_map().unwrap();
    assert_eq!(
        map[0].0,
        Value::Integer(2.into()),
        "the auth wrapper comes first"
    );
    let manifest: Value = ciborium::from_reader(map[1].1.as_bytes().unwrap().as_slice()).unwrap();
    let keys: Vec<i128> = manifest
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_integer().unwrap().into())
        .collect();
    assert_eq!(keys, [1, 2, 3, 20], "deterministic key order");
    let install = manifest.as_map().unwrap()[3].1.as_bytes().unwrap().clone();
    let install: Value = ciborium::from_reader(install.as_slice()).unwrap();
    let params = install.as_array().unwrap()[1].as_map().unwrap();
    let pkeys: Vec<i128> = params
        .iter()
        .map(|(k, _)| k.as_integer().unwrap().into())
        .collect();
    assert_eq!(pkeys, [14, 21]);
    assert_eq!(params[1].1, Value::Text("https://x/y.bin".into()));
}

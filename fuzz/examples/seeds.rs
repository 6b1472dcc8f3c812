//! Writes the committed seed corpora (`fuzz/seeds/<target>/`) and the fuzzing keys
//! (`fuzz/keys/`): `cargo run --release --example seeds` in `fuzz/`. Seeds come from the public
//! vectors in `testdata/` and from the project's own encoders (release builder, every signer
//! and recipient, delta encoder, bootloader simulator, slot packer). Existing keys are kept, so
//! the seeds stay valid for the committed keys; delete `fuzz/keys` to make new ones.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a generator")]

use std::fs;
use std::path::{Path, PathBuf};

use suitcase_author::keys::{KeyAlg, PublicKey as AuthorKey};
use suitcase_author::profile::Tier;
use suitcase_author::release::{ImageInput, ReleaseRequest, build};
use suitcase_boot::ImageIndex;
use suitcase_boot::simulate::sim_image;
use suitcase_delta::{InPlaceOptions, Options, Strategy, create};
use suitcase_fuzz::{CLASS, CONTENT_PREFIX, VENDOR, boot_state, keys_dir, testdata_dir};
use suitcase_manifest::build::{encode_sequence, owned_sequence};
use suitcase_manifest::{Envelope, Manifest};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Seeds {
    dir: PathBuf,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let d = self.dir.join(target);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(name), bytes).unwrap();
    }
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    (0..digits.len() / 2)
        .map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// A key pair in fuzz/keys: `<name>.key` (private) and `<name>.pub`, made once.
fn key(name: &str, alg: KeyAlg) -> (PathBuf, PathBuf) {
    let dir = keys_dir();
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    if !private.exists() {
        let g = suitcase_author::keys::generate(alg, "h5w8").unwrap();
        fs::write(&private, &g.private).unwrap();
    }
    if !public.exists() {
        let k = suitcase_author::keys::load_public(&private).unwrap();
        fs::write(&public, k.encode().unwrap().0).unwrap();
    }
    (private, public)
}

fn image(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed).wrapping_add((i / 97) as u8))
        .collect()
}

fn release(
    tier: Tier,
    sign: &[&Path],
    encrypt_for: &[&Path],
    x5chain: &[&Path],
    images: Vec<ImageInput>,
) -> Vec<u8> {
    let req = ReleaseRequest {
        sequence: 7,
        tier,
        vendor: VENDOR,
        class: CLASS,
        device: None,
        images,
        sign: sign.iter().map(|p| p.to_path_buf()).collect(),
        encrypt_for: encrypt_for.iter().map(|p| p.to_path_buf()).collect(),
        x5chain: x5chain.iter().map(|p| p.to_path_buf()).collect(),
        content: None,
        reference_uri: None,
        description: Some("fuzz seed".into()),
    };
    build(&req, &mut |_, _, _| {}).unwrap().envelope
}

fn img(name: &str, component: u8, bytes: Vec<u8>, delta_from: Option<Vec<u8>>) -> ImageInput {
    ImageInput {
        name: name.into(),
        bytes,
        component: vec![vec![component]],
        uri: None,
        integrated: true,
        invoke: true,
        delta_from,
    }
}

/// Seeds for every target that takes an envelope.
fn envelope_seeds(s: &Seeds, name: &str, envelope: &[u8], base: Option<&[u8]>) {
    s.put("envelope", name, envelope);
    s.put("auth", name, envelope);
    let Ok(e) = Envelope::decode(envelope) else {
        return;
    };
    let m = e.manifest_bytes();
    s.put("manifest", name, m);
    if let Ok(parsed) = Manifest::decode_unauthenticated(m) {
        for (i, seq) in [
            parsed.shared_sequence,
            parsed.validate,
            parsed.load,
            parsed.invoke,
        ]
        .into_iter()
        .flatten()
        .enumerate()
        {
            s.put(
                "command_sequence",
                &format!("{name}-{i}"),
                &encode_sequence(&owned_sequence(&seq)),
            );
        }
    }
    let extra: Vec<(String, Vec<u8>)> = match base {
        Some(b) => (0..4)
            .map(|i| (format!("{CONTENT_PREFIX}{i}"), b.to_vec()))
            .collect(),
        None => Vec::new(),
    };
    let processor_seed = suitcase_fuzz::with_integrated(envelope, &extra);
    let (reached, _) = suitcase_fuzz::processor::run_reporting(&processor_seed);
    println!("processor seed {name}: {reached:?}");
    s.put("processor", name, &processor_seed);
    // Secure boot: the (re-MACed) envelope packed with its first integrated payload.
    let image = e
        .integrated_payloads()
        .next()
        .map(|(_, b)| b.to_vec())
        .unwrap_or_default();
    if let Some(slot) = suitcase_device::pack(&suitcase_fuzz::reauthenticate(envelope), &image, 64)
    {
        s.put("secure_boot", name, &slot);
    }
}

fn public_vectors(s: &Seeds) {
    let td = testdata_dir().join("vectors");
    for sub in [
        "manifest",
        "encryption",
        "trust-domains",
        "libcsuit-extra",
        "negative",
    ] {
        let mut files: Vec<_> = fs::read_dir(td.join(sub))
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        files.sort_by_key(|e| e.path());
        for f in files {
            let p = f.path();
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            if !n.ends_with(".hex") || n.starts_with("suit-encryption-info") {
                continue;
            }
            let bytes = unhex(&fs::read_to_string(&p).unwrap());
            let name = format!("{sub}-{}", n.trim_end_matches(".hex"));
            if Envelope::decode(&bytes).is_ok() {
                envelope_seeds(s, &name, &bytes, None);
            } else {
                s.put("manifest", &name, &bytes);
            }
        }
    }
}

fn own_releases(s: &Seeds) {
    let (es256, es256_pub) = key("author-es256", KeyAlg::Es256);
    let (ed, _) = key("author-ed25519", KeyAlg::Ed25519);
    let (hss, _) = key("author-hss-lms", KeyAlg::HssLms);
    let (mldsa, _) = key("author-ml-dsa-65", KeyAlg::MlDsa65);
    let (_, a128) = key("device-a128kw", KeyAlg::A128Kw);
    let (_, a256) = key("device-a256kw", KeyAlg::A256Kw);
    let (_, p256) = key("device-p256-ecdh", KeyAlg::P256Ecdh);
    let (_, x25519) = key("device-x25519", KeyAlg::X25519);
    let (_, mlkem) = key("device-ml-kem-768", KeyAlg::MlKem768);
    // The symmetric device keys' "public" halves are the secrets: keep only the .key files.
    let _ = (fs::remove_file(&a128).ok(), fs::remove_file(&a256).ok());
    let a128 = keys_dir().join("device-a128kw.key");
    let a256 = keys_dir().join("device-a256kw.key");
    let _ = es256_pub;

    // X.509: a root CA and a leaf for the ES256 author key.
    let root_pem = keys_dir().join("author-x509-root.pub");
    let chain = keys_dir().join("x5chain.pem");
    if !root_pem.exists() || !chain.exists() {
        let ca = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let issuer = suitcase_author::x509::Issuer::SelfSigned(&ca);
        let root =
            suitcase_author::x509::issue(&ca.public_key(), "fuzz root", true, 36500, &issuer)
                .unwrap();
        let AuthorKey::P256(author) = suitcase_author::keys::load_public(&es256).unwrap() else {
            panic!("es256 key")
        };
        let issuer = suitcase_author::x509::Issuer::Ca {
            key: &ca,
            cert: &root,
        };
        let leaf =
            suitcase_author::x509::issue(&author, "fuzz author", false, 36500, &issuer).unwrap();
        fs::write(
            &root_pem,
            suitcase_author::x509::to_pem(std::slice::from_ref(&root)),
        )
        .unwrap();
        fs::write(&chain, suitcase_author::x509::to_pem(&[leaf])).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 86_400;
        fs::write(keys_dir().join("now.txt"), format!("{now}\n")).unwrap();
    }

    let fw = image(3, 3000);
    let one = || vec![img("fw", 0, fw.clone(), None)];
    let cases: Vec<(&str, Vec<u8>, Option<Vec<u8>>)> = vec![
        (
            "basic-es256",
            release(Tier::Basic, &[&es256], &[], &[], one()),
            None,
        ),
        (
            "basic-ed25519",
            release(Tier::Basic, &[&ed], &[], &[], one()),
            None,
        ),
        (
            "basic-two-images-two-signers",
            release(
                Tier::Basic,
                &[&es256, &ed],
                &[],
                &[],
                vec![
                    img("a", 0, fw.clone(), None),
                    img("b", 1, image(5, 700), None),
                ],
            ),
            None,
        ),
        (
            "upgraded-a128kw",
            release(Tier::Upgraded, &[&es256], &[&a128], &[], one()),
            None,
        ),
        (
            "enhanced-a256kw",
            release(Tier::Enhanced, &[&es256], &[&a256], &[], one()),
            None,
        ),
        (
            "enhanced-p256-x25519-x509",
            release(
                Tier::Enhanced,
                &[&es256],
                &[&p256, &x25519],
                &[&chain],
                one(),
            ),
            None,
        ),
        (
            "quantum-mlkem-ed25519-hss-mldsa",
            release(Tier::Quantum, &[&ed, &hss, &mldsa], &[&mlkem], &[], one()),
            None,
        ),
    ];
    for (name, envelope, base) in cases {
        envelope_seeds(s, name, &envelope, base.as_deref());
        if name.contains("x509") {
            fs::write(keys_dir().join("x509-signed.suit"), &envelope).unwrap();
        }
    }
    // Delta releases: the base image is every component's content before the update.
    let old = image(3, 3000);
    let mut new = old.clone();
    new[1000..1100].fill(0x42);
    new.extend(image(9, 500));
    for (name, tier, enc) in [
        ("delta-basic", Tier::Basic, vec![]),
        (
            "delta-upgraded-encrypted",
            Tier::Upgraded,
            vec![a128.as_path()],
        ),
    ] {
        let envelope = release(
            tier,
            &[&es256],
            &enc,
            &[],
            vec![img("fw", 0, new.clone(), Some(old.clone()))],
        );
        envelope_seeds(s, name, &envelope, Some(&old));
    }
    // Keys.
    let mut files: Vec<_> = fs::read_dir(keys_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.push(testdata_dir().join("vectors/keys/suit-example-es256-public.pem"));
    files.push(testdata_dir().join("vectors/keys/fwenc-esdh-recipient-p256-private.pem"));
    files.sort();
    for f in files {
        let n = f.file_name().unwrap().to_string_lossy().into_owned();
        if !(n.ends_with(".key") || n.ends_with(".pub") || n.ends_with(".pem"))
            || n.starts_with("author-hss") && n.ends_with(".key")
        {
            continue;
        }
        let bytes = fs::read(&f).unwrap();
        let mut seed = vec![1u8];
        seed.extend_from_slice(&bytes);
        s.put("keys", &format!("parse-{n}"), &seed);
        if let Ok(k) = suitcase_author::keys::load_public(&f)
            && let Ok(cose) = k.encode_cose()
        {
            let mut seed = vec![0u8];
            seed.extend_from_slice(&cose);
            s.put("keys", &format!("cose-{n}"), &seed);
        }
        if n.ends_with(".pem") || n == "author-x509-root.pub" {
            let mut seed = vec![2u8];
            seed.extend_from_slice(&bytes);
            s.put("keys", &format!("certs-{n}"), &seed);
            if let Ok(certs) = suitcase_author::x509::parse_certs(&f, &bytes) {
                for (i, der) in certs.iter().enumerate() {
                    let mut seed = vec![3u8];
                    seed.extend_from_slice(der);
                    s.put("keys", &format!("anchor-{n}-{i}"), &seed);
                }
            }
        }
    }
}

fn delta_seeds(s: &Seeds) {
    let old = image(3, 2000);
    let mut new = old.clone();
    new[500..560].fill(0x42);
    new.extend(image(9, 300));
    let unrelated = image(11, 1500);
    let mut patches = Vec::new();
    for (name, strategy, full_digests) in [
        ("delta", Strategy::Delta, false),
        ("delta-full-digests", Strategy::Delta, true),
        ("full", Strategy::Full, false),
    ] {
        let p = create(
            &old,
            &new,
            &Options {
                strategy,
                full_digests,
                ..Options::default()
            },
        )
        .unwrap();
        patches.push((name.to_string(), old.clone(), p.bytes));
    }
    let p = create(&old, &unrelated, &Options::default()).unwrap();
    patches.push(("unrelated".into(), old.clone(), p.bytes));
    let inplace = create(
        &old,
        &new,
        &Options {
            in_place: Some(InPlaceOptions {
                block_size: 256,
                slot_size: 4096,
                segment_size: 512,
            }),
            ..Options::default()
        },
    )
    .unwrap();
    patches.push(("in-place".into(), old.clone(), inplace.bytes.clone()));
    for (name, old, patch) in &patches {
        for ctl in [0x80u8, 0x0F] {
            let mut seed = vec![ctl];
            seed.extend_from_slice(&(old.len() as u16).to_le_bytes());
            seed.extend_from_slice(old);
            seed.extend_from_slice(patch);
            s.put("delta_sequential", &format!("{name}-{ctl:02x}"), &seed);
            s.put("delta_host", &format!("{name}-{ctl:02x}"), &seed);
        }
    }
    // In place: no record, and a mid-write record, with power cuts early and late.
    for (i, (cut, record)) in [
        (3u16, [0u8; 20]),
        (40, {
            let mut r = [0u8; 20];
            r[8] = 2;
            r[12] = 1;
            r[16..20].copy_from_slice(&60u32.to_le_bytes());
            r
        }),
        (400, {
            let mut r = [0u8; 20];
            r[8] = 1;
            r[12] = 3;
            r
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let mut seed = vec![0x80];
        seed.extend_from_slice(&cut.to_le_bytes());
        seed.extend_from_slice(&record);
        seed.extend_from_slice(&(old.len() as u16).to_le_bytes());
        seed.extend_from_slice(&old);
        seed.extend_from_slice(&inplace.bytes);
        s.put("delta_in_place", &format!("in-place-{i}"), &seed);
    }
}

fn boot_seeds(s: &Seeds) {
    for ctl in [0u8, 1, 2, 3] {
        for staged in [false, true] {
            let ctl = ctl | if staged { 4 } else { 0 };
            macro_rules! scenarios {
                ($n:literal) => {{
                    let d = boot_state::device::<$n>(ctl).unwrap();
                    let len = boot_state::state_len(&d);
                    let dump = |d: &suitcase_boot::simulate::SimDevice<$n>, what: &str| {
                        let bytes = d
                            .flash()
                            .with(|f| f.peek(0, len as usize).unwrap().to_vec())
                            .unwrap();
                        let mut seed = vec![ctl | 8];
                        seed.extend_from_slice(&bytes);
                        s.put("boot_state", &format!("ctl{ctl:02x}-{what}"), &seed);
                    };
                    dump(&d, "fresh");
                    let _ = d.boot();
                    dump(&d, "booted");
                    if staged {
                        // Power cut in the middle of installing (a swap resumes from its marks).
                        let d = boot_state::device::<$n>(ctl).unwrap();
                        let _ = d.flash().with(|f| f.cut_power_after(7));
                        let _ = d.boot();
                        dump(&d, "cut");
                        let _ = d.confirm();
                        let _ = d.boot();
                        dump(&d, "confirmed");
                    }
                }};
            }
            if ctl & 2 == 0 {
                scenarios!(1);
            } else {
                scenarios!(2);
            }
        }
    }
    let _ = sim_image(ImageIndex(0), 1, 10);
}

fn wire_seeds(s: &Seeds) {
    let docs: [(&str, u8, &str); 6] = [
        (
            "checkin",
            0,
            r#"{"components":[{"id":["00"],"sequence_number":3}],"future_field":1}"#,
        ),
        (
            "step-report",
            2,
            r#"{"release_id":"r","step":"apply","outcome":"success","suit_report":"AAE="}"#,
        ),
        ("checkin-empty", 0, "{}"),
        ("device-create", 22, r#"{"serial":"sn-1","tags":["beta"]}"#),
        (
            "campaign-dry-run",
            42,
            r#"{"targeted":2,"matched":3,"other_class":1,"busy":0,"up_to_date":0,"devices":[{"id":"dev_1","name":"sn-1"},{"id":"dev_2","name":"sn-2"}]}"#,
        ),
        ("dry-run-device", 43, r#"{"id":"dev_1","name":"sn-1"}"#),
    ];
    let types = suitcase_fuzz::wire::TYPES;
    for (name, index, json) in docs {
        let (campaign_dry_run, dry_run_device) = (42, 43);
        assert!(
            (index != campaign_dry_run || types[42] == "CampaignDryRun")
                && (index != dry_run_device || types[43] == "DryRunDevice"),
            "wire.rs's type list moved: fix the seeds' selectors"
        );
        let mut seed = vec![index];
        seed.extend_from_slice(json.as_bytes());
        s.put("wire", &format!("json-{name}"), &seed);
        // The same document as CBOR.
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
            let mut seed = vec![index | 0x80];
            ciborium::into_writer(&v, &mut seed).unwrap();
            s.put("wire", &format!("cbor-{name}"), &seed);
        }
    }
    let _ = types;
}

/// What SWUpdate 2022.12's suricatta sends (its printf templates in server_hawkbit.c, as
/// recorded in crates/suitcase-server/tests/ddi.rs and seen by ddi_swupdate.rs), hawkBit's own
/// shapes, and what the server derives for its answers.
fn ddi_seeds(s: &Seeds) {
    let swu = |id: u32, execution: &str, finished: &str, details: &str| {
        format!(
            "{{\"id\": {id}, \"time\": \"20261206T114413\", \"status\": {{\"result\": {{\"progress\": {{\"cnt\": 0, \"of\": 0}}, \"finished\": \"{finished}\"}}, \"execution\": \"{execution}\", \"details\": [ {details} ]}}}}"
        )
    };
    let seeds: Vec<(&str, u8, Vec<u8>)> = vec![
        (
            "feedback-swu-installing",
            0,
            swu(1, "proceeding", "none", r#""Installing Update Chunk Artifacts.""#).into_bytes(),
        ),
        (
            "feedback-swu-success",
            0,
            swu(1, "closed", "success", r#""Update Installed.""#).into_bytes(),
        ),
        (
            "feedback-swu-failure",
            0,
            swu(
                7,
                "closed",
                "failure",
                r#""ERROR : Checksum does not match: Should be  dd59 , but actually is  79dd .", "ERROR : HASH mismatch : c776 <--> 76e9", "No suitable .swu image found""#,
            )
            .into_bytes(),
        ),
        (
            "feedback-swu-skipped",
            0,
            swu(3, "closed", "success", r#""Skipped Update.""#).into_bytes(),
        ),
        (
            "feedback-hawkbit",
            0,
            br#"{"timestamp":1627997501890,"status":{"execution":"downloaded","result":{"finished":"none","progress":{"cnt":2,"of":5}},"code":200,"details":["x",3,null]},"unknown":true}"#.to_vec(),
        ),
        (
            "cancel-feedback-swu",
            1,
            swu(11, "closed", "success", r#""cancellation acknowledged.""#).into_bytes(),
        ),
        (
            "cancel-feedback-rejected",
            1,
            swu(11, "rejected", "none", r#""too late""#).into_bytes(),
        ),
        (
            "config-data-swu",
            2,
            br#"{"id": "", "time": "20261206T114413", "status": {"result": {"finished": "success"}, "execution": "closed", "details": [""]}, "data": {"board": "sim", "rev": "1.0"}}"#.to_vec(),
        ),
        (
            "config-data-replace",
            2,
            br#"{"mode":"replace","data":{"suitcase_sequence":"7","n":3,"b":true}}"#.to_vec(),
        ),
        ("action-id", 3, b"2147483647".to_vec()),
        ("action-id-too-long", 3, b"99999999999999999999".to_vec()),
        (
            "file-name",
            4,
            [&[0u8][..], b"https://fw.example/releases/update.swu?x=1#y"].concat(),
        ),
        ("escape-segment", 5, "sn 0001/\u{e9}%".as_bytes().to_vec()),
        ("sleep", 6, 300i64.to_le_bytes().to_vec()),
        (
            "ranges",
            7,
            [&70_000u32.to_le_bytes()[..], b"bytes=0-9,100-109,-5\0\"0123abcd\""].concat(),
        ),
        (
            "ranges-resume",
            7,
            [&3_000_000u32.to_le_bytes()[..], b"bytes=1200000-,5-6"].concat(),
        ),
    ];
    for (name, selector, input) in seeds {
        let mut seed = vec![selector];
        seed.extend_from_slice(&input);
        suitcase_fuzz::ddi::run(&seed);
        s.put("ddi", name, &seed);
    }
}

/// A processor seed that reaches `directive-swap`: two components, the update procedure
/// swaps component 0 with component 1 (`source-component`), both with content, authorised (the
/// harness device consents).
fn swap_seed(s: &Seeds) {
    use suitcase_manifest::build::{Cmd, EnvelopeBuilder, Index, ManifestBuilder, Param};
    use suitcase_manifest::codepoints::alg;
    use suitcase_manifest::{Condition, DigestAlgorithm, Directive};
    let identity = vec![
        Cmd::SetComponentIndex(Index::All),
        Cmd::OverrideParameters(vec![
            Param::VendorIdentifier(VENDOR.to_vec()),
            Param::ClassIdentifier(CLASS.to_vec()),
        ]),
        Cmd::Condition(Condition::VendorIdentifier, 15),
        Cmd::Condition(Condition::ClassIdentifier, 15),
    ];
    let m = ManifestBuilder {
        sequence_number: 8,
        components: vec![vec![b"a".to_vec()], vec![b"b".to_vec()]],
        shared_sequence: Some(identity.clone()),
        install: Some(vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::OverrideParameters(vec![Param::SourceComponent(1)]),
            Cmd::Directive(Directive::Swap, 15),
        ]),
        validate: Some(identity),
        ..ManifestBuilder::default()
    };
    let mut b = EnvelopeBuilder::new(&m, DigestAlgorithm::Sha256);
    b.mac0(alg::HMAC_256, None, suitcase_fuzz::fuzz_mac);
    b.integrate(&format!("{CONTENT_PREFIX}0"), image(3, 1000));
    b.integrate(&format!("{CONTENT_PREFIX}1"), image(5, 700));
    let seed = b.encode();
    let (reached, dev) = suitcase_fuzz::processor::run_reporting(&seed);
    println!("processor seed swap-two-components: {reached:?}");
    let dev = dev.expect("the swap seed verifies");
    assert!(reached.updated, "the swap seed completes the update");
    assert_eq!(
        dev.components[0].content,
        image(5, 700),
        "component 0 swapped"
    );
    s.put("processor", "swap-two-components", &seed);
}

/// The `trust` target's seeds (`suitcase_fuzz::trust::seeds`: fixed Ed25519 test keys, so
/// the bytes are the same on every run).
fn trust_seeds(s: &Seeds) {
    for (name, bytes) in suitcase_fuzz::trust::seeds() {
        s.put("trust", &name, &bytes);
    }
}

fn main() {
    fs::create_dir_all(keys_dir()).unwrap();
    let dir = root().join("seeds");
    // `-- trust`: only the trust seeds, every other committed seed untouched (the others are
    // not all reproducible byte for byte: ECDSA signatures are randomised).
    if std::env::args().nth(1).as_deref() == Some("trust") {
        trust_seeds(&Seeds { dir });
        return;
    }
    let _ = fs::remove_dir_all(&dir);
    let s = Seeds { dir };
    trust_seeds(&s);
    public_vectors(&s);
    own_releases(&s);
    delta_seeds(&s);
    boot_seeds(&s);
    wire_seeds(&s);
    ddi_seeds(&s);
    swap_seed(&s);
    println!("seeds written to {}", s.dir.display());
}

//! `suitcase bench`: measurements recorded in docs/benchmarks.md.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Subcommand;
use serde_json::{Value, json};
use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::{Tier, signer, uuid};
use suitcase_manifest::{Envelope, TrustAnchor, TrustPolicy};

/// The `bench` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Sign and verify time, signature, key and envelope sizes per algorithm and per tier.
    ///
    /// Build with --release for meaningful times: `cargo run --release -p suitcase-cli -- bench tiers`.
    Tiers(TiersArgs),
}

/// Arguments of `bench tiers`.
#[derive(Debug, clap::Args)]
pub(crate) struct TiersArgs {
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// HSS-LMS tree parameters for the hash-based key.
    #[arg(long, default_value = "h10w4,h10w4")]
    hss_params: String,
    /// Image size in bytes for the per-tier releases.
    #[arg(long, default_value_t = 65536)]
    image_bytes: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Tiers(args) => tiers(&args),
    }
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn time<T>(iterations: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        let start = Instant::now();
        std::hint::black_box(f()?);
        samples.push(start.elapsed());
    }
    Ok(median(samples))
}

fn request(
    tier: Tier,
    image: &[u8],
    sign: Vec<std::path::PathBuf>,
    encrypt_for: Vec<std::path::PathBuf>,
) -> ReleaseRequest {
    let vendor = uuid::vendor("example.com");
    ReleaseRequest {
        sequence: 1,
        tier,
        vendor,
        class: uuid::class(&vendor, "bench"),
        device: None,
        images: vec![ImageInput {
            name: "app.bin".into(),
            bytes: image.to_vec(),
            component: vec![vec![0]],
            uri: Some("https://fw.example.com/app.bin".into()),
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

fn tiers(args: &TiersArgs) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let key_path = |alg: KeyAlg| dir.path().join(alg.name());
    let mut algorithms = Vec::new();
    for alg in [
        KeyAlg::Es256,
        KeyAlg::Ed25519,
        KeyAlg::Hmac256,
        KeyAlg::HssLms,
        KeyAlg::MlDsa65,
    ] {
        let start = Instant::now();
        let generated = keys::generate(alg, &args.hss_params)?;
        let keygen_us = start.elapsed().as_secs_f64() * 1e6;
        keys::write_atomic(&key_path(alg), &generated.private, true)?;
        let public = keys::load_public(&key_path(alg))?;
        let private = keys::load_private(&key_path(alg))?;
        let signer = signer::SoftwareSigner::new(&private, &key_path(alg))?;
        let (public_bytes, _) = public.encode()?;
        // Sign an encoded SUIT_Digest, as a release does.
        let payload = [0x82, 0x2f, 0x58, 0x20]
            .iter()
            .copied()
            .chain([7u8; 32])
            .collect::<Vec<u8>>();
        let iterations = if alg == KeyAlg::HssLms {
            args.iterations.min(5)
        } else {
            args.iterations
        };
        let mut block = None;
        let sign_us = time(iterations, || {
            let b = signer::sign_block(&signer, &[], &payload)?;
            block = Some(b);
            Ok(())
        })?;
        let block = block.ok_or_else(|| anyhow!("no signature"))?;
        // Verify through the whole device path: an envelope with this one signature.
        let mut envelope_builder = suitcase_manifest::build::EnvelopeBuilder::new(
            &bench_manifest(),
            suitcase_manifest::DigestAlgorithm::Sha256,
        );
        let envelope_block = signer::sign_block(&signer, &[], envelope_builder.digest_bytes())?;
        envelope_builder.raw_block(envelope_block.bytes);
        let envelope = envelope_builder.encode();
        let trust = public
            .as_trust_key()
            .ok_or_else(|| anyhow!("not a trust key"))?;
        let anchors = [TrustAnchor::new("bench", trust)];
        let verify_us = time(args.iterations, || {
            Ok(Envelope::decode(&envelope)?
                .verify(&anchors, &TrustPolicy::default())?
                .sequence_number())
        })?;
        let signature_bytes = signature_len(&block.bytes)?;
        algorithms.push(json!({
            "alg": alg.name(),
            "cose_alg": block.alg,
            "keygen_us": keygen_us,
            "sign_us": sign_us,
            "decode_verify_us": verify_us,
            "signature_bytes": signature_bytes,
            "public_key_file_bytes": public_bytes.len(),
            "post_quantum": public.is_post_quantum(),
        }));
    }

    let image: Vec<u8> = (0..args.image_bytes)
        .map(|i| (i.wrapping_mul(31) >> 3).to_le_bytes()[0])
        .collect();
    let mut tiers_out = Vec::new();
    for tier in Tier::ALL {
        let (sign, recipient): (Vec<KeyAlg>, Option<KeyAlg>) = match tier {
            Tier::Basic => (vec![KeyAlg::Es256], None),
            Tier::Upgraded => (vec![KeyAlg::Es256], Some(KeyAlg::A128Kw)),
            Tier::Enhanced => (vec![KeyAlg::Es256, KeyAlg::Ed25519], Some(KeyAlg::X25519)),
            Tier::Quantum => (
                vec![KeyAlg::Es256, KeyAlg::HssLms, KeyAlg::MlDsa65],
                Some(KeyAlg::MlKem768),
            ),
        };
        let mut recipients = Vec::new();
        let mut device_keys = Vec::new();
        if let Some(r) = recipient {
            let private = dir.path().join(format!("{}-device", tier.name()));
            keys::write_atomic(
                &private,
                &keys::generate(r, &args.hss_params)?.private,
                true,
            )?;
            let public = dir.path().join(format!("{}-device.pub", tier.name()));
            keys::write_atomic(&public, &keys::load_public(&private)?.encode()?.0, false)?;
            recipients.push(public);
            device_keys.push(
                keys::load_private(&private)?
                    .key_material()
                    .ok_or_else(|| anyhow!("no key material"))?,
            );
        }
        let req = request(
            tier,
            &image,
            sign.iter().map(|a| key_path(*a)).collect(),
            recipients,
        );
        let start = Instant::now();
        let built = release::build(&req, &mut |_, _, _| {})?;
        let build_us = start.elapsed().as_secs_f64() * 1e6;
        let publics: Vec<_> = sign
            .iter()
            .map(|a| keys::load_public(&key_path(*a)))
            .collect::<Result<_, _>>()?;
        let anchors: Vec<TrustAnchor<'_>> = publics
            .iter()
            .filter_map(|p| p.as_trust_key())
            .map(|k| TrustAnchor::new("bench", k))
            .collect();
        let profile = tier.profile();
        let policy = TrustPolicy {
            threshold: std::num::NonZeroUsize::new(profile.device_threshold)
                .unwrap_or(std::num::NonZeroUsize::MIN),
            hybrid: profile.hybrid,
            ..TrustPolicy::default()
        };
        let verify_us = time(args.iterations, || {
            Ok(Envelope::decode(&built.envelope)?
                .verify(&anchors, &policy)?
                .sequence_number())
        })?;
        // Device side of a full update: authenticate, unwrap the key, decrypt, install, check.
        let install_us = time(args.iterations.min(10), || {
            let mut dev = suitcase_manifest::memory::MemoryDevice {
                vendor_id: Some((false, req.vendor.to_vec())),
                class_id: Some(req.class.to_vec()),
                components: built
                    .components
                    .iter()
                    .map(|id| suitcase_manifest::memory::MemoryComponent {
                        id: id.clone(),
                        capacity: 1 << 24,
                        ..Default::default()
                    })
                    .collect(),
                payloads: built
                    .payloads
                    .iter()
                    .filter_map(|p| Some((p.uri.clone()?, p.bytes.clone())))
                    .collect(),
                ..Default::default()
            };
            dev.keys.keys = device_keys.iter().map(|k| (None, k.clone())).collect();
            let v = Envelope::decode(&built.envelope)?.verify(&anchors, &policy)?;
            suitcase_manifest::Processor::new(
                &v,
                &mut dev,
                suitcase_manifest::ProcessorPolicy::default(),
            )?
            .update()?;
            Ok(())
        })?;
        tiers_out.push(json!({
            "tier": tier.name(),
            "signatures": sign.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "recipient": recipient.map(KeyAlg::name),
            "digest": built.digest_algorithm.name(),
            "envelope_bytes": built.envelope.len(),
            "payload_bytes": built.payloads.first().map_or(0, |p| p.bytes.len()),
            "build_us": build_us,
            "decode_verify_us": verify_us,
            "install_us": install_us,
        }));
    }

    let out = json!({"image_bytes": args.image_bytes, "hss_params": args.hss_params, "algorithms": algorithms, "tiers": tiers_out});
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_tables(&out);
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_manifest() -> suitcase_manifest::build::ManifestBuilder {
    use suitcase_manifest::build::{Cmd, ManifestBuilder, Param};
    use suitcase_manifest::{Condition, Directive};
    ManifestBuilder {
        sequence_number: 1,
        components: vec![vec![vec![0]]],
        shared_sequence: Some(vec![
            Cmd::OverrideParameters(vec![
                Param::VendorIdentifier(vec![0xfa; 16]),
                Param::ClassIdentifier(vec![0x14; 16]),
                Param::ImageDigest(suitcase_manifest::DigestAlgorithm::Sha256, vec![0x11; 32]),
                Param::ImageSize(34768),
            ]),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
        ]),
        install: Some(vec![
            Cmd::OverrideParameters(vec![Param::Uri("http://example.com/file.bin".into())]),
            Cmd::Directive(Directive::Fetch, 2),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]),
        validate: Some(vec![Cmd::Condition(Condition::ImageMatch, 15)]),
        ..Default::default()
    }
}

/// The length of the signature (or tag) field of an encoded COSE_Sign1 / COSE_Mac0.
fn signature_len(block: &[u8]) -> Result<usize> {
    let b = suitcase_manifest::AuthBlock::decode(block)?;
    Ok(b.signers().next().map_or(0, |s| s.signature.len()))
}

fn print_tables(out: &Value) {
    let f = |v: &Value| {
        v.as_f64().map_or_else(
            || v.to_string(),
            |x| {
                if x >= 1000.0 {
                    format!("{:.1} ms", x / 1000.0)
                } else {
                    format!("{x:.1} µs")
                }
            },
        )
    };
    outln!("per algorithm (image-independent; signature over a SUIT_Digest):");
    outln!(
        "{:<11} {:>9} {:>11} {:>11} {:>14} {:>10} {:>11}",
        "alg",
        "COSE alg",
        "keygen",
        "sign",
        "decode+verify",
        "sig bytes",
        "pub bytes"
    );
    for a in out["algorithms"].as_array().into_iter().flatten() {
        outln!(
            "{:<11} {:>9} {:>11} {:>11} {:>14} {:>10} {:>11}",
            a["alg"].as_str().unwrap_or(""),
            a["cose_alg"].to_string(),
            f(&a["keygen_us"]),
            f(&a["sign_us"]),
            f(&a["decode_verify_us"]),
            a["signature_bytes"].to_string(),
            a["public_key_file_bytes"].to_string()
        );
    }
    outln!();
    outln!(
        "per tier ({} byte image; HSS-LMS {}):",
        out["image_bytes"],
        out["hss_params"].as_str().unwrap_or("")
    );
    outln!(
        "{:<9} {:<28} {:<11} {:>9} {:>9} {:>11} {:>14} {:>11}",
        "tier",
        "signatures",
        "recipient",
        "digest",
        "envelope",
        "build",
        "decode+verify",
        "install"
    );
    for t in out["tiers"].as_array().into_iter().flatten() {
        let sigs: Vec<&str> = t["signatures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        outln!(
            "{:<9} {:<28} {:<11} {:>9} {:>9} {:>11} {:>14} {:>11}",
            t["tier"].as_str().unwrap_or(""),
            sigs.join("+"),
            t["recipient"].as_str().unwrap_or("-"),
            t["digest"].as_str().unwrap_or(""),
            t["envelope_bytes"].to_string(),
            f(&t["build_us"]),
            f(&t["decode_verify_us"]),
            f(&t["install_us"])
        );
    }
}

//! `suitcase release`: build and countersign signed releases.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use suitcase_author::release::{self, ImageInput, ReleaseFile, ReleaseRequest};
use suitcase_author::{Tier, keys, uuid};

/// The `release` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Build and sign a release (a SUIT envelope, plus the payloads to serve).
    ///
    /// From a RELEASE.toml naming the images, or for a single image from flags:
    ///
    ///   suitcase release build --image app.bin --component 00 --vendor example.com \
    ///       --class thermostat --sequence 7 --uri https://fw.example.com/app-7.bin \
    ///       --profile basic --sign author.key -o app-7.suit
    ///
    /// Vendor and class names become UUIDv5 identifiers as the SUIT manifest specifies
    /// (vendor under the DNS namespace, class under the vendor). With --encrypt-for, the payload
    /// is encrypted under a fresh content key wrapped for each recipient, and the ciphertext
    /// (the bytes to serve at the URI) is written to --payload-out.
    Build(Box<BuildArgs>),
    /// Add a signature to an existing release (the operator's countersignature). The manifest
    /// and its digest stay the same, so earlier signatures remain valid.
    ///
    ///   suitcase release sign app-7.suit --key operator.key -o app-7.suit
    ///   suitcase release sign app-7.suit -o app-7.suit \
    ///       --key "pkcs11:token=ops;object=operator?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=pin.txt"
    Sign(SignArgs),
}

/// Arguments of `release build`.
#[derive(Debug, clap::Args)]
pub(crate) struct BuildArgs {
    /// A RELEASE.toml describing the release (see docs/cli.md). Omit it to use the flags.
    release: Option<PathBuf>,
    /// Where to write the signed envelope.
    #[arg(short, long)]
    output: PathBuf,
    /// The image (single-image mode).
    #[arg(long, conflicts_with = "release")]
    image: Option<PathBuf>,
    /// Component id as hex segments separated by `/` (e.g. 00, or 6170/01).
    #[arg(long, default_value = "00")]
    component: String,
    /// Vendor: a domain name (UUIDv5 under the DNS namespace) or a UUID.
    #[arg(long)]
    vendor: Option<String>,
    /// Class: a name (UUIDv5 under the vendor id) or a UUID.
    #[arg(long)]
    class: Option<String>,
    /// Target one device by its UUID.
    #[arg(long)]
    device: Option<String>,
    /// Sequence number, or `timestamp` for the current UTC time in seconds.
    #[arg(long)]
    sequence: Option<String>,
    /// Where devices will fetch the payload.
    #[arg(long, conflicts_with = "integrated")]
    uri: Option<String>,
    /// Put the payload inside the envelope instead of at a URI.
    #[arg(long)]
    integrated: bool,
    /// Security tier: basic, upgraded, enhanced or quantum (docs/security-tiers.md).
    #[arg(long, default_value = "basic", value_parser = ["basic", "upgraded", "enhanced", "quantum"])]
    profile: String,
    /// A signing key; repeat for several signers (e.g. classical + post-quantum). A key file,
    /// or a key on a PKCS#11 token named by an RFC 7512 URI (quote it for the shell):
    /// "pkcs11:token=release;object=author?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=pin.txt"
    #[arg(long = "sign", value_name = "KEY|URI")]
    sign: Vec<PathBuf>,
    /// A recipient key (a device's or a group's public key, or a shared KEK); repeat.
    #[arg(long = "encrypt-for", value_name = "RECIPIENT")]
    encrypt_for: Vec<PathBuf>,
    /// A certificate chain (PEM, leaf first, from `key cert`) for a P-256 signing key; it is
    /// attached as x5chain to the signer whose key the leaf certifies. Repeatable.
    #[arg(long, value_name = "CHAIN.pem")]
    x5chain: Vec<PathBuf>,
    /// Content encryption: a128gcm, a256gcm, a128ctr or a256ctr (default: the tier's).
    #[arg(long)]
    content: Option<String>,
    /// Add an invoke section (the device runs the component after validating it).
    #[arg(long)]
    invoke: bool,
    /// A description for the manifest's text section.
    #[arg(long)]
    description: Option<String>,
    /// Write the bytes to serve at the URI here (the ciphertext when encrypted, the patch
    /// for a delta release).
    #[arg(long)]
    payload_out: Option<PathBuf>,
    /// The image installed on the devices: ship a `suitcase-delta` patch from it instead of
    /// the whole image. The manifest names that image by digest, so devices running another
    /// one refuse the release (build a full release for them). Where a delta does not pay,
    /// the full image is shipped and the output says so.
    #[arg(long, value_name = "OLD_IMAGE", conflicts_with = "release")]
    delta_from: Option<PathBuf>,
    /// Print one JSON object describing the release.
    #[arg(long)]
    json: bool,
}

/// Arguments of `release sign`.
#[derive(Debug, clap::Args)]
pub(crate) struct SignArgs {
    /// The envelope to countersign.
    input: PathBuf,
    /// The signing key: a key file, or a `pkcs11:` URI (RFC 7512) naming a key on a token,
    /// e.g. "pkcs11:token=ops;object=operator?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=pin.txt".
    #[arg(long, value_name = "KEY|URI")]
    key: PathBuf,
    /// The signing key's certificate chain (PEM, leaf first), attached as x5chain.
    #[arg(long, value_name = "CHAIN.pem")]
    x5chain: Option<PathBuf>,
    /// Where to write the countersigned envelope (may be the input).
    #[arg(short, long)]
    output: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Build(args) => build(&args),
        Command::Sign(args) => sign(&args),
    }
}

fn single_image_request(args: &BuildArgs) -> Result<ReleaseRequest> {
    let image = args
        .image
        .as_ref()
        .ok_or_else(|| anyhow!("give a RELEASE.toml or --image FILE"))?;
    let need =
        |v: &Option<String>, flag: &str| v.clone().ok_or_else(|| anyhow!("--image needs {flag}"));
    let vendor = uuid::vendor(&need(&args.vendor, "--vendor NAME|UUID")?);
    let class = uuid::class(&vendor, &need(&args.class, "--class NAME|UUID")?);
    let sequence = match need(&args.sequence, "--sequence N")?.as_str() {
        "timestamp" => release::now(),
        n => n
            .parse()
            .with_context(|| format!("--sequence {n}: a number or `timestamp`"))?,
    };
    if args.uri.is_none() && !args.integrated {
        bail!("--image needs --uri URI (where devices fetch it) or --integrated");
    }
    let bytes =
        std::fs::read(image).with_context(|| format!("cannot read image {}", image.display()))?;
    let name = image
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
    Ok(ReleaseRequest {
        sequence,
        tier: Tier::from_name(&args.profile).ok_or_else(|| anyhow!("unknown profile"))?,
        vendor,
        class,
        device: args
            .device
            .as_deref()
            .map(|d| uuid::parse(d).ok_or_else(|| anyhow!("--device {d}: not a UUID")))
            .transpose()?,
        images: vec![ImageInput {
            name,
            bytes,
            component: release::parse_component(&args.component)?,
            uri: args.uri.clone(),
            integrated: args.integrated,
            invoke: args.invoke,
            delta_from: args
                .delta_from
                .as_deref()
                .map(|p| {
                    std::fs::read(p)
                        .with_context(|| format!("cannot read --delta-from {}", p.display()))
                })
                .transpose()?,
        }],
        sign: args.sign.clone(),
        encrypt_for: args.encrypt_for.clone(),
        x5chain: args.x5chain.clone(),
        content: args
            .content
            .as_deref()
            .map(release::content_alg)
            .transpose()?,
        reference_uri: None,
        description: args.description.clone(),
    })
}

fn build(args: &BuildArgs) -> Result<ExitCode> {
    let (request, payload_outs) = match &args.release {
        Some(toml) => ReleaseFile::load(toml)?,
        None => {
            let req = single_image_request(args)?;
            (req, vec![args.payload_out.clone()])
        }
    };
    let bar = progress_bar(args.json);
    let built = release::build(&request, &mut |what, done, total| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(what.to_owned());
    })?;
    bar.finish_and_clear();
    keys::write_atomic(&args.output, &built.envelope, false)?;
    let mut payloads = Vec::new();
    for (i, (payload, out)) in built.payloads.iter().zip(&payload_outs).enumerate() {
        // The ciphertext or patch exists nowhere else: write it even without an explicit
        // destination.
        let made = payload.encrypted || payload.delta_from.is_some();
        let target = match (out, made) {
            (Some(path), _) => Some(path.clone()),
            (None, true) if payload.uri.is_some() => Some(default_payload_path(&args.output, i)),
            _ => None,
        };
        if let Some(path) = &target {
            keys::write_atomic(path, &payload.bytes, false)?;
        }
        payloads.push(json!({
            "name": payload.name,
            "uri": payload.uri,
            "file": target,
            "bytes": payload.bytes.len(),
            "encrypted": payload.encrypted,
            "image_size": payload.image_size,
            "image_digest": hex::encode(&payload.image_digest),
            "delta_from": payload.delta_from.as_ref().map(hex::encode),
            "delta_rejected_bytes": payload.delta_rejected,
        }));
        if let Some(n) = payload.delta_rejected {
            errln!(
                "note: a delta for {} does not pay ({n} bytes for a {}-byte image); the release \
                 ships the full image",
                payload.name,
                payload.image_size
            );
        }
    }
    let summary = json!({
        "envelope": args.output,
        "envelope_bytes": built.envelope.len(),
        "sequence_number": request.sequence,
        "profile": request.tier.name(),
        "vendor_id": uuid::to_string(&request.vendor),
        "class_id": uuid::to_string(&request.class),
        "manifest_digest": {"algorithm": built.digest_algorithm.name(), "hex": hex::encode(&built.manifest_digest)},
        "signatures": built.signatures.iter().map(|(kind, alg, kid)| json!({"key": kind, "alg": alg, "kid": hex::encode(kid)})).collect::<Vec<_>>(),
        "recipients": built.recipients,
        "components": built.components.iter().map(|c| release::show_component(c)).collect::<Vec<_>>(),
        "payloads": payloads,
    });
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn default_payload_path(envelope: &Path, index: usize) -> PathBuf {
    let mut name = envelope.as_os_str().to_owned();
    name.push(format!(".{index}.payload"));
    PathBuf::from(name)
}

fn print_summary(s: &Value) {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    outln!(
        "built {} ({} bytes): sequence {}, profile {}",
        text(&s["envelope"]),
        s["envelope_bytes"],
        s["sequence_number"],
        text(&s["profile"])
    );
    outln!(
        "  vendor {}  class {}",
        text(&s["vendor_id"]),
        text(&s["class_id"])
    );
    outln!(
        "  manifest digest {} {}",
        text(&s["manifest_digest"]["algorithm"]),
        text(&s["manifest_digest"]["hex"])
    );
    for sig in s["signatures"].as_array().into_iter().flatten() {
        outln!(
            "  signed: {} (COSE alg {}, kid {})",
            text(&sig["key"]),
            sig["alg"],
            text(&sig["kid"])
        );
    }
    if s["recipients"].as_u64().unwrap_or(0) > 0 {
        outln!("  encrypted for {} recipient(s)", s["recipients"]);
    }
    for p in s["payloads"].as_array().into_iter().flatten() {
        let at = p["uri"]
            .as_str()
            .map_or("inside the envelope".to_owned(), |u| {
                format!("serve at {u}")
            });
        let file = p["file"]
            .as_str()
            .map(|f| format!(" (written to {f})"))
            .unwrap_or_default();
        let delta = p["delta_from"]
            .as_str()
            .map(|d| format!(", a delta patch for devices running the image with digest {d}"))
            .unwrap_or_default();
        outln!(
            "  payload {}: {} bytes, {at}{file}{delta}",
            text(&p["name"]),
            p["bytes"]
        );
    }
}

fn sign(args: &SignArgs) -> Result<ExitCode> {
    let envelope = crate::input::read_binary(&args.input)?;
    let (signed, block) = release::countersign(&envelope, &args.key, args.x5chain.as_deref())?;
    keys::write_atomic(&args.output, &signed, false)?;
    let blocks = suitcase_manifest::Envelope::decode(&signed)?
        .authentication()?
        .block_count();
    if args.json {
        let out = json!({"envelope": args.output, "alg": block.alg, "kid": hex::encode(&block.kid), "signatures": blocks});
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "added a signature (COSE alg {}, kid {}) to {}: {} signature(s) now",
            block.alg,
            hex::encode(&block.kid),
            args.output.display(),
            blocks
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:24} [{bar:30}] {bytes}/{total_bytes}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

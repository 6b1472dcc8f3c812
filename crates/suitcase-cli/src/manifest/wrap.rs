//! `suitcase manifest wrap`: a device operator's root manifest wrapping an author's signed
//! envelope as a SUIT dependency (draft-ietf-suit-trust-domains-12; docs/trust.md, "Trust
//! domains").

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;
use suitcase_author::wrap::{WrapRequest, wrap};

/// Arguments of `manifest wrap`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The author's signed envelope, to wrap unchanged (raw CBOR or hex text, `-` for stdin).
    dependency: PathBuf,
    /// The operator's signing key: a key file or a `pkcs11:` URI (RFC 7512).
    #[arg(long, value_name = "KEY|URI")]
    key: PathBuf,
    /// The root's sequence number (the device's anti-rollback compares this one); default:
    /// the author's.
    #[arg(long, value_name = "N")]
    sequence: Option<u64>,
    /// The envelope key the author's envelope is integrated under (a `#` fragment).
    #[arg(long, default_value = "#dependency.suit")]
    name: String,
    /// The identifier of the component holding the dependency, as hex segments separated by
    /// `/` (default: the name without `#`, as text).
    #[arg(long, value_name = "HEX[/HEX...]")]
    slot: Option<String>,
    /// Where to write the root envelope.
    #[arg(short, long)]
    output: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let dependency = crate::input::read_binary(&args.dependency)?;
    let author_sequence = suitcase_manifest::Envelope::decode(&dependency)
        .and_then(|e| suitcase_manifest::Manifest::decode_unauthenticated(e.manifest_bytes()))
        .map(|m| m.sequence_number)
        .map_err(|e| anyhow::anyhow!("{}: not a SUIT envelope: {e}", args.dependency.display()))?;
    let slot = match &args.slot {
        Some(text) => suitcase_author::release::parse_component(text)?,
        None => vec![args.name.trim_start_matches('#').as_bytes().to_vec()],
    };
    let request = WrapRequest {
        sequence: args.sequence.unwrap_or(author_sequence),
        name: args.name.clone(),
        slot,
    };
    let signer = suitcase_author::signer::open(&args.key)?;
    let wrapped = wrap(&dependency, &request, signer.as_ref())?;
    suitcase_author::keys::write_atomic(&args.output, &wrapped.envelope, false)?;
    if args.json {
        let out = json!({
            "envelope": args.output,
            "sequence_number": request.sequence,
            "dependency": {
                "name": request.name,
                "digest": hex::encode(&wrapped.dependency_digest),
                "sequence_number": wrapped.dependency_sequence,
            },
            "sections": wrapped.sections,
            "signer": signer.name(),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "wrote {}: root manifest (sequence {}) signed by {}, wrapping {} (author's \
             sequence {}, manifest sha-256 {}) as {}",
            args.output.display(),
            request.sequence,
            signer.name(),
            args.dependency.display(),
            wrapped.dependency_sequence,
            hex::encode(&wrapped.dependency_digest),
            request.name
        );
        outln!(
            "  processes the dependency in: {}",
            wrapped.sections.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

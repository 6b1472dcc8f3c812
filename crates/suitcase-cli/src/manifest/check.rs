//! `suitcase manifest check`.

use std::path::PathBuf;
use std::process::ExitCode;

use std::num::NonZeroUsize;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use suitcase_manifest::memory::{Effect, MemoryDevice};
use suitcase_manifest::{
    DigestAlgorithm, Envelope, Error, Processor, ProcessorPolicy, Reason, Section, SectionState,
    TrustPolicy, VerifiedManifest,
};

/// Arguments of `manifest check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The envelope: a file with raw CBOR or hex text, or `-` for stdin.
    envelope: PathBuf,
    /// A trusted key: a PEM public key (SPKI, P-256 or Ed25519) or a COSE_Key file (also
    /// Symmetric, for HMAC). Repeat for several anchors; one valid signature from any is enough.
    /// May also be one trust state file (`suitcase trust init`): the envelope is then checked
    /// against its release signers, thresholds and revocations (docs/trust.md).
    #[arg(long = "trust", value_name = "KEY", required = true)]
    trust: Vec<PathBuf>,
    /// A trust update (`suitcase trust update/rotate-root/handover`) to apply, in order, to
    /// the --trust anchors (a trust state, or keys taken as a 1-of-n root) before checking the
    /// envelope. Each must verify under the root in force at that point; the envelope is then
    /// checked against the resulting release signers. Repeatable.
    #[arg(long = "trust-update", value_name = "FILE")]
    trust_updates: Vec<PathBuf>,
    /// A simulated device (JSON profile: identities, components, payloads by URI, decryption
    /// keys, installed sequence number). Without it only authenticity and well-formedness are
    /// checked.
    #[arg(long, value_name = "PROFILE.json")]
    device: Option<PathBuf>,
    /// Require this many distinct trusted signers (e.g. 2: the author AND the fleet operator).
    #[arg(long, value_name = "N")]
    threshold: Option<usize>,
    /// Require at least one classical and one post-quantum signature (Quantum tier).
    #[arg(long)]
    hybrid: bool,
    /// The time for certificate validity, in seconds since 1970 (default: now). Only matters
    /// for X.509 trust anchors (`--trust root.pem`).
    #[arg(long, value_name = "SECONDS")]
    time: Option<u64>,
    /// Print one JSON object: {"verdict", "reason", "detail", "sequence_number", "components", ...}.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let bytes = crate::input::read_binary(&args.envelope)?;
    // docs/trust.md: a trust state (with --trust-update applied) replaces fixed anchors.
    let trust_state = crate::trust::state_for_check(&args.trust, &args.trust_updates)?;
    let anchors = if trust_state.is_some() {
        Vec::new()
    } else {
        args.trust
            .iter()
            .map(|p| crate::keys::load_trust_anchor(p))
            .collect::<Result<Vec<_>>>()?
    };
    let device = args
        .device
        .as_deref()
        .map(crate::profile::Profile::load)
        .transpose()?;
    let trust: Vec<_> = anchors
        .iter()
        .map(crate::keys::LoadedAnchor::as_anchor)
        .collect();

    let profile_policy = device
        .as_ref()
        .map(|(p, _)| p.policy.clone())
        .unwrap_or_default();
    let rule_ids = profile_policy.rule_components()?;
    let rules = rule_ids
        .iter()
        .zip(&profile_policy.rules)
        .map(|(id, rule)| {
            Ok(suitcase_manifest::Rule {
                components: suitcase_manifest::ComponentId::decode(id)?,
                threshold: NonZeroUsize::new(rule.threshold)
                    .ok_or_else(|| anyhow!("a policy rule threshold must be at least 1"))?,
                signers: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let threshold = args.threshold.or(profile_policy.threshold).unwrap_or(1);
    let policy = TrustPolicy {
        threshold: NonZeroUsize::new(threshold)
            .ok_or_else(|| anyhow!("--threshold must be at least 1"))?,
        rules: &rules,
        hybrid: args.hybrid || profile_policy.hybrid,
        time: Some(args.time.unwrap_or_else(suitcase_author::release::now)),
    };

    let mut report = Report::default();
    let outcome = match &trust_state {
        None => check(&bytes, &trust, &policy, device, &mut report)
            .map_err(|e| (e.reason(), e.to_string())),
        Some(state) => crate::trust::check_release(state, &bytes, policy.time, |a, p| {
            check(&bytes, a, p, device, &mut report)
        }),
    };
    let (verdict, reason, detail) = match &outcome {
        Ok(()) => ("accept", None, report.summary.clone()),
        Err((reason, detail)) => match &report.dependency_failure {
            Some(why) => ("reject", Some(*reason), format!("{detail}; {why}")),
            None => ("reject", Some(*reason), detail.clone()),
        },
    };
    let state_signers = trust_state
        .as_ref()
        .and_then(|s| s.as_ref().ok())
        .map(|s| crate::trust::signer_names(s, &report.signers))
        .unwrap_or_default();
    let signers: Vec<&str> = report
        .signers
        .iter()
        .filter_map(|&i| anchors.get(i))
        .map(|a| a.name.as_str())
        .chain(state_signers.iter().map(String::as_str))
        .collect();
    if args.json {
        let out = json!({
            "verdict": verdict,
            "reason": reason.map(Reason::code),
            "detail": detail,
            "sequence_number": report.sequence_number,
            "components": report.components,
            "signers": signers,
            "sections_run": report.sections_run,
            "sections_skipped": report.sections_skipped,
            "effects": report.effects,
            "records": report.records,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        match reason {
            None => outln!("ACCEPT {}", args.envelope.display()),
            Some(r) => outln!("REJECT {} ({r}): {detail}", args.envelope.display()),
        }
        if !signers.is_empty() {
            outln!("  authenticated by: {}", signers.join(", "));
        }
        if let Some(seq) = report.sequence_number {
            outln!("  sequence number: {seq}");
        }
        if !report.sections_run.is_empty() {
            outln!("  sections run: {}", report.sections_run.join(", "));
        }
        for s in &report.sections_skipped {
            outln!("  skipped: {s}");
        }
        for e in &report.effects {
            outln!("  effect: {e}");
        }
        for c in &report.components {
            outln!(
                "  component {}: {} bytes, sha-256 {}",
                c["id"],
                c["size"],
                c["sha256"].as_str().unwrap_or("-")
            );
        }
        if let Some(r) = reason {
            outln!("  hint: {}", hint(r));
        }
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Default)]
struct Report {
    summary: String,
    sequence_number: Option<u64>,
    signers: Vec<usize>,
    components: Vec<Value>,
    sections_run: Vec<&'static str>,
    sections_skipped: Vec<String>,
    effects: Vec<String>,
    records: Vec<Value>,
    /// Which dependency was refused and why, with the clause.
    dependency_failure: Option<String>,
}

/// The most bytes a dependency fetched by URI may have (integrated ones are used in place).
const DEPENDENCY_BUFFER: usize = 1 << 20;

fn check(
    bytes: &[u8],
    trust: &[suitcase_manifest::TrustAnchor<'_>],
    policy: &TrustPolicy<'_>,
    device: Option<(crate::profile::Profile, MemoryDevice)>,
    report: &mut Report,
) -> Result<(), Error> {
    let envelope = Envelope::decode(bytes)?;
    let verified = envelope.verify(trust, policy)?;
    report.sequence_number = Some(verified.sequence_number());
    report.signers = verified.signers().iter().collect();
    let Some((profile, mut dev)) = device else {
        report.summary = "authentic and well-formed (no device given: nothing was run)".into();
        report.components = verified
            .manifest()
            .components
            .iter()
            .map(|c| json!({"id": crate::describe::component(&c), "size": null, "sha256": null}))
            .collect();
        return Ok(());
    };
    let processor_policy = ProcessorPolicy {
        installed_sequence: profile.installed_sequence,
        allow_same_sequence: false,
    };
    // Dependencies (trust-domains) are authenticated under the same anchors and policy, each
    // with its own signers' permissions (docs/trust.md, "Trust domains").
    let mut buffer = vec![0u8; DEPENDENCY_BUFFER];
    let result = run_device(
        &verified,
        &mut dev,
        processor_policy,
        (trust, *policy, &mut buffer),
        report,
    );
    report.effects = dev.effects.iter().map(effect).collect();
    report.records = dev
        .records
        .iter()
        .map(|r| json!({"section": r.section, "offset": r.offset, "command": r.command, "component": r.component, "success": r.success}))
        .collect();
    report.components = verified
        .manifest()
        .components
        .iter()
        .map(|c| {
            let id = crate::describe::component(&c);
            let content = dev
                .components
                .iter()
                .find(|m| c.eq_segments(&m.id))
                .map(|m| &m.content);
            match content {
                // The post-install checksum record (NTIA +1 re-verify: "hash and checksum
                // (CRC-16)"): what a device keeps and reports about each installed image.
                Some(bytes) => json!({
                    "id": id,
                    "size": bytes.len(),
                    "sha256": hex::encode(DigestAlgorithm::Sha256.digest(bytes).as_bytes()),
                    "crc16": format!("{:04x}", CRC16.checksum(bytes)),
                }),
                None => json!({"id": id, "size": null, "sha256": null, "crc16": null}),
            }
        })
        .collect();
    result?;
    report.summary = format!(
        "ran {} on the simulated device",
        report.sections_run.join(", ")
    );
    Ok(())
}

/// Runs the update procedure, then the invocation procedure. A severed section that the
/// envelope does not carry is skipped and reported, as a device given a severed envelope would
/// only boot (manifest §8.4.12 lets severed members be dropped after installation).
fn run_device<'a>(
    verified: &VerifiedManifest<'a>,
    dev: &mut MemoryDevice,
    policy: ProcessorPolicy,
    (anchors, trust_policy, buffer): (
        &'a [suitcase_manifest::TrustAnchor<'a>],
        TrustPolicy<'a>,
        &'a mut [u8],
    ),
    report: &mut Report,
) -> Result<(), Error> {
    let mut processor = Processor::new(verified, dev, policy)?
        .with_dependency_trust(anchors, trust_policy)
        // A dependency, like a release, must not name the trust store: trust updates come
        // only from the root (docs/trust.md; trust-domains §5.2.2 for dependency prefixes).
        .with_dependency_rule(suitcase_trust::names_trust_store)
        .with_dependency_buffer(buffer);
    let order = [
        Section::DependencyResolution,
        Section::PayloadFetch,
        Section::CandidateVerification,
        Section::Install,
        Section::Validate,
        Section::Load,
        Section::Invoke,
    ];
    for section in order {
        match verified.section(section) {
            SectionState::Absent => {}
            SectionState::Severed => report.sections_skipped.push(format!(
                "{} (severed and not in the envelope)",
                section.name()
            )),
            SectionState::Present(_) => {
                if let Err(e) = processor.run(section) {
                    report.dependency_failure =
                        processor.dependency_failure().map(|f| f.to_string());
                    return Err(e);
                }
                report.sections_run.push(section.name());
            }
        }
    }
    Ok(())
}

fn effect(e: &Effect) -> String {
    match e {
        Effect::Fetched {
            component,
            uri,
            bytes,
        } => format!("fetched {bytes} bytes from {uri} into component {component}"),
        Effect::Written { component, bytes } => {
            format!("wrote {bytes} bytes to component {component}")
        }
        Effect::Swapped { a, b } => format!("swapped components {a} and {b}"),
        Effect::Invoked { component, args } => match args {
            Some(a) => format!(
                "invoked component {component} with arguments {:?}",
                String::from_utf8_lossy(a)
            ),
            None => format!("invoked component {component}"),
        },
    }
}

/// CRC-16/CCITT-FALSE (IBM-3740), the CRC most MCU bootloaders and flash tools print.
const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// What to do next, per reason.
fn hint(reason: Reason) -> &'static str {
    match reason {
        Reason::Signature => {
            "check the signers against --trust: key files must include the public key the release was signed with (PEM SPKI or COSE_Key); a trust state (with its --trust-update chain) must list that key as a release signer, not revoked, for these components and actions, with enough signers for its thresholds (`suitcase trust show`); an unsigned envelope is always refused"
        }
        Reason::Digest => {
            "the payload or a severed member is not the one the manifest was signed for: rebuild or re-download it"
        }
        Reason::VendorId | Reason::ClassId | Reason::DeviceId => {
            "the manifest targets other devices: compare its identifiers (`suitcase manifest inspect`) with the device profile"
        }
        Reason::SequenceRollback => {
            "the device already runs this or a newer release: build the release with a higher sequence number"
        }
        Reason::Version => "this manifest uses an encoding version other than 1",
        Reason::Malformed => {
            "the envelope is not valid SUIT CBOR; `suitcase manifest inspect` shows where decoding stopped"
        }
        Reason::UnsupportedCritical => {
            "the manifest uses a command, parameter, component or COSE header this device does not support"
        }
        Reason::UnsupportedAlgorithm => {
            "the manifest uses an algorithm this build does not implement"
        }
        Reason::Size => {
            "an image is larger than the component can hold: check max_size in the device profile"
        }
        Reason::NestingLimit => "try-each/run-sequence nest deeper than 16 levels",
        Reason::Decrypt => {
            "the device holds no key for any recipient, or the ciphertext was altered: check keys.decrypt in the profile"
        }
        Reason::Fetch => {
            "a payload URI could not be fetched: map it to a file under \"fetch\" in the device profile"
        }
        Reason::Condition => {
            "a condition of the manifest (slot, battery, time, version, abort...) did not hold on this device"
        }
        Reason::Storage => "the device could not write, copy, swap or invoke a component",
    }
}

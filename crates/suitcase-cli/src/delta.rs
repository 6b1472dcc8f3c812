//! `suitcase delta`: differential updates that fit a microcontroller (create, apply, inspect).
//!
//! The format and the applier live in the `suitcase-delta` crate; this module reads files,
//! shows progress and prints results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::json;
use suitcase_delta::{Header, InPlaceOptions, Limits, Mode, Options, Strategy};

/// Inputs at least this large get a progress bar.
const PROGRESS_MIN: usize = 1 << 20;

/// The `delta` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum DeltaArgs {
    /// Make a patch that turns OLD into NEW.
    ///
    ///   suitcase delta create app-6.bin app-7.bin -o app-6-to-7.sdp
    ///
    /// Where a delta does not pay (an unrelated or already compressed image) a compressed
    /// full image is written instead, and the command says so. With --in-place the patch can
    /// be applied in a single slot (the new image overwrites the old one), resuming after a
    /// power cut; give the slot size and the flash erase block size.
    Create(CreateArgs),
    /// Apply a patch to OLD and write the new image (verifying both SHA-256 digests).
    Apply(ApplyArgs),
    /// Show a patch's header: mode, sizes, digests, applier RAM.
    Inspect(InspectArgs),
}

/// Arguments of `delta create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The image installed on the device.
    old: PathBuf,
    /// The image to install.
    new: PathBuf,
    /// Where to write the patch.
    #[arg(short, long)]
    output: PathBuf,
    /// auto: a delta, or a full image where the delta does not pay; delta; full.
    #[arg(long, value_parser = ["auto", "delta", "full"], default_value = "auto")]
    mode: String,
    /// Make an in-place patch (single slot, power-cut safe).
    #[arg(long)]
    in_place: bool,
    /// In-place: the slot size in bytes (default: the larger image plus 64 KiB).
    #[arg(long, requires = "in_place")]
    slot_size: Option<u32>,
    /// In-place: the flash erase block size in bytes (a power of two).
    #[arg(long, default_value_t = 4096, requires = "in_place")]
    block_size: u32,
    /// Put full 32-byte SHA-256 digests in the header (default: 16-byte truncated SHA-256,
    /// which names the images as surely; a signed manifest carries the full digest anyway).
    #[arg(long)]
    full_digests: bool,
    /// Print one JSON object: {"patch_bytes", "new_bytes", "ram_bound", "seconds", ...}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `delta apply`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// The installed image (ignored for a full-image patch).
    old: PathBuf,
    /// The patch.
    patch: PathBuf,
    /// Where to write the new image.
    #[arg(short, long)]
    output: PathBuf,
    /// Refuse patches that declare more applier RAM than this (bytes).
    #[arg(long, default_value_t = suitcase_delta::MAX_RAM_BOUND)]
    ram_limit: u32,
    /// Print one JSON object: {"patch_bytes", "new_bytes", "ram_bound", "seconds"}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `delta inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// The patch.
    patch: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: DeltaArgs) -> Result<ExitCode> {
    match args {
        DeltaArgs::Create(a) => create(&a),
        DeltaArgs::Apply(a) => apply(&a),
        DeltaArgs::Inspect(a) => inspect(&a),
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| {
        format!(
            "cannot write {}: check the directory exists and is writable",
            path.display()
        )
    })
}

fn spinner(show: bool, msg: &'static str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(msg);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn create(args: &CreateArgs) -> Result<ExitCode> {
    let old = read(&args.old, "old image")?;
    let new = read(&args.new, "new image")?;
    let strategy = match args.mode.as_str() {
        "delta" => Strategy::Delta,
        "full" => Strategy::Full,
        _ => Strategy::Auto,
    };
    let in_place = if args.in_place {
        let default_slot = old.len().max(new.len()) + 64 * 1024;
        let slot_size = match args.slot_size {
            Some(s) => s,
            None => {
                u32::try_from(default_slot).map_err(|_| anyhow!("images must be under 4 GiB"))?
            }
        };
        Some(InPlaceOptions {
            block_size: args.block_size,
            slot_size,
            segment_size: 0,
        })
    } else {
        None
    };
    let bar = spinner(!args.json && new.len() >= PROGRESS_MIN, "creating patch");
    let start = Instant::now();
    let patch = suitcase_delta::create(
        &old,
        &new,
        &Options {
            strategy,
            in_place,
            full_digests: args.full_digests,
        },
    )
        .map_err(|e| anyhow!("{e}; for --in-place give a --slot-size larger than both images and a power-of-two --block-size"))?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    write(&args.output, &patch.bytes)?;
    let h = patch.header;
    if args.json {
        let out = json!({
            "patch_bytes": patch.bytes.len(),
            "new_bytes": new.len(),
            "ram_bound": h.ram_bound,
            "seconds": seconds,
            "mode": mode_name(h.mode),
            "rejected_delta_bytes": patch.rejected_delta_bytes,
        });
        outln!("{out}");
    } else {
        outln!(
            "{}: {} bytes for a {}-byte image ({:.1}%), {} mode, applier RAM {} bytes, {:.2}s",
            args.output.display(),
            patch.bytes.len(),
            new.len(),
            percent(patch.bytes.len(), new.len()),
            mode_name(h.mode),
            h.ram_bound,
            seconds
        );
        if let Some(d) = patch.rejected_delta_bytes {
            outln!(
                "note: a delta does not pay here ({d} bytes); wrote a compressed full image instead"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn apply(args: &ApplyArgs) -> Result<ExitCode> {
    let patch = read(&args.patch, "patch")?;
    let header = Header::parse(&patch).map_err(|e| {
        anyhow!(
            "{}: {e}; is this a patch made by `suitcase delta create`?",
            args.patch.display()
        )
    })?;
    let old = if header.mode == Mode::Full {
        Vec::new()
    } else {
        read(&args.old, "old image")?
    };
    let bar = if !args.json && patch.len() >= PROGRESS_MIN / 4 {
        let bar = indicatif::ProgressBar::new(patch.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg:24} [{bar:30}] {bytes}/{total_bytes}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("applying patch");
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let start = Instant::now();
    let limits = Limits {
        max_ram: args.ram_limit,
        slot_size: u32::MAX,
    };
    let new = suitcase_delta::host::apply_with_progress(&old, &patch, 64 * 1024, limits, |n| {
        bar.set_position(n as u64);
    })
    .map_err(|e| {
        let hint = match e {
            suitcase_delta::Error::SourceDigestMismatch
            | suitcase_delta::Error::SourceSizeMismatch => {
                "; the patch was made for another old image: check OLD is the installed version"
            }
            suitcase_delta::Error::RamBoundTooLarge { .. } => {
                "; raise --ram-limit or re-create the patch"
            }
            suitcase_delta::Error::Truncated => "; the patch file is incomplete: download it again",
            _ => "; the patch is damaged or forged: do not install its output",
        };
        anyhow!("{}: {e}{hint}", args.patch.display())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    write(&args.output, &new)?;
    if args.json {
        let out = json!({
            "patch_bytes": patch.len(),
            "new_bytes": new.len(),
            "ram_bound": header.ram_bound,
            "seconds": seconds,
        });
        outln!("{out}");
    } else {
        outln!(
            "{}: {} bytes, SHA-256 verified, applier RAM {} bytes, {:.2}s",
            args.output.display(),
            new.len(),
            header.ram_bound,
            seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: &InspectArgs) -> Result<ExitCode> {
    let patch = read(&args.patch, "patch")?;
    let h = Header::parse(&patch).map_err(|e| {
        anyhow!(
            "{}: {e}; is this a patch made by `suitcase delta create`?",
            args.patch.display()
        )
    })?;
    let expected = h.len() as u64 + u64::from(h.payload_len);
    if args.json {
        let mut out = json!({
            "mode": mode_name(h.mode),
            "version": suitcase_delta::format::VERSION,
            "patch_bytes": patch.len(),
            "old_bytes": h.old_size,
            "new_bytes": h.new_size,
            "ram_bound": h.ram_bound,
            "source_sha256": hex::encode(&h.old_digest[..h.digest_len()]),
            "result_sha256": hex::encode(&h.new_digest[..h.digest_len()]),
            "digest_bytes": h.digest_len(),
            "complete": patch.len() as u64 == expected,
        });
        if let Some(g) = h.geometry {
            out["block_size"] = json!(g.block_size);
            out["shift"] = json!(g.shift);
            out["segment_size"] = json!(g.segment_size);
        }
        outln!("{out}");
    } else {
        let trunc = if h.digest_len() < 32 { "/128" } else { "" };
        outln!("mode:          {}", mode_name(h.mode));
        outln!(
            "patch bytes:   {} (header {}, payload {})",
            patch.len(),
            h.len(),
            h.payload_len
        );
        outln!(
            "old image:     {} bytes, SHA-256{} {}",
            h.old_size,
            trunc,
            hex::encode(&h.old_digest[..h.digest_len()])
        );
        outln!(
            "new image:     {} bytes, SHA-256{} {}",
            h.new_size,
            trunc,
            hex::encode(&h.new_digest[..h.digest_len()])
        );
        outln!("applier RAM:   {} bytes", h.ram_bound);
        if let Some(g) = h.geometry {
            outln!(
                "in place:      erase block {}, old image moved up {} bytes, segments of {}",
                g.block_size,
                g.shift,
                g.segment_size
            );
        }
        if patch.len() as u64 != expected {
            bail!(
                "the patch should be {expected} bytes but is {}: download it again",
                patch.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Sequential => "sequential",
        Mode::Full => "full",
        Mode::InPlace => "in-place",
    }
}

#[expect(clippy::cast_precision_loss, reason = "a percentage for display")]
fn percent(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

//! `suitcase boot`: the bootloader's power-cut proof on the simulated flash.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use serde_json::json;
use suitcase_boot::simulate::{Layout, SimConfig, measure, power_cut_proof};

/// The `boot` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Prove the bootloader power-fail safe: drive a full update, its confirmation and a failed
    /// update's revert on simulated NOR flash, cutting the power at every flash operation in
    /// turn (leaving that operation torn), rebooting, and checking that the device boots a
    /// complete image, old or new, never mixed, with a consistent state, and that the update can
    /// then finish or be retried.
    ///
    /// Exits 1 if any cut point bricks the device, mixes images or leaves the state
    /// inconsistent. Build with --release for the default geometry.
    Simulate(SimulateArgs),
}

/// Arguments of `boot simulate`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
    /// ab: two executable slots; swap: execute-in-place primary, update swapped in (the
    /// primary moved up one sector first: ~4× the image written per update); swap-offset: the
    /// same guarantees, update staged one sector into the secondary and no move (~3×); multi,
    /// multi-offset: two images (e.g. secure + non-secure) updated together, by swap or
    /// swap-offset; trust-state: the bootloader's protected trust area (two trust updates and a
    /// replay committed at reset; reports lost/mixed/unfinished; only --sector-size and --seed
    /// apply).
    #[arg(
        long,
        value_parser = ["ab", "swap", "multi", "swap-offset", "multi-offset", "trust-state"],
        default_value = "swap"
    )]
    layout: String,
    /// Flash sector (erase unit) size in bytes; a multiple of 64.
    #[arg(long)]
    sector_size: Option<u32>,
    /// Slot size in bytes: the largest image. The slot holding a swap layout's spare sector
    /// gets one sector more (the primary in swap/multi, the secondary in swap-offset/multi-offset).
    #[arg(long)]
    slot_size: Option<u32>,
    /// Image size in bytes.
    #[arg(long)]
    image_size: Option<u32>,
    /// `all` cuts the power at every flash operation; `none` measures one uncut update.
    #[arg(long, value_parser = ["all", "none"], default_value = "all")]
    power_cuts: String,
    /// Seed for the torn-operation patterns.
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object: {"layout", "cut_points", "bricked", "mixed", "writes_per_update", "image_bytes", "write_amplification", ...}.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Simulate(args) => simulate(&args),
    }
}

fn simulate(args: &SimulateArgs) -> Result<ExitCode> {
    if args.layout == "trust-state" {
        return simulate_trust(args);
    }
    let layout: Layout = args
        .layout
        .parse()
        .map_err(|_| anyhow!("unknown layout {}", args.layout))?;
    let mut config = SimConfig {
        layout,
        ..SimConfig::default()
    };
    if let Some(v) = args.sector_size {
        config.sector_size = v;
    }
    if let Some(v) = args.slot_size {
        config.slot_size = v;
    }
    if let Some(v) = args.image_size {
        config.image_size = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    let report = if args.power_cuts == "all" {
        power_cut_proof(&config)
    } else {
        measure(&config)
    }
    .map_err(|e| anyhow!("{e}"))?;
    let json = args.json.then(|| {
        json!({
            "layout": report.layout.to_string(),
            "cut_points": report.cut_points,
            "cuts": report.cuts,
            "bricked": report.bricked,
            "mixed": report.mixed,
            "inconsistent": report.inconsistent,
            "writes_per_update": report.writes_per_update,
            "erases_per_update": report.erases_per_update,
            "writes_per_failed_update": report.writes_per_failed_update,
            "image_bytes": report.image_bytes,
            "write_amplification": write_amplification(&report),
            "first_problem": report.first_problem,
        })
    });
    print_report(json, &report, report.passed())
}

/// `--layout trust-state`: the trust area's power-cut proof (`suitcase_boot::trust_simulate`).
fn simulate_trust(args: &SimulateArgs) -> Result<ExitCode> {
    use suitcase_boot::trust_simulate::{TrustSimConfig, trust_measure, trust_power_cut_proof};
    let mut config = TrustSimConfig::default();
    if let Some(v) = args.sector_size {
        config.sector_size = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    let report = if args.power_cuts == "all" {
        trust_power_cut_proof(&config)
    } else {
        trust_measure(&config)
    }
    .map_err(|e| anyhow!("{e}"))?;
    let json = args.json.then(|| {
        json!({
            "layout": "trust-state",
            "cut_points": report.cut_points,
            "cuts": report.cuts,
            "lost": report.lost,
            "mixed": report.mixed,
            "unfinished": report.unfinished,
            "writes_per_update": report.writes_per_update,
            "first_problem": report.first_problem,
        })
    });
    print_report(json, &report, report.passed())
}

/// Prints `json` if given, else `report`; exit 0 if the proof `passed`, 1 if not.
fn print_report(
    json: Option<serde_json::Value>,
    report: &impl std::fmt::Display,
    passed: bool,
) -> Result<ExitCode> {
    match json {
        Some(out) => outln!("{}", serde_json::to_string_pretty(&out)?),
        None => outln!("{report}"),
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Bytes written per update over image bytes, to three decimals.
fn write_amplification(report: &suitcase_boot::simulate::Report) -> f64 {
    if report.image_bytes == 0 {
        return 0.0;
    }
    let ratio = report.writes_per_update as f64 / report.image_bytes as f64;
    (ratio * 1000.0).round() / 1000.0
}

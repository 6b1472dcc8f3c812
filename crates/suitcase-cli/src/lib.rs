//! The suitcase command-line tool: one binary, `suitcase`, with a module per subcommand.
//!
//! Exit codes: 0 success (or `accept`), 1 a verdict of `reject`, 2 a usage or I/O error.

#![expect(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std binary: the core/alloc discipline matters for the device crates only"
)]
// Every print goes through `output` (outln!, out!, errln!): a closed stdout ends the command
// quietly instead of panicking.
#![warn(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[macro_use]
mod output;

mod agent;
mod bench;
mod boot;
mod bundle;
mod delta;
mod describe;
mod diag;
mod fleet;
mod input;
mod key;
mod keys;
mod manifest;
mod profile;
mod release;
mod server;
mod sim;
mod trust;
mod waves;

/// suitcase: secure over-the-air updates for IoT fleets, built on IETF SUIT manifests.
///
/// Start with `suitcase manifest inspect FILE` to look inside an envelope and
/// `suitcase manifest check FILE --trust KEY --device PROFILE.json` to see whether a device
/// would install it. Every command takes --help.
#[derive(Debug, Parser)]
#[command(name = "suitcase", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect SUIT envelopes and check them against keys and a simulated device.
    #[command(subcommand)]
    Manifest(manifest::Command),
    /// Generate keys for signing and for encryption recipients.
    #[command(subcommand)]
    Key(key::Command),
    /// Build, sign and countersign releases.
    #[command(subcommand)]
    Release(release::Command),
    /// Differential updates: make, apply and inspect delta patches for bounded-RAM devices.
    #[command(subcommand)]
    Delta(delta::DeltaArgs),
    /// Run the firmware server and status tracker (zero configuration: SQLite and local
    /// files under ./suitcase-data).
    Server(server::Args),
    /// Manage a running server: keys, releases, devices, groups, campaigns, tokens, audit.
    Fleet(fleet::FleetArgs),
    /// The whole system in one command: a server, a signed release, a campaign in waves and
    /// simulated devices that update, reboot, confirm and report; then a summary.
    Demo(sim::DemoArgs),
    /// Rehearse a rollout against a server with simulated devices and injected faults.
    Sim(sim::SimArgs),
    /// Run the device agent: check in, then fetch, verify, stage, activate and confirm
    /// updates, reporting every step (see docs/agent.md).
    Agent(agent::Args),
    /// Offline bundles: signed releases and their payloads in one file or a directory (a
    /// USB stick) for devices that never reach the server; install with
    /// `suitcase agent --bundle PATH` (docs/bundles.md).
    #[command(subcommand)]
    Bundle(bundle::Command),
    /// The bootloader: prove it power-fail safe on simulated flash.
    #[command(subcommand)]
    Boot(boot::Command),
    /// Measure: the figures in docs/benchmarks.md come from here.
    #[command(subcommand)]
    Bench(bench::Command),
    /// The root of trust: k-of-n root keys that sign trust updates setting the release
    /// signers, their thresholds and revocations; root rotation and ownership transfer
    /// (docs/trust.md).
    #[command(subcommand)]
    Trust(trust::Command),
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    output::install();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Manifest(c) => manifest::run(c),
        Command::Key(c) => key::run(c),
        Command::Release(c) => release::run(c),
        Command::Delta(c) => delta::run(c),
        Command::Server(a) => server::run(a),
        Command::Fleet(a) => fleet::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Demo(a) => sim::run_demo(a),
        Command::Sim(a) => sim::run_sim(a),
        Command::Bundle(c) => bundle::run(c),
        Command::Boot(c) => boot::run(c),
        Command::Bench(c) => bench::run(c),
        Command::Trust(c) => trust::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

//! `suitcase manifest`: look inside and check SUIT envelopes.

use std::process::ExitCode;

use clap::Subcommand;

mod check;
mod inspect;
mod wrap;

/// The `manifest` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show everything an envelope contains, without trusting it.
    ///
    /// Prints the authentication blocks, the manifest (sequence number, components, every
    /// command of every section with its parameters), severed members and whether they match
    /// their digests, the text section, integrated payloads, and the whole envelope in CBOR
    /// diagnostic notation. Nothing is verified: use `manifest check` for that.
    Inspect(inspect::Args),
    /// Authenticate an envelope and run it against a simulated device.
    ///
    /// Verdict `accept` (exit 0) or `reject` (exit 1) with a stable reason code; usage and I/O
    /// errors exit 2. Without --device only authenticity and well-formedness are checked.
    Check(check::Args),
    /// Wrap an author's signed envelope in the operator's root manifest (SUIT trust domains).
    ///
    /// The author's envelope goes in unchanged as an integrated dependency, named by its
    /// manifest digest; the root, signed with --key, fetches, checks and processes it in
    /// every section the author's manifest has. A device authenticates each manifest under its
    /// own signer (`manifest check --trust OPERATOR --trust AUTHOR`); docs/trust.md.
    Wrap(wrap::Args),
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Wrap(args) => wrap::run(&args),
    }
}

//! The suitcase command-line tool.

/// Runs the CLI.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}

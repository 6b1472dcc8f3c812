//! The `suitcase` binary: parses arguments and hands over to the library.

fn main() -> std::process::ExitCode {
    suitcase_cli::main()
}

//! The `suitcase` binary: parses arguments and hands over to the library.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    suitcase_cli::main()
}

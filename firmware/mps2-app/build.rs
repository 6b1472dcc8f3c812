//! Links the application at its place in slot A (layout.rs: APP_BASE = 0x0010_4000), where it
//! runs in place, with cortex-m-rt's link.x. The version it prints is APP_VERSION. For the
//! update client (feature `gateway`): the release signer it trusts is the COSE_Key file
//! APP_TRUST_ANCHOR (copied to OUT_DIR/anchor.cose; without it the file is empty and the
//! application takes no update), and APP_DECRYPTION_KEY an AES key-wrap key (COSE_Key,
//! `suitcase key generate --alg a128kw`) for encrypted payloads (OUT_DIR/kek.cose, empty
//! without it).

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // The image may take what slot B holds after the header area (layout.rs: MAX_IMAGE).
    let memory = "MEMORY\n{\n  FLASH : ORIGIN = 0x00104000, LENGTH = 0x3E000\n  RAM : ORIGIN = 0x20000000, LENGTH = 256K\n}\n";
    if std::fs::write(out.join("memory.x"), memory).is_err() {
        println!("cargo::error=cannot write memory.x to OUT_DIR");
    }
    // Key files named by the environment, copied to OUT_DIR (empty when unset).
    for (var, file) in [
        ("APP_TRUST_ANCHOR", "anchor.cose"),
        ("APP_DECRYPTION_KEY", "kek.cose"),
    ] {
        let bytes = match std::env::var_os(var) {
            Some(path) => {
                let path = PathBuf::from(path);
                println!("cargo::rerun-if-changed={}", path.display());
                std::fs::read(&path).unwrap_or_else(|e| {
                    println!("cargo::error={var} {}: {e}", path.display());
                    Vec::new()
                })
            }
            None => Vec::new(),
        };
        if std::fs::write(out.join(file), bytes).is_err() {
            println!("cargo::error=cannot write {file} to OUT_DIR");
        }
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-link-search={}", out.display());
    if std::env::var("TARGET").is_ok_and(|t| t.starts_with("thumb")) {
        println!("cargo::rustc-link-arg=-Tlink.x");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=APP_VERSION");
}

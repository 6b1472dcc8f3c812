//! Links the application at its place in slot A (layout.rs: APP_BASE = 0x0010_4000), where it
//! runs in place, with cortex-m-rt's link.x. The version it prints is APP_VERSION. For the
//! update client (feature `gateway`): the release signer it trusts is the COSE_Key file
//! APP_TRUST_ANCHOR (copied to OUT_DIR/anchor.cose; without it the file is empty and the
//! application takes no update). The payload key-encryption key is **not** built in: the
//! image is the release every device downloads, so a key in it would travel in clear; it is
//! provisioned per device into the flash's device key partition (layout.rs `DEVICE_KEY`,
//! `mps2-flash provision-key`). APP_DECRYPTION_KEY, which used to build it in, is refused.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // The image may take what slot B holds after the header area (layout.rs: MAX_IMAGE).
    let memory = "MEMORY\n{\n  FLASH : ORIGIN = 0x00104000, LENGTH = 0x3E000\n  RAM : ORIGIN = 0x20000000, LENGTH = 256K\n}\n";
    if std::fs::write(out.join("memory.x"), memory).is_err() {
        println!("cargo::error=cannot write memory.x to OUT_DIR");
    }
    // Key files named by the environment, copied to OUT_DIR (empty when unset).
    if std::env::var_os("APP_DECRYPTION_KEY").is_some() {
        println!(
            "cargo::error=APP_DECRYPTION_KEY: the key-encryption key is no longer built into the \
             image (every release would carry it in clear); provision it into the device key \
             partition with `mps2-flash provision-key --flash FLASH --key KEK.cose`"
        );
    }
    println!("cargo::rerun-if-env-changed=APP_DECRYPTION_KEY");
    for (var, file) in [("APP_TRUST_ANCHOR", "anchor.cose")] {
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

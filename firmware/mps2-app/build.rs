//! Links the application at its place in slot A (layout.rs: APP_BASE = 0x0010_4000), where it
//! runs in place, with cortex-m-rt's link.x. The version it prints is APP_VERSION.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // The image may take what slot B holds after the header area (layout.rs: MAX_IMAGE).
    let memory = "MEMORY\n{\n  FLASH : ORIGIN = 0x00104000, LENGTH = 0xE000\n  RAM : ORIGIN = 0x20000000, LENGTH = 256K\n}\n";
    if std::fs::write(out.join("memory.x"), memory).is_err() {
        println!("cargo::error=cannot write memory.x to OUT_DIR");
    }
    println!("cargo::rustc-link-search={}", out.display());
    if std::env::var("TARGET").is_ok_and(|t| t.starts_with("thumb")) {
        println!("cargo::rustc-link-arg=-Tlink.x");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=APP_VERSION");
}

//! Links the bootloader at the start of SSRAM1 (where QEMU loads `-kernel`, and where the
//! Cortex-M4 fetches its vector table at reset) with cortex-m-rt's link.x.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // Code below the flash region (layout.rs: FLASH_BASE = 0x0010_0000); RAM is SSRAM2/3. A
    // 256 KiB RAM keeps the stack paint short; the bootloader needs far less.
    let memory = "MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 1M\n  RAM : ORIGIN = 0x20000000, LENGTH = 256K\n}\n";
    if std::fs::write(out.join("memory.x"), memory).is_err() {
        println!("cargo::error=cannot write memory.x to OUT_DIR");
    }
    println!("cargo::rustc-link-search={}", out.display());
    if std::env::var("TARGET").is_ok_and(|t| t.starts_with("thumb")) {
        println!("cargo::rustc-link-arg=-Tlink.x");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=SUITCASE_TRUST_ANCHOR");
}

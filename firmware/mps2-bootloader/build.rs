//! Links the bootloader at the start of SSRAM1 (where QEMU loads `-kernel`, and where the
//! Cortex-M4 fetches its vector table at reset) with cortex-m-rt's link.x, and turns the
//! built-in trust anchor (the COSE_Key file SUITCASE_TRUST_ANCHOR names) into the raw public
//! key the ES256 and Ed25519 builds verify with: the COSE_Key is decoded here, by the manifest
//! crate's decoder, so that the bootloader links no COSE_Key or CBOR decoder for it
//! (docs/benchmarks.md).

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
    let anchor = match std::env::var_os("SUITCASE_TRUST_ANCHOR") {
        Some(path) => {
            println!("cargo::rerun-if-changed={}", path.to_string_lossy());
            match std::fs::read(&path) {
                Ok(raw) => raw_keys(&raw),
                Err(e) => {
                    println!(
                        "cargo::error=cannot read SUITCASE_TRUST_ANCHOR {}: {e}",
                        path.to_string_lossy()
                    );
                    return;
                }
            }
        }
        None => (None, None),
    };
    let consts = format!(
        "/// The built-in anchor as a SEC 1 uncompressed P-256 point (SEC 1 §2.3.3), if it is an EC2 P-256 COSE_Key.\n\
         #[cfg(feature = \"es256\")]\n\
         const ANCHOR_P256: Option<[u8; 65]> = {:?};\n\
         /// The built-in anchor as an Ed25519 public key (RFC 8032 §5.1.5), if it is an OKP Ed25519 COSE_Key.\n\
         #[cfg(feature = \"ed25519\")]\n\
         const ANCHOR_ED25519: Option<[u8; 32]> = {:?};\n",
        anchor.0, anchor.1
    );
    if std::fs::write(out.join("anchor.rs"), consts).is_err() {
        println!("cargo::error=cannot write anchor.rs to OUT_DIR");
    }
}

/// The raw public key of an EC2 P-256 (RFC 9053 §7.1.1, both coordinates) or OKP Ed25519
/// (RFC 9053 §7.2) COSE_Key; both `None` for anything else (the other builds decode the
/// COSE_Key at run time, and a bootloader built for ES256 or Ed25519 refuses to start
/// without its key).
fn raw_keys(raw: &[u8]) -> (Option<[u8; 65]>, Option<[u8; 32]>) {
    use suitcase_manifest::key::{CoseKey, crv, kty};
    let Ok(key) = CoseKey::decode(raw) else {
        return (None, None);
    };
    let p256 = (key.kty == kty::EC2 && key.crv == Some(crv::P256))
        .then(|| {
            let (x, y) = (
                key.x.filter(|x| x.len() == 32)?,
                key.y.filter(|y| y.len() == 32)?,
            );
            let mut sec1 = [4u8; 65];
            sec1.get_mut(1..33)?.copy_from_slice(x);
            sec1.get_mut(33..)?.copy_from_slice(y);
            Some(sec1)
        })
        .flatten();
    let ed25519 = (key.kty == kty::OKP && key.crv == Some(crv::ED25519))
        .then(|| key.x?.try_into().ok())
        .flatten();
    (p256, ed25519)
}

//! Issue 8 through the CLI: every corpus pair round-trips byte-exact through
//! `suitcase delta create` / `apply` (and `inspect` describes the patch), wrong inputs give
//! errors that say what to do, and a delta release built by `suitcase release build
//! --delta-from` installs through the SUIT processor of `suitcase manifest check`, plain and
//! encrypted, and is refused by a device running another image.

#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{keygen, ok, suitcase};
use serde_json::{Value, json};

/// The firmware corpus: SUITCASE_CORPUS or ../shared/corpus/firmware next to the checkout.
fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("SUITCASE_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/firmware"),
        PathBuf::from,
    );
    if dir.join("anchors.tsv").exists() {
        Some(dir)
    } else {
        println!(
            "corpus not found at {} (set SUITCASE_CORPUS); skipping",
            dir.display()
        );
        None
    }
}

/// Firmware-like bytes and a next version of them, for machines without the corpus.
fn synthetic() -> (Vec<u8>, Vec<u8>) {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let old: Vec<u8> = (0..80_000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 4 == 3 { 0xf0 } else { (x % 48) as u8 }
        })
        .collect();
    let mut new = old.clone();
    new.splice(30_000..30_000, (0..900u32).map(|i| (i * 7) as u8));
    for i in (0..new.len()).step_by(1_501) {
        new[i] = new[i].wrapping_add(1);
    }
    (old, new)
}

fn round_trip(dir: &Path, name: &str, old: &Path, new: &Path) {
    let new_bytes = std::fs::read(new).unwrap();
    let patch = format!("{name}.sdp");
    let out = format!("{name}.out");
    let (o, n) = (old.to_str().unwrap(), new.to_str().unwrap());
    let created = ok(dir, &["delta", "create", o, n, "-o", &patch, "--json"]);
    assert_eq!(created["new_bytes"], new_bytes.len(), "{name}");
    let patch_bytes = std::fs::metadata(dir.join(&patch)).unwrap().len();
    assert_eq!(created["patch_bytes"], patch_bytes, "{name}");
    assert!(
        created["ram_bound"].as_u64().unwrap() <= 16 * 1024,
        "{name}"
    );
    assert!(created["seconds"].as_f64().is_some(), "{name}");

    let applied = ok(dir, &["delta", "apply", o, &patch, "-o", &out, "--json"]);
    assert_eq!(applied["new_bytes"], new_bytes.len(), "{name}");
    assert!(
        std::fs::read(dir.join(&out)).unwrap() == new_bytes,
        "{name}: the applied image differs from new.bin"
    );

    let inspected = ok(dir, &["delta", "inspect", &patch, "--json"]);
    assert_eq!(inspected["complete"], true, "{name}");
    assert_eq!(inspected["new_bytes"], new_bytes.len(), "{name}");
    println!("{name}: {} -> {patch_bytes} bytes", new_bytes.len());
}

#[test]
fn every_corpus_pair_round_trips_through_delta_create_and_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(corpus) = corpus() else {
        let (old, new) = synthetic();
        std::fs::write(d.join("old.bin"), old).unwrap();
        std::fs::write(d.join("new.bin"), new).unwrap();
        round_trip(d, "synthetic", &d.join("old.bin"), &d.join("new.bin"));
        return;
    };
    let mut pairs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("new.bin").exists())
        .collect();
    pairs.sort();
    assert_eq!(pairs.len(), 11, "the corpus has 11 pairs");
    for p in pairs {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        round_trip(d, &name, &p.join("old.bin"), &p.join("new.bin"));
    }
}

#[test]
fn delta_apply_errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old, new) = synthetic();
    std::fs::write(d.join("old.bin"), &old).unwrap();
    std::fs::write(d.join("new.bin"), &new).unwrap();
    ok(d, &["delta", "create", "old.bin", "new.bin", "-o", "p.sdp"]);

    // Applied to another image: refused, nothing written.
    let mut other = old;
    other[100] ^= 1;
    std::fs::write(d.join("other.bin"), &other).unwrap();
    let (code, _, out) = suitcase(d, &["delta", "apply", "other.bin", "p.sdp", "-o", "x.bin"]);
    assert_ne!(code, 0);
    assert!(out.contains("installed image"), "{out}");
    assert!(
        !d.join("x.bin").exists(),
        "an output was written for a foreign source"
    );

    // Truncated: refused with a download-again hint.
    let patch = std::fs::read(d.join("p.sdp")).unwrap();
    std::fs::write(d.join("short.sdp"), &patch[..patch.len() - 3]).unwrap();
    let (code, _, out) = suitcase(
        d,
        &["delta", "apply", "old.bin", "short.sdp", "-o", "y.bin"],
    );
    assert_ne!(code, 0);
    assert!(
        out.to_lowercase().contains("truncated") || out.contains("again"),
        "{out}"
    );

    // Not a patch at all.
    let (code, _, out) = suitcase(d, &["delta", "inspect", "new.bin"]);
    assert_ne!(code, 0);
    assert!(out.contains("suitcase delta create"), "{out}");

    // A device granting less RAM than the patch needs.
    let (code, _, out) = suitcase(
        d,
        &[
            "delta",
            "apply",
            "old.bin",
            "p.sdp",
            "-o",
            "z.bin",
            "--ram-limit",
            "4096",
        ],
    );
    assert_ne!(code, 0);
    assert!(out.contains("--ram-limit"), "{out}");
}

/// A device profile with the three components a delta release uses: the image, the staging
/// area the patch is fetched into (and, encrypted, the decrypted patch), and the installed
/// image the patch applies to.
fn device(dir: &Path, build: &Value, installed: &str, decrypt: Option<&str>) -> String {
    let components: Vec<Value> = build["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let segs: Vec<String> = serde_json::from_str(c.as_str().unwrap()).unwrap();
            // "installed" in hex: the base component holds the running image.
            if segs.last().map(String::as_str) == Some("696e7374616c6c6564") {
                json!({"id": segs, "max_size": 1_048_576, "content": installed})
            } else {
                json!({"id": segs, "max_size": 1_048_576})
            }
        })
        .collect();
    let payload = &build["payloads"][0];
    let profile = json!({
        "vendor_id": build["vendor_id"].as_str().unwrap().replace('-', ""),
        "class_id": build["class_id"].as_str().unwrap().replace('-', ""),
        "installed_sequence": 6,
        "components": components,
        "fetch": {payload["uri"].as_str().unwrap(): payload["file"].as_str().unwrap()},
        "keys": {"decrypt": decrypt.map(|d| vec![d]).unwrap_or_default()},
    });
    std::fs::write(dir.join("device.json"), profile.to_string()).unwrap();
    "device.json".into()
}

#[test]
fn delta_release_installs_through_the_suit_processor_plain_and_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old, new) = synthetic();
    std::fs::write(d.join("old.bin"), &old).unwrap();
    std::fs::write(d.join("new.bin"), &new).unwrap();
    let mut other = old;
    other[7] ^= 0x40;
    std::fs::write(d.join("other.bin"), &other).unwrap();
    keygen(d, "es256", "author");
    keygen(d, "ed25519", "author-ed");
    keygen(d, "a128kw", "fleet");
    let new_sha = hex::encode(
        suitcase_manifest::DigestAlgorithm::Sha256
            .digest(&new)
            .as_bytes(),
    );

    for encrypted in [false, true] {
        let mut args = vec![
            "release",
            "build",
            "--image",
            "new.bin",
            "--delta-from",
            "old.bin",
            "--component",
            "00",
            "--vendor",
            "example.com",
            "--class",
            "sensor",
            "--sequence",
            "7",
            "--uri",
            "https://fw.example.com/app-7.sdp",
            "--sign",
            "author",
            "-o",
            "app-7.suit",
            "--json",
        ];
        if encrypted {
            // The Upgraded tier: an Ed25519 signer and AES key wrap for the fleet.
            let i = args.iter().position(|a| *a == "author").unwrap();
            args[i] = "author-ed";
            args.extend(["--profile", "upgraded", "--encrypt-for", "fleet.pub"]);
        }
        let build = ok(d, &args);
        let payload = &build["payloads"][0];
        assert_eq!(payload["encrypted"], encrypted);
        assert!(payload["delta_from"].is_string(), "{build}");
        let served = payload["bytes"].as_u64().unwrap();
        assert!(served * 5 < new.len() as u64, "a patch of {served} bytes");
        let trust = if encrypted {
            "author-ed.pub"
        } else {
            "author.pub"
        };
        let key = encrypted.then_some("fleet");

        let check = |installed: &str| {
            let profile = device(d, &build, installed, key);
            suitcase(
                d,
                &[
                    "manifest",
                    "check",
                    "app-7.suit",
                    "--trust",
                    trust,
                    "--device",
                    &profile,
                    "--json",
                ],
            )
        };
        let (code, accepted, out) = check("old.bin");
        assert_eq!(code, 0, "{out}");
        assert_eq!(accepted["verdict"], "accept", "{accepted}");
        assert_eq!(accepted["components"][0]["sha256"], new_sha, "{accepted}");

        // A device running another image refuses before fetching the patch.
        let (code, check, out) = check("other.bin");
        assert_eq!(code, 1, "{out}");
        assert_eq!(check["verdict"], "reject");
        assert_eq!(check["reason"], "digest", "{check}");
    }
}

#[test]
fn delta_that_does_not_pay_ships_the_full_image_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old, _) = synthetic();
    // An unrelated, incompressible image: no delta can pay.
    let mut x = 12_345u64;
    let new: Vec<u8> = (0..50_000)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect();
    std::fs::write(d.join("old.bin"), &old).unwrap();
    std::fs::write(d.join("new.bin"), &new).unwrap();
    keygen(d, "es256", "author");
    let (code, build, out) = suitcase(
        d,
        &[
            "release",
            "build",
            "--image",
            "new.bin",
            "--delta-from",
            "old.bin",
            "--vendor",
            "example.com",
            "--class",
            "sensor",
            "--sequence",
            "7",
            "--uri",
            "https://fw.example.com/app-7.bin",
            "--sign",
            "author",
            "-o",
            "app-7.suit",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("does not pay"), "{out}");
    let payload = &build["payloads"][0];
    assert!(payload["delta_from"].is_null());
    assert!(payload["delta_rejected_bytes"].as_u64().is_some());
    assert_eq!(payload["bytes"], new.len());
    assert_eq!(build["components"].as_array().unwrap().len(), 1);
}

/// Issue 22: a 62-byte in-place patch whose header declares a 2 GiB image, a 4 GiB source and
/// a 4 GiB shift made `delta apply` fill an 8 GiB buffer before checking anything. Under the
/// memory limit of the reproduction it is refused from its header, with the size named.
#[cfg(unix)]
#[test]
fn attack_62_byte_patch_is_refused_by_delta_apply_in_constant_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hex = concat!(
        "53434450020204808001808080800880c0ffff0f",
        "000000000000000000000000000000000000000000000000000000000000000000",
        "802080e0ffff0f8020",
    );
    let patch: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(patch.len(), 62);
    std::fs::write(d.join("p.sdp"), &patch).unwrap();
    std::fs::write(d.join("any.bin"), b"any old image").unwrap();
    let out = std::process::Command::new("sh")
        .current_dir(d)
        .arg("-c")
        .arg("ulimit -v 2000000 && exec \"$0\" delta apply any.bin p.sdp -o out")
        .arg(env!("CARGO_BIN_EXE_suitcase"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 0 && c < 128),
        "refused with an error, not aborted ({}):\n{text}",
        out.status
    );
    assert!(
        text.contains("new image of 2147483648 bytes, more than the 1073741824 bytes allowed")
            && text.contains("forged"),
        "{text}"
    );
    assert!(!d.join("out").exists(), "an output was written");
}

//! The `suitcase manifest check` / `inspect` contract, run as a user would run it, against every
//! spec vector with the verdict and reason its README states.

#![expect(clippy::unwrap_used, reason = "test code")]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

fn suitcase(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), json, stdout + &stderr)
}

const EXAMPLE_KEY: &str = "vectors/keys/suit-example-es256-public.pem";
const OTHER_KEY: &str = "vectors/keys/fwenc-dependent-signer-public.pem";
const MAC_KEY: &str = "keys/fwenc-mac.cose.hex";
const PLAINTEXT_SHA256: &str = "36921488fe6680712f734e11f58d87eeb66d4b21a8a1ad3441060814da16d50f";

/// (envelope, trust key, device profile, verdict, reason)
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
);

const CASES: &[Case] = &[
    (
        "vectors/manifest/example0.signed.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/manifest/example0.unsigned.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/manifest/example1.signed.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/manifest/example1.unsigned.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/manifest/example2.signed.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/manifest/example2.severed-signed.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/manifest/example2.severed-unsigned.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/manifest/example3.signed.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/manifest/example3.unsigned.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/manifest/example4.signed.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/manifest/example4.unsigned.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/manifest/example5.signed.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/manifest/example5.unsigned.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/negative/example0.bad-signature.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/negative/example0.manifest-tampered.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/negative/example0.digest-recomputed-old-signature.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/negative/example0.auth-wrapper-from-example1.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/negative/example2.severed-install-tampered.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("digest"),
    ),
    (
        "vectors/trust-domains/example0_dependent.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/trust-domains/example1_process.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/trust-domains/example2_integrated.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/libcsuit-extra/suit_manifest_exp0.resigned.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/libcsuit-extra/suit_manifest_expU0.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/libcsuit-extra/suit_manifest_expU1.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/libcsuit-extra/suit_manifest_expU2.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/libcsuit-extra/suit_manifest_expU3.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/encryption/suit-manifest-aes-kw-content.signed.hex",
        MAC_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/encryption/suit-manifest-aes-kw.signed.hex",
        MAC_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/encryption/suit-manifest-aes-kw-slot.signed.hex",
        MAC_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/encryption/suit-manifest-es-ecdh-content.signed.hex",
        EXAMPLE_KEY,
        None,
        "accept",
        None,
    ),
    (
        "vectors/encryption/suit-manifest-es-ecdh-dependency.signed.hex",
        OTHER_KEY,
        None,
        "accept",
        None,
    ),
    // Wrong trust anchors.
    (
        "vectors/manifest/example0.signed.hex",
        OTHER_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/encryption/suit-manifest-es-ecdh-dependency.signed.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    (
        "vectors/encryption/suit-manifest-aes-kw.signed.hex",
        EXAMPLE_KEY,
        None,
        "reject",
        Some("signature"),
    ),
    // Against simulated devices.
    (
        "vectors/manifest/example0.signed.hex",
        EXAMPLE_KEY,
        Some("devices/example.json"),
        "reject",
        Some("digest"),
    ),
    (
        "vectors/manifest/example0.signed.hex",
        EXAMPLE_KEY,
        Some("devices/other-vendor.json"),
        "reject",
        Some("vendor-id"),
    ),
    (
        "vectors/manifest/example0.signed.hex",
        EXAMPLE_KEY,
        Some("devices/example-installed-seq1.json"),
        "reject",
        Some("sequence-rollback"),
    ),
    (
        "vectors/manifest/example1.signed.hex",
        EXAMPLE_KEY,
        Some("devices/example.json"),
        "reject",
        Some("digest"),
    ),
    (
        "vectors/manifest/example1.signed.hex",
        EXAMPLE_KEY,
        Some("devices/example-small-flash.json"),
        "reject",
        Some("size"),
    ),
    (
        "vectors/manifest/example1.signed.hex",
        EXAMPLE_KEY,
        Some("devices/example-installed-seq1.json"),
        "reject",
        Some("sequence-rollback"),
    ),
    (
        "vectors/manifest/example3.signed.hex",
        EXAMPLE_KEY,
        Some("devices/example.json"),
        "reject",
        Some("condition"),
    ),
    (
        "vectors/trust-domains/example0_dependent.hex",
        EXAMPLE_KEY,
        Some("devices/trust-domains.json"),
        "accept",
        None,
    ),
    (
        "vectors/encryption/suit-manifest-aes-kw.signed.hex",
        MAC_KEY,
        Some("devices/fwenc-aes-kw.json"),
        "accept",
        None,
    ),
    (
        "vectors/encryption/suit-manifest-aes-kw-slot.signed.hex",
        MAC_KEY,
        Some("devices/fwenc-aes-kw-slot.json"),
        "accept",
        None,
    ),
    (
        "vectors/encryption/suit-manifest-aes-kw-content.signed.hex",
        MAC_KEY,
        Some("devices/fwenc-aes-kw.json"),
        "accept",
        None,
    ),
    (
        "vectors/encryption/suit-manifest-aes-kw.signed.hex",
        MAC_KEY,
        Some("devices/fwenc-wrong-kek.json"),
        "reject",
        Some("decrypt"),
    ),
    (
        "vectors/encryption/suit-manifest-es-ecdh-content.signed.hex",
        EXAMPLE_KEY,
        Some("devices/fwenc-es-dh.json"),
        "accept",
        None,
    ),
];

#[test]
fn check_gives_the_right_verdict_on_every_vector() {
    let mut failures = Vec::new();
    for (envelope, key, device, verdict, reason) in CASES {
        let mut args = vec!["manifest", "check", envelope, "--trust", key, "--json"];
        if let Some(d) = device {
            args.extend(["--device", d]);
        }
        let (code, json, output) = suitcase(&args);
        let want_code = if *verdict == "accept" { 0 } else { 1 };
        if code != want_code || json["verdict"] != *verdict || json["reason"].as_str() != *reason {
            failures.push(format!("{envelope} {device:?}: exit {code}, got {output}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn decrypted_components_have_the_plaintext_digest() {
    for (envelope, device, component) in [
        (
            "vectors/encryption/suit-manifest-aes-kw.signed.hex",
            "devices/fwenc-aes-kw.json",
            0,
        ),
        (
            "vectors/encryption/suit-manifest-es-ecdh-content.signed.hex",
            "devices/fwenc-es-dh.json",
            0,
        ),
    ] {
        let key = if envelope.contains("aes-kw") {
            MAC_KEY
        } else {
            EXAMPLE_KEY
        };
        let (code, json, out) = suitcase(&[
            "manifest", "check", envelope, "--trust", key, "--device", device, "--json",
        ]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            json["components"][component]["sha256"], PLAINTEXT_SHA256,
            "{out}"
        );
        assert_eq!(json["components"][component]["size"], 30);
    }
}

#[test]
fn check_without_device_reports_the_sequence_number() {
    let (_, json, _) = suitcase(&[
        "manifest",
        "check",
        "vectors/manifest/example4.signed.hex",
        "--trust",
        EXAMPLE_KEY,
        "--json",
    ]);
    assert_eq!(json["sequence_number"], 4);
    assert_eq!(json["components"].as_array().unwrap().len(), 3);
}

#[test]
fn usage_and_io_errors_exit_2() {
    let (code, _, out) = suitcase(&["manifest", "check", "no-such-file", "--trust", EXAMPLE_KEY]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("no-such-file"),
        "the error names the file: {out}"
    );
    let (code, _, out) = suitcase(&[
        "manifest",
        "check",
        "vectors/manifest/example0.signed.hex",
        "--trust",
        "devices/example.json",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("COSE_Key") || out.contains("PEM"),
        "the error says what a key should be: {out}"
    );
    let (code, _, _) = suitcase(&["manifest", "check", "vectors/manifest/example0.signed.hex"]);
    assert_eq!(code, 2, "--trust is required");
}

#[test]
fn human_output_says_what_to_do_next() {
    let (code, _, out) = suitcase(&[
        "manifest",
        "check",
        "vectors/manifest/example0.signed.hex",
        "--trust",
        EXAMPLE_KEY,
        "--device",
        "devices/example-installed-seq1.json",
    ]);
    assert_eq!(code, 1);
    assert!(out.starts_with("REJECT"), "{out}");
    assert!(
        out.contains("hint: ") && out.contains("higher sequence number"),
        "{out}"
    );
}

#[test]
fn inspect_shows_every_part_of_an_envelope() {
    let (code, json, out) = suitcase(&[
        "manifest",
        "inspect",
        "vectors/manifest/example2.signed.hex",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["manifest"]["sequence_number"], 2);
    assert_eq!(
        json["manifest"]["sections"]["install"]["digest_matches"],
        true
    );
    assert_eq!(
        json["manifest"]["sections"]["install"]["commands"][0]["parameters"]["uri"],
        "http://example.com/very/long/path/to/file/file.bin"
    );
    assert!(
        json["manifest"]["text"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"] == "arm.com")
    );
    assert_eq!(json["authentication"][0]["structure"], "COSE_Sign1");
    assert!(json["diagnostic"].as_str().unwrap().starts_with("107({"));
    let (code, _, text) = suitcase(&[
        "manifest",
        "inspect",
        "vectors/manifest/example2.signed.hex",
    ]);
    assert_eq!(code, 0);
    assert!(
        text.contains("install: severed") && text.contains("digest matches"),
        "{text}"
    );
}

#[test]
fn inspect_shows_a_tampered_severed_member() {
    let (_, json, _) = suitcase(&[
        "manifest",
        "inspect",
        "vectors/negative/example2.severed-install-tampered.hex",
        "--json",
    ]);
    assert_eq!(
        json["manifest"]["sections"]["install"]["digest_matches"],
        false
    );
}

#[test]
fn inspect_reads_raw_cbor_too() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("example0.suit");
    let hex_text =
        std::fs::read_to_string(root().join("vectors/manifest/example0.signed.hex")).unwrap();
    std::fs::write(&raw, hex::decode(hex_text.trim()).unwrap()).unwrap();
    let (code, json, _) = suitcase(&["manifest", "inspect", raw.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json["envelope_bytes"], 237);
}

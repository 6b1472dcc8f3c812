//! SUIT trust domains through the CLI: `manifest check` runs the working group's dependency
//! vectors to the end on a device profile, and `manifest wrap` builds an operator's root
//! manifest around an author's release that `manifest check` accepts with both trust anchors
//! and refuses, naming the dependency, when the author's anchor is missing (docs/trust.md,
//! "Trust domains").

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::path::{Path, PathBuf};

use common::suitcase;
use serde_json::Value;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// `suitcase manifest check ENVELOPE --trust T… --device DEVICE --json` in `dir`.
fn manifest_check(
    dir: &Path,
    envelope: &str,
    trust: &[&str],
    device: &str,
) -> (i32, Value, String) {
    let mut args = vec!["manifest", "check", envelope];
    for t in trust {
        args.extend(["--trust", t]);
    }
    args.extend(["--device", device, "--json"]);
    suitcase(dir, &args)
}

/// The encryption-with-dependency vector checked on its device, trusting `trust`.
fn check_dependency_vector(trust: &[&str]) -> (i32, Value, String) {
    manifest_check(
        &testdata(),
        "vectors/encryption/suit-manifest-es-ecdh-dependency.signed.hex",
        trust,
        "devices/fwenc-es-dh.json",
    )
}

fn vector(path: &str) -> PathBuf {
    testdata().join("vectors").join(path)
}

fn text(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn component(id: &[u8]) -> String {
    format!("{{\"id\": [\"{}\"], \"max_size\": 65536}}", hex::encode(id))
}

#[test]
fn trust_domains_vectors_process_to_accept_on_a_device_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let example = vector("keys/suit-example-es256-public.pem");
    // Example 1 fetches its dependency by URI; the profile serves example 0 there.
    let dependency =
        std::fs::read_to_string(vector("trust-domains/example0_dependent.hex")).unwrap();
    std::fs::write(
        d.join("dependent.suit"),
        hex::decode(dependency.trim()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("device.json"),
        format!(
            "{{\"components\": [{}, {}, {}], \"fetch\": {{\"http://example.com/dependent.suit\": \"dependent.suit\"}}}}",
            component(b"00"),
            component(b"10"),
            component(b"dependent.suit")
        ),
    )
    .unwrap();
    for envelope in [
        "trust-domains/example1_process.hex",
        "trust-domains/example2_integrated.hex",
    ] {
        let (code, json, out) =
            manifest_check(d, text(&vector(envelope)), &[text(&example)], "device.json");
        assert_eq!(
            (code, json["verdict"].as_str()),
            (0, Some("accept")),
            "{envelope}: {out}"
        );
        let sizes: Vec<_> = json["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["size"].as_u64())
            .collect();
        // ['10'] holds " in multiple trust domains"; the dependency wrote "hello world" to ['00'].
        assert_eq!(sizes, [Some(26)], "{envelope}: {out}");
        assert!(
            json["effects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.as_str() == Some("wrote 11 bytes to component 0")),
            "{envelope}: {out}"
        );
    }
    // The encryption-with-dependency vector: two signers, the device trusts both.
    let (code, json, out) = check_dependency_vector(&[
        "vectors/keys/fwenc-dependent-signer-public.pem",
        "vectors/keys/suit-example-es256-public.pem",
    ]);
    assert_eq!(
        (code, json["verdict"].as_str()),
        (0, Some("accept")),
        "{out}"
    );
    assert_eq!(
        json["components"][0]["sha256"],
        "36921488fe6680712f734e11f58d87eeb66d4b21a8a1ad3441060814da16d50f",
        "{out}"
    );
    // Trusting only the distribution system's key: its root authenticates, the author's
    // dependency does not, and the verdict names it.
    let (code, json, out) =
        check_dependency_vector(&["vectors/keys/fwenc-dependent-signer-public.pem"]);
    assert_eq!(
        (code, json["reason"].as_str()),
        (1, Some("signature")),
        "{out}"
    );
    assert!(
        json["detail"].as_str().unwrap().contains("dependency 1"),
        "{out}"
    );
}

#[test]
fn wrap_builds_an_operator_root_that_check_accepts_with_both_anchors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| common::ok(d, args);
    for who in ["author", "operator"] {
        run(&[
            "key",
            "generate",
            "--alg",
            "ed25519",
            "-o",
            &format!("{who}.key"),
            "--public",
            &format!("{who}.pub"),
        ]);
    }
    std::fs::write(d.join("app.bin"), b"the author's firmware").unwrap();
    let built = run(&common::build_args(
        "thermostat",
        "4",
        &[
            "--component",
            "00",
            "--integrated",
            "--sign",
            "author.key",
            "-o",
            "author.suit",
            "--json",
        ],
    ));
    let wrapped = run(&[
        "manifest",
        "wrap",
        "author.suit",
        "--key",
        "operator.key",
        "--sequence",
        "10",
        "-o",
        "root.suit",
        "--json",
    ]);
    assert_eq!(wrapped["sequence_number"], 10);
    assert_eq!(wrapped["dependency"]["sequence_number"], 4);
    let uuid = |v: &Value| v.as_str().unwrap().replace('-', "");
    std::fs::write(
        d.join("device.json"),
        format!(
            "{{\"vendor_id\": \"{}\", \"class_id\": \"{}\", \"components\": [{}]}}",
            uuid(&built["vendor_id"]),
            uuid(&built["class_id"]),
            component(&[0])
        ),
    )
    .unwrap();
    let check = |trust: &[&str]| manifest_check(d, "root.suit", trust, "device.json");
    let (code, json, out) = check(&["operator.pub", "author.pub"]);
    assert_eq!(
        (code, json["verdict"].as_str()),
        (0, Some("accept")),
        "{out}"
    );
    assert!(
        json["effects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str() == Some("wrote 21 bytes to component 0")),
        "{out}"
    );
    // The author's anchor missing: the root authenticates, the dependency does not.
    let (code, json, out) = check(&["operator.pub"]);
    assert_eq!(
        (code, json["reason"].as_str()),
        (1, Some("signature")),
        "{out}"
    );
    assert!(
        json["detail"].as_str().unwrap().contains("dependency 0"),
        "{out}"
    );
    // The operator's anchor missing: the root itself does not authenticate.
    let (code, json, out) = check(&["author.pub"]);
    assert_eq!(
        (code, json["reason"].as_str()),
        (1, Some("signature")),
        "{out}"
    );
    // Wrapping something that is not an envelope is a usage error.
    std::fs::write(d.join("junk.suit"), b"not cbor").unwrap();
    let (code, _, out) = suitcase(
        d,
        &[
            "manifest",
            "wrap",
            "junk.suit",
            "--key",
            "operator.key",
            "-o",
            "x.suit",
        ],
    );
    assert_eq!(code, 2, "{out}");
}

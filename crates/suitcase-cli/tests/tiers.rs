//! Issue 3's contract through the CLI alone: for every tier, `suitcase key generate`,
//! `suitcase release build` and `suitcase manifest check` produce an envelope the device accepts,
//! and that it rejects with a wrong key (reason `signature` or `decrypt`). A two-signer policy
//! rejects an envelope signed by one of the two until `release sign` adds the second.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::path::Path;

use common::{build_args, keygen, ok, suitcase};
use serde_json::{Value, json};

struct Tier {
    name: &'static str,
    signers: &'static [(&'static str, &'static str)],
    recipient: Option<&'static str>,
    threshold: usize,
    hybrid: bool,
}

const TIERS: &[Tier] = &[
    Tier {
        name: "basic",
        signers: &[("es256", "author")],
        recipient: None,
        threshold: 1,
        hybrid: false,
    },
    Tier {
        name: "upgraded",
        signers: &[("ed25519", "author")],
        recipient: Some("a128kw"),
        threshold: 1,
        hybrid: false,
    },
    Tier {
        name: "enhanced",
        signers: &[("es256", "author"), ("ed25519", "operator")],
        recipient: Some("x25519"),
        threshold: 2,
        hybrid: false,
    },
    Tier {
        name: "quantum",
        signers: &[
            ("es256", "author"),
            ("hss-lms", "author-hss"),
            ("ml-dsa-65", "author-mldsa"),
        ],
        recipient: Some("ml-kem-768"),
        threshold: 2,
        hybrid: true,
    },
];

fn device_profile(dir: &Path, build: &Value, decrypt: Option<&str>, tier: &Tier) -> String {
    let components: Vec<Value> = build["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let segs: Vec<String> = serde_json::from_str(c.as_str().unwrap()).unwrap();
            json!({"id": segs, "max_size": 1_048_576})
        })
        .collect();
    let payload = &build["payloads"][0];
    let file = payload["file"].as_str().map_or("app.bin", |f| f);
    let profile = json!({
        "vendor_id": build["vendor_id"].as_str().unwrap().replace('-', ""),
        "class_id": build["class_id"].as_str().unwrap().replace('-', ""),
        "installed_sequence": 6,
        "components": components,
        "fetch": {payload["uri"].as_str().unwrap(): file},
        "keys": {"decrypt": decrypt.map(|d| vec![d]).unwrap_or_default()},
        "policy": {"threshold": tier.threshold, "hybrid": tier.hybrid},
    });
    let name = format!("{}-device.json", tier.name);
    std::fs::write(dir.join(&name), profile.to_string()).unwrap();
    name
}

#[test]
fn every_tier_builds_checks_and_rejects_wrong_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("app.bin"), &image).unwrap();
    let image_sha = hex::encode(sha256(&image));
    for tier in TIERS {
        for (alg, name) in tier.signers {
            keygen(d, alg, &format!("{}-{name}", tier.name));
        }
        let mut args: Vec<String> = [
            "release",
            "build",
            "--image",
            "app.bin",
            "--component",
            "00",
            "--vendor",
            "example.com",
            "--class",
            "thermostat",
            "--sequence",
            "7",
            "--uri",
            "https://fw.example.com/app-7.bin",
            "--profile",
            tier.name,
            "--json",
            "-o",
            &format!("{}.suit", tier.name),
            "--payload-out",
            &format!("{}.payload", tier.name),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        for (_, name) in tier.signers {
            args.extend(["--sign".into(), format!("{}-{name}", tier.name)]);
        }
        if let Some(alg) = tier.recipient {
            keygen(d, alg, &format!("{}-device-key", tier.name));
            args.extend([
                "--encrypt-for".into(),
                format!("{}-device-key.pub", tier.name),
            ]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let build = ok(d, &argv);
        assert_eq!(build["profile"], tier.name);
        assert_eq!(build["payloads"][0]["encrypted"], tier.recipient.is_some());

        let decrypt_key = tier.recipient.map(|_| format!("{}-device-key", tier.name));
        let profile = device_profile(d, &build, decrypt_key.as_deref(), tier);
        let envelope = format!("{}.suit", tier.name);
        let trust: Vec<String> = tier
            .signers
            .iter()
            .map(|(_, n)| format!("{}-{n}.pub", tier.name))
            .collect();
        let mut check: Vec<&str> = vec![
            "manifest", "check", &envelope, "--device", &profile, "--json",
        ];
        for t in &trust {
            check.extend(["--trust", t]);
        }
        let accepted = ok(d, &check);
        assert_eq!(accepted["verdict"], "accept", "{}", tier.name);
        assert_eq!(
            accepted["components"][0]["sha256"], image_sha,
            "{}: the installed image",
            tier.name
        );

        // A key the device does not trust.
        keygen(d, "ed25519", &format!("{}-stranger", tier.name));
        let stranger = format!("{}-stranger.pub", tier.name);
        let (code, json, out) = suitcase(
            d,
            &[
                "manifest", "check", &envelope, "--trust", &stranger, "--device", &profile,
                "--json",
            ],
        );
        assert_eq!(
            (code, json["reason"].as_str()),
            (1, Some("signature")),
            "{}: {out}",
            tier.name
        );

        // The wrong decryption key.
        if let Some(alg) = tier.recipient {
            keygen(d, alg, &format!("{}-other-device", tier.name));
            let wrong = device_profile(
                d,
                &build,
                Some(&format!("{}-other-device", tier.name)),
                tier,
            );
            let mut check: Vec<&str> =
                vec!["manifest", "check", &envelope, "--device", &wrong, "--json"];
            for t in &trust {
                check.extend(["--trust", t]);
            }
            let (code, json, out) = suitcase(d, &check);
            assert_eq!(
                (code, json["reason"].as_str()),
                (1, Some("decrypt")),
                "{}: {out}",
                tier.name
            );
        }
    }
}

#[test]
fn two_signer_policy_rejects_one_signature_and_accepts_the_countersigned_release() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("app.bin"), b"firmware").unwrap();
    keygen(d, "es256", "author");
    keygen(d, "ed25519", "operator");
    ok(
        d,
        &build_args(
            "plc",
            "1",
            &[
                "--uri",
                "https://fw/app.bin",
                "--sign",
                "author",
                "-o",
                "app.suit",
            ],
        ),
    );
    let check = |file: &str| {
        suitcase(
            d,
            &[
                "manifest",
                "check",
                file,
                "--trust",
                "author.pub",
                "--trust",
                "operator.pub",
                "--threshold",
                "2",
                "--json",
            ],
        )
    };
    let (code, json, out) = check("app.suit");
    assert_eq!(
        (code, json["reason"].as_str()),
        (1, Some("signature")),
        "{out}"
    );
    assert!(
        json["detail"].as_str().unwrap().contains("requires 2"),
        "{out}"
    );
    ok(
        d,
        &[
            "release",
            "sign",
            "app.suit",
            "--key",
            "operator",
            "-o",
            "app-countersigned.suit",
        ],
    );
    let (code, json, out) = check("app-countersigned.suit");
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["signers"].as_array().unwrap().len(), 2);
}

#[test]
fn release_build_from_a_toml_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("app.bin"), vec![1u8; 4096]).unwrap();
    std::fs::write(d.join("cfg.bin"), b"config").unwrap();
    keygen(d, "ed25519", "author");
    keygen(d, "a128kw", "fleet-kek");
    std::fs::write(
        d.join("RELEASE.toml"),
        r#"
sequence = 12
profile = "upgraded"
vendor = "example.com"
class = "gateway"
sign = ["author"]
encrypt_for = ["fleet-kek.pub"]
content = "a128ctr"
description = "Gateway 1.2"

[[image]]
file = "app.bin"
component = "00"
uri = "https://fw.example.com/gw-12.bin"
invoke = true
payload_out = "gw-12.bin"

[[image]]
file = "cfg.bin"
component = ["636667"]
integrated = true
"#,
    )
    .unwrap();
    let build = ok(
        d,
        &[
            "release",
            "build",
            "RELEASE.toml",
            "-o",
            "gw.suit",
            "--json",
        ],
    );
    assert_eq!(build["sequence_number"], 12);
    assert_eq!(build["components"].as_array().unwrap().len(), 4);
    assert!(d.join("gw-12.bin").exists());
    let inspect = ok(d, &["manifest", "inspect", "gw.suit", "--json"]);
    assert_eq!(inspect["integrated_payloads"][0]["key"], "#cfg.bin");
    let install = &inspect["manifest"]["sections"]["install"]["commands"];
    let info = install
        .as_array()
        .unwrap()
        .iter()
        .find_map(|c| c["parameters"].get("encryption-info"))
        .unwrap();
    assert_eq!(info["algorithm_name"], "A128CTR");
}

#[test]
fn key_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "x25519", "dev");
    std::fs::write(d.join("app.bin"), b"x").unwrap();
    // A key-agreement key cannot sign.
    let (code, _, out) = suitcase(
        d,
        &[
            "release",
            "build",
            "--image",
            "app.bin",
            "--vendor",
            "v",
            "--class",
            "c",
            "--sequence",
            "1",
            "--uri",
            "u",
            "--sign",
            "dev",
            "-o",
            "x.suit",
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("x25519") && out.contains("sign"), "{out}");
    // Refuse to overwrite a key.
    let (code, _, out) = suitcase(d, &["key", "generate", "--alg", "es256", "-o", "dev"]);
    assert_eq!(code, 2);
    assert!(out.contains("--force"), "{out}");
}

fn sha256(data: &[u8]) -> Vec<u8> {
    suitcase_manifest::DigestAlgorithm::Sha256
        .digest(data)
        .as_bytes()
        .to_vec()
}

#[test]
fn enhanced_tier_with_a_certificate_chain_to_a_trusted_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("app.bin"), b"enhanced firmware").unwrap();
    for k in ["root", "ops", "signer"] {
        keygen(d, "es256", k);
    }
    ok(
        d,
        &[
            "key",
            "cert",
            "--key",
            "root",
            "--cn",
            "Acme Root",
            "--ca",
            "--days",
            "3650",
            "-o",
            "root.pem",
        ],
    );
    ok(
        d,
        &[
            "key",
            "cert",
            "--key",
            "ops",
            "--cn",
            "Acme Ops CA",
            "--ca",
            "--issuer-key",
            "root",
            "--issuer-chain",
            "root.pem",
            "-o",
            "ops.pem",
        ],
    );
    ok(
        d,
        &[
            "key",
            "cert",
            "--key",
            "signer.pub",
            "--cn",
            "Acme Release",
            "--issuer-key",
            "ops",
            "--issuer-chain",
            "ops.pem",
            "-o",
            "signer-chain.pem",
        ],
    );
    ok(
        d,
        &[
            "release",
            "build",
            "--image",
            "app.bin",
            "--vendor",
            "acme.example",
            "--class",
            "plc",
            "--sequence",
            "5",
            "--uri",
            "https://fw/app.bin",
            "--profile",
            "enhanced",
            "--sign",
            "signer",
            "--x5chain",
            "signer-chain.pem",
            "-o",
            "app.suit",
        ],
    );
    // The device trusts only the root certificate.
    let accepted = ok(
        d,
        &[
            "manifest", "check", "app.suit", "--trust", "root.pem", "--json",
        ],
    );
    assert_eq!(accepted["verdict"], "accept");
    // Two years later the signer's certificate has expired.
    let later = (suitcase_author_now() + 2 * 365 * 86_400).to_string();
    let (code, json, out) = suitcase(
        d,
        &[
            "manifest", "check", "app.suit", "--trust", "root.pem", "--time", &later, "--json",
        ],
    );
    assert_eq!(
        (code, json["reason"].as_str()),
        (1, Some("signature")),
        "{out}"
    );
    // Another organisation's root does not vouch for it.
    keygen(d, "es256", "other-root");
    ok(
        d,
        &[
            "key",
            "cert",
            "--key",
            "other-root",
            "--cn",
            "Other Root",
            "--ca",
            "-o",
            "other-root.pem",
        ],
    );
    let (code, _, _) = suitcase(
        d,
        &[
            "manifest",
            "check",
            "app.suit",
            "--trust",
            "other-root.pem",
            "--json",
        ],
    );
    assert_eq!(code, 1);
}

fn suitcase_author_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn cose_key_files_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("app.bin"), b"cose keys").unwrap();
    for alg in ["es256", "ed25519"] {
        ok(
            d,
            &[
                "key",
                "generate",
                "--alg",
                alg,
                "--format",
                "cose",
                "-o",
                alg,
                "--public",
                &format!("{alg}.pub"),
            ],
        );
        let private = std::fs::read(d.join(alg)).unwrap();
        assert_eq!(private[0] & 0xe0, 0xa0, "{alg}: a CBOR map, not PEM");
        // The same key converted to PEM still verifies what the COSE form signed.
        ok(
            d,
            &[
                "key",
                "public",
                alg,
                "--format",
                "pem",
                "-o",
                &format!("{alg}.pem"),
            ],
        );
    }
    ok(
        d,
        &[
            "release",
            "build",
            "--image",
            "app.bin",
            "--vendor",
            "v.example",
            "--class",
            "c",
            "--sequence",
            "1",
            "--uri",
            "https://x/app.bin",
            "--sign",
            "es256",
            "--sign",
            "ed25519",
            "-o",
            "app.suit",
        ],
    );
    for trust in ["es256.pub", "ed25519.pub", "es256.pem", "ed25519.pem"] {
        let json = ok(
            d,
            &["manifest", "check", "app.suit", "--trust", trust, "--json"],
        );
        assert_eq!(json["verdict"], "accept", "{trust}");
    }
}

//! `suitcase bundle create --trust-update` and `suitcase agent --bundle` on a device with a
//! trust state, as processes (docs/bundles.md §1 and §3): the rotation of docs/trust.md
//! carried on a stick with the new author's release, applied by the agent before the
//! release, which then installs; the builder's refusals.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::path::Path;
use std::process::Command;

fn agent(ddir: &Path, bundle: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(ddir)
        .args(["agent", "--config", "agent.toml", "--json", "--bundle"])
        .arg(bundle)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn bundle_with_a_trust_update_installs_the_new_authors_release_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["root1", "root2", "author1", "author2"] {
        common::es256_key(d, k);
    }
    std::fs::write(d.join("app.bin"), vec![0x3cu8; 20_000]).unwrap();
    common::ok(
        d,
        &[
            "trust",
            "init",
            "--root",
            "root1.pub",
            "--root",
            "root2.pub",
            "--threshold",
            "2",
            "--signer",
            "author1.pub",
            "--out",
            "trust.cbor",
        ],
    );
    common::ok(d, &common::ROTATE_AUTHOR_ARGS);
    common::ok(
        d,
        &common::build_args(
            "thermostat",
            "2",
            &[
                "--component",
                "617070",
                "--integrated",
                "--sign",
                "author2.key",
                "-o",
                "app-2.suit",
            ],
        ),
    );

    // The builder: a trust update given as a release, or a release as a trust update, refused.
    let (code, _, out) = common::suitcase(
        d,
        &["bundle", "create", "-o", "bad.bundle", "update-1.suit"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--trust-update"), "{out}");
    let (code, _, out) = common::suitcase(
        d,
        &[
            "bundle",
            "create",
            "-o",
            "bad.bundle",
            "--trust-update",
            "app-2.suit",
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no trust document"), "{out}");
    assert!(!d.join("bad.bundle").exists());

    common::ok(
        d,
        &[
            "bundle",
            "create",
            "-o",
            "rotation.bundle",
            "app-2.suit",
            "--trust-update",
            "update-1.suit",
            "--json",
        ],
    );
    let v = common::ok(d, &["bundle", "list", "rotation.bundle", "--json"]);
    let releases = v["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 2, "{v}");
    assert_eq!(
        releases[1]["components"][0][0], "73756974636173652d7472757374",
        "{v}"
    );
    assert_eq!(releases[1]["sequence_number"], 1, "{v}");

    // The device: provisioned with the genesis state, its server a closed port.
    let ddir = d.join("dev");
    std::fs::create_dir_all(&ddir).unwrap();
    std::fs::copy(d.join("trust.cbor"), ddir.join("trust.cbor")).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let toml = common::agent_toml(&dead, "t0ken", "", "")
        .replace("anchors = [\"author.pub\"]", "state = \"trust.cbor\"");
    std::fs::write(ddir.join("agent.toml"), toml).unwrap();
    let (code, out) = agent(&ddir, &d.join("rotation.bundle"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("trust update applied from the bundle"),
        "{out}"
    );
    assert!(out.contains(r#""result":"installed""#), "{out}");
    let stored = ddir.join("state/trust.cbor");
    assert_eq!(
        common::ok(d, &["trust", "show", stored.to_str().unwrap(), "--json"]),
        common::ok(d, &["trust", "show", "trust-1.cbor", "--json"])
    );
}

//! `suitcase fleet release upload` finishes what an envelope-only or interrupted upload
//! started, and `suitcase server admin-token --reset` recovers a server no admin token opens.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::path::Path;

use common::{ServerProcess, build_args, keygen, ok};
use serde_json::Value;

/// Runs a `fleet` command against `s`, which must succeed: (JSON stdout, stderr).
fn fleet(s: &ServerProcess, dir: &Path, args: &[&str]) -> (Value, String) {
    let out = s.command(dir, args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "suitcase {args:?}:\n{stdout}\n{stderr}"
    );
    (serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
}

#[test]
fn envelope_only_upload_is_finished_by_the_same_command_with_its_payload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = ServerProcess::start(d);
    keygen(d, "es256", "a");
    fleet(&s, d, &["fleet", "key", "add", "author", "a.pub"]);
    std::fs::write(d.join("app.bin"), vec![0x42u8; 5000]).unwrap();
    ok(
        d,
        &build_args(
            "thermostat",
            "3",
            &[
                "--uri",
                "https://fw.example/app.bin",
                "--sign",
                "a",
                "-o",
                "app.suit",
                "--json",
            ],
        ),
    );
    let upload = ["fleet", "--json", "release", "upload", "app.suit"];
    let with_payload = [&upload[..], &["--payload", "app.bin"]].concat();
    // The envelope alone: the release waits for its payload, and the note says how to finish.
    let (first, err) = fleet(&s, d, &upload);
    assert_eq!(first["complete"], false, "{first}");
    assert!(err.contains("suitcase fleet release upload"), "{err}");
    // The same command with the payload finishes it (it used to answer 409).
    let (again, err) = fleet(&s, d, &with_payload);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["complete"], true, "{again}");
    assert!(err.contains("already"), "{err}");
    // And once more: nothing to do, still success.
    let (third, err) = fleet(&s, d, &with_payload);
    assert_eq!(third["complete"], true);
    assert!(err.contains("every payload"), "{err}");
}

#[test]
fn admin_token_reset_writes_a_working_token_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = ServerProcess::start(d);
    let out = s.ok(d, &["server", "admin-token"]);
    assert!(out.contains("1 admin token(s) work"), "{out}");
    let out = s.ok(
        d,
        &[
            "server",
            "--data",
            "suitcase-data",
            "admin-token",
            "--reset",
        ],
    );
    assert!(out.contains("new admin token written"), "{out}");
    let second = std::fs::read_to_string(d.join("suitcase-data/admin-token")).unwrap();
    assert_ne!(second.trim(), s.admin);
    let out = s.ok(d, &["fleet", "--token", second.trim(), "audit"]);
    assert!(out.contains("token.reset"), "{out}");
}

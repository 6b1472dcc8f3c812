//! What the CLI integration tests share: running the `suitcase` binary and generating keys.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code; not every test file uses every helper"
)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `suitcase ARGS` in `dir`: (exit code, stdout as JSON or null, stdout + stderr).
pub fn suitcase(dir: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Runs `suitcase ARGS` in `dir`, which must succeed; returns its JSON output.
pub fn ok(dir: &Path, args: &[&str]) -> Value {
    let (code, json, out) = suitcase(dir, args);
    assert_eq!(code, 0, "suitcase {args:?}:\n{out}");
    json
}

/// `suitcase key generate --alg ALG -o NAME --public NAME.pub` (small HSS trees, so quantum
/// tier keys take milliseconds).
pub fn keygen(dir: &Path, alg: &str, name: &str) {
    ok(
        dir,
        &[
            "key",
            "generate",
            "--alg",
            alg,
            "--hss-params",
            "h5w4",
            "-o",
            name,
            "--public",
            &format!("{name}.pub"),
            "--json",
        ],
    );
}

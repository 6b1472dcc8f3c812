//! `suitcase … | head`: a reader that goes away early. Rust ignores SIGPIPE, so every write
//! after that fails with EPIPE; the binary must end quietly (status 141, as a program killed
//! by SIGPIPE), not panic with a backtrace.

#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};

/// A release with a 200 KB integrated image: `manifest inspect` prints about 400 KB, far
/// more than a pipe holds.
fn big_envelope(dir: &std::path::Path) {
    common::keygen(dir, "es256", "author");
    std::fs::write(dir.join("img.bin"), common_image(200_000)).unwrap();
    std::fs::write(
        dir.join("RELEASE.toml"),
        "sequence = 1\nprofile = \"basic\"\nvendor = \"example.com\"\nclass = \"thermostat\"\n\
         sign = [\"author\"]\n[[image]]\nfile = \"img.bin\"\ncomponent = \"00\"\nintegrated = true\n",
    )
    .unwrap();
    let (code, _, out) =
        common::suitcase(dir, &["release", "build", "RELEASE.toml", "-o", "big.suit"]);
    assert_eq!(code, 0, "{out}");
}

fn common_image(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn closed_stdout_ends_quietly_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    big_envelope(d);
    for args in [
        &["manifest", "inspect", "big.suit"][..],
        &["manifest", "inspect", "--json", "big.suit"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_suitcase"))
            .current_dir(d)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read the beginning, as `head -c 100` would, then go away.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 100];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.is_empty(), "{args:?}: not quiet: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
    }
}

/// With stderr closed too, an error message cannot be written: the command still ends with
/// its status (2: the file does not exist), not a panic (101).
#[test]
fn closed_stderr_keeps_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(dir.path())
        .args(["manifest", "inspect", "missing.suit"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
}

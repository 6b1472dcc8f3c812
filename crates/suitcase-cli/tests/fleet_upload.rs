//! `suitcase fleet release upload` finishes what an envelope-only or interrupted upload
//! started, and `suitcase server admin-token --reset` recovers a server no admin token opens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    missing_docs,
    reason = "test code"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn suitcase(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(dir: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(dir)
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let token_file = dir.join("suitcase-data/admin-token");
    for _ in 0..200 {
        if token_file.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

#[test]
fn envelope_only_upload_is_finished_by_the_same_command_with_its_payload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = server(d);
    let run = |args: &[&str]| {
        let mut all = vec!["fleet", "--server", s.base.as_str()];
        all.extend_from_slice(args);
        let (ok, out, err) = suitcase(d, &all);
        assert!(ok, "suitcase {args:?} failed:\n{out}\n{err}");
        (out, err)
    };
    let (ok, _, err) = suitcase(
        d,
        &[
            "key", "generate", "--alg", "es256", "-o", "a.key", "--public", "a.pub",
        ],
    );
    assert!(ok, "{err}");
    run(&["key", "add", "author", "a.pub"]);
    std::fs::write(d.join("app.bin"), vec![0x42u8; 5000]).unwrap();
    let (ok, _, err) = suitcase(
        d,
        &[
            "release",
            "build",
            "--image",
            "app.bin",
            "--vendor",
            "example.com",
            "--class",
            "thermostat",
            "--sequence",
            "3",
            "--uri",
            "https://fw.example/app.bin",
            "--sign",
            "a.key",
            "-o",
            "app.suit",
        ],
    );
    assert!(ok, "{err}");
    // The envelope alone: the release waits for its payload, and the note says how to finish.
    let (out, err) = run(&["--json", "release", "upload", "app.suit"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["complete"], false, "{v}");
    assert!(err.contains("suitcase fleet release upload"), "{err}");
    // The same command with the payload finishes it (it used to answer 409).
    let (out, err) = run(&[
        "--json",
        "release",
        "upload",
        "app.suit",
        "--payload",
        "app.bin",
    ]);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["id"], v["id"]);
    assert_eq!(again["complete"], true, "{again}");
    assert!(err.contains("already"), "{err}");
    // And once more: nothing to do, still success.
    let (out, err) = run(&[
        "--json",
        "release",
        "upload",
        "app.suit",
        "--payload",
        "app.bin",
    ]);
    let third: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(third["complete"], true);
    assert!(err.contains("every payload"), "{err}");
}

#[test]
fn admin_token_reset_writes_a_working_token_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = server(d);
    let first = std::fs::read_to_string(d.join("suitcase-data/admin-token")).unwrap();
    let (ok, out, err) = suitcase(d, &["server", "admin-token"]);
    assert!(ok, "{err}");
    assert!(out.contains("1 admin token(s) work"), "{out}");
    let (ok, out, err) = suitcase(
        d,
        &[
            "server",
            "--data",
            "suitcase-data",
            "admin-token",
            "--reset",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("new admin token written"), "{out}");
    let second = std::fs::read_to_string(d.join("suitcase-data/admin-token")).unwrap();
    assert_ne!(first, second);
    let (ok, out, err) = suitcase(
        d,
        &[
            "fleet",
            "--server",
            &s.base,
            "--token",
            second.trim(),
            "audit",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("token.reset"), "{out}");
}

//! `suitcase fleet` against a running `suitcase server`: register a key, build and upload a
//! release, register a device, start a campaign, and watch the device's update arrive.

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
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn suitcase(dir: &Path, server: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(dir)
        .env("SUITCASE_SERVER", server)
        .env("SUITCASE_TOKEN", token)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fleet_commands_drive_a_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(d)
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let token_file = d.join("suitcase-data/admin-token");
    for _ in 0..200 {
        if token_file.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // With no --token, fleet reads ./suitcase-data/admin-token (the server runs here).
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(d)
        .env_remove("SUITCASE_TOKEN")
        .args(["fleet", "--server", &base, "token", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin"));
    let admin = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();

    let run = |args: &[&str]| {
        let (ok, out, err) = suitcase(d, &base, &admin, args);
        assert!(ok, "suitcase {args:?} failed:\n{out}\n{err}");
        out
    };
    run(&[
        "key",
        "generate",
        "--alg",
        "es256",
        "-o",
        "author.key",
        "--public",
        "author.pub",
    ]);
    let out = run(&["fleet", "key", "add", "author", "author.pub"]);
    assert!(out.contains("registered"), "{out}");
    std::fs::write(d.join("app-7.bin"), vec![0x77u8; 10_000]).unwrap();
    run(&[
        "release",
        "build",
        "--image",
        "app-7.bin",
        "--component",
        "617070",
        "--vendor",
        "example.com",
        "--class",
        "thermostat",
        "--sequence",
        "7",
        "--uri",
        "https://fw.example/app-7.bin",
        "--profile",
        "basic",
        "--sign",
        "author.key",
        "-o",
        "app-7.suit",
    ]);
    let rel: Value = serde_json::from_str(&run(&[
        "fleet",
        "--json",
        "release",
        "upload",
        "app-7.suit",
        "--payload",
        "app-7.bin",
        "--name",
        "7.0",
    ]))
    .unwrap();
    assert_eq!(rel["complete"], true, "{rel}");
    let rel_id = rel["id"].as_str().unwrap();
    let dev: Value = serde_json::from_str(&run(&[
        "fleet", "--json", "device", "add", "sn-1", "--tag", "beta",
    ]))
    .unwrap();
    let dev_token = dev["token"].as_str().unwrap();
    let out = run(&[
        "fleet",
        "campaign",
        "create",
        "--release",
        rel_id,
        "--tag",
        "beta",
        "--waves",
        "1,100%",
        "--window",
        "00:00-23:59",
        "--start",
    ]);
    assert!(out.contains("running"), "{out}");
    assert!(out.contains("wave 1 open"), "{out}");
    // The device checks in and is offered the release.
    let client = raw_http::checkin(&base, dev_token);
    assert_eq!(client["action"], "update", "{client}");
    let out = run(&["fleet", "device", "show", "sn-1"]);
    assert!(out.contains(rel_id), "{out}");
    // A bad request says what is wrong.
    let (ok, _, err) = suitcase(
        d,
        &base,
        &admin,
        &["fleet", "campaign", "create", "--release", "rel_nope"],
    );
    assert!(!ok);
    assert!(err.contains("no release"), "{err}");
    let out = run(&["fleet", "audit"]);
    assert!(
        out.contains("campaign.start") && out.contains("release.upload"),
        "{out}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

mod raw_http {
    /// A device check-in with a plain TCP request: the test needs no HTTP client of its own.
    pub(super) fn checkin(base: &str, token: &str) -> serde_json::Value {
        use std::io::{Read as _, Write as _};
        let addr = base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let body = r#"{"components":[{"id":["617070"],"sequence_number":1}]}"#;
        write!(
            s,
            "POST /api/v1/device/checkin HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let json = resp.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str(json).unwrap_or_else(|_| panic!("{resp}"))
    }
}

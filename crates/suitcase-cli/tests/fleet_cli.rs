//! `suitcase fleet` against a running `suitcase server`: register a key, build and upload a
//! release, register a device, start a campaign, and watch the device's update arrive.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::std_instead_of_core,
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
    // A second device whose agent says it cannot roll back `app` (a deb it did not install).
    let dev2: Value = serde_json::from_str(&run(&[
        "fleet", "--json", "device", "add", "sn-2", "--tag", "beta",
    ]))
    .unwrap();
    raw_http::checkin_with(
        &base,
        dev2["token"].as_str().unwrap(),
        r#"{"components":[{"id":["617070"],"sequence_number":1,"handler":"deb","rollback":false}]}"#,
    );
    let out = run(&["fleet", "device", "show", "sn-2"]);
    assert!(
        out.contains("component app  sequence 1  deb handler, cannot roll back"),
        "{out}"
    );
    let out = run(&[
        "fleet",
        "campaign",
        "create",
        "--release",
        rel_id,
        "--tag",
        "beta",
        "--dry-run",
    ]);
    assert!(
        out.contains("warning: 1 of 2 devices cannot roll back app (deb handler)"),
        "{out}"
    );
    let out = run(&[
        "fleet",
        "campaign",
        "create",
        "--release",
        rel_id,
        "--tag",
        "beta",
        // One wave of both devices: with "1,100%" the first wave holds one of the two, and
        // which one is not this test's business.
        "--waves",
        "100%",
        "--window",
        "00:00-23:59",
        "--start",
    ]);
    assert!(out.contains("running"), "{out}");
    assert!(out.contains("wave 1 open"), "{out}");
    let campaign = out.split_whitespace().nth(1).unwrap().to_owned();
    let out = run(&["fleet", "campaign", "show", &campaign]);
    assert!(
        out.contains("warning: 1 of 2 devices cannot roll back app (deb handler)"),
        "{out}"
    );
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
        checkin_with(
            base,
            token,
            r#"{"components":[{"id":["617070"],"sequence_number":1}]}"#,
        )
    }

    /// A check-in with this inventory.
    pub(super) fn checkin_with(base: &str, token: &str, body: &str) -> serde_json::Value {
        use std::io::{Read as _, Write as _};
        let addr = base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
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

/// `suitcase fleet key add` given the private key file (`author.key` for `author.pub`) used to
/// send the PEM to the server and rely on it refusing. It is refused before any connection is
/// made: the error names the file and the way to its public half, and shows none of the key.
/// The "server" here is a socket that only counts connections.
#[test]
fn attack_private_key_given_to_fleet_key_add_never_leaves_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gen_key = |args: &[&str]| {
        let mut all = vec!["key", "generate"];
        all.extend_from_slice(args);
        let (ok, out, err) = suitcase(d, &base, "t", &all);
        assert!(ok, "{out}\n{err}");
    };
    gen_key(&[
        "--alg",
        "es256",
        "-o",
        "author.key",
        "--public",
        "author.pub",
    ]);
    gen_key(&[
        "--alg", "ed25519", "--format", "cose", "-o", "cose.key", "--public", "cose.pub",
    ]);
    for file in ["author.key", "cose.key"] {
        let secret = std::fs::read(d.join(file)).unwrap();
        // Waited for with a deadline: a command that sends the key waits for an answer the
        // socket never gives.
        let mut child = Command::new(env!("CARGO_BIN_EXE_suitcase"))
            .current_dir(d)
            .env("SUITCASE_SERVER", &base)
            .env("SUITCASE_TOKEN", "t")
            .args(["fleet", "key", "add", "author", file])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        for _ in 0..600 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{file}: `fleet key add` was still waiting for the server after 30 s");
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{file}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.is_empty(), "{file}: {stdout}");
        assert!(stderr.contains(file), "{file}: the file is named: {stderr}");
        assert!(stderr.contains("private key"), "{file}: {stderr}");
        assert!(
            stderr.contains(".pub") && stderr.contains("suitcase key public"),
            "{file}: the way to the public key is given: {stderr}"
        );
        // No piece of the key file, as text, hex or base64 line, is shown.
        let both = format!("{stdout}{stderr}");
        let text = String::from_utf8_lossy(&secret);
        for line in text
            .lines()
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
        {
            assert!(!both.contains(line), "{file}: key material echoed: {both}");
        }
        let hex = hex::encode(&secret);
        for chunk in hex.as_bytes().chunks(32).filter(|c| c.len() == 32) {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(!both.contains(chunk), "{file}: key bytes echoed: {both}");
        }
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{file}: `fleet key add` connected to the server: {other:?}"),
        }
    }
    // The public half still goes through (the server here is only a socket, so the request
    // reaches it: that is what the refusal above prevents).
    let child = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(d)
        .env("SUITCASE_SERVER", &base)
        .env("SUITCASE_TOKEN", "t")
        .args(["fleet", "key", "add", "author", "author.pub"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = child;
    let mut connected = false;
    for _ in 0..200 {
        if listener.accept().is_ok() {
            connected = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(connected, "the public key is sent");
}

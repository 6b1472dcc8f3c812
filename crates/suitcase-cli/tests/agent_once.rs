//! `suitcase agent --once` exit statuses a script can rely on: an update that is activated
//! and waits for its reboot is pending (4), not installed (0), until a run after the reboot
//! confirms it. A real `suitcase server` process, the agent as a process.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::path::Path;

use common::ServerProcess;
use serde_json::Value;

fn agent_toml(dir: &Path, base: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        common::agent_toml(
            base,
            token,
            "",
            r#"activate = "reboot"
reboot = ["sh", "-c", "echo \"$SUITCASE_SLOT\" >> reboots.log"]
"#,
        ),
    )
    .unwrap();
    path
}

/// Runs `suitcase agent --once --json`: (exit code, the `update` events' results).
fn once(dir: &Path, config: &Path) -> (i32, Vec<String>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(dir)
        .args(["agent", "--once", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let results = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "update")
        .map(|v| v["result"].as_str().unwrap_or_default().to_owned())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        results,
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn agent_once_does_not_claim_success_while_the_update_waits_for_its_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = ServerProcess::start(d);
    let rel = server.release(d, 2, &vec![0x42u8; 20_000]);
    let (id, token) = server.device(d, "sn-reboot");
    server.start_campaign(d, &rel, &id);
    let config = agent_toml(d, &server.base, &token);

    // First run: everything up to Activate, the reboot command runs, the image is on trial.
    let (code, results, out) = once(d, &config);
    assert_eq!(code, 4, "pending is exit status 4:\n{out}");
    assert_eq!(results, ["rebooting"], "{out}");
    assert!(out.contains("not confirmed yet"), "{out}");
    assert_eq!(
        std::fs::read_to_string(d.join("app.slot")).unwrap(),
        "active=b\nconfirmed=a\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("reboots.log")).unwrap(),
        "b\n"
    );

    // After the "reboot": Clean-up confirms it; now it is installed.
    let (code, results, out) = once(d, &config);
    assert_eq!(code, 0, "{out}");
    assert_eq!(results, ["installed"], "{out}");
    assert_eq!(
        std::fs::read_to_string(d.join("app.slot")).unwrap(),
        "active=b\nconfirmed=b\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("reboots.log")).unwrap(),
        "b\n",
        "the reboot is not repeated"
    );
}

/// A device without the system's CA certificates (a bare initramfs) cannot build its HTTP
/// client: the agent says so and how to fix it, instead of reqwest's bare "builder error".
#[test]
fn fault_no_system_ca_certificates_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    common::es256_key(dir.path(), "author");
    std::fs::write(
        dir.path().join("agent.toml"),
        common::agent_toml("http://127.0.0.1:9", "t", "", ""),
    )
    .unwrap();
    let empty = dir.path().join("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, out) = common::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_suitcase"))
            .current_dir(dir.path())
            .env("SSL_CERT_FILE", empty.join("none.pem"))
            .env("SSL_CERT_DIR", &empty)
            .args(["agent", "--config", "agent.toml", "--once"]),
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("No CA certificates were loaded"), "{out}");
    assert!(out.contains("set server.ca_file"), "{out}");
}

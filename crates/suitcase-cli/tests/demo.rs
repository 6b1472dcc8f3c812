//! `suitcase demo` and `suitcase sim` as a user runs them: the binary, its JSON summary and
//! its exit status.

#![expect(clippy::panic, reason = "test code")]

use std::process::Command;

use serde_json::Value;

fn json_of(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The README's "run" command: 20 devices, all updated, none failed, and the summary has
/// every documented key.
#[test]
fn demo_twenty_devices_all_updated() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .args(["demo", "--devices", "20", "--json", "--work"])
        .arg(work.path())
        .output()
        .unwrap();
    let v = json_of(&out);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["devices"], 20, "{v}");
    assert_eq!(v["updated"], 20, "{v}");
    assert_eq!(v["rolled_back"], 0, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    // Envelopes and delta patches for twenty devices at least, plus check-ins and reports.
    let (all, bodies) = (
        v["bytes_transferred"].as_u64().unwrap(),
        v["download_bytes"].as_u64().unwrap(),
    );
    assert!(bodies > 20 * 300 && all > bodies, "{v}");
    assert!(v["seconds"].as_f64().unwrap() > 0.0, "{v}");
}

/// `suitcase sim` against a server started on its own, with a bad image: the campaign rolls
/// back, nothing is updated, and the exit status still says the rehearsal converged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_against_a_running_server_rolls_a_bad_image_back() {
    let ts = suitcase_test_support::TestServer::start(|config| config.poll_interval = 1).await;
    let dir = &ts.dir;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &ts.admin).unwrap();
    let url = ts.base.clone();
    let work = dir.path().join("sim");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_suitcase"))
            .args([
                "sim",
                "--server",
                &url,
                "--devices",
                "10",
                "--faults",
                "bad-image",
            ])
            .args([
                "--waves",
                "2,100%",
                "--poll-cap",
                "0.5",
                "--json",
                "--token-file",
            ])
            .arg(&token_file)
            .arg("--work")
            .arg(&work)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let v = json_of(&out);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["campaign_state"], "rolled_back", "{v}");
    assert_eq!(
        (v["updated"].as_u64(), v["rolled_back"].as_u64()),
        (Some(0), Some(2)),
        "{v}"
    );
    assert_eq!(v["not_reached"], 8, "{v}");
    ts.stop().await;
}

/// Wrong arguments are named, with what to do.
#[test]
fn sim_mistakes_are_explained() {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .args([
            "sim",
            "--server",
            "http://127.0.0.1:9",
            "--devices",
            "3",
            "--token",
            "x",
        ])
        .args(["--faults", "meteor=0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown fault `meteor`"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .args(["sim", "--server", "http://127.0.0.1:9", "--devices", "3"])
        .env_remove("SUITCASE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin token"), "{err}");
}

//! `suitcase bundle create` / `list` and `suitcase agent --bundle`, as processes: a release
//! built and uploaded with the CLI, carried in a bundle to a device whose server is not
//! reachable, installed from it, and its reports synced when the agent runs online again.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::path::Path;
use std::process::Command;

use common::ServerProcess;
use serde_json::Value;

fn agent(ddir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(ddir)
        .args(["agent", "--config", "agent.toml"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn bundle_create_list_and_agent_bundle_install_offline_then_sync() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = ServerProcess::start(d);
    let image = vec![0x5au8; 30_000];
    let rel = server.release(d, 3, &image);
    let (id, token) = server.device(d, "sn-offline");

    // create: the payload is found next to the envelope by the URI's file name.
    let (code, v, out) = common::suitcase(
        d,
        &[
            "bundle",
            "create",
            "-o",
            "update.bundle",
            "app-3.suit",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["kind"], "file", "{v}");
    let (code, _, out) = common::suitcase(
        d,
        &["bundle", "create", "-o", "update.bundle", "app-3.suit"],
    );
    assert_ne!(code, 0, "an existing bundle is not overwritten: {out}");
    // A wrong file for the URI is refused here already.
    std::fs::write(d.join("other.bin"), vec![1u8; 30_000]).unwrap();
    let (code, _, out) = common::suitcase(
        d,
        &[
            "bundle",
            "create",
            "-o",
            "bad.bundle",
            "app-3.suit",
            "--payload",
            "https://fw.example/app-3.bin=other.bin",
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("declares"), "{out}");
    assert!(!d.join("bad.bundle").exists());

    // list --json
    let v = common::ok(d, &["bundle", "list", "update.bundle", "--json"]);
    let r = &v["releases"][0];
    assert_eq!(r["sequence_number"], 3, "{v}");
    assert_eq!(r["components"][0][0], "617070", "{v}");
    assert_eq!(
        r["payloads"][0]["uri"], "https://fw.example/app-3.bin",
        "{v}"
    );
    assert_eq!(r["payloads"][0]["size"], 30_000, "{v}");

    // The device: its server is a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let ddir = server.agent_dir(d, "dev", &token, "");
    let toml = std::fs::read_to_string(ddir.join("agent.toml")).unwrap();
    std::fs::write(ddir.join("agent.toml"), toml.replace(&server.base, &dead)).unwrap();
    let bundle = d.join("update.bundle");
    let (code, out) = agent(&ddir, &["--json", "--bundle", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#""result":"installed""#), "{out}");
    assert_eq!(
        std::fs::read(ddir.join("app-b.bin"))
            .unwrap()
            .get(..image.len()),
        Some(image.as_slice())
    );
    let queued: Vec<Value> =
        serde_json::from_slice(&std::fs::read(ddir.join("state/outbox.json")).unwrap()).unwrap();
    assert!(queued.len() >= 10 && queued.iter().all(|r| r["offline"] == true));
    // Again: nothing new in it (5), nothing changed.
    let (code, out) = agent(&ddir, &["--bundle", bundle.to_str().unwrap()]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("nothing new"), "{out}");

    // Online: the reports are delivered, the server shows the offline update.
    std::fs::write(ddir.join("agent.toml"), toml).unwrap();
    let (code, out) = agent(&ddir, &["--once"]);
    assert_eq!(code, 0, "{out}");
    let queued: Vec<Value> =
        serde_json::from_slice(&std::fs::read(ddir.join("state/outbox.json")).unwrap()).unwrap();
    assert!(queued.is_empty(), "{queued:?}");
    let dev: Value =
        serde_json::from_str(&server.ok(d, &["fleet", "--json", "device", "show", &id])).unwrap();
    assert_eq!(dev["update"]["offline"], true, "{dev}");
    assert_eq!(dev["update"]["release_id"], rel.as_str(), "{dev}");
    assert_eq!(dev["update"]["state"], "succeeded", "{dev}");
}

#[test]
fn bundle_create_refuses_more_releases_than_agents_read() {
    // (More than MAX_PAYLOADS payloads in one release cannot be built: a manifest names at
    // most 16 components; `bundle create` checks that bound, and the index's size, too.)
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // More releases than an agent reads from one bundle: refused before anything is read.
    let many: Vec<String> = (0..=suitcase_agent::bundle::MAX_RELEASES)
        .map(|i| format!("r{i}.suit"))
        .collect();
    let mut args = vec!["bundle", "create", "-o", "many.bundle"];
    args.extend(many.iter().map(String::as_str));
    let (code, _, out) = common::suitcase(d, &args);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("65 releases given") && out.contains("at most 64"),
        "{out}"
    );
    assert!(!d.join("many.bundle").exists());
}

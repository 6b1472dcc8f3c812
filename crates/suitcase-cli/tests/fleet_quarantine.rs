//! `suitcase fleet` for quarantine (RFC 8240 §9, docs/server.md §8) against a running
//! `suitcase server` started with the quarantine flags: quarantine and release a device,
//! see it in `device show`, mark a release remediation (and an author's upload with
//! `--remediation` refused), and the fleet's posture in words and as the server's JSON.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use common::{ServerProcess, run};
use serde_json::Value;

fn json(s: &ServerProcess, d: &std::path::Path, args: &[&str]) -> Value {
    serde_json::from_str(&s.ok(d, args)).unwrap()
}

#[test]
fn fleet_quarantines_marks_remediation_and_shows_posture() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = ServerProcess::start_with(
        d,
        &[
            "--quarantine-signature-failures",
            "1",
            "--quarantine-window",
            "90m",
            "--no-quarantine-never-offered",
            "--unreachable-after",
            "2h",
        ],
    );
    // The posture: the server took --unreachable-after (its JSON, printed as is).
    let p = json(&s, d, &["fleet", "--json", "posture"]);
    assert_eq!(p["unreachable_after_seconds"], 7200, "{p}");
    assert_eq!(p["devices"], 0, "{p}");
    let (id, _) = s.device(d, "sensor-1");

    // Quarantine, in words; twice is the server's conflict.
    let out = s.ok(
        d,
        &[
            "fleet",
            "device",
            "quarantine",
            "sensor-1",
            "--reason",
            "tampering suspected",
        ],
    );
    assert!(
        out.contains("QUARANTINED") && out.contains("tampering suspected"),
        "{out}"
    );
    assert!(
        out.contains("offered only releases marked remediation"),
        "{out}"
    );
    let (code, _, out) = run(&mut s.command(
        d,
        &["fleet", "device", "quarantine", &id, "--reason", "again"],
    ));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("409"), "{out}");
    let show = s.ok(d, &["fleet", "device", "show", "sensor-1"]);
    assert!(
        show.contains("QUARANTINED") && show.contains("by operator"),
        "{show}"
    );
    let p = json(&s, d, &["fleet", "--json", "posture"]);
    assert_eq!(p["quarantined"], 1, "{p}");
    let words = s.ok(d, &["fleet", "posture"]);
    assert!(
        words.contains("quarantined  1") && words.contains("1 device(s)"),
        "{words}"
    );

    // Remediation: read, mark, unmark.
    let rel = s.release(d, 2, &[5u8; 200]);
    let out = s.ok(d, &["fleet", "release", "remediation", &rel]);
    assert!(out.contains("is not remediation"), "{out}");
    let out = s.ok(d, &["fleet", "release", "remediation", &rel, "--on"]);
    assert!(out.contains("is remediation"), "{out}");
    let v = json(&s, d, &["fleet", "--json", "release", "remediation", &rel]);
    assert_eq!(v["remediation"], true, "{v}");
    let v = json(
        &s,
        d,
        &["fleet", "--json", "release", "remediation", &rel, "--off"],
    );
    assert_eq!(v["remediation"], false, "{v}");
    let (code, _, out) = run(&mut s.command(
        d,
        &["fleet", "release", "remediation", &rel, "--on", "--off"],
    ));
    assert_ne!(code, 0, "{out}");

    // An upload marked remediation: refused to an author token, done by the admin's.
    s.ok(
        d,
        &[
            "release",
            "build",
            "--image",
            "app-2.bin",
            "--component",
            "617070",
            "--vendor",
            "example.com",
            "--class",
            "thermostat",
            "--sequence",
            "3",
            "--uri",
            "https://fw.example/app-2.bin",
            "--profile",
            "basic",
            "--sign",
            "author",
            "-o",
            "fix.suit",
        ],
    );
    let author = json(
        &s,
        d,
        &[
            "fleet", "--json", "token", "create", "a", "--role", "author",
        ],
    );
    let author = author["token"].as_str().unwrap();
    let upload = [
        "fleet",
        "release",
        "upload",
        "fix.suit",
        "--payload",
        "app-2.bin",
        "--remediation",
    ];
    let (code, _, out) = run(s.command(d, &upload).env("SUITCASE_TOKEN", author));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("403") && out.contains("needs the admin role"),
        "{out}"
    );
    let mut admin_upload = vec!["fleet", "--json"];
    admin_upload.extend_from_slice(&upload[1..]);
    let fix = json(&s, d, &admin_upload);
    let fix = fix["id"].as_str().unwrap();
    let v = json(&s, d, &["fleet", "--json", "release", "remediation", fix]);
    assert_eq!(v["remediation"], true, "{v}");

    // Released: no longer shown as quarantined.
    let out = s.ok(d, &["fleet", "device", "unquarantine", "sensor-1"]);
    assert!(out.contains("not quarantined"), "{out}");
    let show = s.ok(d, &["fleet", "device", "show", "sensor-1"]);
    assert!(!show.contains("QUARANTINED"), "{show}");
    let (code, _, out) = run(&mut s.command(d, &["fleet", "device", "unquarantine", &id]));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("409"), "a second release is a conflict: {out}");
}

//! What the console added to `suitcase fleet` (issue 16): human times (`--json` keeps the
//! API's seconds), `campaign create --dry-run` (refusing a campaign that targets no device),
//! and `device token rotate`.

mod common;

use common::ServerProcess;
use serde_json::Value;

/// `fleet campaign create --release REL --tag TAG --dry-run`.
fn dry_run<'a>(rel: &'a str, tag: &'a str) -> [&'a str; 8] {
    [
        "fleet",
        "campaign",
        "create",
        "--release",
        rel,
        "--tag",
        tag,
        "--dry-run",
    ]
}

#[test]
fn dry_run_human_times_and_token_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = ServerProcess::start(d);
    let rel = s.release(d, 2, b"dry run image");
    for n in ["dr-0", "dr-1", "dr-2"] {
        s.ok(d, &["fleet", "device", "add", n, "--tag", "dry"]);
    }

    // A dry run names the devices and creates nothing.
    let out = s.ok(d, &dry_run(&rel, "dry"));
    assert!(
        out.contains("dry run: 3 device(s) would be targeted"),
        "{out}"
    );
    for n in ["dr-0", "dr-1", "dr-2"] {
        assert!(out.contains(n), "{out}");
    }
    let json: Value =
        serde_json::from_str(&s.ok(d, &[&dry_run(&rel, "dry")[..], &["--json"]].concat())).unwrap();
    assert_eq!(json["targeted"], 3);
    assert_eq!(json["devices"].as_array().unwrap().len(), 3);
    let list: Value =
        serde_json::from_str(&s.ok(d, &["fleet", "--json", "campaign", "list"])).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "a dry run creates nothing"
    );

    // Targeting nobody: said loudly, exit status 1.
    let o = s.command(d, &dry_run(&rel, "nobody")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 device(s) would be targeted"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("would target no device"));

    // Human times; --json keeps seconds.
    let audit = s.ok(d, &["fleet", "audit"]);
    assert!(audit.contains(" UTC, "), "{audit}");
    let raw: Value = serde_json::from_str(&s.ok(d, &["fleet", "--json", "audit"])).unwrap();
    assert!(raw[0]["at"].is_i64(), "{raw}");
    let show = s.ok(d, &["fleet", "device", "show", "dr-0"]);
    assert!(show.contains("last seen never"), "{show}");
    let rshow = s.ok(d, &["fleet", "release", "show", &rel]);
    assert!(
        rshow.contains("uploaded 20") && rshow.contains(" UTC, "),
        "{rshow}"
    );

    // Token rotation: a new token, printed once.
    let a: Value =
        serde_json::from_str(&s.ok(d, &["fleet", "--json", "device", "token", "rotate", "dr-1"]))
            .unwrap();
    let b: Value =
        serde_json::from_str(&s.ok(d, &["fleet", "--json", "device", "token", "rotate", "dr-1"]))
            .unwrap();
    let (ta, tb) = (a["token"].as_str().unwrap(), b["token"].as_str().unwrap());
    assert!(ta.starts_with("sct_d_") && tb.starts_with("sct_d_") && ta != tb);
    let human = s.ok(d, &["fleet", "device", "token", "rotate", "dr-1"]);
    assert!(human.contains("the old one no longer works"), "{human}");

    // Archive, then delete (no campaign used it).
    assert!(
        s.ok(d, &["fleet", "release", "archive", &rel])
            .contains("archived")
    );
    assert!(
        s.ok(d, &["fleet", "release", "list"])
            .contains("(archived)")
    );
    let o = s.command(d, &dry_run(&rel, "dry")).output().unwrap();
    assert!(
        !o.status.success(),
        "an archived release is offered to no new campaign"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("archived"));
    assert!(
        s.ok(d, &["fleet", "release", "delete", &rel])
            .contains("deleted")
    );
    assert!(!s.ok(d, &["fleet", "release", "list"]).contains(&rel));
}

/// `fleet device show` after the real agent's failed update: each step with how long it took
/// (from the `started_at` the agent reported) and the end of the failing health check's
/// output, the token in it redacted.
#[test]
fn device_show_prints_durations_and_the_failure_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = ServerProcess::start(d);
    let rel = s.release(d, 2, &[0x42u8; 5_000]);
    let (id, token) = s.device(d, "lt-0");
    s.start_campaign(d, &rel, &id);
    let ddir = s.agent_dir(
        d,
        "lt-0",
        &token,
        &format!(
            r#"[health]
command = ["sh", "-c", "echo \"using $0 {token}\"; echo 'ERROR: no answer on :8080'; exit 1"]
"#
        ),
    );
    let o = common::agent_once(&ddir);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let show = s.ok(d, &["fleet", "device", "show", "lt-0"]);
    let receive = show
        .lines()
        .find(|l| l.trim_start().starts_with("receive "))
        .unwrap_or_else(|| panic!("{show}"));
    // The first step has no previous report: only its own start gives it a duration.
    assert!(receive.contains(", took "), "{show}");
    assert!(show.contains("ERROR: no answer on :8080"), "{show}");
    assert!(show.contains("sct_***"), "{show}");
    assert!(!show.contains(&token), "{show}");
}

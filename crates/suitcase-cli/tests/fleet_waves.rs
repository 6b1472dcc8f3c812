//! `suitcase fleet campaign create/show` draws waves as people read them: numbered from 1,
//! like the server's reasons, and a rolled-back wave as rolled back, not as a success. A real
//! server process and a real agent whose health check fails the new release.

mod common;

use common::ServerProcess;
use serde_json::Value;

#[test]
fn campaign_waves_are_numbered_from_1_and_a_rolled_back_wave_is_drawn_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = ServerProcess::start(d);
    let bad = server.release(d, 2, &vec![0x22u8; 5_000]);
    let good = server.release(d, 3, &vec![0x33u8; 5_000]);
    let (id, token) = server.device(d, "sn-waves");
    let (_, token2) = server.device(d, "sn-waves-2");

    // Two waves; the create output numbers them from 1.
    let out = server.ok(
        d,
        &[
            "fleet",
            "campaign",
            "create",
            "--release",
            &bad,
            "--device",
            &id,
            "--device",
            "sn-waves-2",
            "--waves",
            "1,100%",
            "--success",
            "1",
            "--error",
            "0.5",
            "--on-error",
            "rollback",
            "--rollback-release",
            &good,
            "--start",
        ],
    );
    assert!(out.contains("wave 1 open"), "{out}");
    assert!(out.contains("wave 2 waiting"), "{out}");
    assert!(!out.contains("wave 0"), "{out}");
    let campaign = out.split_whitespace().nth(1).unwrap().to_owned();

    // Which device is in wave 1 is a hash order: run the agent for whichever was offered.
    let agent = |token: &str, name: &str| {
        let ddir = server.agent_dir(
            d,
            name,
            token,
            r#"[health]
command = ["sh", "-c", "test \"$SUITCASE_SEQUENCE\" != 2"]
"#,
        );
        common::agent_once(&ddir).status.code()
    };
    // The wave-1 device installs release 2, fails its health check (the campaign trips and
    // rolls back), then installs the rollback release 3.
    let mut codes = Vec::new();
    for _ in 0..2 {
        codes.push(agent(&token, "dev-1"));
        codes.push(agent(&token2, "dev-2"));
    }
    let json: Value =
        serde_json::from_str(&server.ok(d, &["fleet", "--json", "campaign", "show", &campaign]))
            .unwrap();
    let rolled: u64 = json["waves_progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["rolled_back"].as_u64().unwrap())
        .sum();
    assert_eq!(rolled, 1, "{json} {codes:?}");

    let out = server.ok(d, &["fleet", "campaign", "show", &campaign]);
    let wave1 = out
        .lines()
        .find(|l| l.trim_start().starts_with("wave 1 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(wave1.contains("0/1 succeeded"), "{wave1}");
    assert!(wave1.contains("1 rolled back"), "{wave1}");
    assert!(wave1.contains("[rrrrr"), "{wave1}");
    assert!(
        !wave1.contains('#'),
        "a rolled-back wave drawn as success: {wave1}"
    );
    assert!(out.contains("r rolled back"), "the legend: {out}");
    assert!(!out.contains("wave 0"), "{out}");
    // The server's reason numbers the same wave the same way.
    assert!(out.contains("(wave 1:"), "{out}");
}

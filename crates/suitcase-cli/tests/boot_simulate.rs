//! `suitcase boot simulate` contract: every layout survives a power cut at every flash
//! operation, and the JSON report has the fields the issue names.

use std::process::Command;

#[test]
fn every_layout_survives_every_power_cut() {
    for layout in ["ab", "swap", "multi", "swap-offset", "multi-offset"] {
        let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
            .args([
                "boot",
                "simulate",
                "--layout",
                layout,
                "--sector-size",
                "256",
                "--slot-size",
                "1024",
            ])
            .args(["--image-size", "700", "--power-cuts", "all", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{layout}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["layout"], layout);
        assert_eq!(report["bricked"], 0, "{layout}");
        assert_eq!(report["mixed"], 0, "{layout}");
        assert_eq!(report["inconsistent"], 0, "{layout}");
        assert!(
            report["cut_points"].as_u64().unwrap() > 10,
            "{layout}: cuts cover the whole update"
        );
        assert!(
            report["writes_per_update"].as_u64().unwrap()
                >= report["image_bytes"].as_u64().unwrap()
        );
    }
}

/// Issue 20's target, at the default geometry (4 KiB sectors, 32 KiB slots, a 20,000-byte
/// image): swap-offset writes at most 3.05 times the image per update, staging included.
#[test]
fn swap_offset_writes_at_most_3_05_times_the_image_per_update() {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .args(["boot", "simulate", "--layout", "swap-offset"])
        .args(["--power-cuts", "none", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ratio = report["write_amplification"].as_f64().unwrap();
    assert!(ratio <= 3.05, "{report}");
    assert_eq!(report["image_bytes"], 20_000);
}

#[test]
fn bad_geometry_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .args([
            "boot",
            "simulate",
            "--layout",
            "ab",
            "--sector-size",
            "100",
            "--power-cuts",
            "none",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 18 item 2: the bootloader's trust area (two trust updates and a replay, committed at
/// reset) keeps the old or the new trust state through a power cut at every flash operation.
#[test]
fn trust_state_survives_every_power_cut() {
    let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .args([
            "boot",
            "simulate",
            "--layout",
            "trust-state",
            "--sector-size",
            "256",
        ])
        .args(["--power-cuts", "all", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["layout"], "trust-state");
    assert_eq!(report["lost"], 0, "{stdout}");
    assert_eq!(report["mixed"], 0, "{stdout}");
    assert_eq!(report["unfinished"], 0, "{stdout}");
    assert!(report["cut_points"].as_u64().unwrap() > 10, "{stdout}");
}

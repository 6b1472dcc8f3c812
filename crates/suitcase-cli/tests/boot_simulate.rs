//! `suitcase boot simulate` contract: every layout survives a power cut at every flash
//! operation, and the JSON report has the fields the issue names.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::process::Command;

#[test]
fn every_layout_survives_every_power_cut() {
    for layout in ["ab", "swap", "multi"] {
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

//! The power-cut proof on small geometry, for every layout: tear every flash operation of an
//! update, a confirm and a reverted update in turn, reboot, and require a complete image with
//! consistent state every time, and the update finished in the end.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use suitcase_boot::simulate::{Layout, SimConfig, power_cut_proof};

fn prove(config: SimConfig) {
    let report = power_cut_proof(&config).expect("scenario runs");
    println!("{report}");
    assert!(report.passed(), "{report}");
    assert!(report.cut_points > 20, "{report}");
}

#[test]
fn ab_survives_a_power_cut_at_every_operation() {
    prove(SimConfig::small(Layout::Ab));
}

#[test]
fn swap_survives_a_power_cut_at_every_operation() {
    prove(SimConfig::small(Layout::Swap));
}

#[test]
fn multi_image_survives_a_power_cut_at_every_operation() {
    prove(SimConfig::small(Layout::Multi));
}

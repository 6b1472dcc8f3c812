//! The trust area under power cuts: every flash operation of two trust updates and a replayed
//! one torn in turn (three ways, plus a repeated cut in the recovery); the bootloader must
//! always find the old or the new trust state, byte for byte, never none, never an older one.

use suitcase_boot::trust_simulate::{TrustSimConfig, trust_measure, trust_power_cut_proof};

#[test]
fn power_cut_at_every_operation_of_a_trust_state_update_leaves_the_old_or_the_new_state() {
    for config in [TrustSimConfig::small(), TrustSimConfig::default()] {
        let report = trust_power_cut_proof(&config).unwrap();
        println!("{} B sectors:\n{report}", config.sector_size);
        assert!(report.passed(), "{report}");
        assert!(report.cut_points >= 10, "{report}");
        assert!(report.cuts >= 3 * report.cut_points, "{report}");
    }
}

#[test]
fn power_cuts_other_seeds() {
    for seed in 2..6 {
        let config = TrustSimConfig {
            seed,
            ..TrustSimConfig::small()
        };
        let report = trust_power_cut_proof(&config).unwrap();
        assert!(report.passed(), "seed {seed}: {report}");
    }
}

#[test]
fn an_uncut_trust_update_writes_the_envelope_and_one_copy() {
    let report = trust_measure(&TrustSimConfig::default()).unwrap();
    // Staged envelope (12 + 1,536 + 16 header) and one copy (24 + 1,536).
    assert_eq!(report.writes_per_update, 1564 + 1560, "{report}");
}

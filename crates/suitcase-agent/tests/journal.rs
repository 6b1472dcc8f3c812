//! The journal of an update in flight, as version 1 of the agent wrote it (captured from a
//! test run before the journal was typed), is read by this agent: its slots and target
//! states come back typed, and writing it again gives the same JSON.

#![expect(
    clippy::unwrap_used,
    clippy::std_instead_of_alloc,
    reason = "test code"
)]

use std::sync::Arc;

use suitcase_agent::slot::Slot;
use suitcase_agent::state::{Durability, Journal, Role, StateDir, TargetState};
use suitcase_protocol::Step;

/// Loads `fixture` as `journal.json` of a fresh state directory.
fn load(fixture: &str) -> (Journal, serde_json::Value) {
    let text = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("journal.json"), &text).unwrap();
    let state = StateDir::open(dir.path(), Arc::new(Durability::default())).unwrap();
    let j = state.journal().unwrap().unwrap();
    (j, serde_json::from_slice(&text).unwrap())
}

#[test]
fn v1_journal_of_a_file_slot_update_being_activated_reads_typed() {
    let (j, raw) = load("journal-v1-file-activate.json");
    assert_eq!(j.step, Step::Activate);
    let t = &j.targets[0];
    assert_eq!(t.role, Role::Image);
    assert_eq!((t.from_slot, t.to_slot), (Some(Slot::A), Some(Slot::B)));
    assert_eq!(t.state, TargetState::Activated);
    assert_eq!(j.candidates[0].len, 20_000);
    // The format is unchanged: written again, it is the same JSON.
    assert_eq!(serde_json::to_value(&j).unwrap(), raw);
}

#[test]
fn v1_journal_of_an_mcu_update_applied_but_not_booted_reads_typed() {
    let (j, raw) = load("journal-v1-mcu-activate.json");
    assert_eq!(j.step, Step::Activate);
    let t = &j.targets[0];
    assert_eq!(t.role, Role::Image);
    assert_eq!(t.to_slot, Some(Slot::B));
    assert_eq!(t.state, TargetState::Applied);
    assert!(
        t.image_offset > 0,
        "an MCU slot image starts after its header"
    );
    assert_eq!(serde_json::to_value(&j).unwrap(), raw);
}

#[test]
fn attack_journal_naming_a_third_slot_is_refused_not_read_as_b() {
    let (_, mut raw) = load("journal-v1-file-activate.json");
    raw["targets"][0]["to_slot"] = "c".into();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("journal.json"), raw.to_string()).unwrap();
    let state = StateDir::open(dir.path(), Arc::new(Durability::default())).unwrap();
    let e = state.journal().unwrap_err().to_string();
    assert!(e.contains("journal.json is damaged"), "{e}");
}

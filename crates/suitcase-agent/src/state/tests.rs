use super::*;

#[test]
fn atomic_writes_replace_whole_files_and_count() {
    let dir = tempfile_dir();
    let d = Arc::new(Durability::crash_after(Some(2)));
    let s = StateDir::open(&dir, d.clone()).unwrap();
    let i = Installed {
        reverted: true,
        ..Installed::default()
    };
    s.save_installed(&i).unwrap();
    assert!(s.installed().unwrap().reverted);
    assert!(matches!(
        s.save_installed(&Installed::default()),
        Err(AgentError::InjectedCrash)
    ));
    // The write itself happened; the crash is right after it.
    assert!(!s.installed().unwrap().reverted);
    assert_eq!(d.writes(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn outbox_bound_drops_progress_then_successes_and_keeps_failures() {
    let r = |o: suitcase_protocol::Outcome, i: usize| StepReport {
        release_id: format!("r{i}"),
        step: Step::Receive,
        outcome: o,
        reason: None,
        detail: None,
        progress: None,
        started_at: None,
        log: None,
        suit_report: None,
        offline: true,
    };
    use suitcase_protocol::Outcome::{Failure, InProgress, Success};
    let mut o: Vec<StepReport> = (0..MAX_OUTBOX)
        .map(|i| r(if i % 2 == 0 { Failure } else { Success }, i))
        .collect();
    o.insert(0, r(InProgress, 9999));
    assert_eq!(bound_outbox(&mut o), 1);
    assert_eq!(o.len(), MAX_OUTBOX);
    assert!(o.iter().all(|x| x.outcome != InProgress));
    o.push(r(Failure, 10_000));
    assert_eq!(bound_outbox(&mut o), 1);
    // The oldest success went; every failure stayed, in order.
    assert_eq!(o.first().map(|x| x.release_id.as_str()), Some("r0"));
    assert!(!o.iter().any(|x| x.release_id == "r1"));
    assert_eq!(
        o.iter().filter(|x| x.outcome == Failure).count(),
        MAX_OUTBOX / 2 + 1
    );
    let mut all_failures: Vec<StepReport> = (0..MAX_OUTBOX + 3).map(|i| r(Failure, i)).collect();
    assert_eq!(bound_outbox(&mut all_failures), 3);
    assert_eq!(
        all_failures.first().map(|x| x.release_id.as_str()),
        Some("r3")
    );
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "suitcase-agent-state-{}",
        hex::encode(crate::config::random_bytes::<6>())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An `installed.json` written before the writers' sequence numbers were kept (trust
/// domains) still reads, its components and sequence numbers kept, with no writer recorded
/// (anti-rollback then knows only the root's sequence number, docs/trust.md); written again,
/// the writers round-trip.
#[test]
fn installed_json_without_writers_still_reads_and_keeps_its_sequence_numbers() {
    let old = r#"{"components":[{"id":["617070"],"sequence_number":2,"digest":"ab"}],"reverted":false,"last_release":"rel_1"}"#;
    let mut i: Installed = serde_json::from_str(old).unwrap();
    assert_eq!(i.sequence(&["617070".to_owned()]), Some(2));
    assert_eq!(i.writer_sequence(&["617070".to_owned()]), None);
    i.set_writer(WriterSequence {
        id: vec!["617070".to_owned()],
        sequence: 7,
    });
    let again: Installed = serde_json::from_slice(&serde_json::to_vec(&i).unwrap()).unwrap();
    assert_eq!(again.writer_sequence(&["617070".to_owned()]), Some(7));
    assert_eq!(again.sequence(&["617070".to_owned()]), Some(2));
}

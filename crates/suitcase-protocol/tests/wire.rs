//! The wire forms: JSON for most clients, CBOR for constrained devices, with byte strings
//! native in CBOR and base64 in JSON.

use suitcase_protocol::{CheckIn, InstalledComponent, Outcome, Step, StepReport};

fn report() -> StepReport {
    StepReport {
        release_id: "r1".into(),
        step: Step::CleanUp,
        outcome: Outcome::Failure,
        reason: Some("health-check".into()),
        detail: None,
        progress: None,
        started_at: None,
        log: None,
        suit_report: Some(vec![0xd8, 0x6b, 0xa0, 0xff]),
        offline: false,
    }
}

#[test]
fn step_report_json_carries_bytes_as_base64_and_names_in_kebab_case() {
    let json = serde_json::to_value(report()).unwrap();
    assert_eq!(json["step"], "clean-up");
    assert_eq!(json["outcome"], "failure");
    assert_eq!(json["suit_report"], "2Gug/w==");
    let back: StepReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report());
}

#[test]
fn step_report_cbor_carries_bytes_as_a_byte_string() {
    let mut buf = Vec::new();
    ciborium::into_writer(&report(), &mut buf).unwrap();
    // The four report bytes appear as a CBOR bstr (major type 2, length 4), not as text.
    assert!(buf.windows(5).any(|w| w == [0x44, 0xd8, 0x6b, 0xa0, 0xff]));
    let back: StepReport = ciborium::from_reader(buf.as_slice()).unwrap();
    assert_eq!(back, report());
}

#[test]
fn checkin_ignores_unknown_fields_and_defaults_missing_ones() {
    let c: CheckIn = serde_json::from_str(
        r#"{"components":[{"id":["00"],"sequence_number":3}],"future_field":1}"#,
    )
    .unwrap();
    assert_eq!(
        c.components,
        vec![InstalledComponent {
            id: vec!["00".into()],
            sequence_number: 3,
            ..InstalledComponent::default()
        }]
    );
    assert!(c.vendor_id.is_none());
}

/// A module component carries its handler and whether it can roll back; a slot image leaves
/// the handler out; an older agent's inventory (neither field) still reads, as unknown.
#[test]
fn installed_component_handler_and_rollback_round_trip_and_default() {
    let module = InstalledComponent {
        id: vec!["617070".into()],
        sequence_number: 2,
        handler: Some("deb".into()),
        rollback: Some(false),
        ..InstalledComponent::default()
    };
    let json = serde_json::to_string(&module).unwrap();
    assert_eq!(
        json,
        r#"{"id":["617070"],"sequence_number":2,"handler":"deb","rollback":false}"#
    );
    assert_eq!(
        serde_json::from_str::<InstalledComponent>(&json).unwrap(),
        module
    );
    let mut buf = Vec::new();
    ciborium::into_writer(&module, &mut buf).unwrap();
    assert_eq!(
        ciborium::from_reader::<InstalledComponent, _>(buf.as_slice()).unwrap(),
        module
    );
    let slot = InstalledComponent {
        id: vec!["00".into()],
        rollback: Some(true),
        ..InstalledComponent::default()
    };
    assert_eq!(
        serde_json::to_string(&slot).unwrap(),
        r#"{"id":["00"],"sequence_number":0,"rollback":true}"#
    );
    let old: InstalledComponent =
        serde_json::from_str(r#"{"id":["00"],"sequence_number":1}"#).unwrap();
    assert_eq!((old.handler, old.rollback), (None, None));
    assert_eq!(suitcase_protocol::component_label(&module.id), "app");
    assert_eq!(
        suitcase_protocol::component_label(&["00".into(), "617070".into()]),
        "00/app"
    );
    let gap = suitcase_protocol::RollbackGap {
        component: module.id,
        handler: Some("deb".into()),
        devices: 3,
        of: 40,
    };
    assert_eq!(
        gap.text(),
        "3 of 40 devices cannot roll back app (deb handler)"
    );
}

#[test]
fn bad_base64_is_refused_with_a_message() {
    let err = serde_json::from_str::<StepReport>(
        r#"{"release_id":"r","step":"apply","outcome":"success","suit_report":"!!"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not base64"), "{err}");
}

#[test]
fn every_step_name_round_trips() {
    for s in Step::ALL {
        assert_eq!(Step::from_name(s.name()), Some(s));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{}\"", s.name()));
    }
}

#[test]
fn check_in_nonce_and_freshness_statement_are_base64_in_json_and_bstr_in_cbor() {
    let c = CheckIn {
        nonce: Some(vec![0xab; 16]),
        ..CheckIn::default()
    };
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["nonce"], "q6urq6urq6urq6urq6urqw==");
    assert_eq!(serde_json::from_value::<CheckIn>(json).unwrap(), c);
    let mut buf = Vec::new();
    ciborium::into_writer(&c, &mut buf).unwrap();
    assert!(buf.windows(2).any(|w| w == [0x50, 0xab]), "a 16-byte bstr");
    assert_eq!(
        ciborium::from_reader::<CheckIn, _>(buf.as_slice()).unwrap(),
        c
    );
    // Older agents send no nonce and older servers no statement: both stay absent.
    assert!(
        serde_json::to_value(CheckIn::default())
            .unwrap()
            .get("nonce")
            .is_none()
    );
    let answer: suitcase_protocol::CheckInAnswer =
        serde_json::from_str(r#"{"action":"none","next_poll_seconds":5}"#).unwrap();
    assert_eq!(answer.freshness, None);
    let with = suitcase_protocol::CheckInAnswer {
        freshness: Some(vec![1, 2, 3]),
        ..answer
    };
    let json = serde_json::to_value(&with).unwrap();
    assert_eq!(json["freshness"], "AQID");
}

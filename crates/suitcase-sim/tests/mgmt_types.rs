//! The management API's answers against the `suitcase-protocol` types `suitcase-client`
//! reads them as: a real server after a real rehearsal (devices with inventories, an update
//! that failed and rolled back, a campaign with waves), and every list and show endpoint read
//! strictly: each answer must parse into its type, and every field the server sends must be
//! one the type knows (the typed value, serialized again, has every key of the raw JSON).
//! A field added to an answer but not to the shared type, or an answer built by hand, fails
//! here, before `suitcase fleet` or the simulator silently drop it.

use core::time::Duration;

use serde::Serialize;
use suitcase_client::{Client, Error, Reply, unknown_fields};
use suitcase_protocol::{
    CampaignCreate, DeviceCreate, DeviceList, DevicePatch, Filter, GroupCreate, Role, TokenCreate,
};
use suitcase_sim::{Faults, Plan, rehearse};

/// Fails unless the typed value covers every field of the answer.
#[track_caller]
fn strict<T: Serialize>(what: &str, r: &Reply<T>) {
    let unknown = unknown_fields(&r.value, &r.raw);
    assert!(
        unknown.is_empty(),
        "{what}: the server sends {unknown:?}, which its suitcase-protocol type does not have: {}",
        r.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_management_answer_is_its_protocol_type_with_no_unknown_field() {
    let ts = suitcase_test_support::TestServer::start(|c| c.poll_interval = 1).await;
    let mut plan = Plan::new(&ts.base, &ts.admin, 6, &ts.dir.path().join("devices"));
    plan.faults = Faults::parse("bad-image").unwrap();
    plan.poll_cap = Some(Duration::from_millis(500));
    plan.timeout = Duration::from_secs(240);
    plan.seed = 7;
    let s = rehearse(&plan, &|_| {}).await.unwrap();
    assert!(s.converged, "{s:#?}");
    let c = Client::new(&ts.base, &ts.admin, reqwest::Client::new());

    // Keys and releases (the rehearsal registered a key and uploaded four releases).
    let keys = c.keys().await.unwrap();
    strict("GET /api/v1/keys", &keys);
    assert_eq!(keys.value.len(), 1);
    let releases = c.releases().await.unwrap();
    strict("GET /api/v1/releases", &releases);
    assert_eq!(releases.value.len(), 4);
    for r in &releases.value {
        strict(
            "GET /api/v1/releases/{id}",
            &c.release(&r.id).await.unwrap(),
        );
    }
    // The rehearsal's releases are firmware: the server records them as kind `release`
    // (a trust update would be `trust-update`, docs/server.md §4).
    assert!(
        releases
            .value
            .iter()
            .all(|r| r.kind == suitcase_protocol::RELEASE_KIND_RELEASE),
        "{}",
        releases.raw
    );
    assert!(
        releases.value.iter().any(|r| !r.deltas.is_empty()),
        "no release with a delta: {}",
        releases.raw
    );
    let unused = releases
        .value
        .iter()
        .find(|r| r.id != s.release_id && r.id != s.rollback_release_id)
        .unwrap();
    strict(
        "POST /api/v1/releases/{id}/archive",
        &c.archive_release(&unused.id).await.unwrap(),
    );

    // Devices: each with an inventory and the update that failed and rolled back.
    let devices = c.devices(&[], 100).await.unwrap();
    strict("GET /api/v1/devices", &devices);
    assert_eq!(devices.value.len(), 6);
    let mut with_steps = 0;
    for d in &devices.value {
        let one = c.device(&d.id).await.unwrap();
        strict("GET /api/v1/devices/{id}", &one);
        assert!(one.value.inventory.is_some(), "{}", one.raw);
        with_steps += usize::from(
            one.value
                .update
                .as_ref()
                .is_some_and(|u| !u.steps.is_empty()),
        );
    }
    assert!(with_steps > 0, "no device reported a step: {}", devices.raw);
    let first = &devices.value[0];
    let patch = DevicePatch {
        add_tags: vec!["drift".into()],
        remove_tags: Vec::new(),
    };
    strict(
        "PATCH /api/v1/devices/{id}",
        &c.tag_device(&first.id, &patch).await.unwrap(),
    );
    let added = c
        .add_device(&DeviceCreate {
            name: "drift-check".into(),
            ..DeviceCreate::default()
        })
        .await
        .unwrap();
    strict("POST /api/v1/devices", &added);
    strict(
        "POST /api/v1/devices/{id}/token",
        &c.rotate_device_token(&added.value.id).await.unwrap(),
    );

    // Quarantine (RFC 8240 §9), remediation and the fleet's posture.
    let why = suitcase_protocol::mgmt::QuarantineRequest {
        reason: "drift check".into(),
    };
    let q = c.quarantine_device(&first.id, &why).await.unwrap();
    strict("POST /api/v1/devices/{id}/quarantine", &q);
    assert!(q.value.quarantine.is_some(), "{}", q.raw);
    strict(
        "GET /api/v1/devices/{id}/quarantine",
        &c.device_quarantine(&first.id).await.unwrap(),
    );
    strict("GET /api/v1/fleet/posture", &c.posture().await.unwrap());
    strict(
        "DELETE /api/v1/devices/{id}/quarantine",
        &c.release_quarantine(&first.id).await.unwrap(),
    );
    let fix = suitcase_protocol::mgmt::RemediationRequest { remediation: true };
    strict(
        "POST /api/v1/releases/{id}/remediation",
        &c.set_remediation(&s.rollback_release_id, fix)
            .await
            .unwrap(),
    );
    strict(
        "GET /api/v1/releases/{id}/remediation",
        &c.remediation(&s.rollback_release_id).await.unwrap(),
    );

    // Groups.
    let group = GroupCreate {
        name: "drift".into(),
        devices: vec![first.id.clone()],
    };
    strict(
        "POST /api/v1/groups",
        &c.create_group(&group).await.unwrap(),
    );
    let more = DeviceList {
        devices: vec![added.value.id.clone()],
    };
    c.add_to_group("drift", &more).await.unwrap();
    let groups = c.groups().await.unwrap();
    strict("GET /api/v1/groups", &groups);
    assert_eq!(groups.value[0].devices, 2, "{}", groups.raw);

    // Campaigns: the rehearsal's (rolled back), its members, and a dry run.
    let campaigns = c.campaigns().await.unwrap();
    strict("GET /api/v1/campaigns", &campaigns);
    let one = c.campaign(&s.campaign_id).await.unwrap();
    strict("GET /api/v1/campaigns/{id}", &one);
    assert!(!one.value.waves_progress.is_empty(), "{}", one.raw);
    let members = c.campaign_devices(&s.campaign_id).await.unwrap();
    strict("GET /api/v1/campaigns/{id}/devices", &members);
    assert_eq!(members.value.len(), 6);
    let spec = CampaignCreate {
        name: "drift".into(),
        release_id: s.rollback_release_id.clone(),
        filter: Filter::default(),
        waves: Vec::new(),
        success_threshold: 0.95,
        error_threshold: 0.1,
        on_error: suitcase_protocol::OnError::Pause,
        rollback_release_id: None,
        rate_per_minute: None,
        window: None,
        requires_consent: false,
    };
    let dry = c.dry_run(&spec).await.unwrap();
    strict("POST /api/v1/campaigns/dry-run", &dry);
    assert!(dry.value.matched > 0, "{}", dry.raw);
    let draft = c.create_campaign(&spec).await.unwrap();
    strict("POST /api/v1/campaigns", &draft);
    strict(
        "POST /api/v1/campaigns/{id}/cancel",
        &c.campaign_action(&draft.value.id, suitcase_client::CampaignAction::Cancel)
            .await
            .unwrap(),
    );

    // Tokens and the audit log.
    let token = TokenCreate {
        name: "drift".into(),
        role: Role::Viewer,
    };
    let created = c.create_token(&token).await.unwrap();
    strict("POST /api/v1/tokens", &created);
    assert!(created.value.token.is_some());
    strict("GET /api/v1/tokens", &c.tokens().await.unwrap());
    let audit = c.audit(1000).await.unwrap();
    strict("GET /api/v1/audit", &audit);
    assert!(audit.value.len() > 10, "{}", audit.raw);

    // An error answer is the protocol's ApiError, code and all.
    let Err(Error::Api(refusal)) = c.device("no-such-device").await else {
        panic!("a missing device must be refused");
    };
    assert_eq!(refusal.status, reqwest::StatusCode::NOT_FOUND);
    let error = refusal.error.clone().expect("an ApiError body");
    let raw: serde_json::Value = serde_json::from_str(&refusal.body).unwrap();
    assert_eq!(unknown_fields(&error, &raw), Vec::<String>::new(), "{raw}");
    ts.stop().await;
}

//! A release's kind (docs/server.md §4, docs/trust.md): an envelope naming the trust store
//! component is recorded as a `trust-update` at upload, anything else as a `release`; a
//! campaign may not mix the two kinds; a trust update never makes a device out of date.
//! On SQLite and on PostgreSQL (the kind is a column of its own, migration 13).

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::json;
use suitcase_author::signer::{Signer, SoftwareSigner};

both_backends!(
    trust_update_is_listed_as_trust_update_and_a_release_as_release,
    campaign_mixing_a_trust_update_and_a_firmware_release_is_refused,
);

/// A trust update (the `suitcase-trust` component, its document integrated) signed by the
/// harness's registered key: the server records kinds, the device decides who may sign one.
fn trust_update(h: &Harness, sequence: u64) -> Vec<u8> {
    let key = suitcase_host::keys::load_private(&h.key).unwrap();
    let signer = SoftwareSigner::new(key, &h.key).unwrap();
    let env = suitcase_author::trust::envelope_for_document(sequence, b"a trust document".to_vec());
    suitcase_author::trust::sign_update(env, &[&signer as &dyn Signer]).unwrap()
}

async fn upload_trust_update(h: &Harness, sequence: u64) -> String {
    let (s, v) = h
        .upload_envelope(&h.admin, &trust_update(h, sequence))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "trust-update", "{v}");
    // Its document is integrated: nothing to upload before it can be deployed.
    assert_eq!(v["complete"], true, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

async fn trust_update_is_listed_as_trust_update_and_a_release_as_release(b: Backend) {
    let h = Harness::new(b).await;
    let fw = h.release(2, &[7u8; 300]).await;
    let tu = upload_trust_update(&h, 1).await;
    let (s, list) = h.get(&h.admin, "/api/v1/releases").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let kind_of = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["kind"].clone())
            .unwrap()
    };
    assert_eq!(kind_of(&fw), "release", "{list}");
    assert_eq!(kind_of(&tu), "trust-update", "{list}");
    let (s, v) = h.get(&h.admin, &format!("/api/v1/releases/{tu}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "trust-update", "{v}");
    // The typed answer carries it too.
    let typed: suitcase_protocol::ReleaseInfo = serde_json::from_value(v).unwrap();
    assert_eq!(typed.kind, suitcase_protocol::RELEASE_KIND_TRUST_UPDATE);
    // A trust update with a higher sequence number than the firmware does not make a device
    // at the firmware's sequence out of date.
    let _ = upload_trust_update(&h, 9).await;
    let devs = h.devices("rk", 1, &[]).await;
    h.checkin(&devs[0].1, 2).await;
    let (s, p) = h.get(&h.admin, "/api/v1/fleet/posture").await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["up_to_date"], 1, "{p}");
    assert_eq!(p["out_of_date"], 0, "{p}");
    h.stop().await;
}

async fn campaign_mixing_a_trust_update_and_a_firmware_release_is_refused(b: Backend) {
    let h = Harness::new(b).await;
    let fw = h.release(2, &[7u8; 300]).await;
    let tu = upload_trust_update(&h, 5).await;
    let devs = h.devices("mk", 1, &[]).await;
    for (release, rollback) in [(&fw, &tu), (&tu, &fw)] {
        let (s, v) = h
            .post(
                &h.admin,
                "/api/v1/campaigns",
                &json!({
                    "name": "mixed", "release_id": release, "filter": {"devices": [devs[0].0]},
                    "on_error": "rollback", "rollback_release_id": rollback
                }),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"], "mixed-release-kinds", "{v}");
        assert!(
            v["message"].as_str().unwrap().contains("trust update"),
            "{v}"
        );
    }
    // Each kind on its own is a campaign.
    let (s, v) = h
        .post(
            &h.admin,
            "/api/v1/campaigns",
            &json!({"name": "trust", "release_id": tu, "filter": {"devices": [devs[0].0]}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    h.stop().await;
}

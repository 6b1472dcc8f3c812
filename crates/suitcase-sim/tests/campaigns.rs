//! The end-to-end suite: a real `suitcase server` on 127.0.0.1 (SQLite in a temporary
//! directory) and a fleet of simulated MCUs running the real agent, through whole campaigns.
//! What each device runs is read from its flash at the end, and checked against the server.

#![expect(clippy::unwrap_used, clippy::std_instead_of_core, reason = "test code")]

use std::time::Duration;

use serde_json::Value;
use suitcase_protocol::{CampaignState, Step};
use suitcase_sim::{Faults, Plan, Summary, rehearse};

struct Server {
    server: suitcase_server::RunningServer,
    token: String,
    dir: tempfile::TempDir,
}

async fn server() -> Server {
    let ts = suitcase_test_support::TestServer::start(|config| config.poll_interval = 1).await;
    Server {
        server: ts.server.unwrap(),
        token: ts.admin,
        dir: ts.dir,
    }
}

impl Server {
    fn plan(&self, devices: usize, faults: &str) -> Plan {
        let mut p = Plan::new(
            &self.server.url(),
            &self.token,
            devices,
            &self.dir.path().join("devices"),
        );
        p.faults = Faults::parse(faults).unwrap();
        p.poll_cap = Some(Duration::from_millis(500));
        p.timeout = Duration::from_secs(240);
        p.seed = 42;
        p
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.server.url()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Every device of the campaign, as the server's status tracker has it.
    async fn members(&self, summary: &Summary) -> Vec<Value> {
        let v = self
            .get(&format!(
                "/api/v1/campaigns/{}/devices",
                summary.campaign_id
            ))
            .await;
        v.as_array().cloned().unwrap_or_default()
    }
}

fn assert_summary_adds_up(s: &Summary) {
    assert_eq!(
        s.updated + s.rolled_back + s.failed + s.not_reached,
        s.devices,
        "{s:#?}"
    );
    assert!(s.converged, "the campaign did not finish: {s:#?}");
    assert!(s.errors.is_empty(), "{s:#?}");
}

/// A campaign over a small fleet in three waves completes: every device runs the new image,
/// confirmed, by its bootloader's account; the server counts every device succeeded and
/// holds all ten steps of each device's update as successes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_over_a_small_fleet_completes() {
    let srv = server().await;
    let s = rehearse(&srv.plan(24, "none"), &|_| {}).await.unwrap();
    assert_summary_adds_up(&s);
    assert_eq!((s.updated, s.failed, s.rolled_back), (24, 0, 0), "{s:#?}");
    assert_eq!(s.campaign_state, CampaignState::Completed.name());
    // The server offered delta patches from the installed image, and the devices used them:
    // far fewer bytes than 24 full 16 KiB payloads.
    assert!(s.download_bytes < 24 * 16 * 1024 / 4, "{s:#?}");
    // The server's in-memory counts agree with its database, wave by wave.
    let c = srv
        .get(&format!("/api/v1/campaigns/{}", s.campaign_id))
        .await;
    for w in c["waves_progress"].as_array().unwrap() {
        let states = [
            "pending",
            "notified",
            "in_progress",
            "succeeded",
            "failed",
            "cancelled",
            "rolling_back",
            "rolled_back",
        ];
        let sum: u64 = states.iter().map(|k| w[k].as_u64().unwrap()).sum();
        assert_eq!(sum, w["devices"].as_u64().unwrap(), "{w}");
        assert_eq!(w["succeeded"], w["devices"], "{w}");
    }
    let members = srv.members(&s).await;
    assert_eq!(members.len(), 24);
    for m in &members {
        assert_eq!(m["state"], "succeeded", "{m}");
        let d = srv
            .get(&format!(
                "/api/v1/devices/{}",
                m["device_id"].as_str().unwrap()
            ))
            .await;
        let steps = d["update"]["steps"].as_array().unwrap();
        for step in Step::ALL {
            assert!(
                steps
                    .iter()
                    .any(|x| x["step"] == step.name() && x["outcome"] == "success"),
                "{} not reported as a success: {d}",
                step.name()
            );
        }
        assert_eq!(d["update"]["release_id"], s.release_id.as_str(), "{d}");
        let receive = steps.iter().find(|x| x["step"] == "receive").unwrap();
        assert!(
            receive["detail"]
                .as_str()
                .is_some_and(|t| t.contains("rebuilt from a") && t.contains("delta patch")),
            "{receive}"
        );
    }
    srv.server.shutdown().await;
}

/// The new image fails its health check on every device: the first wave's devices boot it
/// on trial, fail, and their bootloaders revert; the error threshold rolls the campaign
/// back, the rollback release reaches the opened wave, and no later wave ever sees the bad
/// image. No device ends up running it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_bad_image_campaign_pauses_and_rolls_the_wave_back() {
    let srv = server().await;
    let s = rehearse(&srv.plan(20, "bad-image"), &|_| {}).await.unwrap();
    assert_summary_adds_up(&s);
    assert_eq!(s.updated, 0, "{s:#?}");
    assert_eq!(s.failed, 0, "{s:#?}");
    assert_eq!(s.campaign_state, CampaignState::RolledBack.name(), "{s:#?}");
    assert!(
        s.campaign_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("wave 1: ") && r.contains("error threshold")),
        "{s:#?}"
    );
    // The first wave is 10% of 20 devices.
    assert_eq!(s.rolled_back, 2, "{s:#?}");
    assert_eq!(s.not_reached, 18, "{s:#?}");
    let members = srv.members(&s).await;
    let rolled: Vec<&Value> = members
        .iter()
        .filter(|m| m["state"] == "rolled_back")
        .collect();
    assert_eq!(rolled.len(), 2, "{members:?}");
    for m in rolled {
        // They installed the rollback release (the good image re-signed above the bad one).
        assert_eq!(m["release_id"], s.rollback_release_id.as_str(), "{m}");
        let d = srv
            .get(&format!(
                "/api/v1/devices/{}",
                m["device_id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(d["update"]["state"], "rolled_back", "{d}");
    }
    assert!(
        members
            .iter()
            .filter(|m| m["state"] != "rolled_back")
            .all(|m| m["state"] == "cancelled"),
        "{members:?}"
    );
    srv.server.shutdown().await;
}

/// Downloads cut mid-transfer, power cut at random moments of the update, sleepy devices and
/// devices on an older release: the campaign still converges, every device runs the new
/// image, downloads resumed with Range requests, and no power cut bricked a device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_network_and_power_cuts_still_converge() {
    let srv = server().await;
    let s = rehearse(
        &srv.plan(30, "drop=0.5,power-cut=0.5,sleepy=0.1,old=0.3"),
        &|_| {},
    )
    .await
    .unwrap();
    assert_summary_adds_up(&s);
    assert_eq!((s.updated, s.failed), (30, 0), "{s:#?}");
    assert_eq!(s.campaign_state, CampaignState::Completed.name());
    assert!(s.faulty.drop > 5 && s.faulty.power_cut > 5, "{s:#?}");
    assert!(s.faulty.old > 0 && s.faulty.sleepy > 0, "{s:#?}");
    assert!(s.resumed_downloads > 0, "{s:#?}");
    assert!(s.power_cuts >= s.faulty.power_cut as u64, "{s:#?}");
    srv.server.shutdown().await;
}

//! Faults the agent must survive: downloads cut several times (resumed with Range and
//! If-Range, never restarted), crashes after any durable write (resumed from the journal,
//! installing exactly once), and a server that is down.

#![expect(clippy::cast_possible_truncation, reason = "test code")]

mod common;

use common::proxy::{Proxy, Stats};
use common::{Device, Fleet, image, run_with_crashes, server_steps, wait_campaign};
use serde_json::json;
use suitcase_agent::{AgentError, Finished, Hooks};

/// The payload transfer is cut three times; each time the agent resumes where the flushed
/// bytes end, with `Range` and `If-Range`, so the payload crosses the network about once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_download_cut_three_times_resumes_with_range_requests() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "cut").await;
    let proxy = Proxy::start(fleet.addr(), vec![]).await;
    dev.base = Some(proxy.url());
    let size = 3_000_000usize;
    let img = image(31, size);
    let rel = fleet.release(2, &img).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let hooks = Hooks {
        download_cuts: vec![700_000, 900_000, 500_000],
        ..Hooks::default()
    };
    let (mut agent, events) = dev.agent(&fleet, hooks);
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(dev.read("app-b.bin"), img);
    let t = agent.traffic();
    assert_eq!(t.ranged_requests, 3, "{t:?}");
    assert_eq!(t.partial_responses, 3, "{t:?}");
    assert!(
        t.download_body < 2 * size as u64,
        "{} bytes downloaded for a {size}-byte payload",
        t.download_body
    );
    // Exactly once, in fact: nothing flushed was fetched again.
    let envelope = fleet.get(&format!("/api/v1/releases/{rel}")).await.1["envelope_bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(t.download_body, size as u64 + envelope);
    // The server saw the range requests and answered them with 206.
    assert_eq!(Stats::get(&proxy.stats.range_requests), 3);
    assert_eq!(Stats::get(&proxy.stats.partial_answers), 3);
    let receive = events
        .all()
        .into_iter()
        .find_map(|e| match e {
            suitcase_agent::Event::Step {
                step,
                outcome,
                detail,
                ..
            } if step == "receive" && outcome == "success" => detail,
            _ => None,
        })
        .unwrap();
    assert!(receive.contains("resumed 3 time(s)"), "{receive}");
    fleet.stop().await;
}

/// The network itself drops: a proxy closes the connection three times in the middle of
/// the payload. The agent resumes from the flushed bytes with Range/If-Range each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_network_drops_the_connection_mid_payload_and_the_agent_resumes() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "drop").await;
    let size = 2_000_000usize;
    let proxy = Proxy::start(fleet.addr(), vec![600_000, 500_000, 700_000]).await;
    dev.base = Some(proxy.url());
    let img = image(33, size);
    let rel = fleet.release(2, &img).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed, "{:?}", events.all());
    assert_eq!(dev.read("app-b.bin"), img);
    assert_eq!(Stats::get(&proxy.stats.cuts_done), 3);
    assert_eq!(Stats::get(&proxy.stats.range_requests), 3);
    assert_eq!(Stats::get(&proxy.stats.partial_answers), 3);
    let down = Stats::get(&proxy.stats.down);
    assert!(
        down < 2 * size as u64,
        "{down} bytes went to the agent for a {size}-byte payload"
    );
    fleet.stop().await;
}

/// More cuts than the agent tries per cycle: the cycle ends with a server error (no failure
/// report, the partial download kept), and the next cycle resumes and installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_download_cut_more_often_than_the_retry_budget_resumes_next_cycle() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "cut-more").await;
    dev.extra.push_str("download_attempts = 2\n");
    let img = image(32, 1_000_000);
    let rel = fleet.release(2, &img).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let hooks = Hooks {
        download_cuts: vec![200_000, 200_000, 200_000],
        ..Hooks::default()
    };
    let (mut agent, _) = dev.agent(&fleet, hooks);
    let err = agent.cycle().await.unwrap_err();
    assert!(matches!(err, AgentError::Server(_)), "{err}");
    assert!(
        err.to_string().contains("resumes at the next cycle"),
        "{err}"
    );
    let steps = server_steps(&fleet.device_info(&dev.id).await);
    assert!(steps.iter().all(|(_, o, _)| o != "failure"), "{steps:?}");
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, Finished::Installed);
    assert_eq!(dev.read("app-b.bin"), img);
    assert!(agent.traffic().download_body < 2 * 1_000_000);
    fleet.stop().await;
}

/// A server that is down: the cycle fails with a server error, nothing local changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_server_down_is_a_retryable_error() {
    let fleet = Fleet::new().await;
    let dev = Device::new(&fleet, "down").await;
    let toml = dev.toml(&fleet).replace(&fleet.base, "http://127.0.0.1:9");
    std::fs::write(dev.path("agent.toml"), toml).unwrap();
    let cfg = suitcase_agent::Config::load(&dev.path("agent.toml")).unwrap();
    let mut agent =
        suitcase_agent::Agent::new(cfg, Hooks::default(), common::Events::default().sink())
            .unwrap();
    let err = agent.cycle().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!dev.path("state/journal.json").exists());
    fleet.stop().await;
}

/// A tiny deterministic generator for crash points.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// The agent is crashed (as a SIGKILL or power cut would stop it: no clean-up, every durable
/// write so far kept) right after each of its durable writes in turn, and after a second
/// random write on restart. Every device ends with the new image installed and confirmed
/// once, and the campaign completes with every device succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_crash_after_every_durable_write_resumes_and_installs_once() {
    let fleet = Fleet::new().await;
    let img = image(41, 200_000);
    let rel = fleet.release(2, &img).await;
    // A clean run counts the durable writes of one update.
    let probe = Device::new(&fleet, "crash-probe").await;
    let mut devices = Vec::new();
    // Enough devices for every crash point (a clean update makes about 30 durable writes).
    for i in 0..40 {
        devices.push(Device::new(&fleet, &format!("crash-{i}")).await);
    }
    let mut ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    ids.push(&probe.id);
    let campaign = fleet.campaign(&rel, &ids, json!({})).await;
    let (mut agent, _) = probe.agent(&fleet, Hooks::default());
    assert_eq!(
        agent.cycle().await.unwrap().update.unwrap().finished,
        Finished::Installed
    );
    let writes = agent.durable_writes();
    assert!(
        writes >= 20 && writes <= devices.len() as u64,
        "{writes} durable writes"
    );
    let mut seed = 0x5eed_u64;
    let mut total_crashes = 0;
    for (i, dev) in devices.iter().enumerate().take(writes as usize) {
        let first = i as u64 + 1;
        let second = next(&mut seed) % writes + 1;
        let (crashes, finished) = run_with_crashes(dev, &fleet, &[first, second]).await;
        assert!(
            matches!(finished, None | Some(Finished::Installed)),
            "crash at write {first}, then {second}: {finished:?}"
        );
        assert!(crashes >= 1, "no crash at write {first}");
        total_crashes += crashes;
        assert_eq!(dev.read("app-b.bin"), img, "device {i}");
        assert_eq!(
            dev.text("app.slot"),
            "active=b\nconfirmed=b\n",
            "device {i}"
        );
        assert!(
            !dev.path("app-a.bin.restarts").exists(),
            "device {i} reverted"
        );
        assert_eq!(dev.installed()["components"][0]["sequence_number"], 2);
        assert!(!dev.path("state/journal.json").exists());
        assert!(dev.work_is_empty(), "device {i}");
    }
    assert!(total_crashes >= writes as usize);
    let c = wait_campaign(&fleet, &campaign, "succeeded", devices.len() as u64).await;
    assert_eq!(c["state"], "completed", "{c}");
    let failed: u64 = c["waves_progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(failed, 0);
    fleet.stop().await;
}

/// The same for an update that fails its health check: whatever write the agent crashes
/// after, the device ends back on its old slot and the failure is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_crash_during_a_failing_update_still_reverts() {
    let fleet = Fleet::new().await;
    let rel = fleet.release(2, &image(42, 50_000)).await;
    let sick = |d: &mut Device| {
        d.extra = "[health]\ncommand = [\"false\"]\n".into();
        std::fs::write(d.path("app-a.bin"), b"old").unwrap();
    };
    let mut probe = Device::new(&fleet, "sick-probe").await;
    sick(&mut probe);
    fleet.campaign(&rel, &[&probe.id], json!({})).await;
    let (mut agent, _) = probe.agent(&fleet, Hooks::default());
    let Finished::Failed(_) = agent.cycle().await.unwrap().update.unwrap().finished else {
        panic!("the health check passed");
    };
    let writes = agent.durable_writes();
    assert!((20..200).contains(&writes), "{writes} durable writes");
    let mut devices = Vec::new();
    for i in 0..writes {
        let mut d = Device::new(&fleet, &format!("sick-{i}")).await;
        sick(&mut d);
        devices.push(d);
    }
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    let campaign = fleet.campaign(&rel, &ids, json!({})).await;
    for (i, dev) in devices.iter().enumerate() {
        let at = i as u64 + 1;
        let (_, finished) = run_with_crashes(dev, &fleet, &[at]).await;
        match finished {
            Some(Finished::Failed(f)) => assert_eq!(f.reason, "health-check", "device {i}"),
            None => {}
            other => panic!("device {i}: {other:?}"),
        }
        let steps = server_steps(&fleet.device_info(&dev.id).await);
        assert!(
            steps.contains(&(
                "clean-up".into(),
                "failure".into(),
                Some("health-check".into())
            )),
            "device {i}: {steps:?}"
        );
        assert_eq!(
            dev.text("app.slot"),
            "active=a\nconfirmed=a\n",
            "device {i}"
        );
        assert_eq!(dev.read("app-a.bin"), b"old");
        assert!(dev.work_is_empty());
    }
    wait_campaign(&fleet, &campaign, "failed", devices.len() as u64).await;
    fleet.stop().await;
}

/// The same for the agent's own simulated MCU, whose flash file is one of the durable
/// writes: whatever write the agent crashes after, the MCU ends on the new image, confirmed,
/// with its anti-rollback counter advanced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_crash_after_every_durable_write_of_an_mcu_update() {
    use suitcase_agent::config::Kind;
    let fleet = Fleet::new().await;
    let img = image(43, 40_000);
    let built = fleet.build(&fleet.request(
        7,
        vec![suitcase_author::release::ImageInput {
            name: "mcu".into(),
            bytes: img.clone(),
            component: vec![b"mcu".to_vec()],
            uri: Some("https://fw.example/mcu-7.bin".into()),
            integrated: false,
            invoke: false,
            delta_from: None,
        }],
    ));
    let rel = fleet.upload(&built).await;
    let mcu = |d: &mut Device| {
        d.components = "[[component]]\nname = \"mcu\"\nid = \"6d6375\"\nkind = \"mcu\"\nflash = \"mcu.flash\"\nsector_size = 4096\nslot_sectors = 16\n".into();
    };
    let mut probe = Device::new(&fleet, "mcu-probe").await;
    mcu(&mut probe);
    fleet.campaign(&rel, &[&probe.id], json!({})).await;
    let (mut agent, _) = probe.agent(&fleet, Hooks::default());
    assert_eq!(
        agent.cycle().await.unwrap().update.unwrap().finished,
        Finished::Installed
    );
    let writes = agent.durable_writes();
    let mut devices = Vec::new();
    for i in 0..writes {
        let mut d = Device::new(&fleet, &format!("mcu-crash-{i}")).await;
        mcu(&mut d);
        devices.push(d);
    }
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    let campaign = fleet.campaign(&rel, &ids, json!({})).await;
    for (i, dev) in devices.iter().enumerate() {
        let (_, finished) = run_with_crashes(dev, &fleet, &[i as u64 + 1]).await;
        assert!(
            matches!(finished, None | Some(Finished::Installed)),
            "device {i}: {finished:?}"
        );
        let cfg = dev.config(&fleet);
        let Kind::Mcu(m) = &cfg.components[0].kind else {
            panic!("not an MCU");
        };
        let st = suitcase_agent::mcu::Mcu::open(m, &suitcase_agent::state::Durability::default())
            .unwrap()
            .status()
            .unwrap();
        assert_eq!(
            (st.phase, st.running, st.min_security_versions[0].0),
            (suitcase_boot::Phase::Confirmed, suitcase_boot::Slot::B, 7),
            "device {i}"
        );
    }
    wait_campaign(&fleet, &campaign, "succeeded", writes).await;
    fleet.stop().await;
}

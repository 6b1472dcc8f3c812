//! Freshness without a real-time clock (docs/trust.md, "Freshness"): the real server signs a
//! statement for each check-in nonce with `DATA/freshness-key`; a real agent whose trust state
//! lists that key as a freshness signer (`trust.require_freshness`) refuses what an attacker
//! between them does with the answers (RFC 9019 §3/§4 freshness, NTIA step 3 +1: "cryptographic
//! endpoint verification (e.g. challenge/response) before update"). The attacker is a small
//! HTTP server in the agent's path (`common::hostile`) that forwards to the real server and
//! replays, swaps or strips what comes back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    missing_docs,
    reason = "test code"
)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::hostile::{Answer, Hostile, Seen};
use common::{Device, Events, Fleet, image};
use serde_json::{Value, json};
use suitcase_agent::{Agent, Config, Event, Finished, Hooks, StepFailure};
use suitcase_author::keys::KeyAlg;
use suitcase_manifest::Actions;
use suitcase_trust::{Key, Prefix, ReleaseSigner, TrustState};

const CHECKIN: &str = "/api/v1/device/checkin";

fn key(public: &std::path::Path) -> Key {
    suitcase_author::trust::trust_key(&suitcase_author::keys::load_public(public).unwrap()).unwrap()
}

/// A device `name` whose trust state (genesis) has a root, the fleet's author as release
/// signer, and the server's freshness key (as `suitcase server freshness-key` prints it) as
/// freshness signer; its agent requires freshness. `extra`: more `[trust]` settings.
async fn device(fleet: &Fleet, name: &str, extra: &str) -> Device {
    let dir = fleet.dir.path();
    let (_, root_pub) = common::keypair(dir, &format!("root-{name}"), KeyAlg::Ed25519);
    let (pem, kid) = suitcase_server::freshness_public_key(&dir.join("data")).unwrap();
    assert_eq!(kid.len(), 16);
    let fresh_pub = dir.join("freshness.pub");
    std::fs::write(&fresh_pub, pem).unwrap();
    let mut genesis = TrustState::genesis(&[key(&root_pub)], 1).unwrap();
    genesis
        .add_signer(ReleaseSigner {
            key: key(&fleet.key_pub),
            actions: Actions::ALL,
            component: Prefix::ALL,
        })
        .unwrap();
    genesis.add_freshness_signer(key(&fresh_pub)).unwrap();
    let mut dev = Device::new(fleet, name).await;
    std::fs::write(
        dev.path("genesis.cbor"),
        suitcase_author::trust::document(&genesis).unwrap(),
    )
    .unwrap();
    dev.extra = extra.to_owned();
    dev
}

fn config(fleet: &Fleet, dev: &Device, name: &str, trust: &str) -> Config {
    let anchors = format!("anchors = [\"{}\"]\n", fleet.key_pub.display());
    let toml = dev.toml(fleet).replace(
        &anchors,
        &format!(
            "state = \"genesis.cbor\"\nrequire_freshness = true\ndevice_name = \"{name}\"\n{trust}"
        ),
    );
    assert!(toml.contains("require_freshness"));
    let path = dev.path("agent.toml");
    std::fs::write(&path, toml).unwrap();
    Config::load(&path).unwrap()
}

fn agent(fleet: &Fleet, dev: &Device, name: &str, trust: &str, hooks: Hooks) -> (Agent, Events) {
    let events = Events::default();
    let agent = Agent::new(config(fleet, dev, name, trust), hooks, events.sink()).unwrap();
    (agent, events)
}

fn errors(events: &Events) -> Vec<String> {
    events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::Error { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

/// Offers a one-image release (sequence `seq`) to `ids`; the release id.
async fn offer(fleet: &Fleet, ids: &[&str], seq: u64, seed: u8) -> String {
    let id = fleet.release(seq, &image(seed, 20_000)).await;
    fleet.campaign(&id, ids, json!({})).await;
    id
}

/// Checks in at the real server with `token` and the body the agent sent (its nonce and
/// inventory), from inside the hostile server's handler: the attacker's relay.
fn relay(base: &str, token: &str, body: &[u8]) -> Value {
    let (url, token, body) = (format!("{base}{CHECKIN}"), token.to_owned(), body.to_vec());
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::OK);
            r.json::<Value>().await.unwrap()
        })
    })
}

/// A hostile server in front of the fleet: check-ins go to `handle(seen)`, everything else
/// is relayed nowhere (a 404): an agent that refuses the offer never asks for more.
async fn hostile(handle: impl Fn(&Seen) -> Value + Send + Sync + 'static) -> Hostile {
    Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => Answer::json(200, &handle(r)),
        _ => Answer::not_found(),
    })
    .await
}

fn paths(h: &Hostile) -> Vec<String> {
    h.seen().into_iter().map(|s| s.path).collect()
}

/// The attacker's swap: relays each check-in of `dev` to the real server, then points the
/// answer's `manifest_url` at `evil` (served at `path`); `strip_payloads` also empties the
/// payload list.
async fn swapping(
    fleet: &Fleet,
    dev: &Device,
    path: &'static str,
    evil: Vec<u8>,
    strip_payloads: bool,
) -> Hostile {
    let (base, token) = (fleet.base.clone(), dev.token.clone());
    Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => {
            let mut a = relay(&base, &token, &r.body);
            a["update"]["manifest_url"] = json!(path);
            a["update"]["manifest_size"] = json!(evil.len());
            if strip_payloads {
                a["update"]["payloads"] = json!([]);
            }
            Answer::json(200, &a)
        }
        p if p == path => Answer::bytes(&evil),
        _ => Answer::not_found(),
    })
    .await
}

/// The step failure an update ended with; panics with `what` and the events if it did not fail.
fn failure(finished: Finished, events: &Events, what: &str) -> StepFailure {
    let Finished::Failed(f) = finished else {
        panic!("{what}: {:?}", events.all());
    };
    f
}

/// A trust update to sequence 1 of `dev`'s genesis, signed by its root (`root-{name}.key`).
fn root_signed_trust_update(fleet: &Fleet, dev: &Device, name: &str) -> Vec<u8> {
    let mut next = TrustState::decode(&std::fs::read(dev.path("genesis.cbor")).unwrap()).unwrap();
    next.set_sequence(1);
    let key = fleet.dir.path().join(format!("root-{name}.key"));
    let root = suitcase_author::signer::open(&key).unwrap();
    suitcase_author::trust::build_update(&next, &[root.as_ref()]).unwrap()
}

/// The accept path: a fresh statement from the real server for this device and this offer;
/// the update installs, and the next check-in ("no offer") is fresh too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_offer_is_accepted() {
    let fleet = Fleet::new().await;
    let dev = device(&fleet, "f1", "").await;
    offer(&fleet, &[&dev.id], 2, 1).await;
    let (mut agent, events) = agent(&fleet, &dev, "f1", "", Hooks::default());
    let cycle = agent.cycle().await.unwrap();
    assert!(cycle.answer.unwrap().freshness.is_some());
    assert_eq!(
        cycle.update.unwrap().finished,
        Finished::Installed,
        "{:?}",
        events.all()
    );
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let record: Value = serde_json::from_slice(&dev.read("state/freshness.json")).unwrap();
    assert_eq!(record["offer"][0], 2, "{record}");
    let cycle = agent.cycle().await.unwrap();
    assert!(cycle.update.is_none());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let record: Value = serde_json::from_slice(&dev.read("state/freshness.json")).unwrap();
    assert_eq!(record["offer"], Value::Null, "no offer: {record}");
}

/// Replayed offer: an answer the attacker recorded earlier (a genuine offer with a genuine
/// statement, for an earlier check-in's nonce) is sent again. The agent refuses it, reason:
/// another nonce, and asks for nothing else (nothing downloaded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_offer_is_refused() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "r1", "").await;
    offer(&fleet, &[&dev.id], 2, 2).await;
    // The recording: a check-in by this device with a nonce of its own.
    let earlier = serde_json::to_vec(&suitcase_protocol::CheckIn {
        nonce: Some(vec![0x5a; 16]),
        ..suitcase_protocol::CheckIn::default()
    })
    .unwrap();
    let recorded = relay(&fleet.base, &dev.token, &earlier);
    assert_eq!(recorded["action"], "update", "{recorded}");
    assert!(recorded["freshness"].is_string());
    let replay = recorded.clone();
    let h = hostile(move |_| replay.clone()).await;
    dev.base = Some(h.url());

    let (mut agent, events) = agent(&fleet, &dev, "r1", "", Hooks::default());
    let cycle = agent.cycle().await.unwrap();
    assert!(cycle.update.is_none(), "{:?}", events.all());
    let errors = errors(&events);
    assert!(
        errors.iter().any(|e| e.contains("another nonce")),
        "{errors:?}"
    );
    assert_eq!(paths(&h), vec![CHECKIN.to_owned()], "nothing downloaded");
    assert!(dev.work_is_empty());
}

/// Mix-and-match, device: the attacker relays this device's check-in (its nonce) under
/// another device's credentials and hands back that device's answer, signed for that device.
/// The agent refuses it: the statement names another device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_and_match_statement_for_other_device_is_refused() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "m1", "").await;
    let other = Device::new(&fleet, "m2").await;
    // Only the other device is offered the release.
    offer(&fleet, &[&other.id], 2, 3).await;
    let (base, token) = (fleet.base.clone(), other.token.clone());
    let h = hostile(move |r| relay(&base, &token, &r.body)).await;
    dev.base = Some(h.url());

    let (mut agent, events) = agent(&fleet, &dev, "m1", "", Hooks::default());
    let cycle = agent.cycle().await.unwrap();
    assert_eq!(
        cycle.answer.unwrap().action,
        suitcase_protocol::Action::Update
    );
    assert!(cycle.update.is_none(), "{:?}", events.all());
    let errors = errors(&events);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("issued to another device")),
        "{errors:?}"
    );
    assert_eq!(paths(&h), vec![CHECKIN.to_owned()], "nothing downloaded");
}

/// Mix-and-match, offer: a fresh statement for this device and its offer (sequence 2), but
/// the attacker swaps the envelope for another release with the same sequence number. Check
/// refuses it (reason `freshness`: the statement binds another manifest digest) before any
/// payload is downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_and_match_statement_for_other_offer_is_refused() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "o1", "").await;
    offer(&fleet, &[&dev.id], 2, 4).await;
    let swapped = fleet.build(&fleet.request(2, vec![fleet.app(&image(5, 20_000), 2)]));
    let h = swapping(&fleet, &dev, "/evil/envelope", swapped.envelope, false).await;
    dev.base = Some(h.url());

    let (mut agent, events) = agent(&fleet, &dev, "o1", "", Hooks::default());
    let update = agent.cycle().await.unwrap().update.unwrap();
    let f = failure(update.finished, &events, "refused expected");
    assert_eq!(f.reason, "freshness", "{f:?}");
    assert!(f.detail.contains("mix-and-match"), "{f:?}");
    assert!(
        !paths(&h).iter().any(|p| p.contains("/payloads/")),
        "no payload downloaded: {:?}",
        paths(&h)
    );
}

/// Indefinite freeze: the attacker relays every check-in but strips the statement (the
/// offer stays). The agent refuses the offer each time, and once no valid statement has
/// arrived for longer than `trust.stale_after_seconds` it reports staleness. Back on the real
/// server, the next fresh answer ends the freeze and the update installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_device_reports_staleness() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "z1", "").await;
    offer(&fleet, &[&dev.id], 2, 6).await;
    let (base, token) = (fleet.base.clone(), dev.token.clone());
    let h = hostile(move |r| {
        let mut a = relay(&base, &token, &r.body);
        a.as_object_mut().unwrap().remove("freshness");
        a
    })
    .await;
    dev.base = Some(h.url());
    let now = Arc::new(AtomicU64::new(1_000_000));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let trust = "stale_after_seconds = 600\n";
    let hooks = || Hooks {
        clock: Some(clock.clone()),
        ..Hooks::default()
    };

    let (mut agent1, events) = agent(&fleet, &dev, "z1", trust, hooks());
    assert!(agent1.cycle().await.unwrap().update.is_none());
    let first = errors(&events);
    assert!(
        first.iter().any(|e| e.contains("no freshness statement")),
        "{first:?}"
    );
    assert!(
        !first.iter().any(|e| e.contains("stale")),
        "not yet: {first:?}"
    );
    now.fetch_add(601, Ordering::SeqCst);
    assert!(agent1.cycle().await.unwrap().update.is_none());
    let later = errors(&events);
    assert!(
        later
            .iter()
            .any(|e| e.contains("stale: no valid freshness statement for 601 s")),
        "{later:?}"
    );
    assert!(dev.work_is_empty());

    // The real server again: fresh, installed, and no more staleness.
    dev.base = None;
    let (mut agent2, events) = agent(&fleet, &dev, "z1", trust, hooks());
    let update = agent2.cycle().await.unwrap().update.unwrap();
    assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
}

/// `use-before` on a device without a real-time clock (`trust.rtc = false`): the condition is
/// judged at the server's time in the fresh statement, not the device's clock. The device's
/// clock says 0 (before any deadline); the release must be used before `deadline`. With the
/// server's clock before the deadline the update installs; after it, Check refuses it
/// (reason `condition`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_before_uses_the_statement_time_without_rtc() {
    const DEADLINE: u64 = 1_900_000_000;
    let server_now = Arc::new(Mutex::new(DEADLINE as i64 - 100));
    let fleet = {
        let server_now = server_now.clone();
        Fleet::with(move |c| c.clock = Arc::new(move || *server_now.lock().unwrap())).await
    };
    let trust = "rtc = false\n";
    let hooks = || Hooks {
        clock: Some(Arc::new(|| 0)),
        ..Hooks::default()
    };
    let release = |seq: u64, seed: u8| {
        let built = fleet.build(&fleet.request(seq, vec![fleet.app(&image(seed, 20_000), seq)]));
        with_use_before(&fleet, built, DEADLINE)
    };

    let dev = device(&fleet, "u1", "").await;
    let id = fleet.upload(&release(2, 7)).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let (mut a, events) = agent(&fleet, &dev, "u1", trust, hooks());
    let update = a.cycle().await.unwrap().update.unwrap();
    assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());

    *server_now.lock().unwrap() = DEADLINE as i64 + 100;
    let id = fleet.upload(&release(3, 8)).await;
    fleet.campaign(&id, &[&dev.id], json!({})).await;
    let (mut a, events) = agent(&fleet, &dev, "u1", trust, hooks());
    let update = a.cycle().await.unwrap().update.unwrap();
    let f = failure(update.finished, &events, "use-before passed");
    assert_eq!(f.reason, "condition", "{f:?}");
}

/// The release with a use-before condition in its shared sequence, signed again by the
/// fleet's author key.
fn with_use_before(
    fleet: &Fleet,
    mut built: suitcase_author::release::BuiltRelease,
    deadline: u64,
) -> suitcase_author::release::BuiltRelease {
    use suitcase_manifest::build::{Cmd, EnvelopeBuilder, ManifestBuilder, Param};
    let env = suitcase_manifest::Envelope::decode(&built.envelope).unwrap();
    let m = suitcase_manifest::Manifest::decode_unauthenticated(env.manifest_bytes()).unwrap();
    let mut mb = ManifestBuilder::from_manifest(&m);
    mb.shared_sequence.get_or_insert_with(Vec::new).extend([
        Cmd::OverrideParameters(vec![Param::UseBefore(deadline)]),
        Cmd::Condition(suitcase_manifest::Condition::UseBefore, 0),
    ]);
    let eb = EnvelopeBuilder::new(&mb, built.digest_algorithm);
    let signer = suitcase_author::signer::open(&fleet.key).unwrap();
    built.envelope = suitcase_author::trust::sign_update(eb, &[signer.as_ref()]).unwrap();
    built
}

/// Mix-and-match with a trust update: the attacker relays the real server's fresh answer for
/// release R (its statement binds R's sequence and manifest digest), keeps the sequence, drops
/// the payloads and serves at `manifest_url` a trust update signed by the device's root that
/// nobody offered this device (one held back for a canary group). The statement does not bind
/// it: refused at Check as `freshness`, the trust state in force is kept (docs/trust.md
/// "Freshness"; RFC 9019 §4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_statement_for_a_release_cannot_carry_a_trust_update() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "t1", "").await;
    offer(&fleet, &[&dev.id], 2, 6).await;
    let evil = root_signed_trust_update(&fleet, &dev, "t1");
    let h = swapping(&fleet, &dev, "/evil/trust-update", evil, true).await;
    dev.base = Some(h.url());

    let (mut agent, events) = agent(&fleet, &dev, "t1", "", Hooks::default());
    let update = agent.cycle().await.unwrap().update.unwrap();
    let f = failure(update.finished, &events, "refused expected");
    assert_eq!(f.reason, "freshness", "{f:?}");
    assert!(f.detail.contains("mix-and-match"), "{f:?}");
    assert!(
        paths(&h).iter().any(|p| p == "/evil/trust-update"),
        "the trust update was fetched: {:?}",
        paths(&h)
    );
}

/// Mix-and-match with an update under way: release X waits at Announce (consent deferred);
/// the server now offers Y; the attacker relays Y's fresh answer under X's release id (not
/// signed, not in the statement). The statement binds Y, not X: the agent drops X's journal
/// and starts again on the offer (its envelope fetched from the answer's `manifest_url`)
/// instead of going on with X, which no statement binds (docs/trust.md "Freshness").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_statement_for_another_release_cannot_resume_a_journal() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "j1", "").await;
    let script = dev.script("consent.sh", "exit 75");
    dev.extra = format!(
        "[consent]\nmode = \"command\"\ncommand = [\"{}\"]\n",
        script.display()
    );
    let x = fleet.release(2, &image(7, 20_000)).await;
    let campaign = fleet.campaign(&x, &[&dev.id], json!({})).await;
    let (mut first, events) = agent(&fleet, &dev, "j1", "", Hooks::default());
    let update = first.cycle().await.unwrap().update.unwrap();
    assert!(
        matches!(update.finished, Finished::Deferred(_)),
        "X waits at Announce: {:?}",
        events.all()
    );
    drop(first);
    let (s, v) = fleet
        .post(&format!("/api/v1/campaigns/{campaign}/cancel"), &json!({}))
        .await;
    assert!(s.is_success(), "{v}");
    offer(&fleet, &[&dev.id], 3, 8).await;
    let (base, token) = (fleet.base.clone(), dev.token.clone());
    let y_url = Arc::new(Mutex::new(String::new()));
    let seen_url = Arc::clone(&y_url);
    let h = hostile(move |r| {
        let mut a = relay(&base, &token, &r.body);
        assert_eq!(a["update"]["sequence_number"], json!(3), "{a}");
        *seen_url.lock().unwrap() = a["update"]["manifest_url"].as_str().unwrap().to_owned();
        a["update"]["release_id"] = json!(x);
        a
    })
    .await;
    dev.base = Some(h.url());
    let (mut second, events) = agent(&fleet, &dev, "j1", "", Hooks::default());
    let update = second.cycle().await.unwrap().update.unwrap();
    assert!(
        !matches!(update.finished, Finished::Deferred(_)),
        "X is not resumed: {:?}",
        events.all()
    );
    let y = y_url.lock().unwrap().clone();
    assert!(
        paths(&h).contains(&y),
        "the agent started again on the offer the statement binds ({y}): {:?}",
        paths(&h)
    );
}

/// The accept path for a trust update: the real server offers a root-signed trust update; its
/// fresh statement binds the update's manifest digest and trust sequence, so it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_trust_update_is_applied() {
    let fleet = Fleet::new().await;
    let dev = device(&fleet, "t2", "").await;
    let update = root_signed_trust_update(&fleet, &dev, "t2");
    // The server takes releases signed by registered keys: register the root's.
    let public = fleet.dir.path().join("root-t2.pub");
    let (pem, _) = suitcase_author::keys::load_public(&public)
        .unwrap()
        .encode()
        .unwrap();
    let body = json!({"name": "root-t2", "key": String::from_utf8(pem).unwrap()});
    let (s, v) = fleet.post("/api/v1/keys", &body).await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
    fleet.offer_trust_update(&dev, &update).await;
    let (mut agent, events) = agent(&fleet, &dev, "t2", "", Hooks::default());
    let update = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
}

//! The agent against servers that lie: an offer that names URLs on another host, redirects
//! to another host, URL tricks that would move the request elsewhere, and answers without
//! end. Two real servers on 127.0.0.1 (different ports are different origins) record every
//! request and whether it carried the device's token.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "test code"
)]

mod common;

use std::time::{Duration, Instant};

use common::hostile::{Answer, Hostile, Seen, offer, release};
use common::{Device, Fleet, image};
use serde_json::json;
use suitcase_agent::http::{MAX_CHECKIN_ANSWER, MAX_ERROR_BODY, MAX_SMALL_ANSWER};
use suitcase_agent::{AgentError, Finished, Hooks, MAX_ENVELOPE};

const CHECKIN: &str = "/api/v1/device/checkin";
const REPORTS: &str = "/api/v1/device/reports";

/// A device whose agent talks to `home` instead of the fleet's server.
async fn device(fleet: &Fleet, name: &str, home: &Hostile) -> Device {
    let mut dev = Device::new(fleet, name).await;
    dev.base = Some(home.url());
    dev
}

fn bearer(dev: &Device) -> Option<String> {
    Some(format!("Bearer {}", dev.token))
}

fn paths(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect()
}

/// The offer names the envelope and the payload by absolute URLs on another origin: the agent
/// fetches them there without its token (the SUIT signature protects the content), installs
/// the update, and sends the token to its own server only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_offer_on_another_host_gets_no_device_token() {
    let fleet = Fleet::new().await;
    let img = image(8, 200_000);
    let (envelope, uri, payload) = release(&fleet, 2, &img);
    let (e, p) = (envelope.clone(), payload.clone());
    let other = Hostile::start(move |r| match r.path.as_str() {
        "/cdn/envelope.suit" => Answer::bytes(&e),
        "/cdn/app.bin" => Answer::bytes(&p),
        _ => Answer::not_found(),
    })
    .await;
    let answer = offer(
        2,
        &envelope,
        &format!("{}/cdn/envelope.suit", other.url()),
        &uri,
        &payload,
        &format!("{}/cdn/app.bin", other.url()),
    );
    let home = Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => Answer::json(200, &answer),
        REPORTS => Answer::json(200, &json!({})),
        _ => Answer::not_found(),
    })
    .await;
    let dev = device(&fleet, "elsewhere", &home).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());

    let cycle = agent.cycle().await.unwrap();
    assert_eq!(
        cycle.update.unwrap().finished,
        Finished::Installed,
        "{:?}",
        events.all()
    );
    assert_eq!(dev.read("app-b.bin"), img);

    let fetched = other.seen();
    assert_eq!(
        paths(&fetched),
        ["GET /cdn/envelope.suit", "GET /cdn/app.bin"]
    );
    for r in &fetched {
        assert_eq!(
            r.authorization, None,
            "the token went to another host: {r:?}"
        );
    }
    let own = home.seen();
    assert!(own.len() >= 3, "{:?}", paths(&own));
    for r in &own {
        assert_eq!(r.authorization, bearer(&dev), "{} {}", r.method, r.path);
    }
    fleet.stop().await;
}

/// The server answers a download with a redirect to another origin (a CDN): the agent follows
/// it without its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_redirect_to_another_host_gets_no_device_token() {
    let fleet = Fleet::new().await;
    let img = image(9, 150_000);
    let (envelope, uri, payload) = release(&fleet, 2, &img);
    let p = payload.clone();
    let other = Hostile::start(move |r| match r.path.as_str() {
        "/cdn/app.bin" => Answer::bytes(&p),
        _ => Answer::not_found(),
    })
    .await;
    let target = format!("{}/cdn/app.bin", other.url());
    let answer = offer(
        2,
        &envelope,
        "/api/v1/device/releases/rel_hostile/envelope",
        &uri,
        &payload,
        "/api/v1/device/releases/rel_hostile/payloads/0",
    );
    let e = envelope.clone();
    let home = Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => Answer::json(200, &answer),
        REPORTS => Answer::json(200, &json!({})),
        "/api/v1/device/releases/rel_hostile/envelope" => Answer::bytes(&e),
        "/api/v1/device/releases/rel_hostile/payloads/0" => Answer::redirect(&target),
        _ => Answer::not_found(),
    })
    .await;
    let dev = device(&fleet, "redirected", &home).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());

    let cycle = agent.cycle().await.unwrap();
    assert_eq!(
        cycle.update.unwrap().finished,
        Finished::Installed,
        "{:?}",
        events.all()
    );
    assert_eq!(dev.read("app-b.bin"), img);
    let fetched = other.seen();
    assert_eq!(paths(&fetched), ["GET /cdn/app.bin"]);
    assert_eq!(
        fetched[0].authorization, None,
        "the token followed the redirect"
    );
    for r in home.seen() {
        assert_eq!(r.authorization, bearer(&dev), "{} {}", r.method, r.path);
    }
    fleet.stop().await;
}

/// URLs that would move a request to another host when pasted after the server's address
/// (`@host` makes the address a user name), scheme-relative and non-HTTP URLs, and URLs with
/// credentials in them are refused before anything is fetched: Receive fails with `download`,
/// and the other host sees no request at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_offer_url_tricks_are_refused_before_any_request() {
    let fleet = Fleet::new().await;
    let img = image(10, 10_000);
    let (envelope, uri, payload) = release(&fleet, 2, &img);
    let (e, p) = (envelope.clone(), payload.clone());
    let other = Hostile::start(move |r| {
        if r.path.ends_with("envelope.suit") {
            Answer::bytes(&e)
        } else {
            Answer::bytes(&p)
        }
    })
    .await;
    let o = other.addr;
    let tricks = [
        format!("@{o}/envelope.suit"),
        format!("//{o}/envelope.suit"),
        format!("http://user:secret@{o}/envelope.suit"),
        format!("ftp://{o}/envelope.suit"),
        "envelope.suit".to_owned(),
    ];
    for (i, trick) in tricks.iter().enumerate() {
        let answer = offer(2, &envelope, trick, &uri, &payload, "/payload");
        let home = Hostile::start(move |r| match r.path.as_str() {
            CHECKIN => Answer::json(200, &answer),
            REPORTS => Answer::json(200, &json!({})),
            _ => Answer::not_found(),
        })
        .await;
        let dev = device(&fleet, &format!("trick-{i}"), &home).await;
        let (mut agent, events) = dev.agent(&fleet, Hooks::default());
        let cycle = agent.cycle().await.unwrap();
        let Finished::Failed(f) = cycle.update.unwrap().finished else {
            panic!("{trick}: not refused: {:?}", events.all());
        };
        assert_eq!(
            (f.step.name(), f.reason.as_str()),
            ("receive", "download"),
            "{trick}: {f:?}"
        );
        assert!(f.detail.contains("refused"), "{trick}: {}", f.detail);
        assert!(
            other.seen().is_empty(),
            "{trick}: {:?}",
            paths(&other.seen())
        );
        assert!(home.seen().iter().all(|r| r.path != "/envelope.suit"));
    }
    fleet.stop().await;
}

/// Runs one cycle against `home` and returns its error and how long it took.
async fn cycle_error(fleet: &Fleet, name: &str, home: &Hostile) -> (String, Duration) {
    let dev = device(fleet, name, home).await;
    let (mut agent, _) = dev.agent(fleet, Hooks::default());
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), agent.cycle())
        .await
        .expect("the agent kept reading for a minute");
    match r {
        Err(e @ AgentError::Server(_)) => (e.to_string(), t.elapsed()),
        other => panic!("{name}: {other:?}"),
    }
}

/// Socket buffers on loopback hold a few MiB whatever the reader does; anything near the
/// 64 MiB the hostile server offers means the agent kept reading.
const READ_BOUND: u64 = 16 << 20;

/// A check-in answer without end (chunked), or one whose Content-Length says 300 MB: the
/// agent stops at its limit for a check-in answer, at once, and says what was too big.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_oversized_check_in_answer_is_refused_in_bounded_memory() {
    let fleet = Fleet::new().await;
    for (name, content_length) in [("endless", None), ("300mb", Some(300_000_000))] {
        let home = Hostile::start(move |r| match r.path.as_str() {
            CHECKIN => Answer::Endless {
                status: 200,
                content_length,
                cap: 64 << 20,
            },
            _ => Answer::not_found(),
        })
        .await;
        let (e, took) = cycle_error(&fleet, name, &home).await;
        assert!(e.contains("check-in answer"), "{name}: {e}");
        assert!(e.contains(&MAX_CHECKIN_ANSWER.to_string()), "{name}: {e}");
        assert!(took < Duration::from_secs(10), "{name}: {took:?}");
        // Give the server a moment to notice the hang-up, then count what it got rid of.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            home.sent() < READ_BOUND,
            "{name}: the agent read {} bytes",
            home.sent()
        );
    }
    fleet.stop().await;
}

/// An error answer (500) whose body never ends: the agent reads at most its limit for an
/// error body and reports the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_endless_error_body_is_read_only_to_its_limit() {
    let fleet = Fleet::new().await;
    let home = Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => Answer::Endless {
            status: 500,
            content_length: None,
            cap: 64 << 20,
        },
        _ => Answer::not_found(),
    })
    .await;
    let (e, took) = cycle_error(&fleet, "error-body", &home).await;
    assert!(e.contains("HTTP 500"), "{e}");
    assert!(e.contains(&MAX_ERROR_BODY.to_string()), "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        home.sent() < READ_BOUND,
        "the agent read {} bytes",
        home.sent()
    );
    fleet.stop().await;
}

/// A payload download that goes on past the offered size: each attempt stops at the offered
/// size, the attempts are bounded, and the cycle ends with an error the next cycle resumes
/// from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_payload_larger_than_offered_is_cut_at_the_offered_size() {
    let fleet = Fleet::new().await;
    let img = image(11, 100_000);
    let (envelope, uri, payload) = release(&fleet, 2, &img);
    let answer = offer(2, &envelope, "/envelope", &uri, &payload, "/payload");
    let e = envelope.clone();
    let home = Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => Answer::json(200, &answer),
        REPORTS => Answer::json(200, &json!({})),
        "/envelope" => Answer::bytes(&e),
        "/payload" => Answer::Endless {
            status: 200,
            content_length: None,
            cap: 64 << 20,
        },
        _ => Answer::not_found(),
    })
    .await;
    let (e, took) = cycle_error(&fleet, "endless-payload", &home).await;
    assert!(e.contains("more than the offered"), "{e}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let attempts = home.seen().iter().filter(|r| r.path == "/payload").count() as u64;
    assert!((1..=5).contains(&attempts), "{attempts}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        home.sent() < attempts * READ_BOUND,
        "the agent read {} bytes in {attempts} attempts",
        home.sent()
    );
    fleet.stop().await;
}

/// An envelope without end, offered at the most an agent accepts (`MAX_ENVELOPE`): each
/// attempt stops there, not at the 64 MiB the server would send. An offer of a larger
/// envelope is refused before the envelope is asked for at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_endless_envelope_is_read_only_to_max_envelope() {
    let fleet = Fleet::new().await;
    let img = image(12, 10_000);
    let (envelope, uri, payload) = release(&fleet, 2, &img);
    let mut answer = offer(2, &envelope, "/envelope", &uri, &payload, "/payload");
    answer["update"]["manifest_size"] = MAX_ENVELOPE.into();
    let p = payload.clone();
    let home = Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => Answer::json(200, &answer),
        REPORTS => Answer::json(200, &json!({})),
        "/envelope" => Answer::Endless {
            status: 200,
            content_length: None,
            cap: 64 << 20,
        },
        "/payload" => Answer::bytes(&p),
        _ => Answer::not_found(),
    })
    .await;
    let (e, took) = cycle_error(&fleet, "endless-envelope", &home).await;
    assert!(e.contains("more than the offered"), "{e}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let attempts = home.seen().iter().filter(|r| r.path == "/envelope").count() as u64;
    assert!((1..=5).contains(&attempts), "{attempts}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Each attempt: at most the envelope limit, plus what socket buffers hold.
    assert!(
        home.sent() < attempts * (MAX_ENVELOPE + READ_BOUND),
        "the agent read {} bytes in {attempts} attempts",
        home.sent()
    );

    // Offered larger than the limit: refused without a request for it.
    let mut answer = offer(2, &envelope, "/envelope", &uri, &payload, "/payload");
    answer["update"]["manifest_size"] = (MAX_ENVELOPE + 1).into();
    let home = Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => Answer::json(200, &answer),
        REPORTS => Answer::json(200, &json!({})),
        _ => Answer::Endless {
            status: 200,
            content_length: None,
            cap: 64 << 20,
        },
    })
    .await;
    let dev = device(&fleet, "huge-envelope", &home).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let r = tokio::time::timeout(Duration::from_secs(60), agent.cycle())
        .await
        .expect("the agent kept reading for a minute");
    assert!(
        !home.seen().iter().any(|r| r.path == "/envelope"),
        "{:?} {:?}",
        paths(&home.seen()),
        events.all()
    );
    if let Ok(c) = r {
        assert_ne!(c.update.map(|u| u.finished), Some(Finished::Installed));
    }
    fleet.stop().await;
}

/// A report answer without end: the agent reads at most `MAX_SMALL_ANSWER` of it (the report
/// was taken; the rest is refused, not buffered), and the update still installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_endless_report_answer_is_read_only_to_its_limit() {
    let fleet = Fleet::new().await;
    let img = image(13, 50_000);
    let (envelope, uri, payload) = release(&fleet, 2, &img);
    let answer = offer(2, &envelope, "/envelope", &uri, &payload, "/payload");
    let (e, p) = (envelope.clone(), payload.clone());
    let home = Hostile::start(move |r| match r.path.as_str() {
        CHECKIN => Answer::json(200, &answer),
        REPORTS => Answer::Endless {
            status: 200,
            content_length: None,
            cap: 64 << 20,
        },
        "/envelope" => Answer::bytes(&e),
        "/payload" => Answer::bytes(&p),
        _ => Answer::not_found(),
    })
    .await;
    let dev = device(&fleet, "endless-report-answer", &home).await;
    let (mut agent, events) = dev.agent(&fleet, Hooks::default());
    let cycle = tokio::time::timeout(Duration::from_secs(60), agent.cycle())
        .await
        .expect("the agent kept reading for a minute")
        .unwrap();
    assert_eq!(
        cycle.update.unwrap().finished,
        Finished::Installed,
        "{:?}",
        events.all()
    );
    let reports = home.seen().iter().filter(|r| r.path == REPORTS).count() as u64;
    assert!(reports >= 1, "{:?}", paths(&home.seen()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Envelope and payload, plus per report at most the limit and what socket buffers hold.
    let fair = (envelope.len() + payload.len()) as u64;
    assert!(
        home.sent() < fair + reports * (MAX_SMALL_ANSWER as u64 + READ_BOUND),
        "the agent read {} bytes with {reports} reports",
        home.sent()
    );
    fleet.stop().await;
}

/// A candidate changed on disk after Process (by anything that can write the work area while
/// the agent is stopped): Apply re-enters the install path through the authenticated envelope
/// and the manifest's image-match, so the changed bytes are refused, never written to a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_candidate_swapped_in_the_work_area_after_process_is_not_applied() {
    let fleet = Fleet::new().await;
    let img = image(23, 20_000);
    let rel = fleet.release(2, &img).await;
    swap_candidate_after_process(&fleet, &rel, "swapped").await;
    fleet.stop().await;
}

/// As above, with an authentic manifest whose validate section checks something else than
/// the image (a vendor condition): that its validate section ran is no image-match of the
/// candidate, so Apply matches it again with the install section and refuses the swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_candidate_swapped_under_a_validate_section_without_image_match_is_not_applied() {
    let fleet = Fleet::new().await;
    let rel = release_without_validate_image_match(&fleet, &image(24, 20_000)).await;
    swap_candidate_after_process(&fleet, &rel, "no-image-match").await;
    fleet.stop().await;
}

/// Without a swap, that release is processed and written, but Re-verify refuses it: its
/// validate section never checks what was written to the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_section_without_image_match_is_refused_at_reverify() {
    let fleet = Fleet::new().await;
    let rel = release_without_validate_image_match(&fleet, &image(25, 20_000)).await;
    let dev = Device::new(&fleet, "unchecked").await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (_, f) = dev.failed_cycle(&fleet).await;
    assert_eq!(f.step, suitcase_protocol::Step::Reverify, "{f:?}");
    assert_eq!(f.reason, "digest", "{f:?}");
    assert!(f.detail.contains("does not image-match app"), "{f:?}");
    assert!(
        !dev.text("app.slot").contains("active=b"),
        "switched to an image nothing re-verified"
    );
    fleet.stop().await;
}

/// A signed one-image release whose validate section checks the vendor, not the image.
async fn release_without_validate_image_match(fleet: &Fleet, img: &[u8]) -> String {
    use suitcase_manifest::build::{Cmd, EnvelopeBuilder, Index, ManifestBuilder};
    use suitcase_manifest::{Condition, Envelope, Manifest};
    let mut built = fleet.build(&fleet.request(2, vec![fleet.app(img, 2)]));
    let env = Envelope::decode(&built.envelope).unwrap();
    let mut m = ManifestBuilder::from_manifest(
        &Manifest::decode_unauthenticated(env.manifest_bytes()).unwrap(),
    );
    m.validate = Some(vec![
        Cmd::SetComponentIndex(Index::One(0)),
        Cmd::Condition(Condition::VendorIdentifier, 15),
    ]);
    m.text.clear();
    m.sever.clear();
    let mut e = EnvelopeBuilder::new(&m, built.digest_algorithm);
    let signer = suitcase_author::signer::open(&fleet.key).unwrap();
    let block =
        suitcase_author::signer::sign_block(signer.as_ref(), &[], e.digest_bytes()).unwrap();
    e.raw_block(block.bytes);
    built.envelope = e.encode();
    fleet.upload(&built).await
}

/// Runs `rel` on a new device until Process has run, flips a byte of the candidate, and
/// checks that Apply refuses it and nothing of it reaches the slot.
async fn swap_candidate_after_process(fleet: &Fleet, rel: &str, name: &str) {
    let dev = Device::new(fleet, name).await;
    fleet.campaign(rel, &[&dev.id], json!({})).await;
    // Crash at each durable write until the journal says Stage (Process has run).
    let mut staged = false;
    for n in 1..60 {
        let hooks = Hooks {
            crash_after_writes: Some(n),
            ..Hooks::default()
        };
        let (mut agent, _) = dev.agent(fleet, hooks);
        assert!(matches!(
            agent.cycle().await,
            Err(AgentError::InjectedCrash)
        ));
        let journal: serde_json::Value =
            serde_json::from_slice(&dev.read("state/journal.json")).unwrap();
        if journal["step"] == "stage" {
            staged = true;
            break;
        }
    }
    assert!(staged, "the update never reached Stage");
    let journal: serde_json::Value =
        serde_json::from_slice(&dev.read("state/journal.json")).unwrap();
    let file = journal["candidates"][0]["file"].as_str().unwrap();
    let path = dev.path(&format!("state/work/{file}"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let (_, f) = dev.failed_cycle(fleet).await;
    assert_eq!(f.step, suitcase_protocol::Step::Apply, "{f:?}");
    assert!(
        !dev.path("app-b.bin").exists() || dev.read("app-b.bin") != bytes,
        "the swapped candidate reached the slot"
    );
    assert!(
        !dev.text("app.slot").contains("active=b"),
        "switched to the swapped image"
    );
}

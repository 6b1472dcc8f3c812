//! Deltas as a transport encoding: after an upload the server makes a patch from the previous
//! release's image, offers it only to devices that report that image installed, and the patch
//! turns exactly that image into exactly the signed one.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::std_instead_of_core,
    reason = "test code"
)]

mod common;

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use suitcase_protocol::{CheckIn, CheckInAnswer, InstalledComponent};

both_backends!(delta_is_offered_to_devices_running_the_source_image);

fn image(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

async fn checkin_with(h: &Harness, token: &str, digest: &str) -> CheckInAnswer {
    let body = CheckIn {
        components: vec![InstalledComponent {
            id: vec![hex::encode(b"app")],
            sequence_number: 1,
            digest: Some(digest.to_owned()),
            ..InstalledComponent::default()
        }],
        ..CheckIn::default()
    };
    h.client
        .post(h.url("/api/v1/device/checkin"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn delta_is_offered_to_devices_running_the_source_image(b: Backend) {
    let h = Harness::new(b).await;
    let old = image(7, 24_000);
    let mut new = old.clone();
    new.splice(5_000..5_000, b"a new feature".iter().copied());
    new[20_000] ^= 0xff;
    let _r1 = h.release(1, &old).await;
    let r2 = h.release(2, &new).await;
    // Generation runs after the upload; wait for it.
    let mut info = serde_json::Value::Null;
    for _ in 0..600 {
        let (_, v) = h.get(&h.admin, &format!("/api/v1/releases/{r2}")).await;
        if !v["deltas"].as_array().unwrap().is_empty() {
            info = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let d = &info["deltas"][0];
    assert_eq!(d["index"], 0, "{info}");
    assert_eq!(d["source_sha256"], hex::encode(Sha256::digest(&old)));
    assert!(d["size"].as_u64().unwrap() < 2_000, "{d}");
    assert!(d["ram_bound"].as_u64().unwrap() <= 16 * 1024);

    let devs = h.devices("dl", 2, &["d"]).await;
    h.campaign(json!({"name": "delta", "release_id": r2, "filter": {"tags_all": ["d"]}}))
        .await;
    // The device running the old image is offered the patch besides the full payload.
    let a = checkin_with(&h, &devs[0].1, &hex::encode(Sha256::digest(&old))).await;
    let p = &a.update.unwrap().payloads[0];
    let delta = p.delta.as_ref().expect("a delta offer");
    assert_eq!(delta.source_sha256, hex::encode(Sha256::digest(&old)));
    assert!(!delta.url.contains(&devs[0].0));
    let patch = h
        .client
        .get(h.url(&delta.url))
        .bearer_auth(&devs[0].1)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(patch.len() as u64, delta.size);
    assert_eq!(hex::encode(Sha256::digest(&patch)), delta.sha256);
    assert_eq!(suitcase_delta::apply_to_vec(&old, &patch).unwrap(), new);
    // Applied to anything else, it refuses rather than producing an unsigned image.
    assert!(suitcase_delta::apply_to_vec(&new, &patch).is_err());
    // A device running something else gets only the full payload.
    let a = checkin_with(&h, &devs[1].1, &"ab".repeat(32)).await;
    assert!(a.update.unwrap().payloads[0].delta.is_none());
    // A device the release was not offered to cannot fetch the patch.
    let other = h.devices("other", 1, &[]).await;
    let r = h
        .client
        .get(h.url(&delta.url))
        .bearer_auth(&other[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    h.stop().await;
}

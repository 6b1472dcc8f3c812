//! `suitcase agent` as a process, killed with SIGKILL at random moments of an update and
//! started again on the same state directory, until it has finished: the right image ends up
//! installed once and confirmed, every step is reported, and the campaign completes. The
//! server runs in this test process (SQLite in a temporary directory).

#![expect(clippy::unwrap_used, clippy::std_instead_of_core, reason = "test code")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use suitcase_author::keys::KeyAlg;
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::{Tier, uuid};

struct Api {
    base: String,
    token: String,
    c: reqwest::Client,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .c
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        self.c
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn image(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

fn config(dir: &Path, base: &str, token: &str, anchor: &Path) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"
state_dir = "state"
[server]
url = "{base}"
token = "{token}"
[trust]
anchors = ["{anchor}"]
[identity]
vendor = "example.com"
class = "thermostat"
[polling]
backoff_min_seconds = 0.01
backoff_max_seconds = 0.05
[[component]]
name = "app"
id = "617070"
kind = "file"
slots = ["app-a.bin", "app-b.bin"]
pointer = "app.slot"
capacity = 67108864
restart = ["sh", "-c", "echo \"$SUITCASE_SLOT\" >> {log}"]
"#,
            anchor = anchor.display(),
            log = dir.join("restarts.log").display(),
        ),
    )
    .unwrap();
    path
}

/// SIGKILL at random moments (download, processing, slot writes, activation, reports), then
/// a restart on the same state, again and again: the image is installed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_at_random_moments_installs_exactly_once() {
    let exe = env!("CARGO_BIN_EXE_suitcase");
    let seed = std::env::var("SUITCASE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(random_u64);
    println!("seed {seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let ts = suitcase_test_support::TestServer::start(|_| {}).await;
    let api = Api {
        base: ts.base.clone(),
        token: ts.admin.clone(),
        c: reqwest::Client::new(),
    };
    let (key, anchor) = suitcase_test_support::keypair(ts.dir.path(), "author", KeyAlg::Es256);
    ts.register_key(&api.c, "author", &anchor).await;
    let dir = &ts.dir;
    let vendor = uuid::vendor("example.com");
    let img = image(7, 24 << 20);
    let built = release::build(
        &ReleaseRequest {
            sequence: 3,
            tier: Tier::Basic,
            vendor,
            class: uuid::class(&vendor, "thermostat"),
            device: None,
            images: vec![ImageInput {
                name: "app".into(),
                bytes: img.clone(),
                component: vec![b"app".to_vec()],
                uri: Some("https://fw.example/app-3.bin".into()),
                integrated: false,
                invoke: false,
                delta_from: None,
            }],
            sign: vec![key.clone()],
            encrypt_for: vec![],
            x5chain: vec![],
            content: None,
            reference_uri: None,
            description: None,
        },
        &mut |_, _, _| {},
    )
    .unwrap();
    let r = api
        .c
        .post(format!("{}/api/v1/releases?name=3", api.base))
        .bearer_auth(&api.token)
        .body(built.envelope.clone())
        .send()
        .await
        .unwrap();
    let rel: Value = r.json().await.unwrap();
    let rel = rel["id"].as_str().unwrap().to_owned();
    let r = api
        .c
        .put(format!("{}/api/v1/releases/{rel}/payloads/0", api.base))
        .bearer_auth(&api.token)
        .body(img.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let mut devices = Vec::new();
    for i in 0..4 {
        let d = api
            .post(
                "/api/v1/devices",
                json!({"name": format!("kill-{i}"), "tags": ["k"]}),
            )
            .await;
        let ddir = dir.path().join(format!("kill-{i}"));
        std::fs::create_dir_all(&ddir).unwrap();
        let cfg = config(&ddir, &api.base, d["token"].as_str().unwrap(), &anchor);
        devices.push((d["id"].as_str().unwrap().to_owned(), ddir, cfg));
    }
    let ids: Vec<&str> = devices.iter().map(|d| d.0.as_str()).collect();
    let c = api
        .post(
            "/api/v1/campaigns",
            json!({"name": "kill", "release_id": rel, "filter": {"devices": ids}, "success_threshold": 0.5}),
        )
        .await;
    let campaign = c["id"].as_str().unwrap().to_owned();
    api.post(&format!("/api/v1/campaigns/{campaign}/start"), json!({}))
        .await;

    let mut total_kills = 0;
    for (id, ddir, cfg) in &devices {
        let mut kills = 0;
        let mut finished = false;
        for round in 0..40 {
            let mut child = Command::new(exe)
                .args(["agent", "--once", "--json", "--config"])
                .arg(cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Kill within the first 100 ms (an uninterrupted update of 24 MiB takes about
            // 300 ms in a debug build: a deadline up to 300 ms let whole runs finish unkilled,
            // and a CI run once saw only 4 kills); after six kills let it finish.
            let deadline = (kills < 6).then(|| Duration::from_millis(5 + next() % 100));
            let start = Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break Some(s);
                }
                if deadline.is_some_and(|d| start.elapsed() >= d) {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            println!(
                "device {id} round {round}: {} after {:?}",
                if status.is_some() { "exited" } else { "killed" },
                start.elapsed()
            );
            if let Some(s) = status {
                assert!(
                    s.code() == Some(0) || s.code() == Some(2),
                    "round {round}: exit {s:?}"
                );
                let info = api.get(&format!("/api/v1/devices/{id}")).await;
                if info["update"]["state"] == "succeeded" && ddir.join("app.slot").exists() {
                    let p = std::fs::read_to_string(ddir.join("app.slot")).unwrap();
                    if p == "active=b\nconfirmed=b\n" && !ddir.join("state/journal.json").exists() {
                        finished = true;
                        break;
                    }
                }
            }
        }
        assert!(finished, "device {id} never finished (seed {seed})");
        total_kills += kills;
        // The right image, installed once: slot b holds it, slot a was never touched, the
        // restart hook only ever started slot b (no revert), the work area is empty.
        assert!(std::fs::read(ddir.join("app-b.bin")).unwrap() == img);
        assert!(!ddir.join("app-a.bin").exists());
        let log = std::fs::read_to_string(ddir.join("restarts.log")).unwrap();
        assert!(log.lines().all(|l| l == "b") && !log.is_empty(), "{log}");
        let installed: Value =
            serde_json::from_slice(&std::fs::read(ddir.join("state/installed.json")).unwrap())
                .unwrap();
        assert_eq!(installed["components"][0]["sequence_number"], 3);
        assert!(!installed["reverted"].as_bool().unwrap());
        let work = std::fs::read_dir(ddir.join("state/work")).unwrap().count();
        assert_eq!(work, 0, "temporary data left (seed {seed})");
        let info = api.get(&format!("/api/v1/devices/{id}")).await;
        let steps: Vec<(String, String)> = info["update"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["step"].as_str().unwrap().to_owned(),
                    s["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(steps.len(), 10, "{steps:?}");
        assert!(steps.iter().all(|(_, o)| o == "success"), "{steps:?}");
    }
    assert!(total_kills >= 8, "only {total_kills} kills (seed {seed})");
    let mut c = Value::Null;
    for _ in 0..100 {
        c = api.get(&format!("/api/v1/campaigns/{campaign}")).await;
        if c["state"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c["state"], "completed", "{c} (seed {seed})");
    let failed: u64 = c["waves_progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(failed, 0);
    ts.stop().await;
}

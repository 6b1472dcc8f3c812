//! `suitcase server` as a process: killed with SIGKILL in the middle of a campaign and
//! restarted on the same data, it has lost nothing (campaign state, wave counts, every step
//! report, tokens), and the campaign finishes. On SQLite and on PostgreSQL.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::std_instead_of_core,
    reason = "test code"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::{Tier, uuid};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    base: String,
}

async fn start(data: &Path, port: u16, database: Option<&str>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_suitcase"));
    cmd.args(["server", "--data"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server { child, base };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base = server.base.clone();
    server.kill();
    panic!("suitcase server did not come up on {base}");
}

impl Server {
    /// SIGKILL: no shutdown handler runs.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

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
        let r = self
            .c
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }
    async fn device(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.c
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

fn checkin_body(seq: u64) -> Value {
    json!({"components": [{"id": [hex::encode(b"app")], "sequence_number": seq}]})
}

async fn offered(api: &Api, token: &str) -> bool {
    let r = api
        .device(token, "/api/v1/device/checkin", checkin_body(1))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["action"] == "update"
}

async fn report(api: &Api, token: &str, rel: &str, step: &str) {
    let r = api
        .device(
            token,
            "/api/v1/device/reports",
            json!({"release_id": rel, "step": step, "outcome": "success"}),
        )
        .await;
    assert_eq!(r.status(), 204);
}

const STEPS: [&str; 10] = [
    "receive",
    "check",
    "announce",
    "distribute",
    "process",
    "stage",
    "apply",
    "reverify",
    "activate",
    "clean-up",
];

async fn scenario(database: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let server = start(&data, port, database.as_deref()).await;
    let admin = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let api = Api {
        base: server.base.clone(),
        token: admin.clone(),
        c: reqwest::Client::new(),
    };

    // An author key, a release, six devices, a two-wave campaign.
    let key = dir.path().join("author.key");
    let g = keys::generate(KeyAlg::Es256, "h5w4").unwrap();
    keys::write_atomic(&key, &g.private, true).unwrap();
    let (pem, _) = keys::load_public(&key).unwrap().encode().unwrap();
    api.post(
        "/api/v1/keys",
        json!({"name": "author", "key": String::from_utf8(pem).unwrap()}),
    )
    .await;
    let image = vec![0x42u8; 20_000];
    let vendor = uuid::vendor("example.com");
    let built = release::build(
        &ReleaseRequest {
            sequence: 10,
            tier: Tier::Basic,
            vendor,
            class: uuid::class(&vendor, "thermostat"),
            device: None,
            images: vec![ImageInput {
                name: "app".into(),
                bytes: image.clone(),
                component: vec![b"app".to_vec()],
                uri: Some("https://fw.example/app.bin".into()),
                integrated: false,
                invoke: false,
                delta_from: None,
            }],
            sign: vec![key],
            encrypt_for: vec![],
            x5chain: vec![],
            content: None,
            reference_uri: None,
            description: None,
        },
        &mut |_, _, _| {},
    )
    .unwrap();
    let rel: Value = api
        .c
        .post(format!("{}/api/v1/releases", api.base))
        .bearer_auth(&admin)
        .body(built.envelope)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rel = rel["id"].as_str().unwrap().to_owned();
    let r = api
        .c
        .put(format!("{}/api/v1/releases/{rel}/payloads/0", api.base))
        .bearer_auth(&admin)
        .body(image)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let devices: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("dur-{i}")}))
        .collect();
    let created = api
        .post("/api/v1/devices/batch", Value::Array(devices))
        .await;
    let tokens: Vec<String> = created
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["token"].as_str().unwrap().to_owned())
        .collect();
    let c = api
        .post("/api/v1/campaigns", json!({"name": "dur", "release_id": rel, "filter": {"devices": (0..6).map(|i| format!("dur-{i}")).collect::<Vec<_>>()}, "waves": [{"count": 2}, {"percent": 100.0}], "success_threshold": 1.0}))
        .await;
    let cid = c["id"].as_str().unwrap().to_owned();
    api.post(&format!("/api/v1/campaigns/{cid}/start"), json!({}))
        .await;
    let mut wave0 = Vec::new();
    for t in &tokens {
        if offered(&api, t).await {
            wave0.push(t.clone());
        }
    }
    assert_eq!(wave0.len(), 2);
    for s in STEPS {
        report(&api, &wave0[0], &rel, s).await;
    }
    report(&api, &wave0[1], &rel, "receive").await;
    report(&api, &wave0[1], &rel, "check").await;
    let before = api.get(&format!("/api/v1/campaigns/{cid}")).await;
    let audit_before = api
        .get("/api/v1/audit?limit=1000")
        .await
        .as_array()
        .unwrap()
        .len();

    // Kill -9, restart on the same data.
    server.kill();
    let server = start(&data, port, database.as_deref()).await;
    let after = api.get(&format!("/api/v1/campaigns/{cid}")).await;
    assert_eq!(after["state"], "running");
    assert_eq!(after["opened_waves"], 1);
    assert_eq!(
        after["waves_progress"], before["waves_progress"],
        "wave counts survive"
    );
    assert_eq!(after["waves_progress"][0]["succeeded"], 1);
    assert_eq!(after["waves_progress"][0]["in_progress"], 1);
    assert!(
        api.get("/api/v1/audit?limit=1000")
            .await
            .as_array()
            .unwrap()
            .len()
            >= audit_before
    );
    // Every report is there, and the device tokens still work.
    let devs = api.get("/api/v1/devices?limit=10").await;
    let b_id = devs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    let mut step_counts = Vec::new();
    for id in &b_id {
        let d = api.get(&format!("/api/v1/devices/{id}")).await;
        step_counts.push(d["update"]["steps"].as_array().map_or(0, Vec::len));
    }
    step_counts.sort_unstable();
    assert_eq!(step_counts, vec![0, 0, 0, 0, 2, 10], "step reports survive");
    // The second wave-0 device still has its offer and finishes; wave 1 opens.
    assert!(offered(&api, &wave0[1]).await);
    for s in &STEPS[2..] {
        report(&api, &wave0[1], &rel, s).await;
    }
    let now = api.get(&format!("/api/v1/campaigns/{cid}")).await;
    assert_eq!(now["opened_waves"], 2, "{now}");
    // Kill again in the middle of wave 1.
    let rest: Vec<String> = tokens
        .iter()
        .filter(|t| !wave0.contains(t))
        .cloned()
        .collect();
    assert!(offered(&api, &rest[0]).await);
    for s in STEPS {
        report(&api, &rest[0], &rel, s).await;
    }
    server.kill();
    let server = start(&data, port, database.as_deref()).await;
    for t in &rest[1..] {
        assert!(offered(&api, t).await);
        for s in STEPS {
            report(&api, t, &rel, s).await;
        }
    }
    let done = api.get(&format!("/api/v1/campaigns/{cid}")).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["waves_progress"][1]["succeeded"], 4);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_campaign_loses_nothing_sqlite() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_campaign_loses_nothing_postgres() {
    use sqlx::Executor as _;
    let base = "postgres://postgres@127.0.0.1:5432/test";
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    let schema = format!("dur_{}", hex::encode(b));
    let pool = sqlx::PgPool::connect(base)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 is needed; .ci/run starts it");
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    scenario(Some(format!("{base}?options=-c%20search_path%3D{schema}"))).await;
}

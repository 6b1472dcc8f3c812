//! A real `suitcase server` on a loopback socket (SQLite in a temp directory), an author key,
//! and devices with their own state directories and `agent.toml`, driven through the public
//! APIs only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation,
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::{Value, json};
use suitcase_agent::{Agent, Config, Event, Finished, Hooks, StepFailure};
use suitcase_author::keys::KeyAlg;
use suitcase_author::release::{self, BuiltRelease, ImageInput, ReleaseRequest};
use suitcase_author::{Tier, uuid};
use suitcase_server::RunningServer;
use suitcase_test_support::{TestServer, send};

pub mod hostile;
pub mod proxy;
pub mod trust;

pub struct Fleet {
    pub server: Option<RunningServer>,
    pub base: String,
    pub admin: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub key_pub: PathBuf,
    pub vendor: [u8; 16],
    pub class: [u8; 16],
}

pub use suitcase_test_support::keypair;

/// A device's `[[component]]` table for one MCU `mcu` (id "mcu") on `mcu.flash`: 4 KiB
/// sectors, 32 a slot.
pub const MCU_COMPONENT: &str = r#"
[[component]]
name = "mcu"
id = "6d6375"
kind = "mcu"
flash = "mcu.flash"
sector_size = 4096
slot_sectors = 32
"#;

pub fn image(seed: u8, len: usize) -> Vec<u8> {
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

impl Fleet {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut suitcase_server::Config)) -> Self {
        Self::with_client(tweak, reqwest::Client::new()).await
    }

    pub async fn with_client(
        tweak: impl FnOnce(&mut suitcase_server::Config),
        client: reqwest::Client,
    ) -> Self {
        let ts = TestServer::start(|config| {
            config.poll_interval = 3600;
            tweak(config);
        })
        .await;
        let (key, key_pub) = keypair(ts.dir.path(), "author", KeyAlg::Es256);
        ts.register_key(&client, "author", &key_pub).await;
        let vendor = uuid::vendor("example.com");
        let class = uuid::class(&vendor, "thermostat");
        let TestServer {
            server,
            base,
            admin,
            dir,
            ..
        } = ts;
        Self {
            server,
            base,
            admin,
            client,
            dir,
            key,
            key_pub,
            vendor,
            class,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        send(
            self.client
                .post(self.url(path))
                .bearer_auth(&self.admin)
                .json(body),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.client.get(self.url(path)).bearer_auth(&self.admin)).await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// One `app` image.
    pub fn app(&self, bytes: &[u8], sequence: u64) -> ImageInput {
        ImageInput {
            name: "app".into(),
            bytes: bytes.to_vec(),
            component: vec![b"app".to_vec()],
            uri: Some(format!("https://fw.example/app-{sequence}.bin")),
            integrated: false,
            invoke: false,
            delta_from: None,
        }
    }

    pub fn request(&self, sequence: u64, images: Vec<ImageInput>) -> ReleaseRequest {
        ReleaseRequest {
            sequence,
            tier: Tier::Basic,
            vendor: self.vendor,
            class: self.class,
            device: None,
            images,
            sign: vec![self.key.clone()],
            encrypt_for: vec![],
            x5chain: vec![],
            content: None,
            reference_uri: None,
            description: None,
        }
    }

    pub fn build(&self, req: &ReleaseRequest) -> BuiltRelease {
        release::build(req, &mut |_, _, _| {}).unwrap()
    }

    /// Uploads a built release and its payloads; returns the release id.
    pub async fn upload(&self, built: &BuiltRelease) -> String {
        let r = self
            .client
            .post(self.url(&format!(
                "/api/v1/releases?name=r-{}",
                hex::encode(&built.manifest_digest[..6])
            )))
            .bearer_auth(&self.admin)
            .header("content-type", suitcase_protocol::SUIT_MEDIA_TYPE)
            .body(built.envelope.clone())
            .send()
            .await
            .unwrap();
        let s = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let list = v["payloads"].as_array().cloned().unwrap_or_default();
        for p in list {
            let uri = p["uri"].as_str().unwrap();
            let index = p["index"].as_u64().unwrap();
            let bytes = &built
                .payloads
                .iter()
                .find(|b| b.uri.as_deref() == Some(uri))
                .unwrap()
                .bytes;
            let r = self
                .client
                .put(self.url(&format!("/api/v1/releases/{id}/payloads/{index}")))
                .bearer_auth(&self.admin)
                .body(bytes.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        id
    }

    /// Builds and uploads a one-image (`app`) release.
    pub async fn release(&self, sequence: u64, bytes: &[u8]) -> String {
        let built = self.build(&self.request(sequence, vec![self.app(bytes, sequence)]));
        self.upload(&built).await
    }

    /// Registers a device; returns (id, token).
    pub async fn device(&self, name: &str) -> (String, String) {
        let (s, v) = self
            .post("/api/v1/devices", &json!({"name": name, "tags": ["t"]}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (
            v["id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Uploads a trust update as a release (it has no payload to upload: the document is
    /// integrated) and offers it to `dev` by a campaign; the release id.
    pub async fn offer_trust_update(&self, dev: &Device, update: &[u8]) -> String {
        let r = self
            .client
            .post(self.url(&format!("/api/v1/releases?name=trust-{}", update.len())))
            .bearer_auth(&self.admin)
            .header("content-type", suitcase_protocol::SUIT_MEDIA_TYPE)
            .body(update.to_vec())
            .send()
            .await
            .unwrap();
        let s = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        self.campaign(&id, &[&dev.id], json!({})).await;
        id
    }

    /// Creates and starts a campaign of `release` for `devices`.
    pub async fn campaign(&self, release: &str, devices: &[&str], extra: Value) -> String {
        let mut spec = json!({
            "name": format!("c-{release}"),
            "release_id": release,
            "filter": {"devices": devices},
            "success_threshold": 0.5,
            "error_threshold": 1.0,
        });
        if let (Some(o), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        let (s, v) = self.post("/api/v1/campaigns", &spec).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (s, v) = self
            .post(&format!("/api/v1/campaigns/{id}/start"), &json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        id
    }

    pub async fn campaign_info(&self, id: &str) -> Value {
        let (s, v) = self.get(&format!("/api/v1/campaigns/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    pub async fn device_info(&self, id: &str) -> Value {
        let (s, v) = self.get(&format!("/api/v1/devices/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// A device's directory and configuration.
pub struct Device {
    pub dir: PathBuf,
    pub token: String,
    pub id: String,
    pub extra: String,
    pub components: String,
    /// The server URL the agent uses (a proxy); the fleet's by default.
    pub base: Option<String>,
}

pub const APP_COMPONENT: &str = r#"
[[component]]
name = "app"
id = "617070"
kind = "file"
slots = ["app-a.bin", "app-b.bin"]
pointer = "app.slot"
capacity = 67108864
restart = ["sh", "-c", "echo \"$SUITCASE_SLOT\" >> \"$SUITCASE_SLOT_PATH.restarts\""]
"#;

impl Device {
    pub async fn new(fleet: &Fleet, name: &str) -> Self {
        let (id, token) = fleet.device(name).await;
        let dir = fleet.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            token,
            id,
            extra: String::new(),
            components: APP_COMPONENT.into(),
            base: None,
        }
    }

    pub fn toml(&self, fleet: &Fleet) -> String {
        format!(
            r#"
state_dir = "state"
[server]
url = "{base}"
token = "{token}"
timeout_seconds = 10
[trust]
anchors = ["{anchor}"]
[identity]
vendor = "example.com"
class = "thermostat"
[polling]
backoff_min_seconds = 0.01
backoff_max_seconds = 0.05
{extra}
{components}
"#,
            base = self.base.as_deref().unwrap_or(&fleet.base),
            token = self.token,
            anchor = fleet.key_pub.display(),
            extra = self.extra,
            components = self.components,
        )
    }

    pub fn write_config(&self, fleet: &Fleet) -> PathBuf {
        let path = self.dir.join("agent.toml");
        std::fs::write(&path, self.toml(fleet)).unwrap();
        path
    }

    pub fn config(&self, fleet: &Fleet) -> Config {
        Config::load(&self.write_config(fleet)).unwrap()
    }

    pub fn agent(&self, fleet: &Fleet, hooks: Hooks) -> (Agent, Events) {
        let events = Events::default();
        let agent = Agent::new(self.config(fleet), hooks, events.sink()).unwrap();
        (agent, events)
    }

    /// An agent for this device that holds the key-encryption key `kek` (`trust.decrypt`),
    /// for encrypted (Upgraded tier and up) releases.
    pub fn agent_with_key(&self, fleet: &Fleet, kek: &Path) -> (Agent, Events) {
        let toml = self.toml(fleet).replace(
            "[trust]\n",
            &format!("[trust]\ndecrypt = [\"{}\"]\n", kek.display()),
        );
        let path = self.dir.join("agent.toml");
        std::fs::write(&path, toml).unwrap();
        let events = Events::default();
        let agent = Agent::new(
            Config::load(&path).unwrap(),
            Hooks::default(),
            events.sink(),
        )
        .unwrap();
        (agent, events)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_default()
    }

    pub fn text(&self, name: &str) -> String {
        String::from_utf8(self.read(name)).unwrap()
    }

    /// Writes an executable shell script into the device directory; returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = self.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    pub fn installed(&self) -> Value {
        serde_json::from_slice(&self.read("state/installed.json")).unwrap_or(Value::Null)
    }

    /// Runs one agent cycle whose update must be installed; the agent and its events.
    pub async fn installed_cycle(&self, fleet: &Fleet) -> (Agent, Events) {
        let (mut agent, events) = self.agent(fleet, Hooks::default());
        let update = agent.cycle().await.unwrap().update.unwrap();
        assert_eq!(update.finished, Finished::Installed, "{:?}", events.all());
        (agent, events)
    }

    /// Runs one agent cycle whose update must fail; the agent (to read on) and the failure.
    pub async fn failed_cycle(&self, fleet: &Fleet) -> (Agent, StepFailure) {
        let (mut agent, events) = self.agent(fleet, Hooks::default());
        let update = agent.cycle().await.unwrap().update.unwrap();
        let Finished::Failed(f) = update.finished else {
            panic!("expected a failure: {:?}", events.all());
        };
        (agent, f)
    }

    pub fn work_is_empty(&self) -> bool {
        std::fs::read_dir(self.path("state/work"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    }
}

/// Collected events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Event>>>);

impl Events {
    pub fn sink(&self) -> suitcase_agent::EventSink {
        let me = self.0.clone();
        Arc::new(move |e: &Event| me.lock().unwrap().push(e.clone()))
    }

    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The detail of the first event of `step` that has one.
    pub fn detail(&self, step: &str) -> Option<String> {
        self.all().into_iter().find_map(|e| match e {
            Event::Step {
                step: s, detail, ..
            } if s == step => detail,
            _ => None,
        })
    }

    /// `(step, outcome, reason)` of every step event.
    pub fn steps(&self) -> Vec<(String, String, Option<String>)> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Step {
                    step,
                    outcome,
                    reason,
                    ..
                } => Some((step, outcome, reason)),
                _ => None,
            })
            .collect()
    }
}

/// The `(step, outcome, reason)` the server holds for a device's update.
pub fn server_steps(info: &Value) -> Vec<(String, String, Option<String>)> {
    info["update"]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_owned(),
                s["outcome"].as_str().unwrap_or_default().to_owned(),
                s["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

pub const ALL_STEPS: [&str; 10] = [
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

/// Waits until the campaign's waves show `field` reaching `n` (the server counts reports
/// synchronously, but give it a moment).
pub async fn wait_campaign(fleet: &Fleet, id: &str, field: &str, n: u64) -> Value {
    for _ in 0..100 {
        let v = fleet.campaign_info(id).await;
        let got: u64 = v["waves_progress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w[field].as_u64().unwrap_or(0))
            .sum();
        if got >= n {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "campaign {id} never reached {field} = {n}: {}",
        fleet.campaign_info(id).await
    );
}

/// Runs agents for `dev` until the update has ended, crashing each of the first at the given
/// durable write. Returns the number of crashes and how the update ended, as far as the last
/// agent saw it (`None`: it had ended before the last crash; nothing more was offered).
pub async fn run_with_crashes(
    dev: &Device,
    fleet: &Fleet,
    crashes: &[u64],
) -> (usize, Option<Finished>) {
    let mut crashed = 0;
    for &at in crashes {
        let hooks = Hooks {
            crash_after_writes: Some(at),
            ..Hooks::default()
        };
        let (mut agent, _) = dev.agent(fleet, hooks);
        match agent.cycle().await {
            Err(suitcase_agent::AgentError::InjectedCrash) => crashed += 1,
            Ok(c) => {
                if let Some(u) = c.update {
                    return (crashed, Some(u.finished));
                }
            }
            Err(e) => panic!("crash at {at}: {e}"),
        }
    }
    for _ in 0..5 {
        let (mut agent, events) = dev.agent(fleet, Hooks::default());
        let c = agent.cycle().await.unwrap();
        if let Some(u) = c.update {
            return (crashed, Some(u.finished));
        }
        // The update may have ended just before the crash: nothing more is offered.
        if c.answer.is_some_and(|a| a.update.is_none()) {
            return (crashed, None);
        }
        drop(events);
    }
    panic!("the update never ended");
}

//! A test harness: a real server on a loopback socket with a real database (SQLite in a temp
//! directory, or a fresh schema on the local PostgreSQL), a signing key, and helpers that act
//! as authors, operators and devices through the public HTTP API only.

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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::{Tier, uuid};
use suitcase_protocol::{CheckIn, CheckInAnswer, InstalledComponent, Outcome, Step, StepReport};
use suitcase_server::{Config, RunningServer};
use suitcase_test_support::{TestServer, send};

/// The PostgreSQL server CI starts (trust authentication).
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Harness {
    pub server: Option<RunningServer>,
    pub base: String,
    pub admin: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub clock: Arc<AtomicI64>,
    pub config: Config,
    pub vendor: [u8; 16],
    pub class: [u8; 16],
}

/// A fresh PostgreSQL schema, so that tests do not see each other's data.
pub async fn postgres_schema() -> String {
    use sqlx::Executor as _;
    let name = format!("t_{}", hex::encode(rand_bytes()));
    let pool = sqlx::PgPool::connect(POSTGRES).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {POSTGRES} is needed for this test ({e}); .ci/run starts it")
    });
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .await
        .unwrap();
    format!("{POSTGRES}?options=-c%20search_path%3D{name}")
}

fn rand_bytes() -> [u8; 6] {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    b
}

impl Harness {
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, |_| {}).await
    }

    pub async fn with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::with_client(backend, tweak, reqwest::Client::new()).await
    }

    pub async fn with_client(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        client: reqwest::Client,
    ) -> Self {
        let clock = Arc::new(AtomicI64::new(1_800_000_000));
        let c2 = clock.clone();
        let database = match backend {
            Backend::Postgres => Some(postgres_schema().await),
            Backend::Sqlite => None,
        };
        let ts = TestServer::start(|config| {
            config.clock = Arc::new(move || c2.load(Ordering::SeqCst));
            if database.is_some() {
                config.database = database;
            }
            tweak(config);
        })
        .await;
        // The author's key, registered.
        let key = ts.dir.path().join("author.key");
        let g = keys::generate(KeyAlg::Es256, "h5w4").unwrap();
        keys::write_atomic(&key, &g.private, true).unwrap();
        ts.register_key(&client, "author", &key).await;
        let vendor = uuid::vendor("example.com");
        let class = uuid::class(&vendor, "thermostat");
        let TestServer {
            server,
            base,
            admin,
            dir,
            config,
        } = ts;
        Self {
            server,
            base,
            admin,
            client,
            dir,
            key,
            clock,
            config,
            vendor,
            class,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        send(
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        send(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    pub async fn token(&self, role: &str) -> String {
        let (s, v) = self
            .post(
                &self.admin,
                "/api/v1/tokens",
                &json!({"name": format!("{role}-1"), "role": role}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// Builds a signed release of one image.
    pub fn build(&self, sequence: u64, image: &[u8], uri: &str) -> Vec<u8> {
        self.build_signed(&self.key, sequence, image, uri)
    }

    /// Builds a signed release of one image with a given signing key.
    pub fn build_signed(
        &self,
        key: &std::path::Path,
        sequence: u64,
        image: &[u8],
        uri: &str,
    ) -> Vec<u8> {
        let req = ReleaseRequest {
            sequence,
            tier: Tier::Basic,
            vendor: self.vendor,
            class: self.class,
            device: None,
            images: vec![ImageInput {
                name: "app".into(),
                bytes: image.to_vec(),
                component: vec![b"app".to_vec()],
                uri: Some(uri.into()),
                integrated: false,
                invoke: true,
                delta_from: None,
            }],
            sign: vec![key.to_path_buf()],
            encrypt_for: vec![],
            x5chain: vec![],
            content: None,
            reference_uri: None,
            description: None,
        };
        release::build(&req, &mut |_, _, _| {}).unwrap().envelope
    }

    pub async fn upload_envelope(&self, token: &str, envelope: &[u8]) -> (StatusCode, Value) {
        let r = self
            .client
            .post(self.url("/api/v1/releases?name=test"))
            .bearer_auth(token)
            .header("content-type", suitcase_protocol::SUIT_MEDIA_TYPE)
            .body(envelope.to_vec())
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn upload_payload(
        &self,
        token: &str,
        release: &str,
        index: u32,
        bytes: &[u8],
    ) -> (StatusCode, Value) {
        let r = self
            .client
            .put(self.url(&format!("/api/v1/releases/{release}/payloads/{index}")))
            .bearer_auth(token)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Builds, uploads and completes a release; returns its id.
    pub async fn release(&self, sequence: u64, image: &[u8]) -> String {
        let env = self.build(
            sequence,
            image,
            &format!("https://fw.example/app-{sequence}.bin"),
        );
        let (s, v) = self.upload_envelope(&self.admin, &env).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (s, v) = self.upload_payload(&self.admin, &id, 0, image).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["complete"], true);
        id
    }

    /// Registers `n` devices with `tags`; returns (id, token) pairs.
    pub async fn devices(&self, prefix: &str, n: usize, tags: &[&str]) -> Vec<(String, String)> {
        let list: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("{prefix}-{i}"), "tags": tags}))
            .collect();
        let (s, v) = self
            .post(&self.admin, "/api/v1/devices/batch", &Value::Array(list))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["id"].as_str().unwrap().to_owned(),
                    d["token"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub fn inventory(&self, sequence: u64) -> CheckIn {
        CheckIn {
            vendor_id: Some(uuid::to_string(&self.vendor)),
            class_id: Some(uuid::to_string(&self.class)),
            components: vec![InstalledComponent {
                id: vec![hex::encode(b"app")],
                sequence_number: sequence,
                ..InstalledComponent::default()
            }],
            free_storage: Some(1 << 20),
            boot: None,
            agent: Some("test".into()),
            nonce: None,
        }
    }

    pub async fn checkin(&self, device_token: &str, sequence: u64) -> CheckInAnswer {
        let r = self
            .client
            .post(self.url("/api/v1/device/checkin"))
            .bearer_auth(device_token)
            .json(&self.inventory(sequence))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub async fn report(
        &self,
        device_token: &str,
        release: &str,
        step: Step,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> StatusCode {
        let rep = StepReport {
            release_id: release.into(),
            step,
            outcome,
            reason: reason.map(str::to_owned),
            detail: None,
            progress: None,
            started_at: None,
            log: None,
            suit_report: None,
            offline: false,
        };
        self.client
            .post(self.url("/api/v1/device/reports"))
            .bearer_auth(device_token)
            .json(&rep)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Reports every step successfully.
    pub async fn succeed(&self, device_token: &str, release: &str) {
        for step in Step::ALL {
            assert_eq!(
                self.report(device_token, release, step, Outcome::Success, None)
                    .await,
                StatusCode::NO_CONTENT
            );
        }
    }

    pub async fn campaign(&self, spec: Value) -> String {
        let (s, v) = self.post(&self.admin, "/api/v1/campaigns", &spec).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (s, v) = self
            .post(
                &self.admin,
                &format!("/api/v1/campaigns/{id}/start"),
                &json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        id
    }

    pub async fn campaign_info(&self, id: &str) -> Value {
        let (s, v) = self
            .get(&self.admin, &format!("/api/v1/campaigns/{id}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Marks a release as remediation (offered to quarantined devices, RFC 8240 §9).
    pub async fn mark_remediation(&self, release: &str) {
        let (s, v) = self
            .post(
                &self.admin,
                &format!("/api/v1/releases/{release}/remediation"),
                &json!({"remediation": true}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    /// Cancels a campaign as the admin.
    pub async fn cancel_campaign(&self, id: &str) {
        let (s, v) = self
            .post(
                &self.admin,
                &format!("/api/v1/campaigns/{id}/cancel"),
                &json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    /// The status of a request sent with `token`.
    pub async fn status_of(&self, r: reqwest::RequestBuilder, token: &str) -> StatusCode {
        r.bearer_auth(token).send().await.unwrap().status()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// A random tag, so that tests sharing the MQTT broker do not see each other's topics.
pub fn tag() -> String {
    hex::encode(rand_bytes())
}

/// A SQLite harness whose server pushes to the broker on 127.0.0.1:1883 (which .ci/run
/// starts) under a fresh topic prefix, and that prefix.
pub async fn mqtt_harness() -> (Harness, String) {
    let prefix = format!("suitcase-test-{}", tag());
    let p2 = prefix.clone();
    let h = Harness::with(Backend::Sqlite, move |c| {
        c.mqtt = Some("mqtt://127.0.0.1:1883".into());
        c.mqtt_prefix = p2;
    })
    .await;
    (h, prefix)
}

/// An MQTT client on 127.0.0.1:1883 subscribed to `topics` (each subscription acknowledged
/// before this returns), and the topics of the messages it receives.
pub async fn mqtt_listener(
    topics: &[String],
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut opts = rumqttc::MqttOptions::new(format!("test-{}", tag()), "127.0.0.1", 1883);
    opts.set_keep_alive(core::time::Duration::from_secs(10));
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 64);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = tx.send(p.topic.clone());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = ack_tx.send(());
                }
                Ok(_) => {}
                Err(e) => panic!(
                    "MQTT broker at 127.0.0.1:1883 is needed ({e}); .ci/run starts mosquitto"
                ),
            }
        }
    });
    for t in topics {
        client
            .subscribe(t.clone(), rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::timeout(core::time::Duration::from_secs(5), ack_rx.recv())
            .await
            .unwrap();
    }
    (client, rx)
}

/// The next topic `rx` receives within `ms` milliseconds, if any.
pub async fn next_topic(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    ms: u64,
) -> Option<String> {
    tokio::time::timeout(core::time::Duration::from_millis(ms), rx.recv())
        .await
        .ok()
        .flatten()
}

/// Runs a test body on both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await;
                }
            }
        )*
    };
}

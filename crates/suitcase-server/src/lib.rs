//! The suitcase server: the firmware server and the status tracker of RFC 9019 (§2.3, §3).
//!
//! ```text
//!  authors ──upload (verified against registered keys)──▶ releases ─┐
//!  operators ──devices, groups, campaigns (waves, thresholds)──────▶ rollout engine
//!  devices ──check-in──▶ offer (or nothing + jittered next poll) ◀──┘
//!          ──GET envelope / payload (Range, ETag, If-Range)──▶ payload store (files or S3)
//!          ──step reports──▶ status tracker ──▶ wave advance / pause / rollback
//!  MQTT ◀── "check in now" to opaque per-device and per-group topics
//!  CoAP/DTLS devices ──the same check-in, Block2 downloads, reports; Observe on the offer
//! ```
//!
//! Modules: [`db`] (SQLite or PostgreSQL, migrations) and `store` (every query); `rollout`
//! (pure wave and threshold rules) and `engine` (campaign and member state machines; the state
//! is in the database, changed by conditional writes, so nodes share it); `auth` (management roles, device credentials); `blobs` (payload storage);
//! `wire` (JSON/CBOR and ranges); `push` (MQTT); `api` (the HTTP handlers and the OpenAPI
//! description); `coap` (the device API over CoAP and DTLS, docs/coap.md); `ui` (the operator console at `/ui/`, docs/console.md); `serve` (listeners, TLS and mutual TLS); `limits` (connection cap with idle
//! eviction, header, idle and body timeouts: what a slow client can hold).

#![expect(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a host crate: the core/alloc discipline matters for the device crates only"
)]

mod api;
mod auth;
mod blobs;
mod coap;
pub mod db;
mod deltas;
mod devices;
mod engine;
mod error;
mod freshness;
mod limits;
mod metrics;
mod push;
mod quarantine;
mod rollout;
mod serve;
mod store;
mod ui;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use coap::{CoapCredential, KeyLength as CoapKeyLength};
pub use error::ServerError;
pub use freshness::public_key as freshness_public_key;

pub use devices::CREDENTIAL_MAX_AGE_SECONDS;
pub use quarantine::QuarantineRules;
pub use serve::{ConnInfo, RunningServer, TlsConfig};

/// Seconds since 1970.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The server's clock; tests move it.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Server settings. [`Config::new`] gives the zero-configuration defaults.
#[derive(Clone)]
pub struct Config {
    /// Where the SQLite database, payloads and the first admin token live.
    pub data_dir: PathBuf,
    /// `sqlite://FILE` or `postgres://...`; default: SQLite in `data_dir`.
    pub database: Option<String>,
    /// Payload store: a directory, or `s3://bucket/prefix` (credentials and endpoint from the
    /// usual AWS_* environment variables); default: `data_dir/payloads`.
    pub payloads: Option<String>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The devices' polling interval in seconds (each answer adds ±25% random jitter).
    pub poll_interval: u32,
    /// MQTT broker for push notifications, e.g. `mqtt://127.0.0.1:1883`.
    pub mqtt: Option<String>,
    /// Topic prefix for push notifications.
    pub mqtt_prefix: String,
    /// TLS (and mutual TLS) settings; plain HTTP without.
    pub tls: Option<TlsConfig>,
    /// Where to serve plain CoAP (docs/coap.md): resource discovery only; the device
    /// resources answer 4.01 there. Off (`None`) by default.
    pub coap_listen: Option<SocketAddr>,
    /// Where to serve CoAP over DTLS 1.2 PSK (coaps), the device resources. Off by default.
    pub coaps_listen: Option<SocketAddr>,
    /// Accept device requests over plain HTTP from other hosts. Off by default: the bearer
    /// token would identify the device in clear text (RFC 8240 §3). Loopback is always allowed.
    pub allow_plaintext_devices: bool,
    /// How many registered keys must have signed an uploaded release.
    pub release_signatures: usize,
    /// How often buffered check-ins are written to the database.
    pub flush_interval: Duration,
    /// The clock.
    pub clock: Clock,
    /// The largest envelope or payload accepted, in bytes.
    pub max_upload: u64,
    /// Make delta patches from earlier releases when a payload is uploaded, and offer them to
    /// devices that run the source image.
    pub deltas: bool,
    /// Files in the payload store that nothing refers to and that are older than this are
    /// removed at start and then every `sweep_interval` (by default every half of this, at
    /// least every minute): what a killed upload leaves behind.
    pub orphan_age: Duration,
    /// How often the payload store is swept for orphans after the sweep at start. `None`:
    /// every half of `orphan_age`, at least every minute.
    pub sweep_interval: Option<Duration>,
    /// Limits on connections and slow clients.
    pub limits: Limits,
    /// The hawkBit DDI gateway token (docs/ddi.md): one tenant-wide secret that acts for any
    /// controller and registers unknown ones on first poll, as hawkBit's does. Off (`None`)
    /// by default; devices then use their own token (`TargetToken`).
    pub ddi_gateway_token: Option<String>,
    /// Automatic quarantine (RFC 8240 §9) and the fleet posture's unreachable window
    /// (docs/server.md §8).
    pub quarantine: QuarantineRules,
}

/// Limits on connections and slow clients (docs/server.md §7). Every one bounds what a
/// client can hold on the server without sending a request's worth of bytes.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The most open connections; more wait in the listen queue, and at the limit the
    /// longest-idle connection is closed to make room. Default: 10,000, or less when the
    /// process may open fewer files (three quarters of the soft limit after raising it to the
    /// hard limit).
    pub max_connections: usize,
    /// A request's headers must arrive within this time of the connection opening or of the
    /// previous answer (slowloris).
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// A request body must arrive within this time (JSON and CBOR bodies, envelopes).
    pub body_timeout: Duration,
    /// Payload uploads stream for as long as they need, but a gap this long between two
    /// pieces of the body ends them.
    pub upload_stall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            upload_stall: Duration::from_secs(30),
        }
    }
}

impl core::fmt::Debug for Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database", &self.database.as_deref().map(db::redact))
            .field("payloads", &self.payloads)
            .field("listen", &self.listen)
            .field("poll_interval", &self.poll_interval)
            .field("mqtt", &self.mqtt)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The defaults: `./suitcase-data`, SQLite, 127.0.0.1:8080, polling every 5 minutes.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database: None,
            payloads: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            poll_interval: 300,
            mqtt: None,
            mqtt_prefix: "suitcase".into(),
            tls: None,
            coap_listen: None,
            coaps_listen: None,
            allow_plaintext_devices: false,
            release_signatures: 1,
            flush_interval: Duration::from_secs(1),
            clock: Arc::new(unix_now),
            max_upload: 4 << 30,
            deltas: true,
            orphan_age: Duration::from_secs(3600),
            sweep_interval: None,
            limits: Limits::default(),
            ddi_gateway_token: None,
            quarantine: QuarantineRules::default(),
        }
    }

    fn database_url(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("suitcase.db").display()
            )
        })
    }
}

/// Shared server state.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) db: db::Db,
    pub(crate) blobs: blobs::Blobs,
    pub(crate) config: Config,
    pub(crate) engine: engine::Engine,
    pub(crate) devices: devices::Devices,
    pub(crate) managers: auth::TokenCache,
    pub(crate) sessions: ui::Sessions,
    pub(crate) push: Option<push::Push>,
    pub(crate) deltas: deltas::Deltas,
    pub(crate) metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// `DATA/freshness-key`: signs freshness statements (docs/trust.md, "Freshness").
    pub(crate) freshness: freshness::FreshnessKey,
}

impl core::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub(crate) fn now(&self) -> i64 {
        (self.config.clock)()
    }
}

/// What [`open`] found or created on first start.
#[derive(Debug)]
pub struct Opened {
    /// The first admin token, if this start created it (it is also in `admin_token_file`).
    pub admin_token: Option<String>,
    /// Where the first admin token was written.
    pub admin_token_file: PathBuf,
    /// The database, without its password.
    pub database: String,
    /// The payload store.
    pub payloads: String,
}

/// Opens the database and payload store, creating the first admin token on first start.
async fn open_state(config: Config) -> Result<(AppState, Opened), ServerError> {
    create_data_dir(&config)?;
    let database = db::redact(&config.database_url());
    let db = db::Db::open(&config.database_url()).await?;
    let blobs = blobs::Blobs::open(&config)?;
    let push = match &config.mqtt {
        Some(url) => Some(push::Push::connect(url, &config.mqtt_prefix)?),
        None => None,
    };
    let admin_token_file = config.data_dir.join("admin-token");
    let mut admin_token = None;
    if db.token_count().await? == 0 {
        let (token, hash) = auth::new_secret("sct_a_");
        let id = auth::new_id("tok_");
        db.token_create(
            &id,
            "admin",
            suitcase_protocol::Role::Admin,
            &hash,
            unix_now(),
        )
        .await?;
        write_token(&admin_token_file, &token)?;
        admin_token = Some(token);
    }
    let payloads = blobs.describe.clone();
    let freshness = freshness::FreshnessKey::load_or_create(&config.data_dir)?;
    let state = AppState(Arc::new(Inner {
        engine: engine::Engine::default(),
        devices: devices::Devices::default(),
        managers: auth::TokenCache::default(),
        sessions: ui::Sessions::default(),
        deltas: deltas::Deltas::new(),
        metrics: metrics::handle(),
        db,
        blobs,
        push,
        config,
        freshness,
    }));
    engine::load(&state).await?;
    deltas::load(&state).await?;
    tokio::spawn(blobs::sweeper(Arc::downgrade(&state.0)));
    Ok((
        state,
        Opened {
            admin_token,
            admin_token_file,
            database,
            payloads,
        },
    ))
}

fn create_data_dir(config: &Config) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|error| ServerError::DataDir {
        path: config.data_dir.clone(),
        error,
    })
}

/// Writes an admin token to its file, mode 0600, atomically.
fn write_token(file: &std::path::Path, token: &str) -> Result<(), ServerError> {
    suitcase_host::keys::write_atomic(file, format!("{token}\n").as_bytes(), true).map_err(
        |error| ServerError::TokenFile {
            path: file.to_path_buf(),
            error,
        },
    )
}

/// What [`reset_admin_token`] did.
#[derive(Debug)]
pub struct AdminReset {
    /// The new admin token (also written to `file`).
    pub token: String,
    /// Where it was written (mode 0600).
    pub file: PathBuf,
    /// How many admin tokens worked before.
    pub working_before: i64,
}

/// How many admin tokens work (are not revoked), without starting the server.
///
/// # Errors
/// If the database cannot be opened.
pub async fn admin_token_count(config: &Config) -> Result<i64, ServerError> {
    let db = db::Db::open(&config.database_url()).await?;
    Ok(db.admin_working_count().await?)
}

/// Recovery for an operator locked out (every admin token revoked or lost): creates a new
/// admin token, writes it to `DATA/admin-token` (mode 0600) and records `token.reset` in the
/// audit log as the local actor. Whoever can run this can read the data directory or reach
/// the database directly, so it grants nothing they did not have; the audit entry makes it
/// visible. The server may be running: nothing else changes.
///
/// # Errors
/// If the database cannot be opened or the token file cannot be written.
pub async fn reset_admin_token(config: &Config) -> Result<AdminReset, ServerError> {
    create_data_dir(config)?;
    let db = db::Db::open(&config.database_url()).await?;
    let working_before = db.admin_working_count().await?;
    let (token, hash) = auth::new_secret("sct_a_");
    let id = auth::new_id("tok_");
    let now = unix_now();
    let name = format!("admin (reset {now})");
    db.token_create(&id, &name, suitcase_protocol::Role::Admin, &hash, now)
        .await?;
    let file = config.data_dir.join("admin-token");
    write_token(&file, &token)?;
    db.audit(
        now,
        "local",
        "system",
        "token.reset",
        &id,
        &serde_json::json!({"name": name, "working_admin_tokens_before": working_before}),
    )
    .await?;
    tracing::warn!(token = %id, working_before, "admin token reset from the command line");
    Ok(AdminReset {
        token,
        file,
        working_before,
    })
}

/// A new CoAP credential (DTLS PSK identity and key, docs/coap.md) for the device with this
/// name or id, made from `DATA/coap-secret` (created if missing). Nothing is stored: the
/// identity seals the device id, and the key is derived from the identity. `len`: the key's
/// length ([`CoapKeyLength::Short`] only for DTLS stacks that hold 16 bytes, like tinydtls).
///
/// # Errors
/// If the database cannot be opened, the device is unknown or decommissioned, or the secret
/// cannot be read or created.
pub async fn coap_credential(
    config: &Config,
    device: &str,
    len: CoapKeyLength,
) -> Result<CoapCredential, ServerError> {
    coap::issue(config, device, len).await
}

/// The server's router without a listener, for embedding and in-process tests. Buffered
/// check-ins are written in the background while the router lives.
///
/// # Errors
/// If the database or payload store cannot be opened.
pub async fn app(config: Config) -> Result<(axum::Router, Opened), ServerError> {
    let (state, opened) = open_state(config).await?;
    tokio::spawn(devices::flusher(
        Arc::downgrade(&state.0),
        state.config.flush_interval,
        None,
    ));
    Ok((api::router(state), opened))
}

/// Starts the server: binds, serves in the background, and returns a handle.
///
/// # Errors
/// If the database, payload store or listener cannot be opened.
pub async fn start(config: Config) -> Result<(RunningServer, Opened), ServerError> {
    let (state, opened) = open_state(config).await?;
    let server = serve::serve(state).await?;
    Ok((server, opened))
}

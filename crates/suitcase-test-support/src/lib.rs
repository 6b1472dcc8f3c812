//! Test support shared by the suitcase crates' integration tests (a dev-dependency only, never
//! published): a real `suitcase-server` on a loopback socket with its data in a temporary
//! directory ([`TestServer`]), author key pairs written as `suitcase key generate` writes them
//! ([`keypair`]), JSON calls through the public HTTP API ([`send`]), and trust states and
//! trust updates ([`trust`]).
//!
//! Real parts, no mocks: the server is the one `suitcase server` runs, and tests talk to it
//! over HTTP on 127.0.0.1 only.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failed set-up step must stop the test where it happened"
)]

use core::net::SocketAddr;
use core::time::Duration;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};
use suitcase_author::keys::{self, KeyAlg};
use suitcase_server::{Config, RunningServer};

pub mod trust;

/// A real server on `127.0.0.1:0`, its data in `dir/data`, and the first admin token.
#[derive(Debug)]
pub struct TestServer {
    /// The running server (`None` once stopped).
    pub server: Option<RunningServer>,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// The admin token the fresh server created.
    pub admin: String,
    /// The temporary directory holding the data directory (and whatever the test puts there).
    pub dir: tempfile::TempDir,
    /// The configuration it was started with (after `tweak`).
    pub config: Config,
}

impl TestServer {
    /// Starts a fresh server: data in a new temporary directory, listening on a free loopback
    /// port, statistics flushed every 50 ms; `tweak` adjusts the configuration before the
    /// start. The admin token it returns must be the one it wrote to its token file.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.flush_interval = Duration::from_millis(50);
        tweak(&mut config);
        let (server, opened) = suitcase_server::start(config.clone()).await.unwrap();
        let admin = opened
            .admin_token
            .expect("a fresh server creates an admin token");
        assert_eq!(
            std::fs::read_to_string(&opened.admin_token_file)
                .unwrap()
                .trim(),
            admin
        );
        Self {
            base: server.url(),
            server: Some(server),
            admin,
            dir,
            config,
        }
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("the server runs").addr
    }

    /// Registers the public key in `public` (a file) as trusted signer `name`, as an admin.
    pub async fn register_key(&self, client: &reqwest::Client, name: &str, public: &Path) {
        register_key(client, &self.base, &self.admin, name, public).await;
    }

    /// Shuts the server down gracefully.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// Registers the public key in `public` (a file) as trusted signer `name` on the server at
/// `base`, with the admin token `admin`. The server then takes releases it signs; no device
/// trusts it by this.
pub async fn register_key(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    name: &str,
    public: &Path,
) {
    let (pem, _) = keys::load_public(public).unwrap().encode().unwrap();
    let (s, v) = send(
        client
            .post(format!("{base}/api/v1/keys"))
            .bearer_auth(admin)
            .json(&json!({"name": name, "key": String::from_utf8(pem).unwrap()})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// Writes a key pair as `suitcase key generate` does: `dir/NAME.key` and `dir/NAME.pub`;
/// returns (private, public) paths.
pub fn keypair(dir: &Path, name: &str, alg: KeyAlg) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let g = keys::generate(alg, "h5w4").unwrap();
    keys::write_atomic(&private, &g.private, true).unwrap();
    let p = keys::load_private(&private).unwrap();
    let (bytes, _) = keys::public_of(&p).unwrap().encode().unwrap();
    std::fs::write(&public, bytes).unwrap();
    (private, public)
}

/// Sends a request and returns its status and body: JSON if it parses, else the text as a
/// JSON string.
pub async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = request.send().await.unwrap();
    let s = r.status();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

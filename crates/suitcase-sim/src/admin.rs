//! The management API calls a rehearsal makes (keys, releases, devices, campaigns), as an
//! operator's tools would make them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use suitcase_author::release::BuiltRelease;
use suitcase_protocol::{CampaignCreate, CampaignInfo, DeviceCreate, DeviceCreated, KeyCreate};

use crate::Error;

/// A management API client with an admin token.
#[derive(Clone, Debug)]
pub struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// Devices registered per batch request (the server takes up to 10,000).
const BATCH: usize = 2000;

impl Admin {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: &str, http: reqwest::Client) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let r = req.bearer_auth(&self.token).send().await.map_err(|e| {
            Error::Server(format!("{what}: {e} (is the server at {} up?)", self.base))
        })?;
        let status = r.status();
        let text = r
            .text()
            .await
            .map_err(|e| Error::Server(format!("{what}: {e}")))?;
        if !status.is_success() {
            let hint = if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                " (the simulator needs an admin token: it registers a signing key, devices and a campaign)"
            } else {
                ""
            };
            return Err(Error::Server(format!("{what}: {status}: {text}{hint}")));
        }
        serde_json::from_str(&text)
            .map_err(|e| Error::Server(format!("{what}: unexpected answer ({e}): {text}")))
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        self.send(
            what,
            self.http.post(format!("{}{path}", self.base)).json(body),
        )
        .await
    }

    /// Registers an author key (PEM) under `name`.
    ///
    /// # Errors
    /// [`Error::Server`].
    pub async fn add_key(&self, name: &str, pem: &str) -> Result<(), Error> {
        let _: Value = self
            .post(
                "register the signing key",
                "/api/v1/keys",
                &KeyCreate {
                    name: name.to_owned(),
                    key: pem.to_owned(),
                },
            )
            .await?;
        Ok(())
    }

    /// Uploads a built release and its payloads; returns the release id.
    ///
    /// # Errors
    /// [`Error::Server`], e.g. when the server refuses the signature.
    pub async fn upload(&self, name: &str, built: &BuiltRelease) -> Result<String, Error> {
        let v: Value = self
            .send(
                "upload the release",
                self.http
                    .post(format!("{}/api/v1/releases?name={name}", self.base))
                    .header("content-type", suitcase_protocol::SUIT_MEDIA_TYPE)
                    .body(built.envelope.clone()),
            )
            .await?;
        let id = v["id"]
            .as_str()
            .ok_or_else(|| Error::Server(format!("upload the release: no id in {v}")))?
            .to_owned();
        for p in v["payloads"].as_array().into_iter().flatten() {
            let (Some(uri), Some(index)) = (p["uri"].as_str(), p["index"].as_u64()) else {
                continue;
            };
            let Some(bytes) = built
                .payloads
                .iter()
                .find(|b| b.uri.as_deref() == Some(uri))
                .map(|b| b.bytes.clone())
            else {
                return Err(Error::Server(format!(
                    "the server expects a payload at {uri} that the release does not have"
                )));
            };
            let _: Value = self
                .send(
                    "upload a payload",
                    self.http
                        .put(format!(
                            "{}/api/v1/releases/{id}/payloads/{index}",
                            self.base
                        ))
                        .body(bytes),
                )
                .await?;
        }
        Ok(id)
    }

    /// Registers devices (in batches); returns their ids and tokens in order.
    ///
    /// # Errors
    /// [`Error::Server`].
    pub async fn register(&self, devices: &[DeviceCreate]) -> Result<Vec<DeviceCreated>, Error> {
        let mut out = Vec::with_capacity(devices.len());
        for chunk in devices.chunks(BATCH) {
            let created: Vec<DeviceCreated> = self
                .post("register devices", "/api/v1/devices/batch", chunk)
                .await?;
            out.extend(created);
        }
        Ok(out)
    }

    /// Creates and starts a campaign; returns its id.
    ///
    /// # Errors
    /// [`Error::Server`].
    pub async fn campaign(&self, spec: &CampaignCreate) -> Result<String, Error> {
        let c: CampaignInfo = self
            .post("create the campaign", "/api/v1/campaigns", spec)
            .await?;
        let _: Value = self
            .post(
                "start the campaign",
                &format!("/api/v1/campaigns/{}/start", c.id),
                &serde_json::Map::new(),
            )
            .await?;
        Ok(c.id)
    }

    /// Waits (up to `timeout`) until the server has made a delta patch for the release:
    /// it makes them in the background after an upload, and devices offered the update
    /// before that download the full payload. `false` if none came (a delta may not pay).
    ///
    /// # Errors
    /// [`Error::Server`].
    pub async fn wait_for_deltas(
        &self,
        release_id: &str,
        timeout: std::time::Duration,
    ) -> Result<bool, Error> {
        let start = std::time::Instant::now();
        loop {
            let v: Value = self
                .send(
                    "read the release",
                    self.http
                        .get(format!("{}/api/v1/releases/{release_id}", self.base)),
                )
                .await?;
            if v["deltas"].as_array().is_some_and(|d| !d.is_empty()) {
                return Ok(true);
            }
            if start.elapsed() >= timeout {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A campaign's state and wave counts.
    ///
    /// # Errors
    /// [`Error::Server`].
    pub async fn campaign_info(&self, id: &str) -> Result<CampaignInfo, Error> {
        self.send(
            "read the campaign",
            self.http
                .get(format!("{}/api/v1/campaigns/{id}", self.base)),
        )
        .await
    }
}

//! The management API calls a rehearsal makes (keys, releases, devices, campaigns), as an
//! operator's tools would make them: through [`suitcase_client`], the client `suitcase fleet`
//! uses.

use suitcase_author::release::BuiltRelease;
use suitcase_client::{CampaignAction, Client, Error as ClientError};
use suitcase_protocol::{CampaignCreate, CampaignInfo, DeviceCreate, DeviceCreated, KeyCreate};

use crate::Error;

/// A management API client with an admin token.
#[derive(Clone, Debug)]
pub struct Admin {
    client: Client,
}

/// Devices registered per batch request (the server takes up to 10,000).
const BATCH: usize = 2000;

impl Admin {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: &str, http: reqwest::Client) -> Self {
        Self {
            client: Client::new(base, token, http),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        self.client.base()
    }

    /// A client error as the rehearsal reports it: what it was doing, and what to check.
    fn error(&self, what: &str, e: ClientError) -> Error {
        Error::Server(match e {
            ClientError::Unreachable { source, .. } => {
                format!("{what}: {source} (is the server at {} up?)", self.base())
            }
            ClientError::Api(r) => {
                let hint = if r.status == reqwest::StatusCode::UNAUTHORIZED
                    || r.status == reqwest::StatusCode::FORBIDDEN
                {
                    " (the simulator needs an admin token: it registers a signing key, devices and a campaign)"
                } else {
                    ""
                };
                format!("{what}: {}: {}{hint}", r.status, r.body)
            }
            other => format!("{what}: {other}"),
        })
    }

    /// Registers an author key (PEM) under `name`.
    ///
    /// # Errors
    /// [`Error::Server`].
    pub async fn add_key(&self, name: &str, pem: &str) -> Result<(), Error> {
        let key = KeyCreate {
            name: name.to_owned(),
            key: pem.to_owned(),
        };
        self.client
            .add_key(&key)
            .await
            .map_err(|e| self.error("register the signing key", e))?;
        Ok(())
    }

    /// Uploads a built release and its payloads; returns the release id.
    ///
    /// # Errors
    /// [`Error::Server`], e.g. when the server refuses the signature.
    pub async fn upload(&self, name: &str, built: &BuiltRelease) -> Result<String, Error> {
        let rel = self
            .client
            .upload_envelope(built.envelope.clone(), Some(name))
            .await
            .map_err(|e| self.error("upload the release", e))?
            .value;
        for p in &rel.payloads {
            let Some(bytes) = built
                .payloads
                .iter()
                .find(|b| b.uri.as_deref() == Some(p.uri.as_str()))
                .map(|b| b.bytes.clone())
            else {
                return Err(Error::Server(format!(
                    "the server expects a payload at {} that the release does not have",
                    p.uri
                )));
            };
            self.client
                .put_payload(&rel.id, p.index, bytes)
                .await
                .map_err(|e| self.error("upload a payload", e))?;
        }
        Ok(rel.id)
    }

    /// Registers devices (in batches); returns their ids and tokens in order.
    ///
    /// # Errors
    /// [`Error::Server`].
    pub async fn register(&self, devices: &[DeviceCreate]) -> Result<Vec<DeviceCreated>, Error> {
        let mut out = Vec::with_capacity(devices.len());
        for chunk in devices.chunks(BATCH) {
            let created = self
                .client
                .add_devices(chunk)
                .await
                .map_err(|e| self.error("register devices", e))?;
            out.extend(created.value);
        }
        Ok(out)
    }

    /// Creates and starts a campaign; returns its id.
    ///
    /// # Errors
    /// [`Error::Server`].
    pub async fn campaign(&self, spec: &CampaignCreate) -> Result<String, Error> {
        let c = self
            .client
            .create_campaign(spec)
            .await
            .map_err(|e| self.error("create the campaign", e))?
            .value;
        self.client
            .campaign_action(&c.id, CampaignAction::Start)
            .await
            .map_err(|e| self.error("start the campaign", e))?;
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
            let r = self
                .client
                .release(release_id)
                .await
                .map_err(|e| self.error("read the release", e))?;
            if !r.value.deltas.is_empty() {
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
        Ok(self
            .client
            .campaign(id)
            .await
            .map_err(|e| self.error("read the campaign", e))?
            .value)
    }
}

//! A typed client for the suitcase server's management API (`/api/v1/...`: keys, releases,
//! devices, groups, campaigns, tokens, audit), used by `suitcase fleet` and the fleet
//! simulator.
//!
//! Each method is one endpoint: it sends the `suitcase-protocol` request type and returns
//! the `suitcase-protocol` type the server's handler answers with, in a [`Reply`] that also
//! keeps the server's JSON as it came (what `suitcase fleet --json` prints). A refusal is an
//! [`Error::Api`] with the status and the server's [`ApiError`](suitcase_protocol::ApiError) (stable code, message, hint),
//! so that a caller can branch on the code and tell its user what to do next.
//!
//! The client is async (reqwest); `suitcase fleet` drives it on a current-thread runtime.
//! Answers are read up to [`ANSWER_MAX`] bytes.

use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use suitcase_protocol::mgmt::{
    DeviceQuarantine, FleetPosture, QuarantineRequest, ReleaseRemediation, RemediationRequest,
};
use suitcase_protocol::{
    AuditEntry, CampaignCreate, CampaignDryRun, CampaignInfo, CampaignMember, DeviceCreate,
    DeviceCreated, DeviceInfo, DeviceList, DevicePatch, GroupCreate, GroupInfo, KeyCreate, KeyInfo,
    ReleaseInfo, TokenCreate, TokenInfo,
};

mod error;
mod strict;

pub use error::{Error, Refusal};
pub use strict::unknown_fields;

/// The largest answer read (a list of 10,000 devices with their inventories fits easily).
pub const ANSWER_MAX: usize = 256 << 20;

/// A successful answer: the typed value and the server's JSON as it came.
#[derive(Clone, Debug)]
pub struct Reply<T> {
    /// The answer as its `suitcase-protocol` type.
    pub value: T,
    /// The answer as the server sent it (field order kept), for `--json` output.
    pub raw: Value,
}

/// What an operator can do to a campaign (`POST /api/v1/campaigns/{id}/{action}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignAction {
    /// Cancel for good.
    Cancel,
    /// Stop offering the update.
    Pause,
    /// Resume a paused campaign.
    Resume,
    /// Offer the rollback release to the opened waves.
    Rollback,
    /// Start a draft.
    Start,
}

impl CampaignAction {
    /// The action's name in the path.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Rollback => "rollback",
            Self::Start => "start",
        }
    }
}

/// A management API client: a server, a token, and a connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`) with a management
    /// token, over `http` (which holds the TLS settings, e.g. a private CA).
    pub fn new(base: &str, token: &str, http: reqwest::Client) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    /// The server's base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    // ---- keys (admin) ----

    /// Registers a release-signing key (`POST /api/v1/keys`).
    ///
    /// # Errors
    /// [`Error`]; e.g. `409 key-exists`, `422` for a private or unreadable key.
    pub async fn add_key(&self, key: &KeyCreate) -> Result<Reply<KeyInfo>, Error> {
        self.call(self.post("/api/v1/keys").json(key)).await
    }

    /// The registered keys (`GET /api/v1/keys`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn keys(&self) -> Result<Reply<Vec<KeyInfo>>, Error> {
        self.call(self.get("/api/v1/keys")).await
    }

    // ---- releases (author) ----

    /// Uploads a signed envelope (`POST /api/v1/releases`), under `name` if given.
    ///
    /// # Errors
    /// [`Error`]; an envelope uploaded before is `409 duplicate-release` with the release's
    /// id in [`ApiError::id`](suitcase_protocol::ApiError::id).
    pub async fn upload_envelope(
        &self,
        envelope: Vec<u8>,
        name: Option<&str>,
    ) -> Result<Reply<ReleaseInfo>, Error> {
        self.upload_envelope_marked(envelope, name, false).await
    }

    /// Uploads a signed envelope (`POST /api/v1/releases`), under `name` if given, and with
    /// `remediation` marked remediation at once (`?remediation=true`: the only releases a
    /// quarantined device is offered; admin only, docs/server.md §8).
    ///
    /// # Errors
    /// [`Error`]; as [`Self::upload_envelope`], and `403 forbidden` for `remediation` from a
    /// token without the admin role.
    pub async fn upload_envelope_marked(
        &self,
        envelope: Vec<u8>,
        name: Option<&str>,
        remediation: bool,
    ) -> Result<Reply<ReleaseInfo>, Error> {
        let mut q: Vec<String> = Vec::new();
        if let Some(n) = name {
            q.push(format!("name={}", url_escape(n)));
        }
        if remediation {
            q.push("remediation=true".into());
        }
        let q = if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        };
        let req = self
            .post(&format!("/api/v1/releases{q}"))
            .header("content-type", suitcase_protocol::SUIT_MEDIA_TYPE)
            .body(envelope);
        self.call(req).await
    }

    /// Uploads payload `index` of release `id` (`PUT /api/v1/releases/{id}/payloads/{index}`).
    ///
    /// # Errors
    /// [`Error`]; e.g. `409 payload-exists`, `422 payload-mismatch`.
    pub async fn put_payload(
        &self,
        id: &str,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<Reply<ReleaseInfo>, Error> {
        let req = self
            .http
            .put(self.url(&format!(
                "/api/v1/releases/{}/payloads/{index}",
                url_escape(id)
            )))
            .body(bytes);
        self.call(req).await
    }

    /// Every release (`GET /api/v1/releases`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn releases(&self) -> Result<Reply<Vec<ReleaseInfo>>, Error> {
        self.call(self.get("/api/v1/releases")).await
    }

    /// One release (`GET /api/v1/releases/{id}`).
    ///
    /// # Errors
    /// [`Error`]; `404` when there is none.
    pub async fn release(&self, id: &str) -> Result<Reply<ReleaseInfo>, Error> {
        self.call(self.get(&format!("/api/v1/releases/{}", url_escape(id))))
            .await
    }

    /// Archives a release (`POST /api/v1/releases/{id}/archive`).
    ///
    /// # Errors
    /// [`Error`]; `409 release-in-use` while a live campaign uses it.
    pub async fn archive_release(&self, id: &str) -> Result<Reply<ReleaseInfo>, Error> {
        self.call(self.action(&format!("/api/v1/releases/{}/archive", url_escape(id))))
            .await
    }

    /// Deletes a release no campaign used (`DELETE /api/v1/releases/{id}`).
    ///
    /// # Errors
    /// [`Error`]; `409 release-in-use` or `release-is-delta-base`.
    pub async fn delete_release(&self, id: &str) -> Result<(), Error> {
        self.call_empty(self.delete(&format!("/api/v1/releases/{}", url_escape(id))))
            .await
    }

    // ---- devices and groups (operator) ----

    /// Registers a device (`POST /api/v1/devices`); its token is in the answer only.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn add_device(&self, device: &DeviceCreate) -> Result<Reply<DeviceCreated>, Error> {
        self.call(self.post("/api/v1/devices").json(device)).await
    }

    /// Registers devices in one request (`POST /api/v1/devices/batch`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn add_devices(
        &self,
        devices: &[DeviceCreate],
    ) -> Result<Reply<Vec<DeviceCreated>>, Error> {
        self.call(self.post("/api/v1/devices/batch").json(devices))
            .await
    }

    /// At most `limit` devices, those with every tag of `tags` (`GET /api/v1/devices`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn devices(
        &self,
        tags: &[String],
        limit: u32,
    ) -> Result<Reply<Vec<DeviceInfo>>, Error> {
        let q = if tags.is_empty() {
            String::new()
        } else {
            format!(
                "&tags={}",
                tags.iter()
                    .map(|t| url_escape(t))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        self.call(self.get(&format!("/api/v1/devices?limit={limit}{q}")))
            .await
    }

    /// One device, with its inventory and last update (`GET /api/v1/devices/{id}`).
    ///
    /// # Errors
    /// [`Error`]; `404` when there is none.
    pub async fn device(&self, id: &str) -> Result<Reply<DeviceInfo>, Error> {
        self.call(self.get(&format!("/api/v1/devices/{}", url_escape(id))))
            .await
    }

    /// Adds and removes tags (`PATCH /api/v1/devices/{id}`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn tag_device(
        &self,
        id: &str,
        patch: &DevicePatch,
    ) -> Result<Reply<DeviceInfo>, Error> {
        let req = self
            .http
            .patch(self.url(&format!("/api/v1/devices/{}", url_escape(id))))
            .json(patch);
        self.call(req).await
    }

    /// Decommissions a device (`DELETE /api/v1/devices/{id}`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn revoke_device(&self, id: &str) -> Result<(), Error> {
        self.call_empty(self.delete(&format!("/api/v1/devices/{}", url_escape(id))))
            .await
    }

    /// Issues a new device token (`POST /api/v1/devices/{id}/token`); the old one stops
    /// working.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn rotate_device_token(&self, id: &str) -> Result<Reply<DeviceCreated>, Error> {
        self.call(self.action(&format!("/api/v1/devices/{}/token", url_escape(id))))
            .await
    }

    /// Creates a group (`POST /api/v1/groups`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn create_group(&self, group: &GroupCreate) -> Result<Reply<GroupInfo>, Error> {
        self.call(self.post("/api/v1/groups").json(group)).await
    }

    /// Adds devices to a group (`POST /api/v1/groups/{name}/devices`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn add_to_group(&self, name: &str, devices: &DeviceList) -> Result<(), Error> {
        self.call_empty(
            self.post(&format!("/api/v1/groups/{}/devices", url_escape(name)))
                .json(devices),
        )
        .await
    }

    /// Every group (`GET /api/v1/groups`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn groups(&self) -> Result<Reply<Vec<GroupInfo>>, Error> {
        self.call(self.get("/api/v1/groups")).await
    }

    // ---- quarantine (RFC 8240 §9, docs/server.md §8) ----

    /// A device's quarantine (`GET /api/v1/devices/{id}/quarantine`).
    ///
    /// # Errors
    /// [`Error`]; `404` when there is no such device.
    pub async fn device_quarantine(&self, id: &str) -> Result<Reply<DeviceQuarantine>, Error> {
        self.call(self.get(&format!("/api/v1/devices/{}/quarantine", url_escape(id))))
            .await
    }

    /// Quarantines a device (`POST /api/v1/devices/{id}/quarantine`, admin).
    ///
    /// # Errors
    /// [`Error`]; `409 already-quarantined`.
    pub async fn quarantine_device(
        &self,
        id: &str,
        request: &QuarantineRequest,
    ) -> Result<Reply<DeviceQuarantine>, Error> {
        self.call(
            self.post(&format!("/api/v1/devices/{}/quarantine", url_escape(id)))
                .json(request),
        )
        .await
    }

    /// Releases a device from quarantine (`DELETE /api/v1/devices/{id}/quarantine`, admin).
    ///
    /// # Errors
    /// [`Error`]; `409 not-quarantined`.
    pub async fn release_quarantine(&self, id: &str) -> Result<Reply<DeviceQuarantine>, Error> {
        self.call(self.delete(&format!("/api/v1/devices/{}/quarantine", url_escape(id))))
            .await
    }

    /// A release's remediation flag (`GET /api/v1/releases/{id}/remediation`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn remediation(&self, id: &str) -> Result<Reply<ReleaseRemediation>, Error> {
        self.call(self.get(&format!("/api/v1/releases/{}/remediation", url_escape(id))))
            .await
    }

    /// Marks a release remediation or not (`POST /api/v1/releases/{id}/remediation`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn set_remediation(
        &self,
        id: &str,
        request: RemediationRequest,
    ) -> Result<Reply<ReleaseRemediation>, Error> {
        self.call(
            self.post(&format!("/api/v1/releases/{}/remediation", url_escape(id)))
                .json(&request),
        )
        .await
    }

    /// The fleet's posture (`GET /api/v1/fleet/posture`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn posture(&self) -> Result<Reply<FleetPosture>, Error> {
        self.call(self.get("/api/v1/fleet/posture")).await
    }

    // ---- the fleet's trust state (admin; docs/trust.md, "The server and trust updates") ----

    /// The trust state in force (`GET /api/v1/trust-state`), as the server's JSON.
    ///
    /// # Errors
    /// [`Error`]; none registered is `404 no-trust-state`.
    pub async fn trust_state(&self) -> Result<Reply<Value>, Error> {
        self.call(self.get("/api/v1/trust-state")).await
    }

    /// Registers the fleet's trust state, a trust document given in hex (`POST
    /// /api/v1/trust-state`).
    ///
    /// # Errors
    /// [`Error`]; one registered already is `409 trust-state-exists`.
    pub async fn set_trust_state(&self, document_hex: &str) -> Result<Reply<Value>, Error> {
        let body = serde_json::json!({"document": document_hex});
        self.call(self.post("/api/v1/trust-state").json(&body))
            .await
    }

    /// Removes the registered trust state (`DELETE /api/v1/trust-state`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn remove_trust_state(&self) -> Result<(), Error> {
        self.call_empty(self.delete("/api/v1/trust-state")).await
    }

    // ---- campaigns (operator) ----

    /// Creates a campaign, as a draft (`POST /api/v1/campaigns`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn create_campaign(
        &self,
        spec: &CampaignCreate,
    ) -> Result<Reply<CampaignInfo>, Error> {
        self.call(self.post("/api/v1/campaigns").json(spec)).await
    }

    /// What a campaign would target if it started now (`POST /api/v1/campaigns/dry-run`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn dry_run(&self, spec: &CampaignCreate) -> Result<Reply<CampaignDryRun>, Error> {
        self.call(self.post("/api/v1/campaigns/dry-run").json(spec))
            .await
    }

    /// Starts, pauses, resumes, cancels or rolls back a campaign
    /// (`POST /api/v1/campaigns/{id}/{action}`).
    ///
    /// # Errors
    /// [`Error`]; `409` when the campaign's state does not allow it.
    pub async fn campaign_action(
        &self,
        id: &str,
        action: CampaignAction,
    ) -> Result<Reply<CampaignInfo>, Error> {
        self.call(self.action(&format!(
            "/api/v1/campaigns/{}/{}",
            url_escape(id),
            action.name()
        )))
        .await
    }

    /// Every campaign (`GET /api/v1/campaigns`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn campaigns(&self) -> Result<Reply<Vec<CampaignInfo>>, Error> {
        self.call(self.get("/api/v1/campaigns")).await
    }

    /// One campaign with its progress per wave (`GET /api/v1/campaigns/{id}`).
    ///
    /// # Errors
    /// [`Error`]; `404` when there is none.
    pub async fn campaign(&self, id: &str) -> Result<Reply<CampaignInfo>, Error> {
        self.call(self.get(&format!("/api/v1/campaigns/{}", url_escape(id))))
            .await
    }

    /// Every device of a campaign with its state (`GET /api/v1/campaigns/{id}/devices`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn campaign_devices(&self, id: &str) -> Result<Reply<Vec<CampaignMember>>, Error> {
        self.call(self.get(&format!("/api/v1/campaigns/{}/devices", url_escape(id))))
            .await
    }

    // ---- tokens and audit (admin) ----

    /// Creates a management token (`POST /api/v1/tokens`); its secret is in the answer only.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn create_token(&self, token: &TokenCreate) -> Result<Reply<TokenInfo>, Error> {
        self.call(self.post("/api/v1/tokens").json(token)).await
    }

    /// Every management token, never their secrets (`GET /api/v1/tokens`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn tokens(&self) -> Result<Reply<Vec<TokenInfo>>, Error> {
        self.call(self.get("/api/v1/tokens")).await
    }

    /// Revokes a management token (`DELETE /api/v1/tokens/{id}`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn revoke_token(&self, id: &str) -> Result<(), Error> {
        self.call_empty(self.delete(&format!("/api/v1/tokens/{}", url_escape(id))))
            .await
    }

    /// The audit log, oldest first, at most `limit` entries (`GET /api/v1/audit`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn audit(&self, limit: u32) -> Result<Reply<Vec<AuditEntry>>, Error> {
        self.call(self.get(&format!("/api/v1/audit?limit={limit}")))
            .await
    }

    // ---- plumbing ----

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path))
    }

    fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path))
    }

    fn delete(&self, path: &str) -> RequestBuilder {
        self.http.delete(self.url(path))
    }

    /// A POST of an action that takes no parameters (an empty JSON object).
    fn action(&self, path: &str) -> RequestBuilder {
        self.post(path).json(&serde_json::Map::new())
    }

    /// Sends a request: its status and body, whatever the status.
    async fn exchange(&self, req: RequestBuilder) -> Result<(StatusCode, String), Error> {
        let unreachable = |source| Error::Unreachable {
            base: self.base.clone(),
            source,
        };
        let mut r = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(unreachable)?;
        let status = r.status();
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > ANSWER_MAX {
                return Err(Error::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Sends a request and reads a success answer as `T`.
    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<Reply<T>, Error> {
        let (status, body) = self.exchange(req).await?;
        if !status.is_success() {
            return Err(Error::Api(Box::new(Refusal::new(status, body))));
        }
        parse(&body)
    }

    /// Sends a request whose success answer carries nothing (`204`).
    async fn call_empty(&self, req: RequestBuilder) -> Result<(), Error> {
        let (status, body) = self.exchange(req).await?;
        if !status.is_success() {
            return Err(Error::Api(Box::new(Refusal::new(status, body))));
        }
        Ok(())
    }
}

/// Reads an answer as `T`, keeping the JSON as it came.
fn parse<T: DeserializeOwned>(body: &str) -> Result<Reply<T>, Error> {
    let unexpected = |source| Error::Unexpected {
        source,
        body: body.to_owned(),
    };
    let raw: Value = serde_json::from_str(body).map_err(unexpected)?;
    let value = T::deserialize(&raw).map_err(unexpected)?;
    Ok(Reply { value, raw })
}

/// Percent-encodes a query value or a path segment (RFC 3986 §2.3: only unreserved characters
/// stay), so an id or tag holding `/`, `&`, `#`, `,` or `?` cannot change the request.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(url_escape("v1.2 beta/&x"), "v1.2%20beta%2F%26x");
    }

    #[test]
    fn path_segments_are_escaped() {
        let c = Client::new("http://127.0.0.1:9", "t", reqwest::Client::new());
        let url = c.url(&format!("/api/v1/devices/{}", url_escape("a/../b?x#y")));
        assert_eq!(url, "http://127.0.0.1:9/api/v1/devices/a%2F..%2Fb%3Fx%23y");
    }
}

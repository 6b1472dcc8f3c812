//! Who is asking: management tokens with roles, and device credentials (bearer token or TLS
//! client certificate).
//!
//! Secrets are 256-bit random values; the server stores only their SHA-256, so a database
//! leak does not hand out credentials. A token's prefix says what it is (`sct_a_` management,
//! `sct_d_` device) so that a token pasted in the wrong place gets a clear error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use hashlink::LruCache;
use sha2::{Digest as _, Sha256};
use suitcase_protocol::Role;

use crate::AppState;
use crate::devices::DeviceEntry;
use crate::error::ApiErr;
use crate::serve::ConnInfo;
use crate::store::TokenRow;

/// A random identifier with a prefix, e.g. `dev_3f2a...`.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    fill(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

fn fill(b: &mut [u8]) {
    // The OS generator does not fail on the platforms the server runs on; if it ever did,
    // refusing to start beats issuing guessable credentials.
    #[allow(
        clippy::expect_used,
        reason = "no safe fallback for credential randomness"
    )]
    getrandom::fill(b).expect("the operating system's random generator failed");
}

/// A new secret and the hash to store.
pub(crate) fn new_secret(prefix: &str) -> (String, String) {
    let mut b = [0u8; 32];
    fill(&mut b);
    let token = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    );
    let hash = hash_secret(&token);
    (token, hash)
}

/// The stored form of a secret.
pub(crate) fn hash_secret(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The most management tokens a node keeps in memory (least recently used go first).
pub(crate) const TOKEN_CACHE_CAP: usize = 4096;

/// Management tokens seen recently (hash → row and when it was read), so that each request
/// costs no query. Bounded, and trusted for at most
/// [`crate::devices::CREDENTIAL_MAX_AGE_SECONDS`]; revocations on other nodes arrive sooner
/// through [`crate::devices::poll_revocations`].
pub(crate) struct TokenCache {
    map: Mutex<LruCache<String, (TokenRow, i64)>>,
    /// How many times tokens were forgotten: a row read before a revocation committed is
    /// cached only if no forget ran since the read began.
    forgotten: AtomicU64,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            map: Mutex::new(LruCache::new(TOKEN_CACHE_CAP)),
            forgotten: AtomicU64::new(0),
        }
    }
}

impl TokenCache {
    pub(crate) fn forget(&self, id: &str) {
        self.forget_all(&std::collections::HashSet::from([id]));
    }

    /// Drops the cached rows of these tokens, in one pass over the cache.
    pub(crate) fn forget_all(&self, ids: &std::collections::HashSet<&str>) {
        if ids.is_empty() {
            return;
        }
        // Counted before the cache is emptied: a read in flight then does not cache.
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, (t, _)| !ids.contains(t.id.as_str()));
        }
    }

    /// Caches a row read when the forget generation was `since`, unless a forget ran since
    /// (the row may predate the revocation it was for). Checked under the map's lock, which
    /// a forget takes after counting.
    fn remember(&self, hash: String, row: TokenRow, now: i64, since: u64) {
        if let Ok(mut m) = self.map.lock()
            && self.forgotten.load(Ordering::SeqCst) == since
        {
            m.insert(hash, (row, now));
        }
    }

    fn get(&self, hash: &str, now: i64) -> Option<TokenRow> {
        let mut m = self.map.lock().ok()?;
        match m.get(hash) {
            Some((row, at)) if now - at <= crate::devices::CREDENTIAL_MAX_AGE_SECONDS => {
                Some(row.clone())
            }
            _ => None,
        }
    }
}

/// What a role may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cap {
    /// Read anything.
    Read,
    /// Upload releases and payloads.
    Upload,
    /// Devices, groups and campaigns.
    Operate,
    /// Keys and tokens.
    Administer,
}

impl Cap {
    fn allowed(self, role: Role) -> bool {
        match self {
            Self::Read => true,
            Self::Upload => matches!(role, Role::Author | Role::Admin),
            Self::Operate => matches!(role, Role::Operator | Role::Admin),
            Self::Administer => role == Role::Admin,
        }
    }

    fn needs(self) -> &'static str {
        match self {
            Self::Read => "any role",
            Self::Upload => "the author or admin role",
            Self::Operate => "the operator or admin role",
            Self::Administer => "the admin role",
        }
    }
}

/// An authenticated management client.
#[derive(Clone, Debug)]
pub(crate) struct Manager(pub(crate) TokenRow);

impl Manager {
    /// Refuses unless the role has the capability. RFC 9019 §3: separation of the author
    /// (uploads) from the operator (deploys).
    pub(crate) fn require(&self, cap: Cap) -> Result<(), ApiErr> {
        if cap.allowed(self.0.role) {
            Ok(())
        } else {
            Err(ApiErr::forbidden(format!(
                "token {:?} has the {} role; this needs {}",
                self.0.name,
                self.0.role.name(),
                cap.needs()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Manager {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiErr> {
        let token = bearer(parts).ok_or_else(|| {
            ApiErr::unauthorized("no management token")
                .hint("send Authorization: Bearer <token>; the first admin token is in the server's data directory (admin-token)")
        })?;
        if token.starts_with("sct_d_") {
            return Err(ApiErr::unauthorized(
                "this is a device token; the management API needs a management token",
            ));
        }
        manager_by_hash(state, hash_secret(token)).await
    }
}

/// The management token with this hash, if it works: the one lookup behind the API's bearer
/// tokens and the console's sessions (a revoked token stops both at once).
pub(crate) async fn manager_by_hash(state: &AppState, hash: String) -> Result<Manager, ApiErr> {
    let now = state.now();
    let row = match state.managers.get(&hash, now) {
        Some(r) => r,
        None => {
            let since = state.managers.forgotten.load(Ordering::SeqCst);
            let row = state
                .db
                .token_by_hash(&hash)
                .await?
                .ok_or_else(|| ApiErr::unauthorized("unknown management token"))?;
            state.managers.remember(hash, row.clone(), now, since);
            row
        }
    };
    if row.revoked {
        return Err(ApiErr::unauthorized(format!(
            "token {:?} was revoked",
            row.name
        )));
    }
    Ok(Manager(row))
}

/// An authenticated device.
#[derive(Clone, Debug)]
pub(crate) struct DeviceAuth(pub(crate) Arc<DeviceEntry>);

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiErr> {
        let conn = plaintext_rule(parts, state)?;
        let entry = if let Some(token) = bearer(parts) {
            if token.starts_with("sct_a_") {
                return Err(ApiErr::unauthorized(
                    "this is a management token; the device API needs the device's own token",
                ));
            }
            state
                .devices
                .by_credential(state, "token_hash", Sha256::digest(token.as_bytes()).into())
                .await?
        } else if let Some(cert) = conn.as_ref().and_then(|c| c.client_cert.as_ref()) {
            state
                .devices
                .by_credential(state, "cert_sha256", Sha256::digest(cert).into())
                .await?
        } else {
            None
        };
        let entry = entry.ok_or_else(|| {
            ApiErr::unauthorized("unknown device credentials")
                .hint("send the device token as Authorization: Bearer <token>, or connect with the device's registered TLS client certificate")
        })?;
        if entry.revoked() {
            return Err(ApiErr::unauthorized("this device was decommissioned"));
        }
        Ok(Self(entry))
    }
}

/// RFC 8240 §3: a device's credential identifies it; do not let it cross a network in clear
/// text unless the operator opted in. Applies to the device API and the DDI API alike.
fn plaintext_rule(parts: &Parts, state: &AppState) -> Result<Option<ConnInfo>, ApiErr> {
    let conn = parts.extensions.get::<ConnInfo>().cloned();
    if let Some(c) = &conn
        && !c.tls
        && !c.peer.ip().is_loopback()
        && !state.config.allow_plaintext_devices
    {
        return Err(ApiErr::forbidden(
            "the device API is not served over plain HTTP to other hosts: a device's credentials identify it (RFC 8240 §3)",
        )
        .hint("start the server with --tls-cert/--tls-key, or with --allow-plaintext-devices on a trusted network"));
    }
    Ok(conn)
}

/// The one tenant of the DDI API (hawkBit's default; matched case-insensitively, as hawkBit
/// upper-cases tenants).
pub(crate) const DDI_TENANT: &str = "DEFAULT";

/// A device on the hawkBit DDI API (docs/ddi.md), authenticated by `Authorization:
/// TargetToken <its suitcase device token>`, by the tenant's `GatewayToken` when the operator
/// set one, or by its registered TLS client certificate. The `{controllerId}` in the path
/// must be the authenticated device's name: a device cannot act for another (hawkBit
/// SecurityTokenAuthenticator; a mismatch is 401, as an unknown credential).
#[derive(Clone, Debug)]
pub(crate) struct DdiAuth {
    pub(crate) device: Arc<DeviceEntry>,
    /// `http` or `https`, for the links the answers carry.
    pub(crate) scheme: &'static str,
}

impl FromRequestParts<AppState> for DdiAuth {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiErr> {
        let conn = plaintext_rule(parts, state)?;
        let path = parts.uri.path().to_owned();
        let mut seg = path.split('/').skip(1);
        let (Some(tenant), Some("controller"), Some("v1"), Some(controller)) =
            (seg.next(), seg.next(), seg.next(), seg.next())
        else {
            return Err(ApiErr::not_found("DDI resource", &path));
        };
        if !tenant.eq_ignore_ascii_case(DDI_TENANT) {
            return Err(ApiErr::not_found("tenant", tenant)
                .hint("this server has one DDI tenant: DEFAULT (any case)"));
        }
        let controller = percent_decode(controller);
        let scheme = if conn.as_ref().is_some_and(|c| c.tls) {
            "https"
        } else {
            "http"
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let (kind, secret) = match header.and_then(|h| h.split_once(' ')) {
            Some((k, v)) => (k.to_ascii_lowercase(), v.trim()),
            None => (String::new(), ""),
        };
        let entry = match kind.as_str() {
            // hawkBit SecurityTokenAuthenticator: "TargetToken <token>" (scheme
            // case-insensitive here, as RFC 9110 §11.1 makes auth schemes).
            "targettoken" => {
                state
                    .devices
                    .by_credential(
                        state,
                        "token_hash",
                        Sha256::digest(secret.as_bytes()).into(),
                    )
                    .await?
            }
            // hawkBit GatewayTokenAuthenticator: one tenant-wide key acts for any controller;
            // off unless the operator configured it.
            "gatewaytoken" => match &state.config.ddi_gateway_token {
                Some(key) if ct_eq(key.as_bytes(), secret.as_bytes()) => {
                    state.devices.by_name(state, &controller, true).await?
                }
                Some(_) => None,
                None => {
                    return Err(ApiErr::unauthorized(
                        "gateway tokens are not enabled on this server",
                    )
                    .hint("use Authorization: TargetToken <device token>, or start the server with --ddi-gateway-token-file"));
                }
            },
            _ => match conn.as_ref().and_then(|c| c.client_cert.as_ref()) {
                Some(cert) => {
                    state
                        .devices
                        .by_credential(state, "cert_sha256", Sha256::digest(cert).into())
                        .await?
                }
                None => None,
            },
        };
        let entry = entry.ok_or_else(|| {
            ApiErr::unauthorized("unknown DDI credentials").hint(
                "send Authorization: TargetToken <the token `suitcase fleet device add` printed>",
            )
        })?;
        if entry.revoked() {
            return Err(ApiErr::unauthorized("this device was decommissioned"));
        }
        if entry.name != controller {
            return Err(
                ApiErr::unauthorized("these credentials belong to another controller id")
                    .hint("the DDI controllerId is the device's name in suitcase"),
            );
        }
        Ok(Self {
            device: entry,
            scheme,
        })
    }
}

/// Compares two secrets in time independent of where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Decodes `%XX` escapes of a path segment (a controller id with a space or a slash).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(h), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

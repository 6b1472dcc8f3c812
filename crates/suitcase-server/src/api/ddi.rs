//! The hawkBit Direct Device Integration API, v1 (docs/ddi.md), for fleets that run SWUpdate,
//! RAUC or Zephyr's hawkBit client: existing devices move to suitcase without reflashing.
//!
//! DDI devices are ordinary fleet members: a base poll is a check-in decided by the same
//! rollout engine (waves, thresholds, windows, consent, rollback), and feedback becomes step
//! reports through the same path as the device API's (`device::record_report`, with its
//! offer gate and caps). What DDI adds is only its shapes: integer action ids (one per
//! campaign, device and release, in `ddi_actions`), `HH:MM:SS` sleeps, chunks with SHA-1 and
//! MD5, 200 on feedback and 410 on a closed action. The facts that break real clients are
//! cited from hawkBit and SWUpdate 2022.12 (`server_hawkbit.c`) where they are enforced.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post, put};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;
use suitcase_protocol::ddi::{
    self, BadBody, ConfigMode, Feedback, MAX_ACTION_ID, MAX_ATTRIBUTES, escape_segment, file_name,
    hhmmss, timeline_text,
};
use suitcase_protocol::{CheckIn, InstalledComponent, Outcome, Step, StepReport};

use crate::AppState;
use crate::auth::DdiAuth;
use crate::db::Db;
use crate::error::{ApiErr, ApiResult};
use crate::store::ReleaseRow;

/// A body the DDI wire layer refuses is a 400 with its code and message.
impl From<BadBody> for ApiErr {
    fn from(e: BadBody) -> Self {
        Self::bad_request(e.code, e.message)
    }
}

/// The configData attribute by which a device says which manifest sequence number it runs;
/// a device that reports the release's sequence (or a later one) is not offered it again.
pub(crate) const SEQUENCE_ATTRIBUTE: &str = "suitcase_sequence";
/// Module ids are `action id × MODULES + payload index`: integers, as hawkBit's are.
const MODULES: i64 = 1000;

pub(crate) fn router() -> Router<AppState> {
    let c = "/{tenant}/controller/v1/{controller}";
    Router::new()
        .route(c, get(base))
        .route(&format!("{c}/deploymentBase/{{action}}"), get(deployment))
        .route(
            &format!("{c}/deploymentBase/{{action}}/feedback"),
            post(feedback),
        )
        .route(&format!("{c}/cancelAction/{{action}}"), get(cancel))
        .route(
            &format!("{c}/cancelAction/{{action}}/feedback"),
            post(cancel_feedback),
        )
        .route(&format!("{c}/installedBase/{{action}}"), get(installed))
        .route(&format!("{c}/configData"), put(config_data))
        .route(
            &format!("{c}/softwaremodules/{{module}}/artifacts"),
            get(artifacts),
        )
        .route(
            &format!("{c}/softwaremodules/{{module}}/artifacts/{{file}}"),
            get(artifact),
        )
}

#[derive(Deserialize)]
pub(crate) struct ActionPath {
    tenant: String,
    action: String,
}

#[derive(Deserialize)]
pub(crate) struct ArtifactPath {
    tenant: String,
    module: String,
    file: Option<String>,
}

/// The prefix of every link: `scheme://host/{tenant}/controller/v1/{controller}`. hawkBit
/// builds absolute links from the request; the Host header is used only if it is a plain
/// host[:port] (no path, no user info), else the listen address.
fn prefix(state: &AppState, auth: &DdiAuth, headers: &HeaderMap, tenant: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .map_or_else(|| state.config.listen.to_string(), str::to_owned);
    format!(
        "{}://{host}/{}/controller/v1/{}",
        auth.scheme,
        tenant_segment(tenant),
        escape_segment(&auth.device.name)
    )
}

/// The tenant as the client spelled it (SWUpdate builds its own feedback URLs from its
/// configured tenant, so links use the same spelling).
fn tenant_segment(t: &str) -> String {
    escape_segment(t)
}

fn ok_empty() -> Response {
    // Exactly 200: SWUpdate 2022.12 treats 201 and 204 as "unhandled HTTP error code" and
    // aborts the install (channel_curl.c `channel_map_http_code`).
    (StatusCode::OK, Body::empty()).into_response()
}

fn json_reply(v: &Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn parse_action(s: &str) -> ApiResult<i64> {
    ddi::action_id(s)
        .ok_or_else(|| ApiErr::not_found("action", s).hint("DDI action ids are integers"))
}

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub(crate) struct ActionRow {
    id: i64,
    campaign_id: String,
    device_id: String,
    release_id: String,
    closed: bool,
    served_skip: bool,
}

fn action_row(r: &sqlx::any::AnyRow) -> anyhow::Result<ActionRow> {
    Ok(ActionRow {
        id: r.try_get("id")?,
        campaign_id: r.try_get("campaign_id")?,
        device_id: r.try_get("device_id")?,
        release_id: r.try_get("release_id")?,
        closed: r.try_get::<i64, _>("closed")? != 0,
        served_skip: r.try_get::<i64, _>("served_skip")? != 0,
    })
}

const ACTION_COLS: &str = "id, campaign_id, device_id, release_id, closed, served_skip";

impl Db {
    /// The action of this campaign, device and release, created on first offer; `None` when
    /// its id would exceed [`MAX_ACTION_ID`] (nothing is stored then: the insert is rolled
    /// back, so every later poll meets the same refusal and no row with such an id exists).
    pub(crate) async fn ddi_action_ensure(
        &self,
        campaign_id: &str,
        device_id: &str,
        release_id: &str,
        now: i64,
    ) -> anyhow::Result<Option<ActionRow>> {
        let find = || {
            sqlx::query(
                "SELECT id, campaign_id, device_id, release_id, closed, served_skip FROM ddi_actions \
                 WHERE campaign_id = $1 AND device_id = $2 AND release_id = $3",
            )
            .bind(campaign_id)
            .bind(device_id)
            .bind(release_id)
        };
        let usable = |a: ActionRow| (a.id <= MAX_ACTION_ID).then_some(a);
        // Look first: an INSERT that conflicts still takes a number from the sequence (both
        // SQLite's AUTOINCREMENT and PostgreSQL's BIGSERIAL), and a fleet polling every few
        // minutes would soon push ids past 2^31 - 1, which SWUpdate reads as an int.
        if let Some(r) = find().fetch_optional(&self.pool).await? {
            return Ok(usable(action_row(&r)?));
        }
        let mut tx = self.pool.begin().await?;
        let id: Option<i64> = sqlx::query(
            "INSERT INTO ddi_actions (campaign_id, device_id, release_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (campaign_id, device_id, release_id) DO NOTHING RETURNING id",
        )
        .bind(campaign_id)
        .bind(device_id)
        .bind(release_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        if id.is_some_and(|id| id > MAX_ACTION_ID) {
            // SQLite's sequence rolls back with the row; PostgreSQL's number is spent, but
            // the sequence is past the limit anyway.
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(usable(action_row(&find().fetch_one(&self.pool).await?)?))
    }

    pub(crate) async fn ddi_action(&self, id: i64) -> anyhow::Result<Option<ActionRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLS} FROM ddi_actions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(action_row)
        .transpose()
    }

    pub(crate) async fn ddi_action_close(&self, id: i64, now: i64) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "UPDATE ddi_actions SET closed = 1, closed_at = $2 WHERE id = $1 AND closed = 0",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn ddi_action_served(&self, id: i64, skip: bool) -> anyhow::Result<()> {
        sqlx::query("UPDATE ddi_actions SET served_skip = $2 WHERE id = $1 AND served_skip <> $2")
            .bind(id)
            .bind(i64::from(skip))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The device's open actions that its campaign no longer wants: the operator cancelled
    /// or aborted it, or a trip moved the device to the rollback release. Oldest first.
    async fn ddi_cancelling(&self, device_id: &str) -> anyhow::Result<Option<ActionRow>> {
        sqlx::query(
            "SELECT a.id, a.campaign_id, a.device_id, a.release_id, a.closed, a.served_skip \
             FROM ddi_actions a JOIN campaign_devices cd \
             ON cd.campaign_id = a.campaign_id AND cd.device_id = a.device_id \
             WHERE a.device_id = $1 AND a.closed = 0 \
             AND (cd.state = 'cancelled' OR cd.release_id <> a.release_id) ORDER BY a.id LIMIT 1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(action_row)
        .transpose()
    }

    /// Whether this open action is one its campaign no longer wants (see
    /// [`Db::ddi_cancelling`]), whichever of the device's cancelling actions it is.
    async fn ddi_is_cancelling(&self, action_id: i64) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM ddi_actions a JOIN campaign_devices cd \
             ON cd.campaign_id = a.campaign_id AND cd.device_id = a.device_id \
             WHERE a.id = $1 AND a.closed = 0 \
             AND (cd.state = 'cancelled' OR cd.release_id <> a.release_id)",
        )
        .bind(action_id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// The device's open actions whose membership ended without it (it was counted
    /// succeeded or failed by the engine): they are closed silently.
    async fn ddi_close_finished(&self, device_id: &str, now: i64) -> anyhow::Result<()> {
        // Read first: this runs on every poll, and an UPDATE that matches nothing still takes
        // SQLite's write lock.
        let any = sqlx::query(
            "SELECT 1 FROM ddi_actions a JOIN campaign_devices cd ON cd.campaign_id = a.campaign_id \
             AND cd.device_id = a.device_id AND cd.release_id = a.release_id \
             WHERE a.device_id = $1 AND a.closed = 0 \
             AND cd.state IN ('succeeded', 'failed', 'rolled_back', 'rollback_failed') LIMIT 1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        if any.is_none() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE ddi_actions SET closed = 1, closed_at = $2 WHERE device_id = $1 AND closed = 0 \
             AND EXISTS (SELECT 1 FROM campaign_devices cd WHERE cd.campaign_id = ddi_actions.campaign_id \
             AND cd.device_id = ddi_actions.device_id AND cd.release_id = ddi_actions.release_id \
             AND cd.state IN ('succeeded', 'failed', 'rolled_back', 'rollback_failed'))",
        )
        .bind(device_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The device's last closed action.
    async fn ddi_last_closed(&self, device_id: &str) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query(
            "SELECT id FROM ddi_actions WHERE device_id = $1 AND closed = 1 ORDER BY closed_at DESC, id DESC LIMIT 1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get::<i64, _>(0))
        .transpose()?)
    }

    /// The device's controller attributes (configData).
    pub(crate) async fn device_attributes(
        &self,
        device_id: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        sqlx::query("SELECT key, value FROM device_attributes WHERE device_id = $1")
            .bind(device_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn device_attributes_write(
        &self,
        device_id: &str,
        clear: bool,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        if clear {
            sqlx::query("DELETE FROM device_attributes WHERE device_id = $1")
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
        }
        for k in remove {
            sqlx::query("DELETE FROM device_attributes WHERE device_id = $1 AND key = $2")
                .bind(device_id)
                .bind(k)
                .execute(&mut *tx)
                .await?;
        }
        for (k, v) in set {
            sqlx::query(
                "INSERT INTO device_attributes (device_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (device_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(device_id)
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        }
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM device_attributes WHERE device_id = $1")
            .bind(device_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if usize::try_from(n).unwrap_or(usize::MAX) > MAX_ATTRIBUTES {
            tx.rollback().await?;
            anyhow::bail!(TooManyAttributes);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn payload_ddi_hashes(
        &self,
        release_id: &str,
        idx: u32,
    ) -> anyhow::Result<Option<(String, String)>> {
        let r = sqlx::query("SELECT sha1, md5 FROM payloads WHERE release_id = $1 AND idx = $2")
            .bind(release_id)
            .bind(i64::from(idx))
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => match (
                r.try_get::<Option<String>, _>(0)?,
                r.try_get::<Option<String>, _>(1)?,
            ) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            },
            None => None,
        })
    }

    async fn payload_ddi_hashes_set(
        &self,
        release_id: &str,
        idx: u32,
        sha1: &str,
        md5: &str,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE payloads SET sha1 = $3, md5 = $4 WHERE release_id = $1 AND idx = $2")
            .bind(release_id)
            .bind(i64::from(idx))
            .bind(sha1)
            .bind(md5)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[derive(Debug)]
struct TooManyAttributes;

impl core::fmt::Display for TooManyAttributes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "more than {MAX_ATTRIBUTES} controller attributes")
    }
}

impl std::error::Error for TooManyAttributes {}

/// The action `id` of this device, or 404 (another device's action does not exist for it).
async fn own_action(state: &AppState, auth: &DdiAuth, id: &str) -> ApiResult<ActionRow> {
    let n = parse_action(id)?;
    match state.db.ddi_action(n).await? {
        Some(a) if a.device_id == auth.device.id => Ok(a),
        _ => Err(ApiErr::not_found("action", id)),
    }
}

// ---------------------------------------------------------------------------------------------
// What the server knows of a DDI device
// ---------------------------------------------------------------------------------------------

/// The check-in the server makes for a DDI device, which sends no inventory: what the
/// server recorded (the release it last installed, see `installed`) and what its configData
/// says (`suitcase_sequence`).
async fn checkin_of(
    state: &AppState,
    device_id: &str,
    attrs: &BTreeMap<String, String>,
) -> ApiResult<CheckIn> {
    let row = state.db.device_get(device_id).await?;
    let mut c: CheckIn = row
        .and_then(|r| r.inventory)
        .and_then(|i| serde_json::from_str(&i).ok())
        .unwrap_or_default();
    c.agent = Some("hawkbit-ddi".into());
    if let Some(seq) = attrs
        .get(SEQUENCE_ATTRIBUTE)
        .and_then(|s| s.trim().parse::<u64>().ok())
        && let Some((_, m)) = state.db.latest_membership(device_id).await?
        && let Some(r) = state.db.release_get(&m.release_id).await?
    {
        for id in r.summary.images().map(|c| c.id.clone()) {
            match c.components.iter_mut().find(|x| x.id == id) {
                Some(x) => x.sequence_number = x.sequence_number.max(seq),
                None => c.components.push(InstalledComponent {
                    id,
                    sequence_number: seq,
                    ..InstalledComponent::default()
                }),
            }
        }
    }
    Ok(c)
}

/// Records that the device runs `release` now (its feedback said closed/success): the
/// inventory the engine reads at the next poll, so it is never offered that release again.
async fn record_installed(state: &AppState, auth: &DdiAuth, release: &ReleaseRow) -> ApiResult<()> {
    let attrs = state.db.device_attributes(&auth.device.id).await?;
    let mut c = checkin_of(state, &auth.device.id, &attrs).await?;
    for comp in release.summary.images() {
        let digest = comp.image_digest.as_ref().map(|(_, h)| h.clone());
        match c.components.iter_mut().find(|x| x.id == comp.id) {
            Some(x) => {
                x.sequence_number = release.sequence_number;
                x.digest = digest;
                x.size = comp.image_size;
                x.version = Some(release.name.clone());
            }
            None => c.components.push(InstalledComponent {
                id: comp.id.clone(),
                sequence_number: release.sequence_number,
                digest,
                size: comp.image_size,
                version: Some(release.name.clone()),
                ..InstalledComponent::default()
            }),
        }
    }
    c.vendor_id = release
        .summary
        .vendor_ids()
        .into_iter()
        .next()
        .or(c.vendor_id);
    c.class_id = release
        .summary
        .class_ids()
        .into_iter()
        .next()
        .or(c.class_id);
    let now = state.now();
    state.devices.record(&auth.device, &c, now);
    state
        .db
        .device_seen(&[crate::store::SeenUpdate {
            device_id: auth.device.id.clone(),
            last_seen: now,
            inventory: serde_json::to_string(&c).ok(),
            vendor_id: c.vendor_id.clone(),
            class_id: c.class_id.clone(),
            sequence_number: c.components.iter().map(|x| x.sequence_number).max(),
        }])
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Base poll
// ---------------------------------------------------------------------------------------------

/// `GET /{tenant}/controller/v1/{controllerId}`: the poll. A check-in decided by the rollout
/// engine; links to the one action the device should act on.
pub(crate) async fn base(
    State(state): State<AppState>,
    auth: DdiAuth,
    Path((tenant, _controller)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let now = state.now();
    let dev = &auth.device;
    let attributes = state.db.device_attributes(&dev.id).await?;
    let c = checkin_of(&state, &dev.id, &attributes).await?;
    let d = super::device::check_in(&state, dev, &c, now).await?;
    state.db.ddi_close_finished(&dev.id, now).await?;
    let p = prefix(&state, &auth, &headers, &tenant);
    let mut links = serde_json::Map::new();
    // One of cancelAction or deploymentBase (hawkBit: the highest-weight action; SWUpdate
    // lets cancelAction win, server_hawkbit.c `server_process_update_artifact`).
    if let Some(a) = state.db.ddi_cancelling(&dev.id).await? {
        // No query string: SWUpdate appends "/feedback" to this href.
        links.insert(
            "cancelAction".into(),
            json!({"href": format!("{p}/cancelAction/{}", a.id)}),
        );
    } else if let (Some((release, _, _)), Some(campaign)) = (&d.offer, &d.campaign) {
        match state
            .db
            .ddi_action_ensure(campaign, &dev.id, &release.id, now)
            .await?
        {
            Some(a) => {
                let skip = window_closed(&state, campaign, now).await?;
                // `c` changes when what the device should do changes (hawkBit: soft→forced,
                // window opens), so a client caching by URL sees the new deployment.
                links.insert(
                    "deploymentBase".into(),
                    json!({"href": format!("{p}/deploymentBase/{}?c={}", a.id, i32::from(skip))}),
                );
            }
            // No id a client can hold is left: the poll answers as if nothing were offered
            // (the device keeps polling and runs what it runs), and the operator is told at
            // every such poll. Actions already handed out go on (docs/ddi.md §3).
            None => tracing::error!(
                device = %dev.name,
                campaign = %campaign,
                release = %release.id,
                "DDI action ids are exhausted: the next one would exceed {MAX_ACTION_ID} \
                 (2^31 - 1, the largest a hawkBit client reads), so this DDI device is not \
                 offered the release; see docs/ddi.md section 3"
            ),
        }
    }
    if let Some(id) = state.db.ddi_last_closed(&dev.id).await? {
        links.insert(
            "installedBase".into(),
            json!({"href": format!("{p}/installedBase/{id}")}),
        );
    }
    if attributes.is_empty() {
        links.insert(
            "configData".into(),
            json!({"href": format!("{p}/configData")}),
        );
    }
    let interval = i64::from(state.config.poll_interval);
    let sleep = d.retry_after.map_or(interval, |r| r.clamp(1, interval));
    Ok(json_reply(&json!({
        "config": {"polling": {"sleep": hhmmss(sleep)}},
        "_links": links,
    })))
}

/// Whether the campaign has a maintenance window that is closed now.
async fn window_closed(state: &AppState, campaign: &str, now: i64) -> ApiResult<bool> {
    Ok(state
        .db
        .campaign_get(campaign)
        .await?
        .and_then(|c| c.spec.window)
        .is_some_and(|w| !crate::rollout::in_window(&w, now)))
}

// ---------------------------------------------------------------------------------------------
// deploymentBase and installedBase
// ---------------------------------------------------------------------------------------------

/// SHA-1 and MD5 of a payload, which DDI clients check (SWUpdate compares `hashes.sha1`,
/// lower-case hex, with what it received). Not kept at upload: they are computed from the
/// stored payload on its first DDI use and cached in the database, so releases uploaded
/// before this server had the DDI API get them too, and the device API's upload path (and
/// its memory) is unchanged. One payload is hashed at a time.
async fn ddi_hashes(
    state: &AppState,
    release_id: &str,
    idx: u32,
    key: &str,
    size: u64,
) -> ApiResult<(String, String)> {
    if let Some(h) = state.db.payload_ddi_hashes(release_id, idx).await? {
        return Ok(h);
    }
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    let _one = LOCK
        .get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await;
    if let Some(h) = state.db.payload_ddi_hashes(release_id, idx).await? {
        return Ok(h);
    }
    use md5::Digest as _;
    let mut s1 = sha1::Sha1::new();
    let mut m5 = md5::Md5::new();
    let mut stream = state.blobs.get_range(key, 0..size).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ApiErr::internal)?;
        s1.update(&chunk);
        m5.update(&chunk);
    }
    let (a, b) = (hex::encode(s1.finalize()), hex::encode(m5.finalize()));
    state
        .db
        .payload_ddi_hashes_set(release_id, idx, &a, &b)
        .await?;
    Ok((a, b))
}

/// The chunks of a release: one per uploaded payload (`part`, `version`, `name`, and one
/// artifact with its file name, integer size and lower-case hashes).
async fn chunks(state: &AppState, p: &str, a: &ActionRow, r: &ReleaseRow) -> ApiResult<Vec<Value>> {
    let mut out = Vec::new();
    for pl in &r.payloads {
        let (Some(key), Some(size), Some(sha256)) = (&pl.object_key, pl.size, &pl.sha256) else {
            continue;
        };
        let (sha1, md5) = ddi_hashes(state, &r.id, pl.idx, key, size).await?;
        let name = file_name(&pl.uri, pl.idx);
        let comp = r
            .summary
            .components
            .iter()
            .find(|c| c.uri.as_deref() == Some(pl.uri.as_str()));
        let part = comp.map_or_else(
            || "os".into(),
            |c| suitcase_protocol::component_label(&c.id),
        );
        let module = a.id * MODULES + i64::from(pl.idx);
        let url = format!(
            "{p}/softwaremodules/{module}/artifacts/{}",
            escape_segment(&name)
        );
        let mut chunk = json!({
            "part": part,
            "version": r.name,
            "name": name,
            "artifacts": [{
                "filename": name,
                "hashes": {"sha1": sha1, "md5": md5, "sha256": sha256.to_ascii_lowercase()},
                "size": size,
                "_links": {
                    "download": {"href": url},
                    "download-http": {"href": url},
                    "md5sum": {"href": format!("{url}.MD5SUM")},
                    "md5sum-http": {"href": format!("{url}.MD5SUM")},
                },
            }],
        });
        if comp.is_some_and(|c| c.encrypted) {
            chunk["encrypted"] = json!(true);
        }
        out.push(chunk);
    }
    Ok(out)
}

/// `GET .../deploymentBase/{actionId}`: what to install. Polled on every interval by
/// SWUpdate, also during the download, so it changes nothing but the skip flag it served.
pub(crate) async fn deployment(
    State(state): State<AppState>,
    auth: DdiAuth,
    Path(path): Path<ActionPath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let a = own_action(&state, &auth, &path.action).await?;
    // hawkBit answers 404 for a canceled or closed action; the offer gate (docs/server.md
    // §3) applies as on the device API.
    if a.closed
        || state.db.ddi_is_cancelling(a.id).await?
        || !state
            .db
            .device_offered(&auth.device.id, &a.release_id)
            .await?
    {
        return Err(ApiErr::not_found("open action", &path.action));
    }
    let release = crate::api::release_found(&state, &a.release_id).await?;
    let now = state.now();
    let campaign = state.db.campaign_get(&a.campaign_id).await?;
    let window = campaign.as_ref().and_then(|c| c.spec.window.clone());
    let skip = window
        .as_ref()
        .is_some_and(|w| !crate::rollout::in_window(w, now));
    let consent = campaign.as_ref().is_some_and(|c| c.spec.requires_consent);
    state.db.ddi_action_served(a.id, skip).await?;
    let p = prefix(&state, &auth, &headers, &path.tenant);
    let mode = if consent { "attempt" } else { "forced" };
    let mut deployment = json!({
        "download": mode,
        // Outside the window the device may download but not install (hawkBit
        // maintenanceWindow). A closed/success that answers a skip is not an install (see
        // `feedback`).
        "update": if skip { "skip" } else { mode },
        "chunks": chunks(&state, &p, &a, &release).await?,
    });
    if window.is_some() {
        deployment["maintenanceWindow"] = json!(if skip { "unavailable" } else { "available" });
    }
    Ok(json_reply(&json!({
        // A string holding the decimal id: SWUpdate reads it with json_object_get_int.
        "id": a.id.to_string(),
        "deployment": deployment,
    })))
}

/// `GET .../installedBase/{actionId}`: a finished action, in the deploymentBase shape.
pub(crate) async fn installed_base(
    state: &AppState,
    auth: &DdiAuth,
    path: &ActionPath,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let a = own_action(state, auth, &path.action).await?;
    if !a.closed {
        return Err(ApiErr::not_found("finished action", &path.action));
    }
    let release = crate::api::release_found(state, &a.release_id).await?;
    let p = prefix(state, auth, headers, &path.tenant);
    Ok(json_reply(&json!({
        "id": a.id.to_string(),
        "deployment": {
            "download": "forced",
            "update": "forced",
            "chunks": chunks(state, &p, &a, &release).await?,
        },
    })))
}

pub(crate) async fn installed(
    State(state): State<AppState>,
    auth: DdiAuth,
    Path(path): Path<ActionPath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    installed_base(&state, &auth, &path, &headers).await
}

// ---------------------------------------------------------------------------------------------
// Feedback
// ---------------------------------------------------------------------------------------------

/// SWUpdate sends the log lines of an install (its "ERROR : HASH mismatch ..." among them)
/// as progress feedback, and then a closed/failure whose details may hold only the last
/// error ("No suitable .swu image found"). The failure in the timeline gets the error lines
/// of the device's progress feedback on this release too (the last ten), so that the
/// operator sees why.
async fn with_earlier_errors(
    state: &AppState,
    a: &ActionRow,
    detail: Option<String>,
) -> ApiResult<Option<String>> {
    let reports = state.db.reports_for(&a.device_id, &a.release_id).await?;
    let shown = detail.clone().unwrap_or_default();
    let mut errors: Vec<String> = Vec::new();
    for r in reports
        .iter()
        .filter(|r| r.outcome == Outcome::InProgress.name() && r.step == Step::Apply.name())
    {
        for l in r
            .detail
            .as_deref()
            .unwrap_or_default()
            .lines()
            .map(str::trim)
        {
            if error_line(l) && !shown.contains(l) && !errors.iter().any(|e| e == l) {
                errors.push(l.to_owned());
            }
        }
    }
    if errors.is_empty() {
        return Ok(detail);
    }
    // The last ten, the reasons first (a long detail is cut at its end).
    let errors = &errors[errors.len().saturating_sub(10)..];
    let out = format!("{}\n{shown}", errors.join("\n"));
    Ok(timeline_text(out))
}

/// A line of SWUpdate's log that says why something failed (not the harmless complaint of a
/// device without a bootloader environment).
fn error_line(l: &str) -> bool {
    l.contains("ERROR") && !l.contains("Cannot read stored update state")
}

/// SWUpdate sends its log lines from a separate thread, so the lines that say why an install
/// failed ("ERROR : HASH mismatch ...") may arrive just after the closed/failure. The answer
/// is still 410 (the action is closed), but error lines the device's failure does not show
/// yet are added to it: a new failure record with both texts (no transition; within the
/// device's report budget and the per-release cap).
async fn late_errors(
    state: &AppState,
    auth: &DdiAuth,
    a: &ActionRow,
    f: &Feedback,
) -> ApiResult<()> {
    let Some(text) = ddi::details_text(&f.status.details, None) else {
        return Ok(());
    };
    let reports = state.db.reports_for(&a.device_id, &a.release_id).await?;
    let Some(failure) = reports
        .iter()
        .rev()
        .find(|r| r.step == Step::Apply.name() && r.outcome == Outcome::Failure.name())
    else {
        return Ok(());
    };
    let shown = failure.detail.clone().unwrap_or_default();
    let new: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| error_line(l) && !shown.contains(*l))
        .collect();
    if new.is_empty()
        || auth.device.take_report(state.now()).is_err()
        || state.db.report_count(&a.device_id, &a.release_id).await?
            >= super::device::MAX_REPORTS_PER_RELEASE
    {
        return Ok(());
    }
    // The reasons first: a long detail is cut at its end.
    let merged = format!("{}\n{shown}", new.join("\n"));
    let report = StepReport {
        release_id: a.release_id.clone(),
        step: Step::Apply,
        outcome: Outcome::Failure,
        reason: failure.reason.clone(),
        detail: timeline_text(merged),
        progress: None,
        started_at: None,
        log: None,
        suit_report: None,
        offline: false,
    };
    state
        .db
        .report_insert(&a.device_id, Some(&a.campaign_id), &report, state.now())
        .await?;
    Ok(())
}

/// `POST .../deploymentBase/{actionId}/feedback`: a step report. 200 with no body; 410 once
/// the action is closed (hawkBit `DdiRootController.postBasedeploymentActionFeedback`).
pub(crate) async fn feedback(
    State(state): State<AppState>,
    auth: DdiAuth,
    Path(path): Path<ActionPath>,
    body: Bytes,
) -> ApiResult<Response> {
    let (f, meaning) = Feedback::parse(&body)?;
    let ddi::Meaning {
        step,
        outcome,
        closes,
    } = meaning;
    let a = own_action(&state, &auth, &path.action).await?;
    if a.closed || state.db.ddi_is_cancelling(a.id).await? {
        if a.closed {
            late_errors(&state, &auth, &a, &f).await?;
        }
        return Err(ApiErr::new(
            StatusCode::GONE,
            "action-closed",
            format!("action {} is closed", a.id),
        ));
    }
    let mut detail = f.detail();
    if outcome == Outcome::Failure && closes {
        detail = with_earlier_errors(&state, &a, detail).await?;
    }
    let now = state.now();
    if outcome == Outcome::Success && step == Step::CleanUp && a.served_skip {
        // SWUpdate answers `update: skip` with closed/success "Skipped Update." without
        // installing anything (server_hawkbit.c). A skip is never an install the device must
        // do: the action stays open and the update is offered when the window opens.
        tracing::info!(device = %auth.device.name, action = a.id, "DDI device skipped the update outside the maintenance window");
        return Ok(ok_empty());
    }
    let progress = f.progress();
    let report = StepReport {
        release_id: a.release_id.clone(),
        step,
        outcome,
        reason: match outcome {
            Outcome::Failure if f.status.execution == "canceled" => Some("canceled".into()),
            Outcome::Failure => Some(match f.status.code {
                Some(c) => format!("ddi-code-{c}"),
                None => "device-error".into(),
            }),
            Outcome::Deferred => Some(f.status.execution.clone()),
            _ => None,
        },
        detail,
        progress,
        started_at: None,
        log: None,
        suit_report: None,
        offline: false,
    };
    // A closing feedback always counts (one per action); progress beyond the device's
    // budget, or that lost its race with other nodes' writes (the device API's 503 busy), is
    // answered 200 and not stored, because SWUpdate fails the install on any other answer (a
    // 429 or 503 would turn chatter into a failed update).
    match crate::api::device::record_report(&state, &auth.device, &report, !closes).await {
        Ok(()) => {}
        Err(e)
            if !closes
                && matches!(
                    e.status,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                ) =>
        {
            tracing::debug!(device = %auth.device.name, status = %e.status, "DDI progress feedback not stored");
        }
        Err(e) if e.status == StatusCode::CONFLICT => {
            return Err(ApiErr::new(
                StatusCode::GONE,
                "action-closed",
                format!("action {} is no longer active", a.id),
            ));
        }
        Err(e) => return Err(e),
    }
    if closes {
        state.db.ddi_action_close(a.id, now).await?;
        if outcome == Outcome::Success
            && let Some(r) = state.db.release_get(&a.release_id).await?
        {
            record_installed(&state, &auth, &r).await?;
        }
    }
    Ok(ok_empty())
}

/// `GET .../cancelAction/{actionId}`: while the action is being cancelled.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    auth: DdiAuth,
    Path(path): Path<ActionPath>,
) -> ApiResult<Response> {
    let a = own_action(&state, &auth, &path.action).await?;
    if !state.db.ddi_is_cancelling(a.id).await? {
        return Err(ApiErr::not_found("cancellation", &path.action));
    }
    Ok(json_reply(&json!({
        "id": a.id.to_string(),
        "cancelAction": {"stopId": a.id.to_string()},
    })))
}

/// `POST .../cancelAction/{actionId}/feedback`: closed (or canceled) accepts the
/// cancellation and closes the action; rejected keeps it open.
pub(crate) async fn cancel_feedback(
    State(state): State<AppState>,
    auth: DdiAuth,
    Path(path): Path<ActionPath>,
    body: Bytes,
) -> ApiResult<Response> {
    let (f, _) = Feedback::parse(&body)?;
    let a = own_action(&state, &auth, &path.action).await?;
    if a.closed {
        return Err(ApiErr::new(
            StatusCode::GONE,
            "action-closed",
            format!("action {} is closed", a.id),
        ));
    }
    // Only a cancellation the server asked for can be accepted: a device must not close its
    // own live deployment through this route (hawkBit answers 404 when nothing is cancelling).
    if !state.db.ddi_is_cancelling(a.id).await? {
        return Err(ApiErr::not_found("cancellation", &path.action));
    }
    if matches!(f.status.execution.as_str(), "closed" | "canceled") {
        state.db.ddi_action_close(a.id, state.now()).await?;
        let report = StepReport {
            release_id: a.release_id.clone(),
            step: Step::Announce,
            outcome: Outcome::Deferred,
            reason: Some("cancelled".into()),
            detail: f
                .detail()
                .or_else(|| Some("the device accepted the cancellation".into())),
            progress: None,
            started_at: None,
            log: None,
            suit_report: None,
            offline: false,
        };
        state
            .db
            .report_insert(&a.device_id, Some(&a.campaign_id), &report, state.now())
            .await?;
    }
    Ok(ok_empty())
}

// ---------------------------------------------------------------------------------------------
// configData
// ---------------------------------------------------------------------------------------------

/// `PUT .../configData`: the controller's attributes (merge, replace or remove), stored as
/// device attributes and shown with the device. SWUpdate 2022.12 sends no `mode` (merge).
pub(crate) async fn config_data(
    State(state): State<AppState>,
    auth: DdiAuth,
    Path(_p): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (mode, set) = ddi::config_data(&body)?;
    let dev = &auth.device.id;
    let r = match mode {
        ConfigMode::Merge => {
            state
                .db
                .device_attributes_write(dev, false, &set, &[])
                .await
        }
        ConfigMode::Replace => state.db.device_attributes_write(dev, true, &set, &[]).await,
        ConfigMode::Remove => {
            let keys: Vec<String> = set.into_keys().collect();
            state
                .db
                .device_attributes_write(dev, false, &BTreeMap::new(), &keys)
                .await
        }
    };
    match r {
        Ok(()) => Ok(ok_empty()),
        Err(e) if e.downcast_ref::<TooManyAttributes>().is_some() => Err(ApiErr::bad_request(
            "bad-config-data",
            format!("a device keeps at most {MAX_ATTRIBUTES} attributes"),
        )
        .hint("use mode replace, or remove some")),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Artifacts
// ---------------------------------------------------------------------------------------------

/// The payload behind a module id, if this device may fetch it: the module's action is the
/// device's, and the device was offered its release (the same gate as the device API's
/// downloads, docs/server.md §3).
async fn module_payload(
    state: &AppState,
    auth: &DdiAuth,
    module: &str,
) -> ApiResult<(ReleaseRow, crate::store::PayloadRow)> {
    let n = module
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiErr::not_found("software module", module))?;
    let a = own_action(state, auth, &(n / MODULES).to_string())
        .await
        .map_err(|_| ApiErr::not_found("software module", module))?;
    if !state
        .db
        .device_offered(&auth.device.id, &a.release_id)
        .await?
    {
        return Err(ApiErr::not_found("software module", module));
    }
    let idx = u32::try_from(n % MODULES).unwrap_or(u32::MAX);
    let r = state
        .db
        .release_get(&a.release_id)
        .await?
        .ok_or_else(|| ApiErr::not_found("software module", module))?;
    let p = r
        .payloads
        .iter()
        .find(|p| p.idx == idx && p.object_key.is_some())
        .cloned()
        .ok_or_else(|| ApiErr::not_found("software module", module))?;
    Ok((r, p))
}

/// `GET .../softwaremodules/{id}/artifacts`: the module's one artifact.
pub(crate) async fn artifacts(
    State(state): State<AppState>,
    auth: DdiAuth,
    Path(path): Path<ArtifactPath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (r, pl) = module_payload(&state, &auth, &path.module).await?;
    let (Some(key), Some(size), Some(sha256)) = (&pl.object_key, pl.size, &pl.sha256) else {
        return Err(ApiErr::not_found("software module", &path.module));
    };
    let (sha1, md5) = ddi_hashes(&state, &r.id, pl.idx, key, size).await?;
    let name = file_name(&pl.uri, pl.idx);
    let p = prefix(&state, &auth, &headers, &path.tenant);
    let url = format!(
        "{p}/softwaremodules/{}/artifacts/{}",
        path.module,
        escape_segment(&name)
    );
    Ok(json_reply(&json!([{
        "filename": name,
        "hashes": {"sha1": sha1, "md5": md5, "sha256": sha256.to_ascii_lowercase()},
        "size": size,
        "_links": {"download": {"href": url}, "download-http": {"href": url},
                   "md5sum": {"href": format!("{url}.MD5SUM")}, "md5sum-http": {"href": format!("{url}.MD5SUM")}},
    }])))
}

/// `GET`/`HEAD .../softwaremodules/{id}/artifacts/{fileName}`: the payload, with Range
/// (206, 416), ETag and If-Range (RFC 9110 §14, §13.1.5) so that a cut download resumes;
/// `{fileName}.MD5SUM` is the MD5 in md5sum's format.
pub(crate) async fn artifact(
    State(state): State<AppState>,
    auth: DdiAuth,
    method: Method,
    Path(path): Path<ArtifactPath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (r, pl) = module_payload(&state, &auth, &path.module).await?;
    let (Some(key), Some(size), Some(sha256)) = (&pl.object_key, pl.size, &pl.sha256) else {
        return Err(ApiErr::not_found("software module", &path.module));
    };
    let name = file_name(&pl.uri, pl.idx);
    let asked = path.file.clone().unwrap_or_default();
    if asked != name {
        if asked.strip_suffix(".MD5SUM") == Some(name.as_str()) {
            let (_, md5) = ddi_hashes(&state, &r.id, pl.idx, key, size).await?;
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{md5}  {name}\n"),
            )
                .into_response());
        }
        return Err(ApiErr::not_found("artifact", &asked));
    }
    let disposition = format!(
        "attachment;filename={}",
        name.replace(|c: char| !c.is_ascii_graphic() || c == '"' || c == ';', "_")
    );
    let mut res = if method == Method::HEAD {
        let etag = crate::wire::etag_of(sha256);
        let want = crate::wire::want(&headers, size, &etag);
        crate::wire::ranged_response(want, size, &etag, "application/octet-stream", None)
    } else {
        if !headers.contains_key(header::RANGE) {
            // hawkBit logs a plain GET as a download; a resumed range is not logged again.
            let report = StepReport {
                release_id: r.id.clone(),
                step: Step::Receive,
                outcome: Outcome::InProgress,
                reason: None,
                detail: Some(format!("the device downloads {name} ({size} bytes)")),
                progress: None,
                started_at: None,
                log: None,
                suit_report: None,
                offline: false,
            };
            if let Err(e) =
                crate::api::device::record_report(&state, &auth.device, &report, true).await
            {
                tracing::debug!(error = %e.body.message, "download not recorded");
            }
        }
        match headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|range| {
                let if_range = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok());
                ddi::several_ranges(range, if_range, size, &crate::wire::etag_of(sha256))
            }) {
            Some(ranges) if ranges.is_empty() => crate::wire::ranged_response(
                crate::wire::Want::Unsatisfiable,
                size,
                &crate::wire::etag_of(sha256),
                "application/octet-stream",
                None,
            ),
            Some(ranges) => multipart(&state, key, size, sha256, &ranges).await?,
            None => crate::api::device::serve_object(&state, key, size, sha256, &headers).await?,
        }
    };
    if let Ok(v) = header::HeaderValue::from_str(&disposition) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

/// hawkBit's boundary (FileStreamingUtil).
const BOUNDARY: &str = "THIS_STRING_SEPARATES_MULTIPART";

/// 206 `multipart/byteranges` (RFC 9110 §14.6), streamed from the payload store.
async fn multipart(
    state: &AppState,
    key: &str,
    size: u64,
    sha256: &str,
    ranges: &[(u64, u64)],
) -> ApiResult<Response> {
    type Part = futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>;
    let mut parts: Vec<Part> = Vec::new();
    let mut length = 0u64;
    for &(a, b) in ranges {
        let head = format!(
            "\r\n--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{}/{size}\r\n\r\n",
            b - 1
        );
        length += head.len() as u64 + (b - a);
        parts.push(Box::pin(futures::stream::once(async move {
            Ok(Bytes::from(head))
        })));
        let body = state.blobs.get_range(key, a..b).await?;
        parts.push(Box::pin(body.map(|c| c.map_err(std::io::Error::other))));
    }
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    length += tail.len() as u64;
    parts.push(Box::pin(futures::stream::once(async move {
        Ok(Bytes::from(tail))
    })));
    Response::builder()
        .status(StatusCode::PARTIAL_CONTENT)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, crate::wire::etag_of(sha256))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/byteranges; boundary={BOUNDARY}"),
        )
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(futures::stream::iter(parts).flatten()))
        .map_err(ApiErr::internal)
}

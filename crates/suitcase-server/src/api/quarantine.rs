//! Quarantine (RFC 8240 §9), remediation releases and the fleet posture: the management
//! API over `crate::quarantine` (docs/server.md §8).

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{Cap, Manager};
use crate::error::{ApiErr, ApiResult};
use crate::wire::Wire;
use suitcase_protocol::mgmt::{
    DeviceQuarantine, FlaggedReport, FleetPosture, QuarantineRecord, ReleaseRemediation,
};

/// The most flagged reports a device's quarantine answer lists.
const FLAGGED_SHOWN: i64 = 50;

/// Why an operator quarantines a device.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuarantineRequest {
    /// Why, in words (1 to 200 characters, no control characters).
    #[schema(min_length = 1, max_length = 200)]
    pub(crate) reason: String,
}

/// Mark a release remediation or not.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Remediation {
    /// Whether quarantined devices are offered this release.
    pub(crate) remediation: bool,
}

async fn device_quarantine(state: &AppState, id: &str) -> ApiResult<DeviceQuarantine> {
    let row = state
        .db
        .device_get(id)
        .await?
        .ok_or_else(|| ApiErr::not_found("device", id))?;
    let q = state
        .db
        .quarantine_of(&row.id)
        .await?
        .ok_or_else(|| ApiErr::not_found("device", id))?;
    let flagged_reports = state
        .db
        .flagged_reports(&row.id, FLAGGED_SHOWN)
        .await?
        .into_iter()
        .map(|(id, r)| FlaggedReport {
            id,
            release_id: r.release_id,
            step: r.step,
            outcome: r.outcome,
            reason: r.reason,
            detail: r.detail,
            at: r.at,
        })
        .collect();
    Ok(DeviceQuarantine {
        device_id: row.id,
        name: row.name,
        quarantined: q.record.is_some(),
        quarantine: q.record,
        flagged_reports,
    })
}

/// A device's quarantine: whether it is quarantined, why, since when, by whom (an operator
/// or the rule that tripped, with the evidence report ids), and its flagged reports.
#[utoipa::path(get, path = "/api/v1/devices/{id}/quarantine", tag = "devices",
    params(("id" = String, Path, description = "device id or name")),
    responses((status = 200, body = DeviceQuarantine),
              (status = 404, body = suitcase_protocol::ApiError, description = "no such device")),
    security(("management_token" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceQuarantine>> {
    who.require(Cap::Read)?;
    Ok(axum::Json(device_quarantine(&state, &id).await?))
}

/// Quarantine a device (admin; RFC 8240 §9): from now on it is offered only releases marked
/// remediation, on every API and by push, and its reports are stored flagged. Audited as
/// `device.quarantine`.
#[utoipa::path(post, path = "/api/v1/devices/{id}/quarantine", tag = "devices",
    params(("id" = String, Path, description = "device id or name")),
    request_body = QuarantineRequest,
    responses((status = 200, body = DeviceQuarantine),
              (status = 404, body = suitcase_protocol::ApiError, description = "no such device"),
              (status = 409, body = suitcase_protocol::ApiError, description = "the device is quarantined already (`already-quarantined`)")),
    security(("management_token" = [])))]
pub(crate) async fn set(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
    Wire(_, body): Wire<QuarantineRequest>,
) -> ApiResult<axum::Json<DeviceQuarantine>> {
    who.require(Cap::Administer)?;
    super::valid_name("quarantine reason", &body.reason)?;
    let row = state
        .db
        .device_get(&id)
        .await?
        .ok_or_else(|| ApiErr::not_found("device", &id))?;
    let record = QuarantineRecord {
        since: state.now(),
        by: "operator".into(),
        actor: who.0.name.clone(),
        rule: None,
        reason: body.reason.clone(),
        evidence: Vec::new(),
    };
    let detail = serde_json::json!({"by": "operator", "name": row.name, "reason": body.reason});
    if !state
        .db
        .quarantine_set(&row.id, &record, who.0.role.name(), &detail)
        .await?
    {
        return Err(ApiErr::conflict(
            "already-quarantined",
            format!("device {:?} is quarantined already", row.name),
        )
        .id(&row.id)
        .hint("GET /api/v1/devices/ID/quarantine says why; DELETE it to release the device"));
    }
    tracing::warn!(device = %row.name, actor = %who.0.name, "device quarantined by an operator");
    Ok(axum::Json(device_quarantine(&state, &row.id).await?))
}

/// Release a device from quarantine (admin): it is offered releases as before, and the
/// automatic rules count only reports it sends from now on. Audited as
/// `device.unquarantine`.
#[utoipa::path(delete, path = "/api/v1/devices/{id}/quarantine", tag = "devices",
    params(("id" = String, Path, description = "device id or name")),
    responses((status = 200, body = DeviceQuarantine),
              (status = 404, body = suitcase_protocol::ApiError, description = "no such device"),
              (status = 409, body = suitcase_protocol::ApiError, description = "the device is not quarantined (`not-quarantined`)")),
    security(("management_token" = [])))]
pub(crate) async fn clear(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceQuarantine>> {
    who.require(Cap::Administer)?;
    let before = device_quarantine(&state, &id).await?;
    let detail = serde_json::json!({"name": before.name, "was": before.quarantine});
    if !state
        .db
        .quarantine_clear(
            &before.device_id,
            state.now(),
            &who.0.name,
            who.0.role.name(),
            &detail,
        )
        .await?
    {
        return Err(ApiErr::conflict(
            "not-quarantined",
            format!("device {:?} is not quarantined", before.name),
        )
        .id(&before.device_id));
    }
    tracing::info!(device = %before.name, actor = %who.0.name, "device released from quarantine");
    Ok(axum::Json(
        device_quarantine(&state, &before.device_id).await?,
    ))
}

/// Mark a release remediation, or not (admin): the only releases a quarantined device is
/// offered. Audited as `release.remediation`.
#[utoipa::path(post, path = "/api/v1/releases/{id}/remediation", tag = "releases",
    params(("id" = String, Path)),
    request_body = Remediation,
    responses((status = 200, body = ReleaseRemediation),
              (status = 404, body = suitcase_protocol::ApiError, description = "no such release")),
    security(("management_token" = [])))]
pub(crate) async fn remediation(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
    Wire(_, body): Wire<Remediation>,
) -> ApiResult<axum::Json<ReleaseRemediation>> {
    who.require(Cap::Administer)?;
    if !state
        .db
        .release_set_remediation(&id, body.remediation)
        .await?
    {
        return Err(ApiErr::not_found("release", &id));
    }
    super::audit(
        &state,
        &who,
        "release.remediation",
        &id,
        serde_json::json!({"remediation": body.remediation}),
    )
    .await?;
    Ok(axum::Json(ReleaseRemediation {
        id,
        remediation: body.remediation,
    }))
}

/// A release's remediation flag.
#[utoipa::path(get, path = "/api/v1/releases/{id}/remediation", tag = "releases",
    params(("id" = String, Path)),
    responses((status = 200, body = ReleaseRemediation),
              (status = 404, body = suitcase_protocol::ApiError, description = "no such release")),
    security(("management_token" = [])))]
pub(crate) async fn remediation_get(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ReleaseRemediation>> {
    who.require(Cap::Read)?;
    let r = crate::api::release_found(&state, &id).await?;
    Ok(axum::Json(ReleaseRemediation {
        id,
        remediation: r.remediation,
    }))
}

/// The fleet's posture (RFC 8240 §9): how many devices are up to date or behind the newest
/// release for their class, quarantined, unreachable (no check-in within the server's
/// window) or never seen.
#[utoipa::path(get, path = "/api/v1/fleet/posture", tag = "devices",
    responses((status = 200, body = FleetPosture)),
    security(("management_token" = [])))]
pub(crate) async fn posture(
    State(state): State<AppState>,
    who: Manager,
) -> ApiResult<axum::Json<FleetPosture>> {
    who.require(Cap::Read)?;
    Ok(axum::Json(crate::quarantine::posture(&state).await?))
}

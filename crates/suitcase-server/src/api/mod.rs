//! The HTTP API: the device API, the management API, and the operational endpoints.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::auth::Manager;

pub(crate) mod admin;
pub(crate) mod campaigns;
pub(crate) mod ddi;
pub(crate) mod device;
pub(crate) mod docs;
pub(crate) mod fleet;
pub(crate) mod quarantine;
pub(crate) mod releases;
pub(crate) mod trust;

pub(crate) use releases::UPLOAD_CLAIM_STALE;

/// Bodies of ordinary requests (JSON or CBOR).
const SMALL_BODY: usize = 1 << 20;
/// Envelopes, which may carry integrated payloads.
const ENVELOPE_BODY: usize = 64 << 20;

pub(crate) fn router(state: AppState) -> Router {
    let device = Router::new()
        .route("/api/v1/device/checkin", post(device::checkin))
        .route("/api/v1/device/reports", post(device::report))
        .route("/api/v1/device/state", get(device::state))
        .route(
            "/api/v1/device/releases/{release_id}/envelope",
            get(device::envelope),
        )
        .route(
            "/api/v1/device/payloads/{release_id}/{index}",
            get(device::payload),
        )
        .route("/api/v1/device/deltas/{delta_id}", get(device::delta));
    let manage = Router::new()
        .route(
            "/api/v1/tokens",
            get(admin::token_list).post(admin::token_create),
        )
        .route("/api/v1/tokens/{id}", delete(admin::token_revoke))
        .route("/api/v1/keys", get(admin::key_list).post(admin::key_create))
        .route("/api/v1/keys/{id}", delete(admin::key_delete))
        .route("/api/v1/audit", get(admin::audit))
        .route(
            "/api/v1/trust-state",
            get(trust::get).post(trust::set).delete(trust::remove),
        )
        .route("/api/v1/releases", get(releases::list))
        .route(
            "/api/v1/releases/{id}",
            get(releases::get).delete(releases::delete),
        )
        .route("/api/v1/releases/{id}/archive", post(releases::archive))
        .route("/api/v1/releases/{id}/envelope", get(releases::envelope))
        .route("/api/v1/devices", get(fleet::list).post(fleet::create))
        .route("/api/v1/devices/batch", post(fleet::create_batch))
        .route(
            "/api/v1/devices/{id}",
            get(fleet::get).patch(fleet::patch).delete(fleet::revoke),
        )
        .route("/api/v1/devices/{id}/token", post(fleet::rotate_token))
        .route(
            "/api/v1/devices/{id}/quarantine",
            get(quarantine::get)
                .post(quarantine::set)
                .delete(quarantine::clear),
        )
        .route(
            "/api/v1/releases/{id}/remediation",
            get(quarantine::remediation_get).post(quarantine::remediation),
        )
        .route("/api/v1/fleet/posture", get(quarantine::posture))
        .route(
            "/api/v1/groups",
            get(fleet::groups).post(fleet::group_create),
        )
        .route(
            "/api/v1/groups/{name}/devices",
            post(fleet::group_add).delete(fleet::group_remove),
        )
        .route(
            "/api/v1/campaigns",
            get(campaigns::list).post(campaigns::create),
        )
        .route("/api/v1/campaigns/dry-run", post(campaigns::dry_run))
        .route("/api/v1/campaigns/{id}", get(campaigns::get))
        .route("/api/v1/campaigns/{id}/devices", get(campaigns::members))
        .route("/api/v1/campaigns/{id}/{action}", post(campaigns::act));
    let uploads = Router::new()
        .route(
            "/api/v1/releases",
            post(releases::upload).layer(DefaultBodyLimit::max(ENVELOPE_BODY)),
        )
        .route(
            "/api/v1/releases/{id}/payloads/{index}",
            // Streamed to the payload store; the store enforces `max_upload`.
            put(releases::put_payload).layer(DefaultBodyLimit::disable()),
        );
    let ops = Router::new()
        .route("/openapi.json", get(docs::openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    device
        .merge(ddi::router())
        .merge(manage)
        .layer(DefaultBodyLimit::max(SMALL_BODY))
        .merge(uploads)
        .merge(ops)
        .merge(crate::ui::router())
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(
            state.config.limits.clone(),
            crate::limits::pace_bodies,
        ))
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every error answer in the API's JSON format ([`json_error_body`]); a body refused as too
/// large (413) also closes the connection: the rest of that body was never read, so the
/// connection cannot carry another request (RFC 9112 §9.6: a server that does not read the
/// whole request body closes after its response; RFC 9110 §15.5.14). Without it a client
/// that reuses the connection gets its next request cut off.
async fn json_errors(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let mut res = json_error_body(req, next).await;
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE {
        res.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    res
}

/// An error answer in the API's JSON format (`ApiError`), including the ones axum's own
/// extractors give (a path segment that is not a number, a bad query string, a body over
/// the size limit, a wrong method), which come as plain text.
async fn json_error_body(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let ops = matches!(req.uri().path(), "/healthz" | "/metrics");
    let res = next.run(req).await;
    let status = res.status();
    let plain = match res.headers().get(header::CONTENT_TYPE) {
        Some(v) => v.to_str().is_ok_and(|v| v.starts_with("text/plain")),
        // An empty answer (a wrong method); a 416 carries its meaning in Content-Range.
        None => status != StatusCode::RANGE_NOT_SATISFIABLE,
    };
    if ops || !(status.is_client_error() || status.is_server_error()) || !plain {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::REQUEST_TIMEOUT => "body-timeout",
        s if s.is_server_error() => "internal",
        _ => "bad-request",
    };
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text.trim().to_owned()
    };
    let mut out = crate::error::ApiErr::new(status, code, message);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        out = out.hint(format!(
            "request bodies are at most {} KiB ({} MiB for envelopes); payloads are uploaded with PUT /api/v1/releases/ID/payloads/INDEX",
            SMALL_BODY >> 10,
            ENVELOPE_BODY >> 20
        ));
    }
    let mut res = out.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            res.headers_mut().insert(name.clone(), value.clone());
        }
    }
    res
}

async fn not_found() -> crate::error::ApiErr {
    crate::error::ApiErr::new(
        StatusCode::NOT_FOUND,
        "no-such-endpoint",
        "no such endpoint",
    )
    .hint("GET /openapi.json lists every endpoint")
}

/// Liveness and readiness: the database answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "the server and its database are up"),
              (status = 503, description = "the database does not answer")))]
pub(crate) async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(&state.db.pool).await {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n"),
    }
}

/// Prometheus metrics (text exposition format). Needs a management token of any role.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format")),
    security(("management_token" = [])))]
pub(crate) async fn metrics(State(state): State<AppState>, _m: Manager) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The one rule for every human-facing name (device, tag, group, campaign, token, key,
/// release): `suitcase_protocol::limits::check_name`, answered as `400 bad-name`.
pub(crate) fn valid_name(kind: &str, s: &str) -> Result<(), crate::error::ApiErr> {
    suitcase_protocol::limits::check_name(s).map_err(|e| {
        // Never echo a 100 KB name or its escape sequences back: a short, escaped prefix.
        let shown: String = s.chars().take(40).collect();
        crate::error::ApiErr::bad_request(
            "bad-name",
            format!("this {kind} is not a valid name ({shown:?}…): {e}"),
        )
        .hint(format!(
            "names are 1 to {} characters without control characters (newlines, tabs, escapes)",
            suitcase_protocol::limits::NAME_MAX_CHARS
        ))
    })
}

/// The stored release `id`, or the API's `404 not-found` naming it.
pub(crate) async fn release_found(
    state: &AppState,
    id: &str,
) -> Result<crate::store::ReleaseRow, crate::error::ApiErr> {
    state
        .db
        .release_get(id)
        .await?
        .ok_or_else(|| crate::error::ApiErr::not_found("release", id))
}

/// Audit helper for management handlers.
pub(crate) async fn audit(
    state: &AppState,
    who: &Manager,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), crate::error::ApiErr> {
    state
        .db
        .audit(
            state.now(),
            &who.0.name,
            who.0.role.name(),
            action,
            target,
            &detail,
        )
        .await?;
    tracing::info!(actor = %who.0.name, action, target, "audit");
    Ok(())
}

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

mod admin;
mod campaigns;
mod device;
pub(crate) mod docs;
mod fleet;
mod releases;

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
        .route("/api/v1/releases", get(releases::list))
        .route("/api/v1/releases/{id}", get(releases::get))
        .route("/api/v1/releases/{id}/envelope", get(releases::envelope))
        .route("/api/v1/devices", get(fleet::list).post(fleet::create))
        .route("/api/v1/devices/batch", post(fleet::create_batch))
        .route(
            "/api/v1/devices/{id}",
            get(fleet::get).patch(fleet::patch).delete(fleet::revoke),
        )
        .route("/api/v1/devices/{id}/token", post(fleet::rotate_token))
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
        .merge(manage)
        .layer(DefaultBodyLimit::max(SMALL_BODY))
        .merge(uploads)
        .merge(ops)
        .fallback(not_found)
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
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

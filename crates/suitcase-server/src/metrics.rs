//! Prometheus metrics (`GET /metrics`): requests by route and status with their latency,
//! check-ins, offers, reports by step and outcome, bytes served, push notifications.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed once; every server in the process shares it).
pub(crate) fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then our
            // metrics go there and /metrics shows only what this handle sees.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Records each request's route, status and duration.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("suitcase_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("suitcase_http_request_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    response
}

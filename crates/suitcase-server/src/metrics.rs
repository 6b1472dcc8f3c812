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

/// Route names as `&'static str`, so that recording a request allocates nothing. Routes are
/// the router's fixed patterns, so the set is small and bounded.
fn intern(route: &str) -> &'static str {
    static ROUTES: OnceLock<std::sync::RwLock<std::collections::HashMap<String, &'static str>>> =
        OnceLock::new();
    let map = ROUTES.get_or_init(Default::default);
    if let Some(r) = map.read().ok().and_then(|m| m.get(route).copied()) {
        return r;
    }
    let Ok(mut m) = map.write() else {
        return "unknown";
    };
    if m.len() >= 256 {
        return "other";
    }
    m.entry(route.to_owned())
        .or_insert_with(|| Box::leak(route.to_owned().into_boxed_str()))
}

fn method_name(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// Records each request's route, status and duration.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| intern(p.as_str()));
    let method = method_name(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    let class = match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!("suitcase_http_requests_total", "route" => route, "method" => method, "status" => class)
        .increment(1);
    metrics::histogram!("suitcase_http_request_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    response
}

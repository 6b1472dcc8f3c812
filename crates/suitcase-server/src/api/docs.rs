//! `GET /openapi.json`: the OpenAPI 3.1 description of every endpoint, generated from the
//! handlers' annotations and the wire types, so it cannot drift from the code.

use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, campaigns, device, fleet, releases};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "management_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "device_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "device_certificate",
            SecurityScheme::MutualTls {
                description: Some(
                    "a TLS client certificate registered for the device (certificate_sha256)"
                        .into(),
                ),
                extensions: None,
                deprecated: None,
            },
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "suitcase server",
        description = "Firmware server and status tracker for SUIT (RFC 9019) updates. The device API is under /api/v1/device; everything else under /api/v1 is the management API.",
        license(name = "Apache-2.0 OR MIT")
    ),
    paths(
        device::checkin, device::report, device::state, device::envelope, device::payload, device::delta,
        releases::upload, releases::put_payload, releases::list, releases::get, releases::archive, releases::delete, releases::envelope,
        fleet::create, fleet::create_batch, fleet::list, fleet::get, fleet::patch, fleet::revoke,
        fleet::rotate_token, fleet::groups, fleet::group_create, fleet::group_add, fleet::group_remove,
        campaigns::create, campaigns::dry_run, campaigns::list, campaigns::get, campaigns::members, campaigns::act,
        admin::token_create, admin::token_list, admin::token_revoke,
        admin::key_create, admin::key_list, admin::key_delete, admin::audit,
        super::healthz, super::metrics,
    ),
    modifiers(&Security),
    tags(
        (name = "device", description = "what devices call: check-in, downloads, step reports"),
        (name = "releases", description = "signed releases and their payloads"),
        (name = "devices", description = "the fleet: devices, tags, groups"),
        (name = "campaigns", description = "rollouts in waves with thresholds"),
        (name = "admin", description = "tokens, signing keys, audit log"),
        (name = "operations", description = "health and metrics"),
    )
)]
pub(crate) struct ApiDoc;

/// The OpenAPI description.
pub(crate) async fn openapi() -> impl IntoResponse {
    let mut spec = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    common_answers(&mut spec);
    axum::Json(spec)
}

/// The answers every operation can give by how it is reached, added in one place rather
/// than on each handler, so that no operation can forget one: 401/403 where a credential is
/// needed, 400/404 where a path names something, 400/408/413 where a body is sent (and 404
/// for ids in a management body), all in the `ApiError` format. Binary bodies are described
/// as binary strings.
fn common_answers(spec: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let error = |what: &str| {
        json!({"description": what,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}})
    };
    let binary = json!({"type": "string", "format": "binary"});
    let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                continue;
            }
            let security: Vec<String> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(|o| o.keys().cloned())
                .collect();
            let has_body = op.get("requestBody").is_some();
            let has_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            let management = security.iter().any(|s| s == "management_token");
            let mut add: Vec<(&str, &str)> = Vec::new();
            if !security.is_empty() {
                add.push((
                    "401",
                    "no credential, or one the server does not know (unauthenticated)",
                ));
            }
            if management {
                add.push(("403", "the token's role may not do this (forbidden)"));
            }
            if path.contains('{') {
                add.push(("400", "a path parameter is malformed"));
                add.push(("404", "no such thing (not-found)"));
            }
            if has_query {
                add.push(("400", "a query parameter is malformed or out of range"));
            }
            if has_body {
                add.push((
                    "400",
                    "the body does not parse, or breaks a rule (names, sizes, limits)",
                ));
                add.push(("408", "the body did not arrive in time (body-timeout)"));
                add.push((
                    "413",
                    "the body is larger than the server accepts (too-large)",
                ));
                if management {
                    add.push(("404", "an id in the body names nothing (not-found)"));
                }
            }
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for (code, what) in add {
                    responses.entry(code).or_insert_with(|| error(what));
                }
                for r in responses.values_mut() {
                    binary_bodies(r, &binary);
                }
            }
            if let Some(body) = op.get_mut("requestBody") {
                binary_bodies(body, &binary);
            }
        }
    }
}

/// Describes octet-stream and SUIT envelope bodies as binary strings (not arrays of numbers,
/// which is how a `Vec<u8>` schema reads).
fn binary_bodies(holder: &mut serde_json::Value, binary: &serde_json::Value) {
    if let Some(content) = holder
        .get_mut("content")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (media, c) in content.iter_mut() {
            if media == "application/octet-stream" || media == suitcase_protocol::SUIT_MEDIA_TYPE {
                c["schema"] = binary.clone();
            }
        }
    }
}

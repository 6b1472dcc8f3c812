//! `GET /openapi.json`: the OpenAPI 3.1 description of every endpoint, generated from the
//! handlers' annotations and the wire types, so it cannot drift from the code.

use axum::extract::State;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, campaigns, device, fleet, quarantine, releases, trust};
use crate::AppState;

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
        quarantine::get, quarantine::set, quarantine::clear, quarantine::remediation, quarantine::remediation_get, quarantine::posture,
        campaigns::create, campaigns::dry_run, campaigns::list, campaigns::get, campaigns::members, campaigns::act,
        admin::token_create, admin::token_list, admin::token_revoke,
        admin::key_create, admin::key_list, admin::key_delete, admin::audit,
        trust::get, trust::set, trust::remove,
        super::healthz, super::metrics,
    ),
    modifiers(&Security),
    tags(
        (name = "device", description = "what devices call: check-in, downloads, step reports"),
        (name = "releases", description = "signed releases and their payloads"),
        (name = "devices", description = "the fleet: devices, tags, groups"),
        (name = "campaigns", description = "rollouts in waves with thresholds"),
        (name = "admin", description = "tokens, signing keys, the fleet's trust state, audit log"),
        (name = "operations", description = "health and metrics"),
    )
)]
pub(crate) struct ApiDoc;

/// The OpenAPI description, with this server's limits (some are configured) in it.
pub(crate) async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    let mut spec = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let limits = Stated::of(&state.config);
    common_answers(&mut spec, &limits);
    name_rules(&mut spec);
    if let Some(info) = spec.get_mut("info") {
        let text = format!(
            "{}\n\n{}",
            info["description"].as_str().unwrap_or_default(),
            limits.describe()
        );
        info["description"] = text.into();
    }
    axum::Json(spec)
}

/// The limits the description states, as this server enforces them (docs/server.md §7).
struct Stated {
    small_body: usize,
    envelope_body: usize,
    max_upload: u64,
    header_timeout: u64,
    idle_timeout: u64,
    body_timeout: u64,
    upload_stall: u64,
    upload_min_rate: u64,
    max_connections: usize,
}

impl Stated {
    fn of(config: &crate::Config) -> Self {
        let l = &config.limits;
        Self {
            small_body: super::SMALL_BODY,
            envelope_body: super::ENVELOPE_BODY,
            max_upload: config.max_upload,
            header_timeout: l.header_timeout.as_secs(),
            idle_timeout: l.idle_timeout.as_secs(),
            body_timeout: l.body_timeout.as_secs(),
            upload_stall: l.upload_stall.as_secs(),
            upload_min_rate: crate::limits::UPLOAD_MIN_RATE,
            max_connections: l.max_connections,
        }
    }

    /// The body size an operation accepts, as the router bounds it.
    fn body_size(&self, method: &str, path: &str) -> String {
        if method == "put" && path.contains("/payloads/") {
            format!(
                "{} (this server's largest payload upload; a payload is also refused past the size its manifest declares, with 422 payload-mismatch)",
                bytes(self.max_upload)
            )
        } else if method == "post" && path == "/api/v1/releases" {
            format!("{} (an envelope)", bytes(self.envelope_body as u64))
        } else {
            format!("{} (a JSON or CBOR body)", bytes(self.small_body as u64))
        }
    }

    fn body_time(&self, method: &str, path: &str) -> String {
        if method == "put" && path.contains("/payloads/") {
            format!(
                "an upload is cut when no data comes for {} s, or less than {} bytes a second arrive over such a window",
                self.upload_stall, self.upload_min_rate
            )
        } else {
            format!("the whole body must arrive within {} s", self.body_timeout)
        }
    }

    /// The limits paragraph of `info.description`.
    fn describe(&self) -> String {
        use suitcase_protocol::limits as l;
        format!(
            "Limits (docs/server.md §7; a request over one is answered with the status in brackets, in the ApiError format):\n\n\
             - Names (devices, tags, groups, campaigns, tokens, keys, releases): 1 to {name} characters, not only white space, no control characters [400 bad-name].\n\
             - Tags: at most {dtags} on a device or in one request that adds or removes tags [400 too-many-tags]; at most {ftags} in each of a filter's tags_all and tags_any, and in `?tags=` [400 filter-too-large]; at most {fdev} devices named in a filter [400 filter-too-large].\n\
             - Body sizes: {small} for JSON and CBOR bodies, {env} for an envelope, {payload} for a payload upload [413 too-large].\n\
             - Time: request headers within {hdr} s of the connection opening or the previous answer (else the connection is closed); a connection with no request in flight is closed after {idle} s; a request body within {body} s; a payload upload may not stall for {stall} s or fall below {rate} bytes a second [408 body-timeout].\n\
             - Step reports: detail at most {detail} characters, reason at most {reason}, a SUIT report at most {suit} bytes [413 report-too-large]; per device a burst of {burst} reports, then {per_min} a minute, and at most {per_rel} reports on one release [429 too-many-reports].\n\
             - Connections: at most {conns} open; at the limit the longest-idle one is closed.",
            name = l::NAME_MAX_CHARS,
            dtags = l::DEVICE_TAGS_MAX,
            ftags = l::FILTER_TAGS_MAX,
            fdev = l::FILTER_DEVICES_MAX,
            small = bytes(self.small_body as u64),
            env = bytes(self.envelope_body as u64),
            payload = bytes(self.max_upload),
            hdr = self.header_timeout,
            idle = self.idle_timeout,
            body = self.body_timeout,
            stall = self.upload_stall,
            rate = self.upload_min_rate,
            detail = l::REPORT_DETAIL_MAX,
            reason = l::REPORT_REASON_MAX,
            suit = l::SUIT_REPORT_MAX,
            burst = crate::devices::REPORT_BURST,
            per_min = crate::devices::REPORTS_PER_MINUTE,
            per_rel = device::MAX_REPORTS_PER_RELEASE,
            conns = self.max_connections,
        )
    }
}

/// A byte count as people read it: `1 MiB`, `4 GiB`, `1000 bytes`.
fn bytes(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// The name rule (suitcase_protocol::limits) on every tag the API takes: the items of the
/// tag lists in bodies, and the `?tags=` query (comma-separated tags, at most
/// `FILTER_TAGS_MAX` of them). The wire types state the rule on their own name fields.
fn name_rules(spec: &mut serde_json::Value) {
    use serde_json::{Value, json};
    use suitcase_protocol::limits::{
        DEVICE_TAGS_MAX, FILTER_TAGS_MAX, NAME_MAX_CHARS, NAME_PATTERN,
    };
    let tag = json!({"type": "string", "minLength": 1, "maxLength": NAME_MAX_CHARS,
                     "pattern": NAME_PATTERN});
    let lists = [
        ("DeviceCreate", "tags", DEVICE_TAGS_MAX),
        ("DevicePatch", "add_tags", DEVICE_TAGS_MAX),
        ("DevicePatch", "remove_tags", DEVICE_TAGS_MAX),
        ("Filter", "tags_all", FILTER_TAGS_MAX),
        ("Filter", "tags_any", FILTER_TAGS_MAX),
    ];
    for (schema, field, max) in lists {
        if let Some(p) = spec
            .pointer_mut(&format!("/components/schemas/{schema}/properties/{field}"))
            .and_then(Value::as_object_mut)
        {
            p.insert("items".into(), tag.clone());
            p.insert("maxItems".into(), max.into());
        }
    }
    // A quarantine's reason follows the name rule (api/quarantine.rs).
    if let Some(p) = spec.pointer_mut("/components/schemas/QuarantineRequest/properties/reason") {
        *p = tag;
    }
    // `?tags=a,b`: the server refuses a value longer than FILTER_TAGS_MAX names and their
    // commas, or one with a control character, as it refuses such a tag in a body.
    let query_max = fleet::TAGS_QUERY_MAX;
    if let Some(params) = spec
        .pointer_mut("/paths/~1api~1v1~1devices/get/parameters")
        .and_then(Value::as_array_mut)
    {
        for p in params.iter_mut().filter(|p| p["name"] == "tags") {
            p["schema"] = json!({"type": "string", "maxLength": query_max,
                                 "pattern": TAGS_QUERY_PATTERN});
        }
    }
}

/// The JSON Schema pattern of the `?tags=` query: no control characters (empty: no filter).
const TAGS_QUERY_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// The answers every operation can give by how it is reached, added in one place rather
/// than on each handler, so that no operation can forget one: 401/403 where a credential is
/// needed, 400/404 where a path names something, 400/408/413 where a body is sent (and 404
/// for ids in a management body), all in the `ApiError` format. Binary bodies are described
/// as binary strings.
fn common_answers(spec: &mut serde_json::Value, limits: &Stated) {
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
            let (timeout, too_large);
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
                timeout = format!(
                    "the body did not arrive in time (body-timeout): {}",
                    limits.body_time(method, path)
                );
                too_large = format!(
                    "the body is larger than the server accepts (too-large): at most {}",
                    limits.body_size(method, path)
                );
                add.push(("408", &timeout));
                add.push(("413", &too_large));
                if management {
                    add.push(("404", "an id in the body names nothing (not-found)"));
                }
            }
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for (code, what) in add {
                    match responses.get_mut(code) {
                        // An operation's own 408 or 413 gets the limit added to its words.
                        Some(r) if matches!(code, "408" | "413") => {
                            let own = r["description"].as_str().unwrap_or_default();
                            r["description"] = format!("{own}; {what}").into();
                        }
                        Some(_) => {}
                        None => {
                            responses.insert(code.to_owned(), error(what));
                        }
                    }
                }
                if path == "/api/v1/device/reports" {
                    report_limits(responses);
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

/// The step report's own limits in its 413 and 429 answers.
fn report_limits(responses: &mut serde_json::Map<String, serde_json::Value>) {
    use suitcase_protocol::limits::{REPORT_DETAIL_MAX, REPORT_REASON_MAX, SUIT_REPORT_MAX};
    if let Some(r) = responses.get_mut("413") {
        r["description"] = format!(
            "the report is too large (report-too-large): detail over {REPORT_DETAIL_MAX} characters, reason over {REPORT_REASON_MAX}, or a SUIT report over {SUIT_REPORT_MAX} bytes; or the body over {} (too-large)",
            bytes(super::SMALL_BODY as u64)
        )
        .into();
    }
    if let Some(r) = responses.get_mut("429") {
        r["description"] = format!(
            "too many reports from this device (too-many-reports): a burst of {} is accepted, then {} a minute (the hint says when to send again); at most {} reports are stored per device and release",
            crate::devices::REPORT_BURST,
            crate::devices::REPORTS_PER_MINUTE,
            device::MAX_REPORTS_PER_RELEASE
        )
        .into();
    }
}

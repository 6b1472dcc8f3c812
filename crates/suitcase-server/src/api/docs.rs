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
        releases::upload, releases::put_payload, releases::list, releases::get, releases::envelope,
        fleet::create, fleet::create_batch, fleet::list, fleet::get, fleet::patch, fleet::revoke,
        fleet::rotate_token, fleet::groups, fleet::group_create, fleet::group_add, fleet::group_remove,
        campaigns::create, campaigns::list, campaigns::get, campaigns::members, campaigns::act,
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
    axum::Json(ApiDoc::openapi())
}

//! The console's quarantine parts (RFC 8240 §9, docs/console.md): the fleet posture panel,
//! the quarantine badge in device lists, and the device page's quarantine section with its
//! two admin actions. Each action is a POST through the management API's own handler (which
//! checks the admin role again), and must be confirmed with a ticked box, checked by the
//! server: there is no script to ask.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Redirect, Response};
use serde::Deserialize;
use suitcase_protocol::Role;
use suitcase_protocol::mgmt::DeviceQuarantine;

use super::{Ui, check_form, e, error_page, page_error, u, when};
use crate::AppState;
use crate::api::quarantine as api;
use crate::error::ApiResult;
use crate::quarantine::{FleetPosture, QuarantineRecord};
use crate::wire::Wire;

/// The badge a quarantined device carries in lists and on its page.
pub(crate) const BADGE: &str = "<span class=\"badge s-quarantined\">⛔ quarantined</span>";

/// The badge a remediation release carries.
pub(crate) const REMEDIATION: &str = "<span class=\"badge s-remediation\">remediation</span>";

/// The fleet page's posture panel.
pub(crate) fn posture_panel(p: &FleetPosture) -> String {
    format!(
        "<section aria-labelledby=\"h-posture\"><h2 id=\"h-posture\">Posture</h2><dl class=\"cards posture\">\
<div><dt>Up to date</dt><dd>{}</dd></div>\
<div><dt>Out of date</dt><dd>{}</dd></div>\
<div><dt>Version unknown</dt><dd>{}</dd></div>\
<div><dt>Quarantined</dt><dd>{}</dd></div>\
<div><dt>Unreachable</dt><dd>{}</dd></div></dl>\
<p class=\"help\">Out of date: behind the newest release for the device's class. Unreachable: \
checked in before, but not within {}. Quarantined devices are offered only remediation \
releases.</p></section>",
        p.up_to_date,
        p.out_of_date,
        p.unknown,
        p.quarantined,
        p.unreachable,
        super::duration(i64::try_from(p.unreachable_after_seconds).unwrap_or(i64::MAX)),
    )
}

/// The device page's quarantine section: the state, and for an admin the action.
pub(crate) fn device_section(
    ui: &Ui,
    device_id: &str,
    record: Option<&QuarantineRecord>,
    now: i64,
) -> String {
    let mut b = String::from(
        "<section aria-labelledby=\"h-quarantine\"><h2 id=\"h-quarantine\">Quarantine</h2>",
    );
    let admin = ui.role() == Role::Admin;
    let form = |action: &str, extra: &str, confirm: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"/ui/devices/{}/{action}\" class=\"quarantine\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">{extra}\
<label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> {}</label> \
<button type=\"submit\" class=\"danger\">{}</button></form>",
            u(device_id),
            e(&ui.csrf),
            e(confirm),
            e(label)
        )
    };
    match record {
        Some(q) => {
            let _ = write!(
                b,
                "<p>{BADGE} since {}, by {}{}: {}</p>",
                when(now, q.since),
                if q.by == "rule" {
                    "the server".to_owned()
                } else {
                    format!("operator {}", e(&q.actor))
                },
                q.rule
                    .as_deref()
                    .map_or_else(String::new, |r| format!(" (rule <code>{}</code>)", e(r))),
                e(&q.reason)
            );
            if !q.evidence.is_empty() {
                let _ = write!(
                    b,
                    "<p>Evidence: report(s) {} (marked quarantined in the timeline below).</p>",
                    q.evidence
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            b.push_str("<p class=\"help\">Offered only releases marked remediation; its reports are flagged.</p>");
            if admin {
                b.push_str(&form(
                    "unquarantine",
                    "",
                    "I confirm: offer this device releases again",
                    "Release from quarantine",
                ));
            }
        }
        None => {
            b.push_str("<p>Not quarantined.</p>");
            if admin {
                b.push_str(&form(
                    "quarantine",
                    "<label>Reason <input name=\"reason\" required maxlength=\"200\"></label> ",
                    "I confirm: offer this device only remediation releases",
                    "Quarantine",
                ));
            }
        }
    }
    b.push_str("</section>");
    b
}

/// The quarantine form.
#[derive(Debug, Deserialize)]
pub(crate) struct QuarantineForm {
    csrf: Option<String>,
    reason: Option<String>,
    confirm: Option<String>,
}

/// What both actions check first: the anti-forgery token, then the ticked confirmation box.
fn confirmed(ui: &Ui, headers: &HeaderMap, f: &QuarantineForm) -> Result<(), Response> {
    check_form(ui, headers, f.csrf.as_deref())?;
    if f.confirm.as_deref() != Some("yes") {
        return Err(page_error(
            StatusCode::BAD_REQUEST,
            "Not confirmed",
            "tick the confirmation box to do this",
        ));
    }
    Ok(())
}

/// Both actions' answer: back to the device's page, or the API's error as a page.
fn to_device_page(answer: ApiResult<axum::Json<DeviceQuarantine>>) -> Response {
    match answer {
        Ok(axum::Json(q)) => {
            Redirect::to(&format!("/ui/devices/{}", u(&q.device_id))).into_response()
        }
        Err(err) => error_page(&err),
    }
}

/// `POST /ui/devices/{id}/quarantine`.
pub(crate) async fn quarantine(
    State(state): State<AppState>,
    ui: Ui,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<QuarantineForm>,
) -> Response {
    if let Err(r) = confirmed(&ui, &headers, &f) {
        return r;
    }
    let body = api::QuarantineRequest {
        reason: f.reason.unwrap_or_default(),
    };
    to_device_page(
        api::set(
            State(state),
            ui.who.clone(),
            Path(id),
            Wire(crate::wire::Format::Json, body),
        )
        .await,
    )
}

/// `POST /ui/devices/{id}/unquarantine`.
pub(crate) async fn unquarantine(
    State(state): State<AppState>,
    ui: Ui,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<QuarantineForm>,
) -> Response {
    if let Err(r) = confirmed(&ui, &headers, &f) {
        return r;
    }
    to_device_page(api::clear(State(state), ui.who.clone(), Path(id)).await)
}

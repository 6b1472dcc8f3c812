//! The console's pages. Reads go through the same store queries as the API; every action
//! calls the API's own handler with the signed-in user's [`Manager`], so the role checks, the
//! validation and the audit entries are the API's.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use suitcase_protocol::{
    CampaignCreate, CampaignInfo, CampaignState, CheckIn, Filter, OnError, Outcome, Role, Step,
    WaveSize,
};

use super::query::DeviceQuery;
use super::{
    Ui, action_form, check_form, clip, duration, e, error_page, page, page_error, u, when,
};
use crate::AppState;
use crate::api::{campaigns, fleet};
use crate::error::ApiErr;
use crate::store::ReportRow;

/// The most rows of the device table on one page.
pub(crate) const MAX_PAGE: i64 = 500;
/// The most reports shown on a device's page (its newest).
const MAX_REPORTS: i64 = 2000;
/// The longest search text or filter value.
const MAX_PARAM: usize = 200;

type Params = Query<HashMap<String, String>>;

fn bad(msg: String) -> Response {
    page_error(StatusCode::BAD_REQUEST, "Bad request", &msg)
}

/// Refuses parameters this page does not know, so that a typo is not silently ignored.
fn known(p: &HashMap<String, String>, names: &[&str]) -> Result<(), Response> {
    let mut unknown: Vec<&str> = p
        .keys()
        .map(String::as_str)
        .filter(|k| !names.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(bad(format!(
        "unknown parameter(s) {}; this page takes {}",
        unknown
            .iter()
            .map(|k| format!("{:?}", clip(k, 40)))
            .collect::<Vec<_>>()
            .join(", "),
        names.join(", ")
    )))
}

/// A text parameter: absent or empty is `None`; longer than [`MAX_PARAM`] or with control
/// characters is a 400 naming it.
fn text(p: &HashMap<String, String>, name: &str) -> Result<Option<String>, Response> {
    match p.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(s) if s.chars().count() > MAX_PARAM => Err(bad(format!(
            "{name} is {} characters long; at most {MAX_PARAM}",
            s.chars().count()
        ))),
        Some(s) if s.chars().any(char::is_control) => {
            Err(bad(format!("{name} contains control characters")))
        }
        Some(s) => Ok(Some(s.to_owned())),
    }
}

fn number(
    p: &HashMap<String, String>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, Response> {
    match text(p, name)? {
        None => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(bad(format!(
                "{name} must be a whole number from {min} to {max}, got {:?}",
                clip(&s, 40)
            ))),
        },
    }
}

/// A device counts as online when it checked in within twice the polling interval: the
/// server's answers add at most 25% jitter, so a healthy device is never later than 1.25
/// intervals, and twice leaves room for one lost poll.
fn online_after(state: &AppState) -> i64 {
    state.now() - 2 * i64::from(state.config.poll_interval.max(1))
}

fn status_of(d: &crate::store::DeviceRow, online_after: i64) -> &'static str {
    if d.revoked {
        "decommissioned"
    } else {
        match d.last_seen {
            None => "never seen",
            Some(t) if t >= online_after => "online",
            Some(_) => "offline",
        }
    }
}

/// A status with a symbol as well as a colour (never information by colour alone).
fn status_badge(s: &str) -> String {
    let sym = match s {
        "online" | "succeeded" | "completed" | "running" => "●",
        "offline" | "paused" | "pending" | "notified" | "draft" => "○",
        "failed" | "rollback_failed" | "cancelled" | "decommissioned" => "✕",
        _ => "◐",
    };
    format!(
        "<span class=\"badge s-{}\">{sym} {}</span>",
        e(&s.replace(' ', "-")),
        e(s)
    )
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "<span class=\"muted\">—</span>".to_owned(), e)
}

// ---------------------------------------------------------------------------------------------
// Fleet
// ---------------------------------------------------------------------------------------------

pub(crate) async fn fleet(State(state): State<AppState>, ui: Ui, Query(p): Params) -> Response {
    let names = [
        "q", "status", "tag", "group", "class", "version", "silent", "after", "limit",
    ];
    let parsed = (|| -> Result<DeviceQuery, Response> {
        known(&p, &names)?;
        let status = text(&p, "status")?;
        if let Some(s) = &status
            && !matches!(
                s.as_str(),
                "all" | "online" | "offline" | "never" | "decommissioned"
            )
        {
            return Err(bad(format!(
                "status must be all, online, offline, never or decommissioned, got {:?}",
                clip(s, 40)
            )));
        }
        Ok(DeviceQuery {
            q: text(&p, "q")?,
            status: status.filter(|s| s != "all"),
            tag: text(&p, "tag")?,
            group: text(&p, "group")?,
            class: text(&p, "class")?,
            version: number(&p, "version", 0, i64::MAX)?,
            silent_hours: number(&p, "silent", 1, 24 * 366 * 10)?,
            after: text(&p, "after")?,
            limit: number(&p, "limit", 1, MAX_PAGE)?.unwrap_or(50),
        })
    })();
    let dq = match parsed {
        Ok(q) => q,
        Err(r) => return r,
    };
    state.devices.flush(&state).await;
    let now = state.now();
    let cut = online_after(&state);
    let (counts, mut rows) = match tokio::try_join!(
        state.db.ui_fleet_counts(cut),
        state.db.ui_devices(&dq, cut, now)
    ) {
        Ok(x) => x,
        Err(err) => return error_page(&ApiErr::from(err)),
    };
    let more = rows.len() > usize::try_from(dq.limit).unwrap_or(0);
    rows.truncate(usize::try_from(dq.limit).unwrap_or(0));
    let ids: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
    let (posture, quarantined) = match tokio::try_join!(
        crate::quarantine::posture(&state),
        state.db.quarantined_among(&ids)
    ) {
        Ok(x) => x,
        Err(err) => return error_page(&ApiErr::from(err)),
    };

    let mut b = String::new();
    let live = counts.total - counts.decommissioned;
    let _ = write!(
        b,
        "<section aria-labelledby=\"h-status\"><h2 id=\"h-status\">Status</h2><dl class=\"cards\">\
<div><dt>Devices</dt><dd>{live}</dd></div>\
<div><dt>Online</dt><dd><a href=\"/ui/fleet?status=online\">{}</a></dd></div>\
<div><dt>Offline</dt><dd><a href=\"/ui/fleet?status=offline\">{}</a></dd></div>\
<div><dt>Never seen</dt><dd><a href=\"/ui/fleet?status=never\">{}</a></dd></div>\
<div><dt>Decommissioned</dt><dd><a href=\"/ui/fleet?status=decommissioned\">{}</a></dd></div></dl>\
<p class=\"help\">Online: checked in within {} (twice the polling interval).</p></section>",
        counts.online,
        live - counts.online - counts.never_seen,
        counts.never_seen,
        counts.decommissioned,
        duration(2 * i64::from(state.config.poll_interval.max(1)))
    );
    b.push_str(&super::quarantine::posture_panel(&posture));
    b.push_str("<div class=\"counts\">");
    count_table(
        &mut b,
        "By class",
        counts.by_class.iter().map(|(c, n)| {
            let (label, key) = match c {
                Some(c) => (c.clone(), c.clone()),
                None => ("(not reported)".to_owned(), "none".to_owned()),
            };
            (label, format!("/ui/fleet?class={}", u(&key)), *n)
        }),
    );
    count_table(
        &mut b,
        "By version (sequence number)",
        counts.by_version.iter().map(|(v, n)| match v {
            Some(v) => (v.to_string(), format!("/ui/fleet?version={v}"), *n),
            None => ("(not reported)".to_owned(), String::new(), *n),
        }),
    );
    count_table(
        &mut b,
        "By tag",
        counts
            .by_tag
            .iter()
            .map(|(t, n)| (t.clone(), format!("/ui/fleet?tag={}", u(t)), *n)),
    );
    count_table(
        &mut b,
        "Updates in live campaigns",
        counts
            .by_update
            .iter()
            .map(|(s, n)| (s.clone(), String::new(), *n)),
    );
    b.push_str("</div>");

    // The filter form (GET: reading only).
    let v = |n: &str| e(p.get(n).map_or("", String::as_str));
    let sel = |cur: Option<&str>, val: &str| {
        if cur.unwrap_or("all") == val {
            " selected"
        } else {
            ""
        }
    };
    let st = dq.status.as_deref();
    let _ = write!(
        b,
        "<section aria-labelledby=\"h-devices\"><h2 id=\"h-devices\">Devices</h2>\
<form method=\"get\" action=\"/ui/fleet\" class=\"filters\" role=\"search\">\
<label>Name contains <input name=\"q\" value=\"{}\" maxlength=\"200\"></label>\
<label>Status <select name=\"status\">\
<option value=\"all\"{}>all (not decommissioned)</option><option value=\"online\"{}>online</option>\
<option value=\"offline\"{}>offline</option><option value=\"never\"{}>never seen</option>\
<option value=\"decommissioned\"{}>decommissioned</option></select></label>\
<label>Tag <input name=\"tag\" value=\"{}\" maxlength=\"200\"></label>\
<label>Group <input name=\"group\" value=\"{}\" maxlength=\"200\"></label>\
<label>Class <input name=\"class\" value=\"{}\" maxlength=\"200\"></label>\
<label>Version <input name=\"version\" value=\"{}\" inputmode=\"numeric\" maxlength=\"20\"></label>\
<label>Silent for at least (hours) <input name=\"silent\" value=\"{}\" inputmode=\"numeric\" maxlength=\"6\"></label>\
<label>Per page <input name=\"limit\" value=\"{}\" inputmode=\"numeric\" maxlength=\"3\"></label>\
<button type=\"submit\">Filter</button> <a href=\"/ui/fleet\">Clear</a></form>",
        v("q"),
        sel(st, "all"),
        sel(st, "online"),
        sel(st, "offline"),
        sel(st, "never"),
        sel(st, "decommissioned"),
        v("tag"),
        v("group"),
        v("class"),
        v("version"),
        v("silent"),
        dq.limit
    );
    if rows.is_empty() {
        b.push_str("<p role=\"status\">No device matches.</p>");
    } else {
        b.push_str(
            "<table class=\"devices\"><caption class=\"sr\">Devices, by name</caption><thead><tr>\
<th scope=\"col\">Name</th><th scope=\"col\">Status</th><th scope=\"col\">Class</th>\
<th scope=\"col\">Version</th><th scope=\"col\">Last seen</th></tr></thead><tbody>",
        );
        for d in &rows {
            let _ = write!(
                b,
                "<tr><th scope=\"row\"><a href=\"/ui/devices/{}\">{}</a></th><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                u(&d.id),
                e(&d.name),
                status_badge(status_of(d, cut)),
                if quarantined.contains_key(&d.id) {
                    format!(" {}", super::quarantine::BADGE)
                } else {
                    String::new()
                },
                opt(d.class_id.as_deref()),
                d.sequence_number
                    .map_or_else(|| opt(None), |s| s.to_string()),
                d.last_seen.map_or_else(|| opt(None), |t| when(now, t))
            );
        }
        b.push_str("</tbody></table>");
    }
    // Keyset pagination: the next page starts after the last name shown.
    let mut keep: Vec<(&str, &str)> = p
        .iter()
        .filter(|(k, v)| k.as_str() != "after" && !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    keep.sort_unstable();
    let base: String = keep.iter().map(|(k, v)| format!("{k}={}&", u(v))).collect();
    b.push_str("<nav aria-label=\"Pages\" class=\"pager\">");
    if dq.after.is_some() {
        let _ = write!(
            b,
            "<a href=\"/ui/fleet?{}\">First page</a> ",
            e(base.trim_end_matches('&'))
        );
    }
    if more && let Some(last) = rows.last() {
        let _ = write!(
            b,
            "<a href=\"/ui/fleet?{}after={}\" rel=\"next\">Next page</a>",
            e(&base),
            u(&last.name)
        );
    }
    b.push_str("</nav></section>");
    page(&ui, "Fleet", "Fleet", &b)
}

fn count_table(b: &mut String, title: &str, rows: impl Iterator<Item = (String, String, i64)>) {
    let _ = write!(
        b,
        "<table class=\"count\"><caption>{}</caption><thead><tr><th scope=\"col\">Value</th><th scope=\"col\">Devices</th></tr></thead><tbody>",
        e(title)
    );
    let mut any = false;
    for (label, href, n) in rows {
        any = true;
        if href.is_empty() {
            let _ = write!(b, "<tr><td>{}</td><td>{n}</td></tr>", e(&clip(&label, 60)));
        } else {
            let _ = write!(
                b,
                "<tr><td><a href=\"{}\">{}</a></td><td>{n}</td></tr>",
                e(&href),
                e(&clip(&label, 60))
            );
        }
    }
    if !any {
        b.push_str("<tr><td colspan=\"2\" class=\"muted\">none</td></tr>");
    }
    b.push_str("</tbody></table>");
}

// ---------------------------------------------------------------------------------------------
// Device
// ---------------------------------------------------------------------------------------------

/// One step of one attempt: its reports merged.
struct StepView {
    step: String,
    start: i64,
    end: i64,
    outcome: String,
    reason: Option<String>,
    details: Vec<String>,
    progress: Option<i64>,
    /// The end of the device's log it sent with the step's failure.
    log: Option<String>,
    /// Reported from an install from an offline bundle (docs/bundles.md).
    offline: bool,
    /// Reported while the device was quarantined, or the evidence that quarantined it.
    quarantined: bool,
}

/// One update attempt of a device on a release.
struct Attempt {
    release_id: String,
    campaign_id: Option<String>,
    number: usize,
    steps: Vec<StepView>,
}

impl Attempt {
    /// Installed from an offline bundle: its reports came queued, when the device came back.
    fn offline(&self) -> bool {
        self.steps.iter().any(|s| s.offline)
    }
}

fn step_index(s: &str) -> usize {
    Step::from_name(s)
        .and_then(|s| Step::ALL.iter().position(|x| *x == s))
        .unwrap_or(usize::MAX)
}

/// Splits a device's reports (oldest first) into attempts: a new attempt begins with another
/// release or campaign, after a failure, or when a step comes back that is earlier in the NTIA
/// order than the last one reported (the agent started over). A step's start is the
/// `started_at` the device reported with it (exact); from an agent that does not send one, its
/// first report, or, when the device reported only its end, the previous report of the
/// attempt.
fn attempts(rows: &[ReportRow]) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = Vec::new();
    let mut per_release: HashMap<String, usize> = HashMap::new();
    let mut last_idx = 0usize;
    let mut last_failed = false;
    let mut last_at = 0i64;
    for r in rows {
        let idx = step_index(&r.step);
        let new = match out.last() {
            None => true,
            Some(a) => {
                a.release_id != r.release_id
                    || a.campaign_id != r.campaign_id
                    || last_failed
                    || idx < last_idx
            }
        };
        if new {
            let n = per_release.entry(r.release_id.clone()).or_insert(0);
            *n += 1;
            out.push(Attempt {
                release_id: r.release_id.clone(),
                campaign_id: r.campaign_id.clone(),
                number: *n,
                steps: Vec::new(),
            });
            last_at = r.at;
        }
        let Some(a) = out.last_mut() else { continue };
        match a.steps.last_mut() {
            Some(s) if s.step == r.step => {
                s.end = r.at;
                s.outcome.clone_from(&r.outcome);
                if r.reason.is_some() {
                    s.reason.clone_from(&r.reason);
                }
                if let Some(d) = &r.detail {
                    s.details.push(d.clone());
                }
                if r.progress.is_some() {
                    s.progress = r.progress;
                }
                if let Some(t) = r.started_at {
                    s.start = t.min(r.at);
                }
                if r.log.is_some() {
                    s.log.clone_from(&r.log);
                }
                s.offline |= r.offline;
                s.quarantined |= r.quarantined;
            }
            _ => {
                let start = match r.started_at {
                    Some(t) => t.min(r.at),
                    None if r.outcome == Outcome::InProgress.name() => r.at,
                    None => last_at.min(r.at),
                };
                a.steps.push(StepView {
                    step: r.step.clone(),
                    start,
                    end: r.at,
                    outcome: r.outcome.clone(),
                    reason: r.reason.clone(),
                    details: r.detail.iter().cloned().collect(),
                    progress: r.progress,
                    log: r.log.clone(),
                    offline: r.offline,
                    quarantined: r.quarantined,
                });
            }
        }
        last_idx = idx;
        last_failed = r.outcome == Outcome::Failure.name();
        last_at = r.at;
    }
    out
}

pub(crate) async fn device(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
) -> Response {
    match device_page(&state, &ui, &id, None).await {
        Ok(r) => r,
        Err(err) => error_page(&err),
    }
}

async fn device_page(
    state: &AppState,
    ui: &Ui,
    id: &str,
    new_token: Option<&str>,
) -> Result<Response, ApiErr> {
    state.devices.flush(state).await;
    let d = state
        .db
        .device_get(id)
        .await?
        .ok_or_else(|| ApiErr::not_found("device", &clip(id, 80)))?;
    let now = state.now();
    let tags = state.db.device_tags(&d.id).await?;
    let attrs = state.db.device_attributes(&d.id).await?;
    let reports = state.db.ui_reports(&d.id, MAX_REPORTS).await?;
    let current = crate::api::device::update_status(state, &d.id).await?;
    let mut b = String::new();
    if let Some(t) = new_token {
        let _ = write!(
            b,
            "<div class=\"notice\" role=\"alert\"><p><strong>New device token</strong> (shown only this once; the old token no longer works):</p><p><code id=\"new-token\">{}</code></p></div>",
            e(t)
        );
    }
    let _ = write!(
        b,
        "<section aria-labelledby=\"h-inv\"><h2 id=\"h-inv\">Inventory</h2><dl class=\"facts\">\
<dt>Id</dt><dd><code>{}</code></dd><dt>Status</dt><dd>{}</dd><dt>Tags</dt><dd>{}</dd>\
<dt>Vendor</dt><dd>{}</dd><dt>Class</dt><dd>{}</dd><dt>Installed sequence number</dt><dd>{}</dd>\
<dt>Last seen</dt><dd>{}</dd><dt>Registered</dt><dd>{}</dd>",
        e(&d.id),
        status_badge(status_of(&d, online_after(state))),
        if tags.is_empty() {
            opt(None)
        } else {
            tags.iter()
                .map(|t| format!("<a href=\"/ui/fleet?tag={}\">{}</a>", u(t), e(t)))
                .collect::<Vec<_>>()
                .join(", ")
        },
        opt(d.vendor_id.as_deref()),
        opt(d.class_id.as_deref()),
        d.sequence_number
            .map_or_else(|| opt(None), |s| s.to_string()),
        d.last_seen.map_or_else(|| opt(None), |t| when(now, t)),
        when(now, d.created_at)
    );
    let inv: Option<CheckIn> = d
        .inventory
        .as_deref()
        .and_then(|i| serde_json::from_str(i).ok());
    if let Some(inv) = &inv {
        let _ = write!(
            b,
            "<dt>Free storage</dt><dd>{}</dd><dt>Agent</dt><dd>{}</dd>",
            inv.free_storage
                .map_or_else(|| opt(None), |f| format!("{f} bytes")),
            opt(inv.agent.as_deref())
        );
        if let Some(boot) = &inv.boot {
            let _ = write!(
                b,
                "<dt>Boot</dt><dd>slot {}; {}; {}</dd>",
                opt(boot.slot.as_deref()),
                if boot.trial { "on trial" } else { "confirmed" },
                if boot.reverted {
                    "reverted at the last boot"
                } else {
                    "not reverted"
                }
            );
        }
    }
    b.push_str("</dl>");
    if let Some(inv) = &inv
        && !inv.components.is_empty()
    {
        b.push_str("<table><caption>Components</caption><thead><tr><th scope=\"col\">Component</th><th scope=\"col\">Sequence</th><th scope=\"col\">Version</th><th scope=\"col\">Size</th><th scope=\"col\">Digest</th><th scope=\"col\">Handler</th><th scope=\"col\">Rollback</th></tr></thead><tbody>");
        for c in &inv.components {
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><code class=\"digest\">{}</code></td><td>{}</td><td>{}</td></tr>",
                e(&suitcase_protocol::component_label(&c.id)),
                c.sequence_number,
                opt(c.version.as_deref()),
                c.size.map_or_else(|| opt(None), |s| format!("{s} bytes")),
                opt(c.digest.as_deref()),
                c.handler
                    .as_deref()
                    .map_or_else(|| "slot image".to_owned(), |h| format!("{} module", e(h))),
                match c.rollback {
                    Some(true) => "✓ can roll back".to_owned(),
                    Some(false) => "<span class=\"warn\">⚠ cannot roll back</span>".to_owned(),
                    None => opt(None),
                }
            );
        }
        b.push_str("</tbody></table>");
    }
    if !attrs.is_empty() {
        b.push_str("<table><caption>Attributes (DDI)</caption><tbody>");
        for (k, v) in &attrs {
            let _ = write!(
                b,
                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                e(k),
                e(v)
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section>");
    if ui.operates() && !d.revoked {
        let _ = write!(
            b,
            "<section aria-labelledby=\"h-act\"><h2 id=\"h-act\">Actions</h2>{}<p class=\"help\">Issues a new token; the device's current token stops working at once.</p></section>",
            action_form(
                ui,
                &format!("/ui/devices/{}/token", u(&d.id)),
                "Rotate the device token",
                "danger"
            )
        );
    }
    let quarantine = state.db.quarantine_of(&d.id).await?.and_then(|q| q.record);
    b.push_str(&super::quarantine::device_section(
        ui,
        &d.id,
        quarantine.as_ref(),
        now,
    ));
    let _ = write!(
        b,
        "<section aria-labelledby=\"h-upd\"><h2 id=\"h-upd\">Update attempts</h2>"
    );
    if let Some(c) = &current {
        let _ = write!(
            b,
            "<p>Current or last update: release <a href=\"/ui/releases#{}\">{}</a>{}, state {}.</p>",
            e(&c.release_id),
            e(&c.release_id),
            c.campaign_id
                .as_deref()
                .map_or_else(String::new, |id| format!(
                    " in campaign <a href=\"/ui/campaigns/{}\">{}</a>",
                    u(id),
                    e(id)
                )),
            status_badge(&c.state)
        );
    }
    let list = attempts(&reports);
    // What a running download fetches in all (the envelope and every payload), for its
    // progress as a share.
    let mut totals: HashMap<String, i64> = HashMap::new();
    for a in &list {
        if a.steps
            .last()
            .is_some_and(|s| s.outcome == "in-progress" && s.progress.is_some())
            && !totals.contains_key(&a.release_id)
            && let Some(r) = state.db.release_get(&a.release_id).await?
        {
            totals.insert(a.release_id.clone(), crate::store::to_i64(r.total_bytes()));
        }
    }
    if list.is_empty() {
        b.push_str("<p>No update reports from this device yet.</p>");
    }
    for (i, a) in list.iter().enumerate().rev() {
        let first = a.steps.first().map_or(0, |s| s.start);
        let last = a.steps.last().map_or(0, |s| s.end);
        let outcome = match a.steps.last() {
            Some(s) if s.outcome == "failure" => format!("failed at {}", s.step),
            Some(s) if s.step == "clean-up" && s.outcome == "success" => "succeeded".to_owned(),
            Some(s) if s.outcome == "deferred" => format!("deferred at {}", s.step),
            Some(s) => format!("reached {} ({})", s.step, s.outcome),
            None => "no steps".to_owned(),
        };
        let _ = write!(
            b,
            "<article class=\"attempt{}\" aria-labelledby=\"att-{i}\"><h3 id=\"att-{i}\">Attempt {} on release {}{}{}: {}</h3>\
<p>Started {}, last report {}, {} in all.</p>\
<table class=\"timeline\"><caption class=\"sr\">Steps of this attempt</caption><thead><tr><th scope=\"col\">Step</th><th scope=\"col\">Started</th><th scope=\"col\">Duration</th><th scope=\"col\">Outcome</th><th scope=\"col\">Detail</th></tr></thead><tbody>",
            if a.offline() { " offline" } else { "" },
            a.number,
            e(&a.release_id),
            if a.offline() {
                " <span class=\"badge s-offline\">offline bundle</span>"
            } else {
                ""
            },
            a.campaign_id
                .as_deref()
                .map_or_else(String::new, |c| format!(
                    " (campaign <a href=\"/ui/campaigns/{}\">{}</a>)",
                    u(c),
                    e(c)
                )),
            e(&outcome),
            when(now, first),
            when(now, last),
            duration(last - first)
        );
        for s in &a.steps {
            let mut detail = String::new();
            if let Some(r) = &s.reason {
                let _ = write!(detail, "<p>reason: <code>{}</code></p>", e(r));
            }
            if let Some(p) = s.progress {
                match totals.get(&a.release_id) {
                    Some(&total) if s.outcome == "in-progress" && total > 0 => {
                        let _ = write!(
                            detail,
                            "<p class=\"progress\">downloading: {}% of {}</p>",
                            (p.max(0).saturating_mul(100) / total).min(100),
                            size_text(total)
                        );
                    }
                    _ => {
                        let _ = write!(detail, "<p>{p} bytes done</p>");
                    }
                }
            }
            for d in &s.details {
                let _ = write!(detail, "<pre>{}</pre>", e(d));
            }
            if let Some(log) = &s.log {
                let _ = write!(
                    detail,
                    "<details class=\"log\"><summary>Device log ({} bytes, its end)</summary><pre>{}</pre></details>",
                    log.len(),
                    e(log)
                );
            }
            if s.quarantined {
                let _ = write!(
                    detail,
                    "<p class=\"quarantined\">{} reported while the device was quarantined (or it quarantined the device)</p>",
                    super::quarantine::BADGE
                );
            }
            if s.offline {
                detail.push_str(
                    "<p class=\"offline\">offline: installed from a bundle without the server; reported when the device next reached it</p>",
                );
            }
            let _ = write!(
                b,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e(&s.step),
                when(now, s.start),
                duration(s.end - s.start),
                status_badge(&s.outcome),
                if detail.is_empty() { opt(None) } else { detail }
            );
        }
        b.push_str("</tbody></table></article>");
    }
    if i64::try_from(reports.len()).unwrap_or(0) >= MAX_REPORTS {
        let _ = write!(
            b,
            "<p class=\"help\">Only the newest {MAX_REPORTS} reports are shown.</p>"
        );
    }
    b.push_str("</section>");
    Ok(page(ui, "Fleet", &format!("Device {}", d.name), &b))
}

/// A size for people: `512 bytes`, `12.0 KiB`, `12.0 MiB`, `1.5 GiB`.
fn size_text(n: i64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "one decimal for people")]
    let f = n as f64;
    if n < 1024 {
        format!("{n} bytes")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", f / 1024.0)
    } else if n < 1 << 30 {
        format!("{:.1} MiB", f / f64::from(1u32 << 20))
    } else {
        format!("{:.1} GiB", f / f64::from(1u32 << 30))
    }
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct CsrfOnly {
    csrf: Option<String>,
}

pub(crate) async fn device_token(
    State(state): State<AppState>,
    ui: Ui,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfOnly>,
) -> Response {
    if let Err(r) = check_form(&ui, &headers, f.csrf.as_deref()) {
        return r;
    }
    match fleet::rotate_token(State(state.clone()), ui.who.clone(), Path(id)).await {
        Ok(created) => match device_page(&state, &ui, &created.id, Some(&created.token)).await {
            Ok(r) => r,
            Err(err) => error_page(&err),
        },
        Err(err) => error_page(&err),
    }
}

// ---------------------------------------------------------------------------------------------
// Releases
// ---------------------------------------------------------------------------------------------

pub(crate) async fn releases(State(state): State<AppState>, ui: Ui) -> Response {
    let r = async {
        let releases = state.db.release_list().await?;
        let campaigns = state.db.campaign_list().await?;
        let keys = state.db.key_list().await?;
        Ok::<_, ApiErr>((releases, campaigns, keys))
    }
    .await;
    let (releases, campaigns, keys) = match r {
        Ok(x) => x,
        Err(err) => return error_page(&err),
    };
    let now = state.now();
    // Authors and admins manage releases (the API's Cap::Upload).
    let authors = matches!(ui.role(), Role::Author | Role::Admin);
    let mut b = String::new();
    if authors {
        b.push_str("<p class=\"help\">Archive keeps a release and its history but offers it to no new campaign; delete removes a release no campaign ever used. Both are refused while a campaign uses the release.</p>");
    }
    if releases.is_empty() {
        b.push_str(
            "<p>No release yet. Upload one with <code>suitcase fleet release upload</code>.</p>",
        );
    }
    b.push_str("<table class=\"releases\"><caption class=\"sr\">Releases, oldest first</caption><thead><tr>\
<th scope=\"col\">Release</th><th scope=\"col\">Vendor / class</th><th scope=\"col\">Sequence</th><th scope=\"col\">Size</th>\
<th scope=\"col\">Signed by</th><th scope=\"col\">Delta bases</th><th scope=\"col\">Campaigns</th><th scope=\"col\">Uploaded</th></tr></thead><tbody>");
    for r in releases.iter().rev() {
        let size = r.total_bytes();
        let signers: Vec<String> = r
            .signed_by
            .iter()
            .map(|n| match keys.iter().find(|k| &k.name == n) {
                Some(k) => format!(
                    "{} <span class=\"muted\">(kid {})</span>",
                    e(n),
                    e(&clip(&k.kid, 16))
                ),
                None => e(n),
            })
            .collect();
        let deltas = state.deltas.of_release(&r.id);
        let using: Vec<String> = campaigns
            .iter()
            .filter(|c| {
                c.spec.release_id == r.id || c.spec.rollback_release_id.as_deref() == Some(&r.id)
            })
            .map(|c| {
                format!(
                    "<a href=\"/ui/campaigns/{}\">{}</a> {}",
                    u(&c.id),
                    e(&c.spec.name),
                    status_badge(c.state.name())
                )
            })
            .collect();
        let _ = write!(
            b,
            "<tr id=\"{}\"><th scope=\"row\">{}<br><code class=\"muted\">{}</code>{}</th><td>{}<br>{}</td><td>{}</td><td>{} bytes</td><td>{}</td><td>{}</td><td>{}</td><td>{}<br>by {}</td></tr>",
            e(&r.id),
            e(&r.name),
            e(&r.id),
            {
                let mut extra = String::new();
                if !r.complete() {
                    extra.push_str("<br><strong>payloads missing</strong>");
                }
                if r.remediation {
                    extra.push_str("<br>");
                    extra.push_str(super::quarantine::REMEDIATION);
                }
                if r.archived {
                    extra.push_str("<br><span class=\"badge s-archived\">▣ archived</span>");
                }
                if authors && !r.archived {
                    let _ = write!(
                        extra,
                        "<br>{}{}",
                        action_form(
                            &ui,
                            &format!("/ui/releases/{}/archive", u(&r.id)),
                            "Archive",
                            ""
                        ),
                        action_form(
                            &ui,
                            &format!("/ui/releases/{}/delete", u(&r.id)),
                            "Delete",
                            "danger"
                        )
                    );
                }
                extra
            },
            e(&r.summary.vendor_ids().join(", ")),
            e(&r.summary.class_ids().join(", ")),
            r.sequence_number,
            size,
            signers.join("<br>"),
            if deltas.is_empty() {
                opt(None)
            } else {
                deltas
                    .iter()
                    .map(|d| {
                        format!(
                            "from {} ({} of {} bytes)",
                            e(&d.source_release_id),
                            d.size,
                            d.full_size
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("<br>")
            },
            if using.is_empty() {
                "none".to_owned()
            } else {
                using.join("<br>")
            },
            when(now, r.created_at),
            e(&r.created_by)
        );
    }
    b.push_str("</tbody></table>");
    page(&ui, "Releases", "Releases", &b)
}

/// `POST /ui/releases/{id}/archive` or `/delete`, through the API's handlers.
pub(crate) async fn release_act(
    State(state): State<AppState>,
    ui: Ui,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(f): axum::Form<CsrfOnly>,
) -> Response {
    if let Err(r) = check_form(&ui, &headers, f.csrf.as_deref()) {
        return r;
    }
    let done = match action.as_str() {
        "archive" => crate::api::releases::archive(State(state), ui.who.clone(), Path(id))
            .await
            .map(|_| ()),
        "delete" => crate::api::releases::delete(State(state), ui.who.clone(), Path(id))
            .await
            .map(|_| ()),
        _ => {
            return page_error(
                StatusCode::NOT_FOUND,
                "Not found",
                "the release actions are archive and delete",
            );
        }
    };
    match done {
        Ok(()) => Redirect::to("/ui/releases").into_response(),
        Err(err) => error_page(&err),
    }
}

// ---------------------------------------------------------------------------------------------
// Campaigns
// ---------------------------------------------------------------------------------------------

pub(crate) async fn campaigns(State(state): State<AppState>, ui: Ui) -> Response {
    let list = match campaigns::list(State(state.clone()), ui.who.clone()).await {
        Ok(l) => l.0,
        Err(err) => return error_page(&err),
    };
    let now = state.now();
    let mut b = String::new();
    if ui.operates() {
        b.push_str("<p><a class=\"button\" href=\"/ui/campaigns/new\">New campaign</a></p>");
    }
    if list.is_empty() {
        b.push_str("<p>No campaign yet.</p>");
    } else {
        b.push_str("<table><caption class=\"sr\">Campaigns, newest first</caption><thead><tr><th scope=\"col\">Campaign</th><th scope=\"col\">State</th><th scope=\"col\">Release</th><th scope=\"col\">Devices</th><th scope=\"col\">Succeeded</th><th scope=\"col\">Failed</th><th scope=\"col\">Created</th></tr></thead><tbody>");
        for c in list.iter().rev() {
            let (n, ok, bad) = c.waves_progress.iter().fold((0, 0, 0), |a, w| {
                (a.0 + w.devices, a.1 + w.succeeded, a.2 + w.failed)
            });
            let _ = write!(
                b,
                "<tr><th scope=\"row\"><a href=\"/ui/campaigns/{}\">{}</a></th><td>{}</td><td><a href=\"/ui/releases#{}\">{}</a></td><td>{n}</td><td>{ok}</td><td>{bad}</td><td>{} by {}</td></tr>",
                u(&c.id),
                e(&c.spec.name),
                status_badge(c.state.name()),
                e(&c.spec.release_id),
                e(&c.spec.release_id),
                when(now, c.created_at),
                e(&c.created_by)
            );
        }
        b.push_str("</tbody></table>");
    }
    page(&ui, "Campaigns", "Campaigns", &b)
}

/// The campaign form's fields.
const CAMPAIGN_FIELDS: [&str; 9] = [
    "name", "release", "tags", "group", "class", "waves", "success", "error", "on_error",
];

/// Builds a campaign from the form (the same `CampaignCreate` the API takes).
fn campaign_spec(p: &HashMap<String, String>) -> Result<CampaignCreate, Response> {
    let name = text(p, "name")?.ok_or_else(|| bad("name: give the campaign a name".into()))?;
    let release_id = text(p, "release")?.ok_or_else(|| bad("release: choose a release".into()))?;
    let tags: Vec<String> = text(p, "tags")?
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut waves = Vec::new();
    if let Some(w) = text(p, "waves")? {
        for (i, part) in w
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let n = i + 1;
            let wave = if let Some(pc) = part.strip_suffix('%') {
                pc.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| *v > 0.0 && *v <= 100.0)
                    .map(WaveSize::Percent)
            } else {
                part.parse::<u64>()
                    .ok()
                    .filter(|c| *c > 0)
                    .map(WaveSize::Count)
            };
            waves.push(wave.ok_or_else(|| {
                bad(format!(
                    "waves: wave {n} ({:?}) is neither a percentage above 0 and at most 100 (10%) nor a device count (5)",
                    clip(part, 20)
                ))
            })?);
        }
    }
    let frac = |field: &str, default: f64| -> Result<f64, Response> {
        match text(p, field)? {
            None => Ok(default),
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    bad(format!(
                        "{field}: a fraction from 0 to 1, got {:?}",
                        clip(&s, 20)
                    ))
                }),
        }
    };
    let on_error = match text(p, "on_error")?.as_deref() {
        None | Some("pause") => OnError::Pause,
        Some("abort") => OnError::Abort,
        Some(o) => {
            return Err(bad(format!(
                "on_error: pause or abort, got {:?} (rollback needs a rollback release: use the API or CLI)",
                clip(o, 20)
            )));
        }
    };
    Ok(CampaignCreate {
        name,
        release_id,
        filter: Filter {
            tags_all: tags,
            group: text(p, "group")?,
            class_id: text(p, "class")?,
            ..Filter::default()
        },
        waves,
        success_threshold: frac("success", 0.95)?,
        error_threshold: frac("error", 0.1)?,
        on_error,
        rollback_release_id: None,
        rate_per_minute: None,
        window: None,
        requires_consent: false,
    })
}

fn may_operate(ui: &Ui) -> Result<(), Response> {
    if ui.operates() {
        Ok(())
    } else {
        Err(page_error(
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!(
                "token {:?} has the {} role; campaigns need the operator or admin role",
                ui.who.0.name,
                ui.role().name()
            ),
        ))
    }
}

/// `GET /ui/campaigns/new`: the form; with a release chosen, the dry run below it.
pub(crate) async fn campaign_new(
    State(state): State<AppState>,
    ui: Ui,
    Query(p): Params,
) -> Response {
    if let Err(r) = may_operate(&ui).and_then(|()| known(&p, &CAMPAIGN_FIELDS)) {
        return r;
    }
    let releases = match state.db.release_list().await {
        Ok(r) => r,
        Err(err) => return error_page(&ApiErr::from(err)),
    };
    let v = |n: &str| e(p.get(n).map_or("", String::as_str));
    let chosen = p.get("release").map_or("", String::as_str);
    let mut opts = String::new();
    for r in releases
        .iter()
        .rev()
        .filter(|r| r.complete() && !r.archived)
    {
        let _ = write!(
            opts,
            "<option value=\"{}\"{}>{} (sequence {}, {})</option>",
            e(&r.id),
            if r.id == chosen { " selected" } else { "" },
            e(&r.name),
            r.sequence_number,
            e(&r.id)
        );
    }
    let on_err = p.get("on_error").map_or("pause", String::as_str);
    let mut b = format!(
        "<form method=\"get\" action=\"/ui/campaigns/new\" class=\"stack\">\
<label for=\"c-name\">Name</label><input id=\"c-name\" name=\"name\" required maxlength=\"200\" value=\"{}\">\
<label for=\"c-release\">Release</label><select id=\"c-release\" name=\"release\" required>{opts}</select>\
<label for=\"c-tags\">Devices with all of these tags (comma-separated)</label><input id=\"c-tags\" name=\"tags\" maxlength=\"200\" value=\"{}\">\
<label for=\"c-group\">Devices in this group</label><input id=\"c-group\" name=\"group\" maxlength=\"200\" value=\"{}\">\
<label for=\"c-class\">Devices of this class id</label><input id=\"c-class\" name=\"class\" maxlength=\"200\" value=\"{}\">\
<label for=\"c-waves\">Waves (cumulative: 10%,50%,100% or device counts)</label><input id=\"c-waves\" name=\"waves\" maxlength=\"200\" value=\"{}\">\
<label for=\"c-success\">Success threshold (fraction of a wave that must succeed before the next opens)</label><input id=\"c-success\" name=\"success\" inputmode=\"decimal\" maxlength=\"10\" value=\"{}\">\
<label for=\"c-error\">Error threshold (fraction of a wave whose failure stops the campaign)</label><input id=\"c-error\" name=\"error\" inputmode=\"decimal\" maxlength=\"10\" value=\"{}\">\
<label for=\"c-onerror\">When the error threshold is reached</label><select id=\"c-onerror\" name=\"on_error\"><option value=\"pause\"{}>pause</option><option value=\"abort\"{}>abort</option></select>\
<button type=\"submit\">Dry run</button></form>",
        v("name"),
        v("tags"),
        v("group"),
        v("class"),
        if p.contains_key("waves") {
            v("waves")
        } else {
            "10%,50%,100%".to_owned()
        },
        if p.contains_key("success") {
            v("success")
        } else {
            "0.95".to_owned()
        },
        if p.contains_key("error") {
            v("error")
        } else {
            "0.1".to_owned()
        },
        if on_err == "pause" { " selected" } else { "" },
        if on_err == "abort" { " selected" } else { "" },
    );
    if p.contains_key("release") {
        match dry_run(&state, &ui, &p).await {
            Ok(s) => b.push_str(&s),
            Err(r) => return r,
        }
    }
    page(&ui, "Campaigns", "New campaign", &b)
}

/// The dry run: which devices the campaign would target and why others would not.
async fn dry_run(
    state: &AppState,
    ui: &Ui,
    p: &HashMap<String, String>,
) -> Result<String, Response> {
    let spec = campaign_spec(p)?;
    // The API's own dry run (POST /api/v1/campaigns/dry-run), drawn.
    let run = campaigns::dry_run_of(state, &spec)
        .await
        .map_err(|err| error_page(&err))?;
    let release = state
        .db
        .release_get(&spec.release_id)
        .await
        .map_err(|err| error_page(&ApiErr::from(err)))?
        .ok_or_else(|| error_page(&ApiErr::not_found("release", &spec.release_id)))?;
    let names: Vec<(String, String)> = run
        .devices
        .iter()
        .map(|d| (d.id.clone(), d.name.clone()))
        .collect();
    let (matched, up_to_date, busy, targeted) =
        (run.matched, run.up_to_date, run.busy, run.targeted);
    let mut b = String::from(
        "<section aria-labelledby=\"h-dry\" class=\"dryrun\"><h2 id=\"h-dry\">Dry run</h2>",
    );
    if targeted == 0 {
        let _ = write!(
            b,
            "<div class=\"error\" role=\"alert\"><p><strong>⚠ This campaign would target no device.</strong> The server refuses to start it (it would look like a finished rollout).</p></div>"
        );
    } else {
        let _ = write!(
            b,
            "<p role=\"status\"><strong>{} device(s) would be targeted</strong> by release {} (sequence {}).</p>",
            targeted,
            e(&release.name),
            release.sequence_number
        );
    }
    let _ = write!(
        b,
        "<ul class=\"why\"><li>{matched} registered device(s) match the filter (decommissioned devices never do).</li>\
<li>{} of them reported another class than the release's ({}): a device refuses a manifest for another class (SUIT manifest §8.4.8.2).</li>\
<li>{busy} are busy in another live campaign.</li>\
<li>{up_to_date} already run sequence {} or newer: they would be offered the release and refuse it (anti-rollback).</li></ul>",
        run.other_class,
        e(&release.summary.class_ids().join(", ")),
        release.sequence_number
    );
    if up_to_date > 0 {
        b.push_str("<p class=\"warn\" role=\"alert\">⚠ Some targeted devices already run this release or a newer one.</p>");
    }
    rollback_warning(&mut b, &run.no_rollback, run.no_rollback_partial);
    if !names.is_empty() {
        b.push_str("<details open><summary>Targeted devices");
        if targeted > names.len() as u64 {
            let _ = write!(b, " (the first {} of {targeted})", names.len());
        }
        b.push_str("</summary><ul class=\"names\">");
        for (id, name) in &names {
            let _ = write!(
                b,
                "<li><a href=\"/ui/devices/{}\">{}</a></li>",
                u(id),
                e(name)
            );
        }
        b.push_str("</ul></details>");
    }
    if targeted > 0 {
        let mut hidden = String::new();
        for f in CAMPAIGN_FIELDS {
            if let Some(v) = p.get(f) {
                let _ = write!(
                    hidden,
                    "<input type=\"hidden\" name=\"{f}\" value=\"{}\">",
                    e(v)
                );
            }
        }
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/ui/campaigns\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{hidden}\
<button type=\"submit\" name=\"start\" value=\"1\">Create and start</button> \
<button type=\"submit\" name=\"start\" value=\"0\">Create as draft</button></form>",
            e(&ui.csrf)
        );
    }
    b.push_str("</section>");
    Ok(b)
}

/// `POST /ui/campaigns`: create (through the API's handler) and, if asked, start.
pub(crate) async fn campaign_create(
    State(state): State<AppState>,
    ui: Ui,
    headers: HeaderMap,
    axum::Form(mut p): axum::Form<HashMap<String, String>>,
) -> Response {
    let csrf = p.remove("csrf");
    if let Err(r) = check_form(&ui, &headers, csrf.as_deref()) {
        return r;
    }
    let start = p.remove("start").is_some_and(|s| s == "1");
    if let Err(r) = may_operate(&ui).and_then(|()| known(&p, &CAMPAIGN_FIELDS)) {
        return r;
    }
    let spec = match campaign_spec(&p) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let created = match campaigns::create(
        State(state.clone()),
        ui.who.clone(),
        crate::wire::Wire(crate::wire::Format::Json, spec),
    )
    .await
    {
        Ok((_, info)) => info.0,
        Err(err) => return error_page(&err),
    };
    if start
        && let Err(err) = campaigns::act(
            State(state.clone()),
            ui.who.clone(),
            Path((created.id.clone(), "start".to_owned())),
        )
        .await
    {
        return error_page(&err);
    }
    Redirect::to(&format!("/ui/campaigns/{}", u(&created.id))).into_response()
}

pub(crate) async fn campaign(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
) -> Response {
    let info = match campaigns::get(State(state.clone()), ui.who.clone(), Path(id.clone())).await {
        Ok(i) => i.0,
        Err(err) => return error_page(&err),
    };
    let now = state.now();
    let s = &info.spec;
    let waves: Vec<String> = s
        .waves
        .iter()
        .map(|w| match w {
            WaveSize::Percent(p) => format!("{p}%"),
            WaveSize::Count(c) => c.to_string(),
        })
        .collect();
    let mut b = format!(
        "<dl class=\"facts\"><dt>Id</dt><dd><code>{}</code></dd><dt>Release</dt><dd><a href=\"/ui/releases#{}\">{}</a></dd>\
<dt>Devices</dt><dd>{}</dd><dt>Waves</dt><dd>{}</dd><dt>Thresholds</dt><dd>next wave at {:.0}% succeeded; {} at {:.0}% failed</dd>\
<dt>Created</dt><dd>{} by {}</dd></dl>",
        e(&info.id),
        e(&s.release_id),
        e(&s.release_id),
        e(&filter_text(&s.filter)),
        if waves.is_empty() {
            "one wave of every device".to_owned()
        } else {
            e(&waves.join(", "))
        },
        s.success_threshold * 100.0,
        match s.on_error {
            OnError::Pause => "pause",
            OnError::Abort => "abort",
            OnError::Rollback => "roll back",
        },
        s.error_threshold * 100.0,
        when(now, info.created_at),
        e(&info.created_by)
    );
    rollback_warning(&mut b, &info.no_rollback, info.no_rollback_partial);
    let _ = write!(
        b,
        "<div id=\"live\" data-live=\"/ui/campaigns/{}/live\" aria-live=\"polite\">{}</div>",
        u(&info.id),
        live_html(&ui, &info)
    );
    // The members (the first 200), with their device names.
    let members = state
        .db
        .campaign_members(&info.id)
        .await
        .unwrap_or_default();
    if !members.is_empty() {
        let ids: Vec<String> = members
            .iter()
            .take(200)
            .map(|m| m.device_id.clone())
            .collect();
        let names = state.db.ui_names(&ids).await.unwrap_or_default();
        let _ = write!(
            b,
            "<details><summary>Devices ({}{})</summary><table><thead><tr><th scope=\"col\">Device</th><th scope=\"col\">Wave</th><th scope=\"col\">State</th></tr></thead><tbody>",
            members.len(),
            if members.len() > 200 {
                ", the first 200 shown"
            } else {
                ""
            }
        );
        for (m, (id, name)) in members.iter().zip(names.iter()) {
            let _ = write!(
                b,
                "<tr><td><a href=\"/ui/devices/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                u(id),
                e(name),
                m.wave + 1,
                status_badge(&m.state)
            );
        }
        b.push_str("</tbody></table></details>");
    }
    page(&ui, "Campaigns", &format!("Campaign {}", s.name), &b)
}

/// The components some of a campaign's devices cannot roll back (docs/console.md): shown
/// before the campaign starts, where an operator decides.
fn rollback_warning(b: &mut String, gaps: &[suitcase_protocol::RollbackGap], partial: bool) {
    if gaps.is_empty() {
        return;
    }
    b.push_str("<div class=\"warn rollback\" role=\"alert\"><p>⚠ Some devices cannot roll back what this release updates: after a failed health check they keep the new content.</p><ul>");
    for g in gaps {
        let _ = write!(b, "<li>{}</li>", e(&g.text()));
    }
    b.push_str("</ul>");
    if partial {
        let _ = write!(
            b,
            "<p>Only the first {} devices that reported such a component were checked: the counts are at least these.</p>",
            campaigns::ROLLBACK_SCAN
        );
    }
    b.push_str("</div>");
}

fn filter_text(f: &Filter) -> String {
    let mut parts = Vec::new();
    if !f.tags_all.is_empty() {
        parts.push(format!("tags {}", f.tags_all.join(" and ")));
    }
    if !f.tags_any.is_empty() {
        parts.push(format!("any tag of {}", f.tags_any.join(", ")));
    }
    if let Some(g) = &f.group {
        parts.push(format!("group {g}"));
    }
    if let Some(c) = &f.class_id {
        parts.push(format!("class {c}"));
    }
    if let Some(v) = &f.vendor_id {
        parts.push(format!("vendor {v}"));
    }
    if let Some(s) = f.sequence_below {
        parts.push(format!("sequence below {s}"));
    }
    if !f.devices.is_empty() {
        parts.push(format!("{} named devices", f.devices.len()));
    }
    if parts.is_empty() {
        "every device of the release's class".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The live part of a campaign page: state, per-wave counts and charts, the actions.
fn live_html(ui: &Ui, info: &CampaignInfo) -> String {
    let done = matches!(
        info.state,
        CampaignState::Completed | CampaignState::Cancelled
    );
    let mut b = format!(
        "<p class=\"state\" data-state=\"{}\"{}>State: {}{}</p>",
        info.state.name(),
        if done { " data-final=\"1\"" } else { "" },
        status_badge(info.state.name()),
        info.state_reason
            .as_deref()
            .map_or_else(String::new, |r| format!(" — {}", e(r)))
    );
    if ui.operates() {
        let mut acts = String::new();
        let base = format!("/ui/campaigns/{}", u(&info.id));
        match info.state {
            CampaignState::Draft => {
                acts.push_str(&action_form(ui, &format!("{base}/start"), "Start", ""))
            }
            CampaignState::Running => {
                acts.push_str(&action_form(ui, &format!("{base}/pause"), "Pause", ""))
            }
            CampaignState::Paused => {
                acts.push_str(&action_form(ui, &format!("{base}/resume"), "Resume", ""))
            }
            _ => {}
        }
        if matches!(info.state, CampaignState::Running | CampaignState::Paused)
            && info.spec.rollback_release_id.is_some()
        {
            acts.push_str(&action_form(
                ui,
                &format!("{base}/rollback"),
                "Roll back",
                "danger",
            ));
        }
        if !done {
            acts.push_str(&action_form(
                ui,
                &format!("{base}/cancel"),
                "Abort (cancel)",
                "danger",
            ));
        }
        if !acts.is_empty() {
            let _ = write!(
                b,
                "<div class=\"actions\" role=\"group\" aria-label=\"Campaign actions\">{acts}</div>"
            );
        }
    }
    if info.waves_progress.is_empty() {
        b.push_str("<p>No device is in this campaign yet (it starts with its first wave).</p>");
        return b;
    }
    b.push_str("<table class=\"waves\"><caption>Progress by wave</caption><thead><tr><th scope=\"col\">Wave</th><th scope=\"col\">Devices</th>\
<th scope=\"col\">Pending</th><th scope=\"col\">Offered</th><th scope=\"col\">Updating</th><th scope=\"col\">Succeeded</th><th scope=\"col\">Failed</th>\
<th scope=\"col\">Rolling back</th><th scope=\"col\">Rolled back</th><th scope=\"col\">Cancelled</th><th scope=\"col\">Chart</th></tr></thead><tbody>");
    for w in &info.waves_progress {
        let opened = w.wave < info.opened_waves;
        let total = w.devices.max(1) as f64;
        let segs = [
            ("succeeded", w.succeeded),
            ("failed", w.failed),
            ("rolled_back", w.rolled_back),
            ("rolling_back", w.rolling_back),
            ("in_progress", w.in_progress),
            ("notified", w.notified),
            ("cancelled", w.cancelled),
            ("pending", w.pending),
        ];
        let mut svg = String::new();
        let mut x = 0.0;
        for (name, n) in segs {
            if n == 0 {
                continue;
            }
            let wdt = n as f64 / total * 1000.0;
            let _ = write!(
                svg,
                "<rect class=\"c-{name}\" x=\"{x:.1}\" y=\"0\" width=\"{wdt:.1}\" height=\"20\"></rect>"
            );
            x += wdt;
        }
        let st = info.spec.success_threshold * 1000.0;
        let et = info.spec.error_threshold * 1000.0;
        let label = format!(
            "wave {}: {} of {} succeeded, {} failed; next wave at {:.0}% succeeded, stop at {:.0}% failed",
            w.wave + 1,
            w.succeeded,
            w.devices,
            w.failed,
            info.spec.success_threshold * 100.0,
            info.spec.error_threshold * 100.0
        );
        let _ = write!(
            b,
            "<tr><th scope=\"row\">{}{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td><svg class=\"chart\" viewBox=\"0 0 1000 28\" role=\"img\" aria-label=\"{}\"><rect class=\"c-bg\" x=\"0\" y=\"0\" width=\"1000\" height=\"20\"></rect>{svg}\
<line class=\"t-success\" x1=\"{st:.1}\" x2=\"{st:.1}\" y1=\"0\" y2=\"28\"></line><line class=\"t-error\" x1=\"{et:.1}\" x2=\"{et:.1}\" y1=\"0\" y2=\"28\"></line></svg></td></tr>",
            w.wave + 1,
            if opened { "" } else { " (not open)" },
            w.devices,
            w.pending,
            w.notified,
            w.in_progress,
            w.succeeded,
            w.failed,
            w.rolling_back,
            w.rolled_back,
            w.cancelled,
            e(&label)
        );
    }
    b.push_str("</tbody></table><p class=\"help legend\">Chart: succeeded, failed, rolled back, rolling back, updating, offered, cancelled, pending, left to right; the solid line is the success threshold, the dashed line the error threshold. The table gives the same numbers.</p>");
    b
}

/// `GET /ui/campaigns/{id}/live`: the live part alone, for the page's refresh.
pub(crate) async fn campaign_live(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
) -> Response {
    // Not `campaigns::get`: the live part does not show the rollback check, which is too
    // costly to run on every refresh.
    match campaigns::get_progress(&state, &ui.who, &id).await {
        Ok(info) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            live_html(&ui, &info),
        )
            .into_response(),
        Err(err) => error_page(&err),
    }
}

pub(crate) async fn campaign_act(
    State(state): State<AppState>,
    ui: Ui,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(f): axum::Form<CsrfOnly>,
) -> Response {
    if let Err(r) = check_form(&ui, &headers, f.csrf.as_deref()) {
        return r;
    }
    if !matches!(
        action.as_str(),
        "start" | "pause" | "resume" | "cancel" | "rollback"
    ) {
        return page_error(
            StatusCode::NOT_FOUND,
            "Not found",
            "the campaign actions are start, pause, resume, cancel and rollback",
        );
    }
    match campaigns::act(State(state), ui.who.clone(), Path((id.clone(), action))).await {
        Ok(_) => Redirect::to(&format!("/ui/campaigns/{}", u(&id))).into_response(),
        Err(err) => error_page(&err),
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and audit
// ---------------------------------------------------------------------------------------------

pub(crate) async fn keys(State(state): State<AppState>, ui: Ui) -> Response {
    let (keys, releases) = match tokio::try_join!(state.db.key_list(), state.db.release_list()) {
        Ok(x) => x,
        Err(err) => return error_page(&ApiErr::from(err)),
    };
    let mut b = String::from(
        "<p class=\"help\">Release-signing keys the server verifies uploads against. Add one with <code>suitcase fleet key add NAME KEY.pub</code> (admin role).</p>",
    );
    if keys.is_empty() {
        b.push_str("<p>No key registered.</p>");
    } else {
        b.push_str("<table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Kind</th><th scope=\"col\">Key id (kid)</th><th scope=\"col\">Post-quantum</th><th scope=\"col\">Releases signed</th></tr></thead><tbody>");
        for k in &keys {
            let n = releases
                .iter()
                .filter(|r| r.signed_by.contains(&k.name))
                .count();
            let _ = write!(
                b,
                "<tr><th scope=\"row\">{}<br><code class=\"muted\">{}</code></th><td>{}</td><td><code>{}</code></td><td>{}</td><td>{n}</td></tr>",
                e(&k.name),
                e(&k.id),
                e(&k.kind),
                e(&k.kid),
                if k.post_quantum { "yes" } else { "no" }
            );
        }
        b.push_str("</tbody></table>");
    }
    page(&ui, "Keys", "Keys", &b)
}

pub(crate) async fn audit(State(state): State<AppState>, ui: Ui, Query(p): Params) -> Response {
    let parsed = (|| {
        known(&p, &["before", "actor", "action", "limit"])?;
        Ok::<_, Response>((
            number(&p, "before", 1, i64::MAX)?,
            text(&p, "actor")?,
            text(&p, "action")?,
            number(&p, "limit", 1, MAX_PAGE)?.unwrap_or(100),
        ))
    })();
    let (before, actor, action, limit) = match parsed {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut rows = match state
        .db
        .ui_audit(before, actor.as_deref(), action.as_deref(), limit)
        .await
    {
        Ok(r) => r,
        Err(err) => return error_page(&ApiErr::from(err)),
    };
    let more = rows.len() > usize::try_from(limit).unwrap_or(0);
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let now = state.now();
    let v = |n: &str| e(p.get(n).map_or("", String::as_str));
    let mut b = format!(
        "<form method=\"get\" action=\"/ui/audit\" class=\"filters\" role=\"search\">\
<label>Actor <input name=\"actor\" value=\"{}\" maxlength=\"200\"></label>\
<label>Action starts with <input name=\"action\" value=\"{}\" maxlength=\"200\" placeholder=\"campaign.\"></label>\
<button type=\"submit\">Filter</button> <a href=\"/ui/audit\">Clear</a></form>",
        v("actor"),
        v("action")
    );
    if rows.is_empty() {
        b.push_str("<p role=\"status\">No entry matches.</p>");
    } else {
        b.push_str("<table class=\"audit\"><caption class=\"sr\">Audit log, newest first</caption><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">Action</th><th scope=\"col\">Target</th><th scope=\"col\">Detail</th></tr></thead><tbody>");
        for r in &rows {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{} <span class=\"muted\">({})</span></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                when(now, r.at),
                e(&r.actor),
                e(&r.role),
                e(&r.action),
                e(&clip(&r.target, 80)),
                if r.detail.chars().count() > 120 {
                    format!(
                        "<details><summary>{}</summary><pre>{}</pre></details>",
                        e(&clip(&r.detail, 120)),
                        e(&r.detail)
                    )
                } else {
                    format!("<code>{}</code>", e(&r.detail))
                }
            );
        }
        b.push_str("</tbody></table>");
    }
    if more && let Some(last) = rows.last() {
        let mut q = format!("before={}&limit={limit}", last.id);
        if let Some(a) = &actor {
            let _ = write!(q, "&actor={}", u(a));
        }
        if let Some(a) = &action {
            let _ = write!(q, "&action={}", u(a));
        }
        let _ = write!(
            b,
            "<nav aria-label=\"Pages\" class=\"pager\"><a href=\"/ui/audit?{}\" rel=\"next\">Older entries</a></nav>",
            e(&q)
        );
    }
    page(&ui, "Audit log", "Audit log", &b)
}

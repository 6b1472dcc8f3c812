//! The summaries `suitcase fleet` prints for each answer of the management API (without
//! `--json`), from the `suitcase-protocol` types the client returns.
//!
//! Lists and single values print fields as the JSON answer has them where that is what the
//! user reads (tags as `["a","b"]`, a missing number as `null`).

use serde::Serialize;
use serde_json::Value;
use suitcase_protocol::mgmt::{
    DeviceQuarantine, FleetPosture, QuarantineRecord, ReleaseRemediation,
};
use suitcase_protocol::{
    AuditEntry, CampaignDryRun, CampaignInfo, DeviceCreated, DeviceInfo, GroupInfo, KeyInfo,
    Outcome, ReleaseInfo, RollbackGap, TokenInfo,
};

/// A value as compact JSON, as the answer has it.
fn js<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Now, for "3 min ago".
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An API time (seconds since 1970) for people: `2026-12-06 11:52 UTC, 3 min ago`; `--json`
/// prints the API's number instead.
fn when(t: i64) -> String {
    suitcase_protocol::time::human(now(), t)
}

/// A last-seen time, or `never`.
fn seen(t: Option<i64>) -> String {
    t.map_or_else(|| "never".to_owned(), when)
}

pub(super) fn key_added(k: &KeyInfo) {
    outln!("registered {} key {:?} (kid {})", k.kind, k.name, k.kid);
}

pub(super) fn keys(list: &[KeyInfo]) {
    for k in list {
        outln!("{}  {}  {}  kid {}", k.id, k.name, k.kind, k.kid);
    }
}

pub(super) fn releases(list: &[ReleaseInfo]) {
    for r in list {
        outln!(
            "{}  {}  seq {}  {}  {}{}",
            r.id,
            r.kind,
            r.sequence_number,
            if r.complete {
                "complete  "
            } else {
                "incomplete"
            },
            r.name,
            if r.archived { "  (archived)" } else { "" }
        );
    }
}

pub(super) fn release(v: &ReleaseInfo) {
    outln!(
        "release {}  {:?}  sequence {}",
        v.id,
        v.name,
        v.sequence_number
    );
    outln!("  kind {}", v.kind);
    outln!("  signed by {}", js(&v.signed_by));
    outln!("  uploaded {} by {}", when(v.created_at), v.created_by);
    for p in &v.payloads {
        outln!(
            "  payload {} {}: {}",
            p.index,
            p.uri,
            if p.uploaded {
                format!("{} bytes", js(&p.size))
            } else {
                "missing".into()
            }
        );
    }
    for d in &v.deltas {
        outln!(
            "  delta to payload {} from {}: {} bytes instead of {}",
            d.index,
            d.source_release_id,
            d.size,
            d.full_size
        );
    }
    outln!(
        "  {}",
        if v.complete {
            "complete: ready to deploy"
        } else {
            "incomplete: payloads missing"
        }
    );
}

pub(super) fn device_created(d: &DeviceCreated, rotated: bool) {
    if rotated {
        outln!(
            "new token for {} ({}); the old one no longer works",
            d.name,
            d.id
        );
    } else {
        outln!("registered device {} ({})", d.name, d.id);
    }
    outln!("token (shown once; install it on the device): {}", d.token);
}

pub(super) fn devices(list: &[DeviceInfo]) {
    for d in list {
        outln!(
            "{}  {:<24} seq {:<8} last seen {:<34} tags {}",
            d.id,
            d.name,
            d.sequence_number.map_or("-".into(), |s| s.to_string()),
            seen(d.last_seen),
            js(&d.tags)
        );
    }
}

pub(super) fn device(v: &DeviceInfo, q: Option<&DeviceQuarantine>) {
    outln!("device {}  {}", v.name, v.id);
    if let Some(r) = q.and_then(|q| q.quarantine.as_ref()) {
        quarantine_record(r);
    }
    outln!(
        "  tags {}  sequence {}  last seen {}",
        js(&v.tags),
        js(&v.sequence_number),
        seen(v.last_seen)
    );
    // What it runs, and whether each can be rolled back after a failed health check.
    for c in v.inventory.iter().flat_map(|i| &i.components) {
        outln!(
            "  component {}  sequence {}{}  {}{}",
            suitcase_protocol::component_label(&c.id),
            c.sequence_number,
            c.version
                .as_deref()
                .map(|v| format!("  version {v}"))
                .unwrap_or_default(),
            c.handler
                .as_deref()
                .map_or_else(|| "slot image".to_owned(), |h| format!("{h} handler")),
            match c.rollback {
                Some(true) => ", can roll back",
                Some(false) => ", cannot roll back",
                None => "",
            }
        );
    }
    // Controller attributes a hawkBit DDI device sent (configData, docs/ddi.md).
    if !v.attributes.is_empty() {
        let list: Vec<String> = v
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        outln!("  attributes {}", list.join("  "));
    }
    let Some(u) = &v.update else { return };
    outln!("  update: release {} ({})", u.release_id, u.state);
    // A step took from the start the device reported to its (latest) report; without a
    // reported start, from the previous step's report.
    let mut previous: Option<i64> = None;
    for s in &u.steps {
        let reason = s
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let took = s.started_at.or(previous).map_or_else(String::new, |start| {
            format!(
                ", {} {}",
                if s.outcome == Outcome::InProgress {
                    "running for"
                } else {
                    "took"
                },
                suitcase_protocol::time::duration(s.at - start)
            )
        });
        let progress = s
            .progress
            .map(|p| format!(", {p} bytes downloaded"))
            .unwrap_or_default();
        previous = Some(s.at);
        outln!(
            "    {:<10} {:<11} {}{took}{progress}{}",
            s.step.name(),
            s.outcome.name(),
            when(s.at),
            reason
        );
        // In the device's words (e.g. SWUpdate's error lines): all of a failure's, the
        // first lines of anything else.
        if s.outcome == Outcome::Failure {
            for line in s.detail.as_deref().unwrap_or_default().lines().take(5) {
                outln!("               {}", printable(line));
            }
            // The end of the device's log it sent with the failure: its last lines.
            if let Some(log) = &s.log {
                let lines: Vec<&str> = log.lines().collect();
                outln!("               log (last lines; --json has up to 16 KiB):");
                for line in lines.iter().skip(lines.len().saturating_sub(10)) {
                    outln!("                 {}", printable(line));
                }
            }
        }
    }
}

/// A line from a device without its control characters (no terminal escapes).
fn printable(line: &str) -> String {
    line.chars().filter(|c| !c.is_control()).collect()
}

pub(super) fn tagged(d: &DeviceInfo) {
    outln!("{} tags {}", d.name, js(&d.tags));
}

pub(super) fn group_created(g: &GroupInfo) {
    outln!("group {} with {} device(s)", g.name, g.devices);
}

pub(super) fn groups(list: &[GroupInfo]) {
    for g in list {
        outln!("{}  {} device(s)", g.name, g.devices);
    }
}

pub(super) fn dry_run(v: &CampaignDryRun) {
    outln!("dry run: {} device(s) would be targeted", v.targeted);
    outln!(
        "  {} match the filter; {} left out for another class; {} busy in another live campaign",
        v.matched,
        v.other_class,
        v.busy
    );
    if v.up_to_date > 0 {
        outln!(
            "  warning: {} already run this sequence number or a newer one (they would refuse it)",
            v.up_to_date
        );
    }
    rollback_warnings(&v.no_rollback, v.no_rollback_partial);
    let list: Vec<&str> = v.devices.iter().map(|d| d.name.as_str()).collect();
    if !list.is_empty() {
        let more = v.targeted.saturating_sub(list.len() as u64);
        outln!(
            "  {}{}",
            list.join(" "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        );
    }
}

pub(super) fn campaign(v: &CampaignInfo) {
    outln!(
        "campaign {}  {:?}  {}{}",
        v.id,
        v.spec.name,
        v.state.name(),
        v.state_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    for w in &v.waves_progress {
        outln!("  {}", crate::waves::line(w, v.opened_waves));
    }
    if !v.waves_progress.is_empty() {
        outln!("  ({})", crate::waves::LEGEND);
    }
    rollback_warnings(&v.no_rollback, v.no_rollback_partial);
}

pub(super) fn campaigns(list: &[CampaignInfo]) {
    for x in list {
        outln!("{}  {:<12} {}", x.id, x.state.name(), x.spec.name);
    }
}

/// A dry run's or a campaign's `no_rollback`: devices that keep the new content of a
/// component after a failed health check (docs/server.md §4).
fn rollback_warnings(gaps: &[RollbackGap], partial: bool) {
    for g in gaps {
        outln!(
            "  warning: {}: after a failed health check they keep the new content",
            g.text()
        );
    }
    if partial {
        outln!("  (the check stopped at its bound: at least these many)");
    }
}

pub(super) fn token_created(t: &TokenInfo) {
    outln!(
        "{} token {} (shown once): {}",
        t.role.name(),
        t.id,
        t.token.as_deref().unwrap_or("")
    );
}

pub(super) fn tokens(list: &[TokenInfo]) {
    for t in list {
        outln!(
            "{}  {:<9} {}{}",
            t.id,
            t.role.name(),
            t.name,
            if t.revoked { " (revoked)" } else { "" }
        );
    }
}

pub(super) fn audit(list: &[AuditEntry]) {
    for e in list {
        outln!(
            "{}  {}  {:<10} {:<8} {:<20} {}",
            e.id,
            when(e.at),
            e.actor,
            e.role,
            e.action,
            e.target
        );
    }
}

/// Why, since when and by whom a device is quarantined, and what that means.
fn quarantine_record(r: &QuarantineRecord) {
    let who = match r.rule.as_deref() {
        Some(rule) => format!("rule {rule}"),
        None => format!("{} {}", r.by, r.actor),
    };
    outln!(
        "  QUARANTINED since {} by {who}: {}",
        when(r.since),
        printable(&r.reason)
    );
    if !r.evidence.is_empty() {
        outln!("    evidence: report(s) {}", js(&r.evidence));
    }
    outln!("    offered only releases marked remediation; its reports are stored flagged");
}

pub(super) fn quarantine(v: &DeviceQuarantine) {
    match &v.quarantine {
        Some(r) => {
            outln!("device {}  {}", v.name, v.device_id);
            quarantine_record(r);
        }
        None => outln!(
            "device {}  {}: not quarantined (offered its campaigns' releases)",
            v.name,
            v.device_id
        ),
    }
    if !v.flagged_reports.is_empty() {
        outln!("  flagged reports (newest first):");
        for r in &v.flagged_reports {
            outln!(
                "    {}  {}  {} {} {}{}",
                r.id,
                when(r.at),
                r.release_id,
                r.step,
                r.outcome,
                r.reason
                    .as_deref()
                    .map(|x| format!(" ({})", printable(x)))
                    .unwrap_or_default()
            );
        }
    }
}

pub(super) fn remediation(v: &ReleaseRemediation) {
    if v.remediation {
        outln!(
            "release {} is remediation: quarantined devices are offered it",
            v.id
        );
    } else {
        outln!(
            "release {} is not remediation: quarantined devices are not offered it",
            v.id
        );
    }
}

/// The server's trust state in force (`GET /api/v1/trust-state`).
pub(super) fn trust_state(v: &Value) {
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let set_by = match v["release_id"].as_str() {
        Some(id) => format!("trust update {id}"),
        None => format!("registered by {}", v["set_by"].as_str().unwrap_or("?")),
    };
    outln!(
        "trust state {} ({set_by}, {})",
        v["sequence"],
        when(v["updated_at"].as_i64().unwrap_or(0))
    );
    outln!(
        "  root threshold {} of {}",
        v["root_threshold"],
        list("roots").len()
    );
    for k in list("roots") {
        outln!(
            "    root {} {}",
            k["kid"].as_str().unwrap_or("?"),
            k["kind"].as_str().unwrap_or("?")
        );
    }
    outln!("  release threshold {}", v["release_threshold"]);
    for s in list("signers") {
        outln!(
            "    signer {} {} actions {} components {}",
            s["kid"].as_str().unwrap_or("?"),
            s["kind"].as_str().unwrap_or("?"),
            s["actions"].as_str().unwrap_or("?"),
            s["component"].as_str().unwrap_or("all")
        );
    }
    for r in list("rules") {
        outln!(
            "  rule: {} signer(s) for components under {}",
            r["threshold"],
            r["component"].as_str().unwrap_or("?")
        );
    }
    for kid in list("revoked") {
        outln!("  revoked: {}", kid.as_str().unwrap_or("?"));
    }
}

pub(super) fn posture(p: &FleetPosture) {
    outln!("{} device(s), counted {}", p.devices, when(p.at));
    outln!("  up to date   {}", p.up_to_date);
    outln!("  out of date  {}", p.out_of_date);
    outln!(
        "  unknown      {}  (never reported what they run)",
        p.unknown
    );
    outln!("  quarantined  {}", p.quarantined);
    outln!(
        "  unreachable  {}  (not seen for {})",
        p.unreachable,
        suitcase_protocol::time::duration(
            i64::try_from(p.unreachable_after_seconds).unwrap_or(i64::MAX)
        )
    );
    outln!("  never seen   {}", p.never_seen);
}

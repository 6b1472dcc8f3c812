//! The wire layer of hawkBit's Direct Device Integration API, v1 (docs/ddi.md): what a DDI
//! client (SWUpdate's suricatta, RAUC's hawkBit client, Zephyr's) sends, parsed and checked,
//! and the shapes the server derives for its answers. Pure functions, no I/O: the server's
//! handlers (`suitcase-server`, `api/ddi.rs`) and the `ddi` fuzz target (fuzz/src/ddi.rs) use
//! the same code, and the fuzz build does not have to compile the server to reach it.
//!
//! Behind the `ddi` feature (it needs `serde_json`). The facts that break real clients are
//! cited from hawkBit and SWUpdate 2022.12 (`server_hawkbit.c`) where they are enforced.

use alloc::collections::BTreeMap;
use core::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::limits::REPORT_DETAIL_MAX;
use crate::{Outcome, Step};

/// The most controller attributes stored per device (hawkBit's default quota is 100).
pub const MAX_ATTRIBUTES: usize = 100;
/// The longest attribute key, in characters (hawkBit: 128).
pub const MAX_ATTRIBUTE_KEY: usize = 128;
/// The longest attribute value, in characters (hawkBit: 128; SWUpdate's identify values are
/// short, but a version string with a build id can be longer).
pub const MAX_ATTRIBUTE_VALUE: usize = 512;
/// The largest action id handed out: 2^31 − 1. hawkBit's own ids are Java longs, but its
/// clients read them as 32-bit ints: SWUpdate 2022.12 with `json_object_get_int` and `%d` in
/// the feedback URL (server_hawkbit.c), so a larger id would come back as another number.
pub const MAX_ACTION_ID: i64 = 2_147_483_647;
/// The most ranges one artifact request may ask for; more get the whole artifact (RFC 9110
/// §14.2: a server may ignore a Range that asks for many small or overlapping ranges).
pub const MAX_RANGES: usize = 16;

/// A body the server refuses with 400: a stable error code and a message naming what is
/// wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBody {
    /// `bad-body`, `bad-feedback` or `bad-config-data`.
    pub code: &'static str,
    /// What is wrong, for the operator reading the client's log.
    pub message: String,
}

impl BadBody {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for BadBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl core::error::Error for BadBody {}

/// A JSON body, parsed leniently (any content type: SWUpdate sends `application/json`, a
/// gateway may not), with the field that did not match named.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadBody> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        BadBody::new(
            "bad-body",
            format!(
                "the JSON body does not match at {}: {}",
                e.path(),
                e.inner()
            ),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Feedback
// ---------------------------------------------------------------------------------------------

/// hawkBit's `DdiActionFeedback` (deploymentBase and cancelAction feedback alike); unknown
/// fields (SWUpdate's `id` and `time`, `timestamp`) are ignored, as hawkBit ignores them.
#[derive(Deserialize, Debug)]
pub struct Feedback {
    /// The status the device reports.
    pub status: FeedbackStatus,
}

/// `status` of a feedback.
#[derive(Deserialize, Debug)]
pub struct FeedbackStatus {
    /// `closed`, `proceeding`, `canceled`, `scheduled`, `rejected`, `resumed`, `downloaded`
    /// or `download`.
    pub execution: String,
    /// The result.
    pub result: FeedbackResult,
    /// Free text lines (SWUpdate sends its log lines here).
    #[serde(default)]
    pub details: Vec<Value>,
    /// A device status code (hawkBit 0.3.0 and later).
    #[serde(default)]
    pub code: Option<i64>,
}

/// `status.result` of a feedback.
#[derive(Deserialize, Debug)]
pub struct FeedbackResult {
    /// `success`, `failure` or `none`.
    pub finished: String,
    /// Optional progress.
    #[serde(default)]
    pub progress: Option<Progress>,
}

/// `status.result.progress`.
#[derive(Deserialize, Debug)]
pub struct Progress {
    /// Done so far.
    #[serde(default)]
    pub cnt: Option<i64>,
    /// Out of.
    #[serde(default)]
    pub of: Option<i64>,
}

impl Feedback {
    /// A feedback body, parsed and its execution/finished pair checked.
    pub fn parse(body: &[u8]) -> Result<(Self, Meaning), BadBody> {
        let f: Self = parse_json(body)?;
        let meaning = step_of(&f.status.execution, &f.status.result.finished)?;
        Ok((f, meaning))
    }

    /// The details (and status code) as one text for the timeline.
    pub fn detail(&self) -> Option<String> {
        details_text(&self.status.details, self.status.code)
    }

    /// The progress a feedback reports: `cnt`, when both `cnt` and `of` are there (SWUpdate
    /// often sends 0 of 0, and `cnt` may exceed `of`).
    pub fn progress(&self) -> Option<u64> {
        self.status
            .result
            .progress
            .as_ref()
            .and_then(|p| p.cnt.zip(p.of))
            .and_then(|(c, _)| u64::try_from(c).ok())
    }
}

/// What a feedback means on the NTIA timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meaning {
    /// The timeline step it becomes.
    pub step: Step,
    /// The step's outcome.
    pub outcome: Outcome,
    /// Whether it closes the action.
    pub closes: bool,
}

/// What a feedback means on the NTIA timeline (docs/ddi.md has the table), and whether it
/// closes the action.
pub fn step_of(execution: &str, finished: &str) -> Result<Meaning, BadBody> {
    let failed = match finished {
        "success" | "none" => false,
        "failure" => true,
        other => {
            return Err(BadBody::new(
                "bad-feedback",
                format!(
                    "result.finished {:?} is not success, failure or none",
                    clip(other, 40)
                ),
            ));
        }
    };
    let (step, outcome, closes) = match (execution, failed) {
        ("closed", false) => (Step::CleanUp, Outcome::Success, true),
        ("closed", true) => (Step::Apply, Outcome::Failure, true),
        ("canceled", _) => (Step::Announce, Outcome::Failure, true),
        ("rejected", _) => (Step::Announce, Outcome::Deferred, false),
        // `finished` counts only with closed, as in hawkBit (generateUpdateStatus): a
        // failure that does not close the action is progress, not the device's failure.
        ("download", _) => (Step::Receive, Outcome::InProgress, false),
        ("downloaded", false) => (Step::Receive, Outcome::Success, false),
        ("downloaded", true) => (Step::Receive, Outcome::InProgress, false),
        ("scheduled", _) => (Step::Announce, Outcome::Deferred, false),
        ("proceeding" | "resumed", _) => (Step::Apply, Outcome::InProgress, false),
        (other, _) => {
            return Err(BadBody::new(
                "bad-feedback",
                format!(
                    "status.execution {:?} is not one of closed, proceeding, canceled, scheduled, rejected, resumed, downloaded, download",
                    clip(other, 40)
                ),
            ));
        }
    };
    Ok(Meaning {
        step,
        outcome,
        closes,
    })
}

/// The details as one text for the timeline, within the report's limit (the start is kept;
/// SWUpdate puts its error lines first), without control characters but newlines.
pub fn details_text(details: &[Value], code: Option<i64>) -> Option<String> {
    let mut parts: Vec<String> = details
        .iter()
        .map(|d| match d {
            Value::String(s) => s.trim().to_owned(),
            other => other.to_string(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(c) = code {
        parts.push(format!("Device reported status code: {c}"));
    }
    if parts.is_empty() {
        return None;
    }
    let text = parts.join("\n");
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(REPORT_DETAIL_MAX)
        .collect();
    if out.chars().count() == REPORT_DETAIL_MAX && text.chars().count() > REPORT_DETAIL_MAX {
        out.pop();
        out.push('…');
    }
    Some(out)
}

/// One text for the timeline, as [`details_text`] makes it.
pub fn timeline_text(text: String) -> Option<String> {
    details_text(&[Value::String(text)], None)
}

// ---------------------------------------------------------------------------------------------
// configData
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Debug)]
struct ConfigData {
    #[serde(default)]
    mode: Option<String>,
    data: BTreeMap<String, Value>,
}

/// How a configData body changes the stored attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigMode {
    /// Add or overwrite these keys (the default; SWUpdate 2022.12 sends no `mode`).
    Merge,
    /// Drop every attribute, then store these.
    Replace,
    /// Drop these keys.
    Remove,
}

impl ConfigMode {
    /// The name as the body spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::Replace => "replace",
            Self::Remove => "remove",
        }
    }
}

/// A configData body, checked against the attribute limits: the mode and the attributes as
/// strings (numbers and booleans as their JSON text).
pub fn config_data(body: &[u8]) -> Result<(ConfigMode, BTreeMap<String, String>), BadBody> {
    let bad = |m: String| BadBody::new("bad-config-data", m);
    let c: ConfigData = parse_json(body)?;
    if c.data.is_empty() {
        return Err(bad("configData needs at least one entry in data".into()));
    }
    if c.data.len() > MAX_ATTRIBUTES {
        return Err(bad(format!(
            "at most {MAX_ATTRIBUTES} attributes per device"
        )));
    }
    let mut set = BTreeMap::new();
    for (k, v) in &c.data {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => return Err(bad("attribute values are strings".into())),
        };
        if k.is_empty() || k.chars().count() > MAX_ATTRIBUTE_KEY || k.chars().any(char::is_control)
        {
            return Err(bad(format!(
                "attribute keys are 1 to {MAX_ATTRIBUTE_KEY} characters without control characters"
            )));
        }
        if v.chars().count() > MAX_ATTRIBUTE_VALUE || v.chars().any(char::is_control) {
            return Err(bad(format!(
                "attribute values are at most {MAX_ATTRIBUTE_VALUE} characters without control characters"
            )));
        }
        set.insert(k.clone(), v);
    }
    let mode = match c.mode.as_deref().unwrap_or("merge") {
        "merge" => ConfigMode::Merge,
        "replace" => ConfigMode::Replace,
        "remove" => ConfigMode::Remove,
        other => {
            return Err(bad(format!(
                "mode {:?} is not merge, replace or remove",
                clip(other, 40)
            )));
        }
    };
    Ok((mode, set))
}

// ---------------------------------------------------------------------------------------------
// Paths and answers
// ---------------------------------------------------------------------------------------------

/// An `{actionId}` (or module id) path segment: a positive integer.
pub fn action_id(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|n| *n > 0)
}

/// `HH:MM:SS`, as hawkBit's `config.polling.sleep` (SWUpdate counts anything else as a bad
/// message, server_hawkbit.c `server_get_device_info`), at least 1 s and at most 23:59:59.
pub fn hhmmss(seconds: i64) -> String {
    let s = seconds.clamp(1, 86_399);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Percent-encodes everything but RFC 3986 unreserved characters (a path segment or a query
/// value).
pub fn escape_segment(s: &str) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The file name a DDI client sees: the last segment of the payload's URI (the release was
/// built with `--image update.swu --uri https://.../update.swu`), or `payload-{idx}.bin`
/// where that is no plain file name.
pub fn file_name(uri: &str, idx: u32) -> String {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    let last = path.rsplit('/').next().unwrap_or("");
    if last.is_empty() || last == "." || last == ".." || last.ends_with(".MD5SUM") {
        format!("payload-{idx}.bin")
    } else {
        last.to_owned()
    }
}

/// A `Range` header of several byte ranges (RFC 9110 §14.1.2), if it names several and the
/// `If-Range` (if any) allows it: the satisfiable ones, ascending (empty: none is, 416).
/// `None` leaves the request to the single-range path (one range, a malformed header,
/// overlapping or too many ranges: the whole artifact).
pub fn several_ranges(
    range: &str,
    if_range: Option<&str>,
    size: u64,
    etag: &str,
) -> Option<Vec<(u64, u64)>> {
    let spec = range.trim().strip_prefix("bytes=")?;
    if !spec.contains(',') {
        return None;
    }
    if if_range.is_some_and(|ir| ir.trim() != etag) {
        return None;
    }
    let mut out = Vec::new();
    for (n, part) in spec.split(',').enumerate() {
        if n >= MAX_RANGES {
            return None;
        }
        let (first, last) = part.trim().split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        let r = if first.is_empty() {
            let n = last.parse::<u64>().ok()?;
            (n > 0 && size > 0).then(|| (size.saturating_sub(n), size))
        } else {
            let start = first.parse::<u64>().ok()?;
            let end = if last.is_empty() {
                size
            } else {
                let l = last.parse::<u64>().ok()?;
                if l < start {
                    return None;
                }
                l.saturating_add(1).min(size)
            };
            (start < size).then_some((start, end))
        };
        out.extend(r);
    }
    out.sort_unstable();
    if out.windows(2).any(|w| w[0].1 > w[1].0) {
        return None;
    }
    Some(out)
}

/// At most `n` characters of what a client sent, for an error message.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_is_hh_mm_ss() {
        assert_eq!(hhmmss(300), "00:05:00");
        assert_eq!(hhmmss(1), "00:00:01");
        assert_eq!(hhmmss(0), "00:00:01");
        assert_eq!(hhmmss(3723), "01:02:03");
        assert_eq!(hhmmss(1 << 40), "23:59:59");
    }

    #[test]
    fn file_names_come_from_the_uri() {
        assert_eq!(
            file_name("https://fw.example/a/update.swu", 0),
            "update.swu"
        );
        assert_eq!(file_name("https://fw.example/u.swu?x=1#y", 0), "u.swu");
        assert_eq!(file_name("https://fw.example/", 2), "payload-2.bin");
        assert_eq!(file_name("https://fw.example/x.MD5SUM", 1), "payload-1.bin");
    }

    #[test]
    fn escaping_keeps_unreserved_only() {
        assert_eq!(escape_segment("a b/c~d"), "a%20b%2Fc~d");
        assert_eq!(escape_segment("é"), "%C3%A9");
    }

    #[test]
    fn several_ranges_are_sorted_and_bounded() {
        assert_eq!(
            several_ranges("bytes=10-19, 0-4", None, 100, "e"),
            Some(vec![(0, 5), (10, 20)])
        );
        assert_eq!(several_ranges("bytes=0-4", None, 100, "e"), None);
        assert_eq!(several_ranges("bytes=0-9,5-14", None, 100, "e"), None);
        assert_eq!(
            several_ranges("bytes=0-1,2-3", Some("other"), 100, "e"),
            None
        );
        assert_eq!(
            several_ranges("bytes=200-300,400-", None, 100, "e"),
            Some(vec![])
        );
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(several_ranges(&many, None, 100, "e"), None);
    }

    #[test]
    fn feedback_maps_to_the_timeline() {
        let body = br#"{"id":"7","status":{"execution":"closed","result":{"finished":"failure","progress":{"cnt":3,"of":4}},"details":["ERROR : HASH mismatch", 5],"code":2}}"#;
        let (f, m) = Feedback::parse(body).unwrap();
        assert_eq!(
            (m.step, m.outcome, m.closes),
            (Step::Apply, Outcome::Failure, true)
        );
        assert_eq!(f.progress(), Some(3));
        assert_eq!(
            f.detail().as_deref(),
            Some("ERROR : HASH mismatch\n5\nDevice reported status code: 2")
        );
        let e = Feedback::parse(br#"{"status":{"execution":"done","result":{"finished":"none"}}}"#)
            .unwrap_err();
        assert_eq!(e.code, "bad-feedback");
        let e = Feedback::parse(br#"{"status":{"execution":"closed"}}"#).unwrap_err();
        assert_eq!(e.code, "bad-body");
        assert!(e.message.contains("status"), "{}", e.message);
    }

    #[test]
    fn config_data_checks_its_limits() {
        let (mode, set) = config_data(br#"{"data":{"hw":"r2","n":3,"ok":true}}"#).unwrap();
        assert_eq!(mode, ConfigMode::Merge);
        assert_eq!(set.get("n").map(String::as_str), Some("3"));
        assert_eq!(set.get("ok").map(String::as_str), Some("true"));
        for bad in [
            &br#"{"data":{}}"#[..],
            br#"{"data":{"a":[1]}}"#,
            br#"{"data":{"":"x"}}"#,
            br#"{"mode":"wipe","data":{"a":"b"}}"#,
        ] {
            assert_eq!(config_data(bad).unwrap_err().code, "bad-config-data");
        }
    }

    #[test]
    fn action_ids_are_positive_integers() {
        assert_eq!(action_id("42"), Some(42));
        assert_eq!(action_id("0"), None);
        assert_eq!(action_id("-3"), None);
        assert_eq!(action_id("x"), None);
    }
}

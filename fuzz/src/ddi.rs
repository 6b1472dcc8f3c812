//! `ddi`: the hawkBit DDI wire layer (`suitcase_protocol::ddi`, which the server's handlers in
//! `suitcase-server` `api/ddi.rs` use), on what a DDI client sends: feedback bodies (deploymentBase
//! and cancelAction), configData bodies, `{actionId}` path segments, a multi-range `Range`
//! header, and what the server derives for its answers: the artifact's file name from a payload
//! URI, percent-encoded path segments, `HH:MM:SS` sleeps. The first byte picks the parser.
//! Beyond not panicking, each checks what the handler relies on: a feedback's timeline text
//! within the report limit and without control characters, configData within the attribute
//! limits, positive integer action ids, a file name that is one plain path segment, an
//! escaping that decodes back, ranges inside the artifact, ascending and disjoint.

use suitcase_protocol::ddi;
use suitcase_protocol::limits::REPORT_DETAIL_MAX;

/// The parsers, in the order the selector byte counts them.
pub const PARSERS: &[&str] = &[
    "feedback",
    "cancel-feedback",
    "config-data",
    "action-id",
    "file-name",
    "escape-segment",
    "sleep",
    "ranges",
];

fn feedback(body: &[u8]) {
    let Ok((f, m)) = ddi::Feedback::parse(body) else {
        return;
    };
    assert_eq!(
        m.closes,
        matches!(f.status.execution.as_str(), "closed" | "canceled"),
        "{m:?}"
    );
    let _ = f.progress();
    if let Some(d) = &f.detail() {
        assert!(!d.is_empty());
        assert!(d.chars().count() <= REPORT_DETAIL_MAX, "detail too long");
        assert!(
            d.chars().all(|c| !c.is_control() || c == '\n'),
            "control characters in {d:?}"
        );
    }
}

fn config_data(body: &[u8]) {
    let Ok((mode, set)) = ddi::config_data(body) else {
        return;
    };
    assert!(["merge", "replace", "remove"].contains(&mode.name()));
    assert!(!set.is_empty() && set.len() <= ddi::MAX_ATTRIBUTES);
    for (k, v) in &set {
        let n = k.chars().count();
        assert!(n >= 1 && n <= ddi::MAX_ATTRIBUTE_KEY, "key {k:?}");
        assert!(v.chars().count() <= ddi::MAX_ATTRIBUTE_VALUE, "value {v:?}");
        assert!(!k.chars().chain(v.chars()).any(char::is_control));
    }
}

fn action_id(s: &str) {
    let Some(n) = ddi::action_id(s) else {
        return;
    };
    assert!(n > 0);
    let digits = s.strip_prefix('+').unwrap_or(s).trim_start_matches('0');
    assert_eq!(digits, n.to_string(), "{s:?}");
}

fn file_name(data: &[u8]) {
    let Some((&idx, uri)) = data.split_first() else {
        return;
    };
    let uri = String::from_utf8_lossy(uri);
    let name = ddi::file_name(&uri, u32::from(idx));
    assert!(!name.is_empty());
    assert!(!name.contains(['/', '?', '#']), "{name:?}");
    assert!(name != "." && name != "..");
    assert!(!name.ends_with(".MD5SUM"), "{name:?}");
}

fn escape_segment(s: &str) {
    let e = ddi::escape_segment(s);
    let b = e.as_bytes();
    let mut decoded = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = e.get(i + 1..i + 3).expect("two hex digits after %");
            assert!(
                hex.bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            );
            decoded.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            assert!(
                b[i].is_ascii_alphanumeric() || b"-._~".contains(&b[i]),
                "{e:?} has a reserved character"
            );
            decoded.push(b[i]);
            i += 1;
        }
    }
    assert_eq!(decoded, s.as_bytes());
}

fn sleep(data: &[u8]) {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    let seconds = i64::from_le_bytes(b);
    let t = ddi::hhmmss(seconds);
    let parts: Vec<i64> = t.split(':').map(|p| p.parse().unwrap()).collect();
    assert!(t.len() == 8 && parts.len() == 3, "{t:?}");
    assert!(parts[1] < 60 && parts[2] < 60, "{t:?}");
    assert_eq!(
        parts[0] * 3600 + parts[1] * 60 + parts[2],
        seconds.clamp(1, 86_399)
    );
}

/// `[size u32 LE][Range header][0][If-Range header]` (no 0: no If-Range).
fn ranges(data: &[u8]) {
    let Some((size, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let size = u64::from(u32::from_le_bytes(*size));
    let (range, if_range) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let etag = "\"0123abcd\"";
    // What `HeaderValue::to_str` lets through to the handler: visible ASCII and tabs.
    fn header(b: &[u8]) -> Option<&str> {
        b.iter()
            .all(|&c| c == b'\t' || (0x20..0x7f).contains(&c))
            .then(|| std::str::from_utf8(b).ok())
            .flatten()
    }
    let Some(range) = header(range) else {
        return;
    };
    let if_range = match if_range.map(header) {
        Some(None) => return,
        Some(Some(ir)) => Some(ir),
        None => None,
    };
    let Some(v) = ddi::several_ranges(range, if_range, size, etag) else {
        return;
    };
    assert!(v.len() <= ddi::MAX_RANGES, "{v:?}");
    for &(a, b) in &v {
        assert!(a < b && b <= size, "{v:?} of {size}");
    }
    assert!(v.windows(2).all(|w| w[0].1 <= w[1].0), "{v:?}");
}

/// The fuzz target: `[selector] [input]`.
pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = || String::from_utf8_lossy(rest);
    match usize::from(sel) % PARSERS.len() {
        0 | 1 => feedback(rest),
        2 => config_data(rest),
        3 => action_id(&text()),
        4 => file_name(rest),
        5 => escape_segment(&text()),
        6 => sleep(rest),
        _ => ranges(rest),
    }
}

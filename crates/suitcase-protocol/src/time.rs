//! Times for people, the same in the console and the CLI: `2026-12-06 11:52 UTC, 3 min ago`.
//! The APIs keep seconds since 1970 (and the CLI's `--json` prints what the API sent).

use alloc::format;
use alloc::string::String;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-12-06 11:52 UTC`.
pub fn utc(t: i64) -> String {
    let (y, m, d) = civil(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        s % 3600 / 60
    )
}

/// RFC 3339 in UTC: `2026-12-06T11:52:03Z`.
pub fn rfc3339(t: i64) -> String {
    let (y, m, d) = civil(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// `3 min ago`, `in 2 h 0 min`, `just now`.
pub fn ago(now: i64, t: i64) -> String {
    let d = now.saturating_sub(t);
    let a = d.saturating_abs();
    if a < 60 {
        return if d >= 0 {
            "just now".into()
        } else {
            "in under a minute".into()
        };
    }
    let span = if a < 3600 {
        format!("{} min", a / 60)
    } else if a < 86_400 {
        format!("{} h {} min", a / 3600, a % 3600 / 60)
    } else {
        format!("{} days", a / 86_400)
    };
    if d >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// `2026-12-06 11:52 UTC, 3 min ago`.
pub fn human(now: i64, t: i64) -> String {
    format!("{}, {}", utc(t), ago(now, t))
}

/// A duration for people: `42 s`, `3 min 5 s`, `2 h 1 min`.
pub fn duration(s: i64) -> String {
    let s = s.max(0);
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, s % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_796_557_923), "2026-12-06 11:52 UTC");
        assert_eq!(rfc3339(1_796_557_923), "2026-12-06T11:52:03Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59 UTC");
        assert_eq!(ago(1000, 1000 - 180), "3 min ago");
        assert_eq!(ago(1000, 1000 + 7200), "in 2 h 0 min");
        assert_eq!(ago(1000, 990), "just now");
        assert_eq!(ago(i64::MAX, i64::MIN), "106751991167300 days ago");
        assert_eq!(human(1000, 1000 - 180), "1970-01-01 00:13 UTC, 3 min ago");
        assert_eq!(duration(185), "3 min 5 s");
    }
}

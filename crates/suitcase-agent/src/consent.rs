//! Announce (NTIA step 6): is the device allowed to install now? Pure decisions here; the
//! command runs in [`crate::command`].

/// A daily window in UTC, as the server's campaign windows: minutes after midnight, possibly
/// spanning midnight, on some days of the week (0 = Monday .. 6 = Sunday; empty = every day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Opening minute (0..1440).
    pub start_minute: u32,
    /// Closing minute (0..1440); before `start_minute` means the window spans midnight.
    pub end_minute: u32,
    /// Days of the week.
    pub days: Vec<u8>,
}

fn minute_of(text: &str) -> Result<u32, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: write the time as \"HH:MM\" (UTC)"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: hours are not a number"))?;
    let m: u32 = m
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: minutes are not a number"))?;
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(format!("{text:?}: not a time of day"));
    }
    Ok(h * 60 + m)
}

impl Window {
    /// Parses `"HH:MM"` times and day numbers.
    ///
    /// # Errors
    /// A message naming the bad value.
    pub fn parse(start: &str, end: &str, days: &[u8]) -> Result<Self, String> {
        if let Some(d) = days.iter().find(|d| **d > 6) {
            return Err(format!("day {d}: days are 0 (Monday) to 6 (Sunday)"));
        }
        let w = Self {
            start_minute: minute_of(start)?,
            end_minute: minute_of(end)?,
            days: days.to_vec(),
        };
        if w.start_minute == w.end_minute {
            return Err("start and end are equal: the window would be empty".into());
        }
        Ok(w)
    }

    fn day_ok(&self, day_start: u64) -> bool {
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        let weekday = u8::try_from((day_start / 86_400 + 3) % 7).unwrap_or(0);
        self.days.is_empty() || self.days.contains(&weekday)
    }

    /// Whether `now` (seconds since 1970, UTC) is inside the window. A window that spans
    /// midnight belongs to the day it opened.
    pub fn contains(&self, now: u64) -> bool {
        let minute = u32::try_from((now % 86_400) / 60).unwrap_or(0);
        let today = now - now % 86_400;
        let (s, e) = (self.start_minute, self.end_minute);
        if s < e {
            (s..e).contains(&minute) && self.day_ok(today)
        } else if minute >= s {
            self.day_ok(today)
        } else if minute < e {
            self.day_ok(today.saturating_sub(86_400))
        } else {
            false
        }
    }

    /// Seconds until the window next opens (0 if open now). At most eight days.
    pub fn until_open(&self, now: u64) -> u64 {
        if self.contains(now) {
            return 0;
        }
        let today = now - now % 86_400;
        (0..9u64)
            .map(|d| today + d * 86_400 + u64::from(self.start_minute) * 60)
            .find(|&t| t > now && self.contains(t))
            .map_or(86_400, |t| t - now)
    }
}

/// What Announce decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Install now.
    Granted(String),
    /// Not now: ask again in `retry_seconds` (or at the next poll).
    Deferred {
        /// Why, for the report.
        detail: String,
        /// When to ask again, if known.
        retry_seconds: Option<u64>,
    },
    /// Never: the update ends on this device.
    Refused(String),
}

/// The exit status a consent command uses to defer (sysexits.h EX_TEMPFAIL).
pub const EXIT_DEFER: i32 = 75;

/// Interprets a consent command's exit code.
pub fn from_exit(code: Option<i32>) -> Decision {
    match code {
        Some(0) => Decision::Granted("the consent command approved the update".into()),
        Some(EXIT_DEFER) => Decision::Deferred {
            detail: "the consent command deferred the update (exit 75)".into(),
            retry_seconds: None,
        },
        Some(c) => Decision::Refused(format!("the consent command refused the update (exit {c})")),
        None => Decision::Refused("the consent command was killed by a signal".into()),
    }
}

/// The window decision at `now`.
pub fn from_window(w: &Window, now: u64) -> Decision {
    if w.contains(now) {
        Decision::Granted("inside the maintenance window".into())
    } else {
        let wait = w.until_open(now);
        Decision::Deferred {
            detail: format!("outside the maintenance window; it opens in {wait} s"),
            retry_seconds: Some(wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_including_midnight() {
        let w = Window::parse("22:00", "02:00", &[]).unwrap();
        let day = 1_800_000_000 - 1_800_000_000 % 86_400;
        assert!(w.contains(day + 23 * 3600));
        assert!(w.contains(day + 3600));
        assert!(!w.contains(day + 12 * 3600));
        assert_eq!(w.until_open(day + 12 * 3600), 10 * 3600);
        assert_eq!(w.until_open(day + 23 * 3600), 0);
    }

    #[test]
    fn days_of_the_week() {
        // 1970-01-05 was a Monday.
        let monday = 4 * 86_400;
        let w = Window::parse("01:00", "02:00", &[0]).unwrap();
        assert!(w.contains(monday + 3600 + 60));
        assert!(!w.contains(monday + 86_400 + 3600 + 60));
        assert_eq!(w.until_open(monday + 2 * 3600), 7 * 86_400 - 3600);
    }

    #[test]
    fn bad_windows_are_named() {
        assert!(Window::parse("25:00", "02:00", &[]).is_err());
        assert!(Window::parse("2", "02:00", &[]).is_err());
        assert!(Window::parse("02:00", "02:00", &[]).is_err());
        assert!(Window::parse("01:00", "02:00", &[7]).is_err());
    }

    #[test]
    fn exit_codes() {
        assert!(matches!(from_exit(Some(0)), Decision::Granted(_)));
        assert!(matches!(from_exit(Some(75)), Decision::Deferred { .. }));
        assert!(matches!(from_exit(Some(1)), Decision::Refused(_)));
        assert!(matches!(from_exit(None), Decision::Refused(_)));
    }
}

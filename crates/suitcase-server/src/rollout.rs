//! The rollout rules, as pure functions: who goes in which wave, when a wave has done well
//! enough for the next to open, when failures trip the campaign, and maintenance windows.
//! No I/O here, so every rule has a unit test.

use sha2::{Digest as _, Sha256};
use suitcase_protocol::{CampaignCreate, WaveProgress, WaveSize, Window};

/// Splits `n` devices into waves. Percentages are of the total, counts are absolute; the
/// last wave takes whatever is left, so every device is in some wave.
pub(crate) fn wave_sizes(n: u64, waves: &[WaveSize]) -> Vec<u64> {
    if waves.is_empty() {
        return vec![n];
    }
    let mut left = n;
    let mut out = Vec::with_capacity(waves.len());
    for (i, w) in waves.iter().enumerate() {
        let size = if i + 1 == waves.len() {
            left
        } else {
            let want = match *w {
                WaveSize::Count(c) => c,
                WaveSize::Percent(p) => {
                    let p = if p.is_finite() {
                        p.clamp(0.0, 100.0)
                    } else {
                        0.0
                    };
                    // Round up, so a 1% wave of 50 devices still has a device in it.
                    #[allow(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        clippy::cast_precision_loss,
                        reason = "bounded: 0 <= p <= 100 and n < 2^53 devices"
                    )]
                    let v = ((n as f64) * p / 100.0).ceil() as u64;
                    v
                }
            };
            want.min(left)
        };
        left -= size;
        out.push(size);
    }
    out
}

/// Assigns devices to waves in an order that is random-looking but reproducible (a hash of
/// the campaign and device ids), so that waves are not biased by registration order.
pub(crate) fn assign(
    campaign_id: &str,
    devices: Vec<String>,
    waves: &[WaveSize],
) -> Vec<(String, u32)> {
    let mut keyed: Vec<([u8; 32], String)> = devices
        .into_iter()
        .map(|d| {
            let mut h = Sha256::new();
            h.update(campaign_id.as_bytes());
            h.update([0]);
            h.update(d.as_bytes());
            (h.finalize().into(), d)
        })
        .collect();
    keyed.sort_unstable();
    let sizes = wave_sizes(keyed.len() as u64, waves);
    let mut out = Vec::with_capacity(keyed.len());
    let mut it = keyed.into_iter();
    for (wave, size) in sizes.iter().enumerate() {
        let wave = u32::try_from(wave).unwrap_or(u32::MAX);
        for _ in 0..*size {
            if let Some((_, d)) = it.next() {
                out.push((d, wave));
            }
        }
    }
    out
}

/// What the counts say a running campaign should do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Keep going.
    Hold,
    /// Open the next wave.
    Advance,
    /// Every device of every wave finished.
    Complete,
    /// Failures in `wave` reached the error threshold.
    Trip { wave: u32, failed: u64, total: u64 },
}

fn fraction(part: u64, whole: u64) -> f64 {
    #[allow(
        clippy::cast_precision_loss,
        reason = "device counts are far below 2^53"
    )]
    let f = part as f64 / whole as f64;
    f
}

/// Judges a running campaign from its per-wave counts (`opened` waves are open).
pub(crate) fn judge(spec: &CampaignCreate, waves: &[WaveProgress], opened: u32) -> Verdict {
    let open = waves.iter().take(opened as usize);
    for w in open.clone() {
        let total = w.devices - w.cancelled;
        if w.failed > 0 && total > 0 && fraction(w.failed, total) >= spec.error_threshold {
            return Verdict::Trip {
                wave: w.wave,
                failed: w.failed,
                total,
            };
        }
    }
    let n_waves = u32::try_from(waves.len()).unwrap_or(u32::MAX);
    if opened < n_waves {
        let current = waves.get(opened.saturating_sub(1) as usize);
        let ok = current.is_none_or(|w| {
            let total = w.devices - w.cancelled;
            total == 0 || fraction(w.succeeded, total) >= spec.success_threshold
        });
        return if ok { Verdict::Advance } else { Verdict::Hold };
    }
    let unfinished: u64 = open.map(|w| w.pending + w.notified + w.in_progress).sum();
    if unfinished == 0 {
        Verdict::Complete
    } else {
        Verdict::Hold
    }
}

/// Whether `unix` (seconds since 1970, UTC) falls in the window.
pub(crate) fn in_window(w: &Window, unix: i64) -> bool {
    let minute = u32::try_from(unix.rem_euclid(86_400) / 60).unwrap_or(0);
    // 1970-01-01 was a Thursday: day 0 = Monday gives (days + 3) % 7.
    let day = u8::try_from((unix.div_euclid(86_400) + 3).rem_euclid(7)).unwrap_or(0);
    let (start, end) = (w.start_minute % 1440, w.end_minute % 1440);
    let (inside, opened_on) = if start <= end {
        (minute >= start && minute < end, day)
    } else if minute >= start {
        (true, day)
    } else {
        // Past midnight: the window opened the day before.
        (minute < end, (day + 6) % 7)
    };
    inside && (w.days.is_empty() || w.days.contains(&opened_on))
}

/// Seconds until the window next opens (0 if open now), capped at a day.
pub(crate) fn until_window(w: &Window, unix: i64) -> i64 {
    (0..=1440)
        .map(|m| m * 60)
        .find(|&d| in_window(w, unix + d))
        .unwrap_or(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use suitcase_protocol::{Filter, OnError};

    fn spec(success: f64, error: f64) -> CampaignCreate {
        CampaignCreate {
            name: "t".into(),
            release_id: "r".into(),
            filter: Filter::default(),
            waves: vec![],
            success_threshold: success,
            error_threshold: error,
            on_error: OnError::Pause,
            rollback_release_id: None,
            rate_per_minute: None,
            window: None,
            requires_consent: false,
        }
    }

    fn wave(wave: u32, devices: u64, succeeded: u64, failed: u64, pending: u64) -> WaveProgress {
        WaveProgress {
            wave,
            devices,
            succeeded,
            failed,
            pending,
            notified: devices - succeeded - failed - pending,
            ..WaveProgress::default()
        }
    }

    #[test]
    fn waves_cover_every_device_once() {
        assert_eq!(wave_sizes(100, &[]), vec![100]);
        assert_eq!(
            wave_sizes(
                100,
                &[
                    WaveSize::Percent(1.0),
                    WaveSize::Percent(10.0),
                    WaveSize::Percent(100.0)
                ]
            ),
            vec![1, 10, 89]
        );
        assert_eq!(
            wave_sizes(50, &[WaveSize::Percent(1.0), WaveSize::Count(5)]),
            vec![1, 49]
        );
        assert_eq!(
            wave_sizes(3, &[WaveSize::Count(10), WaveSize::Count(10)]),
            vec![3, 0]
        );
        assert_eq!(
            wave_sizes(10, &[WaveSize::Percent(f64::NAN), WaveSize::Count(1)]),
            vec![0, 10]
        );
        let devices: Vec<String> = (0..1000).map(|i| format!("d{i}")).collect();
        let a = assign(
            "c1",
            devices.clone(),
            &[WaveSize::Percent(5.0), WaveSize::Percent(95.0)],
        );
        assert_eq!(a.len(), 1000);
        assert_eq!(a.iter().filter(|(_, w)| *w == 0).count(), 50);
        // Reproducible, and not registration order.
        assert_eq!(
            a,
            assign(
                "c1",
                devices.clone(),
                &[WaveSize::Percent(5.0), WaveSize::Percent(95.0)]
            )
        );
        let first: Vec<&str> = a.iter().take(50).map(|(d, _)| d.as_str()).collect();
        assert_ne!(
            first,
            devices
                .iter()
                .take(50)
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_wave_opens_the_next_at_the_success_threshold() {
        let s = spec(0.8, 0.5);
        let waves = [wave(0, 10, 7, 0, 0), wave(1, 90, 0, 0, 90)];
        assert_eq!(judge(&s, &waves, 1), Verdict::Hold);
        let waves = [wave(0, 10, 8, 0, 0), wave(1, 90, 0, 0, 90)];
        assert_eq!(judge(&s, &waves, 1), Verdict::Advance);
        let waves = [wave(0, 10, 8, 0, 0), wave(1, 90, 89, 0, 0)];
        assert_eq!(judge(&s, &waves, 2), Verdict::Hold);
        let waves = [wave(0, 10, 10, 0, 0), wave(1, 90, 90, 0, 0)];
        assert_eq!(judge(&s, &waves, 2), Verdict::Complete);
    }

    #[test]
    fn failures_trip_at_the_error_threshold_in_any_open_wave() {
        let s = spec(0.8, 0.2);
        let waves = [wave(0, 10, 2, 1, 0), wave(1, 90, 0, 0, 90)];
        assert_eq!(judge(&s, &waves, 1), Verdict::Hold);
        let waves = [wave(0, 10, 2, 2, 0), wave(1, 90, 0, 0, 90)];
        assert_eq!(
            judge(&s, &waves, 1),
            Verdict::Trip {
                wave: 0,
                failed: 2,
                total: 10
            }
        );
        // Failures of wave 0 still count after wave 1 opened.
        let waves = [wave(0, 10, 6, 2, 0), wave(1, 90, 0, 0, 90)];
        assert_eq!(
            judge(&s, &waves, 2),
            Verdict::Trip {
                wave: 0,
                failed: 2,
                total: 10
            }
        );
    }

    #[test]
    fn windows_span_midnight_and_days() {
        let w = Window {
            start_minute: 22 * 60,
            end_minute: 2 * 60,
            days: vec![],
        };
        let monday = 4 * 86_400; // 1970-01-05 was a Monday
        assert!(in_window(&w, monday + 23 * 3600));
        assert!(in_window(&w, monday + 3600));
        assert!(!in_window(&w, monday + 12 * 3600));
        // Saturday and Sunday nights only: Sunday 01:00 belongs to Saturday's window.
        let weekend = Window {
            days: vec![5, 6],
            ..w
        };
        assert!(in_window(&weekend, monday + 6 * 86_400 + 3600));
        // Monday 01:00 is Sunday night's window; Tuesday 01:00 is Monday night's.
        assert!(in_window(&weekend, monday + 3600));
        assert!(!in_window(&weekend, monday + 86_400 + 3600));
        assert_eq!(until_window(&w, monday + 12 * 3600), 10 * 3600);
        assert_eq!(until_window(&w, monday + 23 * 3600), 0);
    }
}

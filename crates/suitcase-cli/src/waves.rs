//! Campaign waves as people read and write them, in one place for `fleet campaign`, `sim`
//! and `demo`: numbered from 1 (the API's `wave` index is 0-based; the server's reasons,
//! e.g. "wave 2: 3 of 10 devices failed", and the docs number from 1), and every device
//! state drawn as what it is: a rolled-back device is not a success.

use anyhow::{Result, bail};
use suitcase_protocol::{WaveProgress, WaveSize};

/// A wave's number for people.
pub(crate) fn number(w: &WaveProgress) -> u64 {
    u64::from(w.wave) + 1
}

/// Parses `--waves` items (`10%` or a device count); errors name the wave by its number.
pub(crate) fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<WaveSize>> {
    items
        .into_iter()
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .enumerate()
        .map(|(i, w)| {
            let n = i + 1;
            if let Some(p) = w.strip_suffix('%') {
                let v: f64 = p.trim().parse().map_err(|_| {
                    anyhow::anyhow!(
                        "wave {n} (`{w}`): not a percentage; write 10% or a device count"
                    )
                })?;
                if !(v > 0.0 && v <= 100.0) {
                    bail!("wave {n} (`{w}`): a percentage must be above 0 and at most 100");
                }
                Ok(WaveSize::Percent(v))
            } else {
                let c: u64 = w.parse().map_err(|_| {
                    anyhow::anyhow!("wave {n} (`{w}`): write 10% or a device count")
                })?;
                if c == 0 {
                    bail!("wave {n} (`{w}`): a wave needs at least one device");
                }
                Ok(WaveSize::Count(c))
            }
        })
        .collect()
}

/// The device states of a wave in the order they are drawn: (bar symbol, label, count).
fn states(w: &WaveProgress) -> [(char, &'static str, u64); 7] {
    [
        ('#', "succeeded", w.succeeded),
        ('x', "failed", w.failed),
        ('<', "rolling back", w.rolling_back),
        ('r', "rolled back", w.rolled_back),
        ('-', "cancelled", w.cancelled),
        ('~', "in progress", w.in_progress.saturating_add(w.notified)),
        ('.', "pending", w.pending),
    ]
}

/// The wave's bar, `width` cells: every state with a device gets at least one cell (a
/// single failure among thousands stays visible), the rest in proportion.
pub(crate) fn bar(w: &WaveProgress, width: usize) -> String {
    let states = states(w);
    let total: u64 = states.iter().map(|s| s.2).sum();
    if total == 0 || width == 0 {
        return " ".repeat(width);
    }
    let w64 = width as u64;
    let mut cells: Vec<u64> = states
        .iter()
        .map(|s| match s.2 {
            0 => 0,
            n => (n.saturating_mul(w64) / total).max(1),
        })
        .collect();
    // Bounded: each round moves the sum one cell towards `width`.
    for _ in 0..width.saturating_mul(2) {
        let sum: u64 = cells.iter().sum();
        if sum == w64 {
            break;
        }
        // Grow the largest state, or shrink the largest one that has more than one cell.
        let pick = if sum < w64 {
            (0..cells.len()).max_by_key(|&i| states[i].2)
        } else {
            (0..cells.len())
                .filter(|&i| cells[i] > 1)
                .max_by_key(|&i| cells[i])
        };
        match pick {
            Some(i) if sum < w64 => cells[i] += 1,
            Some(i) => cells[i] -= 1,
            None => break,
        }
    }
    states
        .iter()
        .zip(cells)
        .map(|(s, n)| s.0.to_string().repeat(usize::try_from(n).unwrap_or(0)))
        .collect()
}

/// The counts in words, zero states left out except succeeded and pending:
/// `3/10 succeeded, 1 failed, 2 rolled back, 4 pending`.
pub(crate) fn counts(w: &WaveProgress) -> String {
    let mut parts = Vec::new();
    for (_, label, n) in states(w) {
        match label {
            "succeeded" => parts.push(format!("{n}/{} succeeded", w.devices)),
            "pending" => parts.push(format!("{n} pending")),
            _ if n > 0 => parts.push(format!("{n} {label}")),
            _ => {}
        }
    }
    parts.join(", ")
}

/// One line for `fleet campaign show`: `wave 1 open    [####x.....] 4/10 succeeded, ...`.
/// A wave is `open` once the campaign has opened it, `waiting` before.
pub(crate) fn line(w: &WaveProgress, opened_waves: u32) -> String {
    let state = if w.wave < opened_waves {
        "open   "
    } else {
        "waiting"
    };
    format!("wave {} {state} [{}] {}", number(w), bar(w, 30), counts(w))
}

/// The legend of the bar's symbols.
pub(crate) const LEGEND: &str =
    "# succeeded  x failed  < rolling back  r rolled back  - cancelled  ~ in progress  . pending";

#[cfg(test)]
mod tests {

    use super::*;

    fn wave(wave: u32, f: impl FnOnce(&mut WaveProgress)) -> WaveProgress {
        let mut w = WaveProgress {
            wave,
            ..WaveProgress::default()
        };
        f(&mut w);
        w
    }

    #[test]
    fn waves_are_numbered_from_1() {
        let w = wave(0, |w| {
            w.devices = 2;
            w.pending = 2;
        });
        assert!(line(&w, 1).starts_with("wave 1 open "), "{}", line(&w, 1));
        let w = wave(1, |w| w.devices = 0);
        assert!(
            line(&w, 1).starts_with("wave 2 waiting "),
            "{}",
            line(&w, 1)
        );
        let e = parse(["10%", "x", "100%"]).unwrap_err().to_string();
        assert!(e.starts_with("wave 2 (`x`)"), "{e}");
        let e = parse(["5", "0"]).unwrap_err().to_string();
        assert!(e.starts_with("wave 2 (`0`)"), "{e}");
        assert_eq!(
            parse(["5", " 50% "]).unwrap(),
            [WaveSize::Count(5), WaveSize::Percent(50.0)]
        );
    }

    #[test]
    fn a_rolled_back_wave_is_not_drawn_as_succeeded() {
        let w = wave(0, |w| {
            w.devices = 10;
            w.rolled_back = 10;
        });
        let b = bar(&w, 30);
        assert_eq!(b, "r".repeat(30));
        assert!(!b.contains('#'));
        let c = counts(&w);
        assert!(c.starts_with("0/10 succeeded"), "{c}");
        assert!(c.contains("10 rolled back"), "{c}");
    }

    #[test]
    fn every_state_is_drawn_and_a_single_failure_stays_visible() {
        let w = wave(0, |w| {
            w.devices = 1000;
            w.succeeded = 990;
            w.failed = 1;
            w.rolling_back = 1;
            w.rolled_back = 1;
            w.cancelled = 1;
            w.in_progress = 1;
            w.notified = 1;
            w.pending = 4;
        });
        let b = bar(&w, 30);
        assert_eq!(b.chars().count(), 30);
        for c in ['#', 'x', '<', 'r', '-', '~', '.'] {
            assert!(b.contains(c), "{c} missing from {b}");
        }
        assert_eq!(
            counts(&w),
            "990/1000 succeeded, 1 failed, 1 rolling back, 1 rolled back, 1 cancelled, 2 in progress, 4 pending"
        );
        let empty = wave(0, |_| {});
        assert_eq!(bar(&empty, 5), "     ");
    }
}

//! Fault injection: which faults a rehearsal injects, and which devices get them.
//!
//! A fault list is written as the CLI takes it: `drop=0.3,power-cut=0.2,sleepy=0.1,old=0.2,
//! bad-image`. Each fraction is the share of devices that suffer the fault; devices are
//! picked by a seeded generator, so a run can be replayed with the same `--seed`.

use serde::Serialize;

use crate::Error;

/// The faults of a rehearsal.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Faults {
    /// Share of devices whose download is cut (up to three times) mid-transfer.
    pub drop: f64,
    /// Share of devices whose power is cut at a random durable write of the update.
    pub power_cut: f64,
    /// Share of devices that sleep [`SLEEPY_FACTOR`] times longer than the server asks.
    pub sleepy: f64,
    /// Share of devices still on the release before the fleet's current one.
    pub old: f64,
    /// The new release's image fails its health check on every device.
    pub bad_image: bool,
}

/// How much longer a sleepy device sleeps than the server's polling interval.
pub const SLEEPY_FACTOR: u32 = 8;

/// What one device suffers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFaults {
    /// Download transfers are cut after these many body bytes (each cut applies once).
    pub cuts: Vec<u64>,
    /// The power is cut right after this many durable writes.
    pub power_cut_after: Option<u64>,
    /// The device sleeps [`SLEEPY_FACTOR`] times longer.
    pub sleepy: bool,
    /// The device runs the old release.
    pub old: bool,
}

const NAMES: &str = "drop=F, power-cut=F, sleepy=F, old=F (F a fraction 0..1) and bad-image";

impl Faults {
    /// Parses `drop=0.3,power-cut=0.2,sleepy=0.1,old=0.2,bad-image` (any subset; `none` or
    /// an empty string for no faults). A fault without a fraction applies to every device.
    ///
    /// # Errors
    /// [`Error::Input`] naming the item that is wrong.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut f = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "none" {
                continue;
            }
            let (name, value) = item.split_once('=').unwrap_or((item, "1"));
            let fraction: f64 = value.trim().parse().map_err(|_| {
                Error::Input(format!(
                    "fault `{item}`: `{value}` is not a number (faults: {NAMES})"
                ))
            })?;
            if !(0.0..=1.0).contains(&fraction) {
                return Err(Error::Input(format!(
                    "fault `{item}`: the share of devices must be between 0 and 1"
                )));
            }
            match name.trim() {
                "drop" | "network-drop" => f.drop = fraction,
                "power-cut" | "power" => f.power_cut = fraction,
                "sleepy" => f.sleepy = fraction,
                "old" | "old-release" => f.old = fraction,
                "bad-image" => f.bad_image = fraction > 0.0,
                other => {
                    return Err(Error::Input(format!(
                        "unknown fault `{other}` (faults: {NAMES})"
                    )));
                }
            }
        }
        Ok(f)
    }

    /// Whether any fault is injected.
    pub fn any(&self) -> bool {
        self.drop > 0.0
            || self.power_cut > 0.0
            || self.sleepy > 0.0
            || self.old > 0.0
            || self.bad_image
    }

    /// The faults of one device. Downloads are cut before `max_cut` bytes of a transfer:
    /// below the smallest transfer of an update (the envelope, a delta patch), every cut
    /// hits one.
    pub fn for_device(&self, rng: &mut Rng, max_cut: u64) -> DeviceFaults {
        let mut d = DeviceFaults::default();
        if rng.chance(self.drop) && max_cut > 1 {
            let n = 1 + rng.below(3);
            let mut cuts: Vec<u64> = (0..n).map(|_| 1 + rng.below(max_cut - 1)).collect();
            cuts.sort_unstable();
            d.cuts = cuts;
        }
        if rng.chance(self.power_cut) {
            // An update makes roughly 15 to 30 durable writes (journal, downloads, flash,
            // outbox); a cut anywhere in the first 30 hits every phase across a fleet.
            d.power_cut_after = Some(1 + rng.below(30));
        }
        d.sleepy = rng.chance(self.sleepy);
        d.old = rng.chance(self.old);
        d
    }
}

/// A small seeded generator (xorshift64*): fault placement must be replayable from a seed,
/// and needs no statistical quality beyond "spread out".
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`0` if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits as a fraction in [0, 1).
        #[expect(clippy::cast_precision_loss, reason = "53 bits fit an f64 exactly")]
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn parses_every_fault() {
        let f = Faults::parse("drop=0.3, power-cut=0.2,sleepy=0.1,old=0.25,bad-image").unwrap();
        assert_eq!(
            f,
            Faults {
                drop: 0.3,
                power_cut: 0.2,
                sleepy: 0.1,
                old: 0.25,
                bad_image: true
            }
        );
        assert!(!Faults::parse("none").unwrap().any());
        assert_eq!(Faults::parse("drop").unwrap().drop, 1.0);
    }

    #[test]
    fn mistakes_are_named() {
        let e = Faults::parse("dorp=0.1").unwrap_err().to_string();
        assert!(e.contains("unknown fault `dorp`"), "{e}");
        let e = Faults::parse("drop=lots").unwrap_err().to_string();
        assert!(e.contains("`lots` is not a number"), "{e}");
        let e = Faults::parse("drop=2").unwrap_err().to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
    }

    #[test]
    fn shares_are_roughly_respected_and_replayable() {
        let f = Faults::parse("drop=0.5,power-cut=0.1").unwrap();
        let mut rng = Rng::new(7);
        let all: Vec<DeviceFaults> = (0..2000).map(|_| f.for_device(&mut rng, 10_000)).collect();
        let drops = all.iter().filter(|d| !d.cuts.is_empty()).count();
        let cuts = all.iter().filter(|d| d.power_cut_after.is_some()).count();
        assert!((850..1150).contains(&drops), "{drops}");
        assert!((130..270).contains(&cuts), "{cuts}");
        assert!(all.iter().all(|d| !d.sleepy && !d.old));
        assert!(
            all.iter()
                .flat_map(|d| &d.cuts)
                .all(|&c| (1..10_000).contains(&c))
        );
        let mut again = Rng::new(7);
        let replay: Vec<DeviceFaults> = (0..2000)
            .map(|_| f.for_device(&mut again, 10_000))
            .collect();
        assert_eq!(all, replay);
    }
}

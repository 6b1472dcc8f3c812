//! One simulated device: a simulated MCU (NOR flash persisted to a file, the `suitcase-boot`
//! bootloader with its SUIT secure-boot verifier) driven by the real agent, with its faults.
//!
//! Nothing is mocked below the agent: the device checks in over HTTP, downloads with Range
//! resumption, verifies the manifest with its trust anchor, writes the flash, boots the new
//! image on trial through the bootloader and confirms it (or the bootloader reverts it).
//! A power cut is an agent stopped at a durable write and a new agent started on the same
//! state directory and flash file, exactly as a device's next boot would.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suitcase_agent::{Agent, AgentError, Config, Event, EventSink, Finished, HealthHook, Hooks};
use suitcase_protocol::Step;
use tokio::sync::{Notify, Semaphore};

use crate::faults::{DeviceFaults, SLEEPY_FACTOR};

/// `step` value of a device between updates.
pub const IDLE: u8 = 0;

/// What the fleet's devices share.
#[derive(Clone)]
pub struct Shared {
    /// One connection pool for the whole fleet.
    pub client: reqwest::Client,
    /// Bounds the devices talking to the server at the same time.
    pub gate: Arc<Semaphore>,
    /// The simulated application's health check.
    pub health: HealthHook,
    /// Caps the server's polling interval (fast-forwarded rehearsals).
    pub poll_cap: Option<Duration>,
    /// Set when the rehearsal ends.
    pub stop: Arc<AtomicBool>,
    /// Wakes sleeping devices when the rehearsal ends.
    pub wake: Arc<Notify>,
}

impl core::fmt::Debug for Shared {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shared")
            .field("poll_cap", &self.poll_cap)
            .finish_non_exhaustive()
    }
}

/// What a device did, updated as it goes (read by the progress display and the summary).
#[derive(Debug, Default)]
pub struct Stats {
    /// [`IDLE`], or 1 + the index in [`Step::ALL`] of the step it is in.
    pub step: AtomicU8,
    /// Updates that ended installed.
    pub installed: AtomicU32,
    /// Updates that failed (the device returned to its previous image).
    pub failed_updates: AtomicU32,
    /// Of those, failures after activation: the new image ran and was reverted.
    pub reverted: AtomicU32,
    /// Power cuts suffered.
    pub power_cuts: AtomicU32,
    /// Download transfers that resumed with a Range request.
    pub resumed: AtomicU64,
    /// Check-ins made.
    pub check_ins: AtomicU64,
    /// Bytes sent and received at the HTTP layer.
    pub bytes: AtomicU64,
    /// Of those, payload and envelope body bytes.
    pub download_bytes: AtomicU64,
    /// The error that stopped the device's agent, if one did.
    pub error: Mutex<Option<String>>,
}

impl Stats {
    fn set_step(&self, name: &str, outcome: &str) {
        let at = Step::ALL.iter().position(|s| s.name() == name);
        let v = match (at, outcome) {
            (Some(i), "in-progress" | "success") => u8::try_from(i + 1).unwrap_or(IDLE),
            _ => IDLE,
        };
        self.step.store(v, Ordering::Relaxed);
    }
}

/// A simulated device.
#[derive(Debug)]
pub struct Device {
    /// Its name on the server.
    pub name: String,
    /// Its directory (agent.toml, state, flash).
    pub dir: PathBuf,
    /// The agent configuration's text.
    pub config: String,
    /// Its faults.
    pub faults: DeviceFaults,
    /// What it did.
    pub stats: Arc<Stats>,
}

fn sink(stats: Arc<Stats>) -> EventSink {
    Arc::new(move |e: &Event| match e {
        Event::Step { step, outcome, .. } => stats.set_step(step, outcome),
        Event::CheckIn { .. } => {
            stats.check_ins.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    })
}

/// The agent configuration of a simulated MCU device.
#[derive(Debug)]
pub struct ConfigText<'a> {
    /// The server URL.
    pub server: &'a str,
    /// The device token.
    pub token: &'a str,
    /// The author's public key file.
    pub anchor: &'a Path,
    /// Vendor and class names (UUIDv5 derived, as the release builder derives them).
    pub vendor: &'a str,
    /// The class name.
    pub class: &'a str,
    /// Sectors per slot (4 KiB sectors).
    pub slot_sectors: u32,
    /// The factory slot image written to slot A on first start.
    pub factory: &'a Path,
}

impl ConfigText<'_> {
    /// The TOML text.
    pub fn render(&self) -> String {
        format!(
            r#"state_dir = "state"

[server]
url = "{server}"
token = "{token}"
timeout_seconds = 60

[trust]
anchors = ["{anchor}"]

[identity]
vendor = "{vendor}"
class = "{class}"

[polling]
interval_seconds = 5
backoff_min_seconds = 1
backoff_max_seconds = 20
download_attempts = 5

[storage]
reserve_bytes = 0

[[component]]
name = "mcu"
id = "{component}"
kind = "mcu"
flash = "state/mcu.flash"
sector_size = 4096
slot_sectors = {sectors}
max_trial_boots = 1
image = "raw"
factory = "{factory}"
"#,
            server = self.server,
            token = self.token,
            anchor = self.anchor.display(),
            vendor = self.vendor,
            class = self.class,
            component = hex::encode(crate::COMPONENT),
            sectors = self.slot_sectors,
            factory = self.factory.display(),
        )
    }
}

impl Device {
    /// Runs the device until the rehearsal stops: check in, update, sleep, and after a power
    /// cut start again from the flash and the state directory.
    pub async fn run(self, shared: Shared) {
        let mut power_cut = self.faults.power_cut_after;
        let mut cuts = self.faults.cuts.clone();
        let path = self.dir.join("agent.toml");
        'boot: loop {
            let config = match Config::parse(&path, &self.config) {
                Ok(c) => c,
                Err(e) => return self.stopped(&e),
            };
            let hooks = Hooks {
                crash_after_writes: power_cut.take(),
                download_cuts: core::mem::take(&mut cuts),
                clock: None,
                client: Some(shared.client.clone()),
                health: Some(shared.health.clone()),
            };
            let mut agent = match Agent::new(config, hooks, sink(self.stats.clone())) {
                Ok(a) => a,
                Err(e) => return self.stopped(&e),
            };
            let mut errors = 0u32;
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                let before = agent.traffic();
                let result = {
                    let Ok(_permit) = shared.gate.acquire().await else {
                        return;
                    };
                    agent.cycle().await
                };
                let t = agent.traffic().since(&before);
                self.stats
                    .bytes
                    .fetch_add(t.sent + t.received, Ordering::Relaxed);
                self.stats
                    .download_bytes
                    .fetch_add(t.download_body, Ordering::Relaxed);
                self.stats
                    .resumed
                    .fetch_add(t.ranged_requests, Ordering::Relaxed);
                let wait = match result {
                    Ok(c) => {
                        errors = 0;
                        if let Some(u) = c.update {
                            self.record(&u.finished);
                        }
                        c.next_poll
                    }
                    Err(AgentError::InjectedCrash | AgentError::Rebooting) => {
                        // Power cut (or a reboot): the device starts again from its flash.
                        self.stats.power_cuts.fetch_add(1, Ordering::Relaxed);
                        self.stats.step.store(IDLE, Ordering::Relaxed);
                        continue 'boot;
                    }
                    Err(e) if e.is_transient() => {
                        errors = errors.saturating_add(1);
                        Duration::from_millis(250u64 << errors.min(6))
                    }
                    Err(e) => return self.stopped(&e),
                };
                let mut wait = shared.poll_cap.map_or(wait, |cap| wait.min(cap));
                if self.faults.sleepy {
                    wait = wait.saturating_mul(SLEEPY_FACTOR);
                }
                tokio::select! {
                    () = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
                    () = shared.wake.notified() => {}
                }
            }
        }
    }

    fn record(&self, finished: &Finished) {
        self.stats.step.store(IDLE, Ordering::Relaxed);
        match finished {
            Finished::Installed => {
                self.stats.installed.fetch_add(1, Ordering::Relaxed);
            }
            Finished::Failed(f) => {
                self.stats.failed_updates.fetch_add(1, Ordering::Relaxed);
                if matches!(f.step, Step::Activate | Step::CleanUp) {
                    self.stats.reverted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Finished::Deferred(_) => {}
        }
    }

    fn stopped(&self, e: &AgentError) {
        self.stats.step.store(IDLE, Ordering::Relaxed);
        if let Ok(mut slot) = self.stats.error.lock() {
            *slot = Some(e.to_string());
        }
    }
}

//! A rehearsal: what an operator does before a real rollout, against a real server.
//!
//! 1. Create an author key and register it (the server verifies every release against it).
//! 2. Build and sign four releases of the simulated MCU application: `old` and `current`
//!    (what the fleet runs), `new` (the update; with the `bad-image` fault its image fails
//!    its health check) and `rollback` (the current image re-signed above `new`, because
//!    devices refuse lower sequence numbers).
//! 3. Register the devices under a tag of this run and give each a flash with the factory
//!    image of `current` (or `old`) in slot A.
//! 4. Create a campaign of `new` for the tag, in waves, with a success threshold to advance,
//!    an error threshold that rolls the opened waves back to `rollback`, and start it.
//! 5. Run every device's agent until the campaign is over (completed, or rolled back and
//!    every rolled-back device has settled, or stopped) and every device is idle.
//! 6. Read each device's flash: which image its bootloader runs, and whether it is confirmed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use suitcase_agent::config::Kind;
use suitcase_agent::mcu::{self, Mcu};
use suitcase_agent::state::{Durability, Installed, StateDir};
use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::release::{self, BuiltRelease, ImageInput, ReleaseRequest};
use suitcase_author::{Tier, uuid};
use suitcase_protocol::{
    CampaignCreate, CampaignInfo, CampaignState, DeviceCreate, Filter, InstalledComponent, OnError,
    WaveProgress, WaveSize,
};
use tokio::sync::{Notify, Semaphore};

use crate::admin::Admin;
use crate::device::{ConfigText, Device, IDLE, Shared, Stats};
use crate::faults::{Faults, Rng};
use crate::{COMPONENT, Error};

/// Vendor and class of the simulated devices.
pub const VENDOR: &str = "sim.suitcase.example";
/// The class name.
pub const CLASS: &str = "sim-mcu";

/// What to rehearse.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The server's base URL.
    pub server: String,
    /// An admin token.
    pub token: String,
    /// How many devices.
    pub devices: usize,
    /// Faults to inject.
    pub faults: Faults,
    /// The campaign's waves.
    pub waves: Vec<WaveSize>,
    /// Share of a wave that must succeed before the next opens.
    pub success_threshold: f64,
    /// Share of a wave whose failure rolls the opened waves back.
    pub error_threshold: f64,
    /// The application image size in bytes.
    pub image_size: usize,
    /// Caps the server's polling interval for the simulated devices.
    pub poll_cap: Option<Duration>,
    /// Devices talking to the server at the same time.
    pub concurrency: usize,
    /// Give up after this long.
    pub timeout: Duration,
    /// Where device directories go.
    pub work: PathBuf,
    /// Fault placement seed.
    pub seed: u64,
}

impl Plan {
    /// A plan with the defaults `suitcase sim` uses.
    pub fn new(server: &str, token: &str, devices: usize, work: &Path) -> Self {
        Self {
            server: server.to_owned(),
            token: token.to_owned(),
            devices,
            faults: Faults::default(),
            waves: vec![
                WaveSize::Percent(10.0),
                WaveSize::Percent(50.0),
                WaveSize::Percent(100.0),
            ],
            success_threshold: 0.8,
            error_threshold: 0.2,
            image_size: 16 * 1024,
            poll_cap: None,
            concurrency: 256,
            timeout: Duration::from_secs(600),
            work: work.to_path_buf(),
            seed: 1,
        }
    }
}

/// Where a rehearsal is, for a progress display.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Seconds since the devices started.
    pub seconds: f64,
    /// Devices.
    pub devices: usize,
    /// The campaign's state.
    pub campaign_state: String,
    /// Waves opened so far.
    pub opened_waves: u32,
    /// Per wave counts, as the server has them.
    pub waves: Vec<WaveProgress>,
    /// Devices in each step now (in `Step::ALL` order).
    pub in_step: [u64; 10],
    /// Devices whose update ended installed so far.
    pub installed: u64,
    /// Devices whose update failed so far.
    pub failed_updates: u64,
    /// Bytes moved so far.
    pub bytes: u64,
}

/// How a rehearsal ended.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Devices.
    pub devices: usize,
    /// Devices that run the new release, confirmed.
    pub updated: usize,
    /// Devices that tried the new release and run a good earlier image again (reverted by
    /// the bootloader, or moved to the rollback release).
    pub rolled_back: usize,
    /// Devices that ended neither updated nor rolled back though the update reached them.
    pub failed: usize,
    /// Devices the update never reached (waves not opened when the campaign stopped).
    pub not_reached: usize,
    /// Bytes sent and received by all devices at the HTTP layer.
    pub bytes_transferred: u64,
    /// Of those, envelope and payload bytes.
    pub download_bytes: u64,
    /// Wall time from the first device start to the end, seconds.
    pub seconds: f64,
    /// The campaign's final state.
    pub campaign_state: String,
    /// Why the campaign stopped, if it did.
    pub campaign_reason: Option<String>,
    /// The campaign id.
    pub campaign_id: String,
    /// The new release.
    pub release_id: String,
    /// The rollback release.
    pub rollback_release_id: String,
    /// Whether the campaign ended before the timeout.
    pub converged: bool,
    /// Check-ins made.
    pub check_ins: u64,
    /// Downloads resumed with a Range request.
    pub resumed_downloads: u64,
    /// Power cuts injected.
    pub power_cuts: u64,
    /// Devices given each fault.
    pub faulty: FaultCounts,
    /// Agent errors that stopped devices (first few).
    pub errors: Vec<String>,
}

/// Devices given each fault.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FaultCounts {
    /// Downloads cut.
    pub drop: usize,
    /// Power cut.
    pub power_cut: usize,
    /// Sleepy.
    pub sleepy: usize,
    /// On the old release.
    pub old: usize,
}

struct Releases {
    old: Built,
    current: Built,
    new: Built,
    rollback: Built,
}

struct Built {
    id: String,
    sequence: u64,
    digest: String,
    factory: PathBuf,
}

/// The simulated application image of version `sequence`: a recognisable header, then the
/// same pseudo-random body in every version (firmware does not compress well) with a few
/// bytes changed per version every 2 KiB, as a small code change moves a few addresses. So
/// the server's delta patches between versions pay, as they do for real firmware.
fn app_image(sequence: u64, size: usize, bad: bool) -> Vec<u8> {
    let mut img = format!(
        "SUITCASE-SIM-APP v{sequence} {}\n",
        if bad { "crashes-on-boot" } else { "healthy" }
    )
    .into_bytes();
    let mut body = Rng::new(0x5EED);
    while img.len() < size {
        img.extend_from_slice(&body.next_u64().to_le_bytes());
    }
    img.truncate(size.max(64));
    let mut edits = Rng::new(sequence.wrapping_mul(0x1000_0001));
    for at in (1024..img.len().saturating_sub(8)).step_by(2048) {
        if let Some(b) = img.get_mut(at..at + 8) {
            b.copy_from_slice(&edits.next_u64().to_le_bytes());
        }
    }
    img
}

/// The factory slot image: `suitcase-device`'s slot header, the envelope, the image.
fn slot_image(built: &BuiltRelease, image: &[u8]) -> Result<Vec<u8>, Error> {
    let too_big = || Error::Input("the release does not fit a slot header".into());
    let env_len = u32::try_from(built.envelope.len()).map_err(|_| too_big())?;
    let offset = mcu::image_offset(u64::from(env_len));
    let off32 = u32::try_from(offset).map_err(|_| too_big())?;
    let img_len = u32::try_from(image.len()).map_err(|_| too_big())?;
    let mut out = mcu::slot_header(env_len, off32, img_len).to_vec();
    out.extend_from_slice(&built.envelope);
    out.resize(usize::try_from(offset).map_err(|_| too_big())?, 0xFF);
    out.extend_from_slice(image);
    Ok(out)
}

async fn build_release(
    admin: &Admin,
    work: &Path,
    key: &Path,
    run: &str,
    sequence: u64,
    image: Vec<u8>,
) -> Result<Built, Error> {
    let vendor = uuid::vendor(VENDOR);
    let req = ReleaseRequest {
        sequence,
        tier: Tier::Basic,
        vendor,
        class: uuid::class(&vendor, CLASS),
        device: None,
        images: vec![ImageInput {
            name: "mcu".into(),
            bytes: image.clone(),
            component: vec![COMPONENT.to_vec()],
            uri: Some(format!("https://sim.invalid/{run}/app-{sequence}.bin")),
            integrated: false,
            invoke: false,
            delta_from: None,
        }],
        sign: vec![key.to_path_buf()],
        encrypt_for: vec![],
        x5chain: vec![],
        content: None,
        reference_uri: None,
        description: Some(format!("suitcase sim {run}: application v{sequence}")),
    };
    let built = release::build(&req, &mut |_, _, _| {})
        .map_err(|e| Error::Input(format!("cannot build release {sequence}: {e}")))?;
    let id = admin
        .upload(&format!("sim-{run}-{sequence}"), &built)
        .await?;
    let factory = work.join(format!("factory-{sequence}.slot"));
    write(&factory, &slot_image(&built, &image)?)?;
    Ok(Built {
        id,
        sequence,
        digest: hex::encode(Sha256::digest(&image)),
        factory,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes)
        .map_err(|e| Error::Input(format!("cannot write {}: {e}", path.display())))
}

fn run_id(seed: u64) -> String {
    // Random, so that rehearsals against the same server do not collide; mixed with the
    // seed only to differ between runs started in the same instant without entropy.
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    format!("{:016x}", u64::from_le_bytes(b) ^ seed)[..8].to_owned()
}

/// Runs a rehearsal; `progress` is called about five times a second.
///
/// # Errors
/// [`Error::Server`] if the server refuses the set-up (keys, releases, devices, campaign);
/// [`Error::Input`] for local problems. Device failures are not errors: they are counted in
/// the summary.
pub async fn rehearse(
    plan: &Plan,
    progress: &(dyn Fn(&Snapshot) + Sync),
) -> Result<Summary, Error> {
    if plan.devices == 0 {
        return Err(Error::Input("--devices must be at least 1".into()));
    }
    std::fs::create_dir_all(&plan.work)
        .map_err(|e| Error::Input(format!("cannot create {}: {e}", plan.work.display())))?;
    let run = run_id(plan.seed);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .user_agent(suitcase_agent::AGENT)
        .build()
        .map_err(|e| Error::Input(format!("HTTP client: {e}")))?;
    let admin = Admin::new(&plan.server, &plan.token, client.clone());

    // 1. The author key.
    let key = plan.work.join("author.key");
    let anchor = plan.work.join("author.pub");
    let g = keys::generate(KeyAlg::Es256, "")
        .map_err(|e| Error::Input(format!("cannot generate the author key: {e}")))?;
    keys::write_atomic(&key, &g.private, true)
        .map_err(|e| Error::Input(format!("cannot write the author key: {e}")))?;
    let public = keys::load_private(&key)
        .and_then(|p| keys::public_of(&p))
        .and_then(|p| p.encode())
        .map_err(|e| Error::Input(format!("cannot derive the public key: {e}")))?
        .0;
    write(&anchor, &public)?;
    admin
        .add_key(&format!("sim-{run}"), &String::from_utf8_lossy(&public))
        .await?;

    // 2. Releases.
    let size = plan.image_size;
    let rel = Releases {
        old: build_release(&admin, &plan.work, &key, &run, 1, app_image(1, size, false)).await?,
        current: build_release(&admin, &plan.work, &key, &run, 2, app_image(2, size, false))
            .await?,
        new: build_release(
            &admin,
            &plan.work,
            &key,
            &run,
            3,
            app_image(3, size, plan.faults.bad_image),
        )
        .await?,
        rollback: build_release(&admin, &plan.work, &key, &run, 4, app_image(2, size, false))
            .await?,
    };

    // 3. Devices.
    let tag = format!("sim-{run}");
    let specs: Vec<DeviceCreate> = (0..plan.devices)
        .map(|i| DeviceCreate {
            name: format!("sim-{run}-{i:06}"),
            tags: vec![tag.clone()],
            certificate_sha256: None,
        })
        .collect();
    let created = admin.register(&specs).await?;
    let mut rng = Rng::new(plan.seed);
    // Slot: header, envelope (< 1 KiB), image; rounded up to 4 KiB sectors, one spare.
    let slot_sectors = u32::try_from(size.div_ceil(4096) + 2).unwrap_or(u32::MAX);
    let mut devices = Vec::with_capacity(created.len());
    let mut faulty = FaultCounts::default();
    for d in &created {
        // Cuts within the first 300 bytes of a transfer: the envelope (about 400 bytes) and
        // the delta patches are the smallest transfers.
        let faults = plan.faults.for_device(&mut rng, 300);
        faulty.drop += usize::from(!faults.cuts.is_empty());
        faulty.power_cut += usize::from(faults.power_cut_after.is_some());
        faulty.sleepy += usize::from(faults.sleepy);
        faulty.old += usize::from(faults.old);
        let base = if faults.old { &rel.old } else { &rel.current };
        let dir = plan.work.join(&d.name);
        let state = StateDir::open(&dir.join("state"), Arc::new(Durability::default()))
            .map_err(|e| Error::Input(e.to_string()))?;
        // What the device installed before: its inventory at the first check-in.
        let mut installed = Installed::default();
        installed.set(InstalledComponent {
            id: vec![hex::encode(COMPONENT)],
            sequence_number: base.sequence,
            digest: Some(base.digest.clone()),
            size: Some(size as u64),
            version: Some(format!("{}.0", base.sequence)),
            ..InstalledComponent::default()
        });
        state
            .save_installed(&installed)
            .map_err(|e| Error::Input(e.to_string()))?;
        let config = ConfigText {
            server: admin.base(),
            token: &d.token,
            anchor: &anchor,
            vendor: VENDOR,
            class: CLASS,
            slot_sectors,
            factory: &base.factory,
        }
        .render();
        write(&dir.join("agent.toml"), config.as_bytes())?;
        devices.push(Device {
            name: d.name.clone(),
            dir,
            config,
            faults,
            stats: Arc::new(Stats::default()),
        });
    }

    // 4. The campaign, once the server has its delta patches (made in the background after
    //    the upload; devices that check in before get the full payload).
    admin
        .wait_for_deltas(&rel.new.id, Duration::from_secs(30))
        .await?;
    let campaign = admin
        .campaign(&CampaignCreate {
            name: format!("sim {run}"),
            release_id: rel.new.id.clone(),
            filter: Filter {
                tags_all: vec![tag],
                ..Filter::default()
            },
            waves: plan.waves.clone(),
            success_threshold: plan.success_threshold,
            error_threshold: plan.error_threshold,
            on_error: OnError::Rollback,
            rollback_release_id: Some(rel.rollback.id.clone()),
            rate_per_minute: None,
            window: None,
            requires_consent: false,
        })
        .await?;

    // 5. Run the fleet.
    let bad: HashSet<String> = if plan.faults.bad_image {
        HashSet::from([rel.new.id.clone()])
    } else {
        HashSet::new()
    };
    let shared = Shared {
        client,
        gate: Arc::new(Semaphore::new(plan.concurrency.max(1))),
        health: Arc::new(move |h: &suitcase_agent::HealthCheck| !bad.contains(&h.release_id)),
        poll_cap: plan.poll_cap,
        stop: Arc::new(AtomicBool::new(false)),
        wake: Arc::new(Notify::new()),
    };
    let stats: Vec<Arc<Stats>> = devices.iter().map(|d| d.stats.clone()).collect();
    let dirs: Vec<PathBuf> = devices.iter().map(|d| d.dir.clone()).collect();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for d in devices {
        tasks.spawn(d.run(shared.clone()));
    }
    let mut info: Option<CampaignInfo> = None;
    let mut converged = false;
    while started.elapsed() < plan.timeout {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(i) = admin.campaign_info(&campaign).await {
            info = Some(i);
        }
        let snap = snapshot(&stats, info.as_ref(), started);
        progress(&snap);
        let idle = stats.iter().all(|s| s.step.load(Ordering::Relaxed) == IDLE);
        if idle && info.as_ref().is_some_and(over) {
            converged = true;
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    shared.wake.notify_waiters();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Ok(i) = admin.campaign_info(&campaign).await {
        info = Some(i);
    }
    progress(&snapshot(&stats, info.as_ref(), started));

    // 6. What each device runs.
    let mut summary = Summary {
        devices: plan.devices,
        updated: 0,
        rolled_back: 0,
        failed: 0,
        not_reached: 0,
        bytes_transferred: 0,
        download_bytes: 0,
        seconds,
        campaign_state: info
            .as_ref()
            .map_or_else(|| "unknown".into(), |i| i.state.name().into()),
        campaign_reason: info.as_ref().and_then(|i| i.state_reason.clone()),
        campaign_id: campaign,
        release_id: rel.new.id.clone(),
        rollback_release_id: rel.rollback.id.clone(),
        converged,
        check_ins: 0,
        resumed_downloads: 0,
        power_cuts: 0,
        faulty,
        errors: Vec::new(),
    };
    for (s, dir) in stats.iter().zip(&dirs) {
        summary.bytes_transferred += s.bytes.load(Ordering::Relaxed);
        summary.download_bytes += s.download_bytes.load(Ordering::Relaxed);
        summary.check_ins += s.check_ins.load(Ordering::Relaxed);
        summary.resumed_downloads += s.resumed.load(Ordering::Relaxed);
        summary.power_cuts += u64::from(s.power_cuts.load(Ordering::Relaxed));
        let error = s.error.lock().ok().and_then(|e| e.clone());
        let runs = running_image(dir);
        let tried =
            s.failed_updates.load(Ordering::Relaxed) > 0 || s.installed.load(Ordering::Relaxed) > 0;
        match (&runs, error) {
            (Ok((digest, confirmed)), None) if *confirmed && *digest == rel.new.digest => {
                summary.updated += 1;
            }
            (Ok((digest, true)), None)
                if tried
                    && (*digest == rel.rollback.digest || *digest == rel.old.digest)
                    && s.reverted.load(Ordering::Relaxed) + s.installed.load(Ordering::Relaxed)
                        > 0 =>
            {
                // The rollback image is the current image: running it after trying the new
                // release means the bootloader reverted, or the rollback release installed.
                summary.rolled_back += 1;
            }
            (Ok((_, true)), None) if !tried => summary.not_reached += 1,
            (r, e) => {
                summary.failed += 1;
                if summary.errors.len() < 5 {
                    let why = match (r, e) {
                        (_, Some(e)) => e,
                        (Err(e), None) => e.to_string(),
                        (Ok((_, confirmed)), None) => format!(
                            "the update failed and the device runs {} image",
                            if *confirmed {
                                "an earlier"
                            } else {
                                "an unconfirmed"
                            }
                        ),
                    };
                    summary.errors.push(format!("{}: {why}", dir.display()));
                }
            }
        }
    }
    Ok(summary)
}

/// Whether the campaign is over: completed, stopped, or rolled back with every rolled-back
/// device settled.
fn over(i: &CampaignInfo) -> bool {
    match i.state {
        CampaignState::Completed | CampaignState::Cancelled | CampaignState::Paused => true,
        CampaignState::RolledBack => i.waves_progress.iter().all(|w| w.rolling_back == 0),
        CampaignState::Draft | CampaignState::Running => false,
    }
}

fn snapshot(stats: &[Arc<Stats>], info: Option<&CampaignInfo>, started: Instant) -> Snapshot {
    let mut s = Snapshot {
        seconds: started.elapsed().as_secs_f64(),
        devices: stats.len(),
        campaign_state: info.map_or_else(|| "unknown".into(), |i| i.state.name().into()),
        opened_waves: info.map_or(0, |i| i.opened_waves),
        waves: info.map(|i| i.waves_progress.clone()).unwrap_or_default(),
        ..Snapshot::default()
    };
    for d in stats {
        let step = d.step.load(Ordering::Relaxed);
        if let Some(c) = usize::from(step)
            .checked_sub(1)
            .and_then(|i| s.in_step.get_mut(i))
        {
            *c += 1;
        }
        s.installed += u64::from(d.installed.load(Ordering::Relaxed));
        s.failed_updates += u64::from(d.failed_updates.load(Ordering::Relaxed));
        s.bytes += d.bytes.load(Ordering::Relaxed);
    }
    s
}

/// The SHA-256 of the image the device's bootloader runs, and whether it is confirmed, read
/// from the device's flash (not from what the agent believes).
fn running_image(dir: &Path) -> Result<(String, bool), Error> {
    let path = dir.join("agent.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let cfg =
        suitcase_agent::Config::parse(&path, &text).map_err(|e| Error::Input(e.to_string()))?;
    let Some(Kind::Mcu(m)) = cfg.components.first().map(|c| &c.kind) else {
        return Err(Error::Input("the simulated device has no MCU".into()));
    };
    let mcu = Mcu::open(m, &Durability::default()).map_err(|e| Error::Input(e.to_string()))?;
    let status = mcu.status().map_err(|e| Error::Input(e.to_string()))?;
    let (at, len) = mcu
        .running_image()
        .map_err(|e| Error::Input(e.to_string()))?
        .ok_or_else(|| Error::Input("the running slot holds no slot image".into()))?;
    let flash =
        std::fs::read(&m.flash).map_err(|e| Error::Input(format!("{}: {e}", m.flash.display())))?;
    let image = usize::try_from(at)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(at, len)| flash.get(at..at.checked_add(len)?))
        .ok_or_else(|| Error::Input("the running slot's header points outside it".into()))?;
    let confirmed = status.phase == suitcase_boot::Phase::Confirmed;
    Ok((hex::encode(Sha256::digest(image)), confirmed))
}

//! `suitcase sim` (a simulated fleet against any server) and `suitcase demo` (the whole
//! system in one command: a server in-process, then the same rehearsal).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use suitcase_protocol::{Step, WaveSize};
use suitcase_sim::{Faults, Plan, Snapshot, Summary};

/// Arguments of `suitcase sim`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  suitcase sim --server http://127.0.0.1:8080 --token-file suitcase-data/admin-token --devices 500
  suitcase sim --server URL --token-file T --devices 200 --faults drop=0.3,power-cut=0.2,sleepy=0.1,old=0.2
  suitcase sim --server URL --token-file T --devices 50 --faults bad-image      # must roll back

Each device is the real agent on a simulated MCU (flash, bootloader, SUIT secure boot). The
simulator registers a signing key, four releases and the devices (tagged sim-RUN), starts a
campaign in waves with automatic rollback, and runs until the campaign is over. Exit status:
0 when the campaign converged with no failed device, 1 otherwise. See docs/sim.md.")]
pub(crate) struct SimArgs {
    /// The server's base URL.
    #[arg(long, env = "SUITCASE_SERVER", value_name = "URL")]
    server: String,
    /// An admin token (the simulator registers a key, releases, devices and a campaign).
    #[arg(
        long,
        env = "SUITCASE_TOKEN",
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding the admin token (e.g. suitcase-data/admin-token).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `suitcase demo`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Starts a server on an embedded SQLite database in a temporary directory, creates keys, builds
and signs a release, starts a campaign in waves, and runs N simulated devices (each a
simulated MCU with flash, bootloader and the agent) that update, reboot on trial, confirm and
report. Ends with a summary; --json prints it as one JSON object:
  {\"devices\": N, \"updated\": N, \"rolled_back\": N, \"failed\": N, \"bytes_transferred\": N, \"seconds\": F, ...}
Add --faults to see the same faults `suitcase sim` injects.")]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// How many simulated devices.
    #[arg(long, default_value_t = 20)]
    devices: usize,
    /// Faults: drop=F (downloads cut mid-transfer), power-cut=F (power cut at a random
    /// moment of the update), sleepy=F (devices that wake 8x less often), old=F (devices on
    /// an older release), bad-image (the new image fails its health check: the campaign
    /// must roll back). F is the share of devices, 0..1.
    #[arg(long, default_value = "none", value_name = "LIST")]
    faults: String,
    /// The campaign's waves, cumulative: percentages (10%) or device counts (5).
    #[arg(long, default_value = "10%,50%,100%", value_name = "LIST")]
    waves: String,
    /// Share of a wave that must succeed before the next wave opens.
    #[arg(long, default_value_t = 0.8)]
    success_threshold: f64,
    /// Share of a wave whose failure stops the campaign and rolls the opened waves back.
    #[arg(long, default_value_t = 0.2)]
    error_threshold: f64,
    /// The application image size.
    #[arg(long, default_value_t = 16 * 1024, value_name = "BYTES")]
    image_size: usize,
    /// Devices poll at most this often (seconds), whatever the server says; 0 = as the
    /// server says.
    #[arg(long, value_name = "SECONDS")]
    poll_cap: Option<f64>,
    /// Devices talking to the server at the same time.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Seed for placing the faults (replay a run with the same seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the devices' flash and state go (default: a temporary directory in /dev/shm
    /// when it exists, removed at the end).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Print the summary as JSON (no progress display).
    #[arg(long)]
    json: bool,
}

fn waves(s: &str) -> Result<Vec<WaveSize>> {
    crate::waves::parse(s.split(','))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn work_dir(given: Option<&PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(d) = given {
        return Ok((d.clone(), None));
    }
    let shm = std::path::Path::new("/dev/shm");
    let t = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("suitcase-sim-")
            .tempdir_in(shm)
            .or_else(|_| tempfile::tempdir())
    } else {
        tempfile::tempdir()
    }
    .context("cannot create a temporary directory")?;
    Ok((t.path().to_path_buf(), Some(t)))
}

fn plan(server: &str, token: &str, c: &Common, work: &std::path::Path) -> Result<Plan> {
    let mut p = Plan::new(server, token, c.devices, work);
    p.faults = Faults::parse(&c.faults)?;
    p.waves = waves(&c.waves)?;
    if p.waves.is_empty() {
        bail!("--waves: give at least one wave, e.g. 10%,50%,100%");
    }
    for (name, v) in [
        ("--success-threshold", c.success_threshold),
        ("--error-threshold", c.error_threshold),
    ] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{name} must be between 0 and 1");
        }
    }
    p.success_threshold = c.success_threshold;
    p.error_threshold = c.error_threshold;
    if c.image_size < 64 || c.image_size > 64 << 20 {
        bail!("--image-size must be between 64 bytes and 64 MiB");
    }
    p.image_size = c.image_size;
    p.poll_cap = c.poll_cap.filter(|s| *s > 0.0).map(Duration::from_secs_f64);
    p.concurrency = c.concurrency.max(1);
    p.timeout = Duration::from_secs(c.timeout);
    p.seed = c.seed;
    Ok(p)
}

/// The progress display: a bar of devices done and a line per wave and per step.
struct Display {
    bar: Option<ProgressBar>,
}

impl Display {
    fn new(devices: usize, quiet: bool) -> Self {
        if quiet {
            return Self { bar: None };
        }
        let bar = ProgressBar::new(devices as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} devices finished\n{msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self { bar: Some(bar) }
    }

    fn show(&self, s: &Snapshot) {
        let Some(bar) = &self.bar else { return };
        let finished: u64 = s
            .waves
            .iter()
            .map(|w| w.succeeded + w.failed + w.rolled_back)
            .sum();
        bar.set_position(finished.min(s.devices as u64));
        let waves: Vec<String> = s
            .waves
            .iter()
            .map(|w| {
                format!(
                    "wave {}: {}",
                    crate::waves::number(w),
                    crate::waves::counts(w)
                )
            })
            .collect();
        let steps: Vec<String> = Step::ALL
            .iter()
            .zip(s.in_step)
            .filter(|(_, n)| *n > 0)
            .map(|(st, n)| format!("{} {n}", st.name()))
            .collect();
        bar.set_message(format!(
            "campaign {} ({} of {} waves open) | {}\nnow in: {} | {:.1} MB moved",
            s.campaign_state,
            s.opened_waves,
            s.waves.len(),
            waves.join(" | "),
            if steps.is_empty() {
                "-".to_owned()
            } else {
                steps.join(", ")
            },
            s.bytes as f64 / 1e6,
        ));
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn report(s: &Summary, json: bool) -> Result<ExitCode> {
    if json {
        outln!("{}", serde_json::to_string(s)?);
    } else {
        outln!(
            "{} devices in {:.1} s: {} updated, {} rolled back, {} failed, {} not reached",
            s.devices,
            s.seconds,
            s.updated,
            s.rolled_back,
            s.failed,
            s.not_reached
        );
        outln!(
            "campaign {} {}{}",
            s.campaign_id,
            s.campaign_state,
            s.campaign_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        outln!(
            "traffic: {:.2} MB ({:.2} MB of it envelopes and payloads), {} check-ins, {} resumed downloads, {} power cuts",
            s.bytes_transferred as f64 / 1e6,
            s.download_bytes as f64 / 1e6,
            s.check_ins,
            s.resumed_downloads,
            s.power_cuts
        );
        if !s.converged {
            outln!("the campaign did not finish within --timeout");
        }
        for e in &s.errors {
            outln!("  {e}");
        }
    }
    Ok(if s.converged && s.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn rehearse(plan: &Plan, json: bool) -> Result<Summary> {
    let display = Display::new(plan.devices, json);
    // indicatif's bar is thread-safe: no lock of our own.
    let summary = suitcase_sim::rehearse(plan, &|s: &Snapshot| display.show(s)).await;
    display.finish();
    Ok(summary?)
}

/// `suitcase sim`.
pub(crate) fn run_sim(a: SimArgs) -> Result<ExitCode> {
    let token = match (&a.token, &a.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the token file {}", f.display()))?
            .trim()
            .to_owned(),
        (None, None) => bail!(
            "give an admin token with --token, --token-file or SUITCASE_TOKEN (the server wrote the first one to its data directory, e.g. suitcase-data/admin-token)"
        ),
    };
    let (work, _keep) = work_dir(a.common.work.as_ref())?;
    let plan = plan(&a.server, &token, &a.common, &work)?;
    let summary = runtime()?.block_on(rehearse(&plan, a.common.json))?;
    report(&summary, a.common.json)
}

/// `suitcase demo`.
pub(crate) fn run_demo(a: DemoArgs) -> Result<ExitCode> {
    let (work, _keep) = work_dir(a.common.work.as_ref())?;
    let rt = runtime()?;
    let summary = rt.block_on(async {
        let mut config = suitcase_server::Config::new(work.join("server"));
        config.listen = "127.0.0.1:0".parse()?;
        // Devices poll every second (±25% jitter): a demo, not a battery budget.
        config.poll_interval = 1;
        config.flush_interval = Duration::from_millis(100);
        let (server, opened) = suitcase_server::start(config)
            .await
            .context("cannot start the server")?;
        let token = opened
            .admin_token
            .context("the new server did not create an admin token")?;
        if !a.common.json {
            errln!(
                "server on {} (SQLite and payloads in {}); {} simulated devices",
                server.url(),
                work.join("server").display(),
                a.common.devices
            );
        }
        let mut plan = plan(&server.url(), &token, &a.common, &work.join("devices"))?;
        if plan.poll_cap.is_none() {
            plan.poll_cap = Some(Duration::from_secs(1));
        }
        let summary = rehearse(&plan, a.common.json).await;
        server.shutdown().await;
        summary
    })?;
    report(&summary, a.common.json)
}

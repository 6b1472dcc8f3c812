//! `suitcase agent`: the device agent (firmware consumer and status-tracker client).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use suitcase_agent::{Agent, AgentError, Event, Finished, Hooks};

/// Arguments of `suitcase agent`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The agent configuration (server, credentials, trust anchors, identity, components);
    /// see docs/agent.md.
    #[arg(long, value_name = "agent.toml", env = "SUITCASE_AGENT_CONFIG")]
    config: PathBuf,
    /// One cycle (finish an interrupted update, check in, install what is offered), then
    /// exit: 0 installed (and confirmed) or nothing to do, 1 the update failed, 2 an error
    /// (the state is kept and the next run resumes), 3 deferred, 4 pending: the reboot command
    /// ran and the new image is on trial, not confirmed; run the agent again after the
    /// reboot to health-check and confirm it (or revert it).
    #[arg(long)]
    once: bool,
    /// Print one JSON object per status event on stdout.
    #[arg(long)]
    json: bool,
    /// Check the configuration and print the inventory the agent would report, then exit.
    #[arg(long)]
    check_config: bool,
    /// Install from an offline bundle (a file or directory made by `suitcase bundle create`;
    /// docs/bundles.md) instead of the server, then exit: the newest release in it for this
    /// device goes through the same steps and checks as an update from the server. Reports
    /// are queued in the state directory and sent when the agent next reaches the server.
    /// Exit statuses as with --once, and 5 when nothing in the bundle is for this device or
    /// newer than what is installed (nothing changed).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["once", "check_config"])]
    bundle: Option<PathBuf>,
    /// Watch a directory (e.g. the mount point of a USB stick) for offline bundles and
    /// install from each new one, until stopped: the directory itself if it holds index.json,
    /// its subdirectories that do, and its *.bundle and *.tar files (docs/bundles.md).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["once", "check_config", "bundle"])]
    watch: Option<PathBuf>,
    /// With --watch: seconds between two looks at the directory.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, requires = "watch")]
    watch_interval: u64,
    /// Run only the gateway of the configuration's [gateway] section until stopped: relay the
    /// sub-devices on its serial links or sockets to the server, cache their releases and
    /// queue their reports while the server is away (docs/gateway.md). Without this flag the
    /// agent runs the gateway beside its own updates whenever the section is present.
    #[arg(long, conflicts_with_all = ["once", "check_config", "bundle", "watch"])]
    gateway: bool,
}

/// `--bundle` exit status: nothing in the bundle for this device (nothing changed).
const NOTHING_IN_BUNDLE: u8 = 5;

/// `--once` exit status: the reboot command ran; the update is on trial, not confirmed.
const PENDING: u8 = 4;

fn sink(json: bool) -> suitcase_agent::EventSink {
    Arc::new(move |e: &Event| {
        if json {
            if let Ok(line) = serde_json::to_string(e) {
                outln!("{line}");
            }
            return;
        }
        match e {
            Event::CheckIn {
                action,
                release_id,
                next_poll_seconds,
            } => outln!(
                "check-in: {action}{} (next poll in {next_poll_seconds} s)",
                release_id
                    .as_deref()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default()
            ),
            Event::Step {
                step,
                outcome,
                reason,
                detail,
                ..
            } => outln!(
                "  {step:<10} {outcome}{}{}",
                reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            Event::Resume { release_id, step } => {
                outln!("resuming {release_id} at {step}");
            }
            Event::Update {
                release_id, result, ..
            } => outln!("update {release_id}: {result}"),
            Event::Push { topic } => outln!("push on {topic}"),
            Event::Error {
                message,
                retry_in_seconds,
            } => errln!(
                "error: {message}{}",
                retry_in_seconds
                    .map(|s| format!(" (retrying in {s:.1} s)"))
                    .unwrap_or_default()
            ),
            Event::Bundle {
                path,
                release_id,
                note,
            } => {
                if let Some(r) = release_id {
                    outln!("bundle {path}: installing {r}");
                }
                if let Some(n) = note {
                    errln!("bundle {path}: {n}");
                }
            }
            Event::Sleep { .. } | Event::Subscribed { .. } => {}
        }
    })
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let config = suitcase_agent::Config::load(&args.config)?;
    let with_gateway = config.gateway.is_some();
    if args.gateway && !with_gateway {
        anyhow::bail!(
            "{}: --gateway needs a [gateway] section with [[gateway.subdevice]] entries (docs/gateway.md)",
            args.config.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        if args.gateway {
            suitcase_agent::gateway::run(&config).await?;
            return Ok(ExitCode::SUCCESS);
        }
        // The forever mode runs the gateway beside the agent: a configuration of its own,
        // loaded from the same file (the agent takes its own by value).
        let forever = !args.once && !args.check_config && args.bundle.is_none();
        let gateway = if with_gateway && forever && args.watch.is_none() {
            let config = suitcase_agent::Config::load(&args.config)?;
            Some(tokio::spawn(async move {
                suitcase_agent::gateway::run(&config).await
            }))
        } else {
            None
        };
        let mut agent = Agent::new(config, Hooks::default(), sink(args.json))?;
        if args.check_config {
            outln!("{}", serde_json::to_string_pretty(&agent.inventory()?)?);
            return Ok(ExitCode::SUCCESS);
        }
        if args.once || args.bundle.is_some() {
            let cycle = match &args.bundle {
                Some(path) => agent.install_bundle(path).await,
                None => agent.cycle().await,
            };
            return Ok(match cycle {
                Ok(c) => match c.update.map(|u| u.finished) {
                    None | Some(Finished::Installed) => ExitCode::SUCCESS,
                    Some(Finished::Failed(_)) => ExitCode::from(1),
                    Some(Finished::Deferred(_)) => ExitCode::from(3),
                },
                // Not a success: the update is on trial until a run after the reboot
                // confirms it (docs/agent.md §1).
                Err(e @ AgentError::Rebooting) => {
                    errln!("{e}");
                    ExitCode::from(PENDING)
                }
                // Said by the `bundle` event already.
                Err(AgentError::NothingInBundle(_)) => ExitCode::from(NOTHING_IN_BUNDLE),
                Err(e) => {
                    errln!("error: {e}");
                    ExitCode::from(2)
                }
            });
        }
        let forever = match &args.watch {
            Some(dir) => {
                agent
                    .watch(
                        dir,
                        std::time::Duration::from_secs(args.watch_interval.max(1)),
                        None,
                    )
                    .await
            }
            None => match gateway {
                Some(mut gateway) => tokio::select! {
                    r = agent.run() => r,
                    g = &mut gateway => {
                        let g = g.context("the gateway task stopped")?;
                        return Err(anyhow::Error::new(g.err().unwrap_or_else(|| {
                            AgentError::Config("the gateway stopped".to_owned())
                        }))
                        .context("the gateway stopped"));
                    }
                },
                None => agent.run().await,
            },
        };
        match forever {
            // Forever mode stops for the reboot with 0, so that a supervisor restarting failed
            // services does not start it again (and confirm an image that never booted)
            // before the machine goes down; it finishes the update when it starts after the
            // reboot.
            Ok(()) | Err(AgentError::Rebooting) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(anyhow::Error::new(e)),
        }
    })
}

//! The agent loop: check in, install what is offered, sleep until the next poll or a push;
//! back off exponentially with jitter when the server cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use suitcase_protocol::{Action, CheckInAnswer};

use crate::config::Config;
use crate::ctx::{Ctx, off_worker};
use crate::error::AgentError;
use crate::events::{Event, EventSink};
use crate::hooks::Hooks;
use crate::http::{Http, Traffic};
use crate::machine;
use crate::runner::{self, Finished};
use crate::state::{Durability, Journal, StateDir};

mod bundles;

use bundles::{bundles_in, pick, stamp};

/// What an update attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateResult {
    /// The release.
    pub release_id: String,
    /// How it ended.
    pub finished: Finished,
}

/// One cycle: a check-in and whatever update it led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The server's answer (`None` if an interrupted update was finished first and the
    /// check-in after it failed).
    pub answer: Option<CheckInAnswer>,
    /// The update, if one ran.
    pub update: Option<UpdateResult>,
    /// When to check in next.
    pub next_poll: Duration,
}

async fn resume_with(ctx: &Ctx, j: Journal) -> Result<UpdateResult, AgentError> {
    if j.step != suitcase_protocol::Step::Receive || j.envelope.durable > 0 {
        (ctx.events)(&Event::Resume {
            release_id: j.release().to_owned(),
            step: j.step.name().into(),
        });
    }
    let release_id = j.release().to_owned();
    let finished = runner::run(ctx, j).await?;
    Ok(UpdateResult {
        release_id,
        finished,
    })
}

/// The device agent.
pub struct Agent {
    ctx: Ctx,
    push: crate::push::Push,
    errors: u32,
    /// Whether this agent has marked the booted slots good (once per start, `slots::mark_good`).
    marked_good: bool,
}

impl core::fmt::Debug for Agent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Agent")
            .field("state_dir", &self.ctx.state.dir)
            .finish_non_exhaustive()
    }
}

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Agent {
    /// An agent for `cfg`.
    ///
    /// # Errors
    /// [`AgentError::Config`] for unusable TLS material; [`AgentError::Local`] if the state
    /// directory cannot be created.
    pub fn new(cfg: Config, hooks: Hooks, events: EventSink) -> Result<Self, AgentError> {
        let http = match hooks.client.clone() {
            Some(client) => Http::with_client(client, &cfg.server, hooks.download_cuts.clone()),
            None => Http::new(&cfg.server, hooks.download_cuts.clone())?,
        };
        let durability = Arc::new(Durability::crash_after(hooks.crash_after_writes));
        let state = StateDir::open(&cfg.state_dir, durability)?;
        let push = crate::push::Push::new(cfg.push.client_id.clone(), events.clone());
        Ok(Self {
            ctx: Ctx {
                cfg: Arc::new(cfg),
                http,
                state,
                events,
                clock: hooks.clock.unwrap_or_else(|| Arc::new(system_clock)),
                health: hooks.health,
                bundle: None,
                offline: false,
            },
            push,
            errors: 0,
            marked_good: false,
        })
    }

    /// HTTP traffic so far.
    pub fn traffic(&self) -> Traffic {
        self.ctx.http.traffic()
    }

    /// Durable writes so far (journal, outbox, installed inventory, pointers, flash).
    pub fn durable_writes(&self) -> u64 {
        self.ctx.state.durability.writes()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.ctx.cfg
    }

    /// What the agent would report at check-in now.
    ///
    /// # Errors
    /// [`AgentError::Local`] if the state cannot be read.
    pub fn inventory(&self) -> Result<suitcase_protocol::CheckIn, AgentError> {
        crate::inventory::inventory(&self.ctx)
    }

    /// Checks in; with `trust.require_freshness` also checks the answer's freshness statement
    /// (`crate::freshness`): the second value is why its offer must be refused, if it must.
    async fn checkin(&mut self) -> Result<(CheckInAnswer, Option<String>), AgentError> {
        let mut inventory = crate::inventory::inventory(&self.ctx)?;
        inventory.nonce = crate::freshness::nonce(&self.ctx)?;
        let answer = self.ctx.http.checkin(&inventory).await?;
        let refused =
            crate::freshness::accept(&self.ctx, inventory.nonce.as_deref(), &answer)?.err();
        if let Some(why) = &refused {
            tracing::warn!("{why}");
            (self.ctx.events)(&Event::Error {
                message: why.clone(),
                retry_in_seconds: None,
            });
        }
        let mut installed = self.ctx.state.installed()?;
        if installed.reverted {
            // The server has seen the revert now.
            installed.reverted = false;
            self.ctx.state.save_installed(&installed)?;
        }
        (self.ctx.events)(&Event::CheckIn {
            action: match answer.action {
                Action::None => "none".into(),
                Action::Update => "update".into(),
            },
            release_id: answer.update.as_ref().map(|u| u.release_id.clone()),
            next_poll_seconds: answer.next_poll_seconds,
        });
        if self.ctx.cfg.push.enabled
            && let Some(p) = &answer.push
        {
            self.push.ensure(p);
        }
        Ok((answer, refused))
    }

    async fn resume(&mut self, j: Journal) -> Result<UpdateResult, AgentError> {
        (self.ctx.events)(&Event::Resume {
            release_id: j.release().to_owned(),
            step: j.step.name().into(),
        });
        let release_id = j.release().to_owned();
        let finished = runner::run(&self.ctx, j).await?;
        Ok(UpdateResult {
            release_id,
            finished,
        })
    }

    /// One cycle: deliver queued reports, finish an update that already changed the device,
    /// check in, and install (or resume) what is offered.
    ///
    /// # Errors
    /// [`AgentError::Server`] when the server cannot be reached (retry later; the state is
    /// kept); other errors stop the agent.
    pub async fn cycle(&mut self) -> Result<Cycle, AgentError> {
        let _ = crate::report::flush(&self.ctx).await;
        let mut journal = self.ctx.state.journal()?;
        if journal.is_none() {
            // A crash between removing the journal and the work area leaves stale files.
            self.ctx.state.clear_work()?;
        }
        if !self.marked_good {
            self.marked_good = true;
            self.mark_good().await;
        }
        // An update that has touched the slots is finished (or undone) first, whatever the
        // server says: the device must not stay half-updated.
        if let Some(j) = journal.take_if(|j| machine::touches_device(j.step) || j.undoing.is_some())
        {
            let result = self.resume(j).await?;
            let answer = self.checkin().await.ok().map(|(a, _)| a);
            let next_poll = answer.as_ref().map_or(self.ctx.cfg.polling.interval, |a| {
                Duration::from_secs(u64::from(a.next_poll_seconds))
            });
            return Ok(Cycle {
                answer,
                update: Some(result),
                next_poll,
            });
        }
        let (answer, refused) = self.checkin().await?;
        let mut next_poll = Duration::from_secs(u64::from(answer.next_poll_seconds));
        if refused.is_some() {
            // docs/trust.md "Freshness": an offer without a valid statement is not acted on
            // (nothing downloaded); an update under way keeps its journal and downloads for
            // the next fresh answer.
            return Ok(Cycle {
                answer: Some(answer),
                update: None,
                next_poll,
            });
        }
        let offer = answer.update.clone();
        let job = match (journal, offer) {
            // docs/trust.md "Freshness": the release id is not signed; with freshness the
            // statement must bind what the journal installs, or it starts again on the offer.
            (Some(j), Some(o))
                if j.offer.release_id == o.release_id
                    && crate::freshness::binds_journal(&self.ctx, &j) =>
            {
                Some(j)
            }
            (Some(j), offer) => {
                tracing::info!(
                    "the server no longer offers {}; discarding its downloads",
                    j.release()
                );
                self.ctx.state.finish()?;
                offer.map(|o| self.fresh(o)).transpose()?
            }
            (None, Some(o)) => Some(self.fresh(o)?),
            (None, None) => None,
        };
        let update = match job {
            Some(j) if j.step != suitcase_protocol::Step::Receive || j.envelope.durable > 0 => {
                Some(self.resume(j).await?)
            }
            Some(j) => {
                let release_id = j.release().to_owned();
                let finished = runner::run(&self.ctx, j).await?;
                Some(UpdateResult {
                    release_id,
                    finished,
                })
            }
            None => None,
        };
        if let Some(UpdateResult {
            finished: Finished::Deferred(Some(retry)),
            ..
        }) = &update
        {
            next_poll = next_poll.min(Duration::from_secs((*retry).max(1)));
        }
        Ok(Cycle {
            answer: Some(answer),
            update,
            next_poll,
        })
    }

    /// Installs from an offline bundle (docs/bundles.md) without the server: finishes an
    /// update that already changed the device first, then picks the release with the highest
    /// sequence number that is for this device (vendor, class and at least one configured
    /// component, per the bundle's index) and newer than what is installed, and runs the
    /// same steps and checks as an offer from the server (the signed manifest decides at
    /// Check; the index only says where the bytes are). Reports are queued durably, marked
    /// `offline`; one attempt is made to deliver them at the end, and the next cycle online
    /// sends whatever is left. When an update was finished first, the result is the picked
    /// release's update, or the finished one if the bundle has nothing newer.
    ///
    /// # Errors
    /// [`AgentError::Local`] for a bundle that cannot be read, or
    /// [`AgentError::NothingInBundle`] when nothing in it is for this device or newer than
    /// what is installed (nothing was changed).
    pub async fn install_bundle(&mut self, path: &std::path::Path) -> Result<Cycle, AgentError> {
        let source = self.open_bundle(path)?;
        self.install_from(path, source).await
    }

    /// Opens a bundle; an unreadable one is a `bundle` event with its note.
    fn open_bundle(
        &self,
        path: &std::path::Path,
    ) -> Result<Arc<crate::bundle::Source>, AgentError> {
        crate::bundle::Source::open(path)
            .map(Arc::new)
            .inspect_err(|e| {
                (self.ctx.events)(&Event::Bundle {
                    path: path.display().to_string(),
                    release_id: None,
                    note: Some(e.to_string()),
                });
            })
    }

    async fn install_from(
        &mut self,
        path: &std::path::Path,
        source: Arc<crate::bundle::Source>,
    ) -> Result<Cycle, AgentError> {
        let ctx = Ctx {
            bundle: Some(source.clone()),
            ..self.ctx.clone()
        };
        let mut journal = self.ctx.state.journal()?;
        if journal.is_none() {
            self.ctx.state.clear_work()?;
        }
        if !self.marked_good {
            self.marked_good = true;
            self.mark_good().await;
        }
        let next_poll = self.ctx.cfg.polling.interval;
        // Finish (or undo) what has touched the device, wherever it came from; then pick
        // from the bundle as if there had been nothing to finish (docs/bundles.md §3).
        let mut resumed = None;
        if let Some(j) = journal.take_if(|j| machine::touches_device(j.step) || j.undoing.is_some())
        {
            let r = resume_with(&ctx, j).await?;
            let done = matches!(r.finished, Finished::Installed | Finished::Failed(_));
            journal = self.ctx.state.journal()?;
            if !done || journal.is_some() {
                return self.end_bundle(Some(r), next_poll).await;
            }
            self.ctx.state.clear_work()?;
            resumed = Some(r);
        }
        // The trust updates the bundle carries first: its releases are checked against the
        // trust they bring (docs/bundles.md §3).
        crate::bundle::apply_trust_updates(&ctx, &source)?;
        let pick = pick(&self.ctx, &source.index);
        (self.ctx.events)(&Event::Bundle {
            path: path.display().to_string(),
            release_id: pick.as_ref().ok().map(|r| r.id.clone()),
            note: pick.as_ref().err().map(ToString::to_string),
        });
        let pick = match pick {
            Ok(p) => p,
            // What was finished is this run's update.
            Err(AgentError::NothingInBundle(_)) if resumed.is_some() => {
                return self.end_bundle(resumed, next_poll).await;
            }
            Err(e) => return Err(e),
        };
        let offer = crate::bundle::Index::offer(pick);
        let job = match journal {
            Some(j) if j.offer == offer => j,
            Some(j) => {
                tracing::info!(
                    "installing from the bundle instead of {}; discarding its downloads",
                    j.release()
                );
                self.ctx.state.finish()?;
                self.fresh(offer)?
            }
            None => self.fresh(offer)?,
        };
        let update = resume_with(&ctx, job).await?;
        self.end_bundle(Some(update), next_poll).await
    }

    /// The end of a bundle run: one attempt to deliver the queued reports (if the server is
    /// not reachable they wait for the next cycle online).
    async fn end_bundle(
        &self,
        update: Option<UpdateResult>,
        next_poll: Duration,
    ) -> Result<Cycle, AgentError> {
        if let Err(e) = crate::report::flush(&self.ctx).await {
            tracing::info!("reports stay queued until the server is reachable: {e}");
        }
        Ok(Cycle {
            answer: None,
            update,
            next_poll,
        })
    }

    /// Watches `dir` (a mount point) for offline bundles, every `every`, and installs from each
    /// new one (docs/bundles.md): `dir` itself when it holds `index.json`, each subdirectory
    /// that does, and each `*.bundle` or `*.tar` file in it (at most 64 a round, in name
    /// order). A bundle whose install ended (installed, or failed and undone), that had
    /// nothing for the device, or that could not be read is tried again only when it changes
    /// (size or modification time of the file or its index), so a stick left in is not
    /// installed twice and an unreadable one is not retried in a loop; a bundle still being
    /// copied is tried again once it changes. An install deferred (consent) or stopped by an
    /// error to resume from is taken up again the next round. Runs `rounds` times (forever
    /// if `None`).
    ///
    /// # Errors
    /// [`AgentError::Rebooting`] after the reboot command (as [`Self::run`]), and errors that
    /// retrying cannot fix (an injected crash).
    pub async fn watch(
        &mut self,
        dir: &std::path::Path,
        every: Duration,
        rounds: Option<u64>,
    ) -> Result<(), AgentError> {
        let mut seen: std::collections::BTreeMap<
            std::path::PathBuf,
            (u64, Option<std::time::SystemTime>),
        > = std::collections::BTreeMap::new();
        let mut round = 0u64;
        loop {
            for path in bundles_in(dir) {
                let Some(stamp) = stamp(&path) else {
                    continue;
                };
                if seen.get(&path) == Some(&stamp) {
                    continue;
                }
                // Done with this form of the bundle: installed, failed (and undone), nothing
                // in it, or unreadable (tried again when it changes, e.g. a copy finished).
                // A deferral (consent), a resumed update that ended elsewhere, or an error to
                // resume from is tried again next round.
                let result = match self.open_bundle(&path) {
                    Err(e) => {
                        seen.insert(path.clone(), stamp);
                        Err(e)
                    }
                    Ok(source) => {
                        let r = self.install_from(&path, source).await;
                        let done = match &r {
                            Ok(c) => c.update.as_ref().is_none_or(|u| {
                                matches!(u.finished, Finished::Installed | Finished::Failed(_))
                            }),
                            Err(e) => matches!(e, AgentError::NothingInBundle(_)),
                        };
                        if done {
                            seen.insert(path.clone(), stamp);
                        }
                        r
                    }
                };
                match result {
                    Ok(_) | Err(AgentError::NothingInBundle(_)) => {}
                    Err(e @ (AgentError::Rebooting | AgentError::InjectedCrash)) => return Err(e),
                    Err(e) => (self.ctx.events)(&Event::Error {
                        message: format!("{}: {e}", path.display()),
                        retry_in_seconds: None,
                    }),
                }
            }
            round += 1;
            if rounds.is_some_and(|n| round >= n) {
                return Ok(());
            }
            (self.ctx.events)(&Event::Sleep {
                seconds: every.as_secs_f64(),
            });
            tokio::time::sleep(every).await;
        }
    }

    /// With a bootloader that counts boot attempts on every boot (docs/bootloaders.md), the
    /// confirmed slot that booted gets its attempts back, once per agent start, unless a slot
    /// is on trial (`slots::mark_good` checks): otherwise a confirmed slot would fall back
    /// after `tries` reboots, also while an update that has not reached Activate is
    /// interrupted by power cuts (the slot being written was made unbootable and stays so).
    /// Failures are logged, not fatal: the next start tries again, and Distribute reports a
    /// bootloader that cannot be read. The bootloader's tools run on the blocking pool.
    async fn mark_good(&self) {
        for c in &self.ctx.cfg.components {
            let crate::config::Kind::File(s) = &c.kind else {
                continue;
            };
            if s.bootloader == crate::bootloader::Backend::Pointer {
                continue;
            }
            let s = s.clone();
            let marked = off_worker("bootloader", move || crate::slots::mark_good(&s))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            match marked {
                Ok(Some(what)) => tracing::info!("{}: {what}", c.name),
                Ok(None) => {}
                Err(e) => tracing::warn!("{}: cannot mark the booted slot good: {e}", c.name),
            }
        }
    }

    fn fresh(&self, offer: suitcase_protocol::UpdateOffer) -> Result<Journal, AgentError> {
        self.ctx.state.clear_work()?;
        let mut j = Journal::new(offer);
        // Receive begins now (journalled with the journal itself: no extra write).
        j.started = Some(crate::state::StepStarted {
            step: j.step,
            at: self.ctx.now(),
        });
        self.ctx.state.save_journal(&j)?;
        Ok(j)
    }

    /// Runs forever: a cycle, then sleep until the next poll or a push notification; after
    /// server errors, exponential back-off with jitter (polling.backoff_min_seconds doubling
    /// up to polling.backoff_max_seconds).
    ///
    /// # Errors
    /// Errors that retrying cannot fix (configuration, local storage, an injected crash).
    pub async fn run(&mut self) -> Result<(), AgentError> {
        loop {
            let wait = match self.cycle().await {
                Ok(c) => {
                    self.errors = 0;
                    c.next_poll
                }
                Err(e) if e.is_transient() => {
                    self.errors = self.errors.saturating_add(1);
                    let wait = crate::pacing::backoff(
                        self.ctx.cfg.polling.backoff_min,
                        self.ctx.cfg.polling.backoff_max,
                        self.errors,
                    );
                    (self.ctx.events)(&Event::Error {
                        message: e.to_string(),
                        retry_in_seconds: Some(wait.as_secs_f64()),
                    });
                    wait
                }
                Err(e) => return Err(e),
            };
            (self.ctx.events)(&Event::Sleep {
                seconds: wait.as_secs_f64(),
            });
            let notify = self.push.notify.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = notify.notified() => {}
            }
        }
    }
}

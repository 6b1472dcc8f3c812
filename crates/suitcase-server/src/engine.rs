//! The rollout engine: every live campaign and every device with an unfinished update, in
//! memory, so that a check-in is answered without a query. Every change is written to the
//! database before it is acted on elsewhere, and [`load`] rebuilds this state from the
//! database at start: killing the server loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, Result};
use suitcase_protocol::{
    CampaignState, CheckIn, OnError, Outcome, PayloadOffer, Step, StepReport, WaveProgress,
};

use crate::AppState;
use crate::rollout::{self, Verdict};
use crate::store::{CampaignRow, ReleaseRow};

/// A device's state in a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MState {
    Pending,
    Notified,
    InProgress,
    Succeeded,
    Failed,
    Cancelled,
    RollingBack,
    RolledBack,
    RollbackFailed,
}

impl MState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Notified => "notified",
            Self::InProgress => "in_progress",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::RollingBack => "rolling_back",
            Self::RolledBack => "rolled_back",
            Self::RollbackFailed => "rollback_failed",
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Notified,
            Self::InProgress,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
            Self::RollingBack,
            Self::RolledBack,
            Self::RollbackFailed,
        ]
        .into_iter()
        .find(|x| x.name() == s)
    }

    fn terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Failed
                | Self::Cancelled
                | Self::RolledBack
                | Self::RollbackFailed
        )
    }

    fn count(self, w: &mut WaveProgress, delta: i64) {
        let slot = match self {
            Self::Pending => &mut w.pending,
            Self::Notified => &mut w.notified,
            Self::InProgress => &mut w.in_progress,
            Self::Succeeded => &mut w.succeeded,
            Self::Failed | Self::RollbackFailed => &mut w.failed,
            Self::Cancelled => &mut w.cancelled,
            Self::RollingBack => &mut w.rolling_back,
            Self::RolledBack => &mut w.rolled_back,
        };
        *slot = slot.saturating_add_signed(delta);
    }
}

/// What a device is offered: a release as the device API describes it.
#[derive(Debug)]
pub(crate) struct ReleaseRt {
    pub(crate) id: String,
    pub(crate) sequence_number: u64,
    pub(crate) manifest_size: u64,
    pub(crate) payloads: Vec<PayloadOffer>,
    /// The component each payload is for (by payload position).
    pub(crate) payload_components: Vec<Option<Vec<String>>>,
    /// The image components (not the helpers a device only uses while processing), which a
    /// device that installed the release reports.
    pub(crate) components: Vec<Vec<String>>,
    /// For a delta release: each patched component and the SHA-256 (hex) of the image the
    /// patch applies to (the image-match on its base component).
    pub(crate) delta_bases: Vec<(Vec<String>, String)>,
}

impl ReleaseRt {
    pub(crate) fn from_row(r: &ReleaseRow) -> Self {
        Self {
            id: r.id.clone(),
            sequence_number: r.sequence_number,
            manifest_size: r.envelope_bytes,
            payloads: r
                .payloads
                .iter()
                .map(|p| PayloadOffer {
                    uri: p.uri.clone(),
                    url: format!("/api/v1/device/payloads/{}/{}", r.id, p.idx),
                    size: p.size.unwrap_or(0),
                    sha256: p.sha256.clone().unwrap_or_default(),
                    delta: None,
                })
                .collect(),
            payload_components: r
                .payloads
                .iter()
                .map(|p| {
                    r.summary
                        .components
                        .iter()
                        .find(|c| c.uri.as_deref() == Some(p.uri.as_str()))
                        .map(|c| c.id.clone())
                })
                .collect(),
            components: r.summary.images().map(|c| c.id.clone()).collect(),
            delta_bases: r
                .summary
                .components
                .iter()
                .filter_map(|c| {
                    let base = r
                        .summary
                        .components
                        .get(usize::try_from(c.delta_base?).ok()?)?;
                    match &base.image_digest {
                        Some((alg, hex)) if alg == "sha-256" => Some((c.id.clone(), hex.clone())),
                        _ => None,
                    }
                })
                .collect(),
        }
    }

    /// A delta release the device cannot apply: it reports another image on a component the
    /// patch rebuilds. Returns why, for the report. A device that reports no digest is given
    /// the release; its own processor checks the base (the manifest's image-match).
    pub(crate) fn delta_base_mismatch(&self, c: &CheckIn) -> Option<String> {
        self.delta_bases.iter().find_map(|(id, base)| {
            let running = c.components.iter().find(|ic| &ic.id == id)?;
            let digest = running.digest.as_deref()?;
            (!digest.eq_ignore_ascii_case(base)).then(|| {
                format!(
                    "not offered: the release is a delta patch from the image with SHA-256 {}…, but the device reports {}… on component {}; give it a full release or a delta from its image",
                    base.get(..16).unwrap_or(base),
                    digest.get(..16).unwrap_or(digest),
                    id.join("/")
                )
            })
        })
    }

    /// The device reports this release (or a later one) installed on every component it
    /// writes, and is not on trial.
    fn installed_on(&self, c: &CheckIn) -> bool {
        if c.boot.as_ref().is_some_and(|b| b.trial) || self.components.is_empty() {
            return false;
        }
        self.components.iter().all(|id| {
            c.components
                .iter()
                .any(|ic| &ic.id == id && ic.sequence_number >= self.sequence_number)
        })
    }
}

/// A token bucket: at most `rate` starts per minute, bursts up to a minute's worth.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: i64,
    per_minute: f64,
}

impl Bucket {
    fn take(&mut self, now: i64) -> bool {
        #[allow(clippy::cast_precision_loss, reason = "seconds since the last take")]
        let elapsed = (now - self.last).max(0) as f64;
        self.tokens =
            (self.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute.max(1.0));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Rt {
    row: CampaignRow,
    waves: Vec<WaveProgress>,
    release: Arc<ReleaseRt>,
    rollback: Option<Arc<ReleaseRt>>,
    bucket: Option<Bucket>,
}

#[derive(Clone, Debug)]
struct Member {
    campaign: String,
    wave: u32,
    state: MState,
}

#[derive(Default)]
struct EngineState {
    campaigns: HashMap<String, Rt>,
    members: HashMap<String, Member>,
}

/// The engine.
#[derive(Default)]
pub(crate) struct Engine {
    state: RwLock<EngineState>,
    /// Serialises campaign-level changes (start, advance, trip, operator actions).
    ops: tokio::sync::Mutex<()>,
}

/// A device state change to persist.
#[derive(Debug, Clone)]
pub(crate) struct Transition {
    pub(crate) campaign_id: String,
    pub(crate) device_id: String,
    /// The state the device left: the write only lands if the database still has it.
    pub(crate) from: MState,
    pub(crate) to: MState,
    pub(crate) release_id: String,
}

/// What [`Engine::on_report`] makes of a report.
#[derive(Debug)]
pub(crate) enum ReportFate {
    /// The device has no unfinished update for this release in a live campaign: the
    /// database decides whether it was ever offered it.
    NotMember,
    /// The device is in the campaign but was never offered the release.
    NotOffered,
    /// A report on the device's current update.
    Member {
        campaign: String,
        transition: Option<Transition>,
    },
}

/// The answer to a check-in.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub(crate) offer: Option<(Arc<ReleaseRt>, bool, bool)>,
    pub(crate) transition: Option<Transition>,
    /// Check in again after this many seconds (a closed window or the rate limit).
    pub(crate) retry_after: Option<i64>,
    /// The release was not offered because the device cannot install it (a delta release for
    /// another image): the failure to record as the device's Check report, and the campaign.
    pub(crate) refused: Option<(String, String)>,
    /// The campaign of the offer (the DDI API numbers an action per campaign and release).
    pub(crate) campaign: Option<String>,
}

impl Engine {
    /// Decides what a checking-in device gets.
    pub(crate) fn decide(&self, device_id: &str, checkin: &CheckIn, now: i64) -> Decision {
        // Most devices have nothing to do: answer them under the read lock.
        if self
            .state
            .read()
            .map(|s| !s.members.contains_key(device_id))
            .unwrap_or(true)
        {
            return Decision::default();
        }
        let Ok(mut guard) = self.state.write() else {
            return Decision::default();
        };
        let st = &mut *guard;
        let Some(member) = st.members.get(device_id).cloned() else {
            return Decision::default();
        };
        let Some(rt) = st.campaigns.get_mut(&member.campaign) else {
            return Decision::default();
        };
        let live = matches!(
            rt.row.state,
            CampaignState::Running | CampaignState::RolledBack | CampaignState::Paused
        );
        if !live || member.wave >= rt.row.opened_waves {
            return Decision::default();
        }
        let rolling_back = member.state == MState::RollingBack;
        let release = if rolling_back {
            match &rt.rollback {
                Some(r) => r.clone(),
                None => return Decision::default(),
            }
        } else {
            rt.release.clone()
        };
        let mut decision = Decision::default();
        let mut to = None;
        match member.state {
            MState::Pending => {
                if rt.row.state != CampaignState::Running {
                    return decision;
                }
                if release.installed_on(checkin) {
                    // It runs the release already (docs/server.md §3): it succeeded, and is
                    // not offered what its processor would refuse as a rollback (manifest
                    // §8.4.2), which would count as a failure against the error threshold.
                    // No window or rate limit applies: nothing is installed.
                    to = Some(MState::Succeeded);
                } else {
                    if let Some(w) = &rt.row.spec.window
                        && !rollout::in_window(w, now)
                    {
                        decision.retry_after = Some(rollout::until_window(w, now));
                        return decision;
                    }
                    if let Some(b) = &mut rt.bucket
                        && !b.take(now)
                    {
                        decision.retry_after = Some(30);
                        return decision;
                    }
                    to = Some(MState::Notified);
                }
            }
            MState::Notified | MState::InProgress | MState::RollingBack => {
                if release.installed_on(checkin) {
                    to = Some(if rolling_back {
                        MState::RolledBack
                    } else {
                        MState::Succeeded
                    });
                }
            }
            _ => return decision,
        }
        // A manifest-level delta release for another image than the device runs: it would
        // download the patch only for its processor to refuse it at Check (image-match on the
        // base component, draft-ietf-suit-manifest §8.4.9.2). Fail it here instead.
        if !rolling_back
            && !matches!(to, Some(MState::Succeeded))
            && let Some(why) = release.delta_base_mismatch(checkin)
        {
            decision.refused = Some((member.campaign.clone(), why));
            decision.transition = Some(apply(st, device_id, &member, MState::Failed, &release.id));
            return decision;
        }
        if !matches!(to, Some(MState::Succeeded | MState::RolledBack)) {
            decision.campaign = Some(member.campaign.clone());
            decision.offer = Some((
                release.clone(),
                rolling_back,
                rt.row.spec.requires_consent && !rolling_back,
            ));
        }
        if let Some(to) = to {
            decision.transition = Some(apply(st, device_id, &member, to, &release.id));
        }
        decision
    }

    /// What a report means for the campaigns: the campaign the device is in (for the report
    /// record) and the transition it causes, if any.
    pub(crate) fn on_report(&self, device_id: &str, r: &StepReport) -> ReportFate {
        let Ok(mut guard) = self.state.write() else {
            return ReportFate::NotMember;
        };
        let st = &mut *guard;
        let Some(member) = st.members.get(device_id).cloned() else {
            return ReportFate::NotMember;
        };
        let Some(rt) = st.campaigns.get(&member.campaign) else {
            return ReportFate::NotMember;
        };
        // A device that was never offered the release (its wave is not open, or it has not
        // checked in since) has nothing to report on: a report must not move it
        // (docs/server.md §3, 409 not-offered).
        if member.state == MState::Pending {
            return ReportFate::NotOffered;
        }
        let rolling_back = member.state == MState::RollingBack;
        let current = if rolling_back {
            rt.rollback.as_ref().map(|r| r.id.clone())
        } else {
            Some(rt.release.id.clone())
        };
        if current.as_deref() != Some(r.release_id.as_str()) {
            return ReportFate::NotMember;
        }
        let campaign = member.campaign.clone();
        let to = match (r.outcome, r.step, rolling_back) {
            (Outcome::Failure, _, false) => Some(MState::Failed),
            (Outcome::Failure, _, true) => Some(MState::RollbackFailed),
            (Outcome::Success, Step::CleanUp, false) => Some(MState::Succeeded),
            (Outcome::Success, Step::CleanUp, true) => Some(MState::RolledBack),
            (Outcome::Deferred, _, _) => None,
            (_, _, false) if member.state != MState::InProgress => Some(MState::InProgress),
            _ => None,
        };
        let release_id = r.release_id.clone();
        ReportFate::Member {
            campaign,
            transition: to.map(|to| apply(st, device_id, &member, to, &release_id)),
        }
    }

    fn verdict(&self, campaign_id: &str) -> Option<Verdict> {
        let st = self.state.read().ok()?;
        let rt = st.campaigns.get(campaign_id)?;
        match rt.row.state {
            CampaignState::Running => {
                Some(rollout::judge(&rt.row.spec, &rt.waves, rt.row.opened_waves))
            }
            _ => None,
        }
    }

    /// Per-wave counts of a live campaign.
    pub(crate) fn progress(&self, campaign_id: &str) -> Option<Vec<WaveProgress>> {
        let st = self.state.read().ok()?;
        st.campaigns.get(campaign_id).map(|rt| rt.waves.clone())
    }

    /// Opens waves up to `opened` (the database has it already).
    fn open_waves(&self, campaign_id: &str, opened: u32) {
        if let Ok(mut st) = self.state.write()
            && let Some(rt) = st.campaigns.get_mut(campaign_id)
        {
            rt.row.opened_waves = opened;
            rt.row.state = CampaignState::Running;
            rt.row.state_reason = None;
        }
    }

    fn forget(&self, campaign_id: &str) {
        if let Ok(mut st) = self.state.write() {
            st.campaigns.remove(campaign_id);
            st.members.retain(|_, m| m.campaign != campaign_id);
        }
    }
}

fn apply(
    st: &mut EngineState,
    device_id: &str,
    m: &Member,
    to: MState,
    release_id: &str,
) -> Transition {
    if let Some(rt) = st.campaigns.get_mut(&m.campaign)
        && let Some(w) = rt.waves.get_mut(m.wave as usize)
    {
        m.state.count(w, -1);
        to.count(w, 1);
    }
    if to.terminal() {
        st.members.remove(device_id);
    } else if let Some(x) = st.members.get_mut(device_id) {
        x.state = to;
    }
    Transition {
        campaign_id: m.campaign.clone(),
        device_id: device_id.to_owned(),
        from: m.state,
        to,
        release_id: release_id.to_owned(),
    }
}

/// Loads every live campaign from the database (at start).
pub(crate) async fn load(state: &AppState) -> Result<()> {
    for c in state.db.campaign_list().await? {
        if matches!(
            c.state,
            CampaignState::Running | CampaignState::Paused | CampaignState::RolledBack
        ) {
            reload(state, &c.id).await?;
        }
    }
    Ok(())
}

/// Rebuilds one campaign's memory state from the database.
pub(crate) async fn reload(state: &AppState, campaign_id: &str) -> Result<()> {
    let row = state
        .db
        .campaign_get(campaign_id)
        .await?
        .with_context(|| format!("campaign {campaign_id} vanished"))?;
    let release = state
        .db
        .release_get(&row.spec.release_id)
        .await?
        .with_context(|| {
            format!(
                "release {} of campaign {campaign_id} vanished",
                row.spec.release_id
            )
        })?;
    let rollback = match &row.spec.rollback_release_id {
        Some(id) => state
            .db
            .release_get(id)
            .await?
            .map(|r| Arc::new(ReleaseRt::from_row(&r))),
        None => None,
    };
    // Members and counts come from one snapshot: counting in a second query could see a
    // transition the first did not, and count a device twice.
    let members = state.db.campaign_members(campaign_id).await?;
    let n_waves = row.spec.waves.len().max(1);
    let mut waves_full: Vec<WaveProgress> = (0..n_waves)
        .map(|w| WaveProgress {
            wave: u32::try_from(w).unwrap_or(u32::MAX),
            ..WaveProgress::default()
        })
        .collect();
    for m in &members {
        let Some(ms) = MState::from_name(&m.state) else {
            continue;
        };
        let i = m.wave as usize;
        while waves_full.len() <= i {
            let w = u32::try_from(waves_full.len()).unwrap_or(u32::MAX);
            waves_full.push(WaveProgress {
                wave: w,
                ..WaveProgress::default()
            });
        }
        if let Some(w) = waves_full.get_mut(i) {
            w.devices += 1;
            ms.count(w, 1);
        }
    }
    let now = state.now();
    let bucket = row.spec.rate_per_minute.map(|r| Bucket {
        tokens: f64::from(r).max(1.0),
        last: now,
        per_minute: f64::from(r),
    });
    let live = !matches!(
        row.state,
        CampaignState::Completed | CampaignState::Cancelled | CampaignState::Draft
    );
    let Ok(mut st) = state.engine.state.write() else {
        anyhow::bail!("engine lock poisoned");
    };
    st.members.retain(|_, m| m.campaign != campaign_id);
    if live {
        for m in members {
            let Some(ms) = MState::from_name(&m.state) else {
                continue;
            };
            if !ms.terminal() {
                st.members.insert(
                    m.device_id,
                    Member {
                        campaign: campaign_id.to_owned(),
                        wave: m.wave,
                        state: ms,
                    },
                );
            }
        }
        st.campaigns.insert(
            campaign_id.to_owned(),
            Rt {
                row,
                waves: waves_full,
                release: Arc::new(ReleaseRt::from_row(&release)),
                rollback,
                bucket,
            },
        );
    } else {
        st.campaigns.remove(campaign_id);
    }
    Ok(())
}

/// Persists a device transition and lets the campaign react.
pub(crate) async fn persist(state: &AppState, t: &Transition) -> Result<()> {
    // Compare-and-set: a bulk move (a trip's rollback, abort or cancel) may have moved the
    // device between the in-memory transition and this write. The bulk move wins: it
    // reloads the in-memory state from the database after its move, so both agree, and
    // the device is not left "failed" in the database while a rollback is offered to it.
    let landed = state
        .db
        .member_set(
            &t.campaign_id,
            &t.device_id,
            t.from.name(),
            t.to.name(),
            &t.release_id,
            state.now(),
        )
        .await?;
    if !landed {
        tracing::debug!(device = %t.device_id, from = t.from.name(), to = t.to.name(), "transition superseded by a campaign-wide move");
    }
    react(state, &t.campaign_id).await
}

/// Applies what the counts say: open the next wave, complete, or trip.
pub(crate) async fn react(state: &AppState, campaign_id: &str) -> Result<()> {
    if !matches!(
        state.engine.verdict(campaign_id),
        Some(Verdict::Advance | Verdict::Complete | Verdict::Trip { .. })
    ) {
        return Ok(());
    }
    let _ops = state.engine.ops.lock().await;
    react_locked(state, campaign_id).await
}

/// [`react`] with the `ops` lock held. Judges again under the lock (another task may have
/// acted already) and loops, because opening a wave that is empty or already finished may
/// let the next one open at once.
pub(crate) async fn react_locked(state: &AppState, campaign_id: &str) -> Result<()> {
    loop {
        let Some(verdict) = state.engine.verdict(campaign_id) else {
            return Ok(());
        };
        let Some(row) = state.db.campaign_get(campaign_id).await? else {
            return Ok(());
        };
        match verdict {
            Verdict::Hold => return Ok(()),
            Verdict::Advance => {
                let opened = row.opened_waves + 1;
                state
                    .db
                    .campaign_set_state(campaign_id, CampaignState::Running, None, opened)
                    .await?;
                audit_server(
                    state,
                    "campaign.advance",
                    campaign_id,
                    serde_json::json!({"opened_waves": opened}),
                )
                .await;
                // Every member is in memory already (unopened waves included); reloading
                // them from the database here would race with transitions being written.
                state.engine.open_waves(campaign_id, opened);
                notify_wave(state, campaign_id, opened - 1).await;
            }
            Verdict::Complete => {
                state
                    .db
                    .campaign_set_state(
                        campaign_id,
                        CampaignState::Completed,
                        None,
                        row.opened_waves,
                    )
                    .await?;
                audit_server(
                    state,
                    "campaign.complete",
                    campaign_id,
                    serde_json::json!({}),
                )
                .await;
                state.engine.forget(campaign_id);
                return Ok(());
            }
            Verdict::Trip {
                wave,
                failed,
                total,
            } => {
                // Waves are numbered from 1 for people, as the CLI and the docs do.
                let reason = format!(
                    "wave {}: {failed} of {total} devices failed, at or above the error threshold {}",
                    u64::from(wave) + 1,
                    row.spec.error_threshold
                );
                return trip(state, &row, &reason).await;
            }
        }
    }
}

/// The error threshold was reached: pause, abort or roll back, as the campaign says.
async fn trip(state: &AppState, row: &CampaignRow, reason: &str) -> Result<()> {
    let id = &row.id;
    let now = state.now();
    match row.spec.on_error {
        OnError::Pause => {
            state
                .db
                .campaign_set_state(id, CampaignState::Paused, Some(reason), row.opened_waves)
                .await?;
            audit_server(
                state,
                "campaign.pause",
                id,
                serde_json::json!({"reason": reason}),
            )
            .await;
            reload(state, id).await?;
        }
        OnError::Abort => {
            state
                .db
                .members_move(
                    id,
                    &["pending", "notified", "in_progress"],
                    "cancelled",
                    None,
                    u32::MAX,
                    now,
                )
                .await?;
            state
                .db
                .campaign_set_state(id, CampaignState::Cancelled, Some(reason), row.opened_waves)
                .await?;
            audit_server(
                state,
                "campaign.abort",
                id,
                serde_json::json!({"reason": reason}),
            )
            .await;
            state.engine.forget(id);
        }
        OnError::Rollback => {
            if !roll_back(state, row, reason).await? {
                // Validated at creation; pause if it is somehow missing.
                state
                    .db
                    .campaign_set_state(id, CampaignState::Paused, Some(reason), row.opened_waves)
                    .await?;
                return reload(state, id).await;
            }
        }
    }
    tracing::warn!(campaign = %id, reason, action = ?row.spec.on_error, "campaign tripped");
    Ok(())
}

/// Rolls a campaign back (the error threshold with `on_error = rollback`, or an operator):
/// devices not yet offered the release are cancelled, and every device of the opened waves
/// that was offered it is offered the rollback release. `false` if the campaign names no
/// rollback release.
pub(crate) async fn roll_back(state: &AppState, row: &CampaignRow, reason: &str) -> Result<bool> {
    let id = &row.id;
    let now = state.now();
    let Some(rb) = &row.spec.rollback_release_id else {
        return Ok(false);
    };
    state
        .db
        .members_move(id, &["pending"], "cancelled", None, u32::MAX, now)
        .await?;
    let moved = state
        .db
        .members_move(
            id,
            &["notified", "in_progress", "succeeded", "failed"],
            "rolling_back",
            Some(rb),
            row.opened_waves,
            now,
        )
        .await?;
    state
        .db
        .campaign_set_state(
            id,
            CampaignState::RolledBack,
            Some(reason),
            row.opened_waves,
        )
        .await?;
    audit_server(
        state,
        "campaign.rollback",
        id,
        serde_json::json!({"reason": reason, "rollback_release_id": rb, "devices": moved}),
    )
    .await;
    reload(state, id).await?;
    for w in 0..row.opened_waves {
        notify_wave(state, id, w).await;
    }
    Ok(true)
}

/// Sends "check in now" to the devices of a wave that still have something to do.
pub(crate) async fn notify_wave(state: &AppState, campaign_id: &str, wave: u32) {
    let Some(push) = &state.push else {
        return;
    };
    let devices: Vec<String> = match state.engine.state.read() {
        Ok(st) => st
            .members
            .iter()
            .filter(|(_, m)| m.campaign == campaign_id && m.wave == wave)
            .map(|(d, _)| d.clone())
            .collect(),
        Err(_) => return,
    };
    match state.db.push_ids(&devices).await {
        Ok(ids) => push.notify_devices(&ids).await,
        Err(e) => tracing::warn!(error = %e, "cannot look up push topics"),
    }
}

pub(crate) async fn audit_server(
    state: &AppState,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) {
    if let Err(e) = state
        .db
        .audit(state.now(), "server", "system", action, target, &detail)
        .await
    {
        tracing::error!(error = %e, action, "cannot write the audit log");
    }
}

/// Operator actions, serialised with the engine's own.
pub(crate) async fn lock_ops(state: &AppState) -> tokio::sync::MutexGuard<'_, ()> {
    state.engine.ops.lock().await
}

/// Removes a campaign from memory (cancel).
pub(crate) fn forget(state: &AppState, campaign_id: &str) {
    state.engine.forget(campaign_id);
}

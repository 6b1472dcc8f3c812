//! The rollout engine. Campaign and member state live in the database, and every change is
//! one conditional statement (`UPDATE ... WHERE state = $from`) or a short transaction that
//! starts with one: any number of server processes on one PostgreSQL serve the same fleet,
//! and a transition, a wave opening or a threshold trip lands exactly once, whichever node
//! makes it (docs/server.md §7).
//!
//! The states are enums owned here, [`MState`] for a device in a campaign and the protocol's
//! [`CampaignState`] for a campaign, and each has one transition function ([`MState::next`],
//! [`campaign_next`]); the API layer and the bulk moves ask them instead of listing states.
//!
//! What stays in memory is a cache, rebuilt from the database at start and kept in step by a
//! sync task every [`SYNC`]: the live campaigns' specifications and release descriptions
//! (which never change while a campaign lives), and the set of devices that are members of a
//! live campaign, so that the check-in of a device with nothing to do costs no query. A
//! campaign started (or rolled back) on another node reaches this node's cache within
//! [`SYNC`] plus one load; until then its devices are told to check in later, never given a
//! wrong answer: every offer is decided on the member's row as the database has it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, Result};
use sqlx::Any;
use sqlx::pool::PoolConnection;
use suitcase_protocol::{
    CampaignCreate, CampaignState, CheckIn, OnError, Outcome, PayloadOffer, Step, StepReport,
    WaveProgress,
};

use crate::AppState;
use crate::db::Dialect;
use crate::rollout::{self, Verdict};
use crate::store::{CampaignRow, LiveMember, ReleaseRow};

/// How often each node brings its cache in step with the database (new, changed and ended
/// campaigns), and so the bound on how stale it can be.
pub(crate) const SYNC: Duration = Duration::from_secs(1);

/// Every this many sync rounds a node judges every running campaign again: a node killed
/// between a device's transition and its judgement leaves the judgement to the others.
const JUDGE_EVERY: u64 = 3;

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

/// What happens to a device in a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// It checked in and may be given the release (its wave is open, the campaign runs).
    Offer,
    /// It checked in running the release (or the rollback release) on every component.
    Installed,
    /// The server will not offer it the release (a delta patch for another image).
    Refused,
    /// It reported a step other than the last one (started, progress, success).
    Progress,
    /// It reported the last step (clean-up) done.
    Done,
    /// It reported a failure.
    Failure,
    /// The campaign was cancelled or aborted.
    Cancel,
    /// The campaign rolls back (threshold or operator).
    RollBack,
}

impl MState {
    /// Every state, for the bulk moves and the counts.
    pub(crate) const ALL: [Self; 9] = [
        Self::Pending,
        Self::Notified,
        Self::InProgress,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::RollingBack,
        Self::RolledBack,
        Self::RollbackFailed,
    ];

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
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The one transition function: where `event` takes a device in this state, or `None`
    /// when it leaves it where it is.
    pub(crate) fn next(self, event: Event) -> Option<Self> {
        use Event as E;
        match (self, event) {
            (Self::Pending, E::Offer) => Some(Self::Notified),
            (Self::Pending | Self::Notified | Self::InProgress, E::Installed)
            | (Self::Notified | Self::InProgress, E::Done) => Some(Self::Succeeded),
            (Self::Pending | Self::Notified | Self::InProgress, E::Refused)
            | (Self::Notified | Self::InProgress, E::Failure) => Some(Self::Failed),
            (Self::Notified, E::Progress) => Some(Self::InProgress),
            (Self::RollingBack, E::Installed | E::Done) => Some(Self::RolledBack),
            (Self::RollingBack, E::Failure) => Some(Self::RollbackFailed),
            (Self::Pending | Self::Notified | Self::InProgress | Self::RollingBack, E::Cancel)
            | (Self::Pending, E::RollBack) => Some(Self::Cancelled),
            (Self::Notified | Self::InProgress | Self::Succeeded | Self::Failed, E::RollBack) => {
                Some(Self::RollingBack)
            }
            _ => None,
        }
    }

    /// The device holds an offer in this state (the check-in answer carries the release).
    pub(crate) fn holds_offer(self) -> bool {
        matches!(self, Self::Notified | Self::InProgress | Self::RollingBack)
    }

    /// The device is done with the campaign (unless the campaign rolls back).
    pub(crate) fn terminal(self) -> bool {
        !matches!(self, Self::Pending) && !self.holds_offer()
    }

    /// The states a device still has something to do in.
    pub(crate) fn unfinished() -> impl Iterator<Item = Self> {
        Self::ALL.into_iter().filter(|s| !s.terminal())
    }

    pub(crate) fn count(self, w: &mut WaveProgress, n: u64) {
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
        *slot += n;
    }
}

/// What happens to a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CEvent {
    /// An operator starts a draft.
    Start,
    /// An operator pauses it.
    Pause,
    /// An operator resumes it.
    Resume,
    /// An operator cancels it.
    Cancel,
    /// An operator rolls it back.
    RollBack,
    /// The counts open the next wave.
    Advance,
    /// Every device of every wave finished.
    Complete,
    /// Failures reached the error threshold: what the campaign says to do.
    Trip(OnError),
}

/// The one campaign transition function: the state `event` takes a campaign in `from` to,
/// or `None` if the event is not possible there.
pub(crate) fn campaign_next(from: CampaignState, event: CEvent) -> Option<CampaignState> {
    use CEvent as E;
    use CampaignState as S;
    match (from, event) {
        (S::Draft, E::Start) | (S::Paused, E::Resume) | (S::Running, E::Advance) => {
            Some(S::Running)
        }
        (S::Running, E::Pause | E::Trip(OnError::Pause)) => Some(S::Paused),
        (S::Draft | S::Running | S::Paused | S::RolledBack, E::Cancel)
        | (S::Running, E::Trip(OnError::Abort)) => Some(S::Cancelled),
        (S::Running | S::Paused, E::RollBack) | (S::Running, E::Trip(OnError::Rollback)) => {
            Some(S::RolledBack)
        }
        (S::Running, E::Complete) => Some(S::Completed),
        _ => None,
    }
}

/// A campaign whose devices may still check in for something: the engine caches it.
pub(crate) fn campaign_live(s: CampaignState) -> bool {
    matches!(
        s,
        CampaignState::Running | CampaignState::Paused | CampaignState::RolledBack
    )
}

/// Every campaign state (for SQL lists built from the enum).
pub(crate) const CAMPAIGN_STATES: [CampaignState; 6] = [
    CampaignState::Draft,
    CampaignState::Running,
    CampaignState::Paused,
    CampaignState::Completed,
    CampaignState::Cancelled,
    CampaignState::RolledBack,
];

/// `'a', 'b'` for an SQL `IN` list of state names (constants of this module, never input).
pub(crate) fn sql_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The live campaign states, as an SQL list.
pub(crate) fn sql_live_campaigns() -> String {
    sql_names(
        CAMPAIGN_STATES
            .into_iter()
            .filter(|s| campaign_live(*s))
            .map(CampaignState::name),
    )
}

/// The unfinished member states, as an SQL list.
pub(crate) fn sql_unfinished() -> String {
    sql_names(MState::unfinished().map(MState::name))
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
    /// The manifest digest (hex), which a freshness statement binds (`freshness.rs`).
    pub(crate) manifest_digest: String,
}

impl ReleaseRt {
    pub(crate) fn from_row(r: &ReleaseRow) -> Self {
        Self {
            id: r.id.clone(),
            sequence_number: r.sequence_number,
            manifest_digest: r.manifest_digest.clone(),
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

/// A live campaign as the cache has it: what does not change while it lives.
struct Live {
    spec: CampaignCreate,
    release: Arc<ReleaseRt>,
    rollback: Option<Arc<ReleaseRt>>,
}

#[derive(Default)]
struct Cache {
    campaigns: HashMap<String, Arc<Live>>,
    /// The state each cached campaign had when it was loaded: a change (a rollback moves
    /// finished devices back to work) makes the sync load it again.
    seen: HashMap<String, CampaignState>,
    /// Devices that are members of a live campaign (maybe finished in it). Only these pay a
    /// query at check-in.
    devices: HashSet<String>,
    /// Counts loads, so that a device is only dropped from `devices` by a check-in that read
    /// the database after the last load.
    epoch: u64,
}

/// The engine.
#[derive(Default)]
pub(crate) struct Engine {
    cache: RwLock<Cache>,
    /// Serialises this node's operator actions; [`lock_ops`] adds the fleet-wide lock.
    ops: tokio::sync::Mutex<()>,
}

impl Engine {
    fn may_have(&self, device_id: &str) -> Option<u64> {
        let c = self.cache.read().ok()?;
        c.devices.contains(device_id).then_some(c.epoch)
    }

    fn drop_device(&self, device_id: &str, epoch: u64) {
        if let Ok(mut c) = self.cache.write()
            && c.epoch == epoch
        {
            c.devices.remove(device_id);
        }
    }

    fn live(&self, campaign_id: &str) -> Option<Arc<Live>> {
        self.cache.read().ok()?.campaigns.get(campaign_id).cloned()
    }

    fn forget(&self, campaign_id: &str) {
        if let Ok(mut c) = self.cache.write() {
            c.campaigns.remove(campaign_id);
            c.seen.remove(campaign_id);
        }
    }
}

/// A device state change that landed in the database.
#[derive(Debug, Clone)]
pub(crate) struct Transition {
    pub(crate) campaign_id: String,
    pub(crate) device_id: String,
    pub(crate) from: MState,
    pub(crate) to: MState,
    pub(crate) release_id: String,
}

/// What [`on_report`] makes of a report.
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
    /// The device's row changed under every attempt to write the report's transition (other
    /// requests for the same device at the same moment): not stored, so that the device
    /// sends it again (`503` with `Retry-After`) rather than the transition being dropped.
    Busy,
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

/// How many times a check-in or report reads the member again after another node moved it
/// between the read and the conditional write.
const RACES: usize = 3;

/// Decides what a checking-in device gets, and writes the transition it causes.
pub(crate) async fn decide(
    state: &AppState,
    device_id: &str,
    checkin: &CheckIn,
    now: i64,
) -> Result<Decision> {
    // Most devices have nothing to do: answer them without a query.
    let Some(epoch) = state.engine.may_have(device_id) else {
        return Ok(Decision::default());
    };
    for _ in 0..RACES {
        let Some(m) = state.db.member_live(device_id).await? else {
            state.engine.drop_device(device_id, epoch);
            return Ok(Decision::default());
        };
        let Some(live) = cached(state, &m.campaign_id).await? else {
            return Ok(Decision::default());
        };
        if let Some(d) = decide_member(state, &live, &m, device_id, checkin, now).await? {
            return Ok(d);
        }
    }
    Ok(Decision::default())
}

/// [`decide`] for one read of the member; `None` if the write lost a race (read again).
async fn decide_member(
    state: &AppState,
    live: &Live,
    m: &LiveMember,
    device_id: &str,
    checkin: &CheckIn,
    now: i64,
) -> Result<Option<Decision>> {
    let mut decision = Decision::default();
    if m.wave >= m.opened_waves {
        return Ok(Some(decision));
    }
    // A device not yet offered the release starts only while the campaign runs.
    if m.state == MState::Pending && m.campaign_state != CampaignState::Running {
        return Ok(Some(decision));
    }
    let rolling_back = m.state == MState::RollingBack;
    let release = if rolling_back {
        match &live.rollback {
            Some(r) => r.clone(),
            None => return Ok(Some(decision)),
        }
    } else {
        live.release.clone()
    };
    // A device that runs the release already succeeded (docs/server.md §3), and is not
    // offered what its processor would refuse as a rollback (manifest §8.4.2), which would
    // count as a failure against the error threshold. No window or rate limit applies.
    let installed = release.installed_on(checkin);
    // RFC 8240 §9: a quarantined device is offered only remediation releases (the one rule,
    // quarantine::offerable). It stays where it is in the campaign, so that releasing it
    // from quarantine lets it carry on.
    if m.quarantined
        && !installed
        && !crate::quarantine::release_allowed(state, device_id, &release.id).await?
    {
        return Ok(Some(decision));
    }
    let mut to = m.state.next(if installed {
        Event::Installed
    } else {
        Event::Offer
    });
    if to == Some(MState::Notified)
        && let Some(w) = &live.spec.window
        && !rollout::in_window(w, now)
    {
        decision.retry_after = Some(rollout::until_window(w, now));
        return Ok(Some(decision));
    }
    // A manifest-level delta release for another image than the device runs: it would
    // download the patch only for its processor to refuse it at Check (image-match on the
    // base component, draft-ietf-suit-manifest §8.4.9.2). Fail it here instead.
    let mut refused = None;
    if !rolling_back
        && to != Some(MState::Succeeded)
        && m.state.next(Event::Refused).is_some()
        && let Some(why) = release.delta_base_mismatch(checkin)
    {
        to = m.state.next(Event::Refused);
        refused = Some((m.campaign_id.clone(), why));
    }
    // A start takes one from the campaign's rate budget (shared by every node, in its row),
    // only for an offer that is made: a refused device takes none, and a start whose write
    // below loses its race gives it back.
    let mut rate_taken = None;
    if to == Some(MState::Notified)
        && let Some(rate) = live.spec.rate_per_minute
    {
        if !state
            .db
            .campaign_rate_take(&m.campaign_id, now, rate)
            .await?
        {
            decision.retry_after = Some(30);
            return Ok(Some(decision));
        }
        rate_taken = Some(rate);
    }
    if let Some(to) = to {
        // A device leaves `pending` only while the campaign runs and its wave is open, as
        // the database has them when the write lands.
        let open_wave = (m.state == MState::Pending).then_some(m.wave);
        if !state
            .db
            .member_cas(
                &m.campaign_id,
                device_id,
                m.state,
                to,
                &release.id,
                now,
                open_wave,
            )
            .await?
        {
            if let Some(rate) = rate_taken {
                state.db.campaign_rate_give(&m.campaign_id, rate).await?;
            }
            return Ok(None);
        }
        decision.transition = Some(Transition {
            campaign_id: m.campaign_id.clone(),
            device_id: device_id.to_owned(),
            from: m.state,
            to,
            release_id: release.id.clone(),
        });
    }
    decision.refused = refused;
    if to.unwrap_or(m.state).holds_offer() {
        decision.campaign = Some(m.campaign_id.clone());
        decision.offer = Some((
            release,
            rolling_back,
            live.spec.requires_consent && !rolling_back,
        ));
    }
    Ok(Some(decision))
}

/// What a report means for the campaigns: the campaign the device is in (for the report
/// record) and the transition it causes, written.
pub(crate) async fn on_report(
    state: &AppState,
    device_id: &str,
    r: &StepReport,
) -> Result<ReportFate> {
    for _ in 0..RACES {
        let Some(m) = state.db.member_live(device_id).await? else {
            return Ok(ReportFate::NotMember);
        };
        // A device that was never offered the release (its wave is not open, or it has not
        // checked in since) has nothing to report on: a report must not move it
        // (docs/server.md §3, 409 not-offered).
        if m.state == MState::Pending {
            return Ok(ReportFate::NotOffered);
        }
        let Some(live) = cached(state, &m.campaign_id).await? else {
            return Ok(ReportFate::NotMember);
        };
        let current = if m.state == MState::RollingBack {
            live.rollback.as_ref().map(|r| r.id.as_str())
        } else {
            Some(live.release.id.as_str())
        };
        if current != Some(r.release_id.as_str()) {
            return Ok(ReportFate::NotMember);
        }
        let event = match (r.outcome, r.step) {
            (Outcome::Failure, _) => Some(Event::Failure),
            (Outcome::Success, Step::CleanUp) => Some(Event::Done),
            (Outcome::Deferred, _) => None,
            _ => Some(Event::Progress),
        };
        let Some(to) = event.and_then(|e| m.state.next(e)) else {
            return Ok(ReportFate::Member {
                campaign: m.campaign_id,
                transition: None,
            });
        };
        if state
            .db
            .member_cas(
                &m.campaign_id,
                device_id,
                m.state,
                to,
                &r.release_id,
                state.now(),
                None,
            )
            .await?
        {
            return Ok(ReportFate::Member {
                transition: Some(Transition {
                    campaign_id: m.campaign_id.clone(),
                    device_id: device_id.to_owned(),
                    from: m.state,
                    to,
                    release_id: r.release_id.clone(),
                }),
                campaign: m.campaign_id,
            });
        }
    }
    Ok(ReportFate::Busy)
}

/// Lets the campaign react to a transition that landed: only a device finishing can open a
/// wave, complete the campaign or trip it.
pub(crate) async fn persist(state: &AppState, t: &Transition) -> Result<()> {
    tracing::debug!(campaign = %t.campaign_id, device = %t.device_id, from = t.from.name(), to = t.to.name(), "device transition");
    if t.to.terminal() {
        react(state, &t.campaign_id).await?;
    }
    Ok(())
}

/// The campaign from the cache, loaded on a miss (a campaign another node started).
async fn cached(state: &AppState, campaign_id: &str) -> Result<Option<Arc<Live>>> {
    if let Some(l) = state.engine.live(campaign_id) {
        return Ok(Some(l));
    }
    reload(state, campaign_id).await?;
    Ok(state.engine.live(campaign_id))
}

/// Per-wave counts of a campaign, one entry per wave of its specification (at least one).
pub(crate) async fn progress(state: &AppState, row: &CampaignRow) -> Result<Vec<WaveProgress>> {
    let mut waves = state.db.campaign_progress(&row.id).await?;
    if campaign_live(row.state) {
        let n = row.spec.waves.len().max(1);
        while waves.len() < n {
            let w = u32::try_from(waves.len()).unwrap_or(u32::MAX);
            waves.push(WaveProgress {
                wave: w,
                ..WaveProgress::default()
            });
        }
    }
    Ok(waves)
}

/// Loads every live campaign (at start) and starts the sync task.
pub(crate) async fn load(state: &AppState) -> Result<()> {
    sync(state, false).await?;
    tokio::spawn(sync_task(Arc::downgrade(&state.0)));
    Ok(())
}

async fn sync_task(weak: std::sync::Weak<crate::Inner>) {
    let mut round: u64 = 0;
    loop {
        tokio::time::sleep(SYNC).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let state = AppState(inner);
        round += 1;
        if let Err(e) = sync(&state, round.is_multiple_of(JUDGE_EVERY)).await {
            tracing::warn!(error = %e, "cannot bring the campaign cache in step with the database");
        }
    }
}

/// Brings the cache in step with the database: loads campaigns that started or changed
/// state, drops those that ended; with `judge`, judges every running campaign again.
async fn sync(state: &AppState, judge: bool) -> Result<()> {
    let live = state.db.live_campaigns().await?;
    let stale: Vec<String> = {
        let c = state
            .engine
            .cache
            .read()
            .map_err(|_| anyhow::anyhow!("engine cache lock poisoned"))?;
        let ended = c
            .seen
            .keys()
            .filter(|id| !live.iter().any(|(l, _)| l == *id))
            .cloned();
        let changed = live
            .iter()
            .filter(|(id, s)| c.seen.get(id) != Some(s))
            .map(|(id, _)| id.clone());
        ended.chain(changed).collect()
    };
    // One campaign that cannot be loaded or judged (a release row gone, a bad spec) must not
    // keep the others out of the cache, nor stop the node from starting: it is logged and
    // tried again at the next sync (it stays out of `seen`).
    for id in stale {
        if let Err(e) = reload(state, &id).await {
            tracing::error!(campaign = %id, error = format!("{e:#}"), "cannot load the campaign; trying again at the next sync");
        }
    }
    if judge {
        for (id, s) in &live {
            if *s == CampaignState::Running
                && let Err(e) = react(state, id).await
            {
                tracing::warn!(campaign = %id, error = format!("{e:#}"), "cannot judge the campaign; trying again at the next sync");
            }
        }
    }
    Ok(())
}

/// Loads one campaign into the cache from the database (or drops it, if it ended).
pub(crate) async fn reload(state: &AppState, campaign_id: &str) -> Result<()> {
    let Some(row) = state.db.campaign_get(campaign_id).await? else {
        state.engine.forget(campaign_id);
        return Ok(());
    };
    if !campaign_live(row.state) {
        state.engine.forget(campaign_id);
        return Ok(());
    }
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
    let members = state.db.campaign_members(campaign_id).await?;
    let live = Arc::new(Live {
        release: Arc::new(ReleaseRt::from_row(&release)),
        rollback,
        spec: row.spec,
    });
    let mut c = state
        .engine
        .cache
        .write()
        .map_err(|_| anyhow::anyhow!("engine cache lock poisoned"))?;
    c.epoch += 1;
    c.devices.extend(members.into_iter().map(|m| m.device_id));
    c.campaigns.insert(campaign_id.to_owned(), live);
    c.seen.insert(campaign_id.to_owned(), row.state);
    Ok(())
}

/// Applies what the counts say: open the next wave, complete, or trip. Every campaign change
/// is a conditional write on the campaign's state and opened waves, so when several nodes
/// judge at once exactly one acts, and only it audits and notifies. Loops, because opening a
/// wave that is empty or already finished may let the next one open at once.
pub(crate) async fn react(state: &AppState, campaign_id: &str) -> Result<()> {
    for _ in 0..=crate::api::campaigns::MAX_WAVES + 1 {
        let Some(row) = state.db.campaign_get(campaign_id).await? else {
            return Ok(());
        };
        if row.state != CampaignState::Running {
            return Ok(());
        }
        let waves = progress(state, &row).await?;
        match rollout::judge(&row.spec, &waves, row.opened_waves) {
            Verdict::Hold => return Ok(()),
            Verdict::Advance => {
                let opened = row.opened_waves + 1;
                if state
                    .db
                    .campaign_cas(
                        campaign_id,
                        row.state,
                        CEvent::Advance,
                        None,
                        row.opened_waves,
                        opened,
                    )
                    .await?
                {
                    audit_server(
                        state,
                        "campaign.advance",
                        campaign_id,
                        serde_json::json!({"opened_waves": opened}),
                    )
                    .await;
                    notify_wave(state, campaign_id, opened - 1).await;
                }
            }
            Verdict::Complete => {
                if state
                    .db
                    .campaign_cas(
                        campaign_id,
                        row.state,
                        CEvent::Complete,
                        None,
                        row.opened_waves,
                        row.opened_waves,
                    )
                    .await?
                {
                    audit_server(
                        state,
                        "campaign.complete",
                        campaign_id,
                        serde_json::json!({}),
                    )
                    .await;
                    state.engine.forget(campaign_id);
                }
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
    Ok(())
}

/// The error threshold was reached: pause, abort or roll back, as the campaign says. The
/// campaign's conditional write decides which node trips it; the others do nothing.
async fn trip(state: &AppState, row: &CampaignRow, reason: &str) -> Result<()> {
    let id = &row.id;
    let event = CEvent::Trip(row.spec.on_error);
    let action = match row.spec.on_error {
        OnError::Pause => {
            if !state
                .db
                .campaign_cas(
                    id,
                    row.state,
                    event,
                    Some(reason),
                    row.opened_waves,
                    row.opened_waves,
                )
                .await?
            {
                return Ok(());
            }
            audit_server(
                state,
                "campaign.pause",
                id,
                serde_json::json!({"reason": reason}),
            )
            .await;
            "pause"
        }
        OnError::Abort => {
            if cancel(state, row, event, reason).await?.is_none() {
                return Ok(());
            }
            audit_server(
                state,
                "campaign.abort",
                id,
                serde_json::json!({"reason": reason}),
            )
            .await;
            "abort"
        }
        OnError::Rollback => {
            if row.spec.rollback_release_id.is_none() {
                // Validated at creation; pause if it is somehow missing.
                state
                    .db
                    .campaign_cas(
                        id,
                        row.state,
                        CEvent::Trip(OnError::Pause),
                        Some(reason),
                        row.opened_waves,
                        row.opened_waves,
                    )
                    .await?;
                return Ok(());
            }
            if !roll_back(state, row, event, reason).await? {
                return Ok(());
            }
            "rollback"
        }
    };
    metrics::counter!("suitcase_campaign_trips_total").increment(1);
    tracing::warn!(campaign = %id, reason, action, "campaign tripped");
    Ok(())
}

/// Moves every member `event` moves (per [`MState::next`]), in the caller's transaction:
/// one conditional update per target state. Returns how many moved.
async fn move_members(
    conn: &mut sqlx::AnyConnection,
    campaign_id: &str,
    event: Event,
    rollback_release: Option<&str>,
    now: i64,
) -> Result<u64> {
    let mut moved = 0;
    for to in MState::ALL {
        let from: Vec<MState> = MState::ALL
            .into_iter()
            .filter(|s| s.next(event) == Some(to))
            .collect();
        if from.is_empty() {
            continue;
        }
        let release = (to == MState::RollingBack)
            .then_some(rollback_release)
            .flatten();
        moved += crate::store::members_move(conn, campaign_id, &from, to, release, now).await?;
    }
    Ok(moved)
}

/// Cancels a campaign (operator, or the threshold with `on_error = abort`) and every device
/// it still had work for, in one transaction that starts with the campaign's conditional
/// write. `None` if the campaign was no longer in `row.state`.
pub(crate) async fn cancel(
    state: &AppState,
    row: &CampaignRow,
    event: CEvent,
    reason: &str,
) -> Result<Option<u64>> {
    let n = end_with_members(state, row, event, reason, Event::Cancel, None).await?;
    if n.is_some() {
        state.engine.forget(&row.id);
    }
    Ok(n)
}

/// The campaign's conditional write (`row.state` → `event`, waves unchanged) and its
/// members moved by `members`, in one transaction: `None` (nothing written) if another node
/// or request changed the campaign first.
async fn end_with_members(
    state: &AppState,
    row: &CampaignRow,
    event: CEvent,
    reason: &str,
    members: Event,
    rollback_release: Option<&str>,
) -> Result<Option<u64>> {
    let mut tx = state.db.pool.begin().await?;
    if !crate::store::campaign_cas(
        &mut tx,
        &row.id,
        row.state,
        event,
        Some(reason),
        row.opened_waves,
        row.opened_waves,
    )
    .await?
    {
        return Ok(None);
    }
    let n = move_members(&mut tx, &row.id, members, rollback_release, state.now()).await?;
    tx.commit().await?;
    Ok(Some(n))
}

/// Rolls a campaign back (the error threshold with `on_error = rollback`, or an operator):
/// devices not yet offered the release are cancelled, and every device that was offered it
/// is offered the rollback release. `false` if the campaign names no rollback release or
/// was no longer in `row.state`.
pub(crate) async fn roll_back(
    state: &AppState,
    row: &CampaignRow,
    event: CEvent,
    reason: &str,
) -> Result<bool> {
    let id = &row.id;
    let Some(rb) = &row.spec.rollback_release_id else {
        return Ok(false);
    };
    let Some(moved) =
        end_with_members(state, row, event, reason, Event::RollBack, Some(rb)).await?
    else {
        return Ok(false);
    };
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

/// Sends "check in now" to the devices of a wave that still have something to do. Devices
/// subscribe at the MQTT broker, not at a node: whichever node opens the wave publishes,
/// and the broker reaches every subscribed device.
pub(crate) async fn notify_wave(state: &AppState, campaign_id: &str, wave: u32) {
    let Some(push) = &state.push else {
        return;
    };
    let devices: Vec<(String, String)> = match state.db.campaign_members(campaign_id).await {
        Ok(m) => m
            .into_iter()
            .filter(|m| {
                m.wave == wave && MState::from_name(&m.state).is_some_and(|s| !s.terminal())
            })
            .map(|m| (m.device_id, m.release_id))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the wave's devices to notify");
            return;
        }
    };
    // A quarantined device is woken only for a remediation release (quarantine::offerable).
    let devices = match crate::quarantine::pushable(state, devices).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the wave's quarantined devices");
            return;
        }
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

/// The advisory-lock key of operator actions (PostgreSQL; any constant unique to this use).
const OPS_LOCK: i64 = 0x5375_6974_6361_0001;

/// Operator actions (campaign create and actions, release archive and delete), serialised
/// across the fleet: this node's mutex, and on PostgreSQL a session advisory lock held on a
/// connection of its own, marked close-on-drop as soon as it is acquired, so it is closed
/// (releasing the lock) when the guard drops, when the request is cancelled while waiting for
/// the lock, and if the node dies.
pub(crate) struct Ops<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    _conn: Option<PoolConnection<Any>>,
}

pub(crate) async fn lock_ops(state: &AppState) -> Result<Ops<'_>> {
    let local = state.engine.ops.lock().await;
    let conn = match state.db.dialect {
        Dialect::Sqlite => None,
        Dialect::Postgres => {
            let mut c = state.db.pool.acquire().await?;
            // Before the lock query: a request cancelled while `pg_advisory_lock` waits, or
            // right after it is granted, drops this connection here, and it must be closed
            // (ending the session and its lock), never returned to the pool holding the lock.
            c.close_on_drop();
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(OPS_LOCK)
                .execute(&mut *c)
                .await
                .context("cannot take the fleet-wide operator lock")?;
            Some(c)
        }
    };
    Ok(Ops {
        _local: local,
        _conn: conn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_its_name() {
        for s in MState::ALL {
            assert_eq!(MState::from_name(s.name()), Some(s));
        }
        assert_eq!(MState::from_name("running"), None);
    }

    #[test]
    fn finished_devices_move_only_when_the_campaign_rolls_back() {
        let every = [
            Event::Offer,
            Event::Installed,
            Event::Refused,
            Event::Progress,
            Event::Done,
            Event::Failure,
            Event::Cancel,
        ];
        for s in MState::ALL.into_iter().filter(|s| s.terminal()) {
            for e in every {
                assert_eq!(s.next(e), None, "{s:?} {e:?}");
            }
        }
        assert_eq!(
            MState::Succeeded.next(Event::RollBack),
            Some(MState::RollingBack)
        );
        assert_eq!(MState::RolledBack.next(Event::RollBack), None);
        // A succeeded device is never offered the release again.
        assert!(!MState::Succeeded.holds_offer());
    }

    #[test]
    fn campaign_actions_follow_the_one_transition_function() {
        use CampaignState as S;
        assert_eq!(campaign_next(S::Draft, CEvent::Start), Some(S::Running));
        assert_eq!(campaign_next(S::Running, CEvent::Start), None);
        assert_eq!(campaign_next(S::Paused, CEvent::Advance), None);
        assert_eq!(campaign_next(S::Completed, CEvent::Cancel), None);
        assert_eq!(
            campaign_next(S::Running, CEvent::Trip(OnError::Rollback)),
            Some(S::RolledBack)
        );
        // A tripped campaign cannot trip again.
        for s in CAMPAIGN_STATES.into_iter().filter(|s| *s != S::Running) {
            for o in [OnError::Pause, OnError::Abort, OnError::Rollback] {
                assert_eq!(campaign_next(s, CEvent::Trip(o)), None);
            }
        }
    }
}

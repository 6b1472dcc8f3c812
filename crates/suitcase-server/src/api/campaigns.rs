//! Rollout campaigns: create, start, pause, resume, cancel, watch.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use suitcase_protocol::{
    CampaignCreate, CampaignDryRun, CampaignInfo, CampaignMember, CampaignState, CheckIn,
    DryRunDevice, OnError, RollbackGap, WaveSize,
};

use crate::AppState;
use crate::api::audit;
use crate::auth::{Cap, Manager, new_id};
use crate::engine::{self, CEvent, MState};
use crate::error::{ApiErr, ApiResult};
use crate::rollout;
use crate::store::{CampaignRow, ReleaseRow};

async fn info(state: &AppState, row: CampaignRow) -> ApiResult<CampaignInfo> {
    let waves_progress = engine::progress(state, &row).await?;
    Ok(CampaignInfo {
        id: row.id,
        spec: row.spec,
        state: row.state,
        state_reason: row.state_reason,
        opened_waves: row.opened_waves,
        waves_progress,
        created_by: row.created_by,
        created_at: row.created_at,
        no_rollback: Vec::new(),
        no_rollback_partial: false,
    })
}

/// The most inventories one rollback check reads (docs/server.md §4).
pub(crate) const ROLLBACK_SCAN: i64 = 10_000;

/// Of `targeted`, the devices whose last inventory says they cannot roll back a component
/// `release` updates, per (component, handler); and whether the check stopped at its bound.
///
/// Computed from the stored inventories when asked (a dry run, a campaign's page), not kept:
/// the database returns only the targeted devices that reported some component with
/// `rollback: false` (a text match), at most [`ROLLBACK_SCAN`] of them, and only those are
/// parsed. Past the
/// bound the counts are lower bounds, and the answer says so.
pub(crate) async fn rollback_gaps(
    state: &AppState,
    release: &ReleaseRow,
    targeted: &[String],
) -> ApiResult<(Vec<RollbackGap>, bool)> {
    if targeted.is_empty() {
        return Ok((Vec::new(), false));
    }
    let images: Vec<&Vec<String>> = release.summary.images().map(|c| &c.id).collect();
    let rows = state
        .db
        .devices_without_rollback(targeted, ROLLBACK_SCAN)
        .await?;
    let partial = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= ROLLBACK_SCAN;
    let mut counts: std::collections::BTreeMap<(Vec<String>, Option<String>), u64> =
        std::collections::BTreeMap::new();
    for (_, inventory) in &rows {
        let Ok(inv) = serde_json::from_str::<CheckIn>(inventory) else {
            continue;
        };
        let mut seen = std::collections::BTreeSet::new();
        for c in inv.components {
            if c.rollback == Some(false) && images.contains(&&c.id) && seen.insert(c.id.clone()) {
                *counts.entry((c.id, c.handler)).or_default() += 1;
            }
        }
    }
    let of = u64::try_from(targeted.len()).unwrap_or(u64::MAX);
    Ok((
        counts
            .into_iter()
            .map(|((component, handler), devices)| RollbackGap {
                component,
                handler,
                devices,
                of,
            })
            .collect(),
        partial,
    ))
}

/// The most waves in one campaign.
pub(crate) const MAX_WAVES: usize = 100;

/// The sizes of a filter (docs/server.md §4): bounded, so that no filter builds a query the
/// database refuses ("too many SQL variables", "expression tree is too large").
pub(crate) fn check_filter(f: &suitcase_protocol::Filter) -> ApiResult<()> {
    use suitcase_protocol::limits::{FILTER_DEVICES_MAX, FILTER_TAGS_MAX};
    for (what, tags) in [("tags_all", &f.tags_all), ("tags_any", &f.tags_any)] {
        if tags.len() > FILTER_TAGS_MAX {
            return Err(ApiErr::bad_request(
                "filter-too-large",
                format!(
                    "{what} has {} tags; a filter takes at most {FILTER_TAGS_MAX}",
                    tags.len()
                ),
            )
            .hint("put the devices in a group (POST /api/v1/groups) and filter by the group"));
        }
        for t in tags {
            crate::api::valid_name("tag", t)?;
        }
    }
    if f.devices.len() > FILTER_DEVICES_MAX {
        return Err(ApiErr::bad_request(
            "filter-too-large",
            format!(
                "the filter names {} devices; at most {FILTER_DEVICES_MAX}",
                f.devices.len()
            ),
        )
        .hint("put the devices in a group or tag them, and filter by that"));
    }
    Ok(())
}

/// Checks a campaign before it is created (or dry-run); the release it would roll out.
async fn validate(state: &AppState, c: &CampaignCreate) -> ApiResult<ReleaseRow> {
    let bad = |m: String| Err(ApiErr::unprocessable("bad-campaign", m));
    crate::api::valid_name("campaign name", &c.name)?;
    for (what, v) in [
        ("success_threshold", c.success_threshold),
        ("error_threshold", c.error_threshold),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return bad(format!("{what} is a fraction from 0 to 1, got {v}"));
        }
    }
    if c.error_threshold == 0.0 {
        return bad(
            "error_threshold 0 would trip on no failure at all; use a small fraction such as 0.01"
                .into(),
        );
    }
    if c.waves.len() > MAX_WAVES {
        return bad(format!("at most {MAX_WAVES} waves, got {}", c.waves.len()));
    }
    // Waves are numbered from 1 for people, as the CLI and the failure reasons do.
    let mut widest: Option<(usize, f64)> = None;
    for (i, w) in c.waves.iter().enumerate() {
        let n = i + 1;
        match *w {
            WaveSize::Percent(p) if !(p > 0.0 && p <= 100.0) => {
                return bad(format!(
                    "wave {n}: a percentage is above 0 and at most 100, got {p}"
                ));
            }
            WaveSize::Percent(p) => {
                // A rollout widens: a wave smaller than an earlier one is a typo (5%,50%,20%
                // would silently give the last wave everyone left, not 20%).
                if let Some((at, before)) = widest
                    && p < before
                {
                    return bad(format!(
                        "wave {n} ({p}%) is smaller than wave {at} ({before}%): waves widen, and the last wave takes every device left"
                    ));
                }
                widest = Some((n, p));
            }
            WaveSize::Count(0) => return bad(format!("wave {n} has 0 devices")),
            WaveSize::Count(_) => {}
        }
    }
    check_filter(&c.filter)?;
    if c.rate_per_minute == Some(0) {
        return bad(
            "rate_per_minute 0 would never start a device; leave it out for no limit".into(),
        );
    }
    if let Some(w) = &c.window
        && (w.start_minute >= 1440
            || w.end_minute >= 1440
            || w.days.iter().any(|d| *d > 6)
            || w.start_minute == w.end_minute)
    {
        return bad(
            "window: minutes are 0..1439 after midnight UTC, start != end, days 0 (Monday)..6"
                .into(),
        );
    }
    if let Some(g) = &c.filter.group
        && state.db.group_push_id(g).await?.is_none()
    {
        return Err(ApiErr::not_found("group", g));
    }
    let release = crate::api::release_found(state, &c.release_id).await?;
    if release.archived {
        return Err(ApiErr::conflict(
            "release-archived",
            format!(
                "release {} is archived; no new campaign may use it",
                release.id
            ),
        ));
    }
    if !release.complete() {
        let missing: Vec<String> = release
            .payloads
            .iter()
            .filter(|p| p.object_key.is_none())
            .map(|p| format!("{} ({})", p.idx, p.uri))
            .collect();
        return Err(ApiErr::conflict(
            "release-incomplete",
            format!(
                "release {} lacks payload(s) {}",
                release.id,
                missing.join(", ")
            ),
        )
        .hint("upload them with PUT /api/v1/releases/{id}/payloads/{index}"));
    }
    match (&c.on_error, &c.rollback_release_id) {
        (OnError::Rollback, None) => {
            return bad("on_error = rollback needs rollback_release_id".into());
        }
        (_, Some(rb)) => {
            let r = crate::api::release_found(state, rb).await?;
            // A campaign carries one release and, at most, the one its devices go back to.
            // A trust update and firmware have separate anti-rollback sequences (docs/trust.md)
            // and a device refuses firmware as a trust update and the other way round
            // (names_trust_store), so a campaign mixing the two kinds could never roll back.
            if r.kind != release.kind {
                return Err(ApiErr::unprocessable(
                    "mixed-release-kinds",
                    format!(
                        "release {} is a {} but the rollback release {} is a {}; a campaign may not mix a trust update and a firmware release",
                        release.id, release.kind, r.id, r.kind
                    ),
                )
                .hint("run the trust update and the firmware release as two campaigns (the trust update first when the firmware is signed by a newly added key), each with a rollback release of its own kind"));
            }
            if r.sequence_number <= release.sequence_number {
                return Err(ApiErr::unprocessable(
                    "rollback-sequence",
                    format!(
                        "the rollback release has sequence number {} but devices that installed release {} (sequence {}) refuse anything not above it (anti-rollback, manifest §8.4.2)",
                        r.sequence_number, release.id, release.sequence_number
                    ),
                )
                .hint("re-sign the previous image with a higher sequence number and upload that as the rollback release"));
            }
            if !r.complete() {
                return Err(ApiErr::conflict(
                    "release-incomplete",
                    format!("the rollback release {} lacks payloads", r.id),
                ));
            }
        }
        _ => {}
    }
    Ok(release)
}

/// Of the devices a campaign's filter matches, those not busy in another live campaign: the
/// ones `start` assigns to waves and a dry run counts as targeted.
async fn not_busy(state: &AppState, matching: &[String]) -> ApiResult<Vec<String>> {
    let busy: std::collections::HashSet<String> =
        state.db.busy_devices().await?.into_iter().collect();
    Ok(matching
        .iter()
        .filter(|d| !busy.contains(*d))
        .cloned()
        .collect())
}

/// Create a campaign (in the `draft` state).
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns",
    request_body = CampaignCreate,
    responses((status = 201, body = CampaignInfo), (status = 422, body = suitcase_protocol::ApiError),
              (status = 409, body = suitcase_protocol::ApiError, description = "the release is archived or still lacks payloads")),
    security(("management_token" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    who: Manager,
    crate::wire::Wire(_, spec): crate::wire::Wire<CampaignCreate>,
) -> ApiResult<(StatusCode, axum::Json<CampaignInfo>)> {
    who.require(Cap::Operate)?;
    // Under the ops lock, as release archive and delete are: a release deleted between the
    // check and the insert would leave a campaign naming nothing.
    let _ops = engine::lock_ops(&state).await?;
    validate(&state, &spec).await?;
    let row = CampaignRow {
        id: new_id("cmp_"),
        spec,
        state: CampaignState::Draft,
        state_reason: None,
        opened_waves: 0,
        created_by: who.0.name.clone(),
        created_at: state.now(),
    };
    state.db.campaign_create(&row).await?;
    audit(
        &state,
        &who,
        "campaign.create",
        &row.id,
        serde_json::to_value(&row.spec).unwrap_or_default(),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(info(&state, row).await?)))
}

/// The most devices a dry run names.
const DRY_RUN_NAMES: usize = 100;

/// What a campaign would target if it started now, computed as `start` computes it (the
/// filter, the release's classes, devices busy in other live campaigns), and why the other
/// matching devices would be left out. Creates nothing.
pub(crate) async fn dry_run_of(
    state: &AppState,
    spec: &CampaignCreate,
) -> ApiResult<CampaignDryRun> {
    let release = validate(state, spec).await?;
    let classes = release.summary.class_ids();
    state.devices.flush(state).await;
    let matched = state.db.device_ids_matching(&spec.filter, &[]).await?;
    let of_class = state.db.device_ids_matching(&spec.filter, &classes).await?;
    let targeted = not_busy(state, &of_class).await?;
    let up_to_date = state
        .db
        .ui_count_at_or_above(&spec.filter, &classes, release.sequence_number)
        .await?;
    let shown: Vec<String> = targeted.iter().take(DRY_RUN_NAMES).cloned().collect();
    let devices = state
        .db
        .ui_names(&shown)
        .await?
        .into_iter()
        .map(|(id, name)| DryRunDevice { id, name })
        .collect();
    let (no_rollback, no_rollback_partial) = rollback_gaps(state, &release, &targeted).await?;
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    Ok(CampaignDryRun {
        targeted: n(targeted.len()),
        matched: n(matched.len()),
        other_class: n(matched.len().saturating_sub(of_class.len())),
        busy: n(of_class.len().saturating_sub(targeted.len())),
        up_to_date: crate::store::to_u64(up_to_date),
        devices,
        no_rollback,
        no_rollback_partial,
    })
}

/// Which devices a campaign would target, and why others would not; creates nothing.
#[utoipa::path(post, path = "/api/v1/campaigns/dry-run", tag = "campaigns",
    request_body = CampaignCreate,
    responses((status = 200, body = CampaignDryRun), (status = 422, body = suitcase_protocol::ApiError)),
    security(("management_token" = [])))]
pub(crate) async fn dry_run(
    State(state): State<AppState>,
    who: Manager,
    crate::wire::Wire(_, spec): crate::wire::Wire<CampaignCreate>,
) -> ApiResult<axum::Json<CampaignDryRun>> {
    who.require(Cap::Operate)?;
    Ok(axum::Json(dry_run_of(&state, &spec).await?))
}

/// List campaigns.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns",
    responses((status = 200, body = Vec<CampaignInfo>)),
    security(("management_token" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Manager,
) -> ApiResult<axum::Json<Vec<CampaignInfo>>> {
    who.require(Cap::Read)?;
    let mut out = Vec::new();
    for r in state.db.campaign_list().await? {
        out.push(info(&state, r).await?);
    }
    Ok(axum::Json(out))
}

async fn find(state: &AppState, id: &str) -> ApiResult<CampaignRow> {
    state
        .db
        .campaign_get(id)
        .await?
        .ok_or_else(|| ApiErr::not_found("campaign", id))
}

/// One campaign with per-wave progress, and (while it is a draft, running or paused) the
/// components its devices reported they cannot roll back.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path)),
    responses((status = 200, body = CampaignInfo)),
    security(("management_token" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CampaignInfo>> {
    who.require(Cap::Read)?;
    let row = find(&state, &id).await?;
    Ok(axum::Json(with_rollback_check(&state, row).await?))
}

/// One campaign with per-wave progress, without the rollback check (`no_rollback` stays
/// empty): for the console's live refresh, which does not show it.
pub(crate) async fn get_progress(
    state: &AppState,
    who: &Manager,
    id: &str,
) -> ApiResult<CampaignInfo> {
    who.require(Cap::Read)?;
    let row = find(state, id).await?;
    info(state, row).await
}

/// [`info`] with, while the campaign is a draft, running or paused, the rollback check
/// ([`rollback_gaps`]) of the devices it would assign or has assigned.
async fn with_rollback_check(state: &AppState, row: CampaignRow) -> ApiResult<CampaignInfo> {
    let devices = match row.state {
        // The devices `start` would assign now, as a dry run counts them.
        CampaignState::Draft => {
            state.devices.flush(state).await;
            match state.db.release_get(&row.spec.release_id).await? {
                Some(r) => {
                    let of_class = state
                        .db
                        .device_ids_matching(&row.spec.filter, &r.summary.class_ids())
                        .await?;
                    Some((r, not_busy(state, &of_class).await?))
                }
                None => None,
            }
        }
        CampaignState::Running | CampaignState::Paused => {
            state.devices.flush(state).await;
            match state.db.release_get(&row.spec.release_id).await? {
                Some(r) => {
                    let members = state.db.campaign_members(&row.id).await?;
                    Some((r, members.into_iter().map(|m| m.device_id).collect()))
                }
                None => None,
            }
        }
        CampaignState::Completed | CampaignState::Cancelled | CampaignState::RolledBack => None,
    };
    let mut out = info(state, row).await?;
    if let Some((release, devices)) = devices {
        (out.no_rollback, out.no_rollback_partial) =
            rollback_gaps(state, &release, &devices).await?;
    }
    Ok(out)
}

/// Query parameters of the member list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MembersQuery {
    /// Only devices in this state (e.g. `failed`).
    state: Option<String>,
    /// At most this many (default 1000).
    limit: Option<i64>,
}

/// The campaign's devices and where each stands.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/devices", tag = "campaigns",
    params(("id" = String, Path), MembersQuery),
    responses((status = 200, body = Vec<CampaignMember>),
              (status = 400, body = suitcase_protocol::ApiError, description = "no such member state")),
    security(("management_token" = [])))]
pub(crate) async fn members(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
    Query(q): Query<MembersQuery>,
) -> ApiResult<axum::Json<Vec<CampaignMember>>> {
    who.require(Cap::Read)?;
    find(&state, &id).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let rows = match &q.state {
        Some(s) => {
            let Some(s) = MState::from_name(s) else {
                let states: Vec<&str> = MState::ALL.into_iter().map(MState::name).collect();
                return Err(ApiErr::bad_request(
                    "bad-state",
                    format!(
                        "no member state {s:?}; the states are {}",
                        states.join(", ")
                    ),
                ));
            };
            state
                .db
                .campaign_members_in_state(&id, s.name(), limit)
                .await?
        }
        None => {
            let mut all = state.db.campaign_members(&id).await?;
            all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            all
        }
    };
    Ok(axum::Json(
        rows.into_iter()
            .map(|m| CampaignMember {
                device_id: m.device_id,
                wave: m.wave,
                state: m.state,
                release_id: m.release_id,
            })
            .collect(),
    ))
}

/// `start`, `pause`, `resume`, `cancel` or `rollback` a campaign.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/{action}", tag = "campaigns",
    params(("id" = String, Path), ("action" = String, Path, description = "start, pause, resume, cancel or rollback (to the campaign's rollback release)")),
    responses((status = 200, body = CampaignInfo),
              (status = 409, body = suitcase_protocol::ApiError, description = "not possible in the campaign's state")),
    security(("management_token" = [])))]
pub(crate) async fn act(
    State(state): State<AppState>,
    who: Manager,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<axum::Json<CampaignInfo>> {
    who.require(Cap::Operate)?;
    let ops = engine::lock_ops(&state).await?;
    let row = find(&state, &id).await?;
    let event = match action.as_str() {
        "start" => CEvent::Start,
        "pause" => CEvent::Pause,
        "resume" => CEvent::Resume,
        "cancel" => CEvent::Cancel,
        "rollback" => CEvent::RollBack,
        other => {
            return Err(ApiErr::not_found("campaign action", other)
                .hint("the actions are start, pause, resume, cancel and rollback"));
        }
    };
    // Another node may act between the read and the write (a threshold trip): every write
    // below is conditional on the state read here, and a lost race is this same 409.
    let wrong = |row: &CampaignRow| {
        let verb = if action == "rollback" {
            "roll back"
        } else {
            action.as_str()
        };
        ApiErr::conflict(
            "campaign-state",
            format!("campaign {id} is {}; it cannot {verb}", row.state.name()),
        )
    };
    if engine::campaign_next(row.state, event).is_none() {
        return Err(wrong(&row));
    }
    let now = state.now();
    let mut detail = serde_json::json!({});
    match event {
        CEvent::Start => {
            let release = crate::api::release_found(&state, &row.spec.release_id).await?;
            let matching = state
                .db
                .device_ids_matching(&row.spec.filter, &release.summary.class_ids())
                .await?;
            let total = matching.len();
            let free = not_busy(&state, &matching).await?;
            let skipped = total - free.len();
            if free.is_empty() {
                // A typo in the filter must not look like a finished rollout.
                let why = if total == 0 {
                    "its filter matches no registered device (of the release's class)".to_owned()
                } else {
                    format!("all {total} devices it matches are busy in other live campaigns")
                };
                return Err(ApiErr::conflict(
                    "no-devices",
                    format!("campaign {id} would start with no device: {why}"),
                )
                .hint("check the filter (GET /api/v1/devices takes the same tags, group, vendor_id, class_id); the campaign stays a draft"));
            }
            let members = rollout::assign(&id, free, &row.spec.waves);
            if !state
                .db
                .campaign_start(&id, &row.spec.release_id, &members, now)
                .await?
            {
                return Err(wrong(&find(&state, &id).await?));
            }
            detail = serde_json::json!({"devices": members.len(), "skipped_busy": skipped});
            engine::reload(&state, &id).await?;
            engine::notify_wave(&state, &id, 0).await;
            if let (Some(push), Some(g)) = (&state.push, &row.spec.filter.group)
                && let Some(pid) = state.db.group_push_id(g).await?
                && group_pushable(&state, g, &release).await?
            {
                push.notify_group(&pid).await;
            }
            engine::react(&state, &id).await?;
        }
        CEvent::Pause | CEvent::Resume => {
            let reason = (event == CEvent::Pause).then(|| format!("paused by {}", who.0.name));
            if !state
                .db
                .campaign_cas(
                    &id,
                    row.state,
                    event,
                    reason.as_deref(),
                    row.opened_waves,
                    row.opened_waves,
                )
                .await?
            {
                return Err(wrong(&find(&state, &id).await?));
            }
            if event == CEvent::Resume {
                for w in 0..row.opened_waves {
                    engine::notify_wave(&state, &id, w).await;
                }
                engine::react(&state, &id).await?;
            }
        }
        CEvent::Cancel => {
            let reason = format!("cancelled by {}", who.0.name);
            let Some(n) = engine::cancel(&state, &row, event, &reason).await? else {
                return Err(wrong(&find(&state, &id).await?));
            };
            detail = serde_json::json!({"devices_cancelled": n});
        }
        CEvent::RollBack => {
            if row.spec.rollback_release_id.is_none() {
                return Err(ApiErr::conflict(
                    "no-rollback-release",
                    format!("campaign {id} names no rollback release"),
                )
                .hint("a campaign rolls back to the rollback_release_id it was created with (the previous image re-signed above the new sequence number)"));
            }
            let reason = format!("rolled back by {}", who.0.name);
            if !engine::roll_back(&state, &row, event, &reason).await? {
                return Err(wrong(&find(&state, &id).await?));
            }
        }
        CEvent::Advance | CEvent::Complete | CEvent::Trip(_) => {}
    }
    drop(ops);
    audit(&state, &who, &format!("campaign.{action}"), &id, detail).await?;
    let row = find(&state, &id).await?;
    Ok(axum::Json(info(&state, row).await?))
}

/// Whether a group's topic may be pushed for a release: one publish wakes every member, so
/// not when a member is quarantined and the release is not remediation (RFC 8240 §9,
/// `quarantine::offerable`). Each offerable member of the wave was already woken on its own
/// topic (`engine::notify_wave`), so skipping the group topic wakes no one it should not.
async fn group_pushable(state: &AppState, group: &str, release: &ReleaseRow) -> ApiResult<bool> {
    if release.remediation {
        return Ok(true);
    }
    let filter = suitcase_protocol::Filter {
        group: Some(group.to_owned()),
        ..suitcase_protocol::Filter::default()
    };
    let members = state.db.device_ids_matching(&filter, &[]).await?;
    Ok(state.db.quarantined_among(&members).await?.is_empty())
}

//! The device API. Devices authenticate with their token or TLS client certificate; no URL
//! carries a device identifier (RFC 8240 §3).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use suitcase_protocol::{
    Action, CheckIn, CheckInAnswer, DeviceSelf, Outcome, PushInfo, Step, StepReport, StepStatus,
    UpdateOffer, UpdateStatus,
};

use crate::AppState;
use crate::auth::DeviceAuth;
use crate::engine::{self, ReportFate};
use crate::error::{ApiErr, ApiResult};
use crate::store::ReleaseRow;
use crate::wire::{self, Accepts, Want, Wire};

/// The next poll: the interval (or `retry_after`) with random jitter, so that a fleet does
/// not check in in lock step after an outage or a push (NTIA: server-side random back-off).
pub(crate) fn next_poll(interval: u32, retry_after: Option<i64>) -> u32 {
    // Jitter needs spread, not secrecy: a fast thread-local generator, no system call.
    let unit = fastrand::f64();
    let secs = match retry_after {
        // Never before the window opens: jitter forwards only, by up to 10%.
        #[allow(clippy::cast_precision_loss, reason = "seconds, at most a day")]
        Some(after) => (after.max(1) as f64) * (1.0 + 0.1 * unit),
        None => f64::from(interval.max(1)) * (0.75 + 0.5 * unit),
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive, at most a few days"
    )]
    let s = secs.round() as u32;
    s.max(1)
}

/// What a check-in does, whichever API it came through (the device API, or a DDI poll):
/// note the inventory, let the engine decide, record a refusal as the device's Check
/// failure (so the operator sees why it failed), and persist the transition before answering.
pub(crate) async fn check_in(
    state: &AppState,
    dev: &crate::devices::DeviceEntry,
    c: &CheckIn,
    now: i64,
) -> ApiResult<engine::Decision> {
    // A bad nonce is refused before the check-in has any effect, on every transport.
    if let Some(n) = &c.nonce {
        crate::freshness::check_nonce(n)?;
    }
    state.devices.record(dev, c, now);
    metrics::counter!("suitcase_checkins_total").increment(1);
    let d = engine::decide(state, &dev.id, c, now).await?;
    if let (Some(t), Some((campaign, why))) = (&d.transition, &d.refused) {
        let report = StepReport {
            release_id: t.release_id.clone(),
            step: Step::Check,
            outcome: Outcome::Failure,
            reason: Some("digest".into()),
            detail: Some(why.clone()),
            progress: None,
            started_at: None,
            log: None,
            suit_report: None,
            offline: false,
        };
        state
            .db
            .report_insert(&dev.id, Some(campaign), &report, now)
            .await?;
    }
    if let Some(t) = &d.transition {
        engine::persist(state, t).await?;
    }
    Ok(d)
}

/// Check in: report the inventory; learn whether an update is offered.
#[utoipa::path(post, path = "/api/v1/device/checkin", tag = "device",
    request_body(content((CheckIn = "application/json"), (CheckIn = "application/cbor"))),
    responses((status = 200, content((CheckInAnswer = "application/json"), (CheckInAnswer = "application/cbor"))),
              (status = 401, body = suitcase_protocol::ApiError)),
    security(("device_token" = []), ("device_certificate" = [])))]
pub(crate) async fn checkin(
    State(state): State<AppState>,
    DeviceAuth(dev): DeviceAuth,
    Wire(format, c): Wire<CheckIn>,
) -> ApiResult<Response> {
    let now = state.now();
    let d = check_in(&state, &dev, &c, now).await?;
    let freshness = freshness_of(&state, &dev, &c, d.offer.as_ref().map(|(r, ..)| &**r), now)?;
    let update = d.offer.map(|(r, rollback, consent)| {
        update_offer(&state, &c, &r, rollback, consent, str::to_owned)
    });
    let push = match &state.push {
        Some(p) => {
            let mut topics = vec![p.device_topic(&dev.push_id)];
            topics.extend(
                dev.group_push_ids(&state)
                    .await?
                    .iter()
                    .map(|g| p.group_topic(g)),
            );
            Some(PushInfo {
                broker: p.broker.clone(),
                topics,
            })
        }
        None => None,
    };
    let answer = CheckInAnswer {
        action: if update.is_some() {
            Action::Update
        } else {
            Action::None
        },
        next_poll_seconds: next_poll(state.config.poll_interval, d.retry_after),
        update,
        push,
        freshness,
    };
    Ok(wire::reply(format, StatusCode::OK, &answer))
}

/// The freshness statement for a check-in that sent a nonce (docs/trust.md, "Freshness"):
/// the nonce, the device's registered name, the offer this answer makes (its manifest digest
/// and sequence number) or none, and the server's time, signed with `DATA/freshness-key`.
pub(crate) fn freshness_of(
    state: &AppState,
    dev: &crate::devices::DeviceEntry,
    c: &CheckIn,
    offer: Option<&engine::ReleaseRt>,
    now: i64,
) -> ApiResult<Option<Vec<u8>>> {
    state.freshness.statement(
        c.nonce.as_deref(),
        &dev.name,
        offer.map(|r| (r.sequence_number, r.manifest_digest.as_str())),
        now,
    )
}

/// The update offer of a check-in decision, the same over every transport: each payload with
/// a delta when the device runs an image the server has a patch from (its inventory's digest
/// for the payload's component). `path` maps the HTTP device API's download paths to the
/// transport's (the identity over HTTP, `/d/...` over CoAP).
pub(crate) fn update_offer(
    state: &AppState,
    c: &CheckIn,
    r: &engine::ReleaseRt,
    rollback: bool,
    consent: bool,
    path: impl Fn(&str) -> String,
) -> UpdateOffer {
    metrics::counter!("suitcase_offers_total").increment(1);
    UpdateOffer {
        release_id: r.id.clone(),
        sequence_number: r.sequence_number,
        manifest_url: path(&format!("/api/v1/device/releases/{}/envelope", r.id)),
        manifest_size: r.manifest_size,
        payloads: r
            .payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut p = p.clone();
                p.url = path(&p.url);
                let installed = r
                    .payload_components
                    .get(i)
                    .and_then(Option::as_ref)
                    .and_then(|id| c.components.iter().find(|ic| &ic.id == id))
                    .and_then(|ic| ic.digest.as_deref());
                if let (Some(digest), Ok(idx)) = (installed, u32::try_from(i))
                    && let Some(d) = state.deltas.find(&r.id, idx, digest)
                {
                    let mut offer = d.offer();
                    offer.url = path(&offer.url);
                    p.delta = Some(offer);
                }
                p
            })
            .collect(),
        requires_consent: consent,
        rollback,
    }
}

/// The most step reports stored per device and release.
pub(crate) const MAX_REPORTS_PER_RELEASE: i64 = 1000;

/// A report's sizes (suitcase_protocol::limits): one device must not grow the database by
/// megabytes per request.
fn check_report_size(r: &StepReport) -> ApiResult<()> {
    use suitcase_protocol::limits::{REPORT_DETAIL_MAX, REPORT_REASON_MAX, SUIT_REPORT_MAX};
    let too_large = |what: &str, limit: usize, unit: &str| {
        Err(ApiErr::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "report-too-large",
            format!("the report's {what} is longer than {limit} {unit}"),
        )
        .hint("shorten it; put long diagnostics in the device's own log"))
    };
    if r.detail
        .as_deref()
        .is_some_and(|d| d.chars().count() > REPORT_DETAIL_MAX)
    {
        return too_large("detail", REPORT_DETAIL_MAX, "characters");
    }
    if r.reason
        .as_deref()
        .is_some_and(|d| d.chars().count() > REPORT_REASON_MAX)
    {
        return too_large("reason", REPORT_REASON_MAX, "characters");
    }
    if r.suit_report
        .as_ref()
        .is_some_and(|b| b.len() > SUIT_REPORT_MAX)
    {
        return too_large("SUIT report", SUIT_REPORT_MAX, "bytes");
    }
    if r.release_id.len() > 64 {
        return Err(ApiErr::bad_request(
            "bad-release-id",
            "a release id is at most 64 characters",
        ));
    }
    Ok(())
}

/// Report the outcome of an update step.
#[utoipa::path(post, path = "/api/v1/device/reports", tag = "device",
    request_body(content((StepReport = "application/json"), (StepReport = "application/cbor"))),
    responses((status = 204, description = "recorded"),
              (status = 404, body = suitcase_protocol::ApiError, description = "an offline report (`offline: true`) on a release the server does not know (`unknown-release`)"),
              (status = 409, body = suitcase_protocol::ApiError, description = "an online report on a release never offered to this device (`not-offered`); an offline report on a release for another vendor or class than the device's (`not-for-device`)"),
              (status = 413, body = suitcase_protocol::ApiError, description = "detail, reason or SUIT report too long"),
              (status = 429, body = suitcase_protocol::ApiError, description = "too many reports from this device"),
              (status = 503, body = suitcase_protocol::ApiError, description = "other requests for this device changed its campaign state under every attempt (`busy`): not stored; send it again after `Retry-After`")),
    security(("device_token" = []), ("device_certificate" = [])))]
pub(crate) async fn report(
    State(state): State<AppState>,
    DeviceAuth(dev): DeviceAuth,
    Wire(_, r): Wire<StepReport>,
) -> ApiResult<StatusCode> {
    record_report(&state, &dev, &r, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records a step report the way the device API does: sizes, the per-device budget (when
/// `budget`), the per-release cap, the offer gate (docs/server.md §3), the timeline, and the
/// transition it causes. The DDI API (api/ddi.rs) sends its feedback through here too.
pub(crate) async fn record_report(
    state: &AppState,
    dev: &crate::devices::DeviceEntry,
    r: &StepReport,
    budget: bool,
) -> ApiResult<()> {
    check_report_size(r)?;
    if budget && let Err(wait) = dev.take_report(state.now()) {
        return Err(ApiErr::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-reports",
            format!(
                "this device sent more than {} step reports in a burst ({} a minute after it)",
                crate::devices::REPORT_BURST,
                crate::devices::REPORTS_PER_MINUTE
            ),
        )
        .hint(format!("send it again in {wait} s")));
    }
    // A report of an install from an offline bundle (docs/bundles.md) names the release by
    // its manifest digest (or by the server's id): it must be a release the server knows.
    let resolved;
    let r = if r.offline {
        let release = match state.db.release_get(&r.release_id).await? {
            Some(release) => Some(release),
            None => match state.db.release_by_digest_prefix(&r.release_id).await? {
                Some(id) => state.db.release_get(&id).await?,
                None => None,
            },
        };
        let release = release.ok_or_else(|| {
            ApiErr::new(
                StatusCode::NOT_FOUND,
                "unknown-release",
                format!(
                    "offline report on release {:?}, which this server does not know (neither a release id nor a manifest digest)",
                    r.release_id
                ),
            )
            .hint("upload the release (suitcase fleet release upload) before the devices that installed it from a bundle report")
        })?;
        offline_for_device(state, dev, &release).await?;
        resolved = StepReport {
            release_id: release.id,
            ..r.clone()
        };
        &resolved
    } else {
        r
    };
    // However slowly it sends them, one device stores a bounded number of reports on one
    // release: an update needs about a dozen.
    if state.db.report_count(&dev.id, &r.release_id).await? >= MAX_REPORTS_PER_RELEASE {
        return Err(ApiErr::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-reports",
            format!(
                "this device has sent {MAX_REPORTS_PER_RELEASE} reports on release {:?}; no more are stored",
                r.release_id
            ),
        ));
    }
    if r.offline {
        // Recorded in the device's timeline, marked offline, in no campaign: the server
        // never offered it, so no campaign's counters move (the device's next check-in
        // shows the installed release in its inventory as usual).
        state
            .db
            .report_insert(&dev.id, None, r, state.now())
            .await?;
        metrics::counter!("suitcase_reports_total", "step" => r.step.name(), "outcome" => r.outcome.name())
            .increment(1);
        tracing::info!(device = %dev.name, release = %r.release_id, step = r.step.name(), outcome = r.outcome.name(), "offline report");
        return Ok(());
    }
    let not_offered = || {
        ApiErr::conflict(
            "not-offered",
            format!(
                "release {:?} was never offered to this device",
                r.release_id
            ),
        )
        .hint("report only on the release a check-in offered")
    };
    let (campaign, transition) = match engine::on_report(state, &dev.id, r).await? {
        ReportFate::NotOffered => return Err(not_offered()),
        ReportFate::Busy => {
            return Err(ApiErr::busy(
                1,
                "the device's campaign state changed under this report several times; it was not stored",
            ));
        }
        ReportFate::Member {
            campaign,
            transition,
        } => (Some(campaign), transition),
        ReportFate::NotMember => {
            if !state.db.device_was_offered(&dev.id, &r.release_id).await? {
                // RFC 8240 §9: a device that reports on a release it was never a member
                // for is quarantined (quarantine.rs, rule never-offered).
                crate::quarantine::judge_not_offered(state, dev, r).await?;
                return Err(not_offered());
            }
            let campaign = state
                .db
                .latest_membership(&dev.id)
                .await?
                .filter(|(_, m)| m.release_id == r.release_id)
                .map(|(c, _)| c);
            (campaign, None)
        }
    };
    state
        .db
        .report_insert(&dev.id, campaign.as_deref(), r, state.now())
        .await?;
    metrics::counter!("suitcase_reports_total", "step" => r.step.name(), "outcome" => r.outcome.name())
        .increment(1);
    if r.outcome == Outcome::Failure {
        tracing::info!(device = %dev.name, release = %r.release_id, step = r.step.name(), reason = ?r.reason, "update step failed");
    }
    if let Some(t) = transition {
        engine::persist(state, &t).await?;
    }
    // RFC 8240 §9: repeated signature failures and rollback attempts quarantine the device.
    crate::quarantine::judge_report(state, &dev.id, r).await?;
    Ok(())
}

/// An offline report's release must be for the device: where its manifest checks vendor ids,
/// the device's vendor id (from its check-ins) must be one of them, and likewise its class
/// id, both compared ignoring ASCII case; a manifest that checks none of one kind accepts any.
/// The release id a bundle names comes from its untrusted index (the agent checks it against
/// the verified manifest at Check); this keeps a device from claiming in its timeline a
/// release that could never have installed on it. A device that has never sent its vendor or
/// class id (its first check-in comes after the outbox is sent) is not refused on that id.
async fn offline_for_device(
    state: &AppState,
    dev: &crate::devices::DeviceEntry,
    release: &ReleaseRow,
) -> ApiResult<()> {
    let release_id = &release.id;
    // The device's newest check-in may still be buffered.
    state.devices.flush(state).await;
    let Some(row) = state.db.device_get(&dev.id).await? else {
        return Ok(());
    };
    let fits = |ids: &[String], mine: Option<&str>| {
        ids.is_empty() || mine.is_none_or(|m| ids.iter().any(|i| i.eq_ignore_ascii_case(m)))
    };
    let (vendors, classes) = (release.summary.vendor_ids(), release.summary.class_ids());
    if fits(&vendors, row.vendor_id.as_deref()) && fits(&classes, row.class_id.as_deref()) {
        return Ok(());
    }
    Err(ApiErr::conflict(
        "not-for-device",
        format!(
            "offline report on release {release_id:?}, whose manifest is for vendor {} class {}, but this device is vendor {} class {}",
            vendors.join(" or "),
            classes.join(" or "),
            row.vendor_id.as_deref().unwrap_or("(unknown)"),
            row.class_id.as_deref().unwrap_or("(unknown)"),
        ),
    )
    .hint("a device can only have installed a release for its vendor and class"))
}

/// The device's current or last update, with every step's latest outcome.
pub(crate) async fn update_status(
    state: &AppState,
    device_id: &str,
) -> ApiResult<Option<UpdateStatus>> {
    let membership = state.db.latest_membership(device_id).await?;
    // An install from an offline bundle is the device's last update when its reports are
    // the newest and no campaign is offering it something now.
    if let Some((release_id, offline_id, newest)) = state.db.latest_offline(device_id).await?
        && offline_id == newest
        && membership.as_ref().is_none_or(|(_, m)| {
            engine::MState::from_name(&m.state).is_none_or(engine::MState::terminal)
        })
    {
        let reports = state.db.reports_for(device_id, &release_id).await?;
        let steps = steps_of(reports.into_iter().filter(|r| r.offline));
        let state = if steps.iter().any(|s| s.outcome == Outcome::Failure) {
            "failed"
        } else if steps
            .iter()
            .any(|s| s.step == Step::CleanUp && s.outcome == Outcome::Success)
        {
            "succeeded"
        } else {
            "in_progress"
        };
        return Ok(Some(UpdateStatus {
            release_id,
            campaign_id: None,
            state: state.into(),
            steps,
            offline: true,
        }));
    }
    let Some((campaign_id, m)) = membership else {
        return Ok(None);
    };
    // Only the campaign's (online) reports: an offline install of the same release is
    // another update, and is shown as such above when it is the newest.
    let reports = state.db.reports_for(device_id, &m.release_id).await?;
    let steps = steps_of(reports.into_iter().filter(|r| !r.offline));
    Ok(Some(UpdateStatus {
        release_id: m.release_id,
        campaign_id: Some(campaign_id),
        state: m.state,
        steps,
        offline: false,
    }))
}

/// Every step's latest outcome, in step order.
fn steps_of(reports: impl Iterator<Item = crate::store::ReportRow>) -> Vec<StepStatus> {
    let mut steps: Vec<StepStatus> = Vec::new();
    for r in reports {
        let (Some(step), Some(outcome)) =
            (Step::from_name(&r.step), Outcome::from_name(&r.outcome))
        else {
            continue;
        };
        let s = StepStatus {
            step,
            outcome,
            reason: r.reason,
            detail: r.detail,
            at: r.at,
            started_at: r.started_at,
            progress: r
                .progress
                .filter(|_| outcome == Outcome::InProgress)
                .map(crate::store::to_u64),
            log: r.log,
        };
        match steps.iter_mut().find(|x| x.step == step) {
            Some(x) => *x = s,
            None => steps.push(s),
        }
    }
    steps.sort_by_key(|s| Step::ALL.iter().position(|x| *x == s.step));
    steps
}

/// What the server holds about this device.
#[utoipa::path(get, path = "/api/v1/device/state", tag = "device",
    responses((status = 200, content((DeviceSelf = "application/json"), (DeviceSelf = "application/cbor")))),
    security(("device_token" = []), ("device_certificate" = [])))]
pub(crate) async fn state(
    State(state): State<AppState>,
    DeviceAuth(dev): DeviceAuth,
    Accepts(format): Accepts,
) -> ApiResult<Response> {
    // Buffered check-ins first, so the device sees what it sent.
    state.devices.flush(&state).await;
    let row = state
        .db
        .device_get(&dev.id)
        .await?
        .ok_or_else(|| ApiErr::not_found("device", &dev.name))?;
    let inventory = row
        .inventory
        .as_deref()
        .and_then(|i| serde_json::from_str(i).ok());
    let body = DeviceSelf {
        name: row.name,
        inventory,
        update: update_status(&state, &dev.id).await?,
    };
    Ok(wire::reply(format, StatusCode::OK, &body))
}

async fn authorize(state: &AppState, device_id: &str, release_id: &str) -> ApiResult<()> {
    // Not 403: a device must not learn which releases exist for others. A quarantined
    // device fetches only remediation releases (RFC 8240 §9, in `device_offered`).
    if state.db.device_offered(device_id, release_id).await? {
        Ok(())
    } else {
        Err(ApiErr::not_found("release", release_id))
    }
}

/// Download the SUIT envelope of an offered release (Range, ETag and If-Range supported).
#[utoipa::path(get, path = "/api/v1/device/releases/{release_id}/envelope", tag = "device",
    params(("release_id" = String, Path, description = "the release id from the offer")),
    responses((status = 200, content_type = "application/suit-envelope+cose", body = Vec<u8>),
              (status = 206, description = "the requested range"),
              (status = 404, body = suitcase_protocol::ApiError, description = "no such release offered to this device")),
    security(("device_token" = []), ("device_certificate" = [])))]
pub(crate) async fn envelope(
    State(state): State<AppState>,
    DeviceAuth(dev): DeviceAuth,
    Path(release_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&state, &dev.id, &release_id).await?;
    let bytes = state
        .db
        .release_envelope(&release_id)
        .await?
        .ok_or_else(|| ApiErr::not_found("release", &release_id))?;
    Ok(serve_bytes(bytes, &headers))
}

pub(crate) fn serve_bytes(bytes: Vec<u8>, headers: &HeaderMap) -> Response {
    let etag = wire::etag_of(&hex::encode(Sha256::digest(&bytes)));
    let size = bytes.len() as u64;
    let want = wire::want(headers, size, &etag);
    let body = match want {
        Want::Part(a, b) => {
            let (a, b) = (
                usize::try_from(a).unwrap_or(0),
                usize::try_from(b).unwrap_or(0),
            );
            Some(Body::from(
                bytes.get(a..b).map(<[u8]>::to_vec).unwrap_or_default(),
            ))
        }
        Want::Full => Some(Body::from(bytes)),
        _ => None,
    };
    wire::ranged_response(want, size, &etag, suitcase_protocol::SUIT_MEDIA_TYPE, body)
}

/// Download a payload of an offered release (Range, ETag and If-Range supported).
#[utoipa::path(get, path = "/api/v1/device/payloads/{release_id}/{index}", tag = "device",
    params(("release_id" = String, Path, description = "the release id from the offer"),
           ("index" = u32, Path, description = "the payload's index, from the offer's URL")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = 206, description = "the requested range"),
              (status = 416, description = "the range starts beyond the end"),
              (status = 404, body = suitcase_protocol::ApiError)),
    security(("device_token" = []), ("device_certificate" = [])))]
pub(crate) async fn payload(
    State(state): State<AppState>,
    DeviceAuth(dev): DeviceAuth,
    Path((release_id, index)): Path<(String, u32)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&state, &dev.id, &release_id).await?;
    serve_payload(&state, &release_id, index, &headers).await
}

pub(crate) async fn serve_payload(
    state: &AppState,
    release_id: &str,
    index: u32,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let release = crate::api::release_found(state, release_id).await?;
    let p = release
        .payloads
        .iter()
        .find(|p| p.idx == index)
        .ok_or_else(|| ApiErr::not_found("payload", &index.to_string()))?;
    let (Some(key), Some(size), Some(sha)) = (&p.object_key, p.size, &p.sha256) else {
        return Err(ApiErr::not_found("uploaded payload", &p.uri));
    };
    serve_object(state, key, size, sha, headers).await
}

/// Serves a stored object with Range, ETag and If-Range.
pub(crate) async fn serve_object(
    state: &AppState,
    key: &str,
    size: u64,
    sha: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let etag = wire::etag_of(sha);
    let want = wire::want(headers, size, &etag);
    let range = match want {
        Want::Full => Some(0..size),
        Want::Part(a, b) => Some(a..b),
        _ => None,
    };
    let body = match range {
        Some(r) => {
            metrics::counter!("suitcase_payload_bytes_total").increment(r.end - r.start);
            let stream = state.blobs.get_range(key, r).await?;
            Some(Body::from_stream(
                stream.map(|c| c.map_err(std::io::Error::other)),
            ))
        }
        None => None,
    };
    Ok(wire::ranged_response(
        want,
        size,
        &etag,
        "application/octet-stream",
        body,
    ))
}

/// Download a delta patch that a check-in offered (Range, ETag and If-Range supported).
#[utoipa::path(get, path = "/api/v1/device/deltas/{delta_id}", tag = "device",
    params(("delta_id" = String, Path, description = "from the offer's delta URL")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = 206, description = "the requested range"),
              (status = 404, body = suitcase_protocol::ApiError)),
    security(("device_token" = []), ("device_certificate" = [])))]
pub(crate) async fn delta(
    State(state): State<AppState>,
    DeviceAuth(dev): DeviceAuth,
    Path(delta_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let d = state
        .deltas
        .get(&delta_id)
        .ok_or_else(|| ApiErr::not_found("delta", &delta_id))?;
    authorize(&state, &dev.id, &d.release_id).await?;
    metrics::counter!("suitcase_delta_bytes_saved_total")
        .increment(d.full_size.saturating_sub(d.size));
    serve_object(&state, &d.object_key, d.size, &d.sha256, &headers).await
}

impl From<crate::blobs::UploadError> for ApiErr {
    fn from(e: crate::blobs::UploadError) -> Self {
        match e {
            crate::blobs::UploadError::TooLarge(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", e.to_string())
            }
            crate::blobs::UploadError::Body(_) => Self::bad_request("upload-cut", e.to_string()),
            crate::blobs::UploadError::Store(s) => Self::internal(s),
        }
    }
}

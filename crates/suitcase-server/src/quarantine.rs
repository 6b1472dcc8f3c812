//! Quarantine and fleet posture (RFC 8240 §9, "Compromised Devices": "single out a device
//! that shows faulty behavior or has been compromised, and ... shut it down in some sense";
//! the NEA "posture" of a device, "knowledge that the software installed is up to date").
//!
//! A device is quarantined by an admin, or by the server itself when its step reports look
//! like an attack (the NTIA Check step's refusals, which the device logs to the server at
//! Clean-up, step 13: "external log with ID and version"):
//!
//! | rule | trips on | why it is suspicious |
//! |---|---|---|
//! | `signature-failures` | [`QuarantineRules::signature_failures`] online `failure` reports with reason `signature` within [`QuarantineRules::signature_window`] | the server only offers releases it verified against its registered keys at upload (manifest §6.2): a device that keeps refusing their signatures either trusts other anchors (it was re-provisioned by someone else) or is being fed releases by someone else |
//! | `rollback-attempt` | a `failure` report with reason `sequence-rollback` on a release newer than every component the device's inventory reports | the server offered it because the inventory is older; a device whose anti-rollback state says otherwise (manifest §8.4.2) lied in its check-in, or its counter was tampered with |
//! | `never-offered` | an online report on a release the device was never a campaign member for (answered `409 not-offered`) | a genuine agent reports only on what a check-in offered it (docs/server.md §3); a device that does not is not running our agent |
//!
//! A quarantined device is offered only releases marked remediation ([`offerable`], the one
//! rule every path asks: check-ins on every device API through `engine::decide`, downloads
//! on every device API through `Db::device_offered`, and MQTT push through
//! `engine::notify_wave` for device topics and `api::campaigns::group_pushable` for a
//! group's topic, which is not pushed while the group holds a quarantined device and the
//! release is not remediation); its reports are stored flagged (`reports.quarantined`). The state
//! is in the database and changed only by conditional writes that carry their audit entry
//! in the same transaction, so with several nodes each quarantine and release happens once
//! and is audited once; the rules count in the database (bounded by the reports' own caps),
//! not in per-node memory.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use sqlx::Row as _;
use suitcase_protocol::{Outcome, StepReport};
// The fleet's posture, and why and since when a device is quarantined (stored as JSON in
// `devices.quarantine`): the wire types of `suitcase_protocol::mgmt`, which the API answers
// with.
pub(crate) use suitcase_protocol::mgmt::{FleetPosture, QuarantineRecord};

use crate::AppState;
use crate::db::Db;
use crate::store::{ReportRow, audit_in, to_u64};

/// The automatic quarantine rules and the posture's reachability window (docs/server.md §8).
#[derive(Clone, Debug)]
pub struct QuarantineRules {
    /// Signature failures within [`Self::signature_window`] that quarantine a device; 0 turns
    /// the rule off. Default 3: one refusal is a misconfiguration (a release signed by a key
    /// the device does not trust fails once and leaves the campaign); three are a pattern.
    pub signature_failures: u32,
    /// The window of [`Self::signature_failures`]. Default 24 hours.
    pub signature_window: Duration,
    /// Quarantine on a rollback refusal that contradicts the device's inventory. Default on.
    pub rollback_attempt: bool,
    /// Quarantine on a report for a release never offered to the device. Default on.
    pub never_offered: bool,
    /// The fleet posture counts a device unreachable when it has not checked in for this
    /// long. Default 24 hours.
    pub unreachable_after: Duration,
}

impl Default for QuarantineRules {
    fn default() -> Self {
        Self {
            signature_failures: 3,
            signature_window: Duration::from_secs(24 * 3600),
            rollback_attempt: true,
            never_offered: true,
            unreachable_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// The rule: a quarantined device is offered (and may fetch) only remediation releases.
pub(crate) fn offerable(quarantined: bool, remediation: bool) -> bool {
    !quarantined || remediation
}

/// Which rule quarantined a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    NeverOffered,
    RollbackAttempt,
    SignatureFailures,
}

impl Rule {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::NeverOffered => "never-offered",
            Self::RollbackAttempt => "rollback-attempt",
            Self::SignatureFailures => "signature-failures",
        }
    }
}

/// A device's quarantine row.
#[derive(Clone, Debug)]
pub(crate) struct DeviceQuarantineRow {
    pub(crate) record: Option<QuarantineRecord>,
}

impl Db {
    /// Quarantines a device unless it already is, and writes `audit` in the same transaction;
    /// the evidence reports are flagged. `false` if it was quarantined already (another node
    /// or request was first): then nothing is written.
    pub(crate) async fn quarantine_set(
        &self,
        device_id: &str,
        record: &QuarantineRecord,
        role: &str,
        detail: &serde_json::Value,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE devices SET quarantined_at = $1, quarantine = $2 WHERE id = $3 AND quarantined_at IS NULL",
        )
        .bind(record.since)
        .bind(serde_json::to_string(record)?)
        .bind(device_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        for id in &record.evidence {
            sqlx::query("UPDATE reports SET quarantined = 1 WHERE id = $1 AND device_id = $2")
                .bind(id)
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
        }
        audit_in(
            &mut tx,
            record.since,
            &record.actor,
            role,
            "device.quarantine",
            device_id,
            detail,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Releases a device from quarantine if it is in one, with its audit entry in the same
    /// transaction. The automatic rules then count only reports sent after this (the floor).
    /// `false` if it was not quarantined.
    pub(crate) async fn quarantine_clear(
        &self,
        device_id: &str,
        now: i64,
        actor: &str,
        role: &str,
        detail: &serde_json::Value,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE devices SET quarantined_at = NULL, quarantine = NULL, \
             quarantine_floor = (SELECT COALESCE(MAX(id), 0) FROM reports WHERE device_id = $1) \
             WHERE id = $1 AND quarantined_at IS NOT NULL",
        )
        .bind(device_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        audit_in(
            &mut tx,
            now,
            actor,
            role,
            "device.unquarantine",
            device_id,
            detail,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A device's quarantine (`None` if there is no such device).
    pub(crate) async fn quarantine_of(
        &self,
        device_id: &str,
    ) -> Result<Option<DeviceQuarantineRow>> {
        let Some(r) = sqlx::query("SELECT quarantine FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let text: Option<String> = r.try_get(0)?;
        Ok(Some(DeviceQuarantineRow {
            record: text.as_deref().map(serde_json::from_str).transpose()?,
        }))
    }

    /// The quarantine records of these devices (the console's lists), by device id.
    pub(crate) async fn quarantined_among(
        &self,
        device_ids: &[String],
    ) -> Result<HashMap<String, QuarantineRecord>> {
        let mut out = HashMap::new();
        for chunk in device_ids.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT id, quarantine FROM devices WHERE quarantined_at IS NOT NULL AND id IN ({marks})"
            );
            let mut q = crate::store::dynamic(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let text: Option<String> = r.try_get(1)?;
                if let Some(rec) = text.as_deref().and_then(|t| serde_json::from_str(t).ok()) {
                    out.insert(r.try_get(0)?, rec);
                }
            }
        }
        Ok(out)
    }

    /// Whether the device is quarantined and whether the release is marked remediation, in
    /// one read.
    pub(crate) async fn offer_gate(
        &self,
        device_id: &str,
        release_id: &str,
    ) -> Result<(bool, bool)> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM devices WHERE id = $1 AND quarantined_at IS NOT NULL), \
             (SELECT COUNT(*) FROM releases WHERE id = $2 AND remediation <> 0)",
        )
        .bind(device_id)
        .bind(release_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((r.try_get::<i64, _>(0)? > 0, r.try_get::<i64, _>(1)? > 0))
    }

    /// Marks a release remediation (or not).
    pub(crate) async fn release_set_remediation(&self, id: &str, on: bool) -> Result<bool> {
        Ok(
            sqlx::query("UPDATE releases SET remediation = $1 WHERE id = $2")
                .bind(i64::from(on))
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Whether a release is marked remediation.
    pub(crate) async fn release_remediation(&self, id: &str) -> Result<bool> {
        Ok(
            sqlx::query("SELECT remediation FROM releases WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get::<i64, _>(0))
                .transpose()?
                .is_some_and(|v| v != 0),
        )
    }

    /// The ids of the device's newest online failure reports with `reason` above its
    /// quarantine floor and at or after `since`, newest first, at most `limit`.
    async fn failures_since(
        &self,
        device_id: &str,
        reason: &str,
        since: i64,
        limit: u32,
    ) -> Result<Vec<i64>> {
        sqlx::query(
            "SELECT r.id FROM reports r WHERE r.device_id = $1 AND r.reason = $2 \
             AND r.outcome = 'failure' AND r.offline = 0 AND r.at >= $3 \
             AND r.id > (SELECT quarantine_floor FROM devices WHERE id = $1) \
             ORDER BY r.id DESC LIMIT $4",
        )
        .bind(device_id)
        .bind(reason)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    /// Whether the device was ever a member of a campaign for this release (in any state,
    /// as the campaign's release or as the rollback release it was moved to).
    async fn ever_member(&self, device_id: &str, release_id: &str) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM campaign_devices cd JOIN campaigns c ON c.id = cd.campaign_id \
             WHERE cd.device_id = $1 AND (cd.release_id = $2 OR c.release_id = $2) LIMIT 1",
        )
        .bind(device_id)
        .bind(release_id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Stores a report the way `report_insert` does, in no campaign, and returns its id
    /// (the evidence of the never-offered rule).
    async fn report_insert_returning(
        &self,
        device_id: &str,
        r: &StepReport,
        now: i64,
    ) -> Result<i64> {
        Ok(sqlx::query(
            "INSERT INTO reports (device_id, release_id, campaign_id, step, outcome, reason, detail, progress, at, started_at, offline, quarantined) \
             VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8, $9, 0, 1) RETURNING id",
        )
        .bind(device_id)
        .bind(&r.release_id)
        .bind(r.step.name())
        .bind(r.outcome.name())
        .bind(r.reason.as_deref())
        .bind(r.detail.as_deref())
        .bind(r.progress.map(crate::store::to_i64))
        .bind(now)
        .bind(crate::store::clamp_started_at(r.started_at, now))
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?)
    }

    /// The device's reports stored while it was quarantined (or that quarantined it), newest
    /// first, at most `limit`, with their ids.
    pub(crate) async fn flagged_reports(
        &self,
        device_id: &str,
        limit: i64,
    ) -> Result<Vec<(i64, ReportRow)>> {
        crate::store::dynamic(&format!(
            "SELECT id, {} FROM reports WHERE device_id = $1 AND quarantined <> 0 ORDER BY id DESC LIMIT $2",
            crate::store::REPORT_COLS
        ))
        .bind(device_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, crate::store::report_row(r)?)))
        .collect()
    }

    /// Device counts by class and installed sequence number (devices that are not revoked),
    /// and how many are quarantined, never seen and unreachable (not seen since `seen_after`).
    async fn posture_counts(&self, seen_after: i64) -> Result<PostureCounts> {
        let by_version = sqlx::query(
            "SELECT class_id, sequence_number, COUNT(*) FROM devices WHERE revoked = 0 \
             GROUP BY class_id, sequence_number",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<Option<String>, _>(0)?,
                r.try_get::<Option<i64>, _>(1)?.map(to_u64),
                to_u64(r.try_get(2)?),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
        let r = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM devices WHERE revoked = 0 AND quarantined_at IS NOT NULL), \
             (SELECT COUNT(*) FROM devices WHERE revoked = 0 AND last_seen IS NULL), \
             (SELECT COUNT(*) FROM devices WHERE revoked = 0 AND last_seen < $1)",
        )
        .bind(seen_after)
        .fetch_one(&self.pool)
        .await?;
        Ok(PostureCounts {
            by_version,
            quarantined: to_u64(r.try_get(0)?),
            never_seen: to_u64(r.try_get(1)?),
            unreachable: to_u64(r.try_get(2)?),
        })
    }
}

struct PostureCounts {
    by_version: Vec<(Option<String>, Option<u64>, u64)>,
    quarantined: u64,
    never_seen: u64,
    unreachable: u64,
}

/// Whether the device may be offered (and fetch) this release: [`offerable`] on the
/// database's state. One indexed read.
pub(crate) async fn release_allowed(
    state: &AppState,
    device_id: &str,
    release_id: &str,
) -> Result<bool> {
    let (quarantined, remediation) = state.db.offer_gate(device_id, release_id).await?;
    Ok(offerable(quarantined, remediation))
}

/// The devices of a wave (with the release each is at) that a push may wake: [`offerable`]
/// for each. A push carries nothing but "check in now", but a quarantined device is not
/// woken for a release it will not be offered.
pub(crate) async fn pushable(
    state: &AppState,
    members: Vec<(String, String)>,
) -> Result<Vec<String>> {
    let ids: Vec<String> = members.iter().map(|(d, _)| d.clone()).collect();
    let quarantined = state.db.quarantined_among(&ids).await?;
    let mut remediation: HashMap<String, bool> = HashMap::new();
    let mut out = Vec::with_capacity(members.len());
    for (device, release) in members {
        let q = quarantined.contains_key(&device);
        let r = if q {
            match remediation.get(&release) {
                Some(&r) => r,
                None => {
                    let r = state.db.release_remediation(&release).await?;
                    remediation.insert(release, r);
                    r
                }
            }
        } else {
            false
        };
        if offerable(q, r) {
            out.push(device);
        }
    }
    Ok(out)
}

/// The server's own quarantine: writes it (once fleet-wide) and logs it.
async fn trip(
    state: &AppState,
    device_id: &str,
    rule: Rule,
    reason: String,
    evidence: Vec<i64>,
) -> Result<()> {
    let record = QuarantineRecord {
        since: state.now(),
        by: "rule".into(),
        actor: "server".into(),
        rule: Some(rule.name().into()),
        reason,
        evidence,
    };
    let detail = serde_json::json!({
        "by": "rule", "rule": rule.name(), "reason": record.reason, "evidence": record.evidence,
    });
    if state
        .db
        .quarantine_set(device_id, &record, "system", &detail)
        .await?
    {
        tracing::warn!(device = %device_id, rule = rule.name(), reason = %record.reason, "device quarantined");
        metrics::counter!("suitcase_quarantines_total", "rule" => rule.name()).increment(1);
    }
    Ok(())
}

/// Judges a stored online report against the rules (`signature-failures`,
/// `rollback-attempt`).
pub(crate) async fn judge_report(state: &AppState, device_id: &str, r: &StepReport) -> Result<()> {
    if r.offline || r.outcome != Outcome::Failure {
        return Ok(());
    }
    let rules = &state.config.quarantine;
    match r.reason.as_deref() {
        // Manifest §6.2 / RFC 9124 REQ.SEC.AUTHENTIC: the device refused the release's
        // signature, which the server verified at upload.
        Some("signature") if rules.signature_failures > 0 => {
            let window = i64::try_from(rules.signature_window.as_secs()).unwrap_or(i64::MAX);
            let since = state.now().saturating_sub(window);
            let ids = state
                .db
                .failures_since(device_id, "signature", since, rules.signature_failures)
                .await?;
            if ids.len() >= usize::try_from(rules.signature_failures).unwrap_or(usize::MAX) {
                let reason = format!(
                    "{} signature failures within {} s (releases the server verified against its registered keys)",
                    ids.len(),
                    window
                );
                trip(state, device_id, Rule::SignatureFailures, reason, ids).await?;
            }
        }
        // Manifest §8.4.2 (anti-rollback): a refusal as older than installed, of a release
        // newer than every component the device's inventory reports.
        Some("sequence-rollback") if rules.rollback_attempt => {
            let Some(offered) = state
                .db
                .release_get(&r.release_id)
                .await?
                .map(|rel| rel.sequence_number)
            else {
                return Ok(());
            };
            state.devices.flush(state).await;
            let installed = state
                .db
                .device_get(device_id)
                .await?
                .and_then(|d| d.sequence_number);
            if let Some(installed) = installed
                && offered > installed
            {
                let ids = state
                    .db
                    .failures_since(device_id, "sequence-rollback", i64::MIN, 1)
                    .await?;
                let reason = format!(
                    "refused release sequence {offered} as a rollback, but its check-in reports sequence {installed} installed"
                );
                trip(state, device_id, Rule::RollbackAttempt, reason, ids).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// An online report on a release the device was never offered: if it was never even a
/// campaign member for it, the report is kept as evidence (flagged) and the device
/// quarantined. A member whose offer was withdrawn (its wave not open, the campaign
/// cancelled) is not suspicious and is only answered `409 not-offered`.
pub(crate) async fn judge_not_offered(
    state: &AppState,
    dev: &crate::devices::DeviceEntry,
    r: &StepReport,
) -> Result<()> {
    if r.offline || !state.config.quarantine.never_offered {
        return Ok(());
    }
    if state.db.ever_member(&dev.id, &r.release_id).await? {
        return Ok(());
    }
    // Already quarantined: nothing more to keep (bounded growth).
    if state
        .db
        .quarantine_of(&dev.id)
        .await?
        .is_some_and(|q| q.record.is_some())
    {
        return Ok(());
    }
    let id = state
        .db
        .report_insert_returning(&dev.id, r, state.now())
        .await?;
    let reason = format!(
        "reported step {} {} on release {:?}, which was never offered to it",
        r.step.name(),
        r.outcome.name(),
        r.release_id
    );
    trip(state, &dev.id, Rule::NeverOffered, reason, vec![id]).await
}

/// Counts the fleet's posture. "The newest release for a class" is the highest sequence
/// number among complete, not archived releases whose manifest names the class id.
pub(crate) async fn posture(state: &AppState) -> Result<FleetPosture> {
    state.devices.flush(state).await;
    let now = state.now();
    let window = state.config.quarantine.unreachable_after.as_secs();
    let mut newest: HashMap<String, u64> = HashMap::new();
    for r in state.db.release_list().await? {
        // A trust update's sequence number counts trust states, not firmware versions: it
        // never makes a device out of date (docs/server.md §8).
        if r.archived || !r.complete() || r.is_trust_update() {
            continue;
        }
        for class in r.summary.class_ids() {
            let e = newest.entry(class.to_ascii_lowercase()).or_insert(0);
            *e = (*e).max(r.sequence_number);
        }
    }
    let counts = state
        .db
        .posture_counts(now.saturating_sub(i64::try_from(window).unwrap_or(i64::MAX)))
        .await?;
    let mut p = FleetPosture {
        devices: 0,
        up_to_date: 0,
        out_of_date: 0,
        unknown: 0,
        quarantined: counts.quarantined,
        unreachable: counts.unreachable,
        never_seen: counts.never_seen,
        unreachable_after_seconds: window,
        at: now,
    };
    for (class, sequence, n) in counts.by_version {
        p.devices += n;
        match (class, sequence) {
            (Some(class), Some(seq)) => match newest.get(&class.to_ascii_lowercase()) {
                Some(&top) if seq < top => p.out_of_date += n,
                _ => p.up_to_date += n,
            },
            _ => p.unknown += n,
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_remediation_reaches_a_quarantined_device() {
        assert!(offerable(false, false));
        assert!(offerable(false, true));
        assert!(!offerable(true, false));
        assert!(offerable(true, true));
    }
}

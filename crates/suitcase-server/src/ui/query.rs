//! The console's read queries, over the same tables as the API. Each is bounded (LIMIT) and
//! uses an index of migration 5 or an earlier one (docs/console.md, "Fleet at 100,000").

use anyhow::Result;
use sqlx::Row as _;
use suitcase_protocol::Filter;

use crate::db::Db;
use crate::store::{
    AUDIT_COLS, DEVICE_COLS, DeviceRow, REPORT_COLS, ReportRow, Val, audit_row, bind_all,
    device_row, dynamic, filter_sql, like_escaped, report_row, to_i64,
};
use suitcase_protocol::AuditEntry;

/// The fleet's counts.
#[derive(Debug, Default)]
pub(crate) struct FleetCounts {
    pub(crate) total: i64,
    pub(crate) decommissioned: i64,
    pub(crate) never_seen: i64,
    pub(crate) online: i64,
    pub(crate) by_class: Vec<(Option<String>, i64)>,
    pub(crate) by_version: Vec<(Option<i64>, i64)>,
    pub(crate) by_tag: Vec<(String, i64)>,
    pub(crate) by_update: Vec<(String, i64)>,
}

/// How the device table is narrowed (all optional, all checked by the page first).
#[derive(Debug, Default, Clone)]
pub(crate) struct DeviceQuery {
    /// Part of the name (case-insensitive).
    pub(crate) q: Option<String>,
    /// online, offline, never, decommissioned; default: every device not decommissioned.
    pub(crate) status: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) class: Option<String>,
    pub(crate) version: Option<i64>,
    /// Not seen for at least this many hours.
    pub(crate) silent_hours: Option<i64>,
    /// Keyset: names after this one.
    pub(crate) after: Option<String>,
    pub(crate) limit: i64,
}

/// `LIKE` pattern for "contains" (case-insensitive, against a lowered column).
fn contains_pattern(s: &str) -> String {
    format!("%{}%", like_escaped(&s.to_lowercase()))
}

impl Db {
    /// Counts by status, class, version, tag and live update state.
    pub(crate) async fn ui_fleet_counts(&self, online_after: i64) -> Result<FleetCounts> {
        let r = sqlx::query(
            "SELECT COUNT(*), \
             COALESCE(SUM(CASE WHEN revoked <> 0 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN revoked = 0 AND last_seen IS NULL THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN revoked = 0 AND last_seen >= $1 THEN 1 ELSE 0 END), 0) \
             FROM devices",
        )
        .bind(online_after)
        .fetch_one(&self.pool)
        .await?;
        let mut c = FleetCounts {
            total: r.try_get(0)?,
            decommissioned: r.try_get(1)?,
            never_seen: r.try_get(2)?,
            online: r.try_get(3)?,
            ..FleetCounts::default()
        };
        for r in sqlx::query(
            "SELECT class_id, COUNT(*) FROM devices WHERE revoked = 0 GROUP BY class_id ORDER BY 2 DESC, 1 LIMIT 20",
        )
        .fetch_all(&self.pool)
        .await?
        {
            c.by_class.push((r.try_get(0)?, r.try_get(1)?));
        }
        for r in sqlx::query(
            "SELECT sequence_number, COUNT(*) FROM devices WHERE revoked = 0 GROUP BY sequence_number ORDER BY 2 DESC, 1 LIMIT 20",
        )
        .fetch_all(&self.pool)
        .await?
        {
            c.by_version.push((r.try_get(0)?, r.try_get(1)?));
        }
        for r in sqlx::query(
            "SELECT tag, COUNT(*) FROM device_tags GROUP BY tag ORDER BY 2 DESC, 1 LIMIT 20",
        )
        .fetch_all(&self.pool)
        .await?
        {
            c.by_tag.push((r.try_get(0)?, r.try_get(1)?));
        }
        for r in dynamic(&format!(
            "SELECT cd.state, COUNT(*) FROM campaign_devices cd JOIN campaigns c ON c.id = cd.campaign_id \
             WHERE c.state IN ({}) GROUP BY cd.state ORDER BY 1",
            crate::engine::sql_live_campaigns()
        ))
        .fetch_all(&self.pool)
        .await?
        {
            c.by_update.push((r.try_get(0)?, r.try_get(1)?));
        }
        Ok(c)
    }

    /// One page of the device table, by name (keyset pagination: `name > after`, on the
    /// unique index of `name`), at most `q.limit + 1` rows so the caller knows whether there
    /// is a next page.
    pub(crate) async fn ui_devices(
        &self,
        q: &DeviceQuery,
        online_after: i64,
        now: i64,
    ) -> Result<Vec<DeviceRow>> {
        let mut conds: Vec<String> = Vec::new();
        let mut vals: Vec<Val> = Vec::new();
        let p = |vals: &mut Vec<Val>, v: Val| {
            vals.push(v);
            format!("${}", vals.len())
        };
        match q.status.as_deref() {
            Some("online") => {
                let x = p(&mut vals, Val::I(online_after));
                conds.push(format!("d.revoked = 0 AND d.last_seen >= {x}"));
            }
            Some("offline") => {
                let x = p(&mut vals, Val::I(online_after));
                conds.push(format!("d.revoked = 0 AND d.last_seen < {x}"));
            }
            Some("never") => conds.push("d.revoked = 0 AND d.last_seen IS NULL".into()),
            Some("decommissioned") => conds.push("d.revoked <> 0".into()),
            _ => conds.push("d.revoked = 0".into()),
        }
        if let Some(s) = &q.q {
            let x = p(&mut vals, Val::S(contains_pattern(s)));
            conds.push(format!("LOWER(d.name) LIKE {x} ESCAPE '\\'"));
        }
        if let Some(t) = &q.tag {
            let x = p(&mut vals, Val::S(t.clone()));
            conds.push(format!(
                "EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag = {x})"
            ));
        }
        if let Some(g) = &q.group {
            let x = p(&mut vals, Val::S(g.clone()));
            conds.push(format!(
                "EXISTS (SELECT 1 FROM group_members m WHERE m.device_id = d.id AND m.group_name = {x})"
            ));
        }
        if let Some(c) = &q.class {
            if c == "none" {
                conds.push("d.class_id IS NULL".into());
            } else {
                let x = p(&mut vals, Val::S(c.clone()));
                conds.push(format!("d.class_id = {x}"));
            }
        }
        if let Some(v) = q.version {
            let x = p(&mut vals, Val::I(v));
            conds.push(format!("d.sequence_number = {x}"));
        }
        if let Some(h) = q.silent_hours {
            let x = p(&mut vals, Val::I(now - h * 3600));
            conds.push(format!("(d.last_seen IS NULL OR d.last_seen < {x})"));
        }
        if let Some(a) = &q.after {
            let x = p(&mut vals, Val::S(a.clone()));
            conds.push(format!("d.name > {x}"));
        }
        let lim = p(&mut vals, Val::I(q.limit + 1));
        // The list does not show inventories: not read (`inventory` is None in each row).
        let cols = DEVICE_COLS.replace("inventory", "CAST(NULL AS TEXT) AS inventory");
        let sql = format!(
            "SELECT {cols} FROM devices d WHERE {} ORDER BY d.name LIMIT {lim}",
            conds.join(" AND ")
        );
        let rows = bind_all(dynamic(&sql), &vals).fetch_all(&self.pool).await?;
        rows.iter().map(device_row).collect()
    }

    /// A device's reports, oldest first, at most `limit` (the newest ones if there are more).
    pub(crate) async fn ui_reports(&self, device_id: &str, limit: i64) -> Result<Vec<ReportRow>> {
        let mut rows: Vec<ReportRow> = dynamic(&format!(
            "SELECT {REPORT_COLS} FROM reports WHERE device_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(device_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(report_row)
        .collect::<Result<_>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// The audit log, newest first, before id `before`, optionally one actor and actions that
    /// start with a prefix.
    pub(crate) async fn ui_audit(
        &self,
        before: Option<i64>,
        actor: Option<&str>,
        action: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let mut conds = vec!["1 = 1".to_owned()];
        let mut vals = Vec::new();
        if let Some(b) = before {
            vals.push(Val::I(b));
            conds.push(format!("id < ${}", vals.len()));
        }
        if let Some(a) = actor {
            vals.push(Val::S(a.to_owned()));
            conds.push(format!("actor = ${}", vals.len()));
        }
        if let Some(a) = action {
            vals.push(Val::S(format!("{}%", like_escaped(a))));
            conds.push(format!("action LIKE ${} ESCAPE '\\'", vals.len()));
        }
        vals.push(Val::I(limit + 1));
        let sql = format!(
            "SELECT {AUDIT_COLS} FROM audit WHERE {} ORDER BY id DESC LIMIT ${}",
            conds.join(" AND "),
            vals.len()
        );
        bind_all(dynamic(&sql), &vals)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_row)
            .collect()
    }

    /// How many of the devices a campaign filter matches (of the release's classes) already
    /// run this sequence number or a newer one.
    pub(crate) async fn ui_count_at_or_above(
        &self,
        filter: &Filter,
        classes: &[String],
        sequence: u64,
    ) -> Result<i64> {
        let (mut cond, mut vals) = filter_sql(filter);
        if !classes.is_empty() {
            let ps: Vec<String> = classes
                .iter()
                .map(|c| {
                    vals.push(Val::S(c.clone()));
                    format!("${}", vals.len())
                })
                .collect();
            cond.push_str(&format!(
                " AND (d.class_id IS NULL OR d.class_id IN ({}))",
                ps.join(",")
            ));
        }
        vals.push(Val::I(to_i64(sequence)));
        let sql = format!(
            "SELECT COUNT(*) FROM devices d WHERE {cond} AND d.sequence_number >= ${}",
            vals.len()
        );
        Ok(bind_all(dynamic(&sql), &vals)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// Names of these device ids (at most a few hundred), in the ids' order.
    pub(crate) async fn ui_names(&self, ids: &[String]) -> Result<Vec<(String, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ps: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let vals: Vec<Val> = ids.iter().map(|i| Val::S(i.clone())).collect();
        let sql = format!(
            "SELECT id, name FROM devices WHERE id IN ({})",
            ps.join(",")
        );
        let mut map = std::collections::HashMap::new();
        for r in bind_all(dynamic(&sql), &vals).fetch_all(&self.pool).await? {
            map.insert(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?);
        }
        Ok(ids
            .iter()
            .map(|i| (i.clone(), map.get(i).cloned().unwrap_or_else(|| i.clone())))
            .collect())
    }
}

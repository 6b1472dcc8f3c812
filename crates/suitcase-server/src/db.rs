//! The database: SQLite (the zero-configuration default) or PostgreSQL (for scale), behind one
//! sqlx `Any` pool. The SQL is shared (`$n` placeholders, BIGINT, TEXT, ON CONFLICT and
//! RETURNING work in both); only the schema differs, so each backend has its own migration
//! list, applied in order and recorded in `schema_migrations`.

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions as _, Executor as _};

/// Which SQL backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (bundled): one file, no server.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The database handle.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
}

/// The advisory-lock key nodes take turns on to migrate (PostgreSQL).
const MIGRATION_LOCK: i64 = 0x5375_6974_6361_0002;

/// Migrations: (version, statements). Never edit a released migration; add one.
fn migrations(dialect: Dialect) -> Vec<(i64, String)> {
    let (serial, blob) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"),
        Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA"),
    };
    let v1 = format!(
        "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, revoked BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL);
CREATE TABLE author_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, kid TEXT NOT NULL,
    key_bytes {blob} NOT NULL, post_quantum BIGINT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE releases (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, sequence_number BIGINT NOT NULL,
    manifest_digest TEXT NOT NULL UNIQUE, summary TEXT NOT NULL, signed_by TEXT NOT NULL,
    envelope {blob} NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE payloads (
    release_id TEXT NOT NULL, idx BIGINT NOT NULL, uri TEXT NOT NULL, object_key TEXT,
    size BIGINT, sha256 TEXT, PRIMARY KEY (release_id, idx));
CREATE TABLE devices (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
    cert_sha256 TEXT UNIQUE, push_id TEXT NOT NULL UNIQUE, vendor_id TEXT, class_id TEXT,
    sequence_number BIGINT, inventory TEXT, last_seen BIGINT,
    revoked BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL);
CREATE TABLE device_tags (device_id TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (device_id, tag));
CREATE INDEX device_tags_tag ON device_tags (tag);
CREATE TABLE fleet_groups (name TEXT PRIMARY KEY, push_id TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL);
CREATE TABLE group_members (
    group_name TEXT NOT NULL, device_id TEXT NOT NULL, PRIMARY KEY (group_name, device_id));
CREATE INDEX group_members_device ON group_members (device_id);
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, release_id TEXT NOT NULL, spec TEXT NOT NULL,
    state TEXT NOT NULL, state_reason TEXT, opened_waves BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE campaign_devices (
    campaign_id TEXT NOT NULL, device_id TEXT NOT NULL, wave BIGINT NOT NULL, state TEXT NOT NULL,
    release_id TEXT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (campaign_id, device_id));
CREATE INDEX campaign_devices_device ON campaign_devices (device_id);
CREATE TABLE reports (
    id {serial}, device_id TEXT NOT NULL, release_id TEXT NOT NULL, campaign_id TEXT,
    step TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT, detail TEXT, progress BIGINT,
    suit_report {blob}, at BIGINT NOT NULL);
CREATE INDEX reports_device ON reports (device_id, release_id);
CREATE TABLE audit (
    id {serial}, at BIGINT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL)
"
    );
    let v2 = "
CREATE TABLE deltas (
    id TEXT PRIMARY KEY, release_id TEXT NOT NULL, idx BIGINT NOT NULL,
    source_release_id TEXT NOT NULL, source_sha256 TEXT NOT NULL, object_key TEXT NOT NULL,
    size BIGINT NOT NULL, sha256 TEXT NOT NULL, ram_bound BIGINT NOT NULL,
    full_size BIGINT NOT NULL, created_at BIGINT NOT NULL,
    UNIQUE (release_id, idx, source_sha256))
"
    .to_owned();
    // One payload upload at a time: the upload that claims the row streams, the others get a
    // 409. A claim is kept fresh while its upload runs, so a crashed server's claim expires.
    let v3 = "
ALTER TABLE payloads ADD COLUMN upload_key TEXT;
ALTER TABLE payloads ADD COLUMN upload_touched BIGINT
"
    .to_owned();
    // The hawkBit DDI API (docs/ddi.md): integer action ids (SWUpdate reads them with
    // json_object_get_int), whether each action is closed (410 on later feedback), the
    // controller attributes a device sends with configData, and the SHA-1 and MD5 of a
    // payload that DDI clients check, computed on first DDI use and kept.
    let v4 = format!(
        "
CREATE TABLE ddi_actions (
    id {serial}, campaign_id TEXT NOT NULL, device_id TEXT NOT NULL, release_id TEXT NOT NULL,
    closed BIGINT NOT NULL DEFAULT 0, served_skip BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL, closed_at BIGINT,
    UNIQUE (campaign_id, device_id, release_id));
CREATE INDEX ddi_actions_device ON ddi_actions (device_id);
CREATE TABLE device_attributes (
    device_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (device_id, key));
ALTER TABLE payloads ADD COLUMN sha1 TEXT;
ALTER TABLE payloads ADD COLUMN md5 TEXT
"
    );
    // The operator console (docs/console.md): the fleet page filters and counts by class,
    // version and last check-in, and pages by name, at 100,000 devices; the audit page pages
    // newest first by id (its primary key).
    let v5 = "
CREATE INDEX devices_class ON devices (class_id, name);
CREATE INDEX devices_sequence ON devices (sequence_number, name);
CREATE INDEX devices_last_seen ON devices (last_seen);
CREATE INDEX campaign_devices_state ON campaign_devices (campaign_id, state);
CREATE INDEX reports_device_id ON reports (device_id, id)
"
    .to_owned();
    // Archived releases stay (their campaigns' history refers to them) but no new campaign
    // may use them.
    let v6 = "ALTER TABLE releases ADD COLUMN archived BIGINT NOT NULL DEFAULT 0".to_owned();
    // Step reports carry when the device began the step (docs/server.md §3), so durations
    // are exact.
    let v7 = "ALTER TABLE reports ADD COLUMN started_at BIGINT".to_owned();
    // The end of a failing device's log, with the report of the failed step (at most
    // `limits::REPORT_LOG_MAX` bytes).
    let v8 = "ALTER TABLE reports ADD COLUMN log TEXT".to_owned();
    // Reports of an install from an offline bundle (docs/bundles.md), sent when the device
    // reached the server again: kept in its timeline, counted by no campaign.
    let v9 = "ALTER TABLE reports ADD COLUMN offline BIGINT NOT NULL DEFAULT 0".to_owned();
    // The campaign's rate limit lives in its row (the generic cell rate algorithm's
    // theoretical arrival time, in milliseconds), so that every node takes starts from the
    // same budget (docs/server.md §7).
    let v10 = "ALTER TABLE campaigns ADD COLUMN rate_tat BIGINT".to_owned();
    // A report sent again (its answer lost) is stored once, also when the two copies reach
    // two nodes at the same time: a unique index the insert meets with ON CONFLICT DO
    // NOTHING. Copies that an older server stored twice are removed first, the first kept.
    let v11 = "
DELETE FROM reports WHERE outcome <> 'in-progress' AND started_at IS NOT NULL AND EXISTS (
    SELECT 1 FROM reports o WHERE o.device_id = reports.device_id
    AND o.release_id = reports.release_id AND o.step = reports.step
    AND o.outcome = reports.outcome AND o.started_at = reports.started_at
    AND o.offline = reports.offline AND o.id < reports.id);
CREATE UNIQUE INDEX reports_once ON reports (device_id, release_id, step, outcome, started_at, offline)
    WHERE outcome <> 'in-progress' AND started_at IS NOT NULL
"
    .to_owned();
    // Quarantine (RFC 8240 §9, docs/server.md §8): a device's quarantine (since when, and the
    // record of who or which rule put it there, with the evidence), the report id below which
    // the automatic rules no longer count (set when it is released), releases marked
    // remediation (the only ones a quarantined device is offered), and reports flagged as sent
    // while the device was quarantined. The rules count a device's failures by reason and time.
    let v12 = "
ALTER TABLE devices ADD COLUMN quarantined_at BIGINT;
ALTER TABLE devices ADD COLUMN quarantine TEXT;
ALTER TABLE devices ADD COLUMN quarantine_floor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN remediation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reports ADD COLUMN quarantined BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_quarantined ON devices (quarantined_at);
CREATE INDEX reports_failures ON reports (device_id, reason, id)
"
    .to_owned();
    // A release's kind, decided at upload (docs/server.md §4, docs/trust.md): `trust-update`
    // when the envelope names the trust store component, else `release`. Releases stored
    // before were uploaded as firmware and stay `release`.
    let v13 = "ALTER TABLE releases ADD COLUMN kind TEXT NOT NULL DEFAULT 'release'".to_owned();
    // The fleet's trust state in force (docs/trust.md, "The server and trust updates"): one
    // row (id 1), the trust document an admin registered and every trust update accepted at
    // upload since advanced, with the trust update that set it. A trust update's upload
    // advances it in the transaction that stores the release, conditional on the sequence it
    // was checked against, so two nodes cannot both advance from the same state.
    let v14 = format!(
        "
CREATE TABLE trust_state (
    id BIGINT PRIMARY KEY CHECK (id = 1), sequence BIGINT NOT NULL, document {blob} NOT NULL,
    release_id TEXT, set_by TEXT NOT NULL, updated_at BIGINT NOT NULL)
"
    );
    vec![
        (1, v1),
        (2, v2),
        (3, v3),
        (4, v4),
        (5, v5),
        (6, v6),
        (7, v7),
        (8, v8),
        (9, v9),
        (10, v10),
        (11, v11),
        (12, v12),
        (13, v13),
        (14, v14),
    ]
}

impl Db {
    /// Connects and migrates. `url` is `sqlite://PATH` or `postgres://...`.
    pub(crate) async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            bail!("unsupported database URL {url:?}: use sqlite://FILE or postgres://USER@HOST/DB");
        };
        let options = AnyConnectOptions::from_str(url)
            .with_context(|| format!("bad database URL {}", redact(url)))?
            .disable_statement_logging();
        let max = match dialect {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL: readers do not block the writer; NORMAL sync is durable across
                        // process crashes (the case the server must survive) and fast.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the database {}", redact(url)))?;
        let db = Self { pool, dialect };
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the migrations this database lacks. On PostgreSQL, nodes starting together
    /// take turns: a session advisory lock is held on one connection while it migrates (and
    /// released with it, also if the node dies), so each migration is applied once.
    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .context("cannot take the migration lock")?;
            // Closed rather than returned to the pool: that releases the lock.
            conn.close_on_drop();
        }
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .context("cannot create schema_migrations")?;
        for (version, sql) in migrations(self.dialect) {
            let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?;
            if done.is_some() {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                // Migration text is a constant of this module.
                tx.execute(sqlx::AssertSqlSafe(stmt.to_owned()))
                    .await
                    .with_context(|| format!("migration {version} failed at: {stmt}"))?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(crate::unix_now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, "database migrated");
        }
        Ok(())
    }
}

/// A database URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

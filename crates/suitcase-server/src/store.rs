//! Every query the server makes, as methods on [`Db`]. The same SQL runs on SQLite and
//! PostgreSQL.

use anyhow::{Context, Result};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row as _};
use suitcase_host::summary::ReleaseSummary;
use suitcase_protocol::{
    AuditEntry, CampaignCreate, CampaignState, Filter, Role, StepReport, WaveProgress,
};

use crate::db::Db;
use crate::engine::{self, CEvent, MState};

/// A bind value for dynamically built queries.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    S(String),
    I(i64),
}

pub(crate) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    vals: &'q [Val],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for v in vals {
        q = match v {
            Val::S(s) => q.bind(s.as_str()),
            Val::I(i) => q.bind(*i),
        };
    }
    q
}

/// A query whose text is built at run time. Every such text in this module is assembled only
/// from constant fragments and numbered placeholders (`$n`); values always travel as bind
/// parameters, never in the SQL text.
pub(crate) fn dynamic<'q>(sql: &str) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    sqlx::query(AssertSqlSafe(sql.to_owned()))
}

/// `s` with the `LIKE` pattern characters escaped (for `ESCAPE '\\'`).
pub(crate) fn like_escaped(s: &str) -> String {
    let mut p = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// A management token.
#[derive(Clone, Debug)]
pub(crate) struct TokenRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) revoked: bool,
}

/// What [`Db::token_revoke_guarded`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Revoke {
    Revoked,
    AlreadyRevoked,
    LastAdmin,
    NoSuchToken,
}

fn token_row(r: &AnyRow) -> Result<TokenRow> {
    let role: String = r.try_get("role")?;
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: Role::from_name(&role).unwrap_or(Role::Viewer),
        revoked: r.try_get::<i64, _>("revoked")? != 0,
    })
}

impl Db {
    pub(crate) async fn token_create(
        &self,
        id: &str,
        name: &str,
        role: Role,
        hash: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(name)
        .bind(role.name())
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        sqlx::query("SELECT id, name, role, revoked FROM tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(token_row)
            .transpose()
    }

    pub(crate) async fn token_list(&self) -> Result<Vec<TokenRow>> {
        sqlx::query("SELECT id, name, role, revoked FROM tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token_row)
            .collect()
    }

    pub(crate) async fn token_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM tokens")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// Revokes a token unless it is the last admin token that works, atomically: two admins
    /// revoking each other at the same moment cannot both succeed. On PostgreSQL the working
    /// admin rows are locked first (`FOR UPDATE`), so the second revocation waits and then
    /// counts what the first left; on SQLite the single conditional `UPDATE` runs under the
    /// database's one write lock.
    pub(crate) async fn token_revoke_guarded(&self, id: &str) -> Result<Revoke> {
        let mut tx = self.pool.begin().await?;
        if self.dialect == crate::db::Dialect::Postgres {
            sqlx::query("SELECT id FROM tokens WHERE role = 'admin' AND revoked = 0 FOR UPDATE")
                .fetch_all(&mut *tx)
                .await?;
        }
        let done = sqlx::query(
            "UPDATE tokens SET revoked = 1 WHERE id = $1 AND revoked = 0 AND (role <> 'admin' OR \
             (SELECT COUNT(*) FROM tokens o WHERE o.role = 'admin' AND o.revoked = 0 AND o.id <> $1) > 0)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let outcome = if done {
            Revoke::Revoked
        } else {
            match sqlx::query("SELECT role, revoked FROM tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            {
                None => Revoke::NoSuchToken,
                Some(r) if r.try_get::<i64, _>(1)? != 0 => Revoke::AlreadyRevoked,
                Some(_) => Revoke::LastAdmin,
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// How many admin tokens are not revoked.
    pub(crate) async fn admin_working_count(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM tokens WHERE role = 'admin' AND revoked = 0")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Author keys
// ---------------------------------------------------------------------------------------------

/// The trust state an upload was checked against, for [`Db::release_create`].
#[derive(Clone, Debug)]
pub(crate) struct TrustGuard {
    /// The sequence number of the state in force the upload was checked against.
    pub(crate) expected: u64,
    /// That state's document: the compare-and-set is on both, so a state an admin removed
    /// and replaced by another document with the same sequence meanwhile is a change too.
    pub(crate) expected_document: Vec<u8>,
    /// For a trust update: the new state's sequence number and document.
    pub(crate) next: Option<(u64, Vec<u8>)>,
}

/// The trust state in force changed between an upload's check and its insert.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrustStateMoved;

impl core::fmt::Display for TrustStateMoved {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the trust state in force changed while this upload was checked")
    }
}

impl std::error::Error for TrustStateMoved {}

/// A release [`Db::release_delete`] refused: a trust update the registered trust state in
/// force was advanced through (docs/trust.md, "The server and trust updates").
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrustUpdateInForce;

impl core::fmt::Display for TrustUpdateInForce {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the release is a trust update of the trust state in force")
    }
}

impl std::error::Error for TrustUpdateInForce {}

/// The fleet's registered trust state (docs/trust.md, "The server and trust updates").
#[derive(Clone, Debug)]
pub(crate) struct TrustRow {
    pub(crate) sequence: u64,
    /// The trust document (`TrustState::encode`).
    pub(crate) document: Vec<u8>,
    /// The trust update that set it; `None` for the state an admin registered.
    pub(crate) release_id: Option<String>,
    /// The token that registered the first state.
    pub(crate) set_by: String,
    pub(crate) updated_at: i64,
}

impl Db {
    pub(crate) async fn trust_state(&self) -> Result<Option<TrustRow>> {
        sqlx::query(
            "SELECT sequence, document, release_id, set_by, updated_at FROM trust_state WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(TrustRow {
                sequence: u64::try_from(r.try_get::<i64, _>("sequence")?)?,
                document: r.try_get("document")?,
                release_id: r.try_get("release_id")?,
                set_by: r.try_get("set_by")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    /// Registers the trust state, unless one is registered: `false` then.
    pub(crate) async fn trust_state_register(&self, t: &TrustRow) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO trust_state (id, sequence, document, release_id, set_by, updated_at) VALUES (1, $1, $2, NULL, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(to_i64(t.sequence))
        .bind(&t.document)
        .bind(&t.set_by)
        .bind(t.updated_at)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Removes the registered trust state: `false` if there was none.
    pub(crate) async fn trust_state_remove(&self) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM trust_state WHERE id = 1")
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }
}

/// A registered release-signing key.
#[derive(Clone, Debug)]
pub(crate) struct KeyRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) kid: String,
    pub(crate) key_bytes: Vec<u8>,
    pub(crate) post_quantum: bool,
}

impl Db {
    pub(crate) async fn key_create(&self, k: &KeyRow, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO author_keys (id, name, kind, kid, key_bytes, post_quantum, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.kind)
        .bind(&k.kid)
        .bind(&k.key_bytes)
        .bind(i64::from(k.post_quantum))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn key_list(&self) -> Result<Vec<KeyRow>> {
        sqlx::query(
            "SELECT id, name, kind, kid, key_bytes, post_quantum FROM author_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(KeyRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                kind: r.try_get("kind")?,
                kid: r.try_get("kid")?,
                key_bytes: r.try_get("key_bytes")?,
                post_quantum: r.try_get::<i64, _>("post_quantum")? != 0,
            })
        })
        .collect()
    }

    pub(crate) async fn key_delete(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM author_keys WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }
}

// ---------------------------------------------------------------------------------------------
// Releases and payloads
// ---------------------------------------------------------------------------------------------

/// A stored payload.
#[derive(Clone, Debug)]
pub(crate) struct PayloadRow {
    pub(crate) idx: u32,
    pub(crate) uri: String,
    pub(crate) object_key: Option<String>,
    pub(crate) size: Option<u64>,
    pub(crate) sha256: Option<String>,
}

/// A stored release (without its envelope bytes).
#[derive(Clone, Debug)]
pub(crate) struct ReleaseRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) sequence_number: u64,
    pub(crate) manifest_digest: String,
    pub(crate) summary: ReleaseSummary,
    pub(crate) signed_by: Vec<String>,
    pub(crate) envelope_bytes: u64,
    pub(crate) created_by: String,
    pub(crate) created_at: i64,
    pub(crate) payloads: Vec<PayloadRow>,
    /// Offered to no new campaign.
    pub(crate) archived: bool,
    /// The only kind of release a quarantined device is offered (quarantine.rs).
    pub(crate) remediation: bool,
    /// `release` or `trust-update` (suitcase_protocol::RELEASE_KIND_*), decided at upload.
    pub(crate) kind: String,
}

impl ReleaseRow {
    /// A trust update (the envelope names the trust store), not firmware.
    pub(crate) fn is_trust_update(&self) -> bool {
        self.kind == suitcase_protocol::RELEASE_KIND_TRUST_UPDATE
    }

    /// Every payload is uploaded.
    pub(crate) fn complete(&self) -> bool {
        self.payloads.iter().all(|p| p.object_key.is_some())
    }

    /// What a device downloads in all: the envelope and every payload of known size.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.payloads
            .iter()
            .filter_map(|p| p.size)
            .fold(self.envelope_bytes, u64::saturating_add)
    }
}

const RELEASE_COLS: &str = "id, name, sequence_number, manifest_digest, summary, signed_by, created_by, created_at, LENGTH(envelope) AS envelope_bytes, archived, remediation, kind";

impl Db {
    /// Stores a release. With `trust`, in the same transaction, the trust state in force is
    /// checked to be still the one the upload was checked against (and, for a trust update,
    /// advanced to the new state); if another upload changed it meanwhile nothing is stored
    /// and the error is [`TrustStateMoved`]. Without `trust` (the upload was checked with no
    /// state registered) the same error if a state was registered meanwhile.
    pub(crate) async fn release_create(
        &self,
        r: &ReleaseRow,
        envelope: &[u8],
        uris: &[String],
        trust: Option<&TrustGuard>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if trust.is_none() && self.dialect == crate::db::Dialect::Postgres {
            // Checked with no state registered: a registration (an insert) waits for this
            // commit, so the read below sees one committed before it, and none comes after.
            sqlx::query("LOCK TABLE trust_state IN SHARE MODE")
                .execute(&mut *tx)
                .await?;
        }
        if let Some(g) = trust {
            // One conditional write on the state's row: on PostgreSQL it locks the row until
            // the commit, on SQLite it takes the database's write lock, so a concurrent trust
            // update (or a concurrent release checked against the old state) waits and then
            // finds the sequence moved. `sequence = sequence` still counts as a matched row.
            let q = match &g.next {
                Some((sequence, document)) => sqlx::query(
                    "UPDATE trust_state SET sequence = $1, document = $2, release_id = $3, updated_at = $4 WHERE id = 1 AND sequence = $5 AND document = $6",
                )
                .bind(to_i64(*sequence))
                .bind(document.as_slice())
                .bind(&r.id)
                .bind(r.created_at),
                None => sqlx::query(
                    "UPDATE trust_state SET sequence = sequence WHERE id = 1 AND sequence = $1 AND document = $2",
                ),
            };
            let n = q
                .bind(to_i64(g.expected))
                .bind(g.expected_document.as_slice())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n != 1 {
                return Err(TrustStateMoved.into());
            }
        }
        sqlx::query(
            "INSERT INTO releases (id, name, sequence_number, manifest_digest, summary, signed_by, envelope, created_by, created_at, remediation, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&r.id)
        .bind(&r.name)
        .bind(to_i64(r.sequence_number))
        .bind(&r.manifest_digest)
        .bind(serde_json::to_string(&r.summary)?)
        .bind(serde_json::to_string(&r.signed_by)?)
        .bind(envelope)
        .bind(&r.created_by)
        .bind(r.created_at)
        // The remediation mark is written with the release, never after it: a crash cannot
        // leave an unmarked release that the upload's audit entry calls remediation.
        .bind(i64::from(r.remediation))
        .bind(&r.kind)
        .execute(&mut *tx)
        .await?;
        if trust.is_none()
            && sqlx::query("SELECT 1 FROM trust_state WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?
                .is_some()
        {
            // Checked with no state registered, and one was registered meanwhile (on SQLite
            // the insert above holds the write lock, so the read is the state at the commit).
            return Err(TrustStateMoved.into());
        }
        for (i, uri) in uris.iter().enumerate() {
            sqlx::query("INSERT INTO payloads (release_id, idx, uri) VALUES ($1, $2, $3)")
                .bind(&r.id)
                .bind(i64::try_from(i)?)
                .bind(uri)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn release_by_digest(&self, digest: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query("SELECT id FROM releases WHERE manifest_digest = $1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get::<String, _>(0))
                .transpose()?,
        )
    }

    async fn payloads_of(&self, release_id: &str) -> Result<Vec<PayloadRow>> {
        sqlx::query(
            "SELECT idx, uri, object_key, size, sha256 FROM payloads WHERE release_id = $1 ORDER BY idx",
        )
        .bind(release_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(PayloadRow {
                idx: u32::try_from(r.try_get::<i64, _>("idx")?)?,
                uri: r.try_get("uri")?,
                object_key: r.try_get("object_key")?,
                size: r.try_get::<Option<i64>, _>("size")?.map(to_u64),
                sha256: r.try_get("sha256")?,
            })
        })
        .collect()
    }

    async fn release_row(&self, r: &AnyRow) -> Result<ReleaseRow> {
        let id: String = r.try_get("id")?;
        let summary: String = r.try_get("summary")?;
        let signed_by: String = r.try_get("signed_by")?;
        Ok(ReleaseRow {
            payloads: self.payloads_of(&id).await?,
            id,
            name: r.try_get("name")?,
            sequence_number: to_u64(r.try_get("sequence_number")?),
            manifest_digest: r.try_get("manifest_digest")?,
            summary: serde_json::from_str(&summary).context("stored release summary")?,
            signed_by: serde_json::from_str(&signed_by).context("stored signers")?,
            envelope_bytes: to_u64(r.try_get("envelope_bytes")?),
            archived: r.try_get::<i64, _>("archived")? != 0,
            remediation: r.try_get::<i64, _>("remediation")? != 0,
            kind: r.try_get("kind")?,
            created_by: r.try_get("created_by")?,
            created_at: r.try_get("created_at")?,
        })
    }

    pub(crate) async fn release_get(&self, id: &str) -> Result<Option<ReleaseRow>> {
        let row = dynamic(&format!(
            "SELECT {RELEASE_COLS} FROM releases WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some(self.release_row(&r).await?)),
            None => Ok(None),
        }
    }

    /// Archives (or brings back) a release.
    pub(crate) async fn release_set_archived(&self, id: &str, archived: bool) -> Result<()> {
        sqlx::query("UPDATE releases SET archived = $1 WHERE id = $2")
            .bind(i64::from(archived))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether a delta of another release was made from this release's image.
    pub(crate) async fn release_is_delta_base(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM deltas WHERE source_release_id = $1 AND release_id <> $1 LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Deletes a release with its payload rows and its own deltas, in one transaction. The
    /// payload store's files are then referred to by nothing, and the sweeper removes them.
    /// A trust update the registered trust state in force was advanced through (the one that
    /// set it, or one with a sequence at or below it) is refused with [`TrustUpdateInForce`]
    /// and nothing is deleted: the devices still below it could never receive it again, and a
    /// new upload of it is a rollback (docs/trust.md, rule 4).
    pub(crate) async fn release_delete(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM deltas WHERE release_id = $1",
            "DELETE FROM payloads WHERE release_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        // After a write, so on SQLite the transaction holds the write lock when it reads.
        if sqlx::query(
            "SELECT 1 FROM trust_state t, releases r WHERE t.id = 1 AND r.id = $1 AND (t.release_id = r.id OR (r.kind = $2 AND r.sequence_number <= t.sequence))",
        )
        .bind(id)
        .bind(suitcase_protocol::RELEASE_KIND_TRUST_UPDATE)
        .fetch_optional(&mut *tx)
        .await?
        .is_some()
        {
            return Err(TrustUpdateInForce.into());
        }
        let n = sqlx::query("DELETE FROM releases WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    pub(crate) async fn release_list(&self) -> Result<Vec<ReleaseRow>> {
        let rows = dynamic(&format!(
            "SELECT {RELEASE_COLS} FROM releases ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.release_row(r).await?);
        }
        Ok(out)
    }

    pub(crate) async fn release_envelope(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query("SELECT envelope FROM releases WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get::<Vec<u8>, _>(0))
            .transpose()?)
    }

    /// Records a finished upload, if `object_key` still holds the claim; `false` if it lost
    /// it (the claim went stale and another upload took over).
    pub(crate) async fn payload_stored(
        &self,
        release_id: &str,
        idx: u32,
        object_key: &str,
        size: u64,
        sha256: &str,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE payloads SET object_key = $1, size = $2, sha256 = $3, upload_key = NULL, upload_touched = NULL \
             WHERE release_id = $4 AND idx = $5 AND object_key IS NULL AND upload_key = $1",
        )
        .bind(object_key)
        .bind(to_i64(size))
        .bind(sha256)
        .bind(release_id)
        .bind(i64::from(idx))
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    /// Claims a payload slot for one upload: one conditional update, so of concurrent
    /// uploads exactly one wins. A claim not touched since `stale_before` is free again.
    pub(crate) async fn payload_claim(
        &self,
        release_id: &str,
        idx: u32,
        object_key: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE payloads SET upload_key = $1, upload_touched = $2 \
             WHERE release_id = $3 AND idx = $4 AND object_key IS NULL \
             AND (upload_key IS NULL OR upload_touched < $5)",
        )
        .bind(object_key)
        .bind(now)
        .bind(release_id)
        .bind(i64::from(idx))
        .bind(stale_before)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    /// Keeps a running upload's claim fresh.
    pub(crate) async fn payload_touch(
        &self,
        release_id: &str,
        idx: u32,
        object_key: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE payloads SET upload_touched = $1 WHERE release_id = $2 AND idx = $3 AND upload_key = $4",
        )
        .bind(now)
        .bind(release_id)
        .bind(i64::from(idx))
        .bind(object_key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up a claim (the upload failed).
    pub(crate) async fn payload_unclaim(
        &self,
        release_id: &str,
        idx: u32,
        object_key: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE payloads SET upload_key = NULL, upload_touched = NULL WHERE release_id = $1 AND idx = $2 AND upload_key = $3",
        )
        .bind(release_id)
        .bind(i64::from(idx))
        .bind(object_key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every object key the database refers to: stored payloads, uploads in progress, deltas.
    /// Anything else in the payload store is an orphan.
    /// A claim not touched since `stale_before` no longer protects its object: that upload
    /// died with its server.
    pub(crate) async fn referenced_objects(
        &self,
        stale_before: i64,
    ) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        let queries = [
            sqlx::query("SELECT object_key FROM payloads WHERE object_key IS NOT NULL"),
            sqlx::query(
                "SELECT upload_key FROM payloads WHERE upload_key IS NOT NULL AND upload_touched >= $1",
            )
            .bind(stale_before),
            sqlx::query("SELECT object_key FROM deltas"),
        ];
        for q in queries {
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.try_get::<String, _>(0)?);
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Devices, tags, groups
// ---------------------------------------------------------------------------------------------

/// A device.
#[derive(Clone, Debug)]
pub(crate) struct DeviceRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) push_id: String,
    pub(crate) vendor_id: Option<String>,
    pub(crate) class_id: Option<String>,
    pub(crate) sequence_number: Option<u64>,
    pub(crate) inventory: Option<String>,
    pub(crate) last_seen: Option<i64>,
    pub(crate) revoked: bool,
    pub(crate) created_at: i64,
}

/// The rows of a `VALUES` list for `rows` rows of `casts.len()` columns: `($1, $2), ($3, $4)`,
/// numbered row by row. A column whose entry in `casts` names a type is `CAST($n AS type)`
/// (PostgreSQL cannot infer the column types of a `VALUES` table an `UPDATE ... FROM` reads);
/// `""` leaves it bare.
fn values_rows(rows: usize, casts: &[&str]) -> String {
    let mut sql = String::new();
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for (c, cast) in casts.iter().enumerate() {
            if c > 0 {
                sql.push_str(", ");
            }
            let n = r * casts.len() + c + 1;
            if cast.is_empty() {
                sql.push_str(&format!("${n}"));
            } else {
                sql.push_str(&format!("CAST(${n} AS {cast})"));
            }
        }
        sql.push(')');
    }
    sql
}

pub(crate) const DEVICE_COLS: &str = "id, name, push_id, vendor_id, class_id, sequence_number, inventory, last_seen, revoked, created_at";

pub(crate) fn device_row(r: &AnyRow) -> Result<DeviceRow> {
    Ok(DeviceRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        push_id: r.try_get("push_id")?,
        vendor_id: r.try_get("vendor_id")?,
        class_id: r.try_get("class_id")?,
        sequence_number: r.try_get::<Option<i64>, _>("sequence_number")?.map(to_u64),
        inventory: r.try_get("inventory")?,
        last_seen: r.try_get("last_seen")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

/// A new device for [`Db::device_create_many`].
#[derive(Clone, Debug)]
pub(crate) struct NewDevice {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) token_hash: String,
    pub(crate) cert_sha256: Option<String>,
    pub(crate) push_id: String,
    pub(crate) tags: Vec<String>,
}

/// Check-in data to write back.
#[derive(Clone, Debug)]
pub(crate) struct SeenUpdate {
    pub(crate) device_id: String,
    pub(crate) last_seen: i64,
    pub(crate) inventory: Option<String>,
    pub(crate) vendor_id: Option<String>,
    pub(crate) class_id: Option<String>,
    pub(crate) sequence_number: Option<u64>,
}

impl Db {
    /// Inserts devices in one transaction (all or none).
    pub(crate) async fn device_create_many(&self, devices: &[NewDevice], now: i64) -> Result<()> {
        // Many rows per statement: a batch of 10,000 is 20 statements, not 10,000 round trips
        // to the database (registering ten million devices is then a matter of minutes).
        let mut tx = self.pool.begin().await?;
        for chunk in devices.chunks(500) {
            let sql = format!(
                "INSERT INTO devices (id, name, token_hash, cert_sha256, push_id, created_at) VALUES {}",
                values_rows(chunk.len(), &[""; 6])
            );
            let mut q = dynamic(&sql);
            for d in chunk {
                q = q
                    .bind(&d.id)
                    .bind(&d.name)
                    .bind(&d.token_hash)
                    .bind(d.cert_sha256.as_deref())
                    .bind(&d.push_id)
                    .bind(now);
            }
            q.execute(&mut *tx).await?;
        }
        let tags: Vec<(&String, &String)> = devices
            .iter()
            .flat_map(|d| d.tags.iter().map(move |t| (&d.id, t)))
            .collect();
        for chunk in tags.chunks(1000) {
            let sql = format!(
                "INSERT INTO device_tags (device_id, tag) VALUES {} ON CONFLICT DO NOTHING",
                values_rows(chunk.len(), &[""; 2])
            );
            let mut q = dynamic(&sql);
            for (id, t) in chunk {
                q = q.bind(*id).bind(*t);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The names already registered, with their devices' ids.
    pub(crate) async fn device_names_taken(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, String)>> {
        let mut taken = Vec::new();
        for chunk in names.chunks(500) {
            let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let vals: Vec<Val> = chunk.iter().map(|n| Val::S(n.clone())).collect();
            let sql = format!(
                "SELECT name, id FROM devices WHERE name IN ({})",
                ph.join(",")
            );
            for r in bind_all(dynamic(&sql), &vals).fetch_all(&self.pool).await? {
                taken.push((r.try_get(0)?, r.try_get(1)?));
            }
        }
        Ok(taken)
    }

    /// The device a token or certificate belongs to.
    pub(crate) async fn device_by_credential(
        &self,
        column: &str,
        hash: &str,
    ) -> Result<Option<DeviceRow>> {
        let column = if column == "cert_sha256" {
            "cert_sha256"
        } else {
            "token_hash"
        };
        dynamic(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE {column} = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(device_row)
        .transpose()
    }

    /// A device by id or name.
    pub(crate) async fn device_get(&self, id_or_name: &str) -> Result<Option<DeviceRow>> {
        dynamic(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE id = $1 OR name = $1"
        ))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(device_row)
        .transpose()
    }

    pub(crate) async fn device_tags(&self, id: &str) -> Result<Vec<String>> {
        sqlx::query("SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY tag")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    pub(crate) async fn device_set_tags(
        &self,
        id: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for t in add {
            sqlx::query(
                "INSERT INTO device_tags (device_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(t)
            .execute(&mut *tx)
            .await?;
        }
        for t in remove {
            sqlx::query("DELETE FROM device_tags WHERE device_id = $1 AND tag = $2")
                .bind(id)
                .bind(t)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn device_revoke(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("UPDATE devices SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    pub(crate) async fn device_set_token(&self, id: &str, hash: &str) -> Result<()> {
        sqlx::query("UPDATE devices SET token_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Devices matching a filter, ordered by id, with paging.
    pub(crate) async fn device_list(
        &self,
        filter: &Filter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<DeviceRow>> {
        let (cond, mut vals) = filter_sql(filter);
        let n = vals.len();
        vals.push(Val::I(limit));
        vals.push(Val::I(offset));
        let sql = format!(
            "SELECT {DEVICE_COLS} FROM devices d WHERE {cond} ORDER BY id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        bind_all(dynamic(&sql), &vals)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(device_row)
            .collect()
    }

    /// Ids of the devices matching a filter. With `classes`, devices that reported another
    /// class are left out (they would refuse the manifest: manifest §8.4.8.2); devices that
    /// never reported a class are kept.
    pub(crate) async fn device_ids_matching(
        &self,
        filter: &Filter,
        classes: &[String],
    ) -> Result<Vec<String>> {
        // A long device list is queried in chunks: one query with 40,000 names would pass
        // SQLite's and PostgreSQL's limits on bind variables.
        const CHUNK: usize = 500;
        if filter.devices.len() <= CHUNK {
            return self.device_ids_matching_one(filter, classes).await;
        }
        let mut ids = std::collections::BTreeSet::new();
        for chunk in filter.devices.chunks(CHUNK) {
            let part = Filter {
                devices: chunk.to_vec(),
                ..filter.clone()
            };
            ids.extend(self.device_ids_matching_one(&part, classes).await?);
        }
        Ok(ids.into_iter().collect())
    }

    async fn device_ids_matching_one(
        &self,
        filter: &Filter,
        classes: &[String],
    ) -> Result<Vec<String>> {
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
        let sql = format!("SELECT id FROM devices d WHERE {cond} ORDER BY id");
        bind_all(dynamic(&sql), &vals)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    /// Of `device_ids` (a campaign's targeted devices), those (not decommissioned) whose last
    /// inventory reports a component they cannot roll back: (id, inventory JSON), at most
    /// `limit`. A text match on the compact JSON the server itself writes
    /// (`"rollback":false`), so that the database hands over only those inventories; asked
    /// 500 ids at a time, and only until `limit` rows came back, so the bound applies to the
    /// campaign's devices, not to the fleet's (docs/server.md §4).
    pub(crate) async fn devices_without_rollback(
        &self,
        device_ids: &[String],
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        for chunk in device_ids.chunks(500) {
            let left = limit - i64::try_from(out.len()).unwrap_or(i64::MAX);
            if left <= 0 {
                break;
            }
            let mut vals = vec![Val::S("%\"rollback\":false%".into())];
            let ph: Vec<String> = chunk
                .iter()
                .map(|id| {
                    vals.push(Val::S(id.clone()));
                    format!("${}", vals.len())
                })
                .collect();
            vals.push(Val::I(left));
            let sql = format!(
                "SELECT id, inventory FROM devices WHERE revoked = 0 AND inventory LIKE $1 AND id IN ({}) ORDER BY id LIMIT ${}",
                ph.join(","),
                vals.len()
            );
            for r in bind_all(dynamic(&sql), &vals).fetch_all(&self.pool).await? {
                out.push((r.try_get(0)?, r.try_get(1)?));
            }
        }
        Ok(out)
    }

    /// The newest audit row's id (0 when the log is empty).
    pub(crate) async fn audit_last_id(&self) -> Result<i64> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM audit")
            .fetch_one(&self.pool)
            .await?;
        Ok(last.unwrap_or(0))
    }

    /// The (action, target) of audit rows after `after - AUDIT_REREAD` whose action is one of
    /// `actions`, at most 10,000, and the id to read after next time. PostgreSQL hands out
    /// serial ids when a row is inserted, not when it commits, so a row with a lower id can
    /// become visible after a higher one was read: each poll reads again the last
    /// [`AUDIT_REREAD`] ids below the cursor, and such a late row is still found (a credential
    /// forgotten twice is harmless). A range of the primary key: its cost is the number of
    /// new rows plus that window.
    pub(crate) async fn audit_credential_changes(
        &self,
        after: i64,
        actions: &[&str],
    ) -> Result<(Vec<(String, String)>, i64)> {
        let rows = sqlx::query(
            "SELECT id, action, target FROM audit WHERE id > $1 ORDER BY id LIMIT 10000",
        )
        .bind(after.saturating_sub(AUDIT_REREAD).max(0))
        .fetch_all(&self.pool)
        .await?;
        let mut last = after;
        let mut out = Vec::new();
        for r in rows {
            let id: i64 = r.try_get(0)?;
            let action: String = r.try_get(1)?;
            last = last.max(id);
            if actions.contains(&action.as_str()) {
                out.push((action, r.try_get(2)?));
            }
        }
        Ok((out, last))
    }

    /// Writes back buffered check-ins in one transaction, many rows per statement (`UPDATE
    /// ... FROM (VALUES ...)`, which SQLite and PostgreSQL both run): a statement per row made
    /// the write-behind cost a round trip to the database per device, which is what held
    /// check-ins back while a large fleet made first contact.
    pub(crate) async fn device_seen(&self, updates: &[SeenUpdate]) -> Result<()> {
        const ROWS: usize = 400;
        let (full, seen): (Vec<&SeenUpdate>, Vec<&SeenUpdate>) =
            updates.iter().partition(|u| u.inventory.is_some());
        let mut tx = self.pool.begin().await?;
        for chunk in full.chunks(ROWS) {
            let sql = format!(
                "UPDATE devices SET last_seen = v.column2, inventory = v.column3, vendor_id = v.column4, \
                 class_id = v.column5, sequence_number = v.column6 \
                 FROM (VALUES {}) AS v WHERE devices.id = v.column1",
                values_rows(
                    chunk.len(),
                    &["TEXT", "BIGINT", "TEXT", "TEXT", "TEXT", "BIGINT"]
                )
            );
            let mut q = dynamic(&sql);
            for u in chunk {
                q = q
                    .bind(&u.device_id)
                    .bind(u.last_seen)
                    .bind(u.inventory.as_deref())
                    .bind(u.vendor_id.as_deref())
                    .bind(u.class_id.as_deref())
                    .bind(u.sequence_number.map(to_i64));
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in seen.chunks(ROWS * 3) {
            let sql = format!(
                "UPDATE devices SET last_seen = v.column2 FROM (VALUES {}) AS v WHERE devices.id = v.column1",
                values_rows(chunk.len(), &["TEXT", "BIGINT"])
            );
            let mut q = dynamic(&sql);
            for u in chunk {
                q = q.bind(&u.device_id).bind(u.last_seen);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn push_ids(&self, device_ids: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(device_ids.len());
        for chunk in device_ids.chunks(500) {
            let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let vals: Vec<Val> = chunk.iter().map(|n| Val::S(n.clone())).collect();
            let sql = format!("SELECT push_id FROM devices WHERE id IN ({})", ph.join(","));
            for r in bind_all(dynamic(&sql), &vals).fetch_all(&self.pool).await? {
                out.push(r.try_get(0)?);
            }
        }
        Ok(out)
    }

    pub(crate) async fn group_create(&self, name: &str, push_id: &str, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO fleet_groups (name, push_id, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(push_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn group_add(&self, name: &str, device_ids: &[String]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for d in device_ids {
            sqlx::query("INSERT INTO group_members (group_name, device_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(name)
                .bind(d)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn group_remove(&self, name: &str, device_ids: &[String]) -> Result<()> {
        for d in device_ids {
            sqlx::query("DELETE FROM group_members WHERE group_name = $1 AND device_id = $2")
                .bind(name)
                .bind(d)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn group_list(&self) -> Result<Vec<(String, String, i64)>> {
        sqlx::query(
            "SELECT g.name, g.push_id, (SELECT COUNT(*) FROM group_members m WHERE m.group_name = g.name) AS n FROM fleet_groups g ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
    }

    /// Push ids of the groups a device is in.
    pub(crate) async fn device_group_push_ids(&self, device_id: &str) -> Result<Vec<String>> {
        sqlx::query(
            "SELECT g.push_id FROM fleet_groups g JOIN group_members m ON m.group_name = g.name WHERE m.device_id = $1 ORDER BY g.name",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    pub(crate) async fn group_push_id(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query("SELECT push_id FROM fleet_groups WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get::<String, _>(0))
                .transpose()?,
        )
    }
}

/// The WHERE clause of a device filter (over `devices d`) and its bind values.
pub(crate) fn filter_sql(f: &Filter) -> (String, Vec<Val>) {
    let mut conds = vec!["d.revoked = 0".to_owned()];
    let mut vals = Vec::new();
    let next = |vals: &mut Vec<Val>, v: Val| {
        vals.push(v);
        format!("${}", vals.len())
    };
    for t in &f.tags_all {
        let p = next(&mut vals, Val::S(t.clone()));
        conds.push(format!(
            "EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag = {p})"
        ));
    }
    if !f.tags_any.is_empty() {
        let ps: Vec<String> = f
            .tags_any
            .iter()
            .map(|t| next(&mut vals, Val::S(t.clone())))
            .collect();
        conds.push(format!(
            "EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag IN ({}))",
            ps.join(",")
        ));
    }
    if let Some(g) = &f.group {
        let p = next(&mut vals, Val::S(g.clone()));
        conds.push(format!(
            "EXISTS (SELECT 1 FROM group_members m WHERE m.device_id = d.id AND m.group_name = {p})"
        ));
    }
    if let Some(v) = &f.vendor_id {
        let p = next(&mut vals, Val::S(v.clone()));
        conds.push(format!("d.vendor_id = {p}"));
    }
    if let Some(c) = &f.class_id {
        let p = next(&mut vals, Val::S(c.clone()));
        conds.push(format!("d.class_id = {p}"));
    }
    if let Some(s) = f.sequence_below {
        let p = next(&mut vals, Val::I(to_i64(s)));
        conds.push(format!(
            "(d.sequence_number IS NULL OR d.sequence_number < {p})"
        ));
    }
    if !f.devices.is_empty() {
        let ps: Vec<String> = f
            .devices
            .iter()
            .map(|t| next(&mut vals, Val::S(t.clone())))
            .collect();
        let list = ps.join(",");
        conds.push(format!("(d.id IN ({list}) OR d.name IN ({list}))"));
    }
    (conds.join(" AND "), vals)
}

// ---------------------------------------------------------------------------------------------
// Campaigns
// ---------------------------------------------------------------------------------------------

/// A stored campaign.
#[derive(Clone, Debug)]
pub(crate) struct CampaignRow {
    pub(crate) id: String,
    pub(crate) spec: CampaignCreate,
    pub(crate) state: CampaignState,
    pub(crate) state_reason: Option<String>,
    pub(crate) opened_waves: u32,
    pub(crate) created_by: String,
    pub(crate) created_at: i64,
}

fn campaign_row(r: &AnyRow) -> Result<CampaignRow> {
    let spec: String = r.try_get("spec")?;
    let state: String = r.try_get("state")?;
    Ok(CampaignRow {
        id: r.try_get("id")?,
        spec: serde_json::from_str(&spec).context("stored campaign spec")?,
        state: CampaignState::from_name(&state).unwrap_or(CampaignState::Paused),
        state_reason: r.try_get("state_reason")?,
        opened_waves: u32::try_from(r.try_get::<i64, _>("opened_waves")?).unwrap_or(0),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

const CAMPAIGN_COLS: &str = "id, spec, state, state_reason, opened_waves, created_by, created_at";

/// A device's place in a campaign.
#[derive(Clone, Debug)]
pub(crate) struct MemberRow {
    pub(crate) device_id: String,
    pub(crate) wave: u32,
    pub(crate) state: String,
    pub(crate) release_id: String,
}

/// A device's unfinished place in a live campaign, with the campaign's state.
#[derive(Clone, Debug)]
pub(crate) struct LiveMember {
    pub(crate) campaign_id: String,
    pub(crate) wave: u32,
    pub(crate) state: MState,
    pub(crate) campaign_state: CampaignState,
    pub(crate) opened_waves: u32,
    /// The device is quarantined (quarantine.rs): offered only remediation releases.
    pub(crate) quarantined: bool,
}

/// A campaign's transition, as one conditional write: `event` from `from` (per
/// [`engine::campaign_next`]) and `opened_from` opened waves to `opened_to`. `false` if the
/// campaign was not in that state any more (another node or operator acted first), or the
/// event is not possible from `from`. In a transaction, it is the first write, so the row
/// stays locked (PostgreSQL) or the database (SQLite) until the commit.
pub(crate) async fn campaign_cas(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    from: CampaignState,
    event: CEvent,
    reason: Option<&str>,
    opened_from: u32,
    opened_to: u32,
) -> Result<bool> {
    let Some(to) = engine::campaign_next(from, event) else {
        return Ok(false);
    };
    let r = sqlx::query(
        "UPDATE campaigns SET state = $1, state_reason = $2, opened_waves = $3 WHERE id = $4 AND state = $5 AND opened_waves = $6",
    )
    .bind(to.name())
    .bind(reason)
    .bind(i64::from(opened_to))
    .bind(id)
    .bind(from.name())
    .bind(i64::from(opened_from))
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Moves every member of a campaign in one of the `from` states to `to` (and, given, to
/// that release), in the caller's transaction.
pub(crate) async fn members_move(
    conn: &mut sqlx::AnyConnection,
    campaign_id: &str,
    from: &[MState],
    to: MState,
    release_id: Option<&str>,
    now: i64,
) -> Result<u64> {
    let mut vals = vec![
        Val::S(to.name().to_owned()),
        Val::I(now),
        Val::S(campaign_id.to_owned()),
    ];
    let mut set_release = String::new();
    if let Some(r) = release_id {
        vals.push(Val::S(r.to_owned()));
        set_release = format!(", release_id = ${}", vals.len());
    }
    let ps: Vec<String> = from
        .iter()
        .map(|s| {
            vals.push(Val::S(s.name().to_owned()));
            format!("${}", vals.len())
        })
        .collect();
    let sql = format!(
        "UPDATE campaign_devices SET state = $1, updated_at = $2{set_release} WHERE campaign_id = $3 AND state IN ({})",
        ps.join(",")
    );
    Ok(bind_all(dynamic(&sql), &vals)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

impl Db {
    pub(crate) async fn campaign_create(&self, c: &CampaignRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO campaigns (id, name, release_id, spec, state, state_reason, opened_waves, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.id)
        .bind(&c.spec.name)
        .bind(&c.spec.release_id)
        .bind(serde_json::to_string(&c.spec)?)
        .bind(c.state.name())
        .bind(c.state_reason.as_deref())
        .bind(i64::from(c.opened_waves))
        .bind(&c.created_by)
        .bind(c.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn campaign_get(&self, id: &str) -> Result<Option<CampaignRow>> {
        dynamic(&format!(
            "SELECT {CAMPAIGN_COLS} FROM campaigns WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(campaign_row)
        .transpose()
    }

    pub(crate) async fn campaign_list(&self) -> Result<Vec<CampaignRow>> {
        dynamic(&format!(
            "SELECT {CAMPAIGN_COLS} FROM campaigns ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(campaign_row)
        .collect()
    }

    /// The campaigns whose spec names a release (to deploy or to roll back to). The
    /// database narrows by the release id's JSON spelling in the spec (`rollback_release_id`
    /// has no column of its own); the parsed spec decides.
    pub(crate) async fn campaigns_naming_release(
        &self,
        release_id: &str,
    ) -> Result<Vec<CampaignRow>> {
        let pat = format!("%{}%", like_escaped(&serde_json::to_string(release_id)?));
        let rows = dynamic(&format!(
            "SELECT {CAMPAIGN_COLS} FROM campaigns WHERE release_id = $1 OR spec LIKE $2 ESCAPE '\\' ORDER BY created_at, id"
        ))
        .bind(release_id)
        .bind(pat)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let c = campaign_row(r)?;
            if c.spec.release_id == release_id
                || c.spec.rollback_release_id.as_deref() == Some(release_id)
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The campaign's conditional transition (see [`campaign_cas`]), on its own.
    pub(crate) async fn campaign_cas(
        &self,
        id: &str,
        from: CampaignState,
        event: CEvent,
        reason: Option<&str>,
        opened_from: u32,
        opened_to: u32,
    ) -> Result<bool> {
        let mut c = self.pool.acquire().await?;
        campaign_cas(&mut c, id, from, event, reason, opened_from, opened_to).await
    }

    /// The live campaigns and their states (the engine's sync, every second on every node:
    /// the campaigns table is small).
    pub(crate) async fn live_campaigns(&self) -> Result<Vec<(String, CampaignState)>> {
        dynamic(&format!(
            "SELECT id, state FROM campaigns WHERE state IN ({})",
            engine::sql_live_campaigns()
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let state: String = r.try_get(1)?;
            Ok((
                r.try_get(0)?,
                CampaignState::from_name(&state).unwrap_or(CampaignState::Paused),
            ))
        })
        .collect()
    }

    /// The device's unfinished membership of a live campaign, with the campaign's state, as
    /// the database has them now (a device is in at most one: `start` skips busy devices).
    pub(crate) async fn member_live(&self, device_id: &str) -> Result<Option<LiveMember>> {
        let row = dynamic(&format!(
            "SELECT cd.campaign_id, cd.wave, cd.state, c.state, c.opened_waves, \
             (SELECT COUNT(*) FROM devices d WHERE d.id = cd.device_id AND d.quarantined_at IS NOT NULL) \
             FROM campaign_devices cd \
             JOIN campaigns c ON c.id = cd.campaign_id \
             WHERE cd.device_id = $1 AND cd.state IN ({}) AND c.state IN ({}) LIMIT 1",
            engine::sql_unfinished(),
            engine::sql_live_campaigns()
        ))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let state: String = r.try_get(2)?;
        let cstate: String = r.try_get(3)?;
        let (Some(state), Some(campaign_state)) =
            (MState::from_name(&state), CampaignState::from_name(&cstate))
        else {
            return Ok(None);
        };
        Ok(Some(LiveMember {
            campaign_id: r.try_get(0)?,
            wave: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(u32::MAX),
            state,
            campaign_state,
            opened_waves: u32::try_from(r.try_get::<i64, _>(4)?).unwrap_or(0),
            quarantined: r.try_get::<i64, _>(5)? > 0,
        }))
    }

    /// Moves one member from `from` to `to` (and sets its release); `false` if it was not in
    /// `from` any more. With `open_wave`, also only while the campaign runs with that wave
    /// open: one statement, so a pause, trip or cancel that landed first wins.
    #[expect(
        clippy::too_many_arguments,
        reason = "the columns of one conditional update"
    )]
    pub(crate) async fn member_cas(
        &self,
        campaign_id: &str,
        device_id: &str,
        from: MState,
        to: MState,
        release_id: &str,
        now: i64,
        open_wave: Option<u32>,
    ) -> Result<bool> {
        let campaign_open = if open_wave.is_some() {
            " AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = $4 AND c.state = 'running' AND c.opened_waves > $7)"
        } else {
            ""
        };
        let r = dynamic(&format!(
            "UPDATE campaign_devices SET state = $1, release_id = $2, updated_at = $3 WHERE campaign_id = $4 AND device_id = $5 AND state = $6{campaign_open}"
        ))
        .bind(to.name())
        .bind(release_id)
        .bind(now)
        .bind(campaign_id)
        .bind(device_id)
        .bind(from.name());
        let r = match open_wave {
            Some(w) => r.bind(i64::from(w)),
            None => r,
        };
        Ok(r.execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Takes one start from a campaign's rate limit (`rate` per minute, bursts of a minute's
    /// worth) in one conditional statement, so the limit holds across nodes: the generic cell
    /// rate algorithm, with the theoretical arrival time (milliseconds) in the campaign row.
    pub(crate) async fn campaign_rate_take(&self, id: &str, now: i64, rate: u32) -> Result<bool> {
        let interval = 60_000 / i64::from(rate.max(1));
        let burst = 60_000 - interval;
        let r = sqlx::query(
            "UPDATE campaigns SET rate_tat = (CASE WHEN COALESCE(rate_tat, 0) > $1 THEN rate_tat ELSE $1 END) + $2 \
             WHERE id = $3 AND COALESCE(rate_tat, 0) <= $1 + $4",
        )
        .bind(now.saturating_mul(1000))
        .bind(interval)
        .bind(id)
        .bind(burst)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Gives back one start taken by [`Self::campaign_rate_take`] whose offer was not made
    /// (its write lost a race).
    pub(crate) async fn campaign_rate_give(&self, id: &str, rate: u32) -> Result<()> {
        let interval = 60_000 / i64::from(rate.max(1));
        sqlx::query(
            "UPDATE campaigns SET rate_tat = rate_tat - $1 WHERE id = $2 AND rate_tat IS NOT NULL",
        )
        .bind(interval)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Devices with an unfinished update in a live campaign.
    pub(crate) async fn busy_devices(&self) -> Result<Vec<String>> {
        dynamic(&format!(
            "SELECT cd.device_id FROM campaign_devices cd JOIN campaigns c ON c.id = cd.campaign_id WHERE c.state IN ({}) AND cd.state IN ({})",
            engine::sql_live_campaigns(),
            engine::sql_unfinished()
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    /// Marks a draft running (its conditional write first: `false` if it was no draft any
    /// more) and adds its members (wave assignments), in one transaction.
    pub(crate) async fn campaign_start(
        &self,
        id: &str,
        release_id: &str,
        members: &[(String, u32)],
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !campaign_cas(&mut tx, id, CampaignState::Draft, CEvent::Start, None, 0, 1).await? {
            return Ok(false);
        }
        for chunk in members.chunks(400) {
            let mut sql = String::from(
                "INSERT INTO campaign_devices (campaign_id, device_id, wave, state, release_id, updated_at) VALUES ",
            );
            let mut vals = Vec::with_capacity(chunk.len() * 6);
            for (i, (dev, wave)) in chunk.iter().enumerate() {
                let b = i * 6;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${},${},${},${},${},${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                ));
                vals.push(Val::S(id.to_owned()));
                vals.push(Val::S(dev.clone()));
                vals.push(Val::I(i64::from(*wave)));
                vals.push(Val::S(MState::Pending.name().into()));
                vals.push(Val::S(release_id.to_owned()));
                vals.push(Val::I(now));
            }
            bind_all(dynamic(&sql), &vals).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn campaign_members(&self, id: &str) -> Result<Vec<MemberRow>> {
        sqlx::query(
            "SELECT device_id, wave, state, release_id FROM campaign_devices WHERE campaign_id = $1 ORDER BY wave, device_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(MemberRow {
                device_id: r.try_get(0)?,
                wave: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                state: r.try_get(2)?,
                release_id: r.try_get(3)?,
            })
        })
        .collect()
    }

    pub(crate) async fn campaign_members_in_state(
        &self,
        id: &str,
        state: &str,
        limit: i64,
    ) -> Result<Vec<MemberRow>> {
        sqlx::query(
            "SELECT device_id, wave, state, release_id FROM campaign_devices WHERE campaign_id = $1 AND state = $2 ORDER BY wave, device_id LIMIT $3",
        )
        .bind(id)
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(MemberRow {
                device_id: r.try_get(0)?,
                wave: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                state: r.try_get(2)?,
                release_id: r.try_get(3)?,
            })
        })
        .collect()
    }

    /// Per-wave counts of a campaign.
    pub(crate) async fn campaign_progress(&self, id: &str) -> Result<Vec<WaveProgress>> {
        let rows = sqlx::query(
            "SELECT wave, state, COUNT(*) FROM campaign_devices WHERE campaign_id = $1 GROUP BY wave, state ORDER BY wave",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<WaveProgress> = Vec::new();
        for r in rows {
            let wave = u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0);
            let state: String = r.try_get(1)?;
            let n = to_u64(r.try_get(2)?);
            while out.len() <= wave as usize {
                let w = u32::try_from(out.len()).unwrap_or(u32::MAX);
                out.push(WaveProgress {
                    wave: w,
                    ..WaveProgress::default()
                });
            }
            if let Some(w) = out.get_mut(wave as usize) {
                w.devices += n;
                if let Some(s) = MState::from_name(&state) {
                    s.count(w, n);
                }
            }
        }
        Ok(out)
    }

    /// The device's most recent campaign membership.
    pub(crate) async fn latest_membership(
        &self,
        device_id: &str,
    ) -> Result<Option<(String, MemberRow)>> {
        let row = dynamic(&format!(
            // Timestamps are seconds: two campaigns can touch the device within one. Then a
            // live membership wins, then the one with the newest report.
            "SELECT campaign_id, device_id, wave, state, release_id FROM campaign_devices cd WHERE device_id = $1 \
             ORDER BY updated_at DESC, \
             CASE WHEN state IN ({}) THEN 1 ELSE 0 END DESC, \
             COALESCE((SELECT MAX(r.id) FROM reports r WHERE r.device_id = cd.device_id AND r.campaign_id = cd.campaign_id), 0) DESC, \
             campaign_id DESC LIMIT 1",
            engine::sql_unfinished()
        ))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get(0)?,
                MemberRow {
                    device_id: r.try_get(1)?,
                    wave: u32::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                    state: r.try_get(3)?,
                    release_id: r.try_get(4)?,
                },
            ))
        })
        .transpose()
    }

    /// Whether the device may fetch this release: it was offered it
    /// ([`Self::device_was_offered`]) and, if it is quarantined, the release is marked
    /// remediation (RFC 8240 §9, `quarantine::offerable`, docs/server.md §8). Every download
    /// path asks this.
    pub(crate) async fn device_offered(&self, device_id: &str, release_id: &str) -> Result<bool> {
        if !self.device_was_offered(device_id, release_id).await? {
            return Ok(false);
        }
        let (quarantined, remediation) = self.offer_gate(device_id, release_id).await?;
        Ok(crate::quarantine::offerable(quarantined, remediation))
    }

    /// Whether the device was offered this release (by any campaign, including as a
    /// rollback) and may still report on it. A member still `pending` (its wave is not open,
    /// or it has not checked in since) was never offered it; one `cancelled` was stopped by
    /// the operator. Neither may fetch or report (docs/server.md §3).
    pub(crate) async fn device_was_offered(
        &self,
        device_id: &str,
        release_id: &str,
    ) -> Result<bool> {
        Ok(dynamic(&format!(
            "SELECT 1 FROM campaign_devices cd JOIN campaigns c ON c.id = cd.campaign_id \
             WHERE cd.device_id = $1 AND (cd.release_id = $2 OR c.release_id = $2) \
             AND cd.state NOT IN ({}) LIMIT 1",
            engine::sql_names([MState::Pending.name(), MState::Cancelled.name()].into_iter())
        ))
        .bind(device_id)
        .bind(release_id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }
}

// ---------------------------------------------------------------------------------------------
// Reports and audit
// ---------------------------------------------------------------------------------------------

/// A stored report.
#[derive(Clone, Debug)]
pub(crate) struct ReportRow {
    pub(crate) release_id: String,
    pub(crate) campaign_id: Option<String>,
    pub(crate) step: String,
    pub(crate) outcome: String,
    pub(crate) reason: Option<String>,
    pub(crate) detail: Option<String>,
    pub(crate) progress: Option<i64>,
    pub(crate) started_at: Option<i64>,
    pub(crate) log: Option<String>,
    pub(crate) at: i64,
    /// From an install from an offline bundle (docs/bundles.md).
    pub(crate) offline: bool,
    /// Sent while the device was quarantined, or the evidence that quarantined it.
    pub(crate) quarantined: bool,
}

pub(crate) const REPORT_COLS: &str = "release_id, campaign_id, step, outcome, reason, detail, progress, started_at, at, log, offline, quarantined";

/// A `reports` row selected with [`REPORT_COLS`].
pub(crate) fn report_row(r: &AnyRow) -> Result<ReportRow> {
    Ok(ReportRow {
        release_id: r.try_get("release_id")?,
        campaign_id: r.try_get("campaign_id")?,
        step: r.try_get("step")?,
        outcome: r.try_get("outcome")?,
        reason: r.try_get("reason")?,
        detail: r.try_get("detail")?,
        progress: r.try_get("progress")?,
        started_at: r.try_get("started_at")?,
        at: r.try_get("at")?,
        log: r.try_get("log")?,
        offline: r.try_get::<i64, _>("offline")? != 0,
        quarantined: r.try_get::<i64, _>("quarantined")? != 0,
    })
}

/// How many audit ids below its cursor the revocation poll reads again: a row inserted
/// before the cursor's row but committed after it (PostgreSQL serial ids are not commit order)
/// is found by the next poll as long as fewer than this many audit rows were written meanwhile.
pub(crate) const AUDIT_REREAD: i64 = 1000;

pub(crate) const AUDIT_COLS: &str = "id, at, actor, role, action, target, detail";

/// An `audit` row selected with [`AUDIT_COLS`].
pub(crate) fn audit_row(r: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        role: r.try_get("role")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        detail: r.try_get("detail")?,
    })
}

/// A device's `started_at` as the server stores it (docs/server.md, "Step start times"): a
/// start after `now` (the device's clock runs ahead) is clamped to `now`; one more than
/// `STEP_AGE_MAX` before `now` is ignored.
pub(crate) fn clamp_started_at(started_at: Option<u64>, now: i64) -> Option<i64> {
    let t = to_i64(started_at?).min(now);
    (t >= now.saturating_sub(to_i64(suitcase_protocol::limits::STEP_AGE_MAX))).then_some(t)
}

/// A report's `log` as the server stores it (docs/server.md, "Log tails are clipped, not
/// refused"): at most `REPORT_LOG_MAX` bytes, its end (where a failure shows), marked when
/// clipped. Clipped, not refused: the failure it comes with must not be lost.
pub(crate) fn clip_log(log: &str) -> String {
    use suitcase_protocol::limits::REPORT_LOG_MAX;
    const MARK: &str = "[clipped: the start of the log is not kept]\n";
    if log.len() <= REPORT_LOG_MAX {
        return log.to_owned();
    }
    let mut from = log.len() - (REPORT_LOG_MAX - MARK.len());
    while !log.is_char_boundary(from) {
        from += 1;
    }
    format!("{MARK}{}", log.get(from..).unwrap_or_default())
}

impl Db {
    /// Stores a step report (docs/server.md, "Progress does not pile up"). An `in-progress`
    /// report with a `started_at` (a suitcase agent's download progress) that follows an
    /// `in-progress` report of the same step, release, campaign and `offline` flag (the same
    /// attempt) replaces it, so that progress reports do not grow the table; the first start
    /// stored is kept. Any other report with a `started_at` is stored once: the same step,
    /// outcome, start and `offline` flag for the device and release again (a report sent again
    /// because its answer was lost) meets the unique index `reports_once` and is dropped by
    /// `ON CONFLICT DO NOTHING`, also when the copies reach two nodes at the same time.
    /// Reports without `started_at` (older agents, DDI feedback, whose log lines the failure
    /// report gathers) are each kept.
    pub(crate) async fn report_insert(
        &self,
        device_id: &str,
        campaign_id: Option<&str>,
        r: &StepReport,
        now: i64,
    ) -> Result<()> {
        let started_at = clamp_started_at(r.started_at, now);
        if r.outcome == suitcase_protocol::Outcome::InProgress && r.started_at.is_some() {
            // One statement: replace the device's last report on this release if it is this
            // attempt's in-progress report of this step.
            let replaced = sqlx::query(
                "UPDATE reports SET reason = $1, detail = $2, progress = $3, suit_report = $4, \
                 started_at = COALESCE(started_at, $5), at = $6 \
                 WHERE id = (SELECT MAX(id) FROM reports WHERE device_id = $7 AND release_id = $8) \
                 AND step = $9 AND outcome = $10 AND offline = $12 \
                 AND (campaign_id = $11 OR (campaign_id IS NULL AND $11 IS NULL))",
            )
            .bind(r.reason.as_deref())
            .bind(r.detail.as_deref())
            .bind(r.progress.map(to_i64))
            .bind(r.suit_report.as_deref())
            .bind(started_at)
            .bind(now)
            .bind(device_id)
            .bind(&r.release_id)
            .bind(r.step.name())
            .bind(r.outcome.name())
            .bind(campaign_id)
            .bind(i64::from(r.offline))
            .execute(&self.pool)
            .await?
            .rows_affected();
            if replaced > 0 {
                return Ok(());
            }
        }
        sqlx::query(
            // Flagged when the device is quarantined as the row lands (docs/server.md §8).
            "INSERT INTO reports (device_id, release_id, campaign_id, step, outcome, reason, detail, progress, suit_report, at, started_at, log, offline, quarantined) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             (SELECT COUNT(*) FROM devices WHERE id = $1 AND quarantined_at IS NOT NULL)) \
             ON CONFLICT DO NOTHING",
        )
        .bind(device_id)
        .bind(&r.release_id)
        .bind(campaign_id)
        .bind(r.step.name())
        .bind(r.outcome.name())
        .bind(r.reason.as_deref())
        .bind(r.detail.as_deref())
        .bind(r.progress.map(to_i64))
        .bind(r.suit_report.as_deref())
        .bind(now)
        .bind(started_at)
        .bind(r.log.as_deref().map(clip_log))
        .bind(i64::from(r.offline))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The release an offline report names by a bundle's release id (`bundle_release_id` in
    /// the agent): the manifest digest's first 64 hex characters, in any case. A SHA-256
    /// digest is exactly that, found through the unique index by [`Self::release_by_digest`].
    /// The prefix path is needed for longer digests (SHAKE256, SHA-384/512: stored whole, named
    /// by their first 64 characters because a release id is at most 64): a range on the same
    /// index (`prefix < digest < prefix || 'g'`, hex digits sorting below `g`), checked again
    /// here, so it is never a scan of the releases.
    pub(crate) async fn release_by_digest_prefix(&self, prefix: &str) -> Result<Option<String>> {
        if prefix.len() != 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let prefix = prefix.to_ascii_lowercase();
        if let Some(id) = self.release_by_digest(&prefix).await? {
            return Ok(Some(id));
        }
        for r in sqlx::query(
            "SELECT id, manifest_digest FROM releases WHERE manifest_digest > $1 AND manifest_digest < $2 ORDER BY manifest_digest LIMIT 2",
        )
        .bind(&prefix)
        .bind(format!("{prefix}g"))
        .fetch_all(&self.pool)
        .await?
        {
            let digest: String = r.try_get(1)?;
            if digest.starts_with(&prefix) {
                return Ok(Some(r.try_get(0)?));
            }
        }
        Ok(None)
    }

    /// The device's newest offline report (docs/bundles.md): its release and row id, and
    /// the newest report id of any kind.
    pub(crate) async fn latest_offline(
        &self,
        device_id: &str,
    ) -> Result<Option<(String, i64, i64)>> {
        let row = sqlx::query(
            "SELECT release_id, id, (SELECT MAX(id) FROM reports WHERE device_id = $1) FROM reports \
             WHERE device_id = $1 AND offline = 1 ORDER BY id DESC LIMIT 1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .transpose()
    }

    /// How many reports a device sent on a release.
    pub(crate) async fn report_count(&self, device_id: &str, release_id: &str) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM reports WHERE device_id = $1 AND release_id = $2")
                .bind(device_id)
                .bind(release_id)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// A device's reports for a release, oldest first.
    pub(crate) async fn reports_for(
        &self,
        device_id: &str,
        release_id: &str,
    ) -> Result<Vec<ReportRow>> {
        dynamic(&format!(
            "SELECT {REPORT_COLS} FROM reports WHERE device_id = $1 AND release_id = $2 ORDER BY id"
        ))
        .bind(device_id)
        .bind(release_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(report_row)
        .collect()
    }

    pub(crate) async fn audit(
        &self,
        now: i64,
        actor: &str,
        role: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        audit_in(&mut conn, now, actor, role, action, target, detail).await
    }

    pub(crate) async fn audit_list(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        dynamic(&format!(
            "SELECT {AUDIT_COLS} FROM audit WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_row)
        .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Deltas
// ---------------------------------------------------------------------------------------------

impl Db {
    pub(crate) async fn delta_insert(&self, d: &crate::deltas::DeltaRow, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO deltas (id, release_id, idx, source_release_id, source_sha256, object_key, size, sha256, ram_bound, full_size, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        )
        .bind(&d.id)
        .bind(&d.release_id)
        .bind(i64::from(d.idx))
        .bind(&d.source_release_id)
        .bind(&d.source_sha256)
        .bind(&d.object_key)
        .bind(to_i64(d.size))
        .bind(&d.sha256)
        .bind(i64::from(d.ram_bound))
        .bind(to_i64(d.full_size))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn delta_list(&self) -> Result<Vec<crate::deltas::DeltaRow>> {
        sqlx::query(
            "SELECT id, release_id, idx, source_release_id, source_sha256, object_key, size, sha256, ram_bound, full_size FROM deltas ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(crate::deltas::DeltaRow {
                id: r.try_get(0)?,
                release_id: r.try_get(1)?,
                idx: u32::try_from(r.try_get::<i64, _>(2)?)?,
                source_release_id: r.try_get(3)?,
                source_sha256: r.try_get(4)?,
                object_key: r.try_get(5)?,
                size: to_u64(r.try_get(6)?),
                sha256: r.try_get(7)?,
                ram_bound: u32::try_from(r.try_get::<i64, _>(8)?)?,
                full_size: to_u64(r.try_get(9)?),
            })
        })
        .collect()
    }
}

/// Writes an audit entry on `conn`: inside a transaction, it is committed (or rolled back)
/// with the change it records.
pub(crate) async fn audit_in(
    conn: &mut sqlx::AnyConnection,
    at: i64,
    actor: &str,
    role: &str,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, role, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(at)
    .bind(actor)
    .bind(role)
    .bind(action)
    .bind(target)
    .bind(detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(id: &str) -> ReleaseRow {
        ReleaseRow {
            id: id.to_owned(),
            name: id.to_owned(),
            sequence_number: 1,
            manifest_digest: format!("digest-{id}"),
            summary: ReleaseSummary::default(),
            signed_by: Vec::new(),
            envelope_bytes: 0,
            created_by: "test".to_owned(),
            created_at: 0,
            payloads: Vec::new(),
            archived: false,
            remediation: false,
            kind: suitcase_protocol::RELEASE_KIND_RELEASE.to_owned(),
        }
    }

    fn state(document: &[u8]) -> TrustRow {
        TrustRow {
            sequence: 0,
            document: document.to_vec(),
            release_id: None,
            set_by: "admin".to_owned(),
            updated_at: 0,
        }
    }

    /// The upload's check and its insert are apart in time: an upload checked against one
    /// state is not stored after an admin removed it and registered another document with the
    /// same sequence, nor one checked with no state after a state was registered (the
    /// compare-and-set is on the document, and on the state's absence; docs/trust.md).
    #[tokio::test]
    async fn attack_upload_checked_against_a_state_replaced_meanwhile_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = Db::open(&url).await.unwrap();
        assert!(db.trust_state_register(&state(b"A")).await.unwrap());
        let checked_against_a = TrustGuard {
            expected: 0,
            expected_document: b"A".to_vec(),
            next: None,
        };
        // Still A: stored.
        db.release_create(&release("rel_1"), b"e1", &[], Some(&checked_against_a))
            .await
            .unwrap();
        // Replaced by B with the same sequence: not stored.
        assert!(db.trust_state_remove().await.unwrap());
        assert!(db.trust_state_register(&state(b"B")).await.unwrap());
        let e = db
            .release_create(&release("rel_2"), b"e2", &[], Some(&checked_against_a))
            .await
            .unwrap_err();
        assert!(e.downcast_ref::<TrustStateMoved>().is_some(), "{e:#}");
        // Checked with none registered, stored after B was: not stored.
        let e = db
            .release_create(&release("rel_3"), b"e3", &[], None)
            .await
            .unwrap_err();
        assert!(e.downcast_ref::<TrustStateMoved>().is_some(), "{e:#}");
        let ids: Vec<String> = db
            .release_list()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["rel_1"]);
        // With none registered, a guard-less upload is stored as before.
        assert!(db.trust_state_remove().await.unwrap());
        db.release_create(&release("rel_4"), b"e4", &[], None)
            .await
            .unwrap();
    }
}

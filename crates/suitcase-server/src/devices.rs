//! Devices on the hot path: credentials resolved from memory after the first request, and
//! check-ins written back in batches.
//!
//! A fleet checks in far more often than anything changes. A check-in whose inventory is
//! unchanged and whose device was seen in the last minute writes nothing; the rest are
//! buffered and written in one transaction per `flush_interval`. A crash loses at most that
//! interval of "last seen" times; inventories are sent again at the next check-in. Step
//! reports and campaign state are never buffered.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hashlink::LruCache;

use suitcase_protocol::CheckIn;

use crate::AppState;
use crate::error::ApiErr;
use crate::store::SeenUpdate;

/// How stale "last seen" may get before an unchanged check-in is written anyway.
const SEEN_REFRESH_SECONDS: i64 = 60;

/// The most device credentials a node keeps in memory (least recently used ones go first;
/// about 350 bytes each, so about 90 MB at the cap). A device whose credential was evicted
/// costs one indexed database read at its next request.
pub(crate) const DEVICE_CACHE_CAP: usize = 250_000;

/// The longest a cached credential (device or management) is trusted without being read from
/// the database again: the backstop of the revocation bound (docs/server.md, "Credential
/// caches"). Revocations made through the API reach every node's cache sooner, through the
/// audit log (see [`poll_revocations`]).
pub const CREDENTIAL_MAX_AGE_SECONDS: i64 = 300;

/// Independent locks of the device cache: check-ins on different devices rarely contend.
const SHARDS: usize = 16;

/// A device the server has authenticated.
#[derive(Debug)]
pub(crate) struct DeviceEntry {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) push_id: String,
    revoked: AtomicBool,
    /// When its row was last read from the database (server clock, seconds).
    loaded_at: AtomicI64,
    seen: Mutex<(u64, i64)>,
    /// Push ids of its groups, loaded at the first check-in and dropped when groups change.
    groups: RwLock<Option<Arc<Vec<String>>>>,
    /// Step reports it may still send now (a token bucket: tokens, last refill time).
    reports: Mutex<(f64, i64)>,
}

/// Step reports a device may send in a burst; an update sends about a dozen.
pub(crate) const REPORT_BURST: f64 = 120.0;
/// Step reports a device may send per minute after a burst.
pub(crate) const REPORTS_PER_MINUTE: f64 = 60.0;

impl DeviceEntry {
    pub(crate) fn revoked(&self) -> bool {
        self.revoked.load(Ordering::Relaxed)
    }

    /// Takes one report from the device's budget; `Err(seconds)` says when the next one is
    /// welcome. One device cannot grow the database faster than this.
    pub(crate) fn take_report(&self, now: i64) -> Result<(), i64> {
        let Ok(mut b) = self.reports.lock() else {
            return Ok(());
        };
        #[expect(clippy::cast_precision_loss, reason = "seconds since the last report")]
        let elapsed = (now - b.1).max(0) as f64;
        b.0 = (b.0 + elapsed * REPORTS_PER_MINUTE / 60.0).min(REPORT_BURST);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            #[expect(clippy::cast_possible_truncation, reason = "a few seconds at most")]
            let wait = ((1.0 - b.0) * 60.0 / REPORTS_PER_MINUTE).ceil() as i64;
            Err(wait.max(1))
        }
    }

    /// The push ids of the device's groups.
    pub(crate) async fn group_push_ids(
        &self,
        state: &AppState,
    ) -> Result<Arc<Vec<String>>, ApiErr> {
        if let Some(g) = self.groups.read().ok().and_then(|g| g.clone()) {
            return Ok(g);
        }
        let g = Arc::new(state.db.device_group_push_ids(&self.id).await?);
        if let Ok(mut slot) = self.groups.write() {
            *slot = Some(g.clone());
        }
        Ok(g)
    }
}

/// A credential's cache key: which kind (token or certificate) and its SHA-256.
type CredKey = (u8, [u8; 32]);

/// Hashes a [`CredKey`] by taking bytes of the SHA-256 it holds. The digest is already uniform
/// and an attacker cannot choose it without a SHA-256 preimage, so SipHash's protection
/// against crafted collisions buys nothing here; this is the check-in hot path.
#[derive(Clone, Copy, Default)]
pub(crate) struct DigestHasher(u64);

impl core::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

type Lru<V> = LruCache<CredKey, V, core::hash::BuildHasherDefault<DigestHasher>>;

/// The device cache and check-in buffer.
pub(crate) struct Devices {
    /// Credentials seen recently, least recently used evicted first, in [`SHARDS`] shards
    /// chosen by the digest's first byte.
    by_credential: Vec<Mutex<Lru<Arc<DeviceEntry>>>>,
    pending: Mutex<HashMap<String, SeenUpdate>>,
    /// Held for the whole of a flush, so that a flush started by a reader (which must see
    /// every check-in answered before it) waits for one already writing what it drained.
    flushing: tokio::sync::Mutex<()>,
    /// The id of the last audit row the revocation poll read.
    audit_cursor: Mutex<Option<i64>>,
    /// How many times credentials were forgotten: a row read before a revocation committed
    /// is cached only if no forget ran since the read began (see [`Self::remember`]).
    forgotten: AtomicU64,
}

impl Default for Devices {
    fn default() -> Self {
        Self::with_capacity(DEVICE_CACHE_CAP)
    }
}

/// What a check-in says about the device, as a number: an unchanged inventory is not written.
fn inventory_digest(checkin: &CheckIn) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    checkin.vendor_id.hash(&mut h);
    checkin.class_id.hash(&mut h);
    for c in &checkin.components {
        c.id.hash(&mut h);
        c.sequence_number.hash(&mut h);
        c.digest.hash(&mut h);
        c.version.hash(&mut h);
        c.handler.hash(&mut h);
        c.rollback.hash(&mut h);
    }
    checkin.free_storage.hash(&mut h);
    checkin
        .boot
        .as_ref()
        .map(|b| (&b.slot, b.trial, b.reverted))
        .hash(&mut h);
    checkin.agent.hash(&mut h);
    h.finish()
}

impl DeviceEntry {
    /// An entry for a row just read. Its stored inventory's digest is where change detection
    /// starts, so that a device read again (after a restart, an eviction, or on another node)
    /// whose inventory has not changed writes nothing at its next check-in.
    fn from_row(row: crate::store::DeviceRow, now: i64) -> Self {
        let digest = row
            .inventory
            .as_deref()
            .and_then(|i| serde_json::from_str::<CheckIn>(i).ok())
            .map_or(0, |c| inventory_digest(&c));
        Self {
            id: row.id,
            name: row.name,
            push_id: row.push_id,
            revoked: AtomicBool::new(row.revoked),
            loaded_at: AtomicI64::new(now),
            seen: Mutex::new((digest, row.last_seen.unwrap_or(0))),
            groups: RwLock::new(None),
            reports: Mutex::new((REPORT_BURST, 0)),
        }
    }
}

impl Devices {
    /// A cache that holds at most `cap` credentials (at least one per shard).
    pub(crate) fn with_capacity(cap: usize) -> Self {
        let per_shard = cap.div_ceil(SHARDS).max(1);
        Self {
            by_credential: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::with_hasher(per_shard, Default::default())))
                .collect(),
            pending: Mutex::default(),
            flushing: tokio::sync::Mutex::const_new(()),
            audit_cursor: Mutex::new(None),
            forgotten: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &CredKey) -> Option<&Mutex<Lru<Arc<DeviceEntry>>>> {
        self.by_credential
            .get(usize::from(key.1[0]) % self.by_credential.len().max(1))
    }

    /// A cached entry, unless it is older than [`CREDENTIAL_MAX_AGE_SECONDS`].
    fn cached(&self, key: &CredKey, now: i64) -> Option<Arc<DeviceEntry>> {
        let e = self.shard(key)?.lock().ok()?.get(key).cloned()?;
        (now - e.loaded_at.load(Ordering::Relaxed) <= CREDENTIAL_MAX_AGE_SECONDS).then_some(e)
    }

    /// The forget generation, read before a credential's row is read.
    fn generation(&self) -> u64 {
        self.forgotten.load(Ordering::SeqCst)
    }

    /// Caches the entry for a row just read, reusing the cached entry of the same device (its
    /// check-in and report state) when it has one. `since` is [`Self::generation`] from before
    /// the row was read: if a forget ran meanwhile, the row may predate a revocation that
    /// forget was for, and caching it would undo the forget for up to
    /// [`CREDENTIAL_MAX_AGE_SECONDS`], so it serves this request only. (Checked under the
    /// shard's lock, which a forget takes after counting: a forget that counts after the
    /// check removes the entry.)
    fn remember(
        &self,
        key: CredKey,
        row: crate::store::DeviceRow,
        now: i64,
        since: u64,
    ) -> Arc<DeviceEntry> {
        let Some(shard) = self.shard(&key) else {
            return Arc::new(DeviceEntry::from_row(row, now));
        };
        let Ok(mut m) = shard.lock() else {
            return Arc::new(DeviceEntry::from_row(row, now));
        };
        let stale = self.generation() != since;
        if let Some(old) = m.get(&key)
            && old.id == row.id
        {
            let old = old.clone();
            if stale {
                // Cached after the forget, by a read that began after it: fresher than `row`.
                return old;
            }
            old.revoked.store(row.revoked, Ordering::Relaxed);
            old.loaded_at.store(now, Ordering::Relaxed);
            return old;
        }
        let entry = Arc::new(DeviceEntry::from_row(row, now));
        if !stale {
            m.insert(key, entry.clone());
        }
        entry
    }

    fn drop_key(&self, key: &CredKey) {
        if let Some(mut m) = self.shard(key).and_then(|s| s.lock().ok()) {
            m.remove(key);
        }
    }

    /// How many credentials are cached now.
    #[cfg(test)]
    pub(crate) fn cached_len(&self) -> usize {
        self.by_credential
            .iter()
            .filter_map(|s| s.lock().ok().map(|m| m.len()))
            .sum()
    }

    /// The device for a credential's SHA-256 (`column` is `token_hash` or `cert_sha256`).
    pub(crate) async fn by_credential(
        &self,
        state: &AppState,
        column: &str,
        digest: [u8; 32],
    ) -> Result<Option<Arc<DeviceEntry>>, ApiErr> {
        let key: CredKey = (u8::from(column == "cert_sha256"), digest);
        let now = state.now();
        if let Some(e) = self.cached(&key, now) {
            return Ok(Some(e));
        }
        let since = self.generation();
        let Some(row) = state
            .db
            .device_by_credential(column, &hex::encode(digest))
            .await?
        else {
            // Rotated away or never issued.
            self.drop_key(&key);
            return Ok(None);
        };
        Ok(Some(self.remember(key, row, now, since)))
    }

    /// The device with this name, for the DDI gateway token (which acts for any controller,
    /// docs/ddi.md). With `register`, an unknown name is registered (with a fresh token that
    /// nobody is told: it authenticates through the gateway, or after a token rotation), as
    /// hawkBit registers unknown controllers on their first poll.
    pub(crate) async fn by_name(
        &self,
        state: &AppState,
        name: &str,
        register: bool,
    ) -> Result<Option<Arc<DeviceEntry>>, ApiErr> {
        use sha2::Digest as _;
        let key: CredKey = (2, sha2::Sha256::digest(name.as_bytes()).into());
        let now = state.now();
        if let Some(e) = self.cached(&key, now) {
            return Ok(Some(e));
        }
        let since = self.generation();
        let mut row = state.db.device_get(name).await?.filter(|r| r.name == name);
        if row.is_none() && register {
            crate::api::valid_name("controller id", name)?;
            let (_, token_hash) = crate::auth::new_secret("sct_d_");
            let dev = crate::store::NewDevice {
                id: crate::auth::new_id("dev_"),
                name: name.to_owned(),
                token_hash,
                cert_sha256: None,
                push_id: crate::auth::new_id(""),
                tags: Vec::new(),
            };
            if let Err(e) = state
                .db
                .device_create_many(std::slice::from_ref(&dev), now)
                .await
                && !crate::error::is_unique_violation(&e)
            {
                return Err(e.into());
            }
            crate::engine::audit_server(
                state,
                "device.register",
                &dev.id,
                serde_json::json!({"name": name, "via": "ddi-gateway-token"}),
            )
            .await;
            row = state.db.device_get(name).await?.filter(|r| r.name == name);
        }
        let Some(row) = row else {
            self.drop_key(&key);
            return Ok(None);
        };
        Ok(Some(self.remember(key, row, now, since)))
    }

    /// Drops a device's cached credentials (after revocation or token rotation).
    pub(crate) fn forget(&self, device_id: &str) {
        self.forget_all(&std::collections::HashSet::from([device_id]));
    }

    /// Drops the cached credentials of these devices: one pass over each shard whatever the
    /// number of devices (a poll may bring 10,000 revocations; a pass per device would visit
    /// the cache that many times).
    pub(crate) fn forget_all(&self, device_ids: &std::collections::HashSet<&str>) {
        if device_ids.is_empty() {
            return;
        }
        // Counted before the shards are emptied: a read in flight then does not cache.
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        for shard in &self.by_credential {
            if let Ok(mut m) = shard.lock() {
                m.retain(|_, e| {
                    if device_ids.contains(e.id.as_str()) {
                        e.revoked.store(true, Ordering::Relaxed);
                        false
                    } else {
                        true
                    }
                });
            }
        }
    }

    /// Forgets every device's cached groups (after a membership change).
    pub(crate) fn clear_groups(&self) {
        for shard in &self.by_credential {
            if let Ok(m) = shard.lock() {
                for (_, e) in m.iter() {
                    if let Ok(mut g) = e.groups.write() {
                        *g = None;
                    }
                }
            }
        }
    }

    /// Notes a check-in; buffers a write if something changed or "last seen" is stale.
    pub(crate) fn record(&self, entry: &DeviceEntry, checkin: &CheckIn, now: i64) {
        let digest = inventory_digest(checkin);
        let Ok(mut seen) = entry.seen.lock() else {
            return;
        };
        let changed = seen.0 != digest;
        if !changed && now - seen.1 < SEEN_REFRESH_SECONDS {
            return;
        }
        *seen = (digest, now);
        drop(seen);
        let update = SeenUpdate {
            device_id: entry.id.clone(),
            last_seen: now,
            inventory: changed
                .then(|| serde_json::to_string(checkin).ok())
                .flatten(),
            vendor_id: checkin.vendor_id.clone(),
            class_id: checkin.class_id.clone(),
            sequence_number: checkin.components.iter().map(|c| c.sequence_number).max(),
        };
        if let Ok(mut p) = self.pending.lock() {
            // A newer unchanged check-in must not erase a buffered inventory change.
            match p.get_mut(&entry.id) {
                Some(old) if update.inventory.is_none() => old.last_seen = now,
                _ => {
                    p.insert(entry.id.clone(), update);
                }
            }
        }
    }

    fn drain(&self) -> Vec<SeenUpdate> {
        self.pending
            .lock()
            .map(|mut p| p.drain().map(|(_, v)| v).collect())
            .unwrap_or_default()
    }

    /// Writes buffered check-ins now.
    pub(crate) async fn flush(&self, state: &AppState) {
        let _one_at_a_time = self.flushing.lock().await;
        let batch = self.drain();
        if batch.is_empty() {
            return;
        }
        for chunk in batch.chunks(2000) {
            if let Err(e) = state.db.device_seen(chunk).await {
                tracing::warn!(error = %e, devices = chunk.len(), "cannot write check-ins; retrying later");
                if let Ok(mut p) = self.pending.lock() {
                    for u in chunk {
                        p.entry(u.device_id.clone()).or_insert_with(|| u.clone());
                    }
                }
            }
        }
    }
}

/// How often each node reads the audit log for credentials revoked or rotated, by itself or by
/// another node on the same database.
pub(crate) const REVOCATION_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The audit actions that take a credential away, and the cache each empties.
const REVOKING: [&str; 3] = ["device.revoke", "device.token", "token.revoke"];

/// Forgets the cached credentials that another node (or this one) revoked or rotated since the
/// last poll, read from the audit log by its primary key: the cost is the number of new audit
/// rows, not the size of the fleet. The first poll only finds where the log ends. A revocation
/// whose audit row is lost (the node died between the two writes) is caught by
/// [`CREDENTIAL_MAX_AGE_SECONDS`] instead.
pub(crate) async fn poll_revocations(state: &AppState) {
    let cursor = state.devices.audit_cursor.lock().ok().and_then(|c| *c);
    let Some(cursor) = cursor else {
        match state.db.audit_last_id().await {
            Ok(last) => {
                if let Ok(mut c) = state.devices.audit_cursor.lock() {
                    *c = Some(last);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the audit log for revocations"),
        }
        return;
    };
    match state.db.audit_credential_changes(cursor, &REVOKING).await {
        Ok((rows, last)) => {
            let (tokens, devices): (Vec<_>, Vec<_>) = rows
                .iter()
                .partition(|(action, _)| action == "token.revoke");
            state
                .managers
                .forget_all(&tokens.iter().map(|(_, t)| t.as_str()).collect());
            state
                .devices
                .forget_all(&devices.iter().map(|(_, t)| t.as_str()).collect());
            if let Ok(mut c) = state.devices.audit_cursor.lock() {
                *c = Some(last);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the audit log for revocations"),
    }
}

/// Writes buffered check-ins every `flush_interval` until the server stops (or, for an
/// embedded router, until the last handle to its state is gone).
pub(crate) async fn flusher(
    state: std::sync::Weak<crate::Inner>,
    interval: std::time::Duration,
    mut stop: Option<tokio::sync::watch::Receiver<bool>>,
) {
    let mut tick = tokio::time::interval(interval);
    let mut last_poll = std::time::Instant::now()
        .checked_sub(REVOCATION_POLL)
        .unwrap_or_else(std::time::Instant::now);
    loop {
        let stopped = async {
            match &mut stop {
                Some(s) => {
                    let _ = s.changed().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = stopped => true,
        };
        let Some(inner) = state.upgrade() else {
            return;
        };
        let state = AppState(inner);
        if last_poll.elapsed() >= REVOCATION_POLL {
            last_poll = std::time::Instant::now();
            poll_revocations(&state).await;
        }
        state.devices.flush(&state).await;
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> crate::store::DeviceRow {
        crate::store::DeviceRow {
            id: format!("dev_{i}"),
            name: format!("d{i}"),
            push_id: format!("p{i}"),
            vendor_id: None,
            class_id: None,
            sequence_number: None,
            inventory: None,
            last_seen: None,
            revoked: false,
            created_at: 0,
        }
    }

    fn key(i: usize) -> CredKey {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        (0, d)
    }

    /// A flood of distinct credentials (a fleet larger than the cap, or an attacker with many
    /// valid tokens) cannot grow the cache past its cap; the most recently used stay.
    #[test]
    fn attack_credential_flood_is_bounded_by_the_cap() {
        let d = Devices::with_capacity(64);
        for i in 0..10_000 {
            d.remember(key(i), row(i), 0, 0);
            assert!(d.cached_len() <= 64, "{} after {i}", d.cached_len());
        }
        assert!(d.cached(&key(9_999), 0).is_some());
        assert!(d.cached(&key(0), 0).is_none());
    }

    /// A cached credential is trusted for at most CREDENTIAL_MAX_AGE_SECONDS; a re-read of the
    /// same device keeps its entry (its check-in state) and takes the new revocation flag.
    #[test]
    fn cached_credentials_expire_and_reload_in_place() {
        let d = Devices::with_capacity(64);
        let e = d.remember(key(1), row(1), 100, 0);
        assert!(
            d.cached(&key(1), 100 + CREDENTIAL_MAX_AGE_SECONDS)
                .is_some()
        );
        assert!(
            d.cached(&key(1), 101 + CREDENTIAL_MAX_AGE_SECONDS)
                .is_none()
        );
        let mut revoked = row(1);
        revoked.revoked = true;
        let again = d.remember(key(1), revoked, 101 + CREDENTIAL_MAX_AGE_SECONDS, 0);
        assert!(Arc::ptr_eq(&e, &again));
        assert!(again.revoked());
        d.forget("dev_1");
        assert_eq!(d.cached_len(), 0);
    }

    /// A poll's revocations are dropped together: 10,000 revoked devices out of 20,000 cached
    /// leave exactly the other 10,000, marked as they were.
    #[test]
    fn attack_revocation_flood_is_forgotten_in_one_pass_per_shard() {
        let d = Devices::with_capacity(40_000);
        let entries: Vec<_> = (0..20_000)
            .map(|i| d.remember(key(i), row(i), 0, 0))
            .collect();
        let ids: Vec<String> = (0..20_000).step_by(2).map(|i| row(i).id).collect();
        d.forget_all(&ids.iter().map(String::as_str).collect());
        assert_eq!(d.cached_len(), 10_000);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.revoked(), i % 2 == 0, "{i}");
            assert_eq!(d.cached(&key(i), 0).is_some(), i % 2 == 1, "{i}");
        }
    }

    /// A request read a credential's row, then the device was revoked and forgotten, then the
    /// request went to cache its (old, unrevoked) row: it serves that request but is not
    /// cached, so the next request reads the revocation.
    #[test]
    fn attack_row_read_before_a_revoke_is_not_cached_after_the_forget() {
        let d = Devices::with_capacity(64);
        let since = d.generation();
        d.forget("dev_1");
        let e = d.remember(key(1), row(1), 0, since);
        assert!(!e.revoked());
        assert!(d.cached(&key(1), 0).is_none());
        // A read that began after the forget caches as usual.
        d.remember(key(1), row(1), 0, d.generation());
        assert!(d.cached(&key(1), 0).is_some());
    }
}

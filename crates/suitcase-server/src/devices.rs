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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use suitcase_protocol::CheckIn;

use crate::AppState;
use crate::error::ApiErr;
use crate::store::SeenUpdate;

/// How stale "last seen" may get before an unchanged check-in is written anyway.
const SEEN_REFRESH_SECONDS: i64 = 60;

/// A device the server has authenticated.
#[derive(Debug)]
pub(crate) struct DeviceEntry {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) push_id: String,
    revoked: AtomicBool,
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
        #[allow(clippy::cast_precision_loss, reason = "seconds since the last report")]
        let elapsed = (now - b.1).max(0) as f64;
        b.0 = (b.0 + elapsed * REPORTS_PER_MINUTE / 60.0).min(REPORT_BURST);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            #[allow(clippy::cast_possible_truncation, reason = "a few seconds at most")]
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

type DigestMap<V> = HashMap<CredKey, V, core::hash::BuildHasherDefault<DigestHasher>>;

/// The device cache and check-in buffer.
#[derive(Default)]
pub(crate) struct Devices {
    by_credential: RwLock<DigestMap<Arc<DeviceEntry>>>,
    pending: Mutex<HashMap<String, SeenUpdate>>,
}

impl Devices {
    /// The device for a credential's SHA-256 (`column` is `token_hash` or `cert_sha256`).
    pub(crate) async fn by_credential(
        &self,
        state: &AppState,
        column: &str,
        digest: [u8; 32],
    ) -> Result<Option<Arc<DeviceEntry>>, ApiErr> {
        let key: CredKey = (u8::from(column == "cert_sha256"), digest);
        if let Some(e) = self
            .by_credential
            .read()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(Some(e));
        }
        let Some(row) = state
            .db
            .device_by_credential(column, &hex::encode(digest))
            .await?
        else {
            return Ok(None);
        };
        let entry = Arc::new(DeviceEntry {
            id: row.id,
            name: row.name,
            push_id: row.push_id,
            revoked: AtomicBool::new(row.revoked),
            seen: Mutex::new((0, row.last_seen.unwrap_or(0))),
            groups: RwLock::new(None),
            reports: Mutex::new((REPORT_BURST, 0)),
        });
        if let Ok(mut m) = self.by_credential.write() {
            m.insert(key, entry.clone());
        }
        Ok(Some(entry))
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
        if let Some(e) = self
            .by_credential
            .read()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(Some(e));
        }
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
            let now = state.now();
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
            return Ok(None);
        };
        let entry = Arc::new(DeviceEntry {
            id: row.id,
            name: row.name,
            push_id: row.push_id,
            revoked: AtomicBool::new(row.revoked),
            seen: Mutex::new((0, row.last_seen.unwrap_or(0))),
            groups: RwLock::new(None),
            reports: Mutex::new((REPORT_BURST, 0)),
        });
        if let Ok(mut m) = self.by_credential.write() {
            m.insert(key, entry.clone());
        }
        Ok(Some(entry))
    }

    /// Drops a device's cached credentials (after revocation or token rotation).
    pub(crate) fn forget(&self, device_id: &str) {
        if let Ok(mut m) = self.by_credential.write() {
            m.retain(|_, e| {
                if e.id == device_id {
                    e.revoked.store(true, Ordering::Relaxed);
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Forgets every device's cached groups (after a membership change).
    pub(crate) fn clear_groups(&self) {
        if let Ok(m) = self.by_credential.read() {
            for e in m.values() {
                if let Ok(mut g) = e.groups.write() {
                    *g = None;
                }
            }
        }
    }

    /// Notes a check-in; buffers a write if something changed or "last seen" is stale.
    pub(crate) fn record(&self, entry: &DeviceEntry, checkin: &CheckIn, now: i64) {
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
        let digest = h.finish();
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

/// Writes buffered check-ins every `flush_interval` until the server stops (or, for an
/// embedded router, until the last handle to its state is gone).
pub(crate) async fn flusher(
    state: std::sync::Weak<crate::Inner>,
    interval: std::time::Duration,
    mut stop: Option<tokio::sync::watch::Receiver<bool>>,
) {
    let mut tick = tokio::time::interval(interval);
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
        state.devices.flush(&state).await;
        if stopping {
            return;
        }
    }
}

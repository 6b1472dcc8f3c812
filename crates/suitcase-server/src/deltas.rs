//! Delta patches as a transport encoding.
//!
//! When a payload is uploaded, the server makes `suitcase-delta` patches to it from the same
//! component's images in the few releases before it, keeps those that pay (smaller than 90% of
//! the full payload), and offers one to each device whose check-in reports that source image
//! installed (by SHA-256). The signed manifest is untouched: it still names the full image's
//! digest, and the patch header names both the source and the result digests, so a device
//! applies the patch to the installed image and the SUIT processor's image-match then checks
//! the result as for any download (manifest §8.4.8.5). A wrong, stale or malicious patch
//! cannot produce an image the author did not sign; the worst it can do is fail, and the
//! device then downloads the full payload.
//!
//! Generation is CPU-heavy, so it runs on blocking threads one payload at a time, after the
//! upload has been answered. Encrypted payloads get no deltas (ciphertexts do not diff).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::Result;
use suitcase_protocol::{DeltaOffer, ReleaseDelta};

use crate::AppState;

/// Sources tried per payload: the newest releases before it with the same component.
const MAX_SOURCES: usize = 3;
/// A delta must be at most this fraction of the full payload to be worth offering.
const MAX_RATIO: f64 = 0.9;

/// A stored delta.
#[derive(Clone, Debug)]
pub(crate) struct DeltaRow {
    pub(crate) id: String,
    pub(crate) release_id: String,
    pub(crate) idx: u32,
    pub(crate) source_release_id: String,
    pub(crate) source_sha256: String,
    pub(crate) object_key: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) ram_bound: u32,
    pub(crate) full_size: u64,
}

impl DeltaRow {
    pub(crate) fn offer(&self) -> DeltaOffer {
        DeltaOffer {
            url: format!("/api/v1/device/deltas/{}", self.id),
            size: self.size,
            sha256: self.sha256.clone(),
            source_sha256: self.source_sha256.clone(),
            ram_bound: self.ram_bound,
        }
    }

    pub(crate) fn info(&self) -> ReleaseDelta {
        ReleaseDelta {
            index: self.idx,
            source_release_id: self.source_release_id.clone(),
            source_sha256: self.source_sha256.clone(),
            size: self.size,
            full_size: self.full_size,
            ram_bound: self.ram_bound,
        }
    }
}

/// Deltas of one payload, by (release id, payload index).
type ByPayload = HashMap<(String, u32), Vec<Arc<DeltaRow>>>;

/// Every delta, by (release, payload index), in memory for check-ins.
pub(crate) struct Deltas {
    by_payload: RwLock<ByPayload>,
    by_id: RwLock<HashMap<String, Arc<DeltaRow>>>,
    /// One generation at a time: it is CPU-bound.
    gate: tokio::sync::Semaphore,
}

impl Deltas {
    pub(crate) fn new() -> Self {
        Self {
            by_payload: RwLock::default(),
            by_id: RwLock::default(),
            gate: tokio::sync::Semaphore::new(1),
        }
    }

    fn insert(&self, row: DeltaRow) {
        let row = Arc::new(row);
        if let Ok(mut m) = self.by_payload.write() {
            m.entry((row.release_id.clone(), row.idx))
                .or_default()
                .push(row.clone());
        }
        if let Ok(mut m) = self.by_id.write() {
            m.insert(row.id.clone(), row);
        }
    }

    /// The delta from the image with `source_sha256` to payload `idx` of `release_id`.
    pub(crate) fn find(
        &self,
        release_id: &str,
        idx: u32,
        source_sha256: &str,
    ) -> Option<Arc<DeltaRow>> {
        let m = self.by_payload.read().ok()?;
        m.get(&(release_id.to_owned(), idx))?
            .iter()
            .find(|d| d.source_sha256.eq_ignore_ascii_case(source_sha256))
            .cloned()
    }

    /// Forgets the deltas of a deleted release.
    pub(crate) fn forget_release(&self, release_id: &str) {
        if let Ok(mut m) = self.by_payload.write() {
            m.retain(|(r, _), _| r != release_id);
        }
        if let Ok(mut m) = self.by_id.write() {
            m.retain(|_, d| d.release_id != release_id);
        }
    }

    /// A delta by id.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<DeltaRow>> {
        self.by_id.read().ok()?.get(id).cloned()
    }

    /// The deltas of a release.
    pub(crate) fn of_release(&self, release_id: &str) -> Vec<ReleaseDelta> {
        let Ok(m) = self.by_payload.read() else {
            return Vec::new();
        };
        let mut out: Vec<ReleaseDelta> = m
            .iter()
            .filter(|((r, _), _)| r == release_id)
            .flat_map(|(_, v)| v.iter().map(|d| d.info()))
            .collect();
        out.sort_by(|a, b| (a.index, &a.source_release_id).cmp(&(b.index, &b.source_release_id)));
        out
    }
}

/// Loads every stored delta (at start).
pub(crate) async fn load(state: &AppState) -> Result<()> {
    for row in state.db.delta_list().await? {
        state.deltas.insert(row);
    }
    Ok(())
}

/// Makes deltas to payload `idx` of `release_id` in the background.
pub(crate) fn schedule(state: &AppState, release_id: &str, idx: u32) {
    if !state.config.deltas {
        return;
    }
    let state = state.clone();
    let release_id = release_id.to_owned();
    tokio::spawn(async move {
        if let Err(e) = generate(&state, &release_id, idx).await {
            tracing::warn!(error = %format!("{e:#}"), release = %release_id, idx, "delta generation failed");
        }
    });
}

async fn generate(state: &AppState, release_id: &str, idx: u32) -> Result<()> {
    let _permit = state.deltas.gate.acquire().await?;
    let Some(target) = state.db.release_get(release_id).await? else {
        return Ok(());
    };
    let Some(payload) = target.payloads.iter().find(|p| p.idx == idx) else {
        return Ok(());
    };
    let (Some(key), Some(sha)) = (&payload.object_key, &payload.sha256) else {
        return Ok(());
    };
    let Some(component) = target
        .summary
        .components
        .iter()
        .find(|c| c.uri.as_deref() == Some(payload.uri.as_str()))
    else {
        return Ok(());
    };
    // Only full images: not ciphertexts, not copies, and not the patch of a delta release
    // (fetched into a helper component that has no image digest).
    if component.encrypted
        || component.source_component.is_some()
        || component.image_digest.is_none()
    {
        return Ok(());
    }
    // Earlier releases' images of the same component, newest first.
    let mut sources = Vec::new();
    let mut releases = state.db.release_list().await?;
    releases.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    for r in releases
        .iter()
        .filter(|r| r.id != target.id && r.created_at <= target.created_at)
    {
        for p in &r.payloads {
            let same = r.summary.components.iter().any(|c| {
                c.id == component.id
                    && !c.encrypted
                    && c.image_digest.is_some()
                    && c.uri.as_deref() == Some(p.uri.as_str())
            });
            if let (true, Some(k), Some(s)) = (same, &p.object_key, &p.sha256)
                && s != sha
                && !sources
                    .iter()
                    .any(|(_, _, x): &(String, String, String)| x == s)
            {
                sources.push((r.id.clone(), k.clone(), s.clone()));
            }
        }
        if sources.len() >= MAX_SOURCES {
            break;
        }
    }
    if sources.is_empty() {
        return Ok(());
    }
    let new = Arc::new(state.blobs.get_all(key).await?);
    for (source_release, source_key, source_sha) in sources.into_iter().take(MAX_SOURCES) {
        if state.deltas.find(release_id, idx, &source_sha).is_some() {
            continue;
        }
        let old = state.blobs.get_all(&source_key).await?;
        let new2 = new.clone();
        let started = std::time::Instant::now();
        let patch = tokio::task::spawn_blocking(move || {
            suitcase_delta::create(&old, &new2, &suitcase_delta::Options::default())
        })
        .await??;
        #[expect(clippy::cast_precision_loss, reason = "a size ratio")]
        let ratio = patch.bytes.len() as f64 / new.len().max(1) as f64;
        if patch.header.mode == suitcase_delta::Mode::Full || ratio > MAX_RATIO {
            tracing::info!(release = %release_id, idx, source = %source_release, ratio, "a delta does not pay; not offered");
            continue;
        }
        let object_key = format!("deltas/{release_id}/{idx}/{source_sha}");
        let bytes = bytes::Bytes::from(patch.bytes);
        let size = bytes.len() as u64;
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
        let (size2, patch_sha) = state
            .blobs
            .put_stream(&object_key, Box::pin(stream), u64::MAX)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        debug_assert_eq!(size, size2);
        let row = DeltaRow {
            id: crate::auth::new_id("dlt_"),
            release_id: release_id.to_owned(),
            idx,
            source_release_id: source_release.clone(),
            source_sha256: source_sha,
            object_key,
            size,
            sha256: patch_sha,
            ram_bound: patch.header.ram_bound,
            full_size: new.len() as u64,
        };
        state.db.delta_insert(&row, state.now()).await?;
        tracing::info!(release = %release_id, idx, source = %source_release, bytes = size, full = new.len(), seconds = started.elapsed().as_secs_f64(), "delta made");
        metrics::counter!("suitcase_deltas_made_total").increment(1);
        state.deltas.insert(row);
    }
    Ok(())
}

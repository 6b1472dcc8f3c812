//! Payload storage: a local directory by default, or an S3-style object store
//! (`s3://bucket/prefix`, with credentials, region and endpoint from the usual `AWS_*`
//! environment variables). Uploads stream through a SHA-256 hasher into a multipart upload, so
//! payload size is bounded by the store, not by the server's memory.

use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, WriteMultipart};
use sha2::{Digest as _, Sha256};

use crate::Config;

/// Walks a local payload directory's server prefixes and removes orphans (see
/// [`Blobs::sweep`]). Bounded: at most 16 levels deep.
fn sweep_dir(
    root: &std::path::Path,
    referenced: &std::collections::HashSet<String>,
    cutoff: std::time::SystemTime,
) -> Result<usize> {
    let mut removed = 0;
    let mut todo: Vec<(std::path::PathBuf, usize)> =
        PREFIXES.iter().map(|p| (root.join(p), 0)).collect();
    while let Some((dir, depth)) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if depth < 16 {
                    todo.push((path, depth + 1));
                }
                continue;
            }
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let key: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let key = key.join("/");
            // A staging file of an upload in progress or cut off: `NAME#N`.
            let staging = key
                .rsplit_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let old = meta.modified().is_ok_and(|m| m <= cutoff);
            if old && (staging || !referenced.contains(&key)) {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "cannot remove an orphan")
                    }
                }
            }
        }
    }
    Ok(removed)
}

/// How much a local payload download reads at a time: large reads keep the per-chunk costs (a
/// blocking-pool hop, a system call, hyper's bookkeeping) small next to the copy itself.
const LOCAL_CHUNK: u64 = 1 << 20;

/// The bytes `range` of a file in a local payload directory, read in [`LOCAL_CHUNK`] reads on
/// the blocking pool. `object_store`'s local store reads 8 KiB at a time,
/// which held downloads to a sixth of nginx's pace (docs/benchmarks.md).
async fn local_range(
    dir: &std::path::Path,
    key: &str,
    range: Range<u64>,
) -> Result<BoxStream<'static, Result<Bytes, object_store::Error>>, object_store::Error> {
    let location = Path::from(key);
    // Keys are the server's own (`releases/...`, `deltas/...`); `Path` has refused `..` and
    // empty segments, so the file is inside the directory.
    let mut file_path = dir.to_path_buf();
    file_path.extend(location.parts().map(|p| p.as_ref().to_owned()));
    let not_found = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            object_store::Error::NotFound {
                path: location.to_string(),
                source: Box::new(e),
            }
        } else {
            object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            }
        }
    };
    let generic = |e: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: e,
    };
    let start = range.start;
    let file = tokio::task::spawn_blocking(move || {
        use std::io::Seek as _;
        let mut f = std::fs::File::open(file_path)?;
        f.seek(std::io::SeekFrom::Start(start))?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| generic(Box::new(e)))?
    .map_err(not_found)?;
    // The file travels with the stream and into each read; reads are sequential.
    let stream = futures::stream::try_unfold(
        (Some(file), range.end - range.start),
        move |(file, left)| async move {
            let Some(mut file) = file.filter(|_| left > 0) else {
                return Ok(None);
            };
            let len = left.min(LOCAL_CHUNK);
            let (file, buf) = tokio::task::spawn_blocking(move || {
                use std::io::Read as _;
                // Into spare capacity: no zeroing of the buffer before the read.
                let mut buf = Vec::with_capacity(len as usize);
                (&mut file).take(len).read_to_end(&mut buf)?;
                if (buf.len() as u64) < len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the payload file is shorter than recorded",
                    ));
                }
                Ok((file, buf))
            })
            .await
            .map_err(|e| generic(Box::new(e)))?
            .map_err(|e| generic(Box::new(e)))?;
            Ok(Some((Bytes::from(buf), (Some(file), left - len))))
        },
    );
    Ok(stream.boxed())
}

/// The payload store.
#[derive(Clone)]
pub(crate) struct Blobs {
    store: Arc<dyn ObjectStore>,
    pub(crate) describe: String,
    /// The directory, for a local store (its uploads stage in `NAME#N` files that the store
    /// does not list).
    local_dir: Option<std::path::PathBuf>,
}

/// The prefixes the server writes under; the sweep looks nowhere else (the bucket or
/// directory may be shared).
const PREFIXES: [&str; 2] = ["releases", "deltas"];

/// Why an upload stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    #[error("the upload is larger than the server's limit of {0} bytes")]
    TooLarge(u64),
    #[error("the upload was cut off: {0}")]
    Body(String),
    #[error("payload store: {0}")]
    Store(#[from] object_store::Error),
}

impl Blobs {
    pub(crate) fn open(config: &Config) -> Result<Self> {
        let spec = config.payloads.clone();
        match spec.as_deref() {
            Some(url) if url.starts_with("s3://") => {
                let parsed = url::Url::parse(url)
                    .with_context(|| format!("bad payload store URL {url:?}"))?;
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .with_context(|| format!("{url:?} names no bucket: use s3://BUCKET/PREFIX"))?;
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in parsed.query_pairs() {
                    let key: AmazonS3ConfigKey = k.parse().with_context(|| {
                        format!("unknown S3 setting {k:?} in {url:?} (e.g. endpoint, region, access_key_id, secret_access_key)")
                    })?;
                    if key == AmazonS3ConfigKey::Endpoint && v.starts_with("http://") {
                        builder = builder.with_allow_http(true);
                    }
                    builder = builder.with_config(key, v.as_ref());
                }
                let s3 = builder
                    .build()
                    .with_context(|| format!("cannot configure the S3 store {url:?} (set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for a non-AWS store, AWS_ENDPOINT and AWS_ALLOW_HTTP)"))?;
                let prefix = parsed.path().trim_matches('/').to_owned();
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                };
                Ok(Self {
                    store,
                    // Never echo settings that may hold secrets.
                    describe: format!("s3://{bucket}/{prefix}"),
                    local_dir: None,
                })
            }
            Some(other) if other.contains("://") => {
                bail!("unsupported payload store {other:?}: use a directory or s3://BUCKET/PREFIX")
            }
            _ => {
                let dir = spec
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| config.data_dir.join("payloads"));
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!("cannot create the payload directory {}", dir.display())
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir).with_context(|| {
                    format!("cannot open the payload directory {}", dir.display())
                })?;
                Ok(Self {
                    store: Arc::new(store),
                    describe: dir.display().to_string(),
                    local_dir: Some(dir),
                })
            }
        }
    }

    /// Streams a body into the store; returns the size and SHA-256 (hex). Nothing is left
    /// behind if the body fails or is too large.
    pub(crate) async fn put_stream<E: core::fmt::Display>(
        &self,
        key: &str,
        mut body: BoxStream<'_, Result<Bytes, E>>,
        limit: u64,
    ) -> Result<(u64, String), UploadError> {
        let path = Path::from(key);
        let upload = self.store.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(UploadError::Body(e.to_string()));
                }
            };
            size += chunk.len() as u64;
            if size > limit {
                let _ = writer.abort().await;
                return Err(UploadError::TooLarge(limit));
            }
            hasher.update(&chunk);
            writer.wait_for_capacity(4).await?;
            writer.put(chunk);
        }
        writer.finish().await?;
        Ok((size, hex::encode(hasher.finalize())))
    }

    /// The bytes `range` of an object, as a stream.
    pub(crate) async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, object_store::Error>>, object_store::Error> {
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        if let Some(dir) = &self.local_dir {
            return local_range(dir, key, range).await;
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        Ok(self
            .store
            .get_opts(&Path::from(key), opts)
            .await?
            .into_stream())
    }

    /// Reads a whole object (for small ones).
    #[allow(dead_code, reason = "used by tests and the delta cache")]
    pub(crate) async fn get_all(&self, key: &str) -> Result<Vec<u8>> {
        let s = self.store.get(&Path::from(key)).await?.into_stream();
        let chunks: Vec<Bytes> = s.try_collect().await?;
        Ok(chunks.concat())
    }

    /// Removes orphans older than `age`: objects no database row refers to (an upload whose
    /// server was killed between storing and recording it, a refused upload whose delete
    /// failed) and, in a local directory, the staging files of uploads cut off by a kill.
    /// Young files are left alone: they may belong to an upload in progress. Returns how many
    /// were removed. (On S3, incomplete multipart uploads are the bucket's lifecycle rule's
    /// job: `AbortIncompleteMultipartUpload`.)
    pub(crate) async fn sweep(
        &self,
        referenced: &std::collections::HashSet<String>,
        age: std::time::Duration,
    ) -> Result<usize> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(age)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut removed = 0;
        if let Some(dir) = &self.local_dir {
            let dir = dir.clone();
            let referenced = referenced.clone();
            removed = tokio::task::spawn_blocking(move || sweep_dir(&dir, &referenced, cutoff))
                .await
                .context("the sweep stopped")??;
            return Ok(removed);
        }
        for prefix in PREFIXES {
            let mut list = self.store.list(Some(&Path::from(prefix)));
            while let Some(meta) = list.next().await {
                let meta = meta?;
                if !referenced.contains(meta.location.as_ref())
                    && std::time::SystemTime::from(meta.last_modified) <= cutoff
                {
                    self.delete(meta.location.as_ref()).await;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    pub(crate) async fn delete(&self, key: &str) {
        if let Err(e) = self.store.delete(&Path::from(key)).await {
            tracing::warn!(error = %e, key, "cannot delete a payload");
        }
    }
}

/// Sweeps the payload store for orphans at start and then periodically, while the server
/// lives.
pub(crate) async fn sweeper(state: std::sync::Weak<crate::Inner>) {
    loop {
        let Some(inner) = state.upgrade() else {
            return;
        };
        let age = inner.config.orphan_age;
        let every = inner
            .config
            .sweep_interval
            .unwrap_or_else(|| (age / 2).max(std::time::Duration::from_secs(60)))
            .max(std::time::Duration::from_millis(10));
        let result = async {
            let now = (inner.config.clock)();
            let stale = now - crate::api::UPLOAD_CLAIM_STALE;
            let referenced = inner.db.referenced_objects(stale).await?;
            inner.blobs.sweep(&referenced, age).await
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed orphaned files from the payload store"),
            Err(e) => tracing::warn!(error = %e, "cannot sweep the payload store"),
        }
        drop(inner);
        tokio::time::sleep(every).await;
    }
}

//! The gateway's cache of envelopes and payloads (docs/gateway.md §3): content-addressed
//! (`objects/<sha-256 hex>`), bounded in bytes with least-recently-used eviction, and an
//! index (`index.json`) from the CoAP path a sub-device asks for to the object's digest.
//!
//! Crash safety: an object is written aside, synced, then renamed into `objects/`; the index
//! is written the same way after it. At start, objects the index does not name and index
//! entries whose file is missing or of the wrong size are dropped, so the two always agree.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// The most objects the index holds, whatever their sizes (it is read whole at start).
pub const MAX_OBJECTS: usize = 4096;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// CoAP path (`/d/releases/…/envelope`, `/d/payloads/…/0`) → object digest.
    paths: BTreeMap<String, String>,
    /// Object digest → its entry.
    objects: BTreeMap<String, Entry>,
    /// The use clock: each use stamps the object with the next value.
    clock: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Entry {
    size: u64,
    used: u64,
}

/// A cached object, ready to serve.
#[derive(Clone, Debug)]
pub struct Object {
    /// Its file.
    pub file: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
}

fn io(what: impl core::fmt::Display) -> impl FnOnce(std::io::Error) -> AgentError {
    move |e| AgentError::Local(format!("{what}: {e}"))
}

pub(crate) use crate::state::write_atomic;

/// Syncs the directory holding `path` (a rename or unlink in it becomes durable).
pub(crate) fn sync_dir(path: &Path) -> Result<(), AgentError> {
    crate::state::sync_dir(path.parent().unwrap_or(Path::new(".")))
}

impl Cache {
    /// Opens (or creates) the cache in `dir`, at most `max_bytes`.
    ///
    /// # Errors
    /// `Local` if the directory cannot be used.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, AgentError> {
        let objects = dir.join("objects");
        std::fs::create_dir_all(&objects).map_err(io(objects.display()))?;
        let mut index: Index = match std::fs::read(dir.join("index.json")) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!("gateway cache index unreadable ({e}); starting empty");
                Index::default()
            }),
            Err(_) => Index::default(),
        };
        // Index entries without their file (or with a file of another size) go.
        index
            .objects
            .retain(|sha, e| std::fs::metadata(objects.join(sha)).is_ok_and(|m| m.len() == e.size));
        let Index {
            paths,
            objects: objs,
            ..
        } = &mut index;
        paths.retain(|_, sha| objs.contains_key(sha));
        // Files the index does not name (a crash between the rename and the index) go.
        for entry in std::fs::read_dir(&objects)
            .map_err(io(objects.display()))?
            .take(MAX_OBJECTS * 2)
        {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if !index.objects.contains_key(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let cache = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            index: Mutex::new(index),
        };
        {
            let mut index = cache.lock();
            cache.evict(&mut index, 0)?;
            cache.save(&index)?;
        }
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The object cached for `path`, marked as just used.
    pub fn lookup(&self, path: &str) -> Option<Object> {
        let mut index = self.lock();
        let sha = index.paths.get(path)?.clone();
        index.clock += 1;
        let clock = index.clock;
        let e = index.objects.get_mut(&sha)?;
        e.used = clock;
        Some(Object {
            file: self.dir.join("objects").join(&sha),
            size: e.size,
            sha256: sha,
        })
    }

    /// The object with this digest, if cached (a payload offered under another path).
    pub fn by_digest(&self, path: &str, sha256: &str) -> Result<Option<Object>, AgentError> {
        let mut index = self.lock();
        let Some(e) = index.objects.get(sha256).copied() else {
            return Ok(None);
        };
        index.paths.insert(path.to_owned(), sha256.to_owned());
        self.save(&index)?;
        Ok(Some(Object {
            file: self.dir.join("objects").join(sha256),
            size: e.size,
            sha256: sha256.to_owned(),
        }))
    }

    /// A file name for a download in progress (moved in by [`Cache::insert`]).
    pub fn partial(&self, name: &str) -> PathBuf {
        self.dir.join(format!("partial-{name}"))
    }

    /// Moves the complete, checked file `from` (its SHA-256 `sha256`, `size` bytes) into the
    /// cache as `path`'s object, evicting the least recently used objects to make room.
    ///
    /// # Errors
    /// `Local` if the object is larger than the whole cache or the disk fails.
    pub fn insert(
        &self,
        path: &str,
        from: &Path,
        sha256: &str,
        size: u64,
    ) -> Result<Object, AgentError> {
        if size > self.max_bytes {
            let _ = std::fs::remove_file(from);
            return Err(AgentError::Local(format!(
                "{path} is {size} bytes, more than the whole gateway cache (gateway.cache_bytes = {})",
                self.max_bytes
            )));
        }
        let mut index = self.lock();
        let file = self.dir.join("objects").join(sha256);
        if index.objects.contains_key(sha256) {
            let _ = std::fs::remove_file(from);
        } else {
            self.evict(&mut index, size)?;
            std::fs::rename(from, &file).map_err(io(file.display()))?;
            sync_dir(&file)?;
            index
                .objects
                .insert(sha256.to_owned(), Entry { size, used: 0 });
        }
        index.clock += 1;
        let clock = index.clock;
        if let Some(e) = index.objects.get_mut(sha256) {
            e.used = clock;
        }
        index.paths.insert(path.to_owned(), sha256.to_owned());
        self.save(&index)?;
        Ok(Object {
            file,
            size,
            sha256: sha256.to_owned(),
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.lock().objects.values().map(|e| e.size).sum()
    }

    /// Drops least recently used objects until `extra` more bytes (and one more object) fit.
    fn evict(&self, index: &mut Index, extra: u64) -> Result<(), AgentError> {
        loop {
            let held: u64 = index.objects.values().map(|e| e.size).sum();
            let over = held.saturating_add(extra) > self.max_bytes
                || (extra > 0 && index.objects.len() >= MAX_OBJECTS);
            if !over {
                return Ok(());
            }
            let Some(oldest) = index
                .objects
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                return Ok(());
            };
            index.objects.remove(&oldest);
            index.paths.retain(|_, sha| *sha != oldest);
            let f = self.dir.join("objects").join(&oldest);
            tracing::info!(object = %oldest, "gateway cache full: evicting the least recently used object");
            let _ = std::fs::remove_file(&f);
        }
    }

    fn save(&self, index: &Index) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec(index)
            .map_err(|e| AgentError::Local(format!("gateway cache index: {e}")))?;
        write_atomic(&self.dir.join("index.json"), &bytes)
    }
}

/// Reads `len` bytes at `offset` of `object` (fewer at its end).
///
/// # Errors
/// `Local` if the file cannot be read.
pub fn read_range(object: &Object, offset: u64, len: usize) -> Result<Vec<u8>, AgentError> {
    let mut f = std::fs::File::open(&object.file).map_err(io(object.file.display()))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(io(object.file.display()))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64)
        .read_to_end(&mut buf)
        .map_err(io(object.file.display()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn put(c: &Cache, dir: &Path, path: &str, fill: u8, size: usize) -> Object {
        let from = dir.join("incoming");
        std::fs::write(&from, vec![fill; size]).unwrap();
        let sha = crate::http::sha256_file(&from).unwrap();
        c.insert(path, &from, &sha, size as u64).unwrap()
    }

    #[test]
    fn least_recently_used_object_goes_first_and_the_bound_holds() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(&t.path().join("c"), 3000).unwrap();
        put(&c, t.path(), "/a", 1, 1000);
        put(&c, t.path(), "/b", 2, 1000);
        put(&c, t.path(), "/c", 3, 1000);
        assert!(c.lookup("/a").is_some()); // /b is now the least recently used
        put(&c, t.path(), "/d", 4, 1000);
        assert!(c.lookup("/b").is_none());
        assert!(c.lookup("/a").is_some() && c.lookup("/c").is_some() && c.lookup("/d").is_some());
        assert!(c.bytes() <= 3000);
        // Too big for the whole cache: refused, nothing evicted.
        let from = t.path().join("big");
        std::fs::write(&from, vec![9u8; 4000]).unwrap();
        assert!(c.insert("/big", &from, "00", 4000).is_err());
        assert_eq!(c.bytes(), 3000);
        // Reopened: the same objects, read back by range.
        drop(c);
        let c = Cache::open(&t.path().join("c"), 3000).unwrap();
        let a = c.lookup("/a").unwrap();
        assert_eq!(read_range(&a, 990, 100).unwrap(), vec![1u8; 10]);
    }

    #[test]
    fn stray_and_truncated_objects_are_dropped_at_open() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("c");
        let c = Cache::open(&dir, 1 << 20).unwrap();
        let a = put(&c, t.path(), "/a", 1, 500);
        drop(c);
        std::fs::write(dir.join("objects").join("stray"), b"x").unwrap();
        std::fs::write(&a.file, b"short").unwrap();
        let c = Cache::open(&dir, 1 << 20).unwrap();
        assert!(c.lookup("/a").is_none());
        assert!(!dir.join("objects").join("stray").exists());
        assert_eq!(c.bytes(), 0);
    }
}

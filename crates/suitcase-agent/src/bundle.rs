//! Offline bundles (docs/bundles.md): signed releases and their payloads in one file (a tar)
//! or a directory (e.g. on a USB stick), for devices that never reach the server.
//!
//! ```text
//! BUNDLE/ (or the same names inside BUNDLE.tar)
//!   index.json                      what is inside (Index): per release its envelope and
//!   releases/0/envelope.suit        payloads by URI, with sizes and SHA-256
//!   releases/0/payload-0.bin
//!   releases/1/…
//! ```
//!
//! **The index is not trusted.** It only says where the bytes are, like a server's offer: the
//! agent runs the same Receive, Check, Process and Re-verify as for a download, so the signed
//! manifest decides (signature, trust anchors, anti-rollback, vendor, class, image digests).
//! A member is read only if the index names it, by a relative path without `..`, and never
//! beyond the size the index declares.
//!
//! A bundle may also carry trust updates (docs/trust.md), listed like releases of the trust
//! store component; the agent applies them before it picks a release (`trust`).
//!
//! A release in a bundle is named by its manifest digest ([`bundle_release_id`]), which the
//! server also knows the release by: reports of an offline install name it, and the server
//! maps it to its own release (docs/server.md §3, offline reports).

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use suitcase_protocol::{PayloadOffer, UpdateOffer};

use crate::error::{AgentError, local};
use crate::state::Download;

mod members;
mod trust;

pub use members::{MAX_TAR_EXTENSION, MAX_TAR_HEADERS};
use members::{open_beneath, tar_members};
pub(crate) use trust::apply_trust_updates;
pub use trust::{is_listed_trust_update, is_trust_update, trust_component};

/// The `format` of an index.
pub const FORMAT: &str = "suitcase-bundle";
/// The index version this agent reads and writes.
pub const VERSION: u32 = 1;
/// The index's name in a bundle.
pub const INDEX: &str = "index.json";
/// The largest index read: 1 MiB. This and the other bounds below keep what a bundle (an
/// unauthenticated container: only the envelopes in it are signed) can make the agent read
/// and hold bounded (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION).
pub const MAX_INDEX: u64 = 1 << 20;
/// Releases in one bundle, at most.
pub const MAX_RELEASES: usize = 64;
/// Payloads of one release, at most.
pub const MAX_PAYLOADS: usize = 64;
/// The URL scheme of bundle members in an offer built from a bundle. Only an agent that
/// installs from a bundle reads such URLs (from the bundle, never from the network); the
/// network path refuses them like any scheme other than http(s).
pub const SCHEME: &str = "bundle:";

/// A member of the bundle: where it is, how big, its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Relative path inside the bundle (`/`-separated).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// A payload: the URI the manifest fetches and the member holding its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The URI the manifest names.
    pub uri: String,
    /// The bytes.
    #[serde(flatten)]
    pub member: Member,
}

/// One release in a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// [`bundle_release_id`]: the manifest digest, hex (at most 64 characters).
    pub id: String,
    /// The manifest's sequence number.
    pub sequence_number: u64,
    /// The manifest digest: algorithm and hex.
    pub manifest_digest: (String, String),
    /// Vendor ids the manifest checks (UUID text).
    #[serde(default)]
    pub vendor_ids: Vec<String>,
    /// Class ids the manifest checks.
    #[serde(default)]
    pub class_ids: Vec<String>,
    /// Component ids of the images it installs (hex segments).
    #[serde(default)]
    pub components: Vec<Vec<String>>,
    /// A name for people (the envelope's file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The signed envelope.
    pub envelope: Member,
    /// The payloads the manifest fetches.
    #[serde(default)]
    pub payloads: Vec<Payload>,
}

/// `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// When it was made, seconds since 1970.
    #[serde(default)]
    pub created_at: u64,
    /// The releases.
    pub releases: Vec<Release>,
}

/// The release id of a bundled release: its manifest digest in hex, cut to 64 characters
/// (the protocol's limit for release ids). The server finds its own release by it.
pub fn bundle_release_id(digest_hex: &str) -> String {
    digest_hex
        .get(..64)
        .unwrap_or(digest_hex)
        .to_ascii_lowercase()
}

/// Checks a member path: relative, `/`-separated names, no `.` or `..`, not empty.
///
/// # Errors
/// What is wrong with it.
pub fn check_path(p: &str) -> Result<(), String> {
    let bad = || format!("{p:?} is not a plain relative path inside the bundle; refused");
    if p.is_empty() || p.len() > 255 || p.contains('\\') || p.starts_with('/') {
        return Err(bad());
    }
    for c in Path::new(p).components() {
        if !matches!(c, Component::Normal(_)) {
            return Err(bad());
        }
    }
    Ok(())
}

impl Index {
    /// Parses and checks an index (format, version, bounds, paths).
    ///
    /// # Errors
    /// [`AgentError::Local`] naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, AgentError> {
        let i: Self = serde_json::from_slice(bytes).map_err(|e| {
            AgentError::Local(format!("the bundle's {INDEX} is not a bundle index: {e}"))
        })?;
        if i.format != FORMAT || i.version != VERSION {
            return Err(AgentError::Local(format!(
                "the bundle's {INDEX} is format {:?} version {}; this agent reads {FORMAT:?} version {VERSION}",
                i.format, i.version
            )));
        }
        if i.releases.len() > MAX_RELEASES {
            return Err(AgentError::Local(format!(
                "the bundle holds {} releases; at most {MAX_RELEASES} are read",
                i.releases.len()
            )));
        }
        for r in &i.releases {
            if r.payloads.len() > MAX_PAYLOADS || r.id.len() > 64 || r.id.is_empty() {
                return Err(AgentError::Local(format!(
                    "release {:?} in the bundle is malformed (id or payload count)",
                    r.id
                )));
            }
            for m in std::iter::once(&r.envelope).chain(r.payloads.iter().map(|p| &p.member)) {
                check_path(&m.path).map_err(AgentError::Local)?;
            }
        }
        Ok(i)
    }

    /// The offer the agent installs a release from: the same shape as a server's, with
    /// `bundle:` URLs that only the bundle source reads.
    pub fn offer(r: &Release) -> UpdateOffer {
        UpdateOffer {
            release_id: r.id.clone(),
            sequence_number: r.sequence_number,
            manifest_url: format!("{SCHEME}{}", r.envelope.path),
            manifest_size: r.envelope.size,
            payloads: r
                .payloads
                .iter()
                .map(|p| PayloadOffer {
                    uri: p.uri.clone(),
                    url: format!("{SCHEME}{}", p.member.path),
                    size: p.member.size,
                    sha256: p.member.sha256.clone(),
                    delta: None,
                })
                .collect(),
            requires_consent: false,
            rollback: false,
        }
    }
}

/// Whether an offer came from a bundle (its envelope URL is a bundle member).
pub fn is_bundle_offer(o: &UpdateOffer) -> bool {
    o.manifest_url.starts_with(SCHEME)
}

/// An open bundle: a directory or a tar file.
#[derive(Clone, Debug)]
pub struct Source {
    /// The bundle's path.
    pub path: PathBuf,
    /// For a tar file: each regular file's data offset and size.
    tar: Option<BTreeMap<String, (u64, u64)>>,
    /// Its index.
    pub index: Index,
}

impl Source {
    /// Opens a bundle (a directory holding `index.json`, or a tar file).
    ///
    /// # Errors
    /// [`AgentError::Local`]: not there, not a bundle, a malformed index.
    pub fn open(path: &Path) -> Result<Self, AgentError> {
        let meta = std::fs::metadata(path)
            .map_err(local(format!("cannot open the bundle {}", path.display())))?;
        let mut s = Self {
            path: path.to_path_buf(),
            tar: None,
            index: Index {
                format: FORMAT.into(),
                version: VERSION,
                created_at: 0,
                releases: Vec::new(),
            },
        };
        if !meta.is_dir() {
            s.tar = Some(tar_members(path)?);
        }
        let (mut r, size) = s.member(INDEX).map_err(|_| {
            AgentError::Local(format!(
                "{} is not a suitcase bundle (no {INDEX}; make one with `suitcase bundle create`)",
                path.display()
            ))
        })?;
        if size > MAX_INDEX {
            return Err(AgentError::Local(format!(
                "the bundle's {INDEX} is {size} bytes; at most {MAX_INDEX} are read"
            )));
        }
        let mut bytes = Vec::new();
        r.by_ref()
            .take(MAX_INDEX)
            .read_to_end(&mut bytes)
            .map_err(local(format!("cannot read {INDEX} in {}", path.display())))?;
        s.index = Index::parse(&bytes)?;
        Ok(s)
    }

    /// A reader positioned at the start of `name`'s bytes, limited to them, and their size.
    ///
    /// # Errors
    /// [`AgentError::Local`] if there is no such member.
    pub fn member(&self, name: &str) -> Result<(Box<dyn std::io::Read + Send>, u64), AgentError> {
        check_path(name).map_err(AgentError::Local)?;
        let missing = || {
            AgentError::Local(format!(
                "{name} is not in the bundle {}",
                self.path.display()
            ))
        };
        match &self.tar {
            Some(members) => {
                let (offset, size) = *members.get(name).ok_or_else(missing)?;
                let mut f = std::fs::File::open(&self.path).map_err(|_| missing())?;
                f.seek(SeekFrom::Start(offset)).map_err(|_| missing())?;
                Ok((Box::new(f.take(size)), size))
            }
            None => {
                let f = open_beneath(&self.path, name).map_err(|e| {
                    AgentError::Local(format!(
                        "{name} is not a regular file in the bundle {} (no symbolic links on the way): {e}",
                        self.path.display()
                    ))
                })?;
                let meta = f.metadata().map_err(|_| missing())?;
                if !meta.is_file() {
                    return Err(missing());
                }
                Ok((Box::new(f.take(meta.len())), meta.len()))
            }
        }
    }

    /// Copies the member a `bundle:` URL names into `path`, resuming from `d.durable`, never
    /// beyond `d.size` (the size the index declared): the bundle's counterpart of
    /// [`crate::http::Http::download`], with the same checkpoints and progress calls.
    ///
    /// # Errors
    /// [`crate::http::DownloadError::Gone`] if the member is missing or its size is not the
    /// declared one; `Local` for disk errors.
    pub async fn download(
        &self,
        d: &mut Download,
        path: &Path,
        checkpoint: &mut (dyn FnMut(&Download) -> Result<(), AgentError> + Send),
        progress: &mut (dyn FnMut(u64) -> Option<crate::http::Pending> + Send),
    ) -> Result<(), crate::http::DownloadError> {
        use crate::http::DownloadError;
        let name = d
            .url
            .strip_prefix(SCHEME)
            .ok_or_else(|| DownloadError::Refused(format!("{}: not a bundle member", d.url)))?
            .to_owned();
        let (mut r, size) = self
            .member(&name)
            .map_err(|e| DownloadError::Gone(e.to_string()))?;
        if size != d.size {
            return Err(DownloadError::Gone(format!(
                "{name} in the bundle is {size} bytes, not the {} its index declares",
                d.size
            )));
        }
        let what = format!("cannot write {}", path.display());
        let (mut file, _) = crate::http::open_resumable(path, d)?;
        std::io::copy(&mut r.by_ref().take(d.durable), &mut std::io::sink())
            .map_err(|e| DownloadError::Gone(format!("cannot read {name} in the bundle: {e}")))?;
        let mut buf = vec![0u8; 256 << 10];
        let mut since_flush = 0u64;
        loop {
            let n = r.read(&mut buf).map_err(|e| {
                DownloadError::Gone(format!("cannot read {name} in the bundle: {e}"))
            })?;
            if n == 0 {
                break;
            }
            file.write_all(buf.get(..n).unwrap_or_default())
                .map_err(local(&what))?;
            since_flush += n as u64;
            if let Some(send) = progress(d.durable + since_flush) {
                send.await;
            }
            if since_flush >= crate::http::CHECKPOINT_BYTES {
                file.sync_data().map_err(local(&what))?;
                d.durable += since_flush;
                since_flush = 0;
                checkpoint(d)?;
            }
        }
        file.sync_data().map_err(local(&what))?;
        d.durable += since_flush;
        if d.durable != d.size {
            checkpoint(d)?;
            return Err(DownloadError::Gone(format!(
                "{name} in the bundle ended at {} of {} bytes",
                d.durable, d.size
            )));
        }
        Ok(())
    }
}

/// A file to put into a bundle.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The member path.
    pub name: String,
    /// Where its bytes are.
    pub from: PathBuf,
}

/// Writes a bundle: `index.json` and `entries`, as a tar file at `out` or (with `dir`) a
/// directory. Written to a temporary name next to `out` and renamed into place, so an
/// interrupted write leaves no half bundle under the name.
///
/// # Errors
/// [`AgentError::Local`].
pub fn write(out: &Path, dir: bool, index: &Index, entries: &[Entry]) -> Result<(), AgentError> {
    let json = serde_json::to_vec_pretty(index)
        .map_err(|e| AgentError::Local(format!("cannot encode the index: {e}")))?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = out
        .file_name()
        .map_or_else(|| "bundle".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{file_name}.tmp"));
    let what = |p: &Path| format!("cannot write {}", p.display());
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(AgentError::Local(format!(
            "{} exists; remove it or choose another name",
            out.display()
        )));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_file(&tmp);
    if dir {
        for e in entries {
            let to = tmp.join(&e.name);
            if let Some(p) = to.parent() {
                std::fs::create_dir_all(p).map_err(local(what(p)))?;
            }
            std::fs::copy(&e.from, &to).map_err(local(what(&to)))?;
        }
        std::fs::create_dir_all(&tmp).map_err(local(what(&tmp)))?;
        let idx = tmp.join(INDEX);
        std::fs::write(&idx, &json).map_err(local(what(&idx)))?;
        // On disk before the rename makes it a bundle: a power cut never leaves half of one.
        crate::module::sync_tree(&tmp).map_err(AgentError::Local)?;
    } else {
        let f = std::fs::File::create(&tmp).map_err(local(what(&tmp)))?;
        let mut b = tar::Builder::new(f);
        let header = |size: u64| {
            let mut h = tar::Header::new_ustar();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(index.created_at);
            h.set_entry_type(tar::EntryType::Regular);
            h
        };
        let mut h = header(json.len() as u64);
        b.append_data(&mut h, INDEX, json.as_slice())
            .map_err(local(what(&tmp)))?;
        for e in entries {
            let f = std::fs::File::open(&e.from)
                .map_err(local(format!("cannot read {}", e.from.display())))?;
            let len = f.metadata().map_err(local(what(&e.from)))?.len();
            let mut h = header(len);
            b.append_data(&mut h, &e.name, f)
                .map_err(local(what(&tmp)))?;
        }
        let f = b.into_inner().map_err(local(what(&tmp)))?;
        f.sync_all().map_err(local(what(&tmp)))?;
    }
    std::fs::rename(&tmp, out).map_err(local(what(out)))?;
    crate::state::sync_dir(parent)
}

#[cfg(test)]
mod tests;

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

/// The largest tar extension entry read (a pax `x` header or a GNU long name): the update
/// modules' limit ([`crate::module::MAX_EXTENSION_RECORD`]). The bundle writer emits none (its
/// member paths fit a ustar header); other tools may add small ones. Anything larger is
/// refused before a byte of it is read.
pub const MAX_TAR_EXTENSION: u64 = crate::module::MAX_EXTENSION_RECORD;
/// Headers of any kind in one tar bundle, at most: about four per member the index can name.
pub const MAX_TAR_HEADERS: usize = 4 * MAX_RELEASES * (MAX_PAYLOADS + 1);

const BLOCK: u64 = 512;

/// A tar header's numeric field: octal text, or GNU base-256 (high bit of the first byte).
fn tar_number(field: &[u8]) -> Option<u64> {
    match field.first() {
        Some(b) if b & 0x80 != 0 => {
            let mut v: u64 = u64::from(b & 0x7f);
            for &b in field.get(1..)? {
                v = v.checked_mul(256)?.checked_add(u64::from(b))?;
            }
            Some(v)
        }
        _ => {
            let t: Vec<u8> = field
                .iter()
                .copied()
                .skip_while(|b| *b == b' ')
                .take_while(|b| (b'0'..=b'7').contains(b))
                .collect();
            if t.is_empty() {
                return Some(0);
            }
            u64::from_str_radix(core::str::from_utf8(&t).ok()?, 8).ok()
        }
    }
}

/// A NUL-terminated text field.
fn tar_text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    field.get(..end).unwrap_or_default()
}

/// The value of `key` in pax extended-header records (`"<len> <key>=<value>\n"`).
fn pax_value<'a>(records: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut rest = records;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = core::str::from_utf8(rest.get(..sp)?).ok()?.parse().ok()?;
        let record = rest.get(sp + 1..len)?;
        rest = rest.get(len..)?;
        let record = record.strip_suffix(b"\n")?;
        let eq = record.iter().position(|b| *b == b'=')?;
        if record.get(..eq)? == key {
            return record.get(eq + 1..);
        }
    }
    None
}

/// Opens `name` (a [`check_path`]ed member path) inside the directory `root`, one component
/// at a time from the root's descriptor with `O_NOFOLLOW`: a symbolic link anywhere on the
/// way (`releases -> /`, as well as the file itself) is refused, so a member is always a
/// file inside the bundle. The root itself is the path the operator named.
fn open_beneath(root: &Path, name: &str) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, openat};
    let mut dir: std::os::fd::OwnedFd = std::fs::File::open(root)?.into();
    let parts: Vec<&str> = name.split('/').collect();
    let (last, dirs) = parts
        .split_last()
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for d in dirs {
        dir = openat(&dir, *d, flags | OFlags::DIRECTORY, Mode::empty())?;
    }
    Ok(openat(&dir, *last, flags | OFlags::NONBLOCK, Mode::empty())?.into())
}

/// Regular files in a tar archive: name → (data offset, size). Reads the 512-byte headers
/// and the small extension entries (pax `x`, GNU long names, each at most
/// [`MAX_TAR_EXTENSION`]) itself, with [`MAX_TAR_HEADERS`] headers at most, so that a
/// hostile archive (a pax header claiming 4 GB) is refused in bounded memory and time. Only
/// plain entry types are accepted (files, directories, links, pax and GNU long names);
/// sparse and other GNU types are refused, as is a name given twice.
fn tar_members(path: &Path) -> Result<BTreeMap<String, (u64, u64)>, AgentError> {
    let bad = |why: String| {
        AgentError::Local(format!(
            "{} is not a suitcase bundle (a tar file, or a directory with {INDEX}): {why}",
            path.display()
        ))
    };
    let mut f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut out = BTreeMap::new();
    let mut pos = 0u64;
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax: Option<Vec<u8>> = None;
    for _ in 0..=MAX_TAR_HEADERS {
        let mut h = [0u8; 512];
        if pos.checked_add(BLOCK).is_none_or(|end| end > len) {
            return if long_name.is_some() || pax.is_some() {
                Err(bad("an extension header describes no entry".into()))
            } else {
                Ok(out)
            };
        }
        f.seek(SeekFrom::Start(pos))
            .and_then(|_| f.read_exact(&mut h))
            .map_err(|e| bad(e.to_string()))?;
        if h.iter().all(|b| *b == 0) {
            return Ok(out);
        }
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(*b)
                }
            })
            .sum();
        if tar_number(h.get(148..156).unwrap_or_default()) != Some(sum) {
            return Err(bad(format!("header checksum mismatch at byte {pos}")));
        }
        let kind = h.get(156).copied().unwrap_or_default();
        let mut size = tar_number(h.get(124..136).unwrap_or_default())
            .ok_or_else(|| bad(format!("malformed size at byte {pos}")))?;
        let is_extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
        if is_extension && size > MAX_TAR_EXTENSION {
            return Err(bad(format!(
                "an extension entry (type {:?}) of {size} bytes at byte {pos}; at most {MAX_TAR_EXTENSION} are read",
                char::from(kind)
            )));
        }
        if !is_extension && let Some(v) = pax.as_deref().and_then(|p| pax_value(p, b"size")) {
            size = core::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("malformed pax size at byte {pos}")))?;
        }
        let data = pos + BLOCK;
        let next = size
            .checked_add(BLOCK - 1)
            .map(|s| s & !(BLOCK - 1))
            .and_then(|s| data.checked_add(s))
            .ok_or_else(|| bad(format!("size overflow at byte {pos}")))?;
        match kind {
            b'x' | b'L' => {
                let mut body = Vec::new();
                (&mut f)
                    .take(size)
                    .read_to_end(&mut body)
                    .map_err(|e| bad(e.to_string()))?;
                let slot = if kind == b'x' {
                    &mut pax
                } else {
                    &mut long_name
                };
                if slot.replace(body).is_some() {
                    return Err(bad(format!(
                        "two extension entries for one entry at byte {pos}"
                    )));
                }
            }
            b'g' | b'K' => {}
            b'0' | 0 | b'7' => {
                let name: Vec<u8> =
                    if let Some(p) = pax.as_deref().and_then(|p| pax_value(p, b"path")) {
                        p.to_vec()
                    } else if let Some(n) = long_name.take() {
                        tar_text(&n).to_vec()
                    } else {
                        let name = tar_text(h.get(..100).unwrap_or_default());
                        let prefix = tar_text(h.get(345..500).unwrap_or_default());
                        if h.get(257..263) == Some(b"ustar\0") && !prefix.is_empty() {
                            [prefix, b"/", name].concat()
                        } else {
                            name.to_vec()
                        }
                    };
                let name = String::from_utf8_lossy(&name).into_owned();
                let mut name = name.as_str();
                while let Some(n) = name.strip_prefix("./") {
                    name = n;
                }
                if data.checked_add(size).is_none_or(|end| end > len) {
                    return Err(bad(format!("{name} is cut short")));
                }
                if out.len() >= MAX_TAR_HEADERS {
                    return Err(bad("too many files for a bundle".into()));
                }
                if out.insert(name.to_owned(), (data, size)).is_some() {
                    return Err(bad(format!("{name} is in it twice")));
                }
            }
            b'1'..=b'6' => {}
            other => {
                return Err(bad(format!(
                    "entry type {:?} at byte {pos} is not read in a bundle",
                    char::from(other)
                )));
            }
        }
        if !is_extension {
            pax = None;
            long_name = None;
        }
        pos = next;
    }
    Err(bad(format!("more than {MAX_TAR_HEADERS} entries")))
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

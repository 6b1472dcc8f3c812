//! The members of a tar bundle, found by reading its headers (ustar, pax and GNU long names;
//! bounded in headers and extension sizes), and a directory bundle's members opened beneath
//! its root only.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

use super::{INDEX, MAX_PAYLOADS, MAX_RELEASES};
use crate::error::AgentError;

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
pub(super) fn open_beneath(root: &Path, name: &str) -> std::io::Result<std::fs::File> {
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
pub(super) fn tar_members(path: &Path) -> Result<BTreeMap<String, (u64, u64)>, AgentError> {
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

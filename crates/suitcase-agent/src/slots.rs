//! A/B slots on a Linux-class device: two files or block devices, and a pointer file that is
//! the device's "bootloader state".
//!
//! The pointer file is two lines, replaced atomically:
//!
//! ```text
//! active=b
//! confirmed=a
//! ```
//!
//! `active` is the slot to run (the boot script or the service unit reads it); `confirmed` is
//! the last known-good slot. `active != confirmed` means the active slot is on trial. No file
//! means `active=a`, `confirmed=a`.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{FileExt as _, FileTypeExt as _};
use std::path::Path;

use crate::config::FileSlots;
use crate::error::{AgentError, local};

/// Bytes between flushes (and journal checkpoints) while writing a slot.
pub const CHECKPOINT_BYTES: u64 = 8 << 20;

/// The pointer file's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pointer {
    /// The slot to run: 0 = a, 1 = b.
    pub active: usize,
    /// The last known-good slot.
    pub confirmed: usize,
}

impl Pointer {
    /// Whether the active slot is on trial.
    pub fn trial(&self) -> bool {
        self.active != self.confirmed
    }
}

/// "a" or "b".
pub fn name(slot: usize) -> &'static str {
    crate::slot::Slot::from_index(slot)
        .unwrap_or(crate::slot::Slot::B)
        .name()
}

/// Reads the pointer file.
///
/// # Errors
/// [`AgentError::Local`] if it exists but does not parse.
pub fn read_pointer(path: &Path) -> Result<Pointer, AgentError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Pointer {
                active: 0,
                confirmed: 0,
            });
        }
        Err(e) => {
            return Err(AgentError::Local(format!(
                "cannot read the slot pointer {}: {e}",
                path.display()
            )));
        }
    };
    let mut active = None;
    let mut confirmed = None;
    let index = |v: &str| crate::slot::Slot::parse(v).map(crate::slot::Slot::index);
    for line in text.lines() {
        match line.trim().split_once('=') {
            Some(("active", v)) => active = index(v.trim()),
            Some(("confirmed", v)) => confirmed = index(v.trim()),
            _ => {}
        }
    }
    match (active, confirmed) {
        (Some(active), Some(confirmed)) => Ok(Pointer { active, confirmed }),
        _ => Err(AgentError::Local(format!(
            "the slot pointer {} does not read \"active=a|b\" and \"confirmed=a|b\"",
            path.display()
        ))),
    }
}

/// Writes the pointer file atomically.
///
/// # Errors
/// [`AgentError::Local`].
pub fn write_pointer(path: &Path, p: Pointer) -> Result<(), AgentError> {
    let text = format!(
        "active={}\nconfirmed={}\n",
        name(p.active),
        name(p.confirmed)
    );
    crate::state::write_atomic(path, text.as_bytes())
}

fn is_block(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Copies `len` bytes of `src` into slot `slot`, from byte `from` on (resuming), flushing and
/// calling `checkpoint(bytes_done)` every [`CHECKPOINT_BYTES`]. A regular-file slot is cut to
/// `len` at the end. Returns the SHA-256 of the image (hex), read back from the slot.
///
/// # Errors
/// A message (the caller reports it as a storage or no-space failure), or the crash hook's
/// error through `checkpoint`.
pub fn write_slot(
    slots: &FileSlots,
    slot: usize,
    src: &Path,
    len: u64,
    from: u64,
    checkpoint: &mut dyn FnMut(u64) -> Result<(), AgentError>,
) -> Result<String, SlotError> {
    let dst = slots
        .slots
        .get(slot)
        .ok_or_else(|| SlotError::Storage("no such slot".into()))?;
    if len > slots.capacity {
        return Err(SlotError::NoSpace(format!(
            "the image is {len} bytes but slot {} holds {}",
            name(slot),
            slots.capacity
        )));
    }
    let block = is_block(dst);
    let mut out = std::fs::OpenOptions::new()
        .create(!block)
        .truncate(false)
        .write(true)
        .read(true)
        .open(dst)
        .map_err(|e| SlotError::io(&format!("cannot open slot {}", dst.display()), &e))?;
    let from = from.min(len);
    if from == 0 && !block {
        out.set_len(0)
            .map_err(|e| SlotError::io(&format!("cannot truncate {}", dst.display()), &e))?;
    }
    let mut input = std::fs::File::open(src)
        .map_err(|e| SlotError::io(&format!("cannot read {}", src.display()), &e))?;
    input
        .seek(SeekFrom::Start(from))
        .map_err(|e| SlotError::io("seek", &e))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = from;
    let mut since = 0u64;
    while done < len {
        let want = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        input
            .read_exact(chunk)
            .map_err(|e| SlotError::io(&format!("cannot read {}", src.display()), &e))?;
        out.write_all_at(chunk, done)
            .map_err(|e| SlotError::io(&format!("cannot write {}", dst.display()), &e))?;
        done += want as u64;
        since += want as u64;
        if since >= CHECKPOINT_BYTES && done < len {
            out.sync_data()
                .map_err(|e| SlotError::io(&format!("cannot flush {}", dst.display()), &e))?;
            since = 0;
            checkpoint(done).map_err(SlotError::Agent)?;
        }
    }
    if !block {
        out.set_len(len)
            .map_err(|e| SlotError::io(&format!("cannot cut {}", dst.display()), &e))?;
    }
    out.flush().map_err(|e| SlotError::io("flush", &e))?;
    out.sync_all()
        .map_err(|e| SlotError::io(&format!("cannot flush {}", dst.display()), &e))?;
    // The digest of what is in the slot now, read back (not of what was meant to be written).
    sha256_range(dst, 0, len).map_err(SlotError::Agent)
}

/// SHA-256 (hex) of `len` bytes at `offset` of a file.
///
/// # Errors
/// [`AgentError::Local`].
pub fn sha256_range(path: &Path, offset: u64, len: u64) -> Result<String, AgentError> {
    use sha2::Digest as _;
    let what = format!("cannot read {}", path.display());
    let f = std::fs::File::open(path).map_err(local(&what))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        f.read_exact_at(chunk, offset + done)
            .map_err(local(&what))?;
        h.update(&*chunk);
        done += want as u64;
    }
    Ok(hex::encode(h.finalize()))
}

/// Why writing a slot failed.
#[derive(Debug)]
pub enum SlotError {
    /// Out of space (slot capacity or ENOSPC).
    NoSpace(String),
    /// Any other storage failure.
    Storage(String),
    /// The crash hook or a journal write failed.
    Agent(AgentError),
}

impl SlotError {
    fn io(what: &str, e: &std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
            Self::NoSpace(format!("{what}: {e}"))
        } else {
            Self::Storage(format!("{what}: {e}"))
        }
    }
}

/// Whether the file slots are usable (their directory exists or they are devices).
pub fn check(slots: &FileSlots) -> Result<(), String> {
    for s in &slots.slots {
        let dir_ok = s
            .parent()
            .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir());
        if !is_block(s) && !dir_ok {
            return Err(format!(
                "the directory of slot {} does not exist",
                s.display()
            ));
        }
    }
    Ok(())
}

/// Apply, before the first byte goes into `to`: the bootloader must not boot it while it holds
/// a partial image (a crash of the running slot would otherwise fall back into it). Nothing
/// for the pointer backend, whose record already says `from`.
///
/// # Errors
/// [`AgentError::Local`] with what to fix (`bootloader.rs`).
pub fn prepare(slots: &FileSlots, from: usize) -> Result<(), AgentError> {
    slots
        .bootloader
        .prepare(from, &slots.slots)
        .map_err(AgentError::Local)
}

/// Activate: the record says `to` on trial (`confirmed = from`), then the bootloader is told
/// to try `to` (record first: a crash in between leaves a record an undo reverts in full).
///
/// # Errors
/// [`AgentError::Local`].
pub fn activate(slots: &FileSlots, from: usize, to: usize) -> Result<(), AgentError> {
    write_pointer(
        &slots.pointer,
        Pointer {
            active: to,
            confirmed: from,
        },
    )?;
    slots
        .bootloader
        .trial(to, &slots.slots)
        .map_err(AgentError::Local)
}

/// Clean-up: the bootloader marks `to` good, then the record says so (the bootloader first:
/// a crash in between leaves the record on trial and Clean-up runs again).
///
/// # Errors
/// [`AgentError::Local`].
pub fn confirm(slots: &FileSlots, to: usize) -> Result<(), AgentError> {
    slots
        .bootloader
        .confirm(to, &slots.slots)
        .map_err(AgentError::Local)?;
    write_pointer(
        &slots.pointer,
        Pointer {
            active: to,
            confirmed: to,
        },
    )
}

/// Undo: the bootloader boots `from` and not the other slot, then the record says `from`.
///
/// # Errors
/// [`AgentError::Local`].
pub fn revert(slots: &FileSlots, from: usize) -> Result<(), AgentError> {
    slots
        .bootloader
        .revert(from, &slots.slots)
        .map_err(AgentError::Local)?;
    write_pointer(
        &slots.pointer,
        Pointer {
            active: from,
            confirmed: from,
        },
    )
}

/// Distribute: the slot that runs, from the record, checked against the bootloader (the
/// agent must never write the slot the system booted from).
///
/// # Errors
/// A message for the Distribute failure: the bootloader cannot be read, or it booted another
/// slot than the record says.
pub fn running(slots: &FileSlots) -> Result<Pointer, String> {
    let p = read_pointer(&slots.pointer).map_err(|e| e.to_string())?;
    if let Some(st) = slots.bootloader.status(&slots.slots)?
        && st.booted != p.active
    {
        return Err(format!(
            "the system booted slot {} but the agent's record ({}) says slot {} runs; \
             the bootloader fell back outside an update ({}): check slot {}, then set the \
             record to active={}, confirmed={}",
            name(st.booted),
            slots.pointer.display(),
            name(p.active),
            st.detail,
            name(p.active),
            name(st.booted),
            name(st.booted),
        ));
    }
    Ok(p)
}

/// Once per agent start, for a bootloader that counts boot attempts: the confirmed slot that
/// booted gets its attempts back ("mark good"; the boot script decrements on every boot).
/// Nothing while the record is on trial (Activate to Clean-up decide that slot's fate), or
/// when another slot booted than the record's. Only the booted slot's counter and the order
/// are written (a slot made unbootable for Apply or by a revert stays so), and only when
/// something changes (flash wear). Returns what it did, for the log.
///
/// # Errors
/// A message (the caller logs it; the next start tries again).
pub fn mark_good(slots: &FileSlots) -> Result<Option<String>, String> {
    let p = read_pointer(&slots.pointer).map_err(|e| e.to_string())?;
    if p.trial() {
        return Ok(None);
    }
    let Some(st) = slots.bootloader.status(&slots.slots)? else {
        return Ok(None);
    };
    if st.booted != p.active {
        return Ok(None);
    }
    // Already good: first in the order with all its attempts (a backend that does not
    // count, `custom`, is told every time).
    let settled = st.next == Some(st.booted)
        && slots
            .bootloader
            .tries()
            .is_some_and(|t| st.left.get(st.booted).copied().flatten() == Some(t));
    if settled {
        return Ok(None);
    }
    slots.bootloader.confirm(st.booted, &slots.slots)?;
    Ok(Some(format!(
        "slot {} marked good (was: {})",
        name(st.booted),
        st.detail
    )))
}

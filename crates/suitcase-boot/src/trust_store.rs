//! The bootloader's protected trust state: the record of the trust anchors in force, kept
//! power-fail safe in a dedicated flash area that only the bootloader writes, and the staging
//! area through which the application hands it a trust update.
//!
//! `suitcase-boot` knows nothing of manifests: the record is opaque bytes of a fixed length
//! (`suitcase-trust`'s `RECORD_SIZE` = 1,536 in practice) with a **sequence number**, and the
//! decision whether a staged update may replace it is a closure the platform passes to
//! [`commit_staged`] (`suitcase-device`'s `boot_trust` runs `TrustState::apply_update` there:
//! k-of-n root signatures under the state in force, docs/trust.md).
//!
//! **Two copies.** The trust area is split into two equal, erase-aligned halves; each holds one
//! copy:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `"SCTA"` |
//! | 4 | format version `1` |
//! | 5..8 | zero |
//! | 8..16 | sequence (`u64` LE): the trust state's own anti-rollback number |
//! | 16..20 | record length (`u32` LE) |
//! | 20..24 | CRC-32 of bytes 0..20 followed by the record |
//! | 24.. | the record |
//!
//! The valid copy with the higher sequence is in force. [`TrustStore::write`] erases and
//! programs the **other** copy only, and refuses a sequence that is not above the one in force
//! (anti-rollback of the trust state by its own sequence, RFC 8240 §3 and TUF §5.3.5). Until
//! the new copy is complete the copy in force is untouched; a torn erase or program leaves the
//! other copy failing its CRC, so a power cut at any point leaves either the old or the new
//! state in force, never neither and never a mixture. The CRC detects torn writes, not an
//! attacker: the area is written by the bootloader alone, and what it writes was authenticated
//! under the root in force first. `simulate::trust_power_cut_proof` tears every flash operation
//! of two trust updates in turn and checks exactly that.
//!
//! **Staging.** The application (the consumer, the agent) never writes the trust area. It
//! stages a trust update envelope with [`TrustStaging::stage`] into a staging area
//! (`[magic "SCTU" | length u32 | CRC-32 u32 | zero u32 | envelope]`); at the next reset, before
//! any slot is verified, [`commit_staged`] reads it, asks the closure for the next record, writes
//! it with [`TrustStore::write`] and then clears the staging area. A cut between the write and
//! the clear leaves the update staged: at the next reset the closure refuses it as not above the
//! state in force (it already is the state in force), and it is cleared.
//!
//! **Nothing staged stops the boot.** The staging area is written by the application and
//! authenticated by nothing but the closure, so what it holds is treated as untrusted input:
//! any length is read (a tail that is not a whole number of `READ_SIZE` units through a padded
//! scratch read, so a part that refuses misaligned reads reads it too); a torn or corrupt one
//! reads as nothing staged; one larger than the bootloader's buffer, or one whose read fails,
//! is dropped (the area is cleared, best effort for a read failure) and the state in force
//! boots, reported as [`Commit::Nothing`]. Only errors of the trust area itself, and a failing
//! erase of the staging area after a refusal or a commit, are returned as errors.

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};

use crate::crc::crc32;
use crate::store::MAX_WRITE_SIZE;

/// Bytes of a copy's header.
pub const COPY_HEADER_LEN: usize = 24;
/// Bytes of the staging area's header.
pub const STAGING_HEADER_LEN: usize = 16;
const COPY_HEADER_OFFSET: u32 = 24;
const STAGING_HEADER_OFFSET: u32 = 16;
const _: () = assert!(
    COPY_HEADER_OFFSET as usize == COPY_HEADER_LEN
        && STAGING_HEADER_OFFSET as usize == STAGING_HEADER_LEN
);
const COPY_MAGIC: [u8; 4] = *b"SCTA";
const STAGING_MAGIC: [u8; 4] = *b"SCTU";
const VERSION: u8 = 1;
/// Bytes moved per flash read or program.
const CHUNK: usize = 256;

/// Why the trust store or the staging area could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustStoreError {
    /// A flash operation failed.
    Flash(NorFlashErrorKind),
    /// The area does not hold two erase-aligned copies of the header and the record (or the
    /// staging header), or the write size is not supported.
    Geometry,
    /// A buffer does not have the record length the store was built with.
    RecordLen,
    /// The new sequence is not above the state in force (anti-rollback).
    Rollback {
        /// The sequence in force.
        current: u64,
        /// The sequence offered.
        offered: u64,
    },
    /// A copy with a valid CRC and another format version: a newer bootloader wrote it.
    Unsupported {
        /// Its version.
        version: u8,
    },
    /// The envelope to stage is larger than the staging area (or empty).
    TooLarge {
        /// Its length.
        len: usize,
        /// What the area holds.
        capacity: usize,
    },
}

impl<E: NorFlashError> From<E> for TrustStoreError {
    fn from(e: E) -> Self {
        Self::Flash(e.kind())
    }
}

impl core::fmt::Display for TrustStoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Flash(kind) => write!(f, "trust area: flash error {kind:?}"),
            Self::Geometry => f.write_str(
                "trust area: the partition does not hold two erase-aligned copies of the record",
            ),
            Self::RecordLen => f.write_str("trust area: wrong record length"),
            Self::Rollback { current, offered } => write!(
                f,
                "trust state rollback: sequence {offered} is not above the state in force ({current})"
            ),
            Self::Unsupported { version } => {
                write!(f, "trust area: copy format {version} is not supported")
            }
            Self::TooLarge { len, capacity } => write!(
                f,
                "trust update of {len} bytes does not fit the {capacity}-byte staging area"
            ),
        }
    }
}

impl core::error::Error for TrustStoreError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Half {
    First,
    Second,
}

/// The copy in force: its sequence and where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InForce {
    /// The trust state's sequence number.
    pub sequence: u64,
    half: Half,
}

/// The two-copy trust area. See the [module documentation](self).
#[derive(Debug)]
pub struct TrustStore<S> {
    flash: S,
    half_len: u32,
    record_len: usize,
}

fn header(sequence: u64, record: &[u8]) -> [u8; COPY_HEADER_LEN] {
    let mut h = [0u8; COPY_HEADER_LEN];
    let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
    let fields: [(usize, &[u8]); 4] = [
        (0, &COPY_MAGIC),
        (4, &[VERSION]),
        (8, &sequence.to_le_bytes()),
        (16, &len.to_le_bytes()),
    ];
    for (at, bytes) in fields {
        if let Some(dst) = h.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    let crc = crc_of(h.get(..20).unwrap_or(&[]), record);
    if let Some(dst) = h.get_mut(20..24) {
        dst.copy_from_slice(&crc.to_le_bytes());
    }
    h
}

fn crc_of(head: &[u8], body: &[u8]) -> u32 {
    // CRC-32 of the concatenation, without a buffer: the same table-free loop as `crc32`.
    let mut crc = !0u32;
    for &byte in head.iter().chain(body) {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// Programs `bytes` at `at`, padded with `0xFF` to the write size, in chunks.
fn program<S: NorFlash>(flash: &mut S, at: u32, bytes: &[u8]) -> Result<(), TrustStoreError> {
    let mut buf = [0xFFu8; CHUNK];
    let mut done = 0usize;
    while done < bytes.len() {
        let n = (bytes.len() - done).min(CHUNK);
        let padded = n.next_multiple_of(S::WRITE_SIZE);
        let window = buf.get_mut(..padded).ok_or(TrustStoreError::Geometry)?;
        window.fill(0xFF);
        let src = bytes.get(done..done + n).ok_or(TrustStoreError::Geometry)?;
        window
            .get_mut(..n)
            .ok_or(TrustStoreError::Geometry)?
            .copy_from_slice(src);
        let offset = u32::try_from(done).map_err(|_| TrustStoreError::Geometry)?;
        flash.write(at.saturating_add(offset), window)?;
        done += n;
    }
    Ok(())
}

/// Reads `dst.len()` bytes at `at` (a multiple of `READ_SIZE`) in chunks. A tail that is not a
/// whole number of read units is read padded through a scratch buffer and cut to length: a
/// driver with `READ_SIZE` > 1 refuses a misaligned read, and a staged length is the
/// application's choice (issue 18 review: a refused tail read stopped the bootloader).
fn read_aligned<S: NorFlash>(
    flash: &mut S,
    at: u32,
    dst: &mut [u8],
) -> Result<(), TrustStoreError> {
    let mut scratch = [0u8; CHUNK];
    let mut done = 0usize;
    while done < dst.len() {
        let n = (dst.len() - done).min(CHUNK);
        let padded = n.next_multiple_of(S::READ_SIZE);
        let offset = u32::try_from(done).map_err(|_| TrustStoreError::Geometry)?;
        let window = scratch.get_mut(..padded).ok_or(TrustStoreError::Geometry)?;
        flash.read(at.saturating_add(offset), window)?;
        dst.get_mut(done..done + n)
            .ok_or(TrustStoreError::Geometry)?
            .copy_from_slice(window.get(..n).ok_or(TrustStoreError::Geometry)?);
        done += n;
    }
    Ok(())
}

fn write_size_ok<S: NorFlash>() -> bool {
    let write = S::WRITE_SIZE;
    write != 0
        && write <= MAX_WRITE_SIZE
        && S::READ_SIZE != 0
        && write.is_multiple_of(S::READ_SIZE)
        && CHUNK.is_multiple_of(write)
        && COPY_HEADER_LEN.is_multiple_of(write)
        && STAGING_HEADER_LEN.is_multiple_of(write)
}

impl<S: NorFlash> TrustStore<S> {
    /// A store of `record_len`-byte records over `flash`, the whole trust area.
    ///
    /// # Errors
    /// [`TrustStoreError::Geometry`] if the halves are not erase-aligned or too small.
    pub fn new(flash: S, record_len: usize) -> Result<Self, TrustStoreError> {
        let capacity = flash.capacity();
        let half = capacity / 2;
        let needed = COPY_HEADER_LEN.saturating_add(record_len);
        if !write_size_ok::<S>()
            || record_len == 0
            || half == 0
            || capacity != half * 2
            || !half.is_multiple_of(S::ERASE_SIZE)
            || !half.is_multiple_of(S::READ_SIZE)
            || half < needed.next_multiple_of(S::WRITE_SIZE)
        {
            return Err(TrustStoreError::Geometry);
        }
        let half_len = u32::try_from(half).map_err(|_| TrustStoreError::Geometry)?;
        Ok(Self {
            flash,
            half_len,
            record_len,
        })
    }

    /// The flash back.
    pub fn into_inner(self) -> S {
        self.flash
    }

    /// The record length.
    pub fn record_len(&self) -> usize {
        self.record_len
    }

    fn start(&self, half: Half) -> u32 {
        match half {
            Half::First => 0,
            Half::Second => self.half_len,
        }
    }

    /// Reads the copy in `half` into `record`: its sequence if it is valid.
    fn read_copy(&mut self, half: Half, record: &mut [u8]) -> Result<Option<u64>, TrustStoreError> {
        let start = self.start(half);
        let mut head = [0u8; COPY_HEADER_LEN];
        self.flash.read(start, &mut head)?;
        if head.get(..4) != Some(&COPY_MAGIC[..]) {
            return Ok(None);
        }
        if usize::try_from(le32(&head, 16)).ok() != Some(self.record_len) {
            return Ok(None);
        }
        read_aligned(
            &mut self.flash,
            start.saturating_add(COPY_HEADER_OFFSET),
            record,
        )?;
        if crc_of(head.get(..20).unwrap_or(&[]), record) != le32(&head, 20) {
            return Ok(None);
        }
        if head.get(4) != Some(&VERSION) {
            return Err(TrustStoreError::Unsupported {
                version: head.get(4).copied().unwrap_or(0),
            });
        }
        Ok(Some(le64(&head, 8)))
    }

    /// The state in force, its record copied to `record` (exactly [`record_len`] bytes), or
    /// `None` on an area that was never provisioned (both copies erased or invalid).
    ///
    /// # Errors
    /// [`TrustStoreError`] for a flash error, a wrong buffer or an unsupported format.
    ///
    /// [`record_len`]: TrustStore::record_len
    pub fn load(&mut self, record: &mut [u8]) -> Result<Option<InForce>, TrustStoreError> {
        if record.len() != self.record_len {
            return Err(TrustStoreError::RecordLen);
        }
        let first = self.read_copy(Half::First, record)?;
        let second = self.read_copy(Half::Second, record)?;
        // The higher valid sequence wins; on a tie (never written so) the first.
        let chosen = match (first, second) {
            (Some(a), Some(b)) if b > a => Some((b, Half::Second)),
            (Some(a), _) => Some((a, Half::First)),
            (None, Some(b)) => Some((b, Half::Second)),
            (None, None) => None,
        };
        let Some((sequence, half)) = chosen else {
            return Ok(None);
        };
        // `record` holds the second copy's bytes (or garbage): read the winner again.
        self.read_copy(half, record)?;
        Ok(Some(InForce { sequence, half }))
    }

    /// Replaces the state in force (`in_force`, from [`TrustStore::load`]; `None` on a blank
    /// area: the factory provisioning) with `record` at `sequence`: erases and programs the
    /// other copy only, header last-checked by its CRC. Returns the new state in force.
    ///
    /// # Errors
    /// [`TrustStoreError::Rollback`] if `sequence` is not above the state in force (nothing is
    /// written), [`TrustStoreError::RecordLen`], or a flash error (the old state stays in force).
    pub fn write(
        &mut self,
        in_force: Option<InForce>,
        sequence: u64,
        record: &[u8],
    ) -> Result<InForce, TrustStoreError> {
        if record.len() != self.record_len {
            return Err(TrustStoreError::RecordLen);
        }
        let target = match in_force {
            Some(current) if sequence <= current.sequence => {
                return Err(TrustStoreError::Rollback {
                    current: current.sequence,
                    offered: sequence,
                });
            }
            Some(InForce {
                half: Half::First, ..
            }) => Half::Second,
            Some(InForce {
                half: Half::Second, ..
            })
            | None => Half::First,
        };
        let start = self.start(target);
        self.flash
            .erase(start, start.saturating_add(self.half_len))?;
        // The record first, then the header: a copy whose header is complete was complete
        // before (the CRC would catch a torn record anyway).
        program(
            &mut self.flash,
            start.saturating_add(COPY_HEADER_OFFSET),
            record,
        )?;
        program(&mut self.flash, start, &header(sequence, record))?;
        Ok(InForce {
            sequence,
            half: target,
        })
    }
}

/// The application-writable staging area for one trust update envelope.
#[derive(Debug)]
pub struct TrustStaging<S> {
    flash: S,
}

impl<S: NorFlash> TrustStaging<S> {
    /// The staging area over `flash` (a whole erase-aligned partition).
    ///
    /// # Errors
    /// [`TrustStoreError::Geometry`] if it cannot hold a header.
    pub fn new(flash: S) -> Result<Self, TrustStoreError> {
        let capacity = flash.capacity();
        if !write_size_ok::<S>()
            || capacity <= STAGING_HEADER_LEN
            || !capacity.is_multiple_of(S::ERASE_SIZE)
            || !capacity.is_multiple_of(S::READ_SIZE)
        {
            return Err(TrustStoreError::Geometry);
        }
        Ok(Self { flash })
    }

    /// The flash back.
    pub fn into_inner(self) -> S {
        self.flash
    }

    /// The largest envelope the area holds.
    pub fn capacity(&self) -> usize {
        self.flash.capacity() - STAGING_HEADER_LEN
    }

    /// Stages `envelope` for the bootloader (the application's side): erases the area,
    /// programs the envelope, then the header.
    ///
    /// # Errors
    /// [`TrustStoreError::TooLarge`], or a flash error (nothing valid is staged then).
    pub fn stage(&mut self, envelope: &[u8]) -> Result<(), TrustStoreError> {
        let capacity = self.capacity();
        if envelope.is_empty() || envelope.len() > capacity {
            return Err(TrustStoreError::TooLarge {
                len: envelope.len(),
                capacity,
            });
        }
        self.clear()?;
        program(&mut self.flash, STAGING_HEADER_OFFSET, envelope)?;
        let mut head = [0u8; STAGING_HEADER_LEN];
        let len = u32::try_from(envelope.len()).map_err(|_| TrustStoreError::Geometry)?;
        let fields: [(usize, &[u8]); 3] = [
            (0, &STAGING_MAGIC),
            (4, &len.to_le_bytes()),
            (8, &crc32(envelope).to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = head.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        program(&mut self.flash, 0, &head)
    }

    /// The staged envelope, copied into `buf`: `None` when nothing (complete) is staged.
    ///
    /// # Errors
    /// [`TrustStoreError::TooLarge`] when a staged envelope is longer than `buf`, or a flash
    /// error.
    pub fn read<'b>(&mut self, buf: &'b mut [u8]) -> Result<Option<&'b [u8]>, TrustStoreError> {
        let mut head = [0u8; STAGING_HEADER_LEN];
        self.flash.read(0, &mut head)?;
        if head.get(..4) != Some(&STAGING_MAGIC[..]) {
            return Ok(None);
        }
        let len = usize::try_from(le32(&head, 4)).unwrap_or(usize::MAX);
        if len == 0 || len > self.capacity() {
            return Ok(None);
        }
        let capacity = buf.len();
        let dst = buf
            .get_mut(..len)
            .ok_or(TrustStoreError::TooLarge { len, capacity })?;
        read_aligned(&mut self.flash, STAGING_HEADER_OFFSET, dst)?;
        if crc32(dst) != le32(&head, 8) {
            return Ok(None);
        }
        Ok(Some(dst))
    }

    /// Clears the area (erases all of it: the area may span physical sectors larger than
    /// `ERASE_SIZE`, and a partial erase of the header would leave a torn one, which reads as
    /// nothing staged anyway).
    ///
    /// # Errors
    /// A flash error.
    pub fn clear(&mut self) -> Result<(), TrustStoreError> {
        let end = u32::try_from(self.flash.capacity()).map_err(|_| TrustStoreError::Geometry)?;
        self.flash.erase(0, end)?;
        Ok(())
    }
}

/// What [`commit_staged`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit<E> {
    /// Nothing usable was staged: none, a torn or corrupt one, one larger than the envelope
    /// buffer, one that could not be read, or one `apply` accepted with a sequence not above
    /// the state in force (these last three are cleared).
    Nothing,
    /// The staged update was verified and is now the state in force.
    Committed {
        /// The previous sequence.
        from: u64,
        /// The new sequence.
        to: u64,
    },
    /// The staged update was refused and cleared (a failing clear is returned as an error
    /// instead); the state in force is unchanged.
    Refused(E),
}

/// Scratch the bootloader lends [`commit_staged`]: the record in force, the next record and the
/// staged envelope.
#[derive(Debug)]
pub struct CommitBuffers<'b> {
    /// On return: the record in force.
    pub record: &'b mut [u8],
    /// Scratch for the next record.
    pub next: &'b mut [u8],
    /// Scratch for the staged envelope (its length bounds what may be staged).
    pub envelope: &'b mut [u8],
}

/// At reset, before any slot is verified: if a trust update is staged, hands the record in
/// force and the envelope to `apply`, which verifies the update under the state in force and
/// writes the next record to its third argument, returning its sequence; the result is
/// written with [`TrustStore::write`] (power-fail safe, anti-rollback) and the staging area
/// is cleared. A refusal by `apply`, or an envelope too large for `buffers.envelope`, clears
/// the staging area and keeps the state in force; so does a staging area that cannot be read
/// (cleared best effort, [`Commit::Nothing`]: see the [module documentation](self) for why it
/// must not stop the boot). On return `buffers.record` holds the record
/// in force and the result says what happened; `Ok(None)` means the trust area was never
/// provisioned (nothing is committed then: the staged update stays).
///
/// # Errors
/// [`TrustStoreError`] for flash errors of the trust area, a failing erase of the staging area
/// after a refusal or a commit, and wrong buffer lengths; the state in force is then whichever
/// copy the area holds.
pub fn commit_staged<S: NorFlash, T: NorFlash, E>(
    store: &mut TrustStore<S>,
    staging: &mut TrustStaging<T>,
    buffers: CommitBuffers<'_>,
    apply: impl FnOnce(&[u8], &[u8], &mut [u8]) -> Result<u64, E>,
) -> Result<Option<(InForce, Commit<E>)>, TrustStoreError> {
    let CommitBuffers {
        record,
        next,
        envelope,
    } = buffers;
    if next.len() != store.record_len {
        return Err(TrustStoreError::RecordLen);
    }
    let Some(in_force) = store.load(record)? else {
        return Ok(None);
    };
    let staged = match staging.read(envelope) {
        Ok(Some(staged)) => staged,
        Ok(None) => return Ok(Some((in_force, Commit::Nothing))),
        Err(TrustStoreError::TooLarge { .. }) => {
            // Bounded like every size a sender controls: an envelope larger than the
            // bootloader's buffer is dropped, not read.
            staging.clear()?;
            return Ok(Some((in_force, Commit::Nothing)));
        }
        Err(_) => {
            // The staging area is the application's and unauthenticated: nothing read from
            // it may stop the boot. A read error drops the staged update (best effort: a
            // failing erase leaves it for the next reset, which drops it again) and the
            // authenticated state in force boots. Integrity holds, since nothing unverified is
            // committed; availability holds, since no staged content or read fault halts the
            // bootloader (RFC 9019 §3: "Devices must not fail when a disruption [...] occurs
            // during the update process"; §4: the verifier, not the staging area, decides what
            // is trusted). An attacker who
            // can make reads fail suppresses the staged update, which one who can write the
            // staging area can do anyway; the application sees the sequence unchanged.
            staging.clear().ok();
            return Ok(Some((in_force, Commit::Nothing)));
        }
    };
    let sequence = match apply(record, staged, next) {
        Ok(sequence) => sequence,
        Err(e) => {
            staging.clear()?;
            return Ok(Some((in_force, Commit::Refused(e))));
        }
    };
    let now = match store.write(Some(in_force), sequence, next) {
        Ok(now) => now,
        // The trust state's own anti-rollback, enforced here whatever `apply` checked: an
        // update not newer than the state in force is dropped like any refused one, so that a
        // replayed staging area cannot stop every later boot on the same error.
        Err(TrustStoreError::Rollback { .. }) => {
            staging.clear()?;
            return Ok(Some((in_force, Commit::Nothing)));
        }
        Err(e) => return Err(e),
    };
    record.copy_from_slice(next);
    staging.clear()?;
    Ok(Some((
        now,
        Commit::Committed {
            from: in_force.sequence,
            to: sequence,
        },
    )))
}

#[cfg(test)]
mod tests {
    use suitcase_flash_sim::{SharedFlash, SimFlash, Tear};

    use super::*;

    fn record(seq: u64) -> [u8; 100] {
        let mut r = [0u8; 100];
        for (i, b) in r.iter_mut().enumerate() {
            *b = (seq.to_le_bytes()[0])
                .wrapping_mul(31)
                .wrapping_add(i.to_le_bytes()[0]);
        }
        r
    }

    #[test]
    fn writes_alternate_copies_and_the_higher_sequence_wins() {
        let flash = SharedFlash::new(SimFlash::<4, 64>::uniform(256, 3, 1).unwrap());
        let mut store = TrustStore::new(flash.partition(0, 512).unwrap(), 100).unwrap();
        let mut buf = [0u8; 100];
        assert_eq!(store.load(&mut buf).unwrap(), None);
        let mut now = store.write(None, 0, &record(0)).unwrap();
        for seq in 1..5 {
            now = store.write(Some(now), seq, &record(seq)).unwrap();
            let loaded = store.load(&mut buf).unwrap().unwrap();
            assert_eq!((loaded, buf), (now, record(seq)));
        }
        assert_eq!(
            store.write(Some(now), 4, &record(4)),
            Err(TrustStoreError::Rollback {
                current: 4,
                offered: 4
            })
        );
    }

    #[test]
    fn a_torn_write_keeps_the_state_in_force() {
        for tear in [Tear::Random, Tear::Nothing, Tear::Scatter] {
            // erase, record, header: three operations.
            for cut in 0..3 {
                let flash = SharedFlash::new(SimFlash::<4, 64>::uniform(256, 3, cut).unwrap());
                let mut store = TrustStore::new(flash.partition(0, 512).unwrap(), 100).unwrap();
                let now = store.write(None, 0, &record(0)).unwrap();
                let now = store.write(Some(now), 1, &record(1)).unwrap();
                flash
                    .with(|f| {
                        f.set_tear(tear);
                        f.cut_power_after(cut);
                    })
                    .unwrap();
                assert!(store.write(Some(now), 2, &record(2)).is_err());
                flash.with(|f| f.power_on()).unwrap();
                let mut buf = [0u8; 100];
                let loaded = store.load(&mut buf).unwrap().unwrap();
                assert_eq!((loaded.sequence, buf), (1, record(1)), "{tear:?} {cut}");
            }
        }
    }

    /// An `apply` that lets a replayed update through (its sequence not above the state in
    /// force) must not halt the boot: the store's anti-rollback refuses the write, the staging
    /// area is cleared and the state in force stays.
    #[test]
    fn replayed_update_passed_by_apply_is_cleared_not_retried_every_reset() {
        let flash = SharedFlash::new(SimFlash::<4, 64>::uniform(256, 5, 1).unwrap());
        let mut store = TrustStore::new(flash.partition(0, 512).unwrap(), 100).unwrap();
        let mut staging = TrustStaging::new(flash.partition(512, 512).unwrap()).unwrap();
        let now = store.write(None, 0, &record(0)).unwrap();
        store.write(Some(now), 3, &record(3)).unwrap();
        staging.stage(b"a replayed update").unwrap();
        let (mut rec, mut next, mut env) = ([0u8; 100], [0u8; 100], [0u8; 256]);
        let apply = |_: &[u8], _: &[u8], out: &mut [u8]| -> Result<u64, ()> {
            out.copy_from_slice(&record(2));
            Ok(2)
        };
        let buffers = CommitBuffers {
            record: &mut rec,
            next: &mut next,
            envelope: &mut env,
        };
        let (in_force, outcome) = commit_staged(&mut store, &mut staging, buffers, apply)
            .unwrap()
            .unwrap();
        assert_eq!((in_force.sequence, outcome), (3, Commit::Nothing));
        assert_eq!(rec, record(3));
        assert_eq!(
            staging.read(&mut env).unwrap(),
            None,
            "the replay stays staged"
        );
    }

    #[test]
    fn staging_round_trips_and_clears() {
        let flash = SharedFlash::new(SimFlash::<4, 64>::uniform(256, 2, 1).unwrap());
        let mut staging = TrustStaging::new(flash.partition(0, 512).unwrap()).unwrap();
        let mut buf = [0u8; 600];
        assert_eq!(staging.read(&mut buf).unwrap(), None);
        staging.stage(b"an envelope").unwrap();
        assert_eq!(staging.read(&mut buf).unwrap(), Some(&b"an envelope"[..]));
        assert!(matches!(
            staging.read(&mut [0u8; 4]),
            Err(TrustStoreError::TooLarge { len: 11, .. })
        ));
        staging.clear().unwrap();
        assert_eq!(staging.read(&mut buf).unwrap(), None);
        assert!(matches!(
            staging.stage(&[0u8; 600]),
            Err(TrustStoreError::TooLarge { len: 600, .. })
        ));
    }
}

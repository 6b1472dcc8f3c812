//! Host helpers (feature `std`): apply patches held in memory, including in-place patches on
//! a RAM-backed slot, and describe patches.
//!
//! A patch header declares the sizes of the images (32-bit fields), and an in-place header
//! also the shift of the old image. A forged header can claim gigabytes in a few dozen bytes,
//! so [`apply_with_progress`] checks every declared size against [`MAX_IMAGE_SIZE`] (or the
//! caller's smaller `Limits::slot_size`) and against the source image it was given, and checks
//! the source's digest, all before it allocates anything that depends on the header. An
//! in-place patch is then applied on a [`SparseFlash`] that holds only the erase blocks
//! written so far, so the gap a shift opens costs no memory.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::{
    Applier, Error, Flash, Header, InPlaceApplier, Limits, Mode, Progress, ProgressStore, Status,
};

/// The largest image the host helpers handle: 1 GiB. It bounds the new image, the source
/// image a patch may name and, in place, the old image plus its shift (the slot). Lower it per
/// call with [`Limits::slot_size`].
pub const MAX_IMAGE_SIZE: u32 = 1 << 30;

/// A slot in RAM with flash semantics (erase to 0xFF before write).
#[derive(Debug, Clone)]
pub struct RamFlash {
    /// The slot's bytes.
    pub mem: Vec<u8>,
    /// Erase block size.
    pub block: u32,
}

impl Flash for RamFlash {
    fn erase_size(&self) -> u32 {
        self.block
    }
    fn capacity(&self) -> u32 {
        u32::try_from(self.mem.len()).unwrap_or(u32::MAX)
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        let s = offset as usize;
        buf.copy_from_slice(self.mem.get(s..s + buf.len()).ok_or(Error::Io)?);
        Ok(())
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error> {
        let s = offset as usize;
        let dst = self.mem.get_mut(s..s + data.len()).ok_or(Error::Io)?;
        for (d, &b) in dst.iter_mut().zip(data) {
            *d &= b;
        }
        Ok(())
    }
    fn erase(&mut self, offset: u32) -> Result<(), Error> {
        let s = offset as usize;
        let end = (s + self.block as usize).min(self.mem.len());
        self.mem.get_mut(s..end).ok_or(Error::Io)?.fill(0xFF);
        Ok(())
    }
}

/// A slot of `capacity` bytes with flash semantics that keeps in memory only the erase blocks
/// written since their last erase; every other byte reads erased (0xFF). Memory follows what
/// is written, not what a header declares.
#[derive(Debug, Clone)]
pub struct SparseFlash {
    blocks: BTreeMap<u32, Vec<u8>>,
    block: u32,
    capacity: u32,
}

impl SparseFlash {
    /// An erased slot of `capacity` bytes with erase blocks of `block` bytes (not zero).
    pub fn new(capacity: u32, block: u32) -> Result<Self, Error> {
        if block == 0 {
            return Err(Error::BadGeometry);
        }
        Ok(Self {
            blocks: BTreeMap::new(),
            block,
            capacity,
        })
    }

    /// Bytes held in memory (the blocks written since their last erase).
    pub fn resident(&self) -> usize {
        self.blocks.values().map(Vec::len).sum()
    }

    /// The first `len` bytes of the slot, consuming it.
    pub fn into_prefix(mut self, len: u32) -> Result<Vec<u8>, Error> {
        if len > self.capacity {
            return Err(Error::Io);
        }
        let len = len as usize;
        let mut out = Vec::with_capacity(len);
        let mut index = 0u32;
        while out.len() < len {
            let want = (len - out.len()).min(self.block as usize);
            match self.blocks.remove(&index) {
                Some(b) => out.extend_from_slice(b.get(..want).ok_or(Error::Io)?),
                None => out.resize(out.len() + want, 0xFF),
            }
            index += 1;
        }
        Ok(out)
    }

    /// Calls `f(block index, offset in block, range of buf)` for each block `offset..+len`
    /// touches, after checking the range lies in the slot.
    fn spans(
        &self,
        offset: u32,
        len: usize,
        mut f: impl FnMut(u32, usize, core::ops::Range<usize>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let end = u64::from(offset) + len as u64;
        if end > u64::from(self.capacity) {
            return Err(Error::Io);
        }
        let mut done = 0usize;
        while done < len {
            let at = offset as usize + done;
            let block = self.block as usize;
            let n = (block - at % block).min(len - done);
            let index = u32::try_from(at / block).map_err(|_| Error::Io)?;
            f(index, at % block, done..done + n)?;
            done += n;
        }
        Ok(())
    }
}

impl Flash for SparseFlash {
    fn erase_size(&self) -> u32 {
        self.block
    }
    fn capacity(&self) -> u32 {
        self.capacity
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        let blocks = &self.blocks;
        self.spans(offset, buf.len(), |index, within, range| {
            let dst = buf.get_mut(range).ok_or(Error::Io)?;
            match blocks.get(&index) {
                Some(b) => dst.copy_from_slice(b.get(within..within + dst.len()).ok_or(Error::Io)?),
                None => dst.fill(0xFF),
            }
            Ok(())
        })
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error> {
        let block = self.block as usize;
        let mut touched = Vec::new();
        self.spans(offset, data.len(), |index, within, range| {
            touched.push((index, within, range));
            Ok(())
        })?;
        for (index, within, range) in touched {
            let b = self
                .blocks
                .entry(index)
                .or_insert_with(|| alloc::vec![0xFF; block]);
            let dst = b.get_mut(within..within + range.len()).ok_or(Error::Io)?;
            for (d, &s) in dst.iter_mut().zip(data.get(range).ok_or(Error::Io)?) {
                *d &= s;
            }
        }
        Ok(())
    }
    fn erase(&mut self, offset: u32) -> Result<(), Error> {
        if offset >= self.capacity || !offset.is_multiple_of(self.block) {
            return Err(Error::Io);
        }
        self.blocks.remove(&(offset / self.block));
        Ok(())
    }
}

/// A progress record kept in RAM.
#[derive(Debug, Clone, Default)]
pub struct RamStore(pub Option<Progress>);

impl ProgressStore for RamStore {
    fn load(&mut self) -> Result<Option<Progress>, Error> {
        Ok(self.0)
    }
    fn save(&mut self, p: &Progress) -> Result<(), Error> {
        self.0 = Some(*p);
        Ok(())
    }
}

/// Checks a header against the host's limits and the source image, before anything is
/// allocated for it: sizes within `limits` (its `slot_size` capped at [`MAX_IMAGE_SIZE`]),
/// the source at least `old_size` bytes long and its first `old_size` bytes the patch's
/// source (SHA-256). Returns the limits to apply the patch with.
///
/// # Errors
/// [`Error::ImageTooLarge`] naming the size that is too large, [`Error::RamBoundTooLarge`],
/// [`Error::SourceSizeMismatch`] or [`Error::SourceDigestMismatch`].
pub fn check_header(header: &Header, old: &[u8], limits: Limits) -> Result<Limits, Error> {
    let limit = limits.slot_size.min(MAX_IMAGE_SIZE);
    let too_large = |what, size: u64| Error::ImageTooLarge {
        what,
        size,
        limit: u64::from(limit),
    };
    if header.new_size > limit {
        return Err(too_large("new image", header.new_size.into()));
    }
    if header.mode != Mode::Full && header.old_size > limit {
        return Err(too_large("old image", header.old_size.into()));
    }
    if let Some(g) = header.geometry {
        let slot = u64::from(header.old_size) + u64::from(g.shift);
        if slot > u64::from(limit) {
            return Err(too_large("old image plus in-place shift", slot));
        }
    }
    let limits = Limits {
        slot_size: limit,
        ..limits
    };
    header.check_limits(&limits)?;
    if header.mode != Mode::Full {
        let source = old
            .get(..header.old_size as usize)
            .ok_or(Error::SourceSizeMismatch)?;
        let digest: [u8; 32] = Sha256::digest(source).into();
        if !header.source_matches(&digest) {
            return Err(Error::SourceDigestMismatch);
        }
    }
    Ok(limits)
}

/// Applies any patch (sequential, full or in-place) held in memory to `old`, feeding it in
/// chunks of `chunk` bytes and calling `progress` with the bytes fed so far.
///
/// The header is checked first ([`check_header`]): a patch whose sizes exceed
/// [`MAX_IMAGE_SIZE`] or `limits`, or that names another source, is refused before anything
/// is allocated for it. Memory then follows the bytes the patch really produces.
pub fn apply_with_progress(
    old: &[u8],
    patch: &[u8],
    chunk: usize,
    limits: Limits,
    mut progress: impl FnMut(usize),
) -> Result<Vec<u8>, Error> {
    let header = Header::parse(patch)?;
    let limits = check_header(&header, old, limits)?;
    if header.mode == Mode::InPlace {
        let g = header.geometry.ok_or(Error::BadGeometry)?;
        // Both at most `limits.slot_size` (checked above), so no overflow.
        let capacity = (header.old_size + g.shift).max(header.new_size);
        let mut flash = SparseFlash::new(capacity, g.block_size)?;
        let placed = old.get(..capacity as usize).unwrap_or(old);
        flash.write(0, placed)?;
        let mut store = RamStore::default();
        let mut a = InPlaceApplier::new(Limits {
            slot_size: capacity,
            ..limits
        });
        let mut fed = 0;
        for c in patch.chunks(chunk.max(1)) {
            let st = a.feed(c, &mut flash, &mut store)?;
            fed += c.len();
            progress(fed);
            if st == Status::Done {
                break;
            }
        }
        a.finish()?;
        return flash.into_prefix(header.new_size);
    }
    let mut a = Applier::new(limits);
    // The output grows as the patch produces it; reserve no more than the inputs suggest.
    let guess = (header.new_size as usize).min(old.len().saturating_add(patch.len()));
    let mut out = Vec::with_capacity(guess);
    let mut o = old;
    let mut fed = 0;
    for c in patch.chunks(chunk.max(1)) {
        a.feed(c, &mut o, &mut out)?;
        fed += c.len();
        progress(fed);
    }
    a.finish()?;
    Ok(out)
}

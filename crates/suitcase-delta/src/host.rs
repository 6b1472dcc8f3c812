//! Host helpers (feature `std`): apply patches held in memory, including in-place patches on
//! a RAM-backed slot, and describe patches.

use alloc::vec::Vec;

use crate::{
    Applier, Error, Flash, Header, InPlaceApplier, Limits, Mode, Progress, ProgressStore, Status,
};

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

/// Applies any patch (sequential, full or in-place) held in memory to `old`, feeding it in
/// chunks of `chunk` bytes and calling `progress` with the bytes fed so far.
pub fn apply_with_progress(
    old: &[u8],
    patch: &[u8],
    chunk: usize,
    limits: Limits,
    mut progress: impl FnMut(usize),
) -> Result<Vec<u8>, Error> {
    let header = Header::parse(patch)?;
    if header.mode == Mode::InPlace {
        let g = header.geometry.ok_or(Error::BadGeometry)?;
        let slot = (u64::from(header.old_size) + u64::from(g.shift))
            .max(u64::from(header.new_size))
            .max(old.len() as u64);
        let slot = usize::try_from(slot).map_err(|_| Error::BadGeometry)?;
        let mut mem = alloc::vec![0xFF; slot];
        mem.get_mut(..old.len())
            .ok_or(Error::Io)?
            .copy_from_slice(old);
        let mut flash = RamFlash {
            mem,
            block: g.block_size,
        };
        let mut store = RamStore::default();
        let limits = Limits {
            slot_size: flash.capacity(),
            ..limits
        };
        let mut a = InPlaceApplier::new(limits);
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
        flash.mem.truncate(header.new_size as usize);
        return Ok(flash.mem);
    }
    let mut a = Applier::new(limits);
    let mut out = Vec::with_capacity(header.new_size as usize);
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

//! `delta_in_place`: the [`InPlaceApplier`] on simulated flash (one slot, erase before
//! write), three ways:
//! 1. resuming from a fuzzed progress record (its patch id fixed up, so the record is taken as
//!    this patch's and its phase, segment and offset are believed);
//! 2. from scratch, with the source digest fixed up (and the result digest, once the image
//!    decodes): the reference result;
//! 3. with the power cut after a fuzzed number of flash operations, then resumed from the
//!    record saved so far: must give the reference result (the crate's power-cut promise).
//!
//! Input: `[ctl] [cut: u16 LE] [record: 20 bytes] [old length: u16 LE] [old] [patch]`.

use suitcase_delta::host::{RamFlash, RamStore};
use suitcase_delta::{
    Error, Flash, Header, InPlaceApplier, Limits, MAX_RAM_BOUND, Progress, Status,
};

use crate::delta_common::{chunk, fix_result, fix_source};
use crate::split_len_prefixed;

/// The largest slot simulated.
pub const MAX_SLOT: u32 = 1 << 18;

/// A flash whose power fails after `left` erases and writes.
struct CutFlash<'a> {
    inner: &'a mut RamFlash,
    left: u32,
}

impl Flash for CutFlash<'_> {
    fn erase_size(&self) -> u32 {
        self.inner.erase_size()
    }
    fn capacity(&self) -> u32 {
        self.inner.capacity()
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        self.inner.read(offset, buf)
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error> {
        self.left = self.left.checked_sub(1).ok_or(Error::Io)?;
        self.inner.write(offset, data)
    }
    fn erase(&mut self, offset: u32) -> Result<(), Error> {
        self.left = self.left.checked_sub(1).ok_or(Error::Io)?;
        self.inner.erase(offset)
    }
}

fn apply(
    patch: &[u8],
    flash: &mut impl Flash,
    store: &mut RamStore,
    chunk: usize,
) -> Result<(), Error> {
    let mut a = InPlaceApplier::new(Limits {
        max_ram: MAX_RAM_BOUND,
        slot_size: flash.capacity(),
    });
    for c in patch.chunks(chunk) {
        if a.feed(c, flash, store)? == Status::Done {
            break;
        }
    }
    a.finish()
}

/// A slot for this header holding `old`, or `None` if the geometry is too large to simulate.
fn slot_for(h: &Header, old: &[u8]) -> Option<RamFlash> {
    let g = h.geometry?;
    let need = (u64::from(h.old_size) + u64::from(g.shift)).max(u64::from(h.new_size));
    let cap = need
        .max(old.len() as u64)
        .next_multiple_of(u64::from(g.block_size));
    if cap > u64::from(MAX_SLOT) || g.block_size > 4096 {
        return None;
    }
    let mut mem = vec![0xFF; cap as usize];
    mem.get_mut(..old.len())?.copy_from_slice(old);
    Some(RamFlash {
        mem,
        block: g.block_size,
    })
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let Some((cut, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let Some((record, rest)) = rest.split_first_chunk::<20>() else {
        return;
    };
    let (old, patch) = split_len_prefixed(rest);
    let chunk = chunk(ctl);
    let Ok(h) = Header::parse(patch) else {
        // Refusals of a bad header, on a small slot.
        let mut flash = RamFlash {
            mem: vec![0xFF; 4096],
            block: 256,
        };
        let _ = apply(patch, &mut flash, &mut RamStore::default(), chunk);
        return;
    };
    let (patch, old) = fix_source(patch, old);
    let Some(pristine) = slot_for(&h, &old) else {
        let mut flash = RamFlash {
            mem: vec![0xFF; 4096],
            block: 256,
        };
        let _ = apply(&patch, &mut flash, &mut RamStore::default(), chunk);
        return;
    };
    let id: [u8; 8] = h.new_digest[..8].try_into().unwrap();

    // 1. Resume from a fuzzed record.
    let mut record = *record;
    record[..8].copy_from_slice(&id);
    if let Some(p) = Progress::from_bytes(&record) {
        let mut flash = pristine.clone();
        let _ = apply(&patch, &mut flash, &mut RamStore(Some(p)), chunk);
    }

    // 2. From scratch: the reference.
    let mut flash = pristine.clone();
    let mut res = apply(&patch, &mut flash, &mut RamStore::default(), chunk);
    let mut patch = patch;
    if res == Err(Error::ResultDigestMismatch) {
        let image = flash.mem[..h.new_size as usize].to_vec();
        let Some(fixed) = fix_result(&patch, &image) else {
            return;
        };
        patch = fixed;
        flash = pristine.clone();
        res = apply(&patch, &mut flash, &mut RamStore::default(), chunk);
        assert_eq!(
            res,
            Ok(()),
            "a patch that decoded once must apply with its digest fixed"
        );
        assert_eq!(
            flash.mem[..image.len()],
            image,
            "the in-place applier is not deterministic"
        );
    }
    if res.is_err() {
        return;
    }
    let reference = flash.mem[..h.new_size as usize].to_vec();

    // 3. A power cut after `cut` flash operations, then a resume: the same image.
    let mut flash = pristine;
    let mut store = RamStore::default();
    let cut = u32::from(u16::from_le_bytes(*cut));
    let first = apply(
        &patch,
        &mut CutFlash {
            inner: &mut flash,
            left: cut,
        },
        &mut store,
        chunk,
    );
    if first.is_err() {
        let again = apply(&patch, &mut flash, &mut store, chunk);
        assert_eq!(
            again,
            Ok(()),
            "resume after a power cut at operation {cut} failed"
        );
    }
    assert_eq!(
        flash.mem[..reference.len()],
        reference,
        "power cut at operation {cut} changed the result"
    );
}

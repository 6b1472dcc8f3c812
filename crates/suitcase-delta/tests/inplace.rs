//! In-place mode: power cuts at every flash step, then resume.
#![expect(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::testdata_pairs;
use suitcase_delta::{
    Error, Flash, InPlaceApplier, InPlaceOptions, Limits, Mode, Options, Progress, ProgressStore,
    Status, create,
};

#[derive(Debug, Default)]
struct Power {
    ops: u64,
    cut_at: Option<u64>,
    dead: bool,
}

impl Power {
    /// Counts a mutation; returns true if the power goes during it.
    fn tick(&mut self) -> Result<bool, Error> {
        if self.dead {
            return Err(Error::Io);
        }
        self.ops += 1;
        if self.cut_at == Some(self.ops) {
            self.dead = true;
            return Ok(true);
        }
        Ok(false)
    }
}

#[derive(Debug)]
struct SimFlash {
    mem: Vec<u8>,
    block: u32,
    power: Rc<RefCell<Power>>,
}

impl Flash for SimFlash {
    fn erase_size(&self) -> u32 {
        self.block
    }
    fn capacity(&self) -> u32 {
        self.mem.len() as u32
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        if self.power.borrow().dead {
            return Err(Error::Io);
        }
        let s = offset as usize;
        buf.copy_from_slice(self.mem.get(s..s + buf.len()).ok_or(Error::Io)?);
        Ok(())
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error> {
        let torn = self.power.borrow_mut().tick()?;
        let s = offset as usize;
        let dst = self.mem.get_mut(s..s + data.len()).ok_or(Error::Io)?;
        assert!(
            dst.iter().all(|&b| b == 0xFF),
            "write to unerased flash at {offset:#x}"
        );
        let n = if torn { data.len() / 2 } else { data.len() };
        dst[..n].copy_from_slice(&data[..n]);
        if torn {
            // the next byte is half programmed
            if let Some(b) = dst.get_mut(n) {
                *b &= data[n] | 0x0F;
            }
            return Err(Error::Io);
        }
        Ok(())
    }
    fn erase(&mut self, offset: u32) -> Result<(), Error> {
        assert_eq!(offset % self.block, 0, "unaligned erase");
        let torn = self.power.borrow_mut().tick()?;
        let s = offset as usize;
        let end = (s + self.block as usize).min(self.mem.len());
        let blk = self.mem.get_mut(s..end).ok_or(Error::Io)?;
        let n = if torn { blk.len() / 3 } else { blk.len() };
        blk[..n].fill(0xFF);
        if torn {
            return Err(Error::Io);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Store {
    rec: Option<[u8; 20]>,
    power: Rc<RefCell<Power>>,
    saves: u32,
}

impl ProgressStore for Store {
    fn load(&mut self) -> Result<Option<Progress>, Error> {
        Ok(self.rec.as_ref().and_then(Progress::from_bytes))
    }
    fn save(&mut self, p: &Progress) -> Result<(), Error> {
        // A record write is atomic (the store keeps two copies): either old or new survives.
        if self.power.borrow_mut().tick()? {
            return Err(Error::Io);
        }
        self.rec = Some(p.to_bytes());
        self.saves += 1;
        Ok(())
    }
}

const BLOCK: u32 = 256;

fn setup(old: &[u8], slot: usize) -> (SimFlash, Store, Rc<RefCell<Power>>) {
    let power = Rc::new(RefCell::new(Power::default()));
    let mut mem = vec![0xFF; slot];
    mem[..old.len()].copy_from_slice(old);
    (
        SimFlash {
            mem,
            block: BLOCK,
            power: power.clone(),
        },
        Store {
            rec: None,
            power: power.clone(),
            saves: 0,
        },
        power,
    )
}

fn run(patch: &[u8], flash: &mut SimFlash, store: &mut Store, chunk: usize) -> Result<(), Error> {
    let mut a = InPlaceApplier::new(Limits {
        max_ram: 16 * 1024,
        slot_size: flash.mem.len() as u32,
    });
    for c in patch.chunks(chunk) {
        if a.feed(c, flash, store)? == Status::Done {
            break;
        }
    }
    a.finish()
}

fn make(old: &[u8], new: &[u8], slot: usize, segment: u32) -> Vec<u8> {
    let p = create(
        old,
        new,
        &Options {
            in_place: Some(InPlaceOptions {
                block_size: BLOCK,
                slot_size: slot as u32,
                segment_size: segment,
            }),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(p.header.mode, Mode::InPlace);
    p.bytes
}

#[test]
fn in_place_round_trips_testdata() {
    for (name, old, new) in testdata_pairs() {
        for (extra, segment) in [(0usize, 0u32), (1024, 0), (4096, 1024), (4096, 256)] {
            let slot = old.len().max(new.len()) + extra;
            let patch = make(&old, &new, slot, segment);
            let (mut flash, mut store, _) = setup(&old, slot);
            run(&patch, &mut flash, &mut store, 61)
                .unwrap_or_else(|e| panic!("{name} +{extra}: {e}"));
            assert_eq!(&flash.mem[..new.len()], &new[..], "{name} +{extra}");
        }
    }
}

#[test]
fn power_cut_at_every_flash_step_resumes_to_the_new_image() {
    let pairs = testdata_pairs();
    for name in ["thumb-shift", "thumb-insert"] {
        let (_, old, new) = pairs.iter().find(|(n, ..)| n == name).unwrap();
        let slot = old.len().max(new.len()) + 1024;
        let patch = make(old, new, slot, 512);
        // Count the steps of an uninterrupted update.
        let (mut flash, mut store, power) = setup(old, slot);
        run(&patch, &mut flash, &mut store, 100).unwrap();
        let steps = power.borrow().ops;
        assert!(steps > 20);
        for cut in 1..=steps {
            let (mut flash, mut store, power) = setup(old, slot);
            power.borrow_mut().cut_at = Some(cut);
            let first = run(&patch, &mut flash, &mut store, 100);
            assert!(first.is_err(), "{name}: cut {cut} did not interrupt");
            // Reboot: power back, feed the same patch from its start.
            {
                let mut p = power.borrow_mut();
                p.dead = false;
                p.cut_at = None;
            }
            run(&patch, &mut flash, &mut store, 37)
                .unwrap_or_else(|e| panic!("{name}: resume after cut {cut}: {e}"));
            assert_eq!(&flash.mem[..new.len()], &new[..], "{name}: cut {cut}");
        }
    }
}

#[test]
fn two_power_cuts_in_a_row_still_resume() {
    let pairs = testdata_pairs();
    let (_, old, new) = pairs.iter().find(|(n, ..)| n == "thumb-insert").unwrap();
    let slot = old.len().max(new.len()) + 2048;
    let patch = make(old, new, slot, 768);
    for (a, b) in [(3u64, 2u64), (10, 5), (25, 1), (40, 17), (60, 30)] {
        let (mut flash, mut store, power) = setup(old, slot);
        power.borrow_mut().cut_at = Some(a);
        let _ = run(&patch, &mut flash, &mut store, 100);
        {
            let mut p = power.borrow_mut();
            p.dead = false;
            p.ops = 0;
            p.cut_at = Some(b);
        }
        let _ = run(&patch, &mut flash, &mut store, 100);
        {
            let mut p = power.borrow_mut();
            p.dead = false;
            p.cut_at = None;
        }
        run(&patch, &mut flash, &mut store, 100).unwrap();
        assert_eq!(&flash.mem[..new.len()], &new[..]);
    }
}

#[test]
fn resuming_a_finished_update_is_a_no_op() {
    let pairs = testdata_pairs();
    let (_, old, new) = pairs.iter().find(|(n, ..)| n == "thumb-shift").unwrap();
    let slot = old.len().max(new.len()) + 1024;
    let patch = make(old, new, slot, 0);
    let (mut flash, mut store, _) = setup(old, slot);
    run(&patch, &mut flash, &mut store, 100).unwrap();
    let saves = store.saves;
    run(&patch, &mut flash, &mut store, 100).unwrap();
    assert_eq!(store.saves, saves);
    assert_eq!(&flash.mem[..new.len()], &new[..]);
}

#[test]
fn patch_for_other_source_image_is_refused_in_place() {
    let pairs = testdata_pairs();
    let (_, old, new) = pairs.iter().find(|(n, ..)| n == "thumb-shift").unwrap();
    let slot = old.len().max(new.len()) + 1024;
    let patch = make(old, new, slot, 0);
    let mut other = old.clone();
    other[7] ^= 0x10;
    let (mut flash, mut store, power) = setup(&other, slot);
    assert_eq!(
        run(&patch, &mut flash, &mut store, 100),
        Err(Error::SourceDigestMismatch)
    );
    assert_eq!(
        power.borrow().ops,
        0,
        "touched the flash before checking the source"
    );
    assert_eq!(&flash.mem[..other.len()], &other[..]);
}

#[test]
fn progress_record_of_another_patch_is_refused() {
    let pairs = testdata_pairs();
    let (_, old, new) = pairs.iter().find(|(n, ..)| n == "thumb-shift").unwrap();
    let slot = old.len().max(new.len()) + 1024;
    let patch = make(old, new, slot, 0);
    let (mut flash, mut store, _) = setup(old, slot);
    store.rec = Some(
        Progress {
            patch_id: [9; 8],
            phase: suitcase_delta::Phase::Write {
                segment: 1,
                patch_offset: 200,
            },
        }
        .to_bytes(),
    );
    assert_eq!(
        run(&patch, &mut flash, &mut store, 100),
        Err(Error::BadProgressRecord)
    );
}

#[test]
fn corrupted_in_place_patch_never_writes_past_the_slot() {
    let pairs = testdata_pairs();
    let (_, old, new) = pairs.iter().find(|(n, ..)| n == "thumb-insert").unwrap();
    let slot = old.len().max(new.len()) + 1024;
    let patch = make(old, new, slot, 1024);
    for i in (0..patch.len()).step_by(7) {
        let mut p = patch.clone();
        p[i] ^= 0x5A;
        let (mut flash, mut store, _) = setup(old, slot);
        let res = run(&p, &mut flash, &mut store, 100);
        if res.is_ok() {
            assert_eq!(&flash.mem[..new.len()], &new[..], "byte {i}");
        }
        assert_eq!(flash.mem.len(), slot);
    }
}

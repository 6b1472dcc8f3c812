//! In-place application: one slot, the new image overwrites the old, and a power cut at any
//! moment is survived by resuming from a small progress record.
//!
//! Protocol (see docs/delta.md):
//! 1. *Verify*: the slot's first `old_size` bytes must hash to the patch's source digest.
//! 2. *Shift*: the old image is moved up by `shift` bytes, one erase block at a time from the
//!    top down (a block's source is never overwritten before it was copied, so a torn copy is
//!    simply redone). The record holds the lowest block already moved.
//! 3. *Write*: the new image is decoded segment by segment into the bottom of the slot. Each
//!    segment is an independent stream (fresh model) that references only old data above
//!    what the segment overwrites, and new data below it, so a segment torn by a power cut is
//!    decoded again from its start. The record holds the next segment and its patch offset.
//! 4. *Check*: the new image is read back and its SHA-256 compared with the patch's.

#![allow(
    clippy::cast_possible_truncation,
    reason = "offsets are below the slot size, a u32"
)]

use sha2::{Digest, Sha256};

use crate::Error;
use crate::apply::{Applier, Event, Images, Status};
use crate::format::{Header, Limits, MAX_HEADER_LEN, Mode};

/// The single slot's flash, as the in-place applier needs it.
pub trait Flash {
    /// Erase block size (the patch's block size must equal it).
    fn erase_size(&self) -> u32;
    /// Bytes in the slot.
    fn capacity(&self) -> u32;
    /// Reads bytes.
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error>;
    /// Programs erased bytes.
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error>;
    /// Erases the block that starts at `offset`.
    fn erase(&mut self, offset: u32) -> Result<(), Error>;
}

/// Where an in-place update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Moving the old image up: blocks at index `>= moved_from` are already moved.
    Shift {
        /// Lowest block index already moved.
        moved_from: u32,
    },
    /// Writing the new image: segments before `segment` are complete.
    Write {
        /// Next segment to decode.
        segment: u32,
        /// Patch offset of that segment's length prefix.
        patch_offset: u32,
    },
    /// The image is written; its digest is being checked.
    Check,
    /// Complete and verified.
    Done,
}

/// The progress record the caller persists (20 bytes, see [`Progress::to_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Identifies the patch: the first 8 bytes of its result digest.
    pub patch_id: [u8; 8],
    /// The phase.
    pub phase: Phase,
}

impl Progress {
    /// Serialises the record: id (8), phase (4, LE), two parameters (4 each, LE).
    pub fn to_bytes(&self) -> [u8; 20] {
        let (tag, a, b) = match self.phase {
            Phase::Shift { moved_from } => (1u32, moved_from, 0),
            Phase::Write {
                segment,
                patch_offset,
            } => (2, segment, patch_offset),
            Phase::Check => (3, 0, 0),
            Phase::Done => (4, 0, 0),
        };
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&self.patch_id);
        out[8..12].copy_from_slice(&tag.to_le_bytes());
        out[12..16].copy_from_slice(&a.to_le_bytes());
        out[16..20].copy_from_slice(&b.to_le_bytes());
        out
    }

    /// Parses a record written by [`Progress::to_bytes`].
    pub fn from_bytes(b: &[u8; 20]) -> Option<Self> {
        let word = |i: usize| {
            b.get(i..i + 4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .map_or(0, u32::from_le_bytes)
        };
        let mut patch_id = [0u8; 8];
        patch_id.copy_from_slice(&b[..8]);
        let phase = match word(8) {
            1 => Phase::Shift {
                moved_from: word(12),
            },
            2 => Phase::Write {
                segment: word(12),
                patch_offset: word(16),
            },
            3 => Phase::Check,
            4 => Phase::Done,
            _ => return None,
        };
        Some(Self { patch_id, phase })
    }
}

/// Persists the progress record atomically (e.g. two alternating copies with a CRC).
pub trait ProgressStore {
    /// The last record saved, if any.
    fn load(&mut self) -> Result<Option<Progress>, Error>;
    /// Saves a record; after a power cut `load` returns either it or the previous one.
    fn save(&mut self, p: &Progress) -> Result<(), Error>;
}

/// The slot seen as old image (shifted up) and new image (at the bottom, each block erased
/// when first written).
struct Both<'a, F: Flash> {
    flash: &'a mut F,
    erased_to: &'a mut u32,
    block: u32,
    shift: u32,
    limit: u32,
}

impl<F: Flash> Images for Both<'_, F> {
    fn read_old(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        self.flash
            .read(offset.checked_add(self.shift).ok_or(Error::Corrupt)?, buf)
    }
    fn read_new(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        self.flash.read(offset, buf)
    }
    fn write_new(&mut self, offset: u32, data: &[u8]) -> Result<(), Error> {
        let end = offset
            .checked_add(data.len() as u32)
            .ok_or(Error::Corrupt)?;
        if end > self.limit {
            return Err(Error::Corrupt);
        }
        while *self.erased_to < end {
            self.flash.erase(*self.erased_to)?;
            *self.erased_to += self.block;
        }
        self.flash.write(offset, data)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Writing,
    Finished,
    Failed,
}

/// Applies an in-place patch; survives power cuts (feed the patch again from its start after
/// a reboot: completed work is skipped).
#[derive(Debug, Clone)]
pub struct InPlaceApplier {
    inner: Applier,
    limits: Limits,
    state: State,
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    header: Option<Header>,
    erased_to: u32,
    seg_index_seen: u32,
}

impl InPlaceApplier {
    /// A new in-place applier with the device's limits (`slot_size` is the slot's capacity).
    pub fn new(limits: Limits) -> Self {
        let mut inner = Applier::new(limits);
        inner.verify_source = false;
        inner.hash_stream = false;
        Self {
            inner,
            limits,
            state: State::Header,
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            header: None,
            erased_to: 0,
            seg_index_seen: 0,
        }
    }

    /// Feeds the next chunk of the patch. Returns [`Status::Done`] once the new image is
    /// written and verified (after a resume this may come before the whole patch was fed;
    /// the rest is then ignored).
    pub fn feed<F: Flash, S: ProgressStore>(
        &mut self,
        data: &[u8],
        flash: &mut F,
        store: &mut S,
    ) -> Result<Status, Error> {
        match self.feed_inner(data, flash, store) {
            Ok(s) => Ok(s),
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    /// Confirms the update completed.
    pub fn finish(&self) -> Result<(), Error> {
        match self.state {
            State::Finished => Ok(()),
            State::Failed => Err(Error::Corrupt),
            _ => Err(if self.header.is_some() {
                Error::Truncated
            } else {
                Error::Incomplete
            }),
        }
    }

    fn feed_inner<F: Flash, S: ProgressStore>(
        &mut self,
        mut data: &[u8],
        flash: &mut F,
        store: &mut S,
    ) -> Result<Status, Error> {
        loop {
            match self.state {
                State::Failed => return Err(Error::Corrupt),
                State::Finished => return Ok(Status::Done),
                State::Header => {
                    // One byte at a time until the header's length is known.
                    match Header::prefix(self.hdr.get(..self.hdr_len).unwrap_or(&[]))? {
                        Some((Mode::InPlace, _)) => {}
                        Some((m, _)) => {
                            return Err(Error::UnsupportedMode(match m {
                                Mode::Sequential => 0,
                                _ => 1,
                            }));
                        }
                        None => {
                            let Some((&b, rest)) = data.split_first() else {
                                return Ok(Status::NeedMore);
                            };
                            let slot = self.hdr.get_mut(self.hdr_len).ok_or(Error::Corrupt)?;
                            *slot = b;
                            self.hdr_len += 1;
                            data = rest;
                            continue;
                        }
                    }
                    let h = Header::parse(self.hdr.get(..self.hdr_len).unwrap_or(&[]))?;
                    h.check_limits(&self.limits)?;
                    let g = h.geometry.ok_or(Error::BadGeometry)?;
                    if g.block_size != flash.erase_size()
                        || u64::from(h.old_size) + u64::from(g.shift) > u64::from(flash.capacity())
                        || h.new_size > flash.capacity()
                    {
                        return Err(Error::BadGeometry);
                    }
                    self.header = Some(h);
                    if self.start(&h, flash, store)? {
                        self.state = State::Finished;
                        return Ok(Status::Done);
                    }
                    // Hand the header to the engine (it parses it again and sets up segments).
                    let hdr = self.hdr;
                    let mut sink = NullSink;
                    let mut rest = hdr.get(..self.hdr_len).unwrap_or(&[]);
                    while !rest.is_empty() {
                        let (used, _) = self.inner.feed_some(rest, &mut sink)?;
                        if used == 0 {
                            return Err(Error::Corrupt);
                        }
                        rest = rest.get(used..).unwrap_or(&[]);
                    }
                    self.erased_to = self.seg_index_seen * g.segment_size;
                    self.state = State::Writing;
                }
                State::Writing => {
                    let h = self.header.ok_or(Error::Corrupt)?;
                    let g = h.geometry.ok_or(Error::Corrupt)?;
                    let mut both = Both {
                        flash: &mut *flash,
                        erased_to: &mut self.erased_to,
                        block: g.block_size,
                        shift: g.shift,
                        limit: h.new_size.div_ceil(g.block_size) * g.block_size,
                    };
                    let (used, ev) = self.inner.feed_some(data, &mut both)?;
                    data = data.get(used..).unwrap_or(&[]);
                    match ev {
                        Event::SegmentDone => {
                            self.erased_to = self.inner.seg_index * g.segment_size;
                            store.save(&Progress {
                                patch_id: id(&h),
                                phase: Phase::Write {
                                    segment: self.inner.seg_index,
                                    patch_offset: (h.len() as u32) + self.inner.seg_offset,
                                },
                            })?;
                        }
                        Event::Done => {
                            store.save(&Progress {
                                patch_id: id(&h),
                                phase: Phase::Check,
                            })?;
                            check_result(&h, flash)?;
                            store.save(&Progress {
                                patch_id: id(&h),
                                phase: Phase::Done,
                            })?;
                            self.state = State::Finished;
                            return Ok(Status::Done);
                        }
                        Event::None | Event::Header => {
                            if data.is_empty() {
                                return Ok(Status::NeedMore);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Verifies the source (fresh start) and shifts it, or restores a saved position.
    /// Returns true when the update is already complete.
    fn start<F: Flash, S: ProgressStore>(
        &mut self,
        h: &Header,
        flash: &mut F,
        store: &mut S,
    ) -> Result<bool, Error> {
        let g = h.geometry.ok_or(Error::BadGeometry)?;
        let nblocks = h.old_size.div_ceil(g.block_size);
        let mut phase = match store.load()? {
            Some(p) if p.patch_id == id(h) => p.phase,
            // No record, or the finished record of an earlier update: a fresh start.
            None => Phase::Shift {
                moved_from: u32::MAX,
            },
            Some(p) if p.phase == Phase::Done => Phase::Shift {
                moved_from: u32::MAX,
            },
            Some(_) => return Err(Error::BadProgressRecord),
        };
        if phase
            == (Phase::Shift {
                moved_from: u32::MAX,
            })
        {
            verify_digest(flash, 0, h.old_size, &h.old_digest, h.digest_len()).map_err(
                |e| match e {
                    Error::ResultDigestMismatch => Error::SourceDigestMismatch,
                    e => e,
                },
            )?;
            phase = Phase::Shift {
                moved_from: nblocks,
            };
            store.save(&Progress {
                patch_id: id(h),
                phase,
            })?;
        }
        if let Phase::Shift { moved_from } = phase {
            if moved_from > nblocks {
                return Err(Error::BadProgressRecord);
            }
            let mut buf = [0u8; 64];
            let mut i = moved_from;
            while i > 0 && g.shift > 0 {
                i -= 1;
                let src = i * g.block_size;
                let dst = src + g.shift;
                flash.erase(dst)?;
                let len = (h.old_size - src).min(g.block_size);
                let mut off = 0;
                while off < len {
                    let n = (len - off).min(64);
                    let b = buf.get_mut(..n as usize).ok_or(Error::Corrupt)?;
                    flash.read(src + off, b)?;
                    flash.write(dst + off, b)?;
                    off += n;
                }
                store.save(&Progress {
                    patch_id: id(h),
                    phase: Phase::Shift { moved_from: i },
                })?;
            }
            phase = Phase::Write {
                segment: 0,
                patch_offset: h.len() as u32,
            };
            store.save(&Progress {
                patch_id: id(h),
                phase,
            })?;
        }
        match phase {
            Phase::Write {
                segment,
                patch_offset,
            } => {
                let payload_off = patch_offset
                    .checked_sub(h.len() as u32)
                    .ok_or(Error::BadProgressRecord)?;
                if payload_off > h.payload_len
                    || u64::from(segment) * u64::from(g.segment_size)
                        >= u64::from(h.new_size).max(1)
                {
                    return Err(Error::BadProgressRecord);
                }
                self.inner.skip_until = payload_off;
                self.inner.seg_index = segment;
                self.seg_index_seen = segment;
                Ok(false)
            }
            Phase::Check => {
                check_result(h, flash)?;
                store.save(&Progress {
                    patch_id: id(h),
                    phase: Phase::Done,
                })?;
                Ok(true)
            }
            Phase::Done => Ok(true),
            Phase::Shift { .. } => Err(Error::BadProgressRecord),
        }
    }
}

fn id(h: &Header) -> [u8; 8] {
    let mut i = [0u8; 8];
    i.copy_from_slice(&h.new_digest[..8]);
    i
}

fn verify_digest<F: Flash>(
    flash: &mut F,
    start: u32,
    len: u32,
    want: &[u8; 32],
    want_len: usize,
) -> Result<(), Error> {
    let mut sha = Sha256::new();
    let mut buf = [0u8; 64];
    let mut off = 0u32;
    while off < len {
        let n = (len - off).min(64);
        let b = buf.get_mut(..n as usize).ok_or(Error::Corrupt)?;
        flash.read(start + off, b)?;
        sha.update(&*b);
        off += n;
    }
    let d: [u8; 32] = sha.finalize().into();
    if crate::format::digest_matches(want, &d, want_len) {
        Ok(())
    } else {
        Err(Error::ResultDigestMismatch)
    }
}

fn check_result<F: Flash>(h: &Header, flash: &mut F) -> Result<(), Error> {
    verify_digest(flash, 0, h.new_size, &h.new_digest, h.digest_len())
}

/// Storage that refuses everything (the header stage touches none).
struct NullSink;

impl Images for NullSink {
    fn read_old(&mut self, _: u32, _: &mut [u8]) -> Result<(), Error> {
        Err(Error::Corrupt)
    }
    fn read_new(&mut self, _: u32, _: &mut [u8]) -> Result<(), Error> {
        Err(Error::Corrupt)
    }
    fn write_new(&mut self, _: u32, _: &[u8]) -> Result<(), Error> {
        Err(Error::Corrupt)
    }
}

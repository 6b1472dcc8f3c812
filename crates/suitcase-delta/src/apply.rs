//! The streaming applier: a state machine fed patch bytes in chunks of any size.
#![allow(
    clippy::cast_possible_truncation,
    reason = "positions and lengths are below the image sizes, which the header bounds to u32; byte values are masked to 8 bits"
)]

use sha2::{Digest, Sha256};

use crate::format::{Header, Limits, MAX_HEADER_LEN, Mode};
use crate::model::{
    Carry, Ctx, FLAG_THUMB, J_ADJ, J_NEW, J_OLD, Miss, Model, Source, param_signed, predict,
};

use crate::Error;
use crate::filter::byte_at;
use crate::rc::{DecIo, Io, RcDec};

/// Reads the installed (old) image by random access, e.g. memory-mapped or SPI flash.
pub trait OldImage {
    /// Fills `buf` with the bytes at `offset`. Map storage failures to [`Error::Io`].
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error>;
}

/// Receives the new image; must be able to read back what was written.
pub trait NewImage {
    /// Writes `data` at `offset`. Writes come in increasing, contiguous order.
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error>;
    /// Reads back bytes already written.
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error>;
}

impl OldImage for &[u8] {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        let start = offset as usize;
        let src = self.get(start..start + buf.len()).ok_or(Error::Io)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A new image in a caller-provided buffer (the slot); writes past its end fail.
#[derive(Debug)]
pub struct SliceImage<'a> {
    /// The slot.
    pub buf: &'a mut [u8],
}

impl NewImage for SliceImage<'_> {
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error> {
        let start = offset as usize;
        let dst = self
            .buf
            .get_mut(start..start + data.len())
            .ok_or(Error::Io)?;
        dst.copy_from_slice(data);
        Ok(())
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        let start = offset as usize;
        let src = self.buf.get(start..start + buf.len()).ok_or(Error::Io)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(feature = "std")]
impl NewImage for Vec<u8> {
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error> {
        if offset as usize != self.len() {
            return Err(Error::Io);
        }
        self.extend_from_slice(data);
        Ok(())
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        let start = offset as usize;
        let src = self.get(start..start + buf.len()).ok_or(Error::Io)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Old and new image access in one object (the in-place applier reads and writes one flash).
pub(crate) trait Images {
    fn read_old(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error>;
    fn read_new(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error>;
    fn write_new(&mut self, offset: u32, data: &[u8]) -> Result<(), Error>;
}

struct Pair<'a, O, N> {
    old: &'a mut O,
    new: &'a mut N,
}

impl<O: OldImage, N: NewImage> Images for Pair<'_, O, N> {
    fn read_old(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        self.old.read(offset, buf)
    }
    fn read_new(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        self.new.read(offset, buf)
    }
    fn write_new(&mut self, offset: u32, data: &[u8]) -> Result<(), Error> {
        self.new.write(offset, data)
    }
}
/// Input buffer: one decoding step never needs more than `STEP_MAX` bytes.
const IN_BUF: usize = 256;
const STEP_MAX: usize = 96;
/// Recent output kept in RAM (reads back at distance <= RING never touch the slot).
const RING: usize = 1024;
/// Output is written to the slot in chunks of this size.
const FLUSH: usize = 256;
/// Bytes per read-cache line (two lines: a stride prediction reads two places at once).
const LINE: usize = 32;
/// Raw bytes decoded per step.
const RAW_STEP: u32 = 32;
/// Most operations in a row that produce no byte (the encoder writes at most two).
const MAX_IDLE: u8 = 4;

/// Bytes of RAM the applier's state takes (the larger of [`Applier`] and
/// [`crate::InPlaceApplier`], model, buffers and SHA-256 state included): the figure every
/// patch declares as its RAM bound. Stack frames (a few hundred bytes) come on top.
#[allow(
    clippy::cast_possible_truncation,
    reason = "checked by the assertion below"
)]
pub const REQUIRED_RAM: u32 = {
    let a = size_of::<Applier>();
    let b = size_of::<crate::InPlaceApplier>();
    (if a > b { a } else { b }) as u32
};
const _: () = assert!(REQUIRED_RAM <= 16 * 1024);

/// What `feed` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// More patch bytes are needed.
    NeedMore,
    /// The image is complete and its SHA-256 verified (sequential and full modes); call
    /// [`Applier::finish`] to confirm.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    None,
    Header,
    SegmentDone,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    SegLen,
    Body,
    Done,
    Failed,
}

/// One read-cache line.
#[derive(Debug, Clone, Copy)]
struct Line {
    /// Virtual index of `data[0]` (new-image lines have bit 40 set).
    key: u64,
    len: u8,
    data: [u8; LINE],
}

impl Line {
    const EMPTY: Self = Self {
        key: 0,
        len: 0,
        data: [0; LINE],
    };
}

/// The decoder's view of `old ++ new`: the most recent output in a ring, older bytes of the
/// new image and the old image through two cache lines.
#[derive(Debug, Clone)]
struct Window {
    ring: [u8; RING],
    lines: [Line; 2],
    victim: usize,
    old_size: u32,
    /// Old bytes below this offset may not be read (overwritten in place).
    min_old: u32,
    full: bool,
    /// Thumb branch filter: the model sees filtered images, the slot holds real ones.
    thumb: bool,
    new_size: u32,
    /// First new position of the segment (the ring holds nothing older).
    seg_start: u32,
    /// Next new position to produce.
    pos: u32,
    /// New bytes below this position are in the slot.
    flushed: u32,
}

/// A [`Window`] with the storage it reads from.
struct View<'a, I> {
    w: &'a mut Window,
    img: &'a mut I,
}

impl<I: Images> View<'_, I> {
    fn cached(&mut self, key: u64, len: usize) -> Result<u8, Error> {
        if len == 0 {
            return Err(Error::Corrupt);
        }
        for l in &self.w.lines {
            if key >= l.key && key < l.key + u64::from(l.len) {
                return l
                    .data
                    .get((key - l.key) as usize)
                    .copied()
                    .ok_or(Error::Corrupt);
            }
        }
        let i = self.w.victim & 1;
        self.w.victim = i ^ 1;
        let line = self.w.lines.get_mut(i).ok_or(Error::Corrupt)?;
        let len = len.min(LINE);
        let buf = line.data.get_mut(..len).ok_or(Error::Corrupt)?;
        if key >> 40 == 1 {
            self.img.read_new((key & 0xFF_FFFF_FFFF) as u32, buf)?;
        } else {
            self.img.read_old(key as u32, buf)?;
        }
        line.key = key;
        line.len = len as u8;
        line.data.first().copied().ok_or(Error::Corrupt)
    }
}

impl<I: Images> Source for View<'_, I> {
    fn old_size(&self) -> u64 {
        u64::from(self.w.old_size)
    }

    fn virt(&mut self, v: u64) -> Result<u8, Error> {
        let old = u64::from(self.w.old_size);
        if v >= old {
            let n = v - old;
            let pos = u64::from(self.w.pos);
            if n >= pos {
                return Err(Error::Corrupt);
            }
            if n >= u64::from(self.w.seg_start) && pos - n <= RING as u64 {
                return self
                    .w
                    .ring
                    .get(n as usize % RING)
                    .copied()
                    .ok_or(Error::Corrupt);
            }
            // Older than the ring: already in the slot (with the few bytes after it that
            // the filter looks at).
            let flushed = self.w.flushed;
            if self.w.thumb {
                let size = self.w.new_size;
                return byte_at(n as u32, size, true, |j| {
                    let len = flushed.saturating_sub(j) as usize;
                    self.cached(u64::from(j) | (1 << 40), len)
                });
            }
            let len = (u64::from(flushed).saturating_sub(n)) as usize;
            return self.cached(n | (1 << 40), len);
        }
        if self.w.full || v < u64::from(self.w.min_old) {
            return Ok(0);
        }
        if self.w.thumb {
            let size = self.w.old_size;
            return byte_at(v as u32, size, true, |j| {
                self.cached(u64::from(j), size.saturating_sub(j) as usize)
            });
        }
        self.cached(v, (old - v).min(LINE as u64) as usize)
    }
}

/// The applier for sequential and full-image patches (and the engine of in-place mode).
///
/// ```no_run
/// # use suitcase_delta::{Applier, Limits, SliceImage, Status};
/// # let (patch, old, mut slot) = (vec![0u8; 0], vec![0u8; 0], vec![0u8; 0]);
/// let mut applier = Applier::new(Limits { max_ram: 16 * 1024, slot_size: slot.len() as u32 });
/// let mut new = SliceImage { buf: &mut slot };
/// for chunk in patch.chunks(200) {
///     applier.feed(chunk, &mut old.as_slice(), &mut new)?;
/// }
/// applier.finish()?;
/// # Ok::<(), suitcase_delta::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Applier {
    limits: Limits,
    stage: Stage,
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    header: Option<Header>,
    /// Payload bytes seen (after the header).
    payload_seen: u32,
    /// Payload offset of the current segment's length prefix (in-place) or 0.
    pub(crate) seg_offset: u32,
    /// Payload bytes before this offset are skipped (resuming in place).
    pub(crate) skip_until: u32,
    pub(crate) seg_index: u32,
    seg_end: u32,
    seg_len: u32,
    seg_fed: u32,
    seglen_val: u32,
    seglen_bytes: u8,
    pub(crate) verify_source: bool,
    pub(crate) hash_stream: bool,
    rc: RcDec,
    rc_started: bool,
    expect_run: bool,
    idle: u8,
    pending_raw: u32,
    model: Model,
    ctx: Ctx,
    carry: Carry,
    inbuf: [u8; IN_BUF],
    in_pos: usize,
    in_end: usize,
    win: Window,
    sha: Sha256,
}

impl Applier {
    /// A new applier that will refuse patches exceeding `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            stage: Stage::Header,
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            header: None,
            payload_seen: 0,
            seg_offset: 0,
            skip_until: 0,
            seg_index: 0,
            seg_end: 0,
            seg_len: 0,
            seg_fed: 0,
            seglen_val: 0,
            seglen_bytes: 0,
            verify_source: true,
            hash_stream: true,
            rc: RcDec::new(),
            rc_started: false,
            expect_run: true,
            idle: 0,
            pending_raw: 0,
            model: Model::new(0),
            ctx: Ctx::new(0),
            carry: Carry::NONE,
            inbuf: [0; IN_BUF],
            in_pos: 0,
            in_end: 0,
            win: Window {
                ring: [0; RING],
                lines: [Line::EMPTY; 2],
                victim: 0,
                old_size: 0,
                min_old: 0,
                full: false,
                thumb: false,
                new_size: 0,
                seg_start: 0,
                pos: 0,
                flushed: 0,
            },
            sha: Sha256::new(),
        }
    }

    /// The parsed header, once enough bytes were fed.
    pub const fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Bytes of the new image produced so far.
    pub const fn position(&self) -> u32 {
        self.win.pos
    }

    /// Feeds the next chunk of the patch (any size, including empty).
    ///
    /// Reads the old image and writes the new one through the traits. On any error the
    /// applier stays failed. Never writes at or past the header's `new_size`.
    pub fn feed<O: OldImage, N: NewImage>(
        &mut self,
        mut data: &[u8],
        old: &mut O,
        new: &mut N,
    ) -> Result<Status, Error> {
        let mut img = Pair { old, new };
        loop {
            let (used, ev) = self.feed_some(data, &mut img)?;
            data = data.get(used..).unwrap_or(&[]);
            if ev == Event::Done {
                if !data.is_empty() {
                    self.stage = Stage::Failed;
                    return Err(Error::TrailingData);
                }
                return Ok(Status::Done);
            }
            if data.is_empty() && ev == Event::None {
                return Ok(Status::NeedMore);
            }
        }
    }

    /// Confirms the patch was completely applied and verified.
    pub fn finish(&self) -> Result<(), Error> {
        match self.stage {
            Stage::Done => Ok(()),
            Stage::Failed => Err(Error::Corrupt),
            _ => Err(if self.header.is_some() {
                Error::Truncated
            } else {
                Error::Incomplete
            }),
        }
    }

    fn fail<T>(&mut self, e: Error) -> Result<T, Error> {
        self.stage = Stage::Failed;
        Err(e)
    }

    /// Processes a prefix of `data`; returns how much was used and what happened.
    pub(crate) fn feed_some<I: Images>(
        &mut self,
        data: &[u8],
        img: &mut I,
    ) -> Result<(usize, Event), Error> {
        match self.step(data, img) {
            Ok(r) => Ok(r),
            Err(e) => self.fail(e),
        }
    }

    fn step<I: Images>(&mut self, data: &[u8], img: &mut I) -> Result<(usize, Event), Error> {
        match self.stage {
            Stage::Failed => Err(Error::Corrupt),
            Stage::Done => {
                if data.is_empty() {
                    Ok((0, Event::Done))
                } else {
                    Err(Error::TrailingData)
                }
            }
            Stage::Header => self.step_header(data, img),
            Stage::SegLen => self.step_seglen(data),
            Stage::Body => self.step_body(data, img),
        }
    }

    fn step_header<I: Images>(
        &mut self,
        data: &[u8],
        img: &mut I,
    ) -> Result<(usize, Event), Error> {
        // The header's length is known only once its sizes are: take one byte at a time.
        let mut used = 0;
        while Header::prefix(self.hdr.get(..self.hdr_len).unwrap_or(&[]))?.is_none() {
            let Some(&b) = data.get(used) else {
                return Ok((used, Event::None));
            };
            let slot = self.hdr.get_mut(self.hdr_len).ok_or(Error::Corrupt)?;
            *slot = b;
            self.hdr_len += 1;
            used += 1;
        }
        let h = Header::parse(self.hdr.get(..self.hdr_len).unwrap_or(&[]))?;
        h.check_limits(&self.limits)?;
        self.header = Some(h);
        if self.verify_source && h.mode != Mode::Full {
            self.check_source(&h, img)?;
        }
        self.start_payload(&h)?;
        Ok((used, Event::Header))
    }

    fn check_source<I: Images>(&mut self, h: &Header, img: &mut I) -> Result<(), Error> {
        let mut sha = Sha256::new();
        let mut off = 0u32;
        let buf = &mut self.win.ring;
        while off < h.old_size {
            let n = (h.old_size - off).min(RING as u32) as usize;
            let b = buf.get_mut(..n).ok_or(Error::Corrupt)?;
            img.read_old(off, b)
                .map_err(|_| Error::SourceSizeMismatch)?;
            sha.update(&*b);
            off += n as u32;
        }
        let digest: [u8; 32] = sha.finalize().into();
        if !h.source_matches(&digest) {
            return Err(Error::SourceDigestMismatch);
        }
        Ok(())
    }

    fn start_payload(&mut self, h: &Header) -> Result<(), Error> {
        if h.mode == Mode::InPlace {
            self.stage = Stage::SegLen;
            self.seglen_val = 0;
            self.seglen_bytes = 0;
            if self.payload_seen >= h.payload_len && h.new_size == 0 {
                self.stage = Stage::Done;
            }
            Ok(())
        } else {
            self.begin_segment(0, h.new_size, h.payload_len)
        }
    }

    fn begin_segment(&mut self, start: u32, end: u32, len: u32) -> Result<(), Error> {
        let h = self.header.ok_or(Error::Corrupt)?;
        let remaining = h
            .payload_len
            .checked_sub(self.payload_seen)
            .ok_or(Error::Corrupt)?;
        if len > remaining {
            return Err(Error::Truncated);
        }
        self.seg_end = end;
        self.seg_len = len;
        self.seg_fed = 0;
        self.in_pos = 0;
        self.in_end = 0;
        self.rc_started = false;
        self.expect_run = true;
        self.idle = 0;
        self.pending_raw = 0;
        self.model = Model::new(h.flags);
        let d = if h.mode == Mode::Full { 0 } else { h.old_size };
        self.ctx = Ctx::new(d);
        self.carry = Carry::NONE;
        let w = &mut self.win;
        w.seg_start = start;
        w.pos = start;
        w.flushed = start;
        w.lines = [Line::EMPTY; 2];
        w.old_size = h.old_size;
        w.full = h.mode == Mode::Full;
        w.thumb = h.flags & FLAG_THUMB != 0;
        w.new_size = h.new_size;
        w.min_old = 0;
        if let Some(g) = h.geometry {
            let end_block =
                u64::from(end).div_ceil(u64::from(g.block_size)) * u64::from(g.block_size);
            w.min_old =
                u32::try_from(end_block.saturating_sub(u64::from(g.shift))).unwrap_or(u32::MAX);
        }
        self.stage = Stage::Body;
        Ok(())
    }

    fn step_seglen(&mut self, data: &[u8]) -> Result<(usize, Event), Error> {
        let h = self.header.ok_or(Error::Corrupt)?;
        let g = h.geometry.ok_or(Error::Corrupt)?;
        let mut used = 0;
        // Skip whole segments already applied (resuming).
        if self.payload_seen < self.skip_until {
            let n = ((self.skip_until - self.payload_seen) as usize).min(data.len());
            self.payload_seen += n as u32;
            return Ok((n, Event::None));
        }
        // The segment's stream length: LEB128, at most five bytes.
        loop {
            let Some(&b) = data.get(used) else {
                return Ok((used, Event::None));
            };
            if self.payload_seen >= h.payload_len {
                return Err(Error::TrailingData);
            }
            if self.seglen_bytes >= 5 || (self.seglen_bytes == 4 && b > 0x0F) {
                return Err(Error::Corrupt);
            }
            self.seglen_val |= u32::from(b & 0x7F) << (7 * u32::from(self.seglen_bytes));
            self.seglen_bytes += 1;
            self.payload_seen += 1;
            used += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let len = self.seglen_val;
        self.seglen_val = 0;
        self.seglen_bytes = 0;
        let start = self
            .seg_index
            .checked_mul(g.segment_size)
            .ok_or(Error::Corrupt)?;
        if start >= h.new_size {
            return Err(Error::TrailingData);
        }
        let end = start.saturating_add(g.segment_size).min(h.new_size);
        self.begin_segment(start, end, len)?;
        Ok((used, Event::None))
    }

    fn step_body<I: Images>(&mut self, data: &[u8], img: &mut I) -> Result<(usize, Event), Error> {
        // Take input.
        if self.in_pos > IN_BUF / 2 && self.in_pos <= self.in_end {
            self.inbuf.copy_within(self.in_pos..self.in_end, 0);
            self.in_end -= self.in_pos;
            self.in_pos = 0;
        }
        let room = IN_BUF.saturating_sub(self.in_end);
        let seg_left = (self.seg_len - self.seg_fed) as usize;
        let take = room.min(seg_left).min(data.len());
        let dst = self
            .inbuf
            .get_mut(self.in_end..self.in_end + take)
            .ok_or(Error::Corrupt)?;
        dst.copy_from_slice(data.get(..take).ok_or(Error::Corrupt)?);
        self.in_end += take;
        self.seg_fed += take as u32;
        self.payload_seen += take as u32;
        let all_in = self.seg_fed == self.seg_len;

        if !self.rc_started {
            let avail = self.in_end.saturating_sub(self.in_pos);
            if avail < RcDec::INIT_BYTES && !all_in {
                return Ok((take, Event::None));
            }
            // A stream shorter than four bytes is followed by zeros.
            let mut init = [0u8; RcDec::INIT_BYTES];
            for (i, b) in init.iter_mut().enumerate() {
                if self.in_pos + i < self.in_end {
                    *b = self.inbuf.get(self.in_pos + i).copied().unwrap_or(0);
                }
            }
            self.rc.init(init)?;
            self.in_pos += RcDec::INIT_BYTES;
            self.rc_started = true;
        }
        while self.win.pos < self.seg_end
            && (all_in || self.in_end.saturating_sub(self.in_pos) >= STEP_MAX)
        {
            self.decode_op(img, all_in)?;
        }
        if self.win.pos < self.seg_end {
            return Ok((take, Event::None));
        }
        // Segment complete: its stream must be fully consumed.
        if !all_in || self.in_pos < self.in_end || self.pending_raw != 0 {
            return Err(Error::Corrupt);
        }
        self.flush(img, true)?;
        let h = self.header.ok_or(Error::Corrupt)?;
        if h.mode == Mode::InPlace {
            self.seg_index += 1;
            self.seg_offset = self.payload_seen;
            self.stage = Stage::SegLen;
            if self.seg_end >= h.new_size {
                if self.payload_seen != h.payload_len {
                    return Err(Error::TrailingData);
                }
                self.stage = Stage::Done;
                return Ok((take, Event::Done));
            }
            return Ok((take, Event::SegmentDone));
        }
        if self.payload_seen != h.payload_len {
            return Err(Error::TrailingData);
        }
        if self.hash_stream {
            let digest: [u8; 32] = self.sha.clone().finalize().into();
            if !h.result_matches(&digest) {
                return Err(Error::ResultDigestMismatch);
            }
        }
        self.stage = Stage::Done;
        Ok((take, Event::Done))
    }

    /// The byte predicted for the current position.
    fn predict<I: Images>(&mut self, img: &mut I) -> Result<u8, Error> {
        let pos = self.win.pos;
        let mut view = View {
            w: &mut self.win,
            img,
        };
        predict(&mut view, &self.ctx, pos, &mut self.carry)
    }

    fn decode_op<I: Images>(&mut self, img: &mut I, pad: bool) -> Result<(), Error> {
        let h = self.header.ok_or(Error::Corrupt)?;
        let input = self.inbuf.get(..self.in_end).ok_or(Error::Corrupt)?;
        let mut io = DecIo {
            rc: &mut self.rc,
            input,
            pos: self.in_pos,
            pad,
        };
        if self.pending_raw > 0 {
            let k = self.pending_raw.min(RAW_STEP);
            for _ in 0..k {
                let b = io.direct(0, 8)?;
                self.in_pos = io.pos;
                self.emit((b & 0xFF) as u8, img)?;
                let input = self.inbuf.get(..self.in_end).ok_or(Error::Corrupt)?;
                io = DecIo {
                    rc: &mut self.rc,
                    input,
                    pos: self.in_pos,
                    pad,
                };
            }
            self.pending_raw -= k;
            if self.pending_raw == 0 {
                self.expect_run = true;
            }
            return Ok(());
        }
        if self.expect_run {
            let n = self.model.run(&mut io, &mut self.ctx, self.win.pos, 0)?;
            self.in_pos = io.pos;
            if n > self.seg_end - self.win.pos {
                return Err(Error::Corrupt);
            }
            self.expect_run = false;
            if n > 0 {
                self.idle = 0;
            }
            for _ in 0..n {
                let b = self.predict(img)?;
                self.emit(b, img)?;
            }
            return Ok(());
        }
        let pred = self.predict(img)?;
        // `io` borrowed self.rc; re-create after `predict` (which needs &mut self).
        let input = self.inbuf.get(..self.in_end).ok_or(Error::Corrupt)?;
        let mut io = DecIo {
            rc: &mut self.rc,
            input,
            pos: self.in_pos,
            pad,
        };
        let pos = self.win.pos;
        let op = self
            .model
            .miss(&mut io, &self.ctx, pos, pred, Miss::Diff(1))?;
        self.in_pos = io.pos;
        self.expect_run = true;
        let mut d = self.ctx.d;
        match op {
            Miss::Diff(x) => {
                self.idle = 0;
                self.emit(pred.wrapping_add(x), img)?;
            }
            Miss::Plain(b) => {
                self.idle = 0;
                self.emit(b, img)?;
            }
            Miss::Raw(n) => {
                if n > self.seg_end - pos {
                    return Err(Error::Corrupt);
                }
                self.idle = 0;
                self.pending_raw = n;
                self.expect_run = false;
            }
            Miss::Jump(kind, param) => {
                self.idle += 1;
                d = resolve_jump(&self.ctx, h.old_size, pos, kind, param)?;
            }
            Miss::Stride(..) => self.idle += 1,
        }
        // (A literal already emitted its byte, which set `prev`; the state change does not
        // touch it.)
        self.ctx.after_miss(pos, op, d);
        if self.idle > MAX_IDLE {
            return Err(Error::Corrupt);
        }
        Ok(())
    }

    fn emit<I: Images>(&mut self, b: u8, img: &mut I) -> Result<(), Error> {
        let w = &mut self.win;
        if w.pos >= self.seg_end {
            return Err(Error::Corrupt);
        }
        if let Some(slot) = w.ring.get_mut(w.pos as usize % RING) {
            *slot = b;
        }
        w.pos += 1;
        self.ctx.prev = b;
        if (w.pos - w.flushed) as usize >= FLUSH {
            self.flush(img, false)?;
        }
        Ok(())
    }

    /// Writes the output produced so far to the slot (with the filter, all but the last three
    /// bytes unless `all`: a branch may still be incomplete).
    fn flush<I: Images>(&mut self, img: &mut I, all: bool) -> Result<(), Error> {
        let w = &mut self.win;
        if !w.thumb {
            while w.flushed < w.pos {
                let start = w.flushed as usize % RING;
                let n = ((w.pos - w.flushed) as usize).min(RING - start);
                let chunk = w.ring.get(start..start + n).ok_or(Error::Corrupt)?;
                img.write_new(w.flushed, chunk)?;
                if self.hash_stream {
                    self.sha.update(chunk);
                }
                w.flushed += n as u32;
            }
            return Ok(());
        }
        let to = if all { w.pos } else { w.pos.saturating_sub(3) };
        let mut buf = [0u8; 64];
        while w.flushed < to {
            let n = ((to - w.flushed) as usize).min(buf.len());
            let chunk = buf.get_mut(..n).ok_or(Error::Corrupt)?;
            for (i, b) in chunk.iter_mut().enumerate() {
                let ring = &w.ring;
                *b = byte_at(w.flushed + i as u32, w.new_size, false, |j| {
                    ring.get(j as usize % RING).copied().ok_or(Error::Corrupt)
                })?;
            }
            img.write_new(w.flushed, chunk)?;
            if self.hash_stream {
                self.sha.update(&*chunk);
            }
            w.flushed += n as u32;
        }
        Ok(())
    }
}

/// Turns a decoded jump into an alignment.
pub(crate) fn resolve_jump(
    ctx: &Ctx,
    old_size: u32,
    pos: u32,
    kind: u32,
    param: u32,
) -> Result<u32, Error> {
    match kind {
        0..=3 => ctx.reps.get(kind as usize).copied().ok_or(Error::Corrupt),
        J_ADJ => {
            let d = i64::from(ctx.d) + param_signed(param);
            u32::try_from(d).map_err(|_| Error::Corrupt)
        }
        J_OLD => {
            // param: signed offset of the old position relative to `pos`.
            let old_pos = i64::from(pos) + param_signed(param);
            let d = i64::from(old_size) + i64::from(pos) - old_pos;
            if old_pos < 0 || old_pos >= i64::from(old_size) {
                return Err(Error::Corrupt);
            }
            u32::try_from(d).map_err(|_| Error::Corrupt)
        }
        J_NEW => param.checked_add(1).ok_or(Error::Corrupt),
        _ => Err(Error::Corrupt),
    }
}

//! The streaming applier: a state machine fed patch bytes in chunks of any size.
#![allow(
    clippy::cast_possible_truncation,
    reason = "positions and lengths are below the image sizes, which the header bounds to u32; byte values are masked to 8 bits"
)]

use sha2::{Digest, Sha256};

use crate::format::{Header, INPLACE_HEADER_LEN, Limits, Mode};
use crate::model::{
    Ctx, J_ADJ, J_NEW, J_OLD, Miss, Model, ST_DIFF, ST_JUMP, ST_PLAIN, param_signed,
};

use crate::Error;
use crate::rc::{DecIo, RcDec};

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
const CACHE: usize = 64;

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
    hdr: [u8; INPLACE_HEADER_LEN],
    hdr_len: usize,
    header: Option<Header>,
    /// Payload bytes seen (after the header).
    payload_seen: u32,
    /// Payload offset of the current segment's length prefix (in-place) or 0.
    pub(crate) seg_offset: u32,
    /// Payload bytes before this offset are skipped (resuming in place).
    pub(crate) skip_until: u32,
    pub(crate) seg_index: u32,
    seg_start: u32,
    seg_end: u32,
    seg_len: u32,
    seg_fed: u32,
    seglen_buf: [u8; 4],
    seglen_have: usize,
    pub(crate) min_old: u32,
    pub(crate) verify_source: bool,
    pub(crate) hash_stream: bool,
    rc: RcDec,
    rc_started: bool,
    expect_run: bool,
    model: Model,
    ctx: Ctx,
    pending_run: u32,
    pos: u32,
    inbuf: [u8; IN_BUF],
    in_pos: usize,
    in_end: usize,
    ring: [u8; RING],
    flushed: u32,
    cache: [u8; CACHE],
    cache_base: u64,
    cache_len: usize,
    sha: Sha256,
}

impl Applier {
    /// A new applier that will refuse patches exceeding `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            stage: Stage::Header,
            hdr: [0; INPLACE_HEADER_LEN],
            hdr_len: 0,
            header: None,
            payload_seen: 0,
            seg_offset: 0,
            skip_until: 0,
            seg_index: 0,
            seg_start: 0,
            seg_end: 0,
            seg_len: 0,
            seg_fed: 0,
            seglen_buf: [0; 4],
            seglen_have: 0,
            min_old: 0,
            verify_source: true,
            hash_stream: true,
            rc: RcDec::new(),
            rc_started: false,
            expect_run: true,
            model: Model::new(0),
            ctx: Ctx::new(0),
            pending_run: 0,
            pos: 0,
            inbuf: [0; IN_BUF],
            in_pos: 0,
            in_end: 0,
            ring: [0; RING],
            flushed: 0,
            cache: [0; CACHE],
            cache_base: 0,
            cache_len: 0,
            sha: Sha256::new(),
        }
    }

    /// The parsed header, once enough bytes were fed.
    pub const fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Bytes of the new image produced so far.
    pub const fn position(&self) -> u32 {
        self.pos
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
        let want = match Header::prefix(self.hdr.get(..self.hdr_len).unwrap_or(&[]))? {
            Some((_, len)) => len,
            None => 8,
        };
        let take = want.saturating_sub(self.hdr_len).min(data.len());
        let dst = self
            .hdr
            .get_mut(self.hdr_len..self.hdr_len + take)
            .ok_or(Error::Corrupt)?;
        dst.copy_from_slice(data.get(..take).ok_or(Error::Corrupt)?);
        self.hdr_len += take;
        if self.hdr_len < want {
            return Ok((take, Event::None));
        }
        if Header::prefix(self.hdr.get(..self.hdr_len).unwrap_or(&[]))?.map(|(_, l)| l)
            != Some(self.hdr_len)
        {
            // Prefix just completed: the full length is now known; read on.
            return Ok((take, Event::None));
        }
        let h = Header::parse(self.hdr.get(..self.hdr_len).unwrap_or(&[]))?;
        h.check_limits(&self.limits)?;
        self.header = Some(h);
        if self.verify_source && h.mode != Mode::Full {
            self.check_source(&h, img)?;
        }
        self.start_payload(&h)?;
        Ok((take, Event::Header))
    }

    fn check_source<I: Images>(&mut self, h: &Header, img: &mut I) -> Result<(), Error> {
        let mut sha = Sha256::new();
        let mut off = 0u32;
        while off < h.old_size {
            let n = (h.old_size - off).min(CACHE as u32) as usize;
            let buf = self.cache.get_mut(..n).ok_or(Error::Corrupt)?;
            img.read_old(off, buf)
                .map_err(|_| Error::SourceSizeMismatch)?;
            sha.update(&*buf);
            off += n as u32;
        }
        self.cache_len = 0;
        let digest: [u8; 32] = sha.finalize().into();
        if digest != h.old_digest {
            return Err(Error::SourceDigestMismatch);
        }
        Ok(())
    }

    fn start_payload(&mut self, h: &Header) -> Result<(), Error> {
        if h.mode == Mode::InPlace {
            self.stage = Stage::SegLen;
            self.seglen_have = 0;
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
        self.seg_start = start;
        self.seg_end = end;
        self.seg_len = len;
        self.seg_fed = 0;
        self.pos = start;
        self.flushed = start;
        self.in_pos = 0;
        self.in_end = 0;
        self.rc_started = false;
        self.expect_run = true;
        self.pending_run = 0;
        self.cache_len = 0;
        self.model = Model::new(h.flags);
        let d = if h.mode == Mode::Full { 0 } else { h.old_size };
        self.ctx = Ctx::new(d);
        if let Some(g) = h.geometry {
            let end_block =
                u64::from(end).div_ceil(u64::from(g.block_size)) * u64::from(g.block_size);
            self.min_old =
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
        while self.seglen_have < 4 {
            let Some(&b) = data.get(used) else {
                return Ok((used, Event::None));
            };
            if self.payload_seen >= h.payload_len {
                return Err(Error::TrailingData);
            }
            self.seglen_buf[self.seglen_have & 3] = b;
            self.seglen_have += 1;
            self.payload_seen += 1;
            used += 1;
        }
        let len = u32::from_le_bytes(self.seglen_buf);
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
        if self.in_pos > IN_BUF / 2 {
            self.inbuf.copy_within(self.in_pos..self.in_end, 0);
            self.in_end -= self.in_pos;
            self.in_pos = 0;
        }
        let room = IN_BUF - self.in_end;
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
            if self.in_end - self.in_pos < RcDec::INIT_BYTES {
                if all_in {
                    return Err(Error::Truncated);
                }
                return Ok((take, Event::None));
            }
            let init = self
                .inbuf
                .get(self.in_pos..self.in_pos + RcDec::INIT_BYTES)
                .ok_or(Error::Corrupt)?;
            self.rc.init(init)?;
            self.in_pos += RcDec::INIT_BYTES;
            self.rc_started = true;
        }
        while self.pos < self.seg_end && (all_in || self.in_end - self.in_pos >= STEP_MAX) {
            self.decode_op(img)?;
        }
        if self.pos < self.seg_end {
            if all_in {
                return Err(Error::Truncated);
            }
            return Ok((take, Event::None));
        }
        // Segment complete: its stream must be fully consumed.
        if !all_in {
            return Err(Error::Corrupt);
        }
        if self.in_pos != self.in_end {
            return Err(Error::Corrupt);
        }
        self.flush(img)?;
        let h = self.header.ok_or(Error::Corrupt)?;
        if h.mode == Mode::InPlace {
            self.seg_index += 1;
            self.seg_offset = self.payload_seen;
            self.stage = Stage::SegLen;
            self.seglen_have = 0;
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
            if digest != h.new_digest {
                return Err(Error::ResultDigestMismatch);
            }
        }
        self.stage = Stage::Done;
        Ok((take, Event::Done))
    }

    fn decode_op<I: Images>(&mut self, img: &mut I) -> Result<(), Error> {
        let h = self.header.ok_or(Error::Corrupt)?;
        let input = self.inbuf.get(..self.in_end).ok_or(Error::Corrupt)?;
        let mut io = DecIo {
            rc: &mut self.rc,
            input,
            pos: self.in_pos,
        };
        if self.expect_run {
            let n = self.model.run(&mut io, &mut self.ctx, 0)?;
            self.in_pos = io.pos;
            if n > self.seg_end - self.pos {
                return Err(Error::Corrupt);
            }
            self.expect_run = false;
            for _ in 0..n {
                let b = self.src_byte(&h, img)?;
                self.emit(b, img)?;
            }
            return Ok(());
        }
        let pred = self.src_byte(&h, img)?;
        // `io` borrowed self.rc; re-create after src_byte (which needs &mut self).
        let input = self.inbuf.get(..self.in_end).ok_or(Error::Corrupt)?;
        let mut io = DecIo {
            rc: &mut self.rc,
            input,
            pos: self.in_pos,
        };
        let op = self
            .model
            .miss(&mut io, &self.ctx, self.pos, pred, Miss::Diff(1))?;
        self.in_pos = io.pos;
        self.expect_run = true;
        match op {
            Miss::Diff(x) => {
                self.ctx.st = ST_DIFF;
                if let Some(l) = self.ctx.last_diff.get_mut((self.pos & 7) as usize) {
                    *l = x;
                }
                self.emit(pred.wrapping_add(x), img)?;
            }
            Miss::Plain(b) => {
                self.ctx.st = ST_PLAIN;
                self.emit(b, img)?;
            }
            Miss::Jump(kind, param) => {
                let d = resolve_jump(&self.ctx, &h, self.pos, kind, param)?;
                jump_to(&mut self.ctx, d);
                self.ctx.st = ST_JUMP;
            }
        }
        Ok(())
    }

    fn src_byte<I: Images>(&mut self, h: &Header, img: &mut I) -> Result<u8, Error> {
        let d = u64::from(self.ctx.d);
        if d == 0 {
            return Ok(0);
        }
        let old_size = u64::from(h.old_size);
        // Alignments outside what may be read (before the image, destroyed in place, or an
        // old image in full mode) predict zero: every alignment is defined, none is trusted.
        let Some(v) = (old_size + u64::from(self.pos)).checked_sub(d) else {
            return Ok(0);
        };
        if v >= old_size {
            let n = v - old_size; // < pos
            let dist = u64::from(self.pos) - n;
            if dist <= RING as u64 {
                return self
                    .ring
                    .get(n as usize % RING)
                    .copied()
                    .ok_or(Error::Corrupt);
            }
            // Older than the ring: already flushed to the slot.
            let key = v | (1 << 40);
            if key >= self.cache_base && key < self.cache_base + self.cache_len as u64 {
                return self
                    .cache
                    .get((key - self.cache_base) as usize)
                    .copied()
                    .ok_or(Error::Corrupt);
            }
            let len = (u64::from(self.flushed) - n).min(CACHE as u64) as usize;
            let buf = self.cache.get_mut(..len).ok_or(Error::Corrupt)?;
            img.read_new(n as u32, buf)?;
            self.cache_base = key;
            self.cache_len = len;
            return self.cache.first().copied().ok_or(Error::Corrupt);
        }
        if h.mode == Mode::Full || v < u64::from(self.min_old) {
            return Ok(0);
        }
        if v >= self.cache_base && v < self.cache_base + self.cache_len as u64 {
            return self
                .cache
                .get((v - self.cache_base) as usize)
                .copied()
                .ok_or(Error::Corrupt);
        }
        let len = (old_size - v).min(CACHE as u64) as usize;
        let buf = self.cache.get_mut(..len).ok_or(Error::Corrupt)?;
        img.read_old(v as u32, buf)?;
        self.cache_base = v;
        self.cache_len = len;
        self.cache.first().copied().ok_or(Error::Corrupt)
    }

    fn emit<I: Images>(&mut self, b: u8, img: &mut I) -> Result<(), Error> {
        if self.pos >= self.seg_end {
            return Err(Error::Corrupt);
        }
        if let Some(slot) = self.ring.get_mut(self.pos as usize % RING) {
            *slot = b;
        }
        self.pos += 1;
        self.ctx.prev = b;
        if (self.pos - self.flushed) as usize >= FLUSH {
            self.flush(img)?;
        }
        Ok(())
    }

    fn flush<I: Images>(&mut self, img: &mut I) -> Result<(), Error> {
        while self.flushed < self.pos {
            let start = self.flushed as usize % RING;
            let n = ((self.pos - self.flushed) as usize).min(RING - start);
            let chunk = self.ring.get(start..start + n).ok_or(Error::Corrupt)?;
            img.write_new(self.flushed, chunk)?;
            if self.hash_stream {
                self.sha.update(chunk);
            }
            self.flushed += n as u32;
        }
        Ok(())
    }
}

/// Turns a decoded jump into an alignment.
pub(crate) fn resolve_jump(
    ctx: &Ctx,
    h: &Header,
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
            let d = i64::from(h.old_size) + i64::from(pos) - old_pos;
            if old_pos < 0 || old_pos >= i64::from(h.old_size) {
                return Err(Error::Corrupt);
            }
            u32::try_from(d).map_err(|_| Error::Corrupt)
        }
        J_NEW => param.checked_add(1).ok_or(Error::Corrupt),
        _ => Err(Error::Corrupt),
    }
}

/// Moves to alignment `d`, keeping the most recent alignments.
pub(crate) fn jump_to(ctx: &mut Ctx, d: u32) {
    let idx = ctx.reps.iter().position(|&r| r == d).unwrap_or(3);
    let mut i = idx;
    while i > 0 {
        ctx.reps[i] = ctx.reps[i - 1];
        i -= 1;
    }
    ctx.reps[0] = ctx.d;
    ctx.d = d;
}

//! The encoder (host side, `std`): a price-based optimal parse (as in LZMA's encoder) over
//! literals, alignments, strides and raw runs, priced and coded with the decoder's own
//! adaptive model.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "positions are below the image sizes, checked to fit u32 in `create`"
)]
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::apply::{REQUIRED_RAM, resolve_jump};
use crate::format::{Geometry, Header, MAX_HEADER_LEN, Mode, put_varint};
use crate::model::{
    Carry, Ctx, FLAG_ORDER1, FLAG_SHORT_DIGESTS, FLAG_THUMB, J_ADJ, J_NEW, J_OLD, Miss, Model,
    Source, predict, signed_param,
};
use crate::rc::{BIT, Io, Pricer, RcEnc, Trainer};

/// Which kind of patch to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// A sequential delta, or a full image where the delta does not pay.
    #[default]
    Auto,
    /// Always a sequential delta.
    Delta,
    /// Always a compressed full image.
    Full,
}

/// In-place parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlaceOptions {
    /// Erase block size of the device's flash.
    pub block_size: u32,
    /// Size of the single slot (old image plus room to shift it).
    pub slot_size: u32,
    /// Restart unit; a multiple of `block_size` (0: choose).
    pub segment_size: u32,
}

/// Encoder options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Delta, full, or choose.
    pub strategy: Strategy,
    /// Make an in-place patch (ignores `strategy`).
    pub in_place: Option<InPlaceOptions>,
    /// Write full 32-byte SHA-256 digests in the header instead of the 16-byte truncated
    /// ones (see `format`: the signed manifest carries the full digest either way).
    pub full_digests: bool,
}

/// A created patch.
#[derive(Debug, Clone)]
pub struct Patch {
    /// The patch file.
    pub bytes: Vec<u8>,
    /// Its header.
    pub header: Header,
    /// Size the delta would have had, when a full image was chosen instead.
    pub rejected_delta_bytes: Option<usize>,
}

/// Why a patch could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// An image is 4 GiB or larger, or the sizes differ by 2 GiB or more.
    TooLarge,
    /// The in-place geometry cannot work (see the message).
    Geometry(&'static str),
    /// Internal model error (a bug).
    Internal(Error),
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLarge => {
                f.write_str("images must be smaller than 4 GiB and differ by less than 2 GiB")
            }
            Self::Geometry(m) => write!(f, "in-place geometry: {m}"),
            Self::Internal(e) => write!(f, "internal encoder error: {e}"),
        }
    }
}

impl core::error::Error for CreateError {}

impl From<Error> for CreateError {
    fn from(e: Error) -> Self {
        Self::Internal(e)
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Makes a patch from `old` to `new`.
pub fn create(old: &[u8], new: &[u8], opts: &Options) -> Result<Patch, CreateError> {
    let mut patch = create_payload(old, new, opts)?;
    if !opts.full_digests {
        // The digest length does not change the payload: rewrite the header only.
        let old_len = patch.header.len();
        patch.header.flags |= FLAG_SHORT_DIGESTS;
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = patch.header.write(&mut hb);
        patch
            .bytes
            .splice(..old_len, hb.get(..n).unwrap_or(&[]).iter().copied());
    }
    Ok(patch)
}

fn create_payload(old: &[u8], new: &[u8], opts: &Options) -> Result<Patch, CreateError> {
    let old_size = u32::try_from(old.len()).map_err(|_| CreateError::TooLarge)?;
    let new_size = u32::try_from(new.len()).map_err(|_| CreateError::TooLarge)?;
    if old_size.abs_diff(new_size) >= 1 << 31 {
        return Err(CreateError::TooLarge);
    }
    if let Some(ip) = opts.in_place {
        return best_of(model_variants(new.len()), |flags| {
            create_in_place(old, new, old_size, new_size, &ip, flags)
        });
    }
    let mut variants = model_variants(new.len()).to_vec();
    if crate::filter::bl_density(new) > THUMB_DENSITY {
        let with: Vec<u8> = variants.iter().map(|f| f | FLAG_THUMB).collect();
        variants.extend(with);
    }
    let (old_digest, new_digest) = (sha256(old), sha256(new));
    let filtered = |flags: u8, img: &[u8]| -> Vec<u8> {
        if flags & FLAG_THUMB != 0 {
            crate::filter::filter_image(img)
        } else {
            img.to_vec()
        }
    };
    let delta = || -> Result<Patch, CreateError> {
        best_of(&variants, |flags| {
            let mut enc = Encoder::new(&filtered(flags, old), &filtered(flags, new));
            let payload = enc.segment(0, new_size, 0, flags)?;
            Ok(assemble(
                Mode::Sequential,
                old_size,
                new_size,
                old_digest,
                new_digest,
                None,
                flags,
                &payload,
            ))
        })
    };
    let full = || -> Result<Patch, CreateError> {
        best_of(&variants, |flags| {
            let mut enc = Encoder::new(&[], &filtered(flags, new));
            let payload = enc.segment(0, new_size, 0, flags)?;
            Ok(assemble(
                Mode::Full,
                0,
                new_size,
                [0; 32],
                new_digest,
                None,
                flags,
                &payload,
            ))
        })
    };
    match opts.strategy {
        Strategy::Delta => delta(),
        Strategy::Full => full(),
        Strategy::Auto => {
            let d = delta()?;
            // A delta that saves less than half the image may lose to a plain compressed image.
            if d.bytes.len() * 2 < new.len() {
                return Ok(d);
            }
            let mut f = full()?;
            if f.bytes.len() < d.bytes.len() {
                f.rejected_delta_bytes = Some(d.bytes.len());
                Ok(f)
            } else {
                Ok(d)
            }
        }
    }
}

/// Images with more `BL` patterns than this (share of even offsets) are also tried with the
/// Thumb branch filter.
const THUMB_DENSITY: f64 = 0.004;

/// Model flag sets worth trying: both literal models for images up to 4 MiB (encoding twice),
/// the default alone above.
fn model_variants(new_len: usize) -> &'static [u8] {
    if new_len <= 4 << 20 {
        &[0, FLAG_ORDER1]
    } else {
        &[0]
    }
}

/// Encodes with each flag set and keeps the smallest patch.
fn best_of(
    variants: &[u8],
    mut make: impl FnMut(u8) -> Result<Patch, CreateError>,
) -> Result<Patch, CreateError> {
    let mut best: Option<Patch> = None;
    for &flags in variants {
        let p = make(flags)?;
        if best.as_ref().is_none_or(|b| p.bytes.len() < b.bytes.len()) {
            best = Some(p);
        }
    }
    best.ok_or(CreateError::Internal(Error::Corrupt))
}

#[allow(clippy::too_many_arguments, reason = "one header field each")]
fn assemble(
    mode: Mode,
    old_size: u32,
    new_size: u32,
    old_digest: [u8; 32],
    new_digest: [u8; 32],
    geometry: Option<Geometry>,
    flags: u8,
    payload: &[u8],
) -> Patch {
    let header = Header {
        mode,
        ram_bound: REQUIRED_RAM,
        old_size,
        new_size,
        payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        old_digest,
        new_digest,
        geometry,
        flags,
    };
    let mut hb = [0u8; MAX_HEADER_LEN];
    let n = header.write(&mut hb);
    let mut bytes = Vec::with_capacity(n + payload.len());
    bytes.extend_from_slice(hb.get(..n).unwrap_or(&[]));
    bytes.extend_from_slice(payload);
    Patch {
        bytes,
        header,
        rejected_delta_bytes: None,
    }
}

fn create_in_place(
    old: &[u8],
    new: &[u8],
    old_size: u32,
    new_size: u32,
    ip: &InPlaceOptions,
    flags: u8,
) -> Result<Patch, CreateError> {
    let bs = ip.block_size;
    if !bs.is_power_of_two() || !(64..=1 << 20).contains(&bs) {
        return Err(CreateError::Geometry(
            "block size must be a power of two from 64 to 1 MiB",
        ));
    }
    if new_size > ip.slot_size || old_size > ip.slot_size {
        return Err(CreateError::Geometry("an image is larger than the slot"));
    }
    // The old image moves up by all the free room (rounded down to blocks): the more room,
    // the more of the old image each new segment can still reference.
    let room = (ip.slot_size - old_size) / bs * bs;
    let segment_size = if ip.segment_size == 0 {
        // Aim for segments of 1/2 of the room (at least one block, at most 64 KiB), so that
        // a segment can still see old data at or slightly before its own position.
        ((room / 2) / bs * bs).clamp(bs, (64 * 1024).max(bs))
    } else {
        ip.segment_size
    };
    if segment_size % bs != 0 || segment_size == 0 {
        return Err(CreateError::Geometry(
            "segment size must be a multiple of the block size",
        ));
    }
    let geometry = Geometry {
        block_size: bs,
        shift: room,
        segment_size,
    };
    let mut enc = Encoder::new(old, new);
    let mut payload = Vec::new();
    let mut start = 0u32;
    while start < new_size {
        let end = start.saturating_add(segment_size).min(new_size);
        let end_block = u64::from(end).div_ceil(u64::from(bs)) * u64::from(bs);
        let min_old = u32::try_from(end_block.saturating_sub(u64::from(room))).unwrap_or(u32::MAX);
        let seg = enc.segment(start, end, min_old, flags)?;
        let mut len = [0u8; 5];
        let n = put_varint(&mut len, 0, u32::try_from(seg.len()).unwrap_or(u32::MAX));
        payload.extend_from_slice(&len[..n]);
        payload.extend_from_slice(&seg);
        start = end;
    }
    Ok(assemble(
        Mode::InPlace,
        old_size,
        new_size,
        sha256(old),
        sha256(new),
        Some(geometry),
        flags,
        &payload,
    ))
}

const MIN_MATCH: usize = 4;
const CHAIN_DEPTH: usize = 48;
/// Jump candidates kept per position (the longest matches).
const MAX_CANDS: usize = 8;
/// Positions the parse looks ahead before it commits.
const LIMIT: usize = 4096;
/// A run at least this long is taken at once.
const NICE: u32 = 160;
/// Every run length up to this one is tried after a miss (longer runs: only the longest).
const SHORT_RUNS: u32 = 20;
/// Strides tried (bytes).
const MAX_STRIDE: u32 = 64;
/// Stride candidates kept per position.
const MAX_STRIDES: usize = 3;
/// Shortest raw run worth its own operation.
const MIN_RAW: u32 = 64;
/// Longest raw run the encoder makes (each is priced against literals on its own, so that a
/// compressible stretch after random data is not swallowed).
const RAW_SPAN: u32 = 4096;
/// A position is matchable if the hash chains hold a match at least this long.
const RAW_MATCH: usize = 8;

/// Hash chains over `old ++ new`, grown as the search advances.
struct Chains {
    bits: u32,
    head: Vec<u32>,
    prev: Vec<u32>,
    inserted: usize,
}

/// The encoder's input: `old ++ new` and its hash chains.
struct Encoder {
    buf: Vec<u8>,
    old_len: usize,
    chains: Chains,
}

fn hash4(b: &[u8], bits: u32) -> usize {
    let mut w = [0u8; 4];
    w.copy_from_slice(b.get(..4).unwrap_or(&[0; 4]));
    (u32::from_le_bytes(w).wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

/// Length of the common prefix of `a` and `b`.
fn common_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

impl Chains {
    fn insert_upto(&mut self, buf: &[u8], end: usize) {
        while self.inserted < end {
            let i = self.inserted;
            if i + MIN_MATCH <= buf.len() {
                let h = hash4(&buf[i..], self.bits);
                self.prev[i] = self.head[h];
                self.head[h] = i as u32;
            }
            self.inserted += 1;
        }
    }

    /// Matches for `buf[t..t_end]` at earlier positions (not below `min_old` in the old
    /// image): `(alignment, length)`, longest first, at most `MAX_CANDS`.
    fn candidates(
        &self,
        buf: &[u8],
        old_len: usize,
        t: usize,
        t_end: usize,
        min_old: u32,
        out: &mut Vec<(u32, u32)>,
    ) {
        out.clear();
        if t + MIN_MATCH > t_end {
            return;
        }
        let mut c = self.head[hash4(&buf[t..], self.bits)];
        let mut depth = 0;
        while c != u32::MAX && depth < CHAIN_DEPTH {
            let ci = c as usize;
            depth += 1;
            if ci < t && !(ci < old_len && ci < min_old as usize) {
                let l = common_len(&buf[ci..t_end - t + ci], &buf[t..t_end]);
                if l >= MIN_MATCH {
                    let d = (t - ci) as u32;
                    if !out.iter().any(|&(x, _)| x == d) {
                        out.push((d, l as u32));
                    }
                }
            }
            c = self.prev[ci];
        }
        out.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(MAX_CANDS);
    }

    /// Whether the chains hold a match of at least `RAW_MATCH` bytes for `buf[t..]`.
    fn matchable(&self, buf: &[u8], t: usize, min_old: u32, old_len: usize) -> bool {
        if t + RAW_MATCH > buf.len() {
            return false;
        }
        let mut c = self.head[hash4(&buf[t..], self.bits)];
        let mut depth = 0;
        while c != u32::MAX && depth < CHAIN_DEPTH {
            let ci = c as usize;
            depth += 1;
            if ci < t
                && !(ci < old_len && ci < min_old as usize)
                && buf[ci..ci + RAW_MATCH] == buf[t..t + RAW_MATCH]
            {
                return true;
            }
            c = self.prev[ci];
        }
        false
    }
}

impl Encoder {
    fn new(old: &[u8], new: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(old.len() + new.len());
        buf.extend_from_slice(old);
        buf.extend_from_slice(new);
        let n = buf.len();
        // About one bucket per position (16 to 24 bits).
        let bits = (usize::BITS - n.max(1).leading_zeros()).clamp(16, 24);
        let mut chains = Chains {
            bits,
            head: alloc::vec![u32::MAX; 1 << bits],
            prev: alloc::vec![u32::MAX; n],
            inserted: 0,
        };
        chains.insert_upto(&buf, old.len());
        Self {
            buf,
            old_len: old.len(),
            chains,
        }
    }

    fn segment(
        &mut self,
        start: u32,
        end: u32,
        min_old: u32,
        flags: u8,
    ) -> Result<Vec<u8>, CreateError> {
        // Pass 1 prices with the model as it adapts; pass 2 prices with the model pass 1
        // ended with (kept adapting), so that early decisions see realistic costs.
        let (first, trained) = self.pass(start, end, min_old, flags, None)?;
        let (second, _) = self.pass(start, end, min_old, flags, Some(trained))?;
        Ok(if second.len() <= first.len() {
            second
        } else {
            first
        })
    }

    fn pass(
        &mut self,
        start: u32,
        end: u32,
        min_old: u32,
        flags: u8,
        trained: Option<Model>,
    ) -> Result<(Vec<u8>, Model), CreateError> {
        let Self {
            buf,
            old_len,
            chains,
        } = self;
        let target = *old_len + start as usize;
        if chains.inserted > target {
            chains.head.fill(u32::MAX);
            chains.inserted = 0;
        }
        chains.insert_upto(buf, target);
        let img = Img {
            buf,
            old_len: *old_len,
            min_old,
        };
        Search::new(img, chains, start, end, flags, trained).run()
    }
}

/// `old ++ new` as the decoder sees it while producing one segment.
struct Img<'a> {
    buf: &'a [u8],
    old_len: usize,
    min_old: u32,
}

impl Source for Img<'_> {
    fn virt(&mut self, v: u64) -> Result<u8, Error> {
        let v = v as usize;
        if v < self.old_len && v < self.min_old as usize {
            return Ok(0);
        }
        Ok(self.buf.get(v).copied().unwrap_or(0))
    }
    fn old_size(&self) -> u64 {
        self.old_len as u64
    }
}

impl Img<'_> {
    #[inline]
    fn newb(&self, q: u32) -> u8 {
        self.buf[self.old_len + q as usize]
    }

    fn pred(&mut self, ctx: &Ctx, q: u32) -> u8 {
        let mut c = Carry::NONE;
        predict(self, ctx, q, &mut c).unwrap_or(0)
    }

    /// The byte alignment `d` predicts for `q` (no stride).
    fn aligned(&mut self, d: u32, q: u32) -> u8 {
        crate::model::aligned(self, d, i64::from(q)).unwrap_or(0)
    }

    /// How many bytes from `q` on (before `end`) `ctx` predicts correctly.
    fn run_len(&mut self, ctx: &Ctx, q: u32, end: u32) -> u32 {
        if ctx.stride != 0 {
            let mut c = Carry::NONE;
            let mut i = q;
            while i < end && predict(self, ctx, i, &mut c).unwrap_or(0) == self.newb(i) {
                i += 1;
            }
            return i - q;
        }
        let d = i64::from(ctx.d);
        let mut i = q;
        if d == 0 {
            while i < end && self.newb(i) == 0 {
                i += 1;
            }
            return i - q;
        }
        // Where the alignment points before the image or at unreadable old bytes, it
        // predicts zeros.
        while i < end {
            let v = self.old_len as i64 + i64::from(i) - d;
            if v >= 0 && (v as usize >= self.old_len || v >= i64::from(self.min_old)) {
                let v = v as usize;
                let t = self.old_len + i as usize;
                let n = (end - i) as usize;
                let l = common_len(&self.buf[v..v + n], &self.buf[t..t + n]);
                return i - q + l as u32;
            }
            if self.newb(i) != 0 {
                break;
            }
            i += 1;
        }
        i - q
    }
}

/// A coded step: a miss, then (unless the segment ended) a run.
#[derive(Debug, Clone, Copy)]
struct Step {
    op: Miss,
    run: u32,
}

/// A parse node: the cheapest known way to reach a position where a miss is due.
#[derive(Debug, Clone, Copy)]
struct Node {
    cost: u64,
    ctx: Ctx,
    from: u32,
    step: Step,
}

const UNREACHED: u64 = u64::MAX;

const EMPTY_NODE: Node = Node {
    cost: UNREACHED,
    ctx: Ctx::new(0),
    from: 0,
    step: Step {
        op: Miss::Plain(0),
        run: 0,
    },
};

/// Diagnostics (SUITCASE_DELTA_STATS=1): count and cost per operation kind.
#[derive(Default)]
struct Stats {
    ops: [(u64, u64); 8],
}

const STAT_NAMES: [&str; 8] = [
    "run", "diff", "plain", "rep", "adj", "old/new", "stride", "raw",
];

/// One segment's optimal parse and coding.
struct Search<'a> {
    img: Img<'a>,
    chains: &'a mut Chains,
    start: u32,
    end: u32,
    model: Model,
    /// The model prices come from (pass 2), adapting along with `model`.
    pm: Option<Model>,
    rc: RcEnc,
    ctx: Ctx,
    pos: u32,
    nodes: Vec<Node>,
    touched: usize,
    /// Prices of runs of 1..=64 bytes per operation kind, and the runs coded since.
    run_tab: [[u32; 64]; 3],
    run_age: u32,
    cands: Vec<(u32, u32)>,
    /// Raw-run cache: positions in `[raw_from, raw_to)` have no long match.
    raw_from: u32,
    raw_to: u32,
    /// Raw runs starting below this were found not to pay.
    raw_refused_to: u32,
    stats: Option<Stats>,
    /// Literal dump for model experiments (SUITCASE_DELTA_DUMP=file).
    dump: Option<Vec<u8>>,
    trace: bool,
}

/// The best far-reaching step found at a node, taken at once.
#[derive(Debug, Clone, Copy)]
struct Long {
    land: u32,
    cost: u64,
    step: Step,
}

impl<'a> Search<'a> {
    fn new(
        img: Img<'a>,
        chains: &'a mut Chains,
        start: u32,
        end: u32,
        flags: u8,
        pm: Option<Model>,
    ) -> Self {
        let d0 = img.old_len as u32;
        Self {
            img,
            chains,
            start,
            end,
            model: Model::new(flags),
            pm,
            rc: RcEnc::new(),
            ctx: Ctx::new(d0),
            pos: start,
            nodes: alloc::vec![EMPTY_NODE; LIMIT + 1],
            touched: LIMIT,
            run_tab: [[0; 64]; 3],
            run_age: u32::MAX,
            cands: Vec::new(),
            raw_from: 0,
            raw_to: 0,
            raw_refused_to: 0,
            stats: std::env::var_os("SUITCASE_DELTA_STATS").map(|_| Stats::default()),
            dump: std::env::var_os("SUITCASE_DELTA_DUMP").map(|_| Vec::new()),
            trace: std::env::var_os("SUITCASE_DELTA_STATS").is_some_and(|v| v == "2"),
        }
    }

    /// The model prices come from.
    fn pm(&mut self) -> &mut Model {
        match &mut self.pm {
            Some(m) => m,
            None => &mut self.model,
        }
    }

    fn run(mut self) -> Result<(Vec<u8>, Model), CreateError> {
        if self.start < self.end {
            let r = self.img.run_len(&self.ctx, self.start, self.end);
            self.code_run(r)?;
        }
        while self.pos < self.end {
            let steps = self.block()?;
            for s in steps {
                self.code_step(s)?;
            }
        }
        if let Some(st) = &self.stats {
            for (n, (c, b)) in STAT_NAMES.iter().zip(st.ops) {
                std::eprintln!("  {n:7} {c:8} ops {:9} bytes", b / u64::from(8 * BIT));
            }
        }
        if let (Some(d), Some(path)) = (&self.dump, std::env::var_os("SUITCASE_DELTA_DUMP")) {
            let _ = std::fs::write(path, d);
        }
        Ok((self.rc.finish(), self.model))
    }

    fn prev_byte(&self, q: u32) -> u8 {
        if q > self.start {
            self.img.newb(q - 1)
        } else {
            0
        }
    }

    fn stat(&mut self, kind: usize, cost: u32) {
        if self.trace {
            std::eprintln!(
                "    @{} {} {:.1} bits",
                self.pos,
                STAT_NAMES[kind],
                f64::from(cost) / f64::from(BIT)
            );
        }
        if let Some(s) = &mut self.stats {
            s.ops[kind].0 += 1;
            s.ops[kind].1 += u64::from(cost);
        }
    }

    fn code_run(&mut self, n: u32) -> Result<(), CreateError> {
        if self.stats.is_some() {
            let c = self.run_price(&self.ctx.clone(), self.pos, n);
            self.stat(0, c);
        }
        debug_assert!(self.img.run_len(&self.ctx, self.pos, self.end) >= n);
        if let Some(pm) = &mut self.pm {
            let mut c = self.ctx;
            pm.run(&mut Trainer(Pricer::new()), &mut c, self.pos, n)?;
        }
        self.model.run(&mut self.rc, &mut self.ctx, self.pos, n)?;
        self.pos += n;
        self.run_age = self.run_age.saturating_add(1);
        Ok(())
    }

    fn code_step(&mut self, s: Step) -> Result<(), CreateError> {
        let p = self.pos;
        self.ctx.prev = self.prev_byte(p);
        let pred = self.img.pred(&self.ctx, p);
        if let Some(d) = &mut self.dump {
            // kind, pos (4), byte, pred, prev, prev2, old byte before/after the prediction
            let k = match s.op {
                Miss::Diff(_) => 1u8,
                Miss::Plain(_) => 2,
                _ => 0,
            };
            if k != 0 {
                let pp = if p > self.start + 1 {
                    self.img.newb(p - 2)
                } else {
                    0
                };
                let d0 = self.ctx.d;
                let before = self.img.aligned(d0, p.wrapping_sub(1));
                let after = if p + 1 < self.end {
                    self.img.aligned(d0, p + 1)
                } else {
                    0
                };
                d.push(k);
                d.extend_from_slice(&p.to_le_bytes());
                d.extend_from_slice(&[
                    self.img.newb(p),
                    pred,
                    self.ctx.prev,
                    pp,
                    before,
                    after,
                    self.ctx.st as u8,
                ]);
            }
        }
        if self.stats.is_some() {
            let kind = match s.op {
                Miss::Diff(_) => 1,
                Miss::Plain(_) => 2,
                Miss::Jump(0..=3, _) => 3,
                Miss::Jump(J_ADJ, _) => 4,
                Miss::Jump(..) => 5,
                Miss::Stride(..) => 6,
                Miss::Raw(_) => 7,
            };
            let c = self.miss_price(&self.ctx.clone(), p, pred, s.op);
            self.stat(kind, c);
        }
        if let Some(pm) = &mut self.pm {
            pm.miss(&mut Trainer(Pricer::new()), &self.ctx, p, pred, s.op)?;
        }
        self.model.miss(&mut self.rc, &self.ctx, p, pred, s.op)?;
        let mut d = self.ctx.d;
        match s.op {
            Miss::Diff(x) => {
                debug_assert_eq!(pred.wrapping_add(x), self.img.newb(p));
                self.pos += 1;
            }
            Miss::Plain(b) => {
                debug_assert_eq!(b, self.img.newb(p));
                self.pos += 1;
            }
            Miss::Raw(m) => {
                for i in 0..m {
                    self.rc.direct(u32::from(self.img.newb(p + i)), 8)?;
                }
                if let Some(st) = &mut self.stats {
                    st.ops[7].1 += u64::from(m) * u64::from(8 * BIT);
                }
                self.pos += m;
            }
            Miss::Jump(kind, param) => {
                d = resolve_jump(&self.ctx, self.img.old_len as u32, p, kind, param)?;
            }
            Miss::Stride(..) => {}
        }
        self.ctx.after_miss(p, s.op, d);
        if self.pos < self.end {
            self.code_run(s.run)?;
        }
        Ok(())
    }

    fn miss_price(&mut self, ctx: &Ctx, p: u32, pred: u8, op: Miss) -> u32 {
        let mut pr = Pricer::new();
        match self.pm().miss(&mut pr, ctx, p, pred, op) {
            Ok(_) => pr.cost,
            Err(_) => u32::MAX / 4,
        }
    }

    fn refresh_run_prices(&mut self) {
        if self.run_age < 256 {
            return;
        }
        self.run_age = 0;
        for st in 0..3 {
            for v in 0..64u32 {
                let mut pr = Pricer::new();
                let _ = self.pm().run_tail(&mut pr, st, v);
                self.run_tab[st][v as usize] = pr.cost;
            }
        }
    }

    /// Price of a run of `n` bytes at `pos` in state `ctx`.
    fn run_price(&mut self, ctx: &Ctx, pos: u32, n: u32) -> u32 {
        let pz = self.pm().run_zero_prob(ctx, pos);
        let pr = Pricer::new();
        if n == 0 {
            return pr.price(pz, 1);
        }
        let z = pr.price(pz, 0);
        if let Some(&c) = self
            .run_tab
            .get(ctx.st)
            .and_then(|t| t.get((n - 1) as usize))
        {
            return z + c;
        }
        let mut pr = Pricer::new();
        let _ = self.pm().run_tail(&mut pr, ctx.st, n - 1);
        z + pr.cost
    }

    /// Parses ahead from the current position and returns the steps to code.
    fn block(&mut self) -> Result<Vec<Step>, CreateError> {
        self.refresh_run_prices();
        let base = self.pos;
        let lim = LIMIT.min((self.end - base) as usize);
        for n in self.nodes.iter_mut().take(self.touched + 1) {
            n.cost = UNREACHED;
        }
        self.nodes[0] = Node {
            cost: 0,
            ctx: self.ctx,
            from: 0,
            step: EMPTY_NODE.step,
        };
        let mut len_end = 0usize;
        let mut cur = 0usize;
        loop {
            if self.nodes[cur].cost != UNREACHED
                && (base as usize + cur) < self.end as usize
                && let Some(long) = self.expand(base, cur, lim, &mut len_end)?
            {
                self.touched = len_end;
                let mut steps = self.backtrack(cur);
                steps.push(long.step);
                return Ok(steps);
            }
            if cur >= len_end {
                break;
            }
            cur += 1;
        }
        self.touched = len_end;
        Ok(self.backtrack(len_end))
    }

    fn backtrack(&self, mut i: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        while i != 0 {
            let n = &self.nodes[i];
            steps.push(n.step);
            i = n.from as usize;
        }
        steps.reverse();
        steps
    }

    /// Relaxes the edges "`op` then a run of `n` bytes from `p0`" for the useful `n <= r`.
    #[allow(clippy::too_many_arguments, reason = "one edge's description")]
    fn relax_runs(
        &mut self,
        base: u32,
        cur: usize,
        lim: usize,
        len_end: &mut usize,
        long: &mut Option<Long>,
        p0: u32,
        after: Ctx,
        op: Miss,
        cost0: u64,
        r: u32,
        min_run: u32,
    ) {
        if r < min_run {
            return;
        }
        if r >= NICE {
            let cost = cost0 + u64::from(self.run_price(&after, p0, r));
            let land = p0 + r;
            if long.is_none_or(|l| land > l.land || (land == l.land && cost < l.cost)) {
                *long = Some(Long {
                    land,
                    cost,
                    step: Step { op, run: r },
                });
            }
        }
        let off = (p0 - base) as usize;
        if off > lim {
            return;
        }
        let room = (lim - off) as u32;
        let top = r.min(room);
        let mut n = min_run;
        loop {
            if n > top {
                break;
            }
            let price = self.run_price(&after, p0, n);
            let cost = cost0 + u64::from(price);
            let land = (p0 - base + n) as usize;
            if cost < self.nodes[land].cost {
                let mut c = after;
                c.hist = ((c.hist << 1) | usize::from(n == 0)) & 3;
                self.nodes[land] = Node {
                    cost,
                    ctx: c,
                    from: cur as u32,
                    step: Step { op, run: n },
                };
                *len_end = (*len_end).max(land);
            }
            if n == top {
                break;
            }
            n = if n < SHORT_RUNS { n + 1 } else { top };
        }
    }

    /// Relaxes every edge from node `cur`; returns a far-reaching step to take at once.
    fn expand(
        &mut self,
        base: u32,
        cur: usize,
        lim: usize,
        len_end: &mut usize,
    ) -> Result<Option<Long>, CreateError> {
        let q = base + cur as u32;
        let end = self.end;
        let node = self.nodes[cur];
        let mut ctx = node.ctx;
        ctx.prev = self.prev_byte(q);
        self.chains
            .insert_upto(self.img.buf, self.img.old_len + q as usize);
        let pred = self.img.pred(&ctx, q);
        let byte = self.img.newb(q);
        let mut long: Option<Long> = None;

        // A literal, then the alignment continues.
        let plain = Miss::Plain(byte);
        let mut lit = (plain, self.miss_price(&ctx, q, pred, plain));
        if byte != pred {
            let diff = Miss::Diff(byte.wrapping_sub(pred));
            let c = self.miss_price(&ctx, q, pred, diff);
            if c < lit.1 {
                lit = (diff, c);
            }
        }
        let mut after = ctx;
        after.after_miss(q, lit.0, ctx.d);
        let cost = node.cost + u64::from(lit.1);
        if q + 1 == end {
            let land = cur + 1;
            if cost < self.nodes[land].cost {
                self.nodes[land] = Node {
                    cost,
                    ctx: after,
                    from: cur as u32,
                    step: Step { op: lit.0, run: 0 },
                };
                *len_end = (*len_end).max(land);
            }
        } else {
            let r = self.img.run_len(&after, q + 1, end);
            self.relax_runs(
                base,
                cur,
                lim,
                len_end,
                &mut long,
                q + 1,
                after,
                lit.0,
                cost,
                r,
                0,
            );
        }

        // Raw bytes (where they beat adaptive literals): taken at once.
        if let Some(m) = self.raw_span(&ctx, q) {
            let op = Miss::Raw(m);
            let mut after = ctx;
            after.after_miss(q, op, ctx.d);
            let r = if q + m < end {
                self.img.run_len(&after, q + m, end)
            } else {
                0
            };
            let land = q + m + r;
            if long.is_none_or(|l| land >= l.land) {
                long = Some(Long {
                    land,
                    cost: 0,
                    step: Step { op, run: r },
                });
            }
        }

        // Jumps to other alignments.
        let t = self.img.old_len + q as usize;
        let t_end = self.img.old_len + end as usize;
        let mut cands = core::mem::take(&mut self.cands);
        self.chains.candidates(
            self.img.buf,
            self.img.old_len,
            t,
            t_end,
            self.img.min_old,
            &mut cands,
        );
        let mut targets: Vec<(u32, bool, Option<u32>)> = Vec::with_capacity(cands.len() * 2 + 4);
        for &(d, l) in &cands {
            if ctx.stride == 0 {
                targets.push((d, true, Some(l)));
            } else {
                targets.push((d, false, Some(l)));
                targets.push((d, true, None));
            }
        }
        self.cands = cands;
        for r in ctx.reps {
            if r != ctx.d && !targets.iter().any(|&(d, keep, _)| d == r && keep) {
                targets.push((r, true, None));
            }
        }
        for (d, keep, known) in targets {
            let Some((op, jc)) = self.jump_price(&ctx, q, pred, d, keep) else {
                continue;
            };
            let mut after = ctx;
            after.after_miss(q, op, d);
            let l = match known {
                Some(l) if after.stride == 0 => l,
                _ => self.img.run_len(&after, q, end),
            };
            let cost = node.cost + u64::from(jc);
            self.relax_runs(base, cur, lim, len_end, &mut long, q, after, op, cost, l, 1);
        }

        // Strides.
        let sc = if std::env::var_os("SD_NOSTRIDE").is_some() {
            Vec::new()
        } else {
            self.stride_candidates(&ctx, q)
        };
        for (s, w) in sc {
            let op = Miss::Stride(s, w);
            let mut after = ctx;
            after.after_miss(q, op, ctx.d);
            let l = self.img.run_len(&after, q, end);
            if l < 2 {
                continue;
            }
            let jc = self.miss_price(&ctx, q, pred, op);
            let cost = node.cost + u64::from(jc);
            self.relax_runs(base, cur, lim, len_end, &mut long, q, after, op, cost, l, 1);
        }
        Ok(long)
    }

    /// The cheapest way to jump to alignment `d` (keeping the stride, or clearing it).
    fn jump_price(
        &mut self,
        ctx: &Ctx,
        q: u32,
        pred: u8,
        d: u32,
        keep: bool,
    ) -> Option<(Miss, u32)> {
        let mut opts: [Option<Miss>; 4] = [None; 4];
        let any = ctx.stride == 0;
        if keep || any {
            if let Some(k) = ctx.reps.iter().position(|&r| r == d) {
                opts[0] = Some(Miss::Jump(k as u32, k as u32));
            }
            let delta = i64::from(d) - i64::from(ctx.d);
            if delta != 0 && delta.unsigned_abs() < (1 << 30) {
                opts[1] = Some(Miss::Jump(J_ADJ, signed_param(delta)));
            }
        }
        if !keep || any {
            let old_len = self.img.old_len as u64;
            if d > q {
                let old_pos = (old_len + u64::from(q)).checked_sub(u64::from(d))?;
                opts[2] = Some(Miss::Jump(
                    J_OLD,
                    signed_param(old_pos as i64 - i64::from(q)),
                ));
            } else if d >= 1 {
                opts[3] = Some(Miss::Jump(J_NEW, d - 1));
            }
        }
        let mut best: Option<(Miss, u32)> = None;
        for op in opts.into_iter().flatten() {
            let c = self.miss_price(ctx, q, pred, op);
            if best.is_none_or(|b| c < b.1) {
                best = Some((op, c));
            }
        }
        best
    }

    /// Strides under which the byte at `q` is predicted (its difference against the current
    /// alignment repeats `s` bytes earlier), longest runs first.
    fn stride_candidates(&mut self, ctx: &Ctx, q: u32) -> Vec<(u8, u8)> {
        let mut out: Vec<(u8, u8, u32)> = Vec::new();
        let d = ctx.d;
        let x0 = self.img.newb(q).wrapping_sub(self.img.aligned(d, q));
        if ctx.stride != 0 {
            let mut c = *ctx;
            c.stride = 0;
            c.word = 0;
            let l = self.img.run_len(&c, q, self.end);
            if l >= 2 {
                out.push((0, 0, l));
            }
        }
        if x0 != 0 {
            let lo = q.saturating_sub(self.start.min(q)).min(MAX_STRIDE);
            let max_s = q.min(MAX_STRIDE).max(lo);
            let mut found = 0;
            for s in 1..=max_s {
                let xs = self
                    .img
                    .newb(q - s)
                    .wrapping_sub(self.img.aligned(d, q - s));
                if xs != x0 {
                    continue;
                }
                found += 1;
                for w in 0..=3u8 {
                    if s % (1 << w) != 0 || (s as u8 == ctx.stride && w == ctx.word) {
                        continue;
                    }
                    let mut c = *ctx;
                    c.stride = s as u8;
                    c.word = w;
                    let l = self.img.run_len(&c, q, self.end);
                    if l >= 2 {
                        out.push((s as u8, w, l));
                    }
                }
                if found >= 6 {
                    break;
                }
            }
        }
        out.sort_unstable_by_key(|a| core::cmp::Reverse(a.2));
        out.truncate(MAX_STRIDES);
        out.into_iter().map(|(s, w, _)| (s, w)).collect()
    }

    /// A raw run from `q` (to the next matchable position) if it is cheaper than literals.
    fn raw_span(&mut self, ctx: &Ctx, q: u32) -> Option<u32> {
        if q < self.raw_refused_to {
            return None;
        }
        if !(self.raw_from <= q && q < self.raw_to) {
            let mut x = q;
            let lim = self.end.min(q.saturating_add(RAW_SPAN));
            while x < lim
                && !self.chains.matchable(
                    self.img.buf,
                    self.img.old_len + x as usize,
                    self.img.min_old,
                    self.img.old_len,
                )
            {
                x += 1;
            }
            self.raw_from = q;
            self.raw_to = x;
        }
        let m = self.raw_to - q;
        if m < MIN_RAW {
            return None;
        }

        // Literal price of the span, adapting a copy of the model as coding would.
        let mut model = self.pm().clone();
        let mut tr = Trainer(Pricer::new());
        let mut c = *ctx;
        for i in q..q + m {
            c.prev = self.prev_byte(i);
            let pred = self.img.pred(&c, i);
            let b = self.img.newb(i);
            let _ = model.miss(&mut tr, &c, i, pred, Miss::Plain(b));
            c.st = crate::model::ST_PLAIN;
            if i + 1 < self.end {
                let _ = model.run(&mut tr, &mut c, i + 1, 0);
            }
        }
        let lit = u64::from(tr.0.cost);
        let raw =
            u64::from(m) * u64::from(8 * BIT) + u64::from(self.miss_price(ctx, q, 0, Miss::Raw(m)));
        if raw < lit {
            Some(m)
        } else {
            self.raw_refused_to = self.raw_to;
            None
        }
    }
}

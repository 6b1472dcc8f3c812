//! The context model shared by encoder and decoder.
//!
//! The new image is coded as a sequence of operations against an *alignment* `d`: the byte
//! predicted for new position `p` is the byte at position `old_size + p - d` of the virtual
//! concatenation `old ++ new` (so `d <= old_size + p` reaches into the old image, small `d`
//! reaches back into the new image already written, and `d = 0` predicts zero).
//!
//! With a *stride* `s` (record size) the prediction also adds the difference the new image
//! had, `s` bytes earlier, against the same alignment: tables of records whose fields all
//! moved by the same amount (relocations, symbol tables, pointer tables) are then predicted
//! exactly. The addition is done on little-endian words of `2^w` bytes (carries propagate
//! within a word), so a field that grows by a constant stays predicted across carries.
//!
//! * `RUN n`: the next `n` bytes equal their prediction.
//! * `MISS`: either a literal (coded as a difference to the prediction, like bsdiff's add
//!   bytes, or as a plain byte, like bsdiff's extra bytes), after which the alignment
//!   continues; or a `JUMP` to a new alignment (one of the four most recent ones, a small
//!   adjustment, an explicit old-image offset or an explicit distance back into the new
//!   image); or a change of stride; or a run of raw (incompressible) bytes.

#![allow(
    clippy::cast_possible_truncation,
    reason = "positions and lengths are below the image sizes, which the header bounds to u32; byte values are masked to 8 bits"
)]

use crate::Error;
use crate::rc::{Io, PROB_INIT, Prob};

/// Contexts for operation kinds: after a jump (or at the start), after a difference literal,
/// after a plain literal (or raw bytes).
pub(crate) const ST_JUMP: usize = 0;
pub(crate) const ST_DIFF: usize = 1;
pub(crate) const ST_PLAIN: usize = 2;
const NST: usize = 3;

/// Header flag bit 0: order-1 plain literals instead of matched literals.
pub(crate) const FLAG_ORDER1: u8 = 1;
/// Header flag bit 1: the Thumb branch filter (sequential and full modes).
pub(crate) const FLAG_THUMB: u8 = 2;
/// Header flag bit 2: the digests are SHA-256 truncated to 128 bits (16 bytes each).
pub(crate) const FLAG_SHORT_DIGESTS: u8 = 4;
/// All flag bits this version understands.
pub(crate) const KNOWN_FLAGS: u8 = FLAG_ORDER1 | FLAG_THUMB | FLAG_SHORT_DIGESTS;

/// Jump kinds (0..=3: the recent alignments).
pub(crate) const J_ADJ: u32 = 4;
pub(crate) const J_OLD: u32 = 5;
pub(crate) const J_NEW: u32 = 6;
/// Kind 7 is followed by a flag: stride change or raw bytes.
const J_EXT: u32 = 7;

/// Most raw bytes in one operation.
pub(crate) const MAX_RAW: u32 = 1 << 24;

/// An adaptive model for unsigned integers up to 2^32 - 2: the bit length of `v + 1`, then
/// the bits below the leading one (all adaptive for short numbers; for long ones the top
/// three and the bottom two adaptive, the rest direct).
#[derive(Debug, Clone)]
pub(crate) struct UintModel {
    slot: [Prob; 64],
    low: [Prob; 128],
    high: [[Prob; 8]; 13],
    align: [Prob; 4],
}

impl UintModel {
    pub(crate) const fn new() -> Self {
        Self {
            slot: [PROB_INIT; 64],
            low: [PROB_INIT; 128],
            high: [[PROB_INIT; 8]; 13],
            align: [PROB_INIT; 4],
        }
    }

    /// A model that expects numbers of `k` bits with weight about `r^k` (`r = num / 16`).
    fn with_prior(num: u64) -> Self {
        let mut m = Self::new();
        tree_prior(&mut m.slot, 6, |k| {
            if k > 32 {
                0
            } else {
                let mut w = 1u64 << 40;
                for _ in 0..k {
                    w = w * num / 16;
                }
                w + 1
            }
        });
        m
    }

    pub(crate) fn code<I: Io>(&mut self, io: &mut I, v: u32) -> Result<u32, Error> {
        let x = u64::from(v) + 1;
        let nb = 64 - x.leading_zeros(); // 1..=33
        let k = code_tree(io, &mut self.slot, 6, nb - 1)?; // bits below the leading one
        if k > 32 {
            return Err(Error::Corrupt);
        }
        let mant_in = (x & ((1u64 << k) - 1)) as u32;
        let mant = if k <= 6 {
            let base = 1usize << k;
            let mut m = 1usize;
            for i in (0..k).rev() {
                let b = (mant_in >> i) & 1;
                let p = self.low.get_mut(base + m - 1).ok_or(Error::Corrupt)?;
                let b = io.bit(p, b)?;
                m = (m << 1) | b as usize;
            }
            (m - 1) as u32 - ((1u32 << k) - 1)
        } else {
            let probs = self
                .high
                .get_mut(((k - 7) / 2) as usize)
                .ok_or(Error::Corrupt)?;
            let top = code_tree(io, probs, 3, mant_in >> (k - 3))?;
            let mid = io.direct((mant_in >> 2) & ((1u32 << (k - 5)) - 1), k - 5)?;
            let low = code_tree(io, &mut self.align, 2, mant_in & 3)?;
            (top << (k - 3)) | (mid << 2) | low
        };
        let x = (1u64 << k) | u64::from(mant);
        u32::try_from(x - 1).map_err(|_| Error::Corrupt)
    }
}

/// A probability of a 0 bit (12 bits) that has already counted as two observations.
const fn prior(p0: u64) -> Prob {
    let p = if p0 < 31 {
        31
    } else if p0 > 4065 {
        4065
    } else {
        p0
    };
    (p as u16) | (2 << 12)
}

/// Sets a bit tree's probabilities to code leaves with the given weights.
fn tree_prior(probs: &mut [Prob], bits: u32, weight: impl Fn(u32) -> u64) {
    for depth in 0..bits {
        let span = 1u32 << (bits - depth);
        for v in 0..(1u32 << depth) {
            let lo = v * span;
            let left: u64 = (lo..lo + span / 2).map(&weight).sum();
            let right: u64 = (lo + span / 2..lo + span).map(&weight).sum();
            if let Some(p) = probs.get_mut(((1u32 << depth) + v) as usize) {
                *p = prior((left * 4096) / (left + right).max(1));
            }
        }
    }
}

/// Bit length of `v`.
const fn bit_len(v: u32) -> u32 {
    32 - v.leading_zeros()
}

/// Codes `bits` bits of `v` (most significant first) with a binary tree of probabilities.
pub(crate) fn code_tree<I: Io>(
    io: &mut I,
    probs: &mut [Prob],
    bits: u32,
    v: u32,
) -> Result<u32, Error> {
    let mut m = 1usize;
    for i in (0..bits).rev() {
        let b = (v >> i) & 1;
        let p = probs.get_mut(m).ok_or(Error::Corrupt)?;
        let b = io.bit(p, b)?;
        m = (m << 1) | b as usize;
    }
    Ok((m as u32) - (1u32 << bits))
}

/// Codes a byte given a "match byte" (LZMA's matched literal): while the bits agree with the
/// match byte, the probabilities are also indexed by the match byte's bits.
fn code_matched<I: Io>(
    io: &mut I,
    probs: &mut [Prob],
    byte: u32,
    mbyte: u32,
) -> Result<u32, Error> {
    let mut m = 1usize;
    let mut mb = mbyte;
    let mut i = 8;
    while i > 0 {
        i -= 1;
        let match_bit = ((mb >> 7) & 1) as usize;
        mb <<= 1;
        let b = (byte >> i) & 1;
        let p = probs
            .get_mut(0x100 + (match_bit << 8) + m)
            .ok_or(Error::Corrupt)?;
        let b = io.bit(p, b)?;
        m = (m << 1) | b as usize;
        if b as usize != match_bit {
            while i > 0 {
                i -= 1;
                let b = (byte >> i) & 1;
                let p = probs.get_mut(m).ok_or(Error::Corrupt)?;
                let b = io.bit(p, b)?;
                m = (m << 1) | b as usize;
            }
            break;
        }
    }
    Ok((m as u32) & 0xFF)
}

/// All adaptive probabilities. Its size is most of the applier's RAM.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    run_zero: [[Prob; 8]; NST],
    run: [UintModel; NST],
    is_jump: [[Prob; 8]; NST],
    is_plain: [[Prob; 8]; NST],
    same_diff: [[Prob; 8]; NST],
    diff: [[Prob; 256]; 4],
    plain: [Prob; 0xC00],
    /// Literal model variant (header flag bit 0): LZMA matched literals in the context of
    /// the position's parity and the previous byte's top bit, or plain order-1 literals in
    /// the context of the parity and the previous byte's top two bits.
    order1: bool,
    jump_kind: [[Prob; 8]; NST],
    ext: Prob,
    adj_sign: Prob,
    adj: UintModel,
    old_sign: Prob,
    old: UintModel,
    new: UintModel,
    raw: UintModel,
    stride_flags: [Prob; 3],
    stride: [Prob; 256],
    word: [Prob; 4],
}

/// The state that evolves with the coded data (besides the probabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ctx {
    /// Current alignment.
    pub(crate) d: u32,
    /// Current stride (0: none) and log2 of its word size.
    pub(crate) stride: u8,
    pub(crate) word: u8,
    /// The two most recent strides set (stride, word), most recent first.
    pub(crate) sreps: [(u8, u8); 2],
    /// Recent alignments, most recent first.
    pub(crate) reps: [u32; 4],
    /// Kind of the previous operation.
    pub(crate) st: usize,
    /// Last difference literal in each byte lane.
    pub(crate) last_diff: [u8; 8],
    /// Previous output byte.
    pub(crate) prev: u8,
    /// Whether the last two runs were empty (2 bits).
    pub(crate) hist: usize,
}

impl Ctx {
    pub(crate) const fn new(d: u32) -> Self {
        Self {
            d,
            stride: 0,
            word: 0,
            sreps: [(4, 2), (8, 3)],
            reps: [d; 4],
            st: ST_JUMP,
            last_diff: [0; 8],
            prev: 0,
            hist: 0,
        }
    }

    /// The state change of a miss at `pos`; for a jump, `d` is the alignment it resolved to.
    /// Jumps to a recent alignment or by an adjustment keep the stride; explicit jumps (to an
    /// old offset or a new distance) clear it.
    pub(crate) fn after_miss(&mut self, pos: u32, op: Miss, d: u32) {
        match op {
            Miss::Diff(x) => {
                self.st = ST_DIFF;
                if let Some(l) = self.last_diff.get_mut((pos & 7) as usize) {
                    *l = x;
                }
            }
            Miss::Plain(_) | Miss::Raw(_) => self.st = ST_PLAIN,
            Miss::Jump(kind, _) => {
                self.jump_to(d);
                if kind == J_OLD || kind == J_NEW {
                    self.stride = 0;
                    self.word = 0;
                }
                self.st = ST_JUMP;
            }
            Miss::Stride(s, w) => {
                self.stride = s;
                self.word = w;
                if s != 0 && self.sreps[0] != (s, w) {
                    self.sreps[1] = self.sreps[0];
                    self.sreps[0] = (s, w);
                }
                self.st = ST_JUMP;
            }
        }
    }

    /// Moves to alignment `d`, keeping the most recent alignments.
    fn jump_to(&mut self, d: u32) {
        let idx = self.reps.iter().position(|&r| r == d).unwrap_or(3);
        // Shift reps[..idx] up by one (dropping reps[idx]) and put the current one first.
        if let Some(head) = self.reps.get_mut(..=idx) {
            head.rotate_right(1);
            if let Some(first) = head.first_mut() {
                *first = self.d;
            }
        }
        self.d = d;
    }
}

/// A miss operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// Literal coded as a difference to the predicted byte.
    Diff(u8),
    /// Literal coded on its own (with the prediction as a hint).
    Plain(u8),
    /// New alignment: kind and parameter (rep index, signed adjustment, old offset, distance).
    Jump(u32, u32),
    /// New stride (0: none) and log2 word size.
    Stride(u8, u8),
    /// This many raw bytes follow (each as eight direct bits).
    Raw(u32),
}

impl Model {
    pub(crate) fn new(flags: u8) -> Self {
        let mut m = Self::blank(flags);
        // Priors (no tables: computed here, in the decoder too): short runs and small
        // differences are likely, and a literal's high bits tend to agree with the prediction.
        let run = UintModel::with_prior(13);
        m.run = [run.clone(), run.clone(), run];
        m.adj = UintModel::with_prior(13);
        for d in &mut m.diff {
            tree_prior(d, 8, |x| {
                let mag = u32::from((x as u8 as i8).unsigned_abs());
                if mag == 0 {
                    0
                } else {
                    1u64 << (2 * (8 - bit_len(mag)))
                }
            });
        }
        if !m.order1 {
            for ctx in m.plain.chunks_mut(0x300) {
                for (i, p) in ctx.iter_mut().enumerate().skip(0x100) {
                    *p = prior(if i < 0x200 { 2900 } else { 1196 });
                }
            }
        }
        m
    }

    const fn blank(flags: u8) -> Self {
        Self {
            run_zero: [[PROB_INIT; 8]; NST],
            run: [UintModel::new(), UintModel::new(), UintModel::new()],
            is_jump: [[PROB_INIT; 8]; NST],
            is_plain: [[PROB_INIT; 8]; NST],
            same_diff: [[PROB_INIT; 8]; NST],
            diff: [[PROB_INIT; 256]; 4],
            plain: [PROB_INIT; 0xC00],
            order1: flags & FLAG_ORDER1 != 0,
            jump_kind: [[PROB_INIT; 8]; NST],
            ext: PROB_INIT,
            adj_sign: PROB_INIT,
            adj: UintModel::new(),
            old_sign: PROB_INIT,
            old: UintModel::new(),
            new: UintModel::new(),
            raw: UintModel::new(),
            stride_flags: [PROB_INIT; 3],
            stride: [PROB_INIT; 256],
            word: [PROB_INIT; 4],
        }
    }

    /// The probability of "empty run" in this state (for pricing).
    #[cfg(feature = "std")]
    pub(crate) fn run_zero_prob(&self, ctx: &Ctx, pos: u32) -> Prob {
        let zc = ctx.hist | ((pos as usize & 1) << 2);
        self.run_zero
            .get(ctx.st)
            .and_then(|a| a.get(zc))
            .copied()
            .unwrap_or(PROB_INIT)
    }

    /// Codes `n - 1` of a non-empty run after an operation of kind `st` (for pricing).
    #[cfg(feature = "std")]
    pub(crate) fn run_tail<I: Io>(&mut self, io: &mut I, st: usize, v: u32) -> Result<u32, Error> {
        self.run.get_mut(st).ok_or(Error::Corrupt)?.code(io, v)
    }

    /// Codes a run length at new position `pos` (and updates the run history in `ctx`).
    pub(crate) fn run<I: Io>(
        &mut self,
        io: &mut I,
        ctx: &mut Ctx,
        pos: u32,
        n: u32,
    ) -> Result<u32, Error> {
        let st = ctx.st;
        let zc = ctx.hist | ((pos as usize & 1) << 2);
        let z = self
            .run_zero
            .get_mut(st)
            .and_then(|a| a.get_mut(zc))
            .ok_or(Error::Corrupt)?;
        let n = if io.bit(z, u32::from(n == 0))? == 1 {
            0
        } else {
            let m = self.run.get_mut(st).ok_or(Error::Corrupt)?;
            m.code(io, n.wrapping_sub(1))?
                .checked_add(1)
                .ok_or(Error::Corrupt)?
        };
        ctx.hist = ((ctx.hist << 1) | usize::from(n == 0)) & 3;
        Ok(n)
    }

    /// Codes a miss operation at new position `pos` with predicted byte `pred`.
    ///
    /// For jumps, the parameter is coded as given; the caller resolves it to an alignment.
    pub(crate) fn miss<I: Io>(
        &mut self,
        io: &mut I,
        ctx: &Ctx,
        pos: u32,
        pred: u8,
        op: Miss,
    ) -> Result<Miss, Error> {
        let st = ctx.st;
        let h = ctx.hist | ((pos as usize & 1) << 2);
        let is_jump = u32::from(matches!(
            op,
            Miss::Jump(..) | Miss::Stride(..) | Miss::Raw(_)
        ));
        let p = self
            .is_jump
            .get_mut(st)
            .and_then(|a| a.get_mut(h))
            .ok_or(Error::Corrupt)?;
        if io.bit(p, is_jump)? == 1 {
            return self.jump(io, st, ctx.sreps, op);
        }
        let is_plain = u32::from(matches!(op, Miss::Plain(_)));
        let p = self
            .is_plain
            .get_mut(st)
            .and_then(|a| a.get_mut(h))
            .ok_or(Error::Corrupt)?;
        if io.bit(p, is_plain)? == 1 {
            let b = match op {
                Miss::Plain(b) => b,
                _ => 0,
            };
            let par = pos as usize & 1;
            let b = if self.order1 {
                let base = (par * 4 + usize::from(ctx.prev >> 6)) * 0x100;
                let probs = self
                    .plain
                    .get_mut(base..base + 0x100)
                    .ok_or(Error::Corrupt)?;
                code_tree(io, probs, 8, u32::from(b))?
            } else {
                let base = (par * 2 + usize::from(ctx.prev >> 7)) * 0x300;
                let probs = self
                    .plain
                    .get_mut(base..base + 0x300)
                    .ok_or(Error::Corrupt)?;
                code_matched(io, probs, u32::from(b), u32::from(pred))?
            };
            Ok(Miss::Plain((b & 0xFF) as u8))
        } else {
            let want = match op {
                Miss::Diff(x) => x,
                _ => 1,
            };
            let lane = (pos & 7) as usize;
            let last = ctx.last_diff.get(lane).copied().unwrap_or(0);
            let same = u32::from(want == last);
            let p = self
                .same_diff
                .get_mut(st)
                .and_then(|a| a.get_mut(lane))
                .ok_or(Error::Corrupt)?;
            let diff = if io.bit(p, same)? == 1 {
                last
            } else {
                let probs = self
                    .diff
                    .get_mut((pos & 3) as usize)
                    .ok_or(Error::Corrupt)?;
                let v = code_tree(io, probs, 8, u32::from(want))?;
                (v & 0xFF) as u8
            };
            if diff == 0 {
                return Err(Error::Corrupt);
            }
            Ok(Miss::Diff(diff))
        }
    }

    fn jump<I: Io>(
        &mut self,
        io: &mut I,
        st: usize,
        sreps: [(u8, u8); 2],
        op: Miss,
    ) -> Result<Miss, Error> {
        let (kind, param) = match op {
            Miss::Jump(k, v) => (k, v),
            Miss::Stride(..) | Miss::Raw(_) => (J_EXT, 0),
            _ => (0, 0),
        };
        let probs = self.jump_kind.get_mut(st).ok_or(Error::Corrupt)?;
        let kind = code_tree(io, probs, 3, kind)?;
        let param = match kind {
            0..=3 => kind,
            J_ADJ => {
                // param: magnitude * 2 + sign (never 0)
                let neg = io.bit(&mut self.adj_sign, param & 1)?;
                let mag = self.adj.code(io, (param >> 1).wrapping_sub(1))?;
                let mag = mag.checked_add(1).ok_or(Error::Corrupt)?;
                mag.checked_mul(2).ok_or(Error::Corrupt)? | neg
            }
            J_OLD => {
                let neg = io.bit(&mut self.old_sign, param & 1)?;
                let mag = self.old.code(io, param >> 1)?;
                mag.checked_mul(2).ok_or(Error::Corrupt)? | neg
            }
            J_NEW => self.new.code(io, param)?,
            _ => {
                let raw = u32::from(matches!(op, Miss::Raw(_)));
                if io.bit(&mut self.ext, raw)? == 1 {
                    let n = match op {
                        Miss::Raw(n) => n,
                        _ => 1,
                    };
                    let n = self.raw.code(io, n.wrapping_sub(1))?;
                    if n >= MAX_RAW {
                        return Err(Error::Corrupt);
                    }
                    return Ok(Miss::Raw(n + 1));
                }
                let (s, w) = match op {
                    Miss::Stride(s, w) => (s, w),
                    _ => (0, 0),
                };
                // Off, one of the two recent strides, or explicit.
                let [f_off, f_rep, f_rep1] = &mut self.stride_flags;
                if io.bit(f_off, u32::from(s == 0))? == 1 {
                    return Ok(Miss::Stride(0, 0));
                }
                let [r0, r1] = sreps;
                if io.bit(f_rep, u32::from((s, w) == r0))? == 1 {
                    return Ok(Miss::Stride(r0.0, r0.1));
                }
                if io.bit(f_rep1, u32::from((s, w) == r1))? == 1 {
                    return Ok(Miss::Stride(r1.0, r1.1));
                }
                let s = code_tree(io, &mut self.stride, 8, u32::from(s))?;
                if s == 0 {
                    return Err(Error::Corrupt);
                }
                let w = code_tree(io, &mut self.word, 2, u32::from(w))?;
                return Ok(Miss::Stride((s & 0xFF) as u8, (w & 3) as u8));
            }
        };
        Ok(Miss::Jump(kind, param))
    }
}

/// Magnitude * 2 + sign, the encoding of signed jump parameters.
#[cfg(feature = "std")]
pub(crate) const fn signed_param(v: i64) -> u32 {
    let mag = v.unsigned_abs();
    let mag = if mag > (u32::MAX >> 1) as u64 {
        (u32::MAX >> 1) as u64
    } else {
        mag
    };
    ((mag as u32) << 1) | (v < 0) as u32
}

/// Decodes `signed_param`.
pub(crate) const fn param_signed(p: u32) -> i64 {
    let mag = (p >> 1) as i64;
    if p & 1 == 1 { -mag } else { mag }
}

/// Random access to `old ++ new` for predictions.
pub(crate) trait Source {
    /// Byte `v` of the virtual concatenation, or 0 where it may not be read.
    fn virt(&mut self, v: u64) -> Result<u8, Error>;
    /// The old image's size.
    fn old_size(&self) -> u64;
}

/// The byte alignment `d` predicts for new position `q` (0 for `d = 0` or before the image).
#[inline]
pub(crate) fn aligned<S: Source>(src: &mut S, d: u32, q: i64) -> Result<u8, Error> {
    if d == 0 || q < 0 {
        return Ok(0);
    }
    let v = src.old_size() as i64 + q - i64::from(d);
    if v < 0 {
        return Ok(0);
    }
    src.virt(v.cast_unsigned())
}

/// Carry cache of the stride prediction: the carry into position `at` under alignment `d`,
/// stride `s` and word size `w` (a cache only: predictions never depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Carry {
    at: u32,
    d: u32,
    s: u8,
    w: u8,
    c: i16,
}

impl Carry {
    pub(crate) const NONE: Self = Self {
        at: u32::MAX,
        d: 0,
        s: 0,
        w: 0,
        c: 0,
    };
}

/// One byte lane of the stride prediction: `aligned(q) + new(q - s) - aligned(q - s) + c`.
#[inline]
fn lane_sum<S: Source>(src: &mut S, ctx: &Ctx, q: u32, c: i32) -> Result<i32, Error> {
    let s = i64::from(ctx.stride);
    let q = i64::from(q);
    let a = aligned(src, ctx.d, q)?;
    let (b, cc) = if q >= s {
        let b = src.virt((src.old_size() as i64 + q - s).cast_unsigned())?;
        (b, aligned(src, ctx.d, q - s)?)
    } else {
        (0, 0)
    };
    Ok(i32::from(a) + i32::from(b) - i32::from(cc) + c)
}

/// The byte predicted for new position `p` (all bytes before `p` must be readable).
pub(crate) fn predict<S: Source>(
    src: &mut S,
    ctx: &Ctx,
    p: u32,
    carry: &mut Carry,
) -> Result<u8, Error> {
    if ctx.stride == 0 {
        return aligned(src, ctx.d, i64::from(p));
    }
    let lane = p & ((1u32 << ctx.word) - 1);
    let cin = if lane == 0 {
        0
    } else if carry.at == p && carry.d == ctx.d && carry.s == ctx.stride && carry.w == ctx.word {
        i32::from(carry.c)
    } else {
        let mut c = 0;
        for q in p - lane..p {
            c = lane_sum(src, ctx, q, c)? >> 8;
        }
        c
    };
    let t = lane_sum(src, ctx, p, cin)?;
    *carry = Carry {
        at: p.wrapping_add(1),
        d: ctx.d,
        s: ctx.stride,
        w: ctx.word,
        c: (t >> 8) as i16,
    };
    Ok((t & 0xFF).to_le_bytes()[0])
}

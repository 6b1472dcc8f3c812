//! The context model shared by encoder and decoder.
//!
//! The new image is coded as a sequence of operations against an *alignment* `d`: the byte
//! predicted for new position `p` is the byte at position `old_size + p - d` of the virtual
//! concatenation `old ++ new` (so `d <= old_size + p` reaches into the old image, small `d`
//! reaches back into the new image already written, and `d = 0` predicts zero).
//!
//! * `RUN n`: the next `n` bytes equal their prediction.
//! * `MISS`: either a literal (coded as a difference to the prediction, like bsdiff's add
//!   bytes, or as a plain byte in the context of the previous byte, like bsdiff's extra
//!   bytes), after which the alignment continues; or a `JUMP` to a new alignment (one of the
//!   four most recent ones, a small adjustment, an explicit old-image offset or an explicit
//!   distance back into the new image).

#![allow(
    clippy::cast_possible_truncation,
    reason = "positions and lengths are below the image sizes, which the header bounds to u32; byte values are masked to 8 bits"
)]

use crate::Error;
use crate::rc::{Io, PROB_INIT, Prob};

/// Contexts for operation kinds: after a jump (or at the start), after a difference literal,
/// after a plain literal.
pub(crate) const ST_JUMP: usize = 0;
pub(crate) const ST_DIFF: usize = 1;
pub(crate) const ST_PLAIN: usize = 2;

/// Header flag bit 0: order-1 plain literals instead of matched literals.
pub(crate) const FLAG_ORDER1: u8 = 1;
/// All flag bits this version understands.
pub(crate) const KNOWN_FLAGS: u8 = FLAG_ORDER1;

/// Jump kinds.
pub(crate) const J_ADJ: u32 = 4;
pub(crate) const J_OLD: u32 = 5;
pub(crate) const J_NEW: u32 = 6;

/// An adaptive model for unsigned integers up to 2^32 - 1: the bit length of `v + 1`, then
/// the bits below the leading one (all adaptive for short numbers, the top three adaptive and
/// the rest direct for long ones).
#[derive(Debug, Clone)]
pub(crate) struct UintModel {
    zero: Prob,
    slot: [Prob; 64],
    low: [Prob; 128],
    high: [[Prob; 8]; 26],
}

impl UintModel {
    pub(crate) const fn new() -> Self {
        Self {
            zero: PROB_INIT,
            slot: [PROB_INIT; 64],
            low: [PROB_INIT; 128],
            high: [[PROB_INIT; 8]; 26],
        }
    }

    pub(crate) fn code<I: Io>(&mut self, io: &mut I, v: u32) -> Result<u32, Error> {
        if io.bit(&mut self.zero, u32::from(v == 0))? == 1 {
            return Ok(0);
        }
        let x = u64::from(v) + 1;
        let nb = 64 - x.leading_zeros(); // 1..=33
        let slot = code_tree(io, &mut self.slot, 6, nb - 1)?;
        if slot == 0 {
            return Err(Error::Corrupt); // zero has its own flag
        }
        if slot > 32 {
            return Err(Error::Corrupt);
        }
        let k = slot; // bits below the leading one
        let mant_in = (x & ((1u64 << k) - 1)) as u32;
        let mant = if k <= 6 {
            let base = 1usize << k;
            let mut m = 1usize;
            for i in (0..k).rev() {
                let b = (mant_in >> i) & 1;
                let idx = base + m - 1;
                let p = self.low.get_mut(idx).ok_or(Error::Corrupt)?;
                let b = io.bit(p, b)?;
                m = (m << 1) | b as usize;
            }
            (m - 1) as u32 - ((1u32 << k) - 1)
        } else {
            let probs = self.high.get_mut((k - 7) as usize).ok_or(Error::Corrupt)?;
            let top = code_tree(io, probs, 3, mant_in >> (k - 3))?;
            let rest = io.direct(mant_in & ((1u32 << (k - 3)) - 1), k - 3)?;
            (top << (k - 3)) | rest
        };
        let x = (1u64 << k) | u64::from(mant);
        u32::try_from(x - 1).map_err(|_| Error::Corrupt)
    }
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
    run: [UintModel; 3],
    is_jump: [[Prob; 4]; 3],
    is_plain: [[Prob; 4]; 3],
    same_diff: [[Prob; 8]; 3],
    diff: [[Prob; 256]; 4],
    plain: [Prob; 0xC00],
    /// Literal model variant (header flag bit 0): LZMA matched literals in the context of
    /// two bits of the previous byte, or plain order-1 literals on three bits of it.
    order1: bool,
    jump_kind: [[Prob; 8]; 3],
    adj_sign: [Prob; 2],
    adj: UintModel,
    old_sign: [Prob; 2],
    old: UintModel,
    new: UintModel,
}

/// The state that evolves with the coded data (besides the probabilities).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    /// Current alignment.
    pub(crate) d: u32,
    /// Recent alignments, most recent first.
    pub(crate) reps: [u32; 4],
    /// Kind of the previous operation.
    pub(crate) st: usize,
    /// Last difference literal.
    pub(crate) last_diff: [u8; 8],
    /// Last run length after each kind of operation.
    pub(crate) last_run: [u32; 3],
    /// Previous output byte.
    pub(crate) prev: u8,
    /// Recent miss kinds (2 bits).
    pub(crate) hist: usize,
}

impl Ctx {
    pub(crate) const fn new(d: u32) -> Self {
        Self {
            d,
            reps: [d; 4],
            st: ST_JUMP,
            last_diff: [0; 8],
            last_run: [u32::MAX; 3],
            prev: 0,
            hist: 0,
        }
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
}

impl Model {
    pub(crate) const fn new(flags: u8) -> Self {
        Self {
            run: [UintModel::new(), UintModel::new(), UintModel::new()],
            is_jump: [[PROB_INIT; 4]; 3],
            is_plain: [[PROB_INIT; 4]; 3],
            same_diff: [[PROB_INIT; 8]; 3],
            diff: [[PROB_INIT; 256]; 4],
            plain: [PROB_INIT; 0xC00],
            order1: flags & FLAG_ORDER1 != 0,
            jump_kind: [[PROB_INIT; 8]; 3],
            adj_sign: [PROB_INIT; 2],
            adj: UintModel::new(),
            old_sign: [PROB_INIT; 2],
            old: UintModel::new(),
            new: UintModel::new(),
        }
    }

    /// Codes a run length.
    /// Codes a run length (and updates the run history in `ctx`).
    pub(crate) fn run<I: Io>(&mut self, io: &mut I, ctx: &mut Ctx, n: u32) -> Result<u32, Error> {
        let st = ctx.st;
        let m = self.run.get_mut(st).ok_or(Error::Corrupt)?;
        let n = m.code(io, n)?;
        if let Some(l) = ctx.last_run.get_mut(st) {
            *l = n;
        }
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
        let h = ctx.hist & 3;
        let pa = (pos & 3) as usize;
        let is_jump = u32::from(matches!(op, Miss::Jump(..)));
        let p = self
            .is_jump
            .get_mut(st)
            .and_then(|a| a.get_mut(h))
            .ok_or(Error::Corrupt)?;
        if io.bit(p, is_jump)? == 1 {
            let (kind, param) = match op {
                Miss::Jump(k, v) => (k, v),
                _ => (0, 0),
            };
            let probs = self.jump_kind.get_mut(st).ok_or(Error::Corrupt)?;
            let kind = code_tree(io, probs, 3, kind)?;
            let param = match kind {
                0..=3 => kind,
                J_ADJ => {
                    // param: zigzag of the signed adjustment (never 0)
                    let neg = io.bit(&mut self.adj_sign[0], param & 1)?;
                    let mag = self.adj.code(io, (param >> 1).wrapping_sub(1))?;
                    let mag = mag.checked_add(1).ok_or(Error::Corrupt)?;
                    mag.checked_mul(2).ok_or(Error::Corrupt)? | neg
                }
                J_OLD => {
                    let neg = io.bit(&mut self.old_sign[0], param & 1)?;
                    let mag = self.old.code(io, param >> 1)?;
                    mag.checked_mul(2).ok_or(Error::Corrupt)? | neg
                }
                J_NEW => self.new.code(io, param)?,
                _ => return Err(Error::Corrupt),
            };
            return Ok(Miss::Jump(kind, param));
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
            let b = if self.order1 {
                let base = usize::from(ctx.prev >> 5) * 0x100;
                let probs = self
                    .plain
                    .get_mut(base..base + 0x100)
                    .ok_or(Error::Corrupt)?;
                code_tree(io, probs, 8, u32::from(b))?
            } else {
                let base = usize::from(ctx.prev >> 6) * 0x300;
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
                let probs = self.diff.get_mut(pa).ok_or(Error::Corrupt)?;
                let v = code_tree(io, probs, 8, u32::from(want))?;
                (v & 0xFF) as u8
            };
            if diff == 0 {
                return Err(Error::Corrupt);
            }
            Ok(Miss::Diff(diff))
        }
    }
}

/// Zigzag-free signed encoding used by jump parameters: magnitude * 2 + sign.
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

//! The encoder (host side, `std`): greedy bsdiff-style alignment search priced with the
//! decoder's own adaptive model.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "positions are below the image sizes, checked to fit u32 in `create`"
)]
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::apply::{REQUIRED_RAM, jump_to, resolve_jump};
use crate::format::{Geometry, Header, INPLACE_HEADER_LEN, Mode};
use crate::model::{
    Ctx, FLAG_ORDER1, J_ADJ, J_NEW, J_OLD, Miss, Model, ST_DIFF, ST_JUMP, ST_PLAIN, signed_param,
};
use crate::rc::{Pricer, RcEnc};

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
    /// An image is 4 GiB or larger.
    TooLarge,
    /// The in-place geometry cannot work (see the message).
    Geometry(&'static str),
    /// Internal model error (a bug).
    Internal(Error),
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLarge => f.write_str("images must be smaller than 4 GiB"),
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
    let old_size = u32::try_from(old.len()).map_err(|_| CreateError::TooLarge)?;
    let new_size = u32::try_from(new.len()).map_err(|_| CreateError::TooLarge)?;
    if let Some(ip) = opts.in_place {
        return best_of(model_variants(new.len()), |flags| {
            create_in_place(old, new, old_size, new_size, &ip, flags)
        });
    }
    let variants = model_variants(new.len());
    let delta = || -> Result<Patch, CreateError> {
        best_of(variants, |flags| {
            let mut enc = Encoder::new(old, new);
            let payload = enc.segment(0, new_size, 0, flags)?;
            Ok(assemble(
                Mode::Sequential,
                old_size,
                new_size,
                sha256(old),
                sha256(new),
                None,
                flags,
                &payload,
            ))
        })
    };
    let full = || -> Result<Patch, CreateError> {
        best_of(variants, |flags| {
            let mut enc = Encoder::new(&[], new);
            let payload = enc.segment(0, new_size, 0, flags)?;
            Ok(assemble(
                Mode::Full,
                0,
                new_size,
                [0; 32],
                sha256(new),
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
    let mut hb = [0u8; INPLACE_HEADER_LEN];
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
        payload.extend_from_slice(&u32::try_from(seg.len()).unwrap_or(u32::MAX).to_le_bytes());
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

const HASH_BITS: u32 = 20;
const MIN_MATCH: usize = 4;
const CHAIN_DEPTH: usize = 48;
const WINDOW: usize = 32;
/// Estimated cost of one mispredicted byte, in 1/16 bit.
const fn miss_cost() -> u32 {
    4 * 16
}

/// Greedy encoder over `old ++ new`.
struct Encoder {
    buf: Vec<u8>,
    old_len: usize,
    head: Vec<u32>,
    prev: Vec<u32>,
    inserted: usize,
}

fn hash4(b: &[u8]) -> usize {
    let mut w = [0u8; 4];
    w.copy_from_slice(b.get(..4).unwrap_or(&[0; 4]));
    (u32::from_le_bytes(w).wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

impl Encoder {
    fn new(old: &[u8], new: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(old.len() + new.len());
        buf.extend_from_slice(old);
        buf.extend_from_slice(new);
        let n = buf.len();
        let mut e = Self {
            buf,
            old_len: old.len(),
            head: alloc::vec![u32::MAX; 1 << HASH_BITS],
            prev: alloc::vec![u32::MAX; n],
            inserted: 0,
        };
        e.insert_upto(old.len());
        e
    }

    fn insert_upto(&mut self, end: usize) {
        let n = self.buf.len();
        while self.inserted < end {
            let i = self.inserted;
            if i + MIN_MATCH <= n {
                let h = hash4(&self.buf[i..]);
                self.prev[i] = self.head[h];
                self.head[h] = i as u32;
            }
            self.inserted += 1;
        }
    }

    /// Predicted byte for new position `p` under alignment `d` (mirrors the decoder).
    #[inline]
    fn pred(&self, d: u32, p: u32, min_old: u32) -> u8 {
        if d == 0 {
            return 0;
        }
        let t = self.old_len as u64 + u64::from(p);
        let Some(v) = t.checked_sub(u64::from(d)) else {
            return 0;
        };
        if v < self.old_len as u64 && v < u64::from(min_old) {
            return 0;
        }
        self.buf[v as usize]
    }

    #[inline]
    fn newb(&self, p: u32) -> u8 {
        self.buf[self.old_len + p as usize]
    }

    fn run_len(&self, d: u32, p: u32, end: u32, min_old: u32) -> u32 {
        let mut q = p;
        while q < end && self.pred(d, q, min_old) == self.newb(q) {
            q += 1;
        }
        q - p
    }

    fn score(&self, d: u32, p: u32, end: u32, min_old: u32, from: u32) -> u32 {
        let stop = (p + WINDOW as u32).min(end);
        let mut s = 0;
        let mut q = p + from;
        while q < stop {
            s += u32::from(self.pred(d, q, min_old) == self.newb(q));
            q += 1;
        }
        s
    }

    /// Candidate alignments at `p` found in the hash chains, with their exact match length.
    fn candidates(&self, p: u32, end: u32, min_old: u32, out: &mut Vec<(u32, u32)>) {
        out.clear();
        let t = self.old_len + p as usize;
        if t + MIN_MATCH > self.buf.len() || p + MIN_MATCH as u32 > end {
            return;
        }
        let h = hash4(&self.buf[t..]);
        let mut c = self.head[h];
        let mut depth = 0;
        let limit = (end - p) as usize;
        while c != u32::MAX && depth < CHAIN_DEPTH {
            let ci = c as usize;
            depth += 1;
            if ci < t && !(ci < self.old_len && ci < min_old as usize) {
                let mut l = 0;
                while l < limit && l < 4096 && self.buf[ci + l] == self.buf[t + l] {
                    l += 1;
                }
                if l >= MIN_MATCH {
                    let d = (t - ci) as u32;
                    out.push((d, l as u32));
                }
            }
            c = self.prev[ci];
        }
    }

    fn segment(
        &mut self,
        start: u32,
        end: u32,
        min_old: u32,
        flags: u8,
    ) -> Result<Vec<u8>, CreateError> {
        seg_encode(self, start, end, min_old, flags)
    }
}

fn seg_encode(
    e: &mut Encoder,
    start: u32,
    end: u32,
    min_old: u32,
    flags: u8,
) -> Result<Vec<u8>, CreateError> {
    let mut model = Model::new(flags);
    let mut rc = RcEnc::new();
    let d0 = if e.old_len == 0 { 0 } else { e.old_len as u32 };
    let mut ctx = Ctx::new(d0);
    let mut p = start;
    let mut cands = Vec::new();
    // Diagnostics: SUITCASE_DELTA_STATS=1 prints the cost of each operation kind to stderr.
    let stats_on = std::env::var_os("SUITCASE_DELTA_STATS").is_some();
    let mc = miss_cost();
    let mut stats = [(0u64, 0u64); 10];
    let mut buckets: Vec<u64> = alloc::vec![0; (end as usize >> 14) + 1];
    let mut last_bytes = 0usize;
    let header = Header {
        mode: Mode::Sequential,
        ram_bound: 0,
        old_size: e.old_len as u32,
        new_size: 0,
        payload_len: 0,
        old_digest: [0; 32],
        new_digest: [0; 32],
        geometry: None,
        flags,
    };
    while p < end {
        e.insert_upto(e.old_len + p as usize);
        if stats_on {
            let now = rc_len(&rc);
            buckets[p as usize >> 14] += (now - last_bytes) as u64;
            last_bytes = now;
        }
        let r = e.run_len(ctx.d, p, end, min_old);
        if stats_on {
            let mut pr = Pricer::new();
            let mut c2 = ctx;
            let _ = model.run(&mut pr, &mut c2, r);
            stats[0].0 += 1;
            stats[0].1 += u64::from(pr.cost);
        }
        model.run(&mut rc, &mut ctx, r)?;
        p += r;
        if p >= end {
            break;
        }
        e.insert_upto(e.old_len + p as usize);
        ctx.prev = if p > start { e.newb(p - 1) } else { 0 };
        let pred = e.pred(ctx.d, p, min_old);
        let byte = e.newb(p);
        // Literal options.
        let diff = Miss::Diff(byte.wrapping_sub(pred));
        let plain = Miss::Plain(byte);
        let price = |m: &mut Model, op: Miss| -> u32 {
            let mut pr = Pricer::new();
            if m.miss(&mut pr, &ctx, p, pred, op).is_ok() {
                pr.cost
            } else {
                u32::MAX
            }
        };
        let (lit, lit_cost) = {
            let pd = price(&mut model, diff);
            let pp = price(&mut model, plain);
            if pd <= pp { (diff, pd) } else { (plain, pp) }
        };
        let stay = e.score(ctx.d, p, end, min_old, 1);
        let window = (end - p).min(WINDOW as u32);
        let cost_stay = lit_cost + (window - 1 - stay) * mc;
        // Jump candidates.
        e.candidates(p, end, min_old, &mut cands);
        for &r in &ctx.reps {
            if r != 0 && r != ctx.d && e.pred(r, p, min_old) == byte {
                cands.push((r, 1));
            }
        }
        let mut best: Option<(Miss, u32)> = None;
        let mut best_cost = cost_stay;
        for &(d, _len) in &cands {
            if d == ctx.d {
                continue;
            }
            let sc = e.score(d, p, end, min_old, 0);
            let miss_cost = (window - sc) * mc;
            if miss_cost >= best_cost {
                continue;
            }
            let (op, jc) = jump_price(&mut model, e, &ctx, p, d, pred);
            let c = jc.saturating_add(miss_cost);
            if c < best_cost {
                best_cost = c;
                best = Some((op, d));
            }
        }
        match best {
            Some((op, d)) => {
                if stats_on {
                    let mut pr = Pricer::new();
                    let _ = model.miss(&mut pr, &ctx, p, pred, op);
                    let k = if let Miss::Jump(k, _) = op {
                        3 + k.min(6) as usize
                    } else {
                        0
                    };
                    stats[k].0 += 1;
                    stats[k].1 += u64::from(pr.cost);
                }
                model.miss(&mut rc, &ctx, p, pred, op)?;
                let Miss::Jump(kind, param) = op else {
                    return Err(CreateError::Internal(Error::Corrupt));
                };
                let got = resolve_jump(&ctx, &header, p, kind, param)?;
                debug_assert_eq!(got, d);
                jump_to(&mut ctx, got);
                ctx.st = ST_JUMP;
            }
            None => {
                if stats_on {
                    let mut pr = Pricer::new();
                    let _ = model.miss(&mut pr, &ctx, p, pred, lit);
                    let k = if let Miss::Diff(_) = lit { 1 } else { 2 };
                    stats[k].0 += 1;
                    stats[k].1 += u64::from(pr.cost);
                }
                model.miss(&mut rc, &ctx, p, pred, lit)?;
                match lit {
                    Miss::Diff(x) => {
                        ctx.st = ST_DIFF;
                        ctx.last_diff[(p & 7) as usize] = x;
                    }
                    _ => ctx.st = ST_PLAIN,
                }
                p += 1;
            }
        }
    }
    if stats_on {
        let names = [
            "run", "diff", "plain", "rep0", "rep1", "rep2", "rep3", "adj", "old", "new",
        ];
        for (n, (c, b)) in names.iter().zip(stats) {
            std::eprintln!("  {n:6} {c:8} ops {:9} bytes", b / 128);
        }
        let mut top: Vec<(u64, usize)> = buckets.iter().copied().zip(0..).collect();
        top.sort_unstable_by(|a, b| b.cmp(a));
        for (b, i) in top.iter().take(20) {
            std::eprintln!("  bucket {:#08x}: {b} bytes", i << 14);
        }
    }
    Ok(rc.finish())
}

fn rc_len(rc: &RcEnc) -> usize {
    rc.out.len()
}

fn jump_price(
    model: &mut Model,
    e: &Encoder,
    ctx: &Ctx,
    p: u32,
    target: u32,
    pred: u8,
) -> (Miss, u32) {
    let mut best = (Miss::Jump(J_NEW, 0), u32::MAX);
    let mut options: [Option<Miss>; 4] = [None; 4];
    if let Some(k) = ctx.reps.iter().position(|&r| r == target) {
        options[0] = Some(Miss::Jump(k as u32, k as u32));
    }
    let delta = i64::from(target) - i64::from(ctx.d);
    if delta != 0 && delta.unsigned_abs() < (1 << 30) {
        options[1] = Some(Miss::Jump(J_ADJ, signed_param(delta)));
    }
    let t = e.old_len as u64 + u64::from(p);
    if u64::from(target) > u64::from(p) {
        let old_pos = t - u64::from(target);
        options[2] = Some(Miss::Jump(
            J_OLD,
            signed_param(old_pos as i64 - i64::from(p)),
        ));
    } else {
        options[3] = Some(Miss::Jump(J_NEW, target - 1));
    }
    for op in options.into_iter().flatten() {
        let mut pr = Pricer::new();
        if model.miss(&mut pr, ctx, p, pred, op).is_ok() && pr.cost < best.1 {
            best = (op, pr.cost);
        }
    }
    best
}

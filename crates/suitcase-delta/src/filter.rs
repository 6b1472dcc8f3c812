//! The Thumb branch filter (header flag bit 1): calls are coded with absolute targets.
//!
//! A Thumb `BL` stores its target relative to its own address, so when code moves, every call
//! into code that did not move (and out of code that did) changes. With the filter, the
//! encoder and the decoder both see the images with the 22-bit offset of each `BL` replaced by
//! the absolute target (in halfwords), exactly as xz's ARM-Thumb BCJ filter does: at every
//! even offset `s` with `s + 4 <= size` where byte `s + 1` is `0xF0..=0xF7` and byte `s + 3`
//! is `0xF8..=0xFF`, the offset bits are rewritten and those pattern bits kept. Two such
//! instructions cannot overlap (byte `s + 3` of one would have to be `0xF0..=0xF7`), so
//! whether a byte belongs to one is decided from the bytes around it alone, in either form:
//! the decoder filters old-image bytes as it reads them and unfilters its output as it
//! writes it, with a few bytes of look-ahead and no extra state.

#![allow(
    clippy::cast_possible_truncation,
    reason = "offsets are below the image size, which the header bounds to u32"
)]

use crate::Error;
#[cfg(feature = "std")]
use alloc::vec::Vec;

/// Whether bytes `s + 1` and `s + 3` mark a `BL` at even offset `s`.
#[inline]
const fn is_bl(b1: u8, b3: u8) -> bool {
    b1 & 0xF8 == 0xF0 && b3 & 0xF8 == 0xF8
}

/// Rewrites the `BL` at offset `s` between relative (`to_abs`) and absolute form.
#[inline]
fn convert(b: [u8; 4], s: u32, to_abs: bool) -> [u8; 4] {
    let src = (u32::from(b[1] & 7) << 19)
        | (u32::from(b[0]) << 11)
        | (u32::from(b[3] & 7) << 8)
        | u32::from(b[2]);
    let here = (s >> 1).wrapping_add(2);
    let dest = if to_abs {
        src.wrapping_add(here)
    } else {
        src.wrapping_sub(here)
    } & 0x3F_FFFF;
    let d = dest.to_le_bytes();
    [
        (dest >> 11).to_le_bytes()[0],
        0xF0 | (d[2] >> 3 & 7),
        d[0],
        0xF8 | (d[1] & 7),
    ]
}

/// Byte `k` of an image of `size` bytes after (`to_abs`) or before filtering, from the other
/// form's bytes `get(k - 2 ..= k + 3)`.
pub(crate) fn byte_at(
    k: u32,
    size: u32,
    to_abs: bool,
    mut get: impl FnMut(u32) -> Result<u8, Error>,
) -> Result<u8, Error> {
    let s0 = k & !1;
    for s in [Some(s0), s0.checked_sub(2)].into_iter().flatten() {
        if u64::from(s) + 4 <= u64::from(size) && is_bl(get(s + 1)?, get(s + 3)?) {
            let b = [get(s)?, get(s + 1)?, get(s + 2)?, get(s + 3)?];
            let [b0, b1, b2, b3] = convert(b, s, to_abs);
            return Ok(match (k - s) & 3 {
                0 => b0,
                1 => b1,
                2 => b2,
                _ => b3,
            });
        }
    }
    get(k)
}

/// The filtered (absolute-target) form of a whole image.
#[cfg(feature = "std")]
pub(crate) fn filter_image(x: &[u8]) -> Vec<u8> {
    let mut y = x.to_vec();
    let mut s = 0usize;
    while let Some(&[b0, b1, b2, b3]) = x.get(s..s + 4) {
        if is_bl(b1, b3) {
            if let Some(out) = y.get_mut(s..s + 4) {
                out.copy_from_slice(&convert([b0, b1, b2, b3], s as u32, true));
            }
            s += 4;
        } else {
            s += 2;
        }
    }
    y
}

/// Share of even offsets that hold a `BL` (Thumb code: a few percent; other data: ~0.1 %).
#[cfg(feature = "std")]
pub(crate) fn bl_density(x: &[u8]) -> f64 {
    let mut n = 0usize;
    let mut s = 0usize;
    while let Some(&[_, b1, _, b3]) = x.get(s..s + 4) {
        if is_bl(b1, b3) {
            n += 1;
        }
        s += 2;
    }
    #[allow(clippy::cast_precision_loss, reason = "a ratio")]
    let r = n as f64 / (x.len() / 2).max(1) as f64;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_round_trips_and_is_local() {
        let mut x = Vec::new();
        let mut r = 0x1234_5678u32;
        for _ in 0..4000 {
            r = r.wrapping_mul(1_103_515_245).wrapping_add(12345);
            x.push((r >> 24) as u8 | if r & 0x30 == 0 { 0xF0 } else { 0 });
        }
        let y = filter_image(&x);
        assert_ne!(x, y);
        let size = x.len() as u32;
        for k in 0..size {
            let f = byte_at(k, size, true, |j| Ok(x[j as usize])).unwrap();
            assert_eq!(f, y[k as usize], "filter at {k}");
            let u = byte_at(k, size, false, |j| Ok(y[j as usize])).unwrap();
            assert_eq!(u, x[k as usize], "unfilter at {k}");
        }
    }

    #[test]
    fn call_to_a_fixed_target_keeps_its_bytes() {
        // BL from 0x100 and from 0x180 to 0x1000: different bytes, same filtered form.
        let bl = |from: u32, to: u32| {
            let off = (to - (from + 4)) >> 1;
            let hi = 0xF000 | ((off >> 11) & 0x7FF);
            let lo = 0xF800 | (off & 0x7FF);
            let (h, l) = ((hi as u16).to_le_bytes(), (lo as u16).to_le_bytes());
            [h[0], h[1], l[0], l[1]]
        };
        let a = convert(bl(0x100, 0x1000), 0x100, true);
        let b = convert(bl(0x180, 0x1000), 0x180, true);
        assert_eq!(a, b);
        assert_eq!(convert(a, 0x100, false), bl(0x100, 0x1000));
    }
}

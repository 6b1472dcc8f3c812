//! Adaptive binary range coder (the LZMA design: 32-bit range, 12-bit probabilities).
//!
//! Hand-written rather than taken from a crate: the applier must decode one bounded step at a
//! time from a caller-fed buffer, without allocation, with its whole model inside the patch's
//! RAM bound. `lzma-rs` and `lzma-rust` allocate their dictionary and buffers on the heap;
//! `miniz_oxide`/`zstd` need a 32 KiB to 8 MiB window; `heatshrink` has no entropy coder
//! (its patches are 30-45 % larger). What we need is only the arithmetic coder itself (about
//! a hundred lines), with the window replaced by random access to the old and new images.

use crate::Error;

/// Precision of a probability: `p / 2^PROB_BITS` is the chance of a 0 bit.
pub(crate) const PROB_BITS: u32 = 12;
/// The initial probability (one half).
pub(crate) const PROB_INIT: u16 = 1 << (PROB_BITS - 1);
const PROB_TOTAL: u32 = 1 << PROB_BITS;
const TOP: u32 = 1 << 24;

/// One adaptive probability.
pub(crate) type Prob = u16;

/// Adaptation shift by how many bits a probability has seen (the top four bits of a
/// [`Prob`]): fast while a context is new, steady once it is trained.
const RATE: [u32; 16] = [1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5];
const P_MIN: u32 = 31;
const P_MAX: u32 = PROB_TOTAL - 31;

/// The probability part of a [`Prob`].
#[inline]
pub(crate) const fn p12(p: Prob) -> u32 {
    (p & 0x0FFF) as u32
}

#[inline]
pub(crate) fn update(p: &mut Prob, bit: u32) {
    let v = p12(*p);
    let n = u32::from(*p >> 12);
    let rate = RATE.get(n as usize).copied().unwrap_or(5);
    let nv = if bit == 0 {
        v + ((PROB_TOTAL - v) >> rate)
    } else {
        v - (v >> rate)
    };
    let nv = nv.clamp(P_MIN, P_MAX);
    let n2 = if n < 15 { n + 1 } else { 15 };
    // nv < 4096 and n2 < 16: the packed value fits 16 bits.
    *p = u16::try_from(nv | (n2 << 12)).unwrap_or(PROB_INIT);
}

/// The coding side of the shared model: an encoder, a decoder or a price estimator.
///
/// Model code calls `bit`/`direct` with the value it wants to code; an encoder codes it and
/// returns it, a decoder ignores it and returns the decoded value.
pub(crate) trait Io {
    /// Codes one bit with an adaptive probability.
    fn bit(&mut self, p: &mut Prob, bit: u32) -> Result<u32, Error>;
    /// Codes `n` (at most 32) equiprobable bits, most significant first.
    fn direct(&mut self, value: u32, n: u32) -> Result<u32, Error>;
}

/// Range decoder state (the input cursor lives with the caller).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RcDec {
    range: u32,
    code: u32,
}

impl RcDec {
    /// Bytes that `init` consumes.
    pub(crate) const INIT_BYTES: usize = 4;

    pub(crate) const fn new() -> Self {
        Self {
            range: 0xFFFF_FFFF,
            code: 0,
        }
    }

    /// Starts decoding from the first four bytes of a stream (LZMA's always-zero first byte
    /// is not transmitted).
    pub(crate) fn init(&mut self, bytes: [u8; 4]) -> Result<(), Error> {
        self.range = 0xFFFF_FFFF;
        self.code = u32::from_be_bytes(bytes);
        if self.code == 0xFFFF_FFFF {
            return Err(Error::Corrupt);
        }
        Ok(())
    }
}

/// A decoder bound to an input slice for one step.
#[derive(Debug)]
pub(crate) struct DecIo<'a> {
    pub(crate) rc: &'a mut RcDec,
    pub(crate) input: &'a [u8],
    pub(crate) pos: usize,
    /// The input is the end of the stream: read zeros past it (the encoder drops trailing
    /// zero bytes).
    pub(crate) pad: bool,
}

impl DecIo<'_> {
    #[inline]
    fn normalize(&mut self) -> Result<(), Error> {
        while self.rc.range < TOP {
            let b = match self.input.get(self.pos) {
                Some(&b) => b,
                None if self.pad => 0,
                None => return Err(Error::Truncated),
            };
            self.pos += 1;
            self.rc.range <<= 8;
            // code < range < 2^24 here, so the shift cannot overflow.
            self.rc.code = (self.rc.code << 8) | u32::from(b);
        }
        Ok(())
    }
}

impl Io for DecIo<'_> {
    #[inline]
    fn bit(&mut self, p: &mut Prob, _bit: u32) -> Result<u32, Error> {
        let bound = (self.rc.range >> PROB_BITS) * p12(*p);
        let bit = if self.rc.code < bound {
            self.rc.range = bound;
            0
        } else {
            self.rc.range -= bound;
            self.rc.code -= bound;
            1
        };
        update(p, bit);
        self.normalize()?;
        Ok(bit)
    }

    fn direct(&mut self, _value: u32, n: u32) -> Result<u32, Error> {
        let mut v = 0u32;
        for _ in 0..n {
            self.rc.range >>= 1;
            let bit = if self.rc.code >= self.rc.range {
                self.rc.code -= self.rc.range;
                1
            } else {
                0
            };
            v = (v << 1) | bit;
            self.normalize()?;
        }
        Ok(v)
    }
}

#[cfg(feature = "std")]
pub(crate) use enc::{BIT, Pricer, RcEnc, Trainer};

#[cfg(feature = "std")]
mod enc {
    use super::{Io, PROB_BITS, PROB_TOTAL, Prob, TOP, p12, update};

    use crate::Error;
    use alloc::vec::Vec;

    /// Range encoder writing to a vector.
    #[derive(Debug)]
    pub(crate) struct RcEnc {
        low: u64,
        range: u32,
        cache: u8,
        cache_size: u64,
        pub(crate) out: Vec<u8>,
    }

    impl RcEnc {
        pub(crate) const fn new() -> Self {
            Self {
                low: 0,
                range: 0xFFFF_FFFF,
                cache: 0,
                cache_size: 1,
                out: Vec::new(),
            }
        }

        fn shift_low(&mut self) {
            if self.low < 0xFF00_0000 || self.low > 0xFFFF_FFFF {
                let carry = u8::from(self.low > 0xFFFF_FFFF);
                let mut temp = self.cache;
                loop {
                    self.out.push(temp.wrapping_add(carry));
                    temp = 0xFF;
                    self.cache_size -= 1;
                    if self.cache_size == 0 {
                        break;
                    }
                }
                self.cache = ((self.low >> 24) & 0xFF) as u8; // masked: fits
            }
            self.cache_size += 1;
            self.low = (self.low & 0x00FF_FFFF) << 8;
        }

        /// Flushes and returns the stream: the shortest byte string that, followed by
        /// zeros, decodes correctly, without LZMA's always-zero first byte.
        pub(crate) fn finish(mut self) -> Vec<u8> {
            // Any value in [low, low + range) decodes the same: take the one with the most
            // trailing zero bits.
            let end = self.low + u64::from(self.range);
            for k in (0..=32).rev() {
                let mask = (1u64 << k) - 1;
                let v = (self.low + mask) & !mask;
                if v < end {
                    self.low = v;
                    break;
                }
            }
            for _ in 0..5 {
                self.shift_low();
            }
            let mut out = self.out;
            debug_assert_eq!(out.first(), Some(&0));
            out.remove(0);
            while out.last() == Some(&0) {
                out.pop();
            }
            out
        }
    }

    impl Io for RcEnc {
        #[inline]
        fn bit(&mut self, p: &mut Prob, bit: u32) -> Result<u32, Error> {
            let bound = (self.range >> PROB_BITS) * p12(*p);
            if bit == 0 {
                self.range = bound;
            } else {
                self.low += u64::from(bound);
                self.range -= bound;
            }
            update(p, bit);
            while self.range < TOP {
                self.range <<= 8;
                self.shift_low();
            }
            Ok(bit)
        }

        fn direct(&mut self, value: u32, n: u32) -> Result<u32, Error> {
            for i in (0..n).rev() {
                self.range >>= 1;
                if (value >> i) & 1 == 1 {
                    self.low += u64::from(self.range);
                }
                while self.range < TOP {
                    self.range <<= 8;
                    self.shift_low();
                }
            }
            Ok(value)
        }
    }

    /// Price units per bit.
    pub(crate) const BIT: u32 = 256;

    /// Cost of a bit in 1/256 bit units, by the probability of that bit (12 bits).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::std_instead_of_core,
        reason = "prices are small positive numbers; OnceLock is std-only"
    )]
    fn price_table() -> &'static [u32; PROB_TOTAL as usize] {
        static TABLE: std::sync::OnceLock<[u32; PROB_TOTAL as usize]> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let mut t = [0u32; PROB_TOTAL as usize];
            for (i, slot) in t.iter_mut().enumerate() {
                let p = (i.max(1) as f64) / f64::from(PROB_TOTAL);
                *slot = (-p.log2() * f64::from(BIT)).round() as u32;
            }
            t
        })
    }

    /// Estimates the cost of coding, without changing the model.
    #[derive(Debug)]
    pub(crate) struct Pricer {
        pub(crate) cost: u32,
        table: &'static [u32; PROB_TOTAL as usize],
    }

    impl Pricer {
        pub(crate) fn new() -> Self {
            Self {
                cost: 0,
                table: price_table(),
            }
        }
        /// Price of one bit with probability `p`, in 1/256 bit.
        #[inline]
        pub(crate) fn price(&self, p: Prob, bit: u32) -> u32 {
            let p0 = p12(p);
            let q = if bit == 0 { p0 } else { PROB_TOTAL - p0 };
            self.table.get(q as usize).copied().unwrap_or(0)
        }
    }

    /// Prices like [`Pricer`] and adapts the model as an encoder would.
    #[derive(Debug)]
    pub(crate) struct Trainer(pub(crate) Pricer);

    impl Io for Trainer {
        #[inline]
        fn bit(&mut self, p: &mut Prob, bit: u32) -> Result<u32, Error> {
            self.0.cost += self.0.price(*p, bit);
            update(p, bit);
            Ok(bit)
        }
        fn direct(&mut self, value: u32, n: u32) -> Result<u32, Error> {
            self.0.cost += BIT * n;
            Ok(value)
        }
    }

    impl Io for Pricer {
        #[inline]
        fn bit(&mut self, p: &mut Prob, bit: u32) -> Result<u32, Error> {
            self.cost += self.price(*p, bit);
            Ok(bit)
        }
        fn direct(&mut self, value: u32, n: u32) -> Result<u32, Error> {
            self.cost += BIT * n;
            Ok(value)
        }
    }
}

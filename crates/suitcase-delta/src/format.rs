//! The patch header: little-endian, variable length (LEB128 sizes), parsed without allocation.
//!
//! ```text
//! size field
//!    4 magic "SCDP"
//!    1 version (2)
//!    1 mode: 0 sequential delta, 1 full image (no source), 2 in-place delta
//!    1 flags: bit 0 order-1 literals, bit 1 Thumb branch filter (not in place),
//!             bit 2 short digests; others 0
//!  1-5 ram_bound: bytes of applier state this patch needs (<= 16384)
//!  1-5 new_size: bytes of the result image
//!  1-5 old_size - new_size, zigzag-coded (absent in full mode; |difference| < 2^31)
//!  1-5 payload_len: bytes of payload after the header
//! 16/32 SHA-256 of the source image (absent in full mode)
//! 16/32 SHA-256 of the result image
//! ```
//!
//! With flag bit 2 the digests are SHA-256 truncated to its first 128 bits (the
//! `sha-256-128` of the RFC 6920 Named Information registry): 2^128 work for a second
//! preimage, 2^64 for a collision. The patch's digests name the source and catch a wrong or
//! damaged result; the integrity of what a device installs rests on the signed manifest's
//! full digest of the new image (RFC 9124 §4.3.7, checked by `suit-condition-image-match`
//! after the patch is applied), so 32 more bytes per patch buy no security there.
//!
//! ```text
//!  1-5 (in-place mode only) block_size, shift, segment_size (1-5 bytes each)
//! ```
//!
//! Each size is an unsigned LEB128 number of at most five bytes, in its shortest form.

use crate::Error;

/// The four magic bytes.
pub const MAGIC: [u8; 4] = *b"SCDP";
/// The format version this crate writes and reads.
pub const VERSION: u8 = 2;
/// The longest header (in-place mode, every size five bytes long).
pub const MAX_HEADER_LEN: usize = 7 + 4 * 5 + 64 + 3 * 5;
/// The most applier RAM any patch may declare (16 KiB).
pub const MAX_RAM_BOUND: u32 = 16 * 1024;

/// How the patch is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read the old slot, write the new slot (both readable).
    Sequential,
    /// No source: a compressed full image (for when a delta does not pay).
    Full,
    /// One slot: the new image overwrites the old, resumable after a power cut.
    InPlace,
}

impl Mode {
    const fn byte(self) -> u8 {
        match self {
            Self::Sequential => 0,
            Self::Full => 1,
            Self::InPlace => 2,
        }
    }
}

/// In-place geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Erase block size in bytes (a power of two, 64 .. 1 MiB).
    pub block_size: u32,
    /// The old image is first moved up by this many bytes (a multiple of `block_size`).
    pub shift: u32,
    /// New image segment size (a multiple of `block_size`): the unit of restart.
    pub segment_size: u32,
}

/// A parsed patch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// How to apply.
    pub mode: Mode,
    /// Applier RAM the patch needs, in bytes.
    pub ram_bound: u32,
    /// Size of the source image.
    pub old_size: u32,
    /// Size of the result image.
    pub new_size: u32,
    /// Payload bytes after the header.
    pub payload_len: u32,
    /// SHA-256 of the source image.
    pub old_digest: [u8; 32],
    /// SHA-256 of the result image.
    pub new_digest: [u8; 32],
    /// In-place geometry (in-place mode only).
    pub geometry: Option<Geometry>,
    /// Model flags (bit 0: order-1 literal model).
    pub flags: u8,
}

/// What the SUIT processor needs to know about a delta payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchInfo {
    /// SHA-256 of the image the patch applies to (all zero for a full-image patch); only the
    /// first `digest_len` bytes are meaningful (the rest are zero).
    pub source_digest: [u8; 32],
    /// SHA-256 of the image the patch produces (first `digest_len` bytes meaningful).
    pub result_digest: [u8; 32],
    /// 16 (SHA-256 truncated to 128 bits) or 32.
    pub digest_len: u8,
    /// Size of the produced image.
    pub new_size: u32,
    /// Size of the source image.
    pub old_size: u32,
    /// Applier RAM needed.
    pub ram_bound: u32,
    /// Whether the patch needs a source image at all.
    pub needs_source: bool,
    /// Whether the patch is applied in place.
    pub in_place: bool,
}

impl PatchInfo {
    /// Whether the installed image with this full SHA-256 is the patch's source.
    pub fn source_matches(&self, sha256: &[u8; 32]) -> bool {
        self.needs_source && digest_matches(&self.source_digest, sha256, self.digest_len.into())
    }

    /// Whether the image the manifest names (by its full SHA-256) is what the patch makes.
    pub fn result_matches(&self, sha256: &[u8; 32]) -> bool {
        digest_matches(&self.result_digest, sha256, self.digest_len.into())
    }
}

/// Digest bytes per digest for these header flags.
pub(crate) const fn digest_len(flags: u8) -> usize {
    if flags & crate::model::FLAG_SHORT_DIGESTS != 0 {
        16
    } else {
        32
    }
}

/// Compares the first `len` bytes of a header digest with a full SHA-256.
pub(crate) fn digest_matches(header: &[u8; 32], sha256: &[u8; 32], len: usize) -> bool {
    match (header.get(..len), sha256.get(..len)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `old - new` zigzag-coded (the encoder refuses sizes 2 GiB apart; larger differences are
/// clamped here, which `Header::parse` then reads back as a different size).
pub(crate) fn zigzag_delta(old: u32, new: u32) -> u32 {
    let d = i64::from(old) - i64::from(new);
    let z = ((d << 1) ^ (d >> 63)).cast_unsigned();
    u32::try_from(z).unwrap_or(u32::MAX)
}

/// Bytes of the shortest LEB128 form of `v`.
pub(crate) const fn varint_len(v: u32) -> usize {
    let bits = 32 - (v | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Writes `v` as LEB128 at `out[at..]`; returns the new position.
pub(crate) fn put_varint(out: &mut [u8], mut at: usize, mut v: u32) -> usize {
    loop {
        let more = v >= 0x80;
        if let Some(b) = out.get_mut(at) {
            *b = ((v & 0x7F) as u8) | if more { 0x80 } else { 0 };
        }
        at += 1;
        v >>= 7;
        if !more {
            return at;
        }
    }
}

/// A cursor over header bytes that may still be incomplete.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cur<'_> {
    /// The next byte, or `None` if not yet available.
    fn byte(&mut self) -> Option<u8> {
        let v = self.b.get(self.at).copied();
        if v.is_some() {
            self.at += 1;
        }
        v
    }

    /// A shortest-form LEB128 `u32`: `Ok(None)` if incomplete.
    fn varint(&mut self) -> Result<Option<u32>, Error> {
        let mut v = 0u32;
        for i in 0..5 {
            let Some(b) = self.byte() else {
                return Ok(None);
            };
            let part = u32::from(b & 0x7F);
            if i == 4 && part > 0x0F {
                return Err(Error::Corrupt);
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && part == 0 {
                    return Err(Error::Corrupt); // not the shortest form
                }
                return Ok(Some(v));
            }
        }
        Err(Error::Corrupt)
    }

    /// `len` digest bytes, zero-padded to 32.
    fn digest(&mut self, len: usize) -> Option<[u8; 32]> {
        let s = self.b.get(self.at..self.at + len)?;
        let mut d = [0u8; 32];
        d.get_mut(..len)?.copy_from_slice(s);
        self.at += len;
        Some(d)
    }
}

/// `Ok(Some(v))`, or return `Ok(None)` from the enclosing function (incomplete input).
macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

impl Header {
    /// Parses as much of a header as `bytes` holds: `Ok(None)` if more bytes are needed,
    /// else the header and its length. Checks structure (not RAM or slot limits).
    fn parse_partial(bytes: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        for (i, &b) in bytes.iter().take(4).enumerate() {
            if MAGIC.get(i) != Some(&b) {
                return Err(Error::BadMagic);
            }
        }
        let mut c = Cur { b: bytes, at: 4 };
        if bytes.len() < 4 {
            return Ok(None);
        }
        let version = need!(c.byte());
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let mode = match need!(c.byte()) {
            0 => Mode::Sequential,
            1 => Mode::Full,
            2 => Mode::InPlace,
            m => return Err(Error::UnsupportedMode(m)),
        };
        let flags = need!(c.byte());
        if flags & !crate::model::KNOWN_FLAGS != 0 {
            return Err(Error::UnsupportedFlags(flags));
        }
        let ram_bound = need!(c.varint()?);
        if ram_bound > MAX_RAM_BOUND {
            return Err(Error::RamBoundTooLarge {
                declared: ram_bound,
                limit: MAX_RAM_BOUND,
            });
        }
        if ram_bound < crate::apply::REQUIRED_RAM {
            return Err(Error::RamBoundTooSmall {
                declared: ram_bound,
                required: crate::apply::REQUIRED_RAM,
            });
        }
        let full = mode == Mode::Full;
        let new_size = need!(c.varint()?);
        let old_size = if full {
            0
        } else {
            let z = need!(c.varint()?);
            let delta = i64::from(z >> 1) ^ -i64::from(z & 1);
            u32::try_from(i64::from(new_size) + delta).map_err(|_| Error::Corrupt)?
        };
        let payload_len = need!(c.varint()?);
        let dlen = digest_len(flags);
        let old_digest = if full { [0; 32] } else { need!(c.digest(dlen)) };
        let new_digest = need!(c.digest(dlen));
        if mode == Mode::InPlace && flags & crate::model::FLAG_THUMB != 0 {
            return Err(Error::UnsupportedFlags(flags));
        }
        let geometry = if mode == Mode::InPlace {
            let g = Geometry {
                block_size: need!(c.varint()?),
                shift: need!(c.varint()?),
                segment_size: need!(c.varint()?),
            };
            let bs = g.block_size;
            if !bs.is_power_of_two()
                || !(64..=1 << 20).contains(&bs)
                || !g.shift.is_multiple_of(bs)
                || !g.segment_size.is_multiple_of(bs)
                || g.segment_size == 0
            {
                return Err(Error::BadGeometry);
            }
            Some(g)
        } else {
            None
        };
        let h = Self {
            mode,
            ram_bound,
            old_size,
            new_size,
            payload_len,
            old_digest,
            new_digest,
            geometry,
            flags,
        };
        Ok(Some((h, c.at)))
    }

    /// Checks the bytes seen so far; returns the mode and the header's length once they
    /// determine it (`None`: feed more bytes, at least one).
    pub(crate) fn prefix(bytes: &[u8]) -> Result<Option<(Mode, usize)>, Error> {
        Ok(Self::parse_partial(bytes)?.map(|(h, n)| (h.mode, n)))
    }

    /// Parses a header from the start of `bytes` (which may hold more).
    ///
    /// Checks the structure only; the RAM bound against a device limit is checked by
    /// [`crate::Applier`] (or by the caller with [`Header::check_limits`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        match Self::parse_partial(bytes)? {
            Some((h, _)) => Ok(h),
            None => Err(Error::Truncated),
        }
    }

    /// The header's length in bytes.
    pub fn len(&self) -> usize {
        let d = self.digest_len();
        let mut n = 7 + varint_len(self.ram_bound) + varint_len(self.new_size);
        n += varint_len(self.payload_len) + d;
        if !matches!(self.mode, Mode::Full) {
            n += varint_len(zigzag_delta(self.old_size, self.new_size)) + d;
        }
        if let Some(g) = self.geometry {
            n += varint_len(g.block_size) + varint_len(g.shift) + varint_len(g.segment_size);
        }
        n
    }

    /// Bytes of each digest in the header: 16 (truncated SHA-256) or 32.
    pub const fn digest_len(&self) -> usize {
        digest_len(self.flags)
    }

    /// Whether `sha256` (a full SHA-256) is the source digest this header names.
    pub fn source_matches(&self, sha256: &[u8; 32]) -> bool {
        digest_matches(&self.old_digest, sha256, self.digest_len())
    }

    /// Whether `sha256` (a full SHA-256) is the result digest this header names.
    pub fn result_matches(&self, sha256: &[u8; 32]) -> bool {
        digest_matches(&self.new_digest, sha256, self.digest_len())
    }

    /// Always false (a header is never empty); present for API symmetry with `len`.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Checks the header against a device's limits.
    pub fn check_limits(&self, limits: &Limits) -> Result<(), Error> {
        if self.ram_bound > limits.max_ram {
            return Err(Error::RamBoundTooLarge {
                declared: self.ram_bound,
                limit: limits.max_ram,
            });
        }
        if u64::from(self.new_size) > u64::from(limits.slot_size) {
            return Err(Error::TooLargeForSlot {
                needed: u64::from(self.new_size),
                slot: limits.slot_size,
            });
        }
        if let Some(g) = self.geometry {
            let needed = u64::from(self.old_size) + u64::from(g.shift);
            if needed > u64::from(limits.slot_size) {
                return Err(Error::TooLargeForSlot {
                    needed,
                    slot: limits.slot_size,
                });
            }
        }
        Ok(())
    }

    /// The facts a SUIT processor needs.
    pub const fn info(&self) -> PatchInfo {
        PatchInfo {
            source_digest: self.old_digest,
            result_digest: self.new_digest,
            digest_len: if self.flags & crate::model::FLAG_SHORT_DIGESTS != 0 {
                16
            } else {
                32
            },
            new_size: self.new_size,
            old_size: self.old_size,
            ram_bound: self.ram_bound,
            needs_source: !matches!(self.mode, Mode::Full),
            in_place: matches!(self.mode, Mode::InPlace),
        }
    }

    /// Serialises the header; returns its length ([`Header::len`]).
    pub fn write(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out.fill(0);
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = self.mode.byte();
        out[6] = self.flags;
        let mut at = put_varint(out, 7, self.ram_bound);
        at = put_varint(out, at, self.new_size);
        if self.mode != Mode::Full {
            at = put_varint(out, at, zigzag_delta(self.old_size, self.new_size));
        }
        at = put_varint(out, at, self.payload_len);
        let d = self.digest_len();
        // `d` is at most the digest arrays' length and MAX_HEADER_LEN holds every field.
        let mut put = |at: usize, digest: &[u8]| {
            if let (Some(dst), Some(src)) = (out.get_mut(at..at + d), digest.get(..d)) {
                dst.copy_from_slice(src);
            }
            at + d
        };
        if self.mode != Mode::Full {
            at = put(at, &self.old_digest);
        }
        at = put(at, &self.new_digest);
        if let Some(g) = self.geometry {
            at = put_varint(out, at, g.block_size);
            at = put_varint(out, at, g.shift);
            at = put_varint(out, at, g.segment_size);
        }
        at
    }
}

/// What a device allows a patch to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most applier RAM the device grants (at most [`MAX_RAM_BOUND`]).
    pub max_ram: u32,
    /// Bytes in the slot that receives the new image.
    pub slot_size: u32,
}

impl Limits {
    /// The default: 16 KiB of RAM and a slot as large as the format allows.
    pub const DEFAULT: Self = Self {
        max_ram: MAX_RAM_BOUND,
        slot_size: u32::MAX,
    };
}

/// Parses a patch header and returns (source digest, result digest, new size, RAM bound, ...)
/// for the SUIT processor, without allocation and without reading the payload.
pub fn parse_info(patch_prefix: &[u8]) -> Result<PatchInfo, Error> {
    Header::parse(patch_prefix).map(|h| h.info())
}

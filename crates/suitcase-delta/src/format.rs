//! The patch header: fixed layout, little-endian, parsed without allocation.
//!
//! ```text
//! offset size field
//!      0    4 magic "SCDP"
//!      4    1 version (1)
//!      5    1 mode: 0 sequential delta, 1 full image (no source), 2 in-place delta
//!      6    1 model flags: bit 0 order-1 literals; other bits reserved (0)
//!      7    1 reserved (0)
//!      8    4 ram_bound: bytes of applier state this patch needs (<= 16384)
//!     12    4 old_size: bytes of the source image (0 in full mode)
//!     16    4 new_size: bytes of the result image
//!     20    4 payload_len: bytes of payload after the header
//!     24   32 SHA-256 of the source image (zero in full mode)
//!     56   32 SHA-256 of the result image
//!     88      (in-place mode only) 4 block_size, 4 shift, 4 segment_size
//! ```

use crate::Error;

/// The four magic bytes.
pub const MAGIC: [u8; 4] = *b"SCDP";
/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Header bytes in sequential and full modes.
pub const BASE_HEADER_LEN: usize = 88;
/// Header bytes in in-place mode.
pub const INPLACE_HEADER_LEN: usize = 100;
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
    /// SHA-256 of the image the patch applies to (all zero for a full-image patch).
    pub source_digest: [u8; 32],
    /// SHA-256 of the image the patch produces.
    pub result_digest: [u8; 32],
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

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

fn digest_at(b: &[u8], at: usize) -> [u8; 32] {
    let mut d = [0u8; 32];
    if let Some(s) = b.get(at..at + 32) {
        d.copy_from_slice(s);
    }
    d
}

impl Header {
    /// Header length for a mode byte (after the first 6 bytes are known).
    pub(crate) const fn len_for_mode(mode: Mode) -> usize {
        match mode {
            Mode::InPlace => INPLACE_HEADER_LEN,
            _ => BASE_HEADER_LEN,
        }
    }

    /// Checks the fixed prefix (magic, version, mode, flags) and returns the header length.
    pub(crate) fn prefix(bytes: &[u8]) -> Result<Option<(Mode, usize)>, Error> {
        for (i, &b) in bytes.iter().take(4).enumerate() {
            if MAGIC.get(i) != Some(&b) {
                return Err(Error::BadMagic);
            }
        }
        let Some(&version) = bytes.get(4) else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let Some(&mode) = bytes.get(5) else {
            return Ok(None);
        };
        let mode = match mode {
            0 => Mode::Sequential,
            1 => Mode::Full,
            2 => Mode::InPlace,
            m => return Err(Error::UnsupportedMode(m)),
        };
        let Some(&flags) = bytes.get(6) else {
            return Ok(None);
        };
        if flags & !crate::model::KNOWN_FLAGS != 0 {
            return Err(Error::UnsupportedFlags(flags));
        }
        let Some(&reserved) = bytes.get(7) else {
            return Ok(None);
        };
        if reserved != 0 {
            return Err(Error::UnsupportedFlags(reserved));
        }
        Ok(Some((mode, Self::len_for_mode(mode))))
    }

    /// Parses a header from the start of `bytes` (which may hold more).
    ///
    /// Checks the structure only; the RAM bound against a device limit is checked by
    /// [`crate::Applier`] (or by the caller with [`Header::check_limits`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let Some((mode, len)) = Self::prefix(bytes)? else {
            return Err(Error::Truncated);
        };
        if bytes.len() < len {
            return Err(Error::Truncated);
        }
        let geometry = if mode == Mode::InPlace {
            let g = Geometry {
                block_size: u32_at(bytes, 88),
                shift: u32_at(bytes, 92),
                segment_size: u32_at(bytes, 96),
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
            ram_bound: u32_at(bytes, 8),
            old_size: u32_at(bytes, 12),
            new_size: u32_at(bytes, 16),
            payload_len: u32_at(bytes, 20),
            old_digest: digest_at(bytes, 24),
            new_digest: digest_at(bytes, 56),
            geometry,
            flags: bytes.get(6).copied().unwrap_or(0),
        };
        if mode == Mode::Full && (h.old_size != 0 || h.old_digest != [0; 32]) {
            return Err(Error::Corrupt);
        }
        if h.ram_bound > MAX_RAM_BOUND {
            return Err(Error::RamBoundTooLarge {
                declared: h.ram_bound,
                limit: MAX_RAM_BOUND,
            });
        }
        if h.ram_bound < crate::apply::REQUIRED_RAM {
            return Err(Error::RamBoundTooSmall {
                declared: h.ram_bound,
                required: crate::apply::REQUIRED_RAM,
            });
        }
        Ok(h)
    }

    /// The header's length in bytes.
    pub const fn len(&self) -> usize {
        Self::len_for_mode(self.mode)
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
            new_size: self.new_size,
            old_size: self.old_size,
            ram_bound: self.ram_bound,
            needs_source: !matches!(self.mode, Mode::Full),
            in_place: matches!(self.mode, Mode::InPlace),
        }
    }

    /// Serialises the header.
    pub fn write(&self, out: &mut [u8; INPLACE_HEADER_LEN]) -> usize {
        out.fill(0);
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = self.mode.byte();
        out[6] = self.flags;
        out[8..12].copy_from_slice(&self.ram_bound.to_le_bytes());
        out[12..16].copy_from_slice(&self.old_size.to_le_bytes());
        out[16..20].copy_from_slice(&self.new_size.to_le_bytes());
        out[20..24].copy_from_slice(&self.payload_len.to_le_bytes());
        out[24..56].copy_from_slice(&self.old_digest);
        out[56..88].copy_from_slice(&self.new_digest);
        if let Some(g) = self.geometry {
            out[88..92].copy_from_slice(&g.block_size.to_le_bytes());
            out[92..96].copy_from_slice(&g.shift.to_le_bytes());
            out[96..100].copy_from_slice(&g.segment_size.to_le_bytes());
        }
        self.len()
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

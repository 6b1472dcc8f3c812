//! The boot state record: its byte format, and nothing else (how it is stored atomically is
//! [`crate::store`]'s business).

use core::fmt;

use embedded_storage::nor_flash::NorFlashErrorKind;

use crate::crc::crc32;
use crate::error::Failure;
use crate::verify::{ImageIndex, SecurityVersion, VerifyError};
use crate::{MAX_IMAGES, Mode, Slot};

/// `"SCBS"`: suitcase boot state.
pub(crate) const MAGIC: [u8; 4] = *b"SCBS";
/// The format this code writes and the only one it reads.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// Bytes in a version-1 record, CRC included.
const RECORD_LEN_BYTE: u8 = 96;
pub(crate) const RECORD_LEN: usize = RECORD_LEN_BYTE as usize;
const CRC_AT: usize = RECORD_LEN - 4;

/// Where the update stands. Each phase is one record; moving between phases is one record
/// write (see the step tables on [`crate::BootLoader`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The active image is known-good. Nothing is in progress.
    Confirmed,
    /// The application has staged an update and asked for it to be installed at next boot.
    Pending,
    /// Swap layouts: the bootloader is swapping the update into the primary slots; progress
    /// marks say how far it got.
    Installing,
    /// The update has been booted (the progress marks count the boots) and awaits
    /// confirmation by the application.
    Trial,
    /// Swap layouts: the bootloader is swapping the previous image back into the primary
    /// slots (in swap-offset mode by the install steps' inverses, in reverse order).
    Reverting,
}

impl Phase {
    fn code(self) -> u8 {
        match self {
            Self::Confirmed => 0,
            Self::Pending => 1,
            Self::Installing => 2,
            Self::Trial => 3,
            Self::Reverting => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Confirmed,
            1 => Self::Pending,
            2 => Self::Installing,
            3 => Self::Trial,
            4 => Self::Reverting,
            _ => return None,
        })
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Confirmed => "confirmed",
            Self::Pending => "pending",
            Self::Installing => "installing",
            Self::Trial => "trial",
            Self::Reverting => "reverting",
        })
    }
}

/// The persistent boot state: one fixed-size, CRC-protected record.
///
/// Format version 1, 96 bytes, integers little-endian:
///
/// | bytes  | field | meaning |
/// |--------|-------|---------|
/// | 0..4   | magic | `"SCBS"` |
/// | 4      | format version | `1`; a record with a valid CRC and another version stops the bootloader ([`crate::RecoveryReason::UnsupportedState`]) |
/// | 5      | record length | `96`; the CRC is the last 4 bytes of this length, so a reader can check the CRC of a newer, longer format before it looks at the version |
/// | 6      | mode | `1` A/B, `2` swap, `3` swap-offset |
/// | 7      | image count | `1` or `2` |
/// | 8..12  | sequence | `u32`, one more than the record it replaces; the valid copy with the highest wins |
/// | 12     | phase | `0` confirmed, `1` pending, `2` installing, `3` trial, `4` reverting ([`Phase`]) |
/// | 13     | active slot | `0` A, `1` B: the slot holding the confirmed image (always A in the swap modes) |
/// | 14     | failure kind | `0` none, `1` not confirmed, `2` invalid, `3` rollback, `4` too large ([`Failure`]) |
/// | 15     | failure image | image index the failure is about |
/// | 16     | failure detail | for "invalid": `1` empty, `2` rejected, `3`..`5` flash not-aligned / out-of-bounds / other |
/// | 17..24 | reserved | zero |
/// | 24..32 | failure offered | `u64`, for "rollback": the refused security version |
/// | 32..40 | failure minimum | `u64`, for "rollback": the counter at the time |
/// | 40..56 | anti-rollback counters | `u64` per image: the lowest security version still accepted; only ever raised, and only by a confirm |
/// | 56..72 | candidate versions | `u64` per image: the security versions of the update being tried, measured before it was installed |
/// | 72..80 | swap sectors | `u32` per image: how many sectors the swap of the current update moves (swap modes) |
/// | 80..92 | reserved | zero |
/// | 92..96 | CRC-32 | IEEE CRC-32 of bytes 0..92 |
///
/// A torn write of the record fails the CRC (or the magic), so the reader falls back to the
/// other copy ([`crate::store`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateRecord {
    pub(crate) sequence: u32,
    pub(crate) mode: Mode,
    pub(crate) images: u8,
    pub(crate) phase: Phase,
    pub(crate) active: Slot,
    pub(crate) failure: Option<Failure>,
    pub(crate) counters: [u64; MAX_IMAGES],
    pub(crate) candidates: [u64; MAX_IMAGES],
    pub(crate) swap_sectors: [u32; MAX_IMAGES],
}

/// What a copy of the state partition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A valid version-1 record.
    Record(StateRecord),
    /// Erased, torn or garbage: ignore this copy.
    Invalid,
    /// A record with a valid CRC that this code cannot interpret.
    Unsupported {
        /// The format version byte.
        version: u8,
    },
}

impl StateRecord {
    /// The state of a freshly provisioned device: image in slot A, confirmed, counters at 0.
    pub(crate) fn initial(mode: Mode, images: u8) -> Self {
        Self {
            sequence: 0,
            mode,
            images,
            phase: Phase::Confirmed,
            active: Slot::A,
            failure: None,
            counters: [0; MAX_IMAGES],
            candidates: [0; MAX_IMAGES],
            swap_sectors: [0; MAX_IMAGES],
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The record's sequence number (0 before the first write).
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// The slot holding the confirmed image.
    pub fn active(&self) -> Slot {
        self.active
    }

    /// The last failure recorded.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
    }

    /// The anti-rollback counter of `image`.
    pub fn counter(&self, image: ImageIndex) -> SecurityVersion {
        SecurityVersion(
            self.counters
                .get(usize::from(image.0))
                .copied()
                .unwrap_or(0),
        )
    }

    pub(crate) fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = Writer {
            buf: [0; RECORD_LEN],
            at: 0,
        };
        out.put(&MAGIC);
        out.put(&[
            FORMAT_VERSION,
            RECORD_LEN_BYTE,
            mode_code(self.mode),
            self.images,
        ]);
        out.put(&self.sequence.to_le_bytes());
        let (kind, image, detail, offered, minimum) = failure_fields(self.failure);
        out.put(&[
            self.phase.code(),
            slot_code(self.active),
            kind,
            image,
            detail,
        ]);
        out.put(&[0; 7]);
        out.put(&offered.to_le_bytes());
        out.put(&minimum.to_le_bytes());
        for counter in self.counters {
            out.put(&counter.to_le_bytes());
        }
        for candidate in self.candidates {
            out.put(&candidate.to_le_bytes());
        }
        for sectors in self.swap_sectors {
            out.put(&sectors.to_le_bytes());
        }
        out.put(&[0; 12]);
        let crc = crc32(out.buf.get(..CRC_AT).unwrap_or_default());
        out.put(&crc.to_le_bytes());
        out.buf
    }

    /// Decode the record at the start of `bytes` (which may run on into the progress marks).
    pub(crate) fn decode(bytes: &[u8]) -> Decoded {
        let mut r = Reader { bytes, at: 0 };
        if r.array::<4>() != Some(MAGIC) {
            return Decoded::Invalid;
        }
        let (Some(version), Some(len)) = (r.u8(), r.u8()) else {
            return Decoded::Invalid;
        };
        let len = usize::from(len);
        let crc_ok = len >= 8
            && match (
                bytes.get(..len.saturating_sub(4)),
                bytes.get(len.saturating_sub(4)..len),
            ) {
                (Some(body), Some(stored)) => stored == crc32(body).to_le_bytes(),
                _ => false,
            };
        if !crc_ok {
            return Decoded::Invalid;
        }
        if version != FORMAT_VERSION || len != RECORD_LEN {
            return Decoded::Unsupported { version };
        }
        match Self::decode_v1(&mut r) {
            Some(record) => Decoded::Record(record),
            // A valid CRC over values this version never writes: not ours to guess at.
            None => Decoded::Unsupported { version },
        }
    }

    fn decode_v1(r: &mut Reader<'_>) -> Option<Self> {
        let mode = match r.u8()? {
            1 => Mode::AB,
            2 => Mode::Swap,
            3 => Mode::SwapOffset,
            _ => return None,
        };
        let images = r.u8()?;
        if images == 0 || usize::from(images) > MAX_IMAGES {
            return None;
        }
        let sequence = u32::from_le_bytes(r.array()?);
        let phase = Phase::from_code(r.u8()?)?;
        let active = match r.u8()? {
            0 => Slot::A,
            1 => Slot::B,
            _ => return None,
        };
        let (kind, image, detail) = (r.u8()?, r.u8()?, r.u8()?);
        r.array::<7>()?;
        let offered = u64::from_le_bytes(r.array()?);
        let minimum = u64::from_le_bytes(r.array()?);
        let failure = decode_failure(kind, image, detail, offered, minimum)?;
        let mut counters = [0; MAX_IMAGES];
        for c in &mut counters {
            *c = u64::from_le_bytes(r.array()?);
        }
        let mut candidates = [0; MAX_IMAGES];
        for c in &mut candidates {
            *c = u64::from_le_bytes(r.array()?);
        }
        let mut swap_sectors = [0; MAX_IMAGES];
        for s in &mut swap_sectors {
            *s = u32::from_le_bytes(r.array()?);
        }
        Some(Self {
            sequence,
            mode,
            images,
            phase,
            active,
            failure,
            counters,
            candidates,
            swap_sectors,
        })
    }
}

fn mode_code(mode: Mode) -> u8 {
    match mode {
        Mode::AB => 1,
        Mode::Swap => 2,
        Mode::SwapOffset => 3,
    }
}

fn slot_code(slot: Slot) -> u8 {
    match slot {
        Slot::A => 0,
        Slot::B => 1,
    }
}

fn verify_code(error: VerifyError) -> u8 {
    match error {
        VerifyError::Empty => 1,
        VerifyError::Rejected => 2,
        VerifyError::Flash(NorFlashErrorKind::NotAligned) => 3,
        VerifyError::Flash(NorFlashErrorKind::OutOfBounds) => 4,
        VerifyError::Flash(_) => 5,
    }
}

fn failure_fields(failure: Option<Failure>) -> (u8, u8, u8, u64, u64) {
    match failure {
        None => (0, 0, 0, 0, 0),
        Some(Failure::NotConfirmed) => (1, 0, 0, 0, 0),
        Some(Failure::Invalid { image, error }) => (2, image.0, verify_code(error), 0, 0),
        Some(Failure::Rollback {
            image,
            offered,
            minimum,
        }) => (3, image.0, 0, offered.0, minimum.0),
        Some(Failure::TooLarge { image }) => (4, image.0, 0, 0, 0),
    }
}

/// `Some(None)` for "no failure", `None` for a code this version does not define.
fn decode_failure(
    kind: u8,
    image: u8,
    detail: u8,
    offered: u64,
    minimum: u64,
) -> Option<Option<Failure>> {
    let image = ImageIndex(image);
    Some(match kind {
        0 => None,
        1 => Some(Failure::NotConfirmed),
        2 => {
            let error = match detail {
                1 => VerifyError::Empty,
                2 => VerifyError::Rejected,
                3 => VerifyError::Flash(NorFlashErrorKind::NotAligned),
                4 => VerifyError::Flash(NorFlashErrorKind::OutOfBounds),
                5 => VerifyError::Flash(NorFlashErrorKind::Other),
                _ => return None,
            };
            Some(Failure::Invalid { image, error })
        }
        3 => Some(Failure::Rollback {
            image,
            offered: SecurityVersion(offered),
            minimum: SecurityVersion(minimum),
        }),
        4 => Some(Failure::TooLarge { image }),
        _ => return None,
    })
}

struct Writer {
    buf: [u8; RECORD_LEN],
    at: usize,
}

impl Writer {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.at.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.at..end) {
            dst.copy_from_slice(bytes);
        }
        self.at = end;
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn array<const K: usize>(&mut self) -> Option<[u8; K]> {
        let end = self.at.checked_add(K)?;
        let out = self.bytes.get(self.at..end)?.try_into().ok()?;
        self.at = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateRecord {
        StateRecord {
            sequence: 0x0102_0304,
            mode: Mode::Swap,
            images: 2,
            phase: Phase::Reverting,
            active: Slot::A,
            failure: Some(Failure::Rollback {
                image: ImageIndex(1),
                offered: SecurityVersion(5),
                minimum: SecurityVersion(9),
            }),
            counters: [9, 10],
            candidates: [11, 12],
            swap_sectors: [3, 4],
        }
    }

    #[test]
    fn round_trips_every_field() {
        let record = sample();
        let bytes = record.encode();
        assert_eq!(StateRecord::decode(&bytes), Decoded::Record(record));
        for failure in [
            None,
            Some(Failure::NotConfirmed),
            Some(Failure::Invalid {
                image: ImageIndex(1),
                error: VerifyError::Flash(NorFlashErrorKind::OutOfBounds),
            }),
            Some(Failure::TooLarge {
                image: ImageIndex(0),
            }),
        ] {
            let r = StateRecord { failure, ..record };
            assert_eq!(StateRecord::decode(&r.encode()), Decoded::Record(r));
        }
    }

    #[test]
    fn every_mode_round_trips() {
        for mode in [Mode::AB, Mode::Swap, Mode::SwapOffset] {
            let r = StateRecord { mode, ..sample() };
            assert_eq!(StateRecord::decode(&r.encode()), Decoded::Record(r));
        }
        let bytes = StateRecord {
            mode: Mode::SwapOffset,
            ..sample()
        }
        .encode();
        assert_eq!(bytes.get(6), Some(&3));
    }

    #[test]
    fn byte_layout_matches_the_table() {
        let bytes = sample().encode();
        assert_eq!(bytes.get(0..4), Some(&b"SCBS"[..]));
        assert_eq!(bytes.get(4..8), Some(&[1, 96, 2, 2][..]));
        assert_eq!(bytes.get(8..12), Some(&[4, 3, 2, 1][..]));
        assert_eq!(bytes.get(12..17), Some(&[4, 0, 3, 1, 0][..]));
        assert_eq!(bytes.get(24..25), Some(&[5][..]));
        assert_eq!(bytes.get(32..33), Some(&[9][..]));
        assert_eq!(bytes.get(40..41), Some(&[9][..]));
        assert_eq!(bytes.get(48..49), Some(&[10][..]));
        assert_eq!(bytes.get(56..57), Some(&[11][..]));
        assert_eq!(bytes.get(72..80), Some(&[3, 0, 0, 0, 4, 0, 0, 0][..]));
    }

    #[test]
    fn every_torn_prefix_is_invalid() {
        let bytes = sample().encode();
        for cut in 0..RECORD_LEN {
            let mut torn = [0xFF; RECORD_LEN];
            torn.get_mut(..cut)
                .unwrap()
                .copy_from_slice(bytes.get(..cut).unwrap());
            assert_eq!(StateRecord::decode(&torn), Decoded::Invalid, "cut at {cut}");
        }
    }

    #[test]
    fn any_flipped_bit_is_invalid() {
        let bytes = sample().encode();
        for bit in 0..RECORD_LEN * 8 {
            let mut bad = bytes;
            *bad.get_mut(bit / 8).unwrap() ^= 1 << (bit % 8);
            assert!(
                !matches!(StateRecord::decode(&bad), Decoded::Record(_)),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn newer_format_with_valid_crc_is_unsupported_not_ignored() {
        let mut newer = [0u8; 128];
        newer.get_mut(..4).unwrap().copy_from_slice(&MAGIC);
        newer[4] = 2;
        newer[5] = 128;
        let crc = crc32(newer.get(..124).unwrap());
        newer
            .get_mut(124..128)
            .unwrap()
            .copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            StateRecord::decode(&newer),
            Decoded::Unsupported { version: 2 }
        );
    }

    #[test]
    fn erased_copy_is_invalid() {
        assert_eq!(StateRecord::decode(&[0xFF; 128]), Decoded::Invalid);
    }
}

//! The flash model itself.

use core::fmt;
use core::marker::PhantomData;

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

use crate::geometry::{GeometryError, SectorMap};
use crate::rng::XorShift;

/// The value of an erased byte.
pub const ERASED: u8 = 0xFF;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Strict {}
    impl Sealed for super::Multiwrite {}
}

/// What the model does when a word is programmed a second time without an erase in between.
///
/// Implemented by [`Strict`] and [`Multiwrite`] only.
pub trait ProgramRule: sealed::Sealed + fmt::Debug {
    /// Whether a programmed word may be programmed again (the result is the AND of old and new).
    const MULTIWRITE: bool;
}

/// The default rule, and the one `NorFlash` promises: a word may be programmed once between
/// erases, and only while it reads erased. Anything else is refused with
/// [`SimError::NotErased`], so a bootloader that relies on re-programming is caught in tests
/// rather than on a part with ECC flash, where a second program corrupts the word.
#[derive(Clone, Copy, Debug, Default)]
pub struct Strict;

/// The `MultiwriteNorFlash` rule: programming is a bitwise AND with what is stored. Bits can
/// only go from 1 to 0; writing a 1 over a 0 leaves the 0 and is not an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct Multiwrite;

impl ProgramRule for Strict {
    const MULTIWRITE: bool = false;
}

impl ProgramRule for Multiwrite {
    const MULTIWRITE: bool = true;
}

/// How the operation in flight is left when the power is cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tear {
    /// For each torn operation, pick [`Tear::Prefix`] or [`Tear::Scatter`] and the amounts from
    /// the seeded generator. The default: it covers what the others cover, reproducibly.
    #[default]
    Random,
    /// A prefix of random length is fully applied, the next byte partly, the rest untouched.
    /// This is how a part that programs or erases in address order behaves.
    Prefix,
    /// Every byte independently is untouched, fully applied or partly applied.
    Scatter,
    /// Nothing is applied: the power went before the operation started.
    Nothing,
    /// Everything is applied, but the operation still reports the power cut: the power went
    /// after the last bit changed and before the part signalled completion.
    Complete,
}

/// Operation counters since creation or the last [`SimFlash::reset_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Read operations.
    pub reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Program (write) operations, including a torn one.
    pub writes: u64,
    /// Bytes programmed (for a torn write, the bytes it touched).
    pub bytes_written: u64,
    /// Erase operations, including a torn one.
    pub erases: u64,
    /// Bytes erased (for a torn erase, the bytes it touched).
    pub bytes_erased: u64,
    /// Sectors erased (the sum of the wear counters' increments).
    pub sectors_erased: u64,
    /// Power cuts that tore an operation.
    pub power_cuts: u64,
}

impl Stats {
    /// Program plus erase operations: the operations a power cut is counted against.
    pub fn mutations(&self) -> u64 {
        self.writes.saturating_add(self.erases)
    }
}

/// A simulated NOR flash part.
///
/// * Erased bytes read `0xFF`; programming can only clear bits (see [`ProgramRule`]).
/// * Writes must be aligned to `WRITE_SIZE` in offset and length. Erases must start and end on
///   sector boundaries of the [`SectorMap`]; every sector is a multiple of `ERASE_SIZE`, the
///   smallest sector the part has (as `embassy-boot`'s `MemFlash` does with its constants).
/// * Each sector counts its erases ([`SimFlash::wear`]).
/// * [`SimFlash::cut_power_after`] tears the operation in flight ([`Tear`]) and then fails every
///   read, write and erase with [`SimError::PoweredOff`] until [`SimFlash::power_on`].
/// * Torn operations are drawn from a generator seeded at construction, so a run is
///   reproducible from its seed.
/// * [`SimFlash::flip_bit`] injects a bit error anywhere, bypassing all rules.
pub struct SimFlash<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule = Strict> {
    mem: Vec<u8>,
    /// One flag per `WRITE_SIZE` word: programmed since its last erase.
    programmed: Vec<bool>,
    map: SectorMap,
    wear: Vec<u32>,
    powered: bool,
    cut_after: Option<u64>,
    tear: Tear,
    rng: XorShift,
    stats: Stats,
    rule: PhantomData<R>,
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> fmt::Debug
    for SimFlash<WRITE_SIZE, ERASE_SIZE, R>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFlash")
            .field("capacity", &self.mem.len())
            .field("write_size", &WRITE_SIZE)
            .field("erase_size", &ERASE_SIZE)
            .field("rule", &R::MULTIWRITE)
            .field("sectors", &self.map.sectors().len())
            .field("powered", &self.powered)
            .field("cut_after", &self.cut_after)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule>
    SimFlash<WRITE_SIZE, ERASE_SIZE, R>
{
    /// An erased part with the given sector map. `seed` drives the shape of torn operations.
    ///
    /// # Errors
    ///
    /// [`GeometryError`] if `WRITE_SIZE`/`ERASE_SIZE` are inconsistent or a sector is not a
    /// multiple of `ERASE_SIZE`.
    pub fn new(map: SectorMap, seed: u64) -> Result<Self, GeometryError> {
        if WRITE_SIZE == 0 || ERASE_SIZE == 0 || !ERASE_SIZE.is_multiple_of(WRITE_SIZE) {
            return Err(GeometryError::BadGranularity {
                write_size: WRITE_SIZE,
                erase_size: ERASE_SIZE,
            });
        }
        for sector in map.sectors() {
            let size = usize::try_from(sector.size).map_err(|_| GeometryError::TooLarge)?;
            if !size.is_multiple_of(ERASE_SIZE) {
                return Err(GeometryError::SectorNotEraseMultiple {
                    start: sector.start,
                    size: sector.size,
                    erase_size: ERASE_SIZE,
                });
            }
        }
        let capacity = usize::try_from(map.capacity()).map_err(|_| GeometryError::TooLarge)?;
        Ok(Self {
            mem: vec![ERASED; capacity],
            programmed: vec![false; capacity / WRITE_SIZE],
            wear: vec![0; map.sectors().len()],
            map,
            powered: true,
            cut_after: None,
            tear: Tear::default(),
            rng: XorShift::new(seed),
            stats: Stats::default(),
            rule: PhantomData,
        })
    }

    /// An erased part of `count` sectors of `sector_size` bytes.
    ///
    /// # Errors
    ///
    /// As [`SimFlash::new`].
    pub fn uniform(sector_size: u32, count: u32, seed: u64) -> Result<Self, GeometryError> {
        Self::new(SectorMap::uniform(sector_size, count)?, seed)
    }

    /// The sector map.
    pub fn sector_map(&self) -> &SectorMap {
        &self.map
    }

    /// How torn operations are shaped from now on.
    pub fn set_tear(&mut self, tear: Tear) {
        self.tear = tear;
    }

    /// Let the next `n` program or erase operations complete and tear the one after.
    ///
    /// Reads do not count: losing power during a read changes nothing in the flash, so it is
    /// the same as losing it before the next program or erase.
    pub fn cut_power_after(&mut self, n: u64) {
        self.cut_after = Some(n);
    }

    /// Forget a cut armed with [`SimFlash::cut_power_after`] that has not happened yet.
    pub fn cancel_power_cut(&mut self) {
        self.cut_after = None;
    }

    /// Remove power now, between operations (nothing is torn).
    pub fn power_off(&mut self) {
        self.powered = false;
        self.cut_after = None;
    }

    /// Restore power after a cut. The contents stay as the cut left them.
    pub fn power_on(&mut self) {
        self.powered = true;
    }

    /// Whether the part has power. After a cut, everything fails until [`SimFlash::power_on`].
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// Operation counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Zero the operation counters (the wear counters are kept: wear is physical).
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }

    /// How many times each sector has been erased (a torn erase counts for the sectors it
    /// touched), in sector-map order.
    pub fn wear(&self) -> &[u32] {
        &self.wear
    }

    /// The whole contents, for inspection by tests.
    pub fn contents(&self) -> &[u8] {
        &self.mem
    }

    /// `len` bytes at `offset`, for inspection by tests, bypassing power and counters.
    pub fn peek(&self, offset: u32, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        self.mem.get(start..start.checked_add(len)?)
    }

    /// Place `bytes` at `offset` as a factory programmer would: no erase needed, no power,
    /// alignment or counter involved. Words left not reading erased count as programmed.
    ///
    /// # Errors
    ///
    /// [`SimError::OutOfBounds`] if the range does not fit.
    pub fn load(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        let range = self.range(offset, bytes.len())?;
        let words = range.start / WRITE_SIZE..range.end.div_ceil(WRITE_SIZE);
        if let Some(target) = self.mem.get_mut(range) {
            target.copy_from_slice(bytes);
        }
        for word in words {
            let blank = self.word_is_erased(word);
            if let Some(flag) = self.programmed.get_mut(word) {
                *flag = !blank;
            }
        }
        Ok(())
    }

    /// Invert bit `bit` (0 = least significant) of the byte at `offset`, whatever the power
    /// state: a retention error, a disturbed cell or an attacker with a probe.
    ///
    /// # Errors
    ///
    /// [`SimError::OutOfBounds`] if `offset` is outside the flash or `bit` is above 7.
    pub fn flip_bit(&mut self, offset: u32, bit: u8) -> Result<(), SimError> {
        let range = self.range(offset, 1)?;
        let byte = self
            .mem
            .get_mut(range.start)
            .ok_or(SimError::OutOfBounds { offset, len: 1 })?;
        let mask = 1u8
            .checked_shl(u32::from(bit))
            .filter(|_| bit < 8)
            .ok_or(SimError::OutOfBounds { offset, len: 1 })?;
        *byte ^= mask;
        Ok(())
    }

    fn range(&self, offset: u32, len: usize) -> Result<core::ops::Range<usize>, SimError> {
        let start = usize::try_from(offset).map_err(|_| SimError::OutOfBounds { offset, len })?;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= self.mem.len())
            .ok_or(SimError::OutOfBounds { offset, len })?;
        Ok(start..end)
    }

    fn word_is_erased(&self, word: usize) -> bool {
        let start = word.saturating_mul(WRITE_SIZE);
        self.mem
            .get(start..start.saturating_add(WRITE_SIZE))
            .is_some_and(|w| w.iter().all(|&b| b == ERASED))
    }

    fn check_power(&self) -> Result<(), SimError> {
        if self.powered {
            Ok(())
        } else {
            Err(SimError::PoweredOff)
        }
    }

    /// Count one program or erase operation and say whether the power goes during it.
    fn starts_torn(&mut self) -> bool {
        match self.cut_after {
            Some(0) => {
                self.cut_after = None;
                true
            }
            Some(n) => {
                self.cut_after = Some(n.saturating_sub(1));
                false
            }
            None => false,
        }
    }

    fn pick_tear(&mut self) -> Tear {
        match self.tear {
            Tear::Random => {
                if self.rng.next_u64() & 1 == 0 {
                    Tear::Prefix
                } else {
                    Tear::Scatter
                }
            }
            other => other,
        }
    }

    /// For each byte of a torn operation of `len` bytes: `None` untouched, `Some(0xFF)` fully
    /// applied, `Some(mask)` applied to the bits in `mask` only.
    fn tear_plan(&mut self, len: usize) -> Vec<Option<u8>> {
        match self.pick_tear() {
            Tear::Nothing => vec![None; len],
            // `pick_tear` has already resolved `Random` into `Prefix` or `Scatter`.
            Tear::Complete | Tear::Random => vec![Some(0xFF); len],
            Tear::Prefix => {
                let bound = u64::try_from(len).unwrap_or(u64::MAX).saturating_add(1);
                let done = usize::try_from(self.rng.below(bound)).unwrap_or(len);
                let partial = self.rng.byte();
                (0..len)
                    .map(|i| match i.cmp(&done) {
                        core::cmp::Ordering::Less => Some(0xFF),
                        core::cmp::Ordering::Equal => Some(partial),
                        core::cmp::Ordering::Greater => None,
                    })
                    .collect()
            }
            Tear::Scatter => (0..len)
                .map(|_| match self.rng.below(3) {
                    0 => None,
                    1 => Some(0xFF),
                    _ => Some(self.rng.byte()),
                })
                .collect(),
        }
    }

    fn power_cut(&mut self) -> SimError {
        self.powered = false;
        self.stats.power_cuts = self.stats.power_cuts.saturating_add(1);
        SimError::PowerCut
    }

    fn do_write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        self.check_power()?;
        let range = self.range(offset, bytes.len())?;
        if !range.start.is_multiple_of(WRITE_SIZE) || !bytes.len().is_multiple_of(WRITE_SIZE) {
            return Err(SimError::NotAligned {
                offset,
                len: bytes.len(),
                align: WRITE_SIZE,
            });
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let first_word = range.start / WRITE_SIZE;
        let words = first_word..first_word + bytes.len() / WRITE_SIZE;
        if !R::MULTIWRITE {
            for word in words.clone() {
                let programmed = self.programmed.get(word).copied().unwrap_or(true);
                if programmed || !self.word_is_erased(word) {
                    return Err(SimError::NotErased {
                        offset: u32::try_from(word * WRITE_SIZE).unwrap_or(u32::MAX),
                    });
                }
            }
        }
        self.stats.writes = self.stats.writes.saturating_add(1);
        if !self.starts_torn() {
            if let Some(target) = self.mem.get_mut(range) {
                for (cell, &data) in target.iter_mut().zip(bytes) {
                    *cell &= data;
                }
            }
            if let Some(flags) = self.programmed.get_mut(words) {
                flags.fill(true);
            }
            self.stats.bytes_written = self
                .stats
                .bytes_written
                .saturating_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
            return Ok(());
        }
        let plan = self.tear_plan(bytes.len());
        let before: Vec<u8> = self.mem.get(range.clone()).unwrap_or_default().to_vec();
        let mut touched = 0u64;
        if let Some(target) = self.mem.get_mut(range) {
            for ((cell, &data), step) in target.iter_mut().zip(bytes).zip(&plan) {
                if let Some(mask) = step {
                    // Programming clears the bits that are 0 in `data`; a partial program
                    // clears only those of them inside `mask`.
                    *cell &= !(!data & mask);
                    touched = touched.saturating_add(1);
                }
            }
        }
        self.stats.bytes_written = self.stats.bytes_written.saturating_add(touched);
        for (i, word) in words.enumerate() {
            let span = i * WRITE_SIZE..(i + 1) * WRITE_SIZE;
            let complete = plan
                .get(span.clone())
                .is_some_and(|p| p.iter().all(|s| *s == Some(0xFF)));
            let start = first_word * WRITE_SIZE + span.start;
            let changed = self.mem.get(start..start + WRITE_SIZE) != before.get(span);
            // A word whose program completed, or visibly began, is programmed. An interrupted
            // program that changed no bit counts as never started, so firmware may retry it.
            if (complete || changed)
                && let Some(flag) = self.programmed.get_mut(word)
            {
                *flag = true;
            }
        }
        Err(self.power_cut())
    }

    fn do_erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        self.check_power()?;
        let len = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
        if from > to || to > self.map.capacity() {
            return Err(SimError::OutOfBounds { offset: from, len });
        }
        if !self.map.is_boundary(from) || !self.map.is_boundary(to) {
            return Err(SimError::NotSectorBoundary {
                offset: if self.map.is_boundary(from) { to } else { from },
            });
        }
        if from == to {
            return Ok(());
        }
        let range = self.range(from, len)?;
        self.stats.erases = self.stats.erases.saturating_add(1);
        let torn = self.starts_torn();
        let first = self.map.index_of(from).unwrap_or(0);
        let last = self.map.index_of(to.saturating_sub(1)).unwrap_or(first);
        if !torn {
            if let Some(target) = self.mem.get_mut(range.clone()) {
                target.fill(ERASED);
            }
            if let Some(flags) = self
                .programmed
                .get_mut(range.start / WRITE_SIZE..range.end / WRITE_SIZE)
            {
                flags.fill(false);
            }
            if let Some(wear) = self.wear.get_mut(first..=last) {
                for w in wear {
                    *w = w.saturating_add(1);
                }
            }
            let sectors = u64::try_from(last - first + 1).unwrap_or(u64::MAX);
            self.stats.sectors_erased = self.stats.sectors_erased.saturating_add(sectors);
            self.stats.bytes_erased = self
                .stats
                .bytes_erased
                .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
            return Ok(());
        }
        let plan = self.tear_plan(len);
        let mut touched = 0u64;
        if let Some(target) = self.mem.get_mut(range.clone()) {
            for (cell, step) in target.iter_mut().zip(&plan) {
                if let Some(mask) = step {
                    // Erasing sets bits; a partial erase sets only those inside `mask`.
                    *cell |= mask;
                    touched = touched.saturating_add(1);
                }
            }
        }
        self.stats.bytes_erased = self.stats.bytes_erased.saturating_add(touched);
        let first_word = range.start / WRITE_SIZE;
        for (i, chunk) in plan.chunks(WRITE_SIZE).enumerate() {
            if chunk.iter().all(|s| *s == Some(0xFF))
                && let Some(flag) = self.programmed.get_mut(first_word + i)
            {
                *flag = false;
            }
        }
        for sector in first..=last {
            let Some(s) = self.map.sectors().get(sector).copied() else {
                continue;
            };
            let lo = usize::try_from(s.start - from).unwrap_or(0);
            let hi = usize::try_from(s.end() - from).unwrap_or(len);
            let began = plan
                .get(lo..hi)
                .is_some_and(|p| p.iter().any(Option::is_some));
            if began {
                if let Some(w) = self.wear.get_mut(sector) {
                    *w = w.saturating_add(1);
                }
                self.stats.sectors_erased = self.stats.sectors_erased.saturating_add(1);
            }
        }
        Err(self.power_cut())
    }

    fn do_read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        self.check_power()?;
        let range = self.range(offset, bytes.len())?;
        self.stats.reads = self.stats.reads.saturating_add(1);
        self.stats.bytes_read = self
            .stats
            .bytes_read
            .saturating_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        if let Some(src) = self.mem.get(range) {
            bytes.copy_from_slice(src);
        }
        Ok(())
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> ErrorType
    for SimFlash<WRITE_SIZE, ERASE_SIZE, R>
{
    type Error = SimError;
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> ReadNorFlash
    for SimFlash<WRITE_SIZE, ERASE_SIZE, R>
{
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.do_read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> NorFlash
    for SimFlash<WRITE_SIZE, ERASE_SIZE, R>
{
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.do_erase(from, to)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.do_write(offset, bytes)
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize> MultiwriteNorFlash
    for SimFlash<WRITE_SIZE, ERASE_SIZE, Multiwrite>
{
}

/// Why a simulated flash operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// The range does not fit inside the flash (or partition).
    OutOfBounds {
        /// Offset of the request.
        offset: u32,
        /// Length of the request.
        len: usize,
    },
    /// A write's offset or length is not a multiple of `WRITE_SIZE`.
    NotAligned {
        /// Offset of the request.
        offset: u32,
        /// Length of the request.
        len: usize,
        /// The required alignment.
        align: usize,
    },
    /// An erase does not start or end on a physical sector boundary.
    NotSectorBoundary {
        /// The offending address.
        offset: u32,
    },
    /// Under [`Strict`], a write hit a word that is programmed or does not read erased.
    NotErased {
        /// The first address of the word.
        offset: u32,
    },
    /// The power was cut during this operation, which is left torn.
    PowerCut,
    /// The power is off after a cut; call `power_on`.
    PoweredOff,
    /// The shared flash behind a partition is in use (a re-entrant call).
    Busy,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfBounds { offset, len } => {
                write!(f, "{len} bytes at {offset:#x} are out of bounds")
            }
            Self::NotAligned { offset, len, align } => write!(
                f,
                "{len} bytes at {offset:#x} are not aligned to the write size {align}"
            ),
            Self::NotSectorBoundary { offset } => {
                write!(f, "erase boundary {offset:#x} is not a sector boundary")
            }
            Self::NotErased { offset } => {
                write!(f, "word at {offset:#x} is programmed and was not erased")
            }
            Self::PowerCut => f.write_str("power cut during the operation"),
            Self::PoweredOff => f.write_str("flash has no power"),
            Self::Busy => f.write_str("flash is busy"),
        }
    }
}

impl std::error::Error for SimError {}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::OutOfBounds { .. } => NorFlashErrorKind::OutOfBounds,
            Self::NotAligned { .. } | Self::NotSectorBoundary { .. } => {
                NorFlashErrorKind::NotAligned
            }
            Self::NotErased { .. } | Self::PowerCut | Self::PoweredOff | Self::Busy => {
                NorFlashErrorKind::Other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Flash = SimFlash<4, 64>;

    fn flash() -> Flash {
        Flash::uniform(256, 4, 1).unwrap()
    }

    #[test]
    fn new_flash_reads_erased() {
        let mut f = flash();
        let mut buf = [0u8; 16];
        f.read(100, &mut buf).unwrap();
        assert_eq!(buf, [ERASED; 16]);
        assert_eq!(f.capacity(), 1024);
    }

    #[test]
    fn write_only_clears_bits_and_strict_refuses_a_second_program() {
        let mut f = flash();
        f.write(0, &[0x0F, 0xF0, 0x00, 0xAA]).unwrap();
        assert_eq!(f.peek(0, 4).unwrap(), &[0x0F, 0xF0, 0x00, 0xAA]);
        assert_eq!(
            f.write(0, &[0xFF; 4]),
            Err(SimError::NotErased { offset: 0 })
        );
        // A word that was programmed with 0xFF still counts as programmed.
        f.write(4, &[0xFF; 4]).unwrap();
        assert_eq!(f.write(4, &[0; 4]), Err(SimError::NotErased { offset: 4 }));
    }

    #[test]
    fn multiwrite_ands_and_never_sets_a_bit() {
        fn is_multiwrite<F: MultiwriteNorFlash>(_: &F) {}
        let mut f = SimFlash::<4, 64, Multiwrite>::uniform(256, 1, 1).unwrap();
        is_multiwrite(&f);
        f.write(0, &[0x0F, 0xF0, 0xFF, 0xFF]).unwrap();
        f.write(0, &[0xFF, 0x3F, 0x0F, 0xFF]).unwrap();
        assert_eq!(f.peek(0, 4).unwrap(), &[0x0F, 0x30, 0x0F, 0xFF]);
    }

    #[test]
    fn write_granularity_is_enforced() {
        let mut f = flash();
        assert!(matches!(
            f.write(2, &[0; 4]),
            Err(SimError::NotAligned { align: 4, .. })
        ));
        assert!(matches!(
            f.write(0, &[0; 3]),
            Err(SimError::NotAligned { .. })
        ));
        assert!(matches!(
            f.write(1018, &[0; 4]),
            Err(SimError::NotAligned { .. })
        ));
        assert!(matches!(
            f.write(1024, &[0; 4]),
            Err(SimError::OutOfBounds { .. })
        ));
        assert_eq!(f.stats().writes, 0, "refused writes are not operations");
    }

    #[test]
    fn erase_must_cover_whole_sectors() {
        let mut f = flash();
        f.write(0, &[0; 8]).unwrap();
        assert_eq!(
            f.erase(0, 64),
            Err(SimError::NotSectorBoundary { offset: 64 })
        );
        assert_eq!(
            f.erase(64, 256),
            Err(SimError::NotSectorBoundary { offset: 64 })
        );
        assert!(matches!(
            f.erase(0, 2048),
            Err(SimError::OutOfBounds { .. })
        ));
        f.erase(0, 256).unwrap();
        assert_eq!(f.peek(0, 8).unwrap(), &[ERASED; 8]);
        f.write(0, &[0; 8]).unwrap();
    }

    #[test]
    fn mixed_sectors_erase_only_at_their_boundaries() {
        let map = SectorMap::from_sizes(&[64, 64, 128, 256]).unwrap();
        let mut f = Flash::new(map, 1).unwrap();
        f.erase(0, 64).unwrap();
        f.erase(64, 256).unwrap();
        assert!(matches!(
            f.erase(128, 192),
            Err(SimError::NotSectorBoundary { .. })
        ));
        f.erase(256, 512).unwrap();
        assert_eq!(f.wear(), &[1, 1, 1, 1]);
        let bad = SectorMap::from_sizes(&[64, 96]).unwrap();
        assert!(matches!(
            Flash::new(bad, 1),
            Err(GeometryError::SectorNotEraseMultiple { start: 64, .. })
        ));
    }

    #[test]
    fn wear_counts_each_sector_erase() {
        let mut f = flash();
        for _ in 0..3 {
            f.erase(0, 512).unwrap();
        }
        f.erase(768, 1024).unwrap();
        assert_eq!(f.wear(), &[3, 3, 0, 1]);
        assert_eq!(f.stats().sectors_erased, 7);
    }

    #[test]
    fn counters_track_operations_and_bytes() {
        let mut f = flash();
        f.write(0, &[0; 16]).unwrap();
        f.write(16, &[1; 8]).unwrap();
        f.erase(256, 512).unwrap();
        let mut buf = [0; 10];
        f.read(0, &mut buf).unwrap();
        let s = f.stats();
        assert_eq!((s.writes, s.bytes_written), (2, 24));
        assert_eq!((s.erases, s.bytes_erased), (1, 256));
        assert_eq!((s.reads, s.bytes_read), (1, 10));
        assert_eq!(s.mutations(), 3);
        f.reset_stats();
        assert_eq!(f.stats(), Stats::default());
    }

    #[test]
    fn power_cut_tears_the_write_in_flight_then_everything_fails() {
        let mut f = flash();
        f.set_tear(Tear::Prefix);
        f.cut_power_after(1);
        f.write(0, &[0; 4]).unwrap();
        assert_eq!(f.write(256, &[0; 256]), Err(SimError::PowerCut));
        assert!(!f.is_powered());
        let mut buf = [0; 4];
        assert_eq!(f.read(0, &mut buf), Err(SimError::PoweredOff));
        assert_eq!(f.write(512, &[0; 4]), Err(SimError::PoweredOff));
        assert_eq!(f.erase(512, 768), Err(SimError::PoweredOff));
        f.power_on();
        let torn = f.peek(256, 256).unwrap();
        let zeros = torn.iter().take_while(|&&b| b == 0).count();
        // A prefix is programmed, at most one byte is partial, the rest is untouched.
        assert!(
            torn.iter().skip(zeros + 1).all(|&b| b == ERASED),
            "{torn:?}"
        );
        f.write(512, &[0; 4]).unwrap();
        assert_eq!(f.stats().power_cuts, 1);
    }

    #[test]
    fn power_cut_tears_the_erase_in_flight() {
        let mut f = flash();
        f.write(0, &[0; 256]).unwrap();
        f.write(256, &[0; 256]).unwrap();
        f.set_tear(Tear::Prefix);
        f.cut_power_after(0);
        assert_eq!(f.erase(0, 512), Err(SimError::PowerCut));
        f.power_on();
        let after = f.contents().get(..512).unwrap().to_vec();
        let erased = after.iter().take_while(|&&b| b == ERASED).count();
        assert!(after.iter().skip(erased + 1).all(|&b| b == 0));
    }

    #[test]
    fn torn_erase_leaves_strict_words_unwritable_until_erased() {
        let mut f = flash();
        f.write(0, &[0; 256]).unwrap();
        f.set_tear(Tear::Nothing);
        f.cut_power_after(0);
        assert_eq!(f.erase(0, 256), Err(SimError::PowerCut));
        f.power_on();
        assert_eq!(f.peek(0, 4).unwrap(), &[0; 4], "nothing applied");
        assert!(matches!(
            f.write(0, &[0; 4]),
            Err(SimError::NotErased { .. })
        ));
        f.erase(0, 256).unwrap();
        f.write(0, &[0; 4]).unwrap();
    }

    #[test]
    fn complete_tear_applies_everything_but_reports_the_cut() {
        let mut f = flash();
        f.set_tear(Tear::Complete);
        f.cut_power_after(0);
        assert_eq!(f.write(0, &[0x12; 8]), Err(SimError::PowerCut));
        f.power_on();
        assert_eq!(f.peek(0, 8).unwrap(), &[0x12; 8]);
    }

    #[test]
    fn a_torn_word_that_changed_nothing_may_be_programmed_again() {
        let mut f = flash();
        f.set_tear(Tear::Nothing);
        f.cut_power_after(0);
        assert_eq!(f.write(0, &[0; 4]), Err(SimError::PowerCut));
        f.power_on();
        f.write(0, &[0; 4]).unwrap();
    }

    #[test]
    fn torn_operations_are_deterministic_for_a_seed() {
        let run = |seed| {
            let mut f = Flash::uniform(256, 4, seed).unwrap();
            f.write(0, &[0; 512]).unwrap();
            for i in 0..4u32 {
                f.cut_power_after(0);
                let _ = f.erase(0, 512);
                f.power_on();
                f.cut_power_after(0);
                let _ = f.write(512 + i * 64, &[0x5A; 64]);
                f.power_on();
            }
            f.contents().to_vec()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn scatter_tear_only_touches_the_operation_range() {
        let mut f = flash();
        f.set_tear(Tear::Scatter);
        f.cut_power_after(0);
        assert_eq!(f.write(256, &[0; 256]), Err(SimError::PowerCut));
        f.power_on();
        assert!(f.peek(0, 256).unwrap().iter().all(|&b| b == ERASED));
        assert!(f.peek(512, 512).unwrap().iter().all(|&b| b == ERASED));
    }

    #[test]
    fn bit_flip_injection_bypasses_the_rules() {
        let mut f = flash();
        f.write(0, &[0; 4]).unwrap();
        f.flip_bit(2, 3).unwrap();
        assert_eq!(f.peek(0, 4).unwrap(), &[0, 0, 0x08, 0]);
        f.flip_bit(900, 7).unwrap();
        assert_eq!(f.peek(900, 1).unwrap(), &[0x7F]);
        assert!(f.flip_bit(1024, 0).is_err());
        assert!(f.flip_bit(0, 8).is_err());
        assert_eq!(f.stats().mutations(), 1);
    }

    #[test]
    fn load_places_a_factory_image_without_counting() {
        let mut f = flash();
        f.load(10, &[1, 2, 3]).unwrap();
        assert_eq!(f.peek(8, 6).unwrap(), &[0xFF, 0xFF, 1, 2, 3, 0xFF]);
        assert!(matches!(
            f.write(8, &[0; 4]),
            Err(SimError::NotErased { .. })
        ));
        assert_eq!(f.stats(), Stats::default());
    }

    #[test]
    fn bad_granularity_is_refused() {
        assert!(matches!(
            SimFlash::<3, 64>::uniform(256, 1, 0),
            Err(GeometryError::BadGranularity { .. })
        ));
        assert!(matches!(
            SimFlash::<0, 64>::uniform(256, 1, 0),
            Err(GeometryError::BadGranularity { .. })
        ));
    }
}

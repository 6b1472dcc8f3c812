//! Slots, modes and the geometry checks made once at construction.

use core::fmt;

use embedded_storage::nor_flash::NorFlash;

use crate::error::ConfigError;
use crate::store::MAX_WRITE_SIZE;
use crate::swap::{COPY_CHUNK, steps_per_sector};
use crate::verify::ImageIndex;

/// The most images one state record governs (secure + non-secure, RFC 9019 §5.2).
pub const MAX_IMAGES: usize = 2;

/// Trial boots allowed before an unconfirmed image is reverted, unless configured otherwise.
pub const DEFAULT_TRIAL_BOOTS: u8 = 3;

/// How an update reaches the place it runs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Two executable slots per image (RFC 9019 §5.3): the update is written into the slot that
    /// is not running and booted from there; nothing is copied. The application must be able
    /// to run from either slot (position-independent code, or one build per slot).
    AB,
    /// A primary slot the image executes in place from and a secondary slot the update is
    /// staged in (RFC 9019 §5.1): the bootloader swaps the two, sector by sector, resumably,
    /// and swaps back to revert. The primary slot has one spare sector more than the
    /// secondary, which the swap uses instead of a scratch area. Each update writes the image
    /// about 4 times (staging, a move of the primary up by one sector, the swap's two halves).
    Swap,
    /// Like [`Mode::Swap`] (execute in place from the primary, revert by swapping back), but
    /// the spare sector is the *first* sector of the secondary and the update is staged one
    /// sector into it, so the swap needs no move pass: primary sector `i` goes down to
    /// secondary sector `i` and staged sector `i + 1` into primary sector `i`. Each update
    /// writes the image 3 times (staging and the swap's two halves), the floor for a swap that
    /// can revert. The secondary slot has one sector more than the primary ([`crate::swap`]).
    SwapOffset,
}

impl Mode {
    /// Whether the bootloader moves images into a fixed primary slot (the swap modes): the
    /// image always runs from slot A and reverts are swaps back.
    pub const fn swaps(self) -> bool {
        matches!(self, Self::Swap | Self::SwapOffset)
    }
}

/// One of the two slots of an image. In the swap modes, `A` is the primary (execution) slot
/// and `B` the secondary (staging) slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Slot A (primary in the swap modes).
    A,
    /// Slot B (secondary in the swap modes).
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::A => "A",
            Self::B => "B",
        })
    }
}

/// The two flash partitions of one image.
#[derive(Debug)]
pub struct ImageSlots<F> {
    /// Slot A; the primary slot in the swap modes.
    pub a: F,
    /// Slot B; the secondary slot in the swap modes.
    pub b: F,
}

impl<F> ImageSlots<F> {
    /// Slot `a` and slot `b` of one image.
    pub fn new(a: F, b: F) -> Self {
        Self { a, b }
    }

    pub(crate) fn get_mut(&mut self, slot: Slot) -> &mut F {
        match slot {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }

    pub(crate) fn get(&self, slot: Slot) -> &F {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
}

/// What the bootloader and the updater must agree on. Both check it against the partitions
/// when they are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How updates are applied.
    pub mode: Mode,
    /// The unit of erase and swap for the image slots: the largest physical sector the slots
    /// span. Slots must be whole multiples of it and start on physical sector boundaries.
    pub sector_size: u32,
    /// How many times an unconfirmed image is booted before it is reverted (at least 1).
    pub max_trial_boots: u8,
}

impl Config {
    /// A/B mode with [`DEFAULT_TRIAL_BOOTS`].
    pub const fn ab(sector_size: u32) -> Self {
        Self {
            mode: Mode::AB,
            sector_size,
            max_trial_boots: DEFAULT_TRIAL_BOOTS,
        }
    }

    /// Swap mode with [`DEFAULT_TRIAL_BOOTS`].
    pub const fn swap(sector_size: u32) -> Self {
        Self {
            mode: Mode::Swap,
            sector_size,
            max_trial_boots: DEFAULT_TRIAL_BOOTS,
        }
    }

    /// Swap-offset mode ([`Mode::SwapOffset`]) with [`DEFAULT_TRIAL_BOOTS`].
    pub const fn swap_offset(sector_size: u32) -> Self {
        Self {
            mode: Mode::SwapOffset,
            sector_size,
            max_trial_boots: DEFAULT_TRIAL_BOOTS,
        }
    }

    /// The same configuration with another trial-boot bound.
    #[must_use]
    pub const fn with_max_trial_boots(mut self, max_trial_boots: u8) -> Self {
        self.max_trial_boots = max_trial_boots;
        self
    }
}

/// Sizes derived from the configuration and the partitions, checked once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) sector: u32,
    /// Capacity in bytes of slot A and slot B of each image.
    pub(crate) capacity: [[u32; 2]; MAX_IMAGES],
    /// Progress marks a state half must hold.
    pub(crate) marks: u32,
}

impl Geometry {
    pub(crate) fn check<F: NorFlash, const N: usize>(
        config: &Config,
        slots: &[ImageSlots<F>; N],
    ) -> Result<Self, ConfigError> {
        if N == 0 || N > MAX_IMAGES {
            return Err(ConfigError::ImageCount);
        }
        if config.max_trial_boots == 0 {
            return Err(ConfigError::TrialBoots);
        }
        let write = F::WRITE_SIZE;
        if write == 0
            || write > MAX_WRITE_SIZE
            || F::READ_SIZE == 0
            || !write.is_multiple_of(F::READ_SIZE)
            || !COPY_CHUNK.is_multiple_of(write)
        {
            return Err(ConfigError::WriteSize);
        }
        let sector = config.sector_size;
        let sector_usize = usize::try_from(sector).map_err(|_| ConfigError::SectorSize)?;
        if sector == 0
            || !sector_usize.is_multiple_of(F::ERASE_SIZE)
            || !sector_usize.is_multiple_of(write)
        {
            return Err(ConfigError::SectorSize);
        }
        let mut capacity = [[0u32; 2]; MAX_IMAGES];
        let mut swap_sectors = 0u32;
        for (i, (pair, cap)) in slots.iter().zip(capacity.iter_mut()).enumerate() {
            let image = ImageIndex(u8::try_from(i).unwrap_or(u8::MAX));
            for (slot, out) in [Slot::A, Slot::B].into_iter().zip(cap.iter_mut()) {
                let bytes = u32::try_from(pair.get(slot).capacity())
                    .ok()
                    .filter(|&b| b > 0 && b.is_multiple_of(sector))
                    .ok_or(ConfigError::SlotSize { image, slot })?;
                *out = bytes;
            }
            let [a, b] = *cap;
            match config.mode {
                Mode::AB => {}
                Mode::Swap if a < b.saturating_add(sector) => {
                    return Err(ConfigError::NoSpareSector { image });
                }
                Mode::SwapOffset if b < a.saturating_add(sector) => {
                    return Err(ConfigError::NoOffsetSector { image });
                }
                Mode::Swap | Mode::SwapOffset => {
                    let most = swap_capacity(config.mode, sector, a, b);
                    swap_sectors = swap_sectors.saturating_add(most / sector);
                }
            }
        }
        let marks = swap_sectors
            .saturating_mul(steps_per_sector(config.mode))
            .max(u32::from(config.max_trial_boots));
        Ok(Self {
            sector,
            capacity,
            marks,
        })
    }

    pub(crate) fn capacity(&self, image: usize, slot: Slot) -> u32 {
        let [a, b] = self.capacity.get(image).copied().unwrap_or([0, 0]);
        match slot {
            Slot::A => a,
            Slot::B => b,
        }
    }

    /// The largest image the slots of `image` can take in `slot` as the update target; in
    /// the swap modes also the most a swap exchanges.
    pub(crate) fn staging_capacity(&self, mode: Mode, image: usize, slot: Slot) -> u32 {
        match mode {
            Mode::AB => self.capacity(image, slot),
            Mode::Swap | Mode::SwapOffset => swap_capacity(
                mode,
                self.sector,
                self.capacity(image, Slot::A),
                self.capacity(image, Slot::B),
            ),
        }
    }

    /// Where an image starts in `slot`: one sector into the secondary in swap-offset mode
    /// (that sector is the swap's spare), at the start everywhere else.
    pub(crate) fn image_offset(&self, mode: Mode, slot: Slot) -> u32 {
        match (mode, slot) {
            (Mode::SwapOffset, Slot::B) => self.sector,
            _ => 0,
        }
    }
}

/// The largest image a swap layout with slots of `a` (primary) and `b` (secondary) bytes can
/// take: it must fit the secondary (after its first sector, in swap-offset mode) and the
/// primary (before its spare sector, in swap mode).
fn swap_capacity(mode: Mode, sector: u32, a: u32, b: u32) -> u32 {
    match mode {
        Mode::AB => 0,
        Mode::Swap => b.min(a.saturating_sub(sector)),
        Mode::SwapOffset => a.min(b.saturating_sub(sector)),
    }
}

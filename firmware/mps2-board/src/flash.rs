//! The flash region: RAM at [`FLASH_BASE`] standing in for NOR flash, persisted to a host file.
//!
//! It behaves as NOR flash does: erase sets a 4 KiB sector to `0xFF`, programming can only
//! clear bits (the new contents are the old AND the data), writes are 4-byte words. Every
//! erase and program is written through to the host file before it returns, so a QEMU run
//! that ends (a power cut, as far as the device knows) leaves the file as the flash would be.

use core::fmt;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash, check_erase, check_read,
    check_write,
};

use crate::layout::{FLASH_BASE, FLASH_SIZE, SECTOR, SLOT_A, SLOT_B, STATE, TRUST, TRUST_STAGING};
use crate::semihosting::{File, HostError};

/// Why a flash operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashError {
    /// Out of the partition, or not aligned to the read, write or erase size.
    Bounds(NorFlashErrorKind),
    /// The host file could not be read or written.
    Host,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Bounds(kind) => *kind,
            Self::Host => NorFlashErrorKind::Other,
        }
    }
}

impl From<NorFlashErrorKind> for FlashError {
    fn from(kind: NorFlashErrorKind) -> Self {
        Self::Bounds(kind)
    }
}

impl From<HostError> for FlashError {
    fn from(_: HostError) -> Self {
        Self::Host
    }
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bounds(kind) => write!(f, "flash access refused: {kind}"),
            Self::Host => f.write_str("the host file behind the flash failed"),
        }
    }
}

/// The flash region, backed by an open host file.
#[derive(Clone, Copy, Debug)]
pub struct Flash {
    file: File,
}

impl Flash {
    /// Open the host file `path` and load it into the region (what the bootloader does at
    /// reset: the flash keeps its contents across power cycles).
    ///
    /// # Errors
    /// [`FlashError::Host`] if the file cannot be opened or is not [`FLASH_SIZE`] bytes.
    pub fn load(path: &[u8]) -> Result<Self, FlashError> {
        let flash = Self::attach(path)?;
        if flash.file.len()? != FLASH_SIZE as usize {
            return Err(FlashError::Host);
        }
        flash.file.read_at(0, region(0, FLASH_SIZE))?;
        Ok(flash)
    }

    /// Open the host file `path` without loading it: the region already holds it (what the
    /// application does, after the bootloader loaded it in the same power cycle).
    ///
    /// # Errors
    /// [`FlashError::Host`] if the file cannot be opened.
    pub fn attach(path: &[u8]) -> Result<Self, FlashError> {
        Ok(Self {
            file: File::open(path)?,
        })
    }

    /// The boot state partition.
    pub fn state(self) -> Partition {
        self.partition(STATE)
    }

    /// Slot A (primary) and slot B (secondary).
    pub fn slots(self) -> (Partition, Partition) {
        (self.partition(SLOT_A), self.partition(SLOT_B))
    }

    /// The trust area (two copies of the trust state in force) and the trust staging area.
    pub fn trust(self) -> (Partition, Partition) {
        (self.partition(TRUST), self.partition(TRUST_STAGING))
    }

    fn partition(self, (offset, size): (u32, u32)) -> Partition {
        Partition {
            file: self.file,
            offset,
            size,
        }
    }
}

/// One partition of the flash region, addressed from 0.
#[derive(Debug)]
pub struct Partition {
    file: File,
    /// Offset of the partition in the region (and in the host file).
    offset: u32,
    size: u32,
}

impl Partition {
    /// Where the partition starts in the address map.
    pub fn address(&self) -> u32 {
        FLASH_BASE + self.offset
    }

    /// Write `[from, from + len)` of the partition through to the host file.
    fn persist(&self, from: u32, len: u32) -> Result<(), FlashError> {
        let at = self.offset + from;
        self.file.write_at(at, region(at, len))?;
        Ok(())
    }
}

/// The bytes `[offset, offset + len)` of the flash region.
///
/// Callers have bounds-checked the range against a partition, and partitions lie inside the
/// region (`layout`'s const assertions).
fn region(offset: u32, len: u32) -> &'static mut [u8] {
    // SAFETY: the flash region `[FLASH_BASE, FLASH_BASE + FLASH_SIZE)` is RAM (SSRAM1) that
    // no linker script of this workspace places code or data in, so nothing else holds a
    // reference into it; the range lies inside it (see above). The slice lives only for the
    // duration of one flash operation, and the firmware is single-threaded with no interrupt
    // handlers touching flash, so no two slices are alive at once. The application runs from
    // slot A while it writes only the state partition, which does not overlap it.
    unsafe { core::slice::from_raw_parts_mut((FLASH_BASE + offset) as *mut u8, len as usize) }
}

impl ErrorType for Partition {
    type Error = FlashError;
}

impl ReadNorFlash for Partition {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        check_read(self, offset, bytes.len())?;
        let len = u32::try_from(bytes.len()).map_err(|_| NorFlashErrorKind::OutOfBounds)?;
        bytes.copy_from_slice(region(self.offset + offset, len));
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.size as usize
    }
}

impl NorFlash for Partition {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = SECTOR as usize;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        check_erase(self, from, to)?;
        region(self.offset + from, to - from).fill(0xFF);
        self.persist(from, to - from)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        check_write(self, offset, bytes.len())?;
        let len = u32::try_from(bytes.len()).map_err(|_| NorFlashErrorKind::OutOfBounds)?;
        // NOR programming only clears bits.
        for (cell, byte) in region(self.offset + offset, len).iter_mut().zip(bytes) {
            *cell &= *byte;
        }
        self.persist(offset, len)
    }
}

//! The flash region: RAM at [`FLASH_BASE`] standing in for NOR flash, persisted to a host file.
//!
//! It behaves as NOR flash does: erase sets a 4 KiB sector to `0xFF`, programming can only
//! clear bits (the new contents are the old AND the data), writes are 4-byte words. Every
//! erase and program is written through to the host file before it returns, so a QEMU run
//! that ends (a power cut, as far as the device knows) leaves the file as the flash would be.
//!
//! **Power cuts on demand** (feature `power-cut`, for `scripts/qemu-powercut.sh`; the shipped
//! builds have none of it): the erase and program operations of one power cycle are counted,
//! the bootloader's and then the application's together, and the command line can end the
//! QEMU run right after one of them, as if the power went:
//!
//! * `cut-after=N`: after the N-th operation (from 1) has been applied and written to the host
//!   file, end the run with QEMU exit status [`CUT_STATUS`](crate::semihosting::CUT_STATUS).
//! * `torn` (with `cut-after=N`): the N-th operation is only partly applied before the cut: an
//!   erase sets the first half of its bytes to `0xFF` and leaves the rest as it was; a program
//!   programs the first half of its words (rounded down) and the first byte of the next word,
//!   the rest untouched, as a part that programs in address order does when the power goes.
//! * `flash-trace`: write one line per operation to the semihosting console (QEMU's stderr),
//!   `flash: op N erase|program PARTITION+OFFSET LEN`, and the total when the run ends,
//!   `flash: N operations this power cycle`: what the script picks its cut points from.
//!
//! The count survives the jump from the bootloader to the application in 16 bytes of RAM
//! neither image uses (the top of SSRAM1, above the flash region): the bootloader's
//! [`Flash::load`] (a reset) starts it at 0, the application's [`Flash::attach`] continues it.

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
        cut::arm(true);
        let flash = Self::open(path)?;
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
        cut::arm(false);
        Self::open(path)
    }

    fn open(path: &[u8]) -> Result<Self, FlashError> {
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

    /// The device key partition (`layout::DEVICE_KEY`), written at manufacturing.
    pub fn device_key(self) -> Partition {
        self.partition(crate::layout::DEVICE_KEY)
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
        let (at, len) = (self.offset + from, to - from);
        let op = cut::Op::begin(cut::Kind::Erase, at, len);
        region(at, op.applied(len)).fill(0xFF);
        self.persist(from, len)?;
        op.end();
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        check_write(self, offset, bytes.len())?;
        let len = u32::try_from(bytes.len()).map_err(|_| NorFlashErrorKind::OutOfBounds)?;
        let at = self.offset + offset;
        let op = cut::Op::begin(cut::Kind::Program, at, len);
        // NOR programming only clears bits.
        for (cell, byte) in region(at, op.applied(len)).iter_mut().zip(bytes) {
            *cell &= *byte;
        }
        self.persist(offset, len)?;
        op.end();
        Ok(())
    }
}

/// The power-cut hook of every erase and program: counts them and, when the command line asks
/// for it, ends the run after one of them (module docs). Without the feature `power-cut` it
/// is empty and every operation is applied whole.
#[cfg(not(feature = "power-cut"))]
mod cut {
    pub(super) fn arm(_reset: bool) {}

    pub(super) enum Kind {
        Erase,
        Program,
    }

    pub(super) struct Op;

    impl Op {
        #[inline(always)]
        pub(super) fn begin(_kind: Kind, _at: u32, _len: u32) -> Self {
            Self
        }

        #[inline(always)]
        pub(super) fn applied(&self, len: u32) -> u32 {
            len
        }

        #[inline(always)]
        pub(super) fn end(self) {}
    }
}

/// The power-cut hook (feature `power-cut`): the module docs say what the command line asks.
#[cfg(feature = "power-cut")]
mod cut {
    use crate::layout::{FLASH_BASE, FLASH_SIZE, RAM, SLOT_A, SLOT_B, STATE, TRUST, TRUST_STAGING};
    use crate::semihosting::{self, Line};

    /// What the bootloader leaves the application in RAM: "CUT1" once armed.
    const MAGIC: u32 = 0x4355_5431;
    const TORN: u32 = 1;
    const TRACE: u32 = 2;

    /// The count and the command line's request, shared by the bootloader and the application.
    #[derive(Clone, Copy)]
    #[repr(C)]
    struct Shared {
        magic: u32,
        /// Erase and program operations so far in this power cycle.
        done: u32,
        /// The operation to cut after (from 1); 0: none.
        cut_after: u32,
        flags: u32,
    }

    /// The top 16 bytes of SSRAM1 (4 MiB at 0; QEMU's mps2-an386): above the bootloader's
    /// code and the flash region, below nothing; both images keep their RAM and stack in
    /// SSRAM2/3, so neither places anything here.
    const SHARED: u32 = SSRAM1_END - 16;
    const SSRAM1_END: u32 = 0x0040_0000;
    const _: () = assert!(core::mem::size_of::<Shared>() == 16);
    const _: () = assert!(FLASH_BASE + FLASH_SIZE <= SHARED && RAM.0 >= SSRAM1_END);

    fn read() -> Shared {
        // SAFETY: SHARED is word-aligned RAM that no image's linker script, stack or heap
        // covers (above); only this module accesses it, from one thread.
        unsafe { core::ptr::read_volatile(SHARED as *const Shared) }
    }

    fn write(shared: Shared) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(SHARED as *mut Shared, shared) }
    }

    /// Read the command line: at a reset (`reset`, the bootloader's load) always, else (the
    /// application's attach) only if no bootloader armed the count in this power cycle.
    pub(super) fn arm(reset: bool) {
        if !reset && read().magic == MAGIC {
            return;
        }
        let mut buf = [0u8; 256];
        let cmdline = semihosting::cmdline(&mut buf).unwrap_or_default();
        let cut_after = match semihosting::arg(cmdline, b"cut-after") {
            None => 0,
            Some(n) => parse(n).unwrap_or_else(|| {
                semihosting::console(Line::new().str(
                    "flash: cut-after= wants an operation number from 1; no power cut armed\n",
                ));
                0
            }),
        };
        let mut flags = 0;
        if semihosting::flag(cmdline, b"torn") {
            flags |= TORN;
        }
        if semihosting::flag(cmdline, b"flash-trace") {
            flags |= TRACE;
        }
        write(Shared {
            magic: MAGIC,
            done: 0,
            cut_after,
            flags,
        });
    }

    /// A decimal operation number, from 1.
    fn parse(digits: &[u8]) -> Option<u32> {
        let mut n: u32 = 0;
        for d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
        }
        (n > 0).then_some(n)
    }

    /// When the run ends (`semihosting::exit`) under `flash-trace`: the total, for the script.
    pub(crate) fn report() {
        let shared = read();
        if shared.magic == MAGIC && shared.flags & TRACE != 0 {
            semihosting::console(
                Line::new()
                    .str("flash: ")
                    .dec(shared.done)
                    .str(" operations this power cycle\n"),
            );
        }
    }

    #[derive(Clone, Copy)]
    pub(super) enum Kind {
        Erase,
        Program,
    }

    /// One erase or program in flight.
    pub(super) struct Op {
        kind: Kind,
        at: u32,
        len: u32,
        /// This is the operation to cut after.
        last: bool,
        torn: bool,
    }

    impl Op {
        /// Count the operation `kind` of `len` bytes at `at` (offset in the flash region).
        pub(super) fn begin(kind: Kind, at: u32, len: u32) -> Self {
            let mut shared = read();
            if shared.magic != MAGIC {
                // Neither image armed the hook (a flash not reached through load or attach).
                return Self {
                    kind,
                    at,
                    len,
                    last: false,
                    torn: false,
                };
            }
            shared.done = shared.done.saturating_add(1);
            write(shared);
            if shared.flags & TRACE != 0 {
                semihosting::console(
                    where_(
                        Line::new()
                            .str("flash: op ")
                            .dec(shared.done)
                            .str(name(kind)),
                        at,
                    )
                    .str(" ")
                    .dec(len)
                    .str("\n"),
                );
            }
            let last = shared.done == shared.cut_after;
            Self {
                kind,
                at,
                len,
                last,
                torn: last && shared.flags & TORN != 0,
            }
        }

        /// How many of the operation's `len` bytes are applied: all, or for a torn operation
        /// half of an erase's bytes, or half of a program's words and one byte more.
        pub(super) fn applied(&self, len: u32) -> u32 {
            match (self.torn, self.kind) {
                (false, _) => len,
                (true, Kind::Erase) => len / 2,
                (true, Kind::Program) => (len / 8 * 4 + 1).min(len),
            }
        }

        /// After the operation reached the host file: the power cut, if it was the one.
        pub(super) fn end(self) {
            if !self.last {
                return;
            }
            let line = Line::new().str("flash: power cut after op ");
            let line = where_(line.dec(read().done).str(name(self.kind)), self.at)
                .str(" ")
                .dec(self.len);
            let line = if self.torn {
                line.str(", torn: ")
                    .dec(self.applied(self.len))
                    .str(" bytes applied\n")
            } else {
                line.str(", complete\n")
            };
            semihosting::console(line);
            semihosting::power_cut()
        }
    }

    fn name(kind: Kind) -> &'static str {
        match kind {
            Kind::Erase => " erase ",
            Kind::Program => " program ",
        }
    }

    /// `PARTITION+0xOFFSET` of an offset in the flash region.
    fn where_(line: Line, at: u32) -> Line {
        let parts = [
            ("state", STATE),
            ("slot-a", SLOT_A),
            ("slot-b", SLOT_B),
            ("trust", TRUST),
            ("trust-staging", TRUST_STAGING),
        ];
        match parts
            .iter()
            .find(|(_, (offset, size))| at >= *offset && at - offset < *size)
        {
            Some((part, (offset, _))) => line.str(part).str("+").hex(at - offset),
            None => line.str("region+").hex(at),
        }
    }
}

#[cfg(feature = "power-cut")]
pub(crate) use cut::report as report_power_cut_count;

//! One part, several partitions: a bootloader holds its slots and its state sector at once,
//! but they are one chip, so one power cut must hit them all.

use std::cell::RefCell;
use std::rc::Rc;

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, ReadNorFlash, check_erase, check_read, check_write,
};

use crate::flash::{Multiwrite, ProgramRule, SimError, SimFlash, Strict};
use crate::geometry::GeometryError;

/// A [`SimFlash`] shared between [`Partition`]s and the test that drives it.
///
/// Single-threaded by design (`Rc`): a simulated device is one thread of control.
pub struct SharedFlash<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule = Strict> {
    inner: Rc<RefCell<SimFlash<WRITE_SIZE, ERASE_SIZE, R>>>,
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> Clone
    for SharedFlash<WRITE_SIZE, ERASE_SIZE, R>
{
    fn clone(&self) -> Self {
        Self {
            inner: Rc::clone(&self.inner),
        }
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> core::fmt::Debug
    for SharedFlash<WRITE_SIZE, ERASE_SIZE, R>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.inner.try_borrow() {
            Ok(flash) => f.debug_tuple("SharedFlash").field(&*flash).finish(),
            Err(_) => f.write_str("SharedFlash(<in use>)"),
        }
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule>
    SharedFlash<WRITE_SIZE, ERASE_SIZE, R>
{
    /// Share `flash`.
    pub fn new(flash: SimFlash<WRITE_SIZE, ERASE_SIZE, R>) -> Self {
        Self {
            inner: Rc::new(RefCell::new(flash)),
        }
    }

    /// Run `f` on the flash itself: arm a power cut, flip a bit, read the counters.
    ///
    /// # Errors
    ///
    /// [`SimError::Busy`] if called from inside an operation of a partition of this flash.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut SimFlash<WRITE_SIZE, ERASE_SIZE, R>) -> T,
    ) -> Result<T, SimError> {
        let mut flash = self.inner.try_borrow_mut().map_err(|_| SimError::Busy)?;
        Ok(f(&mut flash))
    }

    /// The window of `size` bytes at `offset`.
    ///
    /// # Errors
    ///
    /// [`GeometryError::BadPartition`] if it does not fit or is not aligned to `WRITE_SIZE`.
    pub fn partition(
        &self,
        offset: u32,
        size: u32,
    ) -> Result<Partition<WRITE_SIZE, ERASE_SIZE, R>, GeometryError> {
        let bad = GeometryError::BadPartition { offset, size };
        let capacity = self.with(|f| f.capacity()).map_err(|_| bad)?;
        let end = offset.checked_add(size).ok_or(bad)?;
        let aligned = usize::try_from(offset).is_ok_and(|o| o.is_multiple_of(WRITE_SIZE))
            && usize::try_from(size).is_ok_and(|s| s.is_multiple_of(WRITE_SIZE));
        if !usize::try_from(end).is_ok_and(|e| e <= capacity) || !aligned {
            return Err(bad);
        }
        Ok(Partition {
            flash: self.clone(),
            offset,
            size,
        })
    }
}

/// A window of a [`SharedFlash`], addressed from 0, implementing the `NorFlash` traits.
///
/// Erases must still cover whole physical sectors of the underlying part.
pub struct Partition<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule = Strict> {
    flash: SharedFlash<WRITE_SIZE, ERASE_SIZE, R>,
    offset: u32,
    size: u32,
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> core::fmt::Debug
    for Partition<WRITE_SIZE, ERASE_SIZE, R>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Partition")
            .field("offset", &self.offset)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule>
    Partition<WRITE_SIZE, ERASE_SIZE, R>
{
    /// Where the partition starts in the part.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// The partition's size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    fn absolute(&self, offset: u32) -> u32 {
        // Bounds were checked against `size` first, and `offset + size` fits the part.
        self.offset.saturating_add(offset)
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> ErrorType
    for Partition<WRITE_SIZE, ERASE_SIZE, R>
{
    type Error = SimError;
}

fn bounds(
    offset: u32,
    len: usize,
) -> impl FnOnce(embedded_storage::nor_flash::NorFlashErrorKind) -> SimError {
    move |kind| match kind {
        embedded_storage::nor_flash::NorFlashErrorKind::NotAligned => SimError::NotAligned {
            offset,
            len,
            align: 1,
        },
        _ => SimError::OutOfBounds { offset, len },
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> ReadNorFlash
    for Partition<WRITE_SIZE, ERASE_SIZE, R>
{
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        check_read(self, offset, bytes.len()).map_err(bounds(offset, bytes.len()))?;
        let at = self.absolute(offset);
        self.flash.with(|f| f.read(at, bytes))?
    }

    fn capacity(&self) -> usize {
        usize::try_from(self.size).unwrap_or(0)
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize, R: ProgramRule> NorFlash
    for Partition<WRITE_SIZE, ERASE_SIZE, R>
{
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
        check_erase(self, from, to).map_err(bounds(from, len))?;
        let (from, to) = (self.absolute(from), self.absolute(to));
        self.flash.with(|f| f.erase(from, to))?
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        check_write(self, offset, bytes.len()).map_err(bounds(offset, bytes.len()))?;
        let at = self.absolute(offset);
        self.flash.with(|f| f.write(at, bytes))?
    }
}

impl<const WRITE_SIZE: usize, const ERASE_SIZE: usize> MultiwriteNorFlash
    for Partition<WRITE_SIZE, ERASE_SIZE, Multiwrite>
{
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_share_one_part_and_one_power_supply() {
        let shared = SharedFlash::new(SimFlash::<4, 64>::uniform(256, 4, 3).unwrap());
        let mut a = shared.partition(0, 512).unwrap();
        let mut b = shared.partition(512, 512).unwrap();
        b.write(8, &[1, 2, 3, 4]).unwrap();
        assert_eq!(
            shared.with(|f| f.peek(520, 4).unwrap().to_vec()).unwrap(),
            [1, 2, 3, 4]
        );
        shared.with(|f| f.cut_power_after(0)).unwrap();
        assert_eq!(a.write(0, &[0; 4]), Err(SimError::PowerCut));
        let mut buf = [0; 4];
        assert_eq!(b.read(8, &mut buf), Err(SimError::PoweredOff));
        shared.with(SimFlash::power_on).unwrap();
        b.read(8, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
    }

    #[test]
    fn partition_bounds_are_its_own() {
        let shared = SharedFlash::new(SimFlash::<4, 64>::uniform(256, 4, 3).unwrap());
        let mut b = shared.partition(512, 256).unwrap();
        assert_eq!(b.capacity(), 256);
        assert!(matches!(
            b.write(256, &[0; 4]),
            Err(SimError::OutOfBounds { .. })
        ));
        assert!(matches!(b.erase(0, 512), Err(SimError::OutOfBounds { .. })));
        b.erase(0, 256).unwrap();
        assert_eq!(shared.with(|f| f.wear().to_vec()).unwrap(), [0, 0, 1, 0]);
        assert!(shared.partition(768, 512).is_err());
        assert!(shared.partition(2, 256).is_err());
    }
}

//! The physical sector map: which addresses an erase must cover together.

use core::fmt;

/// One physical erase sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sector {
    /// The first address of the sector.
    pub start: u32,
    /// The sector's size in bytes.
    pub size: u32,
}

impl Sector {
    /// One past the last address of the sector.
    pub fn end(&self) -> u32 {
        // Cannot overflow: `SectorMap` refuses maps whose capacity does not fit a `u32`.
        self.start.saturating_add(self.size)
    }
}

/// The sectors of a flash part, in address order, without gaps.
///
/// Real parts often mix sizes (STM32F4: four 16 KiB sectors, one 64 KiB, then 128 KiB ones), so
/// the map is a runtime list rather than a constant. An erase must start and end on sector
/// boundaries of this map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectorMap {
    sectors: Vec<Sector>,
    capacity: u32,
}

impl SectorMap {
    /// `count` sectors of `size` bytes each.
    ///
    /// # Errors
    ///
    /// [`GeometryError`] if there are no sectors, a size is zero or the total overflows `u32`.
    pub fn uniform(size: u32, count: u32) -> Result<Self, GeometryError> {
        let count = usize::try_from(count).map_err(|_| GeometryError::TooLarge)?;
        Self::from_sizes(&vec![size; count])
    }

    /// Sectors with the given sizes, starting at address 0.
    ///
    /// # Errors
    ///
    /// [`GeometryError`] if there are no sectors, a size is zero or the total overflows `u32`.
    pub fn from_sizes(sizes: &[u32]) -> Result<Self, GeometryError> {
        if sizes.is_empty() {
            return Err(GeometryError::Empty);
        }
        let mut sectors = Vec::with_capacity(sizes.len());
        let mut start = 0u32;
        for &size in sizes {
            if size == 0 {
                return Err(GeometryError::ZeroSizedSector);
            }
            sectors.push(Sector { start, size });
            start = start.checked_add(size).ok_or(GeometryError::TooLarge)?;
        }
        Ok(Self {
            sectors,
            capacity: start,
        })
    }

    /// The total size in bytes.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The sectors in address order.
    pub fn sectors(&self) -> &[Sector] {
        &self.sectors
    }

    /// The index of the sector holding `addr`, if `addr` is inside the flash.
    pub fn index_of(&self, addr: u32) -> Option<usize> {
        if addr >= self.capacity {
            return None;
        }
        // Sectors are sorted and contiguous: the holder is the last one starting at or below.
        let after = self.sectors.partition_point(|s| s.start <= addr);
        after.checked_sub(1)
    }

    /// Whether `addr` is the first address of a sector, or the end of the flash.
    pub fn is_boundary(&self, addr: u32) -> bool {
        addr == self.capacity
            || self
                .index_of(addr)
                .and_then(|i| self.sectors.get(i))
                .is_some_and(|s| s.start == addr)
    }
}

/// Why a sector map or a flash configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// The map has no sectors.
    Empty,
    /// A sector has size zero.
    ZeroSizedSector,
    /// The total size does not fit the 32-bit address space of `embedded-storage`.
    TooLarge,
    /// A sector size is not a multiple of the part's minimum erase size.
    SectorNotEraseMultiple {
        /// The sector's first address.
        start: u32,
        /// Its size.
        size: u32,
        /// The minimum erase size (`ERASE_SIZE`).
        erase_size: usize,
    },
    /// `WRITE_SIZE` or `ERASE_SIZE` is zero, or `ERASE_SIZE` is not a multiple of `WRITE_SIZE`.
    BadGranularity {
        /// `WRITE_SIZE`.
        write_size: usize,
        /// `ERASE_SIZE`.
        erase_size: usize,
    },
    /// A partition does not fit inside the flash, or is not aligned to `WRITE_SIZE`.
    BadPartition {
        /// The requested offset.
        offset: u32,
        /// The requested size.
        size: u32,
    },
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("sector map has no sectors"),
            Self::ZeroSizedSector => f.write_str("sector of size zero"),
            Self::TooLarge => f.write_str("flash larger than the 32-bit address space"),
            Self::SectorNotEraseMultiple {
                start,
                size,
                erase_size,
            } => write!(
                f,
                "sector at {start:#x} has size {size}, not a multiple of the erase size {erase_size}"
            ),
            Self::BadGranularity {
                write_size,
                erase_size,
            } => write!(
                f,
                "erase size {erase_size} is not a non-zero multiple of write size {write_size}"
            ),
            Self::BadPartition { offset, size } => write!(
                f,
                "partition at {offset:#x} of {size} bytes does not fit the flash or is unaligned"
            ),
        }
    }
}

impl std::error::Error for GeometryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_map_has_contiguous_sectors() {
        let map = SectorMap::uniform(256, 4).unwrap();
        assert_eq!(map.capacity(), 1024);
        assert_eq!(map.sectors().len(), 4);
        assert_eq!(map.index_of(0), Some(0));
        assert_eq!(map.index_of(255), Some(0));
        assert_eq!(map.index_of(256), Some(1));
        assert_eq!(map.index_of(1023), Some(3));
        assert_eq!(map.index_of(1024), None);
    }

    #[test]
    fn mixed_map_finds_boundaries() {
        let map = SectorMap::from_sizes(&[128, 128, 512, 1024]).unwrap();
        assert_eq!(map.capacity(), 1792);
        assert!(map.is_boundary(0));
        assert!(map.is_boundary(256));
        assert!(map.is_boundary(768));
        assert!(map.is_boundary(1792));
        assert!(!map.is_boundary(512));
        assert_eq!(map.index_of(700), Some(2));
    }

    #[test]
    fn degenerate_maps_are_refused() {
        assert_eq!(SectorMap::from_sizes(&[]), Err(GeometryError::Empty));
        assert_eq!(
            SectorMap::from_sizes(&[256, 0]),
            Err(GeometryError::ZeroSizedSector)
        );
        assert_eq!(
            SectorMap::from_sizes(&[u32::MAX, 1]),
            Err(GeometryError::TooLarge)
        );
    }
}

//! In-place application (placeholder, filled in below).
use crate::Error;

/// Flash of the single slot.
pub trait Flash {
    /// Erase block size.
    fn block_size(&self) -> u32;
    /// Reads.
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error>;
    /// Writes erased bytes.
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error>;
    /// Erases the block starting at `offset`.
    fn erase(&mut self, offset: u32) -> Result<(), Error>;
}

/// Phase of an in-place update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Moving the old image up.
    Shift,
}

/// Progress record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Phase.
    pub phase: Phase,
}

/// Persists the progress record.
pub trait ProgressStore {
    /// Loads.
    fn load(&mut self) -> Result<Option<Progress>, Error>;
    /// Saves.
    fn save(&mut self, p: &Progress) -> Result<(), Error>;
}

/// In-place applier.
#[derive(Debug)]
pub struct InPlaceApplier;

//! The consumer core's [`Slots`] on this board: `suitcase-boot`'s `Updater` in the
//! bootloader's swap-offset layout (layout.rs `CONFIG`). The update is staged in slot B, one
//! sector in (the Updater adds it); the running image is slot A, where it executes in place,
//! so the slot image puts the application at `IMAGE_OFFSET` (the address it is linked for).

use embedded_storage::nor_flash::ReadNorFlash;
use mps2_board::flash::Partition;
use mps2_board::layout::{CONFIG, IMAGE_OFFSET, SECTOR, SLOT_A};
use suitcase_boot::{ImageIndex, ImageSlots, Phase, UpdateError, Updater};
use suitcase_device::consumer::{IoError, SlotRole, Slots};

/// Slot A, slot B and the boot state.
pub struct BoardSlots {
    a: Partition,
    b: Partition,
    state: Partition,
    len: u32,
    /// The sequence number of the running image's manifest (slot A, verified by the
    /// bootloader at this reset).
    running: u64,
}

fn failed<E>(_: E) -> IoError {
    IoError::Failed
}

impl BoardSlots {
    /// The partitions, and the running image's sequence number.
    pub fn new(a: Partition, b: Partition, state: Partition, running: u64) -> Self {
        Self {
            a,
            b,
            state,
            len: 0,
            running,
        }
    }

    fn with<'s, T>(
        &'s mut self,
        op: impl FnOnce(&mut Updater<&'s mut Partition, &'s mut Partition, 1>) -> Result<T, UpdateError>,
    ) -> Result<T, IoError> {
        let slots = [ImageSlots::new(&mut self.a, &mut self.b)];
        let mut updater = Updater::new(CONFIG, slots, &mut self.state).map_err(failed)?;
        op(&mut updater).map_err(failed)
    }
}

impl Slots for BoardSlots {
    fn capacity(&mut self) -> Result<u64, IoError> {
        // Slot B less its spare sector is as large as slot A.
        Ok(u64::from(SLOT_A.1))
    }

    fn min_image_offset(&self) -> u32 {
        IMAGE_OFFSET
    }

    fn installed_sequence(&mut self) -> Result<u64, IoError> {
        let [minimum] = self.with(|u| u.status().map(|s| s.min_security_versions))?;
        Ok(minimum.0.max(self.running))
    }

    fn begin(&mut self, len: u64) -> Result<(), IoError> {
        self.len = u32::try_from(len).map_err(failed)?;
        let n = self.len;
        self.with(|u| u.begin([n]).map(drop))
    }

    fn resume(&mut self, len: u64) -> Result<(), IoError> {
        self.len = u32::try_from(len).map_err(failed)?;
        let n = self.len;
        self.with(|u| u.resume([n]).map(drop))
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let offset = u32::try_from(offset).map_err(failed)?;
        let n = self.len;
        self.with(|u| u.resume([n])?.write(ImageIndex(0), offset, data))
    }

    fn read(&mut self, role: SlotRole, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let offset = u32::try_from(offset).map_err(failed)?;
        match role {
            SlotRole::Running => self.a.read(offset, buf).map_err(failed),
            // Swap-offset: the staged image starts one sector into slot B.
            SlotRole::Update => self
                .b
                .read(offset.checked_add(SECTOR).ok_or(IoError::Failed)?, buf)
                .map_err(failed),
        }
    }

    fn mark_pending(&mut self) -> Result<(), IoError> {
        let n = self.len;
        self.with(|u| u.resume([n])?.finish())
    }

    fn activate(&mut self) -> Result<bool, IoError> {
        // The application ends the QEMU run instead (a reset): the next run's bootloader
        // swaps and boots the update on trial.
        Err(IoError::Failed)
    }

    fn on_trial(&mut self) -> Result<bool, IoError> {
        Ok(self.with(|u| u.status().map(|s| s.phase))? == Phase::Trial)
    }

    fn confirm(&mut self) -> Result<(), IoError> {
        self.with(Updater::confirm)
    }

    fn revert(&mut self) -> Result<(), IoError> {
        Err(IoError::Failed)
    }
}

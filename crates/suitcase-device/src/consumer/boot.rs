//! [`Slots`] for a one-image A/B device on `suitcase-boot`: the application's side of the
//! bootloader (its `Updater`) over two `NorFlash` slots and the state partition, for the
//! simulated MCU and the Cortex-M firmware alike. What a reset does is the device's:
//! [`Reset`].

use embedded_storage::nor_flash::NorFlash;
use suitcase_boot::{Config, ImageIndex, ImageSlots, Mode, Phase, UpdateError, Updater};

use super::io::{IoError, SlotRole, Slots};

/// A reset into the bootloader. On hardware it resets the core and does not return (the
/// application calls [`super::resume`] when it starts again); a simulation runs the
/// bootloader on the partitions. It borrows them, so a reset that fails leaves them with the
/// [`BootSlots`], which stays usable.
pub trait Reset<F, S> {
    /// Resets the device.
    ///
    /// # Errors
    /// [`IoError`] if the bootloader could not run.
    fn reset(
        &mut self,
        config: Config,
        slots: [ImageSlots<&mut F>; 1],
        state: &mut S,
    ) -> Result<(), IoError>;
}

/// [`Slots`] on `suitcase-boot` in [`Mode::AB`]: updates are staged into the slot that is not
/// running, marked pending, booted on trial by the bootloader, and confirmed or reverted.
#[derive(Debug)]
pub struct BootSlots<F, S, R> {
    config: Config,
    slots: ImageSlots<F>,
    state: S,
    staging_len: u32,
    reset: R,
}

fn failed<E>(_: E) -> IoError {
    IoError::Failed
}

impl<F: NorFlash, S: NorFlash, R: Reset<F, S>> BootSlots<F, S, R> {
    /// The slots of a device whose bootloader uses `config`.
    ///
    /// # Errors
    /// [`IoError::Failed`] unless `config` is A/B mode and the partitions fit it.
    pub fn new(config: Config, slots: ImageSlots<F>, state: S, reset: R) -> Result<Self, IoError> {
        if config.mode != Mode::AB {
            return Err(IoError::Failed);
        }
        let ([slots], state) = Updater::new(config, [slots], state)
            .map_err(failed)?
            .into_parts();
        Ok(Self {
            config,
            slots,
            state,
            staging_len: 0,
            reset,
        })
    }

    /// Runs `op` on an updater over the borrowed partitions (checked against the
    /// configuration in `new`).
    fn with<'s, T>(
        &'s mut self,
        op: impl FnOnce(&mut Updater<&'s mut F, &'s mut S, 1>) -> Result<T, UpdateError>,
    ) -> Result<T, IoError> {
        let slots = [ImageSlots::new(&mut self.slots.a, &mut self.slots.b)];
        let mut updater = Updater::new(self.config, slots, &mut self.state).map_err(failed)?;
        op(&mut updater).map_err(failed)
    }

    /// Resets into the bootloader, lending it the partitions.
    fn reset_device(&mut self) -> Result<(), IoError> {
        let slots = [ImageSlots::new(&mut self.slots.a, &mut self.slots.b)];
        self.reset.reset(self.config, slots, &mut self.state)
    }

    /// The device's reset (what the last reset observed, in a simulation).
    pub fn reset(&self) -> &R {
        &self.reset
    }

    /// Withdraws a pending update before any reset has acted on it.
    ///
    /// # Errors
    /// [`IoError::Failed`] unless the update is pending or there is none; flash errors.
    pub fn cancel(&mut self) -> Result<(), IoError> {
        self.with(Updater::cancel)
    }

    fn phase(&mut self) -> Result<Phase, IoError> {
        self.with(|u| u.status().map(|s| s.phase))
    }
}

impl<F: NorFlash, S: NorFlash, R: Reset<F, S>> Slots for BootSlots<F, S, R> {
    fn capacity(&mut self) -> Result<u64, IoError> {
        Ok(self.slots.a.capacity().min(self.slots.b.capacity()) as u64)
    }

    fn installed_sequence(&mut self) -> Result<u64, IoError> {
        let [version] = self.with(|u| u.status().map(|s| s.min_security_versions))?;
        Ok(version.0)
    }

    fn begin(&mut self, len: u64) -> Result<(), IoError> {
        self.staging_len = u32::try_from(len).map_err(failed)?;
        let n = self.staging_len;
        self.with(|u| u.begin([n]).map(drop))
    }

    fn resume(&mut self, len: u64) -> Result<(), IoError> {
        self.staging_len = u32::try_from(len).map_err(failed)?;
        let n = self.staging_len;
        self.with(|u| u.resume([n]).map(drop))
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let offset = u32::try_from(offset).map_err(failed)?;
        let n = self.staging_len;
        self.with(|u| u.resume([n])?.write(ImageIndex(0), offset, data))
    }

    fn read(&mut self, role: SlotRole, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let running = self.with(|u| u.status().map(|s| s.running))?;
        let slot = match role {
            SlotRole::Running => running,
            SlotRole::Update => running.other(),
        };
        let flash = match slot {
            suitcase_boot::Slot::A => &mut self.slots.a,
            suitcase_boot::Slot::B => &mut self.slots.b,
        };
        flash
            .read(u32::try_from(offset).map_err(failed)?, buf)
            .map_err(failed)
    }

    fn mark_pending(&mut self) -> Result<(), IoError> {
        let n = self.staging_len;
        self.with(|u| u.resume([n])?.finish())
    }

    fn activate(&mut self) -> Result<bool, IoError> {
        self.reset_device()?;
        self.on_trial()
    }

    fn on_trial(&mut self) -> Result<bool, IoError> {
        Ok(self.phase()? == Phase::Trial)
    }

    fn confirm(&mut self) -> Result<(), IoError> {
        self.with(Updater::confirm)
    }

    fn revert(&mut self) -> Result<(), IoError> {
        // Each reset on trial counts a trial boot; past the bound the bootloader reverts.
        for _ in 0..=u32::from(self.config.max_trial_boots).saturating_add(1) {
            if !self.on_trial()? {
                return Ok(());
            }
            self.reset_device()?;
        }
        if self.on_trial()? {
            Err(IoError::Failed)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use suitcase_boot::simulate::{SimVerifier, sim_image};
    use suitcase_boot::{BootDecision, BootLoader};
    use suitcase_flash_sim::{Partition, SharedFlash, SimFlash};

    use super::*;
    use crate::consumer::BLOCK;

    const SECTOR: u32 = 256;
    const SLOT: u32 = 16 * SECTOR;
    const IMAGE_LEN: u32 = 1000;

    pub(in crate::consumer) type Part = Partition<4, 256>;

    /// A simulated MCU's reset: `suitcase-boot`'s bootloader with the simulation's verifier,
    /// or, while `broken`, a reset whose bootloader cannot run (the agent's, without a
    /// verifier).
    pub(in crate::consumer) struct SimReset {
        broken: bool,
    }

    impl Reset<Part, Part> for SimReset {
        fn reset(
            &mut self,
            config: Config,
            slots: [ImageSlots<&mut Part>; 1],
            state: &mut Part,
        ) -> Result<(), IoError> {
            if self.broken {
                return Err(IoError::Failed);
            }
            let mut boot = BootLoader::new(config, slots, state, SimVerifier).map_err(failed)?;
            match boot.boot().map_err(failed)? {
                BootDecision::Boot(_) => Ok(()),
                BootDecision::Recovery { .. } => Err(IoError::Failed),
            }
        }
    }

    /// Slots on a simulated NOR flash, booted into a factory image (version 1) in slot A.
    pub(in crate::consumer) fn booted() -> BootSlots<Part, Part, SimReset> {
        let flash = SharedFlash::new(SimFlash::<4, 256>::uniform(SECTOR, 2 + 2 * 16, 1).unwrap());
        let factory = sim_image(ImageIndex(0), 1, IMAGE_LEN);
        flash
            .with(|f| f.load(2 * SECTOR, &factory))
            .unwrap()
            .unwrap();
        let part = |at, len| flash.partition(at, len).unwrap();
        let pair = ImageSlots::new(part(2 * SECTOR, SLOT), part(2 * SECTOR + SLOT, SLOT));
        let reset = SimReset { broken: false };
        let mut slots =
            BootSlots::new(Config::ab(SECTOR), pair, part(0, 2 * SECTOR), reset).unwrap();
        slots.reset_device().unwrap();
        slots
    }

    /// [`booted`], with version 2 staged and pending.
    fn staged() -> BootSlots<Part, Part, SimReset> {
        let mut slots = booted();
        let update = sim_image(ImageIndex(0), 2, IMAGE_LEN);
        slots.begin(u64::from(IMAGE_LEN)).unwrap();
        for (i, block) in update.chunks(BLOCK).enumerate() {
            slots.write((i * BLOCK) as u64, block).unwrap();
        }
        slots.mark_pending().unwrap();
        assert_eq!(slots.phase().unwrap(), Phase::Pending);
        slots
    }

    #[test]
    fn a_failed_reset_at_activation_leaves_the_update_pending_and_the_slots_usable() {
        let mut slots = staged();
        slots.reset.broken = true;
        assert_eq!(slots.activate(), Err(IoError::Failed));
        assert_eq!(slots.phase().unwrap(), Phase::Pending);
        assert_eq!(slots.on_trial(), Ok(false));
        slots.reset.broken = false;
        assert_eq!(slots.activate(), Ok(true));
        slots.confirm().unwrap();
        assert_eq!(slots.installed_sequence(), Ok(2));
    }

    #[test]
    fn a_failed_reset_while_reverting_leaves_the_trial_and_the_slots_usable() {
        let mut slots = staged();
        assert_eq!(slots.activate(), Ok(true));
        slots.reset.broken = true;
        assert_eq!(slots.revert(), Err(IoError::Failed));
        assert_eq!(slots.phase().unwrap(), Phase::Trial);
        slots.reset.broken = false;
        slots.revert().unwrap();
        assert_eq!(slots.on_trial(), Ok(false));
        let mut version = [0u8; 8];
        slots.read(SlotRole::Running, 8, &mut version).unwrap();
        assert_eq!(u64::from_le_bytes(version), 1);
    }
}

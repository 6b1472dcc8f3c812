//! [`Slots`] for a one-image A/B device on `suitcase-boot`: the application's side of the
//! bootloader (its `Updater`) over two `NorFlash` slots and the state partition, for the
//! simulated MCU and the Cortex-M firmware alike. What a reset does is the device's:
//! [`Reset`].

use embedded_storage::nor_flash::NorFlash;
use suitcase_boot::{Config, ImageIndex, ImageSlots, Mode, Phase, UpdateError, Updater};

use super::io::{IoError, SlotRole, Slots};

/// A reset into the bootloader. On hardware it resets the core and does not return (the
/// application calls [`super::resume`] when it starts again); a simulation runs the
/// bootloader on the partitions and gives them back.
pub trait Reset<F, S> {
    /// Resets the device.
    ///
    /// # Errors
    /// [`IoError`] if the bootloader could not run.
    fn reset(
        &mut self,
        config: Config,
        slots: [ImageSlots<F>; 1],
        state: S,
    ) -> Result<([ImageSlots<F>; 1], S), IoError>;
}

/// [`Slots`] on `suitcase-boot` in [`Mode::AB`]: updates are staged into the slot that is not
/// running, marked pending, booted on trial by the bootloader, and confirmed or reverted.
#[derive(Debug)]
pub struct BootSlots<F, S, R> {
    config: Config,
    parts: Option<([ImageSlots<F>; 1], S)>,
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
        let updater = Updater::new(config, [slots], state).map_err(failed)?;
        Ok(Self {
            config,
            parts: Some(updater.into_parts()),
            staging_len: 0,
            reset,
        })
    }

    /// Runs `op` on an updater over the partitions.
    fn with<T>(
        &mut self,
        op: impl FnOnce(&mut Updater<F, S, 1>) -> Result<T, UpdateError>,
    ) -> Result<T, IoError> {
        let (slots, state) = self.parts.take().ok_or(IoError::Failed)?;
        // The partitions were checked against the configuration in `new`.
        let mut updater = Updater::new(self.config, slots, state).map_err(failed)?;
        let result = op(&mut updater);
        self.parts = Some(updater.into_parts());
        result.map_err(failed)
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
        let ([pair], _) = self.parts.as_ref().ok_or(IoError::Failed)?;
        Ok(pair.a.capacity().min(pair.b.capacity()) as u64)
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
        let ([pair], _) = self.parts.as_mut().ok_or(IoError::Failed)?;
        let flash = match slot {
            suitcase_boot::Slot::A => &mut pair.a,
            suitcase_boot::Slot::B => &mut pair.b,
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
        let (slots, state) = self.parts.take().ok_or(IoError::Failed)?;
        self.parts = Some(self.reset.reset(self.config, slots, state)?);
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
            let (slots, state) = self.parts.take().ok_or(IoError::Failed)?;
            self.parts = Some(self.reset.reset(self.config, slots, state)?);
        }
        if self.on_trial()? {
            Err(IoError::Failed)
        } else {
            Ok(())
        }
    }
}

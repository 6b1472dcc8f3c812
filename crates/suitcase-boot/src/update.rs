//! Application time: stage an update, ask for it to be installed, confirm the running image.

use embedded_storage::nor_flash::NorFlash;

use crate::error::{ConfigError, Failure, UpdateError};
use crate::layout::{Config, Geometry, ImageSlots, Mode, Slot};
use crate::record::{Phase, StateRecord};
use crate::store::{State, StateStore, StoreError};
use crate::verify::{ImageIndex, SecurityVersion};

/// What the application can learn about the boot state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootStatus<const N: usize> {
    /// Where the update stands.
    pub phase: Phase,
    /// The slot the running images execute from.
    pub running: Slot,
    /// The slot holding the last confirmed images (the fallback while on trial).
    pub confirmed: Slot,
    /// Trial boots so far (in [`Phase::Trial`]; 0 otherwise).
    pub trial_boots: u32,
    /// The bound after which an unconfirmed image is reverted.
    pub max_trial_boots: u8,
    /// Why the last update was refused or reverted, until the next update is staged.
    pub last_failure: Option<Failure>,
    /// The anti-rollback counters: the lowest security version each image may have.
    pub min_security_versions: [SecurityVersion; N],
    /// The state record's sequence number (how many times it has been written).
    pub sequence: u32,
}

/// The application's side of the bootloader: it can stage an update into the slot that is
/// not in use, ask for it to be installed, and confirm the running image, and nothing else.
///
/// It never writes to the running slot or the fallback slot, and it changes the state record
/// only through the transitions in the step tables on [`crate::BootLoader`] (each one atomic),
/// so no sequence of calls, and no power cut between them, can leave the device unbootable.
#[derive(Debug)]
pub struct Updater<F, S, const N: usize> {
    config: Config,
    geometry: Geometry,
    slots: [ImageSlots<F>; N],
    store: StateStore<S>,
}

impl<F: NorFlash, S: NorFlash, const N: usize> Updater<F, S, N> {
    /// An updater over the same partitions and configuration as the bootloader.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if the partitions do not fit the configuration.
    pub fn new(config: Config, slots: [ImageSlots<F>; N], state: S) -> Result<Self, ConfigError> {
        let geometry = Geometry::check(&config, &slots)?;
        let store = StateStore::new(state, geometry.marks)?;
        Ok(Self {
            config,
            geometry,
            slots,
            store,
        })
    }

    /// Give the partitions back.
    pub fn into_parts(self) -> ([ImageSlots<F>; N], S) {
        (self.slots, self.store.into_inner())
    }

    /// The boot state as recorded now.
    ///
    /// # Errors
    ///
    /// [`UpdateError`] if the state cannot be read or is not this layout's.
    pub fn status(&mut self) -> Result<BootStatus<N>, UpdateError> {
        let state = self.load()?;
        let record = &state.record;
        let running = match (self.config.mode, record.phase) {
            (Mode::Swap | Mode::SwapOffset, _) => Slot::A,
            (Mode::AB, Phase::Trial) => record.active.other(),
            (Mode::AB, _) => record.active,
        };
        let mut min_security_versions = [SecurityVersion(0); N];
        for (out, &c) in min_security_versions.iter_mut().zip(&record.counters) {
            *out = SecurityVersion(c);
        }
        Ok(BootStatus {
            phase: record.phase,
            running,
            confirmed: if self.config.mode.swaps() {
                Slot::A
            } else {
                record.active
            },
            trial_boots: if record.phase == Phase::Trial {
                state.marks
            } else {
                0
            },
            max_trial_boots: self.config.max_trial_boots,
            last_failure: record.failure,
            min_security_versions,
            sequence: record.sequence,
        })
    }

    /// Confirm the running image: it becomes the known-good one, and the anti-rollback
    /// counters advance to its security versions. Does nothing if it is already confirmed.
    ///
    /// Call it once the application has checked that it works (it can reach its update
    /// server, its peripherals answer). Until then a reset reverts to the previous image.
    ///
    /// # Errors
    ///
    /// [`UpdateError::WrongPhase`] in the middle of a swap, which a running application never
    /// sees; flash errors.
    pub fn confirm(&mut self) -> Result<(), UpdateError> {
        let mut state = self.load()?;
        match state.record.phase {
            Phase::Trial => {
                let record = state.record;
                let mut counters = record.counters;
                // The counter only ever rises, and only here: the previous image stays
                // bootable until the new one has proven itself.
                for (counter, &candidate) in counters.iter_mut().zip(&record.candidates) {
                    *counter = (*counter).max(candidate);
                }
                let next = StateRecord {
                    phase: Phase::Confirmed,
                    active: if self.config.mode.swaps() {
                        Slot::A
                    } else {
                        record.active.other()
                    },
                    failure: None,
                    counters,
                    ..record
                };
                self.write(&mut state, next)
            }
            Phase::Confirmed | Phase::Pending => Ok(()),
            phase @ (Phase::Installing | Phase::Reverting) => {
                Err(UpdateError::WrongPhase { phase })
            }
        }
    }

    /// Withdraw a pending update before the bootloader has acted on it.
    ///
    /// # Errors
    ///
    /// [`UpdateError::WrongPhase`] unless the state is pending or confirmed; flash errors.
    pub fn cancel(&mut self) -> Result<(), UpdateError> {
        let mut state = self.load()?;
        match state.record.phase {
            Phase::Pending => {
                let next = StateRecord {
                    phase: Phase::Confirmed,
                    ..state.record
                };
                self.write(&mut state, next)
            }
            Phase::Confirmed => Ok(()),
            phase => Err(UpdateError::WrongPhase { phase }),
        }
    }

    /// Start staging an update of `sizes[i]` bytes for image `i` (every image of the layout is
    /// part of every update). Withdraws a pending update, then erases the sectors the new
    /// images will occupy in the slot that is not in use.
    ///
    /// # Errors
    ///
    /// [`UpdateError::TrialNotConfirmed`] while the running image is on trial (the other slot
    /// holds the only known-good image); [`UpdateError::TooLarge`] or
    /// [`UpdateError::EmptyImage`] for sizes that do not fit; flash errors.
    pub fn begin(&mut self, sizes: [u32; N]) -> Result<Staging<'_, F, S, N>, UpdateError> {
        let mut state = self.load()?;
        match state.record.phase {
            Phase::Confirmed => {}
            Phase::Pending => {
                let next = StateRecord {
                    phase: Phase::Confirmed,
                    ..state.record
                };
                self.write(&mut state, next)?;
            }
            Phase::Trial => return Err(UpdateError::TrialNotConfirmed),
            phase @ (Phase::Installing | Phase::Reverting) => {
                return Err(UpdateError::WrongPhase { phase });
            }
        }
        let (target, base, erased) = self.staging_plan(state.record.active, &sizes)?;
        for (pair, &len) in self.slots.iter_mut().zip(&erased) {
            pair.get_mut(target).erase(base, base.saturating_add(len))?;
        }
        Ok(Staging {
            updater: self,
            target,
            base,
            erased,
        })
    }

    /// Where an update of these sizes is staged, for [`Self::begin`] and [`Self::resume`]: the
    /// target slot, the offset of its images (one sector into the secondary in swap-offset
    /// mode) and each image's length rounded up to whole sectors; every size checked against
    /// its slot.
    fn staging_plan(
        &self,
        active: Slot,
        sizes: &[u32; N],
    ) -> Result<(Slot, u32, [u32; N]), UpdateError> {
        let target = if self.config.mode.swaps() {
            Slot::B
        } else {
            active.other()
        };
        let base = self.geometry.image_offset(self.config.mode, target);
        let sector = self.geometry.sector;
        let mut erased = [0u32; N];
        for (i, (&size, out)) in sizes.iter().zip(erased.iter_mut()).enumerate() {
            let image = ImageIndex(u8::try_from(i).unwrap_or(u8::MAX));
            let capacity = self.geometry.staging_capacity(self.config.mode, i, target);
            if size == 0 {
                return Err(UpdateError::EmptyImage { image });
            }
            if size > capacity {
                return Err(UpdateError::TooLarge {
                    image,
                    size,
                    capacity,
                });
            }
            *out = size.div_ceil(sector).saturating_mul(sector);
        }
        Ok((target, base, erased))
    }

    /// Continue staging after a restart that cut a download short: like [`Self::begin`] with
    /// the same sizes, but it erases nothing, so the bytes written before the cut stay and only
    /// the rest is written (each byte still once). The staged bytes are unverified until the
    /// bootloader verifies them, as with [`Self::begin`].
    ///
    /// # Errors
    ///
    /// [`UpdateError::WrongPhase`] unless the state is confirmed (what [`Self::begin`] left);
    /// [`UpdateError::TooLarge`] or [`UpdateError::EmptyImage`] as for [`Self::begin`].
    pub fn resume(&mut self, sizes: [u32; N]) -> Result<Staging<'_, F, S, N>, UpdateError> {
        let state = self.load()?;
        if state.record.phase != Phase::Confirmed {
            return Err(UpdateError::WrongPhase {
                phase: state.record.phase,
            });
        }
        let (target, base, erased) = self.staging_plan(state.record.active, &sizes)?;
        Ok(Staging {
            updater: self,
            target,
            base,
            erased,
        })
    }

    fn load(&mut self) -> Result<State, UpdateError> {
        let initial = StateRecord::initial(self.config.mode, u8::try_from(N).unwrap_or(u8::MAX));
        let state = self.store.load(initial).map_err(update_error)?;
        if state.record.mode != self.config.mode || usize::from(state.record.images) != N {
            return Err(UpdateError::StateMismatch);
        }
        Ok(state)
    }

    fn write(&mut self, state: &mut State, next: StateRecord) -> Result<(), UpdateError> {
        self.store.write(state, next).map_err(update_error)
    }
}

/// An update being written into the slot that is not in use. [`Staging::finish`] asks for it
/// to be installed at the next boot; dropping it instead leaves the device as it was.
#[derive(Debug)]
pub struct Staging<'u, F, S, const N: usize> {
    updater: &'u mut Updater<F, S, N>,
    target: Slot,
    /// Where image offset 0 is in the target slot.
    base: u32,
    erased: [u32; N],
}

impl<F: NorFlash, S: NorFlash, const N: usize> Staging<'_, F, S, N> {
    /// The slot being written.
    pub fn target(&self) -> Slot {
        self.target
    }

    /// Write `data` at `offset` of image `image`. Offsets and lengths must be multiples of the
    /// flash write size (pad the last chunk with `0xFF`), and each byte is written once.
    /// Offsets count from the start of the image, which in swap-offset mode is one sector
    /// into the slot.
    ///
    /// # Errors
    ///
    /// [`UpdateError::BadWrite`] outside the size given to [`Updater::begin`] (rounded up to a
    /// sector) or unaligned; [`UpdateError::NoSuchImage`]; flash errors.
    pub fn write(
        &mut self,
        image: ImageIndex,
        offset: u32,
        data: &[u8],
    ) -> Result<(), UpdateError> {
        let i = usize::from(image.0);
        let limit = *self
            .erased
            .get(i)
            .ok_or(UpdateError::NoSuchImage { image })?;
        let bad = UpdateError::BadWrite {
            image,
            offset,
            len: data.len(),
        };
        let len = u32::try_from(data.len()).map_err(|_| bad)?;
        let aligned = usize::try_from(offset).is_ok_and(|o| o.is_multiple_of(F::WRITE_SIZE))
            && data.len().is_multiple_of(F::WRITE_SIZE);
        if !aligned || offset.checked_add(len).is_none_or(|end| end > limit) {
            return Err(bad);
        }
        let pair = self
            .updater
            .slots
            .get_mut(i)
            .ok_or(UpdateError::NoSuchImage { image })?;
        pair.get_mut(self.target)
            .write(self.base.saturating_add(offset), data)?;
        Ok(())
    }

    /// Mark the staged update pending: the next boot verifies and installs it.
    ///
    /// # Errors
    ///
    /// Flash errors; [`UpdateError::WrongPhase`] if the state changed underneath.
    pub fn finish(self) -> Result<(), UpdateError> {
        let mut state = self.updater.load()?;
        if state.record.phase != Phase::Confirmed {
            return Err(UpdateError::WrongPhase {
                phase: state.record.phase,
            });
        }
        let next = StateRecord {
            phase: Phase::Pending,
            failure: None,
            ..state.record
        };
        self.updater.write(&mut state, next)
    }
}

fn update_error(error: StoreError) -> UpdateError {
    match error {
        StoreError::Flash(kind) => UpdateError::Flash(kind),
        StoreError::Unsupported { version } => UpdateError::UnsupportedState { version },
        // Only mark writes and an impossible record-buffer overrun report this.
        StoreError::Marks => {
            UpdateError::Flash(embedded_storage::nor_flash::NorFlashErrorKind::Other)
        }
    }
}

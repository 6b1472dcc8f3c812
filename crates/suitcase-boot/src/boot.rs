//! Boot time: decide what runs, finishing or undoing whatever an update left half-done.

use embedded_storage::nor_flash::NorFlash;

use crate::error::{BootError, ConfigError, Failure, RecoveryReason};
use crate::layout::{Config, Geometry, ImageSlots, MAX_IMAGES, Mode, Slot};
use crate::record::{Phase, StateRecord};
use crate::store::{State, StateStore, StoreError};
use crate::swap::{Direction, run_step, steps_per_sector};
use crate::verify::{ImageIndex, ImageVerifier, Measurement, SecurityVersion, VerifyError, Window};

/// The longest chain of phases one boot walks through: pending → installing → trial (the
/// trial image fails verification) → reverting → confirmed.
const MAX_STEPS: usize = 8;

/// What the bootloader decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDecision<const N: usize> {
    /// Jump to the images in this slot: every one of them was verified just now.
    Boot(BootTarget<N>),
    /// Boot nothing: stay in the bootloader (or start a recovery image) and report why.
    Recovery {
        /// Why no image may run.
        reason: RecoveryReason,
    },
}

/// A verified boot: where to jump and what to tell the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootTarget<const N: usize> {
    /// The slot of every image to boot (always [`Slot::A`] in the swap modes).
    pub slot: Slot,
    /// Whether the images are confirmed or on trial.
    pub state: ImageState,
    /// What the verifier measured, per image: the digest for attestation and the security
    /// version.
    pub measurements: [Measurement; N],
    /// The last failed update, if the state still records one.
    pub last_failure: Option<Failure>,
}

/// Whether the running image is known-good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageState {
    /// Confirmed by the application after an earlier boot (or provisioned at the factory).
    Confirmed,
    /// Booted on trial: unless the application confirms it, it is reverted once it has been
    /// booted `max` times.
    Trial {
        /// This boot's number, from 1.
        boot: u32,
        /// The bound.
        max: u8,
    },
}

/// The bootloader: runs once per reset and decides what to boot.
///
/// Generic over the flash of the image slots (`F`), the flash of the state partition (`S`),
/// the image verifier (`V`) and the number of images updated together (`N`, 1 or 2). It never
/// boots an image the verifier refused, and never one below the anti-rollback counter.
///
/// # Update, confirm and revert, step by step
///
/// Every row is one flash write (or one erase-then-write). "Cut" says what the next boot finds
/// if the power fails during that row, and why that is safe. The record is replaced atomically
/// ([`crate::store`]): a torn replacement leaves the previous record in force.
///
/// **A/B** (the application runs from slot A; the update goes to B):
///
/// | # | who | write | state after | cut |
/// |---|-----|-------|-------------|-----|
/// | 1 | app | erase and program B ([`crate::Staging`]) | confirmed A, B partial | boots A; nothing refers to B; the download is restarted |
/// | 2 | app | record *pending* | pending | torn: still confirmed A, as row 1 |
/// | 3 | boot | verify B, then record *trial* (or *confirmed A* + failure if B is invalid or rolls back) | trial, 0 marks | torn: still pending, row 3 is redone |
/// | 4 | boot | trial mark, then boot B | trial, n marks | torn mark reads as set or not; either way boots stay bounded |
/// | 5 | app | confirm: record *confirmed B*, counter raised to B's version | confirmed B | torn: still trial; the next boot is another trial boot, or a revert if the bound is reached (the update is then retried) |
///
/// Revert (A/B): when the trial marks reach `max_trial_boots`, or B fails verification on a
/// trial boot, the bootloader writes record *confirmed A* with the failure. Torn: still trial,
/// and the next boot takes the same decision again.
///
/// **Swap** (P primary, S secondary; the update goes to S):
///
/// | # | who | write | state after | cut |
/// |---|-----|-------|-------------|-----|
/// | 1 | app | erase and program S | confirmed, S partial | boots P; nothing refers to S |
/// | 2 | app | record *pending* | pending | torn: still confirmed |
/// | 3 | boot | verify S (and measure P), then record *installing* with the sector count K | installing, 0 marks | torn: still pending, redone |
/// | 4 | boot | swap step s: erase its destination sector, copy its source ([`crate::swap`]) | installing, s marks | destination torn, mark missing: the step is redone from its source, which no earlier step overwrote |
/// | 5 | boot | mark s | installing, s+1 marks | torn mark: set (step complete) or not (redone; idempotent) |
/// | 6 | boot | after 3K marks: record *trial* | trial, 0 marks | torn: installing with all marks, only this record is rewritten |
/// | 7 | boot | verify P, trial mark, boot P | trial, n marks | as A/B row 4 |
/// | 8 | app | confirm: record *confirmed*, counter raised | confirmed | torn: still trial, as A/B row 5 |
///
/// Revert (swap): record *reverting* with the failure (torn: still trial, decided again), then
/// the same 3K steps and marks as rows 4-5 (which swap the images back), then record
/// *confirmed* (torn: reverting with all marks, only the record is rewritten).
///
/// **Swap-offset** ([`Mode::SwapOffset`]): the same rows, with the update staged one sector
/// into S (row 1) and verified there (row 3), and 2K swap steps and marks instead of 3K
/// (rows 4-6). The revert runs the install steps' inverses in reverse order, again 2K steps
/// and marks ([`crate::swap`]).
///
/// **Multi-image** (`N = 2`, any mode): one record governs both images. In the swap modes the
/// steps of image 0 and then image 1 are numbered consecutively under one *installing* (or
/// *reverting*) record, and the bootloader boots only from *confirmed* or *trial*, which are
/// written after every image has been swapped. So the images it boots are both new or both
/// old, never one of each. In A/B mode both images switch slot with the same record write.
#[derive(Debug)]
pub struct BootLoader<F, S, V, const N: usize> {
    config: Config,
    geometry: Geometry,
    slots: [ImageSlots<F>; N],
    store: StateStore<S>,
    verifier: V,
}

/// Why an image may not run, before it is turned into a [`Failure`] or a [`RecoveryReason`].
enum Refusal {
    Invalid {
        image: ImageIndex,
        error: VerifyError,
    },
    Rollback {
        image: ImageIndex,
        offered: SecurityVersion,
        minimum: SecurityVersion,
    },
}

impl Refusal {
    fn failure(self) -> Failure {
        match self {
            Self::Invalid { image, error } => Failure::Invalid { image, error },
            Self::Rollback {
                image,
                offered,
                minimum,
            } => Failure::Rollback {
                image,
                offered,
                minimum,
            },
        }
    }

    fn recovery(self, slot: Slot) -> RecoveryReason {
        match self {
            Self::Invalid { image, error } => RecoveryReason::Invalid { slot, image, error },
            Self::Rollback {
                image,
                offered,
                minimum,
            } => RecoveryReason::Rollback {
                slot,
                image,
                offered,
                minimum,
            },
        }
    }
}

impl<F: NorFlash, S: NorFlash, V: ImageVerifier, const N: usize> BootLoader<F, S, V, N> {
    /// A bootloader over `slots` (one pair per image) and the `state` partition.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if the partitions do not fit the configuration.
    pub fn new(
        config: Config,
        slots: [ImageSlots<F>; N],
        state: S,
        verifier: V,
    ) -> Result<Self, ConfigError> {
        let geometry = Geometry::check(&config, &slots)?;
        let store = StateStore::new(state, geometry.marks)?;
        Ok(Self {
            config,
            geometry,
            slots,
            store,
            verifier,
        })
    }

    /// Give the partitions and the verifier back.
    pub fn into_parts(self) -> ([ImageSlots<F>; N], S, V) {
        (self.slots, self.store.into_inner(), self.verifier)
    }

    /// Decide what to boot, first finishing or undoing whatever the last reset interrupted.
    ///
    /// Run it on every reset. It may write the state record and, in the swap modes, move images.
    ///
    /// # Errors
    ///
    /// [`BootError::Flash`] if the flash failed; nothing is lost, run it again after a reset.
    pub fn boot(&mut self) -> Result<BootDecision<N>, BootError> {
        let mut state = match self.store.load(self.initial()) {
            Ok(state) => state,
            Err(StoreError::Unsupported { version }) => {
                return Ok(BootDecision::Recovery {
                    reason: RecoveryReason::UnsupportedState { version },
                });
            }
            Err(e) => return Err(store_error(e)),
        };
        if state.record.mode != self.config.mode || usize::from(state.record.images) != N {
            return Ok(BootDecision::Recovery {
                reason: RecoveryReason::StateMismatch,
            });
        }
        let mut verified = None;
        for _ in 0..MAX_STEPS {
            match state.record.phase {
                Phase::Confirmed => return Ok(self.boot_confirmed(&state)),
                Phase::Pending => verified = self.accept_pending(&mut state)?,
                Phase::Installing => {
                    self.swap(&mut state, Direction::Install)?;
                    let next = StateRecord {
                        phase: Phase::Trial,
                        ..state.record
                    };
                    self.write(&mut state, next)?;
                }
                Phase::Reverting => {
                    self.swap(&mut state, Direction::Revert)?;
                    let next = StateRecord {
                        phase: Phase::Confirmed,
                        ..state.record
                    };
                    self.write(&mut state, next)?;
                }
                Phase::Trial => {
                    if let Some(decision) = self.boot_trial(&mut state, verified.take())? {
                        return Ok(decision);
                    }
                }
            }
        }
        Err(BootError::NoProgress)
    }

    fn initial(&self) -> StateRecord {
        StateRecord::initial(self.config.mode, u8::try_from(N).unwrap_or(u8::MAX))
    }

    fn write(&mut self, state: &mut State, next: StateRecord) -> Result<(), BootError> {
        self.store.write(state, next).map_err(store_error)
    }

    /// The slot the update occupies while it is pending or on trial.
    fn candidate_slot(&self, record: &StateRecord) -> Slot {
        if self.config.mode.swaps() {
            Slot::B
        } else {
            record.active.other()
        }
    }

    fn boot_confirmed(&mut self, state: &State) -> BootDecision<N> {
        let slot = if self.config.mode.swaps() {
            Slot::A
        } else {
            state.record.active
        };
        match self.measure(slot, &state.record.counters) {
            Ok(measurements) => BootDecision::Boot(BootTarget {
                slot,
                state: ImageState::Confirmed,
                measurements,
                last_failure: state.record.failure,
            }),
            Err(refusal) => BootDecision::Recovery {
                reason: refusal.recovery(slot),
            },
        }
    }

    /// Pending: verify the update where it was staged before anything moves. Returns the
    /// measurements when the update can boot from where it is (A/B).
    fn accept_pending(&mut self, state: &mut State) -> Result<Option<[Measurement; N]>, BootError> {
        let slot = self.candidate_slot(&state.record);
        let measurements = match self.measure(slot, &state.record.counters) {
            Ok(m) => m,
            Err(refusal) => {
                let next = StateRecord {
                    phase: Phase::Confirmed,
                    failure: Some(refusal.failure()),
                    ..state.record
                };
                self.write(state, next)?;
                return Ok(None);
            }
        };
        let mut candidates = [0u64; MAX_IMAGES];
        for (c, m) in candidates.iter_mut().zip(&measurements) {
            *c = m.security_version.0;
        }
        match self.config.mode {
            Mode::AB => {
                let next = StateRecord {
                    phase: Phase::Trial,
                    failure: None,
                    candidates,
                    ..state.record
                };
                self.write(state, next)?;
                Ok(Some(measurements))
            }
            Mode::Swap | Mode::SwapOffset => {
                let next = match self.swap_sectors(&measurements) {
                    Ok(swap_sectors) => StateRecord {
                        phase: Phase::Installing,
                        failure: None,
                        candidates,
                        swap_sectors,
                        ..state.record
                    },
                    Err(failure) => StateRecord {
                        phase: Phase::Confirmed,
                        failure: Some(failure),
                        ..state.record
                    },
                };
                self.write(state, next)?;
                Ok(None)
            }
        }
    }

    /// How many sectors of each image the swap must exchange: enough for the larger of the
    /// update and the image it replaces (so the revert gets the whole old image back).
    fn swap_sectors(&mut self, update: &[Measurement; N]) -> Result<[u32; MAX_IMAGES], Failure> {
        let sector = self.geometry.sector;
        let mode = self.config.mode;
        let mut out = [0u32; MAX_IMAGES];
        for (i, ((pair, m), k)) in self
            .slots
            .iter_mut()
            .zip(update)
            .zip(out.iter_mut())
            .enumerate()
        {
            let image = ImageIndex(u8::try_from(i).unwrap_or(u8::MAX));
            let most = self.geometry.staging_capacity(mode, i, Slot::B);
            // An unverifiable primary is swapped out whole: nothing says where it ends.
            let current = self
                .verifier
                .verify(image, &mut Window::new(&mut pair.a, 0))
                .map_or(most, |m| m.size);
            let size = current.max(m.size);
            if size > most {
                return Err(Failure::TooLarge { image });
            }
            *k = size.div_ceil(sector).max(1);
        }
        Ok(out)
    }

    /// Trial: boot the update once more, or revert it.
    fn boot_trial(
        &mut self,
        state: &mut State,
        verified: Option<[Measurement; N]>,
    ) -> Result<Option<BootDecision<N>>, BootError> {
        let max = self.config.max_trial_boots;
        if state.marks >= u32::from(max) {
            self.revert(state, Failure::NotConfirmed)?;
            return Ok(None);
        }
        let slot = if self.config.mode.swaps() {
            Slot::A
        } else {
            state.record.active.other()
        };
        let measurements = match verified {
            Some(m) => m,
            None => match self.measure(slot, &state.record.counters) {
                Ok(m) => m,
                Err(refusal) => {
                    self.revert(state, refusal.failure())?;
                    return Ok(None);
                }
            },
        };
        // Count the boot before it happens: an image that hangs or resets before confirming
        // still uses up one of its trial boots.
        self.store.add_mark(state).map_err(store_error)?;
        Ok(Some(BootDecision::Boot(BootTarget {
            slot,
            state: ImageState::Trial {
                boot: state.marks,
                max,
            },
            measurements,
            last_failure: None,
        })))
    }

    fn revert(&mut self, state: &mut State, failure: Failure) -> Result<(), BootError> {
        let phase = if self.config.mode.swaps() {
            Phase::Reverting
        } else {
            Phase::Confirmed
        };
        let next = StateRecord {
            phase,
            failure: Some(failure),
            ..state.record
        };
        self.write(state, next)
    }

    /// Run the swap steps that have no progress mark yet, marking each when it completes.
    fn swap(&mut self, state: &mut State, direction: Direction) -> Result<(), BootError> {
        let mode = self.config.mode;
        if !mode.swaps() {
            return Ok(());
        }
        let sector = self.geometry.sector;
        let mut index = 0u32;
        for (i, pair) in self.slots.iter_mut().enumerate() {
            // Clamped to the checked geometry: the marks and the sectors stay in bounds
            // whatever the record says.
            let most = self.geometry.staging_capacity(mode, i, Slot::B) / sector;
            let k = state
                .record
                .swap_sectors
                .get(i)
                .copied()
                .unwrap_or(0)
                .min(most);
            for step in 0..k.saturating_mul(steps_per_sector(mode)) {
                if index >= state.marks {
                    run_step(mode, direction, pair, k, step, sector).map_err(BootError::Flash)?;
                    self.store.add_mark(state).map_err(store_error)?;
                }
                index = index.saturating_add(1);
            }
        }
        Ok(())
    }

    /// Verify every image in `slot` and check it against the anti-rollback counters.
    fn measure(
        &mut self,
        slot: Slot,
        counters: &[u64; MAX_IMAGES],
    ) -> Result<[Measurement; N], Refusal> {
        let mut out = [Measurement::EMPTY; N];
        // Where the images start in `slot` (one sector in, for a staged swap-offset update).
        let offset = self.geometry.image_offset(self.config.mode, slot);
        for (i, (pair, m)) in self.slots.iter_mut().zip(out.iter_mut()).enumerate() {
            let image = ImageIndex(u8::try_from(i).unwrap_or(u8::MAX));
            let found = self
                .verifier
                .verify(image, &mut Window::new(pair.get_mut(slot), offset))
                .map_err(|error| Refusal::Invalid { image, error })?;
            let minimum = SecurityVersion(counters.get(i).copied().unwrap_or(0));
            // RFC 9019 §6 (threat "rollback"): an old but authentic image MUST NOT be
            // installed or booted once a newer one has been confirmed.
            if found.security_version < minimum {
                return Err(Refusal::Rollback {
                    image,
                    offered: found.security_version,
                    minimum,
                });
            }
            *m = found;
        }
        Ok(out)
    }
}

fn store_error(error: StoreError) -> BootError {
    match error {
        StoreError::Flash(kind) => BootError::Flash(kind),
        // A record with an unknown format is handled before any write; marks beyond the
        // checked capacity cannot be asked for. Either would be a bug.
        StoreError::Unsupported { .. } | StoreError::Marks => BootError::NoProgress,
    }
}

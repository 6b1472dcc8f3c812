//! Storing the state record so that every update of it is atomic under a torn write.
//!
//! The state partition is split into two equal halves. Each half holds one [`StateRecord`]
//! at its start, followed by write-once **progress marks**:
//!
//! ```text
//!  half 0: [ record (seq s)   | mark 0 | mark 1 | ... | 0xFF ... ]
//!  half 1: [ record (seq s+1) | mark 0 | 0xFF ...                ]   <- current: highest valid seq
//! ```
//!
//! * **Changing the record** erases the *other* half and writes the new record there with the
//!   sequence number plus one. Until that write completes, the current half is untouched and
//!   still wins; a torn erase or write leaves the other half failing its CRC (or holding an
//!   older sequence number), so the reader keeps the current record. After it completes, the
//!   new record wins. There is no instant at which neither is valid.
//! * **A progress mark** is one `WRITE_SIZE` word written to zero, in order, after the step it
//!   stands for has completed. The reader counts marks up to the first word that reads
//!   erased. A torn mark reads either erased (the step is redone: every step is idempotent) or
//!   not (the step was complete anyway). Marks count swap steps in the installing and
//!   reverting phases and boot attempts in the trial phase, so those cost one word each
//!   instead of an erase.
//!
//! Words are programmed once between erases, which the `NorFlash` trait requires and parts
//! with ECC flash enforce.

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};

use crate::error::ConfigError;
use crate::record::{Decoded, RECORD_LEN, StateRecord};

/// The largest flash write size supported (the buffers are on the stack).
pub const MAX_WRITE_SIZE: usize = 64;
/// Bytes read at a time when loading a record or counting marks.
const READ_CHUNK: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Half {
    First,
    Second,
}

/// The record in force, where it lives, and how many progress marks follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) record: StateRecord,
    half: Option<Half>,
    pub(crate) marks: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreError {
    Flash(NorFlashErrorKind),
    Unsupported {
        version: u8,
    },
    /// A mark beyond the capacity checked at construction, or before any record: a bug.
    Marks,
}

impl<E: NorFlashError> From<E> for StoreError {
    fn from(error: E) -> Self {
        Self::Flash(error.kind())
    }
}

#[derive(Debug)]
pub(crate) struct StateStore<S> {
    flash: S,
    half_len: u32,
    marks_at: u32,
    mark_capacity: u32,
}

impl<S: NorFlash> StateStore<S> {
    /// Check that `flash` can hold the record plus `marks` progress marks in each half.
    pub(crate) fn new(flash: S, marks: u32) -> Result<Self, ConfigError> {
        let write = S::WRITE_SIZE;
        if write == 0
            || write > MAX_WRITE_SIZE
            || S::READ_SIZE == 0
            || !write.is_multiple_of(S::READ_SIZE)
            || !READ_CHUNK.is_multiple_of(write)
        {
            return Err(ConfigError::WriteSize);
        }
        let capacity = flash.capacity();
        let half = capacity / 2;
        let region = RECORD_LEN.next_multiple_of(write);
        let needed = usize::try_from(marks)
            .ok()
            .and_then(|m| m.checked_mul(write))
            .and_then(|m| m.checked_add(region))
            .unwrap_or(usize::MAX);
        let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let erasable = half > 0 && half.is_multiple_of(S::ERASE_SIZE) && capacity == half * 2;
        if !erasable || half < needed {
            return Err(ConfigError::StateSize {
                needed: to_u32(needed),
                available: to_u32(half),
            });
        }
        let half_len = u32::try_from(half).map_err(|_| ConfigError::StateSize {
            needed: to_u32(needed),
            available: u32::MAX,
        })?;
        Ok(Self {
            flash,
            half_len,
            marks_at: to_u32(region),
            mark_capacity: to_u32((half - region) / write),
        })
    }

    pub(crate) fn into_inner(self) -> S {
        self.flash
    }

    fn start(&self, half: Half) -> u32 {
        match half {
            Half::First => 0,
            Half::Second => self.half_len,
        }
    }

    /// The record in force, or `initial` on a device that has never written one.
    pub(crate) fn load(&mut self, initial: StateRecord) -> Result<State, StoreError> {
        let first = self.read_record(Half::First)?;
        let second = self.read_record(Half::Second)?;
        let chosen = match (first, second) {
            (Decoded::Unsupported { version }, _) | (_, Decoded::Unsupported { version }) => {
                return Err(StoreError::Unsupported { version });
            }
            (Decoded::Record(a), Decoded::Record(b)) if b.sequence > a.sequence => {
                Some((b, Half::Second))
            }
            (Decoded::Record(a), _) => Some((a, Half::First)),
            (_, Decoded::Record(b)) => Some((b, Half::Second)),
            (Decoded::Invalid, Decoded::Invalid) => None,
        };
        Ok(match chosen {
            Some((record, half)) => State {
                record,
                half: Some(half),
                marks: self.count_marks(half)?,
            },
            None => State {
                record: initial,
                half: None,
                marks: 0,
            },
        })
    }

    /// Replace the record in force by `next` (its sequence number is assigned here).
    pub(crate) fn write(
        &mut self,
        state: &mut State,
        mut next: StateRecord,
    ) -> Result<(), StoreError> {
        let target = match state.half {
            Some(Half::First) => Half::Second,
            Some(Half::Second) | None => Half::First,
        };
        // Saturating: 2^32 record writes would wear out any flash sector long before.
        next.sequence = state.record.sequence.saturating_add(1);
        let start = self.start(target);
        self.flash
            .erase(start, start.saturating_add(self.half_len))?;
        let mut padded = [0xFF; RECORD_LEN + MAX_WRITE_SIZE];
        let encoded = next.encode();
        padded
            .get_mut(..RECORD_LEN)
            .ok_or(StoreError::Marks)?
            .copy_from_slice(&encoded);
        let region = usize::try_from(self.marks_at).unwrap_or(usize::MAX);
        self.flash
            .write(start, padded.get(..region).ok_or(StoreError::Marks)?)?;
        *state = State {
            record: next,
            half: Some(target),
            marks: 0,
        };
        Ok(())
    }

    /// Append one progress mark after the record in force.
    pub(crate) fn add_mark(&mut self, state: &mut State) -> Result<(), StoreError> {
        let half = state.half.ok_or(StoreError::Marks)?;
        if state.marks >= self.mark_capacity {
            return Err(StoreError::Marks);
        }
        let at = self.mark_offset(half, state.marks);
        let zeros = [0u8; MAX_WRITE_SIZE];
        self.flash
            .write(at, zeros.get(..S::WRITE_SIZE).ok_or(StoreError::Marks)?)?;
        state.marks = state.marks.saturating_add(1);
        Ok(())
    }

    fn mark_offset(&self, half: Half, index: u32) -> u32 {
        let word = u32::try_from(S::WRITE_SIZE).unwrap_or(u32::MAX);
        self.start(half)
            .saturating_add(self.marks_at)
            .saturating_add(index.saturating_mul(word))
    }

    fn read_record(&mut self, half: Half) -> Result<Decoded, StoreError> {
        let mut buf = [0u8; READ_CHUNK];
        let half_len = usize::try_from(self.half_len).unwrap_or(usize::MAX);
        let len = READ_CHUNK.min(half_len) / S::READ_SIZE * S::READ_SIZE;
        let window = buf.get_mut(..len).ok_or(StoreError::Marks)?;
        self.flash.read(self.start(half), window)?;
        Ok(StateRecord::decode(window))
    }

    fn count_marks(&mut self, half: Half) -> Result<u32, StoreError> {
        let word = S::WRITE_SIZE;
        let per_read = u32::try_from(READ_CHUNK / word).unwrap_or(1);
        let mut buf = [0u8; READ_CHUNK];
        let mut counted = 0u32;
        while counted < self.mark_capacity {
            let batch = per_read.min(self.mark_capacity - counted);
            let bytes = usize::try_from(batch).unwrap_or(0).saturating_mul(word);
            let window = buf.get_mut(..bytes).ok_or(StoreError::Marks)?;
            self.flash.read(self.mark_offset(half, counted), window)?;
            for mark in window.chunks(word) {
                if mark.iter().all(|&b| b == 0xFF) {
                    return Ok(counted);
                }
                counted = counted.saturating_add(1);
            }
        }
        Ok(counted)
    }
}

#[cfg(test)]
mod tests {
    use suitcase_flash_sim::{SimFlash, Tear};

    use super::*;
    use crate::record::Phase;
    use crate::{Mode, Slot};

    type Flash = SimFlash<4, 64>;

    fn store() -> StateStore<Flash> {
        StateStore::new(Flash::uniform(256, 2, 9).unwrap(), 16).unwrap()
    }

    fn initial() -> StateRecord {
        StateRecord::initial(Mode::AB, 1)
    }

    #[test]
    fn blank_partition_loads_the_initial_state() {
        let mut s = store();
        let st = s.load(initial()).unwrap();
        assert_eq!(st.record, initial());
        assert_eq!(st.marks, 0);
    }

    #[test]
    fn writes_alternate_halves_and_the_highest_sequence_wins() {
        let mut s = store();
        let mut st = s.load(initial()).unwrap();
        for i in 1..=5u32 {
            let next = StateRecord {
                active: if i % 2 == 0 { Slot::A } else { Slot::B },
                ..st.record
            };
            s.write(&mut st, next).unwrap();
            let loaded = s.load(initial()).unwrap();
            assert_eq!(loaded, st);
            assert_eq!(loaded.record.sequence, i);
        }
        assert_eq!(s.into_inner().wear(), &[3, 2]);
    }

    #[test]
    fn marks_are_counted_up_to_the_first_erased_word() {
        let mut s = store();
        let mut st = s.load(initial()).unwrap();
        assert_eq!(s.add_mark(&mut st), Err(StoreError::Marks), "no record yet");
        let next = StateRecord {
            phase: Phase::Trial,
            ..st.record
        };
        s.write(&mut st, next).unwrap();
        for _ in 0..3 {
            s.add_mark(&mut st).unwrap();
        }
        assert_eq!(s.load(initial()).unwrap().marks, 3);
        // (256 - 96) / 4 marks fit after the record in a 256-byte half.
        for _ in 3..40 {
            s.add_mark(&mut st).unwrap();
        }
        assert_eq!(s.add_mark(&mut st), Err(StoreError::Marks));
        assert_eq!(s.load(initial()).unwrap().marks, 40);
        let next = StateRecord {
            phase: Phase::Confirmed,
            ..st.record
        };
        s.write(&mut st, next).unwrap();
        assert_eq!(s.load(initial()).unwrap().marks, 0);
    }

    #[test]
    fn a_torn_record_update_keeps_the_previous_record() {
        for tear in [Tear::Prefix, Tear::Scatter, Tear::Nothing] {
            for cut in 0..2 {
                for seed in 0..20 {
                    let mut s = StateStore::new(Flash::uniform(256, 2, seed).unwrap(), 16).unwrap();
                    let mut st = s.load(initial()).unwrap();
                    let next = StateRecord {
                        phase: Phase::Pending,
                        ..st.record
                    };
                    s.write(&mut st, next).unwrap();
                    let before = s.load(initial()).unwrap();
                    s.flash.set_tear(tear);
                    s.flash.cut_power_after(cut);
                    let next = StateRecord {
                        phase: Phase::Trial,
                        ..st.record
                    };
                    assert!(s.write(&mut st, next).is_err());
                    s.flash.power_on();
                    let after = s.load(initial()).unwrap();
                    assert_eq!(after, before, "{tear:?} cut {cut} seed {seed}");
                }
            }
        }
    }

    #[test]
    fn a_completed_but_interrupted_write_is_the_new_record() {
        let mut s = store();
        let mut st = s.load(initial()).unwrap();
        s.flash.set_tear(Tear::Complete);
        s.flash.cut_power_after(1);
        let next = StateRecord {
            phase: Phase::Pending,
            ..st.record
        };
        assert!(s.write(&mut st, next).is_err());
        s.flash.power_on();
        assert_eq!(s.load(initial()).unwrap().record.phase, Phase::Pending);
    }

    #[test]
    fn undersized_partition_is_refused() {
        assert!(matches!(
            StateStore::new(Flash::uniform(256, 2, 0).unwrap(), 100),
            Err(ConfigError::StateSize { .. })
        ));
        assert!(matches!(
            StateStore::new(Flash::uniform(64, 3, 0).unwrap(), 1),
            Err(ConfigError::StateSize { .. })
        ));
    }
}

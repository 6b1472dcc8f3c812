//! The swap engines: exchange the first `K` sectors of a primary and a secondary slot, one
//! idempotent step at a time, using one spare sector instead of a scratch area (every sector
//! of both slots wears about equally; a scratch sector would be erased once per swapped
//! sector). Two shapes, one per swap [`Mode`]:
//!
//! # Swap ([`Mode::Swap`]): the spare sector ends the primary
//!
//! With `P` the primary (`K + 1` sectors), `S` the secondary, `old` the image in `P` and `new`
//! the one in `S`:
//!
//! | steps | step | copies | afterwards |
//! |---|---|---|---|
//! | `0 .. K` (move) | `s` | `P[i] → P[i+1]`, `i = K-1-s` | `P[i+1..=K]` holds `old[i..K]` |
//! | `K .. 3K` (swap) | `K + 2i` | `S[i] → P[i]` | `P[..=i]` holds `new[..=i]` |
//! | | `K + 2i + 1` | `P[i+1] → S[i]` | `S[..=i]` holds `old[..=i]` |
//!
//! At the end `P[..K]` holds `new`, `S[..K]` holds `old` (and `P[K]` a stale copy of
//! `old[K-1]`). Running the same steps again swaps them back, which is how a revert works.
//!
//! # Swap-offset ([`Mode::SwapOffset`]): the spare sector starts the secondary
//!
//! The update is staged one sector into the secondary (`S` has `K + 1` sectors): `S[i+1]`
//! holds `new[i]`. No move pass is needed, so each sector is written twice by the swap
//! instead of three times:
//!
//! | install step | copies | afterwards |
//! |---|---|---|
//! | `2i` | `P[i] → S[i]` | `S[..=i]` holds `old[..=i]` (`S[i]` held `new[i-1]`, already in `P[i-1]`) |
//! | `2i + 1` | `S[i+1] → P[i]` | `P[..=i]` holds `new[..=i]` |
//!
//! At the end `P[..K]` holds `new` and `S[..K]` holds `old`, one sector *lower* than `new`
//! was, so running the same steps again would not swap back. The revert runs the inverse
//! of each install step (source and destination exchanged) in reverse order, step `r`
//! undoing install step `2K - 1 - r`:
//!
//! | revert step | copies | afterwards |
//! |---|---|---|
//! | `2(K-1-i)` | `P[i] → S[i+1]` | `S[i+1..=K]` holds `new[i..K]` again |
//! | `2(K-1-i) + 1` | `S[i] → P[i]` | `P[i..K]` holds `old[i..K]` again |
//!
//! which leaves `old` in `P` and `new` staged at `S[1..=K]`, where it was.
//!
//! # Why a step can be redone
//!
//! Each step erases its destination sector and copies its source into it. In every table, a
//! step's source is only overwritten by a *later* step, and its destination's previous
//! content was already copied by an *earlier* one: swap: `P[i]` by move step `s+1` or swap
//! step `K+2i`, `S[i]` by swap step `K+2i+1`, `P[i+1]` by swap step `K+2i+2`; swap-offset
//! install: `P[i]` by step `2i+1`, `S[i+1]` by step `2i+2`; swap-offset revert: `P[i]` by the
//! step right after, `S[i]` by the step that copies `P[i-1]`. So redoing a step after a power
//! cut reads the same source and writes the same destination: every step is idempotent. The
//! caller writes a progress mark after each completed step and, after a reset, resumes at the
//! first step without a mark.

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

use crate::layout::{ImageSlots, Mode};

/// Bytes copied per read/write; a multiple of every supported write size.
pub(crate) const COPY_CHUNK: usize = 256;

/// Steps (and progress marks) per swapped sector: swap: one move, two copies; swap-offset:
/// two copies; A/B swaps nothing.
pub(crate) const fn steps_per_sector(mode: Mode) -> u32 {
    match mode {
        Mode::AB => 0,
        Mode::Swap => 3,
        Mode::SwapOffset => 2,
    }
}

/// Which way a swap runs: installing the update, or reverting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Install,
    Revert,
}

/// One sector copy: erase `to` and copy `from` into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SectorCopy {
    /// Within the primary.
    PrimaryUp { from: u32, to: u32 },
    /// From primary sector `from` to secondary sector `to`.
    Down { from: u32, to: u32 },
    /// From secondary sector `from` to primary sector `to`.
    Up { from: u32, to: u32 },
}

/// What step `step` of a swap of `k` sectors copies, per the tables in the module docs.
fn plan(mode: Mode, direction: Direction, k: u32, step: u32) -> SectorCopy {
    match (mode, direction) {
        // The swap is its own inverse; A/B never swaps.
        (Mode::Swap | Mode::AB, _) => {
            if step < k {
                let i = k.saturating_sub(1).saturating_sub(step);
                SectorCopy::PrimaryUp {
                    from: i,
                    to: i.saturating_add(1),
                }
            } else {
                let t = step - k;
                let i = t / 2;
                if t.is_multiple_of(2) {
                    SectorCopy::Up { from: i, to: i }
                } else {
                    SectorCopy::Down {
                        from: i.saturating_add(1),
                        to: i,
                    }
                }
            }
        }
        (Mode::SwapOffset, Direction::Install) => {
            let i = step / 2;
            if step.is_multiple_of(2) {
                SectorCopy::Down { from: i, to: i }
            } else {
                SectorCopy::Up {
                    from: i.saturating_add(1),
                    to: i,
                }
            }
        }
        (Mode::SwapOffset, Direction::Revert) => {
            // Revert step r undoes install step 2k-1-r: the same two sectors, the other way.
            let t = k.saturating_mul(2).saturating_sub(1).saturating_sub(step);
            let i = t / 2;
            if t.is_multiple_of(2) {
                SectorCopy::Up { from: i, to: i }
            } else {
                SectorCopy::Down {
                    from: i,
                    to: i.saturating_add(1),
                }
            }
        }
    }
}

/// Run step `step` of a swap of `k` sectors of `sector` bytes in `mode`, going `direction`.
pub(crate) fn run_step<F: NorFlash>(
    mode: Mode,
    direction: Direction,
    slots: &mut ImageSlots<F>,
    k: u32,
    step: u32,
    sector: u32,
) -> Result<(), NorFlashErrorKind> {
    let at = |index: u32| index.saturating_mul(sector);
    match plan(mode, direction, k, step) {
        SectorCopy::PrimaryUp { from, to } => copy_within(&mut slots.a, at(from), at(to), sector),
        SectorCopy::Down { from, to } => {
            copy_between(&mut slots.a, at(from), &mut slots.b, at(to), sector)
        }
        SectorCopy::Up { from, to } => {
            copy_between(&mut slots.b, at(from), &mut slots.a, at(to), sector)
        }
    }
}

fn chunk_len<F: NorFlash>() -> usize {
    COPY_CHUNK / F::WRITE_SIZE * F::WRITE_SIZE
}

fn is_erased(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0xFF)
}

fn copy_between<Src: ReadNorFlash, Dst: NorFlash>(
    src: &mut Src,
    from: u32,
    dst: &mut Dst,
    to: u32,
    len: u32,
) -> Result<(), NorFlashErrorKind> {
    dst.erase(to, to.saturating_add(len))
        .map_err(|e| e.kind())?;
    let mut buf = [0u8; COPY_CHUNK];
    let chunk = chunk_len::<Dst>();
    let mut done = 0u32;
    while done < len {
        let n = chunk.min(usize::try_from(len - done).unwrap_or(chunk));
        let window = buf.get_mut(..n).ok_or(NorFlashErrorKind::Other)?;
        src.read(from.saturating_add(done), window)
            .map_err(|e| e.kind())?;
        // The destination was just erased: an erased chunk needs no write, and skipping it
        // saves program time and keeps those words writable.
        if !is_erased(window) {
            dst.write(to.saturating_add(done), window)
                .map_err(|e| e.kind())?;
        }
        done = done.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }
    Ok(())
}

fn copy_within<F: NorFlash>(
    flash: &mut F,
    from: u32,
    to: u32,
    len: u32,
) -> Result<(), NorFlashErrorKind> {
    flash
        .erase(to, to.saturating_add(len))
        .map_err(|e| e.kind())?;
    let mut buf = [0u8; COPY_CHUNK];
    let chunk = chunk_len::<F>();
    let mut done = 0u32;
    while done < len {
        let n = chunk.min(usize::try_from(len - done).unwrap_or(chunk));
        let window = buf.get_mut(..n).ok_or(NorFlashErrorKind::Other)?;
        flash
            .read(from.saturating_add(done), window)
            .map_err(|e| e.kind())?;
        if !is_erased(window) {
            flash
                .write(to.saturating_add(done), window)
                .map_err(|e| e.kind())?;
        }
        done = done.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use suitcase_flash_sim::{SharedFlash, SimFlash, Tear};

    use super::*;

    type Flash = SimFlash<4, 64>;

    const SWAP: Mode = Mode::Swap;
    const OFFSET: Mode = Mode::SwapOffset;
    use Direction::{Install, Revert};

    fn filled(sectors: u32, tag: u8) -> Flash {
        filled_from(sectors, 0, tag)
    }

    /// `sectors` sectors, sector `first + j` tagged `tag + j` (the ones before `first` blank).
    fn filled_from(sectors: u32, first: u32, tag: u8) -> Flash {
        let mut f = Flash::uniform(64, sectors, 1).unwrap();
        for s in first..sectors {
            let t = tag.wrapping_add(u8::try_from(s - first).unwrap());
            f.load(s * 64, &[t; 64]).unwrap();
        }
        f
    }

    fn sector(f: &Flash, i: u32) -> [u8; 64] {
        f.peek(i * 64, 64).unwrap().try_into().unwrap()
    }

    fn tagged(base: u8, i: u32) -> [u8; 64] {
        [base + u8::try_from(i).unwrap(); 64]
    }

    #[test]
    fn all_steps_swap_and_running_them_again_swaps_back() {
        let k = 3;
        let mut slots = ImageSlots::new(filled(k + 1, 0x10), filled(k, 0x80));
        for step in 0..k * steps_per_sector(SWAP) {
            run_step(SWAP, Install, &mut slots, k, step, 64).unwrap();
        }
        for i in 0..k {
            assert_eq!(sector(&slots.a, i), tagged(0x80, i));
            assert_eq!(sector(&slots.b, i), tagged(0x10, i));
        }
        for step in 0..k * steps_per_sector(SWAP) {
            run_step(SWAP, Revert, &mut slots, k, step, 64).unwrap();
        }
        for i in 0..k {
            assert_eq!(sector(&slots.a, i), tagged(0x10, i));
            assert_eq!(sector(&slots.b, i), tagged(0x80, i));
        }
    }

    #[test]
    fn every_step_is_idempotent() {
        let k = 3;
        let mut slots = ImageSlots::new(filled(k + 1, 0x10), filled(k, 0x80));
        for step in 0..k * steps_per_sector(SWAP) {
            run_step(SWAP, Install, &mut slots, k, step, 64).unwrap();
            run_step(SWAP, Install, &mut slots, k, step, 64).unwrap();
        }
        for i in 0..k {
            assert_eq!(sector(&slots.a, i), tagged(0x80, i));
            assert_eq!(sector(&slots.b, i), tagged(0x10, i));
        }
    }

    #[test]
    fn erased_chunks_are_not_written() {
        let mut slots = ImageSlots::new(Flash::uniform(64, 2, 1).unwrap(), filled(1, 0x33));
        run_step(SWAP, Install, &mut slots, 1, 0, 64).unwrap();
        assert_eq!(slots.a.stats().writes, 0);
        assert_eq!(slots.a.stats().erases, 1);
    }

    #[test]
    fn swap_offset_installs_from_one_sector_in_and_reverts_back_there() {
        let k = 3;
        // Primary: old[0..3]; secondary: a blank spare sector, then new[0..3].
        let mut slots = ImageSlots::new(filled(k, 0x10), filled_from(k + 1, 1, 0x80));
        for step in 0..k * steps_per_sector(OFFSET) {
            run_step(OFFSET, Install, &mut slots, k, step, 64).unwrap();
            run_step(OFFSET, Install, &mut slots, k, step, 64).unwrap();
        }
        for i in 0..k {
            assert_eq!(sector(&slots.a, i), tagged(0x80, i));
            assert_eq!(sector(&slots.b, i), tagged(0x10, i));
        }
        for step in 0..k * steps_per_sector(OFFSET) {
            run_step(OFFSET, Revert, &mut slots, k, step, 64).unwrap();
            run_step(OFFSET, Revert, &mut slots, k, step, 64).unwrap();
        }
        for i in 0..k {
            assert_eq!(sector(&slots.a, i), tagged(0x10, i));
            assert_eq!(sector(&slots.b, i + 1), tagged(0x80, i));
        }
    }

    #[test]
    fn swap_offset_writes_each_sector_of_each_slot_once_per_swap() {
        let k = 4;
        let mut slots = ImageSlots::new(filled(k, 0x10), filled_from(k + 1, 1, 0x80));
        for step in 0..k * steps_per_sector(OFFSET) {
            run_step(OFFSET, Install, &mut slots, k, step, 64).unwrap();
        }
        // No move pass: k sectors erased and written in each slot, nothing more.
        assert_eq!(slots.a.stats().erases, u64::from(k));
        assert_eq!(slots.b.stats().erases, u64::from(k));
        assert_eq!(slots.a.stats().bytes_written, u64::from(k) * 64);
        assert_eq!(slots.b.stats().bytes_written, u64::from(k) * 64);
    }

    /// Cut the power at every flash operation of a swap-offset install (or of its revert),
    /// resume from the last completed step as the bootloader does, and require the swapped
    /// (or the original) sectors byte-exact.
    fn power_cut_at_every_operation(direction: Direction) {
        let k = 3u32;
        let steps = k * steps_per_sector(OFFSET);
        let fresh = || {
            let flash = SharedFlash::new(Flash::uniform(64, 2 * k + 1, 7).unwrap());
            for i in 0..k {
                let t = 0x10 + u8::try_from(i).unwrap();
                flash.with(|f| f.load(i * 64, &[t; 64])).unwrap().unwrap();
                let t = 0x80 + u8::try_from(i).unwrap();
                let at = (k + 1 + i) * 64;
                flash.with(|f| f.load(at, &[t; 64])).unwrap().unwrap();
            }
            let slots = ImageSlots::new(
                flash.partition(0, k * 64).unwrap(),
                flash.partition(k * 64, (k + 1) * 64).unwrap(),
            );
            (flash, slots)
        };
        let installed = |mut slots: ImageSlots<_>| {
            for step in 0..steps {
                run_step(OFFSET, Install, &mut slots, k, step, 64).unwrap();
            }
            slots
        };
        let (flash, slots) = fresh();
        let before = flash.with(|f| f.stats().mutations()).unwrap();
        let slots = if direction == Revert {
            installed(slots)
        } else {
            slots
        };
        let base = flash.with(|f| f.stats().mutations()).unwrap();
        drop(installed(slots));
        let ops = flash.with(|f| f.stats().mutations()).unwrap() - base;
        assert!(ops >= u64::from(steps) * 2 && before == 0);
        for cut in 0..ops {
            for tear in [Tear::Random, Tear::Nothing, Tear::Complete] {
                let (flash, slots) = fresh();
                let mut slots = if direction == Revert {
                    installed(slots)
                } else {
                    slots
                };
                flash.with(|f| f.set_tear(tear)).unwrap();
                flash.with(|f| f.cut_power_after(cut)).unwrap();
                // `done` plays the progress marks: a step counts once it returned.
                let mut done = 0;
                while done < steps {
                    if run_step(OFFSET, direction, &mut slots, k, done, 64).is_err() {
                        break;
                    }
                    done += 1;
                }
                assert!(done < steps, "cut {cut} did not interrupt");
                flash.with(|f| f.power_on()).unwrap();
                for step in done..steps {
                    run_step(OFFSET, direction, &mut slots, k, step, 64).unwrap();
                }
                let (a, b) = flash
                    .with(|f| {
                        (
                            f.peek(0, (k * 64) as usize).unwrap().to_vec(),
                            f.peek(k * 64, ((k + 1) * 64) as usize).unwrap().to_vec(),
                        )
                    })
                    .unwrap();
                for i in 0..k as usize {
                    let tag = u8::try_from(i).unwrap();
                    let (old, new) = (0x10 + tag, 0x80 + tag);
                    let (want_a, want_b, b_at) = match direction {
                        Install => (new, old, i),
                        Revert => (old, new, i + 1),
                    };
                    assert!(
                        a[i * 64..(i + 1) * 64].iter().all(|&x| x == want_a),
                        "{direction:?} cut {cut} {tear:?}: primary sector {i}"
                    );
                    assert!(
                        b[b_at * 64..(b_at + 1) * 64].iter().all(|&x| x == want_b),
                        "{direction:?} cut {cut} {tear:?}: secondary sector {b_at}"
                    );
                }
            }
        }
    }

    #[test]
    fn power_cut_at_every_operation_of_a_swap_offset_install_resumes_to_the_swapped_images() {
        power_cut_at_every_operation(Install);
    }

    #[test]
    fn power_cut_at_every_operation_of_a_swap_offset_revert_resumes_to_the_original_images() {
        power_cut_at_every_operation(Revert);
    }
}

//! The swap engine: exchanges the first `K` sectors of a primary and a secondary slot, one
//! idempotent step at a time, using one spare sector at the end of the primary instead of a
//! scratch area (every sector of both slots wears about equally; a scratch sector would be
//! erased once per swapped sector).
//!
//! With `P` the primary, `S` the secondary, `old` the image in `P` and `new` the one in `S`:
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
//! Each step erases its destination sector and copies its source into it. A step's source is
//! only overwritten by a *later* step (`P[i]` by move step `s+1` or swap step `K+2i`; `S[i]`
//! by swap step `K+2i+1`; `P[i+1]` by swap step `K+2i+2`), so redoing a step after a power cut
//! reads the same source and writes the same destination: every step is idempotent. The
//! caller writes a progress mark after each completed step and, after a reset, resumes at the
//! first step without a mark.

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

use crate::layout::ImageSlots;

/// Bytes copied per read/write; a multiple of every supported write size.
pub(crate) const COPY_CHUNK: usize = 256;
/// Steps (and progress marks) per swapped sector: one move, two copies.
pub(crate) const STEPS_PER_SECTOR: u32 = 3;

/// Run step `step` of a swap of `k` sectors of `sector` bytes.
pub(crate) fn run_step<F: NorFlash>(
    slots: &mut ImageSlots<F>,
    k: u32,
    step: u32,
    sector: u32,
) -> Result<(), NorFlashErrorKind> {
    let at = |index: u32| index.saturating_mul(sector);
    if step < k {
        let i = k - 1 - step;
        copy_within(&mut slots.a, at(i), at(i + 1), sector)
    } else {
        let t = step - k;
        let i = t / 2;
        if t.is_multiple_of(2) {
            copy_between(&mut slots.b, at(i), &mut slots.a, at(i), sector)
        } else {
            copy_between(&mut slots.a, at(i + 1), &mut slots.b, at(i), sector)
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
    use suitcase_flash_sim::SimFlash;

    use super::*;

    type Flash = SimFlash<4, 64>;

    fn filled(sectors: u32, tag: u8) -> Flash {
        let mut f = Flash::uniform(64, sectors, 1).unwrap();
        for s in 0..sectors {
            f.load(s * 64, &[tag.wrapping_add(u8::try_from(s).unwrap()); 64])
                .unwrap();
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
        for step in 0..k * STEPS_PER_SECTOR {
            run_step(&mut slots, k, step, 64).unwrap();
        }
        for i in 0..k {
            assert_eq!(sector(&slots.a, i), tagged(0x80, i));
            assert_eq!(sector(&slots.b, i), tagged(0x10, i));
        }
        for step in 0..k * STEPS_PER_SECTOR {
            run_step(&mut slots, k, step, 64).unwrap();
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
        for step in 0..k * STEPS_PER_SECTOR {
            run_step(&mut slots, k, step, 64).unwrap();
            run_step(&mut slots, k, step, 64).unwrap();
        }
        for i in 0..k {
            assert_eq!(sector(&slots.a, i), tagged(0x80, i));
            assert_eq!(sector(&slots.b, i), tagged(0x10, i));
        }
    }

    #[test]
    fn erased_chunks_are_not_written() {
        let mut slots = ImageSlots::new(Flash::uniform(64, 2, 1).unwrap(), filled(1, 0x33));
        run_step(&mut slots, 1, 0, 64).unwrap();
        assert_eq!(slots.a.stats().writes, 0);
        assert_eq!(slots.a.stats().erases, 1);
    }
}

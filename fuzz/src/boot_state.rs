//! `boot_state`: the bootloader core over a fuzzed state partition. A simulated device
//! (A/B, swap, or two images swapped together) is provisioned with version 1 and, on a
//! control bit, has version 2 staged; then its whole state partition (both halves: the state
//! records and the progress marks after each) is replaced by fuzzed bytes, with the CRC of
//! each half's record recomputed so the decoder and everything that trusts a record (the
//! phase machine, swap resume from the marks, trial counting, anti-rollback counters) run.
//! The device then boots five times, confirming or not; every call must return, not panic.
//!
//! Input: `[ctl] [state partition bytes...]`. `ctl`: bit 0 A/B or swap, bit 1 one image or two,
//! bit 2 stage version 2 first, bit 3 leave the CRCs as given, bits 4-7 which boots confirm.

use suitcase_boot::simulate::{SimDevice, sim_image};
use suitcase_boot::{Config, ImageIndex, Mode, Slot};

/// Sector, slot and image sizes of the simulated part (as suitcase-boot's attack tests).
pub const SECTOR: u32 = 256;
/// Slot B's size.
pub const SLOT: u32 = 1024;
/// Each image's size.
pub const IMAGE: u32 = 700;
/// The offset of the CRC in a state record, and the record's length.
pub const CRC_AT: usize = 92;

/// CRC-32 (IEEE, reflected), as the state record uses.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The simulated device for a control byte, provisioned (and staged).
pub fn device<const N: usize>(ctl: u8) -> Option<SimDevice<N>> {
    let mode = if ctl & 1 == 0 { Mode::AB } else { Mode::Swap };
    let config = Config {
        mode,
        sector_size: SECTOR,
        max_trial_boots: 2,
    };
    let device = SimDevice::<N>::new(config, SLOT, 1).ok()?;
    let images = |v| core::array::from_fn(|i| sim_image(ImageIndex(i as u8), v, IMAGE));
    device.provision(&images(1)).ok()?;
    if ctl & 4 != 0 {
        device.stage(&images(2), 128).ok()?;
    }
    Some(device)
}

/// The state partition's size (it starts at 0; image 0's slot A follows it).
pub fn state_len<const N: usize>(device: &SimDevice<N>) -> u32 {
    device.slot_range(0, Slot::A).map_or(0, |(at, _)| at)
}

fn exercise<const N: usize>(ctl: u8, state: &[u8]) {
    let Some(device) = device::<N>(ctl) else {
        return;
    };
    let len = state_len(&device) as usize;
    let mut bytes = vec![0xFF; len];
    let n = state.len().min(len);
    bytes[..n].copy_from_slice(&state[..n]);
    if ctl & 8 == 0 {
        for half in [0, len / 2] {
            if let Some(body) = bytes.get(half..half + CRC_AT) {
                let crc = crc32(body).to_le_bytes();
                bytes[half + CRC_AT..half + CRC_AT + 4].copy_from_slice(&crc);
            }
        }
    }
    if device.flash().with(|f| f.load(0, &bytes)).is_err() {
        return;
    }
    for boot in 0..5 {
        let _ = device.boot();
        let _ = device.status();
        if ctl >> (4 + boot % 4) & 1 != 0 {
            let _ = device.confirm();
        }
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&ctl, state)) = data.split_first() else {
        return;
    };
    if ctl & 2 == 0 {
        exercise::<1>(ctl, state);
    } else {
        exercise::<2>(ctl, state);
    }
}

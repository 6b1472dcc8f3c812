//! Hostile and unlucky situations, each named after the attack or accident, for every layout:
//! A/B, swap, swap-offset, and two images swapped together ("multi", in both swap modes). Images come from
//! `simulate::sim_image` and are checked by `simulate::SimVerifier` (header, index, SHA-256).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use suitcase_boot::simulate::{SimDevice, SimVerifier, sim_image};
use suitcase_boot::{
    BootDecision, BootLoader, BootTarget, Config, Failure, ImageIndex, ImageSlots, ImageState,
    Mode, Phase, RecoveryReason, SecurityVersion, Slot, UpdateError, Updater, VerifyError,
};
use suitcase_flash_sim::{SectorMap, SharedFlash, SimFlash};

const SECTOR: u32 = 256;
const SLOT: u32 = 1024;
const IMAGE: u32 = 700;
const TRIALS: u8 = 2;

fn images<const N: usize>(version: u64) -> [Vec<u8>; N] {
    core::array::from_fn(|i| sim_image(ImageIndex(u8::try_from(i).unwrap()), version, IMAGE))
}

/// A device with version 1 of every image in slot A.
fn device<const N: usize>(mode: Mode) -> SimDevice<N> {
    let config = Config {
        mode,
        sector_size: SECTOR,
        max_trial_boots: TRIALS,
    };
    let device = SimDevice::new(config, SLOT, 1).unwrap();
    device.provision(&images(1)).unwrap();
    device
}

fn boot<const N: usize>(device: &SimDevice<N>) -> BootDecision<N> {
    device.boot().unwrap().expect("flash works")
}

fn booted<const N: usize>(device: &SimDevice<N>) -> BootTarget<N> {
    match boot(device) {
        BootDecision::Boot(target) => target,
        BootDecision::Recovery { reason } => panic!("recovery: {reason}"),
    }
}

/// The version every image in `slot` holds, byte-exact; panics on a mix.
fn version_in<const N: usize>(device: &SimDevice<N>, slot: Slot) -> u64 {
    let mut found = None;
    for i in 0..N {
        let bytes = device.peek_slot(i, slot, IMAGE as usize).unwrap();
        let v = (1..=4u64)
            .find(|&v| bytes == images::<N>(v)[i])
            .unwrap_or_else(|| panic!("image {i} in slot {slot} is no complete version"));
        assert!(found.is_none_or(|f| f == v), "images disagree");
        found = Some(v);
    }
    found.unwrap()
}

fn running<const N: usize>(device: &SimDevice<N>, target: &BootTarget<N>) -> u64 {
    version_in(device, target.slot)
}

/// Stage `version`, boot it on trial and confirm it.
fn install<const N: usize>(device: &SimDevice<N>, version: u64) {
    device.stage(&images(version), 128).unwrap();
    let target = booted(device);
    assert!(matches!(target.state, ImageState::Trial { boot: 1, .. }));
    assert_eq!(running(device, &target), version);
    device.confirm().unwrap();
    let target = booted(device);
    assert_eq!(target.state, ImageState::Confirmed);
    assert_eq!(running(device, &target), version);
}

fn flip<const N: usize>(device: &SimDevice<N>, image: usize, slot: Slot, at: u32) {
    let (offset, _) = device.slot_range(image, slot).unwrap();
    device
        .flash()
        .with(|f| f.flip_bit(offset + at, 2))
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The happy path and the revert after a failed trial boot.

fn update_confirm_then_revert_an_unconfirmed_update<const N: usize>(mode: Mode) {
    let device = device::<N>(mode);
    let target = booted(&device);
    assert_eq!(
        (target.slot, target.state),
        (Slot::A, ImageState::Confirmed)
    );
    assert_eq!(running(&device, &target), 1);

    install(&device, 2);
    let status = device.status().unwrap();
    assert_eq!(status.phase, Phase::Confirmed);
    assert_eq!(status.min_security_versions, [SecurityVersion(2); N]);

    // Version 3 boots on trial and never confirms (it crashes, the watchdog resets).
    device.stage(&images(3), 128).unwrap();
    for boot in 1..=u32::from(TRIALS) {
        let target = booted(&device);
        assert_eq!(target.state, ImageState::Trial { boot, max: TRIALS });
        assert_eq!(running(&device, &target), 3);
        assert_eq!(device.status().unwrap().trial_boots, boot);
    }
    let target = booted(&device);
    assert_eq!(target.state, ImageState::Confirmed);
    assert_eq!(running(&device, &target), 2);
    assert_eq!(target.last_failure, Some(Failure::NotConfirmed));
    let status = device.status().unwrap();
    assert_eq!(status.last_failure, Some(Failure::NotConfirmed));
    assert_eq!(
        status.min_security_versions,
        [SecurityVersion(2); N],
        "the counter advances only on confirm"
    );
    // The measurement handed to the application is the digest of what runs.
    for (i, m) in target.measurements.iter().enumerate() {
        assert_eq!(m.digest.as_bytes(), &images::<N>(2)[i][32..64]);
    }
    // And the device can be updated again afterwards.
    install(&device, 4);
}

#[test]
fn ab_reverts_an_update_that_is_never_confirmed() {
    update_confirm_then_revert_an_unconfirmed_update::<1>(Mode::AB);
}

#[test]
fn swap_reverts_an_update_that_is_never_confirmed() {
    update_confirm_then_revert_an_unconfirmed_update::<1>(Mode::Swap);
}

#[test]
fn multi_reverts_both_images_of_an_update_that_is_never_confirmed() {
    update_confirm_then_revert_an_unconfirmed_update::<2>(Mode::Swap);
}

#[test]
fn multi_ab_reverts_both_images_of_an_update_that_is_never_confirmed() {
    update_confirm_then_revert_an_unconfirmed_update::<2>(Mode::AB);
}

// ---------------------------------------------------------------------------------------------
// Rollback: an old image that the verifier finds perfectly authentic.

fn rollback_to_an_older_authentic_image_is_refused<const N: usize>(mode: Mode) {
    let device = device::<N>(mode);
    booted(&device);
    install(&device, 3);
    let wear_before = device.flash().with(|f| f.wear().to_vec()).unwrap();

    device.stage(&images(2), 128).unwrap();
    let target = booted(&device);
    assert_eq!(target.state, ImageState::Confirmed);
    assert_eq!(
        running(&device, &target),
        3,
        "the older image must not boot"
    );
    assert_eq!(
        target.last_failure,
        Some(Failure::Rollback {
            image: ImageIndex(0),
            offered: SecurityVersion(2),
            minimum: SecurityVersion(3),
        })
    );
    if mode.swaps() {
        // Refused before anything moved: the primary slot was not even erased.
        let wear_after = device.flash().with(|f| f.wear().to_vec()).unwrap();
        let (a, a_len) = device.slot_range(0, Slot::A).unwrap();
        let sectors = (a / SECTOR) as usize..((a + a_len) / SECTOR) as usize;
        assert_eq!(wear_before[sectors.clone()], wear_after[sectors]);
    }
}

#[test]
fn ab_refuses_rollback_to_an_older_authentic_image() {
    rollback_to_an_older_authentic_image_is_refused::<1>(Mode::AB);
}

#[test]
fn swap_refuses_rollback_to_an_older_authentic_image() {
    rollback_to_an_older_authentic_image_is_refused::<1>(Mode::Swap);
}

#[test]
fn multi_refuses_rollback_to_an_older_authentic_image() {
    rollback_to_an_older_authentic_image_is_refused::<2>(Mode::Swap);
}

fn attacker_writes_an_older_authentic_image_over_the_running_one<const N: usize>(mode: Mode) {
    let device = device::<N>(mode);
    booted(&device);
    install(&device, 3);
    let slot = device.status().unwrap().confirmed;
    let (offset, _) = device.slot_range(0, slot).unwrap();
    let old = sim_image(ImageIndex(0), 1, IMAGE);
    device
        .flash()
        .with(|f| f.load(offset, &old))
        .unwrap()
        .unwrap();
    assert_eq!(
        boot(&device),
        BootDecision::Recovery {
            reason: RecoveryReason::Rollback {
                slot,
                image: ImageIndex(0),
                offered: SecurityVersion(1),
                minimum: SecurityVersion(3),
            }
        }
    );
}

#[test]
fn ab_does_not_boot_an_older_authentic_image_written_over_the_active_slot() {
    attacker_writes_an_older_authentic_image_over_the_running_one::<1>(Mode::AB);
}

#[test]
fn swap_does_not_boot_an_older_authentic_image_written_over_the_primary() {
    attacker_writes_an_older_authentic_image_over_the_running_one::<1>(Mode::Swap);
}

#[test]
fn multi_does_not_boot_an_older_authentic_image_written_over_one_primary() {
    attacker_writes_an_older_authentic_image_over_the_running_one::<2>(Mode::Swap);
}

// ---------------------------------------------------------------------------------------------
// Tampering: a flipped bit (retention error, or an attacker with a probe).

fn tampered_update_is_never_installed<const N: usize>(mode: Mode) {
    let device = device::<N>(mode);
    booted(&device);
    device.stage(&images(2), 128).unwrap();
    let staged = device.status().unwrap();
    assert_eq!(staged.phase, Phase::Pending);
    // Tamper with the last image of the update: the whole update must be refused.
    // Slot B: the secondary in swap mode, the inactive slot in A/B mode (A is active).
    flip(&device, N - 1, Slot::B, 500);
    let target = booted(&device);
    assert_eq!(target.slot, Slot::A);
    assert_eq!(target.state, ImageState::Confirmed);
    assert_eq!(running(&device, &target), 1);
    assert_eq!(
        target.last_failure,
        Some(Failure::Invalid {
            image: ImageIndex(u8::try_from(N - 1).unwrap()),
            error: VerifyError::Rejected,
        })
    );
}

#[test]
fn ab_never_boots_a_tampered_update() {
    tampered_update_is_never_installed::<1>(Mode::AB);
}

#[test]
fn swap_never_installs_a_tampered_update() {
    tampered_update_is_never_installed::<1>(Mode::Swap);
}

#[test]
fn multi_refuses_a_whole_update_when_one_image_is_tampered() {
    tampered_update_is_never_installed::<2>(Mode::Swap);
}

fn tampered_trial_image_is_reverted<const N: usize>(mode: Mode) {
    let device = device::<N>(mode);
    booted(&device);
    device.stage(&images(2), 128).unwrap();
    let target = booted(&device);
    assert!(matches!(target.state, ImageState::Trial { boot: 1, .. }));
    // The running (trial) image is corrupted before it confirms.
    flip(&device, 0, target.slot, 300);
    let target = booted(&device);
    assert_eq!(target.state, ImageState::Confirmed);
    assert_eq!(running(&device, &target), 1);
    assert_eq!(
        target.last_failure,
        Some(Failure::Invalid {
            image: ImageIndex(0),
            error: VerifyError::Rejected,
        })
    );
}

#[test]
fn ab_reverts_a_trial_image_tampered_before_it_confirms() {
    tampered_trial_image_is_reverted::<1>(Mode::AB);
}

#[test]
fn swap_reverts_a_trial_image_tampered_before_it_confirms() {
    tampered_trial_image_is_reverted::<1>(Mode::Swap);
}

#[test]
fn multi_reverts_both_images_when_one_trial_image_is_tampered() {
    tampered_trial_image_is_reverted::<2>(Mode::Swap);
}

fn tampered_confirmed_image_is_never_booted<const N: usize>(mode: Mode) {
    let device = device::<N>(mode);
    booted(&device);
    install(&device, 2);
    let slot = device.status().unwrap().confirmed;
    flip(&device, N - 1, slot, 40);
    assert_eq!(
        boot(&device),
        BootDecision::Recovery {
            reason: RecoveryReason::Invalid {
                slot,
                image: ImageIndex(u8::try_from(N - 1).unwrap()),
                error: VerifyError::Rejected,
            }
        }
    );
}

#[test]
fn ab_never_boots_a_tampered_slot() {
    tampered_confirmed_image_is_never_booted::<1>(Mode::AB);
}

#[test]
fn swap_never_boots_a_tampered_primary() {
    tampered_confirmed_image_is_never_booted::<1>(Mode::Swap);
}

#[test]
fn multi_never_boots_when_one_primary_is_tampered() {
    tampered_confirmed_image_is_never_booted::<2>(Mode::Swap);
}

#[test]
fn erased_device_stays_in_recovery_and_says_why() {
    let device = SimDevice::<1>::new(Config::swap(SECTOR), SLOT, 1).unwrap();
    assert_eq!(
        boot(&device),
        BootDecision::Recovery {
            reason: RecoveryReason::Invalid {
                slot: Slot::A,
                image: ImageIndex(0),
                error: VerifyError::Empty,
            }
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Swap-offset: the same guarantees as swap.

#[test]
fn swap_offset_reverts_an_update_that_is_never_confirmed() {
    update_confirm_then_revert_an_unconfirmed_update::<1>(Mode::SwapOffset);
}

#[test]
fn multi_offset_reverts_both_images_of_an_update_that_is_never_confirmed() {
    update_confirm_then_revert_an_unconfirmed_update::<2>(Mode::SwapOffset);
}

#[test]
fn swap_offset_refuses_rollback_to_an_older_authentic_image() {
    rollback_to_an_older_authentic_image_is_refused::<1>(Mode::SwapOffset);
}

#[test]
fn multi_offset_refuses_rollback_to_an_older_authentic_image() {
    rollback_to_an_older_authentic_image_is_refused::<2>(Mode::SwapOffset);
}

#[test]
fn swap_offset_does_not_boot_an_older_authentic_image_written_over_the_primary() {
    attacker_writes_an_older_authentic_image_over_the_running_one::<1>(Mode::SwapOffset);
}

#[test]
fn swap_offset_never_installs_a_tampered_update() {
    tampered_update_is_never_installed::<1>(Mode::SwapOffset);
}

#[test]
fn multi_offset_refuses_a_whole_update_when_one_image_is_tampered() {
    tampered_update_is_never_installed::<2>(Mode::SwapOffset);
}

#[test]
fn swap_offset_reverts_a_trial_image_tampered_before_it_confirms() {
    tampered_trial_image_is_reverted::<1>(Mode::SwapOffset);
}

#[test]
fn multi_offset_reverts_both_images_when_one_trial_image_is_tampered() {
    tampered_trial_image_is_reverted::<2>(Mode::SwapOffset);
}

#[test]
fn swap_offset_never_boots_a_tampered_primary() {
    tampered_confirmed_image_is_never_booted::<1>(Mode::SwapOffset);
}

#[test]
fn swap_offset_stages_the_update_one_sector_into_the_secondary() {
    let device = device::<1>(Mode::SwapOffset);
    booted(&device);
    let (b, b_len) = device.slot_range(0, Slot::B).unwrap();
    assert_eq!(b_len, SLOT + SECTOR, "the secondary has one sector more");
    assert_eq!(device.slot_range(0, Slot::A).unwrap().1, SLOT);
    device.stage(&images(2), 128).unwrap();
    let staged = device
        .flash()
        .with(|f| f.peek(b + SECTOR, IMAGE as usize).unwrap().to_vec())
        .unwrap();
    assert_eq!(staged, images::<1>(2)[0]);
    // The swap leaves the old image at the start of the secondary, the new one in the primary.
    let target = booted(&device);
    assert_eq!(running(&device, &target), 2);
    assert_eq!(version_in(&device, Slot::B), 1);
}

#[test]
fn attack_an_update_that_fits_the_secondary_only_without_its_offset_is_refused() {
    let device = device::<1>(Mode::SwapOffset);
    booted(&device);
    let mut updater = device.updater().unwrap();
    // The secondary holds SLOT + SECTOR bytes, but its first sector is the swap's spare: an
    // image of SLOT + 1 bytes fits the slot and not the swap.
    assert_eq!(
        updater.begin([SLOT + 1]).map(|_| ()),
        Err(UpdateError::TooLarge {
            image: ImageIndex(0),
            size: SLOT + 1,
            capacity: SLOT,
        })
    );
    let mut staging = updater.begin([SLOT]).unwrap();
    // Writes stop at the image's end, one sector before the slot's.
    assert!(matches!(
        staging.write(ImageIndex(0), SLOT, &[0; 4]),
        Err(UpdateError::BadWrite { .. })
    ));
    staging.write(ImageIndex(0), SLOT - 4, &[0; 4]).unwrap();
}

#[test]
fn fault_an_oversized_image_written_straight_into_the_secondary_is_never_installed() {
    // Someone bypasses the updater: a pending update whose header claims more bytes than fit
    // between the secondary's offset sector and its end (they would fit the whole slot).
    let device = device::<1>(Mode::SwapOffset);
    booted(&device);
    device.stage(&images(2), 128).unwrap();
    let (b, _) = device.slot_range(0, Slot::B).unwrap();
    let big = sim_image(ImageIndex(0), 2, SLOT + 64);
    device
        .flash()
        .with(|f| f.load(b + SECTOR, &big[..SLOT as usize]))
        .unwrap()
        .unwrap();
    let target = booted(&device);
    assert_eq!(target.state, ImageState::Confirmed);
    assert_eq!(running(&device, &target), 1, "nothing moved");
    assert!(matches!(
        target.last_failure,
        Some(Failure::Invalid { .. } | Failure::TooLarge { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// The application cannot corrupt the boot state.

#[test]
fn staging_over_the_fallback_while_on_trial_is_refused() {
    let device = device::<1>(Mode::AB);
    booted(&device);
    device.stage(&images(2), 128).unwrap();
    booted(&device);
    let mut updater = device.updater().unwrap();
    assert_eq!(
        updater.begin([IMAGE]).map(|_| ()),
        Err(UpdateError::TrialNotConfirmed)
    );
}

#[test]
fn staging_writes_outside_the_image_are_refused() {
    let device = device::<1>(Mode::Swap);
    booted(&device);
    let mut updater = device.updater().unwrap();
    assert!(matches!(
        updater.begin([SLOT + 1]).map(|_| ()),
        Err(UpdateError::TooLarge { .. })
    ));
    assert_eq!(
        updater.begin([0]).map(|_| ()),
        Err(UpdateError::EmptyImage {
            image: ImageIndex(0)
        })
    );
    let mut staging = updater.begin([IMAGE]).unwrap();
    assert_eq!(staging.target(), Slot::B);
    assert!(matches!(
        staging.write(ImageIndex(0), 768, &[0; 4]),
        Err(UpdateError::BadWrite { .. })
    ));
    assert!(matches!(
        staging.write(ImageIndex(0), 2, &[0; 4]),
        Err(UpdateError::BadWrite { .. })
    ));
    assert!(matches!(
        staging.write(ImageIndex(1), 0, &[0; 4]),
        Err(UpdateError::NoSuchImage { .. })
    ));
}

#[test]
fn an_abandoned_staging_leaves_the_running_image_alone() {
    let device = device::<1>(Mode::AB);
    booted(&device);
    {
        let mut updater = device.updater().unwrap();
        let mut staging = updater.begin([IMAGE]).unwrap();
        staging
            .write(ImageIndex(0), 0, &images::<1>(2)[0][..256])
            .unwrap();
    }
    let target = booted(&device);
    assert_eq!(
        (target.slot, target.state),
        (Slot::A, ImageState::Confirmed)
    );
    assert_eq!(running(&device, &target), 1);
}

#[test]
fn a_pending_update_can_be_withdrawn() {
    let device = device::<1>(Mode::Swap);
    booted(&device);
    device.stage(&images(2), 128).unwrap();
    device.updater().unwrap().cancel().unwrap();
    let target = booted(&device);
    assert_eq!(running(&device, &target), 1);
    assert_eq!(target.state, ImageState::Confirmed);
}

#[test]
fn confirm_is_idempotent() {
    let device = device::<1>(Mode::AB);
    booted(&device);
    install(&device, 2);
    let before = device.status().unwrap();
    device.confirm().unwrap();
    assert_eq!(device.status().unwrap(), before, "no record written");
}

// ---------------------------------------------------------------------------------------------
// The state record.

#[test]
fn state_record_from_a_newer_bootloader_stops_the_boot() {
    let device = device::<1>(Mode::Swap);
    booted(&device);
    install(&device, 2);
    // A format-2 record with a valid CRC in the first half.
    let mut record = [0u8; 128];
    record[..4].copy_from_slice(b"SCBS");
    record[4] = 2;
    record[5] = 128;
    let crc = crc32(&record[..124]);
    record[124..].copy_from_slice(&crc.to_le_bytes());
    device
        .flash()
        .with(|f| f.load(0, &record))
        .unwrap()
        .unwrap();
    assert_eq!(
        boot(&device),
        BootDecision::Recovery {
            reason: RecoveryReason::UnsupportedState { version: 2 }
        }
    );
    assert_eq!(
        device.updater().unwrap().status(),
        Err(UpdateError::UnsupportedState { version: 2 })
    );
}

#[test]
fn state_record_of_another_layout_stops_the_boot() {
    let device = device::<1>(Mode::AB);
    booted(&device);
    device.stage(&images(2), 128).unwrap();
    // The same flash read by a bootloader built for the swap layout.
    let flash = device.flash().clone();
    let (a, a_len) = device.slot_range(0, Slot::A).unwrap();
    let (b, _) = device.slot_range(0, Slot::B).unwrap();
    let slots = [ImageSlots::new(
        flash.partition(a, a_len + SECTOR).unwrap(),
        flash.partition(b + SECTOR, SLOT - SECTOR).unwrap(),
    )];
    let state = flash.partition(0, a).unwrap();
    let mut boot = BootLoader::new(Config::swap(SECTOR), slots, state, SimVerifier).unwrap();
    assert_eq!(
        boot.boot().unwrap(),
        BootDecision::Recovery {
            reason: RecoveryReason::StateMismatch
        }
    );
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

// ---------------------------------------------------------------------------------------------
// Geometry.

#[test]
fn swap_works_on_mixed_sector_sizes() {
    // Two 256-byte sectors for the state, then 1 KiB sectors for the slots: the primary has 3
    // (two for the image, one spare), the secondary 2.
    mixed_sector_sizes(Config::swap(1024), 3072);
}

#[test]
fn swap_offset_works_on_mixed_sector_sizes() {
    // The same part; the secondary has the spare: primary 2 sectors, secondary 3.
    mixed_sector_sizes(Config::swap_offset(1024), 2048);
}

fn mixed_sector_sizes(config: Config, primary: u32) {
    let mut sizes = vec![256, 256];
    sizes.extend([1024; 5]);
    let map = SectorMap::from_sizes(&sizes).unwrap();
    let flash = SharedFlash::new(SimFlash::<4, 64>::new(map, 5).unwrap());
    let v1 = sim_image(ImageIndex(0), 1, 1500);
    let v2 = sim_image(ImageIndex(0), 2, 1800);
    flash.with(|f| f.load(512, &v1)).unwrap().unwrap();
    let parts = || {
        (
            [ImageSlots::new(
                flash.partition(512, primary).unwrap(),
                flash.partition(512 + primary, 5120 - primary).unwrap(),
            )],
            flash.partition(0, 512).unwrap(),
        )
    };
    let boot = || {
        let (slots, state) = parts();
        BootLoader::new(config, slots, state, SimVerifier)
            .unwrap()
            .boot()
            .unwrap()
    };
    let (slots, state) = parts();
    let mut updater = Updater::new(config, slots, state).unwrap();
    let mut staging = updater.begin([1800]).unwrap();
    for (i, chunk) in v2.chunks(256).enumerate() {
        let mut padded = chunk.to_vec();
        padded.resize(chunk.len().next_multiple_of(4), 0xFF);
        staging
            .write(ImageIndex(0), u32::try_from(i * 256).unwrap(), &padded)
            .unwrap();
    }
    staging.finish().unwrap();
    let BootDecision::Boot(t) = boot() else {
        panic!("no boot")
    };
    assert!(matches!(t.state, ImageState::Trial { .. }));
    assert!(flash.with(|f| f.peek(512, 1800).unwrap() == v2).unwrap());
    // Never confirmed: reverted after the trial boots.
    let _ = boot();
    let _ = boot();
    let BootDecision::Boot(t) = boot() else {
        panic!("no boot")
    };
    assert_eq!(t.state, ImageState::Confirmed);
    assert!(flash.with(|f| f.peek(512, 1500).unwrap() == v1).unwrap());
    // The state sectors were erased once per record, the slot sectors at most twice per swap.
    let wear = flash.with(|f| f.wear().to_vec()).unwrap();
    assert!(wear[2..].iter().all(|&w| w <= 4), "{wear:?}");
}

#[test]
fn geometry_mistakes_are_refused_at_construction() {
    let flash = SharedFlash::new(SimFlash::<4, 64>::uniform(256, 32, 1).unwrap());
    let state = || flash.partition(0, 512).unwrap();
    let slots = |a: u32, b: u32| {
        [ImageSlots::new(
            flash.partition(512, a).unwrap(),
            flash.partition(512 + a, b).unwrap(),
        )]
    };
    use suitcase_boot::ConfigError;
    let err = |config: Config, a, b| {
        Updater::new(config, slots(a, b), state())
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(
        err(Config::swap(256), 1024, 1024),
        ConfigError::NoSpareSector {
            image: ImageIndex(0)
        }
    );
    assert_eq!(
        err(Config::ab(256), 1000, 1024),
        ConfigError::SlotSize {
            image: ImageIndex(0),
            slot: Slot::A
        }
    );
    assert_eq!(
        err(Config::swap_offset(256), 1024, 1024),
        ConfigError::NoOffsetSector {
            image: ImageIndex(0)
        }
    );
    assert_eq!(
        err(Config::swap_offset(256), 1280, 1024),
        ConfigError::NoOffsetSector {
            image: ImageIndex(0)
        },
        "a swap layout's slots are not a swap-offset layout's"
    );
    assert!(Updater::new(Config::swap_offset(256), slots(1024, 1280), state()).is_ok());
    assert_eq!(err(Config::ab(100), 1024, 1024), ConfigError::SectorSize);
    assert_eq!(
        err(Config::ab(256).with_max_trial_boots(0), 1024, 1024),
        ConfigError::TrialBoots
    );
    assert!(matches!(
        Updater::new(
            Config::swap(256),
            slots(2048, 1792),
            flash.partition(0, 256).unwrap()
        )
        .map(|_| ()),
        Err(ConfigError::StateSize { .. })
    ));
}

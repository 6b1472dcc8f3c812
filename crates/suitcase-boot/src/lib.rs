//! The device's last line of defence: a power-fail-safe bootloader core.
//!
//! After every reset, [`BootLoader::boot`] decides which image runs: it finishes or undoes
//! whatever an interrupted update left half-done, verifies the image through an
//! [`ImageVerifier`] and refuses it if the verifier does or if its security version is below
//! the anti-rollback counter, boots a new image on trial, reverts it if the application does
//! not confirm it within a bounded number of boots, and says why when nothing may run. The
//! application side, [`Updater`], stages updates into the slot that is not in use, asks for
//! them to be installed and confirms the running image, and cannot leave the device
//! unbootable.
//!
//! **What it does not do.** It is `#![no_std]` and never allocates; it opens no socket, reads
//! no clock and knows nothing of manifests, signatures or digests: the [`ImageVerifier`] hook
//! (wired to the SUIT processor by `suitcase-device` and `firmware/`) decides what is
//! authentic. It touches flash only through the `embedded-storage` `NorFlash` traits it is
//! given, and never jumps anywhere: it returns a [`BootDecision`] and the platform code jumps.
//!
//! Four layouts ([`Mode`] × the image count `N`):
//!
//! * **A/B** ([`Mode::AB`], `N = 1`): two executable slots; the update runs where it was
//!   written. Cheapest in writes.
//! * **swap** ([`Mode::Swap`], `N = 1`): execute-in-place from a fixed primary slot; the
//!   bootloader swaps the update in, resumably, and swaps it back to revert
//!   ([`mod@swap`]). The primary has a spare sector; the image is written about 4 times per
//!   update.
//! * **swap-offset** ([`Mode::SwapOffset`], `N = 1`): the same, with the spare sector at the
//!   start of the secondary and the update staged after it, so the swap needs no move pass:
//!   the image is written 3 times per update (staging, and the swap's two halves).
//! * **multi-image** (`N = 2`, any mode): two images (say secure and non-secure) governed by
//!   one state record, so they change together: both new or both old, never one of each.
//!
//! The state record format is documented on [`StateRecord`], how it is kept atomic in
//! [`mod@store`], the update, confirm and revert step tables on [`BootLoader`], and the threat
//! model in [`design`]. The power-cut proof (feature `std`) is [`simulate`].
//!
//! ```
//! use embedded_storage::nor_flash::ReadNorFlash;
//! use suitcase_boot::{
//!     BootDecision, BootLoader, Config, ImageDigest, ImageIndex, ImageSlots, ImageState,
//!     ImageVerifier, Measurement, RecoveryReason, SecurityVersion, Slot, Updater, VerifyError,
//! };
//! use suitcase_flash_sim::{SharedFlash, SimFlash};
//!
//! /// A toy verifier: 64-byte images, a version in the first 4 bytes, XOR of all bytes 0.
//! /// (A real one re-validates the stored SUIT manifest and the image digest.)
//! struct Toy;
//! impl ImageVerifier for Toy {
//!     fn verify<F: ReadNorFlash>(&mut self, _: ImageIndex, slot: &mut F)
//!         -> Result<Measurement, VerifyError> {
//!         let mut image = [0u8; 64];
//!         slot.read(0, &mut image)?;
//!         let version: [u8; 4] = image[..4].try_into().unwrap();
//!         if version == [0xFF; 4] || image.iter().fold(0, |x, b| x ^ b) != 0 {
//!             return Err(VerifyError::Rejected);
//!         }
//!         Ok(Measurement {
//!             digest: ImageDigest::new(&image[56..]).unwrap(),
//!             security_version: SecurityVersion(u32::from_le_bytes(version).into()),
//!             size: 64,
//!         })
//!     }
//! }
//! fn image(version: u32) -> [u8; 64] {
//!     let mut image = [0x5A; 64];
//!     image[..4].copy_from_slice(&version.to_le_bytes());
//!     image[63] = image[..63].iter().fold(0, |x, b| x ^ b);
//!     image
//! }
//!
//! // One 1.5 KiB part of 256-byte sectors: state, slot A, slot B.
//! let flash = SharedFlash::new(SimFlash::<4, 256>::uniform(256, 6, 1)?);
//! flash.with(|f| f.load(512, &image(1)))??; // the factory image, in slot A
//! let parts = || -> Result<_, suitcase_flash_sim::GeometryError> {
//!     Ok(([ImageSlots::new(flash.partition(512, 512)?, flash.partition(1024, 512)?)],
//!         flash.partition(0, 512)?))
//! };
//! let config = Config::ab(256);
//! let boot = || -> Result<BootDecision<1>, Box<dyn std::error::Error>> {
//!     let (slots, state) = parts()?;
//!     Ok(BootLoader::new(config, slots, state, Toy)?.boot()?)
//! };
//! let (slots, state) = parts()?;
//! let mut updater = Updater::new(config, slots, state)?;
//!
//! assert!(matches!(boot()?, BootDecision::Boot(t) if t.slot == Slot::A));
//!
//! // Stage version 2 into slot B; it boots on trial, and the application confirms it.
//! let mut staging = updater.begin([64])?;
//! staging.write(ImageIndex(0), 0, &image(2))?;
//! staging.finish()?;
//! let BootDecision::Boot(target) = boot()? else { panic!("no boot") };
//! assert_eq!((target.slot, target.state), (Slot::B, ImageState::Trial { boot: 1, max: 3 }));
//! updater.confirm()?;
//! assert!(matches!(boot()?, BootDecision::Boot(t) if t.state == ImageState::Confirmed));
//!
//! // One flipped bit in the running image, and the bootloader refuses to run it.
//! flash.with(|f| f.flip_bit(1024 + 10, 0))??;
//! assert!(matches!(
//!     boot()?,
//!     BootDecision::Recovery { reason: RecoveryReason::Invalid { slot: Slot::B, .. } }
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]
#![deny(clippy::indexing_slicing)]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod boot;
mod crc;
pub mod design;
mod error;
mod layout;
mod record;
pub mod store;
pub mod swap;
pub mod trust_store;
mod update;
mod verify;

#[cfg(feature = "std")]
pub mod simulate;
#[cfg(feature = "std")]
pub mod trust_simulate;

pub use boot::{BootDecision, BootLoader, BootTarget, ImageState};
pub use error::{BootError, ConfigError, Failure, RecoveryReason, UpdateError};
pub use layout::{Config, DEFAULT_TRIAL_BOOTS, ImageSlots, MAX_IMAGES, Mode, Slot};
pub use record::{Phase, StateRecord};
pub use store::MAX_WRITE_SIZE;
pub use update::{BootStatus, Staging, Updater};
pub use verify::{
    ImageDigest, ImageIndex, ImageVerifier, MAX_DIGEST_LEN, Measurement, SecurityVersion,
    VerifyError,
};

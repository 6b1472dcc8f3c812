//! A simulated NOR flash part for host tests of bootloaders and updaters.
//!
//! [`SimFlash`] implements the `embedded-storage` 0.3 traits (`ReadNorFlash`, `NorFlash`, and
//! `MultiwriteNorFlash` under the [`Multiwrite`] rule) and enforces what real parts enforce:
//! erase value `0xFF`, programming only clears bits, write and erase granularity, erases that
//! cover whole physical sectors of a uniform or mixed [`SectorMap`]. On top of that it does
//! what real parts do only on a bad day, on cue and reproducibly: it cuts the power during the
//! N-th program or erase and leaves that operation torn ([`Tear`]), then fails everything until
//! [`SimFlash::power_on`]; it flips bits ([`SimFlash::flip_bit`]); and it counts operations,
//! bytes and per-sector wear.
//!
//! **What it does not model**: timing, read disturb, endurance limits (wear is counted, never
//! enforced), or several power cuts inside one operation. It is a host-only test double: it
//! allocates, and it is not `no_std`.
//!
//! [`SharedFlash`] splits one part into [`Partition`]s, so that a bootloader can hold its slots
//! and its state sector at once while a single power cut still hits them all.
//!
//! ```
//! use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
//! use suitcase_flash_sim::{SimError, SimFlash};
//!
//! let mut flash = SimFlash::<4, 256>::uniform(256, 4, 1)?;
//! flash.write(0, &[0x00, 0x11, 0x22, 0x33])?;
//! // NOR rules: a programmed word must be erased (a whole sector) before it is written again.
//! assert!(matches!(flash.write(0, &[0xFF; 4]), Err(SimError::NotErased { .. })));
//!
//! // Cut the power during the next operation: the erase is torn and everything then fails.
//! flash.cut_power_after(0);
//! assert_eq!(flash.erase(0, 256), Err(SimError::PowerCut));
//! let mut byte = [0];
//! assert_eq!(flash.read(0, &mut byte), Err(SimError::PoweredOff));
//! flash.power_on();
//! assert_eq!(flash.wear()[0], 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "host-only test double"
)]

mod flash;
mod geometry;
mod partition;
mod rng;

pub use flash::{ERASED, Multiwrite, ProgramRule, SimError, SimFlash, Stats, Strict, Tear};
pub use geometry::{GeometryError, Sector, SectorMap};
pub use partition::{Partition, SharedFlash};

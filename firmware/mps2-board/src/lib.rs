//! The board the suitcase firmware runs on: QEMU's `mps2-an386` (ARM MPS2 FPGA image AN386,
//! one Cortex-M4).
//!
//! **What it does not do.** It holds no policy: which image boots is `suitcase-boot`'s
//! decision and whether an image is authentic is the SUIT verifier's. This crate only knows
//! addresses: the partition map ([`layout`], also compiled for the host so that the flash
//! image tool and the firmware share one map), and, on the target, the CMSDK UART
//! ([`uart`]), ARM semihosting ([`semihosting`]), the flash ([`flash`]), the stack paint
//! ([`stack`]) and an instruction counter for `-icount` runs ([`cycles`]).
//!
//! The board has no flash controller QEMU emulates, so the flash is **a RAM region standing in
//! for it** (SSRAM1, where the code also lives, so images execute in place), mirrored to a
//! host file through semihosting: the bootloader loads the file into the region at reset, and
//! every program or erase is written through to the file. One QEMU run is one power cycle;
//! the file is what survives it.

#![no_std]

pub mod layout;

#[cfg(target_arch = "arm")]
pub mod cycles;
#[cfg(target_arch = "arm")]
pub mod flash;
#[cfg(target_arch = "arm")]
pub mod semihosting;
#[cfg(target_arch = "arm")]
pub mod stack;
#[cfg(target_arch = "arm")]
pub mod uart;

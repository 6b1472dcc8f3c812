//! Device-side glue between the SUIT processor and the bootloader.
//!
//! [`SuitVerifier`] is the `suitcase-boot` [`ImageVerifier`] for secure boot: before every boot
//! it re-authenticates the SUIT envelope stored in the slot and runs the manifest's validate
//! section (identity conditions, image-match) against the image beside it, and reports the
//! image digest and the manifest's sequence number as the security version that the
//! bootloader's anti-rollback counter is compared with.
//!
//! [`BootVerifier`] is the lean alternative for bootloaders (issue 20, docs/boot-path.md): it
//! streams the stored envelope from flash, checks the manifest digest, the signatures, the
//! identity conditions and the image digest, and runs nothing else of the manifest; a
//! bootloader that uses it links neither the SUIT command interpreter nor the envelope buffer.
//!
//! [`consumer`] is the firmware consumer: one update as a typestate from an offered envelope to
//! a confirmed (or reverted) image, checking everything it can before a payload byte is
//! fetched, streaming the payload through the SUIT processor into the slot, and resuming from
//! a journal by authenticating the stored envelope again (docs/architecture.md §5).
//!
//! **What it does not do.** It is `#![no_std]` and does not allocate (the `alloc` feature only
//! adds [`pack`] for hosts); the verifier reads the slot through `ReadNorFlash` and never
//! writes it, and the consumer touches storage only through its `Slots` and `Journal` traits.
//!
//! The slot image format (little-endian), written by [`pack`]:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `SUIT` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 4 | envelope length *N* |
//! | 12 | 4 | image offset *O* (≥ 32 + *N*, a multiple of 4) |
//! | 16 | 4 | image length *M* |
//! | 20 | 12 | reserved, 0 |
//! | 32 | *N* | the SUIT envelope |
//! | *O* | *M* | the image (aligned for execute-in-place) |

#![no_std]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::todo,
    clippy::unreachable
)]

#[cfg(feature = "alloc")]
extern crate alloc;

/// A boot-path refusal's text (`BootRefusal::Malformed`'s and `Unsupported`'s `what`): empty
/// with the feature `terse`, so that a bootloader that prints no texts keeps none in flash;
/// the offset and the identifier still say where and what.
macro_rules! text {
    ($s:literal) => {
        if cfg!(feature = "terse") { "" } else { $s }
    };
}

mod boot_cose;
#[cfg(feature = "trust")]
pub mod boot_trust;
mod boot_verify;
pub mod consumer;
mod verifier;

pub use boot_cose::{BootCheck, BootKey, OneKey};
#[cfg(feature = "ed25519")]
pub use boot_cose::{Ed25519, Ed25519Check};
#[cfg(feature = "es256-prehash")]
pub use boot_cose::{Es256, Es256Check};
pub use boot_verify::{Anchors, Authority, BootHash, BootRefusal, BootVerifier, Sha256Only};
pub use verifier::{DeviceIdentity, HEADER_SIZE, MAGIC, SlotHeader, SuitVerifier};

#[cfg(feature = "alloc")]
pub use verifier::pack;

pub use suitcase_boot::ImageVerifier;

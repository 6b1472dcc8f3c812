//! Differential updates that fit a microcontroller.
//!
//! * [`create`] (feature `std`) makes a patch from an old and a new image: a bsdiff-style
//!   alignment search (approximate matches with difference literals, plain literals, and
//!   copies from the new image itself) entropy-coded with an adaptive binary range coder.
//! * [`Applier`] applies it: `no_std`, no allocation, fed patch bytes in chunks of any size,
//!   reading the old image and writing the new one through [`OldImage`] and [`NewImage`]. Its
//!   whole state is [`REQUIRED_RAM`] bytes (under 16 KiB), declared in every patch header
//!   and checked against the device's [`Limits`].
//! * [`InPlaceApplier`] applies in-place patches in a single slot and resumes after a power
//!   cut from a small progress record the caller persists ([`ProgressStore`]).
//! * [`parse_info`] gives a SUIT processor the source and result digests without allocating.
//!
//! The patch format is documented in `docs/delta.md` and in [`format`].
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "std")]
extern crate alloc;

// The applier is device code: input bytes must not be able to panic it (docs/architecture.md
// §4), so its modules deny indexing and slicing like the other device crates. The encoder
// (`encode`, `host`, std only) is author-side code and may index.
#[deny(clippy::indexing_slicing)]
mod apply;
#[deny(clippy::indexing_slicing)]
mod error;
#[deny(clippy::indexing_slicing)]
mod filter;
#[deny(clippy::indexing_slicing)]
pub mod format;
#[deny(clippy::indexing_slicing)]
mod inplace;
#[deny(clippy::indexing_slicing)]
mod model;
#[deny(clippy::indexing_slicing)]
mod rc;

#[cfg(feature = "std")]
mod encode;
#[cfg(feature = "std")]
pub mod host;

pub use apply::{Applier, NewImage, OldImage, REQUIRED_RAM, SliceImage, Status};
pub use error::Error;
pub use format::{Geometry, Header, Limits, MAX_RAM_BOUND, Mode, PatchInfo, parse_info};
pub use inplace::{Flash, InPlaceApplier, Phase, Progress, ProgressStore};

#[cfg(feature = "std")]
pub use encode::{CreateError, InPlaceOptions, Options, Patch, Strategy, create};

/// Applies a whole patch (any mode) held in memory to `old`, returning the new image.
#[cfg(feature = "std")]
pub fn apply_to_vec(old: &[u8], patch: &[u8]) -> Result<Vec<u8>, Error> {
    host::apply_with_progress(old, patch, 64 * 1024, Limits::DEFAULT, |_| {})
}

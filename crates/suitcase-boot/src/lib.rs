//! Power-fail-safe bootloader core (work in progress).

#![no_std]
#![deny(clippy::indexing_slicing)]

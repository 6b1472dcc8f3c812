//! Differential updates (work in progress; see issue 8).
#![cfg_attr(not(feature = "std"), no_std)]

//! The serial link between a constrained sub-device and the suitcase gateway
//! (docs/gateway.md §2): one CoAP message (RFC 7252) per SLIP frame (RFC 1055) with a 16-bit
//! frame check sequence (RFC 1662 §C.2).
//!
//! Shared by both ends: the gateway (`suitcase-agent`'s `gateway`) decodes requests and
//! frames its answers with [`slip`]; the Cortex-M application (`firmware/mps2-app`) frames
//! its requests with [`slip`] and encodes and parses them with [`coap`]. `core` only: no
//! allocation, no panics on input (the workspace's clippy lints), every buffer the caller's.

#![no_std]
#![deny(clippy::indexing_slicing)]

#[cfg(test)]
extern crate alloc;

pub mod coap;
pub mod slip;

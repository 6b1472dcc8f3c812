//! Host-side foundations of suitcase that need no signing machinery: key files
//! ([`keys`], [`hss_file`], [`x509`]), vendor and class UUIDs ([`uuid`]) and what a release
//! installs ([`summary`]).
//!
//! The agent and the server link this crate, not `suitcase-author`: they read trust anchors
//! and decryption keys, derive UUIDs and summarise envelopes, but never sign. The signer
//! (`suitcase-author`) builds on it and re-exports these modules.

#![expect(
    clippy::std_instead_of_core,
    reason = "a host crate: the core/alloc discipline matters for the device crates only"
)]

mod error;
pub mod hss_file;
pub mod keys;
pub mod summary;
pub mod uuid;
pub mod x509;

pub use error::KeyError;

//! The author's side of suitcase: key generation and key files, signing (including stateful
//! HSS-LMS whose one-time keys are never reused, even across crashes), payload encryption for
//! devices and groups, the NTIA security tiers as profiles, and building signed releases.
//!
//! This crate runs on build machines and signing hosts, never on devices: it allocates, reads
//! and writes files and uses the operating system's random number generator. Devices only
//! verify, with `suitcase-manifest`.
//!
//! Every signature goes through [`signer::Signer`]: key files, keys on PKCS#11 tokens
//! ([`pkcs11`]) and, behind the same trait, any other back-end such as a cloud KMS.

#![expect(
    clippy::std_instead_of_core,
    reason = "a host crate: the core/alloc discipline matters for the device crates only"
)]

pub mod encrypt;
mod error;
pub mod hss;
pub mod keys;
pub mod pkcs11;
pub mod profile;
pub mod release;
pub mod rng;
pub mod signer;
pub mod trust;
pub mod wrap;
pub mod x509;

pub use error::AuthorError;
pub use profile::{Profile, Tier};
/// Release summaries and vendor/class UUIDs live in `suitcase-host` (the agent and the server
/// use them without the signer); re-exported so that `suitcase_author::summary` and
/// `suitcase_author::uuid` keep working.
pub use suitcase_host::{summary, uuid};

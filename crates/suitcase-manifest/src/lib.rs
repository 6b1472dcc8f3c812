//! A strict SUIT manifest processor for devices and the tools that serve them.
//!
//! This crate reads, authenticates and executes SUIT envelopes (draft-ietf-suit-manifest-34..37,
//! with the trust-domains, update-management and firmware-encryption extensions). It is
//! `#![no_std]`: **it performs no I/O and never allocates** (the `alloc` feature only adds
//! builders for authors). It never reads a clock, a socket or flash itself: a device hands it
//! envelope bytes, and the [`Platform`] trait carries every request for component content,
//! fetches and invocations back to the device.
//!
//! The life of an envelope:
//!
//! ```text
//!  bytes ──Envelope::decode──▶ Envelope ──verify(anchors)──▶ VerifiedManifest ──Processor──▶ effects
//!          (outer structure     (nothing in the       (digest, signatures,      (platform calls,
//!           only)                manifest parsed)      then full parse)          records)
//! ```
//!
//! Parse, don't validate: [`Processor::new`] accepts only a [`VerifiedManifest`], which only
//! [`Envelope::verify`] can create, after the manifest digest and at least one trusted
//! signature have been checked (manifest §6.2: authenticate "prior to parsing/executing any
//! section").
//!
//! ```
//! use suitcase_manifest::{Envelope, TrustAnchor, TrustPolicy, PublicKey, Error, AuthError};
//!
//! // Example 0 from the manifest draft, signed with its published P-256 key.
//! let envelope = hex::decode(include_str!("../../../testdata/vectors/manifest/example0.signed.hex").trim()).unwrap();
//! let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&hex::decode(
//!     "048496811aae0baaabd26157189eecda26beaa8bf11b6f3fe6e2b5659c85dbc0ad\
//!      3b1f2a4b6c098131c0a36dacd1d78bd381dcdfb09c052db33991db7338b4a896").unwrap()).unwrap();
//! let anchors = [TrustAnchor { name: "author", key: PublicKey::P256(key), kid: None, permissions: suitcase_manifest::Permissions::ALL  }];
//!
//! let verified = Envelope::decode(&envelope)?.verify(&anchors, &TrustPolicy::default())?;
//! assert_eq!(verified.sequence_number(), 0);
//!
//! // One flipped bit anywhere in the manifest and authentication fails.
//! let mut tampered = envelope.clone();
//! let last = tampered.len() - 1;
//! tampered[last] ^= 1;
//! let err = Envelope::decode(&tampered)?.verify(&anchors, &TrustPolicy::default()).unwrap_err();
//! assert_eq!(err, Error::Unauthenticated(AuthError::DigestMismatch));
//! # Ok::<(), Error>(())
//! ```
//!
//! Module [`design`] records the threat model and the decisions behind the defaults.

#![no_std]
#![deny(clippy::indexing_slicing)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod auth;
#[cfg(feature = "alloc")]
pub mod build;
mod cbor;
pub mod codepoints;
mod command;
mod component;
mod cose;
#[cfg(feature = "delta")]
mod delta;
pub mod dependency;
pub mod design;
mod digest;
pub mod encryption;
mod envelope;
mod error;
pub mod key;
mod manifest;
#[cfg(feature = "alloc")]
pub mod memory;
mod params;
mod process;
mod validate;
#[cfg(feature = "x509")]
mod x509;

#[doc(hidden)]
pub mod __fuzz;

#[cfg(feature = "es256-prehash")]
pub use auth::P256PrehashVerifier;
pub use auth::{
    Actions, MAX_ANCHORS, Permissions, PublicKey, Rule, Signers, TrustAnchor, TrustPolicy,
    algorithm_supported, is_prefix,
};
pub use command::{
    Command, CommandSequence, Commands, Condition, CopyParams, CustomArg, Directive, IndexArg,
    IndexList, MultipleParameters, ReportingPolicy, TryEach,
};
pub use component::{ComponentId, Components, MAX_COMPONENT_SEGMENTS, Segments};
pub use cose::{AuthBlock, BlockKind, Headers, Signer};
pub use dependency::{DependencyCause, DependencyFailure, MAX_DEPENDENCY_DEPTH};
pub use digest::{DigestAlgorithm, DigestValue, Hasher, MAX_DIGEST_LEN, SuitDigest};
pub use envelope::{Authentication, Envelope, SEVERABLE_KEYS, SectionState, VerifiedManifest};
pub use error::{AuthError, DeltaCause, Error, Operation, Reason, Unsupported};
pub use manifest::{Dependencies, MAX_COMPONENTS, Manifest, Severable, Text, TextEntry};
pub use params::{Identifier, Parameter, ParameterMap, Parameters, VersionMatch, parameter_name};
pub use process::{
    Component, FetchRequest, IdentityKind, MAX_NESTING, Platform, PlatformError, Processor,
    ProcessorPolicy, Record, Section,
};

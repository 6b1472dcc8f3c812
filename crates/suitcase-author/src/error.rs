//! The author crate's error type.

use std::path::PathBuf;

/// What can go wrong on the author's side. Messages say what to do next where possible.
#[derive(Debug, thiserror::Error)]
pub enum AuthorError {
    /// A file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// A key file is not in a format we read, or holds the wrong kind of key.
    #[error("{path}: {what}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The release description or options are inconsistent.
    #[error("{0}")]
    Release(String),
    /// The keys or options do not fit the chosen security profile.
    #[error("profile {profile}: {what}")]
    Profile {
        /// The profile.
        profile: &'static str,
        /// What is wrong.
        what: String,
    },
    /// A stateful HSS-LMS key has signed as many times as it can.
    #[error(
        "HSS-LMS key {path} has no one-time keys left: generate a new key and distribute its public key"
    )]
    HssExhausted {
        /// The key file.
        path: PathBuf,
    },
    /// An HSS-LMS reservation has used every one-time key it was given.
    #[error(
        "HSS-LMS reservation {path} is used up: reserve more from the master key with `suitcase key reserve`"
    )]
    HssReservationUsedUp {
        /// The reservation file.
        path: PathBuf,
    },
    /// Another process holds the HSS-LMS key's lock.
    #[error(
        "HSS-LMS key {path} is in use by another signer (lock held); signing twice at once could reuse a one-time key"
    )]
    HssLocked {
        /// The key file.
        path: PathBuf,
    },
    /// A PKCS#11 token, its module or its URI: `what` says what to fix.
    #[error("{uri}: {what}")]
    Pkcs11 {
        /// The URI, without any PIN.
        uri: String,
        /// What is wrong, and what to do.
        what: String,
    },
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The operating system's random number generator failed.
    #[error("the random number generator failed")]
    Rng,
    /// An envelope could not be decoded or verified.
    #[error(transparent)]
    Manifest(#[from] suitcase_manifest::Error),
}

/// A key-file error keeps its meaning (and its message) on the author's side.
impl From<suitcase_host::KeyError> for AuthorError {
    fn from(e: suitcase_host::KeyError) -> Self {
        use suitcase_host::KeyError as K;
        match e {
            K::Read { path, error } => Self::Read { path, error },
            K::Write { path, error } => Self::Write { path, error },
            K::Key { path, what } => Self::Key { path, what },
            K::Encode(what) => Self::Sign(what),
        }
    }
}

/// Shorthand for results in this crate.
pub(crate) type Result<T, E = AuthorError> = core::result::Result<T, E>;

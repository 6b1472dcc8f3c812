//! The error type of key files.

use std::path::PathBuf;

/// What can go wrong reading or writing a key file. Messages name the file and what it should
/// hold.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
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
    /// A key could not be encoded (a library refused it).
    #[error("{0}")]
    Encode(String),
}

/// Shorthand for results in this crate.
pub(crate) type Result<T, E = KeyError> = core::result::Result<T, E>;

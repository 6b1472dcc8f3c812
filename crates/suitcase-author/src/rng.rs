//! Randomness from the operating system.

use crate::error::{AuthorError, Result};

/// Fills `buf` with random bytes from the OS.
///
/// # Errors
/// [`AuthorError::Rng`] if the OS generator fails.
pub fn fill(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|_| AuthorError::Rng)
}

/// `N` random bytes.
///
/// # Errors
/// [`AuthorError::Rng`] if the OS generator fails.
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    fill(&mut b)?;
    Ok(b)
}

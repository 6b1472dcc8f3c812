//! Stateful HSS-LMS signing keys (RFC 8554; COSE alg -46, RFC 8778).
//!
//! An HSS-LMS private key is a set of one-time keys. Signing twice with the same one-time key
//! lets an attacker forge signatures, so the key's state (the index of the next unused one-time
//! key) must reach stable storage **before** a signature is released (RFC 8554 §10; NIST
//! SP 800-208 §8.1). The signer here:
//!
//! 1. takes an exclusive lock on `KEY.lock`, so two signing processes cannot use one state;
//! 2. reads the state from the key file;
//! 3. computes the signature; `hbs-lms` calls back with the advanced state *before* returning it;
//! 4. in that callback writes the advanced state durably ([`StateStore::store`]: temporary file,
//!    fsync, rename over the key file, fsync of the directory) and only if that succeeded
//! 5. releases the signature.
//!
//! A crash before step 4 completes loses a signature that was never released; a crash after it
//! skips an index. Neither reuses one. `tests/hss_crash.rs` cuts power at every storage step.
//!
//! The key file format ([`HssKeyFile`]) lives in `suitcase_host::hss_file`, so that servers and
//! devices can recognise such a file without linking the signer: a CBOR map with `kid`,
//! `public`, `state` (which carries the index) and, for a reservation (below), `end`.
//!
//! # Protecting the state file
//!
//! The state file is the private key. Beyond keeping it secret (mode 0600, written so by
//! [`suitcase_host::keys::write_atomic`]), it must never go **back**: restoring a backup, a VM
//! snapshot, a copy on a second signing host or a file-system rollback hands out one-time keys
//! that were already used, and two signatures under one one-time key let anyone forge (RFC
//! 8554 §10; NIST SP 800-208 §8.1 forbids cloning the state). So: back the key up only as a
//! reservation (below) or right after generating it, never copy it between machines, and keep
//! it on storage that is not snapshotted behind the signer's back.
//!
//! # Reservations: the state on removable or remote storage
//!
//! [`reserve`] splits off a range of one-time keys into a file of its own, so the master key
//! can stay offline (a USB stick in a safe, a remote store) while a signing host signs from the
//! reservation. It:
//!
//! 1. takes the master's lock and reads its index `i`;
//! 2. writes the master with index `i + N`, durably (atomic replace, as above);
//! 3. only then writes the reservation: the same key with index `i` and `end = i + N`.
//!
//! | crash during or after | master | reservation | one-time keys |
//! |---|---|---|---|
//! | step 2 (before the rename is durable) | `i` (old file) | none | nothing used, nothing lost |
//! | between steps 2 and 3 | `i + N` | none or the old file | `i .. i+N` skipped, none reused |
//! | step 3 | `i + N` | none, or complete | as above, or ready to use |
//!
//! The master never again signs below `i + N`, and the reservation never signs at or past
//! `end` ([`sign_with`] checks it), so the ranges are disjoint whatever crashes. A reservation
//! signs exactly like a key file (`release build --sign reservation.key`), with the same
//! lock-then-store-then-release steps. It holds the whole seed, like the master: protect it as
//! the key it is, and never restore an old copy of it either.

use std::path::{Path, PathBuf};

use hbs_lms::{HssParameter, LmotsAlgorithm, LmsAlgorithm, Sha256_256};
use zeroize::Zeroizing;

use crate::error::{AuthorError, Result};

/// Parses tree parameters: levels separated by commas, each `h<height>w<winternitz>`, e.g.
/// `h10w4,h10w4` (two levels of 2^10, 2^20 signatures). Heights 5, 10, 15, 20, 25; Winternitz
/// 1, 2, 4, 8.
///
/// # Errors
/// [`AuthorError::Release`] describing the accepted syntax.
pub fn parse_params(text: &str) -> Result<Vec<HssParameter<Sha256_256>>> {
    let bad = || {
        AuthorError::Release(format!(
            "bad HSS-LMS parameters {text:?}: use levels like h10w4,h10w4 (heights 5/10/15/20/25, Winternitz 1/2/4/8, 1 to 8 levels)"
        ))
    };
    let levels: Vec<&str> = text.split(',').map(str::trim).collect();
    if levels.is_empty() || levels.len() > 8 {
        return Err(bad());
    }
    levels
        .iter()
        .map(|level| {
            let rest = level.strip_prefix('h').ok_or_else(bad)?;
            let (h, w) = rest.split_once('w').ok_or_else(bad)?;
            let lms = match h {
                "5" => LmsAlgorithm::LmsH5,
                "10" => LmsAlgorithm::LmsH10,
                "15" => LmsAlgorithm::LmsH15,
                "20" => LmsAlgorithm::LmsH20,
                "25" => LmsAlgorithm::LmsH25,
                _ => return Err(bad()),
            };
            let ots = match w {
                "1" => LmotsAlgorithm::LmotsW1,
                "2" => LmotsAlgorithm::LmotsW2,
                "4" => LmotsAlgorithm::LmotsW4,
                "8" => LmotsAlgorithm::LmotsW8,
                _ => return Err(bad()),
            };
            Ok(HssParameter::new(ots, lms))
        })
        .collect()
}

pub use suitcase_host::hss_file::HssKeyFile;

/// What only the signer does with an HSS-LMS key file: make one, count and move its one-time
/// keys. Bring it into scope to call `HssKeyFile::generate` and friends.
pub trait HssSigning: Sized {
    /// Generates a new key with the given tree parameters.
    ///
    /// # Errors
    /// [`AuthorError::Rng`], or [`AuthorError::Sign`] if the parameters are refused.
    fn generate(params: &[HssParameter<Sha256_256>]) -> Result<Self>;

    /// How many signatures the key (or the reservation) can still make.
    ///
    /// # Errors
    /// [`AuthorError::Sign`] if the state is corrupt.
    fn signatures_left(&self) -> Result<u64>;

    /// The index of the next one-time key: the number of one-time keys used so far.
    ///
    /// # Errors
    /// [`AuthorError::Sign`] if the state is too short to be a key.
    fn index(&self) -> Result<u64>;
}

impl HssSigning for HssKeyFile {
    fn generate(params: &[HssParameter<Sha256_256>]) -> Result<Self> {
        let mut seed = hbs_lms::Seed::<Sha256_256>::default();
        crate::rng::fill(seed.as_mut_slice())?;
        let (sk, vk) = with_large_stack(|| hbs_lms::keygen::<Sha256_256>(params, &seed, None))?
            .map_err(|_| AuthorError::Sign("HSS-LMS key generation failed".into()))?;
        let public = vk.as_slice().to_vec();
        Ok(Self {
            kid: crate::keys::kid_of(&public),
            public,
            state: Zeroizing::new(sk.as_slice().to_vec()),
            end: None,
        })
    }

    fn signatures_left(&self) -> Result<u64> {
        let key = hbs_lms::SigningKey::<Sha256_256>::from_bytes(&self.state)
            .map_err(|_| AuthorError::Sign("HSS-LMS key state is corrupt".into()))?;
        // hbs-lms cannot expand the key once every one-time key is used: that is exhaustion.
        let lifetime = key.get_lifetime().unwrap_or(0);
        Ok(match self.end {
            Some(end) => lifetime.min(end.saturating_sub(self.index()?)),
            None => lifetime,
        })
    }

    // hbs-lms 0.1.1 keeps its private key in the reference (hash-sigs) layout, whose first 8
    // bytes are this count, big-endian (`ReferenceImplPrivateKey`); the test
    // `the_index_is_the_count_of_signatures_made` pins that down.
    fn index(&self) -> Result<u64> {
        self.state
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| AuthorError::Sign("HSS-LMS key state is corrupt".into()))
    }
}

/// The same key with its index set to `index` (and `end` for a reservation).
fn at(key: &HssKeyFile, index: u64, end: Option<u64>) -> Result<HssKeyFile> {
    let mut state = key.state.clone();
    state
        .get_mut(..8)
        .ok_or_else(|| AuthorError::Sign("HSS-LMS key state is corrupt".into()))?
        .copy_from_slice(&index.to_be_bytes());
    hbs_lms::SigningKey::<Sha256_256>::from_bytes(&state)
        .map_err(|_| AuthorError::Sign("HSS-LMS key state is corrupt".into()))?;
    Ok(HssKeyFile {
        kid: key.kid.clone(),
        public: key.public.clone(),
        state,
        end,
    })
}

/// A range of one-time keys split off a master key file by [`reserve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The first index in the reservation.
    pub first: u64,
    /// The first index after it (the master's index now).
    pub end: u64,
    /// What the master can still sign after the reservation.
    pub master_left: u64,
}

/// Moves the next `count` one-time keys of the key in `master` into a reservation written to
/// `reservation`: the master's advanced state is made durable **before** the reservation is
/// written (see the module documentation for the crash table).
///
/// # Errors
/// [`AuthorError::Release`] for a count of 0 or more than the key has left;
/// [`AuthorError::Read`]/[`AuthorError::Key`] for the master; [`AuthorError::Sign`] if a
/// store fails (the message says whether the reserved keys were lost).
pub fn reserve(
    master: &mut dyn StateStore,
    master_path: &Path,
    reservation: &mut dyn StateStore,
    count: u64,
) -> Result<Reservation> {
    let raw = master.load().map_err(|source| AuthorError::Read {
        path: master_path.to_path_buf(),
        error: source,
    })?;
    let key = HssKeyFile::decode(master_path, &raw)?;
    let left = key.signatures_left()?;
    if count == 0 || count > left {
        return Err(AuthorError::Release(format!(
            "cannot reserve {count} signatures from {}: it has {left} left",
            master_path.display()
        )));
    }
    let first = key.index()?;
    let end = first
        .checked_add(count)
        .ok_or_else(|| AuthorError::Release("reservation count too large".into()))?;
    // Step 2: the master moves past the range, durably, before the range exists anywhere else.
    let advanced = at(&key, end, key.end)?;
    master.store(&advanced.encode()).map_err(|e| {
        AuthorError::Sign(format!(
            "the master key's state could not be saved ({e}); nothing was reserved"
        ))
    })?;
    // Step 3: the reservation. Losing it now loses the range, never reuses it.
    let split = at(&key, first, Some(end))?;
    reservation.store(&split.encode()).map_err(|e| {
        AuthorError::Sign(format!(
            "the reservation could not be written ({e}); one-time keys {first}..{end} are \
             skipped (the master has moved past them), none will be reused"
        ))
    })?;
    Ok(Reservation {
        first,
        end,
        master_left: advanced.signatures_left()?,
    })
}

/// [`reserve`] between two files, holding the master's lock meanwhile.
///
/// # Errors
/// [`AuthorError::HssLocked`] if a signer holds the master's lock, else as [`reserve`].
pub fn reserve_file(master: &Path, reservation: &Path, count: u64) -> Result<Reservation> {
    with_lock(master, || {
        reserve(
            &mut FileStore::new(master),
            master,
            &mut FileStore::new(reservation),
            count,
        )
    })
}

/// Where an HSS-LMS key's state lives. `store` must not return `Ok` before the state is
/// durable: the signature is released right after.
pub trait StateStore: Send {
    /// Reads the current key file.
    ///
    /// # Errors
    /// Any I/O failure.
    fn load(&mut self) -> std::io::Result<Vec<u8>>;
    /// Replaces the key file durably.
    ///
    /// # Errors
    /// Any I/O failure; the signature is then withheld.
    fn store(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

/// The key file on disk, replaced atomically (temporary file, fsync, rename, directory fsync).
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store for the key file at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }
}

impl StateStore for FileStore {
    fn load(&mut self) -> std::io::Result<Vec<u8>> {
        std::fs::read(&self.path)
    }

    fn store(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        crate::keys::write_atomic(&self.path, bytes, true)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Signs `message` with the key in `store`, advancing the durable state first.
///
/// # Errors
/// [`AuthorError::HssExhausted`] when no one-time key is left, [`AuthorError::Sign`] if the
/// state could not be stored (no signature is released then).
pub fn sign_with(store: &mut dyn StateStore, path: &Path, message: &[u8]) -> Result<Vec<u8>> {
    let raw = store.load().map_err(|source| AuthorError::Read {
        path: path.to_path_buf(),
        error: source,
    })?;
    let key = HssKeyFile::decode(path, &raw)?;
    // For a reservation, what is left stops at its `end`: it never signs at or past it, where
    // the master's one-time keys begin (a one-time key signs once, RFC 8554 §10).
    if key.signatures_left()? == 0 {
        return Err(match key.end {
            Some(_) => AuthorError::HssReservationUsedUp {
                path: path.to_path_buf(),
            },
            None => AuthorError::HssExhausted {
                path: path.to_path_buf(),
            },
        });
    }
    let mut stored = false;
    let mut store_error = None;
    let signature = with_large_stack(|| {
        hbs_lms::sign::<Sha256_256>(
            message,
            &key.state,
            &mut |next: &[u8]| {
                let advanced = HssKeyFile {
                    kid: key.kid.clone(),
                    public: key.public.clone(),
                    state: Zeroizing::new(next.to_vec()),
                    end: key.end,
                };
                match store.store(&advanced.encode()) {
                    Ok(()) => {
                        stored = true;
                        Ok(())
                    }
                    Err(e) => {
                        store_error = Some(e.to_string());
                        Err(())
                    }
                }
            },
            None,
        )
    })?;
    match (signature, stored) {
        (Ok(sig), true) => Ok(sig.as_ref().to_vec()),
        _ => Err(AuthorError::Sign(match store_error {
            Some(e) => {
                format!("the HSS-LMS state could not be saved ({e}); no signature was released")
            }
            None => "HSS-LMS signing failed".into(),
        })),
    }
}

/// hbs-lms keeps whole trees on the stack while it generates keys and signs: more than the
/// 2 MiB a spawned thread gets by default with the default (largest) parameter limits. Run it on
/// a thread of its own with room to spare, whatever thread the caller is on.
fn with_large_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("hss-lms".into())
            .stack_size(64 << 20)
            .spawn_scoped(scope, f)
            .map_err(|e| AuthorError::Sign(format!("cannot start the HSS-LMS thread: {e}")))?
            .join()
            .map_err(|_| AuthorError::Sign("the HSS-LMS computation failed".into()))
    })
}

/// Signs with the key file at `path`, holding an exclusive lock on `path.lock` meanwhile.
///
/// # Errors
/// [`AuthorError::HssLocked`] if another signer holds the lock, else as [`sign_with`].
pub fn sign_file(path: &Path, message: &[u8]) -> Result<Vec<u8>> {
    with_lock(path, || sign_with(&mut FileStore::new(path), path, message))
}

/// Runs `f` holding the exclusive lock `path.lock` of the key file at `path`.
fn with_lock<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| AuthorError::Write {
            path: lock_path.clone(),
            error: source,
        })?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(AuthorError::HssLocked {
                path: path.to_path_buf(),
            });
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(AuthorError::Write {
                path: lock_path,
                error: source,
            });
        }
    }
    let result = f();
    let _ = lock.unlock();
    result
}

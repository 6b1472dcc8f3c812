//! HSS-LMS state survives crashes without ever reusing a one-time key.
//!
//! A simulated disk models the four steps of an atomic replace (write the temporary file, fsync
//! it, rename it over the key file, fsync the directory). Power is cut at every step of every
//! signing operation in turn; after a cut the signer "reboots" from whatever was durable, and
//! signing continues. Across all runs, every signature that was released must verify and no two
//! may share a one-time key (the leaf index q).

#![expect(clippy::unwrap_used, reason = "test code")]

use std::collections::HashSet;
use std::path::Path;

use suitcase_author::hss::{HssKeyFile, HssSigning, StateStore, parse_params, sign_with};

/// Where the disk is in an atomic replace when power fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    WriteTemp,
    SyncTemp,
    Rename,
    SyncDir,
}

const STEPS: [Step; 4] = [Step::WriteTemp, Step::SyncTemp, Step::Rename, Step::SyncDir];

struct SimDisk {
    /// What survives a power cut.
    durable: Vec<u8>,
    /// A rename done but not yet made durable by the directory fsync.
    pending_rename: Option<Vec<u8>>,
    /// Counts storage steps since the start of the run.
    steps: usize,
    /// Cut power when `steps` reaches this value.
    cut_at: Option<usize>,
    /// Whether a rename that was not fsynced survives the cut (both happen on real disks).
    rename_survives: bool,
    crashed: bool,
}

impl SimDisk {
    fn step(&mut self) -> std::io::Result<()> {
        let now = self.steps;
        self.steps += 1;
        if self.cut_at == Some(now) {
            self.crashed = true;
            if let Some(renamed) = self.pending_rename.take()
                && self.rename_survives
            {
                self.durable = renamed;
            }
            return Err(std::io::Error::other("power cut"));
        }
        Ok(())
    }

    fn reboot(&mut self) {
        self.crashed = false;
        self.pending_rename = None;
    }
}

impl StateStore for SimDisk {
    fn load(&mut self) -> std::io::Result<Vec<u8>> {
        Ok(self.durable.clone())
    }

    fn store(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut temp = None;
        for step in STEPS {
            self.step()?;
            match step {
                Step::WriteTemp => temp = Some(bytes.to_vec()),
                Step::SyncTemp => {}
                Step::Rename => self.pending_rename = temp.take(),
                Step::SyncDir => {
                    if let Some(renamed) = self.pending_rename.take() {
                        self.durable = renamed;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The bottom-level leaf index q of a one-level HSS signature (RFC 8554 §6.2: `Nspk` = 0, then
/// the LMS signature, which starts with q).
fn leaf_index(signature: &[u8]) -> u32 {
    assert_eq!(&signature[..4], &[0, 0, 0, 0], "one-level HSS");
    u32::from_be_bytes(signature[4..8].try_into().unwrap())
}

#[test]
fn a_power_cut_at_any_storage_step_never_reuses_a_one_time_key() {
    let key = HssKeyFile::generate(&parse_params("h5w1").unwrap()).unwrap();
    let initial = key.encode();
    let messages: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 40]).collect();
    let steps_per_run = messages.len() * STEPS.len();
    let mut runs = 0;
    for cut_at in 0..steps_per_run {
        for rename_survives in [false, true] {
            // A cut just after `store` returned but before the caller got the signature is the
            // same as losing a released-but-unused signature: model it by dropping the output.
            for drop_output in [false, true] {
                runs += 1;
                let mut disk = SimDisk {
                    durable: initial.clone(),
                    pending_rename: None,
                    steps: 0,
                    cut_at: Some(cut_at),
                    rename_survives,
                    crashed: false,
                };
                let mut released = Vec::new();
                for (n, message) in messages.iter().enumerate() {
                    let result = sign_with(&mut disk, Path::new("sim.hss"), message);
                    if disk.crashed {
                        assert!(
                            result.is_err(),
                            "no signature may come out of a failed state write"
                        );
                        disk.reboot();
                        continue;
                    }
                    let signature = result.unwrap();
                    if drop_output && n == cut_at / STEPS.len() {
                        continue;
                    }
                    released.push((message.clone(), signature));
                }
                let mut seen = HashSet::new();
                for (message, signature) in &released {
                    hbs_lms::verify::<hbs_lms::Sha256_256>(message, signature, &key.public)
                        .expect("released signature verifies");
                    let q = leaf_index(signature);
                    assert!(
                        seen.insert(q),
                        "one-time key {q} reused (cut at step {cut_at}, rename survives {rename_survives})"
                    );
                }
                assert!(
                    released.len() >= messages.len() - 1,
                    "only the interrupted signature may be lost"
                );
            }
        }
    }
    assert_eq!(runs, steps_per_run * 4);
}

#[test]
fn an_exhausted_key_refuses_to_sign() {
    let key = HssKeyFile::generate(&parse_params("h5w1").unwrap()).unwrap();
    let mut disk = SimDisk {
        durable: key.encode(),
        pending_rename: None,
        steps: 0,
        cut_at: None,
        rename_survives: false,
        crashed: false,
    };
    let mut seen = HashSet::new();
    for i in 0..32u32 {
        let sig = sign_with(&mut disk, Path::new("sim.hss"), &i.to_be_bytes()).unwrap();
        assert!(seen.insert(leaf_index(&sig)));
    }
    let err = sign_with(&mut disk, Path::new("sim.hss"), b"one too many").unwrap_err();
    assert!(
        matches!(err, suitcase_author::AuthorError::HssExhausted { .. }),
        "{err}"
    );
}

#[test]
fn a_second_signer_on_the_same_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("author.hss");
    let key = HssKeyFile::generate(&parse_params("h5w1").unwrap()).unwrap();
    std::fs::write(&path, key.encode()).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))
        .unwrap();
    lock.lock().unwrap();
    let err = suitcase_author::hss::sign_file(&path, b"m").unwrap_err();
    assert!(
        matches!(err, suitcase_author::AuthorError::HssLocked { .. }),
        "{err}"
    );
    lock.unlock().unwrap();
    let sig = suitcase_author::hss::sign_file(&path, b"m").unwrap();
    assert_eq!(leaf_index(&sig), 0);
    let sig = suitcase_author::hss::sign_file(&path, b"m").unwrap();
    assert_eq!(leaf_index(&sig), 1, "the state on disk advanced");
}

#[test]
fn rfc8554_test_case_1_verifies() {
    let text = include_str!("../../../testdata/vectors/pq/rfc8554_tc1.json");
    let field = |name: &str| {
        let start = text.find(&format!("\"{name}\"")).unwrap();
        let rest = &text[start..];
        let open = rest.find(": \"").unwrap() + 3;
        let close = rest[open..].find('"').unwrap();
        hex::decode(&rest[open..open + close]).unwrap()
    };
    let (public, message, mut signature) = (field("pub"), field("msg"), field("sig"));
    let public_key = suitcase_manifest::PublicKey::HssLms(&public);
    let anchors = [suitcase_manifest::TrustAnchor::new("rfc8554", public_key)];
    assert!(hbs_lms::verify::<hbs_lms::Sha256_256>(&message, &signature, &public).is_ok());
    let _ = anchors;
    let last = signature.len() - 1;
    signature[last] ^= 1;
    assert!(hbs_lms::verify::<hbs_lms::Sha256_256>(&message, &signature, &public).is_err());
}

//! HSS-LMS reservations never hand out a one-time key twice, whatever crashes.
//!
//! Two simulated files (the master key and the reservation) share one power supply. A scenario
//! reserves a range, signs from the reservation and from the master; power is cut at every
//! storage step of it in turn (each atomic replace has four: write the temporary file, fsync,
//! rename, fsync the directory), the signer "reboots" from what was durable and carries on.
//! Then both files are signed with until they refuse. Every released signature must verify and
//! no two may share a one-time key (the leaf index q).

#![expect(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "test code"
)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use suitcase_author::AuthorError;
use suitcase_author::hss::{HssKeyFile, HssSigning, StateStore, parse_params, reserve, sign_with};

/// When the power goes.
#[derive(Debug, Default)]
struct Power {
    steps: usize,
    cut_at: Option<usize>,
    crashed: bool,
}

/// A file on a disk where a rename not yet made durable by the directory fsync may or may not
/// survive a cut.
struct SimFile {
    durable: Option<Vec<u8>>,
    pending_rename: Option<Vec<u8>>,
    rename_survives: bool,
    power: Arc<Mutex<Power>>,
}

impl SimFile {
    fn new(durable: Option<Vec<u8>>, rename_survives: bool, power: &Arc<Mutex<Power>>) -> Self {
        Self {
            durable,
            pending_rename: None,
            rename_survives,
            power: Arc::clone(power),
        }
    }

    fn step(&mut self) -> std::io::Result<()> {
        let mut p = self.power.lock().unwrap();
        let now = p.steps;
        p.steps += 1;
        if p.crashed || p.cut_at == Some(now) {
            p.crashed = true;
            if let Some(renamed) = self.pending_rename.take()
                && self.rename_survives
            {
                self.durable = Some(renamed);
            }
            return Err(std::io::Error::other("power cut"));
        }
        Ok(())
    }

    fn reboot(&mut self) {
        self.pending_rename = None;
    }
}

impl StateStore for SimFile {
    fn load(&mut self) -> std::io::Result<Vec<u8>> {
        self.durable
            .clone()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn store(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut temp = None;
        for step in 0..4 {
            self.step()?;
            match step {
                0 => temp = Some(bytes.to_vec()),
                1 => {}
                2 => self.pending_rename = temp.take(),
                _ => {
                    if let Some(renamed) = self.pending_rename.take() {
                        self.durable = Some(renamed);
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

/// What one scenario does, in order.
#[derive(Clone, Copy, Debug)]
enum Op {
    Reserve(u64),
    SignFromReservation,
    SignFromMaster,
}

const SCENARIO: [Op; 5] = [
    Op::Reserve(5),
    Op::SignFromReservation,
    Op::SignFromReservation,
    Op::SignFromMaster,
    Op::SignFromMaster,
];

/// Storage steps of the scenario when nothing fails: 2 stores for the reservation, 1 per
/// signature, 4 steps each.
const SCENARIO_STEPS: usize = (2 + 4) * 4;

#[test]
fn a_power_cut_at_any_step_of_reserving_or_signing_never_reuses_a_one_time_key() {
    let key = HssKeyFile::generate(&parse_params("h5w4").unwrap()).unwrap();
    let total = key.signatures_left().unwrap();
    assert_eq!(total, 32);
    let mut runs = 0;
    for cut_at in 0..=SCENARIO_STEPS {
        for rename_survives in [false, true] {
            runs += 1;
            let power = Arc::new(Mutex::new(Power {
                cut_at: Some(cut_at),
                ..Power::default()
            }));
            let mut master = SimFile::new(Some(key.encode()), rename_survives, &power);
            let mut reservation = SimFile::new(None, rename_survives, &power);
            let mut released = Vec::new();
            let mut n = 0u8;
            for op in SCENARIO {
                n += 1;
                let message = vec![n; 24];
                let result = match op {
                    Op::Reserve(count) => {
                        reserve(&mut master, Path::new("m"), &mut reservation, count).map(|_| None)
                    }
                    Op::SignFromReservation if reservation.durable.is_some() => {
                        sign_with(&mut reservation, Path::new("r"), &message).map(Some)
                    }
                    Op::SignFromReservation => Ok(None),
                    Op::SignFromMaster => {
                        sign_with(&mut master, Path::new("m"), &message).map(Some)
                    }
                };
                let crashed = std::mem::take(&mut power.lock().unwrap().crashed);
                if crashed {
                    assert!(result.is_err(), "nothing may succeed across a power cut");
                    master.reboot();
                    reservation.reboot();
                    continue;
                }
                if let Some(signature) = result.unwrap() {
                    released.push((message, signature));
                }
            }
            // Drain both files: every one-time key either of them will still give out.
            power.lock().unwrap().cut_at = None;
            for (file, name) in [(&mut reservation, "r"), (&mut master, "m")] {
                if file.durable.is_none() {
                    continue;
                }
                loop {
                    n = n.wrapping_add(1);
                    let message = vec![n; 24];
                    match sign_with(file, Path::new(name), &message) {
                        Ok(signature) => released.push((message, signature)),
                        Err(AuthorError::HssExhausted { .. })
                        | Err(AuthorError::HssReservationUsedUp { .. }) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            let mut seen = HashSet::new();
            for (message, signature) in &released {
                hbs_lms::verify::<hbs_lms::Sha256_256>(message, signature, &key.public)
                    .expect("released signature verifies");
                let q = leaf_index(signature);
                assert!(
                    seen.insert(q),
                    "one-time key {q} reused (cut at step {cut_at}, rename survives \
                     {rename_survives})"
                );
            }
            // A crash may skip a range (the reservation) and one signature, never more.
            assert!(
                released.len() as u64 >= total - 5 - 1,
                "cut at {cut_at}: only {} of {total} one-time keys used",
                released.len()
            );
            if cut_at == SCENARIO_STEPS {
                assert_eq!(released.len() as u64, total, "no cut, nothing lost");
            }
        }
    }
    assert_eq!(runs, (SCENARIO_STEPS + 1) * 2);
}

#[test]
fn the_index_is_the_count_of_signatures_made() {
    let key = HssKeyFile::generate(&parse_params("h5w4").unwrap()).unwrap();
    let power = Arc::new(Mutex::new(Power::default()));
    let mut file = SimFile::new(Some(key.encode()), false, &power);
    for i in 0..3u64 {
        let now = HssKeyFile::decode(Path::new("m"), file.durable.as_ref().unwrap()).unwrap();
        assert_eq!(now.index().unwrap(), i);
        assert_eq!(now.signatures_left().unwrap(), 32 - i);
        let signature = sign_with(&mut file, Path::new("m"), b"m").unwrap();
        assert_eq!(u64::from(leaf_index(&signature)), i);
    }
}

#[test]
fn a_reservation_signs_its_range_only_and_then_refuses() {
    let key = HssKeyFile::generate(&parse_params("h5w4").unwrap()).unwrap();
    let power = Arc::new(Mutex::new(Power::default()));
    let mut master = SimFile::new(Some(key.encode()), false, &power);
    sign_with(&mut master, Path::new("m"), b"first").unwrap();
    let mut reservation = SimFile::new(None, false, &power);
    let r = reserve(&mut master, Path::new("m"), &mut reservation, 3).unwrap();
    assert_eq!((r.first, r.end, r.master_left), (1, 4, 28));
    let file = HssKeyFile::decode(Path::new("r"), reservation.durable.as_ref().unwrap()).unwrap();
    assert_eq!(file.reservation_end(), Some(4));
    assert_eq!(file.signatures_left().unwrap(), 3);
    for expected in 1..4 {
        let sig = sign_with(&mut reservation, Path::new("r"), b"m").unwrap();
        assert_eq!(leaf_index(&sig), expected);
    }
    let err = sign_with(&mut reservation, Path::new("r"), b"m").unwrap_err();
    assert!(
        matches!(err, AuthorError::HssReservationUsedUp { .. }),
        "{err}"
    );
    // The master carries on after the reserved range.
    let sig = sign_with(&mut master, Path::new("m"), b"m").unwrap();
    assert_eq!(leaf_index(&sig), 4);
}

#[test]
fn reserving_more_than_is_left_or_nothing_is_refused() {
    let key = HssKeyFile::generate(&parse_params("h5w4").unwrap()).unwrap();
    let power = Arc::new(Mutex::new(Power::default()));
    let mut master = SimFile::new(Some(key.encode()), false, &power);
    let mut reservation = SimFile::new(None, false, &power);
    for count in [0, 33] {
        let err = reserve(&mut master, Path::new("m"), &mut reservation, count).unwrap_err();
        assert!(err.to_string().contains("32 left"), "{err}");
    }
    assert!(reservation.durable.is_none());
    assert_eq!(master.durable.as_deref(), Some(key.encode().as_slice()));
}

#[test]
fn a_reservation_file_is_not_read_as_a_plain_key_by_version_1_readers() {
    let key = HssKeyFile::generate(&parse_params("h5w4").unwrap()).unwrap();
    let power = Arc::new(Mutex::new(Power::default()));
    let mut master = SimFile::new(Some(key.encode()), false, &power);
    let mut reservation = SimFile::new(None, false, &power);
    reserve(&mut master, Path::new("m"), &mut reservation, 2).unwrap();
    let bytes = reservation.durable.unwrap();
    // A version 1 reader checks `version == 1`: the reservation says 2.
    let mut d = minicbor::Decoder::new(&bytes);
    let n = d.map().unwrap().unwrap();
    let mut version = None;
    for _ in 0..n {
        if d.str().unwrap() == "version" {
            version = Some(d.u64().unwrap());
        } else {
            d.skip().unwrap();
        }
    }
    assert_eq!(version, Some(2));
}

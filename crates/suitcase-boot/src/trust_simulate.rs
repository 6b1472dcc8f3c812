//! The power-cut proof of the trust area (feature `std`): [`trust_power_cut_proof`] drives two
//! trust updates and a replayed one through [`crate::trust_store`] on simulated flash and cuts
//! the power at every flash operation in turn, as [`crate::simulate`] does for the slots.
//!
//! The scenario: the factory provisions the genesis state (sequence 0; not a cut point). The
//! application stages trust update 1; at the next reset the bootloader verifies and commits it
//! ([`commit_staged`]); the same for update 2; then the application stages update 1 again (a
//! replay), which the bootloader must refuse and clear, keeping state 2. The stand-in for the
//! root's verification accepts an envelope that carries exactly the record of its sequence and
//! is above the state in force (what `TrustState::apply_update` decides on a real device).
//!
//! Every operation of the uncut run (staging writes, copy erases and programs, staging clears)
//! is a cut point, torn four ways (seeded random, every byte independently untouched, applied
//! or partly applied ("scatter"), nothing applied, everything applied but the power lost),
//! followed by one more cut at a pseudo-random point of the recovery.
//!
//! Two flash models: the simulator's own (`READ_SIZE` 1, `WRITE_SIZE` 4) and [`AlignedFlash`]
//! with `READ_SIZE` 4 and `WRITE_SIZE` 8, whose driver refuses a misaligned read or program as
//! parts with ECC do ([`TrustSimConfig::read_size`]). The stand-in envelope has an odd length
//! (a trailing byte), so the staged envelope never ends on a read unit. After every
//! reset the bootloader must find:
//!
//! * a state in force (none: **lost**), never one older than a state already seen in force
//!   (also **lost**: a rollback of the trust state);
//! * the record of exactly one state, byte for byte (anything else: **mixed**);
//!
//! and the run must end in state 2 with the replay refused within a bounded number of boots
//! (otherwise **unfinished**).

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "host-only simulation"
)]

use std::fmt;
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use suitcase_flash_sim::{SharedFlash, SimError, SimFlash, Tear};

use crate::simulate::{SIM_ERASE_SIZE, SimPartition};
use crate::trust_store::{CommitBuffers, TrustStaging, TrustStore, commit_staged};

/// A partition of the simulated flash behind a driver that reads whole `READ`-byte units at
/// `READ`-aligned offsets only and programs whole `WRITE`-byte units (`WRITE` a multiple of
/// the simulator's 4), refusing anything else with [`SimError::NotAligned`]. `AlignedFlash<1,
/// 4>` behaves exactly as the partition. [`AlignedFlash::fail_reads`] makes every read fail
/// (a read fault the bootloader cannot tell from a broken part).
#[derive(Debug)]
pub struct AlignedFlash<const READ: usize, const WRITE: usize> {
    inner: SimPartition,
    fail_reads: bool,
}

impl<const READ: usize, const WRITE: usize> AlignedFlash<READ, WRITE> {
    /// `inner` behind the aligned driver.
    pub fn new(inner: SimPartition) -> Self {
        Self {
            inner,
            fail_reads: false,
        }
    }

    /// From now on every read fails (`true`) or works again (`false`).
    pub fn fail_reads(&mut self, fail: bool) {
        self.fail_reads = fail;
    }

    fn aligned(offset: u32, len: usize, align: usize) -> Result<(), SimError> {
        let at = usize::try_from(offset).unwrap_or(usize::MAX);
        if at.is_multiple_of(align) && len.is_multiple_of(align) {
            Ok(())
        } else {
            Err(SimError::NotAligned { offset, len, align })
        }
    }
}

impl<const READ: usize, const WRITE: usize> ErrorType for AlignedFlash<READ, WRITE> {
    type Error = SimError;
}

impl<const READ: usize, const WRITE: usize> ReadNorFlash for AlignedFlash<READ, WRITE> {
    const READ_SIZE: usize = READ;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        Self::aligned(offset, bytes.len(), READ)?;
        if self.fail_reads {
            return Err(SimError::OutOfBounds {
                offset,
                len: bytes.len(),
            });
        }
        self.inner.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl<const READ: usize, const WRITE: usize> NorFlash for AlignedFlash<READ, WRITE> {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = SIM_ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.inner.erase(from, to)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        Self::aligned(offset, bytes.len(), WRITE)?;
        self.inner.write(offset, bytes)
    }
}

/// Boots a run may take.
const BOOT_LIMIT: u32 = 40;
const TOY_MAGIC: &[u8; 4] = b"TOYU";
const TOY_TRAILER: u8 = 0xA5;

/// Geometry and knobs of a trust-area proof run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustSimConfig {
    /// Sector size (a multiple of 64).
    pub sector_size: u32,
    /// Bytes of the trust record (`suitcase-trust`'s `RECORD_SIZE` is 1,536).
    pub record_len: usize,
    /// Bytes the application writes per staging call are not modelled: one envelope is one
    /// program sequence of 256-byte chunks. Further cuts after the first, per run.
    pub repeat_cuts: u32,
    /// Also tear every cut point with nothing applied and with everything applied.
    pub edge_tears: bool,
    /// Seed of the tear shapes and repeated-cut distances.
    pub seed: u64,
    /// The flash model: 1 (the simulator's: `READ_SIZE` 1, `WRITE_SIZE` 4) or 4
    /// ([`AlignedFlash`]: `READ_SIZE` 4, `WRITE_SIZE` 8).
    pub read_size: usize,
}

impl Default for TrustSimConfig {
    /// 4 KiB sectors, a 1,536-byte record (`suitcase-trust`'s), edge tears, one repeated cut.
    fn default() -> Self {
        Self {
            sector_size: 4096,
            record_len: 1536,
            repeat_cuts: 1,
            edge_tears: true,
            seed: 1,
            read_size: 1,
        }
    }
}

impl TrustSimConfig {
    /// 256-byte sectors: each copy spans several sectors.
    pub fn small() -> Self {
        Self {
            sector_size: 256,
            ..Self::default()
        }
    }

    /// [`TrustSimConfig::small`] on [`AlignedFlash`]: `READ_SIZE` 4, `WRITE_SIZE` 8.
    pub fn small_aligned() -> Self {
        Self {
            read_size: 4,
            ..Self::small()
        }
    }
}

/// What the trust-area proof found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustReport {
    /// Flash program and erase operations of the uncut scenario; each was torn in turn.
    pub cut_points: u64,
    /// Power cuts made in all runs.
    pub cuts: u64,
    /// Runs in which no state was in force, or an older state than one already in force.
    pub lost: u64,
    /// Runs in which the record in force was not exactly one state's.
    pub mixed: u64,
    /// Runs that did not reach state 2 with the replay refused.
    pub unfinished: u64,
    /// Bytes programmed by one trust update (staging, copy, clear), uncut.
    pub writes_per_update: u64,
    /// The flash model's `READ_SIZE`.
    pub read_size: usize,
    /// The first problem, for a human.
    pub first_problem: Option<String>,
}

impl TrustReport {
    /// No run lost, mixed or failed to finish.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.mixed == 0 && self.unfinished == 0
    }
}

impl fmt::Display for TrustReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "layout:            trust-state")?;
        writeln!(f, "read size:         {}", self.read_size)?;
        writeln!(f, "cut points:        {}", self.cut_points)?;
        writeln!(f, "power cuts:        {}", self.cuts)?;
        writeln!(f, "lost:              {}", self.lost)?;
        writeln!(f, "mixed:             {}", self.mixed)?;
        writeln!(f, "unfinished:        {}", self.unfinished)?;
        write!(f, "writes per update: {}", self.writes_per_update)?;
        if let Some(p) = &self.first_problem {
            write!(f, "\nfirst problem:     {p}")?;
        }
        Ok(())
    }
}

/// The record of trust state `seq` (pseudo-random, distinct per state).
fn toy_record(seq: u64, len: usize) -> Vec<u8> {
    let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn toy_update(seq: u64, len: usize) -> Vec<u8> {
    let mut e = TOY_MAGIC.to_vec();
    e.extend_from_slice(&seq.to_le_bytes());
    e.extend_from_slice(&toy_record(seq, len));
    // An odd length: the staged envelope never ends on a read unit.
    e.push(TOY_TRAILER);
    e
}

/// The stand-in for `TrustState::apply_update`: the envelope must carry the record of its
/// sequence (its "signature"), above the state in force.
fn toy_apply(current: &[u8], envelope: &[u8], next: &mut [u8]) -> Result<u64, String> {
    let len = next.len();
    let current_seq = (0..=2)
        .find(|&s| toy_record(s, len) == current)
        .ok_or("the state in force is no known state")?;
    let (magic, rest) = envelope.split_at_checked(4).ok_or("short")?;
    let (seq, record) = rest.split_at_checked(8).ok_or("short")?;
    let seq = u64::from_le_bytes(seq.try_into().map_err(|_| "short")?);
    let (trailer, record) = record.split_last().ok_or("short")?;
    if magic != TOY_MAGIC || *trailer != TOY_TRAILER || record != toy_record(seq, len) {
        return Err("not authentic".into());
    }
    if seq <= current_seq {
        return Err(format!("rollback: {seq} is not above {current_seq}"));
    }
    next.copy_from_slice(record);
    Ok(seq)
}

struct Device {
    flash: SharedFlash<4, 64>,
    trust_len: u32,
    staging_len: u32,
    record_len: usize,
}

impl Device {
    fn new(config: &TrustSimConfig, seed: u64) -> Result<Self, String> {
        let s = config.sector_size;
        if s == 0 || !s.is_multiple_of(64) {
            return Err("sector size must be a non-zero multiple of 64".into());
        }
        let sectors = |bytes: usize| u32::try_from(bytes).unwrap_or(u32::MAX).div_ceil(s);
        let half = sectors(24 + config.record_len);
        let staging = sectors(16 + 13 + config.record_len);
        let flash =
            SimFlash::<4, 64>::uniform(s, 2 * half + staging, seed).map_err(|e| format!("{e}"))?;
        Ok(Self {
            flash: SharedFlash::new(flash),
            trust_len: 2 * half * s,
            staging_len: staging * s,
            record_len: config.record_len,
        })
    }

    #[allow(clippy::type_complexity, reason = "two flash types")]
    fn parts<const R: usize, const W: usize>(
        &self,
    ) -> Result<
        (
            TrustStore<AlignedFlash<R, W>>,
            TrustStaging<AlignedFlash<R, W>>,
        ),
        String,
    > {
        let store = self
            .flash
            .partition(0, self.trust_len)
            .map_err(|e| format!("{e}"))?;
        let staging = self
            .flash
            .partition(self.trust_len, self.staging_len)
            .map_err(|e| format!("{e}"))?;
        Ok((
            TrustStore::new(AlignedFlash::new(store), self.record_len)
                .map_err(|e| format!("{e}"))?,
            TrustStaging::new(AlignedFlash::new(staging)).map_err(|e| format!("{e}"))?,
        ))
    }

    fn powered(&self) -> bool {
        self.flash.with(|f| f.is_powered()).unwrap_or(false)
    }
}

enum Kind {
    Lost,
    Mixed,
    Unfinished,
}

struct Run {
    device: Device,
    config: TrustSimConfig,
    rng: u64,
    cuts: u64,
}

impl Run {
    fn new<const R: usize, const W: usize>(
        config: &TrustSimConfig,
        seed: u64,
    ) -> Result<Self, String> {
        let device = Device::new(config, seed)?;
        let (mut store, _) = device.parts::<R, W>()?;
        store
            .write(None, 0, &toy_record(0, config.record_len))
            .map_err(|e| format!("provisioning: {e}"))?;
        device
            .flash
            .with(|f| f.reset_stats())
            .map_err(|e| format!("{e}"))?;
        Ok(Self {
            device,
            config: *config,
            rng: seed | 1,
            cuts: 0,
        })
    }

    fn reset(&mut self) {
        if !self.device.powered() {
            self.cuts += 1;
            let repeat = self.cuts <= u64::from(self.config.repeat_cuts);
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let distance = self.rng % 16;
            let _ = self.device.flash.with(|f| {
                f.power_on();
                if repeat {
                    f.cut_power_after(distance);
                }
            });
        }
    }

    /// Runs the scenario; the flash operations it made when it finished.
    fn execute<const R: usize, const W: usize>(&mut self) -> Result<(u64, u64), (Kind, String)> {
        let len = self.config.record_len;
        let mut seen = 0u64;
        let mut replay_staged = false;
        let mut record = vec![0u8; len];
        let mut next = vec![0u8; len];
        let mut envelope = vec![0u8; len + 64];
        let mut first_update_bytes = None;
        for boot in 0..BOOT_LIMIT {
            if boot > 0 {
                self.reset();
            }
            let (mut store, mut staging) =
                self.device.parts::<R, W>().map_err(|e| (Kind::Lost, e))?;
            let outcome = commit_staged(
                &mut store,
                &mut staging,
                CommitBuffers {
                    record: &mut record,
                    next: &mut next,
                    envelope: &mut envelope,
                },
                toy_apply,
            );
            if !self.device.powered() {
                continue;
            }
            let (in_force, _commit) = match outcome {
                Ok(Some(found)) => found,
                Ok(None) => return Err((Kind::Lost, "no trust state in force".into())),
                Err(e) => return Err((Kind::Lost, format!("trust area unreadable: {e}"))),
            };
            let seq = in_force.sequence;
            if seq > 2 || toy_record(seq, len) != record {
                return Err((
                    Kind::Mixed,
                    format!("the record in force (sequence {seq}) is no state's"),
                ));
            }
            if seq < seen {
                return Err((
                    Kind::Lost,
                    format!("state {seq} in force after state {seen}"),
                ));
            }
            seen = seq;
            if seq == 1 && first_update_bytes.is_none() {
                first_update_bytes = self.device.flash.with(|f| f.stats().bytes_written).ok();
            }
            // The application: stage what it wants delivered; in state 2, the replay.
            let mut buf = vec![0u8; len + 64];
            let staged = staging.read(&mut buf).ok().flatten().map(<[u8]>::to_vec);
            if seq == 2 && replay_staged && staged.is_none() {
                // The replay was refused and cleared, and state 2 stayed in force.
                let ops = self
                    .device
                    .flash
                    .with(|f| f.stats().mutations())
                    .unwrap_or(0);
                return Ok((ops, first_update_bytes.unwrap_or(0)));
            }
            let want = toy_update(if seq < 2 { seq + 1 } else { 1 }, len);
            if staged.as_deref() != Some(&want[..]) && staging.stage(&want).is_ok() && seq == 2 {
                replay_staged = true;
            }
        }
        Err((
            Kind::Unfinished,
            format!("not finished within {BOOT_LIMIT} boots"),
        ))
    }
}

/// Runs the trust-area proof. See the [module documentation](self).
///
/// # Errors
/// A message if the geometry is unusable or the uncut scenario fails.
pub fn trust_power_cut_proof(config: &TrustSimConfig) -> Result<TrustReport, String> {
    match config.read_size {
        1 => proof::<1, 4>(config),
        4 => proof::<4, 8>(config),
        other => Err(format!("read size {other}: 1 or 4")),
    }
}

fn proof<const R: usize, const W: usize>(config: &TrustSimConfig) -> Result<TrustReport, String> {
    let mut report = measure::<R, W>(config)?;
    let tears: &[Tear] = if config.edge_tears {
        &[Tear::Random, Tear::Scatter, Tear::Nothing, Tear::Complete]
    } else {
        &[Tear::Random]
    };
    for n in 0..report.cut_points {
        for &tear in tears {
            let seed = config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut run = Run::new::<R, W>(config, seed)?;
            let _ = run.device.flash.with(|f| {
                f.set_tear(tear);
                f.cut_power_after(n);
            });
            let outcome = run.execute::<R, W>();
            report.cuts += run.cuts;
            if let Err((kind, message)) = outcome {
                match kind {
                    Kind::Lost => report.lost += 1,
                    Kind::Mixed => report.mixed += 1,
                    Kind::Unfinished => report.unfinished += 1,
                }
                report
                    .first_problem
                    .get_or_insert_with(|| format!("cut at operation {n} ({tear:?}): {message}"));
            }
        }
    }
    Ok(report)
}

/// Runs the scenario once uncut: its cut points and what one update writes.
///
/// # Errors
/// A message if the geometry is unusable or the scenario fails.
pub fn trust_measure(config: &TrustSimConfig) -> Result<TrustReport, String> {
    match config.read_size {
        1 => measure::<1, 4>(config),
        4 => measure::<4, 8>(config),
        other => Err(format!("read size {other}: 1 or 4")),
    }
}

fn measure<const R: usize, const W: usize>(config: &TrustSimConfig) -> Result<TrustReport, String> {
    let mut run = Run::new::<R, W>(config, config.seed)?;
    let (ops, bytes) = run
        .execute::<R, W>()
        .map_err(|(_, m)| format!("the scenario fails even without power cuts: {m}"))?;
    Ok(TrustReport {
        cut_points: ops,
        writes_per_update: bytes,
        read_size: config.read_size,
        ..TrustReport::default()
    })
}

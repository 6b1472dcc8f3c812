//! The power-cut proof (feature `std`): drive an update, a confirm and a failed update that is
//! reverted on simulated flash, cutting the power at every flash operation in turn.
//!
//! [`power_cut_proof`] first runs the scenario without a cut and counts its program and erase
//! operations, `T`. Then, for every `n` in `0..T`, it starts again from the factory state and
//! tears operation `n`: a random partial program or erase shaped by the seed, and (with
//! [`SimConfig::edge_tears`]) once more with nothing applied and once with everything applied
//! but the power gone before completion ([`suitcase_flash_sim::Tear`]). After each cut it
//! resets the device: the bootloader runs, possibly cut again ([`SimConfig::repeat_cuts`]),
//! possibly several times, and then the simulated application carries on from whatever the
//! device booted, exactly as a field device would: it re-stages an update that did not stick,
//! confirms an image on trial that it wants, and never confirms the bad one. Every boot is
//! checked:
//!
//! * the bootloader decided to boot (a recovery decision or an error counts as **bricked**);
//! * the bytes in the booted slots are one complete version, the same for every image,
//!   byte-exact (anything else counts as **mixed**);
//! * the measurement matches that version, the state agrees with the decision, the
//!   anti-rollback counters never fall, no image older than a confirmed one boots, and the
//!   bad image never boots as confirmed (anything else counts as **inconsistent**);
//! * and the run ends with the good update confirmed and the bad one reverted, within a
//!   bounded number of boots (otherwise **bricked**: the update could not be finished).
//!
//! The scenario: the factory image v1 is in slot A. The application stages v2, which boots
//! on trial and is confirmed. It then stages v3, which boots on trial and is never confirmed,
//! so the bootloader reverts to v2 after `max_trial_boots` boots.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "host-only simulation"
)]

use std::fmt;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use embedded_storage::nor_flash::ReadNorFlash;
use sha2::{Digest, Sha256};
use suitcase_flash_sim::{Partition, SectorMap, SharedFlash, SimFlash, Stats, Tear};

use crate::{
    BootDecision, BootError, BootLoader, BootStatus, BootTarget, Config, ConfigError, Failure,
    ImageDigest, ImageIndex, ImageSlots, ImageState, ImageVerifier, Measurement, Mode, Phase,
    SecurityVersion, Slot, UpdateError, Updater, VerifyError,
};

/// The simulated part's write size.
pub const SIM_WRITE_SIZE: usize = 4;
/// The simulated part's smallest erase unit: sector sizes must be multiples of it.
pub const SIM_ERASE_SIZE: usize = 64;
/// Bytes of the simulated image header.
pub const SIM_HEADER_LEN: u32 = 64;

const SIM_MAGIC: [u8; 4] = *b"SIMG";
/// Boots a run may take before the update counts as impossible to finish, beyond four per
/// allowed trial boot.
const BOOT_LIMIT: u32 = 60;

/// A partition of the simulated part.
pub type SimPartition = Partition<SIM_WRITE_SIZE, SIM_ERASE_SIZE>;

/// Which layout to prove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// [`Mode::AB`], one image.
    Ab,
    /// [`Mode::Swap`], one image.
    Swap,
    /// [`Mode::Swap`], two images updated together.
    Multi,
    /// [`Mode::SwapOffset`], one image.
    SwapOffset,
    /// [`Mode::SwapOffset`], two images updated together.
    MultiOffset,
}

impl Layout {
    /// Every layout.
    pub const ALL: [Self; 5] = [
        Self::Ab,
        Self::Swap,
        Self::Multi,
        Self::SwapOffset,
        Self::MultiOffset,
    ];

    /// The name used on the command line: `ab`, `swap`, `multi`, `swap-offset` or
    /// `multi-offset`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ab => "ab",
            Self::Swap => "swap",
            Self::Multi => "multi",
            Self::SwapOffset => "swap-offset",
            Self::MultiOffset => "multi-offset",
        }
    }

    /// The bootloader mode.
    pub fn mode(self) -> Mode {
        match self {
            Self::Ab => Mode::AB,
            Self::Swap | Self::Multi => Mode::Swap,
            Self::SwapOffset | Self::MultiOffset => Mode::SwapOffset,
        }
    }

    /// How many images one update carries.
    pub fn images(self) -> usize {
        match self {
            Self::Ab | Self::Swap | Self::SwapOffset => 1,
            Self::Multi | Self::MultiOffset => 2,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Layout {
    type Err = SimulateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| SimulateError::UnknownLayout(s.to_string()))
    }
}

/// The geometry and knobs of a proof run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// The layout.
    pub layout: Layout,
    /// Sector size in bytes (a multiple of [`SIM_ERASE_SIZE`]).
    pub sector_size: u32,
    /// Slot size in bytes (a multiple of the sector size): the largest image. In the swap
    /// layouts the slot holding the spare sector gets one sector more (the primary in swap
    /// and multi, the secondary in swap-offset and multi-offset).
    pub slot_size: u32,
    /// Image size in bytes, header included (at least [`SIM_HEADER_LEN`] + 1, at most the
    /// slot size).
    pub image_size: u32,
    /// Trial boots before an unconfirmed image is reverted.
    pub max_trial_boots: u8,
    /// Bytes the simulated application writes per call while staging (a multiple of
    /// [`SIM_WRITE_SIZE`]).
    pub write_chunk: u32,
    /// Further power cuts per run after the first, each at a pseudo-random distance into the
    /// recovery that follows the previous one.
    pub repeat_cuts: u32,
    /// Besides the seeded random tear, also run every cut point with the two edge cases:
    /// the operation changed nothing ([`Tear::Nothing`]), and it completed but the power went
    /// before it reported so ([`Tear::Complete`]). Triples the runs.
    pub edge_tears: bool,
    /// Seed for the shape of torn operations and the distance of repeated cuts.
    pub seed: u64,
}

impl SimConfig {
    /// Small geometry: 256-byte sectors, 4-sector slots, a 3-sector image. Runs in well under
    /// a second in a debug build.
    pub fn small(layout: Layout) -> Self {
        Self {
            layout,
            sector_size: 256,
            slot_size: 1024,
            image_size: 700,
            max_trial_boots: 2,
            write_chunk: 128,
            repeat_cuts: 1,
            edge_tears: true,
            seed: 1,
        }
    }
}

impl Default for SimConfig {
    /// 4 KiB sectors, 32 KiB slots, a 20 000-byte image, swap layout.
    fn default() -> Self {
        Self {
            layout: Layout::Swap,
            sector_size: 4096,
            slot_size: 32 * 1024,
            image_size: 20_000,
            max_trial_boots: 2,
            write_chunk: 256,
            repeat_cuts: 1,
            edge_tears: true,
            seed: 1,
        }
    }
}

/// What the proof found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The layout.
    pub layout: Layout,
    /// Flash program and erase operations in the uncut scenario; each one was torn in turn.
    pub cut_points: u64,
    /// Power cuts made in all runs, repeated cuts included.
    pub cuts: u64,
    /// Runs that ended in recovery, an error, or without finishing the update.
    pub bricked: u64,
    /// Runs that booted anything but one complete version in every image.
    pub mixed: u64,
    /// Runs whose state contradicted what booted (rollback, lost confirm, wrong phase).
    pub inconsistent: u64,
    /// Flash bytes programmed by one update, from the first staging write to the boot that
    /// finds it confirmed (staging, state records, marks, swap copies).
    pub writes_per_update: u64,
    /// Sectors erased by the same update.
    pub erases_per_update: u64,
    /// Flash bytes programmed by the failed update and its revert.
    pub writes_per_failed_update: u64,
    /// Image bytes in one update (all images).
    pub image_bytes: u64,
    /// The first problem found, for a human.
    pub first_problem: Option<String>,
}

impl Report {
    /// Whether no run bricked, mixed or contradicted itself.
    pub fn passed(&self) -> bool {
        self.bricked == 0 && self.mixed == 0 && self.inconsistent == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "layout:            {}", self.layout)?;
        writeln!(f, "cut points:        {}", self.cut_points)?;
        writeln!(f, "power cuts:        {}", self.cuts)?;
        writeln!(f, "bricked:           {}", self.bricked)?;
        writeln!(f, "mixed:             {}", self.mixed)?;
        writeln!(f, "inconsistent:      {}", self.inconsistent)?;
        writeln!(f, "image bytes:       {}", self.image_bytes)?;
        writeln!(f, "writes per update: {}", self.writes_per_update)?;
        writeln!(f, "erases per update: {} sectors", self.erases_per_update)?;
        write!(
            f,
            "writes per failed update + revert: {}",
            self.writes_per_failed_update
        )?;
        if let Some(problem) = &self.first_problem {
            write!(f, "\nfirst problem:     {problem}")?;
        }
        Ok(())
    }
}

/// Why the proof could not run at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimulateError {
    /// Not one of the [`Layout::ALL`] names.
    UnknownLayout(String),
    /// The geometry does not make sense (the message says why).
    Geometry(String),
    /// The bootloader refused the geometry.
    Config(ConfigError),
    /// The scenario failed without any power cut: a bug, not a power-safety finding.
    UncutRunFailed(String),
}

impl fmt::Display for SimulateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownLayout(name) => {
                write!(
                    f,
                    "unknown layout {name:?} (expected ab, swap, multi, swap-offset or multi-offset)"
                )
            }
            Self::Geometry(why) => write!(f, "bad geometry: {why}"),
            Self::Config(e) => write!(f, "bootloader refused the geometry: {e}"),
            Self::UncutRunFailed(why) => {
                write!(f, "the scenario fails even without power cuts: {why}")
            }
        }
    }
}

impl std::error::Error for SimulateError {}

impl From<ConfigError> for SimulateError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// Run the proof. See the [module documentation](self).
///
/// # Errors
///
/// [`SimulateError`] if the configuration is unusable or the scenario fails without a cut.
/// Power-safety findings are not errors: they are counted in the [`Report`].
pub fn power_cut_proof(config: &SimConfig) -> Result<Report, SimulateError> {
    if config.layout.images() == 2 {
        prove::<2>(config)
    } else {
        prove::<1>(config)
    }
}

fn prove<const N: usize>(config: &SimConfig) -> Result<Report, SimulateError> {
    let (versions, mut report) = measured::<N>(config)?;
    let tears: &[Tear] = if config.edge_tears {
        &[Tear::Random, Tear::Nothing, Tear::Complete]
    } else {
        &[Tear::Random]
    };
    for n in 0..report.cut_points {
        for &tear in tears {
            let seed = config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut run = Run::new(config, &versions, seed, Some(n))?;
            let _ = run.device.flash().with(|f| f.set_tear(tear));
            let outcome = run.execute();
            report.cuts = report.cuts.saturating_add(run.cuts);
            if let Err(problem) = outcome {
                match problem.kind {
                    ProblemKind::Bricked => report.bricked += 1,
                    ProblemKind::Mixed => report.mixed += 1,
                    ProblemKind::Inconsistent => report.inconsistent += 1,
                }
                report.first_problem.get_or_insert_with(|| {
                    format!("cut at operation {n} ({tear:?} tear): {}", problem.message)
                });
            }
        }
    }
    Ok(report)
}

/// Run the scenario once without cutting the power: what an update costs, and how many cut
/// points the proof will have. The returned report has no cuts and no findings.
///
/// # Errors
///
/// [`SimulateError`] if the configuration is unusable or the scenario fails.
pub fn measure(config: &SimConfig) -> Result<Report, SimulateError> {
    if config.layout.images() == 2 {
        measured::<2>(config).map(|(_, r)| r)
    } else {
        measured::<1>(config).map(|(_, r)| r)
    }
}

fn measured<const N: usize>(config: &SimConfig) -> Result<(Versions<N>, Report), SimulateError> {
    check(config)?;
    let versions = Versions::<N>::new(config.image_size);
    let golden = Run::new(config, &versions, config.seed, None)?.execute();
    let golden = golden.map_err(|p| SimulateError::UncutRunFailed(p.message))?;
    let report = Report {
        layout: config.layout,
        cut_points: golden.mutations,
        cuts: 0,
        bricked: 0,
        mixed: 0,
        inconsistent: 0,
        writes_per_update: golden.update.bytes_written,
        erases_per_update: golden.update.sectors_erased,
        writes_per_failed_update: golden.failed_update.bytes_written,
        image_bytes: u64::from(config.image_size).saturating_mul(N as u64),
        first_problem: None,
    };
    Ok((versions, report))
}

fn check(config: &SimConfig) -> Result<(), SimulateError> {
    let bad = |why: &str| Err(SimulateError::Geometry(why.to_string()));
    let erase = u32::try_from(SIM_ERASE_SIZE).unwrap_or(u32::MAX);
    let write = u32::try_from(SIM_WRITE_SIZE).unwrap_or(u32::MAX);
    if config.sector_size == 0 || !config.sector_size.is_multiple_of(erase) {
        return bad("sector size must be a non-zero multiple of 64");
    }
    if config.slot_size == 0 || !config.slot_size.is_multiple_of(config.sector_size) {
        return bad("slot size must be a non-zero multiple of the sector size");
    }
    if config.image_size <= SIM_HEADER_LEN || config.image_size > config.slot_size {
        return bad("image size must exceed the 64-byte header and fit the slot");
    }
    if config.write_chunk == 0 || !config.write_chunk.is_multiple_of(write) {
        return bad("write chunk must be a non-zero multiple of 4");
    }
    if config.max_trial_boots == 0 {
        return bad("max trial boots must be at least 1");
    }
    Ok(())
}

/// A simulated image: a 64-byte header and a pseudo-random body.
///
/// | bytes | field |
/// |---|---|
/// | 0..4 | `"SIMG"` |
/// | 4..8 | total size, header included (`u32` LE) |
/// | 8..16 | security version (`u64` LE) |
/// | 16 | image index |
/// | 17..32 | zero |
/// | 32..64 | SHA-256 of bytes 0..32 followed by the body |
///
/// Sizes below [`SIM_HEADER_LEN`] + 1 are raised to it: the body is never empty.
pub fn sim_image(image: ImageIndex, version: u64, size: u32) -> Vec<u8> {
    let size = size.max(SIM_HEADER_LEN + 1);
    let len = usize::try_from(size).unwrap_or(65);
    let mut bytes = vec![0u8; len];
    let mut state = version
        .wrapping_mul(0x2545_F491_4F6C_DD1D)
        .wrapping_add(u64::from(image.0).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        | 1;
    for b in bytes.iter_mut().skip(64) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state.to_le_bytes()[3];
    }
    let mut header = [0u8; 32];
    let fields: [(usize, &[u8]); 4] = [
        (0, &SIM_MAGIC),
        (4, &size.to_le_bytes()),
        (8, &version.to_le_bytes()),
        (16, &[image.0]),
    ];
    for (at, value) in fields {
        if let Some(dst) = header.get_mut(at..at + value.len()) {
            dst.copy_from_slice(value);
        }
    }
    if let Some(h) = bytes.get_mut(..32) {
        h.copy_from_slice(&header);
    }
    let mut hasher = Sha256::new();
    hasher.update(bytes.get(..32).unwrap_or_default());
    hasher.update(bytes.get(64..).unwrap_or_default());
    let digest = hasher.finalize();
    if let Some(d) = bytes.get_mut(32..64) {
        d.copy_from_slice(digest.as_slice());
    }
    bytes
}

/// Verifies [`sim_image`]s: the header, the image index and the SHA-256 digest. It stands in
/// for the SUIT processor; it authenticates nothing (anyone can compute the digest), which is
/// all a power-cut proof needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimVerifier;

impl ImageVerifier for SimVerifier {
    fn verify<F: ReadNorFlash>(
        &mut self,
        image: ImageIndex,
        slot: &mut F,
    ) -> Result<Measurement, VerifyError> {
        let mut header = [0u8; 64];
        slot.read(0, &mut header)?;
        if header.iter().all(|&b| b == 0xFF) {
            return Err(VerifyError::Empty);
        }
        let field = |range: core::ops::Range<usize>| header.get(range).unwrap_or_default();
        if field(0..4) != SIM_MAGIC || field(16..17) != [image.0] {
            return Err(VerifyError::Rejected);
        }
        let size = u32::from_le_bytes(field(4..8).try_into().map_err(|_| VerifyError::Rejected)?);
        let version =
            u64::from_le_bytes(field(8..16).try_into().map_err(|_| VerifyError::Rejected)?);
        let capacity = u32::try_from(slot.capacity()).unwrap_or(u32::MAX);
        if size <= SIM_HEADER_LEN || size > capacity {
            return Err(VerifyError::Rejected);
        }
        let mut hasher = Sha256::new();
        hasher.update(field(0..32));
        let mut buf = [0u8; 256];
        let mut at = SIM_HEADER_LEN;
        while at < size {
            let n = usize::try_from(size - at).unwrap_or(256).min(256);
            let window = buf.get_mut(..n).ok_or(VerifyError::Rejected)?;
            slot.read(at, window)?;
            hasher.update(&*window);
            at = at.saturating_add(u32::try_from(n).unwrap_or(256));
        }
        let digest = hasher.finalize();
        if digest.as_slice() != field(32..64) {
            return Err(VerifyError::Rejected);
        }
        Ok(Measurement {
            digest: ImageDigest::new(digest.as_slice()).ok_or(VerifyError::Rejected)?,
            security_version: SecurityVersion(version),
            size,
        })
    }
}

/// A simulated device: one flash part split into the state partition and the image slots.
///
/// Layout: `[state: two halves][image 0: A, B][image 1: A, B]`, each slot A one sector larger
/// than B in swap mode, each slot B one sector larger than A in swap-offset mode.
#[derive(Debug)]
pub struct SimDevice<const N: usize> {
    flash: SharedFlash<SIM_WRITE_SIZE, SIM_ERASE_SIZE>,
    config: Config,
    state: (u32, u32),
    slots: [[(u32, u32); 2]; N],
}

impl<const N: usize> SimDevice<N> {
    /// An erased device. `slot_size` is the image capacity; in swap mode slot A, in
    /// swap-offset mode slot B, is one sector larger. `seed` shapes torn operations.
    ///
    /// # Errors
    ///
    /// [`SimulateError`] if the geometry is unusable.
    pub fn new(config: Config, slot_size: u32, seed: u64) -> Result<Self, SimulateError> {
        let sector = config.sector_size;
        let geometry = |e: &dyn fmt::Display| SimulateError::Geometry(e.to_string());
        if sector == 0 || !slot_size.is_multiple_of(sector) {
            return Err(SimulateError::Geometry(
                "slot size must be a multiple of the sector size".to_string(),
            ));
        }
        let slot_sectors = slot_size / sector;
        let (spare_a, spare_b) = match config.mode {
            Mode::AB => (0, 0),
            Mode::Swap => (1, 0),
            Mode::SwapOffset => (0, 1),
        };
        let images = u32::try_from(N).unwrap_or(u32::MAX);
        let steps = match config.mode {
            Mode::AB => 0,
            Mode::Swap => 3,
            Mode::SwapOffset => 2,
        };
        let marks = (slot_sectors * steps * images).max(u32::from(config.max_trial_boots));
        let word = u32::try_from(SIM_WRITE_SIZE).unwrap_or(4);
        let half_bytes = 96u32.next_multiple_of(word) + marks * word;
        let half_sectors = half_bytes.div_ceil(sector);
        let mut at = 2 * half_sectors * sector;
        let state = (0, at);
        let mut slots = [[(0, 0); 2]; N];
        for pair in &mut slots {
            let a = (slot_sectors + spare_a) * sector;
            let b = (slot_sectors + spare_b) * sector;
            *pair = [(at, a), (at + a, b)];
            at += a + b;
        }
        let map = SectorMap::uniform(sector, at / sector).map_err(|e| geometry(&e))?;
        let flash = SimFlash::new(map, seed).map_err(|e| geometry(&e))?;
        Ok(Self {
            flash: SharedFlash::new(flash),
            config,
            state,
            slots,
        })
    }

    /// The part, to arm power cuts, flip bits and read counters.
    pub fn flash(&self) -> &SharedFlash<SIM_WRITE_SIZE, SIM_ERASE_SIZE> {
        &self.flash
    }

    /// The absolute address and size of `slot` of `image`.
    pub fn slot_range(&self, image: usize, slot: Slot) -> Option<(u32, u32)> {
        let [a, b] = *self.slots.get(image)?;
        Some(match slot {
            Slot::A => a,
            Slot::B => b,
        })
    }

    fn partitions(&self) -> Result<([ImageSlots<SimPartition>; N], SimPartition), SimulateError> {
        let part = |(offset, size): (u32, u32)| {
            self.flash
                .partition(offset, size)
                .map_err(|e| SimulateError::Geometry(e.to_string()))
        };
        let mut parts = Vec::with_capacity(N);
        for [a, b] in self.slots {
            parts.push(ImageSlots::new(part(a)?, part(b)?));
        }
        let slots = parts
            .try_into()
            .map_err(|_| SimulateError::Geometry("image count".to_string()))?;
        Ok((slots, part(self.state)?))
    }

    /// A bootloader over this device, verifying with [`SimVerifier`].
    ///
    /// # Errors
    ///
    /// [`SimulateError`] if the bootloader refuses the geometry.
    pub fn bootloader(
        &self,
    ) -> Result<BootLoader<SimPartition, SimPartition, SimVerifier, N>, SimulateError> {
        let (slots, state) = self.partitions()?;
        Ok(BootLoader::new(self.config, slots, state, SimVerifier)?)
    }

    /// An updater over this device.
    ///
    /// # Errors
    ///
    /// [`SimulateError`] if the updater refuses the geometry.
    pub fn updater(&self) -> Result<Updater<SimPartition, SimPartition, N>, SimulateError> {
        let (slots, state) = self.partitions()?;
        Ok(Updater::new(self.config, slots, state)?)
    }

    /// Reset: restore power and run the bootloader.
    ///
    /// # Errors
    ///
    /// [`SimulateError`] for an unusable geometry; the boot result itself is the inner value.
    pub fn boot(&self) -> Result<Result<BootDecision<N>, BootError>, SimulateError> {
        let _ = self.flash.with(|f| f.power_on());
        Ok(self.bootloader()?.boot())
    }

    /// Place `images` in slot A as a factory programmer would.
    ///
    /// # Errors
    ///
    /// [`SimulateError`] if an image does not fit.
    pub fn provision(&self, images: &[Vec<u8>; N]) -> Result<(), SimulateError> {
        for (pair, image) in self.slots.iter().zip(images) {
            let [(offset, _), _] = *pair;
            self.flash
                .with(|f| f.load(offset, image))
                .and_then(|r| r)
                .map_err(|e| SimulateError::Geometry(e.to_string()))?;
        }
        Ok(())
    }

    /// Stage `images` as an update and mark it pending, writing `chunk` bytes at a time.
    ///
    /// # Errors
    ///
    /// What the updater says.
    pub fn stage(&self, images: &[Vec<u8>; N], chunk: usize) -> Result<(), UpdateError> {
        let mut updater = self.updater().map_err(|_| UpdateError::StateMismatch)?;
        let mut sizes = [0u32; N];
        for (s, image) in sizes.iter_mut().zip(images) {
            *s = u32::try_from(image.len()).unwrap_or(u32::MAX);
        }
        let mut staging = updater.begin(sizes)?;
        for (i, image) in images.iter().enumerate() {
            let index = ImageIndex(u8::try_from(i).unwrap_or(u8::MAX));
            let mut offset = 0u32;
            for piece in image.chunks(chunk.max(SIM_WRITE_SIZE)) {
                let mut padded = piece.to_vec();
                padded.resize(piece.len().next_multiple_of(SIM_WRITE_SIZE), 0xFF);
                staging.write(index, offset, &padded)?;
                offset = offset.saturating_add(u32::try_from(padded.len()).unwrap_or(u32::MAX));
            }
        }
        staging.finish()
    }

    /// Confirm the running image.
    ///
    /// # Errors
    ///
    /// What the updater says.
    pub fn confirm(&self) -> Result<(), UpdateError> {
        self.updater()
            .map_err(|_| UpdateError::StateMismatch)?
            .confirm()
    }

    /// The boot status as the application sees it.
    ///
    /// # Errors
    ///
    /// What the updater says.
    pub fn status(&self) -> Result<BootStatus<N>, UpdateError> {
        self.updater()
            .map_err(|_| UpdateError::StateMismatch)?
            .status()
    }

    /// The first `len` bytes of `slot` of `image`, read past power and counters.
    pub fn peek_slot(&self, image: usize, slot: Slot, len: usize) -> Option<Vec<u8>> {
        let (offset, _) = self.slot_range(image, slot)?;
        self.flash
            .with(|f| f.peek(offset, len).map(<[u8]>::to_vec))
            .ok()
            .flatten()
    }

    fn is_powered(&self) -> bool {
        self.flash.with(|f| f.is_powered()).unwrap_or(false)
    }

    fn stats(&self) -> Stats {
        self.flash.with(|f| f.stats()).unwrap_or_default()
    }
}

/// The three versions of every image in the scenario.
struct Versions<const N: usize> {
    images: [[Vec<u8>; N]; 3],
    digests: [[Vec<u8>; N]; 3],
}

impl<const N: usize> Versions<N> {
    fn new(size: u32) -> Self {
        let images: [[Vec<u8>; N]; 3] = core::array::from_fn(|v| {
            core::array::from_fn(|i| {
                let index = ImageIndex(u8::try_from(i).unwrap_or(u8::MAX));
                sim_image(index, v as u64 + 1, size)
            })
        });
        let digests = core::array::from_fn(|v| {
            core::array::from_fn(|i| {
                images
                    .get(v)
                    .and_then(|set| set.get(i))
                    .and_then(|img| img.get(32..64))
                    .unwrap_or_default()
                    .to_vec()
            })
        });
        Self { images, digests }
    }

    fn set(&self, version: usize) -> &[Vec<u8>; N] {
        let [first, ..] = &self.images;
        self.images.get(version).unwrap_or(first)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProblemKind {
    Bricked,
    Mixed,
    Inconsistent,
}

struct Problem {
    kind: ProblemKind,
    message: String,
}

fn problem(kind: ProblemKind, message: String) -> Problem {
    Problem { kind, message }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Goal {
    InstallGood,
    RejectBad,
}

struct Finished {
    mutations: u64,
    update: Stats,
    failed_update: Stats,
}

/// One pass of the scenario, optionally with power cuts.
struct Run<'v, const N: usize> {
    device: SimDevice<N>,
    versions: &'v Versions<N>,
    config: SimConfig,
    cut_at: Option<u64>,
    rng: u64,
    cuts: u64,
}

const V1: usize = 0;
const V2: usize = 1;
const V3: usize = 2;

impl<'v, const N: usize> Run<'v, N> {
    fn new(
        config: &SimConfig,
        versions: &'v Versions<N>,
        seed: u64,
        cut_at: Option<u64>,
    ) -> Result<Self, SimulateError> {
        let boot_config = Config {
            mode: config.layout.mode(),
            sector_size: config.sector_size,
            max_trial_boots: config.max_trial_boots,
        };
        let device = SimDevice::new(boot_config, config.slot_size, seed)?;
        device.provision(versions.set(V1))?;
        Ok(Self {
            device,
            versions,
            config: *config,
            cut_at,
            rng: seed | 1,
            cuts: 0,
        })
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Restore power after a cut, arming the next cut if more are due.
    fn reset(&mut self) {
        let lost = !self.device.is_powered();
        if lost {
            self.cuts += 1;
        }
        let repeat = lost && self.cuts <= u64::from(self.config.repeat_cuts);
        // Land the next cut somewhere in the recovery the reset starts (a swap has at most
        // a few hundred operations at these geometries).
        let distance = self.next_random() % 256;
        let _ = self.device.flash().with(|f| {
            f.power_on();
            if repeat {
                f.cut_power_after(distance);
            }
        });
    }

    fn execute(&mut self) -> Result<Finished, Problem> {
        use ProblemKind::{Bricked, Inconsistent};
        if let Some(n) = self.cut_at {
            let _ = self.device.flash().with(|f| f.cut_power_after(n));
        }
        let chunk = usize::try_from(self.config.write_chunk).unwrap_or(256);
        let mut goal = Goal::InstallGood;
        let mut good_confirmed = false;
        let mut bad_staged = false;
        let mut counters = [SecurityVersion(0); N];
        let mut snapshots: [Option<Stats>; 4] = [None; 4];
        let limit = BOOT_LIMIT + 4 * u32::from(self.config.max_trial_boots);
        for boots in 0..limit {
            if boots > 0 {
                self.reset();
            }
            let decision = self.device.bootloader().map(|mut b| b.boot());
            if !self.device.is_powered() {
                continue;
            }
            let target = match decision {
                Ok(Ok(BootDecision::Boot(target))) => target,
                Ok(Ok(BootDecision::Recovery { reason })) => {
                    return Err(problem(Bricked, format!("recovery: {reason}")));
                }
                Ok(Err(e)) => return Err(problem(Bricked, format!("boot failed: {e}"))),
                Err(e) => return Err(problem(Bricked, e.to_string())),
            };
            let version = self.identify(&target)?;
            let status = self
                .device
                .status()
                .map_err(|e| problem(Inconsistent, format!("status unreadable: {e}")))?;
            self.check_state(&target, &status, version, &mut counters)?;
            let trial = matches!(target.state, ImageState::Trial { .. });
            match (goal, version, trial) {
                (Goal::InstallGood, V1, false) => {
                    if good_confirmed {
                        return Err(problem(
                            Inconsistent,
                            "v1 booted after v2 was confirmed".into(),
                        ));
                    }
                    snapshots[0].get_or_insert(self.device.stats());
                    let _ = self.device.stage(self.versions.set(V2), chunk);
                }
                (Goal::InstallGood, V2, true) => {
                    if self.device.confirm().is_ok() {
                        good_confirmed = true;
                    }
                }
                (Goal::InstallGood | Goal::RejectBad, V2, false) => {
                    if goal == Goal::InstallGood {
                        goal = Goal::RejectBad;
                        good_confirmed = true;
                        snapshots[1] = Some(self.device.stats());
                    }
                    if bad_staged && status.last_failure == Some(Failure::NotConfirmed) {
                        snapshots[3] = Some(self.device.stats());
                        let _ = self.device.flash().with(|f| f.cancel_power_cut());
                        return Ok(self.finish(&snapshots));
                    }
                    snapshots[2].get_or_insert(self.device.stats());
                    if self.device.stage(self.versions.set(V3), chunk).is_ok() {
                        bad_staged = true;
                    }
                }
                (Goal::RejectBad, V3, true) => {
                    // The bad image never confirms: it hangs until the watchdog resets it.
                    bad_staged = true;
                }
                (goal, version, trial) => {
                    return Err(problem(
                        Inconsistent,
                        format!("booted v{} (trial: {trial}) while {goal:?}", version + 1),
                    ));
                }
            }
        }
        Err(problem(
            Bricked,
            format!("update not finished within {limit} boots"),
        ))
    }

    /// `snapshots`: counters before the good update, once it is confirmed, before the bad
    /// update, and once it is reverted.
    fn finish(&self, snapshots: &[Option<Stats>; 4]) -> Finished {
        let delta = |from: Option<Stats>, to: Option<Stats>| match (from, to) {
            (Some(a), Some(b)) => Stats {
                bytes_written: b.bytes_written.saturating_sub(a.bytes_written),
                sectors_erased: b.sectors_erased.saturating_sub(a.sectors_erased),
                ..Stats::default()
            },
            _ => Stats::default(),
        };
        Finished {
            mutations: self.device.stats().mutations(),
            update: delta(snapshots[0], snapshots[1]),
            failed_update: delta(snapshots[2], snapshots[3]),
        }
    }

    /// Which version every booted image holds, byte-exact.
    fn identify(&self, target: &BootTarget<N>) -> Result<usize, Problem> {
        let len = usize::try_from(self.config.image_size).unwrap_or(0);
        let mut found = None;
        for i in 0..N {
            let bytes = self
                .device
                .peek_slot(i, target.slot, len)
                .unwrap_or_default();
            let version = (0..3).find(|&v| {
                self.versions
                    .images
                    .get(v)
                    .and_then(|set| set.get(i))
                    .is_some_and(|img| *img == bytes)
            });
            match (found, version) {
                (_, None) => {
                    return Err(problem(
                        ProblemKind::Mixed,
                        format!("image {i} in slot {} is no complete version", target.slot),
                    ));
                }
                (Some(f), Some(v)) if f != v => {
                    return Err(problem(
                        ProblemKind::Mixed,
                        format!("image 0 is v{} but image {i} is v{}", f + 1, v + 1),
                    ));
                }
                (_, Some(v)) => found = Some(v),
            }
        }
        found.ok_or_else(|| problem(ProblemKind::Mixed, "no image".into()))
    }

    fn check_state(
        &self,
        target: &BootTarget<N>,
        status: &BootStatus<N>,
        version: usize,
        counters: &mut [SecurityVersion; N],
    ) -> Result<(), Problem> {
        let bad = |what: String| Err(problem(ProblemKind::Inconsistent, what));
        for (i, m) in target.measurements.iter().enumerate() {
            let expected = self
                .versions
                .digests
                .get(version)
                .and_then(|set| set.get(i))
                .map(Vec::as_slice)
                .unwrap_or_default();
            if m.digest.as_bytes() != expected {
                return bad(format!("measurement of image {i} is not v{}", version + 1));
            }
        }
        let trial = matches!(target.state, ImageState::Trial { .. });
        let phase_ok = if trial {
            status.phase == Phase::Trial
        } else {
            status.phase == Phase::Confirmed
        };
        if !phase_ok || status.running != target.slot {
            return bad(format!(
                "booted slot {} ({:?}) but the state says {} running {}",
                target.slot, target.state, status.phase, status.running
            ));
        }
        if let ImageState::Trial { boot, max } = target.state
            && (boot == 0 || boot > u32::from(max))
        {
            return bad(format!("trial boot {boot} of {max}"));
        }
        for (i, (old, new)) in counters
            .iter_mut()
            .zip(&status.min_security_versions)
            .enumerate()
        {
            if new < old {
                return bad(format!("anti-rollback counter of image {i} fell"));
            }
            *old = *new;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_images_verify_and_a_flipped_bit_does_not() {
        let mut image = sim_image(ImageIndex(1), 7, 300);
        let mut flash = SimFlash::<4, 64>::uniform(64, 8, 0).unwrap();
        flash.load(0, &image).unwrap();
        let m = SimVerifier.verify(ImageIndex(1), &mut flash).unwrap();
        assert_eq!(m.security_version, SecurityVersion(7));
        assert_eq!(m.size, 300);
        assert_eq!(m.digest.as_bytes(), image.get(32..64).unwrap());
        assert_eq!(
            SimVerifier.verify(ImageIndex(0), &mut flash),
            Err(VerifyError::Rejected)
        );
        image[200] ^= 4;
        flash.load(0, &image).unwrap();
        assert_eq!(
            SimVerifier.verify(ImageIndex(1), &mut flash),
            Err(VerifyError::Rejected)
        );
        let mut blank = SimFlash::<4, 64>::uniform(64, 8, 0).unwrap();
        assert_eq!(
            SimVerifier.verify(ImageIndex(0), &mut blank),
            Err(VerifyError::Empty)
        );
    }

    #[test]
    fn layouts_parse_by_name() {
        for layout in Layout::ALL {
            assert_eq!(layout.name().parse::<Layout>(), Ok(layout));
        }
        assert!("xip".parse::<Layout>().is_err());
    }

    #[test]
    fn uncut_scenario_finishes_in_every_layout() {
        for layout in Layout::ALL {
            let config = SimConfig {
                repeat_cuts: 0,
                ..SimConfig::small(layout)
            };
            let versions = Versions::<1>::new(config.image_size);
            if layout.images() == 2 {
                let versions = Versions::<2>::new(config.image_size);
                let run = Run::new(&config, &versions, 1, None).unwrap().execute();
                assert!(run.is_ok(), "{layout}: {}", run.err().unwrap().message);
            } else {
                let run = Run::new(&config, &versions, 1, None).unwrap().execute();
                assert!(run.is_ok(), "{layout}: {}", run.err().unwrap().message);
            }
        }
    }
}

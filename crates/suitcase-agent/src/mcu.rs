//! Simulated MCUs: `suitcase-boot` A/B slots on `suitcase-flash-sim` NOR flash, persisted to a
//! file, with the SUIT secure-boot verifier of `suitcase-device`.
//!
//! Flash layout (sector size S, K sectors per slot): `[state: 2 S][slot A: K S][slot B: K S]`.
//! The flash file is the raw flash contents, replaced atomically after every sequence of
//! operations, so a crash loses at most the operations since the last save, exactly like a
//! power cut between them (which `suitcase-boot` is proven to survive).
//!
//! The agent's own MCU (`kind = "mcu"`) verifies with the agent's trust anchors and identity;
//! a secondary MCU (`kind = "secondary"`) verifies its own manifest, carried inside its slot
//! image, with its own anchors and identity: the agent only delivers.

use std::io::Read;

use suitcase_boot::{
    BootDecision, BootLoader, BootStatus, Config as BootConfig, ImageIndex, ImageSlots,
    Measurement, Slot, Updater, VerifyError,
};
use suitcase_device::consumer::{BLOCK, BootSlots, IoError, Reset, Slots as _};
use suitcase_device::{DeviceIdentity, HEADER_SIZE, MAGIC, SuitVerifier};
use suitcase_flash_sim::{Partition, SharedFlash, SimFlash};
use suitcase_manifest::{ComponentId, TrustAnchor, TrustPolicy};

use crate::config::{ComponentConfig, Config, Identity, McuConfig};
use crate::error::{AgentError, local};
use crate::state::Durability;

type Flash = SharedFlash<4, 256>;
type Part = Partition<4, 256>;

/// The largest envelope a simulated MCU's verifier holds.
pub const VERIFIER_BUF: usize = 16 * 1024;

/// The image alignment in slot images the agent writes.
pub const IMAGE_ALIGN: u64 = 64;

/// Where the image starts in a slot image with an envelope of `envelope_len` bytes.
pub fn image_offset(envelope_len: u64) -> u64 {
    (u64::from(HEADER_SIZE) + envelope_len).next_multiple_of(IMAGE_ALIGN)
}

/// The slot header (format of `suitcase_device`'s slot images).
pub fn slot_header(envelope_len: u32, image_offset: u32, image_len: u32) -> [u8; 32] {
    let mut h = [0u8; 32];
    let fields: [(usize, &[u8]); 5] = [
        (0, &MAGIC),
        (4, &1u16.to_le_bytes()),
        (8, &envelope_len.to_le_bytes()),
        (12, &image_offset.to_le_bytes()),
        (16, &image_len.to_le_bytes()),
    ];
    for (at, bytes) in fields {
        if let Some(dst) = h.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    h
}

/// Who verifies a simulated MCU's images.
#[derive(Debug)]
pub struct VerifierSpec<'k> {
    /// Trust anchors.
    pub anchors: Vec<TrustAnchor<'k>>,
    /// Signer policy.
    pub policy: TrustPolicy<'k>,
    /// The identity its manifest must name.
    pub identity: Identity,
    /// The encoded component id of the image in its manifest.
    pub component: Vec<u8>,
}

/// A simulated MCU opened from its flash file.
#[derive(Debug)]
pub struct Mcu<'c> {
    cfg: &'c McuConfig,
    flash: Flash,
}

fn flash_err(what: &str) -> impl Fn(&dyn core::fmt::Display) -> AgentError + '_ {
    move |e| AgentError::Local(format!("{what}: {e}"))
}

impl<'c> Mcu<'c> {
    /// Opens the MCU, creating an erased flash file (with the factory image in slot A, if
    /// configured) on first use.
    ///
    /// # Errors
    /// [`AgentError::Local`] if the file does not match the configured geometry.
    pub fn open(cfg: &'c McuConfig, durability: &Durability) -> Result<Self, AgentError> {
        let sectors = 2 + 2 * cfg.slot_sectors;
        let sim = SimFlash::<4, 256>::uniform(cfg.sector_size, sectors, 1)
            .map_err(|e| AgentError::Config(format!("{}: {e}", cfg.flash.display())))?;
        let flash = Flash::new(sim);
        let capacity = u64::from(cfg.sector_size) * u64::from(sectors);
        let me = Self { cfg, flash };
        match std::fs::read(&cfg.flash) {
            Ok(bytes) => {
                if bytes.len() as u64 != capacity {
                    return Err(AgentError::Local(format!(
                        "{} holds {} bytes but sector_size × (2 + 2 × slot_sectors) = {capacity}: the geometry changed; restore the old settings or remove the file",
                        cfg.flash.display(),
                        bytes.len()
                    )));
                }
                me.flash
                    .with(|f| f.load(0, &bytes))
                    .map_err(|e| flash_err("flash")(&e))?
                    .map_err(|e| flash_err("flash")(&e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(factory) = &cfg.factory {
                    let image = std::fs::read(factory).map_err(local(format!(
                        "cannot read the factory image {}",
                        factory.display()
                    )))?;
                    if image.len() as u64 > cfg.slot_size() {
                        return Err(AgentError::Config(format!(
                            "the factory image {} is larger than a slot",
                            factory.display()
                        )));
                    }
                    let at = u32::try_from(mcu_slot_offset(me.cfg, crate::slot::Slot::A))
                        .unwrap_or(u32::MAX);
                    me.flash
                        .with(|f| f.load(at, &image))
                        .map_err(|e| flash_err("flash")(&e))?
                        .map_err(|e| flash_err("flash")(&e))?;
                }
                if let Some(dir) = cfg.flash.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(local(format!("cannot create {}", dir.display())))?;
                }
                me.save(durability)?;
            }
            Err(e) => {
                return Err(AgentError::Local(format!(
                    "cannot read {}: {e}",
                    cfg.flash.display()
                )));
            }
        }
        Ok(me)
    }

    /// Persists the flash (atomically).
    ///
    /// # Errors
    /// [`AgentError::Local`], or the injected crash.
    pub fn save(&self, durability: &Durability) -> Result<(), AgentError> {
        let bytes = self
            .flash
            .with(|f| f.contents().to_vec())
            .map_err(|e| flash_err("flash")(&e))?;
        crate::state::write_atomic(&self.cfg.flash, &bytes)?;
        durability.wrote()
    }

    /// Where the image the bootloader runs lies in the flash file: `(offset, length)`, from
    /// the running slot's header (`suitcase_device::SlotHeader`); `None` if that slot holds
    /// no valid slot image.
    ///
    /// # Errors
    /// [`AgentError::Local`] if the boot state cannot be read.
    pub fn running_image(&self) -> Result<Option<(u64, u64)>, AgentError> {
        let base = mcu_slot_offset(self.cfg, self.status()?.running.into());
        let at = usize::try_from(base).unwrap_or(usize::MAX);
        let header: Option<[u8; HEADER_SIZE as usize]> = self
            .flash
            .with(|f| {
                f.contents()
                    .get(at..at.saturating_add(HEADER_SIZE as usize))
                    .and_then(|b| b.try_into().ok())
            })
            .map_err(|e| flash_err("flash")(&e))?;
        Ok(header
            .and_then(|h| suitcase_device::SlotHeader::parse(&h).ok().flatten())
            .map(|hd| (base + u64::from(hd.image_offset), u64::from(hd.image_len))))
    }

    fn boot_config(&self) -> BootConfig {
        BootConfig::ab(self.cfg.sector_size).with_max_trial_boots(self.cfg.max_trial_boots)
    }

    fn parts(&self) -> Result<([ImageSlots<Part>; 1], Part), AgentError> {
        let s = self.cfg.sector_size;
        let size = u32::try_from(self.cfg.slot_size()).unwrap_or(u32::MAX);
        let e = |e: suitcase_flash_sim::GeometryError| flash_err("flash partitions")(&e);
        let a = self.flash.partition(2 * s, size).map_err(e)?;
        let b = self.flash.partition(2 * s + size, size).map_err(e)?;
        let state = self.flash.partition(0, 2 * s).map_err(e)?;
        Ok(([ImageSlots::new(a, b)], state))
    }

    fn slot_partition(&self, slot: Slot) -> Result<Part, AgentError> {
        let size = u32::try_from(self.cfg.slot_size()).unwrap_or(u32::MAX);
        let at = u32::try_from(mcu_slot_offset(self.cfg, slot.into())).unwrap_or(u32::MAX);
        self.flash
            .partition(at, size)
            .map_err(|e| flash_err("flash partition")(&e))
    }

    fn updater(&self) -> Result<Updater<Part, Part, 1>, AgentError> {
        let (slots, state) = self.parts()?;
        Updater::new(self.boot_config(), slots, state).map_err(|e| flash_err("bootloader")(&e))
    }

    /// The boot state.
    ///
    /// # Errors
    /// [`AgentError::Local`].
    pub fn status(&self) -> Result<BootStatus<1>, AgentError> {
        self.updater()?
            .status()
            .map_err(|e| flash_err("bootloader state")(&e))
    }

    /// The MCU's side of its bootloader: the firmware-consumer core's [`BootSlots`] over the
    /// flash partitions (`suitcase-boot`'s `Updater`, A/B), whose resets run the bootloader
    /// with the verifier of `spec` (none: a reset fails).
    ///
    /// # Errors
    /// [`AgentError::Local`] if the partitions do not fit the bootloader's configuration.
    pub(crate) fn slots<'s>(
        &self,
        spec: Option<&'s VerifierSpec<'s>>,
    ) -> Result<BootSlots<Part, Part, SimReset<'s>>, AgentError> {
        let ([pair], state) = self.parts()?;
        let reset = SimReset {
            spec,
            decision: None,
            problem: None,
        };
        BootSlots::new(self.boot_config(), pair, state, reset).map_err(|_| {
            AgentError::Local(
                "bootloader: the flash partitions do not fit its configuration".into(),
            )
        })
    }

    /// Stages `total` bytes from `src` into the slot that is not in use, block by block through
    /// the core's [`BootSlots`], and marks them pending. Returns the slot.
    ///
    /// # Errors
    /// What failed, for the report.
    pub fn stage(&self, total: u64, src: &mut dyn Read) -> Result<Slot, String> {
        let target = self.status().map_err(|e| e.to_string())?.confirmed.other();
        let mut slots = self.slots(None).map_err(|e| e.to_string())?;
        slots
            .begin(total)
            .map_err(|e| format!("the bootloader cannot stage {total} bytes ({e:?})"))?;
        let mut buf = [0u8; BLOCK];
        let mut offset = 0u64;
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = src
                    .read(buf.get_mut(filled..).unwrap_or_default())
                    .map_err(|e| format!("reading the image: {e}"))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            let padded = filled.next_multiple_of(4);
            if let Some(pad) = buf.get_mut(filled..padded) {
                pad.fill(0xFF);
            }
            slots
                .write(offset, buf.get(..padded).unwrap_or_default())
                .map_err(|e| format!("writing the slot at {offset} failed ({e:?})"))?;
            offset += padded as u64;
            if filled < buf.len() {
                break;
            }
        }
        if offset < total {
            return Err(format!("the image ended after {offset} of {total} bytes"));
        }
        slots
            .mark_pending()
            .map_err(|e| format!("marking the update pending failed ({e:?})"))?;
        Ok(target)
    }

    /// Verifies the image in `slot` with the MCU's own verifier (what its bootloader will do).
    ///
    /// # Errors
    /// What the verifier said.
    pub fn verify(&self, spec: &VerifierSpec<'_>, slot: Slot) -> Result<Measurement, String> {
        let mut part = self.slot_partition(slot).map_err(|e| e.to_string())?;
        let component = ComponentId::decode(&spec.component).map_err(|e| e.to_string())?;
        let components = [component];
        let mut v = SuitVerifier::<VERIFIER_BUF>::new(
            &spec.anchors,
            spec.policy,
            identity(&spec.identity),
            &components,
        );
        suitcase_boot::ImageVerifier::verify(&mut v, ImageIndex(0), &mut part)
            .map_err(|e: VerifyError| format!("the MCU's verifier refuses slot {slot}: {e}"))
    }

    /// A reset into the staged image (`BootSlots::activate`): the bootloader decides what
    /// runs.
    ///
    /// # Errors
    /// [`AgentError::Local`] for flash errors.
    pub fn activate(&self, spec: &VerifierSpec<'_>) -> Result<BootDecision<1>, AgentError> {
        let mut slots = self.slots(Some(spec))?;
        let ran = slots.activate();
        let reset = slots.reset();
        match (ran, reset.decision) {
            (Ok(_), Some(decision)) => Ok(decision),
            _ => Err(reset.failure()),
        }
    }

    /// Confirms the running image.
    ///
    /// # Errors
    /// [`AgentError::Local`].
    pub fn confirm(&self) -> Result<(), AgentError> {
        self.slots(None)?
            .confirm()
            .map_err(|e| AgentError::Local(format!("bootloader: cannot confirm ({e:?})")))
    }

    /// Gives an update up: a pending one is withdrawn; an image on trial is reset until the
    /// bootloader has reverted it (`BootSlots::revert`). What happened, if anything.
    ///
    /// # Errors
    /// [`AgentError::Local`] for flash errors.
    pub fn revert(&self, spec: &VerifierSpec<'_>) -> Result<Option<String>, AgentError> {
        let phase = self.status()?.phase;
        let mut slots = self.slots(Some(spec))?;
        match phase {
            suitcase_boot::Phase::Pending => {
                slots.cancel().map_err(|e| {
                    AgentError::Local(format!("bootloader: cannot withdraw ({e:?})"))
                })?;
                return Ok(Some("pending update withdrawn".into()));
            }
            suitcase_boot::Phase::Trial => {
                slots.revert().map_err(|_| slots.reset().failure())?;
            }
            _ => return Ok(None),
        }
        let s = self.status()?;
        Ok(Some(match s.last_failure {
            Some(f) => format!("bootloader reverted to slot {}: {f}", s.running),
            None => format!("running slot {}", s.running),
        }))
    }
}

/// A reset of a simulated MCU ([`suitcase_device::consumer::Reset`]): its bootloader runs with
/// the SUIT verifier of the spec and decides what runs; the decision is kept for the report.
#[derive(Debug)]
pub(crate) struct SimReset<'s> {
    spec: Option<&'s VerifierSpec<'s>>,
    decision: Option<BootDecision<1>>,
    problem: Option<String>,
}

impl SimReset<'_> {
    fn failure(&self) -> AgentError {
        AgentError::Local(
            self.problem
                .clone()
                .unwrap_or_else(|| "bootloader: the reset failed".into()),
        )
    }
}

impl Reset<Part, Part> for SimReset<'_> {
    fn reset(
        &mut self,
        config: BootConfig,
        slots: [ImageSlots<&mut Part>; 1],
        state: &mut Part,
    ) -> Result<(), IoError> {
        let mut fail = |what: String| {
            self.problem = Some(what);
            IoError::Failed
        };
        let spec = self
            .spec
            .ok_or_else(|| fail("no verifier for a reset".into()))?;
        let component =
            ComponentId::decode(&spec.component).map_err(|e| fail(format!("component id: {e}")))?;
        let components = [component];
        let v = SuitVerifier::<VERIFIER_BUF>::new(
            &spec.anchors,
            spec.policy,
            identity(&spec.identity),
            &components,
        );
        let mut boot = BootLoader::new(config, slots, state, v)
            .map_err(|e| fail(format!("bootloader: {e}")))?;
        let decision = boot.boot().map_err(|e| fail(format!("boot: {e}")))?;
        self.decision = Some(decision);
        Ok(())
    }
}

fn identity(i: &Identity) -> DeviceIdentity<'_> {
    DeviceIdentity {
        vendor: &i.vendor,
        class: &i.class,
        device: i.device.as_ref().map(<[u8; 16]>::as_slice),
    }
}

/// How the component's verifier is set up: the device's trust anchors and identity, or
/// for a secondary MCU its own.
pub(crate) fn verifier_spec<'c>(
    cfg: &'c Config,
    now: u64,
    c: &'c ComponentConfig,
    m: &'c McuConfig,
) -> VerifierSpec<'c> {
    match &m.secondary {
        Some(s) => VerifierSpec {
            anchors: crate::config::anchors_of(&s.anchors),
            policy: TrustPolicy {
                time: Some(now),
                ..TrustPolicy::default()
            },
            identity: s.identity,
            component: suitcase_manifest::build::encode_component_id(&s.inner_component),
        },
        None => VerifierSpec {
            anchors: cfg.trust.anchors(),
            policy: cfg.trust.policy(now),
            identity: cfg.identity,
            component: suitcase_manifest::build::encode_component_id(&c.id),
        },
    }
}

/// Where `slot` starts in the MCU's flash (and its flash file).
pub(crate) fn mcu_slot_offset(m: &McuConfig, slot: crate::slot::Slot) -> u64 {
    let s = u64::from(m.sector_size);
    match slot {
        crate::slot::Slot::A => 2 * s,
        crate::slot::Slot::B => 2 * s + m.slot_size(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_as_the_device_crate_reads_them() {
        let off = image_offset(100);
        assert_eq!(off % IMAGE_ALIGN, 0);
        let h = slot_header(100, u32::try_from(off).unwrap(), 5000);
        let parsed = suitcase_device::SlotHeader::parse(&h).unwrap().unwrap();
        assert_eq!(parsed.envelope_len, 100);
        assert_eq!(u64::from(parsed.image_offset), off);
        assert_eq!(parsed.image_len, 5000);
    }
}

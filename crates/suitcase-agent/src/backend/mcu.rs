//! Simulated MCUs ([`crate::mcu`]): `suitcase-boot` slots on simulated flash, written as slot
//! images and booted by the MCU's bootloader with its SUIT verifier. A secondary MCU is the
//! same backend with its own verifier (its anchors and identity, [`verifier_spec`]): the
//! agent only delivers its image.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use suitcase_protocol::Step;

use super::{Activated, Image, Reverted, SlotBackend, SlotStatus, SlotTarget, Written};
use crate::config::{Config, ImageFormat, Kind, McuConfig};
use crate::ctx::Ctx;
use crate::error::{AgentError, Stop, fail, reason};
use crate::hooks::Clock;
use crate::mcu::{self, Mcu, mcu_slot_offset, verifier_spec};
use crate::platform::Content;
use crate::slot::Slot;
use crate::state::Durability;

/// A simulated MCU's slots (configured component `index`).
pub(crate) struct McuBackend {
    cfg: Arc<Config>,
    index: usize,
    durability: Arc<Durability>,
    clock: Clock,
}

impl McuBackend {
    pub(crate) fn new(ctx: &Ctx, index: usize) -> Self {
        Self {
            cfg: ctx.cfg.clone(),
            index,
            durability: ctx.state.durability.clone(),
            clock: ctx.clock.clone(),
        }
    }

    /// The component's name and MCU configuration.
    fn config(&self) -> Result<(&str, &McuConfig), AgentError> {
        match self.cfg.components.get(self.index).map(|c| (c, &c.kind)) {
            Some((c, Kind::Mcu(m))) => Ok((&c.name, m)),
            _ => Err(AgentError::Local(
                "the MCU component vanished from the configuration".into(),
            )),
        }
    }

    /// Opens the flash, runs `f` on it and saves it.
    fn with_device<T>(
        &self,
        f: impl FnOnce(&Mcu<'_>, &str, &McuConfig) -> Result<T, Stop>,
    ) -> Result<T, Stop> {
        let (name, m) = self.config()?;
        let device = Mcu::open(m, &self.durability)?;
        let r = f(&device, name, m)?;
        device.save(&self.durability)?;
        Ok(r)
    }

    fn spec(&self) -> Result<mcu::VerifierSpec<'_>, AgentError> {
        let c = self
            .cfg
            .components
            .get(self.index)
            .ok_or_else(|| AgentError::Local("component".into()))?;
        let Kind::Mcu(m) = &c.kind else {
            return Err(AgentError::Local("component kind".into()));
        };
        Ok(verifier_spec(&self.cfg, (self.clock)(), c, m))
    }
}

impl SlotBackend for McuBackend {
    fn status(&self) -> Result<SlotStatus, AgentError> {
        let (_, m) = self.config()?;
        let st = Mcu::open(m, &self.durability)?.status()?;
        Ok(SlotStatus {
            running: st.running.into(),
            trial: st.phase == suitcase_boot::Phase::Trial,
        })
    }

    fn target(&self) -> Result<SlotTarget, Stop> {
        let (name, m) = self.config()?;
        let st = Mcu::open(m, &self.durability)?.status()?;
        if st.phase == suitcase_boot::Phase::Trial {
            return Err(fail(
                Step::Distribute,
                reason::STORAGE,
                format!("{name}: the MCU runs an unconfirmed trial image"),
            ));
        }
        Ok(SlotTarget {
            from: st.confirmed.into(),
            to: st.confirmed.other().into(),
            what: if m.secondary.is_some() {
                "secondary MCU (verifies its own manifest), slot"
            } else {
                "MCU slot"
            },
        })
    }

    fn write(
        &self,
        image: &Image<'_>,
        _checkpoint: &mut dyn FnMut(u64) -> Result<(), AgentError>,
    ) -> Result<Written, Stop> {
        let step = Step::Apply;
        let (_, m) = self.config()?;
        let (len, envelope) = (image.len(), image.envelope());
        let (total, offset, prefix) = match m.image {
            ImageFormat::Raw => {
                let env_len = envelope.len() as u64;
                let off = mcu::image_offset(env_len);
                let mut prefix = mcu::slot_header(
                    u32::try_from(env_len).unwrap_or(u32::MAX),
                    u32::try_from(off).unwrap_or(u32::MAX),
                    u32::try_from(len).unwrap_or(u32::MAX),
                )
                .to_vec();
                prefix.extend_from_slice(envelope);
                prefix.resize(usize::try_from(off).unwrap_or(0), 0);
                (off + len, off, prefix)
            }
            ImageFormat::SlotImage => (len, 0, Vec::new()),
        };
        if total > m.slot_size() {
            return Err(fail(
                step,
                reason::NO_SPACE,
                format!(
                    "{}: the slot image is {total} bytes but a slot holds {}",
                    image.name,
                    m.slot_size()
                ),
            ));
        }
        let src = image.path();
        let file = std::fs::File::open(src).map_err(crate::error::local(format!(
            "cannot read {}",
            src.display()
        )))?;
        let mut reader = std::io::Cursor::new(prefix).chain(file.take(len));
        let slot = self.with_device(|device, _, _| {
            device
                .stage(total, &mut reader)
                .map_err(|e| fail(step, reason::STORAGE, format!("{}: {e}", image.name)))
        })?;
        // Read back from the slot in the flash, as staged: what the MCU will boot.
        let digest =
            crate::slots::sha256_range(&m.flash, mcu_slot_offset(m, slot.into()) + offset, len)?;
        Ok(Written {
            slot: slot.into(),
            total,
            image_offset: offset,
            digest,
            note: format!(
                "{}: {total} bytes staged in MCU slot {} (pending)",
                image.name,
                Slot::from(slot).name()
            ),
        })
    }

    fn read_back(&self, slot: Slot, image_offset: u64, len: u64) -> Content {
        match self.config() {
            Ok((_, m)) => Content {
                path: m.flash.clone(),
                offset: mcu_slot_offset(m, slot) + image_offset,
                len,
            },
            Err(_) => Content {
                path: PathBuf::new(),
                offset: 0,
                len,
            },
        }
    }

    fn verify_own(&self, name: &str, slot: Slot) -> Result<Option<String>, Stop> {
        let (_, m) = self.config()?;
        let device = Mcu::open(m, &self.durability)?;
        let spec = self.spec()?;
        let slot = suitcase_boot::Slot::from(slot);
        let measured = device
            .verify(&spec, slot)
            .map_err(|e| fail(Step::Reverify, reason::BOOT_REFUSED, format!("{name}: {e}")))?;
        Ok(Some(format!(
            "{name}: {} accepts slot {slot} (security version {})",
            if m.secondary.is_some() {
                "the secondary MCU's own verifier"
            } else {
                "the MCU's boot verifier"
            },
            measured.security_version.0
        )))
    }

    fn activate(&self, _from: Slot, to: Slot, earlier: bool) -> Result<Activated, Stop> {
        let step = Step::Activate;
        let (name, _) = self.config()?;
        if earlier {
            return Ok(Activated::Earlier(format!("{name}: booted earlier")));
        }
        let spec = self.spec()?;
        let decision = self.with_device(|device, _, _| Ok(device.activate(&spec)?))?;
        let to = suitcase_boot::Slot::from(to);
        match decision {
            suitcase_boot::BootDecision::Boot(b) => match b.state {
                suitcase_boot::ImageState::Trial { boot, max } if b.slot == to => {
                    Ok(Activated::Running(format!(
                        "{name}: the bootloader booted slot {to} on trial ({boot}/{max})"
                    )))
                }
                _ => Err(fail(
                    step,
                    reason::BOOT_REFUSED,
                    format!(
                        "{name}: the bootloader kept slot {}{}",
                        b.slot,
                        b.last_failure.map(|f| format!(": {f}")).unwrap_or_default()
                    ),
                )),
            },
            suitcase_boot::BootDecision::Recovery { reason: r } => Err(fail(
                step,
                reason::BOOT_REFUSED,
                format!("{name}: the bootloader stays in recovery: {r}"),
            )),
        }
    }

    fn confirm(&self, _to: Slot) -> Result<(), AgentError> {
        let (_, m) = self.config()?;
        let device = Mcu::open(m, &self.durability)?;
        device.confirm()?;
        device.save(&self.durability)
    }

    fn revert(&self, _from: Option<Slot>, _to: Option<Slot>) -> Result<Reverted, AgentError> {
        let (name, m) = self.config()?;
        let device = Mcu::open(m, &self.durability)?;
        let spec = self.spec()?;
        let note = device.revert(&spec)?.map(|what| format!("{name}: {what}"));
        device.save(&self.durability)?;
        Ok(Reverted {
            note,
            restart: Vec::new(),
        })
    }

    fn reboot_after_revert(&self, _from: Slot, _to: Slot) -> Option<Vec<String>> {
        None
    }

    fn slot_path(&self, _slot: Slot) -> Option<PathBuf> {
        None
    }
}

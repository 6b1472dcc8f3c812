//! Linux A/B slots: two files or block devices, switched by the pointer file or by a
//! bootloader ([`crate::bootloader`]: U-Boot, GRUB, a custom one).

use std::path::PathBuf;
use std::sync::Arc;

use suitcase_protocol::Step;

use super::{Activated, Image, Reverted, SlotBackend, SlotStatus, SlotTarget, Written};
use crate::config::{ActivateMode, FileSlots};
use crate::error::{AgentError, Stop, fail, reason};
use crate::platform::Content;
use crate::slot::Slot;
use crate::slots;
use crate::state::Durability;

/// A component's two file slots.
pub(crate) struct FileSlotBackend {
    name: String,
    slots: FileSlots,
    durability: Arc<Durability>,
}

impl FileSlotBackend {
    pub(crate) fn new(name: &str, slots: FileSlots, durability: Arc<Durability>) -> Self {
        Self {
            name: name.to_owned(),
            slots,
            durability,
        }
    }

    /// After a reboot: which slot runs, read back from the bootloader (the pointer backend
    /// has no other witness than its own record: the new slot counts as booted, as before).
    fn after_reboot(&self, from: Slot, to: Slot) -> Result<Activated, Stop> {
        let (name, s) = (&self.name, &self.slots);
        let Some(st) = s
            .bootloader
            .status(&s.slots)
            .map_err(|m| Stop::Interrupt(AgentError::Local(format!("{name}: {m}"))))?
        else {
            return Ok(Activated::Earlier(format!(
                "{name}: slot {to} active after the reboot"
            )));
        };
        let booted = Slot::from_index(st.booted);
        let next = st.next.and_then(Slot::from_index);
        if booted == Some(to) {
            return Ok(Activated::Earlier(format!(
                "{name}: the {} bootloader booted slot {to} on trial ({})",
                s.bootloader.name(),
                st.detail
            )));
        }
        Err(fail(
            Step::Activate,
            reason::BOOT_REFUSED,
            if next == Some(to) && booted == Some(from) {
                // Not rebooted through the boot script (or the agent was started again before
                // the reboot): rebooting again could loop for ever on a device whose bootloader
                // never runs the script, so this is a failure too, bounded and reported.
                format!(
                    "{name}: slot {from} runs after the reboot and the {} bootloader has not tried slot {to} \
                     ({}): the reboot did not go through the suitcase boot script \
                     (docs/bootloaders.md), or the agent ran before the reboot",
                    s.bootloader.name(),
                    st.detail
                )
            } else {
                format!(
                    "{name}: the {} bootloader fell back to slot {}: slot {to} did not come up within its \
                     boot attempts ({})",
                    s.bootloader.name(),
                    slots::name(st.booted),
                    st.detail
                )
            },
        ))
    }
}

impl SlotBackend for FileSlotBackend {
    fn status(&self) -> Result<SlotStatus, AgentError> {
        let p = slots::read_pointer(&self.slots.pointer)?;
        Ok(SlotStatus {
            running: pointer_slot(&self.slots.pointer, p.active)?,
            trial: p.trial(),
        })
    }

    fn target(&self) -> Result<SlotTarget, Stop> {
        let (name, s) = (&self.name, &self.slots);
        let step = Step::Distribute;
        slots::check(s).map_err(|m| fail(step, reason::STORAGE, m))?;
        // With a bootloader backend, also checks that the system booted the slot the record
        // names: the inactive slot is written next, and it must not be the one running.
        let p =
            slots::running(s).map_err(|m| fail(step, reason::STORAGE, format!("{name}: {m}")))?;
        if p.trial() {
            return Err(fail(
                step,
                reason::STORAGE,
                format!(
                    "{name}: slot {} is on trial and not confirmed ({}); confirm or revert it first",
                    slots::name(p.active),
                    s.pointer.display()
                ),
            ));
        }
        let from = pointer_slot(&s.pointer, p.active)?;
        Ok(SlotTarget {
            from,
            to: from.other(),
            what: "file slot",
        })
    }

    fn write(
        &self,
        image: &Image<'_>,
        checkpoint: &mut dyn FnMut(u64) -> Result<(), AgentError>,
    ) -> Result<Written, Stop> {
        let step = Step::Apply;
        if image.resume_at == 0
            && let Some(from) = image.from
        {
            // The bootloader must not fall back into a slot holding half an image. Nothing
            // is switched yet: a bootloader that cannot be written fails Apply (unstaged,
            // reported) rather than stopping the agent at every start.
            slots::prepare(&self.slots, from.index())
                .map_err(|e| fail(step, reason::STORAGE, format!("{}: {e}", self.name)))?;
        }
        let to = image.to;
        let digest = slots::write_slot(
            &self.slots,
            to.index(),
            image.path(),
            image.len(),
            image.resume_at,
            checkpoint,
        )
        .map_err(|e| match e {
            slots::SlotError::NoSpace(m) => fail(step, reason::NO_SPACE, m),
            slots::SlotError::Storage(m) => fail(step, reason::STORAGE, m),
            slots::SlotError::Agent(e) => Stop::Interrupt(e),
        })?;
        Ok(Written {
            slot: to,
            total: image.len(),
            image_offset: 0,
            note: format!(
                "{}: {} bytes into slot {to} (sha-256 {})",
                image.name,
                image.len(),
                digest.get(..16).unwrap_or_default()
            ),
            digest,
        })
    }

    fn read_back(&self, slot: Slot, _image_offset: u64, len: u64) -> Content {
        Content {
            path: self.slot_path(slot).unwrap_or_default(),
            offset: 0,
            len,
        }
    }

    fn verify_own(&self, _name: &str, _slot: Slot) -> Result<Option<String>, Stop> {
        Ok(None)
    }

    fn activate(&self, from: Slot, to: Slot, earlier: bool) -> Result<Activated, Stop> {
        let s = &self.slots;
        if earlier && s.activate == ActivateMode::Reboot {
            return self.after_reboot(from, to);
        }
        slots::activate(s, from.index(), to.index())?;
        self.durability.wrote()?;
        Ok(match s.activate {
            ActivateMode::Restart => Activated::Restart(s.restart.clone()),
            ActivateMode::Reboot => Activated::Reboot(s.reboot.clone()),
        })
    }

    fn confirm(&self, to: Slot) -> Result<(), AgentError> {
        slots::confirm(&self.slots, to.index())?;
        self.durability.wrote()
    }

    fn revert(&self, from: Option<Slot>, to: Option<Slot>) -> Result<Reverted, AgentError> {
        let (Some(from), Some(to)) = (from, to) else {
            return Ok(Reverted::default());
        };
        let s = &self.slots;
        let p = slots::read_pointer(&s.pointer)?;
        if p.active != to.index() && p.confirmed != to.index() {
            return Ok(Reverted::default());
        }
        slots::revert(s, from.index())?;
        self.durability.wrote()?;
        Ok(Reverted {
            note: Some(format!("{} reverted to slot {from}", self.name)),
            restart: if s.activate == ActivateMode::Restart {
                s.restart.clone()
            } else {
                Vec::new()
            },
        })
    }

    fn reboot_after_revert(&self, _from: Slot, to: Slot) -> Option<Vec<String>> {
        let s = &self.slots;
        if s.activate != ActivateMode::Reboot || s.reboot.is_empty() {
            return None;
        }
        let booted = s.bootloader.status(&s.slots).ok().flatten()?.booted;
        (booted == to.index()).then(|| s.reboot.clone())
    }

    fn slot_path(&self, slot: Slot) -> Option<PathBuf> {
        self.slots.slots.get(slot.index()).cloned()
    }
}

/// The slot a pointer file's index names: `a` or `b`, anything else is an error naming the
/// file and the value (never read as `b`).
fn pointer_slot(pointer: &std::path::Path, i: usize) -> Result<Slot, AgentError> {
    Slot::from_index(i).ok_or_else(|| {
        AgentError::Local(format!(
            "the slot pointer {} names slot index {i}, which is neither a nor b",
            pointer.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_index_other_than_a_or_b_is_an_error_naming_the_file_and_value() {
        let p = std::path::Path::new("/data/app.slot");
        assert_eq!(pointer_slot(p, 1).unwrap(), Slot::B);
        let e = pointer_slot(p, 2).unwrap_err().to_string();
        assert!(e.contains("/data/app.slot") && e.contains('2'), "{e}");
    }
}

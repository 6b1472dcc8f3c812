//! NTIA step 10, Apply: each candidate written to its component's inactive slot (with
//! checkpoints), staged as an MCU slot image, or staged for an update module's handler.

use std::io::Read as _;

use suitcase_protocol::Step;

use super::{Done, StepResult, component};
use crate::config::{ImageFormat, Kind};
use crate::ctx::Ctx;
use crate::error::{AgentError, Stop, fail, reason};
use crate::mcu::{self, Mcu};
use crate::slots;
use crate::state::Journal;
use crate::verified::read_envelope;

pub(crate) fn apply(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Apply;
    let envelope = read_envelope(ctx, j)?;
    let mut notes = Vec::new();
    for ti in 0..j.targets.len() {
        let Some(t) = j.targets.get(ti).cloned() else {
            continue;
        };
        if t.helper {
            continue;
        }
        let Some(cand) = j.candidates.iter().find(|c| c.index == t.index).cloned() else {
            notes.push(format!("{}: nothing to write", t.name));
            continue;
        };
        if t.applied {
            notes.push(format!("{}: written earlier", t.name));
            continue;
        }
        let src = ctx.state.work_file(&cand.file);
        let c = component(ctx, &t)?;
        match &c.kind {
            Kind::Module(m) => {
                if cand.len > m.capacity {
                    return Err(fail(
                        step,
                        reason::NO_SPACE,
                        format!(
                            "{}: the payload is {} bytes but capacity = {}",
                            t.name, cand.len, m.capacity
                        ),
                    ));
                }
                let digest = crate::module::stage(m, &src)
                    .map_err(|why| fail(step, reason::STORAGE, format!("{}: {why}", t.name)))?;
                notes.push(format!(
                    "{}: {} bytes staged for the {} handler",
                    t.name,
                    cand.len,
                    m.handler.name()
                ));
                if let Some(x) = j.targets.get_mut(ti) {
                    x.written = cand.len;
                    x.len = cand.len;
                    x.digest = Some(digest);
                    x.applied = true;
                }
            }
            Kind::File(s) => {
                let to = t
                    .to_slot
                    .as_deref()
                    .and_then(slots::index)
                    .ok_or_else(|| fail(step, reason::STORAGE, "no target slot"))?;
                if t.written == 0
                    && let Some(from) = t.from_slot.as_deref().and_then(slots::index)
                {
                    // The bootloader must not fall back into a slot holding half an image.
                    // Nothing is switched yet: a bootloader that cannot be written fails
                    // Apply (unstaged, reported) rather than stopping the agent at every start.
                    slots::prepare(s, from)
                        .map_err(|e| fail(step, reason::STORAGE, format!("{}: {e}", c.name)))?;
                }
                let mut snapshot = j.clone();
                let state = ctx.state.clone();
                let mut checkpoint = |done: u64| -> Result<(), AgentError> {
                    if let Some(x) = snapshot.targets.get_mut(ti) {
                        x.written = done;
                    }
                    state.save_journal(&snapshot)
                };
                let digest = slots::write_slot(s, to, &src, cand.len, t.written, &mut checkpoint)
                    .map_err(|e| match e {
                    slots::SlotError::NoSpace(m) => fail(step, reason::NO_SPACE, m),
                    slots::SlotError::Storage(m) => fail(step, reason::STORAGE, m),
                    slots::SlotError::Agent(e) => Stop::Interrupt(e),
                })?;
                notes.push(format!(
                    "{}: {} bytes into slot {} (sha-256 {})",
                    t.name,
                    cand.len,
                    slots::name(to),
                    digest.get(..16).unwrap_or_default()
                ));
                if let Some(x) = j.targets.get_mut(ti) {
                    x.written = cand.len;
                    x.len = cand.len;
                    x.image_offset = 0;
                    x.digest = Some(digest);
                    x.applied = true;
                }
            }
            Kind::Mcu(m) => {
                let (total, offset, prefix) = match m.image {
                    ImageFormat::Raw => {
                        let env_len = envelope.len() as u64;
                        let off = mcu::image_offset(env_len);
                        let mut prefix = mcu::slot_header(
                            u32::try_from(env_len).unwrap_or(u32::MAX),
                            u32::try_from(off).unwrap_or(u32::MAX),
                            u32::try_from(cand.len).unwrap_or(u32::MAX),
                        )
                        .to_vec();
                        prefix.extend_from_slice(&envelope);
                        prefix.resize(usize::try_from(off).unwrap_or(0), 0);
                        (off + cand.len, off, prefix)
                    }
                    ImageFormat::SlotImage => (cand.len, 0, Vec::new()),
                };
                if total > m.slot_size() {
                    return Err(fail(
                        step,
                        reason::NO_SPACE,
                        format!(
                            "{}: the slot image is {total} bytes but a slot holds {}",
                            t.name,
                            m.slot_size()
                        ),
                    ));
                }
                let file = std::fs::File::open(&src).map_err(crate::error::local(format!(
                    "cannot read {}",
                    src.display()
                )))?;
                let mut reader = std::io::Cursor::new(prefix).chain(file.take(cand.len));
                let device = Mcu::open(m, &ctx.state.durability)?;
                let slot = device
                    .stage(total, &mut reader)
                    .map_err(|e| fail(step, reason::STORAGE, format!("{}: {e}", t.name)))?;
                device.save(&ctx.state.durability)?;
                let digest = crate::http::sha256_file(&src)?;
                notes.push(format!(
                    "{}: {total} bytes staged in MCU slot {} (pending)",
                    t.name,
                    mcu::slot_name(slot)
                ));
                if let Some(x) = j.targets.get_mut(ti) {
                    x.written = total;
                    x.len = cand.len;
                    x.image_offset = offset;
                    x.digest = Some(digest);
                    x.to_slot = Some(mcu::slot_name(slot).into());
                    x.applied = true;
                }
            }
        }
        ctx.state.save_journal(j)?;
    }
    Ok(Done::Success(notes.join("; ")))
}

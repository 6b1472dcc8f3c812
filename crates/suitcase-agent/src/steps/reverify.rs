//! NTIA step 11, Re-verify: the manifest's validate section run on what was written, read
//! back from the slots; an MCU's own boot verifier run on its slot.

use suitcase_manifest::{Processor, ProcessorPolicy, Section};
use suitcase_protocol::Step;

use super::{Done, StepResult, component};
use crate::config::Kind;
use crate::ctx::Ctx;
use crate::error::{fail, reason};
use crate::mcu::{self, Mcu, mcu_slot_offset, verifier_spec};
use crate::platform::{Content, DevicePlatform, Mode};
use crate::slots;
use crate::state::Journal;
use crate::verified::{installed_sequence, read_envelope, suit_failure, verify};

pub(crate) fn reverify(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Reverify;
    let bytes = read_envelope(ctx, j)?;
    let anchors = ctx.cfg.trust.anchors();
    let v = verify(ctx, step, &bytes, &anchors)?;
    let installed = installed_sequence(ctx, &v)?;
    let mut p = DevicePlatform::new(
        &ctx.cfg,
        Mode::Reverify,
        bytes.len() as u64,
        ctx.state.work(),
        Vec::new(),
        ctx.now(),
    );
    for t in &j.targets {
        let content = if t.helper || !t.applied {
            j.candidates
                .iter()
                .find(|c| c.index == t.index)
                .map(|c| Content {
                    path: ctx.state.work_file(&c.file),
                    offset: 0,
                    len: c.len,
                })
        } else {
            let c = component(ctx, t)?;
            let slot = t.to_slot.as_deref().unwrap_or("b");
            Some(match &c.kind {
                Kind::Module(m) => Content {
                    path: m.staged.clone(),
                    offset: 0,
                    len: t.len,
                },
                Kind::File(s) => Content {
                    path: s
                        .slots
                        .get(slots::index(slot).unwrap_or(1))
                        .cloned()
                        .unwrap_or_default(),
                    offset: 0,
                    len: t.len,
                },
                Kind::Mcu(m) => Content {
                    path: m.flash.clone(),
                    offset: mcu_slot_offset(m, slot) + t.image_offset,
                    len: t.len,
                },
            })
        };
        if let Some(content) = content {
            p.set_content(t.index, content);
        }
    }
    let outcome = match Processor::new(
        &v,
        &mut p,
        ProcessorPolicy {
            installed_sequence: installed,
            allow_same_sequence: false,
        },
    ) {
        Ok(mut proc) => proc.run(Section::Validate),
        Err(e) => Err(e),
    };
    let ran = match outcome {
        Ok(ran) => ran,
        Err(e) => return Err(suit_failure(step, &e, &p)),
    };
    let mut notes = vec![if ran {
        "the manifest's validate section accepts what was written".to_owned()
    } else {
        "the manifest has no validate section".to_owned()
    }];
    for t in j.targets.iter().filter(|t| !t.helper && t.applied) {
        let c = component(ctx, t)?;
        if let Kind::Mcu(m) = &c.kind {
            let device = Mcu::open(m, &ctx.state.durability)?;
            let spec = verifier_spec(&ctx.cfg, ctx.now(), c, m);
            let slot = t
                .to_slot
                .as_deref()
                .and_then(mcu::slot_of)
                .unwrap_or(suitcase_boot::Slot::B);
            let measured = device
                .verify(&spec, slot)
                .map_err(|e| fail(step, reason::BOOT_REFUSED, format!("{}: {e}", t.name)))?;
            notes.push(format!(
                "{}: {} accepts slot {slot} (security version {})",
                t.name,
                if m.secondary.is_some() {
                    "the secondary MCU's own verifier"
                } else {
                    "the MCU's boot verifier"
                },
                measured.security_version.0
            ));
        }
    }
    Ok(Done::Success(notes.join("; ")))
}

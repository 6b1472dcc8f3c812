//! What the device reports at check-in: its components, the slot it runs and whether it is
//! on trial.

use suitcase_protocol::{BootStatus, CheckIn, InstalledComponent};

use crate::config::Kind;
use crate::ctx::Ctx;
use crate::error::AgentError;
use crate::mcu::{self, Mcu};
use crate::slots;

pub(crate) fn inventory(ctx: &Ctx) -> Result<CheckIn, AgentError> {
    let installed = ctx.state.installed()?;
    let mut components = Vec::new();
    let mut boot: Option<BootStatus> = None;
    for c in &ctx.cfg.components {
        let id = c.id_hex();
        let known = installed.components.iter().find(|x| x.id == id);
        components.push(InstalledComponent {
            id: id.clone(),
            sequence_number: known.map_or(0, |k| k.sequence_number),
            digest: known.and_then(|k| k.digest.clone()),
            size: known.and_then(|k| k.size),
            version: c
                .version
                .clone()
                .or_else(|| known.and_then(|k| k.version.clone())),
            // What a campaign warns about before it starts (docs/agent.md §5.4): slot images
            // and MCUs keep the other slot; a module can roll back as its handler can.
            handler: match &c.kind {
                Kind::Module(m) => Some(m.handler.name().to_owned()),
                Kind::File(_) | Kind::Mcu(_) => None,
            },
            rollback: Some(match &c.kind {
                Kind::Module(m) => crate::module::can_roll_back(m),
                Kind::File(_) | Kind::Mcu(_) => true,
            }),
        });
        let (slot, trial) = match &c.kind {
            // No slot and no boot state: what runs is what was installed last.
            Kind::Module(_) => continue,
            Kind::File(s) => {
                let p = slots::read_pointer(&s.pointer)?;
                (slots::name(p.active).to_owned(), p.trial())
            }
            Kind::Mcu(m) => {
                let st = Mcu::open(m, &ctx.state.durability)?.status()?;
                (
                    mcu::slot_name(st.running).to_owned(),
                    st.phase == suitcase_boot::Phase::Trial,
                )
            }
        };
        match &mut boot {
            None => {
                boot = Some(BootStatus {
                    slot: Some(slot),
                    trial,
                    reverted: installed.reverted,
                });
            }
            Some(b) => b.trial |= trial,
        }
    }
    for k in &installed.components {
        if !components.iter().any(|c| c.id == k.id) {
            components.push(k.clone());
        }
    }
    Ok(CheckIn {
        vendor_id: Some(suitcase_author::uuid::to_string(&ctx.cfg.identity.vendor)),
        class_id: Some(suitcase_author::uuid::to_string(&ctx.cfg.identity.class)),
        components,
        free_storage: ctx
            .state
            .free_bytes()
            .map(|f| f.saturating_sub(ctx.cfg.reserve_bytes)),
        boot,
        agent: Some(crate::AGENT.into()),
    })
}

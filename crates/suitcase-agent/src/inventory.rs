//! What the device reports at check-in: its components, the slot it runs and whether it is
//! on trial.

use suitcase_protocol::{BootStatus, CheckIn, InstalledComponent};

use crate::backend::{Installer, SlotStatus, installer};
use crate::ctx::Ctx;
use crate::error::AgentError;

pub(crate) fn inventory(ctx: &Ctx) -> Result<CheckIn, AgentError> {
    let installed = ctx.state.installed()?;
    let mut components = Vec::new();
    let mut boot: Option<BootStatus> = None;
    for (index, c) in ctx.cfg.components.iter().enumerate() {
        let how = installer(ctx, c, index);
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
            handler: match &how {
                Installer::Module(m) => Some(m.handler.name().to_owned()),
                Installer::Slots(_) => None,
            },
            rollback: Some(match &how {
                Installer::Module(m) => crate::module::can_roll_back(m),
                Installer::Slots(_) => true,
            }),
        });
        let SlotStatus { running, trial } = match how {
            // No slot and no boot state: what runs is what was installed last.
            Installer::Module(_) => continue,
            Installer::Slots(b) => b.status()?,
        };
        let slot = running.name().to_owned();
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
        vendor_id: Some(suitcase_host::uuid::to_string(&ctx.cfg.identity.vendor)),
        class_id: Some(suitcase_host::uuid::to_string(&ctx.cfg.identity.class)),
        components,
        free_storage: ctx
            .state
            .free_bytes()
            .map(|f| f.saturating_sub(ctx.cfg.reserve_bytes)),
        boot,
        agent: Some(crate::AGENT.into()),
        // Set per check-in by `Agent::checkin` (docs/trust.md, "Freshness").
        nonce: None,
    })
}

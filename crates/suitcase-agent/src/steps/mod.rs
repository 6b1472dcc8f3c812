//! The NTIA update steps, one module each, in the order they run (docs/agent.md §2). Each
//! step takes the [`Ctx`] and the journal and ends in a [`Done`] or a [`Stop`]; the runner
//! (`crate::runner`) journals and reports between them. What the steps share is here.

use suitcase_protocol::Step;

use crate::backend::{Installer, SlotBackend};
use crate::config::{ComponentConfig, ModuleConfig};
use crate::ctx::Ctx;
use crate::error::{Stop, fail, reason};
use crate::slot::Slot;
use crate::state::{Journal, Target};

pub(crate) mod activate;
pub(crate) mod announce;
pub(crate) mod apply;
pub(crate) mod check;
pub(crate) mod clean_up;
pub(crate) mod distribute;
mod download;
pub(crate) mod process;
pub(crate) mod receive;
pub(crate) mod reverify;
pub(crate) mod stage;
pub(crate) mod undo;

/// How a step ended when it did not stop.
pub(crate) enum Done {
    /// It succeeded: the detail for the report.
    Success(String),
    /// Announce deferred the update: why, and when to ask again.
    Deferred { detail: String, retry: Option<u64> },
}

pub(crate) type StepResult = Result<Done, Stop>;

/// The environment of every command an update runs: the release, its sequence number, the
/// operator's flags and the step.
pub(crate) fn env_of(j: &Journal, step: Step) -> Vec<(String, String)> {
    vec![
        ("SUITCASE_RELEASE_ID".into(), j.offer.release_id.clone()),
        ("SUITCASE_SEQUENCE".into(), j.sequence.to_string()),
        (
            "SUITCASE_REQUIRES_CONSENT".into(),
            u8::from(j.offer.requires_consent).to_string(),
        ),
        (
            "SUITCASE_ROLLBACK".into(),
            u8::from(j.offer.rollback).to_string(),
        ),
        ("SUITCASE_STEP".into(), step.name().into()),
    ]
}

/// The environment of a slotted component's command: [`env_of`] plus the component, the
/// slot and the slot's path (empty for an MCU slot).
pub(crate) fn slot_env(
    j: &Journal,
    step: Step,
    component: &str,
    backend: &dyn SlotBackend,
    slot: Slot,
) -> Vec<(String, String)> {
    let mut env = env_of(j, step);
    env.push(("SUITCASE_COMPONENT".into(), component.to_owned()));
    env.push(("SUITCASE_SLOT".into(), slot.name().into()));
    env.push((
        "SUITCASE_SLOT_PATH".into(),
        backend
            .slot_path(slot)
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    ));
    env
}

/// The environment of an update module's commands: [`env_of`] plus the component, its
/// handler and the staged payload.
pub(crate) fn module_env(
    j: &Journal,
    step: Step,
    component: &str,
    m: &ModuleConfig,
) -> Vec<(String, String)> {
    let mut env = env_of(j, step);
    env.push(("SUITCASE_COMPONENT".into(), component.to_owned()));
    env.push(("SUITCASE_MODULE".into(), m.handler.name().into()));
    env.push((
        "SUITCASE_MODULE_FILE".into(),
        m.staged.display().to_string(),
    ));
    env
}

/// The configured component of target `t`, and how it takes an update.
pub(crate) fn installer<'c>(
    ctx: &'c Ctx,
    t: &Target,
) -> Result<(&'c ComponentConfig, Installer<'c>), Stop> {
    let c = component(ctx, t)?;
    Ok((c, crate::backend::installer(ctx, c, t.component)))
}

/// The configured component of target `t`.
pub(crate) fn component<'c>(ctx: &'c Ctx, t: &Target) -> Result<&'c ComponentConfig, Stop> {
    ctx.cfg.components.get(t.component).ok_or_else(|| {
        fail(
            Step::Apply,
            reason::STORAGE,
            "component vanished from the configuration",
        )
    })
}

//! The NTIA update steps, one module each, in the order they run (docs/agent.md §2). Each
//! step takes the [`Ctx`] and the journal and ends in a [`Done`] or a [`Stop`]; the runner
//! (`crate::runner`) journals and reports between them. What the steps share is here.

use suitcase_protocol::Step;

use crate::config::{ComponentConfig, FileSlots, ModuleConfig};
use crate::ctx::Ctx;
use crate::error::{Stop, fail, reason};
use crate::slots;
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
    Success(String),
    Deferred { detail: String, retry: Option<u64> },
}

pub(crate) type StepResult = Result<Done, Stop>;

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

/// The environment of a file component's command: [`env_of`] plus the component, the slot
/// and the slot's path.
pub(crate) fn slot_env(
    j: &Journal,
    step: Step,
    component: &str,
    s: &FileSlots,
    slot: usize,
) -> Vec<(String, String)> {
    let mut env = env_of(j, step);
    env.push(("SUITCASE_COMPONENT".into(), component.to_owned()));
    env.push(("SUITCASE_SLOT".into(), slots::name(slot).into()));
    env.push((
        "SUITCASE_SLOT_PATH".into(),
        s.slots
            .get(slot)
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

pub(crate) fn component<'c>(ctx: &'c Ctx, t: &Target) -> Result<&'c ComponentConfig, Stop> {
    ctx.cfg.components.get(t.component).ok_or_else(|| {
        fail(
            Step::Apply,
            reason::STORAGE,
            "component vanished from the configuration",
        )
    })
}

//! NTIA step 11, Re-verify: the manifest's validate section run on what was written, read
//! back from the slots; an MCU's own boot verifier run on its slot.

use suitcase_device::consumer::MatchError;
use suitcase_manifest::Section;
use suitcase_protocol::Step;

use super::{Done, StepResult, installer};
use crate::backend::Installer;
use crate::candidates::{install, name};
use crate::config::ComponentConfig;
use crate::ctx::Ctx;
use crate::error::{Stop, fail, reason};
use crate::platform::{Content, Mode};
use crate::slot::Slot;
use crate::state::{Journal, Target};
use crate::verified::{Authentic, authenticated, platform, suit_failure};

pub(crate) fn reverify(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Reverify;
    let ran = authenticated(ctx, j, step, |a| validate(ctx, j, step, a))?;
    let mut notes = vec![if ran {
        "the manifest's validate section accepts what was written".to_owned()
    } else {
        "the manifest has no validate section".to_owned()
    }];
    for t in j
        .targets
        .iter()
        .filter(|t| !t.role.is_helper() && t.state.applied())
    {
        let (c, how) = installer(ctx, t)?;
        if let Installer::Slots(b) = how
            && let Some(note) = b.verify_own(&t.name, to_slot(c, t)?)?
        {
            notes.push(note);
        }
    }
    Ok(Done::Success(notes.join("; ")))
}

/// The manifest's validate section run on what was written (read back from the slots),
/// or on the candidates not written yet: whether it has one.
fn validate(ctx: &Ctx, j: &Journal, step: Step, a: &Authentic<'_>) -> Result<bool, Stop> {
    let mut p = platform(ctx, a, Mode::Reverify, Vec::new());
    for t in &j.targets {
        let content = if t.role.is_helper() || !t.state.applied() {
            j.candidates
                .iter()
                .find(|c| c.index == t.index)
                .map(|c| Content {
                    path: ctx.state.work_file(&c.file),
                    offset: 0,
                    len: c.len,
                })
        } else {
            let (c, how) = installer(ctx, t)?;
            Some(match how {
                Installer::Module(m) => Content {
                    path: m.staged.clone(),
                    offset: 0,
                    len: t.len,
                },
                Installer::Slots(b) => b.read_back(to_slot(c, t)?, t.image_offset, t.len),
            })
        };
        if let Some(content) = content {
            p.set_content(t.index, content);
        }
    }
    // A validate section checks only the components it image-matches: one that leaves out
    // an image the update installs has not verified what was written.
    match a.image_match(&mut p, &[Section::Validate], install(j), |_| ()) {
        Ok(m) => Ok(m.ran()),
        Err(MatchError::NotRun { .. }) => Ok(false),
        Err(MatchError::Processing(e)) => Err(suit_failure(step, &e, &p)),
        Err(MatchError::Unmatched { index }) => Err(fail(
            step,
            suitcase_manifest::Reason::Digest.code(),
            format!(
                "the manifest's validate section does not image-match {}: what was written is not verified",
                name(j, index)
            ),
        )),
    }
}

/// The slot Apply wrote for `t`.
fn to_slot(c: &ComponentConfig, t: &Target) -> Result<Slot, Stop> {
    t.to_slot.ok_or_else(|| {
        fail(
            Step::Reverify,
            reason::STORAGE,
            format!("{}: no target slot in the journal", c.name),
        )
    })
}

//! NTIA step 6, Announce: consent, automatic, from a command, or inside a time window.

use suitcase_protocol::Step;

use super::{Done, StepResult, env_of};
use crate::command;
use crate::consent::{self, Decision};
use crate::ctx::Ctx;
use crate::error::{fail, reason};
use crate::state::Journal;

pub(crate) async fn announce(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Announce;
    if j.consent_granted {
        return Ok(Done::Success("consent was given earlier".into()));
    }
    let c = &ctx.cfg.consent;
    let decision = match c.mode {
        crate::config::ConsentMode::Auto => Decision::Granted(if j.offer.requires_consent {
            "the operator asked for consent; consent.mode = \"auto\" gives it".into()
        } else {
            "installing automatically (consent.mode = \"auto\")".into()
        }),
        crate::config::ConsentMode::Command => {
            match command::run(&c.command, &env_of(j, step), c.timeout).await {
                command::Exit::Code(code) => consent::from_exit(code),
                other => Decision::Deferred {
                    detail: other.describe("the consent command"),
                    retry_seconds: None,
                },
            }
        }
        crate::config::ConsentMode::Window => match &c.window {
            Some(w) => consent::from_window(w, ctx.now()),
            None => Decision::Granted("no window configured".into()),
        },
    };
    match decision {
        Decision::Granted(s) => {
            j.consent_granted = true;
            Ok(Done::Success(s))
        }
        Decision::Deferred {
            detail,
            retry_seconds,
        } => Ok(Done::Deferred {
            detail,
            retry: retry_seconds,
        }),
        Decision::Refused(s) => Err(fail(step, reason::CONSENT, s)),
    }
}

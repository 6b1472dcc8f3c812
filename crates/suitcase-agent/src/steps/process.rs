//! NTIA step 8, Process: the manifest's sections run for real; payloads decrypted as a
//! stream into candidates, each matched against the manifest's image digest.

use suitcase_protocol::Step;

use super::{Done, StepResult};
use crate::candidates;
use crate::ctx::Ctx;
use crate::state::Journal;
use crate::verified::authenticated;

pub(crate) fn process(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Process;
    let (records, decrypted) = authenticated(ctx, j, step, |a| {
        let (matched, decrypted) = candidates::process(ctx, j, step, a)?;
        Ok((matched.candidates().records(), decrypted))
    })?;
    j.candidates = records;
    let images = j
        .candidates
        .iter()
        .filter(|c| {
            j.targets
                .iter()
                .any(|t| t.index == c.index && !t.role.is_helper())
        })
        .count();
    Ok(Done::Success(format!(
        "{images} candidate image(s) ready and matching the manifest's digests; {decrypted} payload(s) decrypted as a stream"
    )))
}

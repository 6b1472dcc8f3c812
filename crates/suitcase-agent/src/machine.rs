//! The update step machine: the NTIA update steps 4-13 as the agent runs them. Pure: no I/O,
//! no clock. `crate::runner` runs each step and feeds its end back here; the answer says
//! what to report and what to do next.
//!
//! ```text
//!  Receive ─▶ Check ─▶ Announce ─▶ Distribute ─▶ Process ─▶ Stage ─▶ Apply ─▶ Reverify ─▶ Activate ─▶ Clean-up ─▶ done
//!     │         │        │  └─deferred: wait, ask again   │          │        │           │            │
//!     └─────────┴────────┴────────── failure ─────────────┘          │        │           │            │
//!                        undo = discard (nothing changed)            └─ undo = unstage ───┘            │
//!                                                                       (slot written, not running)    │
//!                                                                                  undo = revert ──────┘
//!                                                                                  (new image ran)
//! ```
//!
//! Every step is safe to run again from its start or from its last checkpoint, so the journal
//! only records the step in progress (plus checkpoints inside Receive and Apply) and a
//! restarted agent runs that step again.

use serde::{Deserialize, Serialize};
use suitcase_protocol::{Outcome, Step};

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It did what it had to.
    Success,
    /// Not now (Announce only: consent withheld or outside the window).
    Deferred,
    /// It failed for good.
    Failure,
}

/// What undoing a failed update takes, by how far it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Undo {
    /// Nothing on the device changed: drop the downloads and candidates.
    Discard,
    /// New images were (partly) written to inactive slots but never ran: forget them (a
    /// pending bootloader update is withdrawn), then discard.
    Unstage,
    /// A new image ran: return every component to its previous slot, then discard.
    Revert,
}

/// What comes after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Run this step.
    Run(Step),
    /// The update is complete.
    Finished,
    /// Stop and ask again at the next cycle.
    Wait,
    /// Undo, then the update has ended in failure.
    Undo(Undo),
}

/// The report a step end causes and what follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The outcome to report for the step.
    pub report: Outcome,
    /// What follows.
    pub then: Then,
}

/// The step after `step`, if any.
pub fn next(step: Step) -> Option<Step> {
    let i = Step::ALL.iter().position(|s| *s == step)?;
    Step::ALL.get(i + 1).copied()
}

/// How far a failure at `step` has got into the device.
pub fn undo_after(step: Step) -> Undo {
    match step {
        Step::Receive
        | Step::Check
        | Step::Announce
        | Step::Distribute
        | Step::Process
        | Step::Stage => Undo::Discard,
        Step::Apply | Step::Reverify => Undo::Unstage,
        Step::Activate | Step::CleanUp => Undo::Revert,
    }
}

/// Whether the device's slots may already differ from before the update once `step` is in
/// progress. From here on a restarted agent finishes (or undoes) the update whatever the
/// server says, so the device never stays half-updated.
pub fn touches_device(step: Step) -> bool {
    undo_after(step) != Undo::Discard
}

/// The transition when `step` ends as `ended`.
pub fn after(step: Step, ended: Ended) -> Transition {
    match ended {
        Ended::Success => Transition {
            report: Outcome::Success,
            then: next(step).map_or(Then::Finished, Then::Run),
        },
        Ended::Deferred => Transition {
            report: Outcome::Deferred,
            then: Then::Wait,
        },
        Ended::Failure => Transition {
            report: Outcome::Failure,
            then: Then::Undo(undo_after(step)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_runs_once_in_order() {
        let mut step = Step::Receive;
        let mut seen = vec![step];
        loop {
            let t = after(step, Ended::Success);
            assert_eq!(t.report, Outcome::Success);
            match t.then {
                Then::Run(s) => {
                    seen.push(s);
                    step = s;
                }
                Then::Finished => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, Step::ALL.to_vec());
    }

    #[test]
    fn failures_undo_as_far_as_they_got() {
        assert_eq!(
            after(Step::Check, Ended::Failure).then,
            Then::Undo(Undo::Discard)
        );
        assert_eq!(
            after(Step::Reverify, Ended::Failure).then,
            Then::Undo(Undo::Unstage)
        );
        assert_eq!(
            after(Step::CleanUp, Ended::Failure).then,
            Then::Undo(Undo::Revert)
        );
        assert!(!touches_device(Step::Stage));
        assert!(touches_device(Step::Apply));
    }

    #[test]
    fn deferral_waits() {
        let t = after(Step::Announce, Ended::Deferred);
        assert_eq!((t.report, t.then), (Outcome::Deferred, Then::Wait));
    }
}

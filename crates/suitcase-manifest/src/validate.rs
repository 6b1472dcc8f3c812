//! Checks that need the whole manifest, done once after authentication and before any command
//! runs, so that processing never stops half-way on something that could be known up front.

use crate::command::{Command, CommandSequence, IndexArg};
use crate::envelope::Sections;
use crate::error::Error;
use crate::manifest::{Manifest, Severable};
use crate::params::keys;

#[derive(Clone, Copy)]
struct Ctx {
    depth: usize,
    shared: bool,
    indices: usize,
}

pub(crate) fn validate<'a>(m: &Manifest<'a>, sections: &Sections<'a>) -> Result<(), Error> {
    let indices = m.index_count();
    let top = |shared| Ctx {
        depth: 0,
        shared,
        indices,
    };
    if let Some(seq) = m.shared_sequence {
        sequence(&seq, top(true))?;
    }
    let severable = |s: Option<Severable<'a, CommandSequence<'a>>>,
                     found: Option<CommandSequence<'a>>| match s {
        Some(Severable::Inline(seq)) => Some(seq),
        _ => found,
    };
    let all = [
        severable(m.dependency_resolution, sections.dependency_resolution),
        severable(m.payload_fetch, sections.payload_fetch),
        severable(m.candidate_verification, sections.candidate_verification),
        severable(m.install, sections.install),
        m.validate,
        m.load,
        m.invoke,
        m.uninstall,
    ];
    for seq in all.iter().flatten() {
        sequence(seq, top(false))?;
    }
    Ok(())
}

fn sequence(seq: &CommandSequence<'_>, ctx: Ctx) -> Result<(), Error> {
    if ctx.depth > crate::MAX_NESTING {
        return Err(Error::NestingLimit {
            limit: crate::MAX_NESTING,
        });
    }
    let bad = |what| Err(Error::Malformed { at: 0, what });
    for (i, (_, cmd)) in seq.iter().enumerate() {
        // Manifest §6.2: "If the manifest contains more than one component, each command
        // sequence MUST begin with a Set Component Index". Nested sequences run with an integer
        // index preset by try-each / run-sequence (manifest §6.5), so the rule is for the top.
        // override-multiple (update-management §5.7) sets the index itself, so it may open one.
        if i == 0
            && ctx.depth == 0
            && ctx.indices > 1
            && !matches!(
                cmd,
                Command::SetComponentIndex(_) | Command::OverrideMultiple(_)
            )
        {
            return bad(
                "with several components, each command sequence must begin with set-component-index",
            );
        }
        match cmd {
            Command::SetComponentIndex(arg) => match arg {
                IndexArg::One(index) => check_index(index, ctx)?,
                IndexArg::All => {}
                IndexArg::List(list) => {
                    for index in list.iter() {
                        check_index(index, ctx)?;
                    }
                }
            },
            Command::TryEach(t) => {
                for branch in t.branches() {
                    sequence(
                        &branch,
                        Ctx {
                            depth: ctx.depth + 1,
                            ..ctx
                        },
                    )?;
                }
            }
            Command::RunSequence(s) => sequence(
                &s,
                Ctx {
                    depth: ctx.depth + 1,
                    ..ctx
                },
            )?,
            Command::OverrideParameters(p) | Command::SetParameters(p) => {
                soft_failure_scope(keys(&p), ctx)?;
                if ctx.shared && matches!(cmd, Command::SetParameters(_)) {
                    return bad("set-parameters is not allowed in the shared sequence");
                }
            }
            Command::OverrideMultiple(mp) => {
                for (index, p) in mp.iter() {
                    check_index(index, ctx)?;
                    soft_failure_scope(keys(&p), ctx)?;
                }
                if ctx.shared {
                    return bad("override-multiple is not allowed in the shared sequence");
                }
            }
            Command::CopyParams(cp) => {
                for (index, key) in cp.iter() {
                    check_index(index, ctx)?;
                    soft_failure_scope(core::iter::once(key), ctx)?;
                }
                if ctx.shared {
                    return bad("copy-params is not allowed in the shared sequence");
                }
            }
            // Manifest §6.2: "no custom commands are permitted in the shared sequence".
            Command::Custom(..) if ctx.shared => {
                return bad("custom commands are not permitted in the shared sequence");
            }
            // Manifest §5.1 (Common): "The common command sequence MUST NOT have any
            // side-effects outside of setting parameter values".
            Command::Directive(..) if ctx.shared => {
                return bad(
                    "directives other than parameter setting are not allowed in the shared sequence",
                );
            }
            Command::Condition(..) | Command::Directive(..) | Command::Custom(..) => {}
        }
    }
    Ok(())
}

fn check_index(index: u64, ctx: Ctx) -> Result<(), Error> {
    if index >= ctx.indices as u64 {
        return Err(Error::ComponentIndex { index });
    }
    Ok(())
}

/// Manifest §8.4.8.13: soft-failure "MUST NOT be set outside of suit-directive-try-each or
/// suit-directive-run-sequence, modifying suit-parameter-soft-failure outside of these
/// circumstances causes an Abort".
fn soft_failure_scope(mut keys: impl Iterator<Item = i64>, ctx: Ctx) -> Result<(), Error> {
    if ctx.depth == 0 && keys.any(|k| k == crate::codepoints::param::SOFT_FAILURE) {
        return Err(Error::Malformed {
            at: 0,
            what: "soft-failure set outside try-each or run-sequence",
        });
    }
    Ok(())
}

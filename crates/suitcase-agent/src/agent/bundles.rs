//! Bundles for the agent without a server: the bundles in a watched directory, what tells
//! a changed one, and which bundled release is for this device.

use crate::ctx::Ctx;
use crate::error::AgentError;

/// Bundles in a watched directory (see [`super::Agent::watch`]).
pub(super) fn bundles_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if dir.join(crate::bundle::INDEX).is_file() {
        out.push(dir.to_path_buf());
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<std::path::PathBuf> =
        rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        let is_bundle = if p.is_dir() {
            p.join(crate::bundle::INDEX).is_file()
        } else {
            p.is_file() && p.extension().is_some_and(|e| e == "bundle" || e == "tar")
        };
        if is_bundle {
            out.push(p);
        }
        if out.len() >= 64 {
            break;
        }
    }
    out
}

/// What tells a changed bundle: the size and modification time of the file, or of the
/// directory's index.
pub(super) fn stamp(p: &std::path::Path) -> Option<(u64, Option<std::time::SystemTime>)> {
    let m = if p.is_dir() {
        std::fs::metadata(p.join(crate::bundle::INDEX))
    } else {
        std::fs::metadata(p)
    }
    .ok()?;
    Some((m.len(), m.modified().ok()))
}

/// The bundled release to install: the highest sequence number among those for this device
/// (vendor and class, when the manifest checks them, and at least one component the device
/// has) that is newer than what is installed on its components. Only a preselection: the
/// Check step decides on the signed manifest, as for an offer from the server.
pub(super) fn pick<'i>(
    ctx: &Ctx,
    index: &'i crate::bundle::Index,
) -> Result<&'i crate::bundle::Release, AgentError> {
    let id = &ctx.cfg.identity;
    let same = |ids: &[String], want: &[u8; 16]| {
        ids.is_empty()
            || ids
                .iter()
                .any(|v| suitcase_host::uuid::parse(v).as_ref() == Some(want))
    };
    let mine: Vec<Vec<String>> = ctx.cfg.components.iter().map(|c| c.id_hex()).collect();
    let installed = ctx.state.installed()?;
    let for_me: Vec<&crate::bundle::Release> = index
        .releases
        .iter()
        .filter(|r| same(&r.vendor_ids, &id.vendor) && same(&r.class_ids, &id.class))
        .filter(|r| r.components.iter().any(|c| mine.contains(c)))
        .collect();
    let Some(best) = for_me.iter().copied().max_by_key(|r| r.sequence_number) else {
        return Err(AgentError::NothingInBundle(format!(
            "nothing in the bundle for this device: {} release(s), none for vendor {} class {} with one of its components ({})",
            index.releases.len(),
            suitcase_host::uuid::to_string(&id.vendor),
            suitcase_host::uuid::to_string(&id.class),
            ctx.cfg
                .components
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let current = best
        .components
        .iter()
        .filter(|c| mine.contains(c))
        .filter_map(|c| installed.sequence(c))
        .max()
        .unwrap_or(0);
    if best.sequence_number <= current {
        return Err(AgentError::NothingInBundle(format!(
            "nothing new in the bundle for this device: its newest release for it has sequence number {}, and {current} is installed",
            best.sequence_number
        )));
    }
    Ok(best)
}

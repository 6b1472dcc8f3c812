//! Trust updates carried in a bundle (docs/bundles.md §3, docs/trust.md): a device that never
//! reaches the server gets its new release signers and revocations the way it gets releases.
//!
//! A trust update is listed in the index like a release whose one component is the trust
//! store (`["suitcase-trust"]`) and which fetches nothing (its document is integrated). The
//! index is not trusted: it only says which members to try. Before a release of the bundle
//! is picked, every such member is read (at most [`crate::MAX_ENVELOPE`] bytes, the size and
//! SHA-256 the index declares), must be a trust update, and is applied in sequence order
//! with `TrustState::apply_update` under the state in force, exactly as through the server:
//! authenticated by the root keys in force only (TUF §2.1.1 role separation), above the trust
//! sequence number in force (anti-rollback, draft-ietf-suit-manifest §8.4.2, TUF §5.3.5),
//! keeping every revocation (RFC 8240 §3). Each new state is stored atomically before the
//! next update is tried, so a power cut leaves the old or the new state in force, and an
//! update already in force (or older) is passed over, not applied again. The bundle's
//! releases are then checked against the state the updates brought.

use std::io::Read as _;

use sha2::Digest as _;

use super::{Release, Source};
use crate::ctx::Ctx;
use crate::error::AgentError;
use crate::events::Event;

/// The component of a trust update, as the index writes component ids (hex segments).
pub fn trust_component() -> Vec<String> {
    vec![hex::encode(suitcase_trust::TRUST_COMPONENT)]
}

/// Whether an index entry is listed as a trust update (the trust store its one component,
/// nothing fetched). Only a preselection: the envelope decides.
pub fn is_listed_trust_update(r: &Release) -> bool {
    r.payloads.is_empty() && r.components == [trust_component()]
}

/// Whether `envelope` is meant as a trust update (it carries the integrated trust document).
/// Nothing in it is checked: the device authenticates it when it applies it.
pub fn is_trust_update(envelope: &[u8]) -> bool {
    crate::trust::is_trust_update(envelope)
}

/// Reads `r`'s envelope: at most [`crate::MAX_ENVELOPE`] bytes, and exactly the size and
/// SHA-256 the index declares.
fn read_envelope(source: &Source, r: &Release) -> Result<Vec<u8>, AgentError> {
    let m = &r.envelope;
    let refuse = |why: String| {
        AgentError::Local(format!(
            "trust update {} in the bundle: {why}; nothing from this bundle is installed",
            m.path
        ))
    };
    if m.size > crate::MAX_ENVELOPE {
        return Err(refuse(format!(
            "the index declares {} bytes; an envelope is at most {}",
            m.size,
            crate::MAX_ENVELOPE
        )));
    }
    let (reader, size) = source.member(&m.path)?;
    if size != m.size {
        return Err(refuse(format!(
            "{size} bytes, not the {} its index declares",
            m.size
        )));
    }
    let mut bytes = Vec::new();
    reader
        .take(m.size)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot read it: {e}")))?;
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    if !sha.eq_ignore_ascii_case(&m.sha256) {
        return Err(refuse(format!(
            "SHA-256 {sha}, not the {} its index declares",
            m.sha256
        )));
    }
    Ok(bytes)
}

/// Applies the trust updates the bundle lists, in sequence order, before a release of it is
/// picked (see the module documentation). Each one applied, or passed over as not newer than
/// the state in force, is a `bundle` event with its note. Returns how many were applied.
///
/// # Errors
/// [`AgentError::Local`]: the bundle lists trust updates but the agent has no trust state
/// (`trust.state`), a listed member is not a trust update or not what the index declares, or
/// an update is refused (not signed by the root in force, tampered, malformed, dropping a
/// revocation): the error names it and the reason (`TrustState::apply_update`'s stable
/// code), the state in force is kept, and nothing from the bundle is installed.
pub(crate) fn apply_trust_updates(ctx: &Ctx, source: &Source) -> Result<usize, AgentError> {
    let mut listed: Vec<&Release> = source
        .index
        .releases
        .iter()
        .filter(|r| is_listed_trust_update(r))
        .collect();
    if listed.is_empty() {
        return Ok(0);
    }
    listed.sort_by_key(|r| r.sequence_number);
    let Some(mut current) = crate::trust::in_force(ctx)? else {
        return Err(AgentError::Local(format!(
            "the bundle carries {} trust update(s), but this agent uses fixed trust anchors (trust.anchors): provision it with a trust state (trust.state) to take trust updates; nothing from this bundle is installed",
            listed.len()
        )));
    };
    let note = |r: &Release, text: String| {
        (ctx.events)(&Event::Bundle {
            path: source.path.display().to_string(),
            release_id: Some(r.id.clone()),
            note: Some(text),
        });
    };
    let mut applied = 0;
    for r in listed {
        let bytes = read_envelope(source, r)?;
        if !is_trust_update(&bytes) {
            return Err(AgentError::Local(format!(
                "{} in the bundle is listed as a trust update but carries no trust document; refused, nothing from this bundle is installed",
                r.envelope.path
            )));
        }
        // Already in force, or older (its manifest's sequence number, read unauthenticated:
        // passing an update over never weakens the state). Not applied again
        // (anti-rollback), and no reason to refuse the bundle's releases: a bundle may carry a
        // chain for devices further behind, whose first links the root in force no longer
        // signs.
        // Only the sequence number is read (no dependency of this unauthenticated envelope
        // is followed).
        let sequence = suitcase_manifest::Envelope::decode(&bytes)
            .ok()
            .and_then(|e| {
                suitcase_manifest::Manifest::decode_unauthenticated(e.manifest_bytes()).ok()
            })
            .map(|m| m.sequence_number);
        if let Some(n) = sequence
            && n <= current.sequence()
        {
            note(
                r,
                format!(
                    "trust update {n} not applied (sequence-rollback): trust state {} is in force",
                    current.sequence()
                ),
            );
            continue;
        }
        let next = current.apply_update(&bytes).map_err(|e| {
            AgentError::Local(format!(
                "trust update {} in the bundle refused ({}): {e}; the trust state in force (sequence {}) is kept and nothing from this bundle is installed",
                r.envelope.path,
                e.reason().code(),
                current.sequence()
            ))
        })?;
        crate::trust::store(ctx, &next)?;
        note(
            r,
            format!(
                "trust update applied from the bundle: trust state {} replaced by {} (signed by the root in force)",
                current.sequence(),
                crate::trust::describe(&next)
            ),
        );
        current = next;
        applied += 1;
    }
    Ok(applied)
}

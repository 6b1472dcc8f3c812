//! The agent's trust state (docs/trust.md): where it is kept, and trust updates applied to it.
//!
//! With `trust.state` in `agent.toml`, releases are checked against a
//! [`suitcase_trust::TrustState`] (its release signers per component and action, thresholds
//! and revocations) instead of fixed anchors, and a trust update offered like a release (a
//! SUIT envelope carrying the integrated `"#suitcase-trust"` document, signed by the root
//! keys) replaces that state. The state in force is `<state_dir>/trust.cbor` once a trust
//! update was applied, else the provisioned `trust.state` file, which the agent never writes.
//! The stored state is replaced atomically (write temp + fsync + rename + directory fsync,
//! [`crate::state::write_atomic`]): after a power cut either the old or the new state is in
//! force, never a torn one.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use suitcase_trust::{MAX_DOCUMENT_LEN, TRUST_PAYLOAD, TrustState};

use crate::ctx::Ctx;
use crate::error::AgentError;

/// The file in the state directory holding the trust state in force after a trust update.
pub const STORED: &str = "trust.cbor";

/// Reads and decodes a trust state file (the trust document `suitcase trust init` and
/// `--state-out` write), at most [`MAX_DOCUMENT_LEN`] bytes of it.
///
/// # Errors
/// A message naming the file and what is wrong.
pub fn load(path: &Path) -> Result<TrustState, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("trust state {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_DOCUMENT_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("trust state {}: {e}", path.display()))?;
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(format!(
            "trust state {}: larger than the largest trust document ({MAX_DOCUMENT_LEN} bytes)",
            path.display()
        ));
    }
    TrustState::decode(&bytes).map_err(|e| {
        format!(
            "trust state {}: {e} (a trust state is the file `suitcase trust init` or `--state-out` writes)",
            path.display()
        )
    })
}

/// The file holding the trust state in force: the stored one after a trust update, else the
/// provisioned one; `None` when the agent uses fixed anchors.
pub(crate) fn in_force_path(ctx: &Ctx) -> Option<PathBuf> {
    let provisioned = ctx.cfg.trust.state.as_ref()?;
    let stored = ctx.state.dir.join(STORED);
    Some(if stored.exists() {
        stored
    } else {
        provisioned.clone()
    })
}

/// The trust state in force, `None` with fixed anchors.
///
/// # Errors
/// [`AgentError::Local`] if the file cannot be read or decoded.
pub(crate) fn in_force(ctx: &Ctx) -> Result<Option<TrustState>, AgentError> {
    in_force_path(ctx)
        .map(|p| load(&p).map_err(AgentError::Local))
        .transpose()
}

/// Stores `state` as the trust state in force, atomically.
///
/// # Errors
/// [`AgentError::Local`], or the injected crash.
pub(crate) fn store(ctx: &Ctx, state: &TrustState) -> Result<(), AgentError> {
    let mut out = vec![0; MAX_DOCUMENT_LEN];
    let n = state
        .encode(&mut out)
        .map_err(|e| AgentError::Local(format!("cannot encode the trust state: {e}")))?;
    out.truncate(n);
    crate::state::write_atomic(&ctx.state.dir.join(STORED), &out)?;
    ctx.state.durability.wrote()
}

/// Whether an envelope is meant as a trust update: it carries the integrated trust document.
/// Nothing in it is trusted yet; a trust update is then authenticated by the root keys only
/// (`TrustState::apply_update`), and a release that names the trust store without this
/// payload is refused by the release check (`suitcase_trust::names_trust_store`).
pub(crate) fn is_trust_update(envelope: &[u8]) -> bool {
    suitcase_manifest::Envelope::decode(envelope)
        .is_ok_and(|e| e.integrated(TRUST_PAYLOAD).is_some())
}

/// A short description of a state for reports.
pub(crate) fn describe(s: &TrustState) -> String {
    format!(
        "trust state {}: {} of {} root key(s), {} release signer(s), release threshold {}, {} revoked key(s)",
        s.sequence(),
        s.root_threshold(),
        s.roots().len(),
        s.signers().len(),
        s.release_threshold(),
        s.revoked().len()
    )
}

//! Freshness at check-in (docs/trust.md, "Freshness"): with `trust.require_freshness`, every
//! check-in carries a fresh random nonce and the server's answer must carry a statement, signed
//! by a freshness signer of the trust state in force, binding that nonce, this device
//! (`trust.device_name`), the answer's offer (its sequence number here, its manifest digest at
//! Check) and the server's time (`suitcase_trust::freshness`).
//!
//! What each check stops (RFC 9019 §3/§4 freshness; NTIA step 3 +1, "cryptographic endpoint
//! verification (e.g. challenge/response) before update"):
//! * a **replayed offer** (an answer recorded earlier, sent again): its nonce is not this
//!   check-in's; the offer is refused and nothing is downloaded;
//! * **mix-and-match**: a statement issued to another device, or for another offer (sequence
//!   number at check-in, manifest digest at Check, before any payload is downloaded);
//! * an **indefinite freeze** (statements withheld or broken, so that the device never
//!   learns of an update): after `trust.stale_after_seconds` without a valid statement the
//!   agent reports staleness (an `error` event and a warning in its log, at every check-in
//!   until a valid statement arrives).
//!
//! The last valid statement is kept in `STATE_DIR/freshness.json` (written atomically): its
//! time is the time of day for `use-before` on a device without a real-time clock
//! (`trust.rtc = false`, RFC 8240 §3: devices that cannot tell the time by themselves), and
//! Check compares the offer it binds with the envelope it authenticated.

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::{AgentError, Stop, fail};

/// The record in the state directory.
pub const RECORD: &str = "freshness.json";
/// Bytes of the nonce the agent sends (128 bits).
pub const NONCE_LEN: usize = 16;
/// The reason code of an offer refused for freshness.
pub const REASON: &str = "freshness";

/// What the agent keeps of the last valid statement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// The server's time in the last valid statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<u64>,
    /// The agent's clock when that statement arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    received_at: Option<u64>,
    /// The offer it bound: sequence number and manifest digest (hex); `None`: no offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offer: Option<(u64, String)>,
    /// The agent's clock when it first checked in requiring freshness (the freeze clock
    /// starts there until a valid statement arrives).
    #[serde(default)]
    since: u64,
}

fn read(ctx: &Ctx) -> Record {
    // A record that cannot be read is treated as none: no time, no offer; the freeze clock
    // starts again (which only delays the staleness report by one bound).
    std::fs::read(ctx.state.dir.join(RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write(ctx: &Ctx, r: &Record) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec(r)
        .map_err(|e| AgentError::Local(format!("cannot encode {RECORD}: {e}")))?;
    crate::state::write_atomic(&ctx.state.dir.join(RECORD), &bytes)
}

/// A fresh nonce for this check-in when freshness is required, else `None`.
///
/// # Errors
/// [`AgentError::Local`] if the system has no randomness to give.
pub(crate) fn nonce(ctx: &Ctx) -> Result<Option<Vec<u8>>, AgentError> {
    if ctx.cfg.trust.freshness.is_none() {
        return Ok(None);
    }
    let mut n = vec![0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| AgentError::Local(format!("no randomness: {e}")))?;
    Ok(Some(n))
}

/// Checks the answer to the check-in that sent `nonce`: `Ok(())` when freshness is not
/// required or the statement is valid (then kept as the record), else why the answer's offer
/// is refused. A refusal also says whether the device is stale (no valid statement for
/// longer than the bound).
///
/// # Errors
/// [`AgentError::Local`] if the trust state or the record cannot be read or written.
pub(crate) fn accept(
    ctx: &Ctx,
    nonce: Option<&[u8]>,
    answer: &suitcase_protocol::CheckInAnswer,
) -> Result<Result<(), String>, AgentError> {
    let Some(cfg) = &ctx.cfg.trust.freshness else {
        return Ok(Ok(()));
    };
    let mut record = read(ctx);
    let now = ctx.now();
    if record.received_at.is_none() && record.since == 0 {
        record.since = now;
        write(ctx, &record)?;
    }
    let verdict = match (crate::trust::in_force(ctx)?, nonce, &answer.freshness) {
        (None, ..) => Err("trust.require_freshness is set but no trust state is in force".into()),
        (_, None, _) => Err("no nonce was sent".into()),
        (_, _, None) => Err(suitcase_trust::FreshnessError::Missing.to_string()),
        (Some(state), Some(nonce), Some(statement)) => state
            .verify_freshness(statement, nonce, &cfg.device)
            .and_then(|f| {
                f.check_sequence(answer.update.as_ref().map(|u| u.sequence_number))
                    .map(|()| f)
            })
            .map(|f| Record {
                time: Some(f.time),
                received_at: Some(now),
                offer: f.offer.map(|o| (o.sequence, hex::encode(o.digest))),
                since: record.since,
            })
            .map_err(|e| e.to_string()),
    };
    match verdict {
        Ok(fresh) => {
            write(ctx, &fresh)?;
            Ok(Ok(()))
        }
        Err(why) => {
            let last = record.received_at.unwrap_or(record.since);
            let without = now.saturating_sub(last);
            let mut message = format!("freshness: the answer is refused: {why}");
            if without >= cfg.stale_after.as_secs() {
                // RFC 9019 §4 (indefinite freeze): the device cannot learn of updates.
                message = format!(
                    "freshness: stale: no valid freshness statement for {without} s (more than trust.stale_after_seconds = {}); the device may be frozen on what it runs. {message}",
                    cfg.stale_after.as_secs()
                );
            }
            Ok(Err(message))
        }
    }
}

/// At Check: the authenticated envelope is the offer the last valid statement bound (its
/// manifest digest and sequence number), or the update is refused before any payload is
/// downloaded (mix-and-match of a statement and an offer). Not for offline bundles (no server
/// to ask; docs/trust.md).
///
/// # Errors
/// A Check failure with reason `freshness`.
pub(crate) fn check_offer(
    ctx: &Ctx,
    step: suitcase_protocol::Step,
    digest: &[u8],
    sequence: u64,
) -> Result<(), Stop> {
    if ctx.cfg.trust.freshness.is_none() {
        return Ok(());
    }
    let record = read(ctx);
    let want = Some((sequence, hex::encode(digest)));
    if record.offer == want {
        return Ok(());
    }
    Err(fail(
        step,
        REASON,
        format!(
            "the freshness statement binds {} but the offered envelope is sequence {sequence}, manifest digest {}: refused (mix-and-match)",
            record.offer.as_ref().map_or_else(
                || "no offer".to_owned(),
                |(s, d)| format!("sequence {s}, manifest digest {d}")
            ),
            hex::encode(digest),
        ),
    ))
}

/// The time of day for `use-before`: the agent's clock, or with `trust.rtc = false` the
/// server's time in the last valid statement (`None` before one arrived: a `use-before`
/// condition then fails, as the processor does without a time). Certificate validity is
/// judged on the agent's clock (`verified::authenticated`).
pub(crate) fn now(ctx: &Ctx) -> Option<u64> {
    match &ctx.cfg.trust.freshness {
        Some(f) if !f.rtc => read(ctx).time,
        _ => Some(ctx.now()),
    }
}

/// Whether an update under way may go on after this check-in: its journal is past Check (so
/// Check's [`check_offer`] will not run again) and the last valid statement, from this
/// check-in, must bind what the journal installs (its sequence number and its envelope's
/// manifest digest). The offer's release id is not signed and not in the statement: an
/// attacker relaying the fresh answer for another release under the journal's release id
/// would otherwise keep an install going that no statement binds (mix-and-match, RFC 9019
/// §4). `true` when freshness is not required or the journal is not past Check yet.
pub(crate) fn binds_journal(ctx: &Ctx, j: &crate::state::Journal) -> bool {
    use suitcase_protocol::Step;
    if ctx.cfg.trust.freshness.is_none() || matches!(j.step, Step::Receive | Step::Check) {
        return true;
    }
    let Ok(bytes) = crate::verified::read_envelope(ctx, j) else {
        return false;
    };
    let Ok(auth) = suitcase_manifest::Envelope::decode(&bytes).and_then(|e| e.authentication())
    else {
        return false;
    };
    read(ctx).offer == Some((j.sequence, hex::encode(auth.digest.bytes)))
}

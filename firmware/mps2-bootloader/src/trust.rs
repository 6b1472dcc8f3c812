//! Feature `trust`: the anchors in force live in the bootloader's protected trust area
//! (issue 18 item 2, docs/boot.md §7, docs/trust.md "The bootloader's trust state"), not in
//! this image.
//!
//! At every reset, **before any slot is verified**, a trust update the application staged in
//! the trust staging area is verified under the trust state in force (`TrustState::
//! apply_update` through `suitcase_device::boot_trust::apply_staged`: k-of-n root signatures,
//! a sequence above the one in force, the revocations kept) and committed power-fail safe with
//! `suitcase_boot::trust_store::commit_staged` (two CRC-checked copies; the older one is
//! rewritten), or refused and cleared. Then the boot path checks every image against the
//! release signers and thresholds of the state in force
//! (`suitcase_device::boot_trust::with_trusted_verifier`); an image refused because only a
//! revoked key signed it is named so on the UART (RFC 8240 §3: a compromised key stays
//! revoked for the device's life).
//!
//! A blank or corrupt trust area (no valid copy) boots nothing: the device was never
//! provisioned, and no built-in key stands in for the state.

use core::fmt::Write as _;

use mps2_board::flash::Flash;
use mps2_board::layout::MAX_TRUST_UPDATE;
use mps2_board::uart::Uart;
use suitcase_boot::trust_store::{Commit, CommitBuffers, TrustStaging, TrustStore, commit_staged};
use suitcase_device::boot_trust::{
    TRUST_RECORD_LEN, apply_staged, state_of, with_trusted_verifier,
};

use crate::{AUTH_BUF, Digests, Measured, decide, device, say, settle};

/// Commits a staged trust update, then decides what boots under the trust state in force and
/// reports it (as the built-in-anchor path does).
pub(crate) fn boot(uart: &mut Uart, flash: Flash, paint: bool) -> Result<(), &'static str> {
    let (area, staging) = flash.trust();
    let mut store = TrustStore::new(area, TRUST_RECORD_LEN)
        .map_err(|_| "the trust area does not hold two copies of the record")?;
    let mut staging =
        TrustStaging::new(staging).map_err(|_| "the trust staging area is unusable")?;
    let mut record = [0u8; TRUST_RECORD_LEN];
    let mut next = [0u8; TRUST_RECORD_LEN];
    let mut envelope = [0u8; MAX_TRUST_UPDATE];
    let committed = commit_staged(
        &mut store,
        &mut staging,
        CommitBuffers {
            record: &mut record,
            next: &mut next,
            envelope: &mut envelope,
        },
        apply_staged,
    );
    let in_force = match committed {
        Ok(Some((in_force, commit))) => {
            match commit {
                Commit::Nothing => {}
                Commit::Committed { from, to } => say(
                    uart,
                    &[
                        &"boot: trust update committed: trust state ",
                        &from,
                        &" -> ",
                        &to,
                        &"\n",
                    ],
                ),
                Commit::Refused(why) => {
                    let _ = writeln!(uart, "boot: trust update refused ({}): {why}", why.reason());
                }
            }
            in_force
        }
        Ok(None) => return Err("the trust area holds no trust state (never provisioned)"),
        Err(why) => {
            let _ = writeln!(uart, "boot: {why}");
            return Err("the trust area could not be read");
        }
    };
    // The record `commit_staged` loaded is the state in force; decode_record is strict (a
    // record that is not exactly one state's encoding boots nothing).
    let state = state_of(&record).map_err(|_| "the trust area's record is not a trust state")?;
    say(
        uart,
        &[&"boot: trust state ", &in_force.sequence, &" in force\n"],
    );
    let (components, identity) = device()?;
    with_trusted_verifier::<Digests, AUTH_BUF, _>(&state, identity, &components, None, |v| {
        let mut verifier = Measured {
            inner: &mut *v,
            paint,
            peak: 0,
            calls: 0,
        };
        // RFC 9019 §4, as on the built-in-anchor path: every image is verified before it is
        // invoked, here under the trust state in force.
        let decision = decide(flash, &mut verifier)?;
        if let Some((image, why)) = verifier.inner.last_refusal() {
            let _ = writeln!(uart, "boot: image {} refused: {why}", image.0);
        }
        settle(uart, decision, &verifier)
    })
}

//! Re-entering the chain after a restart: the journal names the state, the envelope stored
//! in the slot is authenticated again.

use super::fetched::verify;
use super::io::{Journal, Progress, SlotRole, Slots};
use super::offer::{Authenticated, Offer};
use super::staged::{Activated, Staged};
use super::{BLOCK, Device, Error, Step};
use crate::{HEADER_SIZE, SlotHeader};

/// Where [`resume`] re-entered the chain.
#[derive(Debug)]
pub enum Resumed<'e> {
    /// No update was in progress.
    Idle,
    /// The journal named an update whose envelope is not (wholly) in the slot yet: receive
    /// the offer again.
    Restart,
    /// A download was cut short; fetching continues after the durable blocks.
    Fetching(Authenticated<'e>),
    /// The update was staged and is still pending.
    Staged(Staged<'e>),
    /// The device reset into the new image, which runs on trial.
    Activated(Activated<'e>),
    /// The device reset, and the bootloader refused or reverted the new image: the previous
    /// image runs and the journal is cleared.
    Reverted,
}

/// Re-enters the typestate after a restart. Whatever the journal says, the envelope is read
/// from the slot into `buf` and goes through [`Offer::authenticate`] again; the journal only
/// says which state to rebuild, never that anything is authentic.
///
/// # Errors
/// [`Error::Refused`] if the stored envelope no longer passes (the journal is then cleared),
/// [`Error::Io`], or what [`super::Fetched::verify`] says for a staged image.
pub fn resume<'e, S: Slots, J: Journal>(
    device: &Device<'_>,
    slots: &mut S,
    journal: &mut J,
    buf: &'e mut [u8],
) -> Result<Resumed<'e>, Error> {
    let jio = |e| Error::Io(Step::Journal, e);
    let Some(progress) = journal.load().map_err(jio)? else {
        return Ok(Resumed::Idle);
    };
    let role = match progress {
        Progress::Activated => {
            if !slots.on_trial().map_err(|e| Error::Io(Step::Activate, e))? {
                journal.store(None).map_err(jio)?;
                return Ok(Resumed::Reverted);
            }
            SlotRole::Running
        }
        Progress::Fetching { .. } | Progress::Staged => SlotRole::Update,
    };
    let Some(envelope) = stored_envelope(slots, role, buf)? else {
        journal.store(None).map_err(jio)?;
        return Ok(Resumed::Restart);
    };
    let mut authenticated = match Offer::new(envelope).authenticate(device, slots) {
        Ok(a) => a,
        Err(e) => {
            journal.store(None).map_err(jio)?;
            return Err(e);
        }
    };
    match progress {
        Progress::Fetching { len, written } => {
            if len != authenticated.layout.slot_len
                || written < u64::from(authenticated.layout.image_offset)
            {
                journal.store(None).map_err(jio)?;
                return Ok(Resumed::Restart);
            }
            // The journal is written after each block; a cut between the two leaves one block
            // written that the journal does not count. It cannot be written again without an
            // erase, so then the download starts over.
            authenticated.durable = if written >= len || block_erased(slots, written)? {
                written
            } else {
                0
            };
            Ok(Resumed::Fetching(authenticated))
        }
        Progress::Staged => {
            let candidates = verify(
                authenticated.manifest,
                device,
                slots,
                authenticated.roles,
                authenticated.layout,
                authenticated.installed,
            )?;
            Ok(Resumed::Staged(Staged {
                manifest: candidates.manifest,
            }))
        }
        Progress::Activated => Ok(Resumed::Activated(Activated {
            manifest: authenticated.manifest,
        })),
    }
}

/// Reads the envelope of the slot image in `role` into `buf`.
fn stored_envelope<'e, S: Slots>(
    slots: &mut S,
    role: SlotRole,
    buf: &'e mut [u8],
) -> Result<Option<&'e [u8]>, Error> {
    let io = |e| Error::Io(Step::Verify, e);
    let mut raw = [0u8; HEADER_SIZE as usize];
    slots.read(role, 0, &mut raw).map_err(io)?;
    let Some(header) = SlotHeader::parse(&raw).ok().flatten() else {
        return Ok(None);
    };
    let Some(dst) = usize::try_from(header.envelope_len)
        .ok()
        .and_then(|n| buf.get_mut(..n))
    else {
        return Ok(None);
    };
    slots.read(role, u64::from(HEADER_SIZE), dst).map_err(io)?;
    Ok(Some(dst))
}

fn block_erased<S: Slots>(slots: &mut S, at: u64) -> Result<bool, Error> {
    let mut block = [0u8; BLOCK];
    slots
        .read(SlotRole::Update, at, &mut block)
        .map_err(|e| Error::Io(Step::Verify, e))?;
    Ok(block.iter().all(|b| *b == 0xFF))
}

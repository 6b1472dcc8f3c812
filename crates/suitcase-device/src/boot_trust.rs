//! The boot path under a trust state (issue 18 item 2; feature `trust`): the anchors in force
//! come from the bootloader's protected trust area (`suitcase_boot::trust_store`) instead of
//! being built into the bootloader.
//!
//! * [`apply_staged`] is the closure `suitcase_boot::trust_store::commit_staged` takes at reset:
//!   it decodes the record in force, applies the staged trust update with
//!   `TrustState::apply_update` (k-of-n **root** signatures under the state in force, a
//!   sequence above it, the revocations kept: docs/trust.md) and writes the next record.
//! * [`TrustedBootVerifier`] is [`BootVerifier`] with the state's release signers as anchors
//!   (each limited to its component prefix and actions) and its thresholds as the policy
//!   (`TrustState::with_release_policy`). When it refuses an image as unauthenticated and a
//!   COSE block of the slot's envelope carries the kid of a key the state revoked, the refusal
//!   names the revocation ([`BootTrustRefusal::Revoked`], reason `signature`), as the agent's
//!   does (RFC 8240 §3: a compromised key must be revocable for the device's life). The kid is
//!   an unprotected hint (RFC 9052 §3.1): it only names why an image that already failed was
//!   refused, it never makes one pass.
//!
//! `boot_verify.rs` is not changed: the state becomes the `anchors` and `policy` it already
//! takes.

use core::fmt;

use embedded_storage::nor_flash::ReadNorFlash;
use suitcase_boot::{ImageIndex, ImageVerifier, Measurement, VerifyError};
use suitcase_manifest::{Authentication, ComponentId, Reason};
use suitcase_trust::{KeyId, RECORD_SIZE, TrustError, TrustState};

use crate::{BootHash, BootRefusal, BootVerifier, DeviceIdentity, HEADER_SIZE, SlotHeader};

/// The record length of the trust area (`suitcase-trust`'s fixed record).
pub const TRUST_RECORD_LEN: usize = RECORD_SIZE;

/// A record buffer of another length than [`RECORD_SIZE`].
fn wrong_record_len<E>(_: E) -> TrustError {
    TrustError::Document {
        what: "the trust area's record is not 1,536 bytes",
    }
}

/// The trust state in force, from the trust area's record.
///
/// # Errors
/// [`TrustError`] if the record is not one state's (`TrustState::decode_record`: strict,
/// checked; a bootloader must then boot nothing).
pub fn state_of(record: &[u8]) -> Result<TrustState, TrustError> {
    let record: &[u8; RECORD_SIZE] = record.try_into().map_err(wrong_record_len)?;
    TrustState::decode_record(record)
}

/// What `commit_staged` calls at reset: `current` the record in force, `envelope` the staged
/// trust update, `next` the record to write. Returns the new trust sequence.
///
/// # Errors
/// Why the update is refused ([`TrustError`]: its `reason()` is the stable code; a
/// `Rollback` with `offered == current` is an update already in force, staged again).
pub fn apply_staged(current: &[u8], envelope: &[u8], next: &mut [u8]) -> Result<u64, TrustError> {
    let state = state_of(current)?;
    let new = state.apply_update(envelope)?;
    let out: &mut [u8; RECORD_SIZE] = next.try_into().map_err(wrong_record_len)?;
    *out = new.encode_record();
    Ok(new.sequence())
}

/// Why [`TrustedBootVerifier`] refused an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootTrustRefusal {
    /// Signed only by a key the trust state revoked (RFC 8240 §3).
    Revoked {
        /// The revoked key id in the envelope.
        kid: KeyId,
        /// The sequence of the trust state in force.
        by: u64,
    },
    /// Any other refusal of the boot path.
    Boot(BootRefusal),
}

impl BootTrustRefusal {
    /// The stable reason code (`signature` for a revoked key, as `manifest check` and the
    /// agent report it).
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Self::Revoked { kid, by } => Some(TrustError::Revoked { kid: *kid, by: *by }.reason()),
            Self::Boot(BootRefusal::Unauthenticated(e)) => Some(e.reason()),
            Self::Boot(_) => None,
        }
    }
}

impl fmt::Display for BootTrustRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Revoked { kid, by } => TrustError::Revoked { kid: *kid, by: *by }.fmt(f),
            Self::Boot(r) => r.fmt(f),
        }
    }
}

/// [`BootVerifier`] under a trust state's release signers; remembers the last refusal
/// ([`TrustedBootVerifier::last_refusal`]) so that the bootloader can say why.
#[derive(Debug)]
pub struct TrustedBootVerifier<'k, H, const AUTH: usize> {
    inner: BootVerifier<'k, H, AUTH>,
    state: &'k TrustState,
    last: Option<(ImageIndex, BootTrustRefusal)>,
}

impl<'k, H: BootHash, const AUTH: usize> TrustedBootVerifier<'k, H, AUTH> {
    /// The last image refused and why.
    pub fn last_refusal(&self) -> Option<(ImageIndex, BootTrustRefusal)> {
        self.last
    }

    /// Checks the slot as [`BootVerifier::check`] does, naming a revocation.
    ///
    /// # Errors
    /// [`BootTrustRefusal`].
    pub fn check<F: ReadNorFlash>(
        &self,
        image: ImageIndex,
        slot: &mut F,
    ) -> Result<Measurement, BootTrustRefusal> {
        match self.inner.check(image, slot) {
            Ok(m) => Ok(m),
            Err(BootRefusal::Unauthenticated(e)) if e.reason() == Reason::Signature => {
                match revoked_kid::<F, AUTH>(self.state, slot) {
                    Some(kid) => Err(BootTrustRefusal::Revoked {
                        kid,
                        by: self.state.sequence(),
                    }),
                    None => Err(BootTrustRefusal::Boot(BootRefusal::Unauthenticated(e))),
                }
            }
            Err(r) => Err(BootTrustRefusal::Boot(r)),
        }
    }
}

impl<H: BootHash, const AUTH: usize> ImageVerifier for TrustedBootVerifier<'_, H, AUTH> {
    fn verify<F: ReadNorFlash>(
        &mut self,
        image: ImageIndex,
        slot: &mut F,
    ) -> Result<Measurement, VerifyError> {
        match self.check(image, slot) {
            Ok(m) => Ok(m),
            Err(refusal) => {
                self.last = Some((image, refusal));
                Err(match refusal {
                    BootTrustRefusal::Boot(r) => r.into(),
                    BootTrustRefusal::Revoked { .. } => VerifyError::Rejected,
                })
            }
        }
    }
}

/// Calls `f` with a [`TrustedBootVerifier`] over `state`'s release signers and thresholds
/// (they borrow the state, hence the closure). `time`: the current time for `TrustPolicy`, if
/// the bootloader knows one.
pub fn with_trusted_verifier<H: BootHash, const AUTH: usize, R>(
    state: &TrustState,
    identity: DeviceIdentity<'_>,
    components: &[ComponentId<'_>],
    time: Option<u64>,
    f: impl FnOnce(&mut TrustedBootVerifier<'_, H, AUTH>) -> R,
) -> R {
    state.with_release_policy(time, |anchors, policy| {
        let mut v = TrustedBootVerifier {
            inner: BootVerifier::new(anchors, *policy, identity, components),
            state,
            last: None,
        };
        f(&mut v)
    })
}

/// The first revoked kid among the COSE blocks of the envelope in `slot`: the slot header, then
/// the envelope's first member, which must be the authentication wrapper (manifest §8.3), read
/// into `AUTH` bytes of RAM as the boot path does. `None` when anything does not parse.
fn revoked_kid<F: ReadNorFlash, const AUTH: usize>(
    state: &TrustState,
    slot: &mut F,
) -> Option<KeyId> {
    let mut raw = [0u8; HEADER_SIZE as usize];
    slot.read(0, &mut raw).ok()?;
    let header = SlotHeader::parse(&raw).ok().flatten()?;
    // tag 107 (2 bytes), a map head (at most 2 bytes), key 2, a bstr head (at most 3 bytes).
    let mut head = [0u8; 8];
    let len = head.len().min(usize::try_from(header.envelope_len).ok()?);
    slot.read(HEADER_SIZE, head.get_mut(..len)?).ok()?;
    let head = head.get(..len)?;
    let rest = head.strip_prefix(&[0xD8, 0x6B])?;
    let rest = match rest.first()? {
        0xA1..=0xB7 => rest.get(1..)?,
        0xB8 => rest.get(2..)?,
        _ => return None,
    };
    let rest = rest.strip_prefix(&[0x02])?;
    let (wrapper_len, skip) = match rest.first()? {
        b @ 0x40..=0x57 => (usize::from(b - 0x40), 1),
        0x58 => (usize::from(*rest.get(1)?), 2),
        0x59 => (
            usize::from(u16::from_be_bytes([*rest.get(1)?, *rest.get(2)?])),
            3,
        ),
        _ => return None,
    };
    let at = len - rest.len() + skip;
    if u64::try_from(at + wrapper_len).ok()? > u64::from(header.envelope_len) {
        return None;
    }
    let mut buf = [0u8; AUTH];
    let wrapper = buf.get_mut(..wrapper_len)?;
    slot.read(HEADER_SIZE + u32::try_from(at).ok()?, wrapper)
        .ok()?;
    let auth = Authentication::decode(wrapper).ok()?;
    auth.blocks()
        .flat_map(|b| b.signers())
        .filter_map(|s| s.headers.kid)
        .filter_map(|kid| KeyId::try_from(kid).ok())
        .find(|kid| state.revoked().contains(kid))
}

//! The trust document: the CBOR encoding of a [`TrustState`], carried by trust updates and
//! kept as the device's record.
//!
//! ```cddl
//! trust-document = {
//!   0 => uint,                ; sequence: equals the trust update's manifest sequence number
//!   1 => uint,                ; root threshold (k)
//!   2 => [+ key],             ; root keys (n), at most MAX_ROOTS
//!   3 => uint,                ; release threshold, every release
//!   4 => [* signer],          ; release signers, at most MAX_SIGNERS
//!   5 => [* rule],            ; per-component thresholds, at most MAX_RULES
//!   6 => [* bstr .size 8],    ; revoked key ids, at most MAX_REVOKED
//!   ? 7 => [+ key],           ; freshness signers (Ed25519), at most MAX_FRESHNESS_SIGNERS;
//!                             ; absent when there are none, so that documents written before
//!                             ; freshness existed decode (and re-encode) unchanged
//! }
//! key    = [kind: 1 (P-256) / 2 (Ed25519), bstr]
//! signer = [key, actions: 1 install / 2 invoke / 3 both, prefix: bstr]  ; h'' = every component
//! rule   = [prefix: bstr .cbor SUIT_Component_Identifier, threshold: uint]
//! ```
//!
//! Decoding is strict: exactly these keys in this order, definite lengths, and the bytes must
//! be the deterministic encoding (RFC 8949 §4.2.1) of what was decoded, so that one state has
//! exactly one encoding.

use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};
use suitcase_manifest::Actions;

use crate::state::{Key, KeyKind, Prefix, ReleaseSigner, ThresholdRule, TrustError, TrustState};
use crate::{
    KEY_ID_LEN, MAX_DOCUMENT_LEN, MAX_FRESHNESS_SIGNERS, MAX_REVOKED, MAX_ROOTS, MAX_RULES,
    MAX_SIGNERS, RECORD_SIZE,
};

fn actions_code(a: Actions) -> u8 {
    if a == Actions::ALL {
        3
    } else if a == Actions::INVOKE {
        2
    } else {
        1
    }
}

fn actions_from(code: u8) -> Option<Actions> {
    match code {
        1 => Some(Actions::INSTALL),
        2 => Some(Actions::INVOKE),
        3 => Some(Actions::ALL),
        _ => None,
    }
}

type EncResult = Result<(), minicbor::encode::Error<minicbor::encode::write::EndOfSlice>>;

fn encode_key(e: &mut Encoder<Cursor<&mut [u8]>>, k: &Key) -> EncResult {
    e.array(2)?.u64(k.kind().code())?.bytes(k.bytes())?;
    Ok(())
}

fn len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl TrustState {
    /// Encodes the state as a trust document into `out`; returns the length (at most
    /// [`MAX_DOCUMENT_LEN`]).
    ///
    /// # Errors
    /// [`TrustError::Capacity`] if `out` is too small.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, TrustError> {
        let mut e = Encoder::new(Cursor::new(out));
        self.encode_into(&mut e).map_err(|_| TrustError::Capacity {
            what: "bytes for the output buffer",
        })?;
        Ok(e.writer().position())
    }

    fn encode_into(&self, e: &mut Encoder<Cursor<&mut [u8]>>) -> EncResult {
        let fresh = self.freshness_signers();
        e.map(if fresh.is_empty() { 7 } else { 8 })?;
        e.u8(0)?.u64(self.sequence)?;
        e.u8(1)?.u8(self.root_threshold)?;
        e.u8(2)?.array(len(self.roots().len()))?;
        for k in self.roots() {
            encode_key(e, k)?;
        }
        e.u8(3)?.u8(self.release_threshold)?;
        e.u8(4)?.array(len(self.signers().len()))?;
        for s in self.signers() {
            e.array(3)?;
            encode_key(e, &s.key)?;
            e.u8(actions_code(s.actions))?
                .bytes(s.component.encoded())?;
        }
        e.u8(5)?.array(len(self.rules().len()))?;
        for r in self.rules() {
            e.array(2)?.bytes(r.component.encoded())?.u8(r.threshold)?;
        }
        e.u8(6)?.array(len(self.revoked().len()))?;
        for id in self.revoked() {
            e.bytes(id)?;
        }
        if !fresh.is_empty() {
            e.u8(7)?.array(len(fresh.len()))?;
            for k in fresh {
                encode_key(e, k)?;
            }
        }
        Ok(())
    }

    /// The fixed-size record for a bootloader's protected state: the trust document followed
    /// by zeros up to [`RECORD_SIZE`] bytes.
    pub fn encode_record(&self) -> [u8; RECORD_SIZE] {
        let mut out = [0; RECORD_SIZE];
        // Every state fits: MAX_DOCUMENT_LEN <= RECORD_SIZE is checked at compile time.
        let _ = self.encode(&mut out);
        out
    }

    /// Reads a record written by [`TrustState::encode_record`].
    ///
    /// # Errors
    /// As [`TrustState::decode`]; [`TrustError::Document`] if the padding is not zeros.
    pub fn decode_record(record: &[u8; RECORD_SIZE]) -> Result<Self, TrustError> {
        let mut d = Decoder::new(record);
        d.skip().map_err(|_| TrustError::Document {
            what: "the record does not start with a trust document",
        })?;
        let end = d.position();
        let (doc, padding) = record.split_at(end);
        if padding.iter().any(|b| *b != 0) {
            return Err(TrustError::Document {
                what: "the record's padding is not zeros",
            });
        }
        Self::decode(doc)
    }

    /// Decodes and checks a trust document.
    ///
    /// # Errors
    /// [`TrustError::Document`] naming what is wrong, [`TrustError::Capacity`] for a list
    /// over its bound.
    pub fn decode(bytes: &[u8]) -> Result<Self, TrustError> {
        if bytes.len() > MAX_DOCUMENT_LEN {
            return Err(TrustError::Document {
                what: "longer than the largest trust document",
            });
        }
        let mut d = Decoder::new(bytes);
        let state = decode_state(&mut d).map_err(|what| TrustError::Document { what })??;
        // One state, one encoding: re-encode and compare (RFC 8949 §4.2.1 deterministic
        // encoding; no trailing bytes).
        let mut again = [0u8; MAX_DOCUMENT_LEN];
        let n = state.encode(&mut again)?;
        if again.get(..n) != Some(bytes) {
            return Err(TrustError::Document {
                what: "not the deterministic encoding of a trust document (or trailing bytes)",
            });
        }
        state.check()?;
        Ok(state)
    }
}

type Step<T> = Result<T, &'static str>;

fn expect_key(d: &mut Decoder<'_>, k: u8) -> Step<()> {
    match d.u8() {
        Ok(v) if v == k => Ok(()),
        _ => Err("keys must be 0 to 6 (and 7), in order"),
    }
}

/// Why a document listing more than [`MAX_REVOKED`] key ids is refused (the list only grows,
/// see `TrustState::check_successor`).
const TOO_MANY_REVOKED: &str = "at most 16 revoked keys (revocation is permanent: remove a release signer instead of revoking it)";

fn bounded_array(d: &mut Decoder<'_>, max: usize, what: &'static str) -> Step<usize> {
    let n = d
        .array()
        .map_err(|_| what)?
        .ok_or("indefinite-length arrays are not allowed")?;
    let n = usize::try_from(n).map_err(|_| what)?;
    if n > max {
        return Err(what);
    }
    Ok(n)
}

fn decode_key(d: &mut Decoder<'_>) -> Step<Result<Key, TrustError>> {
    if d.array().map_err(|_| "a key must be [kind, bstr]")? != Some(2) {
        return Err("a key must be [kind, bstr]");
    }
    let kind = d
        .u64()
        .ok()
        .and_then(KeyKind::from_code)
        .ok_or("a key kind must be 1 (P-256) or 2 (Ed25519)")?;
    let bytes = d.bytes().map_err(|_| "a key must be [kind, bstr]")?;
    Ok(Key::new(kind, bytes))
}

fn decode_state(d: &mut Decoder<'_>) -> Step<Result<TrustState, TrustError>> {
    let entries = d.map().map_err(|_| "a trust document is a CBOR map")?;
    if entries != Some(7) && entries != Some(8) {
        return Err("a trust document is a map of 7 or 8 entries");
    }
    expect_key(d, 0)?;
    let sequence = d
        .u64()
        .map_err(|_| "the sequence must be an unsigned integer")?;
    expect_key(d, 1)?;
    let root_threshold = d
        .u8()
        .map_err(|_| "the root threshold must be a small integer")?;
    expect_key(d, 2)?;
    let n = bounded_array(d, MAX_ROOTS, "at most 4 root keys")?;
    let mut roots = [None; MAX_ROOTS];
    for slot in roots.iter_mut().take(n) {
        match decode_key(d)? {
            Ok(k) => *slot = Some(k),
            Err(e) => return Ok(Err(e)),
        }
    }
    let mut keys = [Key::EMPTY; MAX_ROOTS];
    let mut count = 0;
    for (dst, k) in keys.iter_mut().zip(roots.iter().flatten()) {
        *dst = *k;
        count += 1;
    }
    let mut state = match TrustState::genesis(keys.get(..count).unwrap_or(&[]), root_threshold) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    state.sequence = sequence;
    expect_key(d, 3)?;
    state.release_threshold = d
        .u8()
        .map_err(|_| "the release threshold must be a small integer")?;
    expect_key(d, 4)?;
    let n = bounded_array(d, MAX_SIGNERS, "at most 8 release signers")?;
    for _ in 0..n {
        if d.array()
            .map_err(|_| "a signer must be [key, actions, prefix]")?
            != Some(3)
        {
            return Err("a signer must be [key, actions, prefix]");
        }
        let key = match decode_key(d)? {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let actions = d
            .u8()
            .ok()
            .and_then(actions_from)
            .ok_or("signer actions must be 1 (install), 2 (invoke) or 3 (both)")?;
        let prefix = d.bytes().map_err(|_| "a signer prefix must be a bstr")?;
        let component = if prefix.is_empty() {
            Prefix::ALL
        } else {
            match Prefix::new(prefix) {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            }
        };
        let before = state.signer_count;
        if let Err(e) = state.add_signer(ReleaseSigner {
            key,
            actions,
            component,
        }) {
            return Ok(Err(e));
        }
        if state.signer_count == before {
            return Err("a release signer is listed twice");
        }
    }
    expect_key(d, 5)?;
    let n = bounded_array(d, MAX_RULES, "at most 4 threshold rules")?;
    for _ in 0..n {
        if d.array()
            .map_err(|_| "a rule must be [prefix, threshold]")?
            != Some(2)
        {
            return Err("a rule must be [prefix, threshold]");
        }
        let prefix = d.bytes().map_err(|_| "a rule prefix must be a bstr")?;
        let component = match Prefix::new(prefix) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let threshold = d
            .u8()
            .map_err(|_| "a rule threshold must be a small integer")?;
        if let Err(e) = state.add_rule(ThresholdRule {
            component,
            threshold,
        }) {
            return Ok(Err(e));
        }
    }
    expect_key(d, 6)?;
    let n = bounded_array(d, MAX_REVOKED, TOO_MANY_REVOKED)?;
    for _ in 0..n {
        let id: [u8; KEY_ID_LEN] = d
            .bytes()
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("a revoked key id is an 8-byte bstr")?;
        if state.revoked().contains(&id) {
            return Err("a revoked key id is listed twice");
        }
        let Some(slot) = state.revoked.get_mut(usize::from(state.revoked_count)) else {
            return Err(TOO_MANY_REVOKED);
        };
        *slot = id;
        state.revoked_count = state.revoked_count.saturating_add(1);
    }
    if entries == Some(8) {
        expect_key(d, 7)?;
        let n = bounded_array(d, MAX_FRESHNESS_SIGNERS, "at most 2 freshness signers")?;
        if n == 0 {
            return Err("an empty freshness-signer list is omitted, not written");
        }
        for _ in 0..n {
            let key = match decode_key(d)? {
                Ok(k) => k,
                Err(e) => return Ok(Err(e)),
            };
            if state.freshness_signers().contains(&key) {
                return Err("a freshness signer is listed twice");
            }
            if let Err(e) = state.add_freshness_signer(key) {
                return Ok(Err(e));
            }
        }
    }
    Ok(Ok(state))
}

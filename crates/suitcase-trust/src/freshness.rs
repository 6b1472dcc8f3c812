//! Freshness statements: a device without a trustworthy clock learns that an offer is current.
//!
//! At check-in the device sends a fresh random nonce; the update server answers with a
//! statement signed by a **freshness signer** of the device's trust state, binding that nonce,
//! the device (the name it is registered under), the offer (the offered manifest's digest and
//! sequence number, or "no offer") and the server's time. This is the challenge/response the
//! NTIA model asks of the +1 tier at step 3, Send ("cryptographic endpoint verification (e.g.
//! challenge/response) before update"), and the freshness RFC 9019 §3 and §4 call for: an
//! attacker who replays an old offer (the nonce differs), hands one device's statement to
//! another (the device differs), pairs a statement with another offer (digest and sequence
//! differ) or freezes a device on an old release by withholding statements (no valid statement
//! arrives; the agent reports staleness) is refused. RFC 8240 §3 asks the same of devices that
//! must judge "recent" without a real-time clock: `use-before` then uses the statement's time.
//!
//! ```cddl
//! freshness-statement = [
//!   claims: bstr .cbor freshness-claims,
//!   signature: COSE_Sign1_Tagged,   ; payload nil: detached, it is the claims bstr's content
//! ]
//! freshness-claims = {
//!   1 => bstr .size (8..32),        ; the nonce the device sent
//!   2 => tstr,                      ; the device, by its registered name (at most 800 bytes)
//!   3 => [sequence: uint, manifest-digest: bstr .size (1..64)] / null,  ; offer / no offer
//!   4 => uint,                      ; server time, seconds since 1970 (UTC)
//! }
//! ```
//!
//! The COSE_Sign1 (RFC 9052 §4.2) is read by `suitcase-manifest`'s COSE code (the SUIT
//! authentication blocks use the same detached mode, manifest §8.3): alg in the protected
//! header, Ed25519 (-19, or the older EdDSA -8), the kid (key id) in the unprotected one, an
//! empty external AAD. Claims are decoded strictly: these keys in this order, definite lengths,
//! the deterministic encoding (RFC 8949 §4.2.1) and no trailing bytes.

use core::fmt;

use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};
use suitcase_manifest::{AuthBlock, BlockKind, Reason};

use crate::state::{Key, KeyId, TrustError, TrustState};

/// The shortest nonce a device may send (64 bits: a guess succeeds with probability 2^-64).
pub const NONCE_MIN: usize = 8;
/// The longest nonce a device may send.
pub const NONCE_MAX: usize = 32;
/// The longest device name a statement carries, in bytes (200 characters of up to 4 bytes:
/// `suitcase_protocol::limits::NAME_MAX_CHARS`).
pub const MAX_DEVICE_LEN: usize = 800;
/// The longest manifest digest an offer binds (SHA-512 / SHAKE256-512).
pub const MAX_DIGEST_LEN: usize = 64;
/// The largest statement (claims at their bounds, plus the COSE_Sign1).
pub const MAX_STATEMENT_LEN: usize = 1100;

/// COSE algorithm Ed25519 (RFC 9864).
const ALG_ED25519: i64 = -19;
/// COSE algorithm EdDSA (RFC 9053), which RFC 9864 deprecates in favour of Ed25519.
const ALG_EDDSA: i64 = -8;
/// The protected header suitcase writes: `{1: -19}` (alg: Ed25519).
const PROTECTED: [u8; 3] = [0xa1, 0x01, 0x32];

/// Why a freshness statement was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreshnessError {
    /// No statement came with the answer.
    Missing,
    /// The trust state lists no freshness signer.
    NoSigner,
    /// The statement is not one (what is wrong).
    Malformed {
        /// What is wrong.
        what: &'static str,
    },
    /// No freshness signer of the trust state signed it.
    Signature,
    /// It answers another nonce: a replayed (recorded) answer.
    Nonce,
    /// It was issued to another device (mix-and-match).
    Device,
    /// It binds another offer than the one at hand (mix-and-match).
    Offer,
}

impl FreshnessError {
    /// The stable reason code.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Malformed { .. } => Reason::Malformed,
            Self::Device => Reason::DeviceId,
            Self::Offer => Reason::Digest,
            Self::Missing | Self::NoSigner | Self::Signature | Self::Nonce => Reason::Signature,
        }
    }
}

impl fmt::Display for FreshnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("the answer carries no freshness statement"),
            Self::NoSigner => f.write_str(
                "the trust state lists no freshness signer (add the server's with `suitcase trust update --add-freshness-signer`)",
            ),
            Self::Malformed { what } => write!(f, "malformed: {what}"),
            Self::Signature => f.write_str("not signed by a freshness signer of the trust state"),
            Self::Nonce => f.write_str(
                "it answers another nonce than the one this check-in sent: a replayed answer",
            ),
            Self::Device => f.write_str("it was issued to another device"),
            Self::Offer => f.write_str("it binds another offer (manifest digest or sequence number)"),
        }
    }
}

impl core::error::Error for FreshnessError {}

impl From<FreshnessError> for TrustError {
    fn from(e: FreshnessError) -> Self {
        Self::Freshness(e)
    }
}

/// The offer a statement binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offered<'a> {
    /// The offered manifest's sequence number.
    pub sequence: u64,
    /// The offered manifest's digest (the SUIT_Digest the authentication wrapper carries).
    pub digest: &'a [u8],
}

/// What a verified statement says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness<'a> {
    /// The server's time, seconds since 1970.
    pub time: u64,
    /// The offer, or `None` for "no offer".
    pub offer: Option<Offered<'a>>,
    /// The freshness signer that signed it.
    pub signer: KeyId,
}

impl Freshness<'_> {
    /// Whether the statement binds the offer with `sequence` (known at check-in).
    ///
    /// # Errors
    /// [`FreshnessError::Offer`] if it binds another offer or none.
    pub fn check_sequence(&self, sequence: Option<u64>) -> Result<(), FreshnessError> {
        if self.offer.map(|o| o.sequence) == sequence {
            Ok(())
        } else {
            Err(FreshnessError::Offer)
        }
    }
}

/// The claims of a statement, as the server writes them.
#[derive(Clone, Copy, Debug)]
pub struct Claims<'a> {
    /// The nonce the device sent.
    pub nonce: &'a [u8],
    /// The device's registered name.
    pub device: &'a str,
    /// The offer, or `None`.
    pub offer: Option<Offered<'a>>,
    /// The server's time.
    pub time: u64,
}

type EncResult = Result<(), minicbor::encode::Error<minicbor::encode::write::EndOfSlice>>;

impl Claims<'_> {
    /// Encodes the claims into `out`; the length.
    ///
    /// # Errors
    /// [`FreshnessError::Malformed`] for a nonce, device name or digest outside its bounds,
    /// or an `out` too small.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, FreshnessError> {
        if !(NONCE_MIN..=NONCE_MAX).contains(&self.nonce.len()) {
            return Err(malformed("the nonce is not 8 to 32 bytes"));
        }
        if self.device.is_empty() || self.device.len() > MAX_DEVICE_LEN {
            return Err(malformed(
                "the device name is empty or longer than 800 bytes",
            ));
        }
        if self
            .offer
            .is_some_and(|o| o.digest.is_empty() || o.digest.len() > MAX_DIGEST_LEN)
        {
            return Err(malformed(
                "the manifest digest is empty or longer than 64 bytes",
            ));
        }
        let mut e = Encoder::new(Cursor::new(out));
        self.encode_into(&mut e)
            .map_err(|_| malformed("the output buffer is too small"))?;
        Ok(e.writer().position())
    }

    fn encode_into(&self, e: &mut Encoder<Cursor<&mut [u8]>>) -> EncResult {
        e.map(4)?;
        e.u8(1)?.bytes(self.nonce)?;
        e.u8(2)?.str(self.device)?;
        e.u8(3)?;
        match self.offer {
            Some(o) => {
                e.array(2)?.u64(o.sequence)?.bytes(o.digest)?;
            }
            None => {
                e.null()?;
            }
        }
        e.u8(4)?.u64(self.time)?;
        Ok(())
    }
}

/// Writes a statement: `claims`, signed by the Ed25519 key with id `kid` through `sign`
/// (which gets the COSE Sig_structure, RFC 9052 §4.4, and returns the 64-byte signature).
/// Returns the length written into `out` (at most [`MAX_STATEMENT_LEN`]).
///
/// # Errors
/// As [`Claims::encode`].
pub fn encode_statement(
    claims: &Claims<'_>,
    kid: &KeyId,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
    out: &mut [u8],
) -> Result<usize, FreshnessError> {
    let mut payload = [0u8; MAX_STATEMENT_LEN];
    let n = claims.encode(&mut payload)?;
    let payload = payload.get(..n).unwrap_or(&[]);
    let mut tbs = [0u8; MAX_STATEMENT_LEN + 32];
    let t = sig_structure(&PROTECTED, payload, &mut tbs)?;
    let signature = sign(tbs.get(..t).unwrap_or(&[]));
    let mut e = Encoder::new(Cursor::new(out));
    let r: EncResult = (|| {
        e.array(2)?.bytes(payload)?;
        // COSE_Sign1_Tagged = #6.18([protected, unprotected, payload: nil, signature])
        e.tag(minicbor::data::Tag::new(18))?.array(4)?;
        e.bytes(&PROTECTED)?;
        e.map(1)?.u8(4)?.bytes(kid)?;
        e.null()?.bytes(&signature)?;
        Ok(())
    })();
    r.map_err(|_| malformed("the output buffer is too small"))?;
    Ok(e.writer().position())
}

/// Sig_structure for a COSE_Sign1 with an empty external AAD (RFC 9052 §4.4):
/// `["Signature1", protected, h'', payload]`.
fn sig_structure(
    protected: &[u8],
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, FreshnessError> {
    let mut e = Encoder::new(Cursor::new(out));
    let r: EncResult = (|| {
        e.array(4)?
            .str("Signature1")?
            .bytes(protected)?
            .bytes(&[])?
            .bytes(payload)?;
        Ok(())
    })();
    r.map_err(|_| malformed("the statement is too large"))?;
    Ok(e.writer().position())
}

fn malformed(what: &'static str) -> FreshnessError {
    FreshnessError::Malformed { what }
}

impl TrustState {
    /// Verifies a freshness statement against this state's freshness signers, for the check-in
    /// that sent `nonce` from the device registered as `device`. The caller then compares the
    /// offer ([`Freshness::check_sequence`] at check-in, the digest once the envelope is
    /// authenticated) and uses [`Freshness::time`] as the time of day.
    ///
    /// Checks, in order: the size bound; the COSE_Sign1 (RFC 9052 §4.2; alg protected,
    /// Ed25519, no unknown critical header) verifies with a freshness signer (RFC 9019 §4: the
    /// device authenticates the freshness evidence); the nonce is the one sent (a recorded
    /// answer replayed later carries an old one, NTIA step 3 +1 challenge/response); the device
    /// is this one (a statement issued to another device is refused).
    ///
    /// # Errors
    /// The first check that fails, as a [`FreshnessError`].
    pub fn verify_freshness<'a>(
        &self,
        statement: &'a [u8],
        nonce: &[u8],
        device: &str,
    ) -> Result<Freshness<'a>, FreshnessError> {
        if self.freshness_signers().is_empty() {
            return Err(FreshnessError::NoSigner);
        }
        if statement.len() > MAX_STATEMENT_LEN {
            return Err(malformed("longer than the largest statement"));
        }
        let mut d = Decoder::new(statement);
        if d.array().ok() != Some(Some(2)) {
            return Err(malformed("a statement is an array [claims, COSE_Sign1]"));
        }
        let payload = d
            .bytes()
            .map_err(|_| malformed("the claims are not a byte string"))?;
        let cose = statement.get(d.position()..).unwrap_or(&[]);
        // AuthBlock::decode refuses trailing bytes, so nothing follows the COSE_Sign1.
        let block = AuthBlock::decode(cose)
            .map_err(|_| malformed("the signature is not a COSE_Sign1 with a detached payload"))?;
        if block.kind != BlockKind::Sign1 {
            return Err(malformed("the signature is not a COSE_Sign1"));
        }
        let signer = block
            .signers()
            .next()
            .ok_or(malformed("the COSE_Sign1 is unreadable"))?;
        let h = signer.headers;
        // RFC 9052 §3.1: crit labels must be understood; alg must be protected (as the SUIT
        // blocks require, `cose.rs`), or it could be swapped without breaking the signature.
        if h.unknown_critical.is_some() {
            return Err(malformed("a critical header is not understood"));
        }
        if !h.alg_protected || !matches!(h.alg, Some(ALG_ED25519 | ALG_EDDSA)) {
            return Err(malformed(
                "the algorithm is not a protected Ed25519 (-19) or EdDSA (-8)",
            ));
        }
        let mut tbs = [0u8; MAX_STATEMENT_LEN + 32];
        let t = sig_structure(h.protected, payload, &mut tbs)?;
        let tbs = tbs.get(..t).unwrap_or(&[]);
        let sig = <[u8; 64]>::try_from(signer.signature)
            .map_err(|_| malformed("an Ed25519 signature is 64 bytes"))?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        // The kid is an unprotected hint (RFC 9052 §3.1): it selects the key to try, never
        // makes a signature count.
        let by = self
            .freshness_signers()
            .iter()
            .filter(|k| h.kid.is_none_or(|kid| kid == k.id().as_slice()))
            .find(|k| verifies(k, tbs, &sig))
            .ok_or(FreshnessError::Signature)?;
        let claims = decode_claims(payload)?;
        if claims.nonce != nonce {
            return Err(FreshnessError::Nonce);
        }
        if claims.device != device {
            return Err(FreshnessError::Device);
        }
        Ok(Freshness {
            time: claims.time,
            offer: claims.offer,
            signer: by.id(),
        })
    }
}

fn verifies(key: &Key, tbs: &[u8], sig: &ed25519_dalek::Signature) -> bool {
    <[u8; 32]>::try_from(key.bytes())
        .ok()
        .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
        // verify_strict refuses small-order keys and non-canonical signatures.
        .is_some_and(|k| k.verify_strict(tbs, sig).is_ok())
}

fn decode_claims(payload: &[u8]) -> Result<Claims<'_>, FreshnessError> {
    let mut d = Decoder::new(payload);
    let bad = |what| move |_| malformed(what);
    if d.map().map_err(bad("the claims are not a map"))? != Some(4) {
        return Err(malformed("the claims are a map of 4 entries"));
    }
    let key = |d: &mut Decoder<'_>, k: u8| match d.u8() {
        Ok(v) if v == k => Ok(()),
        _ => Err(malformed("claim keys must be 1 to 4, in order")),
    };
    key(&mut d, 1)?;
    let nonce = d.bytes().map_err(bad("the nonce is not a byte string"))?;
    key(&mut d, 2)?;
    let device = d.str().map_err(bad("the device is not a text string"))?;
    key(&mut d, 3)?;
    let offer = match d.datatype().map_err(bad("the offer is missing"))? {
        minicbor::data::Type::Null => {
            d.null().map_err(bad("the offer is not null"))?;
            None
        }
        _ => {
            if d.array().ok() != Some(Some(2)) {
                return Err(malformed(
                    "the offer is [sequence, manifest digest] or null",
                ));
            }
            let sequence = d.u64().map_err(bad("the offer's sequence is not a uint"))?;
            let digest = d
                .bytes()
                .map_err(bad("the offer's digest is not a byte string"))?;
            Some(Offered { sequence, digest })
        }
    };
    key(&mut d, 4)?;
    let time = d.u64().map_err(bad("the time is not a uint"))?;
    let claims = Claims {
        nonce,
        device,
        offer,
        time,
    };
    // One statement, one encoding (RFC 8949 §4.2.1), which also refuses trailing bytes and
    // out-of-bounds sizes (Claims::encode checks them).
    let mut again = [0u8; MAX_STATEMENT_LEN];
    let n = claims.encode(&mut again)?;
    if again.get(..n) != Some(payload) {
        return Err(malformed(
            "the claims are not deterministically encoded (or have trailing bytes)",
        ));
    }
    Ok(claims)
}

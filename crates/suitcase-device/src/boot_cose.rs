//! One built-in key, COSE_Sign1 read from flash by the boot path's own CBOR reader (issue 20):
//! the authentication of the smallest bootloader, without the manifest crate's COSE decoder.
//!
//! [`OneKey`] reads the authentication wrapper where it lies in the slot, a CBOR item head at
//! a time (nothing is copied into RAM but the 64-byte signature), and accepts it only in the
//! shape the manifest crate's decoder also accepts, narrowed to what a single-key bootloader
//! needs:
//!
//! * the wrapper is `[bstr .cbor SUIT_Digest, + bstr .cbor COSE_Sign1_Tagged]` (manifest
//!   §8.3); a wrapper with the digest alone is an unsigned envelope and is refused (manifest
//!   §8.3);
//! * each block is a COSE_Sign1 (tag 18, RFC 9052 §4.2) with a detached (nil) payload (manifest
//!   §8.3), a protected header holding the algorithm (RFC 9052 §3.1; the manifest crate
//!   requires it protected too) and optionally a kid, an unprotected header holding at most a
//!   kid, no label twice in a bucket or across both (RFC 9052 §3);
//! * anything else in a block (COSE_Sign, COSE_Mac0, crit, x5chain, another label) refuses the
//!   whole envelope rather than skipping the block: the lean path must never accept an
//!   envelope the full processor refuses, and it does not interpret those;
//! * a block whose algorithm the key does not verify is skipped (manifest §8.3: another block
//!   may be for this device), one that verifies under the key is enough (the single
//!   trusted-key model, manifest §9; `TrustPolicy::default`'s threshold of 1);
//! * the manifest bstr is hashed and compared with the SUIT_Digest before any signature is
//!   checked, as [`Anchors`](crate::Anchors) does.
//!
//! The Sig_structure (RFC 9052 §4.4: `["Signature1", protected, h'', payload]`, the payload the
//! encoded SUIT_Digest) is streamed into the key's check ([`BootKey`]): ES256 hashes it with
//! SHA-256 (RFC 9053 §2.1), Ed25519 feeds it to its SHA-512 (RFC 8032 §5.1.7).

use suitcase_manifest::codepoints::{header, tag};
use suitcase_manifest::{AuthError, ComponentId, Error as ManifestError};

use embedded_storage::nor_flash::ReadNorFlash;

use crate::boot_verify::{Authority, BootHash, BootRefusal, Cursor, Expected, Span, read_digest};

/// A public key the lean boot path checks COSE_Sign1 blocks with.
pub trait BootKey {
    /// A signature check in progress: the Sig_structure is fed to it, then it decides.
    type Check<'a>: BootCheck
    where
        Self: 'a;

    /// Whether this key verifies the COSE algorithm `alg` (RFC 9053).
    fn accepts(&self, alg: i64) -> bool;

    /// Starts checking `signature` (64 bytes: ECDSA P-256 `r || s`, RFC 9053 §2.1; Ed25519
    /// `R || S`, RFC 8032 §5.1.6); `None` if it cannot be valid whatever the message (e.g.
    /// Ed25519's S not below L).
    fn start(&self, signature: &[u8; 64]) -> Option<Self::Check<'_>>;
}

/// A signature check fed the signed message a piece at a time.
pub trait BootCheck {
    /// Absorbs the next bytes of the message.
    fn update(&mut self, data: &[u8]);
    /// Whether the signature is valid for the message fed.
    fn finish(self) -> bool;
}

/// The bootloader's one trusted key (manifest §9, the single trusted-key model: it may
/// authorise every component).
#[derive(Debug)]
pub struct OneKey<'k, K>(pub &'k K);

/// Why the authentication failed, as the manifest crate names it.
fn refused(e: AuthError) -> BootRefusal {
    BootRefusal::Unauthenticated(ManifestError::Unauthenticated(e))
}

fn unsupported(what: &'static str, id: i64) -> BootRefusal {
    BootRefusal::Unsupported { what, id }
}

impl<K: BootKey> Authority for OneKey<'_, K> {
    type Signers = ();

    fn authenticate<H: BootHash, F: ReadNorFlash, const AUTH: usize>(
        &self,
        c: &mut Cursor<'_, F>,
        wrapper: Span,
        manifest: Span,
    ) -> Result<(), BootRefusal> {
        let outer = c.enter(wrapper);
        let n = c.expect(4, text!("authentication wrapper must be an array"))?;
        if n == 0 {
            return Err(c.malformed(text!(
                "authentication wrapper must start with a SUIT_Digest"
            )));
        }
        let digest = c.bstr(text!("SUIT_Digest must be a bstr"))?;
        let back = c.enter(digest);
        let (algorithm, bytes) = read_digest(c)?;
        c.leave(back, text!("trailing bytes after SUIT_Digest"))?;
        // Manifest §8.3: "the SUIT_Digest ... of the manifest", checked before the signatures
        // (cheap first) and before anything in the manifest is parsed (§6.2).
        if !c.digest_is::<H>(manifest, algorithm, Expected::Flash(bytes))? {
            return Err(BootRefusal::ManifestDigestMismatch);
        }
        let mut verified = false;
        for _ in 1..n {
            let block = c.bstr(text!("authentication block must be a bstr"))?;
            let back = c.enter(block);
            verified |= self.sign1(c, digest)?;
            c.leave(back, text!("trailing bytes after authentication block"))?;
        }
        c.leave(outer, text!("trailing bytes after authentication wrapper"))?;
        match (n, verified) {
            // Manifest §8.3: the digest alone is an unsigned envelope.
            (1, _) => Err(refused(AuthError::NoAuthenticationBlock)),
            (_, false) => Err(refused(AuthError::NoTrustedSignature)),
            (_, true) => Ok(()),
        }
    }

    fn authorize(&self, (): (), _: &ComponentId<'_>) -> Result<(), BootRefusal> {
        // Manifest §9: the single trusted key may authorise every component.
        Ok(())
    }
}

impl<K: BootKey> OneKey<'_, K> {
    /// One COSE_Sign1 block at the cursor: whether it verifies under the key over the
    /// SUIT_Digest at `payload` (the content of the wrapper's first bstr).
    fn sign1<F: ReadNorFlash>(
        &self,
        c: &mut Cursor<'_, F>,
        payload: Span,
    ) -> Result<bool, BootRefusal> {
        match c.head()? {
            (6, t) if t == tag::COSE_SIGN1 => {}
            (6, t) => {
                return Err(unsupported(
                    text!("authentication block other than COSE_Sign1"),
                    i64::try_from(t).unwrap_or(i64::MAX),
                ));
            }
            _ => {
                return Err(c.malformed(text!(
                    "authentication block must be a tagged COSE structure"
                )));
            }
        }
        if c.expect(4, text!("COSE_Sign1 must be an array"))? != 4 {
            return Err(c.malformed(text!("COSE structure has the wrong number of fields")));
        }
        // RFC 9052 §3: protected = bstr .cbor header_map (here: alg, and a kid).
        let protected = c.bstr(text!("protected header must be a bstr"))?;
        let back = c.enter(protected);
        let (mut alg, mut kid) = (None, false);
        let n = if protected.len == 0 {
            0
        } else {
            c.expect(5, text!("protected header must be a map"))?
        };
        for _ in 0..n {
            match c.int(text!("COSE header label must be an integer"))? {
                header::ALG if alg.is_none() => {
                    alg = Some(c.int(text!("algorithm must be an integer"))?)
                }
                header::KID if !kid => {
                    c.bstr(text!("kid must be a bstr"))?;
                    kid = true;
                }
                header::ALG | header::KID => {
                    return Err(c.malformed(text!("duplicate COSE header label")));
                }
                label => return Err(unsupported(text!("COSE header label"), label)),
            }
        }
        c.leave(back, text!("trailing bytes after protected header"))?;
        // RFC 9052 §3.1: alg protected (the manifest crate requires it, so it cannot be swapped).
        let alg = alg.ok_or(c.malformed(text!("COSE layer has no protected alg")))?;
        // The unprotected bucket: a kid at most (RFC 9052 §3: labels unique across buckets).
        for _ in 0..c.expect(5, text!("unprotected header must be a map"))? {
            match c.int(text!("COSE header label must be an integer"))? {
                header::KID if !kid => {
                    c.bstr(text!("kid must be a bstr"))?;
                    kid = true;
                }
                header::KID => return Err(c.malformed(text!("duplicate COSE header label"))),
                label => return Err(unsupported(text!("COSE header label"), label)),
            }
        }
        // Manifest §8.3: the blocks are used in detached payload mode.
        if c.head()? != (7, 22) {
            return Err(c.malformed(text!("COSE payload must be nil (detached)")));
        }
        let signature = c.bstr(text!("signature must be a bstr"))?;
        if !self.0.accepts(alg) {
            // Manifest §8.3: a block for another algorithm does not invalidate the envelope.
            return Ok(false);
        }
        let mut sig = [0u8; 64];
        if signature.len != 64 {
            return Ok(false);
        }
        c.flash
            .read(signature.at, &mut sig)
            .map_err(crate::boot_verify::flash)?;
        let Some(mut check) = self.0.start(&sig) else {
            return Ok(false);
        };
        // RFC 9052 §4.4: Sig_structure = ["Signature1", body_protected, external_aad = h'',
        // payload], streamed with the heads written here (deterministic, RFC 8949 §4.2.1).
        check.update(b"\x84\x6aSignature1");
        check.update(&bstr_head(protected.len));
        c.feed(protected, |chunk| check.update(chunk))?;
        check.update(&[0x40]);
        check.update(&bstr_head(payload.len));
        c.feed(payload, |chunk| check.update(chunk))?;
        Ok(check.finish())
    }
}

/// The shortest head of a bstr of `len` bytes (RFC 8949 §4.2.1), as the manifest crate's
/// encoder writes it.
fn bstr_head(len: u32) -> HeadBytes {
    HeadBytes::new(2, len)
}

/// An encoded CBOR item head.
struct HeadBytes {
    bytes: [u8; 5],
    len: u8,
}

impl HeadBytes {
    fn new(major: u8, arg: u32) -> Self {
        let m = major << 5;
        let [b0, b1, b2, b3] = arg.to_be_bytes();
        let (bytes, len) = match arg {
            0..=23 => ([m | b3, 0, 0, 0, 0], 1),
            24..=0xff => ([m | 24, b3, 0, 0, 0], 2),
            0x100..=0xffff => ([m | 25, b2, b3, 0, 0], 3),
            _ => ([m | 26, b0, b1, b2, b3], 5),
        };
        Self { bytes, len }
    }
}

impl core::ops::Deref for HeadBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// ES256/ESP256 with a P-256 verification the platform provides over the SHA-256 of the
/// Sig_structure ([`suitcase_manifest::P256PrehashVerifier`]: the Cortex-M bootloader's
/// assembly).
#[cfg(feature = "es256-prehash")]
#[derive(Debug)]
pub struct Es256<V>(pub V);

/// [`Es256`]'s check in progress.
#[cfg(feature = "es256-prehash")]
#[derive(Debug)]
pub struct Es256Check<'a, V> {
    key: &'a V,
    signature: [u8; 64],
    sha: sha2::Sha256,
}

#[cfg(feature = "es256-prehash")]
impl<V: suitcase_manifest::P256PrehashVerifier> BootKey for Es256<V> {
    type Check<'a>
        = Es256Check<'a, V>
    where
        V: 'a;

    fn accepts(&self, alg: i64) -> bool {
        use suitcase_manifest::codepoints::alg;
        matches!(alg, alg::ES256 | alg::ESP256)
    }

    fn start(&self, signature: &[u8; 64]) -> Option<Es256Check<'_, V>> {
        Some(Es256Check {
            key: &self.0,
            signature: *signature,
            sha: sha2::Digest::new(),
        })
    }
}

#[cfg(feature = "es256-prehash")]
impl<V: suitcase_manifest::P256PrehashVerifier> BootCheck for Es256Check<'_, V> {
    fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.sha, data);
    }

    fn finish(self) -> bool {
        // RFC 9053 §2.1: ES256 signs the SHA-256 of the ToBeSigned.
        let digest: [u8; 32] = sha2::Digest::finalize(self.sha).into();
        self.key.verify_prehash(&digest, &self.signature)
    }
}

/// EdDSA/Ed25519 by `ed25519-dalek`, with `verify_strict`'s checks (as the manifest crate's
/// `PublicKey::Ed25519`): neither the key nor R of small order, S below L (no malleable
/// signatures, RFC 8032 §5.1.7), R compared by its encoding.
#[cfg(feature = "ed25519")]
#[derive(Debug)]
pub struct Ed25519(ed25519_dalek::VerifyingKey);

#[cfg(feature = "ed25519")]
impl Ed25519 {
    /// The key whose compressed point (RFC 8032 §5.1.2) is `bytes`; `None` if it does not
    /// decode or has small order (a weak key verifies forged signatures).
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .filter(|k| !k.is_weak())
            .map(Self)
    }
}

/// [`Ed25519`]'s check in progress: dalek's streaming verification (its SHA-512 of R, A, M).
#[cfg(feature = "ed25519")]
pub struct Ed25519Check(ed25519_dalek::StreamVerifier);

#[cfg(feature = "ed25519")]
impl core::fmt::Debug for Ed25519Check {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ed25519Check")
    }
}

#[cfg(feature = "ed25519")]
impl BootKey for Ed25519 {
    type Check<'a>
        = Ed25519Check
    where
        Self: 'a;

    fn accepts(&self, alg: i64) -> bool {
        use suitcase_manifest::codepoints::alg;
        matches!(alg, alg::EDDSA | alg::ED25519)
    }

    fn start(&self, signature: &[u8; 64]) -> Option<Ed25519Check> {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        // R must decode to a point of large order (verify_strict); the key was checked when
        // it was made. verify_stream refuses S ≥ L.
        let r_ok =
            ed25519_dalek::VerifyingKey::from_bytes(sig.r_bytes()).is_ok_and(|r| !r.is_weak());
        if !r_ok || self.0.is_weak() {
            return None;
        }
        self.0.verify_stream(&sig).ok().map(Ed25519Check)
    }
}

#[cfg(feature = "ed25519")]
impl BootCheck for Ed25519Check {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(self) -> bool {
        self.0.finalize_and_verify().is_ok()
    }
}

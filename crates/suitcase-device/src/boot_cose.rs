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

/// EdDSA/Ed25519 (RFC 8032 §5.1.7) on `curve25519-dalek`'s arithmetic, with `ed25519-dalek`'s
/// `verify_strict` checks (as the manifest crate's `PublicKey::Ed25519`): neither the key nor R
/// of small order, S below L (no malleable signatures), R compared by its encoding. The
/// equation is `verify_strict`'s (`[S]B + [k](-A)`, encoded, equals R's bytes); it is
/// written here rather than called through `ed25519-dalek` so that the check holds the key by
/// reference and nothing of the signature or the SHA-512 state is copied between frames
/// (docs/benchmarks.md, the Ed25519 levers).
#[cfg(feature = "ed25519")]
#[derive(Debug)]
pub struct Ed25519 {
    /// A as encoded (RFC 8032 §5.1.7 hashes it as given).
    encoded: [u8; 32],
    /// -A, the point the equation multiplies.
    minus_a: curve25519_dalek::EdwardsPoint,
}

#[cfg(feature = "ed25519")]
impl Ed25519 {
    /// The key whose compressed point (RFC 8032 §5.1.2) is `bytes`; `None` if it does not
    /// decode or has small order (a weak key verifies forged signatures).
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        let a = large_order_point(bytes)?;
        Some(Self {
            encoded: *bytes,
            minus_a: -a,
        })
    }
}

/// The point encoded by `bytes` (RFC 8032 §5.1.3), if it decodes and its order is not small
/// (`verify_strict`: a small-order A or R lets one signature verify for many messages).
#[cfg(feature = "ed25519")]
fn large_order_point(bytes: &[u8; 32]) -> Option<curve25519_dalek::EdwardsPoint> {
    curve25519_dalek::edwards::CompressedEdwardsY(*bytes)
        .decompress()
        .filter(|p| !p.is_small_order())
}

/// [`Ed25519`]'s check in progress: R, S and the SHA-512 of `R || A || M` (RFC 8032 §5.1.7).
#[cfg(feature = "ed25519")]
pub struct Ed25519Check<'a> {
    key: &'a Ed25519,
    r: [u8; 32],
    s: curve25519_dalek::Scalar,
    sha: sha2::Sha512,
}

#[cfg(feature = "ed25519")]
impl core::fmt::Debug for Ed25519Check<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ed25519Check")
    }
}

#[cfg(feature = "ed25519")]
impl BootKey for Ed25519 {
    type Check<'a>
        = Ed25519Check<'a>
    where
        Self: 'a;

    fn accepts(&self, alg: i64) -> bool {
        use suitcase_manifest::codepoints::alg;
        matches!(alg, alg::EDDSA | alg::ED25519)
    }

    fn start(&self, signature: &[u8; 64]) -> Option<Ed25519Check<'_>> {
        let (r, s) = signature.split_at(32);
        let r: [u8; 32] = r.try_into().ok()?;
        let s: [u8; 32] = s.try_into().ok()?;
        // RFC 8032 §5.1.7: S must be in [0, L) (no malleable signatures).
        if !below_l(&s) {
            return None;
        }
        let s = curve25519_dalek::Scalar::from_bits(s);
        // verify_strict: R must decode to a point of large order; the key was checked when
        // it was made.
        large_order_point(&r)?;
        let mut sha = <sha2::Sha512 as sha2::Digest>::new();
        sha2::Digest::update(&mut sha, r);
        sha2::Digest::update(&mut sha, self.encoded);
        Some(Ed25519Check {
            key: self,
            r,
            s,
            sha,
        })
    }
}

#[cfg(feature = "ed25519")]
impl BootCheck for Ed25519Check<'_> {
    fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.sha, data);
    }

    fn finish(self) -> bool {
        use curve25519_dalek::{EdwardsPoint, Scalar};
        // RFC 8032 §5.1.7: k = SHA-512(R || A || M) mod L; R' = [S]B - [k]A, compared with R
        // by its encoding (verify_strict: a non-canonical R never matches).
        let k = Scalar::from_bits(reduce_wide(&sha2::Digest::finalize(self.sha).into()));
        // Two single-scalar multiplications rather than dalek's double-base one (the sum
        // verify_strict computes): one window table on the stack at a time, and less code
        // (docs/benchmarks.md, Ed25519 lever d).
        let r = EdwardsPoint::mul_base(&self.s) + self.key.minus_a * k;
        r.compress().to_bytes() == self.r
    }
}

/// L, the order of Ed25519's base point (RFC 8032 §5.1: 2^252 +
/// 27742317777372353535851937790883648493), in little-endian 32-bit limbs.
#[cfg(feature = "ed25519")]
const L: [u32; 8] = [
    0x5cf5_d3ed,
    0x5812_631a,
    0xa2f7_9cd6,
    0x14de_f9de,
    0,
    0,
    0,
    0x1000_0000,
];

/// Whether the little-endian integer `x` is below L. A byte comparison and the bit-serial
/// reduction below replace `curve25519-dalek`'s Montgomery scalar arithmetic (1.9 KB of
/// flash in the bootloader, docs/benchmarks.md): the bootloader needs no other scalar
/// operation, and `Scalar::from_bits` takes the result (below L, so below 2^255, which is
/// all a scalar multiplication needs).
#[cfg(feature = "ed25519")]
fn below_l(x: &[u8; 32]) -> bool {
    limbs_below_l(&limbs(x))
}

#[cfg(feature = "ed25519")]
fn limbs(x: &[u8; 32]) -> [u32; 8] {
    let mut out = [0u32; 8];
    for (limb, bytes) in out.iter_mut().zip(x.chunks_exact(4)) {
        let mut word = [0u8; 4];
        word.copy_from_slice(bytes);
        *limb = u32::from_le_bytes(word);
    }
    out
}

#[cfg(feature = "ed25519")]
fn limbs_below_l(x: &[u32; 8]) -> bool {
    for (a, l) in x.iter().zip(L.iter()).rev() {
        if a != l {
            return a < l;
        }
    }
    false
}

/// A 512-bit little-endian integer modulo L (RFC 8032 §5.1.7: k = SHA-512(R || A || M) mod
/// L), one bit at a time from the top: r stays below L, so 2r + 1 < 2L < 2^254 and one
/// subtraction of L brings it back. Variable time is fine here: k is public.
#[cfg(feature = "ed25519")]
fn reduce_wide(h: &[u8; 64]) -> [u8; 32] {
    let mut r = [0u32; 8];
    for byte in h.iter().rev() {
        for bit in (0..8).rev() {
            let mut carry = u32::from((byte >> bit) & 1);
            for limb in &mut r {
                let top = *limb >> 31;
                *limb = (*limb << 1) | carry;
                carry = top;
            }
            if !limbs_below_l(&r) {
                let mut borrow = false;
                for (a, l) in r.iter_mut().zip(L) {
                    let (d, b1) = a.overflowing_sub(l);
                    let (d, b2) = d.overflowing_sub(u32::from(borrow));
                    *a = d;
                    borrow = b1 | b2;
                }
            }
        }
    }
    let mut out = [0u8; 32];
    for (bytes, limb) in out.chunks_exact_mut(4).zip(r) {
        bytes.copy_from_slice(&limb.to_le_bytes());
    }
    out
}

#[cfg(all(test, feature = "ed25519"))]
mod tests {
    use super::{below_l, reduce_wide};
    use curve25519_dalek::Scalar;
    use sha2::Digest as _;

    /// L's encoding (RFC 8032 §5.1), little-endian.
    const L_BYTES: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    fn plus(mut x: [u8; 32], n: i16) -> [u8; 32] {
        // Little-endian add/subtract of a small number (tests only: no overflow out of 256 bits).
        let mut carry = i32::from(n);
        for b in &mut x {
            let v = i32::from(*b) + carry;
            *b = u8::try_from(v.rem_euclid(256)).unwrap_or_default();
            carry = v.div_euclid(256);
        }
        x
    }

    fn inputs() -> impl Iterator<Item = [u8; 64]> {
        let edges =
            [[0u8; 64], [0xff; 64]]
                .into_iter()
                .chain([-1i16, 0, 1, 2].into_iter().flat_map(|n| {
                    // L + n, and (L + n)·2^256 + (L + n).
                    let x = plus(L_BYTES, n);
                    let mut low = [0u8; 64];
                    low.split_at_mut(32).0.copy_from_slice(&x);
                    let mut both = low;
                    both.split_at_mut(32).1.copy_from_slice(&x);
                    [low, both]
                }));
        let hashes = (0u32..2000).map(|i| sha2::Sha512::digest(i.to_le_bytes()).into());
        edges.chain(hashes)
    }

    #[test]
    fn reduce_wide_is_dalek_s_reduction_mod_l() {
        for h in inputs() {
            assert_eq!(
                reduce_wide(&h),
                Scalar::from_bytes_mod_order_wide(&h).to_bytes(),
                "{h:02x?}"
            );
        }
    }

    #[test]
    fn below_l_is_dalek_s_canonical_check() {
        let fixed = [[0u8; 32], [0xff; 32], [0x7f; 32]]
            .into_iter()
            .chain([-2i16, -1, 0, 1, 2].map(|n| plus(L_BYTES, n)));
        let halves = inputs().flat_map(|h| {
            let (low, high) = h.split_at(32);
            [low, high].map(|x| <[u8; 32]>::try_from(x).unwrap())
        });
        for x in fixed.chain(halves) {
            let canonical: bool = Scalar::from_canonical_bytes(x).is_some().into();
            assert_eq!(below_l(&x), canonical, "{x:02x?}");
        }
        assert!(below_l(&plus(L_BYTES, -1)));
        assert!(!below_l(&L_BYTES));
    }
}

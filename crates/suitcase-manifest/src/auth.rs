//! Trust anchors, signer policy and the verification of authentication blocks.

use core::num::NonZeroUsize;

use crate::codepoints::alg;
use crate::component::ComponentId;
use crate::cose::BlockKind;
use crate::envelope::Authentication;
use crate::error::{AuthError, Error};

/// The most trust anchors one verification considers (the signer set is a 64-bit mask).
pub const MAX_ANCHORS: usize = 64;

/// A key that can authenticate manifests.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum PublicKey<'k> {
    /// A P-256 public key: verifies ES256 (-7) and ESP256 (-9).
    #[cfg(feature = "es256")]
    P256(p256::ecdsa::VerifyingKey),
    /// A P-256 public key whose verification the platform provides over the SHA-256 digest of
    /// the Sig_structure (e.g. Cortex-M assembly in the bootloader): verifies ES256 (-7) and
    /// ESP256 (-9) like [`Self::P256`].
    #[cfg(feature = "es256-prehash")]
    P256Prehash(&'k dyn P256PrehashVerifier),
    /// An Ed25519 public key: verifies EdDSA (-8) and Ed25519 (-19).
    #[cfg(feature = "ed25519")]
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A shared HMAC-SHA-256 secret: verifies COSE_Mac0 with alg 5.
    Hmac256(&'k [u8]),
    /// An HSS public key (RFC 8554 encoding): verifies HSS-LMS (-46, RFC 8778).
    #[cfg(feature = "hss-lms")]
    HssLms(&'k [u8]),
    /// An ML-DSA-65 public key: verifies ML-DSA-65 (-49, draft-ietf-cose-dilithium).
    #[cfg(feature = "ml-dsa")]
    MlDsa65(&'k ml_dsa::VerifyingKey<ml_dsa::MlDsa65>),
    /// A trust-anchor certificate (DER): verifies ES256/ESP256/Ed25519 blocks that carry an
    /// `x5chain` leading to it, for code signing, valid at [`TrustPolicy::time`] (RFC 9360).
    #[cfg(feature = "x509")]
    X509Root(&'k [u8]),
}

impl PublicKey<'_> {
    /// Whether this key can check a block that uses `alg` in a structure of `kind`.
    pub fn supports(&self, alg: i64, kind: BlockKind) -> bool {
        #[cfg(any(
            feature = "es256",
            feature = "es256-prehash",
            feature = "ed25519",
            feature = "hss-lms",
            feature = "ml-dsa"
        ))]
        let signature = matches!(kind, BlockKind::Sign1 | BlockKind::Sign);
        match self {
            #[cfg(feature = "es256")]
            Self::P256(_) => signature && matches!(alg, alg::ES256 | alg::ESP256),
            #[cfg(feature = "es256-prehash")]
            Self::P256Prehash(_) => signature && matches!(alg, alg::ES256 | alg::ESP256),
            #[cfg(feature = "ed25519")]
            Self::Ed25519(_) => signature && matches!(alg, alg::EDDSA | alg::ED25519),
            Self::Hmac256(_) => kind == BlockKind::Mac0 && alg == alg::HMAC_256,
            #[cfg(feature = "hss-lms")]
            Self::HssLms(_) => signature && alg == alg::HSS_LMS,
            #[cfg(feature = "ml-dsa")]
            Self::MlDsa65(_) => signature && alg == alg::ML_DSA_65,
            #[cfg(feature = "x509")]
            Self::X509Root(_) => {
                signature && matches!(alg, alg::ES256 | alg::ESP256 | alg::EDDSA | alg::ED25519)
            }
        }
    }

    /// Whether the key's algorithm is believed to resist quantum computers (hash-based or
    /// lattice signatures). A hybrid policy needs one signer of each kind.
    pub fn is_post_quantum(&self) -> bool {
        match self {
            #[cfg(feature = "hss-lms")]
            Self::HssLms(_) => true,
            #[cfg(feature = "ml-dsa")]
            Self::MlDsa65(_) => true,
            _ => false,
        }
    }

    /// A short name of the key type.
    pub fn kind_name(&self) -> &'static str {
        match self {
            #[cfg(feature = "es256")]
            Self::P256(_) => "p256",
            #[cfg(feature = "es256-prehash")]
            Self::P256Prehash(_) => "p256",
            #[cfg(feature = "ed25519")]
            Self::Ed25519(_) => "ed25519",
            Self::Hmac256(_) => "hmac256",
            #[cfg(feature = "hss-lms")]
            Self::HssLms(_) => "hss-lms",
            #[cfg(feature = "ml-dsa")]
            Self::MlDsa65(_) => "ml-dsa-65",
            #[cfg(feature = "x509")]
            Self::X509Root(_) => "x509-root",
        }
    }

    /// Checks `signer`'s signature over its Sig_structure / MAC_structure on the detached
    /// `payload` (RFC 9052 §4.4, §6.3). ES256 and HMAC stream the structure into SHA-256 or
    /// the MAC (no buffer); the others need it whole. Opaque: `Ok(false)` for any failure of
    /// the signature itself.
    ///
    /// # Errors
    /// [`Error::Malformed`] if a structure the algorithm needs whole does not fit the buffer.
    fn verify(&self, signer: &crate::cose::Signer<'_>, payload: &[u8]) -> Result<bool, Error> {
        let signature = signer.signature;
        Ok(match self {
            #[cfg(feature = "es256")]
            Self::P256(key) => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                // COSE ECDSA signatures are r || s, 64 bytes (RFC 9053 §2.1), over the
                // SHA-256 of the Sig_structure: the same check as hashing the message whole.
                p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
                    sha256_to_be_signed(signer, payload)
                        .is_some_and(|digest| key.verify_prehash(&digest, &sig).is_ok())
                })
            }
            #[cfg(feature = "es256-prehash")]
            Self::P256Prehash(key) => <&[u8; 64]>::try_from(signature).is_ok_and(|sig| {
                sha256_to_be_signed(signer, payload)
                    .is_some_and(|digest| key.verify_prehash(&digest, sig))
            }),
            #[cfg(feature = "ed25519")]
            Self::Ed25519(key) => {
                let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
                    return Ok(false);
                };
                let sig = ed25519_dalek::Signature::from_bytes(&bytes);
                // `verify_strict`'s checks with the Sig_structure streamed into SHA-512 (RFC
                // 8032 §5.1.7) instead of a buffer: R must decode to a point and neither R nor
                // the key may have small order (no key-substitution or forgery under a weak
                // key); `verify_stream` refuses S ≥ L (no malleable signatures) and compares
                // the encodings of R.
                let strict = !key.is_weak()
                    && ed25519_dalek::VerifyingKey::from_bytes(sig.r_bytes())
                        .is_ok_and(|r| !r.is_weak());
                let Ok(mut stream) = key.verify_stream(&sig) else {
                    return Ok(false);
                };
                strict
                    && signer
                        .write_to_be_signed(
                            payload,
                            crate::cose::Absorb(&mut Ed25519Feed(&mut stream)),
                        )
                        .is_some()
                    && stream.finalize_and_verify().is_ok()
            }
            Self::Hmac256(secret) => {
                use hmac::{KeyInit, Mac};
                let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
                    return Ok(false);
                };
                signer.write_to_be_signed(payload, crate::cose::Absorb(&mut mac)).is_some()
                    // Constant-time comparison of the full 256-bit tag.
                    && mac.verify_slice(signature).is_ok()
            }
            #[cfg(feature = "hss-lms")]
            Self::HssLms(public) => signer.with_to_be_signed(payload, |message| {
                // RFC 8778 §2: the COSE signature is the HSS signature of RFC 8554 §6.
                hss::well_formed(signature, public)
                    && hbs_lms::verify::<hbs_lms::Sha256_256>(message, signature, public).is_ok()
            })?,
            #[cfg(feature = "ml-dsa")]
            Self::MlDsa65(key) => signer.with_to_be_signed(payload, |message| {
                use ml_dsa::signature::Verifier;
                // draft-ietf-cose-dilithium: pure ML-DSA over the ToBeSigned, empty context.
                ml_dsa::Signature::<ml_dsa::MlDsa65>::try_from(signature)
                    .is_ok_and(|sig| key.verify(message, &sig).is_ok())
            })?,
            // Needs the block's certificate chain and a time: see `verify_blocks`.
            #[cfg(feature = "x509")]
            Self::X509Root(_) => false,
        })
    }
}

/// A P-256 ECDSA verification the platform provides ([`PublicKey::P256Prehash`]), for a
/// device whose own implementation is smaller or faster than RustCrypto's `p256` (the
/// Cortex-M bootloader's assembly).
#[cfg(feature = "es256-prehash")]
/// `Sync`, so that a trust anchor holding one stays `Send` in async servers (a workspace build
/// unifies the feature into every crate that uses the manifest crate).
pub trait P256PrehashVerifier: Sync {
    /// Whether `signature` (r || s, 32 bytes each, big-endian: RFC 9053 §2.1) is a valid
    /// ECDSA signature by this key of a message whose SHA-256 digest is `digest` (FIPS 186-5
    /// §6.4.2 from step 2 on). It must refuse r or s outside [1, n-1] and accept either s
    /// (high or low, as the `p256` crate does: ECDSA malleability changes the signature, not
    /// what is signed, and the manifest is identified by its digest, not its signature).
    fn verify_prehash(&self, digest: &[u8; 32], signature: &[u8; 64]) -> bool;
}

/// Names the key kind only: no `Debug` bound on implementations, so that a device without
/// `core::fmt` elsewhere does not link it for this.
#[cfg(feature = "es256-prehash")]
impl core::fmt::Debug for dyn P256PrehashVerifier + '_ {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("P256PrehashVerifier")
    }
}

/// Feeds the Sig_structure to Ed25519's streaming verification (its SHA-512 of R, A, M).
#[cfg(feature = "ed25519")]
struct Ed25519Feed<'s>(&'s mut ed25519_dalek::StreamVerifier);

#[cfg(feature = "ed25519")]
impl sha2::digest::Update for Ed25519Feed<'_> {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

/// SHA-256 of the Sig_structure over `payload`, streamed (RFC 9053 §2.1: ES256 signs the
/// SHA-256 of the ToBeSigned).
#[cfg(any(feature = "es256", feature = "es256-prehash"))]
fn sha256_to_be_signed(signer: &crate::cose::Signer<'_>, payload: &[u8]) -> Option<[u8; 32]> {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    signer.write_to_be_signed(payload, crate::cose::Absorb(&mut hash))?;
    Some(hash.finalize().into())
}

/// Whether this build implements a signature or MAC algorithm at all.
pub fn algorithm_supported(id: i64) -> bool {
    match id {
        #[cfg(any(feature = "es256", feature = "es256-prehash"))]
        alg::ES256 | alg::ESP256 => true,
        #[cfg(feature = "ed25519")]
        alg::EDDSA | alg::ED25519 => true,
        alg::HMAC_256 => true,
        #[cfg(feature = "hss-lms")]
        alg::HSS_LMS => true,
        #[cfg(feature = "ml-dsa")]
        alg::ML_DSA_65 => true,
        _ => false,
    }
}

/// A key the device trusts to authorise manifests.
#[derive(Clone, Copy, Debug)]
pub struct TrustAnchor<'k> {
    /// A name for reports ("author", "operator", a file name...).
    pub name: &'k str,
    /// The key.
    pub key: PublicKey<'k>,
    /// If set, only blocks without a kid or with this kid are checked against this anchor.
    pub kid: Option<&'k [u8]>,
    /// What this anchor may authorise (manifest §9, access control lists, third model).
    pub permissions: Permissions<'k>,
}

impl<'k> TrustAnchor<'k> {
    /// An anchor that may authorise everything.
    pub fn new(name: &'k str, key: PublicKey<'k>) -> Self {
        Self {
            name,
            key,
            kid: None,
            permissions: Permissions::ALL,
        }
    }
}

/// Actions a signer may authorise on a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    /// Write a component: fetch, write, copy into, swap (update procedure).
    pub const INSTALL: Self = Self(1);
    /// Run a component: invoke (invocation procedure, secure boot).
    pub const INVOKE: Self = Self(2);
    /// Both.
    pub const ALL: Self = Self(3);

    /// Whether every action in `other` is allowed.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// Which components and actions an anchor may authorise.
#[derive(Clone, Copy, Debug)]
pub struct Permissions<'k> {
    /// Component-identifier prefixes this anchor covers; `None` covers every component.
    pub components: Option<&'k [ComponentId<'k>]>,
    /// The actions allowed on those components.
    pub actions: Actions,
}

impl Permissions<'_> {
    /// Everything: the single-trusted-key model of manifest §9.
    pub const ALL: Permissions<'static> = Permissions {
        components: None,
        actions: Actions::ALL,
    };

    fn covers(&self, id: &ComponentId<'_>, action: Actions) -> bool {
        self.actions.contains(action)
            && self
                .components
                .is_none_or(|prefixes| prefixes.iter().any(|p| is_prefix(p, id)))
    }
}

/// Whether `prefix`'s segments start `id`'s segments.
pub fn is_prefix(prefix: &ComponentId<'_>, id: &ComponentId<'_>) -> bool {
    let mut segments = id.segments();
    prefix.segments().all(|p| segments.next() == Some(p))
}

/// An extra requirement for some components: at least `threshold` distinct signers, drawn from
/// `signers` (anchor indices) if given, must have signed.
#[derive(Clone, Copy, Debug)]
pub struct Rule<'k> {
    /// Components (by identifier prefix) the rule applies to.
    pub components: ComponentId<'k>,
    /// Distinct signers required.
    pub threshold: NonZeroUsize,
    /// The anchors (indices into the anchor slice) that count; `None`: any permitted anchor.
    pub signers: Option<&'k [usize]>,
}

/// How many and which trusted signers must authenticate a manifest (RFC 9019 §6: authorization
/// policies with several signers, e.g. the author AND the fleet operator).
#[derive(Clone, Copy, Debug)]
pub struct TrustPolicy<'k> {
    /// Distinct anchors whose signature must verify, over the whole manifest (at least 1).
    pub threshold: NonZeroUsize,
    /// Per-component requirements on top of the threshold.
    pub rules: &'k [Rule<'k>],
    /// Require at least one classical and one post-quantum signer (hybrid mode).
    pub hybrid: bool,
    /// The current time (seconds since 1970), for certificate validity. X.509 trust anchors
    /// are unusable without it: a chain cannot be checked for expiry.
    pub time: Option<u64>,
}

impl Default for TrustPolicy<'_> {
    /// One trusted signature, the specification's minimum.
    fn default() -> Self {
        Self {
            threshold: NonZeroUsize::MIN,
            rules: &[],
            hybrid: false,
            time: None,
        }
    }
}

impl TrustPolicy<'_> {
    /// A policy that needs `n` distinct signers.
    pub fn threshold(n: NonZeroUsize) -> Self {
        Self {
            threshold: n,
            ..Self::default()
        }
    }
}

/// The set of anchors (by index in the slice given to verification) whose signature verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signers(u64);

impl Signers {
    fn insert(&mut self, index: usize) {
        if index < MAX_ANCHORS {
            self.0 |= 1 << index;
        }
    }

    /// Whether the anchor at `index` signed.
    pub fn contains(&self, index: usize) -> bool {
        index < MAX_ANCHORS && self.0 & (1 << index) != 0
    }

    /// How many distinct anchors signed.
    pub fn count(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether these signers may authorise `action` on the component `id` under the anchors'
    /// permissions and the policy's per-component rules (manifest §9, access control lists):
    /// the check [`Envelope::verify`](crate::Envelope::verify) makes for every component of a
    /// manifest, for one component. `anchors` must be the slice the signers were verified
    /// against.
    ///
    /// # Errors
    /// [`AuthError::NotAuthorized`] if no signer's anchor covers `id` for `action`;
    /// [`AuthError::ThresholdNotMet`] if a rule for `id` needs more signers.
    pub fn authorize(
        &self,
        id: &ComponentId<'_>,
        action: Actions,
        anchors: &[TrustAnchor<'_>],
        policy: &TrustPolicy<'_>,
    ) -> Result<(), AuthError> {
        allowed(id, action, *self, anchors, policy)
    }

    /// The indices of the anchors that signed.
    pub fn iter(&self) -> impl Iterator<Item = usize> + use<> {
        let bits = self.0;
        (0..MAX_ANCHORS).filter(move |i| bits & (1 << i) != 0)
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct VerificationOutcome {
    pub(crate) signers: Signers,
    /// Per component index: the actions the verified signers may authorise.
    pub(crate) authorized: [Actions; crate::MAX_COMPONENTS],
}

/// Checks every authentication block against every anchor.
///
/// Manifest §8.3: each block authenticates the same SUIT_Digest; a block that cannot be checked
/// (unknown algorithm, unsupported critical header, unknown signer) does not make the envelope
/// invalid by itself, since another block may be meant for this device (algorithm agility,
/// RFC 9019 §6). The envelope is accepted only when enough distinct trusted anchors verified.
pub(crate) fn verify_blocks(
    auth: &Authentication<'_>,
    anchors: &[TrustAnchor<'_>],
    policy: &TrustPolicy<'_>,
) -> Result<Signers, Error> {
    // Manifest §8.3: a wrapper "containing only the SUIT_Digest" is an unsigned envelope, which
    // a device must not act on.
    if auth.block_count() == 0 {
        return Err(Error::Unauthenticated(AuthError::NoAuthenticationBlock));
    }
    let mut signers = Signers::default();
    let mut unsupported_alg = None;
    let mut unsupported_crit = None;
    for block in auth.blocks() {
        for signer in block.signers() {
            if let Err(e) = signer.headers.check_critical() {
                unsupported_crit.get_or_insert(e);
                continue;
            }
            let alg = signer.algorithm()?;
            if !algorithm_supported(alg) || block.kind == BlockKind::Mac {
                unsupported_alg.get_or_insert(alg);
                continue;
            }
            for (i, anchor) in anchors.iter().enumerate().take(MAX_ANCHORS) {
                if crate::cose::kids_conflict(anchor.kid, signer.headers.kid) {
                    continue;
                }
                if anchor.key.supports(alg, block.kind)
                    && verify_with(anchor, policy, &signer, alg, auth.digest_bytes)?
                {
                    signers.insert(i);
                }
            }
        }
    }
    let required = policy.threshold.get();
    match signers.count() {
        0 => Err(unsupported_crit
            .or(unsupported_alg.map(|alg| Error::UnsupportedAlgorithm { alg }))
            .unwrap_or(Error::Unauthenticated(AuthError::NoTrustedSignature))),
        verified if verified < required => {
            Err(Error::Unauthenticated(AuthError::ThresholdNotMet {
                required,
                verified,
            }))
        }
        _ => {
            if policy.hybrid {
                let pq = signers
                    .iter()
                    .filter_map(|i| anchors.get(i))
                    .filter(|a| a.key.is_post_quantum())
                    .count();
                if pq == 0 || pq == signers.count() {
                    return Err(Error::Unauthenticated(AuthError::HybridNotMet));
                }
            }
            Ok(signers)
        }
    }
}

fn verify_with(
    anchor: &TrustAnchor<'_>,
    policy: &TrustPolicy<'_>,
    signer: &crate::cose::Signer<'_>,
    alg: i64,
    payload: &[u8],
) -> Result<bool, Error> {
    match anchor.key {
        // RFC 9360 §2: the leaf of x5chain carries the signing key; the chain must lead to
        // the anchor, be valid now, and allow code signing.
        #[cfg(feature = "x509")]
        PublicKey::X509Root(root) => match (signer.headers.x5chain, policy.time) {
            (Some(chain), Some(now)) => signer.with_to_be_signed(payload, |tbs| {
                crate::x509::verify(root, chain, now, alg, tbs, signer.signature)
            }),
            _ => Ok(false),
        },
        _ => {
            let _ = (policy, alg);
            anchor.key.verify(signer, payload)
        }
    }
}

/// Works out, for every component, which actions the verified signers may authorise under
/// the anchors' permissions and the policy's rules.
pub(crate) fn authorize(
    manifest: &crate::Manifest<'_>,
    signers: Signers,
    anchors: &[TrustAnchor<'_>],
    policy: &TrustPolicy<'_>,
) -> Result<VerificationOutcome, Error> {
    let mut authorized = [Actions(0); crate::MAX_COMPONENTS];
    for (index, slot) in authorized
        .iter_mut()
        .enumerate()
        .take(manifest.index_count())
    {
        let Some(id) = manifest.component_id(index) else {
            continue;
        };
        let mut refusal = None;
        for action in [Actions::INSTALL, Actions::INVOKE] {
            match allowed(&id, action, signers, anchors, policy) {
                Ok(()) => *slot = slot.union(action),
                Err(e) => refusal = Some(e),
            }
        }
        // Every component the manifest names must be covered by the signers for something;
        // otherwise a signer could reach components it has no rights to.
        if let (Actions(0), Some(e)) = (*slot, refusal) {
            return Err(Error::Unauthenticated(e));
        }
    }
    Ok(VerificationOutcome {
        signers,
        authorized,
    })
}

fn allowed(
    id: &ComponentId<'_>,
    action: Actions,
    signers: Signers,
    anchors: &[TrustAnchor<'_>],
    policy: &TrustPolicy<'_>,
) -> Result<(), AuthError> {
    let permitted = |i: &usize| {
        anchors
            .get(*i)
            .is_some_and(|a| a.permissions.covers(id, action))
    };
    if !signers.iter().any(|i| permitted(&i)) {
        return Err(AuthError::NotAuthorized);
    }
    for rule in policy.rules.iter().filter(|r| is_prefix(&r.components, id)) {
        let verified = signers
            .iter()
            .filter(permitted)
            .filter(|i| rule.signers.is_none_or(|list| list.contains(i)))
            .count();
        let required = rule.threshold.get();
        if verified < required {
            return Err(AuthError::ThresholdNotMet { required, verified });
        }
    }
    Ok(())
}

/// The structure of HSS-LMS signatures and public keys (RFC 8554 §5.3, §5.4, §6), checked
/// before `hbs_lms::verify` sees them: hbs-lms 0.1.1 parses with `unwrap` and unchecked
/// slicing, so a malformed signature (an unknown LM-OTS or LMS type, a wrong level count, too
/// few bytes) made it panic. Found by fuzzing (`fuzz/` target `auth`, issue 22).
#[cfg(feature = "hss-lms")]
mod hss {
    /// n: SHA-256/32, the only hash the verifier is built with.
    const N: usize = 32;
    /// At most this many levels: RFC 8554 §6 (1 <= L <= 8), which is also what hbs-lms keeps.
    const MAX_LEVELS: u32 = 8;

    struct Cur<'a> {
        b: &'a [u8],
        at: usize,
    }

    impl Cur<'_> {
        fn u32(&mut self) -> Option<u32> {
            let w: [u8; 4] = self
                .b
                .get(self.at..self.at.checked_add(4)?)?
                .try_into()
                .ok()?;
            self.at += 4;
            Some(u32::from_be_bytes(w))
        }
        fn skip(&mut self, n: usize) -> Option<()> {
            let end = self.at.checked_add(n)?;
            (end <= self.b.len()).then(|| self.at = end)
        }
        /// LM-OTS type (RFC 8554 Table 1, n = 32): the number of hash chains p.
        fn lmots_p(&mut self) -> Option<usize> {
            match self.u32()? {
                1 => Some(265),
                2 => Some(133),
                3 => Some(67),
                4 => Some(34),
                _ => None,
            }
        }
        /// LMS type (RFC 8554 Table 2, m = 32): the tree height h.
        fn lms_h(&mut self) -> Option<u32> {
            match self.u32()? {
                5 => Some(5),
                6 => Some(10),
                7 => Some(15),
                8 => Some(20),
                9 => Some(25),
                _ => None,
            }
        }
        /// An LMS signature: q, LM-OTS signature (type, C, p hashes), LMS type, h path nodes.
        fn lms_signature(&mut self) -> Option<()> {
            let q = self.u32()?;
            let p = self.lmots_p()?;
            self.skip(N.checked_mul(p.checked_add(1)?)?)?;
            let h = self.lms_h()?;
            if u64::from(q) >= 1u64 << h {
                return None;
            }
            self.skip(N.checked_mul(usize::try_from(h).ok()?)?)
        }
        /// An LMS public key: LMS type, LM-OTS type, I (16), T[1] (n).
        fn lms_public_key(&mut self) -> Option<()> {
            self.lms_h()?;
            self.lmots_p()?;
            self.skip(16 + N)
        }
    }

    /// Whether `signature` is an HSS signature with the structure `public`'s level count calls
    /// for, every LM-OTS and LMS type in it a known one with the lengths that type implies,
    /// and `public` a well-formed HSS public key. (Whether the types equal the key's is
    /// checked by hbs-lms itself, which does that without panicking.)
    pub(super) fn well_formed(signature: &[u8], public: &[u8]) -> bool {
        check(signature, public).is_some()
    }

    fn check(signature: &[u8], public: &[u8]) -> Option<()> {
        let mut k = Cur { b: public, at: 0 };
        let levels = k.u32()?;
        if !(1..=MAX_LEVELS).contains(&levels) {
            return None;
        }
        k.lms_public_key()?;
        if k.at != public.len() {
            return None;
        }
        let mut s = Cur {
            b: signature,
            at: 0,
        };
        if s.u32()?.checked_add(1)? != levels {
            return None;
        }
        for _ in 1..levels {
            s.lms_signature()?;
            s.lms_public_key()?;
        }
        s.lms_signature()?;
        (s.at == signature.len()).then_some(())
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::indexing_slicing, reason = "test code")]

        use alloc::vec;
        use alloc::vec::Vec;

        use super::well_formed;
        use crate::PublicKey;

        /// A one-level public key: L = 1, LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8.
        fn public() -> [u8; 60] {
            let mut k = [0u8; 60];
            k[3] = 1;
            k[7] = 5;
            k[11] = 4;
            k
        }

        /// A structurally valid one-level signature for [`public`] (q = 0).
        fn signature() -> Vec<u8> {
            let mut s = vec![0u8; 4 + 4 + 4 + 32 * 35 + 4 + 32 * 5];
            s[11] = 4; // LM-OTS type W8
            s[4 + 4 + 4 + 32 * 35 + 3] = 5; // LMS type H5
            s
        }

        /// A COSE_Sign1 signer carrying `signature`.
        fn signer(signature: &[u8]) -> crate::cose::Signer<'_> {
            crate::cose::Signer {
                kind: crate::BlockKind::Sign1,
                body_protected: &[],
                headers: crate::cose::Headers::default(),
                signature,
            }
        }

        #[test]
        fn attack_malformed_hss_lms_signatures_cannot_panic_the_verifier() {
            let pk = public();
            let key = PublicKey::HssLms(&pk);
            let good = signature();
            assert!(well_formed(&good, &pk));
            // Each of these made hbs-lms 0.1.1 panic (unwrap on an unknown type, slicing past
            // the end, more levels than it holds).
            let mut unknown_ots = good.clone();
            unknown_ots[11] = 99;
            let mut unknown_lms = good.clone();
            unknown_lms[4 + 4 + 4 + 32 * 35 + 3] = 99;
            let mut many_levels = good.clone();
            many_levels[..4].copy_from_slice(&u32::MAX.to_be_bytes());
            let truncated = good[..good.len() - 1].to_vec();
            let mut q_too_large = good.clone();
            q_too_large[4..8].copy_from_slice(&32u32.to_be_bytes());
            let mut long = good.clone();
            long.push(0);
            for (name, sig) in [
                ("empty", Vec::new()),
                ("unknown LM-OTS type", unknown_ots),
                ("unknown LMS type", unknown_lms),
                ("2^32 levels", many_levels),
                ("truncated", truncated),
                ("leaf index past the tree", q_too_large),
                ("trailing byte", long),
            ] {
                assert!(!well_formed(&sig, &pk), "{name}");
                assert!(!key.verify(&signer(&sig), b"message").unwrap(), "{name}");
            }
            // A well-formed signature that is not the signer's is simply wrong.
            assert!(!key.verify(&signer(&good), b"message").unwrap());
            // And a malformed trusted key is refused rather than parsed.
            assert!(!well_formed(&good, &pk[..59]));
        }
    }
}

#[cfg(all(test, feature = "es256", feature = "es256-prehash"))]
mod prehash_tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use alloc::vec;
    use alloc::vec::Vec;

    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;

    use super::{P256PrehashVerifier, PublicKey, TrustAnchor, TrustPolicy};
    use crate::build::{EnvelopeBuilder, ManifestBuilder};
    use crate::codepoints::alg;
    use crate::{DigestAlgorithm, Envelope};

    /// A platform verifier as the bootloader provides one, here over RustCrypto's `p256`.
    struct Platform(p256::ecdsa::VerifyingKey);

    impl P256PrehashVerifier for Platform {
        fn verify_prehash(&self, digest: &[u8; 32], signature: &[u8; 64]) -> bool {
            p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| self.0.verify_prehash(digest, &sig).is_ok())
        }
    }

    fn key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap()
    }

    /// An envelope whose ES256 signature `edit` may change.
    fn envelope(edit: impl Fn(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
        let manifest = ManifestBuilder {
            sequence_number: 3,
            components: vec![vec![vec![0]]],
            ..Default::default()
        };
        let mut b = EnvelopeBuilder::new(&manifest, DigestAlgorithm::Sha256);
        b.sign1(alg::ES256, None, |tbs| {
            let s: p256::ecdsa::Signature = key().sign(tbs);
            edit(s.to_bytes().to_vec())
        });
        b.encode()
    }

    /// Whether the envelope verifies under `key` (the first error's absence).
    fn verifies(bytes: &[u8], key: PublicKey<'_>) -> bool {
        let anchors = [TrustAnchor::new("author", key)];
        Envelope::decode(bytes)
            .unwrap()
            .verify(&anchors, &TrustPolicy::default())
            .is_ok()
    }

    /// s' = n - s: the other signature of the same message (ECDSA malleability).
    fn high_s(mut signature: Vec<u8>) -> Vec<u8> {
        let sig = p256::ecdsa::Signature::from_slice(&signature).unwrap();
        let (r, s) = sig.split_scalars();
        let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        signature.copy_from_slice(&flipped.to_bytes());
        signature
    }

    #[test]
    fn the_streamed_sig_structure_verifies_with_both_p256_keys() {
        let platform = Platform(*key().verifying_key());
        let bytes = envelope(|s| s);
        assert!(verifies(&bytes, PublicKey::P256(*key().verifying_key())));
        assert!(verifies(&bytes, PublicKey::P256Prehash(&platform)));
    }

    #[test]
    fn attack_tampered_es256_signature_fails_on_both_p256_keys() {
        let platform = Platform(*key().verifying_key());
        let bytes = envelope(|mut s| {
            s[40] ^= 1;
            s
        });
        assert!(!verifies(&bytes, PublicKey::P256(*key().verifying_key())));
        assert!(!verifies(&bytes, PublicKey::P256Prehash(&platform)));
        let other = p256::ecdsa::SigningKey::from_slice(&[8; 32]).unwrap();
        let stranger = Platform(*other.verifying_key());
        assert!(!verifies(
            &envelope(|s| s),
            PublicKey::P256Prehash(&stranger)
        ));
    }

    #[test]
    fn high_s_is_treated_alike_by_both_p256_keys() {
        // crates.md: `p256` accepts high-S (ECDSA malleability changes the signature, not
        // what is signed); a platform verifier must decide the same way.
        let platform = Platform(*key().verifying_key());
        let bytes = envelope(high_s);
        assert_ne!(bytes, envelope(|s| s), "the signature changed");
        assert!(verifies(&bytes, PublicKey::P256(*key().verifying_key())));
        assert!(verifies(&bytes, PublicKey::P256Prehash(&platform)));
    }
}

#[cfg(all(test, feature = "ed25519", feature = "alloc"))]
mod ed25519_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use alloc::vec;
    use alloc::vec::Vec;

    use ed25519_dalek::Signer as _;

    use super::{PublicKey, TrustAnchor, TrustPolicy};
    use crate::build::{EnvelopeBuilder, ManifestBuilder};
    use crate::codepoints::alg;
    use crate::{DigestAlgorithm, Envelope};

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
    }

    /// An envelope with one EdDSA block whose signature is `sign(Sig_structure)`.
    fn envelope(sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let manifest = ManifestBuilder {
            sequence_number: 3,
            components: vec![vec![vec![0]]],
            ..Default::default()
        };
        let mut b = EnvelopeBuilder::new(&manifest, DigestAlgorithm::Sha256);
        b.sign1(alg::EDDSA, None, sign);
        b.encode()
    }

    fn verifies(bytes: &[u8], key: ed25519_dalek::VerifyingKey) -> bool {
        let anchors = [TrustAnchor::new("author", PublicKey::Ed25519(key))];
        Envelope::decode(bytes)
            .unwrap()
            .verify(&anchors, &TrustPolicy::default())
            .is_ok()
    }

    #[test]
    fn the_streamed_sig_structure_verifies() {
        let bytes = envelope(|tbs| key().sign(tbs).to_bytes().to_vec());
        assert!(verifies(&bytes, key().verifying_key()));
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        assert!(!verifies(&bytes, stranger.verifying_key()));
    }

    #[test]
    fn attack_small_order_key_forges_any_manifest() {
        // The identity point as the key, R = identity and S = 0: [S]B = R + [k]A holds for
        // every message, so only the small-order check stands between it and a forgery.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
        let bytes = envelope(|_| {
            let mut sig = vec![0u8; 64];
            sig[0] = 1;
            sig
        });
        assert!(!verifies(&bytes, weak));
    }

    #[test]
    fn attack_non_canonical_s_is_refused() {
        // S + L is the same scalar, a second signature of the same message (malleability).
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let bytes = envelope(|tbs| {
            let mut sig = key().sign(tbs).to_bytes().to_vec();
            let mut carry = 0u16;
            for (byte, l) in sig[32..].iter_mut().zip(L) {
                let sum = u16::from(*byte) + u16::from(l) + carry;
                *byte = sum.to_le_bytes()[0];
                carry = sum >> 8;
            }
            sig
        });
        assert!(!verifies(&bytes, key().verifying_key()));
    }
}

//! Trust anchors, signer policy and the verification of authentication blocks.

use crate::codepoints::alg;
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
    /// An Ed25519 public key: verifies EdDSA (-8) and Ed25519 (-19).
    #[cfg(feature = "ed25519")]
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A shared HMAC-SHA-256 secret: verifies COSE_Mac0 with alg 5.
    Hmac256(&'k [u8]),
}

impl PublicKey<'_> {
    /// Whether this key can check a block that uses `alg` in a structure of `kind`.
    pub fn supports(&self, alg: i64, kind: BlockKind) -> bool {
        #[cfg(any(feature = "es256", feature = "ed25519"))]
        let signature = matches!(kind, BlockKind::Sign1 | BlockKind::Sign);
        match self {
            #[cfg(feature = "es256")]
            Self::P256(_) => signature && matches!(alg, alg::ES256 | alg::ESP256),
            #[cfg(feature = "ed25519")]
            Self::Ed25519(_) => signature && matches!(alg, alg::EDDSA | alg::ED25519),
            Self::Hmac256(_) => kind == BlockKind::Mac0 && alg == alg::HMAC_256,
        }
    }

    /// A short name of the key type.
    pub fn kind_name(&self) -> &'static str {
        match self {
            #[cfg(feature = "es256")]
            Self::P256(_) => "p256",
            #[cfg(feature = "ed25519")]
            Self::Ed25519(_) => "ed25519",
            Self::Hmac256(_) => "hmac256",
        }
    }

    /// Checks `signature` over `message`. Opaque: `false` for any failure.
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            #[cfg(feature = "es256")]
            Self::P256(key) => {
                use p256::ecdsa::signature::Verifier;
                // COSE ECDSA signatures are r || s, 64 bytes (RFC 9053 §2.1).
                p256::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            #[cfg(feature = "ed25519")]
            Self::Ed25519(key) => <[u8; 64]>::try_from(signature).is_ok_and(|bytes| {
                // verify_strict refuses small-order keys and non-canonical signatures.
                key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
                    .is_ok()
            }),
            Self::Hmac256(secret) => {
                use hmac::{KeyInit, Mac};
                let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
                    return false;
                };
                mac.update(message);
                // Constant-time comparison of the full 256-bit tag.
                mac.verify_slice(signature).is_ok()
            }
        }
    }
}

/// Whether this build implements a signature or MAC algorithm at all.
pub fn algorithm_supported(id: i64) -> bool {
    match id {
        #[cfg(feature = "es256")]
        alg::ES256 | alg::ESP256 => true,
        #[cfg(feature = "ed25519")]
        alg::EDDSA | alg::ED25519 => true,
        alg::HMAC_256 => true,
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
}

/// How many distinct trusted signers must authenticate a manifest.
#[derive(Clone, Copy, Debug)]
pub struct TrustPolicy {
    /// The number of distinct anchors whose signature must verify (at least 1).
    pub threshold: core::num::NonZeroUsize,
}

impl Default for TrustPolicy {
    /// One trusted signature, the specification's minimum.
    fn default() -> Self {
        Self {
            threshold: core::num::NonZeroUsize::MIN,
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

    /// The indices of the anchors that signed.
    pub fn iter(&self) -> impl Iterator<Item = usize> + use<> {
        let bits = self.0;
        (0..MAX_ANCHORS).filter(move |i| bits & (1 << i) != 0)
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct VerificationOutcome {
    pub(crate) signers: Signers,
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
    policy: &TrustPolicy,
) -> Result<VerificationOutcome, Error> {
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
            signer.with_to_be_signed(auth.digest_bytes, |tbs| {
                for (i, anchor) in anchors.iter().enumerate().take(MAX_ANCHORS) {
                    if crate::cose::kids_conflict(anchor.kid, signer.headers.kid) {
                        continue;
                    }
                    if anchor.key.supports(alg, block.kind)
                        && anchor.key.verify(tbs, signer.signature)
                    {
                        signers.insert(i);
                    }
                }
            })?;
        }
    }
    let required = policy.threshold.get();
    match signers.count() {
        n if n >= required => Ok(VerificationOutcome { signers }),
        0 => Err(unsupported_crit
            .or(unsupported_alg.map(|alg| Error::UnsupportedAlgorithm { alg }))
            .unwrap_or(Error::Unauthenticated(AuthError::NoTrustedSignature))),
        verified => Err(Error::Unauthenticated(AuthError::ThresholdNotMet {
            required,
            verified,
        })),
    }
}

//! X.509 certificate chains in COSE (`x5chain`, RFC 9360) to a trust-anchor certificate: the
//! Enhanced tier's PKI. Chain validation is rustls-webpki's (no_std, no allocation); the
//! signature algorithms it needs are implemented here on RustCrypto, so the device carries no
//! second crypto library.

use core::time::Duration;

use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm,
    UnixTime, alg_id,
};

use crate::cbor::{Kind, Reader};

/// id-kp-codeSigning (RFC 5280 §4.2.1.12), DER content of the OID: every certificate in a
/// signer's chain must allow code signing.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// The most intermediate certificates accepted in one chain.
pub(crate) const MAX_INTERMEDIATES: usize = 4;

/// ECDSA P-256 / SHA-256. Certificates carry DER signatures; COSE carries `r || s`
/// (RFC 9053 §2.1).
#[derive(Debug)]
struct EcdsaP256 {
    der: bool,
}

const ECDSA_P256_DER: EcdsaP256 = EcdsaP256 { der: true };
const ECDSA_P256_COSE: EcdsaP256 = EcdsaP256 { der: false };

/// Ed25519 (certificates and COSE use the same encoding).
#[derive(Debug)]
struct Ed25519;

impl SignatureVerificationAlgorithm for EcdsaP256 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        use p256::ecdsa::signature::Verifier;
        let key =
            p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let sig = if self.der {
            p256::ecdsa::DerSignature::try_from(signature)
                .and_then(|s| p256::ecdsa::Signature::from_der(s.as_bytes()))
                .map_err(|_| InvalidSignature)?
        } else {
            p256::ecdsa::Signature::from_slice(signature).map_err(|_| InvalidSignature)?
        };
        key.verify(message, &sig).map_err(|_| InvalidSignature)
    }
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P256
    }
    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA256
    }
}

impl SignatureVerificationAlgorithm for Ed25519 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        #[cfg(feature = "ed25519")]
        {
            let key: [u8; 32] = public_key.try_into().map_err(|_| InvalidSignature)?;
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| InvalidSignature)?;
            let sig =
                ed25519_dalek::Signature::from_slice(signature).map_err(|_| InvalidSignature)?;
            key.verify_strict(message, &sig)
                .map_err(|_| InvalidSignature)
        }
        #[cfg(not(feature = "ed25519"))]
        {
            let _ = (public_key, message, signature);
            Err(InvalidSignature)
        }
    }
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }
    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }
}

static CHAIN_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[&ECDSA_P256_DER, &Ed25519];

/// Verifies `signature` over `message` with the leaf of `x5chain`, after validating the chain to
/// the trust-anchor certificate `root` at `now` (seconds since 1970) for code signing.
/// `x5chain` is the encoded header value: one bstr, or an array of bstr, leaf first (RFC 9360 §2).
pub(crate) fn verify(
    root: &[u8],
    x5chain: &[u8],
    now: u64,
    alg: i64,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let mut certs: [&[u8]; MAX_INTERMEDIATES + 1] = [&[]; MAX_INTERMEDIATES + 1];
    let Some(count) = split_chain(x5chain, &mut certs) else {
        return false;
    };
    let Some((leaf, rest)) = certs.get(..count).and_then(<[&[u8]]>::split_first) else {
        return false;
    };
    let intermediates_der: [CertificateDer<'_>; MAX_INTERMEDIATES] =
        core::array::from_fn(|i| CertificateDer::from(rest.get(i).copied().unwrap_or_default()));
    let Some(intermediates) = intermediates_der.get(..rest.len()) else {
        return false;
    };
    let root_der = CertificateDer::from(root);
    let Ok(anchor) = webpki::anchor_from_trusted_cert(&root_der) else {
        return false;
    };
    let leaf_der = CertificateDer::from(*leaf);
    let Ok(ee) = webpki::EndEntityCert::try_from(&leaf_der) else {
        return false;
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now));
    if ee
        .verify_for_usage(
            CHAIN_ALGORITHMS,
            &[anchor],
            intermediates,
            time,
            webpki::KeyUsage::required(CODE_SIGNING),
            None,
            None,
        )
        .is_err()
    {
        return false;
    }
    let cose_alg: &dyn SignatureVerificationAlgorithm = match alg {
        crate::codepoints::alg::ES256 | crate::codepoints::alg::ESP256 => &ECDSA_P256_COSE,
        crate::codepoints::alg::EDDSA | crate::codepoints::alg::ED25519 => &Ed25519,
        _ => return false,
    };
    ee.verify_signature(cose_alg, message, signature).is_ok()
}

fn split_chain<'a>(
    x5chain: &'a [u8],
    out: &mut [&'a [u8]; MAX_INTERMEDIATES + 1],
) -> Option<usize> {
    let mut r = Reader::new(x5chain);
    match r.kind().ok()? {
        Kind::Bytes => {
            *out.get_mut(0)? = r.bstr().ok()?;
            Some(1)
        }
        Kind::Array => {
            let n = usize::try_from(r.array().ok()?).ok()?;
            if n == 0 || n > out.len() {
                return None;
            }
            for slot in out.iter_mut().take(n) {
                *slot = r.bstr().ok()?;
            }
            Some(n)
        }
        _ => None,
    }
}

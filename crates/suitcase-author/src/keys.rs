//! Key generation, on top of the key files of [`suitcase_host::keys`] (re-exported here, so
//! `suitcase_author::keys::load_private` and friends keep working).
//!
//! Every generated key is written in the formats that module's table lists.

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use p256::elliptic_curve::sec1::ToSec1Point as _;
pub use suitcase_host::keys::*;
use suitcase_manifest::codepoints::alg;
use zeroize::Zeroizing;

use crate::error::{AuthorError, Result};
use crate::hss::{HssKeyFile, HssSigning};

/// The algorithms `suitcase key generate` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// ECDSA P-256 signing (COSE ESP256 -9 / ES256 -7).
    Es256,
    /// Ed25519 signing (COSE Ed25519 -19 / EdDSA -8).
    Ed25519,
    /// HMAC-SHA-256 (COSE_Mac0 alg 5), for devices that hold only a symmetric key.
    Hmac256,
    /// HSS-LMS (RFC 8554, COSE -46): stateful hash-based signatures.
    HssLms,
    /// ML-DSA-65 (FIPS 204, COSE -49): lattice signatures.
    MlDsa65,
    /// X25519 key agreement, for ECDH-ES+AES-KW recipients.
    X25519,
    /// P-256 key agreement, for ECDH-ES+AES-KW recipients.
    P256Ecdh,
    /// ML-KEM-768 (FIPS 203) key encapsulation, for post-quantum recipients.
    MlKem768,
    /// A 128-bit AES key-encryption key (A128KW recipients).
    A128Kw,
    /// A 256-bit AES key-encryption key (A256KW recipients).
    A256Kw,
}

impl KeyAlg {
    /// Every algorithm, in the order `--help` lists them.
    pub const ALL: [Self; 10] = [
        Self::Es256,
        Self::Ed25519,
        Self::Hmac256,
        Self::HssLms,
        Self::MlDsa65,
        Self::X25519,
        Self::P256Ecdh,
        Self::MlKem768,
        Self::A128Kw,
        Self::A256Kw,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "es256",
            Self::Ed25519 => "ed25519",
            Self::Hmac256 => "hmac256",
            Self::HssLms => "hss-lms",
            Self::MlDsa65 => "ml-dsa-65",
            Self::X25519 => "x25519",
            Self::P256Ecdh => "p256-ecdh",
            Self::MlKem768 => "ml-kem-768",
            Self::A128Kw => "a128kw",
            Self::A256Kw => "a256kw",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A generated key pair, as file contents.
#[derive(Debug)]
pub struct Generated {
    /// The private key file.
    pub private: Vec<u8>,
    /// Whether the private file is PEM text (else binary CBOR).
    pub pem: bool,
    /// The key id.
    pub kid: Vec<u8>,
}

/// Generates a key. HSS-LMS keys take their tree parameters from `hss_params`
/// (see [`crate::hss::parse_params`]).
///
/// # Errors
/// [`AuthorError::Rng`] if randomness fails, [`AuthorError::Release`] for bad HSS parameters.
pub fn generate(alg: KeyAlg, hss_params: &str) -> Result<Generated> {
    let pem = |s: Result<String, String>| {
        s.map_err(|e| AuthorError::Sign(format!("encoding the key: {e}")))
    };
    Ok(match alg {
        KeyAlg::Es256 | KeyAlg::P256Ecdh => {
            let secret = loop {
                if let Ok(k) = p256::SecretKey::from_slice(&crate::rng::bytes::<32>()?) {
                    break k;
                }
            };
            let kid = kid_of(secret.public_key().to_sec1_point(false).as_bytes());
            let text = pem(secret
                .to_pkcs8_pem(Default::default())
                .map(|s| s.to_string())
                .map_err(|e| e.to_string()))?;
            Generated {
                private: text.into_bytes(),
                pem: true,
                kid,
            }
        }
        KeyAlg::Ed25519 => {
            let key = ed25519_dalek::SigningKey::from_bytes(&crate::rng::bytes::<32>()?);
            let kid = kid_of(key.verifying_key().as_bytes());
            let text = pem(key
                .to_pkcs8_pem(Default::default())
                .map(|s| s.to_string())
                .map_err(|e| e.to_string()))?;
            Generated {
                private: text.into_bytes(),
                pem: true,
                kid,
            }
        }
        KeyAlg::Hmac256 | KeyAlg::A128Kw | KeyAlg::A256Kw => {
            let (cose_alg, len) = match alg {
                KeyAlg::Hmac256 => (alg::HMAC_256, 32),
                KeyAlg::A128Kw => (alg::A128KW, 16),
                _ => (alg::A256KW, 32),
            };
            let mut k = Zeroizing::new(vec![0u8; len]);
            crate::rng::fill(&mut k)?;
            let kid = kid_of(&k);
            cose_generated(PrivateKey::Symmetric {
                alg: cose_alg,
                k,
                kid,
            })?
        }
        KeyAlg::HssLms => {
            let file =
                <HssKeyFile as HssSigning>::generate(&crate::hss::parse_params(hss_params)?)?;
            let kid = file.kid.clone();
            Generated {
                private: file.encode(),
                pem: false,
                kid,
            }
        }
        KeyAlg::MlDsa65 => cose_generated(PrivateKey::MlDsa65(Zeroizing::new(
            crate::rng::bytes::<32>()?,
        )))?,
        KeyAlg::X25519 => cose_generated(PrivateKey::X25519(Zeroizing::new(crate::rng::bytes::<
            32,
        >()?)))?,
        KeyAlg::MlKem768 => cose_generated(PrivateKey::MlKem768(Zeroizing::new(
            crate::rng::bytes::<64>()?,
        )))?,
    })
}

/// A generated key written as its COSE_Key form.
fn cose_generated(key: PrivateKey) -> Result<Generated> {
    let kid = key.kid()?;
    let private = key
        .encode_cose()?
        .ok_or_else(|| AuthorError::Sign("no COSE_Key form".into()))?;
    Ok(Generated {
        private,
        pem: false,
        kid,
    })
}

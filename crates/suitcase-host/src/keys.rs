//! Key files: reading private and public keys, and writing files atomically. Generating keys
//! is the signer's business (`suitcase_author::keys::generate`).
//!
//! Formats, chosen so that standard tools can read what they know:
//!
//! | algorithm | private file | public file |
//! |---|---|---|
//! | es256, p256-ecdh | PKCS#8 PEM | SPKI PEM |
//! | ed25519 | PKCS#8 PEM | SPKI PEM |
//! | x25519 | COSE_Key OKP (crv 4, d, x) | COSE_Key OKP (crv 4, x) |
//! | hmac256, a128kw, a256kw | COSE_Key Symmetric (k) | the same secret (the device needs it) |
//! | hss-lms | stateful HSS key file (see [`crate::hss_file`]) | COSE_Key kty HSS-LMS (5), label -1 = RFC 8554 public key |
//! | ml-dsa-65 | COSE_Key AKP (7), alg -49, -1 public, -2 seed | COSE_Key AKP, -1 public |
//! | ml-kem-768 | COSE_Key AKP (7), alg [`SUITCASE_ML_KEM_768_A256KW`], -2 seed (d‖z) | COSE_Key AKP, -1 encapsulation key |
//!
//! COSE_Key files are binary CBOR; readers also accept hex text. Every COSE_Key carries a key
//! id (kid): the first 8 bytes of SHA-256 over the public key (or over the secret, for
//! symmetric keys, so that the kid never reveals it: SHA-256 is one-way).
//!
//! [`SUITCASE_ML_KEM_768_A256KW`]: suitcase_manifest::codepoints::alg::SUITCASE_ML_KEM_768_A256KW

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};
use p256::elliptic_curve::sec1::ToSec1Point as _;
use sha2::Digest as _;
use suitcase_manifest::build::raw::{bstr, int, map};
use suitcase_manifest::codepoints::alg;
use suitcase_manifest::encryption::KeyMaterial;
use suitcase_manifest::key::{CoseKey, crv, kty, label};
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};

/// COSE key type for HSS-LMS public keys (RFC 8778 §4).
pub const KTY_HSS_LMS: i64 = kty::HSS_LMS;

/// A private key, loaded.
#[derive(Debug)]
pub enum PrivateKey {
    /// P-256 (signing or key agreement).
    P256(p256::SecretKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
    /// A symmetric key: HMAC-256, A128KW or A256KW, told apart by `alg`.
    Symmetric {
        /// COSE alg of the key (5, -3 or -5).
        alg: i64,
        /// The secret.
        k: Zeroizing<Vec<u8>>,
        /// The key id.
        kid: Vec<u8>,
    },
    /// An HSS-LMS key: stateful, so it is used through its file ([`crate::hss_file::HssKeyFile`]).
    HssLms(PathBuf),
    /// ML-DSA-65 (seed).
    MlDsa65(Zeroizing<[u8; 32]>),
    /// X25519 (secret scalar).
    X25519(Zeroizing<[u8; 32]>),
    /// ML-KEM-768 (seed d‖z).
    MlKem768(Zeroizing<[u8; 64]>),
}

/// A public key (or, for symmetric algorithms, the shared secret), loaded.
#[derive(Clone, Debug)]
pub enum PublicKey {
    /// P-256.
    P256(p256::PublicKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A shared symmetric key.
    Symmetric {
        /// COSE alg of the key (5, -3 or -5).
        alg: i64,
        /// The secret.
        k: Zeroizing<Vec<u8>>,
    },
    /// An HSS public key (RFC 8554 encoding).
    HssLms(Vec<u8>),
    /// ML-DSA-65.
    MlDsa65(Box<ml_dsa::VerifyingKey<ml_dsa::MlDsa65>>),
    /// X25519.
    X25519([u8; 32]),
    /// ML-KEM-768 encapsulation key.
    MlKem768(Box<ml_kem::EncapsulationKey<ml_kem::MlKem768>>),
    /// A trust-anchor certificate (DER): trusts signers whose x5chain leads to it.
    X509Root(Vec<u8>),
}

/// The key id of a public key or a symmetric secret: SHA-256, first 8 bytes.
pub fn kid_of(material: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(material)[..8].to_vec()
}

fn symmetric_cose_key(cose_alg: i64, k: &[u8], kid: &[u8]) -> Vec<u8> {
    map(vec![
        (int(label::KTY), int(kty::SYMMETRIC)),
        (int(label::KID), bstr(kid)),
        (int(label::ALG), int(cose_alg)),
        (int(label::CRV_OR_K), bstr(k)),
    ])
}

fn ml_dsa_public(seed: &[u8; 32]) -> Vec<u8> {
    let sk = ml_dsa::SigningKey::<ml_dsa::MlDsa65>::from_seed(&(*seed).into());
    sk.expanded_key().verifying_key().encode().to_vec()
}

fn ml_kem_public(seed: &[u8; 64]) -> Vec<u8> {
    use ml_kem::KeyExport;
    let dk = ml_kem::DecapsulationKey::<ml_kem::MlKem768>::from_seed((*seed).into());
    dk.encapsulation_key().to_bytes().to_vec()
}

fn key_err(path: &Path, what: impl Into<String>) -> KeyError {
    KeyError::Key {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Reads a file, accepting hex text for binary formats.
fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        error: source,
    })
}

fn decode_maybe_hex(bytes: &[u8]) -> Vec<u8> {
    let text = bytes
        .iter()
        .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
    if text {
        let digits: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(u8::is_ascii_hexdigit)
            .collect();
        if let Ok(b) = hex::decode(digits) {
            return b;
        }
    }
    bytes.to_vec()
}

fn pem_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.contains("-----BEGIN"))
}

/// Loads a private key file in any format `suitcase key generate` writes (and SEC1 PEM for P-256).
///
/// # Errors
/// [`KeyError::Key`] naming what the file should hold.
pub fn load_private(path: &Path) -> Result<PrivateKey> {
    parse_private(path, &read(path)?)
}

/// Parses a private key from the bytes of the file at `path` (an HSS-LMS key stays a path: its
/// state lives in that file).
fn parse_private(path: &Path, bytes: &[u8]) -> Result<PrivateKey> {
    if let Some(text) = pem_text(bytes) {
        if let Ok(k) =
            p256::SecretKey::from_pkcs8_pem(text).or_else(|_| p256::SecretKey::from_sec1_pem(text))
        {
            return Ok(PrivateKey::P256(k));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
            return Ok(PrivateKey::Ed25519(k));
        }
        return Err(key_err(
            path,
            "a PEM private key must be PKCS#8 or SEC1 P-256, or PKCS#8 Ed25519",
        ));
    }
    let raw = decode_maybe_hex(bytes);
    if crate::hss_file::HssKeyFile::is_hss_key_file(&raw) {
        return Ok(PrivateKey::HssLms(path.to_path_buf()));
    }
    let key = CoseKey::decode(&raw).map_err(|e| {
        key_err(
            path,
            format!(
                "{e}; expected a private key written by `suitcase key generate` (PEM or COSE_Key)"
            ),
        )
    })?;
    private_from_cose(path, &key)
}

fn private_from_cose(path: &Path, key: &CoseKey<'_>) -> Result<PrivateKey> {
    match (key.kty, key.crv, key.alg) {
        (kty::SYMMETRIC, _, a) => {
            let k = key
                .k
                .ok_or_else(|| key_err(path, "symmetric COSE_Key without k"))?;
            let alg = match (a, k.len()) {
                (Some(a), _) => a,
                (None, 16) => alg::A128KW,
                (None, _) => alg::HMAC_256,
            };
            let kid = key.kid.map_or_else(|| kid_of(k), <[u8]>::to_vec);
            Ok(PrivateKey::Symmetric {
                alg,
                k: Zeroizing::new(k.to_vec()),
                kid,
            })
        }
        (kty::EC2, Some(crv::P256), _) => {
            let d = key
                .d
                .ok_or_else(|| key_err(path, "EC2 key has no private part d"))?;
            p256::SecretKey::from_slice(d)
                .map(PrivateKey::P256)
                .map_err(|_| key_err(path, "bad P-256 d"))
        }
        (kty::OKP, Some(crv::X25519), _) => {
            let d: [u8; 32] = key
                .d
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| key_err(path, "X25519 key needs a 32-byte d"))?;
            Ok(PrivateKey::X25519(Zeroizing::new(d)))
        }
        (kty::OKP, Some(crv::ED25519), _) => {
            let d: [u8; 32] = key
                .d
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| key_err(path, "Ed25519 key needs a 32-byte d"))?;
            Ok(PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                &d,
            )))
        }
        (kty::AKP, _, Some(alg::ML_DSA_65)) => {
            let seed: [u8; 32] = key
                .private
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| key_err(path, "ML-DSA-65 key needs a 32-byte seed (-2)"))?;
            Ok(PrivateKey::MlDsa65(Zeroizing::new(seed)))
        }
        (kty::AKP, _, Some(alg::SUITCASE_ML_KEM_768_A256KW)) => {
            let seed: [u8; 64] = key
                .private
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| key_err(path, "ML-KEM-768 key needs a 64-byte seed (-2)"))?;
            Ok(PrivateKey::MlKem768(Zeroizing::new(seed)))
        }
        (t, c, a) => Err(key_err(
            path,
            format!("not a private key this tool reads (kty {t}, crv {c:?}, alg {a:?})"),
        )),
    }
}

/// Loads a public key (or shared secret) in any format `key public` writes; a private key file
/// is accepted too and its public half used.
///
/// # Errors
/// [`KeyError::Key`] naming what the file should hold.
pub fn load_public(path: &Path) -> Result<PublicKey> {
    parse_public(path, &read(path)?)
}

/// Parses a public key (or shared secret) from bytes in any format [`load_public`] reads; for
/// keys that arrive over the network. `origin` names the source in errors. An HSS-LMS private
/// key file is refused here: its state must stay with the signer.
///
/// # Errors
/// [`KeyError::Key`] naming what the bytes should hold.
pub fn parse_public(origin: &Path, bytes: &[u8]) -> Result<PublicKey> {
    let path = origin;
    if pem_text(bytes).is_some_and(|t| t.contains("-----BEGIN CERTIFICATE-----")) {
        let certs = crate::x509::parse_certs(path, bytes)?;
        return certs
            .into_iter()
            .next()
            .map(PublicKey::X509Root)
            .ok_or_else(|| key_err(path, "no certificate"));
    }
    if let Some(text) = pem_text(bytes) {
        if let Ok(k) = p256::PublicKey::from_public_key_pem(text) {
            return Ok(PublicKey::P256(k));
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            return Ok(PublicKey::Ed25519(k));
        }
        return public_of(&parse_private(path, bytes)?);
    }
    let raw = decode_maybe_hex(bytes);
    if crate::hss_file::HssKeyFile::is_hss_key_file(&raw) {
        return Ok(PublicKey::HssLms(
            crate::hss_file::HssKeyFile::decode(path, &raw)?.public,
        ));
    }
    let key = CoseKey::decode(&raw).map_err(|e| {
        key_err(
            path,
            format!("{e}; expected a PEM public key (SPKI) or a COSE_Key"),
        )
    })?;
    match (key.kty, key.crv, key.alg) {
        (kty::EC2, Some(crv::P256), _) => {
            let (Some(x), Some(y)) = (key.x, key.y) else {
                return Err(key_err(path, "EC2 key without x and y"));
            };
            let mut sec1 = vec![4u8];
            sec1.extend_from_slice(x);
            sec1.extend_from_slice(y);
            p256::PublicKey::from_sec1_bytes(&sec1)
                .map(PublicKey::P256)
                .map_err(|_| key_err(path, "not a P-256 point"))
        }
        (kty::OKP, Some(crv::ED25519), _) => {
            let x: [u8; 32] = key
                .x
                .and_then(|x| x.try_into().ok())
                .ok_or_else(|| key_err(path, "Ed25519 key needs a 32-byte x"))?;
            ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map(PublicKey::Ed25519)
                .map_err(|_| key_err(path, "not an Ed25519 key"))
        }
        (kty::OKP, Some(crv::X25519), _) => {
            let x: [u8; 32] = key
                .x
                .and_then(|x| x.try_into().ok())
                .ok_or_else(|| key_err(path, "X25519 key needs a 32-byte x"))?;
            Ok(PublicKey::X25519(x))
        }
        (KTY_HSS_LMS, _, _) => {
            let public = key
                .public
                .ok_or_else(|| key_err(path, "HSS-LMS key without its public key (-1)"))?;
            Ok(PublicKey::HssLms(public.to_vec()))
        }
        (kty::AKP, _, Some(alg::ML_DSA_65)) => {
            let public = key
                .public
                .ok_or_else(|| key_err(path, "ML-DSA-65 key without its public key (-1)"))?;
            let enc = ml_dsa::EncodedVerifyingKey::<ml_dsa::MlDsa65>::try_from(public)
                .map_err(|_| key_err(path, "an ML-DSA-65 public key is 1952 bytes"))?;
            Ok(PublicKey::MlDsa65(Box::new(ml_dsa::VerifyingKey::decode(
                &enc,
            ))))
        }
        (kty::AKP, _, Some(alg::SUITCASE_ML_KEM_768_A256KW)) => {
            use ml_kem::TryKeyInit;
            let public = key.public.ok_or_else(|| {
                key_err(path, "ML-KEM-768 key without its encapsulation key (-1)")
            })?;
            let ek = ml_kem::EncapsulationKey::<ml_kem::MlKem768>::new_from_slice(public).map_err(
                |_| key_err(path, "an ML-KEM-768 encapsulation key is 1184 valid bytes"),
            )?;
            Ok(PublicKey::MlKem768(Box::new(ek)))
        }
        (kty::SYMMETRIC, _, _) => match private_from_cose(path, &key)? {
            PrivateKey::Symmetric { alg, k, .. } => Ok(PublicKey::Symmetric { alg, k }),
            _ => Err(key_err(path, "bad symmetric key")),
        },
        _ => public_of(&private_from_cose(path, &key)?),
    }
}

/// Whether these bytes hold private (asymmetric) key material: a PEM private key, an HSS-LMS
/// private key file with its state, or a COSE_Key with `d` or an AKP private key. A public
/// key is read from such a file too (its public half), but a server or device that is handed
/// one as a trust anchor must refuse it: the secret would sit where only the public key
/// belongs (in a database, in a device's configuration). Shared HMAC secrets are not
/// "private keys" here; callers decide about them separately.
pub fn holds_private_key(bytes: &[u8]) -> bool {
    if let Some(text) = pem_text(bytes) {
        return text.contains("PRIVATE KEY-----");
    }
    let raw = decode_maybe_hex(bytes);
    if crate::hss_file::HssKeyFile::is_hss_key_file(&raw) {
        return true;
    }
    CoseKey::decode(&raw).is_ok_and(|k| k.d.is_some() || k.private.is_some())
}

/// The public half of a private key (the secret itself for symmetric keys).
///
/// # Errors
/// [`KeyError::Key`] if an HSS-LMS key file cannot be read.
pub fn public_of(key: &PrivateKey) -> Result<PublicKey> {
    Ok(match key {
        PrivateKey::P256(k) => PublicKey::P256(k.public_key()),
        PrivateKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
        PrivateKey::Symmetric { alg, k, .. } => PublicKey::Symmetric {
            alg: *alg,
            k: k.clone(),
        },
        PrivateKey::HssLms(path) => {
            PublicKey::HssLms(crate::hss_file::HssKeyFile::load(path)?.public)
        }
        PrivateKey::MlDsa65(seed) => {
            let enc = ml_dsa_public(seed);
            let enc = ml_dsa::EncodedVerifyingKey::<ml_dsa::MlDsa65>::try_from(enc.as_slice())
                .map_err(|_| KeyError::Encode("ML-DSA public key".into()))?;
            PublicKey::MlDsa65(Box::new(ml_dsa::VerifyingKey::decode(&enc)))
        }
        PrivateKey::X25519(secret) => PublicKey::X25519(
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(**secret)).to_bytes(),
        ),
        PrivateKey::MlKem768(seed) => {
            let dk = ml_kem::DecapsulationKey::<ml_kem::MlKem768>::from_seed((**seed).into());
            PublicKey::MlKem768(Box::new(dk.encapsulation_key().clone()))
        }
    })
}

impl PublicKey {
    /// The key id, derived as `suitcase key generate` derives it.
    pub fn kid(&self) -> Vec<u8> {
        use ml_kem::KeyExport;
        match self {
            Self::P256(k) => kid_of(k.to_sec1_point(false).as_bytes()),
            Self::Ed25519(k) => kid_of(k.as_bytes()),
            Self::Symmetric { k, .. } => kid_of(k),
            Self::HssLms(p) => kid_of(p),
            Self::MlDsa65(k) => kid_of(&k.encode()),
            Self::X25519(x) => kid_of(x),
            Self::MlKem768(ek) => kid_of(&ek.to_bytes()),
            Self::X509Root(der) => kid_of(der),
        }
    }

    /// A short name of the key type.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::P256(_) => "p256",
            Self::Ed25519(_) => "ed25519",
            Self::Symmetric {
                alg: alg::HMAC_256, ..
            } => "hmac256",
            Self::Symmetric {
                alg: alg::A128KW, ..
            } => "a128kw",
            Self::Symmetric { .. } => "a256kw",
            Self::HssLms(_) => "hss-lms",
            Self::MlDsa65(_) => "ml-dsa-65",
            Self::X25519(_) => "x25519",
            Self::MlKem768(_) => "ml-kem-768",
            Self::X509Root(_) => "x509-root",
        }
    }

    /// The public key as a COSE_Key (RFC 9052 §7), whatever its algorithm.
    ///
    /// # Errors
    /// [`KeyError::Encode`] if the key cannot be encoded.
    pub fn encode_cose(&self) -> Result<Vec<u8>> {
        let kid = self.kid();
        Ok(match self {
            Self::P256(k) => {
                let point = k.to_sec1_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(KeyError::Encode("P-256 point at infinity".into()));
                };
                map(vec![
                    (int(label::KTY), int(kty::EC2)),
                    (int(label::KID), bstr(&kid)),
                    (int(label::CRV_OR_K), int(crv::P256)),
                    (int(label::X), bstr(x)),
                    (int(label::Y), bstr(y)),
                ])
            }
            Self::Ed25519(k) => map(vec![
                (int(label::KTY), int(kty::OKP)),
                (int(label::KID), bstr(&kid)),
                (int(label::CRV_OR_K), int(crv::ED25519)),
                (int(label::X), bstr(k.as_bytes())),
            ]),
            other => other.encode()?.0,
        })
    }

    /// The public key file contents: SPKI PEM for P-256 and Ed25519, COSE_Key otherwise.
    ///
    /// # Errors
    /// [`KeyError::Encode`] if PEM encoding fails.
    pub fn encode(&self) -> Result<(Vec<u8>, bool)> {
        use ml_kem::KeyExport;
        let kid = self.kid();
        let pem_err = |e: String| KeyError::Encode(format!("encoding the key: {e}"));
        Ok(match self {
            Self::P256(k) => (
                k.to_public_key_pem(Default::default())
                    .map_err(|e| pem_err(e.to_string()))?
                    .into_bytes(),
                true,
            ),
            Self::Ed25519(k) => (
                k.to_public_key_pem(Default::default())
                    .map_err(|e| pem_err(e.to_string()))?
                    .into_bytes(),
                true,
            ),
            Self::Symmetric { alg, k } => (symmetric_cose_key(*alg, k, &kid), false),
            Self::HssLms(p) => (
                map(vec![
                    (int(label::KTY), int(KTY_HSS_LMS)),
                    (int(label::KID), bstr(&kid)),
                    (int(label::ALG), int(alg::HSS_LMS)),
                    (int(-1), bstr(p)),
                ]),
                false,
            ),
            Self::MlDsa65(k) => (
                map(vec![
                    (int(label::KTY), int(kty::AKP)),
                    (int(label::KID), bstr(&kid)),
                    (int(label::ALG), int(alg::ML_DSA_65)),
                    (int(-1), bstr(&k.encode())),
                ]),
                false,
            ),
            Self::X25519(x) => (
                map(vec![
                    (int(label::KTY), int(kty::OKP)),
                    (int(label::KID), bstr(&kid)),
                    (int(label::CRV_OR_K), int(crv::X25519)),
                    (int(label::X), bstr(x)),
                ]),
                false,
            ),
            Self::MlKem768(ek) => (
                map(vec![
                    (int(label::KTY), int(kty::AKP)),
                    (int(label::KID), bstr(&kid)),
                    (int(label::ALG), int(alg::SUITCASE_ML_KEM_768_A256KW)),
                    (int(-1), bstr(&ek.to_bytes())),
                ]),
                false,
            ),
            Self::X509Root(der) => (
                crate::x509::to_pem(std::slice::from_ref(der)).into_bytes(),
                true,
            ),
        })
    }

    /// Whether this key signs or MACs manifests (as opposed to receiving content keys).
    pub fn is_authenticator(&self) -> bool {
        matches!(
            self,
            Self::P256(_)
                | Self::Ed25519(_)
                | Self::HssLms(_)
                | Self::MlDsa65(_)
                | Self::X509Root(_)
        ) || matches!(
            self,
            Self::Symmetric {
                alg: alg::HMAC_256,
                ..
            }
        )
    }

    /// Whether this is a post-quantum algorithm.
    pub fn is_post_quantum(&self) -> bool {
        matches!(self, Self::HssLms(_) | Self::MlDsa65(_) | Self::MlKem768(_))
    }

    /// Borrows the key as a device trust anchor key, if it can authenticate manifests.
    pub fn as_trust_key(&self) -> Option<suitcase_manifest::PublicKey<'_>> {
        Some(match self {
            Self::P256(k) => {
                suitcase_manifest::PublicKey::P256(p256::ecdsa::VerifyingKey::from(*k))
            }
            Self::Ed25519(k) => suitcase_manifest::PublicKey::Ed25519(*k),
            Self::Symmetric {
                alg: alg::HMAC_256,
                k,
            } => suitcase_manifest::PublicKey::Hmac256(k),
            Self::HssLms(p) => suitcase_manifest::PublicKey::HssLms(p),
            Self::MlDsa65(k) => suitcase_manifest::PublicKey::MlDsa65(k),
            Self::X509Root(der) => suitcase_manifest::PublicKey::X509Root(der),
            _ => return None,
        })
    }
}

impl PrivateKey {
    /// The private key as a COSE_Key (P-256 and Ed25519 with `d`; the others are already
    /// COSE_Key files). `None` for an HSS-LMS key, whose file format carries its state.
    ///
    /// # Errors
    /// [`KeyError::Encode`] if the key cannot be encoded.
    pub fn encode_cose(&self) -> Result<Option<Vec<u8>>> {
        let public = public_of(self)?;
        let with_d = |d: &[u8]| -> Result<Option<Vec<u8>>> {
            let cose = public.encode_cose()?;
            let key = CoseKey::decode(&cose).map_err(|e| KeyError::Encode(e.to_string()))?;
            let mut entries = vec![
                (int(label::KTY), int(key.kty)),
                (int(label::KID), bstr(&public.kid())),
                (int(label::D), bstr(d)),
            ];
            if let Some(c) = key.crv {
                entries.push((int(label::CRV_OR_K), int(c)));
            }
            if let Some(x) = key.x {
                entries.push((int(label::X), bstr(x)));
            }
            if let Some(y) = key.y {
                entries.push((int(label::Y), bstr(y)));
            }
            Ok(Some(map(entries)))
        };
        match self {
            Self::P256(k) => with_d(&k.to_bytes()),
            Self::Ed25519(k) => with_d(k.as_bytes()),
            Self::HssLms(_) => Ok(None),
            Self::Symmetric { alg, k, kid } => Ok(Some(symmetric_cose_key(*alg, k, kid))),
            Self::MlDsa65(seed) => Ok(Some(map(vec![
                (int(label::KTY), int(kty::AKP)),
                (int(label::KID), bstr(&public.kid())),
                (int(label::ALG), int(alg::ML_DSA_65)),
                (int(-1), bstr(&ml_dsa_public(seed))),
                (int(-2), bstr(seed.as_slice())),
            ]))),
            Self::X25519(secret) => with_d(secret.as_slice()),
            Self::MlKem768(seed) => Ok(Some(map(vec![
                (int(label::KTY), int(kty::AKP)),
                (int(label::KID), bstr(&public.kid())),
                (int(label::ALG), int(alg::SUITCASE_ML_KEM_768_A256KW)),
                (int(-1), bstr(&ml_kem_public(seed))),
                (int(-2), bstr(seed.as_slice())),
            ]))),
        }
    }

    /// The device-side decryption key material, if this key can recover content keys.
    pub fn key_material(&self) -> Option<KeyMaterial> {
        Some(match self {
            Self::P256(k) => KeyMaterial::P256(k.clone()),
            Self::Symmetric {
                alg: alg::A128KW,
                k,
                ..
            } => KeyMaterial::Aes128Kw(k.as_slice().try_into().ok()?),
            Self::Symmetric {
                alg: alg::A256KW,
                k,
                ..
            } => KeyMaterial::Aes256Kw(k.as_slice().try_into().ok()?),
            Self::X25519(s) => KeyMaterial::X25519(**s),
            Self::MlKem768(s) => KeyMaterial::MlKem768(**s),
            _ => return None,
        })
    }

    /// The key id stored with or derived for this key.
    ///
    /// # Errors
    /// [`KeyError::Key`] if an HSS-LMS key file cannot be read.
    pub fn kid(&self) -> Result<Vec<u8>> {
        match self {
            Self::Symmetric { kid, .. } => Ok(kid.clone()),
            other => Ok(public_of(other)?.kid()),
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over the target. A crash leaves either the old file or the new one.
///
/// # Errors
/// [`KeyError::Write`].
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    use std::io::Write;
    let err = |source| KeyError::Write {
        path: path.to_path_buf(),
        error: source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".suitcase-")
        .tempfile_in(dir)
        .map_err(err)?;
    if secret {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
    }
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

//! Signers: where a signature comes from.
//!
//! Every signature suitcase makes goes through the [`Signer`] trait. The caller (a release
//! build, a countersignature) builds the COSE structure to be signed (the Sig_structure of
//! RFC 9052 §4.4 for COSE_Sign1, the MAC_structure of §6.3 for COSE_Mac0) in one place,
//! [`sign_block`], and hands the encoded bytes to [`Signer::sign`]; the signer returns the
//! signature in its COSE form. A signer never sees anything but those bytes, and it never
//! has to know CBOR.
//!
//! Back-ends:
//!
//! | back-end | type | key reference on the command line |
//! |---|---|---|
//! | a key file (PEM or COSE_Key, HSS-LMS with its state) | [`SoftwareSigner`] | a path |
//! | a PKCS#11 token (HSM, smart card, SoftHSM2) | [`crate::pkcs11::Pkcs11Signer`] | `pkcs11:token=…;object=…?module-path=…&pin-source=…` (RFC 7512) |
//!
//! [`open`] picks the back-end from the reference.
//!
//! # Plugging in another back-end (a cloud KMS, a remote signing service)
//!
//! Implement [`Signer`] for a type that holds the connection:
//!
//! * [`Signer::public_key`] returns the public key, fetched once when the signer is opened
//!   (a KMS's `GetPublicKey`, a signing service's key endpoint). The key id, the security
//!   profile check and the x5chain matching all derive from it, so a KMS key gets the same kid
//!   as a software key with the same public key.
//! * [`Signer::sign`] sends what the algorithm needs (for ES256 the SHA-256 of the bytes it is
//!   given, as a KMS "digest" sign request; for Ed25519 the bytes themselves) and returns the
//!   COSE form: raw `r‖s` (64 bytes) for ES256 (RFC 9053 §2.1), which a KMS that answers in
//!   ASN.1 DER must be converted to, and the 64-byte signature for Ed25519. Verify it with
//!   [`verify_raw`] before returning it, as the PKCS#11 signer does, so that a misbehaving
//!   service cannot put a bad signature into a release.
//! * Recognise its reference in [`open`] (a scheme such as `awskms:` next to `pkcs11:`); every
//!   command that takes a signing key then accepts it.
//!
//! Nothing else changes: [`sign_block`] and [`crate::release`] only see the trait.
//!
//! ```
//! use suitcase_author::keys::{KeyAlg, generate};
//! use suitcase_author::signer::{open, verify_raw};
//!
//! let dir = tempfile::tempdir()?;
//! let key = dir.path().join("author.key");
//! std::fs::write(&key, generate(KeyAlg::Es256, "")?.private)?;
//! let signer = open(&key)?; // or open("pkcs11:token=...;object=...?module-path=...".as_ref())
//! let signature = signer.sign(b"Sig_structure bytes")?;
//! assert!(verify_raw(signer.public_key(), b"Sig_structure bytes", &signature).is_ok());
//! assert!(verify_raw(signer.public_key(), b"tampered bytes", &signature).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use suitcase_manifest::codepoints::alg;

use crate::error::{AuthorError, Result};
use crate::keys::{PrivateKey, PublicKey};

/// Which COSE structure a signer's output goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structure {
    /// A signature: COSE_Sign1 (RFC 9052 §4.2).
    Sign1,
    /// A MAC with a shared key: COSE_Mac0 (RFC 9052 §6.2).
    Mac0,
}

/// Something that signs manifests: a key file, a key on a token, a key in a KMS.
pub trait Signer: core::fmt::Debug {
    /// How the key is referred to in messages: the file path, or the PKCS#11 URI without its PIN.
    fn name(&self) -> String;
    /// The COSE algorithm of the signatures (RFC 9053 / RFC 9864 / RFC 8778 codepoints).
    fn cose_alg(&self) -> i64;
    /// The public key (the shared secret, for an HMAC key).
    fn public_key(&self) -> &PublicKey;
    /// The key id put in the unprotected header: by default derived from the public key as
    /// `suitcase key generate` derives it.
    fn kid(&self) -> Vec<u8> {
        self.public_key().kid()
    }
    /// The COSE structure the output belongs in.
    fn structure(&self) -> Structure {
        Structure::Sign1
    }
    /// Signs `to_be_signed`, the encoded Sig_structure (or MAC_structure), and returns the
    /// signature in its COSE form.
    ///
    /// # Errors
    /// [`AuthorError::Sign`] (or a more specific variant) naming what failed; no signature is
    /// released then.
    fn sign(&self, to_be_signed: &[u8]) -> Result<Vec<u8>>;
}

/// Opens the signer a command-line key reference names: a `pkcs11:` URI (RFC 7512) or a key
/// file path.
///
/// # Errors
/// The key file's or the token's error, naming what to fix.
pub fn open(reference: &Path) -> Result<Box<dyn Signer>> {
    if let Some(uri) = pkcs11_uri(reference) {
        return Ok(Box::new(crate::pkcs11::Pkcs11Signer::open(uri)?));
    }
    let key = crate::keys::load_private(reference)?;
    Ok(Box::new(SoftwareSigner::new(key, reference)?))
}

/// The URI, if `reference` is a `pkcs11:` URI rather than a file path. A file whose name
/// starts with `pkcs11:` is still reachable as `./pkcs11:…`.
pub fn pkcs11_uri(reference: &Path) -> Option<&str> {
    reference.to_str().filter(|s| s.starts_with("pkcs11:"))
}

/// How a key reference is shown in messages: a path as it is, a PKCS#11 URI without any PIN.
pub fn display_reference(reference: &Path) -> String {
    match pkcs11_uri(reference) {
        Some(uri) => crate::pkcs11::redact(uri),
        None => reference.display().to_string(),
    }
}

/// An encoded authentication block and what made it.
#[derive(Clone, Debug)]
pub struct SignedBlock {
    /// The tagged COSE_Sign1 / COSE_Mac0.
    pub bytes: Vec<u8>,
    /// Its COSE algorithm.
    pub alg: i64,
    /// The signer's key id.
    pub kid: Vec<u8>,
}

/// Signs the encoded SUIT_Digest `payload` with `signer`: a tagged COSE_Sign1 (with `chain`
/// as x5chain, RFC 9360) or, for an HMAC key, a COSE_Mac0.
///
/// # Errors
/// The signer's error; [`AuthorError::Release`] for a certificate chain on a MAC key.
pub fn sign_block(signer: &dyn Signer, chain: &[Vec<u8>], payload: &[u8]) -> Result<SignedBlock> {
    use suitcase_manifest::build::{mac0_block, sign1_block_with_chain};
    let kid = signer.kid();
    let cose_alg = signer.cose_alg();
    let bytes = match signer.structure() {
        Structure::Sign1 => {
            sign1_block_with_chain(cose_alg, Some(&kid), chain, payload, |tbs| signer.sign(tbs))?
        }
        Structure::Mac0 if chain.is_empty() => {
            mac0_block(cose_alg, Some(&kid), payload, |tbs| signer.sign(tbs))?
        }
        Structure::Mac0 => {
            return Err(AuthorError::Release(format!(
                "{}: a certificate chain certifies a public key; an HMAC key has none",
                signer.name()
            )));
        }
    };
    Ok(SignedBlock {
        bytes,
        alg: cose_alg,
        kid,
    })
}

/// Checks a raw COSE signature (`r‖s` for ESP256, RFC 9053 §2.1; RFC 8032 for Ed25519) over
/// `to_be_signed` with `public`. Back-ends that sign outside this process call it before
/// releasing a signature.
///
/// # Errors
/// [`AuthorError::Sign`] if the signature does not verify or the key cannot sign.
pub fn verify_raw(public: &PublicKey, to_be_signed: &[u8], signature: &[u8]) -> Result<()> {
    let ok = match public {
        PublicKey::P256(k) => {
            use p256::ecdsa::signature::Verifier as _;
            p256::ecdsa::Signature::from_slice(signature).is_ok_and(|s| {
                p256::ecdsa::VerifyingKey::from(*k)
                    .verify(to_be_signed, &s)
                    .is_ok()
            })
        }
        PublicKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|s| k.verify_strict(to_be_signed, &s).is_ok()),
        other => {
            return Err(AuthorError::Sign(format!(
                "cannot check a {} signature here",
                other.kind()
            )));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(AuthorError::Sign(
            "the signature does not verify with the key's public key; it was not used".into(),
        ))
    }
}

/// A key held in this process, loaded from a key file: P-256 (ESP256), Ed25519, HMAC-256,
/// HSS-LMS (through its state file, [`crate::hss`]) or ML-DSA-65.
///
/// `K` is the key or a borrow of it, so that a caller that signs many times with one loaded
/// key need not give it up.
#[derive(Debug)]
pub struct SoftwareSigner<K = PrivateKey> {
    key: K,
    path: PathBuf,
    public: PublicKey,
    kid: Vec<u8>,
    alg: i64,
}

impl<K: core::borrow::Borrow<PrivateKey>> SoftwareSigner<K> {
    /// A signer for `key`, loaded from `path` (named in messages; an HSS-LMS key's state lives
    /// there).
    ///
    /// # Errors
    /// [`AuthorError::Key`] for a key that cannot authenticate manifests.
    pub fn new(key: K, path: &Path) -> Result<Self> {
        let k = key.borrow();
        let alg = match k {
            PrivateKey::P256(_) => alg::ESP256,
            PrivateKey::Ed25519(_) => alg::ED25519,
            PrivateKey::Symmetric {
                alg: alg::HMAC_256, ..
            } => alg::HMAC_256,
            PrivateKey::HssLms(_) => alg::HSS_LMS,
            PrivateKey::MlDsa65(_) => alg::ML_DSA_65,
            _ => {
                // Name what the key is (an x25519 or AES key-wrap key is a decryption key).
                let kind = crate::keys::public_of(k).map_or("this", |p| p.kind());
                return Err(AuthorError::Key {
                    path: path.to_path_buf(),
                    what: format!(
                        "a {kind} key cannot sign manifests: use an es256, ed25519, hmac256, \
                         hss-lms or ml-dsa-65 key"
                    ),
                });
            }
        };
        let public = crate::keys::public_of(k)?;
        let kid = k.kid()?;
        Ok(Self {
            key,
            path: path.to_path_buf(),
            public,
            kid,
            alg,
        })
    }
}

impl<K: core::borrow::Borrow<PrivateKey> + core::fmt::Debug> Signer for SoftwareSigner<K> {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn cose_alg(&self) -> i64 {
        self.alg
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn kid(&self) -> Vec<u8> {
        self.kid.clone()
    }

    fn structure(&self) -> Structure {
        if self.alg == alg::HMAC_256 {
            Structure::Mac0
        } else {
            Structure::Sign1
        }
    }

    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>> {
        match self.key.borrow() {
            PrivateKey::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let s: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(k).sign(tbs);
                Ok(s.to_bytes().to_vec())
            }
            PrivateKey::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                Ok(k.sign(tbs).to_bytes().to_vec())
            }
            PrivateKey::Symmetric { k, .. } => {
                use hmac::{KeyInit, Mac};
                let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(k)
                    .map_err(|_| AuthorError::Sign("HMAC key".into()))?;
                m.update(tbs);
                Ok(m.finalize().into_bytes().to_vec())
            }
            PrivateKey::HssLms(file) => crate::hss::sign_file(file, tbs),
            PrivateKey::MlDsa65(seed) => {
                use ml_dsa::SignatureEncoding;
                use ml_dsa::signature::Signer as _;
                let sk = ml_dsa::SigningKey::<ml_dsa::MlDsa65>::from_seed(&(**seed).into());
                Ok(sk.sign(tbs).to_bytes().to_vec())
            }
            // `new` admits only the variants above.
            _ => Err(AuthorError::Key {
                path: self.path.clone(),
                what: "this key cannot sign manifests".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn software_signatures_verify_and_a_tampered_message_does_not() {
        for alg in [crate::keys::KeyAlg::Es256, crate::keys::KeyAlg::Ed25519] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("k.pem");
            std::fs::write(&path, crate::keys::generate(alg, "").unwrap().private).unwrap();
            let signer = open(&path).unwrap();
            let sig = signer.sign(b"to be signed").unwrap();
            verify_raw(signer.public_key(), b"to be signed", &sig).unwrap();
            verify_raw(signer.public_key(), b"to be signeD", &sig).unwrap_err();
        }
    }

    #[test]
    fn a_key_that_cannot_sign_is_refused_with_what_to_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.key");
        std::fs::write(
            &path,
            crate::keys::generate(crate::keys::KeyAlg::X25519, "")
                .unwrap()
                .private,
        )
        .unwrap();
        let err = open(&path).unwrap_err().to_string();
        assert!(err.contains("cannot sign manifests"), "{err}");
    }
}

//! Certificates for the Enhanced tier's PKI: a root CA, intermediate CAs and signer (leaf)
//! certificates, all P-256, all marked for code signing (RFC 5280 §4.2.1.12 id-kp-codeSigning)
//! because the device requires that purpose on every certificate of the path.

use std::str::FromStr;
use std::time::Duration;

use p256::pkcs8::EncodePublicKey as _;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::Validity;

use crate::error::{AuthorError, Result};
use crate::keys::{PrivateKey, PublicKey};
use crate::signer::{Signer, SoftwareSigner};

const CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";

/// Who signs a new certificate.
#[derive(Debug)]
pub enum Issuer<'a> {
    /// The subject itself (a root CA).
    SelfSigned(&'a p256::SecretKey),
    /// A CA, by its key and certificate (DER).
    Ca {
        /// The CA's private key.
        key: &'a p256::SecretKey,
        /// The CA's certificate.
        cert: &'a [u8],
    },
    /// The subject itself, its key behind a [`Signer`] (a key on a PKCS#11 token).
    SelfSignedBy(&'a dyn Signer),
    /// A CA whose key is behind a [`Signer`], and its certificate (DER).
    CaBy {
        /// The CA's signer (ES256).
        signer: &'a dyn Signer,
        /// The CA's certificate.
        cert: &'a [u8],
    },
}

/// A [`Signer`] seen as the RustCrypto ECDSA P-256 signer that the certificate builder wants:
/// ecdsa-with-SHA256 (RFC 5758 §3.2), the signature DER-encoded (RFC 5480 §2.2 ECDSA-Sig-Value).
struct X509Signer<'a> {
    signer: &'a dyn Signer,
    key: p256::ecdsa::VerifyingKey,
    /// The signer's own error, which the certificate builder's opaque error would hide (a
    /// token that would not sign says why here).
    failure: core::cell::RefCell<Option<AuthorError>>,
}

impl<'a> X509Signer<'a> {
    fn new(signer: &'a dyn Signer) -> Result<Self> {
        match (signer.public_key(), signer.cose_alg()) {
            (PublicKey::P256(k), suitcase_manifest::codepoints::alg::ESP256) => Ok(Self {
                signer,
                key: p256::ecdsa::VerifyingKey::from(*k),
                failure: core::cell::RefCell::new(None),
            }),
            (other, _) => Err(AuthorError::Key {
                path: signer.name().into(),
                what: format!(
                    "certificates are issued by P-256 (es256) keys; this is a {} key",
                    other.kind()
                ),
            }),
        }
    }
}

impl p256::ecdsa::signature::Keypair for X509Signer<'_> {
    type VerifyingKey = p256::ecdsa::VerifyingKey;

    fn verifying_key(&self) -> Self::VerifyingKey {
        self.key
    }
}

impl x509_cert::spki::SignatureAlgorithmIdentifier for X509Signer<'_> {
    type Params = x509_cert::der::AnyRef<'static>;

    const SIGNATURE_ALGORITHM_IDENTIFIER: x509_cert::spki::AlgorithmIdentifier<Self::Params> =
        <p256::ecdsa::VerifyingKey as x509_cert::spki::SignatureAlgorithmIdentifier>::SIGNATURE_ALGORITHM_IDENTIFIER;
}

impl p256::ecdsa::signature::Signer<p256::ecdsa::DerSignature> for X509Signer<'_> {
    fn try_sign(
        &self,
        msg: &[u8],
    ) -> core::result::Result<p256::ecdsa::DerSignature, p256::ecdsa::signature::Error> {
        // ES256 signers sign SHA-256(msg) and return r||s (RFC 9053 §2.1), which is
        // ecdsa-with-SHA256 over the TBSCertificate once DER-encoded.
        let raw = self.signer.sign(msg).map_err(|e| {
            *self.failure.borrow_mut() = Some(e);
            p256::ecdsa::signature::Error::new()
        })?;
        Ok(p256::ecdsa::Signature::from_slice(&raw)?.to_der())
    }
}

struct Profile {
    subject: Name,
    issuer: Option<Name>,
    ca: bool,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, subject: &Name) -> Name {
        self.issuer.clone().unwrap_or_else(|| subject.clone())
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut ext = Vec::new();
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let aki = SubjectKeyIdentifier::try_from(issuer_spk)?;
        ext.push(
            AuthorityKeyIdentifier {
                key_identifier: Some(aki.0),
                ..Default::default()
            }
            .to_extension(tbs.subject(), &ext)?,
        );
        ext.push(
            BasicConstraints {
                ca: self.ca,
                path_len_constraint: None,
            }
            .to_extension(tbs.subject(), &ext)?,
        );
        let usage = if self.ca {
            KeyUsages::KeyCertSign | KeyUsages::CRLSign
        } else {
            KeyUsages::DigitalSignature.into()
        };
        ext.push(KeyUsage(usage).to_extension(tbs.subject(), &ext)?);
        let code_signing =
            ObjectIdentifier::new(CODE_SIGNING).map_err(x509_cert::der::Error::from)?;
        ext.push(ExtendedKeyUsage(vec![code_signing]).to_extension(tbs.subject(), &ext)?);
        ext.push(ski.to_extension(tbs.subject(), &ext)?);
        Ok(ext)
    }
}

fn err(e: impl core::fmt::Display) -> AuthorError {
    AuthorError::Sign(format!("certificate: {e}"))
}

/// Issues a certificate for `subject` (a P-256 public key) named `common_name`, valid for
/// `days` from now. `ca` makes it a CA certificate.
///
/// # Errors
/// [`AuthorError::Sign`] for a bad name or issuer certificate.
pub fn issue(
    subject: &p256::PublicKey,
    common_name: &str,
    ca: bool,
    days: u32,
    issuer: &Issuer<'_>,
) -> Result<Vec<u8>> {
    // Distinct subject names for every certificate: path building keys on names.
    let subject_name = Name::from_str(&format!("CN={common_name},O=suitcase")).map_err(err)?;
    let issuer_subject = |cert: &[u8]| -> Result<Name> {
        let cert = x509_cert::Certificate::from_der(cert).map_err(err)?;
        Ok(cert.tbs_certificate().subject().clone())
    };
    let software;
    let (issuer_name, signer): (Option<Name>, &dyn Signer) = match issuer {
        Issuer::SelfSigned(key) => {
            software = SoftwareSigner::new(PrivateKey::P256((*key).clone()), "issuer".as_ref())?;
            (None, &software)
        }
        Issuer::Ca { key, cert } => {
            software = SoftwareSigner::new(PrivateKey::P256((*key).clone()), "issuer".as_ref())?;
            (Some(issuer_subject(cert)?), &software)
        }
        Issuer::SelfSignedBy(signer) => (None, *signer),
        Issuer::CaBy { signer, cert } => (Some(issuer_subject(cert)?), *signer),
    };
    let signer = X509Signer::new(signer)?;
    let spki_der = subject.to_public_key_der().map_err(err)?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(err)?;
    let serial = SerialNumber::new(&crate::rng::bytes::<16>()?.map(|b| b & 0x7f)).map_err(err)?;
    let validity =
        Validity::from_now(Duration::from_secs(u64::from(days) * 86_400)).map_err(err)?;
    let profile = Profile {
        subject: subject_name,
        issuer: issuer_name,
        ca,
    };
    let builder = CertificateBuilder::new(profile, serial, validity, spki).map_err(err)?;
    let cert = builder
        .build::<_, p256::ecdsa::DerSignature>(&signer)
        .map_err(|e| signer.failure.take().unwrap_or_else(|| err(e)))?;
    cert.to_der().map_err(err)
}

pub use suitcase_host::x509::{parse_certs, read_certs, to_pem};

/// The P-256 public key of a certificate, if it has one.
pub fn p256_public_key(cert: &[u8]) -> Option<p256::PublicKey> {
    use p256::pkcs8::DecodePublicKey as _;
    let cert = x509_cert::Certificate::from_der(cert).ok()?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .ok()?;
    p256::PublicKey::from_public_key_der(&spki).ok()
}

#[cfg(test)]
mod tests {

    use super::*;

    /// A signer whose token refuses to sign.
    #[derive(Debug)]
    struct Refusing(PublicKey);

    impl Signer for Refusing {
        fn name(&self) -> String {
            "refusing".into()
        }
        fn cose_alg(&self) -> i64 {
            suitcase_manifest::codepoints::alg::ESP256
        }
        fn public_key(&self) -> &PublicKey {
            &self.0
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>> {
            Err(AuthorError::Sign(
                "the token said no (CKR_DEVICE_ERROR)".into(),
            ))
        }
    }

    #[test]
    fn a_signer_failure_reaches_the_caller_with_its_reason() {
        let key = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let signer = Refusing(PublicKey::P256(key.public_key()));
        let err = issue(
            &key.public_key(),
            "Root",
            true,
            1,
            &Issuer::SelfSignedBy(&signer),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CKR_DEVICE_ERROR"), "{err}");
    }
}

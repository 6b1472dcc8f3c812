//! Loading keys from files: trust anchors (public keys) and device decryption keys.
//!
//! Accepted formats, detected from the content:
//! * PEM: SPKI public keys (`PUBLIC KEY`), PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`)
//!   private keys, for P-256 and Ed25519;
//! * COSE_Key (RFC 9052 §7), as binary CBOR or hex text: EC2/P-256, OKP/Ed25519, Symmetric;
//! * for decryption keys, a `.hex` file holding a raw AES key-encryption key (16 or 32 bytes).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use p256::pkcs8::DecodePrivateKey as _;
use suitcase_manifest::encryption::KeyMaterial;
use suitcase_manifest::key::{CoseKey, crv, kty};

/// An owned trust anchor key.
#[derive(Clone, Debug)]
pub(crate) enum TrustKey {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Vec<u8>),
}

/// A trust anchor loaded from a file.
#[derive(Clone, Debug)]
pub(crate) struct LoadedAnchor {
    pub(crate) name: String,
    pub(crate) key: TrustKey,
    pub(crate) kid: Option<Vec<u8>>,
}

impl LoadedAnchor {
    pub(crate) fn as_anchor(&self) -> suitcase_manifest::TrustAnchor<'_> {
        let key = match &self.key {
            TrustKey::P256(k) => suitcase_manifest::PublicKey::P256(*k),
            TrustKey::Ed25519(k) => suitcase_manifest::PublicKey::Ed25519(*k),
            TrustKey::Hmac(k) => suitcase_manifest::PublicKey::Hmac256(k),
        };
        suitcase_manifest::TrustAnchor {
            name: &self.name,
            key,
            kid: self.kid.as_deref(),
            permissions: suitcase_manifest::Permissions::ALL,
        }
    }
}

/// Loads a trust anchor: a PEM public key or a COSE_Key.
pub(crate) fn load_trust_anchor(path: &Path) -> Result<LoadedAnchor> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read key {}", path.display()))?;
    let name = path.display().to_string();
    let hint = "expected a PEM public key (SPKI, P-256 or Ed25519) or a COSE_Key \
                (EC2 P-256, OKP Ed25519 or Symmetric for HMAC)";
    if let Ok(text) = std::str::from_utf8(&bytes)
        && text.contains("-----BEGIN")
    {
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return Ok(LoadedAnchor {
                name,
                key: TrustKey::P256(k),
                kid: None,
            });
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            return Ok(LoadedAnchor {
                name,
                key: TrustKey::Ed25519(k),
                kid: None,
            });
        }
        bail!(
            "{}: not a P-256 or Ed25519 public key; {hint}",
            path.display()
        );
    }
    let raw = crate::input::decode_maybe_hex(&bytes)?;
    let key = CoseKey::decode(&raw).map_err(|e| anyhow!("{}: {e}; {hint}", path.display()))?;
    let kid = key.kid.map(<[u8]>::to_vec);
    let key = match (key.kty, key.crv) {
        (kty::EC2, Some(crv::P256)) => {
            let (Some(x), Some(y)) = (key.x, key.y) else {
                bail!("{}: EC2 key without x and y", path.display())
            };
            let mut sec1 = vec![4u8];
            sec1.extend_from_slice(x);
            sec1.extend_from_slice(y);
            TrustKey::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map_err(|_| anyhow!("{}: not a valid P-256 point", path.display()))?,
            )
        }
        (kty::OKP, Some(crv::ED25519)) => {
            let x: [u8; 32] = key
                .x
                .and_then(|x| x.try_into().ok())
                .ok_or_else(|| anyhow!("{}: Ed25519 key needs a 32-byte x", path.display()))?;
            TrustKey::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| anyhow!("{}: not a valid Ed25519 key", path.display()))?,
            )
        }
        (kty::SYMMETRIC, _) => {
            let k = key
                .k
                .ok_or_else(|| anyhow!("{}: symmetric key without k", path.display()))?;
            if k.len() < 32 {
                bail!(
                    "{}: an HMAC-256 key must be at least 32 bytes",
                    path.display()
                );
            }
            TrustKey::Hmac(k.to_vec())
        }
        (t, c) => bail!(
            "{}: unsupported COSE_Key kty {t} crv {c:?}; {hint}",
            path.display()
        ),
    };
    Ok(LoadedAnchor { name, key, kid })
}

/// Loads a device decryption key: a `.hex` raw AES-KW key, a PEM P-256 private key, or a
/// COSE_Key (Symmetric, or EC2 P-256 with d).
pub(crate) fn load_decryption_key(path: &Path) -> Result<(Option<Vec<u8>>, KeyMaterial)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read key {}", path.display()))?;
    let raw_kek = |k: &[u8]| -> Result<KeyMaterial> {
        match k.len() {
            16 => Ok(KeyMaterial::Aes128Kw(k.try_into()?)),
            32 => Ok(KeyMaterial::Aes256Kw(k.try_into()?)),
            n => bail!(
                "{}: an AES key-encryption key is 16 or 32 bytes, got {n}",
                path.display()
            ),
        }
    };
    if path.extension().is_some_and(|e| e == "hex") {
        let text = std::str::from_utf8(&bytes).context("a .hex key must be text")?;
        return Ok((
            None,
            raw_kek(&hex::decode(text.trim()).context("a .hex key must be hex")?)?,
        ));
    }
    if let Ok(text) = std::str::from_utf8(&bytes)
        && text.contains("-----BEGIN")
    {
        let key = p256::SecretKey::from_pkcs8_pem(text)
            .or_else(|_| p256::SecretKey::from_sec1_pem(text))
            .map_err(|_| {
                anyhow!(
                    "{}: not a P-256 private key (PKCS#8 or SEC1 PEM)",
                    path.display()
                )
            })?;
        return Ok((None, KeyMaterial::P256(key)));
    }
    let raw = crate::input::decode_maybe_hex(&bytes)?;
    let key = CoseKey::decode(&raw).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let kid = key.kid.map(<[u8]>::to_vec);
    match (key.kty, key.crv) {
        (kty::SYMMETRIC, _) => Ok((kid, raw_kek(key.k.unwrap_or_default())?)),
        (kty::EC2, Some(crv::P256)) => {
            let d = key
                .d
                .ok_or_else(|| anyhow!("{}: EC2 key has no private part d", path.display()))?;
            let secret = p256::SecretKey::from_slice(d)
                .map_err(|_| anyhow!("{}: bad P-256 d", path.display()))?;
            Ok((kid, KeyMaterial::P256(secret)))
        }
        (t, c) => bail!(
            "{}: unsupported decryption key kty {t} crv {c:?}",
            path.display()
        ),
    }
}

//! Key files for the device-side commands: trust anchors and decryption keys. The formats are
//! those `suitcase key generate` writes (see `suitcase_host::keys`), plus raw `.hex` AES
//! key-encryption keys in device profiles.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use suitcase_host::keys::{PublicKey, load_private, load_public};
use suitcase_manifest::encryption::KeyMaterial;

/// A trust anchor loaded from a file.
#[derive(Debug)]
pub(crate) struct LoadedAnchor {
    pub(crate) name: String,
    pub(crate) key: PublicKey,
}

impl LoadedAnchor {
    pub(crate) fn as_anchor(&self) -> suitcase_manifest::TrustAnchor<'_> {
        let key = self
            .key
            .as_trust_key()
            .unwrap_or(suitcase_manifest::PublicKey::Hmac256(&[]));
        suitcase_manifest::TrustAnchor::new(&self.name, key)
    }
}

/// Loads a trust anchor: any public key that can authenticate manifests (P-256, Ed25519,
/// HSS-LMS, ML-DSA-65) or a shared HMAC key.
pub(crate) fn load_trust_anchor(path: &Path) -> Result<LoadedAnchor> {
    let key = load_public(path).map_err(|e| {
        anyhow!("{e}\n  a trust key is a PEM public key (SPKI, P-256 or Ed25519) or a COSE_Key (EC2, OKP, HSS-LMS, ML-DSA-65 or Symmetric for HMAC), as `suitcase key public` writes")
    })?;
    if !key.is_authenticator() {
        bail!(
            "{}: a {} key cannot sign manifests, so it cannot be a trust anchor",
            path.display(),
            key.kind()
        );
    }
    Ok(LoadedAnchor {
        name: path.display().to_string(),
        key,
    })
}

/// Loads a device decryption key: a `.hex` raw AES-KW key, or any private key that can
/// recover content keys (A128KW/A256KW, P-256, X25519, ML-KEM-768).
pub(crate) fn load_decryption_key(path: &Path) -> Result<(Option<Vec<u8>>, KeyMaterial)> {
    if path.extension().is_some_and(|e| e == "hex") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key {}", path.display()))?;
        let k = hex::decode(text.trim())
            .with_context(|| format!("{}: a .hex key must be hex", path.display()))?;
        return Ok((
            None,
            match k.len() {
                16 => KeyMaterial::Aes128Kw(k.as_slice().try_into()?),
                32 => KeyMaterial::Aes256Kw(k.as_slice().try_into()?),
                n => bail!(
                    "{}: an AES key-encryption key is 16 or 32 bytes, got {n}",
                    path.display()
                ),
            },
        ));
    }
    let key = load_private(path)?;
    let material = key
        .key_material()
        .ok_or_else(|| anyhow!("{}: this key cannot decrypt content keys (use a128kw, a256kw, p256-ecdh, x25519 or ml-kem-768)", path.display()))?;
    // The kid is only a hint (RFC 9052 §3.1): try every recipient, so that keys from other tools,
    // whose kids we cannot derive, still work.
    Ok((None, material))
}

//! Freshness statements (docs/trust.md, "Freshness"): the server's answer to a device's
//! check-in nonce, signed with the server's freshness key, binding the nonce, the device, the
//! offer (manifest digest and sequence number, or none) and the server's time. A device
//! whose trust state lists the key as a freshness signer refuses an offer without a valid
//! statement (RFC 9019 §3/§4 freshness; NTIA step 3, +1 tier: "cryptographic endpoint
//! verification (e.g. challenge/response) before update"; the format and the checks are in
//! `suitcase_trust::freshness`).
//!
//! The key is `DATA/freshness-key`: an Ed25519 private key (PKCS#8 PEM, the format `suitcase
//! key generate` writes, mode 0600), created on first start if missing, never replaced (two
//! processes creating it at once agree, as for `coap-secret`). Every node of a multi-node
//! deployment needs the same file (docs/deployment.md). `suitcase server freshness-key` prints
//! its public key for `suitcase trust update --add-freshness-signer`.

use std::path::Path;

use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use suitcase_trust::freshness::{Claims, MAX_STATEMENT_LEN, NONCE_MAX, NONCE_MIN, Offered};

use crate::ServerError;
use crate::error::{ApiErr, ApiResult};

/// The key file in the data directory.
pub(crate) const KEY_FILE: &str = "freshness-key";

/// The server's freshness key.
pub(crate) struct FreshnessKey {
    key: ed25519_dalek::SigningKey,
    kid: suitcase_trust::KeyId,
}

impl core::fmt::Debug for FreshnessKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FreshnessKey({})", hex::encode(self.kid))
    }
}

impl FreshnessKey {
    /// Reads `DATA/freshness-key`, creating it if missing (mode 0600, never replacing one).
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, ServerError> {
        let file = data_dir.join(KEY_FILE);
        let bad = |e: &dyn core::fmt::Display| {
            ServerError::Storage(anyhow::anyhow!("freshness key {}: {e}", file.display()))
        };
        if !file.exists() {
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut_slice()).map_err(|e| bad(&e))?;
            let pem = ed25519_dalek::SigningKey::from_bytes(&seed)
                .to_pkcs8_pem(Default::default())
                .map_err(|e| bad(&e))?;
            match crate::coap::create_noclobber(&file, pem.as_bytes()) {
                Ok(()) => {}
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(bad(&e)),
            }
        }
        let key = match suitcase_host::keys::load_private(&file).map_err(|e| bad(&e))? {
            suitcase_host::keys::PrivateKey::Ed25519(k) => k,
            other => {
                return Err(bad(&format!(
                    "a {} key; the freshness key is an Ed25519 key",
                    suitcase_host::keys::public_of(&other)
                        .map(|p| p.kind())
                        .unwrap_or("non-Ed25519")
                )));
            }
        };
        let kid = suitcase_trust::Key::new(
            suitcase_trust::KeyKind::Ed25519,
            key.verifying_key().as_bytes(),
        )
        .map_err(|e| bad(&e))?
        .id();
        Ok(Self { key, kid })
    }

    /// The public key as the PEM file `suitcase trust update --add-freshness-signer` reads.
    pub(crate) fn public_pem(&self) -> Result<String, ServerError> {
        let (pem, _) = suitcase_host::keys::PublicKey::Ed25519(self.key.verifying_key())
            .encode()
            .map_err(|e| ServerError::Storage(anyhow::anyhow!("freshness key: {e}")))?;
        Ok(String::from_utf8_lossy(&pem).into_owned())
    }

    /// The key id (SHA-256 of the public key, first 8 bytes), hex.
    pub(crate) fn kid_hex(&self) -> String {
        hex::encode(self.kid)
    }

    /// The statement answering `nonce` from the device named `device` about `offer`
    /// (sequence number, hex manifest digest) at `now`; `None` when the device sent no nonce
    /// (agents that do not ask get no statement).
    ///
    /// # Errors
    /// 400 `bad-nonce` for a nonce outside 8 to 32 bytes; 500 if the statement cannot be
    /// written (a digest that is not hex, never for a release the server verified).
    pub(crate) fn statement(
        &self,
        nonce: Option<&[u8]>,
        device: &str,
        offer: Option<(u64, &str)>,
        now: i64,
    ) -> ApiResult<Option<Vec<u8>>> {
        let Some(nonce) = nonce else {
            return Ok(None);
        };
        check_nonce(nonce)?;
        let digest = offer
            .map(|(_, d)| hex::decode(d))
            .transpose()
            .map_err(ApiErr::internal)?;
        let claims = Claims {
            nonce,
            device,
            offer: offer
                .zip(digest.as_deref())
                .map(|((sequence, _), digest)| Offered { sequence, digest }),
            time: u64::try_from(now).unwrap_or(0),
        };
        let mut out = vec![0u8; MAX_STATEMENT_LEN];
        let n = suitcase_trust::freshness::encode_statement(
            &claims,
            &self.kid,
            |tbs| self.key.sign(tbs).to_bytes(),
            &mut out,
        )
        .map_err(ApiErr::internal)?;
        out.truncate(n);
        metrics::counter!("suitcase_freshness_statements_total").increment(1);
        Ok(Some(out))
    }
}

/// A check-in nonce's size (suitcase_protocol::limits::NONCE_MIN..=NONCE_MAX): at least 64
/// bits so that a recorded answer cannot be matched to a later check-in by chance, at most
/// 32 bytes so that a device cannot grow the answer.
pub(crate) fn check_nonce(nonce: &[u8]) -> ApiResult<()> {
    if (NONCE_MIN..=NONCE_MAX).contains(&nonce.len()) {
        return Ok(());
    }
    Err(ApiErr::bad_request(
        "bad-nonce",
        format!(
            "the check-in nonce is {} bytes; it must be {NONCE_MIN} to {NONCE_MAX}",
            nonce.len()
        ),
    )
    .hint("send 16 fresh random bytes per check-in"))
}

/// The public key of `DATA/freshness-key` (created if missing) as PEM, and its key id.
///
/// # Errors
/// If the key cannot be read or created.
pub fn public_key(data_dir: &Path) -> Result<(String, String), ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|error| ServerError::DataDir {
        path: data_dir.to_path_buf(),
        error,
    })?;
    let k = FreshnessKey::load_or_create(data_dir)?;
    Ok((k.public_pem()?, k.kid_hex()))
}

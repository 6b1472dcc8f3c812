//! What the agent trusts: the signers' public keys (trust anchors, never a private key),
//! the threshold and hybrid policy, and the keys that decrypt payloads.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use suitcase_manifest::encryption::{DeviceKeys, KeyMaterial};

use super::{Identity, bad};
use crate::error::AgentError;

/// The trust anchors and policy.
#[derive(Debug)]
pub struct Trust {
    /// `(name, key)` of each anchor (empty with a trust state).
    pub anchors: Vec<(String, suitcase_host::keys::PublicKey)>,
    /// The provisioned trust state file (`trust.state`), when the agent checks releases
    /// against a trust state (docs/trust.md) instead of fixed anchors. The state in force is
    /// the one the agent stored after its last trust update (`crate::trust`), else this file.
    pub state: Option<PathBuf>,
    /// Distinct signers required.
    pub threshold: NonZeroUsize,
    /// Require a classical and a post-quantum signature.
    pub hybrid: bool,
    /// Decryption keys for encrypted payloads.
    pub keys: DeviceKeys,
    /// Freshness required (`trust.require_freshness`, docs/trust.md "Freshness"): offers
    /// without a valid statement by a freshness signer of the trust state are refused.
    pub freshness: Option<Freshness>,
}

/// What `trust.require_freshness` asks (docs/trust.md, "Freshness").
#[derive(Clone, Debug)]
pub struct Freshness {
    /// The name this device is registered under at the server (`trust.device_name`), which
    /// every statement must bind.
    pub device: String,
    /// How long the agent goes without a valid statement before it reports staleness
    /// (`trust.stale_after_seconds`): a server or an attacker withholding statements freezes
    /// the device on what it runs (RFC 9019 §4, indefinite freeze).
    pub stale_after: std::time::Duration,
    /// The device has a real-time clock (`trust.rtc`, default true). Without one, `use-before`
    /// conditions are judged at the time of the last valid statement.
    pub rtc: bool,
}

/// Resolves the freshness settings of `[trust]`.
pub(super) fn freshness(
    path: &Path,
    require: bool,
    state: bool,
    device: Option<&str>,
    stale_after_seconds: f64,
    rtc: bool,
) -> Result<Option<Freshness>, AgentError> {
    if !require {
        if !rtc {
            return Err(bad(
                path,
                "trust.rtc = false needs trust.require_freshness = true: without a real-time clock the time comes from the server's freshness statements",
            ));
        }
        if device.is_some() {
            return Err(bad(
                path,
                "trust.device_name is only used with trust.require_freshness = true",
            ));
        }
        return Ok(None);
    }
    if !state {
        return Err(bad(
            path,
            "trust.require_freshness needs trust.state: the freshness signers (the servers' keys) are part of the trust state",
        ));
    }
    let device = device
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| {
            bad(
                path,
                "trust.require_freshness needs trust.device_name: the name this device is registered under at the server, which freshness statements bind",
            )
        })?
        .to_owned();
    if !(stale_after_seconds.is_finite() && stale_after_seconds >= 1.0) {
        return Err(bad(
            path,
            "trust.stale_after_seconds must be at least 1 (a number of seconds)",
        ));
    }
    Ok(Some(Freshness {
        device,
        stale_after: std::time::Duration::from_secs_f64(stale_after_seconds.min(1e9)),
        rtc,
    }))
}

impl Trust {
    /// The anchors as the manifest crate wants them.
    pub fn anchors(&self) -> Vec<suitcase_manifest::TrustAnchor<'_>> {
        anchors_of(&self.anchors)
    }

    /// The policy at time `now`.
    pub fn policy(&self, now: u64) -> suitcase_manifest::TrustPolicy<'static> {
        suitcase_manifest::TrustPolicy {
            threshold: self.threshold,
            rules: &[],
            hybrid: self.hybrid,
            time: Some(now),
        }
    }
}

pub(crate) fn anchors_of(
    keys: &[(String, suitcase_host::keys::PublicKey)],
) -> Vec<suitcase_manifest::TrustAnchor<'_>> {
    keys.iter()
        .filter_map(|(name, key)| {
            key.as_trust_key()
                .map(|k| suitcase_manifest::TrustAnchor::new(name, k))
        })
        .collect()
}

pub(super) fn load_anchors(
    path: &Path,
    base: &Path,
    files: &[PathBuf],
) -> Result<Vec<(String, suitcase_host::keys::PublicKey)>, AgentError> {
    files
        .iter()
        .map(|f| {
            let p = base.join(f);
            refuse_private_key(path, &p)?;
            let key = suitcase_host::keys::load_public(&p).map_err(|e| {
                bad(
                    path,
                    format!("trust anchor {}: {e} (a PEM public key or COSE_Key, as `suitcase key public` writes)", p.display()),
                )
            })?;
            if !key.is_authenticator() {
                return Err(bad(
                    path,
                    format!(
                        "trust anchor {}: a {} key cannot sign manifests",
                        p.display(),
                        key.kind()
                    ),
                ));
            }
            Ok((p.display().to_string(), key))
        })
        .collect()
}

/// Refuses a trust anchor file that holds private key material (a PEM private key, a COSE_Key
/// with `d` or an AKP private seed, an HSS-LMS key file with its state). `load_public` would
/// read its public half and work, but the signing secret would then sit on every device, where
/// it authorises nothing and can be stolen, and whoever extracts it from one device can sign
/// updates for the whole fleet (RFC 9124 REQ.SEC.KEY.PROTECTION: signing keys are kept where
/// networked devices cannot reach them; a device verifies with the public key). Shared HMAC secrets
/// (COSE_Mac0) are secret by nature and not refused here. The error names the file and the
/// command that writes its public half; it never shows the file's contents.
fn refuse_private_key(path: &Path, anchor: &Path) -> Result<(), AgentError> {
    let Ok(bytes) = std::fs::read(anchor) else {
        // Unreadable: `load_public` reports it with the reason.
        return Ok(());
    };
    if suitcase_host::keys::holds_private_key(&bytes) {
        return Err(bad(
            path,
            format!(
                "trust anchor {f} is a private key: a device must hold only the public key, \
                 never the signing secret (remove {f} from this device). List the public key \
                 instead: the file `suitcase key generate --public FILE.pub` wrote, or make one \
                 with `suitcase key public {f} -o {f}.pub` on the author's machine",
                f = anchor.display()
            ),
        ));
    }
    Ok(())
}

pub(super) fn load_decryption_key(path: &Path, p: &Path) -> Result<KeyMaterial, AgentError> {
    if p.extension().is_some_and(|e| e == "hex") {
        let text = std::fs::read_to_string(p)
            .map_err(|e| bad(path, format!("decryption key {}: {e}", p.display())))?;
        let k = hex::decode(text.trim())
            .map_err(|_| bad(path, format!("decryption key {}: not hex", p.display())))?;
        return match k.len() {
            16 => Ok(KeyMaterial::Aes128Kw(
                k.as_slice()
                    .try_into()
                    .map_err(|_| bad(path, "key length"))?,
            )),
            32 => Ok(KeyMaterial::Aes256Kw(
                k.as_slice()
                    .try_into()
                    .map_err(|_| bad(path, "key length"))?,
            )),
            n => Err(bad(
                path,
                format!(
                    "decryption key {}: an AES key-encryption key is 16 or 32 bytes, got {n}",
                    p.display()
                ),
            )),
        };
    }
    let key = suitcase_host::keys::load_private(p)
        .map_err(|e| bad(path, format!("decryption key {}: {e}", p.display())))?;
    key.key_material().ok_or_else(|| {
        bad(
            path,
            format!(
                "decryption key {}: this key cannot decrypt content keys (use a128kw, a256kw, p256-ecdh, x25519 or ml-kem-768)",
                p.display()
            ),
        )
    })
}

pub(super) fn identity(
    path: &Path,
    vendor: &str,
    class: &str,
    device: Option<&str>,
) -> Result<Identity, AgentError> {
    let vendor_id = suitcase_host::uuid::vendor(vendor);
    Ok(Identity {
        vendor: vendor_id,
        class: suitcase_host::uuid::class(&vendor_id, class),
        device: device
            .map(|d| {
                suitcase_host::uuid::parse(d)
                    .ok_or_else(|| bad(path, format!("identity.device {d:?} is not a UUID")))
            })
            .transpose()?,
    })
}

//! The NTIA security tiers as profiles: what each tier asks of signing, digests, encryption and
//! the device's signer policy. `docs/security-tiers.md` has the same table step by step.

use suitcase_manifest::DigestAlgorithm;
use suitcase_manifest::codepoints::alg;

use crate::error::{AuthorError, Result};
use crate::keys::PublicKey;

/// An NTIA tier (seed 001, "Security Features Mapping").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Signed updates with a 256-bit hash; plaintext payloads.
    Basic,
    /// +1: per-device or per-group content keys (A128KW), AES-GCM or AES-CTR payloads.
    Upgraded,
    /// +2: PKI and key agreement (ECDH-ES with P-256 / X25519), AES-256-GCM, several signers.
    Enhanced,
    /// +3: hash-based and lattice signatures, SHAKE256 digests, ML-KEM key encapsulation.
    Quantum,
}

impl Tier {
    /// Every tier, weakest first.
    pub const ALL: [Self; 4] = [Self::Basic, Self::Upgraded, Self::Enhanced, Self::Quantum];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Upgraded => "upgraded",
            Self::Enhanced => "enhanced",
            Self::Quantum => "quantum",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The profile for this tier.
    pub fn profile(self) -> Profile {
        match self {
            Self::Basic => Profile {
                tier: self,
                digest: DigestAlgorithm::Sha256,
                signers: &["p256", "ed25519", "hmac256"],
                recipients: &[],
                default_content: None,
                content: &[],
                ecdh_alg: alg::ECDH_ES_A128KW,
                require_post_quantum: false,
                hybrid: false,
                device_threshold: 1,
            },
            Self::Upgraded => Profile {
                tier: self,
                digest: DigestAlgorithm::Sha256,
                signers: &["p256", "ed25519", "hmac256"],
                recipients: &["a128kw"],
                default_content: Some(alg::A128GCM),
                content: &[alg::A128GCM, alg::A128CTR],
                ecdh_alg: alg::ECDH_ES_A128KW,
                require_post_quantum: false,
                hybrid: false,
                device_threshold: 1,
            },
            Self::Enhanced => Profile {
                tier: self,
                digest: DigestAlgorithm::Sha256,
                signers: &["p256", "ed25519"],
                recipients: &["p256", "x25519", "a256kw"],
                default_content: Some(alg::A256GCM),
                content: &[alg::A256GCM, alg::A256CTR],
                ecdh_alg: alg::ECDH_ES_A256KW,
                require_post_quantum: false,
                hybrid: false,
                device_threshold: 2,
            },
            Self::Quantum => Profile {
                tier: self,
                digest: DigestAlgorithm::Shake256,
                signers: &["hss-lms", "ml-dsa-65", "p256", "ed25519"],
                recipients: &["ml-kem-768"],
                default_content: Some(alg::A256GCM),
                content: &[alg::A256GCM, alg::A256CTR],
                ecdh_alg: alg::ECDH_ES_A256KW,
                require_post_quantum: true,
                hybrid: true,
                device_threshold: 2,
            },
        }
    }
}

/// What a tier requires, as data.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// The tier.
    pub tier: Tier,
    /// The manifest and image digest algorithm.
    pub digest: DigestAlgorithm,
    /// Key kinds allowed to sign (see [`PublicKey::kind`]).
    pub signers: &'static [&'static str],
    /// Key kinds allowed as encryption recipients; empty: the tier sends plaintext.
    pub recipients: &'static [&'static str],
    /// The content encryption algorithm used when recipients are given.
    pub default_content: Option<i64>,
    /// Content encryption algorithms allowed.
    pub content: &'static [i64],
    /// The ECDH-ES key-wrap variant for P-256 / X25519 recipients.
    pub ecdh_alg: i64,
    /// At least one post-quantum signature.
    pub require_post_quantum: bool,
    /// At least one classical and one post-quantum signature (hybrid).
    pub hybrid: bool,
    /// Distinct signers the device policy asks for (the author, plus the operator from +2 up).
    pub device_threshold: usize,
}

impl Profile {
    fn refuse(&self, what: String) -> AuthorError {
        AuthorError::Profile {
            profile: self.tier.name(),
            what,
        }
    }

    /// Checks signing keys, recipients and the content algorithm against the tier.
    ///
    /// # Errors
    /// [`AuthorError::Profile`] saying what the tier needs instead.
    pub fn check(
        &self,
        signers: &[PublicKey],
        recipients: &[PublicKey],
        content: Option<i64>,
    ) -> Result<()> {
        if signers.is_empty() {
            return Err(self.refuse("at least one signing key is needed (--sign KEY)".into()));
        }
        for s in signers {
            if !self.signers.contains(&s.kind()) {
                return Err(self.refuse(format!(
                    "a {} key cannot sign at this tier; use one of: {}",
                    s.kind(),
                    self.signers.join(", ")
                )));
            }
        }
        let pq = signers.iter().filter(|s| s.is_post_quantum()).count();
        if self.require_post_quantum && pq == 0 {
            return Err(
                self.refuse("a post-quantum signature (hss-lms or ml-dsa-65) is required".into())
            );
        }
        if self.hybrid && pq == signers.len() {
            return Err(self.refuse(
                "hybrid mode needs a classical signature (es256 or ed25519) next to the post-quantum one".into(),
            ));
        }
        if self.recipients.is_empty() && !recipients.is_empty() {
            return Err(self.refuse(
                "this tier sends plaintext payloads; use --profile upgraded or higher to encrypt"
                    .into(),
            ));
        }
        if !self.recipients.is_empty() && recipients.is_empty() && self.tier == Tier::Upgraded {
            return Err(self.refuse(
                "this tier encrypts payloads: give at least one --encrypt-for KEY (an a128kw key)"
                    .into(),
            ));
        }
        for r in recipients {
            if !self.recipients.contains(&r.kind()) {
                return Err(self.refuse(format!(
                    "a {} key cannot receive content keys at this tier; use one of: {}",
                    r.kind(),
                    self.recipients.join(", ")
                )));
            }
        }
        if let Some(c) = content
            && !self.content.contains(&c)
        {
            return Err(self.refuse(format!("content algorithm {c} is not allowed at this tier")));
        }
        Ok(())
    }
}

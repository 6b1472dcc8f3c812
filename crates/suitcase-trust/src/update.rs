//! Applying trust updates and checking releases against the trust state.

use suitcase_manifest::{
    Command, Envelope, Parameter, Permissions, TrustAnchor, TrustPolicy, VerifiedManifest,
};

use crate::state::{KeyId, Policy, TrustError, TrustState, with_anchors};
use crate::{MAX_ROOTS, TRUST_COMPONENT, TRUST_PAYLOAD};

/// The first key id among an envelope's authentication blocks' kids that `wanted` accepts.
/// Kids are unprotected hints (RFC 9052 §3.1), used only to explain a refusal, never to
/// accept anything.
fn find_signer_kid(envelope: &Envelope<'_>, wanted: impl Fn(&KeyId) -> bool) -> Option<KeyId> {
    let auth = envelope.authentication().ok()?;
    auth.blocks()
        .flat_map(|b| b.signers())
        .filter_map(|s| s.headers.kid)
        .filter_map(|kid| <KeyId>::try_from(kid).ok())
        .find(|kid| wanted(kid))
}

impl TrustState {
    /// The root anchors and policy of this state, handed to `f` (they borrow the state): the
    /// root keys, each allowed everything, in the order of [`TrustState::roots`] (anchor `i`
    /// is `roots()[i]`, so a [`VerifiedManifest::signers`] index names a root key), and the
    /// root threshold. This is what [`TrustState::apply_update`] verifies a trust update with
    /// (its check 1); a caller that has applied an update with `apply_update` uses it to learn
    /// which root keys signed it (the update server records them). Never use it for a
    /// release: a release is checked with [`TrustState::with_release_policy`].
    pub fn with_root_policy<R>(
        &self,
        f: impl FnOnce(&[TrustAnchor<'_>], &TrustPolicy<'_>) -> R,
    ) -> R {
        // TUF §5.3.4: "signed by a threshold of keys specified in the trusted root metadata";
        // `Envelope::verify` counts distinct anchors, and `TrustState::check` refuses a key listed
        // twice, so k counts distinct keys.
        let policy = Policy {
            threshold: self.root_threshold(),
            rules: &[],
            time: None,
        };
        let keys = self.roots().iter().map(|k| (k, Permissions::ALL));
        with_anchors::<MAX_ROOTS, _>("root", keys, &policy, f)
    }

    /// The first key id among the envelope's authentication blocks' kids that is a release
    /// signer of this state: why a trust update that failed its root check (check 1 of
    /// [`TrustState::apply_update`]) was refused, when it was signed by a release signer. A
    /// release signer never counts toward a trust update (role separation, TUF §2.1.1). Like
    /// [`TrustState::revoked_signer`], the kid is an unprotected hint (RFC 9052 §3.1), used
    /// only to name why an update that already failed was refused, never to accept one.
    pub fn release_signer_in(&self, envelope: &Envelope<'_>) -> Option<KeyId> {
        find_signer_kid(envelope, |kid| {
            self.signers().iter().any(|s| s.key.id() == *kid)
        })
    }
}

impl TrustState {
    /// Applies a trust update (a SUIT envelope, see the crate documentation) to this state
    /// and returns the new state. The state in force is not changed: a device stores the
    /// result (power-fail safe) and only then uses it.
    ///
    /// Checks, in order:
    /// 1. the envelope authenticates with at least `root_threshold` distinct **root** keys of
    ///    this state (TUF §5.3.4; RFC 9019 §6). Release signers are not anchors here, so a
    ///    release signer's signature never counts, however many it made;
    /// 2. the manifest names exactly the trust-store component [`TRUST_COMPONENT`];
    /// 3. the integrated [`TRUST_PAYLOAD`] matches the image digest and size set in the shared
    ///    sequence (manifest §8.4.8.6 image digest, §7.5 integrated payloads);
    /// 4. anti-rollback: its sequence number is above this state's (manifest §8.4.2: "a
    ///    monotonically increasing anti-rollback counter"; RFC 8240 §3; TUF §5.3.5), and the
    ///    document's sequence equals it;
    /// 5. the new document decodes and is consistent ([`TrustState::check`]), and keeps every
    ///    key id this state revoked ([`TrustState::check_successor`]: revocation is permanent,
    ///    RFC 8240 §3);
    /// 6. if the root keys or root threshold change, the envelope is also signed by the new
    ///    root's threshold (TUF §5.3.4: "signed by ... a threshold of keys specified in the
    ///    new root metadata"): a typo in the new keys cannot lock the device out.
    ///
    /// # Errors
    /// The first check that fails, as a [`TrustError`].
    pub fn apply_update(&self, envelope: &[u8]) -> Result<Self, TrustError> {
        let envelope = Envelope::decode(envelope).map_err(TrustError::Manifest)?;
        let verified = self
            .with_root_policy(|anchors, policy| envelope.verify(anchors, policy))
            .map_err(TrustError::Manifest)?;
        let document = trust_document(&verified)?;
        let offered = verified.sequence_number();
        if offered <= self.sequence {
            return Err(TrustError::Rollback {
                current: self.sequence,
                offered,
            });
        }
        let next = Self::decode(document)?;
        if next.sequence != offered {
            return Err(TrustError::Document {
                what: "its sequence differs from the trust update's manifest sequence number",
            });
        }
        // RFC 8240 §3: a revoked key stays revoked for the device's life; an update that drops
        // it from the list would re-admit it (as a signer or root) now or in any later update.
        self.check_successor(&next)?;
        if next.roots() != self.roots() || next.root_threshold != self.root_threshold {
            let auth = envelope.authentication().map_err(TrustError::Manifest)?;
            next.with_root_policy(|anchors, policy| auth.verify_signatures(anchors, policy))
                .map_err(TrustError::NewRootNotSigned)?;
        }
        Ok(next)
    }

    /// Checks a release against this state: authenticated by the release signers (their
    /// component prefixes, actions and thresholds), never naming the trust store. This is
    /// the call an agent and a bootloader make instead of `Envelope::verify` with fixed
    /// anchors.
    ///
    /// # Errors
    /// [`TrustError::Revoked`] when the signatures fail and a block carries the kid of a
    /// revoked key (RFC 8240 §3), else [`TrustError::Manifest`];
    /// [`TrustError::ReleaseTouchesTrust`] for a release naming [`TRUST_COMPONENT`].
    pub fn verify_release<'a>(
        &self,
        envelope: &Envelope<'a>,
        time: Option<u64>,
    ) -> Result<VerifiedManifest<'a>, TrustError> {
        let verified = self
            .with_release_policy(time, |anchors, policy| envelope.verify(anchors, policy))
            .map_err(|e| self.explain_release_failure(envelope, e))?;
        if names_trust_store(&verified) {
            return Err(TrustError::ReleaseTouchesTrust);
        }
        Ok(verified)
    }

    /// Turns a release's authentication failure into [`TrustError::Revoked`] when one of its
    /// blocks carries the kid of a key this state revoked; other failures pass unchanged.
    /// The kid is an unprotected hint (RFC 9052 §3.1), used only to name why a release that
    /// already failed was refused, never to accept one.
    pub fn explain_release_failure(
        &self,
        envelope: &Envelope<'_>,
        error: suitcase_manifest::Error,
    ) -> TrustError {
        if error.reason() != suitcase_manifest::Reason::Signature {
            return TrustError::Manifest(error);
        }
        match self.revoked_signer(envelope) {
            Some(kid) => TrustError::Revoked {
                kid,
                by: self.sequence,
            },
            None => TrustError::Manifest(error),
        }
    }

    /// The first revoked key id found among the envelope's authentication blocks' kids.
    pub fn revoked_signer(&self, envelope: &Envelope<'_>) -> Option<KeyId> {
        find_signer_kid(envelope, |kid| self.revoked().contains(kid))
    }
}

/// Whether a verified manifest names the trust-store component ([`TRUST_COMPONENT`]): only a
/// root-signed trust update may (docs/trust.md, the model), so a release that does is refused
/// ([`TrustError::ReleaseTouchesTrust`]). Public for callers that verify through their own
/// path (the agent's consumer core) instead of [`TrustState::verify_release`].
///
/// Every component index counts, dependency indices too: one beyond suit-components takes
/// its dependency prefix as identifier (draft-ietf-suit-trust-domains §5.2.2), and commands
/// reach it like any component.
pub fn names_trust_store(verified: &VerifiedManifest<'_>) -> bool {
    let m = verified.manifest();
    (0..m.index_count())
        .filter_map(|i| m.component_id(i))
        .any(|c| c.segments().next() == Some(TRUST_COMPONENT))
}

/// The trust document a verified trust update carries.
fn trust_document<'a>(verified: &VerifiedManifest<'a>) -> Result<&'a [u8], TrustError> {
    let m = verified.manifest();
    let mut components = m.components.iter();
    let (Some(only), None) = (components.next(), components.next()) else {
        return Err(TrustError::NotTrustUpdate {
            what: "a trust update names exactly one component",
        });
    };
    if !only.eq_segments(&[TRUST_COMPONENT]) {
        return Err(TrustError::NotTrustUpdate {
            what: "its component is not [\"suitcase-trust\"]",
        });
    }
    let (mut digest, mut size) = (None, None);
    let shared = m.shared_sequence.ok_or(TrustError::NotTrustUpdate {
        what: "no shared sequence setting the trust document's digest",
    })?;
    for (_, command) in shared.iter() {
        if let Command::OverrideParameters(params) = command {
            for p in params.iter() {
                match p {
                    Parameter::ImageDigest(d) => digest = Some(d),
                    Parameter::ImageSize(n) => size = Some(n),
                    _ => {}
                }
            }
        }
    }
    let (Some(digest), Some(size)) = (digest, size) else {
        return Err(TrustError::NotTrustUpdate {
            what: "the shared sequence does not set image-digest and image-size",
        });
    };
    let payload =
        verified
            .envelope()
            .integrated(TRUST_PAYLOAD)
            .ok_or(TrustError::NotTrustUpdate {
                what: "no integrated \"#suitcase-trust\" payload",
            })?;
    // Manifest §8.4.9.3 (condition-image-match): the payload must match both.
    if u64::try_from(payload.len()).ok() != Some(size) || !digest.matches(payload) {
        return Err(TrustError::PayloadMismatch);
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::vec;

    use ed25519_dalek::Signer as _;
    use suitcase_manifest::build::{EnvelopeBuilder, ManifestBuilder};
    use suitcase_manifest::codepoints::alg;
    use suitcase_manifest::{DigestAlgorithm, Envelope, PublicKey, TrustAnchor, TrustPolicy};

    #[test]
    fn attack_release_names_trust_store_as_a_dependency_prefix_is_caught() {
        // The trust store named as the identifier of a dependency index (trust-domains
        // §5.2.2: a dependency index beyond suit-components takes its prefix as identifier),
        // not in suit-components: the release would write the trust store all the same.
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let manifest = ManifestBuilder {
            sequence_number: 1,
            components: vec![vec![b"app".to_vec()]],
            dependencies: vec![(1, Some(vec![super::TRUST_COMPONENT.to_vec()]))],
            ..ManifestBuilder::default()
        };
        let mut env = EnvelopeBuilder::new(&manifest, DigestAlgorithm::Sha256);
        env.sign1(alg::ED25519, None, |tbs| key.sign(tbs).to_bytes().to_vec());
        let bytes = env.encode();
        let anchors = [TrustAnchor::new(
            "release signer",
            PublicKey::Ed25519(key.verifying_key()),
        )];
        let verified = Envelope::decode(&bytes)
            .unwrap()
            .verify(&anchors, &TrustPolicy::default())
            .unwrap();
        assert!(super::names_trust_store(&verified));
    }
}

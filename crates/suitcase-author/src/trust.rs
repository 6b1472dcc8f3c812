//! Trust updates: the root's side of `suitcase-trust`.
//!
//! A trust update is a SUIT envelope (see `suitcase_trust`): one component, the trust store
//! `["suitcase-trust"]`; the new trust document integrated as `"#suitcase-trust"` and bound
//! by `image-digest`/`image-size` in the shared sequence; its install section fetches the
//! integrated payload and checks it (manifest §7.5), so that any SUIT processor reads it as an
//! ordinary single-component update. It is signed by several root keys: one COSE_Sign1 block
//! per key in the authentication wrapper (manifest §8.3 allows several blocks), k of which
//! the device requires.

use p256::elliptic_curve::sec1::ToSec1Point as _;
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, ManifestBuilder, Param};
use suitcase_manifest::{Condition, DigestAlgorithm, Directive};
use suitcase_trust::{Key, KeyKind, MAX_DOCUMENT_LEN, TRUST_COMPONENT, TRUST_PAYLOAD, TrustState};

use crate::error::{AuthorError, Result};
use crate::keys::PublicKey;
use crate::signer::{Signer, Structure, sign_block};

/// The trust-state form of a public key: P-256 or Ed25519 only (the state's fixed-size record
/// holds keys of at most 65 bytes; HMAC secrets are shared, so they cannot be a root of trust).
///
/// # Errors
/// [`AuthorError::Release`] for any other kind of key.
pub fn trust_key(public: &PublicKey) -> Result<Key> {
    let (kind, bytes) = match public {
        PublicKey::P256(k) => (KeyKind::P256, k.to_sec1_point(false).as_bytes().to_vec()),
        PublicKey::Ed25519(k) => (KeyKind::Ed25519, k.as_bytes().to_vec()),
        other => {
            return Err(AuthorError::Release(format!(
                "a {} key cannot be in a trust state: use a p256 or ed25519 key",
                other.kind()
            )));
        }
    };
    Key::new(kind, &bytes).map_err(|e| AuthorError::Release(e.to_string()))
}

/// Encodes a trust document.
///
/// # Errors
/// [`AuthorError::Release`] if the state is inconsistent.
pub fn document(state: &TrustState) -> Result<Vec<u8>> {
    state
        .check()
        .map_err(|e| AuthorError::Release(e.to_string()))?;
    let mut out = vec![0; MAX_DOCUMENT_LEN];
    let n = state
        .encode(&mut out)
        .map_err(|e| AuthorError::Release(e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

/// The unsigned trust update for `state` (whose sequence number it carries).
///
/// # Errors
/// As [`document`].
pub fn envelope(state: &TrustState) -> Result<EnvelopeBuilder> {
    Ok(envelope_for_document(state.sequence(), document(state)?))
}

/// The unsigned trust update carrying `doc` as given, unchecked, with manifest sequence number
/// `sequence` (tests and fuzzing: what a device must refuse is built here too; authors use
/// [`envelope`]).
pub fn envelope_for_document(sequence: u64, doc: Vec<u8>) -> EnvelopeBuilder {
    let alg = DigestAlgorithm::Sha256;
    let manifest = ManifestBuilder {
        sequence_number: sequence,
        components: vec![vec![TRUST_COMPONENT.to_vec()]],
        shared_sequence: Some(vec![Cmd::OverrideParameters(vec![
            Param::ImageDigest(alg, alg.digest(&doc).as_bytes().to_vec()),
            Param::ImageSize(doc.len() as u64),
        ])]),
        install: Some(vec![
            Cmd::OverrideParameters(vec![Param::Uri(TRUST_PAYLOAD.into())]),
            Cmd::Directive(Directive::Fetch, 2),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]),
        ..ManifestBuilder::default()
    };
    let mut env = EnvelopeBuilder::new(&manifest, alg);
    env.integrate(TRUST_PAYLOAD, doc);
    env
}

/// Builds the trust update for `state` and signs it with every key in `signers` (the root
/// keys; the device needs its root threshold of them, and when the update replaces the root,
/// the new root's threshold too).
///
/// # Errors
/// [`AuthorError::Release`] for an inconsistent state, no signer, or an HMAC signer; the
/// signer's error.
pub fn build_update(state: &TrustState, signers: &[&dyn Signer]) -> Result<Vec<u8>> {
    sign_update(envelope(state)?, signers)
}

/// Signs an unsigned trust update ([`envelope`], [`envelope_for_document`]) with every key in
/// `signers`.
///
/// # Errors
/// As [`build_update`], but for the state.
pub fn sign_update(mut env: EnvelopeBuilder, signers: &[&dyn Signer]) -> Result<Vec<u8>> {
    if signers.is_empty() {
        return Err(AuthorError::Release(
            "a trust update needs at least one root signature".into(),
        ));
    }
    for signer in signers {
        if signer.structure() == Structure::Mac0 {
            return Err(AuthorError::Release(format!(
                "{}: a shared HMAC key cannot sign trust updates",
                signer.name()
            )));
        }
        let block = sign_block(*signer, &[], env.digest_bytes())?;
        env.raw_block(block.bytes);
    }
    Ok(env.encode())
}

/// Adds root signatures to an existing trust update (a co-signer's step: e.g. the new owner
/// in a handover). Every earlier signature stays valid.
///
/// # Errors
/// The signer's error; [`AuthorError::Manifest`] if `update` is not an envelope.
pub fn cosign(update: &[u8], signers: &[&dyn Signer]) -> Result<Vec<u8>> {
    let env = suitcase_manifest::Envelope::decode(update)?;
    let auth = env.authentication()?;
    let mut blocks = Vec::new();
    for signer in signers {
        blocks.push(sign_block(*signer, &[], auth.digest_bytes)?.bytes);
    }
    Ok(suitcase_manifest::build::add_auth_blocks(update, &blocks)?)
}

/// The trust document a trust update carries, unauthenticated (for showing what an update
/// would install; a device uses `TrustState::apply_update`).
///
/// # Errors
/// [`AuthorError::Release`] if `update` carries no valid trust document.
pub fn peek(update: &[u8]) -> Result<TrustState> {
    let env = suitcase_manifest::Envelope::decode(update)?;
    let doc = env.integrated(TRUST_PAYLOAD).ok_or_else(|| {
        AuthorError::Release("not a trust update: no \"#suitcase-trust\" payload".into())
    })?;
    TrustState::decode(doc).map_err(|e| AuthorError::Release(e.to_string()))
}

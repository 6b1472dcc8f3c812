//! A device operator's root manifest wrapping an author's signed envelope as a SUIT
//! dependency (draft-ietf-suit-trust-domains-12): two trust domains, two signers.
//!
//! The author's envelope goes into the root envelope unchanged, as the integrated dependency
//! `#name` (trust-domains §8.1.1). The root names it by its manifest digest (§5.2.2) and, as
//! the dependency template of §8.1 asks, fetches it and checks its integrity in
//! dependency-resolution, then processes it, after condition-dependency-integrity, in every
//! other section the author's manifest has (§5.1: "the dependent MUST populate all Command
//! sequences for the current Procedure"). The root has no components of its own: whatever the
//! author's manifest does to the device stays under the author's signature and the author's
//! permissions on the device; the operator's signature decides whether, and in which release
//! sequence, the device takes it.

use suitcase_manifest::build::{
    Cmd, EncodedManifest, EnvelopeBuilder, Index, ManifestBuilder, Param,
};
use suitcase_manifest::{Condition, DigestAlgorithm, Directive, Envelope, Manifest, Section};

use crate::error::AuthorError;
use crate::signer::Signer;

/// What the operator's root says besides the dependency.
#[derive(Clone, Debug)]
pub struct WrapRequest {
    /// The root's sequence number (the device's anti-rollback counter compares this one).
    pub sequence: u64,
    /// The integrated dependency's envelope key, starting with `#`.
    pub name: String,
    /// The identifier of the component that holds the dependency (its dependency prefix).
    pub slot: Vec<Vec<u8>>,
}

/// The root envelope and what it wraps.
#[derive(Clone, Debug)]
pub struct Wrapped {
    /// The signed root envelope, the author's envelope integrated.
    pub envelope: Vec<u8>,
    /// The author's manifest digest the root names (SHA-256).
    pub dependency_digest: Vec<u8>,
    /// The author's sequence number.
    pub dependency_sequence: u64,
    /// The sections of the root that process the dependency, in manifest order.
    pub sections: Vec<&'static str>,
}

/// Builds and signs (with `signer`, the operator's key) a root manifest wrapping `dependency`,
/// an author's signed envelope.
///
/// # Errors
/// [`AuthorError::Manifest`] if `dependency` is not a SUIT envelope; [`AuthorError::Release`]
/// for a name that is not `#...`, a manifest that does not match its digest, or an unsigned
/// dependency; the signer's error.
pub fn wrap(
    dependency: &[u8],
    request: &WrapRequest,
    signer: &dyn Signer,
) -> Result<Wrapped, AuthorError> {
    if !request.name.starts_with('#') || request.name.len() < 2 {
        return Err(AuthorError::Release(format!(
            "the dependency's envelope key {:?} must start with '#' (trust-domains §8.1.1: the \
             URI is a fragment naming the envelope member)",
            request.name
        )));
    }
    let envelope = Envelope::decode(dependency)?;
    let auth = envelope.authentication()?;
    // Manifest §8.3: the digest the root will name must be that of the manifest inside.
    if !auth
        .digest
        .matches_value(&envelope.manifest_digest(auth.digest.algorithm))
    {
        return Err(AuthorError::Release(
            "the dependency's manifest does not match its digest; refusing to wrap it".into(),
        ));
    }
    if auth.block_count() == 0 {
        return Err(AuthorError::Release(
            "the dependency is not signed: a device authenticates it under the author's own \
             key (trust-domains §5.1), so wrap the author's signed envelope"
                .into(),
        ));
    }
    // The author's manifest is read only to learn which sections it has; the device
    // authenticates it before running any of them.
    let theirs = Manifest::decode_unauthenticated(envelope.manifest_bytes())?;
    let sha = DigestAlgorithm::Sha256;
    let digest = sha.digest(envelope.manifest_wrapped()).as_bytes().to_vec();
    // Every section fetches the dependency from the envelope (in place, no network), checks
    // it against the digest and processes it: the same three commands, so that a section run
    // on its own (secure boot runs validate and invoke from the stored envelope) has what it
    // needs (trust-domains §8.1).
    let process = || {
        Some(vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::Directive(Directive::Fetch, 15),
            Cmd::Condition(Condition::DependencyIntegrity, 15),
            Cmd::Directive(Directive::ProcessDependency, 15),
        ])
    };
    let mut root = ManifestBuilder {
        sequence_number: request.sequence,
        dependencies: vec![(0, Some(request.slot.clone()))],
        shared_sequence: Some(vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::OverrideParameters(vec![
                Param::ImageDigest(sha, digest.clone()),
                Param::ImageSize(dependency.len() as u64),
                Param::Uri(request.name.clone()),
            ]),
        ]),
        dependency_resolution: process(),
        ..Default::default()
    };
    let mut sections = vec![Section::DependencyResolution.name()];
    for (present, slot, section) in [
        (
            theirs.payload_fetch.is_some(),
            &mut root.payload_fetch,
            Section::PayloadFetch,
        ),
        (
            theirs.candidate_verification.is_some(),
            &mut root.candidate_verification,
            Section::CandidateVerification,
        ),
        (
            theirs.install.is_some(),
            &mut root.install,
            Section::Install,
        ),
        (
            theirs.validate.is_some(),
            &mut root.validate,
            Section::Validate,
        ),
        (theirs.load.is_some(), &mut root.load, Section::Load),
        (theirs.invoke.is_some(), &mut root.invoke, Section::Invoke),
    ] {
        if present {
            *slot = process();
            sections.push(section.name());
        }
    }
    let encoded: EncodedManifest = root.encode(sha);
    let mut builder = EnvelopeBuilder::from_encoded(encoded, sha);
    builder.integrate(&request.name, dependency.to_vec());
    let block = crate::signer::sign_block(signer, &[], builder.digest_bytes())?;
    builder.raw_block(block.bytes);
    Ok(Wrapped {
        envelope: builder.encode(),
        dependency_digest: digest,
        dependency_sequence: theirs.sequence_number,
        sections,
    })
}

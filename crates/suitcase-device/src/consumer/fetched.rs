//! The fetched state: the install section has run and the payload is in the slot; reading it
//! back through the validate section's image-match is the only way on.

use suitcase_manifest::{
    Platform, Processor, ProcessorPolicy, Section, SuitDigest, VerifiedManifest,
};

use super::check::Roles;
use super::host::Recording;
use super::io::{IoError, Journal, Progress, Slots, Transport};
use super::pipeline::Pipeline;
use super::staged::VerifiedCandidates;
use super::{Device, Error, Layout};

/// Runs `sections` in order; returns the image digest the manifest set for component
/// `image`, or the processor's error.
pub(super) fn run<'e, P: Platform>(
    manifest: &VerifiedManifest<'e>,
    platform: &mut P,
    installed: u64,
    sections: &[Section],
    image: usize,
) -> Result<Option<SuitDigest<'e>>, suitcase_manifest::Error> {
    let policy = ProcessorPolicy {
        installed_sequence: Some(installed),
        allow_same_sequence: false,
    };
    let mut processor = Processor::new(manifest, platform, policy)?;
    for &section in sections {
        processor.run(section)?;
    }
    Ok(processor.parameters(image).and_then(|p| p.image_digest))
}

/// The platform's own error explains a processor error better than the processor can.
pub(super) fn finish<T, S, J, R>(
    pipeline: &mut Pipeline<'_, T, S, J>,
    result: Result<R, suitcase_manifest::Error>,
) -> Result<R, Error> {
    match (result, pipeline.error.take()) {
        (Ok(r), None) => Ok(r),
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(Error::Processing(e)),
    }
}

/// The install section has run: the payload is in the slot, unverified as read back.
#[derive(Debug)]
pub struct Fetched<'e> {
    pub(super) manifest: VerifiedManifest<'e>,
    pub(super) roles: Roles,
    pub(super) layout: Layout,
    pub(super) installed: u64,
    pub(super) blocks: u64,
}

impl<'e> Fetched<'e> {
    /// Payload blocks requested from the transport.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Reads the image back from the slot and runs the manifest's validate section on it
    /// (manifest §7.2: image-match against the digest the authenticated manifest commits
    /// to). Only then does a [`VerifiedCandidates`] exist.
    ///
    /// # Errors
    /// [`Error::Processing`] on a mismatch, [`Error::NotVerified`] if the validate section
    /// does not match the image, [`Error::Io`] for flash errors.
    pub fn verify<S: Slots>(
        self,
        device: &Device<'_>,
        slots: &mut S,
    ) -> Result<VerifiedCandidates<'e>, Error> {
        verify(
            self.manifest,
            device,
            slots,
            self.roles,
            self.layout,
            self.installed,
        )
    }
}

pub(super) fn verify<'e, S: Slots>(
    manifest: VerifiedManifest<'e>,
    device: &Device<'_>,
    slots: &mut S,
    roles: Roles,
    layout: Layout,
    installed: u64,
) -> Result<VerifiedCandidates<'e>, Error> {
    let mut pipeline: Pipeline<'_, NoTransport, S, NoJournal> =
        Pipeline::new(device, None, slots, None, roles, layout).written();
    // The image-match tracking of `Authentic::image_match`, counting the validate section's.
    let mut recording = Recording::new(&mut pipeline, Some(Section::Validate));
    let result = run(
        &manifest,
        &mut recording,
        installed,
        &[Section::Validate],
        roles.image,
    );
    let matched = recording.matched(roles.image);
    let digest = finish(&mut pipeline, result)?;
    if !matched {
        return Err(Error::NotVerified);
    }
    let digest = digest.ok_or(Error::NotVerified)?;
    Ok(VerifiedCandidates {
        manifest,
        layout,
        digest,
    })
}

/// No transport: reading back never requests a payload.
struct NoTransport;

impl Transport for NoTransport {
    fn envelope(&mut self, _: &mut [u8]) -> Result<usize, IoError> {
        Err(IoError::Failed)
    }
    fn payload(&mut self, _: &str, _: u64, _: &mut [u8]) -> Result<usize, IoError> {
        Err(IoError::Failed)
    }
}

/// No journal: reading back records nothing.
struct NoJournal;

impl Journal for NoJournal {
    fn load(&mut self) -> Result<Option<Progress>, IoError> {
        Ok(None)
    }
    fn store(&mut self, _: Option<Progress>) -> Result<(), IoError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use alloc::vec;
    use alloc::vec::Vec;

    use suitcase_manifest::build::{Cmd, Index, Param};
    use suitcase_manifest::{
        ComponentId, Condition, DigestAlgorithm, Directive, PublicKey, TrustAnchor, TrustPolicy,
    };

    use super::super::Offer;
    use super::super::boot::tests::booted;
    use super::super::host::tests::{key, read_at, signed};
    use super::*;
    use crate::DeviceIdentity;

    const IMAGE: &[u8] = &[0x5a; 700];
    const URI: &str = "coap://fw.example/mcu.bin";
    const VENDOR: [u8; 16] = [0xfa; 16];
    const CLASS: [u8; 16] = [0x14; 16];
    /// `["mcu"]`, CBOR-encoded.
    const COMPONENT: [u8; 5] = [0x81, 0x43, b'm', b'c', b'u'];

    /// Serves `IMAGE` at `URI`.
    struct Server;

    impl Transport for Server {
        fn envelope(&mut self, _: &mut [u8]) -> Result<usize, IoError> {
            Err(IoError::Failed)
        }
        fn payload(&mut self, uri: &str, at: u64, buf: &mut [u8]) -> Result<usize, IoError> {
            Ok(if uri == URI {
                read_at(IMAGE, at, buf)
            } else {
                0
            })
        }
    }

    /// A signed release of `IMAGE` for `["mcu"]`, fetched and image-matched at install, with
    /// `shared` at the end of its shared sequence and `validate` as its validate section.
    fn envelope(shared: Vec<Cmd>, validate: Vec<Cmd>) -> Vec<u8> {
        let sha = DigestAlgorithm::Sha256;
        let image_match = [
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::Condition(Condition::ImageMatch, 15),
        ];
        let mut install = vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::OverrideParameters(vec![Param::Uri(URI.into())]),
            Cmd::Directive(Directive::Fetch, 2),
        ];
        install.extend(image_match);
        let mut shared_sequence = vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::OverrideParameters(vec![
                Param::VendorIdentifier(VENDOR.to_vec()),
                Param::ClassIdentifier(CLASS.to_vec()),
                Param::ImageDigest(sha, sha.digest(IMAGE).as_bytes().to_vec()),
                Param::ImageSize(IMAGE.len() as u64),
            ]),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
        ];
        shared_sequence.extend(shared);
        signed(b"mcu", shared_sequence, install, validate)
    }

    /// Authenticates, fetches into simulated flash and verifies `envelope`: the image length
    /// of the verified candidates.
    fn fetch_and_verify(envelope: &[u8]) -> Result<u64, Error> {
        let anchors = [TrustAnchor::new(
            "author",
            PublicKey::Ed25519(key().verifying_key()),
        )];
        let device = Device {
            anchors: &anchors,
            policy: TrustPolicy::default(),
            identity: DeviceIdentity {
                vendor: &VENDOR,
                class: &CLASS,
                device: None,
            },
            component: ComponentId::decode(&COMPONENT).unwrap(),
            keys: &[],
        };
        let mut slots = booted();
        let fetched = Offer::new(envelope)
            .authenticate(&device, &mut slots)?
            .fetch(&device, &mut Server, &mut slots, &mut NoJournal)?;
        Ok(fetched.verify(&device, &mut slots)?.image_len())
    }

    #[test]
    fn the_validate_sections_image_match_of_the_read_back_makes_verified_candidates() {
        let validate = vec![
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::Condition(Condition::ImageMatch, 15),
        ];
        assert_eq!(
            fetch_and_verify(&envelope(vec![], validate)),
            Ok(IMAGE.len() as u64)
        );
    }

    #[test]
    fn attack_validate_without_image_match_never_becomes_verified_candidates() {
        let validate = vec![Cmd::SetComponentIndex(Index::One(0))];
        assert_eq!(
            fetch_and_verify(&envelope(vec![], validate)),
            Err(Error::NotVerified)
        );
    }

    #[test]
    fn attack_image_match_outside_the_validate_section_does_not_verify_the_read_back() {
        // The shared sequence runs before every section: its image-match fails softly before
        // the fetch and passes before validate, which itself matches nothing.
        let shared = vec![Cmd::TryEach(
            vec![
                vec![Cmd::Condition(Condition::ImageMatch, 15)],
                vec![Cmd::SetComponentIndex(Index::One(0))],
            ],
            false,
        )];
        let validate = vec![Cmd::SetComponentIndex(Index::One(0))];
        assert_eq!(
            fetch_and_verify(&envelope(shared, validate)),
            Err(Error::NotVerified)
        );
    }
}

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

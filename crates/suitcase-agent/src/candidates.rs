//! The seam between verification and installation: [`VerifiedCandidates`], the images of an
//! update each matched against the image digest of an authenticated manifest
//! (draft-ietf-suit-manifest §8.4.9.2, image-match). It is the firmware-consumer core's
//! [`Matched`], which only the core's `Authentic::image_match` makes, after it has run the
//! sections over the agent's platform and seen an image-match accept every image to install:
//! Process ([`process`]) runs the update sections, and a step that re-enters the install path
//! from the journal ([`resume`]) runs the validate section over the journalled candidates of
//! an envelope authenticated again. Apply takes nothing else: not the journal's plain
//! [`Candidate`] records, not raw envelope bytes.

use std::path::{Path, PathBuf};

use suitcase_device::consumer::{MatchError, Matched};
use suitcase_manifest::Section;
use suitcase_protocol::Step;

use crate::ctx::Ctx;
use crate::error::{Stop, fail};
use crate::platform::{Content, DevicePlatform, Mode};
use crate::state::{Candidate, Journal, Role};
use crate::verified::{Authentic, UPDATE_SECTIONS, platform, preset_running, suit_failure};

/// One candidate image, as matched.
#[derive(Debug)]
pub(crate) struct VerifiedCandidate {
    index: usize,
    path: PathBuf,
    len: u64,
}

impl VerifiedCandidate {
    /// The file holding it.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Its length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// The candidate files an image-match run left in the agent's platform.
#[derive(Debug)]
pub(crate) struct Files(Vec<VerifiedCandidate>);

impl Files {
    /// The candidate for manifest component `index`, if it has one.
    pub(crate) fn get(&self, index: usize) -> Option<&VerifiedCandidate> {
        self.0.iter().find(|c| c.index == index)
    }

    /// As the journal records them.
    pub(crate) fn records(&self) -> Vec<Candidate> {
        self.0
            .iter()
            .map(|c| Candidate {
                index: c.index,
                file: c
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                len: c.len,
            })
            .collect()
    }
}

/// The candidates of an update and the authenticated envelope they matched (module docs).
pub(crate) type VerifiedCandidates<'e> = Matched<'e, Files>;

/// Process: the update sections run for real on the downloaded payloads (fetched in place,
/// decrypted as a stream); the install section's image-match checks each candidate. The
/// candidates, and how many payloads were decrypted.
pub(crate) fn process<'e>(
    ctx: &Ctx,
    j: &Journal,
    step: Step,
    a: &Authentic<'e>,
) -> Result<(VerifiedCandidates<'e>, usize), Stop> {
    let payloads = j
        .offer
        .payloads
        .iter()
        .zip(&j.payloads)
        .map(|(o, d)| (o.uri.clone(), ctx.state.work_file(&d.file), d.size))
        .collect();
    let mut p = platform(ctx, a, Mode::Process, payloads);
    preset_running(ctx, a, &mut p)?;
    let matched = a.image_match(&mut p, &UPDATE_SECTIONS, install(j), files(j));
    match matched {
        Ok(m) => Ok((m, p.decrypted)),
        Err(MatchError::Processing(e)) => Err(suit_failure(step, &e, &p)),
        Err(MatchError::NotRun { index } | MatchError::Unmatched { index }) => Err(fail(
            step,
            suitcase_manifest::Reason::Digest.code(),
            format!(
                "the manifest's install section does not image-match {}: its candidate is unverified and is not installed",
                name(j, index)
            ),
        )),
    }
}

/// Re-enters the install path from the journal, on the stored envelope authenticated again
/// (`crate::verified::authenticated`): the journalled candidates checked against its image
/// digests by its validate section (image-match, in place); a manifest without one, or whose
/// validate section image-matches not every image to install, has its update sections run
/// again, as Process did.
pub(crate) fn resume<'e>(
    ctx: &Ctx,
    j: &Journal,
    step: Step,
    a: &Authentic<'e>,
) -> Result<VerifiedCandidates<'e>, Stop> {
    let mut p = platform(ctx, a, Mode::Reverify, Vec::new());
    for c in &j.candidates {
        p.set_content(
            c.index,
            Content {
                path: ctx.state.work_file(&c.file),
                offset: 0,
                len: c.len,
            },
        );
    }
    match a.image_match(&mut p, &[Section::Validate], install(j), files(j)) {
        Ok(m) if m.ran() => Ok(m),
        Err(MatchError::Processing(e)) => Err(suit_failure(step, &e, &p)),
        // A validate section checked only the components it image-matches: any other
        // candidate to be installed is matched again by running Process over.
        _ => Ok(process(ctx, j, step, a)?.0),
    }
}

/// Whether component `index` is an image to install (not a helper, not a running image read
/// in place) that has content in `p`: what image-match must accept.
pub(crate) fn install(j: &Journal) -> impl Fn(&DevicePlatform<'_>, usize) -> bool + '_ {
    move |p, index| {
        p.content.get(index).is_some_and(Option::is_some)
            && j.targets
                .iter()
                .any(|t| t.index == index && t.role == Role::Image)
    }
}

/// The candidates in `p`: every component with content but a running image, which is read in
/// place and not written.
fn files(j: &Journal) -> impl FnOnce(&DevicePlatform<'_>) -> Files + '_ {
    move |p| {
        Files(
            p.content
                .iter()
                .enumerate()
                .filter(|(index, _)| {
                    !j.targets
                        .iter()
                        .any(|t| t.index == *index && t.role == Role::Running)
                })
                .filter_map(|(index, c)| {
                    c.as_ref().map(|c| VerifiedCandidate {
                        index,
                        path: c.path.clone(),
                        len: c.len,
                    })
                })
                .collect(),
        )
    }
}

/// The name of target `index`, for messages.
pub(crate) fn name(j: &Journal, index: usize) -> String {
    j.targets
        .iter()
        .find(|t| t.index == index)
        .map_or_else(|| format!("component {index}"), |t| t.name.clone())
}

//! SUIT dependencies (draft-ietf-suit-trust-domains-12): the state the processor keeps for
//! each dependency of the manifest it runs, and why a dependency was refused.
//!
//! A dependency is another SUIT envelope, stored as the component at a dependency index
//! (`suit-dependencies` in suit-common). The processor runs it, on request of the dependent's
//! `process-dependency`, as a manifest of its own: authenticated under the device's trust
//! anchors with its own signers and their permissions (trust-domains §5.1 "any signature of a
//! Dependency MUST be verified"), never under the dependent's. So a device operator's root
//! manifest can wrap an author's manifest: two trust domains, two signers, and neither can
//! reach a component its anchor is not permitted for (manifest §9, access control lists).
//!
//! What the processor decides, and where the draft says so:
//!
//! | rule | refusal | clause |
//! |---|---|---|
//! | process-dependency on an index that `suit-dependencies` does not list | [`DependencyCause::NotListed`] | trust-domains §5.4 step 1, §5.6.2 |
//! | process-dependency on bytes whose digest no check bound to the dependent's image-digest since they were loaded | [`DependencyCause::NotIntegrityChecked`] | trust-domains §5.6.2, §10 (see below) |
//! | the dependency's manifest digest differs from the dependent's image-digest | [`DependencyCause::DigestMismatch`] | trust-domains §5.6.4 step 2, §5.2.2 |
//! | the dependency's signature does not verify under the device's anchors | [`DependencyCause::Unauthenticated`] | trust-domains §5.1, §5.6.4 step 1, §5.4 step 3 |
//! | a dependency nested deeper than [`MAX_DEPENDENCY_DEPTH`] | [`DependencyCause::DepthLimit`] | issue policy (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION) |
//! | a fetched dependency larger than its declared image-size or the caller's buffer | [`DependencyCause::TooLarge`] | RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION |
//! | a section of the update procedure the dependency has, not processed by the dependent's same section | [`DependencyCause::SectionSkipped`] | trust-domains §5.1 ("the corresponding section in each Dependency has been executed, if present"); load and invoke are left to the dependent, whose signers need INVOKE rights (the draft's examples invoke without processing the dependency's invoke) |
//!
//! **When process-dependency may run without a preceding condition-dependency-integrity.**
//! Trust-domains §5.6.2 makes process-dependency Abort when the dependency "has not been the
//! target of a suit-condition-dependency-integrity", yet the draft's own Example 1
//! (`example2_integrated`) runs process-dependency after only a fetch and an image-match. The
//! integrity condition is three steps (§5.6.4): verify the dependency's signature, compare its
//! digest with the dependent's image-digest, verify the dependency against that digest. On a
//! dependency, image-match computes exactly that digest over the bstr-wrapped manifest
//! (§5.2.2), and process-dependency authenticates the dependency itself every time it runs
//! (§5.4 step 3: signatures and the wrapper's digest, [`crate::Envelope::verify`]). So this
//! processor accepts process-dependency when, since the dependency's bytes were last loaded
//! into its immutable memory (a fetch, a copy or a write to the dependency's component
//! forgets the check, §5.6.4's cache rule), either condition-dependency-integrity or a
//! successful image-match bound those very bytes to the dependent's digest: the three steps
//! of §5.6.4 all run, on the same bytes, before a dependency command does. Without either,
//! process-dependency is refused ([`DependencyCause::NotIntegrityChecked`]): otherwise any
//! manifest the author ever signed could be substituted for the one the dependent names
//! (mix-and-match, RFC 9124 THREAT.UPD.MIX; test `attack_process_dependency_without_integrity_check`).

use core::fmt;

use crate::auth::{TrustAnchor, TrustPolicy};
use crate::error::AuthError;
use crate::manifest::MAX_COMPONENTS;

/// The deepest chain of dependencies processed: a root, its dependency and that one's
/// dependency. Each level holds a processor (parameter table and manifest) on the stack, so
/// the bound is the stack bound; a cycle of dependencies ends here too.
pub const MAX_DEPENDENCY_DEPTH: usize = 2;

/// Why a dependency was refused. [`crate::Processor::dependency_failure`] gives it with the
/// dependency's index; the processor's error carries the stable reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DependencyCause {
    /// process-dependency on a component index that suit-dependencies does not list.
    NotListed,
    /// process-dependency on bytes that no dependency-integrity or image-match bound to the
    /// dependent's image-digest since they were loaded.
    NotIntegrityChecked,
    /// The dependency's manifest digest is not the dependent's image-digest.
    DigestMismatch,
    /// The dependency's own signature did not verify under the device's anchors.
    Unauthenticated(AuthError),
    /// Dependencies nested deeper than [`MAX_DEPENDENCY_DEPTH`].
    DepthLimit,
    /// The dependency is larger than its declared image-size or the buffer the caller gave
    /// for fetched dependencies.
    TooLarge,
    /// The dependency has this section (a manifest key) but the dependent's same section
    /// did not process it.
    SectionSkipped(u64),
    /// The caller's rule refused the dependency's authenticated manifest
    /// ([`crate::Processor::with_dependency_rule`]; e.g. it names the trust store, which only
    /// the root role may write).
    Refused,
}

/// A refused dependency: which one, how deep, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DependencyFailure {
    /// The dependency's component index in the manifest that refers to it.
    pub index: usize,
    /// How deep that manifest is (0: the root manifest).
    pub depth: usize,
    /// Why.
    pub cause: DependencyCause,
}

impl fmt::Display for DependencyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (i, d) = (self.index, self.depth);
        write!(f, "dependency {i} (manifest depth {d}): ")?;
        match self.cause {
            DependencyCause::NotListed => f.write_str(
                "process-dependency on a component that suit-dependencies does not list \
                 (trust-domains §5.6.2)",
            ),
            DependencyCause::NotIntegrityChecked => f.write_str(
                "process-dependency before dependency-integrity or image-match bound the \
                 dependency to the dependent's digest (trust-domains §5.6.2)",
            ),
            DependencyCause::DigestMismatch => f.write_str(
                "the dependency's manifest digest is not the one the dependent names \
                 (trust-domains §5.6.4)",
            ),
            DependencyCause::Unauthenticated(_) => f.write_str(
                "the dependency's signature does not verify under the device's trust anchors \
                 (trust-domains §5.1)",
            ),
            DependencyCause::DepthLimit => write!(
                f,
                "dependencies nest deeper than {MAX_DEPENDENCY_DEPTH} levels"
            ),
            DependencyCause::TooLarge => {
                f.write_str("the fetched dependency does not fit the dependency buffer")
            }
            DependencyCause::SectionSkipped(key) => write!(
                f,
                "the dependency's section {key} was not processed by the dependent's same \
                 section (trust-domains §5.1)"
            ),
            DependencyCause::Refused => f.write_str(
                "the device refuses a dependency naming these components (as it refuses such a \
                 release)",
            ),
        }
    }
}

/// The trust a dependency is authenticated under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trust<'a> {
    pub(crate) anchors: &'a [TrustAnchor<'a>],
    pub(crate) policy: TrustPolicy<'a>,
}

/// What the processor knows about the dependency at one component index.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot<'a> {
    /// The dependency's envelope, once loaded (integrated, or read from its component into
    /// the dependency buffer): immutable from then on (RFC 9124 REQ.SEC.MFST.CONST).
    pub(crate) bytes: Option<&'a [u8]>,
    /// Whether these bytes were bound to the dependent's image-digest.
    pub(crate) checked: bool,
    /// Sections the dependency has (bits of [`crate::Section::bit`]), once processed.
    pub(crate) present: u8,
    /// Sections processed.
    pub(crate) done: u8,
    /// The bstr-wrapped manifest `present` and `done` are about.
    pub(crate) processed_manifest: Option<&'a [u8]>,
}

/// The dependency state of one processor.
#[derive(Debug, Default)]
pub(crate) struct State<'a> {
    pub(crate) trust: Option<Trust<'a>>,
    /// What is left of the caller's buffer for dependencies read from storage.
    pub(crate) buffer: &'a mut [u8],
    pub(crate) slots: [Slot<'a>; MAX_COMPONENTS],
    /// The caller's rule: a dependency whose authenticated manifest it holds true for is
    /// refused. Inherited by nested dependencies.
    pub(crate) refuse: Option<fn(&crate::VerifiedManifest<'_>) -> bool>,
    /// 0 for the root manifest.
    pub(crate) depth: usize,
    /// Sections this processor has reached: run, or passed because its manifest lacks them
    /// (bits of [`crate::Section::bit`]).
    pub(crate) ran: u8,
    pub(crate) failure: Option<DependencyFailure>,
}

impl<'a> State<'a> {
    pub(crate) fn slot(&mut self, index: usize) -> Option<&mut Slot<'a>> {
        self.slots.get_mut(index)
    }

    /// Forgets what was loaded and checked at `index` (its component's content changes).
    pub(crate) fn forget(&mut self, index: usize) {
        if let Some(s) = self.slots.get_mut(index) {
            // What was processed stays tied to the manifest it was processed for
            // (`processed_manifest`): a re-fetch of the same manifest keeps it, another
            // manifest in this slot starts with nothing processed (trust-domains §5.1).
            s.bytes = None;
            s.checked = false;
        }
    }
}

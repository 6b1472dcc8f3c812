//! The command-sequence processor (manifest §6): a sans-IO interpreter driven through the
//! [`Platform`] trait.
//!
//! The processor never touches storage, network or clocks itself. It asks the platform for
//! component bytes in bounded chunks, hashes and compares them itself (so every security
//! decision stays in this crate), and tells the platform what to fetch, write, copy, swap and
//! invoke.

use subtle::ConstantTimeEq;

use crate::auth::{TrustAnchor, TrustPolicy};
use crate::command::{
    Command, CommandSequence, Condition, CustomArg, Directive, IndexArg, IndexList,
};
use crate::component::ComponentId;
use crate::dependency::{
    DependencyCause, DependencyFailure, MAX_DEPENDENCY_DEPTH, State as DependencyState, Trust,
};
use crate::digest::{Hasher, SuitDigest};
use crate::envelope::{Envelope, SectionState, VerifiedManifest};
use crate::error::{Error, Operation, Unsupported};
use crate::manifest::MAX_COMPONENTS;
use crate::params::{Apply, Identifier, Parameter, ParameterMap, Parameters};

/// The deepest try-each / run-sequence nesting accepted (issue policy; the spec sets none).
pub const MAX_NESTING: usize = 16;

/// Bytes moved per platform call when hashing, comparing or copying.
const CHUNK: usize = 256;

/// A manifest section that the processor can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    /// suit-dependency-resolution (15).
    DependencyResolution,
    /// suit-payload-fetch (16).
    PayloadFetch,
    /// suit-candidate-verification (18).
    CandidateVerification,
    /// suit-install (20).
    Install,
    /// suit-validate (7).
    Validate,
    /// suit-load (8).
    Load,
    /// suit-invoke (9).
    Invoke,
}

impl Section {
    /// The update procedure, in order (manifest §6.7; trust-domains adds 15 and 18).
    pub const UPDATE: [Self; 5] = [
        Self::DependencyResolution,
        Self::PayloadFetch,
        Self::CandidateVerification,
        Self::Install,
        Self::Validate,
    ];

    /// The invocation procedure, in order.
    pub const INVOCATION: [Self; 3] = [Self::Validate, Self::Load, Self::Invoke];

    /// Every section, in manifest-key order.
    pub const ALL: [Self; 7] = [
        Self::Validate,
        Self::Load,
        Self::Invoke,
        Self::DependencyResolution,
        Self::PayloadFetch,
        Self::CandidateVerification,
        Self::Install,
    ];

    /// A bit of its own, for sets of sections.
    pub(crate) const fn bit(self) -> u8 {
        match self {
            Self::DependencyResolution => 1,
            Self::PayloadFetch => 2,
            Self::CandidateVerification => 4,
            Self::Install => 8,
            Self::Validate => 16,
            Self::Load => 32,
            Self::Invoke => 64,
        }
    }

    /// The manifest key of the section.
    pub fn key(self) -> u64 {
        use crate::codepoints::manifest as k;
        match self {
            Self::DependencyResolution => k::DEPENDENCY_RESOLUTION,
            Self::PayloadFetch => k::PAYLOAD_FETCH,
            Self::CandidateVerification => k::CANDIDATE_VERIFICATION,
            Self::Install => k::INSTALL,
            Self::Validate => k::VALIDATE,
            Self::Load => k::LOAD,
            Self::Invoke => k::INVOKE,
        }
    }

    /// The spec's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::DependencyResolution => "dependency-resolution",
            Self::PayloadFetch => "payload-fetch",
            Self::CandidateVerification => "candidate-verification",
            Self::Install => "install",
            Self::Validate => "validate",
            Self::Load => "load",
            Self::Invoke => "invoke",
        }
    }
}

/// A component as the platform sees it: its index in the manifest and its identifier.
#[derive(Clone, Copy, Debug)]
pub struct Component<'a> {
    /// The component index.
    pub index: usize,
    /// The component identifier.
    pub id: ComponentId<'a>,
}

/// Which identity a condition checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    /// Vendor identifier.
    Vendor,
    /// Class identifier.
    Class,
    /// Device identifier.
    Device,
}

/// What the platform could not do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// The platform does not implement this operation.
    Unsupported,
    /// The operation was attempted and failed.
    Failed,
}

/// What to fetch.
#[derive(Clone, Copy, Debug)]
pub struct FetchRequest<'a> {
    /// suit-parameter-uri.
    pub uri: &'a str,
    /// suit-parameter-fetch-arguments.
    pub arguments: Option<&'a [u8]>,
    /// The most bytes the platform may store: the declared image size, bounded by capacity.
    pub max_size: Option<u64>,
    /// The expected digest, if already set (lets the platform skip a fetch it already has).
    pub digest: Option<SuitDigest<'a>>,
}

/// One command outcome, for reports (SUIT_Report records: section, offset, component).
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The section being run (`None` while running the shared sequence).
    pub section: Option<Section>,
    /// Byte offset of the command in its command sequence.
    pub offset: usize,
    /// The command.
    pub command: Command<'a>,
    /// The component index it ran for.
    pub component: usize,
    /// Whether it succeeded.
    pub success: bool,
    /// Which manifest ran it: 0 for the manifest the processor was made for, 1 for a
    /// dependency it processed, 2 for that one's dependency (trust-domains); `component` is an
    /// index into that manifest's components.
    pub depth: usize,
    /// The identifier of that component, if the index names one: what a caller that runs
    /// dependencies tracks a component by (trust-domains §5.4 shares components between a
    /// dependent and its dependency by identifier, not by index).
    pub id: Option<ComponentId<'a>>,
}

/// Everything the processor needs from the device. Only `read`, `write_begin`, `write`,
/// `write_end`, `identity` and `capacity` are required; the rest default to "unsupported",
/// which makes a manifest that needs them fail cleanly.
pub trait Platform {
    /// How many bytes the component can hold; `None` if the device has no such component
    /// (manifest §6.1: an unsupported component identifier invalidates the manifest).
    fn capacity(&self, component: &Component<'_>) -> Option<u64>;

    /// The device's vendor, class or device identifier for this component, if known.
    fn identity(&self, component: &Component<'_>, kind: IdentityKind) -> Option<Identifier<'_>>;

    /// Reads up to `buf.len()` bytes of the component's current content at `offset`. Returns the
    /// number read; 0 means end of content.
    ///
    /// # Errors
    /// [`PlatformError`] if the component cannot be read.
    fn read(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError>;

    /// Starts replacing the component's content (erase, truncate, open a staging area).
    ///
    /// # Errors
    /// [`PlatformError`] if the component cannot be written.
    fn write_begin(
        &mut self,
        component: &Component<'_>,
        size: Option<u64>,
    ) -> Result<(), PlatformError>;

    /// Writes `data` at `offset` of the new content. Offsets arrive in increasing order.
    ///
    /// # Errors
    /// [`PlatformError`] on a storage failure.
    fn write(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), PlatformError>;

    /// Ends a write; the component's content is now what was written.
    ///
    /// # Errors
    /// [`PlatformError`] on a storage failure.
    fn write_end(&mut self, component: &Component<'_>) -> Result<(), PlatformError>;

    /// Reads back bytes written since `write_begin` (a delta patch refers to earlier parts
    /// of the image it is producing). Returns the number read. Only delta copies
    /// (suitcase-parameter-delta-base) need it.
    ///
    /// # Errors
    /// [`PlatformError`] if unsupported or the bytes cannot be read.
    fn read_staged(
        &mut self,
        _component: &Component<'_>,
        _offset: u64,
        _buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        Err(PlatformError::Unsupported)
    }

    /// The slot the component occupies (condition-component-slot), if the device has slots.
    fn slot(&self, _component: &Component<'_>) -> Option<u64> {
        None
    }

    /// Fetches a payload from `request.uri` into the component.
    ///
    /// # Errors
    /// [`PlatformError`] if the payload cannot be obtained or stored.
    fn fetch(
        &mut self,
        _component: &Component<'_>,
        _request: &FetchRequest<'_>,
    ) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported)
    }

    /// Swaps the contents of two components.
    ///
    /// # Errors
    /// [`PlatformError`] if not supported or failed.
    fn swap(&mut self, _a: &Component<'_>, _b: &Component<'_>) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported)
    }

    /// Transfers execution to the component (or records that it would).
    ///
    /// # Errors
    /// [`PlatformError`] if not supported or failed.
    fn invoke(
        &mut self,
        _component: &Component<'_>,
        _args: Option<&[u8]>,
    ) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported)
    }

    /// Seconds since 1970 (use-before).
    fn now(&self) -> Option<u64> {
        None
    }

    /// Remaining battery energy in mWh (minimum-battery).
    fn battery_mwh(&self) -> Option<u64> {
        None
    }

    /// Asks the application whether the update may proceed (update-authorized).
    ///
    /// # Errors
    /// [`PlatformError::Unsupported`] when there is no one to ask.
    fn authorize(&mut self, _priority: Option<i64>) -> Result<bool, PlatformError> {
        Err(PlatformError::Unsupported)
    }

    /// The installed version of the component (condition-version).
    fn version(&self, _component: &Component<'_>) -> Option<&[i64]> {
        None
    }

    /// Waits for the events in `wait_info` (directive-wait).
    ///
    /// # Errors
    /// [`PlatformError`] if not supported or the wait failed.
    fn wait(&mut self, _component: &Component<'_>, _wait_info: &[u8]) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported)
    }

    /// Runs a private-use command. `Ok(false)` is a failed condition.
    ///
    /// # Errors
    /// [`PlatformError::Unsupported`] unless the platform defines the command.
    fn custom(
        &mut self,
        _component: &Component<'_>,
        _id: i64,
        _arg: CustomArg<'_>,
    ) -> Result<bool, PlatformError> {
        Err(PlatformError::Unsupported)
    }

    /// Writes the content-encryption key for `info` into `cek` and returns its length.
    ///
    /// # Errors
    /// [`PlatformError`] if the device holds no key for any recipient.
    fn content_key(
        &mut self,
        _info: &crate::encryption::EncryptionInfo<'_>,
        _cek: &mut [u8; 32],
    ) -> Result<usize, PlatformError> {
        Err(PlatformError::Unsupported)
    }

    /// Receives a record for every command run.
    fn record(&mut self, _record: &Record<'_>) {}
}

/// Policy decisions the caller makes before processing.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessorPolicy {
    /// The sequence number of the installed manifest, if any.
    pub installed_sequence: Option<u64>,
    /// Accept a manifest whose sequence number equals the installed one. Right for a
    /// bootloader re-validating the installed manifest; wrong for an update.
    pub allow_same_sequence: bool,
}

/// How a command sequence ended when it did not succeed.
#[derive(Debug)]
enum Flow {
    /// A condition failed while soft-failure was true: absorbed by try-each / run-sequence.
    Soft(Error),
    /// A condition failed with soft-failure false.
    Condition(Error),
    /// A directive failed, or something else that always aborts.
    Abort(Error),
}

impl From<Error> for Flow {
    fn from(e: Error) -> Self {
        Self::Abort(e)
    }
}

impl Flow {
    fn into_error(self) -> Error {
        match self {
            Self::Soft(e) | Self::Condition(e) | Self::Abort(e) => e,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Selection<'a> {
    One(usize),
    All,
    List(IndexList<'a>),
}

/// Runs the sections of a verified manifest against a platform.
#[derive(Debug)]
pub struct Processor<'a, 'p, P: Platform> {
    manifest: VerifiedManifest<'a>,
    platform: &'p mut P,
    params: [Parameters<'a>; MAX_COMPONENTS],
    index: Selection<'a>,
    section: Option<Section>,
    indices: usize,
    deps: DependencyState<'a>,
}

impl<'a, 'p, P: Platform> Processor<'a, 'p, P> {
    /// Prepares to process `manifest`: the setup checks of manifest §6.1 and §6.2.
    ///
    /// # Errors
    /// [`Error::SequenceRollback`] if the manifest is not newer than the installed one,
    /// [`Error::UnsupportedCritical`] for a component the device does not have.
    pub fn new(
        manifest: &VerifiedManifest<'a>,
        platform: &'p mut P,
        policy: ProcessorPolicy,
    ) -> Result<Self, Error> {
        let m = manifest.manifest();
        // Manifest §8.4.3: "Each Recipient MUST reject any manifest that has a sequence number
        // lower than its current sequence number". Equal is refused too unless the caller is
        // re-validating the installed manifest: re-installing the same manifest would let an
        // attacker replay it after a newer one with the same number was rejected.
        if let Some(installed) = policy.installed_sequence {
            let offered = m.sequence_number;
            if offered < installed || (offered == installed && !policy.allow_same_sequence) {
                return Err(Error::SequenceRollback { installed, offered });
            }
        }
        Self::with_state(*manifest, platform, DependencyState::default())
    }

    /// The setup of manifest §6.1 and §6.2 without the sequence check: for the root manifest
    /// after it, and for a dependency, which its dependent's digest pins.
    fn with_state(
        manifest: VerifiedManifest<'a>,
        platform: &'p mut P,
        deps: DependencyState<'a>,
    ) -> Result<Self, Error> {
        let m = manifest.manifest();
        let indices = m.index_count();
        // Manifest §6.2: "check that the number of components listed in the manifest is not
        // larger than the number in the target system" — and that each one exists.
        for (index, id) in m.components.iter().enumerate() {
            if platform.capacity(&Component { index, id }).is_none() {
                return Err(Error::UnsupportedCritical {
                    what: Unsupported::Component,
                    id: i64::try_from(index).unwrap_or(i64::MAX),
                });
            }
        }
        // Manifest §6.1: "the manifest processor clears all parameter storage".
        Ok(Self {
            manifest,
            platform,
            params: [Parameters::default(); MAX_COMPONENTS],
            index: Selection::One(0),
            section: None,
            indices,
            deps,
        })
    }

    /// Lets the processor run dependencies (draft-ietf-suit-trust-domains): each dependency
    /// is authenticated against `anchors` under `policy`, with its own signers and their
    /// permissions, before any of its commands runs (trust-domains §5.1, §5.4). Without this,
    /// dependency-integrity and process-dependency are refused as unsupported (trust-domains
    /// §5.1: a processor that does not support dependencies must abort).
    #[must_use]
    pub fn with_dependency_trust(
        mut self,
        anchors: &'a [TrustAnchor<'a>],
        policy: TrustPolicy<'a>,
    ) -> Self {
        self.deps.trust = Some(Trust { anchors, policy });
        self
    }

    /// A rule of the caller's for every dependency, at any depth: a dependency whose
    /// authenticated manifest `refuse` holds true for is refused before any of its commands
    /// runs ([`DependencyCause::Refused`], reason `signature`). A device applies to a
    /// dependency what it applies to a release, e.g. `suitcase_trust::names_trust_store`:
    /// a dependency is authenticated with its own signers (trust-domains §5.1), so the
    /// checks a release gets beyond its signature must be made here too.
    pub fn with_dependency_rule(mut self, refuse: fn(&VerifiedManifest<'_>) -> bool) -> Self {
        self.deps.refuse = Some(refuse);
        self
    }

    /// Memory for dependencies read from component storage (fetched by URI, or installed
    /// earlier): each is read once into it and used from there, so that what was checked is
    /// what runs (RFC 9124 REQ.SEC.MFST.CONST). Integrated dependencies (`#name` envelope
    /// members, trust-domains §8.1.1) need none: they are used in place. A dependency larger
    /// than what is left of the buffer is refused.
    #[must_use]
    pub fn with_dependency_buffer(mut self, buffer: &'a mut [u8]) -> Self {
        self.deps.buffer = buffer;
        self
    }

    /// Why a dependency was refused, if one was: which, at what depth, and the clause.
    pub fn dependency_failure(&self) -> Option<DependencyFailure> {
        self.deps.failure
    }

    /// The parameters currently set for a component.
    pub fn parameters(&self, index: usize) -> Option<&Parameters<'a>> {
        self.params.get(index)
    }

    /// Runs the update procedure: dependency-resolution, payload-fetch, candidate-verification,
    /// install and validate, each after the shared sequence (manifest §6.7).
    ///
    /// # Errors
    /// The first failure.
    pub fn update(&mut self) -> Result<(), Error> {
        for section in Section::UPDATE {
            self.run(section)?;
        }
        Ok(())
    }

    /// Runs the invocation procedure: validate, load, invoke.
    ///
    /// # Errors
    /// The first failure.
    pub fn invoke(&mut self) -> Result<(), Error> {
        for section in Section::INVOCATION {
            self.run(section)?;
        }
        Ok(())
    }

    /// Runs one section after the shared sequence. Returns `false` if the manifest has no such
    /// section.
    ///
    /// # Errors
    /// [`Error::SectionMissing`] if the section was severed and is not in the envelope, or the
    /// failure that aborted the section.
    pub fn run(&mut self, section: Section) -> Result<bool, Error> {
        // Trust-domains §5.1: a processor that does not support dependencies aborts on a
        // manifest that has them. Without dependency trust this one does not: it refuses the
        // manifest before any command, so an index listed in suit-dependencies is never
        // half-handled as a dependency (a fetch left in the envelope, an image-match hashing
        // a manifest) by a caller that reads the result as a component's.
        if self.deps.trust.is_none()
            && self
                .manifest
                .manifest()
                .dependencies
                .iter()
                .next()
                .is_some()
        {
            return Err(Error::UnsupportedCritical {
                what: Unsupported::CommonMember,
                id: DEPENDENCIES_KEY,
            });
        }
        let seq = match self.manifest.section(section) {
            // A section the dependent does not have has no end at which trust-domains §5.1
            // could check its dependencies' (the draft's encryption-with-dependency example
            // has a root without the validate section its dependency has). The procedure
            // has reached it all the same: a dependency processed later must have had this
            // section processed already (see `process_dependency`).
            SectionState::Absent => {
                self.deps.ran |= section.bit();
                return Ok(false);
            }
            SectionState::Severed => return Err(Error::SectionMissing { key: section.key() }),
            SectionState::Present(seq) => seq,
        };
        self.section = None;
        if let Some(shared) = self.manifest.manifest().shared_sequence {
            self.index = Selection::One(0);
            self.exec(&shared, false, 0).map_err(Flow::into_error)?;
        }
        self.section = Some(section);
        self.index = Selection::One(0);
        self.exec(&seq, false, 0).map_err(Flow::into_error)?;
        self.dependencies_ran(section)?;
        Ok(true)
    }

    /// Trust-domains §5.1: "At the end of each section in the dependent: The corresponding
    /// section in each Dependency has been executed, if present." Known for every dependency
    /// this processor has processed (their sections are known once they are authenticated),
    /// at the end of each section the dependent has.
    ///
    /// Enforced for the update procedure's sections, where a skipped section of a dependency
    /// leaves its components fetched but not installed or not checked. Load and invoke are
    /// the dependent's to decide, within its own signers' INVOKE permissions (manifest §9):
    /// the draft's own examples invoke without processing their dependency's invoke section.
    fn dependencies_ran(&mut self, section: Section) -> Result<(), Error> {
        self.deps.ran |= section.bit();
        let bit = section.bit() & ENFORCED_SECTIONS;
        let skipped = self
            .deps
            .slots
            .iter()
            .position(|s| s.present & bit != 0 && s.done & bit == 0);
        match skipped {
            Some(index) => Err(self.dependency_refused(
                index,
                DependencyCause::SectionSkipped(section.key()),
                SECTION_SKIPPED,
            )),
            None => Ok(()),
        }
    }

    /// Records why a dependency was refused and returns `error`.
    fn dependency_refused(&mut self, index: usize, cause: DependencyCause, error: Error) -> Error {
        self.deps.failure.get_or_insert(DependencyFailure {
            index,
            depth: self.deps.depth,
            cause,
        });
        error
    }

    fn is_dependency(&self, index: usize) -> bool {
        self.manifest
            .manifest()
            .dependencies
            .get(index as u64)
            .is_some()
    }

    fn dependency_trust(&self, command: i64) -> Result<Trust<'a>, Error> {
        self.deps.trust.ok_or(Error::UnsupportedCritical {
            what: Unsupported::Command,
            id: command,
        })
    }

    /// The envelope of the dependency at `index`: as loaded, or read now from the
    /// component's storage into the dependency buffer (at most `max` bytes).
    fn dependency_bytes(
        &mut self,
        component: &Component<'a>,
        max: Option<u64>,
    ) -> Result<&'a [u8], Error> {
        let index = component.index;
        if let Some(bytes) = self.deps.slots.get(index).and_then(|s| s.bytes) {
            return Ok(bytes);
        }
        let buffer = core::mem::take(&mut self.deps.buffer);
        let room = buffer.len();
        let limit = max.map_or(room, |m| usize::try_from(m).unwrap_or(usize::MAX).min(room));
        let mut n = 0usize;
        let mut failed = None;
        while n < limit {
            let dst = buffer.get_mut(n..limit).unwrap_or_default();
            match self.platform.read(component, n as u64, dst) {
                Ok(0) => break,
                Ok(got) => n += got.min(limit - n),
                Err(_) => {
                    failed = Some(Error::Platform {
                        op: Operation::Storage,
                        component: index,
                    });
                    break;
                }
            }
        }
        if failed.is_none() && n == limit {
            // Full: anything more does not fit the declared size or the buffer.
            let mut probe = [0u8; 1];
            if self
                .platform
                .read(component, n as u64, &mut probe)
                .is_ok_and(|more| more > 0)
            {
                failed = Some(self.dependency_refused(
                    index,
                    DependencyCause::TooLarge,
                    Error::TooLarge {
                        component: index,
                        size: n as u64 + 1,
                        capacity: limit as u64,
                    },
                ));
            }
        }
        if let Some(e) = failed {
            self.deps.buffer = buffer;
            return Err(e);
        }
        let Some((head, tail)) = buffer.split_at_mut_checked(n) else {
            return Err(Error::ComponentIndex {
                index: index as u64,
            });
        };
        self.deps.buffer = tail;
        let head: &'a [u8] = head;
        if let Some(slot) = self.deps.slot(index) {
            slot.bytes = Some(head);
            slot.checked = false;
        }
        Ok(head)
    }

    /// Condition-dependency-integrity (trust-domains §5.6.4): the dependency's signature,
    /// its digest against the dependent's image-digest, the dependency against its digest.
    /// Any failure aborts ("the Manifest Processor MUST immediately Abort").
    fn dependency_integrity(&mut self, index: usize) -> Result<(), Error> {
        use crate::codepoints::param;
        if !self.is_dependency(index) {
            return Err(self.dependency_refused(index, DependencyCause::NotListed, NOT_LISTED));
        }
        let trust = self.dependency_trust(crate::codepoints::command::DEPENDENCY_INTEGRITY)?;
        let component = self.component(index)?;
        let p = *self.params(index)?;
        let digest = p
            .image_digest
            .ok_or_else(|| Self::missing(param::IMAGE_DIGEST, index))?;
        let bytes = self.dependency_bytes(&component, p.image_size)?;
        let envelope = Envelope::decode(bytes)?;
        // Step 2 first: a digest comparison costs less than a signature, so an envelope the
        // dependent does not name is refused before any signature work.
        if !digest.matches(envelope.manifest_wrapped()) {
            return Err(self.dependency_refused(
                index,
                DependencyCause::DigestMismatch,
                Error::ConditionFailed {
                    condition: Condition::DependencyIntegrity,
                    component: index,
                },
            ));
        }
        // Steps 1 and 3: the wrapper's digest against the manifest, and the signatures.
        self.authenticate_dependency(index, envelope, trust)?;
        if let Some(slot) = self.deps.slot(index) {
            slot.checked = true;
        }
        Ok(())
    }

    fn authenticate_dependency(
        &mut self,
        index: usize,
        envelope: Envelope<'a>,
        trust: Trust<'a>,
    ) -> Result<VerifiedManifest<'a>, Error> {
        envelope
            .verify(trust.anchors, &trust.policy)
            .map_err(|e| match e {
                Error::Unauthenticated(a) => {
                    self.dependency_refused(index, DependencyCause::Unauthenticated(a), e)
                }
                e => e,
            })
    }

    /// Image-match on a dependency: the digest of the bstr-wrapped manifest in its envelope
    /// (trust-domains §5.2.2). A match binds these bytes to the dependent's digest, which
    /// lets process-dependency run them (see [`crate::dependency`]).
    fn dependency_image_matches(
        &mut self,
        component: &Component<'a>,
        digest: &SuitDigest<'a>,
        size: Option<u64>,
    ) -> Result<bool, Error> {
        let bytes = self.dependency_bytes(component, size)?;
        let envelope = Envelope::decode(bytes)?;
        Ok(digest.matches(envelope.manifest_wrapped()))
    }

    /// Process-dependency (trust-domains §5.4, §5.6.2): authenticates the dependency, then
    /// runs its shared sequence and its section of the same name, with the dependent's
    /// parameters for components of the same identifier; the dependency's changes to them
    /// persist in the dependent (§5.4, §8.1).
    fn process_dependency(&mut self, index: usize) -> Result<(), Error> {
        // Validation refuses directives in the shared sequence ("The current section is
        // 'Common metadata'" must abort, §5.6.2).
        let Some(section) = self.section else {
            return Err(Error::Malformed {
                at: 0,
                what: "process-dependency in the shared sequence",
            });
        };
        if !self.is_dependency(index) {
            return Err(self.dependency_refused(index, DependencyCause::NotListed, NOT_LISTED));
        }
        let trust = self.dependency_trust(crate::codepoints::command::PROCESS_DEPENDENCY)?;
        let slot = self
            .deps
            .slots
            .get(index)
            .copied()
            .ok_or(Error::ComponentIndex {
                index: index as u64,
            })?;
        let (Some(bytes), true) = (slot.bytes, slot.checked) else {
            return Err(self.dependency_refused(
                index,
                DependencyCause::NotIntegrityChecked,
                NOT_CHECKED,
            ));
        };
        if self.deps.depth >= MAX_DEPENDENCY_DEPTH {
            return Err(self.dependency_refused(
                index,
                DependencyCause::DepthLimit,
                Error::NestingLimit {
                    limit: MAX_DEPENDENCY_DEPTH,
                },
            ));
        }
        let envelope = Envelope::decode(bytes)?;
        // Sections processed count for this very manifest only (a slot re-loaded with
        // another one starts afresh, trust-domains §5.1).
        let wrapped = envelope.manifest_wrapped();
        let done = if slot.processed_manifest == Some(wrapped) {
            slot.done
        } else {
            0
        };
        let verified = self.authenticate_dependency(index, envelope, trust)?;
        if self.deps.refuse.is_some_and(|refuse| refuse(&verified)) {
            return Err(self.dependency_refused(
                index,
                DependencyCause::Refused,
                Error::Unauthenticated(crate::AuthError::NotAuthorized),
            ));
        }
        let present = Section::ALL
            .iter()
            .filter(|s| !matches!(verified.section(**s), SectionState::Absent))
            .fold(0u8, |m, s| m | s.bit());
        // §5.1 ("the corresponding section in each Dependency has been executed, if
        // present"): a section of the dependency's update procedure that comes before this
        // one (manifest §6.7 order), or that the dependent's procedure has already reached
        // (run, or passed because the dependent lacks it), and that was not processed.
        // Otherwise a root without payload-fetch and candidate-verification could run its
        // dependency's install on a candidate nobody fetched or checked.
        let skipped = present
            & (self.deps.ran | update_sections_before(section))
            & !done
            & !section.bit()
            & ENFORCED_SECTIONS;
        if let Some(s) = Section::ALL.iter().find(|s| skipped & s.bit() != 0) {
            return Err(self.dependency_refused(
                index,
                DependencyCause::SectionSkipped(s.key()),
                SECTION_SKIPPED,
            ));
        }
        // The dependent's parameters for the dependency's components, by identifier. Only
        // components proper: a dependency slot on either side is never mapped (§5.4 shares
        // the components both name; a dependent's slot is pinned by its own digest, §5.6.4,
        // and an empty or equal prefix must not let a dependency re-point it).
        let theirs = verified.manifest();
        let mine = self.manifest.manifest();
        let shared = |j: usize| -> Option<usize> {
            if theirs.dependencies.get(j as u64).is_some() {
                return None;
            }
            let id = theirs.component_id(j)?;
            (0..self.indices).find(|k| {
                mine.dependencies.get(*k as u64).is_none() && mine.component_id(*k) == Some(id)
            })
        };
        let mut params = [Parameters::default(); MAX_COMPONENTS];
        let mut mapping = [None; MAX_COMPONENTS];
        for (j, (p, m)) in params
            .iter_mut()
            .zip(mapping.iter_mut())
            .enumerate()
            .take(theirs.index_count())
        {
            *m = shared(j);
            if let Some(v) = m.and_then(|k| self.params.get(k)) {
                *p = *v;
            }
        }
        let state = DependencyState {
            trust: Some(trust),
            refuse: self.deps.refuse,
            buffer: core::mem::take(&mut self.deps.buffer),
            depth: self.deps.depth + 1,
            ..DependencyState::default()
        };
        let mut child = Processor::with_state(verified, &mut *self.platform, state)?;
        child.params = params;
        let result = child.run(section);
        // Trust-domains §5.4: "Any changes made to Parameters by the Dependency persist in
        // the dependent", for the same components, and only from a dependency that
        // completed (an aborted one leaves the dependent's parameters as they were).
        if result.is_ok() {
            for (j, k) in mapping.iter().enumerate().take(child.indices) {
                if let (Some(k), Some(v)) = (k, child.params.get(j))
                    && let Some(p) = self.params.get_mut(*k)
                {
                    *p = *v;
                }
            }
        }
        self.deps.buffer = core::mem::take(&mut child.deps.buffer);
        if let Some(inner) = child.deps.failure {
            self.deps.failure.get_or_insert(inner);
        }
        // §5.6.2: "an Abort in a Dependency causes an Abort in the
        // suit-directive-process-dependency of the Dependent."
        result?;
        if let Some(s) = self.deps.slot(index) {
            s.present = present;
            s.done = done | section.bit();
            s.processed_manifest = Some(wrapped);
        }
        Ok(())
    }

    fn component(&self, index: usize) -> Result<Component<'a>, Error> {
        let id = self
            .manifest
            .manifest()
            .component_id(index)
            .ok_or(Error::ComponentIndex {
                index: index as u64,
            })?;
        Ok(Component { index, id })
    }

    fn selected(&self) -> impl Iterator<Item = usize> + use<'a, 'p, P> {
        let (one, all, list) = match self.index {
            Selection::One(i) => (Some(i), 0, None),
            Selection::All => (None, self.indices, None),
            Selection::List(l) => (None, 0, Some(l)),
        };
        one.into_iter().chain(0..all).chain(
            list.into_iter()
                .flat_map(|l| l.iter().map(|i| usize::try_from(i).unwrap_or(usize::MAX))),
        )
    }

    fn exec(
        &mut self,
        seq: &CommandSequence<'a>,
        soft_default: bool,
        depth: usize,
    ) -> Result<(), Flow> {
        if depth > MAX_NESTING {
            return Err(Flow::Abort(Error::NestingLimit { limit: MAX_NESTING }));
        }
        // Manifest §8.4.8.13: soft-failure is scoped to the enclosing sequence and starts at the
        // value try-each (true) or run-sequence (false) gives it.
        let mut soft = soft_default;
        for (offset, command) in seq.iter() {
            match self.command(offset, command, &mut soft, depth) {
                Ok(()) => {}
                Err(Flow::Condition(e)) if soft => return Err(Flow::Soft(e)),
                Err(flow) => return Err(flow),
            }
        }
        Ok(())
    }

    fn command(
        &mut self,
        offset: usize,
        command: Command<'a>,
        soft: &mut bool,
        depth: usize,
    ) -> Result<(), Flow> {
        match command {
            Command::SetComponentIndex(arg) => {
                self.index = match arg {
                    IndexArg::One(i) => Selection::One(usize::try_from(i).unwrap_or(usize::MAX)),
                    IndexArg::All => Selection::All,
                    IndexArg::List(l) => Selection::List(l),
                };
                Ok(())
            }
            Command::OverrideParameters(map) => self.set_params(map, Apply::Override, soft),
            Command::SetParameters(map) => self.set_params(map, Apply::SetIfUnset, soft),
            Command::OverrideMultiple(mp) => {
                // Update-management §5.7: set-component-index + override-parameters per entry;
                // the index ends at the last entry.
                for (index, map) in mp.iter() {
                    self.index = Selection::One(usize::try_from(index).unwrap_or(usize::MAX));
                    self.set_params(map, Apply::Override, soft)?;
                }
                Ok(())
            }
            Command::CopyParams(cp) => {
                for current in self.selected().collect_array() {
                    for (src, key) in cp.iter() {
                        let src = usize::try_from(src).unwrap_or(usize::MAX);
                        let from = *self
                            .params
                            .get(src)
                            .ok_or(Error::ComponentIndex { index: src as u64 })?;
                        if let Some(p) = self.params.get_mut(current) {
                            p.copy_from(&from, key);
                        }
                    }
                }
                Ok(())
            }
            Command::TryEach(t) => {
                for current in self.selected().collect_array() {
                    let saved = self.index;
                    self.index = Selection::One(current);
                    let mut last = None;
                    let mut passed = false;
                    for branch in t.branches() {
                        match self.exec(&branch, true, depth + 1) {
                            Ok(()) => {
                                passed = true;
                                break;
                            }
                            // Manifest §8.4.10.3: "If one sequence aborts due to a condition
                            // failure, the next is started".
                            Err(Flow::Soft(e)) => last = Some(e),
                            Err(Flow::Condition(e)) => return Err(Flow::Condition(e)),
                            Err(Flow::Abort(e)) => return Err(Flow::Abort(e)),
                        }
                    }
                    self.index = saved;
                    // "If no sequence completes without condition failure, then
                    // suit-directive-try-each returns an error" — unless a nil branch allows it.
                    if !passed && !t.allow_all_fail {
                        let e = last.unwrap_or(Error::ConditionFailed {
                            condition: Condition::Abort,
                            component: current,
                        });
                        self.note(offset, command, current, false);
                        return Err(Flow::Condition(e));
                    }
                }
                Ok(())
            }
            Command::RunSequence(seq) => {
                for current in self.selected().collect_array() {
                    let saved = self.index;
                    self.index = Selection::One(current);
                    let result = self.exec(&seq, false, depth + 1);
                    self.index = saved;
                    match result {
                        // Manifest §8.4.8.13: with soft-failure true "the run-sequence simply
                        // halts with no side-effects and the Manifest Processor continues".
                        Ok(()) | Err(Flow::Soft(_)) => {}
                        Err(flow) => return Err(flow),
                    }
                }
                Ok(())
            }
            Command::Condition(condition, _) => {
                for current in self.selected().collect_array() {
                    let ok = self.condition(condition, current)?;
                    self.note(offset, command, current, ok);
                    if !ok {
                        return Err(Flow::Condition(Error::ConditionFailed {
                            condition,
                            component: current,
                        }));
                    }
                }
                Ok(())
            }
            Command::Directive(directive, _) => {
                for current in self.selected().collect_array() {
                    let result = self.directive(directive, current);
                    self.note(offset, command, current, result.is_ok());
                    result?;
                }
                Ok(())
            }
            Command::Custom(id, arg) => {
                for current in self.selected().collect_array() {
                    let c = self.component(current)?;
                    let outcome = self.platform.custom(&c, id, arg);
                    self.note(offset, command, current, matches!(outcome, Ok(true)));
                    match outcome {
                        Ok(true) => {}
                        Ok(false) => {
                            return Err(Flow::Condition(Error::ConditionFailed {
                                condition: Condition::Custom(id),
                                component: current,
                            }));
                        }
                        Err(PlatformError::Unsupported) => {
                            return Err(Flow::Abort(Error::UnsupportedCritical {
                                what: Unsupported::Command,
                                id,
                            }));
                        }
                        Err(PlatformError::Failed) => {
                            return Err(Flow::Abort(Error::Platform {
                                op: Operation::Storage,
                                component: current,
                            }));
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn note(&mut self, offset: usize, command: Command<'a>, component: usize, success: bool) {
        let record = Record {
            section: self.section,
            offset,
            command,
            component,
            success,
            depth: self.deps.depth,
            id: self.manifest.manifest().component_id(component),
        };
        self.platform.record(&record);
    }

    fn set_params(
        &mut self,
        map: ParameterMap<'a>,
        mode: Apply,
        soft: &mut bool,
    ) -> Result<(), Flow> {
        let deps = self.manifest.manifest().dependencies;
        let is_dependency = |i: usize| deps.get(i as u64).is_some();
        for current in self.selected().collect_array() {
            let component = self.component(current)?;
            for p in map.iter() {
                match p {
                    Parameter::SoftFailure(v) => *soft = v,
                    // A dependency's size bounds the envelope read into the dependency buffer,
                    // checked when it is loaded; it need not be a component of the device.
                    Parameter::ImageSize(_) if is_dependency(current) => {}
                    Parameter::ImageSize(size) => {
                        // Refuse a declared size the component cannot hold before anything is
                        // fetched or written (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION).
                        let capacity = self.platform.capacity(&component).unwrap_or(0);
                        if size > capacity {
                            return Err(Flow::Abort(Error::TooLarge {
                                component: current,
                                size,
                                capacity,
                            }));
                        }
                    }
                    _ => {}
                }
                let params = self.params.get_mut(current).ok_or(Error::ComponentIndex {
                    index: current as u64,
                })?;
                params.apply(p, mode);
            }
        }
        Ok(())
    }

    fn params(&self, index: usize) -> Result<&Parameters<'a>, Error> {
        self.params.get(index).ok_or(Error::ComponentIndex {
            index: index as u64,
        })
    }

    fn missing(parameter: i64, component: usize) -> Error {
        Error::MissingParameter {
            parameter,
            component,
        }
    }

    fn condition(&mut self, condition: Condition, index: usize) -> Result<bool, Flow> {
        use crate::codepoints::param;
        let component = self.component(index)?;
        let p = *self.params(index)?;
        let platform_err = |op| {
            move |_| {
                Flow::Abort(Error::Platform {
                    op,
                    component: index,
                })
            }
        };
        Ok(match condition {
            // Manifest §8.4.9.1: "The Recipient uses the ID parameter that has already been set
            // ... If no ID has been set, this condition fails."
            Condition::VendorIdentifier => {
                let want = p
                    .vendor_identifier
                    .ok_or_else(|| Self::missing(param::VENDOR_IDENTIFIER, index))?;
                self.platform.identity(&component, IdentityKind::Vendor) == Some(want)
            }
            Condition::ClassIdentifier => {
                let want = p
                    .class_identifier
                    .ok_or_else(|| Self::missing(param::CLASS_IDENTIFIER, index))?;
                self.platform.identity(&component, IdentityKind::Class)
                    == Some(Identifier::Uuid(want))
            }
            Condition::DeviceIdentifier => {
                let want = p
                    .device_identifier
                    .ok_or_else(|| Self::missing(param::DEVICE_IDENTIFIER, index))?;
                self.platform.identity(&component, IdentityKind::Device)
                    == Some(Identifier::Uuid(want))
            }
            // Manifest §8.4.9.2: "If no digest is specified, the condition fails."
            Condition::ImageMatch | Condition::ImageNotMatch => {
                let digest = p
                    .image_digest
                    .ok_or_else(|| Self::missing(param::IMAGE_DIGEST, index))?;
                if self.is_dependency(index) {
                    let matched =
                        self.dependency_image_matches(&component, &digest, p.image_size)?;
                    if matched
                        && condition == Condition::ImageMatch
                        && let Some(slot) = self.deps.slot(index)
                    {
                        slot.checked = true;
                    }
                    return Ok(matched == (condition == Condition::ImageMatch));
                }
                let matched = self.image_matches(&component, &digest, p.image_size)?;
                matched == (condition == Condition::ImageMatch)
            }
            Condition::CheckContent => {
                let content = p
                    .content
                    .ok_or_else(|| Self::missing(param::CONTENT, index))?;
                self.content_matches(&component, content)?
            }
            Condition::ComponentSlot => {
                let want = p
                    .component_slot
                    .ok_or_else(|| Self::missing(param::COMPONENT_SLOT, index))?;
                self.platform.slot(&component) == Some(want)
            }
            Condition::Abort => false,
            Condition::UseBefore => {
                let deadline = p
                    .use_before
                    .ok_or_else(|| Self::missing(param::USE_BEFORE, index))?;
                let now = self.platform.now().ok_or(Flow::Abort(Error::Platform {
                    op: Operation::Query,
                    component: index,
                }))?;
                now < deadline
            }
            Condition::MinimumBattery => {
                let need = p
                    .minimum_battery
                    .ok_or_else(|| Self::missing(param::MINIMUM_BATTERY, index))?;
                let have = self
                    .platform
                    .battery_mwh()
                    .ok_or(Flow::Abort(Error::Platform {
                        op: Operation::Query,
                        component: index,
                    }))?;
                have >= need
            }
            Condition::UpdateAuthorized => self
                .platform
                .authorize(p.update_priority)
                .map_err(platform_err(Operation::Query))?,
            Condition::Version => {
                let want = p
                    .version
                    .ok_or_else(|| Self::missing(param::VERSION, index))?;
                let have =
                    self.platform
                        .version(&component)
                        .ok_or(Flow::Abort(Error::Platform {
                            op: Operation::Query,
                            component: index,
                        }))?;
                want.matches(have)
            }
            Condition::IsDependency => self
                .manifest
                .manifest()
                .dependencies
                .get(index as u64)
                .is_some(),
            Condition::DependencyIntegrity => {
                self.dependency_integrity(index).map_err(Flow::Abort)?;
                true
            }
            Condition::Custom(_) => {
                return Err(Flow::Abort(Error::UnsupportedCritical {
                    what: Unsupported::Command,
                    id: condition.id(),
                }));
            }
        })
    }

    fn directive(&mut self, directive: Directive, index: usize) -> Result<(), Error> {
        use crate::codepoints::param;
        let component = self.component(index)?;
        let p = *self.params(index)?;
        let fail = |op| {
            move |_| Error::Platform {
                op,
                component: index,
            }
        };
        // Manifest §9 (access control lists, third model): a signer's rights are per component
        // and per command. Writing a component needs INSTALL, running it needs INVOKE.
        let needs = match directive {
            Directive::Write | Directive::Fetch | Directive::Copy | Directive::Swap => {
                Some(crate::Actions::INSTALL)
            }
            Directive::Invoke => Some(crate::Actions::INVOKE),
            _ => None,
        };
        if let Some(action) = needs
            && !self.manifest.authorizes(index, action)
        {
            return Err(Error::Unauthenticated(crate::AuthError::NotAuthorized));
        }
        // Trust-domains §5.6.4: a fetch or copy to a dependency's component forgets what was
        // loaded and checked of it (a write or swap too: new content either way).
        if needs == Some(crate::Actions::INSTALL) {
            self.deps.forget(index);
            if directive == Directive::Swap
                && let Some(src) = p.source_component
            {
                self.deps.forget(usize::try_from(src).unwrap_or(usize::MAX));
            }
        }
        match directive {
            Directive::Write => {
                let content = p
                    .content
                    .ok_or_else(|| Self::missing(param::CONTENT, index))?;
                if let Some(info) = p.encryption_info {
                    return self.decrypt_into(&component, info, Source::Bytes(content));
                }
                self.check_capacity(&component, content.len() as u64)?;
                self.platform
                    .write_begin(&component, Some(content.len() as u64))
                    .map_err(fail(Operation::Storage))?;
                self.platform
                    .write(&component, 0, content)
                    .map_err(fail(Operation::Storage))?;
                self.platform
                    .write_end(&component)
                    .map_err(fail(Operation::Storage))
            }
            Directive::Fetch => {
                let uri = p.uri.ok_or_else(|| Self::missing(param::URI, index))?;
                let capacity = self.platform.capacity(&component).unwrap_or(0);
                // A fragment-only URI names an integrated payload in the envelope (manifest
                // §7.6); it is taken from the authenticated envelope, never from the network.
                let dependency = self.is_dependency(index);
                if uri.starts_with('#')
                    && let Some(bytes) = self.manifest.envelope().integrated(uri)
                {
                    // An integrated dependency (trust-domains §8.1.1) is used where it is, in
                    // the authenticated envelope's memory.
                    if dependency {
                        if p.image_size.is_some_and(|max| bytes.len() as u64 > max) {
                            return Err(self.dependency_refused(
                                index,
                                DependencyCause::TooLarge,
                                Error::TooLarge {
                                    component: index,
                                    size: bytes.len() as u64,
                                    capacity: p.image_size.unwrap_or(0),
                                },
                            ));
                        }
                        if let Some(slot) = self.deps.slot(index) {
                            slot.bytes = Some(bytes);
                            slot.checked = false;
                        }
                        return Ok(());
                    }
                    {
                        self.check_capacity(&component, bytes.len() as u64)?;
                        self.platform
                            .write_begin(&component, Some(bytes.len() as u64))
                            .map_err(fail(Operation::Storage))?;
                        self.platform
                            .write(&component, 0, bytes)
                            .map_err(fail(Operation::Storage))?;
                        return self
                            .platform
                            .write_end(&component)
                            .map_err(fail(Operation::Storage));
                    }
                }
                let request = FetchRequest {
                    uri,
                    arguments: p.fetch_arguments,
                    max_size: Some(p.image_size.map_or(capacity, |s| s.min(capacity))),
                    digest: p.image_digest,
                };
                self.platform
                    .fetch(&component, &request)
                    .map_err(fail(Operation::Fetch))?;
                // A dependency fetched by URI is read once into the dependency buffer; what
                // is checked and processed later is that copy.
                if dependency {
                    self.dependency_bytes(&component, p.image_size)?;
                }
                Ok(())
            }
            Directive::Copy | Directive::Swap => {
                // Manifest §8.4.10.7: "If either the source component parameter or the source
                // component itself is absent, this command fails."
                let src = p
                    .source_component
                    .ok_or_else(|| Self::missing(param::SOURCE_COMPONENT, index))?;
                let (src, source) = self.other_component(src, index, "copy or swap with itself")?;
                if directive == Directive::Swap
                    && !self.manifest.authorizes(src, crate::Actions::INSTALL)
                {
                    return Err(Error::Unauthenticated(crate::AuthError::NotAuthorized));
                }
                if directive == Directive::Swap {
                    return self
                        .platform
                        .swap(&component, &source)
                        .map_err(fail(Operation::Storage));
                }
                if let Some(base) = p.delta_base {
                    if p.encryption_info.is_some() {
                        // One transformation per copy: decrypt into a staging component
                        // first, then apply the patch from there.
                        return Err(Error::Malformed {
                            at: 0,
                            what: "copy with both encryption-info and delta-base",
                        });
                    }
                    return self.patch_into(&component, &source, base);
                }
                if let Some(info) = p.encryption_info {
                    return self.decrypt_into(&component, info, Source::Component(source));
                }
                self.copy(&source, &component)
            }
            Directive::Invoke => self
                .platform
                .invoke(&component, p.invoke_args)
                .map_err(fail(Operation::Invoke)),
            Directive::Wait => {
                let info = p
                    .wait_info
                    .ok_or_else(|| Self::missing(param::WAIT_INFO, index))?;
                self.platform
                    .wait(&component, info)
                    .map_err(fail(Operation::Query))
            }
            Directive::ProcessDependency => self.process_dependency(index),
            Directive::Unlink | Directive::Custom(_) => Err(Error::UnsupportedCritical {
                what: Unsupported::Command,
                id: directive.id(),
            }),
        }
    }

    fn check_capacity(&self, component: &Component<'_>, size: u64) -> Result<(), Error> {
        let capacity = self.platform.capacity(component).unwrap_or(0);
        if size > capacity {
            return Err(Error::TooLarge {
                component: component.index,
                size,
                capacity,
            });
        }
        Ok(())
    }

    /// Hashes the component's content (the first `size` bytes if a size is declared) and
    /// compares in constant time.
    fn image_matches(
        &mut self,
        component: &Component<'a>,
        digest: &SuitDigest<'a>,
        size: Option<u64>,
    ) -> Result<bool, Error> {
        let mut hasher = Hasher::new(digest.algorithm);
        let mut buf = [0u8; CHUNK];
        let mut offset = 0u64;
        loop {
            let want = size.map_or(CHUNK, |s| {
                usize::try_from(s - offset).unwrap_or(CHUNK).min(CHUNK)
            });
            if want == 0 {
                break;
            }
            let chunk = buf.get_mut(..want).unwrap_or_default();
            let n = self
                .platform
                .read(component, offset, chunk)
                .map_err(|_| Error::Platform {
                    op: Operation::Storage,
                    component: component.index,
                })?;
            if n == 0 {
                // Shorter than the declared size: cannot match.
                if size.is_some() {
                    return Ok(false);
                }
                break;
            }
            hasher.update(chunk.get(..n.min(want)).unwrap_or_default());
            offset += n.min(want) as u64;
        }
        Ok(digest.matches_value(&hasher.finish()))
    }

    /// Manifest §8.4.9.3: check-content "MUST be constant time: no early exits".
    fn content_matches(
        &mut self,
        component: &Component<'a>,
        content: &[u8],
    ) -> Result<bool, Error> {
        let mut buf = [0u8; CHUNK];
        let mut equal = subtle::Choice::from(1);
        let mut offset = 0usize;
        loop {
            let n = self
                .platform
                .read(component, offset as u64, &mut buf)
                .map_err(|_| Error::Platform {
                    op: Operation::Storage,
                    component: component.index,
                })?;
            if n == 0 {
                break;
            }
            let got = buf.get(..n).unwrap_or_default();
            let want = content.get(offset..).unwrap_or_default();
            let cmp = want.len().min(n);
            equal &= got
                .get(..cmp)
                .unwrap_or_default()
                .ct_eq(want.get(..cmp).unwrap_or_default());
            equal &= subtle::Choice::from(u8::from(cmp == n));
            offset += n;
        }
        Ok(bool::from(equal) && offset == content.len())
    }

    fn copy(&mut self, from: &Component<'a>, to: &Component<'a>) -> Result<(), Error> {
        let storage = |c: &Component<'_>| Error::Platform {
            op: Operation::Storage,
            component: c.index,
        };
        let capacity = self.platform.capacity(to).unwrap_or(0);
        self.platform
            .write_begin(to, None)
            .map_err(|_| storage(to))?;
        let mut buf = [0u8; CHUNK];
        let mut offset = 0u64;
        loop {
            let n = self
                .platform
                .read(from, offset, &mut buf)
                .map_err(|_| storage(from))?;
            if n == 0 {
                break;
            }
            if offset + n as u64 > capacity {
                return Err(Error::TooLarge {
                    component: to.index,
                    size: offset + n as u64,
                    capacity,
                });
            }
            self.platform
                .write(to, offset, buf.get(..n).unwrap_or_default())
                .map_err(|_| storage(to))?;
            offset += n as u64;
        }
        self.platform.write_end(to).map_err(|_| storage(to))
    }

    /// suit-directive-copy with suitcase-parameter-delta-base: applies the `suitcase-delta`
    /// patch held by `patch` to the base component's image, writing `to`.
    #[cfg(feature = "delta")]
    fn patch_into(
        &mut self,
        to: &Component<'a>,
        patch: &Component<'a>,
        base: u64,
    ) -> Result<(), Error> {
        // Sequential patches read the base while writing the target: they must differ.
        let (_, base) =
            self.other_component(base, to.index, "delta-base is the component being written")?;
        let p = self.params(to.index)?;
        let want = crate::delta::Expected {
            digest: p.image_digest,
            size: p.image_size,
        };
        let capacity = self.platform.capacity(to).unwrap_or(0);
        crate::delta::apply(self.platform, patch, &base, to, want, capacity)
    }

    /// Without the `delta` feature the parameter is refused while parsing; unreachable.
    #[cfg(not(feature = "delta"))]
    fn patch_into(
        &mut self,
        _to: &Component<'a>,
        _patch: &Component<'a>,
        _base: u64,
    ) -> Result<(), Error> {
        Err(Error::UnsupportedCritical {
            what: Unsupported::Parameter,
            id: crate::codepoints::param::SUITCASE_DELTA_BASE,
        })
    }

    /// The component a parameter names (source-component, delta-base) for a command on
    /// component `index`: it must exist and be another component (`same` says why not).
    fn other_component(
        &self,
        raw: u64,
        index: usize,
        same: &'static str,
    ) -> Result<(usize, Component<'a>), Error> {
        let i = usize::try_from(raw).unwrap_or(usize::MAX);
        if i >= self.indices {
            return Err(Error::ComponentIndex { index: raw });
        }
        if i == index {
            return Err(Error::Malformed { at: 0, what: same });
        }
        Ok((i, self.component(i)?))
    }

    fn decrypt_into(
        &mut self,
        to: &Component<'a>,
        info: &'a [u8],
        source: Source<'a>,
    ) -> Result<(), Error> {
        crate::encryption::decrypt(self, to, info, source)
    }
}

/// suit-dependencies, the SUIT_Common member (trust-domains §5.2).
const DEPENDENCIES_KEY: i64 = 1;

/// Trust-domains §5.4 step 1, §5.6.2.
const NOT_LISTED: Error = Error::Malformed {
    at: 0,
    what: "process-dependency or dependency-integrity on a component that suit-dependencies \
           does not list (trust-domains §5.6.2)",
};

/// Trust-domains §5.6.2 (and the reading in `crate::dependency`).
const NOT_CHECKED: Error = Error::Malformed {
    at: 0,
    what: "process-dependency before dependency-integrity or image-match bound the dependency \
           to the dependent's digest (trust-domains §5.6.2)",
};

/// The sections whose skipping trust-domains §5.1 checks here: the update procedure's.
const ENFORCED_SECTIONS: u8 = Section::DependencyResolution.bit()
    | Section::PayloadFetch.bit()
    | Section::CandidateVerification.bit()
    | Section::Install.bit()
    | Section::Validate.bit();

/// The update procedure's sections before `section` (manifest §6.7 order), for a section
/// that only the update procedure has; none for validate (it opens the invocation procedure
/// too), load and invoke.
fn update_sections_before(section: Section) -> u8 {
    match section {
        Section::Validate | Section::Load | Section::Invoke => 0,
        s => Section::UPDATE
            .iter()
            .take_while(|u| **u != s)
            .fold(0, |m, u| m | u.bit()),
    }
}

/// Trust-domains §5.1.
const SECTION_SKIPPED: Error = Error::Malformed {
    at: 0,
    what: "a section of a dependency was not processed by the dependent's same section \
           (trust-domains §5.1)",
};

/// Where ciphertext comes from when decrypting.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source<'a> {
    /// suit-parameter-content (write).
    Bytes(&'a [u8]),
    /// Another component (copy).
    Component(Component<'a>),
}

impl<'a, P: Platform> Processor<'a, '_, P> {
    pub(crate) fn platform_mut(&mut self) -> &mut P {
        self.platform
    }
}

/// A small fixed-capacity list of component indices, so that commands can iterate the
/// selection while mutating the processor.
trait CollectArray {
    fn collect_array(self) -> IndexBuf;
}

impl<I: Iterator<Item = usize>> CollectArray for I {
    fn collect_array(self) -> IndexBuf {
        let mut buf = IndexBuf {
            items: [usize::MAX; MAX_COMPONENTS],
            len: 0,
        };
        for i in self.take(MAX_COMPONENTS) {
            if let Some(slot) = buf.items.get_mut(buf.len) {
                *slot = i;
                buf.len += 1;
            }
        }
        buf
    }
}

#[derive(Clone, Copy)]
struct IndexBuf {
    items: [usize; MAX_COMPONENTS],
    len: usize,
}

impl IntoIterator for IndexBuf {
    type Item = usize;
    type IntoIter = core::iter::Take<core::array::IntoIter<usize, MAX_COMPONENTS>>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().take(self.len)
    }
}

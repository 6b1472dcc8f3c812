//! The command-sequence processor (manifest §6): a sans-IO interpreter driven through the
//! [`Platform`] trait.
//!
//! The processor never touches storage, network or clocks itself. It asks the platform for
//! component bytes in bounded chunks, hashes and compares them itself (so every security
//! decision stays in this crate), and tells the platform what to fetch, write, copy, swap and
//! invoke.

use subtle::ConstantTimeEq;

use crate::command::{
    Command, CommandSequence, Condition, CustomArg, Directive, IndexArg, IndexList,
};
use crate::component::ComponentId;
use crate::digest::{Hasher, SuitDigest};
use crate::envelope::{SectionState, VerifiedManifest};
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
            manifest: *manifest,
            platform,
            params: [Parameters::default(); MAX_COMPONENTS],
            index: Selection::One(0),
            section: None,
            indices,
        })
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
        let seq = match self.manifest.section(section) {
            SectionState::Absent => return Ok(false),
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
        Ok(true)
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
        };
        self.platform.record(&record);
    }

    fn set_params(
        &mut self,
        map: ParameterMap<'a>,
        mode: Apply,
        soft: &mut bool,
    ) -> Result<(), Flow> {
        for current in self.selected().collect_array() {
            let component = self.component(current)?;
            for p in map.iter() {
                match p {
                    Parameter::SoftFailure(v) => *soft = v,
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
            Condition::DependencyIntegrity | Condition::Custom(_) => {
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
                if uri.starts_with('#')
                    && let Some(bytes) = self.manifest.envelope().integrated(uri)
                {
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
                    .map_err(fail(Operation::Fetch))
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
            Directive::ProcessDependency | Directive::Unlink | Directive::Custom(_) => {
                Err(Error::UnsupportedCritical {
                    what: Unsupported::Command,
                    id: directive.id(),
                })
            }
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

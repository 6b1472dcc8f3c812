//! SUIT_Command_Sequence (manifest §8.4.6): conditions and directives.

use crate::cbor::{Kind, Reader, decode_exact};
use crate::codepoints::command as cmd;
use crate::error::{Error, Unsupported};
use crate::params::ParameterMap;

/// A condition: a test without side effects (manifest §8.4.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[expect(
    missing_docs,
    reason = "each variant is the condition of the same name in codepoints::command"
)]
pub enum Condition {
    VendorIdentifier,
    ClassIdentifier,
    ImageMatch,
    UseBefore,
    ComponentSlot,
    CheckContent,
    DependencyIntegrity,
    IsDependency,
    Abort,
    DeviceIdentifier,
    ImageNotMatch,
    MinimumBattery,
    UpdateAuthorized,
    Version,
    /// A private-use condition (id ≤ -256); only a platform that declares it can evaluate it.
    Custom(i64),
}

impl Condition {
    /// The command id.
    pub fn id(self) -> i64 {
        match self {
            Self::VendorIdentifier => cmd::VENDOR_IDENTIFIER,
            Self::ClassIdentifier => cmd::CLASS_IDENTIFIER,
            Self::ImageMatch => cmd::IMAGE_MATCH,
            Self::UseBefore => cmd::USE_BEFORE,
            Self::ComponentSlot => cmd::COMPONENT_SLOT,
            Self::CheckContent => cmd::CHECK_CONTENT,
            Self::DependencyIntegrity => cmd::DEPENDENCY_INTEGRITY,
            Self::IsDependency => cmd::IS_DEPENDENCY,
            Self::Abort => cmd::ABORT,
            Self::DeviceIdentifier => cmd::DEVICE_IDENTIFIER,
            Self::ImageNotMatch => cmd::IMAGE_NOT_MATCH,
            Self::MinimumBattery => cmd::MINIMUM_BATTERY,
            Self::UpdateAuthorized => cmd::UPDATE_AUTHORIZED,
            Self::Version => cmd::VERSION,
            Self::Custom(id) => id,
        }
    }

    /// The spec's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::VendorIdentifier => "vendor-identifier",
            Self::ClassIdentifier => "class-identifier",
            Self::ImageMatch => "image-match",
            Self::UseBefore => "use-before",
            Self::ComponentSlot => "component-slot",
            Self::CheckContent => "check-content",
            Self::DependencyIntegrity => "dependency-integrity",
            Self::IsDependency => "is-dependency",
            Self::Abort => "abort",
            Self::DeviceIdentifier => "device-identifier",
            Self::ImageNotMatch => "image-not-match",
            Self::MinimumBattery => "minimum-battery",
            Self::UpdateAuthorized => "update-authorized",
            Self::Version => "version",
            Self::Custom(_) => "custom",
        }
    }
}

/// A directive with a reporting policy as its argument (manifest §8.4.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[expect(
    missing_docs,
    reason = "each variant is the directive of the same name in codepoints::command"
)]
pub enum Directive {
    ProcessDependency,
    Write,
    Fetch,
    Copy,
    Invoke,
    Wait,
    Swap,
    Unlink,
    /// A private-use directive (id ≤ -256).
    Custom(i64),
}

impl Directive {
    /// The command id.
    pub fn id(self) -> i64 {
        match self {
            Self::ProcessDependency => cmd::PROCESS_DEPENDENCY,
            Self::Write => cmd::WRITE,
            Self::Fetch => cmd::FETCH,
            Self::Copy => cmd::COPY,
            Self::Invoke => cmd::INVOKE,
            Self::Wait => cmd::WAIT,
            Self::Swap => cmd::SWAP,
            Self::Unlink => cmd::UNLINK,
            Self::Custom(id) => id,
        }
    }

    /// The spec's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ProcessDependency => "process-dependency",
            Self::Write => "write",
            Self::Fetch => "fetch",
            Self::Copy => "copy",
            Self::Invoke => "invoke",
            Self::Wait => "wait",
            Self::Swap => "swap",
            Self::Unlink => "unlink",
            Self::Custom(_) => "custom",
        }
    }
}

/// SUIT_Rep_Policy: which records the reporting engine keeps (manifest §8.4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReportingPolicy(pub u64);

impl ReportingPolicy {
    /// send-record-on-success.
    pub fn record_on_success(self) -> bool {
        self.0 & 1 != 0
    }
    /// send-record-on-failure.
    pub fn record_on_failure(self) -> bool {
        self.0 & 2 != 0
    }
    /// send-sysinfo-success.
    pub fn sysinfo_on_success(self) -> bool {
        self.0 & 4 != 0
    }
    /// send-sysinfo-failure.
    pub fn sysinfo_on_failure(self) -> bool {
        self.0 & 8 != 0
    }
}

/// The argument of set-component-index (manifest §6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexArg<'a> {
    /// One component.
    One(u64),
    /// `true`: every component, in declaration order.
    All,
    /// A list of component indices (encoded `[+uint]`).
    List(IndexList<'a>),
}

/// A validated `[+uint]` list of component indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexList<'a> {
    raw: &'a [u8],
}

impl<'a> IndexList<'a> {
    /// The indices in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + use<'a> {
        let mut r = Reader::new(self.raw);
        let n = r.array().unwrap_or(0);
        (0..n).map_while(move |_| r.uint().ok())
    }
}

/// The argument of a custom command: `bstr / tstr / int / nil`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(missing_docs, reason = "variants are the CBOR types")]
pub enum CustomArg<'a> {
    Bytes(&'a [u8]),
    Text(&'a str),
    Int(i64),
    Nil,
}

/// One command, borrowed from its sequence.
#[derive(Clone, Copy, Debug)]
pub enum Command<'a> {
    /// A condition and its reporting policy.
    Condition(Condition, ReportingPolicy),
    /// A directive whose argument is a reporting policy.
    Directive(Directive, ReportingPolicy),
    /// set-component-index.
    SetComponentIndex(IndexArg<'a>),
    /// try-each: run branches until one succeeds.
    TryEach(TryEach<'a>),
    /// run-sequence.
    RunSequence(CommandSequence<'a>),
    /// override-parameters.
    OverrideParameters(ParameterMap<'a>),
    /// set-parameters (trust-domains): set where unset.
    SetParameters(ParameterMap<'a>),
    /// override-multiple (update-management): `{+ uint => {params}}`.
    OverrideMultiple(MultipleParameters<'a>),
    /// copy-params (update-management): `{+ uint(src) => [+ param-key]}`.
    CopyParams(CopyParams<'a>),
    /// A private-use command with its argument.
    Custom(i64, CustomArg<'a>),
}

impl Command<'_> {
    /// The command id.
    pub fn id(&self) -> i64 {
        match self {
            Self::Condition(c, _) => c.id(),
            Self::Directive(d, _) => d.id(),
            Self::SetComponentIndex(_) => cmd::SET_COMPONENT_INDEX,
            Self::TryEach(_) => cmd::TRY_EACH,
            Self::RunSequence(_) => cmd::RUN_SEQUENCE,
            Self::OverrideParameters(_) => cmd::OVERRIDE_PARAMETERS,
            Self::SetParameters(_) => cmd::SET_PARAMETERS,
            Self::OverrideMultiple(_) => cmd::OVERRIDE_MULTIPLE,
            Self::CopyParams(_) => cmd::COPY_PARAMS,
            Self::Custom(id, _) => *id,
        }
    }

    /// The spec's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Condition(c, _) => c.name(),
            Self::Directive(d, _) => d.name(),
            Self::SetComponentIndex(_) => "set-component-index",
            Self::TryEach(_) => "try-each",
            Self::RunSequence(_) => "run-sequence",
            Self::OverrideParameters(_) => "override-parameters",
            Self::SetParameters(_) => "set-parameters",
            Self::OverrideMultiple(_) => "override-multiple",
            Self::CopyParams(_) => "copy-params",
            Self::Custom(..) => "custom",
        }
    }
}

/// The branches of a try-each (`[2* bstr .cbor SUIT_Command_Sequence, ?nil]`).
#[derive(Clone, Copy, Debug)]
pub struct TryEach<'a> {
    raw: &'a [u8],
    /// A trailing `nil` branch: succeed even if every branch fails.
    pub allow_all_fail: bool,
}

impl<'a> TryEach<'a> {
    fn read(r: &mut Reader<'a>, nesting: Nesting) -> Result<Self, Error> {
        let start = r.position();
        let n = r.array()?;
        let mut sequences = 0u64;
        let mut allow_all_fail = false;
        for i in 0..n {
            if r.kind()? == Kind::Null {
                if i + 1 != n {
                    return Err(r.malformed("nil must be the last try-each branch"));
                }
                r.null()?;
                allow_all_fail = true;
            } else {
                nested(r.bstr()?, nesting)?;
                sequences += 1;
            }
        }
        // CDDL: [2* bstr .cbor SUIT_Command_Sequence, ?nil]. One branch plus nil is also
        // accepted: it is the only way to write "try this, never mind if it fails".
        if sequences == 0 || (sequences < 2 && !allow_all_fail) {
            return Err(r.malformed("try-each needs at least two branches"));
        }
        Ok(Self {
            raw: r.since(start),
            allow_all_fail,
        })
    }

    /// The branches that are command sequences, in order.
    pub fn branches(&self) -> impl Iterator<Item = CommandSequence<'a>> + use<'a> {
        let mut r = Reader::new(self.raw);
        let n = r.array().unwrap_or(0);
        // Validated when the try-each was parsed; a nil branch ends the list.
        (0..n).map_while(move |_| {
            Some(CommandSequence {
                raw: r.bstr().ok()?,
            })
        })
    }
}

/// override-multiple's argument.
#[derive(Clone, Copy, Debug)]
pub struct MultipleParameters<'a> {
    raw: &'a [u8],
}

impl<'a> MultipleParameters<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.position();
        let mut map = r.map()?;
        if map.len == 0 {
            return Err(r.malformed("override-multiple needs at least one component"));
        }
        while let Some((index, key_start)) = r.next_entry(&mut map) {
            r.uint()?;
            r.check_unique(&map, index, key_start)?;
            ParameterMap::read(r)?;
        }
        Ok(Self {
            raw: r.since(start),
        })
    }

    /// `(component index, parameters)` pairs in encoding order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, ParameterMap<'a>)> + use<'a> {
        let mut r = Reader::new(self.raw);
        let n = r.map().map(|m| m.len).unwrap_or(0);
        (0..n).map_while(move |_| Some((r.uint().ok()?, ParameterMap::read(&mut r).ok()?)))
    }
}

/// copy-params' argument.
#[derive(Clone, Copy, Debug)]
pub struct CopyParams<'a> {
    raw: &'a [u8],
}

impl<'a> CopyParams<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.position();
        let mut map = r.map()?;
        if map.len == 0 {
            return Err(r.malformed("copy-params needs at least one source"));
        }
        while let Some((index, key_start)) = r.next_entry(&mut map) {
            r.uint()?;
            r.check_unique(&map, index, key_start)?;
            let n = r.array()?;
            if n == 0 {
                return Err(r.malformed("copy-params needs at least one parameter key"));
            }
            for _ in 0..n {
                let key = r.int()?;
                if crate::params::parameter_name(key) == "custom" {
                    return Err(Error::UnsupportedCritical {
                        what: Unsupported::Parameter,
                        id: key,
                    });
                }
            }
        }
        Ok(Self {
            raw: r.since(start),
        })
    }

    /// `(source component index, parameter key)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u64, i64)> + use<'a> {
        let mut out_r = Reader::new(self.raw);
        let n = out_r.map().map(|m| m.len).unwrap_or(0);
        let mut src = 0u64;
        let mut left = 0u64;
        let mut entries = n;
        core::iter::from_fn(move || {
            loop {
                if left > 0 {
                    left -= 1;
                    return out_r.int().ok().map(|k| (src, k));
                }
                if entries == 0 {
                    return None;
                }
                entries -= 1;
                src = out_r.uint().ok()?;
                left = out_r.array().ok()?;
            }
        })
    }
}

/// A command sequence: the content of a bstr-wrapped `SUIT_Command_Sequence`.
#[derive(Clone, Copy, Debug)]
pub struct CommandSequence<'a> {
    raw: &'a [u8],
}

impl<'a> CommandSequence<'a> {
    /// Parses and validates every command of a sequence (not recursing into try-each and
    /// run-sequence arguments beyond their own structure; those are parsed as they are read).
    ///
    /// # Errors
    /// [`Error::Malformed`] for bad structure, [`Error::UnsupportedCritical`] for an unknown
    /// command or parameter.
    pub fn decode(raw: &'a [u8]) -> Result<Self, Error> {
        Self::decode_at(raw, 0)
    }

    /// Validates a sequence found `depth` try-each / run-sequence levels deep.
    pub(crate) fn decode_at(raw: &'a [u8], depth: usize) -> Result<Self, Error> {
        // Bounded here, while parsing, so that hostile nesting cannot exhaust the stack before
        // any later check runs.
        if depth > crate::MAX_NESTING {
            return Err(Error::NestingLimit {
                limit: crate::MAX_NESTING,
            });
        }
        decode_exact(raw, "trailing bytes after command sequence", |r| {
            let n = r.array()?;
            // SUIT_Command_Sequence = [ + ( condition // directive // custom ) ]: pairs, at least one.
            if n == 0 || n % 2 != 0 {
                return Err(
                    r.malformed("command sequence must hold one or more (id, argument) pairs")
                );
            }
            for _ in 0..n / 2 {
                read_command(r, Nesting::Validate(depth))?;
            }
            Ok(())
        })?;
        Ok(Self { raw })
    }

    /// The encoded sequence (without its bstr wrapper).
    pub fn as_cbor(&self) -> &'a [u8] {
        self.raw
    }

    /// The commands with their byte offsets in the sequence (SUIT_Report records use them).
    pub fn iter(&self) -> Commands<'a> {
        let mut r = Reader::new(self.raw);
        let remaining = r.array().unwrap_or(0) / 2;
        Commands { r, remaining }
    }
}

/// Iterator over a [`CommandSequence`]: `(offset, command)`.
#[derive(Debug)]
pub struct Commands<'a> {
    r: Reader<'a>,
    remaining: u64,
}

impl<'a> Iterator for Commands<'a> {
    type Item = (usize, Command<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let offset = self.r.position();
        read_command(&mut self.r, Nesting::Trusted)
            .ok()
            .map(|c| (offset, c))
    }
}

/// Whether nested sequences still need validating.
#[derive(Clone, Copy)]
enum Nesting {
    /// Parsing untrusted structure at this depth: validate nested sequences too.
    Validate(usize),
    /// Iterating a sequence that [`CommandSequence::decode`] already validated.
    Trusted,
}

fn nested<'a>(raw: &'a [u8], nesting: Nesting) -> Result<CommandSequence<'a>, Error> {
    match nesting {
        Nesting::Validate(depth) => CommandSequence::decode_at(raw, depth + 1),
        Nesting::Trusted => Ok(CommandSequence { raw }),
    }
}

fn read_command<'a>(r: &mut Reader<'a>, nesting: Nesting) -> Result<Command<'a>, Error> {
    let id = r.int()?;
    Ok(match id {
        cmd::VENDOR_IDENTIFIER => cond(r, Condition::VendorIdentifier)?,
        cmd::CLASS_IDENTIFIER => cond(r, Condition::ClassIdentifier)?,
        cmd::IMAGE_MATCH => cond(r, Condition::ImageMatch)?,
        cmd::USE_BEFORE => cond(r, Condition::UseBefore)?,
        cmd::COMPONENT_SLOT => cond(r, Condition::ComponentSlot)?,
        cmd::CHECK_CONTENT => cond(r, Condition::CheckContent)?,
        cmd::DEPENDENCY_INTEGRITY => cond(r, Condition::DependencyIntegrity)?,
        cmd::IS_DEPENDENCY => cond(r, Condition::IsDependency)?,
        cmd::ABORT => cond(r, Condition::Abort)?,
        cmd::DEVICE_IDENTIFIER => cond(r, Condition::DeviceIdentifier)?,
        cmd::IMAGE_NOT_MATCH => cond(r, Condition::ImageNotMatch)?,
        cmd::MINIMUM_BATTERY => cond(r, Condition::MinimumBattery)?,
        cmd::UPDATE_AUTHORIZED => cond(r, Condition::UpdateAuthorized)?,
        cmd::VERSION => cond(r, Condition::Version)?,
        cmd::PROCESS_DEPENDENCY => dir(r, Directive::ProcessDependency)?,
        cmd::WRITE => dir(r, Directive::Write)?,
        cmd::FETCH => dir(r, Directive::Fetch)?,
        cmd::COPY => dir(r, Directive::Copy)?,
        cmd::INVOKE => dir(r, Directive::Invoke)?,
        cmd::WAIT => dir(r, Directive::Wait)?,
        cmd::SWAP => dir(r, Directive::Swap)?,
        cmd::UNLINK => dir(r, Directive::Unlink)?,
        cmd::SET_COMPONENT_INDEX => Command::SetComponentIndex(read_index_arg(r)?),
        cmd::TRY_EACH => Command::TryEach(TryEach::read(r, nesting)?),
        cmd::RUN_SEQUENCE => Command::RunSequence(nested(r.bstr()?, nesting)?),
        cmd::OVERRIDE_PARAMETERS => Command::OverrideParameters(ParameterMap::read(r)?),
        cmd::SET_PARAMETERS => Command::SetParameters(ParameterMap::read(r)?),
        cmd::OVERRIDE_MULTIPLE => Command::OverrideMultiple(MultipleParameters::read(r)?),
        cmd::COPY_PARAMS => Command::CopyParams(CopyParams::read(r)?),
        id if id <= cmd::CUSTOM_MAX => {
            let arg = match r.kind()? {
                Kind::Bytes => CustomArg::Bytes(r.bstr()?),
                Kind::Text => CustomArg::Text(r.tstr()?),
                Kind::Uint | Kind::Nint => CustomArg::Int(r.int()?),
                Kind::Null => {
                    r.null()?;
                    CustomArg::Nil
                }
                _ => {
                    return Err(
                        r.malformed("custom command argument must be bstr, tstr, int or nil")
                    );
                }
            };
            Command::Custom(id, arg)
        }
        // Manifest §8.4.9: "If a Recipient encounters an unknown condition, it MUST report a
        // failure"; the same holds for directives. Refused at parse time, before anything runs.
        _ => {
            return Err(Error::UnsupportedCritical {
                what: Unsupported::Command,
                id,
            });
        }
    })
}

fn cond<'a>(r: &mut Reader<'a>, c: Condition) -> Result<Command<'a>, Error> {
    Ok(Command::Condition(c, ReportingPolicy(r.uint()?)))
}

fn dir<'a>(r: &mut Reader<'a>, d: Directive) -> Result<Command<'a>, Error> {
    Ok(Command::Directive(d, ReportingPolicy(r.uint()?)))
}

/// IndexArg = uint / true / [+uint].
fn read_index_arg<'a>(r: &mut Reader<'a>) -> Result<IndexArg<'a>, Error> {
    match r.kind()? {
        Kind::Uint => Ok(IndexArg::One(r.uint()?)),
        Kind::Bool => {
            if r.bool()? {
                Ok(IndexArg::All)
            } else {
                Err(r.malformed("component index false is not defined"))
            }
        }
        Kind::Array => {
            let start = r.position();
            let n = r.array()?;
            if n == 0 {
                return Err(r.malformed("component index list must not be empty"));
            }
            for _ in 0..n {
                r.uint()?;
            }
            Ok(IndexArg::List(IndexList {
                raw: r.since(start),
            }))
        }
        _ => Err(r.malformed("component index must be uint, true or [+uint]")),
    }
}

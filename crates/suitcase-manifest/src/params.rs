//! SUIT parameters (manifest §8.4.8) and the per-component parameter table.

use crate::cbor::{Kind, Reader, decode_exact};
use crate::codepoints::{param, tag};
use crate::digest::SuitDigest;
use crate::error::{Error, Unsupported};

/// A vendor, class or device identifier as set by the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identifier<'a> {
    /// An RFC 9562 UUID (16 bytes).
    Uuid(&'a [u8]),
    /// A CBOR-PEN (tag 112, RFC 9090): a Private Enterprise Number relative OID; vendor only.
    Pen(&'a [u8]),
}

impl<'a> Identifier<'a> {
    /// The identifier bytes (UUID or PEN-relative OID).
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Self::Uuid(b) | Self::Pen(b) => b,
        }
    }
}

/// suit-parameter-version: `[comparison-type, [+int]]` (update-management §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionMatch<'a> {
    /// 1 greater, 2 greater-or-equal, 3 equal, 4 lesser-or-equal, 5 lesser.
    pub comparison: u64,
    /// The encoded `[+int]` version.
    raw_version: &'a [u8],
}

impl<'a> VersionMatch<'a> {
    fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        decode_exact(bytes, "trailing bytes after version match", |r| {
            r.array_of(2, "version match must be [comparison, [+int]]")?;
            let at = r.position();
            let comparison = r.uint()?;
            if !(1..=5).contains(&comparison) {
                return Err(Error::Malformed {
                    at,
                    what: "unknown version comparison type",
                });
            }
            let start = r.position();
            let n = r.array()?;
            if n == 0 {
                return Err(r.malformed("version must have at least one element"));
            }
            for _ in 0..n {
                r.int()?;
            }
            Ok(Self {
                comparison,
                raw_version: r.since(start),
            })
        })
    }

    /// The version elements.
    pub fn version(&self) -> impl Iterator<Item = i64> + use<'a> {
        let mut r = Reader::new(self.raw_version);
        let n = r.array().unwrap_or(0);
        (0..n).map_while(move |_| r.int().ok())
    }

    /// Whether `installed` satisfies this match. Comparison stops at the end of the manifest's
    /// array, so `== [1]` matches 1.x.y (update-management §4.2).
    pub fn matches(&self, installed: &[i64]) -> bool {
        use core::cmp::Ordering;
        let mut ord = Ordering::Equal;
        for (i, want) in self.version().enumerate() {
            let have = installed.get(i).copied().unwrap_or(0);
            ord = have.cmp(&want);
            if ord != Ordering::Equal {
                break;
            }
        }
        match self.comparison {
            1 => ord == Ordering::Greater,
            2 => ord != Ordering::Less,
            3 => ord == Ordering::Equal,
            4 => ord != Ordering::Greater,
            5 => ord == Ordering::Less,
            _ => false,
        }
    }
}

/// One decoded parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    missing_docs,
    reason = "each variant is the parameter of the same name in codepoints::param"
)]
pub enum Parameter<'a> {
    VendorIdentifier(Identifier<'a>),
    ClassIdentifier(&'a [u8]),
    ImageDigest(SuitDigest<'a>),
    UseBefore(u64),
    ComponentSlot(u64),
    StrictOrder(bool),
    SoftFailure(bool),
    ImageSize(u64),
    Content(&'a [u8]),
    /// The bstr-wrapped SUIT_Encryption_Info (a COSE_Encrypt / COSE_Encrypt0), still encoded.
    EncryptionInfo(&'a [u8]),
    Uri(&'a str),
    SourceComponent(u64),
    InvokeArgs(&'a [u8]),
    DeviceIdentifier(&'a [u8]),
    FetchArguments(&'a [u8]),
    MinimumBattery(u64),
    UpdatePriority(i64),
    Version(VersionMatch<'a>),
    /// The bstr-wrapped wait-info map, still encoded.
    WaitInfo(&'a [u8]),
    /// The bstr-wrapped component-metadata map, still encoded.
    ComponentMetadata(&'a [u8]),
    /// suitcase-parameter-delta-base (private use; `delta` feature).
    DeltaBase(u64),
}

impl<'a> Parameter<'a> {
    /// Reads the value for parameter `key`.
    pub(crate) fn read(key: i64, r: &mut Reader<'a>) -> Result<Self, Error> {
        Ok(match key {
            param::VENDOR_IDENTIFIER => Self::VendorIdentifier(read_vendor_id(r)?),
            param::CLASS_IDENTIFIER => Self::ClassIdentifier(read_uuid(r)?),
            param::DEVICE_IDENTIFIER => Self::DeviceIdentifier(read_uuid(r)?),
            // "A digest MUST always be set using Override Parameters" is a rule for authors;
            // the value is a bstr-wrapped SUIT_Digest (manifest §8.4.8.6).
            param::IMAGE_DIGEST => Self::ImageDigest(SuitDigest::decode(r.bstr()?)?),
            param::USE_BEFORE => Self::UseBefore(r.uint()?),
            param::COMPONENT_SLOT => Self::ComponentSlot(r.uint()?),
            param::STRICT_ORDER => Self::StrictOrder(r.bool()?),
            param::SOFT_FAILURE => Self::SoftFailure(r.bool()?),
            param::IMAGE_SIZE => Self::ImageSize(r.uint()?),
            param::CONTENT => Self::Content(r.bstr()?),
            param::ENCRYPTION_INFO => {
                let bytes = r.bstr()?;
                // Parse now so that a malformed SUIT_Encryption_Info is refused before anything runs.
                crate::encryption::EncryptionInfo::decode(bytes)?;
                Self::EncryptionInfo(bytes)
            }
            param::URI => Self::Uri(r.tstr()?),
            param::SOURCE_COMPONENT => Self::SourceComponent(r.uint()?),
            param::INVOKE_ARGS => Self::InvokeArgs(r.bstr()?),
            param::FETCH_ARGUMENTS => Self::FetchArguments(r.bstr()?),
            param::MINIMUM_BATTERY => Self::MinimumBattery(r.uint()?),
            param::UPDATE_PRIORITY => Self::UpdatePriority(r.int()?),
            param::VERSION => Self::Version(VersionMatch::decode(r.bstr()?)?),
            param::WAIT_INFO => Self::WaitInfo(read_wrapped_map(r)?),
            param::COMPONENT_METADATA => Self::ComponentMetadata(read_wrapped_map(r)?),
            // A private parameter this processor implements only with the `delta` feature;
            // without it the manifest is refused like any unknown parameter (§8.4.8).
            #[cfg(feature = "delta")]
            param::SUITCASE_DELTA_BASE => Self::DeltaBase(r.uint()?),
            // Manifest §8.4.8: unknown parameters, including custom (private-use) ones this
            // processor has no meaning for, must not be ignored.
            _ => {
                return Err(Error::UnsupportedCritical {
                    what: Unsupported::Parameter,
                    id: key,
                });
            }
        })
    }

    /// The parameter's key.
    pub fn key(&self) -> i64 {
        match self {
            Self::VendorIdentifier(_) => param::VENDOR_IDENTIFIER,
            Self::ClassIdentifier(_) => param::CLASS_IDENTIFIER,
            Self::ImageDigest(_) => param::IMAGE_DIGEST,
            Self::UseBefore(_) => param::USE_BEFORE,
            Self::ComponentSlot(_) => param::COMPONENT_SLOT,
            Self::StrictOrder(_) => param::STRICT_ORDER,
            Self::SoftFailure(_) => param::SOFT_FAILURE,
            Self::ImageSize(_) => param::IMAGE_SIZE,
            Self::Content(_) => param::CONTENT,
            Self::EncryptionInfo(_) => param::ENCRYPTION_INFO,
            Self::Uri(_) => param::URI,
            Self::SourceComponent(_) => param::SOURCE_COMPONENT,
            Self::InvokeArgs(_) => param::INVOKE_ARGS,
            Self::DeviceIdentifier(_) => param::DEVICE_IDENTIFIER,
            Self::FetchArguments(_) => param::FETCH_ARGUMENTS,
            Self::MinimumBattery(_) => param::MINIMUM_BATTERY,
            Self::UpdatePriority(_) => param::UPDATE_PRIORITY,
            Self::Version(_) => param::VERSION,
            Self::WaitInfo(_) => param::WAIT_INFO,
            Self::ComponentMetadata(_) => param::COMPONENT_METADATA,
            Self::DeltaBase(_) => param::SUITCASE_DELTA_BASE,
        }
    }
}

/// RFC4122_UUID = bstr .size 16.
fn read_uuid<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let at = r.position();
    let b = r.bstr()?;
    if b.len() != 16 {
        return Err(Error::Malformed {
            at,
            what: "identifier must be a 16-byte UUID",
        });
    }
    Ok(b)
}

/// Vendor ID = RFC4122_UUID / cbor-pen (`#6.112(bstr)`).
fn read_vendor_id<'a>(r: &mut Reader<'a>) -> Result<Identifier<'a>, Error> {
    if r.kind()? == Kind::Tag {
        let at = r.position();
        if r.tag()? != tag::CBOR_PEN {
            return Err(Error::Malformed {
                at,
                what: "vendor identifier tag must be 112 (CBOR-PEN)",
            });
        }
        let oid = r.bstr()?;
        if oid.is_empty() {
            return Err(Error::Malformed {
                at,
                what: "empty CBOR-PEN",
            });
        }
        return Ok(Identifier::Pen(oid));
    }
    Ok(Identifier::Uuid(read_uuid(r)?))
}

fn read_wrapped_map<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let bytes = r.bstr()?;
    decode_exact(bytes, "trailing bytes after wrapped map", |inner| {
        if inner.kind()? != Kind::Map {
            return Err(inner.malformed("expected a bstr-wrapped map"));
        }
        inner.skip()
    })?;
    Ok(bytes)
}

/// A parameter map as given to override-parameters / set-parameters. Validated on parse.
#[derive(Clone, Copy, Debug)]
pub struct ParameterMap<'a> {
    raw: &'a [u8],
}

impl<'a> ParameterMap<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.position();
        let mut map = r.map()?;
        while let Some(key) = r.int_key(&mut map)? {
            Parameter::read(key, r)?;
        }
        Ok(Self {
            raw: r.since(start),
        })
    }

    /// The parameters in encoding order.
    pub fn iter(&self) -> impl Iterator<Item = Parameter<'a>> + use<'a> {
        let mut r = Reader::new(self.raw);
        let n = r.map().map(|m| m.len).unwrap_or(0);
        (0..n).map_while(move |_| {
            let key = r.int().ok()?;
            Parameter::read(key, &mut r).ok()
        })
    }

    /// The encoded map.
    pub fn as_cbor(&self) -> &'a [u8] {
        self.raw
    }
}

/// The parameters the processor tracks for one component (manifest §6.4).
#[derive(Clone, Copy, Debug, Default)]
#[expect(missing_docs, reason = "each field is the parameter of the same name")]
pub struct Parameters<'a> {
    pub vendor_identifier: Option<Identifier<'a>>,
    pub class_identifier: Option<&'a [u8]>,
    pub image_digest: Option<SuitDigest<'a>>,
    pub use_before: Option<u64>,
    pub component_slot: Option<u64>,
    pub strict_order: Option<bool>,
    pub image_size: Option<u64>,
    pub content: Option<&'a [u8]>,
    pub encryption_info: Option<&'a [u8]>,
    pub uri: Option<&'a str>,
    pub source_component: Option<u64>,
    pub invoke_args: Option<&'a [u8]>,
    pub device_identifier: Option<&'a [u8]>,
    pub fetch_arguments: Option<&'a [u8]>,
    pub minimum_battery: Option<u64>,
    pub update_priority: Option<i64>,
    pub version: Option<VersionMatch<'a>>,
    pub wait_info: Option<&'a [u8]>,
    pub component_metadata: Option<&'a [u8]>,
    /// suitcase-parameter-delta-base (private): the component a delta patch applies to.
    pub delta_base: Option<u64>,
}

/// How a parameter map is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Apply {
    /// override-parameters: replace (manifest §8.4.10.5).
    Override,
    /// set-parameters: set only where unset (trust-domains §5.4).
    SetIfUnset,
}

impl<'a> Parameters<'a> {
    /// Applies one parameter. Soft-failure is not stored here: it is scoped to the command
    /// sequence, so the processor tracks it per sequence.
    pub(crate) fn apply(&mut self, p: Parameter<'a>, mode: Apply) {
        fn put<T>(slot: &mut Option<T>, v: T, mode: Apply) {
            if mode == Apply::Override || slot.is_none() {
                *slot = Some(v);
            }
        }
        match p {
            Parameter::VendorIdentifier(v) => put(&mut self.vendor_identifier, v, mode),
            Parameter::ClassIdentifier(v) => put(&mut self.class_identifier, v, mode),
            Parameter::ImageDigest(v) => put(&mut self.image_digest, v, mode),
            Parameter::UseBefore(v) => put(&mut self.use_before, v, mode),
            Parameter::ComponentSlot(v) => put(&mut self.component_slot, v, mode),
            Parameter::StrictOrder(v) => put(&mut self.strict_order, v, mode),
            Parameter::SoftFailure(_) => {}
            Parameter::ImageSize(v) => put(&mut self.image_size, v, mode),
            Parameter::Content(v) => put(&mut self.content, v, mode),
            Parameter::EncryptionInfo(v) => put(&mut self.encryption_info, v, mode),
            Parameter::Uri(v) => put(&mut self.uri, v, mode),
            Parameter::SourceComponent(v) => put(&mut self.source_component, v, mode),
            Parameter::InvokeArgs(v) => put(&mut self.invoke_args, v, mode),
            Parameter::DeviceIdentifier(v) => put(&mut self.device_identifier, v, mode),
            Parameter::FetchArguments(v) => put(&mut self.fetch_arguments, v, mode),
            Parameter::MinimumBattery(v) => put(&mut self.minimum_battery, v, mode),
            Parameter::UpdatePriority(v) => put(&mut self.update_priority, v, mode),
            Parameter::Version(v) => put(&mut self.version, v, mode),
            Parameter::WaitInfo(v) => put(&mut self.wait_info, v, mode),
            Parameter::ComponentMetadata(v) => put(&mut self.component_metadata, v, mode),
            Parameter::DeltaBase(v) => put(&mut self.delta_base, v, mode),
        }
    }

    /// Copies the listed parameters from `src` (copy-params, update-management §5.8).
    pub(crate) fn copy_from(&mut self, src: &Self, key: i64) {
        match key {
            param::VENDOR_IDENTIFIER => self.vendor_identifier = src.vendor_identifier,
            param::CLASS_IDENTIFIER => self.class_identifier = src.class_identifier,
            param::IMAGE_DIGEST => self.image_digest = src.image_digest,
            param::USE_BEFORE => self.use_before = src.use_before,
            param::COMPONENT_SLOT => self.component_slot = src.component_slot,
            param::STRICT_ORDER => self.strict_order = src.strict_order,
            param::IMAGE_SIZE => self.image_size = src.image_size,
            param::CONTENT => self.content = src.content,
            param::ENCRYPTION_INFO => self.encryption_info = src.encryption_info,
            param::URI => self.uri = src.uri,
            param::SOURCE_COMPONENT => self.source_component = src.source_component,
            param::INVOKE_ARGS => self.invoke_args = src.invoke_args,
            param::DEVICE_IDENTIFIER => self.device_identifier = src.device_identifier,
            param::FETCH_ARGUMENTS => self.fetch_arguments = src.fetch_arguments,
            param::MINIMUM_BATTERY => self.minimum_battery = src.minimum_battery,
            param::UPDATE_PRIORITY => self.update_priority = src.update_priority,
            param::VERSION => self.version = src.version,
            param::WAIT_INFO => self.wait_info = src.wait_info,
            param::COMPONENT_METADATA => self.component_metadata = src.component_metadata,
            param::SUITCASE_DELTA_BASE => self.delta_base = src.delta_base,
            _ => {}
        }
    }
}

/// A readable name for a parameter key.
pub fn parameter_name(key: i64) -> &'static str {
    match key {
        param::VENDOR_IDENTIFIER => "vendor-identifier",
        param::CLASS_IDENTIFIER => "class-identifier",
        param::IMAGE_DIGEST => "image-digest",
        param::USE_BEFORE => "use-before",
        param::COMPONENT_SLOT => "component-slot",
        param::STRICT_ORDER => "strict-order",
        param::SOFT_FAILURE => "soft-failure",
        param::IMAGE_SIZE => "image-size",
        param::CONTENT => "content",
        param::ENCRYPTION_INFO => "encryption-info",
        param::URI => "uri",
        param::SOURCE_COMPONENT => "source-component",
        param::INVOKE_ARGS => "invoke-args",
        param::DEVICE_IDENTIFIER => "device-identifier",
        param::FETCH_ARGUMENTS => "fetch-arguments",
        param::MINIMUM_BATTERY => "minimum-battery",
        param::UPDATE_PRIORITY => "update-priority",
        param::VERSION => "version",
        param::WAIT_INFO => "wait-info",
        param::COMPONENT_METADATA => "component-metadata",
        param::SUITCASE_DELTA_BASE => "suitcase-delta-base",
        _ => "custom",
    }
}

/// Reads a parameter map's keys only, for checks that do not need the values.
pub(crate) fn keys<'a>(map: &ParameterMap<'a>) -> impl Iterator<Item = i64> + use<'a> {
    map.iter().map(|p| p.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_match_follows_update_management() {
        // <<[3 (==), [1]]>> matches 1.x.y
        let m = VersionMatch::decode(&[0x82, 0x03, 0x81, 0x01]).unwrap();
        assert!(m.matches(&[1, 4, 2]));
        assert!(!m.matches(&[2, 0]));
        // <<[5 (<), [1, 0, 2]]>>
        let m = VersionMatch::decode(&[0x82, 0x05, 0x83, 0x01, 0x00, 0x02]).unwrap();
        assert!(m.matches(&[1, 0, 1]));
        assert!(!m.matches(&[1, 0, 2]));
    }

    #[test]
    fn unknown_parameter_is_refused() {
        // {31: 0}
        let err = ParameterMap::read(&mut Reader::new(&[0xa1, 0x18, 0x1f, 0x00])).unwrap_err();
        assert_eq!(
            err,
            Error::UnsupportedCritical {
                what: Unsupported::Parameter,
                id: 31
            }
        );
        // {-257: 0} custom
        let err =
            ParameterMap::read(&mut Reader::new(&[0xa1, 0x39, 0x01, 0x00, 0x00])).unwrap_err();
        assert_eq!(
            err,
            Error::UnsupportedCritical {
                what: Unsupported::Parameter,
                id: -257
            }
        );
    }

    #[test]
    fn uuid_must_be_16_bytes() {
        // {2: h'00'}
        assert!(ParameterMap::read(&mut Reader::new(&[0xa1, 0x02, 0x41, 0x00])).is_err());
    }
}

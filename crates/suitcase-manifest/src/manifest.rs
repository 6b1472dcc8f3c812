//! SUIT_Manifest (manifest §8.4) and its members.

use crate::cbor::{Kind, Reader, decode_exact};
use crate::codepoints::{common, dependency, manifest as key};
use crate::command::CommandSequence;
use crate::component::{ComponentId, Components};
use crate::digest::SuitDigest;
use crate::error::{Error, Unsupported};

/// The most components a manifest may list. Matches the processor's parameter table.
#[cfg(not(suitcase_small))]
pub const MAX_COMPONENTS: usize = 16;
/// The most components a manifest may list. Matches the processor's parameter table.
///
/// `--cfg suitcase_small` builds for single-MCU bootloaders: two components (an image and,
/// for encrypted payloads, its staging component) instead of 16. Each component costs the
/// processor a parameter set (216 bytes on Thumb) and copies of it; on a Cortex-M4 this bound
/// takes the ES256 bootloader's peak stack from 19.2 KB to 12.9 KB (docs/benchmarks.md). A
/// manifest with more components is refused before anything is processed. It is a
/// `cfg`, not a feature, because it narrows what the crate accepts: a feature would change
/// every other user of the crate in the same build.
#[cfg(suitcase_small)]
pub const MAX_COMPONENTS: usize = 2;

/// A severable member as found in the manifest: the member itself, or the digest of the
/// severed copy that lives in the envelope (manifest §8.4.12).
#[derive(Clone, Copy, Debug)]
pub enum Severable<'a, T> {
    /// The member is in the manifest.
    Inline(T),
    /// The member was severed; this digest covers its bstr-wrapped copy in the envelope.
    Severed(SuitDigest<'a>),
}

/// A parsed manifest. Borrowed from the envelope; every field has been validated.
///
/// Getting one from an untrusted envelope requires authentication first, through
/// [`crate::Envelope::verify`]; [`Manifest::decode_unauthenticated`] exists only for inspection
/// tools and its result cannot be processed.
#[derive(Clone, Copy, Debug)]
pub struct Manifest<'a> {
    /// The encoded manifest map (the content of the bstr in the envelope).
    pub raw: &'a [u8],
    /// suit-manifest-sequence-number.
    pub sequence_number: u64,
    /// suit-reference-uri.
    pub reference_uri: Option<&'a str>,
    /// suit-components.
    pub components: Components<'a>,
    /// suit-dependencies (trust-domains).
    pub dependencies: Dependencies<'a>,
    /// suit-shared-sequence.
    pub shared_sequence: Option<CommandSequence<'a>>,
    /// suit-dependency-resolution (trust-domains).
    pub dependency_resolution: Option<Severable<'a, CommandSequence<'a>>>,
    /// suit-payload-fetch.
    pub payload_fetch: Option<Severable<'a, CommandSequence<'a>>>,
    /// suit-candidate-verification (trust-domains).
    pub candidate_verification: Option<Severable<'a, CommandSequence<'a>>>,
    /// suit-install.
    pub install: Option<Severable<'a, CommandSequence<'a>>>,
    /// suit-validate.
    pub validate: Option<CommandSequence<'a>>,
    /// suit-load.
    pub load: Option<CommandSequence<'a>>,
    /// suit-invoke.
    pub invoke: Option<CommandSequence<'a>>,
    /// suit-uninstall (trust-domains).
    pub uninstall: Option<CommandSequence<'a>>,
    /// suit-text.
    pub text: Option<Severable<'a, Text<'a>>>,
    /// suit-coswid (update-management), kept encoded.
    pub coswid: Option<Severable<'a, &'a [u8]>>,
    /// suit-manifest-component-id (trust-domains).
    pub manifest_component_id: Option<ComponentId<'a>>,
    /// suit-set-version (update-management): the encoded `[+int]`.
    pub set_version: Option<&'a [u8]>,
}

impl<'a> Manifest<'a> {
    /// Parses a manifest map **without authenticating it**. For display only: the processor
    /// accepts nothing but a [`crate::VerifiedManifest`].
    ///
    /// # Errors
    /// Any structural or unsupported-member error.
    pub fn decode_unauthenticated(raw: &'a [u8]) -> Result<Self, Error> {
        Self::parse(raw)
    }

    pub(crate) fn parse(raw: &'a [u8]) -> Result<Self, Error> {
        decode_exact(raw, "trailing bytes after manifest", |r| {
            let mut m = Self {
                raw,
                sequence_number: 0,
                reference_uri: None,
                components: Components::empty(),
                dependencies: Dependencies::empty(),
                shared_sequence: None,
                dependency_resolution: None,
                payload_fetch: None,
                candidate_verification: None,
                install: None,
                validate: None,
                load: None,
                invoke: None,
                uninstall: None,
                text: None,
                coswid: None,
                manifest_component_id: None,
                set_version: None,
            };
            let (mut version, mut sequence, mut have_common) = (None, None, false);
            let mut map = r.map()?;
            while let Some(k) = r.int_key(&mut map)? {
                match u64::try_from(k).unwrap_or(u64::MAX) {
                    key::VERSION => version = Some(r.uint()?),
                    key::SEQUENCE_NUMBER => sequence = Some(r.uint()?),
                    key::COMMON => {
                        m.parse_common(r.bstr()?)?;
                        have_common = true;
                    }
                    key::REFERENCE_URI => m.reference_uri = Some(r.tstr()?),
                    key::MANIFEST_COMPONENT_ID => {
                        m.manifest_component_id = Some(ComponentId::read(r)?);
                    }
                    key::SET_VERSION => {
                        let bytes = r.bstr()?;
                        decode_exact(bytes, "trailing bytes after set-version", |v| {
                            let n = v.array()?;
                            if n == 0 {
                                return Err(v.malformed("set-version needs one element or more"));
                            }
                            for _ in 0..n {
                                v.int()?;
                            }
                            Ok(())
                        })?;
                        m.set_version = Some(bytes);
                    }
                    key::VALIDATE => m.validate = Some(CommandSequence::decode(r.bstr()?)?),
                    key::LOAD => m.load = Some(CommandSequence::decode(r.bstr()?)?),
                    key::INVOKE => m.invoke = Some(CommandSequence::decode(r.bstr()?)?),
                    key::UNINSTALL => m.uninstall = Some(CommandSequence::decode(r.bstr()?)?),
                    key::DEPENDENCY_RESOLUTION => m.dependency_resolution = Some(severable_seq(r)?),
                    key::PAYLOAD_FETCH => m.payload_fetch = Some(severable_seq(r)?),
                    key::CANDIDATE_VERIFICATION => {
                        m.candidate_verification = Some(severable_seq(r)?);
                    }
                    key::INSTALL => m.install = Some(severable_seq(r)?),
                    key::TEXT => {
                        m.text = Some(severable(r, Text::decode)?);
                    }
                    key::COSWID => {
                        m.coswid = Some(severable(r, |bytes| {
                            decode_exact(bytes, "trailing bytes after CoSWID", |c| c.skip())
                        })?);
                    }
                    // A member we do not know may change what the manifest means; ignoring it
                    // would execute something other than what the author signed.
                    _ => {
                        return Err(Error::UnsupportedCritical {
                            what: Unsupported::ManifestMember,
                            id: k,
                        });
                    }
                }
            }
            // Manifest §8.4.2: "the manifest processor ... MUST fail when it encounters an
            // unsupported encoding version". Version 1 is the only one defined.
            match version {
                Some(1) => {}
                Some(v) => return Err(Error::UnsupportedVersion { version: v }),
                None => return Err(r.malformed("manifest has no suit-manifest-version")),
            }
            m.sequence_number = sequence
                .ok_or_else(|| r.malformed("manifest has no suit-manifest-sequence-number"))?;
            if !have_common {
                return Err(r.malformed("manifest has no suit-common"));
            }
            Ok(m)
        })
    }

    fn parse_common(&mut self, bytes: &'a [u8]) -> Result<(), Error> {
        decode_exact(bytes, "trailing bytes after suit-common", |r| {
            let mut map = r.map()?;
            while let Some(k) = r.int_key(&mut map)? {
                match u64::try_from(k).unwrap_or(u64::MAX) {
                    common::DEPENDENCIES => self.dependencies = Dependencies::read(r)?,
                    common::COMPONENTS => self.components = Components::read(r, MAX_COMPONENTS)?,
                    common::SHARED_SEQUENCE => {
                        self.shared_sequence = Some(CommandSequence::decode(r.bstr()?)?);
                    }
                    _ => {
                        return Err(Error::UnsupportedCritical {
                            what: Unsupported::CommonMember,
                            id: k,
                        });
                    }
                }
            }
            Ok(())
        })
    }

    /// The number of component indices commands may use: the listed components, extended by
    /// dependency indices beyond them (trust-domains: a dependency index need not be listed in
    /// suit-components).
    pub fn index_count(&self) -> usize {
        let deps = self
            .dependencies
            .iter()
            .map(|(i, _)| i.saturating_add(1))
            .max()
            .unwrap_or(0);
        self.components
            .len()
            .max(usize::try_from(deps).unwrap_or(usize::MAX))
    }

    /// The identifier for a component index: the listed component, or for a dependency index
    /// beyond the list, its dependency prefix (an empty identifier if it has none).
    pub fn component_id(&self, index: usize) -> Option<ComponentId<'a>> {
        if let Some(id) = self.components.get(index) {
            return Some(id);
        }
        let dep = self.dependencies.get(index as u64)?;
        Some(dep.unwrap_or(ComponentId::EMPTY))
    }
}

fn severable_seq<'a>(r: &mut Reader<'a>) -> Result<Severable<'a, CommandSequence<'a>>, Error> {
    severable(r, CommandSequence::decode)
}

/// A severable member: `SUIT_Digest` (an array) when severed, a bstr when present (manifest
/// §8.4.12: "Because SUIT_Digest is a CBOR Array and each severable element is a CBOR bstr, it is
/// straight-forward for a Recipient to determine whether an element has been severed").
fn severable<'a, T>(
    r: &mut Reader<'a>,
    parse: impl FnOnce(&'a [u8]) -> Result<T, Error>,
) -> Result<Severable<'a, T>, Error> {
    match r.kind()? {
        Kind::Array => Ok(Severable::Severed(SuitDigest::read(r)?)),
        Kind::Bytes => Ok(Severable::Inline(parse(r.bstr()?)?)),
        _ => Err(r.malformed("severable member must be a bstr or a SUIT_Digest")),
    }
}

/// `suit-dependencies`: `{+ uint(component index) => {? 1 => dependency-prefix}}`.
#[derive(Clone, Copy, Debug)]
pub struct Dependencies<'a> {
    raw: &'a [u8],
}

impl<'a> Dependencies<'a> {
    fn empty() -> Self {
        Self { raw: &[0xa0] }
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.position();
        let mut map = r.map()?;
        if map.len == 0 {
            return Err(r.malformed("suit-dependencies must not be empty"));
        }
        while let Some((index, key_start)) = r.next_entry(&mut map) {
            let component = r.uint()?;
            if component >= MAX_COMPONENTS as u64 {
                return Err(Error::ComponentIndex { index: component });
            }
            r.check_unique(&map, index, key_start)?;
            let mut meta = r.map()?;
            while let Some(k) = r.int_key(&mut meta)? {
                if k != dependency::PREFIX as i64 {
                    return Err(r.malformed("unknown dependency metadata key"));
                }
                ComponentId::read(r)?;
            }
        }
        Ok(Self {
            raw: r.since(start),
        })
    }

    /// Whether the manifest declares any dependency.
    pub fn is_empty(&self) -> bool {
        self.raw == [0xa0]
    }

    /// `(component index, dependency prefix)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Option<ComponentId<'a>>)> + use<'a> {
        let mut r = Reader::new(self.raw);
        let n = r.map().map(|m| m.len).unwrap_or(0);
        (0..n).map_while(move |_| {
            let index = r.uint().ok()?;
            let meta = r.map().ok()?;
            let mut prefix = None;
            for _ in 0..meta.len {
                r.int().ok()?;
                prefix = ComponentId::read(&mut r).ok();
            }
            Some((index, prefix))
        })
    }

    /// Whether `index` is a dependency, and its prefix.
    pub fn get(&self, index: u64) -> Option<Option<ComponentId<'a>>> {
        self.iter().find(|(i, _)| *i == index).map(|(_, p)| p)
    }
}

/// `SUIT_Text_Map`: `{+ language => {* int => tstr, * component-id => {* int => tstr}}}`.
#[derive(Clone, Copy, Debug)]
pub struct Text<'a> {
    raw: &'a [u8],
}

/// One entry of a text map, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEntry<'a> {
    /// A manifest-level field (1 manifest-description, 2 update-description, ...).
    Manifest {
        /// The language tag.
        language: &'a str,
        /// The field key.
        key: i64,
        /// The text.
        text: &'a str,
    },
    /// A component-level field (1 vendor-name ... 8 current-version).
    Component {
        /// The language tag.
        language: &'a str,
        /// The component.
        component: ComponentId<'a>,
        /// The field key.
        key: i64,
        /// The text.
        text: &'a str,
    },
}

impl<'a> Text<'a> {
    /// Parses and validates an encoded text map.
    ///
    /// # Errors
    /// [`Error::Malformed`] if it is not a SUIT_Text_Map.
    pub fn decode(raw: &'a [u8]) -> Result<Self, Error> {
        decode_exact(raw, "trailing bytes after text map", |r| {
            let mut langs = r.map()?;
            while let Some((index, start)) = r.next_entry(&mut langs) {
                r.tstr()?;
                r.check_unique(&langs, index, start)?;
                let mut fields = r.map()?;
                while let Some((index, start)) = r.next_entry(&mut fields) {
                    match r.kind()? {
                        Kind::Uint | Kind::Nint => {
                            r.int()?;
                            r.check_unique(&fields, index, start)?;
                            r.tstr()?;
                        }
                        Kind::Array => {
                            ComponentId::read(r)?;
                            r.check_unique(&fields, index, start)?;
                            let mut per = r.map()?;
                            while r.int_key(&mut per)?.is_some() {
                                r.tstr()?;
                            }
                        }
                        _ => return Err(r.malformed("text key must be an int or a component id")),
                    }
                }
            }
            Ok(())
        })?;
        Ok(Self { raw })
    }

    /// Every text field, language by language.
    pub fn entries(&self) -> impl Iterator<Item = TextEntry<'a>> + use<'a> {
        let mut out = TextIter::new(self.raw);
        core::iter::from_fn(move || out.next())
    }
}

struct TextIter<'a> {
    r: Reader<'a>,
    langs: u64,
    language: &'a str,
    fields: u64,
    component: Option<ComponentId<'a>>,
    per: u64,
}

impl<'a> TextIter<'a> {
    fn new(raw: &'a [u8]) -> Self {
        let mut r = Reader::new(raw);
        let langs = r.map().map(|m| m.len).unwrap_or(0);
        Self {
            r,
            langs,
            language: "",
            fields: 0,
            component: None,
            per: 0,
        }
    }

    fn next(&mut self) -> Option<TextEntry<'a>> {
        loop {
            if self.per > 0 {
                self.per -= 1;
                let key = self.r.int().ok()?;
                let text = self.r.tstr().ok()?;
                let component = self.component?;
                return Some(TextEntry::Component {
                    language: self.language,
                    component,
                    key,
                    text,
                });
            }
            if self.fields > 0 {
                self.fields -= 1;
                if self.r.kind().ok()? == Kind::Array {
                    self.component = Some(ComponentId::read(&mut self.r).ok()?);
                    self.per = self.r.map().ok()?.len;
                    continue;
                }
                let key = self.r.int().ok()?;
                let text = self.r.tstr().ok()?;
                return Some(TextEntry::Manifest {
                    language: self.language,
                    key,
                    text,
                });
            }
            if self.langs == 0 {
                return None;
            }
            self.langs -= 1;
            self.language = self.r.tstr().ok()?;
            self.fields = self.r.map().ok()?.len;
        }
    }
}

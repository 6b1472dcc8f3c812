//! Building envelopes: an owned manifest model and a deterministic encoder (`alloc` feature).
//!
//! Every map is written in RFC 8949 §4.2.1 deterministic order (keys sorted by their encoded
//! bytes) and every length is definite and minimal, so that the same manifest always encodes to
//! the same bytes and therefore the same digest. The envelope's authentication wrapper (key 2)
//! comes first, which that order gives naturally.
//!
//! Signing is left to the caller through closures over the to-be-signed bytes, so that keys can
//! live in files, HSMs or stateful signers without this crate knowing.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use minicbor::Encoder;

use crate::codepoints::{command as cmd, common, envelope as env_key, manifest as key, param, tag};
use crate::command::{Command, CommandSequence, Condition, CustomArg, Directive, IndexArg};
use crate::digest::DigestAlgorithm;
use crate::manifest::{Manifest, Severable, TextEntry};
use crate::params::{Identifier, Parameter};

/// A command, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// A condition and its reporting policy.
    Condition(Condition, u64),
    /// A directive and its reporting policy.
    Directive(Directive, u64),
    /// set-component-index.
    SetComponentIndex(Index),
    /// try-each: branches, and whether a trailing nil lets all fail.
    TryEach(Vec<Vec<Self>>, bool),
    /// run-sequence.
    RunSequence(Vec<Self>),
    /// override-parameters.
    OverrideParameters(Vec<Param>),
    /// set-parameters.
    SetParameters(Vec<Param>),
    /// override-multiple: per component index.
    OverrideMultiple(Vec<(u64, Vec<Param>)>),
    /// copy-params: per source index, the keys to copy.
    CopyParams(Vec<(u64, Vec<i64>)>),
    /// A private-use command.
    Custom(i64, CustomValue),
}

/// set-component-index's argument, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Index {
    /// One component.
    One(u64),
    /// All components.
    All,
    /// A list.
    List(Vec<u64>),
}

/// A custom command's argument, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(missing_docs, reason = "variants are the CBOR types")]
pub enum CustomValue {
    Bytes(Vec<u8>),
    Text(String),
    Int(i64),
    Nil,
}

/// A parameter, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    missing_docs,
    reason = "each variant is the parameter of the same name"
)]
pub enum Param {
    VendorIdentifier(Vec<u8>),
    VendorPen(Vec<u8>),
    ClassIdentifier(Vec<u8>),
    ImageDigest(DigestAlgorithm, Vec<u8>),
    UseBefore(u64),
    ComponentSlot(u64),
    StrictOrder(bool),
    SoftFailure(bool),
    ImageSize(u64),
    Content(Vec<u8>),
    /// An encoded SUIT_Encryption_Info (COSE_Encrypt).
    EncryptionInfo(Vec<u8>),
    Uri(String),
    SourceComponent(u64),
    InvokeArgs(Vec<u8>),
    DeviceIdentifier(Vec<u8>),
    FetchArguments(Vec<u8>),
    MinimumBattery(u64),
    UpdatePriority(i64),
    /// Comparison type (1..=5) and version.
    Version(u64, Vec<i64>),
    /// An encoded wait-info map.
    WaitInfo(Vec<u8>),
    /// An encoded component-metadata map.
    ComponentMetadata(Vec<u8>),
    /// suitcase-parameter-delta-base (private): the component a delta patch applies to.
    DeltaBase(u64),
}

impl Param {
    /// The parameter key.
    pub fn key(&self) -> i64 {
        match self {
            Self::VendorIdentifier(_) | Self::VendorPen(_) => param::VENDOR_IDENTIFIER,
            Self::ClassIdentifier(_) => param::CLASS_IDENTIFIER,
            Self::ImageDigest(..) => param::IMAGE_DIGEST,
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
            Self::Version(..) => param::VERSION,
            Self::WaitInfo(_) => param::WAIT_INFO,
            Self::ComponentMetadata(_) => param::COMPONENT_METADATA,
            Self::DeltaBase(_) => param::SUITCASE_DELTA_BASE,
        }
    }
}

/// A text map entry, owned: `(language, component (None for manifest fields), key, text)`.
pub type TextField = (String, Option<Vec<Vec<u8>>>, i64, String);

/// A manifest, owned. Build one, then [`ManifestBuilder::encode`] or wrap it in an
/// [`EnvelopeBuilder`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[expect(
    missing_docs,
    reason = "each field is the manifest member of the same name"
)]
pub struct ManifestBuilder {
    pub sequence_number: u64,
    pub reference_uri: Option<String>,
    pub components: Vec<Vec<Vec<u8>>>,
    /// `(component index, dependency prefix)`.
    pub dependencies: Vec<(u64, Option<Vec<Vec<u8>>>)>,
    pub shared_sequence: Option<Vec<Cmd>>,
    pub dependency_resolution: Option<Vec<Cmd>>,
    pub payload_fetch: Option<Vec<Cmd>>,
    pub candidate_verification: Option<Vec<Cmd>>,
    pub install: Option<Vec<Cmd>>,
    pub validate: Option<Vec<Cmd>>,
    pub load: Option<Vec<Cmd>>,
    pub invoke: Option<Vec<Cmd>>,
    pub text: Vec<TextField>,
    pub manifest_component_id: Option<Vec<Vec<u8>>>,
    /// Members to sever into the envelope (keys 15, 16, 18, 20, 23).
    pub sever: Vec<u64>,
}

type Enc = Encoder<Vec<u8>>;

fn new_enc() -> Enc {
    Encoder::new(Vec::new())
}

// Writing into a Vec cannot fail; these helpers keep that fact in one place.
fn done(e: Enc) -> Vec<u8> {
    e.into_writer()
}

/// Encodes an unsigned integer.
pub fn uint(n: u64) -> Vec<u8> {
    let mut e = new_enc();
    let _ = e.u64(n);
    done(e)
}

/// Encodes a signed integer.
pub fn int(n: i64) -> Vec<u8> {
    let mut e = new_enc();
    let _ = e.i64(n);
    done(e)
}

/// Encodes a byte string.
pub fn bstr(b: &[u8]) -> Vec<u8> {
    let mut e = new_enc();
    let _ = e.bytes(b);
    done(e)
}

/// Encodes a text string.
pub fn tstr(s: &str) -> Vec<u8> {
    let mut e = new_enc();
    let _ = e.str(s);
    done(e)
}

/// Encodes an array of already encoded items.
pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut e = new_enc();
    let _ = e.array(items.len() as u64);
    let mut out = done(e);
    for i in items {
        out.extend_from_slice(i);
    }
    out
}

/// A map in deterministic order: entries sorted by their encoded keys (RFC 8949 §4.2.1).
pub fn map(mut entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<u8> {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut e = new_enc();
    let _ = e.map(entries.len() as u64);
    let mut out = done(e);
    for (k, v) in entries {
        out.extend_from_slice(&k);
        out.extend_from_slice(&v);
    }
    out
}

/// Encodes a tag around an already encoded item.
pub fn tagged(t: u64, item: &[u8]) -> Vec<u8> {
    let mut e = new_enc();
    let _ = e.tag(minicbor::data::Tag::new(t));
    let mut out = done(e);
    out.extend_from_slice(item);
    out
}

const NULL: u8 = 0xf6;

/// Encodes a SUIT_Digest `[alg, bytes]`.
pub fn encode_digest(alg: DigestAlgorithm, bytes: &[u8]) -> Vec<u8> {
    array(&[int(alg.cose_id()), bstr(bytes)])
}

/// Encodes a component identifier.
pub fn encode_component_id(segments: &[Vec<u8>]) -> Vec<u8> {
    array(&segments.iter().map(|s| bstr(s)).collect::<Vec<_>>())
}

fn encode_param(p: &Param) -> Vec<u8> {
    match p {
        Param::VendorIdentifier(b)
        | Param::ClassIdentifier(b)
        | Param::DeviceIdentifier(b)
        | Param::Content(b)
        | Param::InvokeArgs(b)
        | Param::FetchArguments(b)
        | Param::EncryptionInfo(b)
        | Param::WaitInfo(b)
        | Param::ComponentMetadata(b) => bstr(b),
        Param::VendorPen(b) => tagged(tag::CBOR_PEN, &bstr(b)),
        Param::ImageDigest(alg, d) => bstr(&encode_digest(*alg, d)),
        Param::UseBefore(n)
        | Param::ComponentSlot(n)
        | Param::ImageSize(n)
        | Param::SourceComponent(n)
        | Param::DeltaBase(n)
        | Param::MinimumBattery(n) => uint(*n),
        Param::StrictOrder(b) | Param::SoftFailure(b) => vec![if *b { 0xf5 } else { 0xf4 }],
        Param::Uri(s) => tstr(s),
        Param::UpdatePriority(n) => int(*n),
        Param::Version(cmp, v) => bstr(&array(&[
            uint(*cmp),
            array(&v.iter().map(|n| int(*n)).collect::<Vec<_>>()),
        ])),
    }
}

fn encode_params(params: &[Param]) -> Vec<u8> {
    map(params
        .iter()
        .map(|p| (int(p.key()), encode_param(p)))
        .collect())
}

/// Encodes a command sequence (the content of its bstr wrapper).
pub fn encode_sequence(cmds: &[Cmd]) -> Vec<u8> {
    let mut items = Vec::with_capacity(cmds.len() * 2);
    for c in cmds {
        let (id, arg) = match c {
            Cmd::Condition(c, policy) => (c.id(), uint(*policy)),
            Cmd::Directive(d, policy) => (d.id(), uint(*policy)),
            Cmd::SetComponentIndex(i) => (
                cmd::SET_COMPONENT_INDEX,
                match i {
                    Index::One(n) => uint(*n),
                    Index::All => vec![0xf5],
                    Index::List(l) => array(&l.iter().map(|n| uint(*n)).collect::<Vec<_>>()),
                },
            ),
            Cmd::TryEach(branches, allow_all_fail) => {
                let mut b: Vec<Vec<u8>> =
                    branches.iter().map(|s| bstr(&encode_sequence(s))).collect();
                if *allow_all_fail {
                    b.push(vec![NULL]);
                }
                (cmd::TRY_EACH, array(&b))
            }
            Cmd::RunSequence(s) => (cmd::RUN_SEQUENCE, bstr(&encode_sequence(s))),
            Cmd::OverrideParameters(p) => (cmd::OVERRIDE_PARAMETERS, encode_params(p)),
            Cmd::SetParameters(p) => (cmd::SET_PARAMETERS, encode_params(p)),
            Cmd::OverrideMultiple(per) => (
                cmd::OVERRIDE_MULTIPLE,
                map(per
                    .iter()
                    .map(|(i, p)| (uint(*i), encode_params(p)))
                    .collect()),
            ),
            Cmd::CopyParams(per) => (
                cmd::COPY_PARAMS,
                map(per
                    .iter()
                    .map(|(i, keys)| {
                        (
                            uint(*i),
                            array(&keys.iter().map(|k| int(*k)).collect::<Vec<_>>()),
                        )
                    })
                    .collect()),
            ),
            Cmd::Custom(id, v) => (
                *id,
                match v {
                    CustomValue::Bytes(b) => bstr(b),
                    CustomValue::Text(t) => tstr(t),
                    CustomValue::Int(n) => int(*n),
                    CustomValue::Nil => vec![NULL],
                },
            ),
        };
        items.push(int(id));
        items.push(arg);
    }
    array(&items)
}

/// The parts of an encoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedManifest {
    /// The manifest map.
    pub manifest: Vec<u8>,
    /// Severed members as `(key, bstr content)`, to place in the envelope.
    pub severed: Vec<(u64, Vec<u8>)>,
}

impl ManifestBuilder {
    /// Encodes the manifest. Members listed in `sever` are replaced by the digest (`alg`) of
    /// their bstr-wrapped encoding and returned separately for the envelope.
    pub fn encode(&self, alg: DigestAlgorithm) -> EncodedManifest {
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (uint(key::VERSION), uint(1)),
            (uint(key::SEQUENCE_NUMBER), uint(self.sequence_number)),
        ];
        let mut common_entries = Vec::new();
        if !self.dependencies.is_empty() {
            let deps = self
                .dependencies
                .iter()
                .map(|(i, prefix)| {
                    let meta = match prefix {
                        Some(p) => map(vec![(
                            uint(crate::codepoints::dependency::PREFIX),
                            encode_component_id(p),
                        )]),
                        None => map(Vec::new()),
                    };
                    (uint(*i), meta)
                })
                .collect();
            common_entries.push((uint(common::DEPENDENCIES), map(deps)));
        }
        if !self.components.is_empty() {
            let ids: Vec<Vec<u8>> = self
                .components
                .iter()
                .map(|c| encode_component_id(c))
                .collect();
            common_entries.push((uint(common::COMPONENTS), array(&ids)));
        }
        if let Some(s) = &self.shared_sequence {
            common_entries.push((uint(common::SHARED_SEQUENCE), bstr(&encode_sequence(s))));
        }
        entries.push((uint(key::COMMON), bstr(&map(common_entries))));
        if let Some(uri) = &self.reference_uri {
            entries.push((uint(key::REFERENCE_URI), tstr(uri)));
        }
        if let Some(id) = &self.manifest_component_id {
            entries.push((uint(key::MANIFEST_COMPONENT_ID), encode_component_id(id)));
        }
        for (k, s) in [
            (key::VALIDATE, &self.validate),
            (key::LOAD, &self.load),
            (key::INVOKE, &self.invoke),
        ] {
            if let Some(s) = s {
                entries.push((uint(k), bstr(&encode_sequence(s))));
            }
        }
        let mut severed = Vec::new();
        let mut severable = |k: u64, content: Vec<u8>, entries: &mut Vec<(Vec<u8>, Vec<u8>)>| {
            if self.sever.contains(&k) {
                let wrapped = bstr(&content);
                entries.push((uint(k), encode_digest(alg, alg.digest(&wrapped).as_bytes())));
                severed.push((k, content));
            } else {
                entries.push((uint(k), bstr(&content)));
            }
        };
        for (k, s) in [
            (key::DEPENDENCY_RESOLUTION, &self.dependency_resolution),
            (key::PAYLOAD_FETCH, &self.payload_fetch),
            (key::CANDIDATE_VERIFICATION, &self.candidate_verification),
            (key::INSTALL, &self.install),
        ] {
            if let Some(s) = s {
                severable(k, encode_sequence(s), &mut entries);
            }
        }
        if !self.text.is_empty() {
            severable(key::TEXT, encode_text(&self.text), &mut entries);
        }
        EncodedManifest {
            manifest: map(entries),
            severed,
        }
    }

    /// Reads a decoded manifest back into the owned model (severed members that are not
    /// inline are left out).
    pub fn from_manifest(m: &Manifest<'_>) -> Self {
        let seq = |s: Option<CommandSequence<'_>>| s.map(|s| owned_sequence(&s));
        let sev = |s: &Option<Severable<'_, CommandSequence<'_>>>| match s {
            Some(Severable::Inline(s)) => Some(owned_sequence(s)),
            _ => None,
        };
        let segments =
            |c: crate::ComponentId<'_>| c.segments().map(<[u8]>::to_vec).collect::<Vec<_>>();
        let text = match m.text {
            Some(Severable::Inline(t)) => t
                .entries()
                .map(|e| match e {
                    TextEntry::Manifest {
                        language,
                        key,
                        text,
                    } => (language.into(), None, key, text.into()),
                    TextEntry::Component {
                        language,
                        component,
                        key,
                        text,
                    } => (language.into(), Some(segments(component)), key, text.into()),
                })
                .collect(),
            _ => Vec::new(),
        };
        Self {
            sequence_number: m.sequence_number,
            reference_uri: m.reference_uri.map(Into::into),
            components: m.components.iter().map(segments).collect(),
            dependencies: m
                .dependencies
                .iter()
                .map(|(i, p)| (i, p.map(segments)))
                .collect(),
            shared_sequence: seq(m.shared_sequence),
            dependency_resolution: sev(&m.dependency_resolution),
            payload_fetch: sev(&m.payload_fetch),
            candidate_verification: sev(&m.candidate_verification),
            install: sev(&m.install),
            validate: seq(m.validate),
            load: seq(m.load),
            invoke: seq(m.invoke),
            text,
            manifest_component_id: m.manifest_component_id.map(segments),
            sever: Vec::new(),
        }
    }
}

/// Groups text fields by language and component into a SUIT_Text_Map.
fn encode_text(fields: &[TextField]) -> Vec<u8> {
    let mut languages: Vec<&str> = fields.iter().map(|f| f.0.as_str()).collect();
    languages.sort_unstable();
    languages.dedup();
    let per_language = languages
        .into_iter()
        .map(|lang| {
            let mine: Vec<&TextField> = fields.iter().filter(|f| f.0 == lang).collect();
            let mut entries: Vec<(Vec<u8>, Vec<u8>)> = mine
                .iter()
                .filter(|f| f.1.is_none())
                .map(|f| (int(f.2), tstr(&f.3)))
                .collect();
            let mut components: Vec<&Vec<Vec<u8>>> =
                mine.iter().filter_map(|f| f.1.as_ref()).collect();
            components.sort();
            components.dedup();
            for c in components {
                let inner = mine
                    .iter()
                    .filter(|f| f.1.as_ref() == Some(c))
                    .map(|f| (int(f.2), tstr(&f.3)))
                    .collect();
                entries.push((encode_component_id(c), map(inner)));
            }
            (tstr(lang), map(entries))
        })
        .collect();
    map(per_language)
}

/// Converts a decoded command sequence to the owned model.
pub fn owned_sequence(seq: &CommandSequence<'_>) -> Vec<Cmd> {
    seq.iter().map(|(_, c)| owned_command(&c)).collect()
}

fn owned_params(map: &crate::ParameterMap<'_>) -> Vec<Param> {
    map.iter().map(|p| owned_param(&p)).collect()
}

fn owned_command(c: &Command<'_>) -> Cmd {
    match c {
        Command::Condition(c, p) => Cmd::Condition(*c, p.0),
        Command::Directive(d, p) => Cmd::Directive(*d, p.0),
        Command::SetComponentIndex(i) => Cmd::SetComponentIndex(match i {
            IndexArg::One(n) => Index::One(*n),
            IndexArg::All => Index::All,
            IndexArg::List(l) => Index::List(l.iter().collect()),
        }),
        Command::TryEach(t) => Cmd::TryEach(
            t.branches().map(|b| owned_sequence(&b)).collect(),
            t.allow_all_fail,
        ),
        Command::RunSequence(s) => Cmd::RunSequence(owned_sequence(s)),
        Command::OverrideParameters(p) => Cmd::OverrideParameters(owned_params(p)),
        Command::SetParameters(p) => Cmd::SetParameters(owned_params(p)),
        Command::OverrideMultiple(mp) => {
            Cmd::OverrideMultiple(mp.iter().map(|(i, p)| (i, owned_params(&p))).collect())
        }
        Command::CopyParams(cp) => {
            let mut per: Vec<(u64, Vec<i64>)> = Vec::new();
            for (src, k) in cp.iter() {
                match per.last_mut() {
                    Some((s, keys)) if *s == src => keys.push(k),
                    _ => per.push((src, vec![k])),
                }
            }
            Cmd::CopyParams(per)
        }
        Command::Custom(id, arg) => Cmd::Custom(
            *id,
            match arg {
                CustomArg::Bytes(b) => CustomValue::Bytes(b.to_vec()),
                CustomArg::Text(t) => CustomValue::Text((*t).into()),
                CustomArg::Int(n) => CustomValue::Int(*n),
                CustomArg::Nil => CustomValue::Nil,
            },
        ),
    }
}

fn owned_param(p: &Parameter<'_>) -> Param {
    match *p {
        Parameter::VendorIdentifier(Identifier::Uuid(b)) => Param::VendorIdentifier(b.to_vec()),
        Parameter::VendorIdentifier(Identifier::Pen(b)) => Param::VendorPen(b.to_vec()),
        Parameter::ClassIdentifier(b) => Param::ClassIdentifier(b.to_vec()),
        Parameter::ImageDigest(d) => Param::ImageDigest(d.algorithm, d.bytes.to_vec()),
        Parameter::UseBefore(n) => Param::UseBefore(n),
        Parameter::ComponentSlot(n) => Param::ComponentSlot(n),
        Parameter::StrictOrder(b) => Param::StrictOrder(b),
        Parameter::SoftFailure(b) => Param::SoftFailure(b),
        Parameter::ImageSize(n) => Param::ImageSize(n),
        Parameter::Content(b) => Param::Content(b.to_vec()),
        Parameter::EncryptionInfo(b) => Param::EncryptionInfo(b.to_vec()),
        Parameter::Uri(s) => Param::Uri(s.into()),
        Parameter::SourceComponent(n) => Param::SourceComponent(n),
        Parameter::InvokeArgs(b) => Param::InvokeArgs(b.to_vec()),
        Parameter::DeviceIdentifier(b) => Param::DeviceIdentifier(b.to_vec()),
        Parameter::FetchArguments(b) => Param::FetchArguments(b.to_vec()),
        Parameter::MinimumBattery(n) => Param::MinimumBattery(n),
        Parameter::UpdatePriority(n) => Param::UpdatePriority(n),
        Parameter::Version(v) => Param::Version(v.comparison, v.version().collect()),
        Parameter::WaitInfo(b) => Param::WaitInfo(b.to_vec()),
        Parameter::ComponentMetadata(b) => Param::ComponentMetadata(b.to_vec()),
        Parameter::DeltaBase(n) => Param::DeltaBase(n),
    }
}

/// The signature and MAC structures an authentication block covers, for a given envelope.
#[derive(Clone, Debug)]
pub struct EnvelopeBuilder {
    manifest: EncodedManifest,
    digest: Vec<u8>,
    blocks: Vec<Vec<u8>>,
    integrated: Vec<(String, Vec<u8>)>,
}

impl EnvelopeBuilder {
    /// Starts an envelope around `manifest`, whose digest is computed with `alg`.
    pub fn new(manifest: &ManifestBuilder, alg: DigestAlgorithm) -> Self {
        Self::from_encoded(manifest.encode(alg), alg)
    }

    /// Starts an envelope around an already encoded manifest.
    pub fn from_encoded(manifest: EncodedManifest, alg: DigestAlgorithm) -> Self {
        let digest = encode_digest(alg, alg.digest(&bstr(&manifest.manifest)).as_bytes());
        Self {
            manifest,
            digest,
            blocks: Vec::new(),
            integrated: Vec::new(),
        }
    }

    /// The encoded SUIT_Digest: the detached payload every authentication block covers.
    pub fn digest_bytes(&self) -> &[u8] {
        &self.digest
    }

    /// The encoded manifest map.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest.manifest
    }

    /// Adds an integrated payload (envelope key `name`, e.g. `"#firmware.bin"`).
    pub fn integrate(&mut self, name: &str, bytes: Vec<u8>) -> &mut Self {
        self.integrated.push((name.into(), bytes));
        self
    }

    /// Adds a COSE_Sign1 block: `sign` receives the Sig_structure bytes and returns the
    /// signature.
    pub fn sign1(
        &mut self,
        alg: i64,
        kid: Option<&[u8]>,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> &mut Self {
        let block = sign1_block(alg, kid, &self.digest, |tbs| {
            Ok::<_, core::convert::Infallible>(sign(tbs))
        });
        let Ok(block) = block;
        self.blocks.push(block);
        self
    }

    /// Adds a COSE_Sign1 block with a signer that can fail.
    ///
    /// # Errors
    /// Whatever `sign` returns.
    pub fn try_sign1<E>(
        &mut self,
        alg: i64,
        kid: Option<&[u8]>,
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<&mut Self, E> {
        let block = sign1_block(alg, kid, &self.digest, sign)?;
        self.blocks.push(block);
        Ok(self)
    }

    /// Adds a COSE_Sign1 block with a caller-encoded protected header map.
    pub fn sign1_with_headers(
        &mut self,
        protected: Vec<u8>,
        kid: Option<&[u8]>,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> &mut Self {
        let tbs = array(&[
            tstr("Signature1"),
            bstr(&protected),
            bstr(&[]),
            bstr(&self.digest),
        ]);
        let signature = sign(&tbs);
        let block = tagged(
            tag::COSE_SIGN1,
            &array(&[
                bstr(&protected),
                unprotected(kid),
                vec![NULL],
                bstr(&signature),
            ]),
        );
        self.blocks.push(block);
        self
    }

    /// Adds a COSE_Mac0 block: `mac` receives the MAC_structure bytes and returns the tag.
    pub fn mac0(
        &mut self,
        alg: i64,
        kid: Option<&[u8]>,
        mac: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> &mut Self {
        let block = mac0_block(alg, kid, &self.digest, |tbs| {
            Ok::<_, core::convert::Infallible>(mac(tbs))
        });
        let Ok(block) = block;
        self.blocks.push(block);
        self
    }

    /// Adds a COSE_Mac0 block with a MAC function that can fail.
    ///
    /// # Errors
    /// Whatever `mac` returns.
    pub fn try_mac0<E>(
        &mut self,
        alg: i64,
        kid: Option<&[u8]>,
        mac: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<&mut Self, E> {
        let block = mac0_block(alg, kid, &self.digest, mac)?;
        self.blocks.push(block);
        Ok(self)
    }

    /// Adds an already encoded authentication block.
    pub fn raw_block(&mut self, block: Vec<u8>) -> &mut Self {
        self.blocks.push(block);
        self
    }

    /// Encodes the tagged envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut auth = vec![bstr(&self.digest)];
        auth.extend(self.blocks.iter().map(|b| bstr(b)));
        let mut entries = vec![
            (uint(env_key::AUTHENTICATION_WRAPPER), bstr(&array(&auth))),
            (uint(env_key::MANIFEST), bstr(&self.manifest.manifest)),
        ];
        for (k, content) in &self.manifest.severed {
            entries.push((uint(*k), bstr(content)));
        }
        for (name, bytes) in &self.integrated {
            entries.push((tstr(name), bstr(bytes)));
        }
        tagged(tag::ENVELOPE, &map(entries))
    }
}

/// Encodes a tagged COSE_Sign1 authentication block over the encoded SUIT_Digest `payload`
/// (detached), with `alg` in the protected header and `kid` in the unprotected one.
///
/// # Errors
/// Whatever `sign` returns.
pub fn sign1_block<E>(
    alg: i64,
    kid: Option<&[u8]>,
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    sign1_block_with_chain(alg, kid, &[], payload, sign)
}

/// As [`sign1_block`], with an X.509 certificate chain (DER, leaf first) in the unprotected
/// `x5chain` header (RFC 9360 §2: one bstr for a single certificate, else an array).
///
/// # Errors
/// Whatever `sign` returns.
pub fn sign1_block_with_chain<E>(
    alg: i64,
    kid: Option<&[u8]>,
    chain: &[Vec<u8>],
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let protected = map(vec![(int(crate::codepoints::header::ALG), int(alg))]);
    let tbs = array(&[
        tstr("Signature1"),
        bstr(&protected),
        bstr(&[]),
        bstr(payload),
    ]);
    let signature = sign(&tbs)?;
    let mut headers = Vec::new();
    if let Some(k) = kid {
        headers.push((int(crate::codepoints::header::KID), bstr(k)));
    }
    match chain {
        [] => {}
        [one] => headers.push((int(crate::codepoints::header::X5CHAIN), bstr(one))),
        many => headers.push((
            int(crate::codepoints::header::X5CHAIN),
            array(&many.iter().map(|c| bstr(c)).collect::<Vec<_>>()),
        )),
    }
    Ok(tagged(
        tag::COSE_SIGN1,
        &array(&[bstr(&protected), map(headers), vec![NULL], bstr(&signature)]),
    ))
}

/// Encodes a tagged COSE_Mac0 authentication block over the encoded SUIT_Digest `payload`.
///
/// # Errors
/// Whatever `mac` returns.
pub fn mac0_block<E>(
    alg: i64,
    kid: Option<&[u8]>,
    payload: &[u8],
    mac: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let protected = map(vec![(int(crate::codepoints::header::ALG), int(alg))]);
    let tbs = array(&[tstr("MAC0"), bstr(&protected), bstr(&[]), bstr(payload)]);
    let tag_bytes = mac(&tbs)?;
    Ok(tagged(
        tag::COSE_MAC0,
        &array(&[
            bstr(&protected),
            unprotected(kid),
            vec![NULL],
            bstr(&tag_bytes),
        ]),
    ))
}

/// Adds authentication blocks to an existing envelope (a countersignature: the operator signs
/// what the author built). The manifest and every other member stay byte-identical, so the
/// manifest digest, and with it every earlier signature, remains valid.
///
/// # Errors
/// [`crate::Error::Malformed`] if `envelope` is not a well-formed envelope.
pub fn add_auth_blocks(envelope: &[u8], blocks: &[Vec<u8>]) -> Result<Vec<u8>, crate::Error> {
    let env = crate::Envelope::decode(envelope)?;
    env.authentication()?;
    let mut r = crate::cbor::Reader::new(envelope);
    r.tag()?;
    let mut m = r.map()?;
    let mut entries = Vec::new();
    while r.next_entry(&mut m).is_some() {
        let key = r.skip()?.to_vec();
        let value_start = r.position();
        let value = r.skip()?;
        let _ = value_start;
        if key == uint(crate::codepoints::envelope::AUTHENTICATION_WRAPPER) {
            let mut w = crate::cbor::Reader::new(value);
            let wrapper = w.bstr()?;
            let mut a = crate::cbor::Reader::new(wrapper);
            let n = a.array()?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(a.skip()?.to_vec());
            }
            items.extend(blocks.iter().map(|b| bstr(b)));
            entries.push((key, bstr(&array(&items))));
        } else {
            entries.push((key, value.to_vec()));
        }
    }
    // Keep the original member order (the auth wrapper first, as decoding checked).
    let mut e = new_enc();
    let _ = e.tag(minicbor::data::Tag::new(tag::ENVELOPE));
    let _ = e.map(entries.len() as u64);
    let mut out = done(e);
    for (k, v) in entries {
        out.extend_from_slice(&k);
        out.extend_from_slice(&v);
    }
    Ok(out)
}

fn unprotected(kid: Option<&[u8]>) -> Vec<u8> {
    match kid {
        Some(k) => map(vec![(int(crate::codepoints::header::KID), bstr(k))]),
        None => map(Vec::new()),
    }
}

/// Low-level encoding helpers for tests and tools that need to build unusual structures.
pub mod raw {
    pub use super::{array, bstr, int, map, tagged, tstr, uint};
}

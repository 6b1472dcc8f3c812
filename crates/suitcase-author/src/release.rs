//! Building a signed release from one or more images.
//!
//! The manifest this writes, per image (component index `i`; encrypted images also use a
//! staging component `s`, the target's identifier with a last segment `staging`):
//!
//! ```text
//! shared:   set-index all; override {vendor-id, class-id}; check vendor; check class
//!           [override {device-id}; check device]
//!           set-index i; override {image-digest (of the plaintext), image-size}
//!           [set-index s; override {image-size (of the ciphertext)}]
//! install:  plaintext:  set-index i; override {uri}; fetch; image-match
//!           encrypted:  set-index s; override {uri}; fetch;
//!                       set-index i; override {encryption-info, source-component s}; copy; image-match
//! validate: set-index i; image-match
//! invoke:   set-index i; invoke              (images marked `invoke = true`)
//! ```
//!
//! The install section is severable when the manifest carries text; the text section is always
//! severed, so a server can strip it for constrained devices.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, Index, ManifestBuilder, Param};
use suitcase_manifest::codepoints::{alg, helper, text};
use suitcase_manifest::{Condition, DigestAlgorithm, Directive};

use crate::error::{AuthorError, Result};
use crate::keys::PublicKey;
use crate::profile::Tier;

/// One image to release.
#[derive(Clone, Debug)]
pub struct ImageInput {
    /// A name for reports (usually the file name).
    pub name: String,
    /// The image.
    pub bytes: Vec<u8>,
    /// The component identifier's segments.
    pub component: Vec<Vec<u8>>,
    /// Where devices fetch the payload; `None` with `integrated` puts it in the envelope.
    pub uri: Option<String>,
    /// Carry the payload inside the envelope (`uri` becomes `#<name>`).
    pub integrated: bool,
    /// Add an invoke section for this component.
    pub invoke: bool,
    /// The image installed on the devices: ship a `suitcase-delta` patch from it instead of
    /// the image (docs/delta.md, "SUIT integration"). Devices running anything else refuse
    /// the release (the manifest names this image by digest), so target them accordingly.
    pub delta_from: Option<Vec<u8>>,
}

/// Everything a release is built from.
#[derive(Clone, Debug)]
pub struct ReleaseRequest {
    /// The sequence number (anti-rollback counter).
    pub sequence: u64,
    /// The security tier.
    pub tier: Tier,
    /// The vendor identifier.
    pub vendor: [u8; 16],
    /// The class identifier.
    pub class: [u8; 16],
    /// A device identifier, to target one device.
    pub device: Option<[u8; 16]>,
    /// The images.
    pub images: Vec<ImageInput>,
    /// Signing keys: key file paths or `pkcs11:` URIs (RFC 7512), see [`crate::signer::open`].
    pub sign: Vec<PathBuf>,
    /// Recipient key files (public keys, or shared KEKs).
    pub encrypt_for: Vec<PathBuf>,
    /// Certificate chain files (PEM, leaf first); each is attached as x5chain to the signer
    /// whose public key its leaf certifies.
    pub x5chain: Vec<PathBuf>,
    /// Content encryption algorithm; the tier's default if `None`.
    pub content: Option<i64>,
    /// suit-reference-uri.
    pub reference_uri: Option<String>,
    /// A description for the text section.
    pub description: Option<String>,
}

/// A payload to serve.
#[derive(Clone, Debug)]
pub struct BuiltPayload {
    /// The image name.
    pub name: String,
    /// Where devices will fetch it (`None` for integrated payloads).
    pub uri: Option<String>,
    /// The bytes to serve: the ciphertext when encrypted.
    pub bytes: Vec<u8>,
    /// Whether `bytes` is ciphertext.
    pub encrypted: bool,
    /// SHA-256 (or the tier's digest) of the plaintext image.
    pub image_digest: Vec<u8>,
    /// The plaintext image size.
    pub image_size: u64,
    /// For a delta release: the digest of the image the patch applies to (`bytes` is then
    /// the patch, or its ciphertext).
    pub delta_from: Option<Vec<u8>>,
    /// For a delta requested where it does not pay: the patch size that was rejected (the
    /// release ships the full image instead).
    pub delta_rejected: Option<usize>,
}

/// A built release.
#[derive(Clone, Debug)]
pub struct BuiltRelease {
    /// The signed envelope.
    pub envelope: Vec<u8>,
    /// The manifest digest.
    pub manifest_digest: Vec<u8>,
    /// The digest algorithm.
    pub digest_algorithm: DigestAlgorithm,
    /// Payloads to serve, one per image.
    pub payloads: Vec<BuiltPayload>,
    /// `(key kind, COSE alg, kid)` of each signature.
    pub signatures: Vec<(String, i64, Vec<u8>)>,
    /// The number of encryption recipients.
    pub recipients: usize,
    /// The manifest's component identifiers.
    pub components: Vec<Vec<Vec<u8>>>,
}

/// Progress reports while building: `(what, bytes done, bytes total)`.
pub type Progress<'p> = &'p mut dyn FnMut(&str, u64, u64);

/// Builds and signs a release.
///
/// # Errors
/// Any key, profile or signing error, described so the user can fix the input.
pub fn build(req: &ReleaseRequest, progress: Progress<'_>) -> Result<BuiltRelease> {
    if req.images.is_empty() {
        return Err(AuthorError::Release(
            "a release needs at least one image".into(),
        ));
    }
    let profile = req.tier.profile();
    let signers: Vec<Box<dyn crate::signer::Signer>> = req
        .sign
        .iter()
        .map(|p| crate::signer::open(p))
        .collect::<Result<_>>()?;
    let signer_publics: Vec<PublicKey> = signers.iter().map(|s| s.public_key().clone()).collect();
    let recipients: Vec<PublicKey> = req
        .encrypt_for
        .iter()
        .map(|p| Ok(crate::keys::load_public(p)?))
        .collect::<Result<_>>()?;
    let content = if recipients.is_empty() {
        None
    } else {
        req.content.or(profile.default_content)
    };
    profile.check(&signer_publics, &recipients, content)?;
    let digest = profile.digest;

    let mut components: Vec<Vec<Vec<u8>>> =
        req.images.iter().map(|i| i.component.clone()).collect();
    for (i, c) in components.iter().enumerate() {
        if components.iter().skip(i + 1).any(|o| o == c) {
            return Err(AuthorError::Release(format!(
                "two images use component {}",
                show_component(c)
            )));
        }
    }
    // Helper components (encryption staging, delta patch and base) follow the images.
    let mut add_helper = |image: &ImageInput, suffix: &[u8]| -> u64 {
        let mut s = image.component.clone();
        s.push(suffix.to_vec());
        components.push(s);
        components.len() as u64 - 1
    };

    let mut shared = vec![
        Cmd::SetComponentIndex(Index::All),
        Cmd::OverrideParameters(vec![
            Param::VendorIdentifier(req.vendor.to_vec()),
            Param::ClassIdentifier(req.class.to_vec()),
        ]),
        Cmd::Condition(Condition::VendorIdentifier, 15),
        Cmd::Condition(Condition::ClassIdentifier, 15),
    ];
    if let Some(device) = req.device {
        shared.push(Cmd::OverrideParameters(vec![Param::DeviceIdentifier(
            device.to_vec(),
        )]));
        shared.push(Cmd::Condition(Condition::DeviceIdentifier, 15));
    }
    let (mut install, mut validate, mut invoke) = (Vec::new(), Vec::new(), Vec::new());
    let mut payloads = Vec::new();
    let mut integrated = Vec::new();
    for (i, image) in req.images.iter().enumerate() {
        let index = i as u64;
        let image_digest = hash_with_progress(digest, &image.bytes, &image.name, progress);
        let size = image.bytes.len() as u64;
        shared.push(Cmd::SetComponentIndex(Index::One(index)));
        shared.push(Cmd::OverrideParameters(vec![
            Param::ImageDigest(digest, image_digest.clone()),
            Param::ImageSize(size),
        ]));
        let uri = match (&image.uri, image.integrated) {
            (Some(u), false) => u.clone(),
            (None, true) => format!("#{}", image.name),
            (Some(_), true) => {
                return Err(AuthorError::Release(format!(
                    "image {}: give a URI or integrated, not both",
                    image.name
                )));
            }
            (None, false) => {
                return Err(AuthorError::Release(format!(
                    "image {}: needs a URI (--uri) or --integrated",
                    image.name
                )));
            }
        };
        let mut delta = match &image.delta_from {
            Some(old) => make_delta(old, image, digest, progress)?,
            None => Delta::None,
        };
        let is_patch = matches!(delta, Delta::Patch { .. });
        let plain = match &mut delta {
            Delta::Patch { patch, .. } => std::mem::take(patch),
            _ => image.bytes.clone(),
        };
        let (served, enc_info) = match content {
            Some(c) => {
                let n = plain.len() as u64;
                progress(&format!("encrypting {}", image.name), 0, n);
                let e = crate::encrypt::encrypt(&plain, c, profile.ecdh_alg, &recipients)?;
                progress(&format!("encrypting {}", image.name), n, n);
                (e.ciphertext, Some(e.info))
            }
            None => (plain, None),
        };
        // Where the fetched bytes land: the component itself for a plain full image, else
        // a staging component the next step copies from (decrypting and/or patching).
        let fetch_into = if enc_info.is_none() && !is_patch {
            index
        } else {
            let staging = add_helper(image, helper::STAGING);
            shared.push(Cmd::SetComponentIndex(Index::One(staging)));
            shared.push(Cmd::OverrideParameters(vec![Param::ImageSize(
                served.len() as u64,
            )]));
            staging
        };
        let base = if let Delta::Patch {
            old_digest,
            old_size,
            ..
        } = &delta
        {
            // Name the installed image by digest before fetching anything (manifest
            // §8.4.9.2 image-match on the base component).
            let base = add_helper(image, helper::INSTALLED);
            shared.push(Cmd::SetComponentIndex(Index::One(base)));
            shared.push(Cmd::OverrideParameters(vec![
                Param::ImageDigest(digest, old_digest.clone()),
                Param::ImageSize(*old_size),
            ]));
            install.extend([
                Cmd::SetComponentIndex(Index::One(base)),
                Cmd::Condition(Condition::ImageMatch, 15),
            ]);
            Some(base)
        } else {
            None
        };
        install.extend([
            Cmd::SetComponentIndex(Index::One(fetch_into)),
            Cmd::OverrideParameters(vec![Param::Uri(uri.clone())]),
            Cmd::Directive(Directive::Fetch, 2),
        ]);
        // The patch (plaintext) is in `patch_at` after the optional decryption.
        let mut patch_at = fetch_into;
        if let Some(info) = &enc_info {
            let to = if is_patch {
                add_helper(image, helper::PATCH)
            } else {
                index
            };
            install.extend([
                Cmd::SetComponentIndex(Index::One(to)),
                Cmd::OverrideParameters(vec![
                    Param::EncryptionInfo(info.clone()),
                    Param::SourceComponent(fetch_into),
                ]),
                Cmd::Directive(Directive::Copy, 2),
            ]);
            patch_at = to;
        }
        if let Some(base) = base {
            install.extend([
                Cmd::SetComponentIndex(Index::One(index)),
                Cmd::OverrideParameters(vec![
                    Param::SourceComponent(patch_at),
                    Param::DeltaBase(base),
                ]),
                Cmd::Directive(Directive::Copy, 2),
            ]);
        }
        install.extend([
            Cmd::SetComponentIndex(Index::One(index)),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]);
        validate.extend([
            Cmd::SetComponentIndex(Index::One(index)),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]);
        if image.invoke {
            invoke.extend([
                Cmd::SetComponentIndex(Index::One(index)),
                Cmd::Directive(Directive::Invoke, 2),
            ]);
        }
        if image.integrated {
            integrated.push((uri.clone(), served.clone()));
        }
        payloads.push(BuiltPayload {
            name: image.name.clone(),
            uri: (!image.integrated).then_some(uri),
            bytes: served,
            encrypted: enc_info.is_some(),
            image_digest,
            image_size: size,
            delta_from: match &delta {
                Delta::Patch { old_digest, .. } => Some(old_digest.clone()),
                _ => None,
            },
            delta_rejected: match delta {
                Delta::DoesNotPay(n) => Some(n),
                _ => None,
            },
        });
    }

    for (i, c) in components.iter().enumerate() {
        if components.iter().skip(i + 1).any(|o| o == c) {
            return Err(AuthorError::Release(format!(
                "component {} is both an image and a helper (staging/patch/installed) of \
                 another image; choose other component ids",
                show_component(c)
            )));
        }
    }
    let mut text_fields = Vec::new();
    if let Some(d) = &req.description {
        text_fields.push(("en".to_owned(), None, text::MANIFEST_DESCRIPTION, d.clone()));
    }
    for image in &req.images {
        text_fields.push((
            "en".to_owned(),
            Some(image.component.clone()),
            text::COMPONENT_DESCRIPTION,
            image.name.clone(),
        ));
    }
    let manifest = ManifestBuilder {
        sequence_number: req.sequence,
        reference_uri: req.reference_uri.clone(),
        components: components.clone(),
        shared_sequence: Some(shared),
        install: Some(install),
        validate: Some(validate),
        invoke: (!invoke.is_empty()).then_some(invoke),
        text: text_fields,
        sever: vec![suitcase_manifest::codepoints::manifest::TEXT],
        ..ManifestBuilder::default()
    };
    let mut envelope = EnvelopeBuilder::new(&manifest, digest);
    for (name, bytes) in integrated {
        envelope.integrate(&name, bytes);
    }
    let chains = req
        .x5chain
        .iter()
        .map(|p| Ok(crate::x509::read_certs(p)?))
        .collect::<Result<Vec<_>>>()?;
    let mut used = vec![false; chains.len()];
    let mut signatures = Vec::new();
    for (signer, public) in signers.iter().zip(&signer_publics) {
        let chain = chain_for(public, &chains, &mut used);
        let block = crate::signer::sign_block(signer.as_ref(), chain, envelope.digest_bytes())?;
        signatures.push((public.kind().to_owned(), block.alg, block.kid.clone()));
        envelope.raw_block(block.bytes);
    }
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(AuthorError::Release(format!(
            "certificate chain {} certifies none of the signing keys",
            req.x5chain
                .get(i)
                .map_or_else(String::new, |p| p.display().to_string())
        )));
    }
    let bytes = envelope.encode();
    let manifest_digest = digest
        .digest(&suitcase_manifest::build::raw::bstr(
            envelope.manifest_bytes(),
        ))
        .as_bytes()
        .to_vec();
    Ok(BuiltRelease {
        envelope: bytes,
        manifest_digest,
        digest_algorithm: digest,
        payloads,
        signatures,
        recipients: recipients.len(),
        components,
    })
}

/// The payload of one image when a delta was asked for.
enum Delta {
    /// No delta asked for.
    None,
    /// A patch from the installed image.
    Patch {
        patch: Vec<u8>,
        old_digest: Vec<u8>,
        old_size: u64,
    },
    /// The delta would have had this many bytes and does not pay: ship the image.
    DoesNotPay(usize),
}

fn make_delta(
    old: &[u8],
    image: &ImageInput,
    alg: DigestAlgorithm,
    progress: Progress<'_>,
) -> Result<Delta> {
    let what = format!("diffing {}", image.name);
    let size = image.bytes.len() as u64;
    progress(&what, 0, size);
    let patch = suitcase_delta::create(old, &image.bytes, &suitcase_delta::Options::default())
        .map_err(|e| AuthorError::Release(format!("image {}: {e}", image.name)))?;
    progress(&what, size, size);
    if patch.header.mode == suitcase_delta::Mode::Full {
        // The encoder found the delta not worth it (suitcase-delta's Strategy::Auto).
        return Ok(Delta::DoesNotPay(
            patch.rejected_delta_bytes.unwrap_or(patch.bytes.len()),
        ));
    }
    Ok(Delta::Patch {
        patch: patch.bytes,
        old_digest: alg.digest(old).as_bytes().to_vec(),
        old_size: old.len() as u64,
    })
}

fn hash_with_progress(
    alg: DigestAlgorithm,
    bytes: &[u8],
    name: &str,
    progress: Progress<'_>,
) -> Vec<u8> {
    let mut h = suitcase_manifest::Hasher::new(alg);
    let total = bytes.len() as u64;
    let what = format!("hashing {name}");
    for (i, chunk) in bytes.chunks(1 << 20).enumerate() {
        h.update(chunk);
        progress(
            &what,
            ((i as u64) << 20)
                .saturating_add(chunk.len() as u64)
                .min(total),
            total,
        );
    }
    progress(&what, total, total);
    h.finish().as_bytes().to_vec()
}

/// The chain (leaf first) whose leaf certifies `public`, if any.
fn chain_for<'c>(
    public: &PublicKey,
    chains: &'c [Vec<Vec<u8>>],
    used: &mut [bool],
) -> &'c [Vec<u8>] {
    let PublicKey::P256(key) = public else {
        return &[];
    };
    for (i, chain) in chains.iter().enumerate() {
        if chain
            .first()
            .and_then(|leaf| crate::x509::p256_public_key(leaf))
            .as_ref()
            == Some(key)
        {
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
            return chain;
        }
    }
    &[]
}

pub use crate::signer::SignedBlock;

/// Adds a signature (a countersignature, e.g. the fleet operator's) to an envelope. The
/// manifest and its digest do not change, so earlier signatures stay valid. `key` is a key
/// file or a `pkcs11:` URI ([`crate::signer::open`]).
///
/// # Errors
/// [`AuthorError::Manifest`] if `envelope` is not a valid envelope; key and signing errors.
pub fn countersign(
    envelope: &[u8],
    key: &Path,
    chain: Option<&Path>,
) -> Result<(Vec<u8>, SignedBlock)> {
    // Check the envelope before opening the key: a token login for a broken envelope wastes
    // a PIN attempt.
    let digest_bytes = check_before_signing(envelope)?;
    let signer = crate::signer::open(key)?;
    countersign_checked(envelope, &digest_bytes, signer.as_ref(), chain)
}

/// As [`countersign`], with any [`crate::signer::Signer`] (a KMS, a remote signing service).
///
/// # Errors
/// As [`countersign`].
pub fn countersign_with(
    envelope: &[u8],
    signer: &dyn crate::signer::Signer,
    chain: Option<&Path>,
) -> Result<(Vec<u8>, SignedBlock)> {
    let digest_bytes = check_before_signing(envelope)?;
    countersign_checked(envelope, &digest_bytes, signer, chain)
}

/// [`countersign_with`] once [`check_before_signing`] gave `digest_bytes`.
fn countersign_checked(
    envelope: &[u8],
    digest_bytes: &[u8],
    signer: &dyn crate::signer::Signer,
    chain: Option<&Path>,
) -> Result<(Vec<u8>, SignedBlock)> {
    let certs = chain
        .map(crate::x509::read_certs)
        .transpose()?
        .unwrap_or_default();
    let block = crate::signer::sign_block(signer, &certs, digest_bytes)?;
    let out =
        suitcase_manifest::build::add_auth_blocks(envelope, std::slice::from_ref(&block.bytes))?;
    Ok((out, block))
}

/// The encoded SUIT_Digest to sign, once the manifest is checked against it.
fn check_before_signing(envelope: &[u8]) -> Result<Vec<u8>> {
    let env = suitcase_manifest::Envelope::decode(envelope)?;
    let auth = env.authentication()?;
    // A signing application "MUST verify the suit-manifest element against the SUIT_Digest
    // prior to signing" (manifest §8.3).
    if !auth
        .digest
        .matches_value(&env.manifest_digest(auth.digest.algorithm))
    {
        return Err(AuthorError::Release(
            "the envelope's manifest does not match its digest; refusing to sign it".into(),
        ));
    }
    Ok(auth.digest_bytes.to_vec())
}

/// A component identifier for people: `["00"]`-style hex segments.
pub fn show_component(c: &[Vec<u8>]) -> String {
    let segs: Vec<String> = c
        .iter()
        .map(|s| format!("\"{}\"", hex::encode(s)))
        .collect();
    format!("[{}]", segs.join(", "))
}

/// Parses a component identifier from hex segments separated by `/` or `,` (`00`, `00/01`).
///
/// # Errors
/// [`AuthorError::Release`] for bad hex.
pub fn parse_component(text: &str) -> Result<Vec<Vec<u8>>> {
    text.split(['/', ','])
        .map(|s| {
            hex::decode(s.trim()).map_err(|_| {
                AuthorError::Release(format!(
                    "component segment {s:?} is not hex (e.g. --component 00)"
                ))
            })
        })
        .collect()
}

/// RELEASE.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseFile {
    /// The sequence number, or `"timestamp"` for the current UTC time in seconds.
    pub sequence: SequenceSpec,
    /// basic | upgraded | enhanced | quantum.
    pub profile: String,
    /// Vendor: a domain name (turned into a UUIDv5) or a UUID.
    pub vendor: String,
    /// Class: a name (UUIDv5 under the vendor) or a UUID.
    pub class: String,
    /// Optional device identifier (UUID) to target one device.
    pub device: Option<String>,
    /// Signing keys: key files (relative to RELEASE.toml) or `pkcs11:` URIs.
    #[serde(default)]
    pub sign: Vec<PathBuf>,
    /// Recipient key files.
    #[serde(default)]
    pub encrypt_for: Vec<PathBuf>,
    /// Certificate chain files (PEM, leaf first) for the signing keys.
    #[serde(default)]
    pub x5chain: Vec<PathBuf>,
    /// Content algorithm: a128gcm | a256gcm | a128ctr | a256ctr.
    pub content: Option<String>,
    /// suit-reference-uri.
    pub reference_uri: Option<String>,
    /// A description for the text section.
    pub description: Option<String>,
    /// The images.
    #[serde(rename = "image")]
    pub images: Vec<ImageFile>,
}

/// A sequence number or `"timestamp"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SequenceSpec {
    /// An explicit number.
    Number(u64),
    /// `"timestamp"`.
    Word(String),
}

/// One `[[image]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    /// The image file.
    pub file: PathBuf,
    /// Component id as hex segments: `"00"` or `["00"]` or `["6170", "01"]`.
    pub component: ComponentSpec,
    /// Fetch URI.
    pub uri: Option<String>,
    /// Carry the payload in the envelope.
    #[serde(default)]
    pub integrated: bool,
    /// Add an invoke section.
    #[serde(default)]
    pub invoke: bool,
    /// Where to write the payload to serve (default: next to the envelope).
    pub payload_out: Option<PathBuf>,
    /// The image installed on the devices: ship a delta patch from it.
    pub delta_from: Option<PathBuf>,
}

/// A component id in TOML.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ComponentSpec {
    /// `"00"` or `"00/01"`.
    One(String),
    /// `["00", "01"]`.
    Segments(Vec<String>),
}

impl ReleaseFile {
    /// Reads and resolves a RELEASE.toml (paths relative to the file).
    ///
    /// # Errors
    /// [`AuthorError::Read`] or [`AuthorError::Release`] naming the problem.
    pub fn load(path: &Path) -> Result<(ReleaseRequest, Vec<Option<PathBuf>>)> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthorError::Read {
            path: path.to_path_buf(),
            error: source,
        })?;
        let file: Self = toml::from_str(&text)
            .map_err(|e| AuthorError::Release(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let tier = Tier::from_name(&file.profile).ok_or_else(|| {
            AuthorError::Release(format!(
                "profile {:?}: use basic, upgraded, enhanced or quantum",
                file.profile
            ))
        })?;
        let sequence = match file.sequence {
            SequenceSpec::Number(n) => n,
            SequenceSpec::Word(w) if w == "timestamp" => now(),
            SequenceSpec::Word(w) => {
                return Err(AuthorError::Release(format!(
                    "sequence {w:?}: a number or \"timestamp\""
                )));
            }
        };
        let vendor = crate::uuid::vendor(&file.vendor);
        let class = crate::uuid::class(&vendor, &file.class);
        let device = file
            .device
            .as_deref()
            .map(|d| {
                crate::uuid::parse(d)
                    .ok_or_else(|| AuthorError::Release(format!("device {d:?} is not a UUID")))
            })
            .transpose()?;
        let mut images = Vec::new();
        let mut outs = Vec::new();
        for img in &file.images {
            let p = rel(&img.file);
            let bytes = std::fs::read(&p).map_err(|source| AuthorError::Read {
                path: p.clone(),
                error: source,
            })?;
            let component = match &img.component {
                ComponentSpec::One(s) => parse_component(s)?,
                ComponentSpec::Segments(v) => v
                    .iter()
                    .map(|s| {
                        hex::decode(s).map_err(|_| {
                            AuthorError::Release(format!("component segment {s:?} is not hex"))
                        })
                    })
                    .collect::<Result<_>>()?,
            };
            let name = p
                .file_name()
                .map_or_else(|| "image".to_owned(), |n| n.to_string_lossy().into_owned());
            let delta_from = match &img.delta_from {
                Some(old) => {
                    let old = rel(old);
                    Some(std::fs::read(&old).map_err(|source| AuthorError::Read {
                        path: old.clone(),
                        error: source,
                    })?)
                }
                None => None,
            };
            images.push(ImageInput {
                name,
                bytes,
                component,
                uri: img.uri.clone(),
                integrated: img.integrated,
                invoke: img.invoke,
                delta_from,
            });
            outs.push(img.payload_out.as_deref().map(rel));
        }
        let request = ReleaseRequest {
            sequence,
            tier,
            vendor,
            class,
            device,
            images,
            // A `pkcs11:` URI names a token object, not a file next to RELEASE.toml.
            sign: file
                .sign
                .iter()
                .map(|p| {
                    if crate::signer::pkcs11_uri(p).is_some() {
                        p.clone()
                    } else {
                        rel(p)
                    }
                })
                .collect(),
            encrypt_for: file.encrypt_for.iter().map(|p| rel(p)).collect(),
            x5chain: file.x5chain.iter().map(|p| rel(p)).collect(),
            content: file.content.as_deref().map(content_alg).transpose()?,
            reference_uri: file.reference_uri,
            description: file.description,
        };
        Ok((request, outs))
    }
}

/// Seconds since 1970 (sequence numbers as timestamps, manifest §8.4.3).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses a content algorithm name.
///
/// # Errors
/// [`AuthorError::Release`] listing the names.
pub fn content_alg(name: &str) -> Result<i64> {
    match name {
        "a128gcm" => Ok(alg::A128GCM),
        "a256gcm" => Ok(alg::A256GCM),
        "a128ctr" => Ok(alg::A128CTR),
        "a256ctr" => Ok(alg::A256CTR),
        _ => Err(AuthorError::Release(format!(
            "content algorithm {name:?}: use a128gcm, a256gcm, a128ctr or a256ctr"
        ))),
    }
}

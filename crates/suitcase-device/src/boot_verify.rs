//! The lean boot-time verifier (issue 20): what a bootloader checks at reset, streamed from
//! flash, without the SUIT command interpreter.
//!
//! [`BootVerifier`] reads the slot image (`[header | envelope | image]`) through
//! `ReadNorFlash` a CBOR item head at a time; nothing of the envelope is copied into RAM except
//! the authentication wrapper (the SUIT_Digest and the COSE blocks, a few hundred bytes for a
//! classical signature). In order:
//!
//! 1. the envelope's outer structure: tag 107, a map whose first member is the authentication
//!    wrapper (manifest §8.3), then the manifest bstr, severable members and at most 8
//!    integrated payloads, nothing unknown, no duplicate key;
//! 2. the manifest digest: the manifest bstr is hashed from flash and compared with the
//!    wrapper's SUIT_Digest (manifest §8.3), before anything in it is parsed (manifest §6.2);
//! 3. the signatures: the COSE blocks are checked over that SUIT_Digest against the trust
//!    anchors under the policy ([`Authentication::verify_signatures`], manifest §8.3; RFC 9019
//!    §4, authenticity of the firmware before it is invoked);
//! 4. only now the manifest: version 1 (manifest §8.4.1), the sequence number reported as the
//!    security version for the bootloader's anti-rollback counter (RFC 9019 §6, manifest
//!    §8.4.2), the component list (the slot's component must be in it);
//! 5. every severable member present in the envelope matches its digest in the manifest
//!    (manifest §8.4.12), then the signers must be allowed to have the slot's component
//!    invoked (manifest §9);
//! 6. the shared sequence and then the validate section, interpreted for the commands a boot
//!    decision needs: set-component-index, override- and set-parameters (vendor, class and
//!    device identifiers, image digest and size), the vendor, class and device identifier
//!    conditions (manifest §8.4.9.1; RFC 9019 §4, the image is for this device) and
//!    image-match (manifest §8.4.9.2), which hashes the image in flash. The validate section
//!    must run image-match on the slot's component (manifest §7.2, trusted invocation).
//!
//! Anything else in those two sequences (try-each, run-sequence, other conditions, soft
//! failure, dependencies) is refused: the lean path fails closed on what it does not
//! interpret, and the full processor ([`crate::SuitVerifier`], [`crate::consumer`]) keeps
//! those for installation. docs/boot-path.md says why these checks are enough at boot.
//!
//! The hash functions are a type parameter ([`BootHash`]): [`Sha256Only`] links SHA-256 alone
//! (manifest §10: the one every processor must implement), [`Hasher`] every algorithm the
//! manifest crate accepts (the Quantum tier's SHAKE256).

use core::fmt;
use core::marker::PhantomData;

use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind, ReadNorFlash};
use suitcase_boot::{
    ImageDigest, ImageIndex, ImageVerifier, Measurement, SecurityVersion, VerifyError,
};
use suitcase_manifest::codepoints::{command, common, manifest as mkey, param, tag};
use suitcase_manifest::{
    Actions, AuthError, Authentication, ComponentId, DigestAlgorithm, Error as ManifestError,
    Hasher, MAX_COMPONENTS, MAX_DIGEST_LEN, SEVERABLE_KEYS, Signers, TrustAnchor, TrustPolicy,
};

use crate::verifier::{DeviceIdentity, HEADER_SIZE, SlotHeader};

/// Component selections are bit sets.
const _: () = assert!(MAX_COMPONENTS <= 32);

/// Severable members (manifest §8.4.12 and the extensions), in the envelope under the same key:
/// the full decoder's list.
const SEVERABLE: [u64; SEVERABLE_KEYS.len()] = SEVERABLE_KEYS;

/// Integrated payloads (text keys) an envelope may carry at boot: each key's position is kept to
/// refuse a duplicate; more are refused (the boot path reads none of them).
const MAX_INTEGRATED: usize = 8;

/// Bytes hashed per flash read.
const CHUNK: usize = 64;
const CHUNK_U32: u32 = 64;

/// Why the boot path refused a slot: one variant per check, so that tests (and a bootloader's
/// log) can tell which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BootRefusal {
    /// The slot is erased.
    Empty,
    /// The slot could not be read.
    Flash(NorFlashErrorKind),
    /// The slot header is not a valid header, or points outside the slot.
    BadHeader,
    /// The envelope or manifest is not well-formed CBOR of the expected shape.
    Malformed {
        /// Offset in the slot.
        at: u32,
        /// What is wrong.
        what: &'static str,
    },
    /// The authentication wrapper is larger than the buffer this verifier was built with.
    AuthenticationTooLarge {
        /// Its length.
        len: u32,
    },
    /// A digest algorithm this boot path is not built with (or that SUIT refuses).
    UnsupportedDigest {
        /// The COSE algorithm id.
        alg: i64,
    },
    /// The manifest does not hash to the authentication wrapper's SUIT_Digest (manifest §8.3).
    ManifestDigestMismatch,
    /// The signatures do not authenticate the SUIT_Digest (manifest §8.3): the manifest
    /// crate's reason (no trusted signer, threshold, ...).
    Unauthenticated(ManifestError),
    /// The manifest's version is not 1 (manifest §8.4.1).
    ManifestVersion {
        /// The version found.
        version: u64,
    },
    /// A severable member in the envelope does not match its digest (manifest §8.4.12).
    SeveredMemberMismatch {
        /// The member's key.
        key: u64,
    },
    /// Something the boot path does not interpret: it fails closed.
    Unsupported {
        /// What it is.
        what: &'static str,
        /// Its number (command, parameter or member key).
        id: i64,
    },
    /// The manifest names no component with the slot's component identifier.
    ComponentNotFound,
    /// No verified signer may have the slot's component invoked (manifest §9).
    NotAuthorized(AuthError),
    /// A condition needs a parameter that was never set (manifest §8.4.9.1, §8.4.9.2: the
    /// condition fails).
    MissingParameter {
        /// The parameter.
        parameter: i64,
        /// The component index.
        component: usize,
    },
    /// The vendor-identifier condition failed: the image is for another vendor.
    VendorMismatch {
        /// The component index.
        component: usize,
    },
    /// The class-identifier condition failed: the image is for another class of device.
    ClassMismatch {
        /// The component index.
        component: usize,
    },
    /// The device-identifier condition failed.
    DeviceMismatch {
        /// The component index.
        component: usize,
    },
    /// The declared image size is larger than the image in the slot.
    TooLarge {
        /// The declared size.
        size: u64,
        /// The image length in the slot header.
        capacity: u32,
    },
    /// image-match failed: the image in flash does not hash to the manifest's digest, or the
    /// condition names a component that is not in this slot.
    ImageMismatch {
        /// The component index.
        component: usize,
    },
    /// The validate section does not run image-match on the slot's component, so the manifest
    /// proves nothing about the image (manifest §7.2).
    NoImageMatch,
}

impl fmt::Display for BootRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no image in the slot"),
            Self::Flash(kind) => write!(f, "slot unreadable: {kind}"),
            Self::BadHeader => f.write_str("bad slot header"),
            Self::Malformed { at, what } => write!(f, "malformed at {at}: {what}"),
            Self::AuthenticationTooLarge { len } => {
                write!(f, "authentication wrapper of {len} bytes is too large")
            }
            Self::UnsupportedDigest { alg } => write!(f, "digest algorithm {alg} not supported"),
            Self::ManifestDigestMismatch => f.write_str("manifest digest mismatch"),
            Self::Unauthenticated(e) => write!(f, "not authenticated: {e}"),
            Self::ManifestVersion { version } => write!(f, "manifest version {version}"),
            Self::SeveredMemberMismatch { key } => write!(f, "severed member {key} mismatch"),
            Self::Unsupported { what, id } => write!(f, "unsupported at boot: {what} {id}"),
            Self::ComponentNotFound => f.write_str("the slot's component is not in the manifest"),
            Self::NotAuthorized(e) => write!(f, "not authorized: {e:?}"),
            Self::MissingParameter {
                parameter,
                component,
            } => write!(f, "parameter {parameter} not set for component {component}"),
            Self::VendorMismatch { component } => write!(f, "vendor mismatch ({component})"),
            Self::ClassMismatch { component } => write!(f, "class mismatch ({component})"),
            Self::DeviceMismatch { component } => write!(f, "device mismatch ({component})"),
            Self::TooLarge { size, capacity } => {
                write!(
                    f,
                    "image size {size} exceeds the {capacity} bytes in the slot"
                )
            }
            Self::ImageMismatch { component } => write!(f, "image mismatch ({component})"),
            Self::NoImageMatch => f.write_str("validate does not check the image"),
        }
    }
}

impl core::error::Error for BootRefusal {}

impl From<BootRefusal> for VerifyError {
    fn from(refusal: BootRefusal) -> Self {
        match refusal {
            BootRefusal::Empty => Self::Empty,
            BootRefusal::Flash(kind) => Self::Flash(kind),
            _ => Self::Rejected,
        }
    }
}

/// The hash functions a boot path is built with.
pub trait BootHash: Sized {
    /// A fresh state for `algorithm`; `None` if this set does not have it.
    fn start(algorithm: DigestAlgorithm) -> Option<Self>;
    /// Absorbs `data`.
    fn update(&mut self, data: &[u8]);
    /// Writes the digest to the start of `out` and returns its length.
    fn finish(self, out: &mut [u8; MAX_DIGEST_LEN]) -> usize;
}

/// SHA-256 alone (manifest §10: "SHA-256 (-16) MUST be implemented by all Manifest
/// Processors"): a bootloader for SHA-256 releases links no SHA-512 or SHAKE.
#[derive(Clone, Debug)]
pub struct Sha256Only(sha2::Sha256);

impl BootHash for Sha256Only {
    fn start(algorithm: DigestAlgorithm) -> Option<Self> {
        (algorithm == DigestAlgorithm::Sha256).then(|| Self(sha2::Digest::new()))
    }

    fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.0, data);
    }

    fn finish(self, out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
        let digest = sha2::Digest::finalize(self.0);
        for (o, d) in out.iter_mut().zip(digest.iter()) {
            *o = *d;
        }
        digest.len()
    }
}

/// Every digest the manifest crate accepts (SHA-256/384/512, SHAKE128/256).
impl BootHash for Hasher {
    fn start(algorithm: DigestAlgorithm) -> Option<Self> {
        Some(Self::new(algorithm))
    }

    fn update(&mut self, data: &[u8]) {
        Self::update(self, data);
    }

    fn finish(self, out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
        let value = Self::finish(self);
        let bytes = value.as_bytes();
        for (o, d) in out.iter_mut().zip(bytes) {
            *o = *d;
        }
        bytes.len()
    }
}

/// How the boot path decides that an envelope is authentic and who may have its component
/// invoked: [`Anchors`] (trust anchors under a policy, through the manifest crate's COSE
/// decoder: any number of signers, thresholds, post-quantum and hybrid signatures) or
/// [`OneKey`](crate::OneKey) (one built-in key, COSE_Sign1 read by the boot path's own CBOR
/// reader: the smallest bootloader).
pub trait Authority {
    /// Who signed: what [`Authority::authorize`] needs.
    type Signers: Copy;

    /// Checks the authentication wrapper at `wrapper` in the slot: its structure, that the
    /// manifest bstr at `manifest` (with its head) hashes to the wrapper's SUIT_Digest
    /// (manifest §8.3) before anything in the manifest is parsed (manifest §6.2), then the
    /// signatures over that SUIT_Digest (manifest §8.3; RFC 9019 §4). `AUTH` is the RAM the
    /// verifier was built with for a wrapper that must be held whole.
    ///
    /// # Errors
    /// The check that failed.
    fn authenticate<H: BootHash, F: ReadNorFlash, const AUTH: usize>(
        &self,
        c: &mut Cursor<'_, F>,
        wrapper: Span,
        manifest: Span,
    ) -> Result<Self::Signers, BootRefusal>;

    /// Manifest §9: whether `signers` may have `component` invoked.
    ///
    /// # Errors
    /// [`BootRefusal::NotAuthorized`].
    fn authorize(
        &self,
        signers: Self::Signers,
        component: &ComponentId<'_>,
    ) -> Result<(), BootRefusal>;
}

/// Trust anchors under a policy: the wrapper is copied into `AUTH` bytes of RAM and decoded by
/// the manifest crate ([`Authentication::decode`], [`Authentication::verify_signatures`]), as
/// the full processor does.
#[derive(Debug)]
pub struct Anchors<'k> {
    anchors: &'k [TrustAnchor<'k>],
    policy: TrustPolicy<'k>,
}

impl Authority for Anchors<'_> {
    type Signers = Signers;

    fn authenticate<H: BootHash, F: ReadNorFlash, const AUTH: usize>(
        &self,
        c: &mut Cursor<'_, F>,
        wrapper: Span,
        manifest: Span,
    ) -> Result<Signers, BootRefusal> {
        let mut buf = [0u8; AUTH];
        let raw = buf
            .get_mut(..wrapper.len as usize)
            .ok_or(BootRefusal::AuthenticationTooLarge { len: wrapper.len })?;
        c.flash.read(wrapper.at, raw).map_err(flash)?;
        let auth = Authentication::decode(raw).map_err(BootRefusal::Unauthenticated)?;
        if !c.digest_is::<H>(
            manifest,
            auth.digest.algorithm,
            Expected::Ram(auth.digest.bytes),
        )? {
            return Err(BootRefusal::ManifestDigestMismatch);
        }
        auth.verify_signatures(self.anchors, &self.policy)
            .map_err(BootRefusal::Unauthenticated)
    }

    fn authorize(&self, signers: Signers, component: &ComponentId<'_>) -> Result<(), BootRefusal> {
        signers
            .authorize(component, Actions::INVOKE, self.anchors, &self.policy)
            .map_err(BootRefusal::NotAuthorized)
    }
}

/// The lean SUIT secure-boot verifier: `H` the hash functions it links, `AUTH` the bytes of
/// RAM for the authentication wrapper (the only part of the envelope held in memory, by
/// [`Anchors`]; [`OneKey`](crate::OneKey) reads it from flash and needs none), `A` how it
/// authenticates.
#[derive(Debug)]
pub struct BootVerifier<'k, H, const AUTH: usize, A = Anchors<'k>> {
    auth: A,
    identity: DeviceIdentity<'k>,
    /// The component identifier the image of each [`ImageIndex`] has in the manifest.
    components: &'k [ComponentId<'k>],
    hash: PhantomData<fn() -> H>,
}

impl<'k, H: BootHash, const AUTH: usize> BootVerifier<'k, H, AUTH> {
    /// A verifier trusting `anchors` under `policy`; `components[i]` is the component id of
    /// image `i` (e.g. `[h'00']`).
    pub fn new(
        anchors: &'k [TrustAnchor<'k>],
        policy: TrustPolicy<'k>,
        identity: DeviceIdentity<'k>,
        components: &'k [ComponentId<'k>],
    ) -> Self {
        Self::with_authority(Anchors { anchors, policy }, identity, components)
    }
}

impl<'k, H: BootHash, const AUTH: usize, A: Authority> BootVerifier<'k, H, AUTH, A> {
    /// A verifier that authenticates with `auth`; `components[i]` is the component id of
    /// image `i` (e.g. `[h'00']`).
    pub fn with_authority(
        auth: A,
        identity: DeviceIdentity<'k>,
        components: &'k [ComponentId<'k>],
    ) -> Self {
        Self {
            auth,
            identity,
            components,
            hash: PhantomData,
        }
    }

    /// Checks the slot image of `image` in `slot` (module docs: every check, in order) and
    /// returns its measurement: the image digest, the manifest's sequence number as the
    /// security version, and the bytes the slot image occupies.
    ///
    /// # Errors
    /// The first check that failed, as a [`BootRefusal`].
    pub fn check<F: ReadNorFlash>(
        &self,
        image: ImageIndex,
        slot: &mut F,
    ) -> Result<Measurement, BootRefusal> {
        let component = *self
            .components
            .get(usize::from(image.0))
            .ok_or(BootRefusal::ComponentNotFound)?;
        let mut raw = [0u8; HEADER_SIZE as usize];
        slot.read(0, &mut raw).map_err(flash)?;
        let header = SlotHeader::parse(&raw)
            .map_err(|_| BootRefusal::BadHeader)?
            .ok_or(BootRefusal::Empty)?;
        let end = u64::from(header.image_offset) + u64::from(header.image_len);
        if end > slot.capacity() as u64 {
            return Err(BootRefusal::BadHeader);
        }
        let size = u32::try_from(end).map_err(|_| BootRefusal::BadHeader)?;
        let envelope_end = HEADER_SIZE
            .checked_add(header.envelope_len)
            .ok_or(BootRefusal::BadHeader)?;
        let mut c = Cursor {
            flash: slot,
            pos: HEADER_SIZE,
            end: envelope_end,
        };
        let outer = Outer::read(&mut c)?;

        // Manifest §8.3 and §6.2: the digest and the signatures, before the manifest is parsed.
        let signers =
            self.auth
                .authenticate::<H, F, AUTH>(&mut c, outer.auth, outer.manifest_wrapped)?;

        let manifest = Manifest::read(&mut c, outer.manifest, &component)?;
        // Manifest §8.4.12: each severed member carried in the envelope against its digest.
        for ((key, carried), digest) in SEVERABLE.iter().zip(outer.severed).zip(manifest.severed) {
            let Some(carried) = carried else { continue };
            let (alg, want) = digest.ok_or(BootRefusal::Malformed {
                at: carried.at,
                what: text!("envelope carries a member that the manifest does not sever"),
            })?;
            if !c.digest_is::<H>(carried, alg, Expected::Flash(want))? {
                return Err(BootRefusal::SeveredMemberMismatch { key: *key });
            }
        }
        // Manifest §9: the signers may have this component invoked.
        self.auth.authorize(signers, &component)?;

        let mut run = Run::<H> {
            me: manifest.me,
            count: manifest.count,
            ids: [Ids::default(); MAX_COMPONENTS],
            digest: None,
            size: None,
            image: Span {
                at: header.image_offset,
                len: header.image_len,
            },
            identity: self.identity,
            matched: false,
            hash: PhantomData,
        };
        if let Some(shared) = manifest.shared {
            run.sequence(&mut c, shared, false)?;
        }
        let validate = manifest.validate.ok_or(BootRefusal::NoImageMatch)?;
        run.sequence(&mut c, validate, true)?;
        // Manifest §7.2: validate = image-match on the image to be invoked.
        let (Some((_, digest)), true) = (run.digest, run.matched) else {
            return Err(BootRefusal::NoImageMatch);
        };
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        // The manifest's image digest, not the slot header, is what does not fit.
        let bad_digest = BootRefusal::Malformed {
            at: digest.at,
            what: text!("image digest too long"),
        };
        let bytes = bytes.get_mut(..digest.len as usize).ok_or(bad_digest)?;
        c.flash.read(digest.at, bytes).map_err(flash)?;
        Ok(Measurement {
            digest: ImageDigest::new(bytes).ok_or(bad_digest)?,
            security_version: SecurityVersion(manifest.sequence),
            size,
        })
    }
}

impl<H: BootHash, const AUTH: usize, A: Authority> ImageVerifier for BootVerifier<'_, H, AUTH, A> {
    fn verify<F: ReadNorFlash>(
        &mut self,
        image: ImageIndex,
        slot: &mut F,
    ) -> Result<Measurement, VerifyError> {
        Ok(self.check(image, slot)?)
    }
}

pub(crate) fn flash<E: NorFlashError>(e: E) -> BootRefusal {
    BootRefusal::Flash(e.kind())
}

/// Bytes in the slot: `len` bytes from offset `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub(crate) at: u32,
    pub(crate) len: u32,
}

impl Span {
    fn end(self) -> u32 {
        self.at.saturating_add(self.len)
    }
}

/// What a digest is compared with.
pub(crate) enum Expected<'a> {
    Ram(&'a [u8]),
    Flash(Span),
}

/// A CBOR reader over the slot, between `pos` and `end`. Definite lengths only (manifest §8.1:
/// deterministic encoding; the full decoder refuses indefinite lengths too).
#[derive(Debug)]
pub struct Cursor<'f, F> {
    pub(crate) flash: &'f mut F,
    pub(crate) pos: u32,
    pub(crate) end: u32,
}

impl<F: ReadNorFlash> Cursor<'_, F> {
    pub(crate) fn malformed(&self, what: &'static str) -> BootRefusal {
        BootRefusal::Malformed { at: self.pos, what }
    }

    pub(crate) fn advance(&mut self, n: u32) -> Result<u32, BootRefusal> {
        let at = self.pos;
        self.pos = at
            .checked_add(n)
            .filter(|next| *next <= self.end)
            .ok_or(self.malformed(text!("item runs past its container")))?;
        Ok(at)
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<(), BootRefusal> {
        let n = u32::try_from(buf.len()).map_err(|_| self.malformed(text!("too long")))?;
        let at = self.advance(n)?;
        self.flash.read(at, buf).map_err(flash)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, BootRefusal> {
        let mut b = [0u8; 1];
        self.read(&mut b)?;
        let [b] = b;
        Ok(b)
    }

    /// The next item's major type, without consuming it.
    pub(crate) fn peek(&mut self) -> Result<u8, BootRefusal> {
        let at = self.pos;
        let b = self.byte()?;
        self.pos = at;
        Ok(b >> 5)
    }

    /// An item head: (major type, argument). Simple values keep their 5-bit code.
    pub(crate) fn head(&mut self) -> Result<(u8, u64), BootRefusal> {
        let initial = self.byte()?;
        let n = match initial & 0x1f {
            info @ 0..=23 => return Ok((initial >> 5, u64::from(info))),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(self.malformed(text!("indefinite length or reserved CBOR item"))),
        };
        let mut b = [0u8; 8];
        let arg = b.get_mut(..n).unwrap_or_default();
        self.read(arg)?;
        Ok((
            initial >> 5,
            arg.iter().fold(0, |a, x| (a << 8) | u64::from(*x)),
        ))
    }

    pub(crate) fn expect(&mut self, major: u8, what: &'static str) -> Result<u64, BootRefusal> {
        let at = self.pos;
        match self.head()? {
            (m, arg) if m == major => Ok(arg),
            _ => Err(BootRefusal::Malformed { at, what }),
        }
    }

    pub(crate) fn int(&mut self, what: &'static str) -> Result<i64, BootRefusal> {
        let at = self.pos;
        let value = match self.head()? {
            (0, n) => i64::try_from(n).ok(),
            (1, n) => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        };
        value.ok_or(BootRefusal::Malformed { at, what })
    }

    pub(crate) fn bstr(&mut self, what: &'static str) -> Result<Span, BootRefusal> {
        let len = self.expect(2, what)?;
        let len = u32::try_from(len).map_err(|_| self.malformed(what))?;
        Ok(Span {
            at: self.advance(len)?,
            len,
        })
    }

    /// Skips one item of any depth, iteratively (no recursion: a hostile nesting depth costs
    /// no stack), never past `end`.
    pub(crate) fn skip(&mut self) -> Result<(), BootRefusal> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let (major, arg) = self.head()?;
            let more = match major {
                2 | 3 => {
                    let n = u32::try_from(arg).map_err(|_| self.malformed(text!("too long")))?;
                    self.advance(n)?;
                    0
                }
                4 => arg,
                5 => arg.saturating_mul(2),
                6 => 1,
                _ => 0,
            };
            pending = pending.saturating_add(more);
            // Every pending item takes at least a byte.
            if pending > u64::from(self.end.saturating_sub(self.pos)) {
                return Err(self.malformed(text!("container holds more items than bytes")));
            }
        }
        Ok(())
    }

    /// Descends into a bstr holding CBOR; returns the outer end for [`Cursor::leave`].
    pub(crate) fn enter(&mut self, span: Span) -> u32 {
        let outer = self.end;
        self.pos = span.at;
        self.end = span.end();
        outer
    }

    pub(crate) fn leave(&mut self, outer: u32, what: &'static str) -> Result<(), BootRefusal> {
        if self.pos != self.end {
            return Err(self.malformed(what));
        }
        self.end = outer;
        Ok(())
    }

    /// Whether the bytes at `span` equal `bytes`.
    pub(crate) fn equals(&mut self, span: Span, bytes: &[u8]) -> Result<bool, BootRefusal> {
        if span.len as usize != bytes.len() {
            return Ok(false);
        }
        let mut buf = [0u8; 16];
        let mut same = true;
        let mut at = span.at;
        for want in bytes.chunks(buf.len()) {
            let got = buf.get_mut(..want.len()).unwrap_or_default();
            self.flash.read(at, got).map_err(flash)?;
            same &= got == want;
            at = at.saturating_add(16);
        }
        Ok(same)
    }

    /// Whether the bytes at `a` equal the bytes at `b` (both in the slot).
    pub(crate) fn same(&mut self, a: Span, b: Span) -> Result<bool, BootRefusal> {
        if a.len != b.len {
            return Ok(false);
        }
        let (mut x, mut y) = ([0u8; 16], [0u8; 16]);
        let mut off = 0;
        while off < a.len {
            let n = (a.len - off).min(16);
            let (x, y) = (
                x.get_mut(..n as usize).unwrap_or_default(),
                y.get_mut(..n as usize).unwrap_or_default(),
            );
            self.flash
                .read(a.at.saturating_add(off), x)
                .map_err(flash)?;
            self.flash
                .read(b.at.saturating_add(off), y)
                .map_err(flash)?;
            if x != y {
                return Ok(false);
            }
            off += n;
        }
        Ok(true)
    }

    /// Reads `span` from the slot a chunk at a time into `f` (a hash or signature state).
    pub(crate) fn feed(&mut self, span: Span, mut f: impl FnMut(&[u8])) -> Result<(), BootRefusal> {
        let mut buf = [0u8; CHUNK];
        let mut at = span.at;
        while at < span.end() {
            let n = (span.end() - at).min(CHUNK_U32);
            let chunk = buf.get_mut(..n as usize).unwrap_or_default();
            self.flash.read(at, chunk).map_err(flash)?;
            f(chunk);
            at += n;
        }
        Ok(())
    }

    /// Hashes `span` with `algorithm` and compares the result with `expected`.
    pub(crate) fn digest_is<H: BootHash>(
        &mut self,
        span: Span,
        algorithm: DigestAlgorithm,
        expected: Expected<'_>,
    ) -> Result<bool, BootRefusal> {
        let mut h = H::start(algorithm).ok_or(BootRefusal::UnsupportedDigest {
            alg: algorithm.cose_id(),
        })?;
        self.feed(span, |chunk| h.update(chunk))?;
        let mut got = [0u8; MAX_DIGEST_LEN];
        let n = h.finish(&mut got);
        let got = got.get(..n).unwrap_or_default();
        // Digests are public values; the comparison need not be constant time, but it is.
        let mut want = [0u8; MAX_DIGEST_LEN];
        let want = match expected {
            Expected::Ram(bytes) => bytes,
            Expected::Flash(span) => {
                let w = want
                    .get_mut(..span.len as usize)
                    .ok_or(self.malformed(text!("digest too long")))?;
                self.flash.read(span.at, w).map_err(flash)?;
                w
            }
        };
        Ok(got.len() == want.len()
            && got.iter().zip(want).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0)
    }
}

/// The envelope's members, located.
struct Outer {
    auth: Span,
    /// The manifest bstr with its head: what the SUIT_Digest covers.
    manifest_wrapped: Span,
    manifest: Span,
    /// Severable members carried in the envelope, with their heads, by `SEVERABLE` position.
    severed: [Option<Span>; 6],
}

impl Outer {
    fn read<F: ReadNorFlash>(c: &mut Cursor<'_, F>) -> Result<Self, BootRefusal> {
        if c.head()? != (6, tag::ENVELOPE) {
            return Err(c.malformed(text!("envelope must be CBOR tag 107")));
        }
        let n = c.expect(5, text!("envelope must be a map"))?;
        let (mut auth, mut manifest) = (None, None);
        let mut severed = [None; 6];
        let mut seen = 0u64;
        let mut texts = [Span { at: 0, len: 0 }; MAX_INTEGRATED];
        let mut n_texts = 0;
        for i in 0..n {
            // Manifest §8.3: "The suit-authentication-wrapper MUST come before any element in
            // the SUIT_Envelope, regardless of canonical encoding of CBOR. All validators MUST
            // reject any SUIT_Envelope that begins with any element other than a
            // suit-authentication-wrapper": an integrated payload first is refused too.
            if i == 0 && c.peek()? != 0 {
                return Err(
                    c.malformed(text!("envelope must begin with the authentication wrapper"))
                );
            }
            if c.peek()? == 3 {
                // Integrated payloads: `tstr => bstr`; nothing at boot reads them, but a
                // duplicate key is refused as the full decoder refuses it (RFC 8949 §5.6).
                let len = c.expect(3, text!("envelope key must be an unsigned integer or text"))?;
                let len = u32::try_from(len).map_err(|_| c.malformed(text!("too long")))?;
                let key = Span {
                    at: c.advance(len)?,
                    len,
                };
                for earlier in texts.get(..n_texts).unwrap_or_default() {
                    if c.same(*earlier, key)? {
                        return Err(BootRefusal::Malformed {
                            at: key.at,
                            what: text!("duplicate envelope member"),
                        });
                    }
                }
                *texts.get_mut(n_texts).ok_or(BootRefusal::Unsupported {
                    what: text!("more integrated payloads than the boot path tracks"),
                    id: MAX_INTEGRATED as i64,
                })? = key;
                n_texts += 1;
                c.bstr(text!("integrated payload must be a bstr"))?;
                continue;
            }
            let key = c.expect(0, text!("envelope key must be an unsigned integer or text"))?;
            if i == 0 && key != 2 {
                return Err(
                    c.malformed(text!("envelope must begin with the authentication wrapper"))
                );
            }
            if key >= 64 || seen & (1 << key) != 0 {
                return Err(c.malformed(text!("duplicate or unknown envelope member")));
            }
            seen |= 1 << key;
            let head = c.pos;
            let value = c.bstr(text!("envelope member must be a bstr"))?;
            let wrapped = Span {
                at: head,
                len: value.end() - head,
            };
            match key {
                2 => auth = Some(value),
                3 => manifest = Some((wrapped, value)),
                _ => {
                    let j = SEVERABLE.iter().position(|k| *k == key).ok_or(
                        BootRefusal::Unsupported {
                            what: text!("envelope member"),
                            id: key as i64,
                        },
                    )?;
                    if let Some(slot) = severed.get_mut(j) {
                        *slot = Some(wrapped);
                    }
                }
            }
        }
        if c.pos != c.end {
            return Err(c.malformed(text!("trailing bytes after envelope")));
        }
        let auth = auth.ok_or(c.malformed(text!("envelope has no authentication wrapper")))?;
        let (manifest_wrapped, manifest) =
            manifest.ok_or(c.malformed(text!("envelope has no manifest")))?;
        Ok(Self {
            auth,
            manifest_wrapped,
            manifest,
            severed,
        })
    }
}

/// What the boot decision needs from an authenticated manifest.
struct Manifest {
    sequence: u64,
    /// How many components; the slot's component's index.
    count: usize,
    me: usize,
    shared: Option<Span>,
    validate: Option<Span>,
    /// The digests of severed members, by `SEVERABLE` position.
    severed: [Option<(DigestAlgorithm, Span)>; 6],
}

impl Manifest {
    fn read<F: ReadNorFlash>(
        c: &mut Cursor<'_, F>,
        span: Span,
        component: &ComponentId<'_>,
    ) -> Result<Self, BootRefusal> {
        let outer = c.enter(span);
        let n = c.expect(5, text!("manifest must be a map"))?;
        let (mut version, mut sequence, mut common) = (None, None, None);
        let (mut validate, mut severed) = (None, [None; 6]);
        let mut seen = 0u64;
        for _ in 0..n {
            let key = c.expect(0, text!("manifest key must be an unsigned integer"))?;
            if key < 64 && seen & (1 << key) != 0 {
                return Err(c.malformed(text!("duplicate manifest member")));
            }
            seen |= 1 << key.min(63);
            match key {
                mkey::VERSION => version = Some(c.expect(0, text!("version must be a uint"))?),
                mkey::SEQUENCE_NUMBER => {
                    sequence = Some(c.expect(0, text!("sequence number must be a uint"))?);
                }
                mkey::COMMON => common = Some(c.bstr(text!("suit-common must be a bstr"))?),
                mkey::VALIDATE => validate = Some(c.bstr(text!("suit-validate must be a bstr"))?),
                // Not used at boot; the full processor checks them at install time.
                mkey::REFERENCE_URI
                | mkey::MANIFEST_COMPONENT_ID
                | mkey::SET_VERSION
                | mkey::LOAD
                | mkey::INVOKE
                | mkey::UNINSTALL => c.skip()?,
                _ => {
                    let j = SEVERABLE.iter().position(|k| *k == key).ok_or(
                        BootRefusal::Unsupported {
                            what: text!("manifest member"),
                            id: key as i64,
                        },
                    )?;
                    if c.peek()? == 4 {
                        // Severed: SUIT_Digest = [algorithm-id, digest-bytes].
                        let digest = read_digest(c)?;
                        if let Some(slot) = severed.get_mut(j) {
                            *slot = Some(digest);
                        }
                    } else {
                        c.bstr(text!("severable member must be a bstr or a digest"))?;
                    }
                }
            }
        }
        c.leave(outer, text!("trailing bytes after manifest"))?;
        match version {
            Some(1) => {}
            Some(version) => return Err(BootRefusal::ManifestVersion { version }),
            None => return Err(c.malformed(text!("manifest has no version"))),
        }
        let sequence = sequence.ok_or(c.malformed(text!("manifest has no sequence number")))?;
        let common = common.ok_or(c.malformed(text!("manifest has no suit-common")))?;

        let outer = c.enter(common);
        let n = c.expect(5, text!("suit-common must be a map"))?;
        let (mut found, mut shared, mut seen) = (None, None, 0u8);
        for _ in 0..n {
            let key = c.expect(0, text!("suit-common key must be an unsigned integer"))?;
            if key >= 8 || seen & (1 << key) != 0 {
                return Err(c.malformed(text!("duplicate or unknown suit-common member")));
            }
            seen |= 1 << key;
            match key {
                common::COMPONENTS => found = Some(components(c, component)?),
                common::SHARED_SEQUENCE => {
                    shared = Some(c.bstr(text!("shared sequence must be a bstr"))?);
                }
                _ => {
                    return Err(BootRefusal::Unsupported {
                        what: text!("suit-common member"),
                        id: key as i64,
                    });
                }
            }
        }
        c.leave(outer, text!("trailing bytes after suit-common"))?;
        let (count, me) = found.ok_or(c.malformed(text!("suit-common has no components")))?;
        Ok(Self {
            sequence,
            count,
            me: me.ok_or(BootRefusal::ComponentNotFound)?,
            shared,
            validate,
            severed,
        })
    }
}

/// The component list: how many, and where `component` is in it.
fn components<F: ReadNorFlash>(
    c: &mut Cursor<'_, F>,
    component: &ComponentId<'_>,
) -> Result<(usize, Option<usize>), BootRefusal> {
    let n = c.expect(4, text!("components must be an array"))?;
    let count = usize::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_COMPONENTS).contains(n))
        .ok_or(c.malformed(text!("component count out of range")))?;
    let mut me = None;
    for i in 0..count {
        let at = c.pos;
        if c.peek()? != 4 {
            return Err(c.malformed(text!("component identifier must be an array")));
        }
        c.skip()?;
        let id = Span {
            at,
            len: c.pos - at,
        };
        if me.is_none() && c.equals(id, component.as_cbor())? {
            me = Some(i);
        }
    }
    Ok((count, me))
}

/// A SUIT_Digest at the cursor: the algorithm and where its bytes are.
pub(crate) fn read_digest<F: ReadNorFlash>(
    c: &mut Cursor<'_, F>,
) -> Result<(DigestAlgorithm, Span), BootRefusal> {
    if c.expect(4, text!("SUIT_Digest must be an array"))? != 2 {
        return Err(c.malformed(text!("SUIT_Digest must be [algorithm-id, digest-bytes]")));
    }
    let id = c.int(text!("digest algorithm must be an integer"))?;
    let algorithm =
        DigestAlgorithm::from_cose(id).map_err(|_| BootRefusal::UnsupportedDigest { alg: id })?;
    let bytes = c.bstr(text!("digest bytes must be a bstr"))?;
    if bytes.len as usize != algorithm.output_len() {
        return Err(c.malformed(text!("digest length does not match its algorithm")));
    }
    Ok((algorithm, bytes))
}

/// The identity parameters of one component. The vendor identifier may be a UUID (bstr) or a
/// CBOR-PEN (tag 112), which never equals a UUID identity.
#[derive(Clone, Copy, Debug, Default)]
struct Ids {
    vendor: Option<Option<Span>>,
    class: Option<Span>,
    device: Option<Span>,
}

/// The state of the shared and validate sequences: the identity parameters of every
/// component (conditions on any of them must hold, as in the full processor), and the image
/// digest and size of the slot's component.
struct Run<'k, H> {
    me: usize,
    count: usize,
    ids: [Ids; MAX_COMPONENTS],
    digest: Option<(DigestAlgorithm, Span)>,
    size: Option<u64>,
    image: Span,
    identity: DeviceIdentity<'k>,
    /// Whether image-match held on the slot's component in the validate section.
    matched: bool,
    hash: PhantomData<fn() -> H>,
}

/// Manifest §8.4.8: override-parameters replaces; set-parameters (trust-domains) only fills
/// parameters that are not set yet.
fn put<T>(slot: &mut Option<T>, value: T, overrides: bool) {
    if overrides || slot.is_none() {
        *slot = Some(value);
    }
}

impl<H: BootHash> Run<'_, H> {
    /// Runs one command sequence (manifest §8.4.6: the component index starts at 0).
    fn sequence<F: ReadNorFlash>(
        &mut self,
        c: &mut Cursor<'_, F>,
        span: Span,
        validate: bool,
    ) -> Result<(), BootRefusal> {
        let outer = c.enter(span);
        let n = c.expect(4, text!("command sequence must be an array"))?;
        if n % 2 != 0 {
            return Err(c.malformed(text!("command sequence must hold command/argument pairs")));
        }
        let mut selected: u32 = 1;
        for i in 0..n / 2 {
            let id = c.int(text!("command must be an integer"))?;
            // Manifest §6.2: "If the manifest contains more than one component, each command
            // sequence MUST begin with a Set Component Index".
            if i == 0 && self.count > 1 && id != command::SET_COMPONENT_INDEX {
                return Err(c.malformed(
                    text!("with several components, each command sequence must begin with set-component-index"),
                ));
            }
            match id {
                command::SET_COMPONENT_INDEX => selected = self.select(c)?,
                command::SET_PARAMETERS if !validate => {
                    // As the full processor's validation (trust-domains §6: set-parameters is
                    // for dependents filling in defaults, never in a shared sequence).
                    return Err(c.malformed(text!(
                        "set-parameters is not allowed in the shared sequence"
                    )));
                }
                command::OVERRIDE_PARAMETERS | command::SET_PARAMETERS => {
                    self.parameters(c, selected, id == command::OVERRIDE_PARAMETERS)?;
                }
                command::VENDOR_IDENTIFIER
                | command::CLASS_IDENTIFIER
                | command::DEVICE_IDENTIFIER
                | command::IMAGE_MATCH => {
                    // The reporting policy changes what is reported, not what is checked.
                    c.expect(0, text!("reporting policy must be a uint"))?;
                    for index in (0..self.count).filter(|i| selected & (1 << i) != 0) {
                        self.condition(c, id, index, validate)?;
                    }
                }
                _ => {
                    return Err(BootRefusal::Unsupported {
                        what: text!("command"),
                        id,
                    });
                }
            }
        }
        c.leave(outer, text!("trailing bytes after command sequence"))
    }

    /// set-component-index (manifest §8.4.10.1): an index, `true` for all, or a list.
    fn select<F: ReadNorFlash>(&self, c: &mut Cursor<'_, F>) -> Result<u32, BootRefusal> {
        let bit = |c: &Cursor<'_, F>, i: u64| {
            usize::try_from(i)
                .ok()
                .filter(|i| *i < self.count)
                .map(|i| 1u32 << i)
                .ok_or(c.malformed(text!("component index out of range")))
        };
        match c.head()? {
            (0, i) => bit(c, i),
            (7, 21) => Ok(u32::MAX >> (32 - self.count)),
            (4, n) => {
                let mut set = 0;
                for _ in 0..n {
                    let i = c.expect(0, text!("component index must be a uint"))?;
                    set |= bit(c, i)?;
                }
                Ok(set)
            }
            _ => Err(c.malformed(text!("component index must be a uint, true or an array"))),
        }
    }

    fn parameters<F: ReadNorFlash>(
        &mut self,
        c: &mut Cursor<'_, F>,
        selected: u32,
        overrides: bool,
    ) -> Result<(), BootRefusal> {
        let n = c.expect(5, text!("parameters must be a map"))?;
        let mine = selected & (1 << self.me) != 0;
        let mut seen = 0u64;
        for _ in 0..n {
            let key = c.int(text!("parameter key must be an integer"))?;
            if (0..64).contains(&key) {
                if seen & (1 << key) != 0 {
                    return Err(c.malformed(text!("duplicate parameter")));
                }
                seen |= 1 << key;
            }
            let targets = (0..self.count).filter(|i| selected & (1 << i) != 0);
            match key {
                param::VENDOR_IDENTIFIER => {
                    let uuid = if c.peek()? == 2 {
                        Some(c.bstr(text!("vendor identifier"))?)
                    } else {
                        // CBOR-PEN (RFC 9090): kept as "not a UUID".
                        c.skip()?;
                        None
                    };
                    for i in targets {
                        if let Some(ids) = self.ids.get_mut(i) {
                            put(&mut ids.vendor, uuid, overrides);
                        }
                    }
                }
                param::CLASS_IDENTIFIER | param::DEVICE_IDENTIFIER => {
                    let value = c.bstr(text!("identifier must be a bstr"))?;
                    for i in targets {
                        if let Some(ids) = self.ids.get_mut(i) {
                            let slot = if key == param::CLASS_IDENTIFIER {
                                &mut ids.class
                            } else {
                                &mut ids.device
                            };
                            put(slot, value, overrides);
                        }
                    }
                }
                param::IMAGE_DIGEST => {
                    let wrapped = c.bstr(text!("image digest must be a bstr"))?;
                    let outer = c.enter(wrapped);
                    let digest = read_digest(c)?;
                    c.leave(outer, text!("trailing bytes after SUIT_Digest"))?;
                    if mine {
                        put(&mut self.digest, digest, overrides);
                    }
                }
                param::IMAGE_SIZE => {
                    let size = c.expect(0, text!("image size must be a uint"))?;
                    // As the full processor: a declared size the component cannot hold is
                    // refused when it is set (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION).
                    if mine && size > u64::from(self.image.len) {
                        return Err(BootRefusal::TooLarge {
                            size,
                            capacity: self.image.len,
                        });
                    }
                    if mine {
                        put(&mut self.size, size, overrides);
                    }
                }
                param::SOFT_FAILURE => match c.head()? {
                    (7, 20) => {}
                    (7, 21) => {
                        return Err(BootRefusal::Unsupported {
                            what: text!("parameter"),
                            id: key,
                        });
                    }
                    _ => return Err(c.malformed(text!("soft-failure must be a bool"))),
                },
                // Parameters for installation (URI, encryption info, ...): not used at boot.
                _ => c.skip()?,
            }
        }
        Ok(())
    }

    fn condition<F: ReadNorFlash>(
        &mut self,
        c: &mut Cursor<'_, F>,
        id: i64,
        index: usize,
        validate: bool,
    ) -> Result<(), BootRefusal> {
        let ids = self.ids.get(index).copied().unwrap_or_default();
        let missing = |parameter| BootRefusal::MissingParameter {
            parameter,
            component: index,
        };
        let component = index;
        match id {
            // Manifest §8.4.9.1: the parameter already set against the device's own value;
            // "If no ID has been set, this condition fails."
            command::VENDOR_IDENTIFIER => {
                let want = ids.vendor.ok_or(missing(param::VENDOR_IDENTIFIER))?;
                let matches = match want {
                    Some(span) => c.equals(span, self.identity.vendor)?,
                    None => false,
                };
                if !matches {
                    return Err(BootRefusal::VendorMismatch { component });
                }
            }
            command::CLASS_IDENTIFIER => {
                let want = ids.class.ok_or(missing(param::CLASS_IDENTIFIER))?;
                if !c.equals(want, self.identity.class)? {
                    return Err(BootRefusal::ClassMismatch { component });
                }
            }
            command::DEVICE_IDENTIFIER => {
                let want = ids.device.ok_or(missing(param::DEVICE_IDENTIFIER))?;
                let device = self.identity.device.unwrap_or_default();
                if self.identity.device.is_none() || !c.equals(want, device)? {
                    return Err(BootRefusal::DeviceMismatch { component });
                }
            }
            // Manifest §8.4.9.2: the component's content against image-digest (over
            // image-size bytes when set); "If no digest is specified, the condition fails."
            _ => {
                if index != self.me {
                    return Err(BootRefusal::ImageMismatch { component });
                }
                let (algorithm, want) = self.digest.ok_or(missing(param::IMAGE_DIGEST))?;
                let image = Span {
                    at: self.image.at,
                    len: self
                        .size
                        .map_or(self.image.len, |s| u32::try_from(s).unwrap_or(u32::MAX)),
                };
                if !c.digest_is::<H>(image, algorithm, Expected::Flash(want))? {
                    return Err(BootRefusal::ImageMismatch { component });
                }
                self.matched |= validate;
            }
        }
        Ok(())
    }
}

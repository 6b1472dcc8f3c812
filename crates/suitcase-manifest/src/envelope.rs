//! SUIT_Envelope (manifest §8.2) and its authentication (manifest §8.3, §6.2).

use crate::auth::{Signers, TrustAnchor, TrustPolicy, VerificationOutcome};
use crate::cbor::{Kind, Reader, decode_exact};
use crate::codepoints::{envelope as key, manifest as mkey, tag};
use crate::cose::AuthBlock;
use crate::digest::{DigestValue, SuitDigest};
use crate::error::{AuthError, Error, Unsupported};
use crate::manifest::{Manifest, Severable};

/// Severable members that may appear in the envelope, by key (manifest §8.4.12 and the
/// extensions that define severable members). The boot path (`suitcase-device`) reuses this list.
pub const SEVERABLE_KEYS: [u64; 6] = [
    mkey::COSWID,
    mkey::DEPENDENCY_RESOLUTION,
    mkey::PAYLOAD_FETCH,
    mkey::CANDIDATE_VERIFICATION,
    mkey::INSTALL,
    mkey::TEXT,
];

/// A decoded but **unauthenticated** envelope.
///
/// Decoding checks only the envelope's own structure. Nothing in the manifest is parsed until
/// [`Envelope::verify`] has authenticated it (manifest §6.2: "The manifest processor MUST verify
/// the signature of the manifest prior to parsing/executing any section of the manifest").
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    raw: &'a [u8],
    /// The authentication wrapper's content: `[bstr(SUIT_Digest), * bstr(auth block)]`.
    auth_wrapper: &'a [u8],
    /// The manifest bstr including its CBOR header: what the SUIT_Digest covers.
    manifest_wrapped: &'a [u8],
    /// The manifest map.
    manifest: &'a [u8],
    /// The encoded envelope map, for lookups of severed members and integrated payloads.
    members: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Decodes a tagged SUIT envelope (`#6.107(SUIT_Envelope)`), refusing trailing bytes,
    /// duplicate keys, indefinite lengths and a wrong member order.
    ///
    /// # Errors
    /// [`Error::Malformed`] or [`Error::UnsupportedCritical`] (an envelope member that is not
    /// defined).
    pub fn decode(raw: &'a [u8]) -> Result<Self, Error> {
        decode_exact(raw, "trailing bytes after envelope", |r| {
            let at = r.position();
            if r.tag()? != tag::ENVELOPE {
                return Err(Error::Malformed {
                    at,
                    what: "envelope must be CBOR tag 107",
                });
            }
            let start = r.position();
            let mut map = r.map()?;
            let (mut auth_wrapper, mut manifest) = (None, None);
            while let Some((index, key_start)) = r.next_entry(&mut map) {
                // Manifest §8.3: "The suit-authentication-wrapper MUST come before any element
                // in the SUIT_Envelope, regardless of canonical encoding of CBOR. All validators
                // MUST reject any SUIT_Envelope that begins with any element other than a
                // suit-authentication-wrapper". An integrated payload (a text key) is such an
                // element too; every public example puts them after the manifest.
                if r.kind()? == Kind::Text {
                    if index == 0 {
                        return Err(Error::Malformed {
                            at: key_start,
                            what: "envelope must begin with the authentication wrapper",
                        });
                    }
                    // Integrated payloads and dependencies: `* tstr => bstr`.
                    r.tstr()?;
                    r.check_unique(&map, index, key_start)?;
                    r.bstr()?;
                    continue;
                }
                let k = r.int()?;
                r.check_unique(&map, index, key_start)?;
                // Manifest §8.3, as above.
                if index == 0 && k != key::AUTHENTICATION_WRAPPER as i64 {
                    return Err(Error::Malformed {
                        at: key_start,
                        what: "envelope must begin with the authentication wrapper",
                    });
                }
                match u64::try_from(k).unwrap_or(u64::MAX) {
                    key::AUTHENTICATION_WRAPPER => auth_wrapper = Some(r.bstr()?),
                    key::MANIFEST => manifest = Some(r.bstr_with_header()?),
                    k if SEVERABLE_KEYS.contains(&k) => {
                        r.bstr()?;
                    }
                    _ => {
                        return Err(Error::UnsupportedCritical {
                            what: Unsupported::EnvelopeMember,
                            id: k,
                        });
                    }
                }
            }
            let members = r.since(start);
            let auth_wrapper = auth_wrapper.ok_or(Error::Malformed {
                at: start,
                what: "envelope has no authentication wrapper",
            })?;
            let (manifest_wrapped, manifest) = manifest.ok_or(Error::Malformed {
                at: start,
                what: "envelope has no manifest",
            })?;
            Ok(Self {
                raw,
                auth_wrapper,
                manifest_wrapped,
                manifest,
                members,
            })
        })
    }

    /// The whole encoded envelope.
    pub fn as_cbor(&self) -> &'a [u8] {
        self.raw
    }

    /// The manifest bytes (the map, without its bstr header).
    pub fn manifest_bytes(&self) -> &'a [u8] {
        self.manifest
    }

    /// The bstr-wrapped manifest, as covered by the SUIT_Digest.
    pub fn manifest_wrapped(&self) -> &'a [u8] {
        self.manifest_wrapped
    }

    /// The SUIT_Digest claimed by the authentication wrapper, and the authentication blocks.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the wrapper is not `[bstr(SUIT_Digest), * bstr(COSE block)]`.
    pub fn authentication(&self) -> Result<Authentication<'a>, Error> {
        Authentication::decode(self.auth_wrapper)
    }

    /// A member of the envelope by integer key, as `(bstr with header, content)`.
    pub fn member(&self, k: u64) -> Option<(&'a [u8], &'a [u8])> {
        let mut r = Reader::new(self.members);
        let n = r.map().ok()?.len;
        for _ in 0..n {
            let is_key = r.kind().ok()? == Kind::Uint && r.clone().uint().ok()? == k;
            r.skip().ok()?;
            if is_key {
                return r.bstr_with_header().ok();
            }
            r.skip().ok()?;
        }
        None
    }

    /// An integrated payload or dependency by its envelope key (e.g. `"#firmware.bin"`).
    pub fn integrated(&self, name: &str) -> Option<&'a [u8]> {
        self.integrated_payloads()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Every integrated payload: `(key, bytes)`.
    pub fn integrated_payloads(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let mut r = Reader::new(self.members);
        let n = r.map().map(|m| m.len).unwrap_or(0);
        (0..n).filter_map(move |_| {
            if r.kind().ok()? == Kind::Text {
                let name = r.tstr().ok()?;
                Some(Some((name, r.bstr().ok()?)))
            } else {
                r.skip().ok()?;
                r.skip().ok()?;
                Some(None)
            }
            .flatten()
        })
    }

    /// Computes the digest of the manifest with `algorithm`.
    pub fn manifest_digest(&self, algorithm: crate::DigestAlgorithm) -> DigestValue {
        algorithm.digest(self.manifest_wrapped)
    }

    /// Authenticates the envelope against `anchors` under `policy`, then parses and validates
    /// the manifest. This is the only way to obtain a [`VerifiedManifest`].
    ///
    /// Steps, in the order the specification requires:
    /// 1. the SUIT_Digest in the authentication wrapper must match the manifest bstr;
    /// 2. at least one authentication block must verify against a trusted anchor (and the
    ///    policy's threshold must be met);
    /// 3. only then is the manifest parsed; its version must be 1;
    /// 4. each severed member in the envelope must match its digest in the manifest;
    /// 5. every command sequence is parsed and checked (known commands and parameters, nesting,
    ///    component indices) before any command runs.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for any authentication failure, otherwise the first
    /// structural or policy error found.
    pub fn verify(
        &self,
        anchors: &[TrustAnchor<'_>],
        policy: &TrustPolicy<'_>,
    ) -> Result<VerifiedManifest<'a>, Error> {
        let auth = self.authentication()?;
        // Manifest §8.3 / RFC 9019 §6: the digest binds the signatures to this manifest.
        let digest = self.manifest_digest(auth.digest.algorithm);
        if !auth.digest.matches_value(&digest) {
            return Err(Error::Unauthenticated(AuthError::DigestMismatch));
        }
        let signers = crate::auth::verify_blocks(&auth, anchors, policy)?;
        let manifest = Manifest::parse(self.manifest)?;
        let sections = self.resolve_severed(&manifest)?;
        crate::validate::validate(&manifest, &sections)?;
        let outcome = crate::auth::authorize(&manifest, signers, anchors, policy)?;
        Ok(VerifiedManifest {
            envelope: *self,
            manifest,
            digest,
            outcome,
            sections,
        })
    }

    fn resolve_severed(&self, m: &Manifest<'a>) -> Result<Sections<'a>, Error> {
        let mut out = Sections::default();
        for k in SEVERABLE_KEYS {
            let in_envelope = self.member(k);
            let digest = match (k, in_envelope.is_some()) {
                (mkey::COSWID, _) => severed_digest(m.coswid.as_ref()),
                (mkey::DEPENDENCY_RESOLUTION, _) => {
                    severed_digest(m.dependency_resolution.as_ref())
                }
                (mkey::PAYLOAD_FETCH, _) => severed_digest(m.payload_fetch.as_ref()),
                (mkey::CANDIDATE_VERIFICATION, _) => {
                    severed_digest(m.candidate_verification.as_ref())
                }
                (mkey::INSTALL, _) => severed_digest(m.install.as_ref()),
                (_, _) => severed_digest(m.text.as_ref()),
            };
            let Some((wrapped, content)) = in_envelope else {
                continue;
            };
            // Manifest §8.4.12: a severed member is checked against "a SUIT_Digest of the bstr"
            // in the manifest; a member in the envelope that the manifest does not sever has no
            // digest to check it with and is refused.
            let Some(digest) = digest else {
                return Err(Error::Malformed {
                    at: 0,
                    what: "envelope carries a member that the manifest does not sever",
                });
            };
            if !digest.matches(wrapped) {
                return Err(Error::SeveredMemberMismatch { key: k });
            }
            match k {
                mkey::DEPENDENCY_RESOLUTION => {
                    out.dependency_resolution = Some(crate::CommandSequence::decode(content)?);
                }
                mkey::PAYLOAD_FETCH => {
                    out.payload_fetch = Some(crate::CommandSequence::decode(content)?)
                }
                mkey::CANDIDATE_VERIFICATION => {
                    out.candidate_verification = Some(crate::CommandSequence::decode(content)?);
                }
                mkey::INSTALL => out.install = Some(crate::CommandSequence::decode(content)?),
                mkey::TEXT => out.text = Some(crate::manifest::Text::decode(content)?),
                _ => {
                    decode_exact(content, "trailing bytes after CoSWID", |c| c.skip())?;
                    out.coswid = Some(content);
                }
            }
        }
        Ok(out)
    }
}

fn severed_digest<'a, T>(member: Option<&Severable<'a, T>>) -> Option<SuitDigest<'a>> {
    match member {
        Some(Severable::Severed(d)) => Some(*d),
        _ => None,
    }
}

/// The severed members found in the envelope and checked against their digests.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sections<'a> {
    pub(crate) dependency_resolution: Option<crate::CommandSequence<'a>>,
    pub(crate) payload_fetch: Option<crate::CommandSequence<'a>>,
    pub(crate) candidate_verification: Option<crate::CommandSequence<'a>>,
    pub(crate) install: Option<crate::CommandSequence<'a>>,
    pub(crate) text: Option<crate::manifest::Text<'a>>,
    pub(crate) coswid: Option<&'a [u8]>,
}

/// The authentication wrapper, decoded: `[bstr .cbor SUIT_Digest, * bstr .cbor auth block]`.
#[derive(Clone, Copy, Debug)]
pub struct Authentication<'a> {
    /// The claimed manifest digest.
    pub digest: SuitDigest<'a>,
    /// The encoded SUIT_Digest: the detached COSE payload.
    pub digest_bytes: &'a [u8],
    raw: &'a [u8],
    blocks: u64,
}

impl<'a> Authentication<'a> {
    /// Decodes the content of a `suit-authentication-wrapper` bstr:
    /// `[bstr .cbor SUIT_Digest, * bstr .cbor SUIT_Authentication_Block]` (manifest §8.3).
    /// Only the structure is checked; nothing is authenticated yet.
    ///
    /// A boot-time verifier that streams the envelope from flash holds only this wrapper in
    /// RAM, then calls [`Authentication::verify_signatures`] and hashes the manifest itself.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `raw` is not that array, or a block is not a COSE structure
    /// SUIT allows; [`Error::UnsupportedAlgorithm`] for a digest algorithm this crate refuses.
    pub fn decode(raw: &'a [u8]) -> Result<Self, Error> {
        decode_exact(raw, "trailing bytes after authentication wrapper", |r| {
            let n = r.array()?;
            if n == 0 {
                return Err(r.malformed("authentication wrapper must start with a SUIT_Digest"));
            }
            let digest_bytes = r.bstr()?;
            let digest = SuitDigest::decode(digest_bytes)?;
            for _ in 1..n {
                AuthBlock::decode(r.bstr()?)?;
            }
            Ok(Self {
                digest,
                digest_bytes,
                raw,
                blocks: n - 1,
            })
        })
    }

    /// Checks the authentication blocks over the wrapper's SUIT_Digest against `anchors` under
    /// `policy`: the same check [`Envelope::verify`] makes, without the manifest. Each
    /// COSE_Sign1/COSE_Sign block's `Sig_structure` covers the encoded SUIT_Digest as its
    /// detached payload (manifest §8.3, RFC 9052 §4.4), so the manifest itself never needs to
    /// be in memory: the caller must still hash the manifest bstr and compare it with
    /// [`Authentication::digest`] (manifest §8.3: "the SUIT_Digest ... of the manifest"), and
    /// must not act on the manifest before both checks passed (manifest §6.2).
    ///
    /// # Errors
    /// As [`Envelope::verify`]'s authentication step: [`Error::Unauthenticated`] (no block,
    /// no trusted signature, threshold or hybrid policy not met),
    /// [`Error::UnsupportedAlgorithm`] or [`Error::UnsupportedCritical`] when no block could
    /// be checked, [`Error::Malformed`] for a block without a protected algorithm.
    pub fn verify_signatures(
        &self,
        anchors: &[TrustAnchor<'_>],
        policy: &TrustPolicy<'_>,
    ) -> Result<Signers, Error> {
        crate::auth::verify_blocks(self, anchors, policy)
    }

    /// How many authentication blocks there are.
    pub fn block_count(&self) -> usize {
        usize::try_from(self.blocks).unwrap_or(usize::MAX)
    }

    /// The authentication blocks.
    pub fn blocks(&self) -> impl Iterator<Item = AuthBlock<'a>> + use<'a> {
        let mut r = Reader::new(self.raw);
        let n = r.array().unwrap_or(0);
        let _ = r.bstr();
        (1..n).map_while(move |_| AuthBlock::decode(r.bstr().ok()?).ok())
    }
}

/// A manifest that has been authenticated and fully validated. Only [`Envelope::verify`]
/// creates one; the processor accepts nothing else.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedManifest<'a> {
    envelope: Envelope<'a>,
    manifest: Manifest<'a>,
    digest: DigestValue,
    outcome: VerificationOutcome,
    sections: Sections<'a>,
}

impl<'a> VerifiedManifest<'a> {
    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest<'a> {
        &self.manifest
    }

    /// The envelope it came from.
    pub fn envelope(&self) -> &Envelope<'a> {
        &self.envelope
    }

    /// The manifest digest (the correlation key for reports, manifest §8.3).
    pub fn digest(&self) -> &DigestValue {
        &self.digest
    }

    /// Which trust anchors signed.
    pub fn signers(&self) -> Signers {
        self.outcome.signers
    }

    /// Whether the verified signers may authorise `action` on the component at `index`
    /// (manifest §9: access control lists).
    pub fn authorizes(&self, index: usize, action: crate::Actions) -> bool {
        self.outcome
            .authorized
            .get(index)
            .is_some_and(|a| a.contains(action))
    }

    /// The sequence number.
    pub fn sequence_number(&self) -> u64 {
        self.manifest.sequence_number
    }

    /// A command section, with severed members resolved from the envelope.
    pub fn section(&self, section: crate::Section) -> SectionState<'a> {
        use crate::Section as S;
        let severable = |m: Option<Severable<'a, crate::CommandSequence<'a>>>, found| match m {
            None => SectionState::Absent,
            Some(Severable::Inline(seq)) => SectionState::Present(seq),
            Some(Severable::Severed(_)) => match found {
                Some(seq) => SectionState::Present(seq),
                None => SectionState::Severed,
            },
        };
        let plain = |m: Option<crate::CommandSequence<'a>>| match m {
            Some(seq) => SectionState::Present(seq),
            None => SectionState::Absent,
        };
        let m = &self.manifest;
        let s = &self.sections;
        match section {
            S::DependencyResolution => severable(m.dependency_resolution, s.dependency_resolution),
            S::PayloadFetch => severable(m.payload_fetch, s.payload_fetch),
            S::CandidateVerification => {
                severable(m.candidate_verification, s.candidate_verification)
            }
            S::Install => severable(m.install, s.install),
            S::Validate => plain(m.validate),
            S::Load => plain(m.load),
            S::Invoke => plain(m.invoke),
        }
    }

    /// The text map, inline or from the envelope, if available.
    pub fn text(&self) -> Option<crate::manifest::Text<'a>> {
        match self.manifest.text {
            Some(Severable::Inline(t)) => Some(t),
            Some(Severable::Severed(_)) => self.sections.text,
            None => None,
        }
    }
}

/// Whether a section can run.
#[derive(Clone, Copy, Debug)]
pub enum SectionState<'a> {
    /// The manifest has no such section.
    Absent,
    /// The section is available.
    Present(crate::CommandSequence<'a>),
    /// The section was severed and its copy is not in the envelope.
    Severed,
}

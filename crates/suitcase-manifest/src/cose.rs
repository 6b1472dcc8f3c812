//! The COSE structures SUIT uses (RFC 9052): COSE_Sign1, COSE_Sign and COSE_Mac0 with a
//! detached payload, their headers, and the to-be-signed / to-be-MACed structures.
//!
//! Written here rather than taken from a crate because no COSE crate parses without allocation
//! and binds to the current RustCrypto generation (see `crates.md` §1); `coset` is used in the
//! tests as an independent decoder.

use minicbor::Encoder;
use minicbor::encode::Write;
#[cfg(any(feature = "hss-lms", feature = "ml-dsa", feature = "x509"))]
use minicbor::encode::write::Cursor;

use crate::cbor::{Kind, Reader, decode_exact};
use crate::codepoints::{header, tag};
use crate::error::{Error, Unsupported};

/// Header labels this implementation understands, so that a `crit` listing only these is
/// acceptable (RFC 9052 §3.1: "the recipient MUST ... fail if it does not understand" a
/// label listed in crit).
const UNDERSTOOD_LABELS: &[i64] = &[
    header::ALG,
    header::CRIT,
    header::CONTENT_TYPE,
    header::KID,
    header::IV,
    header::PARTIAL_IV,
    header::X5CHAIN,
    header::EPHEMERAL_KEY,
    header::SALT,
    header::SUITCASE_KEM_CIPHERTEXT,
];

/// The parsed protected and unprotected headers of one COSE layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Headers<'a> {
    /// The encoded protected header map (the content of the bstr; may be empty).
    pub protected: &'a [u8],
    /// The algorithm, from whichever bucket carries it.
    pub alg: Option<i64>,
    /// Whether `alg` came from the protected bucket.
    pub alg_protected: bool,
    /// kid.
    pub kid: Option<&'a [u8]>,
    /// IV (content encryption layers).
    pub iv: Option<&'a [u8]>,
    /// x5chain: a bstr (one certificate) or an array of bstr, still encoded.
    pub x5chain: Option<&'a [u8]>,
    /// Ephemeral COSE_Key (ECDH recipients), still encoded.
    pub ephemeral_key: Option<&'a [u8]>,
    /// HKDF salt (ECDH recipients).
    pub salt: Option<&'a [u8]>,
    /// KEM ciphertext (suitcase ML-KEM recipients).
    pub kem_ciphertext: Option<&'a [u8]>,
    /// A `crit` label this implementation does not understand, if any.
    pub unknown_critical: Option<i64>,
}

impl<'a> Headers<'a> {
    /// Reads `protected: bstr .cbor header_map / bstr .size 0, unprotected: header_map`.
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let protected = r.bstr()?;
        let mut h = Self {
            protected,
            ..Self::default()
        };
        if !protected.is_empty() {
            decode_exact(protected, "trailing bytes after protected header", |p| {
                h.read_map(p, true)
            })?;
        }
        let unprotected_start = r.position();
        h.read_map(r, false)?;
        // RFC 9052 §3: "Labels MUST be unique across both buckets".
        if !protected.is_empty() {
            check_disjoint(protected, r.since(unprotected_start))?;
        }
        Ok(h)
    }

    fn read_map(&mut self, r: &mut Reader<'a>, protected: bool) -> Result<(), Error> {
        let mut map = r.map()?;
        while let Some((index, start)) = r.next_entry(&mut map) {
            let label = match r.kind()? {
                Kind::Uint | Kind::Nint => r.int()?,
                Kind::Text => {
                    // Text labels are valid COSE, but none is defined for SUIT; keep and ignore
                    // the value unless crit names it (it cannot: crit is checked below).
                    r.tstr()?;
                    r.check_unique(&map, index, start)?;
                    r.skip()?;
                    continue;
                }
                _ => return Err(r.malformed("COSE header label must be int or text")),
            };
            r.check_unique(&map, index, start)?;
            match label {
                header::ALG => {
                    let at = r.position();
                    if r.kind()? != Kind::Uint && r.kind()? != Kind::Nint {
                        return Err(Error::Malformed {
                            at,
                            what: "text algorithm names are not supported",
                        });
                    }
                    self.alg = Some(r.int()?);
                    self.alg_protected = protected;
                }
                header::CRIT => {
                    // RFC 9052 §3.1: crit MUST be in the protected bucket and non-empty.
                    if !protected {
                        return Err(r.malformed("crit must be a protected header"));
                    }
                    let n = r.array()?;
                    if n == 0 {
                        return Err(r.malformed("crit must not be empty"));
                    }
                    for _ in 0..n {
                        match r.kind()? {
                            Kind::Uint | Kind::Nint => {
                                let l = r.int()?;
                                if !UNDERSTOOD_LABELS.contains(&l)
                                    && self.unknown_critical.is_none()
                                {
                                    self.unknown_critical = Some(l);
                                }
                            }
                            Kind::Text => {
                                r.tstr()?;
                                if self.unknown_critical.is_none() {
                                    self.unknown_critical = Some(i64::MIN);
                                }
                            }
                            _ => return Err(r.malformed("crit labels must be int or text")),
                        }
                    }
                }
                header::KID => self.kid = Some(r.bstr()?),
                header::IV => self.iv = Some(r.bstr()?),
                header::X5CHAIN => {
                    let start = r.position();
                    match r.kind()? {
                        Kind::Bytes => {
                            r.bstr()?;
                        }
                        Kind::Array => {
                            let n = r.array()?;
                            if n == 0 {
                                return Err(r.malformed("x5chain must not be empty"));
                            }
                            for _ in 0..n {
                                r.bstr()?;
                            }
                        }
                        _ => return Err(r.malformed("x5chain must be a bstr or an array of bstr")),
                    }
                    self.x5chain = Some(r.since(start));
                }
                header::EPHEMERAL_KEY => {
                    if r.kind()? != Kind::Map {
                        return Err(r.malformed("ephemeral key must be a COSE_Key map"));
                    }
                    self.ephemeral_key = Some(r.skip()?);
                }
                header::SALT => self.salt = Some(r.bstr()?),
                header::SUITCASE_KEM_CIPHERTEXT => self.kem_ciphertext = Some(r.bstr()?),
                _ => {
                    r.skip()?;
                }
            }
        }
        Ok(())
    }

    /// Refuses a layer that lists a critical label we do not understand.
    pub(crate) fn check_critical(&self) -> Result<(), Error> {
        match self.unknown_critical {
            None => Ok(()),
            Some(id) => Err(Error::UnsupportedCritical {
                what: Unsupported::CoseCritical,
                id,
            }),
        }
    }
}

fn check_disjoint(protected: &[u8], unprotected: &[u8]) -> Result<(), Error> {
    let labels = |bytes| {
        let mut r = Reader::new(bytes);
        let n = r.map().map(|m| m.len).unwrap_or(0);
        (0..n).map_while(move |_| {
            let key = r.skip().ok()?;
            r.skip().ok()?;
            Some(key)
        })
    };
    for p in labels(protected) {
        if labels(unprotected).any(|u| u == p) {
            return Err(Error::Malformed {
                at: 0,
                what: "COSE header label in both buckets",
            });
        }
    }
    Ok(())
}

/// Whether a key restricted to `want` must skip a COSE layer that names `got` (RFC 9052 §3.1:
/// kid is a hint; a layer without one may be tried with any key).
pub(crate) fn kids_conflict(want: Option<&[u8]>, got: Option<&[u8]>) -> bool {
    matches!((want, got), (Some(w), Some(g)) if w != g)
}

/// Which COSE structure an authentication block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// COSE_Sign1 (tag 18).
    Sign1,
    /// COSE_Sign (tag 98): one or more signatures.
    Sign,
    /// COSE_Mac0 (tag 17).
    Mac0,
    /// COSE_Mac (tag 97): not supported (needs recipient key distribution).
    Mac,
}

/// One signature or MAC inside an authentication block, ready to verify.
#[derive(Clone, Copy, Debug)]
pub struct Signer<'a> {
    /// The structure kind it belongs to.
    pub kind: BlockKind,
    /// The body's protected header (COSE_Sign only; empty otherwise).
    pub body_protected: &'a [u8],
    /// The signer's headers (for Sign1/Mac0, the block's headers).
    pub headers: Headers<'a>,
    /// The signature or tag.
    pub signature: &'a [u8],
}

impl Signer<'_> {
    /// The algorithm, which must be in a protected bucket: an attacker could otherwise swap it
    /// without breaking the signature (RFC 9052 §3.1 recommends protecting alg; we require it).
    pub(crate) fn algorithm(&self) -> Result<i64, Error> {
        match (self.headers.alg, self.headers.alg_protected) {
            (Some(alg), true) => Ok(alg),
            (Some(_), false) => Err(Error::Malformed {
                at: 0,
                what: "COSE alg must be a protected header",
            }),
            (None, _) => Err(Error::Malformed {
                at: 0,
                what: "COSE layer has no alg",
            }),
        }
    }

    /// Calls `f` with the encoded Sig_structure / MAC_structure over the detached `payload`
    /// (RFC 9052 §4.4 and §6.3), with an empty external AAD as SUIT requires. Only for the
    /// algorithms that need the whole message at once (HSS-LMS, ML-DSA, X.509 chains); ES256,
    /// EdDSA and HMAC stream it through [`Self::write_to_be_signed`] instead of a buffer.
    #[cfg(any(feature = "hss-lms", feature = "ml-dsa", feature = "x509"))]
    pub(crate) fn with_to_be_signed<R>(
        &self,
        payload: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, Error> {
        let mut buf = [0u8; 512];
        if let Some(cursor) = self.write_to_be_signed(payload, Cursor::new(&mut buf[..])) {
            let n = cursor.position();
            return Ok(f(buf.get(..n).unwrap_or_default()));
        }
        #[cfg(feature = "alloc")]
        {
            let len = 32 + self.body_protected.len() + self.headers.protected.len() + payload.len();
            let mut big = alloc::vec![0u8; len];
            if let Some(cursor) = self.write_to_be_signed(payload, Cursor::new(&mut big[..])) {
                let n = cursor.position();
                return Ok(f(big.get(..n).unwrap_or_default()));
            }
        }
        Err(Error::Malformed {
            at: 0,
            what: "protected header too large to verify",
        })
    }

    /// Writes the Sig_structure / MAC_structure over the detached `payload` (RFC 9052 §4.4 and
    /// §6.3, empty external AAD) into `w`, which may be a hash or MAC state (no buffer).
    /// `None` if `w` fails or the structure is COSE_Mac (unsupported).
    pub(crate) fn write_to_be_signed<W: Write>(&self, payload: &[u8], w: W) -> Option<W> {
        let mut e = Encoder::new(w);
        match self.kind {
            BlockKind::Sign1 => {
                e.array(4)
                    .ok()?
                    .str("Signature1")
                    .ok()?
                    .bytes(self.headers.protected)
                    .ok()?;
            }
            BlockKind::Sign => {
                e.array(5)
                    .ok()?
                    .str("Signature")
                    .ok()?
                    .bytes(self.body_protected)
                    .ok()?;
                e.bytes(self.headers.protected).ok()?;
            }
            BlockKind::Mac0 => {
                e.array(4)
                    .ok()?
                    .str("MAC0")
                    .ok()?
                    .bytes(self.headers.protected)
                    .ok()?;
            }
            BlockKind::Mac => return None,
        }
        e.bytes(&[]).ok()?.bytes(payload).ok()?;
        Some(e.into_writer())
    }
}

/// A [`Write`] that feeds what is written into a hash or MAC state (streaming the
/// Sig_structure into SHA-256 or HMAC instead of encoding it into a buffer first). One type
/// for both, so that the structure's encoder is compiled once.
pub(crate) struct Absorb<'u>(pub(crate) &'u mut dyn sha2::digest::Update);

impl Write for Absorb<'_> {
    type Error = core::convert::Infallible;

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.0.update(buf);
        Ok(())
    }
}

/// An authentication block: one COSE structure from the authentication wrapper.
#[derive(Clone, Copy, Debug)]
pub struct AuthBlock<'a> {
    /// The structure.
    pub kind: BlockKind,
    raw: &'a [u8],
}

impl<'a> AuthBlock<'a> {
    /// Parses a (bstr-unwrapped) authentication block.
    ///
    /// # Errors
    /// [`Error::Malformed`] if it is not one of the four COSE structures SUIT allows, with a nil
    /// (detached) payload.
    pub fn decode(raw: &'a [u8]) -> Result<Self, Error> {
        let kind = decode_exact(raw, "trailing bytes after authentication block", |r| {
            let at = r.position();
            // SUIT_Authentication_Block = COSE_Mac_Tagged / COSE_Sign_Tagged /
            //                             COSE_Mac0_Tagged / COSE_Sign1_Tagged
            let kind = match r.tag()? {
                tag::COSE_SIGN1 => BlockKind::Sign1,
                tag::COSE_SIGN => BlockKind::Sign,
                tag::COSE_MAC0 => BlockKind::Mac0,
                tag::COSE_MAC => BlockKind::Mac,
                _ => {
                    return Err(Error::Malformed {
                        at,
                        what: "authentication block must be a tagged COSE_Sign1, COSE_Sign, COSE_Mac0 or COSE_Mac",
                    });
                }
            };
            let fields = if matches!(kind, BlockKind::Mac) { 5 } else { 4 };
            r.array_of(fields, "COSE structure has the wrong number of fields")?;
            Headers::read(r)?;
            // Manifest §8.3: the blocks are "used in detached payload mode".
            if r.kind()? != Kind::Null {
                return Err(r.malformed("COSE payload must be nil (detached)"));
            }
            r.null()?;
            match kind {
                BlockKind::Sign1 | BlockKind::Mac0 => {
                    r.bstr()?;
                }
                BlockKind::Sign => {
                    let n = r.array()?;
                    if n == 0 {
                        return Err(r.malformed("COSE_Sign needs at least one signature"));
                    }
                    for _ in 0..n {
                        r.array_of(3, "COSE_Signature must have three fields")?;
                        Headers::read(r)?;
                        r.bstr()?;
                    }
                }
                BlockKind::Mac => {
                    r.bstr()?;
                    r.skip()?;
                }
            }
            Ok(kind)
        })?;
        Ok(Self { kind, raw })
    }

    /// The signatures (one for Sign1/Mac0, several for COSE_Sign; none for COSE_Mac).
    pub fn signers(&self) -> impl Iterator<Item = Signer<'a>> + use<'a> {
        let mut r = Reader::new(self.raw);
        let kind = self.kind;
        let _ = r.tag();
        let _ = r.array();
        let body = Headers::read(&mut r).ok();
        let _ = r.null();
        let mut single = matches!(kind, BlockKind::Sign1 | BlockKind::Mac0);
        let mut many = if kind == BlockKind::Sign {
            r.array().unwrap_or(0)
        } else {
            0
        };
        core::iter::from_fn(move || {
            let body = body?;
            if single {
                single = false;
                let signature = r.bstr().ok()?;
                return Some(Signer {
                    kind,
                    body_protected: &[],
                    headers: body,
                    signature,
                });
            }
            if many == 0 {
                return None;
            }
            many -= 1;
            r.array().ok()?;
            let headers = Headers::read(&mut r).ok()?;
            let signature = r.bstr().ok()?;
            Some(Signer {
                kind,
                body_protected: body.protected,
                headers,
                signature,
            })
        })
    }

    /// The encoded block.
    pub fn as_cbor(&self) -> &'a [u8] {
        self.raw
    }
}

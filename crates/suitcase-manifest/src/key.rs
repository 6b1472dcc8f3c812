//! COSE_Key (RFC 9052 §7) parsing, for trust anchors and ECDH ephemeral keys.

use crate::cbor::{Kind, decode_exact};
use crate::error::Error;

/// COSE_Key parameters (RFC 9052 §7.1, RFC 9053 §7).
pub mod label {
    /// kty.
    pub const KTY: i64 = 1;
    /// kid.
    pub const KID: i64 = 2;
    /// alg.
    pub const ALG: i64 = 3;
    /// crv (EC2, OKP) / k (Symmetric) share -1.
    pub const CRV_OR_K: i64 = -1;
    /// x.
    pub const X: i64 = -2;
    /// y.
    pub const Y: i64 = -3;
    /// d.
    pub const D: i64 = -4;
}

/// Key types.
pub mod kty {
    /// Octet key pair (Ed25519, X25519).
    pub const OKP: i64 = 1;
    /// Elliptic curve with x and y (P-256).
    pub const EC2: i64 = 2;
    /// Symmetric.
    pub const SYMMETRIC: i64 = 4;
    /// HSS-LMS public key (RFC 8778 §4).
    pub const HSS_LMS: i64 = 5;
    /// Algorithm key pair (ML-DSA, draft-ietf-cose-dilithium).
    pub const AKP: i64 = 7;
}

/// Curves.
pub mod crv {
    /// P-256.
    pub const P256: i64 = 1;
    /// X25519.
    pub const X25519: i64 = 4;
    /// Ed25519.
    pub const ED25519: i64 = 6;
}

/// A COSE_Key, borrowed. Only the fields SUIT needs are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoseKey<'a> {
    /// kty.
    pub kty: i64,
    /// kid.
    pub kid: Option<&'a [u8]>,
    /// alg.
    pub alg: Option<i64>,
    /// crv (EC2, OKP).
    pub crv: Option<i64>,
    /// k (Symmetric).
    pub k: Option<&'a [u8]>,
    /// x (EC2, OKP).
    pub x: Option<&'a [u8]>,
    /// y (EC2; a bool y-sign is refused).
    pub y: Option<&'a [u8]>,
    /// d (private key).
    pub d: Option<&'a [u8]>,
    /// AKP public key (label -1 for kty 7).
    pub public: Option<&'a [u8]>,
    /// AKP private key (label -2 for kty 7).
    pub private: Option<&'a [u8]>,
}

impl<'a> CoseKey<'a> {
    /// Parses an encoded COSE_Key map.
    ///
    /// # Errors
    /// [`Error::Malformed`] if it is not a COSE_Key with a kty.
    pub fn decode(raw: &'a [u8]) -> Result<Self, Error> {
        decode_exact(raw, "trailing bytes after COSE_Key", |r| {
            let mut key = Self::default();
            let mut kty = None;
            let mut map = r.map()?;
            // Values of -1/-2 depend on kty, which may come after them; keep them raw.
            let (mut m1, mut m2) = (None, None);
            while let Some((index, start)) = r.next_entry(&mut map) {
                let label = match r.kind()? {
                    Kind::Uint | Kind::Nint => r.int()?,
                    _ => return Err(r.malformed("COSE_Key labels must be integers")),
                };
                r.check_unique(&map, index, start)?;
                match label {
                    label::KTY => kty = Some(r.int()?),
                    label::KID => key.kid = Some(r.bstr()?),
                    label::ALG => key.alg = Some(r.int()?),
                    label::CRV_OR_K => m1 = Some(r.skip()?),
                    label::X => m2 = Some(r.skip()?),
                    label::Y => key.y = Some(r.bstr()?),
                    label::D => key.d = Some(r.bstr()?),
                    _ => {
                        r.skip()?;
                    }
                }
            }
            key.kty = kty.ok_or_else(|| r.malformed("COSE_Key has no kty"))?;
            let bstr = |raw: &'a [u8]| decode_exact(raw, "bad COSE_Key value", |v| v.bstr());
            let int = |raw: &'a [u8]| decode_exact(raw, "bad COSE_Key value", |v| v.int());
            match key.kty {
                kty::SYMMETRIC => key.k = m1.map(bstr).transpose()?,
                // AKP (draft-ietf-cose-dilithium) and HSS-LMS (RFC 8778 §4): -1 is the public key.
                kty::AKP | kty::HSS_LMS => {
                    key.public = m1.map(bstr).transpose()?;
                    key.private = m2.map(bstr).transpose()?;
                }
                _ => {
                    key.crv = m1.map(int).transpose()?;
                    key.x = m2.map(bstr).transpose()?;
                }
            }
            Ok(key)
        })
    }
}

/// The P-256 public key in an EC2 COSE_Key (as in an ECDH-ES ephemeral key header).
///
/// # Errors
/// [`Error::Malformed`] unless it is an EC2 P-256 key with 32-byte x and y on the curve.
#[cfg(feature = "es256")]
pub fn p256_public_from_cose(raw: &[u8]) -> Result<p256::PublicKey, Error> {
    let bad = Error::Malformed {
        at: 0,
        what: "ephemeral key must be an EC2 P-256 COSE_Key with x and y",
    };
    let key = CoseKey::decode(raw)?;
    if key.kty != kty::EC2 || key.crv != Some(crv::P256) {
        return Err(bad);
    }
    let (Some(x), Some(y)) = (key.x, key.y) else {
        return Err(bad);
    };
    if x.len() != 32 || y.len() != 32 {
        return Err(bad);
    }
    let mut sec1 = [0u8; 65];
    sec1[0] = 4;
    sec1.get_mut(1..33).ok_or(bad)?.copy_from_slice(x);
    sec1.get_mut(33..).ok_or(bad)?.copy_from_slice(y);
    p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| bad)
}

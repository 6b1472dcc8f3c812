//! SUIT_Digest (manifest §10) and the hash functions behind it.

use sha2::Digest as _;
use shake::digest::{ExtendableOutput, Update, XofReader};
use subtle::ConstantTimeEq;

use crate::cbor::Reader;
use crate::codepoints::alg;
use crate::error::Error;

/// The longest digest any supported algorithm produces (SHA-512 / SHAKE256-512).
pub const MAX_DIGEST_LEN: usize = 64;

/// A digest algorithm from the COSE Algorithms registry (RFC 9054).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256 (-16). Manifest §10: "SHA-256 (-16) MUST be implemented by all Manifest
    /// Processors".
    Sha256,
    /// SHA-384 (-43).
    Sha384,
    /// SHA-512 (-44).
    Sha512,
    /// SHAKE128 with 256-bit output (-18).
    Shake128,
    /// SHAKE256 with 512-bit output (-45); the Quantum tier's digest.
    Shake256,
}

impl DigestAlgorithm {
    /// Maps a COSE algorithm id. Truncated or broken hashes (SHA-1 -14, SHA-256/64 -15) are
    /// refused: the policy is "SHA-256 digests at least".
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for any other id.
    pub fn from_cose(id: i64) -> Result<Self, Error> {
        Ok(match id {
            alg::SHA256 => Self::Sha256,
            alg::SHA384 => Self::Sha384,
            alg::SHA512 => Self::Sha512,
            alg::SHAKE128 => Self::Shake128,
            alg::SHAKE256 => Self::Shake256,
            _ => return Err(Error::UnsupportedAlgorithm { alg: id }),
        })
    }

    /// The COSE algorithm id.
    pub fn cose_id(self) -> i64 {
        match self {
            Self::Sha256 => alg::SHA256,
            Self::Sha384 => alg::SHA384,
            Self::Sha512 => alg::SHA512,
            Self::Shake128 => alg::SHAKE128,
            Self::Shake256 => alg::SHAKE256,
        }
    }

    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 | Self::Shake128 => 32,
            Self::Sha384 => 48,
            Self::Sha512 | Self::Shake256 => 64,
        }
    }

    /// A short name for people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha384 => "sha-384",
            Self::Sha512 => "sha-512",
            Self::Shake128 => "shake128",
            Self::Shake256 => "shake256",
        }
    }

    /// Hashes `data` in one call.
    pub fn digest(self, data: &[u8]) -> DigestValue {
        let mut h = Hasher::new(self);
        h.update(data);
        h.finish()
    }
}

/// A SUIT_Digest borrowed from a manifest: `[algorithm-id, digest-bytes]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuitDigest<'a> {
    /// The algorithm.
    pub algorithm: DigestAlgorithm,
    /// The expected digest; its length matches the algorithm.
    pub bytes: &'a [u8],
}

impl<'a> SuitDigest<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        // SUIT_Digest = [ suit-digest-algorithm-id, suit-digest-bytes, * $$SUIT_Digest-extensions ]
        // No extension is defined; one we cannot interpret could change what is checked, so it
        // is refused rather than ignored.
        r.array_of(2, "SUIT_Digest must be [algorithm-id, digest-bytes]")?;
        let algorithm = DigestAlgorithm::from_cose(r.int()?)?;
        let at = r.position();
        let bytes = r.bstr()?;
        if bytes.len() != algorithm.output_len() {
            return Err(Error::Malformed {
                at,
                what: "digest length does not match its algorithm",
            });
        }
        Ok(Self { algorithm, bytes })
    }

    /// Decodes a bstr-wrapped SUIT_Digest's content (as in the image-digest parameter).
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        crate::cbor::decode_exact(bytes, "trailing bytes after SUIT_Digest", Self::read)
    }

    /// Whether `data` hashes to this digest. Constant time in the comparison.
    pub fn matches(&self, data: &[u8]) -> bool {
        self.matches_value(&self.algorithm.digest(data))
    }

    /// Whether a computed digest equals this one. Constant time in the comparison.
    pub fn matches_value(&self, value: &DigestValue) -> bool {
        value.algorithm == self.algorithm && bool::from(value.as_bytes().ct_eq(self.bytes))
    }
}

/// A computed digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestValue {
    /// The algorithm that produced it.
    pub algorithm: DigestAlgorithm,
    bytes: [u8; MAX_DIGEST_LEN],
}

impl DigestValue {
    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
            .get(..self.algorithm.output_len())
            .unwrap_or_default()
    }
}

/// An incremental hash over one of the supported algorithms.
#[derive(Clone, Debug)]
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
    /// SHAKE128.
    Shake128(shake::Shake128),
    /// SHAKE256.
    Shake256(shake::Shake256),
}

impl Hasher {
    /// A fresh hash state.
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sha384 => Self::Sha384(sha2::Sha384::new()),
            DigestAlgorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
            DigestAlgorithm::Shake128 => Self::Shake128(shake::Shake128::default()),
            DigestAlgorithm::Shake256 => Self::Shake256(shake::Shake256::default()),
        }
    }

    /// Absorbs `data`.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => sha2::Digest::update(h, data),
            Self::Sha384(h) => sha2::Digest::update(h, data),
            Self::Sha512(h) => sha2::Digest::update(h, data),
            Self::Shake128(h) => Update::update(h, data),
            Self::Shake256(h) => Update::update(h, data),
        }
    }

    /// Finishes the hash.
    pub fn finish(self) -> DigestValue {
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        let algorithm = match self {
            Self::Sha256(h) => {
                copy_prefix(&mut bytes, &h.finalize());
                DigestAlgorithm::Sha256
            }
            Self::Sha384(h) => {
                copy_prefix(&mut bytes, &h.finalize());
                DigestAlgorithm::Sha384
            }
            Self::Sha512(h) => {
                copy_prefix(&mut bytes, &h.finalize());
                DigestAlgorithm::Sha512
            }
            Self::Shake128(h) => {
                let (out, _) = bytes.split_at_mut(32);
                h.finalize_xof().read(out);
                DigestAlgorithm::Shake128
            }
            Self::Shake256(h) => {
                h.finalize_xof().read(&mut bytes);
                DigestAlgorithm::Shake256
            }
        };
        DigestValue { algorithm, bytes }
    }
}

fn copy_prefix(dst: &mut [u8; MAX_DIGEST_LEN], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        let v = DigestAlgorithm::Sha256.digest(b"abc");
        assert_eq!(
            hex::encode(v.as_bytes()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn shake256_known_answer() {
        // FIPS 202 SHAKE256("") first bytes.
        let v = DigestAlgorithm::Shake256.digest(b"");
        assert_eq!(v.as_bytes().len(), 64);
        assert_eq!(hex::encode(&v.as_bytes()[..8]), "46b9dd2b0ba88d13");
    }

    #[test]
    fn digest_rejects_wrong_length_and_weak_algorithms() {
        // [-16, h'00'] — one byte is not a SHA-256 digest.
        assert!(SuitDigest::decode(&[0x82, 0x2f, 0x41, 0x00]).is_err());
        // [-15 (SHA-256/64), h'0000000000000000']
        let err = SuitDigest::decode(&[0x82, 0x2e, 0x48, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err, Error::UnsupportedAlgorithm { alg: -15 });
    }
}

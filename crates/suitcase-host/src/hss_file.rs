//! The HSS-LMS private key file format (RFC 8554 keys, COSE alg -46), read and written without
//! the signer: enough to recognise such a file (it holds a secret, so a server or device must
//! refuse it as a trust anchor) and to read its public key. Signing with it, and the rules that
//! keep its one-time keys from being reused, live in `suitcase_author::hss`.
//!
//! The key file is a CBOR map with text keys: `suitcase` = `"hss-lms-private-key"`, `version`
//! = 1, `kid`, `public` (the RFC 8554 public key), `state` (the hbs-lms private key, which
//! carries the index). A reservation file has `version` = 2 and one more key, `end`: readers
//! that predate reservations refuse version 2, so none of them can sign past `end`.

use std::path::Path;

use minicbor::Decoder;
use suitcase_manifest::build::raw::{bstr, map, tstr, uint};
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};

const MAGIC: &str = "hss-lms-private-key";

/// The contents of an HSS-LMS private key file.
#[derive(Clone)]
pub struct HssKeyFile {
    /// The key id.
    pub kid: Vec<u8>,
    /// The RFC 8554 public key.
    pub public: Vec<u8>,
    /// The hbs-lms private key, which carries the index of the next one-time key.
    pub state: Zeroizing<Vec<u8>>,
    /// For a reservation: the first index it may not use.
    pub end: Option<u64>,
}

impl core::fmt::Debug for HssKeyFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HssKeyFile")
            .field("kid", &hex::encode(&self.kid))
            .finish_non_exhaustive()
    }
}

impl HssKeyFile {
    /// Whether `raw` looks like an HSS-LMS private key file.
    pub fn is_hss_key_file(raw: &[u8]) -> bool {
        Self::parse(raw).is_some()
    }

    /// Encodes the key file.
    pub fn encode(&self) -> Vec<u8> {
        let mut entries = vec![
            (tstr("suitcase"), tstr(MAGIC)),
            (
                tstr("version"),
                uint(if self.end.is_some() { 2 } else { 1 }),
            ),
            (tstr("kid"), bstr(&self.kid)),
            (tstr("public"), bstr(&self.public)),
            (tstr("state"), bstr(&self.state)),
        ];
        if let Some(end) = self.end {
            entries.push((tstr("end"), uint(end)));
        }
        map(entries)
    }

    fn parse(raw: &[u8]) -> Option<Self> {
        let mut d = Decoder::new(raw);
        let n = d.map().ok()??;
        let (mut magic, mut version, mut kid, mut public, mut state, mut end) =
            (None, None, None, None, None, None);
        for _ in 0..n {
            match d.str().ok()? {
                "suitcase" => magic = Some(d.str().ok()?),
                "version" => version = Some(d.u64().ok()?),
                "kid" => kid = Some(d.bytes().ok()?.to_vec()),
                "public" => public = Some(d.bytes().ok()?.to_vec()),
                "state" => state = Some(d.bytes().ok()?.to_vec()),
                "end" => end = Some(d.u64().ok()?),
                _ => d.skip().ok()?,
            }
        }
        // Version 1 is a key, version 2 a reservation, which must carry its end.
        let valid_version = matches!((version, end), (Some(1), None) | (Some(2), Some(_)));
        if magic != Some(MAGIC) || !valid_version || d.position() != raw.len() {
            return None;
        }
        Some(Self {
            kid: kid?,
            public: public?,
            state: Zeroizing::new(state?),
            end,
        })
    }

    /// Decodes a key file read from `path`.
    ///
    /// # Errors
    /// [`KeyError::Key`] if it is not an HSS-LMS key file.
    pub fn decode(path: &Path, raw: &[u8]) -> Result<Self> {
        Self::parse(raw).ok_or_else(|| KeyError::Key {
            path: path.to_path_buf(),
            what: "not an HSS-LMS private key file".into(),
        })
    }

    /// Reads a key file.
    ///
    /// # Errors
    /// [`KeyError::Read`] or [`KeyError::Key`].
    pub fn load(path: &Path) -> Result<Self> {
        let raw = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            error: source,
        })?;
        Self::decode(path, &raw)
    }

    /// For a reservation, the first index it may not use.
    pub fn reservation_end(&self) -> Option<u64> {
        self.end
    }
}

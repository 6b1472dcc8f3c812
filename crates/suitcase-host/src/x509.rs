//! X.509 certificates as trust anchors: reading PEM (or DER) certificate files. Issuing
//! certificates is the signer's business (`suitcase_author::x509`).

use x509_cert::der::Decode as _;

use crate::error::{KeyError, Result};

/// PEM-encodes certificates (leaf first when it is a chain).
pub fn to_pem(certs: &[Vec<u8>]) -> String {
    certs
        .iter()
        .filter_map(|der| {
            pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, der).ok()
        })
        .collect()
}

/// Reads every certificate in a PEM file (or one DER certificate), in file order.
///
/// # Errors
/// [`KeyError::Key`] if the file holds no certificate.
pub fn read_certs(path: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).map_err(|error| KeyError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse_certs(path, &bytes)
}

/// Parses PEM certificates (or one DER certificate) from bytes; `path` names the source in
/// errors.
///
/// # Errors
/// [`KeyError::Key`] if the bytes are not certificates.
pub fn parse_certs(path: &std::path::Path, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let bad = || KeyError::Key {
        path: path.to_path_buf(),
        what: "expected PEM certificates (-----BEGIN CERTIFICATE-----) or a DER certificate".into(),
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        x509_cert::Certificate::from_der(bytes).map_err(|_| bad())?;
        return Ok(vec![bytes.to_vec()]);
    };
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end = rest[start..].find(END).ok_or_else(bad)? + start + END.len();
        let (label, der) =
            pem_rfc7468::decode_vec(&rest.as_bytes()[start..end]).map_err(|_| bad())?;
        if label != "CERTIFICATE" {
            return Err(bad());
        }
        x509_cert::Certificate::from_der(&der).map_err(|_| bad())?;
        certs.push(der);
        rest = &rest[end..];
    }
    if certs.is_empty() {
        return Err(bad());
    }
    Ok(certs)
}

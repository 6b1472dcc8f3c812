//! Reading envelopes and other binary inputs that may also come as hex text.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Reads a file (or stdin for `-`) holding raw CBOR or hex text, and returns the bytes.
///
/// Hex text is recognised when every byte is a hex digit or white space, which raw CBOR
/// envelopes (starting with 0xd8 for tag 107) never are.
pub(crate) fn read_binary(path: &Path) -> Result<Vec<u8>> {
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading stdin")?;
        buf
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    decode_maybe_hex(&bytes).with_context(|| format!("in {}", path.display()))
}

pub(crate) fn decode_maybe_hex(bytes: &[u8]) -> Result<Vec<u8>> {
    let is_hex_text = !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
        && bytes.iter().any(u8::is_ascii_hexdigit);
    if !is_hex_text {
        return Ok(bytes.to_vec());
    }
    let digits: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(u8::is_ascii_hexdigit)
        .collect();
    if !digits.len().is_multiple_of(2) {
        bail!("hex text has an odd number of digits");
    }
    Ok(hex::decode(digits)?)
}

/// Parses `hex` that must decode to exactly `len` bytes.
pub(crate) fn fixed_hex(text: &str, len: usize, what: &str) -> Result<Vec<u8>> {
    let bytes = hex::decode(text.trim()).with_context(|| format!("{what} is not hex: {text:?}"))?;
    if bytes.len() != len {
        bail!(
            "{what} must be {len} bytes ({} hex digits), got {}",
            len * 2,
            bytes.len()
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_raw_inputs() {
        assert_eq!(decode_maybe_hex(b"d86b a1\n").unwrap(), [0xd8, 0x6b, 0xa1]);
        assert_eq!(decode_maybe_hex(&[0xd8, 0x6b]).unwrap(), [0xd8, 0x6b]);
        assert!(decode_maybe_hex(b"abc").is_err());
    }
}

//! Digest fix-ups shared by the delta harnesses.

use sha2::{Digest, Sha256};
use suitcase_delta::format::MAX_HEADER_LEN;
use suitcase_delta::{Header, Mode};

/// The largest source image the harnesses build for a header (bigger ones are refused by
/// the size checks, which is covered too, with the source as given).
pub(crate) const MAX_SOURCE: u32 = 1 << 18;

/// `patch` with its header rewritten by `edit`; `None` if the header does not parse or its
/// length changes.
pub(crate) fn rewrite(patch: &[u8], edit: impl FnOnce(&mut Header)) -> Option<Vec<u8>> {
    let mut h = Header::parse(patch).ok()?;
    let len = h.len();
    edit(&mut h);
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = h.write(&mut buf);
    if n != len {
        return None;
    }
    let mut out = buf.get(..n)?.to_vec();
    out.extend_from_slice(patch.get(len..)?);
    Some(out)
}

/// Makes the source match the patch: `old` is cut or padded to the header's `old_size` and
/// the header's source digest set to its SHA-256. Returns the (patch, old) to apply.
pub(crate) fn fix_source(patch: &[u8], old: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let Ok(h) = Header::parse(patch) else {
        return (patch.to_vec(), old.to_vec());
    };
    if h.mode == Mode::Full || h.old_size > MAX_SOURCE {
        return (patch.to_vec(), old.to_vec());
    }
    let mut source = old.to_vec();
    source.resize(h.old_size as usize, 0x5A);
    let digest: [u8; 32] = Sha256::digest(&source).into();
    match rewrite(patch, |h| h.old_digest = digest) {
        Some(p) => (p, source),
        None => (patch.to_vec(), old.to_vec()),
    }
}

/// The patch with its result digest set to the SHA-256 of `result`.
pub(crate) fn fix_result(patch: &[u8], result: &[u8]) -> Option<Vec<u8>> {
    let digest: [u8; 32] = Sha256::digest(result).into();
    rewrite(patch, |h| h.new_digest = digest)
}

/// Chunk size from a control byte: 1..=64 bytes, or (high bit) 4 KiB.
pub(crate) fn chunk(ctl: u8) -> usize {
    if ctl & 0x80 != 0 {
        4096
    } else {
        usize::from(ctl & 0x3F) + 1
    }
}

//! `delta_sequential`: the `no_std` streaming [`Applier`] (sequential and full-image
//! patches) into a bounded slot buffer, fed in chunks of fuzzed size. The source digest is
//! fixed up so the decoder runs; when the image decodes but its result digest differs, that
//! digest is fixed up too and the patch must then apply, to the same bytes (determinism).
//!
//! Input: `[ctl] [old length: u16 LE] [old] [patch]`.

use suitcase_delta::{Applier, Error, Limits, MAX_RAM_BOUND, SliceImage, Status};

use crate::delta_common::{chunk, fix_result, fix_source};
use crate::split_len_prefixed;

/// The slot the new image goes to.
pub const SLOT: u32 = 1 << 16;

/// Applies `patch` to `old` into a fresh slot: the result and the bytes written.
pub fn apply(old: &[u8], patch: &[u8], chunk: usize) -> (Result<(), Error>, Vec<u8>) {
    let mut a = Applier::new(Limits {
        max_ram: MAX_RAM_BOUND,
        slot_size: SLOT,
    });
    let mut slot = vec![0u8; SLOT as usize];
    let mut o = old;
    let mut image = SliceImage { buf: &mut slot };
    let mut res = Ok(());
    for c in patch.chunks(chunk) {
        match a.feed(c, &mut o, &mut image) {
            Ok(Status::Done) | Ok(Status::NeedMore) => {}
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    if res.is_ok() {
        res = a.finish();
    }
    let written = a.position() as usize;
    assert!(written <= SLOT as usize);
    slot.truncate(written);
    (res, slot)
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let (old, patch) = split_len_prefixed(rest);
    let chunk = chunk(ctl);
    // As given (no fix-up): the refusals.
    let _ = apply(old, patch, chunk);
    let (patch, old) = fix_source(patch, old);
    let (res, out) = apply(&old, &patch, chunk);
    if res == Err(Error::ResultDigestMismatch)
        && let Some(fixed) = fix_result(&patch, &out)
    {
        let (again, out2) = apply(&old, &fixed, chunk);
        // Bytes after the end of the patch are only noticed once the digest matches.
        assert!(
            matches!(again, Ok(()) | Err(Error::TrailingData)),
            "a patch that decoded once must apply with its digest fixed: {again:?}"
        );
        assert_eq!(out, out2, "the applier is not deterministic");
    }
}

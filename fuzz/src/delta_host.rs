//! `delta_host`: the host applier behind `suitcase delta apply` and the server
//! (`host::apply_with_progress`, any mode) with its default limits, so an allocation driven by
//! a header is caught by the fuzzer's memory limit (issue 22: a 62-byte patch made it
//! allocate 8 GiB). The patch runs as given, then with its source digest fixed up, then
//! with its result digest fixed up too (it must then apply: determinism).
//!
//! Input: `[ctl] [old length: u16 LE] [old] [patch]`.

use suitcase_delta::host::apply_with_progress;
use suitcase_delta::{Error, Limits};

use crate::delta_common::{chunk, fix_result, fix_source};
use crate::split_len_prefixed;

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let (old, patch) = split_len_prefixed(rest);
    let chunk = chunk(ctl);
    let mut fed = 0;
    let _ = apply_with_progress(old, patch, chunk, Limits::DEFAULT, |n| {
        assert!(n >= fed && n <= patch.len());
        fed = n;
    });
    let (patch, old) = fix_source(patch, old);
    let res = apply_with_progress(&old, &patch, chunk, Limits::DEFAULT, |_| {});
    if let Ok(image) = &res
        && let Some(again) = fix_result(&patch, image)
    {
        // The digest was right already; rewriting it changes nothing.
        assert_eq!(
            apply_with_progress(&old, &again, chunk, Limits::DEFAULT, |_| {}).as_ref(),
            Ok(image)
        );
    }
    if res == Err(Error::ResultDigestMismatch) {
        // The image decoded but is not the promised one; the host does not return it, so
        // rebuild it with the sequential applier (for in-place patches the digests stay).
        let (_, out) = crate::delta_sequential::apply(&old, &patch, chunk);
        if let Some(fixed) = fix_result(&patch, &out) {
            let _ = apply_with_progress(&old, &fixed, chunk, Limits::DEFAULT, |_| {});
        }
    }
}

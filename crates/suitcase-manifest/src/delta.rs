//! Delta payloads in the processor (feature `delta`): `suit-directive-copy` with the private
//! `suitcase-parameter-delta-base` applies a `suitcase-delta` patch instead of copying bytes.
//!
//! The manifest names both ends by digest: the base component's image by the usual
//! `suit-condition-image-match` before the copy (manifest §8.4.9.2), the result by the target
//! component's `image-digest`, checked here against the patch header before anything is
//! written and again by `image-match` after the copy. The applier re-hashes the base image
//! before its first write and the result at its end (docs/delta.md), so a wrong base, a
//! damaged patch or a patch for another image never leaves a committed component: the write
//! is only ended (`write_end`) when the result verified.
//!
//! The applier's state (`suitcase_delta::REQUIRED_RAM`, about 15 KiB) lives on the stack for
//! the duration of the copy; there is no allocation.

use core::cell::RefCell;

use suitcase_delta::format::MAX_HEADER_LEN;
use suitcase_delta::{
    Applier, Error as PatchError, Header, Limits, MAX_RAM_BOUND, Mode, NewImage, OldImage, Status,
};

use crate::digest::{DigestAlgorithm, SuitDigest};
use crate::error::{DeltaCause, Error, Operation};
use crate::process::{Component, Platform};

/// What the manifest says the copy must produce.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expected<'a> {
    /// The target's suit-parameter-image-digest, if set.
    pub digest: Option<SuitDigest<'a>>,
    /// The target's suit-parameter-image-size, if set.
    pub size: Option<u64>,
}

/// Patch bytes read from the patch component per step.
const CHUNK: usize = 256;

/// Applies the patch held by `patch` to `base`'s image and writes `to`.
pub(crate) fn apply<P: Platform>(
    platform: &mut P,
    patch: &Component<'_>,
    base: &Component<'_>,
    to: &Component<'_>,
    want: Expected<'_>,
    capacity: u64,
) -> Result<(), Error> {
    let delta = |cause| Error::Delta {
        component: to.index,
        cause,
    };
    let storage = |c: &Component<'_>| Error::Platform {
        op: Operation::Storage,
        component: c.index,
    };

    // The header first: refuse a patch for another image before erasing anything.
    let mut head = [0u8; MAX_HEADER_LEN];
    let got = read_full(platform, patch, 0, &mut head).map_err(|()| storage(patch))?;
    let header = Header::parse(head.get(..got).unwrap_or_default()).map_err(|e| match e {
        PatchError::Truncated => delta(DeltaCause::Corrupt),
        e => delta(cause_of(e)),
    })?;
    if header.mode == Mode::InPlace {
        // In-place patches overwrite their own source; a copy writes another component.
        return Err(delta(DeltaCause::Unsupported));
    }
    if let Some(d) = want.digest {
        // Only a SHA-256 image digest can be compared with the patch header; other
        // algorithms are left to the image-match condition after the copy.
        if d.algorithm == DigestAlgorithm::Sha256
            && !<&[u8; 32]>::try_from(d.bytes).is_ok_and(|full| header.result_matches(full))
        {
            return Err(delta(DeltaCause::WrongResult));
        }
    }
    if want.size.is_some_and(|s| s != u64::from(header.new_size)) {
        return Err(delta(DeltaCause::WrongResult));
    }
    if u64::from(header.new_size) > capacity {
        return Err(Error::TooLarge {
            component: to.index,
            size: u64::from(header.new_size),
            capacity,
        });
    }

    platform
        .write_begin(to, Some(u64::from(header.new_size)))
        .map_err(|_| storage(to))?;
    let cell = RefCell::new(&mut *platform);
    let mut old = Base {
        platform: &cell,
        component: base,
        failed: false,
    };
    let mut new = Target {
        platform: &cell,
        component: to,
        failed: false,
    };
    let mut applier = Applier::new(Limits {
        max_ram: MAX_RAM_BOUND,
        slot_size: u32::try_from(capacity).unwrap_or(u32::MAX),
    });
    let mut buf = [0u8; CHUNK];
    let mut offset = 0u64;
    let done = loop {
        let n = cell
            .borrow_mut()
            .read(patch, offset, &mut buf)
            .map_err(|_| storage(patch))?;
        let status = applier.feed(buf.get(..n).unwrap_or_default(), &mut old, &mut new);
        match status {
            Ok(Status::Done) => break true,
            Ok(Status::NeedMore) if n == 0 => break false,
            Ok(Status::NeedMore) => offset += n as u64,
            Err(e) => {
                // A storage failure is the platform's error, unless the applier had a more
                // specific reason (a base image of the wrong size reads short).
                let cause = cause_of(e);
                let failed = if old.failed {
                    Some(base)
                } else {
                    new.failed.then_some(to)
                };
                return Err(match failed {
                    Some(c) if cause != DeltaCause::WrongBase => storage(c),
                    _ => delta(cause),
                });
            }
        }
    };
    if !done {
        return Err(delta(DeltaCause::Corrupt));
    }
    // Bytes after the patch's end in the patch component are trailing data.
    let mut probe = [0u8; 1];
    let extra = cell
        .borrow_mut()
        .read(
            patch,
            u64::from(header.payload_len) + header.len() as u64,
            &mut probe,
        )
        .map_err(|_| storage(patch))?;
    if extra != 0 {
        return Err(delta(DeltaCause::Corrupt));
    }
    // The applier's borrows of the platform end here; commit the verified image.
    platform.write_end(to).map_err(|_| storage(to))
}

fn cause_of(e: PatchError) -> DeltaCause {
    match e {
        PatchError::SourceDigestMismatch | PatchError::SourceSizeMismatch => DeltaCause::WrongBase,
        PatchError::ResultDigestMismatch => DeltaCause::WrongResult,
        PatchError::BadMagic
        | PatchError::UnsupportedVersion(_)
        | PatchError::UnsupportedMode(_)
        | PatchError::UnsupportedFlags(_)
        | PatchError::RamBoundTooLarge { .. }
        | PatchError::TooLargeForSlot { .. } => DeltaCause::Unsupported,
        _ => DeltaCause::Corrupt,
    }
}

/// Reads up to `buf.len()` bytes at `offset`, fewer only at the end of the content.
fn read_full<P: Platform>(
    platform: &mut P,
    c: &Component<'_>,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, ()> {
    let mut got = 0;
    while got < buf.len() {
        let rest = buf.get_mut(got..).ok_or(())?;
        let n = platform
            .read(c, offset + got as u64, rest)
            .map_err(|_| ())?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// The installed image, read through the platform.
struct Base<'r, 'p, 'c, P> {
    platform: &'r RefCell<&'p mut P>,
    component: &'c Component<'c>,
    failed: bool,
}

impl<P: Platform> OldImage for Base<'_, '_, '_, P> {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), PatchError> {
        let mut p = self.platform.borrow_mut();
        match read_full(&mut **p, self.component, u64::from(offset), buf) {
            Ok(n) if n == buf.len() => Ok(()),
            // Short: the base image is smaller than the patch's source.
            Ok(_) => Err(PatchError::SourceSizeMismatch),
            Err(()) => {
                self.failed = true;
                Err(PatchError::Io)
            }
        }
    }
}

/// The component being written; reads back through `Platform::read_staged`.
struct Target<'r, 'p, 'c, P> {
    platform: &'r RefCell<&'p mut P>,
    component: &'c Component<'c>,
    failed: bool,
}

impl<P: Platform> NewImage for Target<'_, '_, '_, P> {
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), PatchError> {
        let r = self
            .platform
            .borrow_mut()
            .write(self.component, u64::from(offset), data);
        r.map_err(|_| {
            self.failed = true;
            PatchError::Io
        })
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), PatchError> {
        let mut p = self.platform.borrow_mut();
        let mut got = 0;
        while got < buf.len() {
            let Some(rest) = buf.get_mut(got..) else {
                break;
            };
            match p.read_staged(self.component, u64::from(offset) + got as u64, rest) {
                Ok(0) | Err(_) => {
                    self.failed = true;
                    return Err(PatchError::Io);
                }
                Ok(n) => got += n,
            }
        }
        Ok(())
    }
}

//! Delta payloads: when the server offers a `suitcase-delta` patch from the image this device
//! runs, Receive downloads the patch instead of the full payload and applies it to the
//! installed image, streaming (old image read at offsets from its slot, new image written to
//! the payload file), in the applier's bounded RAM.
//!
//! The patch is a transport encoding, not a trust decision: the result must hash to the
//! payload's offered SHA-256 here, and Check and Process then verify it against the signed
//! manifest's image digest like any download (draft-ietf-suit-manifest §8.4.8.5,
//! image-match). Anything that does not work out (no matching source, a damaged patch, a
//! result with the wrong digest) abandons the delta and the full payload is downloaded.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use suitcase_delta::{Applier, Error as DeltaError, Limits, NewImage, OldImage, Status};

use crate::config::Kind;
use crate::ctx::Ctx;
use crate::error::AgentError;
use crate::mcu::Mcu;
pub use crate::state::DeltaState;

/// Where the installed source image is: a file, the offset of the image in it, its length.
#[derive(Debug)]
pub(crate) struct Source {
    path: PathBuf,
    base: u64,
    len: u64,
}

/// Finds the installed image whose SHA-256 is `sha256` (hex), by the inventory, and checks
/// its bytes really hash to it.
pub(crate) fn source(ctx: &Ctx, sha256: &str) -> Result<Option<Source>, AgentError> {
    let installed = ctx.state.installed()?;
    let Some(known) = installed.components.iter().find(|c| {
        c.digest
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(sha256))
    }) else {
        return Ok(None);
    };
    let Some(index) = ctx
        .cfg
        .components
        .iter()
        .position(|c| c.id_hex() == known.id)
    else {
        return Ok(None);
    };
    let Some(src) = running(ctx, index)? else {
        return Ok(None);
    };
    // The inventory could be stale (a slot rewritten behind the agent's back): hash it.
    let got = hash_range(&src)?;
    Ok(got.eq_ignore_ascii_case(sha256).then_some(src))
}

/// Where the image configured component `index` runs now is: the active file slot (as long
/// as the inventory says the image is, else the whole file), or the running MCU slot's image.
/// `None` when nothing is installed there. Nothing is hashed: a caller that trusts the bytes
/// checks them (the SUIT processor's image-match does).
pub(crate) fn running(ctx: &Ctx, index: usize) -> Result<Option<Source>, AgentError> {
    let Some(comp) = ctx.cfg.components.get(index) else {
        return Ok(None);
    };
    Ok(match &comp.kind {
        Kind::File(s) => {
            let p = crate::slots::read_pointer(&s.pointer)?;
            let path = s.slots[p.active.min(1)].clone();
            let id = comp.id_hex();
            let recorded = ctx
                .state
                .installed()?
                .components
                .iter()
                .find(|c| c.id == id)
                .and_then(|c| c.size);
            let len = match recorded {
                Some(n) => Some(n),
                None => std::fs::metadata(&path).ok().map(|m| m.len()),
            };
            len.filter(|n| *n > 0)
                .map(|len| Source { path, base: 0, len })
        }
        // A replaced file is a delta base like a slot (the processor's image-match checks
        // it); other handlers leave no one image behind.
        Kind::Module(m) => match &m.handler {
            crate::config::Handler::File { path, .. } => std::fs::metadata(path)
                .ok()
                .map(|md| md.len())
                .filter(|n| *n > 0)
                .map(|len| Source {
                    path: path.clone(),
                    base: 0,
                    len,
                }),
            _ => None,
        },
        Kind::Mcu(m) => Mcu::open(m, &ctx.state.durability)?
            .running_image()?
            .map(|(base, len)| Source {
                path: m.flash.clone(),
                base,
                len,
            }),
    })
}

impl Source {
    /// The running image as the SUIT platform's component content.
    pub(crate) fn content(self) -> crate::platform::Content {
        crate::platform::Content {
            path: self.path,
            offset: self.base,
            len: self.len,
        }
    }
}

fn hash_range(src: &Source) -> Result<String, AgentError> {
    let f = File::open(&src.path).map_err(crate::error::local(format!(
        "cannot read {}",
        src.path.display()
    )))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    while at < src.len {
        let n = usize::try_from((src.len - at).min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..n).unwrap_or_default();
        f.read_exact_at(chunk, src.base + at)
            .map_err(crate::error::local(format!(
                "cannot read {}",
                src.path.display()
            )))?;
        h.update(&*chunk);
        at += n as u64;
    }
    Ok(hex::encode(h.finalize()))
}

struct OldFile<'a> {
    f: &'a File,
    base: u64,
    len: u64,
}

impl OldImage for OldFile<'_> {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), DeltaError> {
        if u64::from(offset) + buf.len() as u64 > self.len {
            return Err(DeltaError::Io);
        }
        self.f
            .read_exact_at(buf, self.base + u64::from(offset))
            .map_err(|_| DeltaError::Io)
    }
}

struct NewFile<'a> {
    f: &'a File,
    limit: u64,
}

impl NewImage for NewFile<'_> {
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), DeltaError> {
        // Never past the offered size, whatever the patch says.
        if u64::from(offset) + data.len() as u64 > self.limit {
            return Err(DeltaError::Io);
        }
        self.f
            .write_all_at(data, u64::from(offset))
            .map_err(|_| DeltaError::Io)
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), DeltaError> {
        self.f
            .read_exact_at(buf, u64::from(offset))
            .map_err(|_| DeltaError::Io)
    }
}

/// Applies the patch file to `src`, writing the payload file (at most `size` bytes); returns
/// the SHA-256 of what was written. Blocking.
pub(crate) fn apply(
    src: &Source,
    patch: &std::path::Path,
    out: &std::path::Path,
    size: u64,
) -> Result<String, String> {
    let old = File::open(&src.path).map_err(|e| format!("{}: {e}", src.path.display()))?;
    let p = File::open(patch).map_err(|e| format!("{}: {e}", patch.display()))?;
    let new = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let slot_size = u32::try_from(size).map_err(|_| "the payload is over 4 GiB".to_owned())?;
    // The applier's state is its whole RAM budget (under 16 KiB); keep it off the stack.
    let mut applier = Box::new(Applier::new(Limits {
        max_ram: suitcase_delta::MAX_RAM_BOUND,
        slot_size,
    }));
    let mut oldf = OldFile {
        f: &old,
        base: src.base,
        len: src.len,
    };
    let mut newf = NewFile {
        f: &new,
        limit: size,
    };
    let mut buf = vec![0u8; 4096];
    let mut at = 0u64;
    let mut status = Status::NeedMore;
    loop {
        let n = p
            .read_at(&mut buf, at)
            .map_err(|e| format!("{}: {e}", patch.display()))?;
        if n == 0 {
            break;
        }
        at += n as u64;
        status = applier
            .feed(buf.get(..n).unwrap_or_default(), &mut oldf, &mut newf)
            .map_err(|e| format!("the patch does not apply: {e}"))?;
    }
    if status != Status::Done {
        return Err("the patch ended before the image was complete".into());
    }
    applier
        .finish()
        .map_err(|e| format!("the patch does not apply: {e}"))?;
    new.sync_data()
        .map_err(|e| format!("{}: {e}", out.display()))?;
    drop(new);
    hash_range(&Source {
        path: out.to_path_buf(),
        base: 0,
        len: size,
    })
    .map_err(|e| e.to_string())
}

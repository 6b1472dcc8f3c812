//! The device as the SUIT processor sees it ([`suitcase_manifest::Platform`]), in three
//! modes:
//!
//! * **Probe** (Check): nothing may change. The processor runs the shared sequence (vendor and
//!   class conditions, declared sizes against capacities) and the update sections up to their
//!   first side effect (a fetch or a write), where the probe stops it.
//! * **Process** (Process): fetches resolve to the downloaded payloads in the work area (no
//!   copy), writes (a decrypted copy, an integrated payload) go to candidate files there, and
//!   the install section's image-match conditions check each candidate against the manifest
//!   before anything touches a slot. Decryption runs inside the processor as a stream, with
//!   the content key from [`Platform::content_key`].
//! * **Reverify** (Re-verify): reads come from what Apply wrote into the inactive slots, and
//!   the validate section checks it.
//!
//! Every mode reads an `<id>/installed` helper (the base of a delta patch) where the running
//! image is, so Check refuses a delta release built for another image before anything is
//! processed, and Process patches that image (a copy with suitcase-parameter-delta-base) into
//! a candidate file like any other write.
//!
//! Reads go through a 64 KiB window per component, so memory does not depend on image sizes.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use suitcase_manifest::codepoints::helper;
use suitcase_manifest::encryption::EncryptionInfo;
use suitcase_manifest::{
    Component, ComponentId, FetchRequest, Identifier, IdentityKind, Platform, PlatformError, Record,
};

use crate::config::{Config, ImageFormat, Kind};

/// Which mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Probe,
    Process,
    Reverify,
}

/// Where a manifest component lives on this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A configured component (its index in the configuration).
    Image(usize),
    /// A work-area helper of a configured component: `<id>/staging` (an encrypted payload or
    /// a delta patch is fetched into it) or `<id>/patch` (a delta patch after decryption).
    /// Held in the work area, never written to a slot.
    Work(usize),
    /// `<id>/installed`: the image the configured component runs now, read where it is (the
    /// base of a delta patch, named by digest with image-match before anything is fetched).
    /// Never written.
    Running(usize),
}

impl Route {
    /// The configured component.
    pub(crate) fn component(self) -> usize {
        match self {
            Self::Image(i) | Self::Work(i) | Self::Running(i) => i,
        }
    }

    /// The suffix of a helper component's name (`/staging`, ...), empty for an image.
    pub(crate) fn suffix(self, id: &ComponentId<'_>) -> String {
        match self {
            Self::Image(_) => String::new(),
            Self::Work(_) | Self::Running(_) => id
                .segments()
                .last()
                .map_or_else(String::new, |s| format!("/{}", String::from_utf8_lossy(s))),
        }
    }
}

/// Finds the configured component (or its helper component) with this identifier. The
/// helpers are the ones `suitcase release build` makes (suitcase-author's release module).
pub(crate) fn route(cfg: &Config, id: &ComponentId<'_>) -> Option<Route> {
    let segments: Vec<&[u8]> = id.segments().collect();
    for (i, c) in cfg.components.iter().enumerate() {
        if id.eq_segments(&c.id) {
            return Some(Route::Image(i));
        }
        if segments.len() != c.id.len() + 1
            || !segments.iter().zip(&c.id).all(|(a, b)| *a == b.as_slice())
        {
            continue;
        }
        let last = segments.last().copied().unwrap_or_default();
        if last == helper::STAGING || last == helper::PATCH {
            return Some(Route::Work(i));
        }
        if last == helper::INSTALLED {
            return Some(Route::Running(i));
        }
    }
    None
}

/// The bytes a configured component can hold (after the slot header, for raw MCU images).
pub(crate) fn capacity(cfg: &Config, r: Route, envelope_len: u64) -> u64 {
    match r {
        Route::Work(_) => u64::MAX,
        Route::Image(i) | Route::Running(i) => match cfg.components.get(i).map(|c| &c.kind) {
            Some(Kind::File(s)) => s.capacity,
            Some(Kind::Module(m)) => m.capacity,
            Some(Kind::Mcu(m)) => match m.image {
                ImageFormat::Raw => m
                    .slot_size()
                    .saturating_sub(crate::mcu::image_offset(envelope_len)),
                ImageFormat::SlotImage => m.slot_size(),
            },
            None => 0,
        },
    }
}

/// Component content on disk: `len` bytes at `offset` of `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Content {
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

struct Writing {
    index: usize,
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    len: u64,
}

struct Window {
    index: usize,
    file: std::fs::File,
    start: u64,
    buf: Vec<u8>,
}

const WINDOW: usize = 64 * 1024;

/// The platform.
pub(crate) struct DevicePlatform<'c> {
    cfg: &'c Config,
    mode: Mode,
    envelope_len: u64,
    work: PathBuf,
    /// `(uri, file, size)` of each downloaded payload.
    payloads: Vec<(String, PathBuf, u64)>,
    /// Content by manifest component index.
    pub(crate) content: Vec<Option<Content>>,
    writing: Option<Writing>,
    window: Option<Window>,
    /// The probe reached a side effect (Check passed as far as it can go without one).
    pub(crate) side_effect: bool,
    /// Content keys recovered (encrypted payloads processed).
    pub(crate) decrypted: usize,
    /// What went wrong inside a platform call, for the report.
    pub(crate) problem: Option<String>,
    /// A write ran out of space.
    pub(crate) no_space: bool,
    /// The last command that failed, for the report.
    pub(crate) last_failed: Option<String>,
    /// Seconds since 1970; `None` when the device cannot tell (no real-time clock and no
    /// freshness statement yet, `crate::freshness::now`).
    now: Option<u64>,
}

impl core::fmt::Debug for DevicePlatform<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DevicePlatform")
            .field("mode", &self.mode)
            .field("content", &self.content)
            .finish_non_exhaustive()
    }
}

impl<'c> DevicePlatform<'c> {
    pub(crate) fn new(
        cfg: &'c Config,
        mode: Mode,
        envelope_len: u64,
        work: PathBuf,
        payloads: Vec<(String, PathBuf, u64)>,
        now: Option<u64>,
    ) -> Self {
        Self {
            cfg,
            mode,
            envelope_len,
            work,
            payloads,
            content: Vec::new(),
            writing: None,
            window: None,
            side_effect: false,
            decrypted: 0,
            problem: None,
            no_space: false,
            last_failed: None,
            now,
        }
    }

    /// Sets a component's content (Reverify: what Apply wrote).
    pub(crate) fn set_content(&mut self, index: usize, c: Content) {
        if self.content.len() <= index {
            self.content.resize(index + 1, None);
        }
        if let Some(slot) = self.content.get_mut(index) {
            *slot = Some(c);
        }
        self.window = None;
    }

    fn fail(&mut self, what: String) -> PlatformError {
        if self.problem.is_none() {
            self.problem = Some(what);
        }
        PlatformError::Failed
    }

    fn io_fail(&mut self, what: &str, e: &std::io::Error) -> PlatformError {
        if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
            self.no_space = true;
        }
        self.fail(format!("{what}: {e}"))
    }

    fn finish_write(&mut self) -> Result<(), PlatformError> {
        let Some(mut w) = self.writing.take() else {
            return Ok(());
        };
        let r = w.file.flush().and_then(|()| w.file.get_ref().sync_data());
        if let Err(e) = r {
            return Err(self.io_fail(&format!("cannot write {}", w.path.display()), &e));
        }
        self.set_content(
            w.index,
            Content {
                path: w.path,
                offset: 0,
                len: w.len,
            },
        );
        Ok(())
    }
}

impl Platform for DevicePlatform<'_> {
    fn capacity(&self, component: &Component<'_>) -> Option<u64> {
        route(self.cfg, &component.id).map(|r| capacity(self.cfg, r, self.envelope_len))
    }

    fn identity(&self, _component: &Component<'_>, kind: IdentityKind) -> Option<Identifier<'_>> {
        let id = &self.cfg.identity;
        match kind {
            IdentityKind::Vendor => Some(Identifier::Uuid(&id.vendor)),
            IdentityKind::Class => Some(Identifier::Uuid(&id.class)),
            IdentityKind::Device => id.device.as_ref().map(|d| Identifier::Uuid(d)),
        }
    }

    fn read(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        // In Probe mode only the running images (`<id>/installed`) have content: reading
        // them is no side effect, so Check already refuses a delta release for another image.
        let Some(c) = self.content.get(component.index).cloned().flatten() else {
            return Ok(0);
        };
        if offset >= c.len {
            return Ok(0);
        }
        let inside = |w: &Window| {
            w.index == component.index && offset >= w.start && offset < w.start + w.buf.len() as u64
        };
        if !self.window.as_ref().is_some_and(inside) {
            let file = match self.window.take() {
                Some(w) if w.index == component.index => w.file,
                _ => match std::fs::File::open(&c.path) {
                    Ok(f) => f,
                    Err(e) => {
                        return Err(self.io_fail(&format!("cannot read {}", c.path.display()), &e));
                    }
                },
            };
            let want = usize::try_from((c.len - offset).min(WINDOW as u64)).unwrap_or(WINDOW);
            let mut data = vec![0u8; want];
            if let Err(e) = file.read_exact_at(&mut data, c.offset + offset) {
                return Err(self.io_fail(&format!("cannot read {}", c.path.display()), &e));
            }
            self.window = Some(Window {
                index: component.index,
                file,
                start: offset,
                buf: data,
            });
        }
        let Some(w) = &self.window else {
            return Err(PlatformError::Failed);
        };
        let at = usize::try_from(offset - w.start).unwrap_or(usize::MAX);
        let rest = w.buf.get(at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    fn write_begin(
        &mut self,
        component: &Component<'_>,
        _size: Option<u64>,
    ) -> Result<(), PlatformError> {
        match self.mode {
            Mode::Probe => {
                self.side_effect = true;
                Err(PlatformError::Failed)
            }
            Mode::Reverify => Err(PlatformError::Unsupported),
            Mode::Process => {
                self.finish_write()?;
                let path = self.work.join(format!("c-{}.bin", component.index));
                if let Some(c) = self.content.get_mut(component.index) {
                    *c = None;
                }
                self.window = None;
                // Readable too: a delta copy reads back what it wrote (read_staged).
                let file = match std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(e) => {
                        return Err(self.io_fail(&format!("cannot create {}", path.display()), &e));
                    }
                };
                self.writing = Some(Writing {
                    index: component.index,
                    path,
                    file: std::io::BufWriter::with_capacity(64 * 1024, file),
                    len: 0,
                });
                Ok(())
            }
        }
    }

    /// A delta copy (suitcase-parameter-delta-base) reads back the image it is writing: the
    /// part already flushed from the file, the rest from the write buffer (no flush, so the
    /// candidate is still written in 64 KiB pieces however often the patch looks back).
    fn read_staged(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        let Some(w) = self.writing.as_ref() else {
            return Err(PlatformError::Failed);
        };
        if w.index != component.index || offset >= w.len {
            return Err(PlatformError::Failed);
        }
        let n = usize::try_from(w.len - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let pending = w.file.buffer();
        let flushed = w.len - pending.len() as u64;
        let from_file = usize::try_from(flushed.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(n);
        let Some(head) = buf.get_mut(..n) else {
            return Err(PlatformError::Failed);
        };
        let (file_part, buffer_part) = head.split_at_mut(from_file);
        if !buffer_part.is_empty() {
            // Here offset + from_file >= flushed: the rest starts inside the buffer.
            let at = usize::try_from(offset + from_file as u64 - flushed).unwrap_or(usize::MAX);
            let Some(src) = pending.get(at..).and_then(|p| p.get(..buffer_part.len())) else {
                return Err(PlatformError::Failed);
            };
            buffer_part.copy_from_slice(src);
        }
        if !file_part.is_empty()
            && let Err(e) = w.file.get_ref().read_exact_at(file_part, offset)
        {
            let what = format!("cannot read back {}", w.path.display());
            return Err(self.io_fail(&what, &e));
        }
        Ok(n)
    }

    fn write(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), PlatformError> {
        let Some(w) = self.writing.as_mut() else {
            return Err(PlatformError::Failed);
        };
        if w.index != component.index || w.len != offset {
            return Err(self.fail("writes out of order".into()));
        }
        if let Err(e) = w.file.write_all(data) {
            let what = format!("cannot write {}", w.path.display());
            return Err(self.io_fail(&what, &e));
        }
        w.len += data.len() as u64;
        Ok(())
    }

    fn write_end(&mut self, component: &Component<'_>) -> Result<(), PlatformError> {
        if self.writing.as_ref().map(|w| w.index) != Some(component.index) {
            return Err(PlatformError::Failed);
        }
        self.finish_write()
    }

    fn fetch(
        &mut self,
        component: &Component<'_>,
        request: &FetchRequest<'_>,
    ) -> Result<(), PlatformError> {
        match self.mode {
            Mode::Probe => {
                self.side_effect = true;
                Err(PlatformError::Failed)
            }
            Mode::Reverify => Err(PlatformError::Unsupported),
            Mode::Process => {
                self.finish_write()?;
                let Some((_, path, size)) = self
                    .payloads
                    .iter()
                    .find(|(u, _, _)| u == request.uri)
                    .cloned()
                else {
                    return Err(self.fail(format!(
                        "the manifest fetches {:?}, which the server's offer does not carry",
                        request.uri
                    )));
                };
                if let Some(max) = request.max_size
                    && size > max
                {
                    return Err(self.fail(format!(
                        "payload {:?} is {size} bytes but component {} holds {max}",
                        request.uri, component.index
                    )));
                }
                self.set_content(
                    component.index,
                    Content {
                        path,
                        offset: 0,
                        len: size,
                    },
                );
                Ok(())
            }
        }
    }

    fn now(&self) -> Option<u64> {
        self.now
    }

    fn authorize(&mut self, _priority: Option<i64>) -> Result<bool, PlatformError> {
        // Consent is the Announce step's; by Process it has been given.
        Ok(true)
    }

    fn content_key(
        &mut self,
        info: &EncryptionInfo<'_>,
        cek: &mut [u8; 32],
    ) -> Result<usize, PlatformError> {
        let r = self.cfg.trust.keys.content_key(info, cek);
        match r {
            Ok(_) => self.decrypted += 1,
            Err(_) => {
                let _ = self.fail(
                    "no decryption key (trust.decrypt) recovers the content key: the payload is encrypted for another device".into(),
                );
            }
        }
        r
    }

    fn record(&mut self, record: &Record<'_>) {
        if !record.success {
            self.last_failed = Some(format!(
                "{}: {} on component {}",
                record
                    .section
                    .map_or("shared", suitcase_manifest::Section::name),
                record.command.name(),
                record.component
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::cast_possible_truncation, reason = "test code")]
    use super::*;

    /// A delta copy looks back at what it wrote: the bytes come back right whether they are
    /// already in the file, still in the write buffer, or split between the two.
    #[test]
    fn read_staged_returns_flushed_and_buffered_bytes() {
        let dir = std::env::temp_dir().join(format!(
            "suitcase-agent-platform-{}",
            hex::encode(crate::config::random_bytes::<6>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let g =
            suitcase_author::keys::generate(suitcase_author::keys::KeyAlg::Ed25519, "t").unwrap();
        let private = dir.join("a.key");
        suitcase_author::keys::write_atomic(&private, &g.private, true).unwrap();
        let key = suitcase_author::keys::load_private(&private).unwrap();
        let (public, _) = suitcase_author::keys::public_of(&key)
            .unwrap()
            .encode()
            .unwrap();
        std::fs::write(dir.join("a.pub"), public).unwrap();
        let cfg = Config::parse(
            &dir.join("agent.toml"),
            "state_dir = \"state\"\n[server]\nurl = \"http://127.0.0.1:1\"\ntoken = \"t\"\n[trust]\nanchors = [\"a.pub\"]\n[identity]\nvendor = \"example.com\"\nclass = \"c\"\n[[component]]\nname = \"app\"\nid = \"41\"\nkind = \"file\"\nslots = [\"a.bin\", \"b.bin\"]\npointer = \"app.slot\"\ncapacity = 1048576\n",
        )
        .unwrap();
        let mut p = DevicePlatform::new(&cfg, Mode::Process, 0, dir.clone(), Vec::new(), Some(0));
        // 0x41 = "A": a one-segment identifier, bstr "A" in an array.
        let raw = [0x81, 0x41, b'A'];
        let c = Component {
            index: 0,
            id: ComponentId::decode(&raw).unwrap(),
        };
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        p.write_begin(&c, None).unwrap();
        for chunk in data.chunks(10_000) {
            let at = p.writing.as_ref().unwrap().len;
            p.write(&c, at, chunk).unwrap();
        }
        let flushed = 200_000 - p.writing.as_ref().unwrap().file.buffer().len();
        assert!(
            flushed > 0 && flushed < 200_000,
            "both parts exist: {flushed}"
        );
        for (offset, len) in [
            (0, 100),
            (flushed - 10, 20),
            (flushed, 64),
            (199_990, 64),
            (5, 150_000),
        ] {
            let mut buf = vec![0u8; len];
            let n = p
                .read_staged(&c, offset as u64, &mut buf)
                .unwrap_or_else(|e| panic!("offset {offset}, length {len}: {e:?}"));
            let want = &data[offset..(offset + len).min(data.len())];
            assert_eq!(&buf[..n], want, "offset {offset}, length {len}");
        }
        // Past the end, or another component: an error, not stale bytes.
        assert!(p.read_staged(&c, 200_000, &mut [0u8; 4]).is_err());
        p.write_end(&c).unwrap();
        assert_eq!(std::fs::read(dir.join("c-0.bin")).unwrap(), data);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The SUIT processor's platform for one update: payload blocks stream from the transport
//! through the processor (digest, decryption, delta patch) into the slot, in two fixed
//! buffers of [`BLOCK`] bytes.
//!
//! - The image component's new content is the slot image's image region, written one block at
//!   a time after the header and envelope; reading it back reads the slot (what image-match
//!   hashes is what the flash holds, not what was meant to be written).
//! - `<image>/staging` is never stored: a fetch into it only records the URI, and reading it
//!   requests the block at that offset from the transport. Decryption and delta patching read
//!   it in order, so each block is requested once.
//! - `<image>/installed` is the image in the running slot, the base of a delta patch.

use suitcase_manifest::encryption::EncryptionInfo;
use suitcase_manifest::{
    Component, FetchRequest, Identifier, IdentityKind, Platform, PlatformError,
};

use super::check::{Role, Roles};
use super::io::{IoError, Journal, Progress, SlotRole, Slots, Transport};
use super::{BLOCK, Device, Error, Layout, Step};

/// The longest payload URI the pipeline keeps.
pub const MAX_URI: usize = 256;
use crate::{HEADER_SIZE, SlotHeader};

/// The platform; `T` is `()` when no transport is needed (reading back).
pub(crate) struct Pipeline<'x, T, S, J> {
    pub(crate) device: &'x Device<'x>,
    pub(crate) transport: Option<&'x mut T>,
    pub(crate) slots: &'x mut S,
    pub(crate) journal: Option<&'x mut J>,
    pub(crate) roles: Roles,
    pub(crate) layout: Layout,
    /// Slot bytes already durable before this run (resume): not written again.
    pub(crate) durable: u64,
    /// The first error the platform met, with more detail than `PlatformError`.
    pub(crate) error: Option<Error>,
    /// Payload blocks requested from the transport.
    pub(crate) blocks: u64,
    // The write side: `tx` holds slot bytes `[tx_at, tx_at + tx_fill)`.
    tx: [u8; BLOCK],
    tx_at: u64,
    tx_fill: usize,
    /// Image bytes produced so far (written or buffered).
    produced: u64,
    /// The image region now holds the new content.
    image_done: bool,
    // The read side: `rx` holds staging bytes `[rx_at, rx_at + rx_len)`.
    rx: [u8; BLOCK],
    rx_at: u64,
    rx_len: usize,
    /// The URI of the payload being read, copied from the fetch request.
    uri: [u8; MAX_URI],
    uri_len: usize,
    /// The declared size of `<image>/staging` once fetched.
    remote: Option<u64>,
    installed: Option<SlotHeader>,
}

impl<'x, T: Transport, S: Slots, J: Journal> Pipeline<'x, T, S, J> {
    pub(crate) fn new(
        device: &'x Device<'x>,
        transport: Option<&'x mut T>,
        slots: &'x mut S,
        journal: Option<&'x mut J>,
        roles: Roles,
        layout: Layout,
    ) -> Self {
        Self {
            device,
            transport,
            slots,
            journal,
            roles,
            layout,
            durable: 0,
            error: None,
            blocks: 0,
            tx: [0xFF; BLOCK],
            tx_at: 0,
            tx_fill: 0,
            produced: 0,
            image_done: false,
            rx: [0; BLOCK],
            rx_at: 0,
            rx_len: 0,
            uri: [0; MAX_URI],
            uri_len: 0,
            remote: None,
            installed: None,
        }
    }

    /// A pipeline over a slot image that is already complete (read back, verify).
    pub(crate) fn written(mut self) -> Self {
        self.image_done = true;
        self.produced = self.layout.image_len;
        self
    }

    pub(crate) fn image_written(&self) -> bool {
        self.image_done
    }

    fn fail(&mut self, error: Error) -> PlatformError {
        if self.error.is_none() {
            self.error = Some(error);
        }
        PlatformError::Failed
    }

    /// Writes the slot header and the envelope (the first bytes of the slot image).
    pub(crate) fn put_prefix(&mut self, envelope: &[u8]) -> Result<(), Error> {
        let l = self.layout;
        let mut header = [0u8; HEADER_SIZE as usize];
        let fields: [(usize, &[u8]); 5] = [
            (0, &crate::MAGIC),
            (4, &1u16.to_le_bytes()),
            (8, &l.envelope_len.to_le_bytes()),
            (12, &l.image_offset.to_le_bytes()),
            (16, &l.image_len_u32().to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = header.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        self.put(&header)?;
        self.put(envelope)?;
        let pad = u64::from(l.image_offset).saturating_sub(self.tx_at + self.tx_fill as u64);
        let ff = [0xFFu8; 64];
        let mut left = pad;
        while left > 0 {
            let n = usize::try_from(left.min(64)).unwrap_or(64);
            self.put(ff.get(..n).unwrap_or_default())?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Appends slot bytes, writing each full block.
    fn put(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let room = BLOCK - self.tx_fill;
            let n = room.min(data.len());
            let (now, rest) = data.split_at(n);
            if let Some(dst) = self.tx.get_mut(self.tx_fill..self.tx_fill + n) {
                dst.copy_from_slice(now);
            }
            self.tx_fill += n;
            data = rest;
            if self.tx_fill == BLOCK {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the buffered block (padded with 0xFF) unless it is already durable.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        if self.tx_fill == 0 {
            return Ok(());
        }
        if let Some(pad) = self.tx.get_mut(self.tx_fill..) {
            pad.fill(0xFF);
        }
        let end = self.tx_at + BLOCK as u64;
        if end > self.layout.slot_len {
            return Err(Error::Processing(suitcase_manifest::Error::TooLarge {
                component: self.roles.image,
                size: end,
                capacity: self.layout.slot_len,
            }));
        }
        if self.tx_at >= self.durable {
            self.slots
                .write(self.tx_at, &self.tx)
                .map_err(|e| Error::Io(Step::Fetch, e))?;
            if let Some(j) = self.journal.as_deref_mut() {
                j.store(Some(Progress::Fetching {
                    len: self.layout.slot_len,
                    written: end,
                }))
                .map_err(|e| Error::Io(Step::Journal, e))?;
            }
        }
        self.tx_at = end;
        self.tx_fill = 0;
        Ok(())
    }

    /// Skips the image bytes below `durable` in a plain fetch: they are in the slot already.
    fn skip_to_durable(&mut self) -> u64 {
        let start = u64::from(self.layout.image_offset);
        if self.durable > start && self.tx_fill == 0 && self.tx_at == start {
            let skip = self.durable - start;
            self.tx_at = self.durable;
            self.produced = skip;
            return skip;
        }
        0
    }

    fn role(&self, component: &Component<'_>) -> Option<Role> {
        self.roles.get(component.index)
    }

    fn set_uri(&mut self, uri: &str) -> Result<(), PlatformError> {
        let dst = self
            .uri
            .get_mut(..uri.len())
            .ok_or(PlatformError::Unsupported)?;
        dst.copy_from_slice(uri.as_bytes());
        self.uri_len = uri.len();
        Ok(())
    }

    /// Requests the payload block at `offset` into `rx`.
    fn block(&mut self, offset: u64) -> Result<usize, PlatformError> {
        let Some(transport) = self.transport.as_deref_mut() else {
            return Err(PlatformError::Unsupported);
        };
        let uri = self
            .uri
            .get(..self.uri_len)
            .and_then(|u| core::str::from_utf8(u).ok())
            .ok_or(PlatformError::Failed)?;
        self.blocks += 1;
        match transport.payload(uri, offset, &mut self.rx) {
            Ok(n) if n <= BLOCK => Ok(n),
            Ok(_) => Err(self.fail(Error::Io(Step::Fetch, IoError::TooLarge))),
            Err(e) => Err(self.fail(Error::Io(Step::Fetch, e))),
        }
    }

    /// A plain fetch: the payload is the image; stream it into the slot.
    fn fetch_image(&mut self, max: u64) -> Result<(), PlatformError> {
        let mut offset = self.skip_to_durable();
        // Bounded: every pass adds at least one byte, and more than `max` bytes fail.
        loop {
            let n = self.block(offset)?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            if offset > max {
                return Err(
                    self.fail(Error::Processing(suitcase_manifest::Error::TooLarge {
                        component: self.roles.image,
                        size: offset,
                        capacity: max,
                    })),
                );
            }
            let rx = self.rx;
            if let Err(e) = self.put(rx.get(..n).unwrap_or_default()) {
                return Err(self.fail(e));
            }
            if n < BLOCK {
                break;
            }
        }
        self.produced = offset;
        Ok(())
    }

    fn read_slot(&mut self, role: SlotRole, at: u64, buf: &mut [u8]) -> Result<(), PlatformError> {
        self.slots
            .read(role, at, buf)
            .map_err(|e| self.fail(Error::Io(Step::Verify, e)))
    }

    fn installed_header(&mut self) -> Result<SlotHeader, PlatformError> {
        if let Some(h) = self.installed {
            return Ok(h);
        }
        let mut raw = [0u8; HEADER_SIZE as usize];
        self.read_slot(SlotRole::Running, 0, &mut raw)?;
        let h = SlotHeader::parse(&raw)
            .ok()
            .flatten()
            .ok_or(PlatformError::Failed)?;
        self.installed = Some(h);
        Ok(h)
    }
}

fn clamp(len: u64, offset: u64, buf: &mut [u8]) -> usize {
    usize::try_from(len.saturating_sub(offset))
        .unwrap_or(usize::MAX)
        .min(buf.len())
}

impl<T: Transport, S: Slots, J: Journal> Platform for Pipeline<'_, T, S, J> {
    fn capacity(&self, component: &Component<'_>) -> Option<u64> {
        let l = self.layout;
        match self.role(component)? {
            Role::Image => Some(l.slot_len.saturating_sub(u64::from(l.image_offset))),
            Role::Remote | Role::Installed => Some(l.slot_len),
        }
    }

    fn identity(&self, _component: &Component<'_>, kind: IdentityKind) -> Option<Identifier<'_>> {
        let i = &self.device.identity;
        match kind {
            IdentityKind::Vendor => Some(Identifier::Uuid(i.vendor)),
            IdentityKind::Class => Some(Identifier::Uuid(i.class)),
            IdentityKind::Device => i.device.map(Identifier::Uuid),
        }
    }

    fn read(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        match self.role(component).ok_or(PlatformError::Unsupported)? {
            Role::Image => {
                if !self.image_done {
                    return Ok(0);
                }
                let n = clamp(self.produced, offset, buf);
                let at = u64::from(self.layout.image_offset).saturating_add(offset);
                let dst = buf.get_mut(..n).ok_or(PlatformError::Failed)?;
                if n > 0 {
                    self.read_slot(SlotRole::Update, at, dst)?;
                }
                Ok(n)
            }
            Role::Installed => {
                let h = self.installed_header()?;
                let n = clamp(u64::from(h.image_len), offset, buf);
                let at = u64::from(h.image_offset).saturating_add(offset);
                let dst = buf.get_mut(..n).ok_or(PlatformError::Failed)?;
                if n > 0 {
                    self.read_slot(SlotRole::Running, at, dst)?;
                }
                Ok(n)
            }
            Role::Remote => {
                let Some(max) = self.remote else {
                    return Ok(0);
                };
                if offset >= max {
                    return Ok(0);
                }
                let start = offset - offset % BLOCK as u64;
                if self.rx_at != start || self.rx_len == 0 {
                    self.rx_len = 0;
                    self.rx_len = self.block(start)?;
                    self.rx_at = start;
                }
                let within = usize::try_from(offset - start).unwrap_or(usize::MAX);
                let have = self.rx.get(within..self.rx_len).unwrap_or_default();
                let n = have.len().min(buf.len()).min(clamp(max, offset, buf));
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), have.get(..n)) {
                    dst.copy_from_slice(src);
                }
                Ok(n)
            }
        }
    }

    fn write_begin(
        &mut self,
        component: &Component<'_>,
        size: Option<u64>,
    ) -> Result<(), PlatformError> {
        if self.role(component) != Some(Role::Image) {
            return Err(PlatformError::Unsupported);
        }
        if size.is_some_and(|s| s > self.layout.image_len) || self.produced != 0 {
            return Err(PlatformError::Failed);
        }
        Ok(())
    }

    fn write(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), PlatformError> {
        if self.role(component) != Some(Role::Image) || offset != self.produced {
            return Err(PlatformError::Failed);
        }
        if let Err(e) = self.put(data) {
            return Err(self.fail(e));
        }
        self.produced += data.len() as u64;
        Ok(())
    }

    fn write_end(&mut self, component: &Component<'_>) -> Result<(), PlatformError> {
        if self.role(component) != Some(Role::Image) {
            return Err(PlatformError::Unsupported);
        }
        if let Err(e) = self.flush() {
            return Err(self.fail(e));
        }
        self.image_done = true;
        Ok(())
    }

    fn read_staged(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        if self.role(component) != Some(Role::Image) {
            return Err(PlatformError::Unsupported);
        }
        let n = clamp(self.produced, offset, buf);
        let at = u64::from(self.layout.image_offset).saturating_add(offset);
        let mut done = 0;
        // Bytes before the write buffer are in the slot; the rest are still in the buffer.
        while done < n {
            let pos = at.saturating_add(done as u64);
            let dst = buf.get_mut(done..n).ok_or(PlatformError::Failed)?;
            if pos < self.tx_at {
                let k = usize::try_from(self.tx_at - pos)
                    .unwrap_or(usize::MAX)
                    .min(dst.len());
                let part = dst.get_mut(..k).ok_or(PlatformError::Failed)?;
                self.read_slot(SlotRole::Update, pos, part)?;
                done += k;
            } else {
                let within =
                    usize::try_from(pos - self.tx_at).map_err(|_| PlatformError::Failed)?;
                let src = self
                    .tx
                    .get(within..self.tx_fill)
                    .ok_or(PlatformError::Failed)?;
                let k = src.len().min(dst.len());
                if k == 0 {
                    return Err(PlatformError::Failed);
                }
                if let (Some(d), Some(s)) = (dst.get_mut(..k), src.get(..k)) {
                    d.copy_from_slice(s);
                }
                done += k;
            }
        }
        Ok(n)
    }

    fn fetch(
        &mut self,
        component: &Component<'_>,
        request: &FetchRequest<'_>,
    ) -> Result<(), PlatformError> {
        let max = request.max_size.unwrap_or(0);
        match self.role(component).ok_or(PlatformError::Unsupported)? {
            Role::Image => {
                self.set_uri(request.uri)?;
                self.write_begin(component, request.max_size)?;
                self.fetch_image(max)?;
                self.write_end(component)
            }
            Role::Remote => {
                // Nothing is stored: reads of the component request its blocks.
                self.set_uri(request.uri)?;
                self.remote = Some(max);
                self.rx_len = 0;
                Ok(())
            }
            Role::Installed => Err(PlatformError::Unsupported),
        }
    }

    fn content_key(
        &mut self,
        info: &EncryptionInfo<'_>,
        cek: &mut [u8; 32],
    ) -> Result<usize, PlatformError> {
        self.device
            .keys
            .iter()
            .find_map(|k| k.unwrap_cek(info, cek).ok())
            .ok_or(PlatformError::Failed)
    }
}

//! An in-memory device: components as byte vectors, payloads served from a map.
//!
//! `suitcase manifest check --device PROFILE.json` runs manifests against one of these, and the
//! tests use it as their platform. It records every command and every effect so that a caller
//! can show or assert what the manifest did.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use crate::command::CustomArg;
use crate::params::Identifier;
use crate::process::{Component, FetchRequest, IdentityKind, Platform, PlatformError, Record};

/// One component of a [`MemoryDevice`].
#[derive(Clone, Debug, Default)]
pub struct MemoryComponent {
    /// The identifier's segments.
    pub id: Vec<Vec<u8>>,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Current content.
    pub content: Vec<u8>,
    /// The slot it occupies, if the device has slots.
    pub slot: Option<u64>,
    /// The installed version, for condition-version.
    pub version: Option<Vec<i64>>,
    /// Content being written (between `write_begin` and `write_end`).
    pub staged: Option<Vec<u8>>,
}

/// Something the manifest made the device do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A payload was fetched into component `component` from `uri` (`bytes` long).
    Fetched {
        /// Component index.
        component: usize,
        /// The URI.
        uri: String,
        /// Bytes stored.
        bytes: usize,
    },
    /// A component's content was replaced (`bytes` long).
    Written {
        /// Component index.
        component: usize,
        /// Bytes written.
        bytes: usize,
    },
    /// Two components were swapped.
    Swapped {
        /// Destination index.
        a: usize,
        /// Source index.
        b: usize,
    },
    /// A component was invoked.
    Invoked {
        /// Component index.
        component: usize,
        /// Invoke arguments.
        args: Option<Vec<u8>>,
    },
}

/// A command outcome, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Section name (`"shared"` for the shared sequence).
    pub section: &'static str,
    /// Offset in the command sequence.
    pub offset: usize,
    /// Command name.
    pub command: &'static str,
    /// Component index.
    pub component: usize,
    /// Whether it succeeded.
    pub success: bool,
}

/// A device held entirely in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryDevice {
    /// Vendor identifier (UUID or CBOR-PEN).
    pub vendor_id: Option<(bool, Vec<u8>)>,
    /// Class identifier (UUID).
    pub class_id: Option<Vec<u8>>,
    /// Device identifier (UUID).
    pub device_id: Option<Vec<u8>>,
    /// The components.
    pub components: Vec<MemoryComponent>,
    /// Payloads by URI.
    pub payloads: Vec<(String, Vec<u8>)>,
    /// Content-encryption key provider.
    pub keys: crate::encryption::DeviceKeys,
    /// Seconds since 1970, if the device has a clock.
    pub now: Option<u64>,
    /// Battery energy in mWh.
    pub battery_mwh: Option<u64>,
    /// The application's answer to update-authorized.
    pub authorized: Option<bool>,
    /// What happened, in order.
    pub effects: Vec<Effect>,
    /// Every command outcome, in order.
    pub records: Vec<OwnedRecord>,
}

impl MemoryDevice {
    fn find(&self, c: &Component<'_>) -> Option<usize> {
        self.components.iter().position(|m| c.id.eq_segments(&m.id))
    }

    /// The component with this identifier.
    pub fn component(&self, id: &[&[u8]]) -> Option<&MemoryComponent> {
        self.components
            .iter()
            .find(|m| m.id.iter().map(Vec::as_slice).eq(id.iter().copied()))
    }
}

/// Copies what `bytes` holds at `offset` into `buf`; returns the count (0 at the end).
fn read_at(bytes: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize, PlatformError> {
    let start = usize::try_from(offset).map_err(|_| PlatformError::Failed)?;
    let rest = bytes.get(start..).unwrap_or_default();
    let n = rest.len().min(buf.len());
    buf.get_mut(..n)
        .ok_or(PlatformError::Failed)?
        .copy_from_slice(rest.get(..n).unwrap_or_default());
    Ok(n)
}

impl Platform for MemoryDevice {
    fn capacity(&self, component: &Component<'_>) -> Option<u64> {
        self.find(component)
            .and_then(|i| self.components.get(i))
            .map(|m| m.capacity)
    }

    fn identity(&self, _component: &Component<'_>, kind: IdentityKind) -> Option<Identifier<'_>> {
        match kind {
            IdentityKind::Vendor => self.vendor_id.as_ref().map(|(pen, bytes)| {
                if *pen {
                    Identifier::Pen(bytes)
                } else {
                    Identifier::Uuid(bytes)
                }
            }),
            IdentityKind::Class => self.class_id.as_deref().map(Identifier::Uuid),
            IdentityKind::Device => self.device_id.as_deref().map(Identifier::Uuid),
        }
    }

    fn read(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        let i = self.find(component).ok_or(PlatformError::Failed)?;
        let content = &self.components.get(i).ok_or(PlatformError::Failed)?.content;
        read_at(content, offset, buf)
    }

    fn write_begin(
        &mut self,
        component: &Component<'_>,
        _size: Option<u64>,
    ) -> Result<(), PlatformError> {
        let i = self.find(component).ok_or(PlatformError::Failed)?;
        self.components
            .get_mut(i)
            .ok_or(PlatformError::Failed)?
            .staged = Some(Vec::new());
        Ok(())
    }

    fn write(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), PlatformError> {
        let i = self.find(component).ok_or(PlatformError::Failed)?;
        let m = self.components.get_mut(i).ok_or(PlatformError::Failed)?;
        let capacity = m.capacity;
        let buf = m.staged.as_mut().ok_or(PlatformError::Failed)?;
        if buf.len() as u64 != offset || offset + data.len() as u64 > capacity {
            return Err(PlatformError::Failed);
        }
        buf.extend_from_slice(data);
        Ok(())
    }

    fn read_staged(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        let i = self.find(component).ok_or(PlatformError::Failed)?;
        let m = self.components.get(i).ok_or(PlatformError::Failed)?;
        read_at(m.staged.as_ref().ok_or(PlatformError::Failed)?, offset, buf)
    }

    fn write_end(&mut self, component: &Component<'_>) -> Result<(), PlatformError> {
        let i = self.find(component).ok_or(PlatformError::Failed)?;
        let m = self.components.get_mut(i).ok_or(PlatformError::Failed)?;
        let buf = m.staged.take().ok_or(PlatformError::Failed)?;
        let bytes = buf.len();
        m.content = buf;
        self.effects.push(Effect::Written {
            component: component.index,
            bytes,
        });
        Ok(())
    }

    fn slot(&self, component: &Component<'_>) -> Option<u64> {
        self.find(component)
            .and_then(|i| self.components.get(i))
            .and_then(|m| m.slot)
    }

    fn fetch(
        &mut self,
        component: &Component<'_>,
        request: &FetchRequest<'_>,
    ) -> Result<(), PlatformError> {
        let i = self.find(component).ok_or(PlatformError::Failed)?;
        let bytes = self
            .payloads
            .iter()
            .find(|(uri, _)| uri == request.uri)
            .map(|(_, b)| b.clone())
            .ok_or(PlatformError::Failed)?;
        if request.max_size.is_some_and(|max| bytes.len() as u64 > max) {
            return Err(PlatformError::Failed);
        }
        self.effects.push(Effect::Fetched {
            component: component.index,
            uri: request.uri.to_owned(),
            bytes: bytes.len(),
        });
        self.components
            .get_mut(i)
            .ok_or(PlatformError::Failed)?
            .content = bytes;
        Ok(())
    }

    fn swap(&mut self, a: &Component<'_>, b: &Component<'_>) -> Result<(), PlatformError> {
        let (ia, ib) = (
            self.find(a).ok_or(PlatformError::Failed)?,
            self.find(b).ok_or(PlatformError::Failed)?,
        );
        let ca = core::mem::take(
            &mut self
                .components
                .get_mut(ia)
                .ok_or(PlatformError::Failed)?
                .content,
        );
        let cb = core::mem::replace(
            &mut self
                .components
                .get_mut(ib)
                .ok_or(PlatformError::Failed)?
                .content,
            ca,
        );
        self.components
            .get_mut(ia)
            .ok_or(PlatformError::Failed)?
            .content = cb;
        self.effects.push(Effect::Swapped {
            a: a.index,
            b: b.index,
        });
        Ok(())
    }

    fn invoke(
        &mut self,
        component: &Component<'_>,
        args: Option<&[u8]>,
    ) -> Result<(), PlatformError> {
        self.effects.push(Effect::Invoked {
            component: component.index,
            args: args.map(<[u8]>::to_vec),
        });
        Ok(())
    }

    fn now(&self) -> Option<u64> {
        self.now
    }

    fn battery_mwh(&self) -> Option<u64> {
        self.battery_mwh
    }

    fn authorize(&mut self, _priority: Option<i64>) -> Result<bool, PlatformError> {
        self.authorized.ok_or(PlatformError::Unsupported)
    }

    fn version(&self, component: &Component<'_>) -> Option<&[i64]> {
        self.find(component)
            .and_then(|i| self.components.get(i))
            .and_then(|m| m.version.as_deref())
    }

    fn custom(
        &mut self,
        _c: &Component<'_>,
        _id: i64,
        _arg: CustomArg<'_>,
    ) -> Result<bool, PlatformError> {
        Err(PlatformError::Unsupported)
    }

    fn content_key(
        &mut self,
        info: &crate::encryption::EncryptionInfo<'_>,
        cek: &mut [u8; 32],
    ) -> Result<usize, PlatformError> {
        self.keys.content_key(info, cek)
    }

    fn record(&mut self, record: &Record<'_>) {
        self.records.push(OwnedRecord {
            section: record.section.map_or("shared", crate::Section::name),
            offset: record.offset,
            command: record.command.name(),
            component: record.component,
            success: record.success,
        });
    }
}

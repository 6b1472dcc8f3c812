//! The SUIT secure-boot verifier and the slot image format.

use embedded_storage::nor_flash::ReadNorFlash;
use suitcase_boot::{
    ImageDigest, ImageIndex, ImageVerifier, Measurement, SecurityVersion, VerifyError,
};
use suitcase_manifest::{
    Command, Component, ComponentId, Condition, Envelope, FetchRequest, Identifier, IdentityKind,
    Platform, PlatformError, Processor, ProcessorPolicy, Record, Section, TrustAnchor, TrustPolicy,
};

/// The slot image magic.
pub const MAGIC: [u8; 4] = *b"SUIT";
/// The size of the slot header.
pub const HEADER_SIZE: u32 = 32;
const FORMAT_VERSION: u16 = 1;

/// A parsed slot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHeader {
    /// Envelope length.
    pub envelope_len: u32,
    /// Where the image starts.
    pub image_offset: u32,
    /// Image length.
    pub image_len: u32,
}

impl SlotHeader {
    /// Parses a header. `Ok(None)` for an erased slot.
    ///
    /// # Errors
    /// [`VerifyError::Rejected`] for anything that is neither erased nor a valid header.
    pub fn parse(bytes: &[u8; HEADER_SIZE as usize]) -> Result<Option<Self>, VerifyError> {
        if bytes.iter().all(|b| *b == 0xFF) {
            return Ok(None);
        }
        let u32_at = |i: usize| -> Result<u32, VerifyError> {
            let b: [u8; 4] = bytes
                .get(i..i + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or(VerifyError::Rejected)?;
            Ok(u32::from_le_bytes(b))
        };
        let version = bytes
            .get(4..6)
            .and_then(|s| s.try_into().ok())
            .map(u16::from_le_bytes);
        if bytes.get(..4) != Some(&MAGIC[..]) || version != Some(FORMAT_VERSION) {
            return Err(VerifyError::Rejected);
        }
        let header = Self {
            envelope_len: u32_at(8)?,
            image_offset: u32_at(12)?,
            image_len: u32_at(16)?,
        };
        let envelope_end = HEADER_SIZE
            .checked_add(header.envelope_len)
            .ok_or(VerifyError::Rejected)?;
        if header.image_offset < envelope_end
            || !header.image_offset.is_multiple_of(4)
            || header.image_offset.checked_add(header.image_len).is_none()
        {
            return Err(VerifyError::Rejected);
        }
        Ok(Some(header))
    }
}

/// Packs an envelope and an image into a slot image, the image aligned to `align` bytes.
#[cfg(feature = "alloc")]
pub fn pack(envelope: &[u8], image: &[u8], align: u32) -> Option<alloc::vec::Vec<u8>> {
    let align = align.max(4);
    let envelope_len = u32::try_from(envelope.len()).ok()?;
    let image_len = u32::try_from(image.len()).ok()?;
    let image_offset = HEADER_SIZE
        .checked_add(envelope_len)?
        .checked_next_multiple_of(align)?;
    let mut out =
        alloc::vec::Vec::with_capacity(usize::try_from(image_offset.checked_add(image_len)?).ok()?);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&envelope_len.to_le_bytes());
    out.extend_from_slice(&image_offset.to_le_bytes());
    out.extend_from_slice(&image_len.to_le_bytes());
    out.resize(HEADER_SIZE as usize, 0);
    out.extend_from_slice(envelope);
    out.resize(usize::try_from(image_offset).ok()?, 0);
    out.extend_from_slice(image);
    Some(out)
}

/// The device's identity, as the manifest's identity conditions check it.
#[derive(Clone, Copy, Debug)]
pub struct DeviceIdentity<'k> {
    /// Vendor identifier (UUID).
    pub vendor: &'k [u8],
    /// Class identifier (UUID).
    pub class: &'k [u8],
    /// Device identifier (UUID), if the device has one.
    pub device: Option<&'k [u8]>,
}

/// The SUIT secure-boot verifier: `BUF` bytes of RAM hold the envelope while it is checked.
#[derive(Debug)]
pub struct SuitVerifier<'k, const BUF: usize> {
    anchors: &'k [TrustAnchor<'k>],
    policy: TrustPolicy<'k>,
    identity: DeviceIdentity<'k>,
    /// The component identifier the image of each [`ImageIndex`] has in the manifest.
    components: &'k [ComponentId<'k>],
    buf: [u8; BUF],
}

impl<'k, const BUF: usize> SuitVerifier<'k, BUF> {
    /// A verifier trusting `anchors` under `policy`. `components[i]` is the component id of
    /// image `i` (e.g. `[h'00']`).
    pub fn new(
        anchors: &'k [TrustAnchor<'k>],
        policy: TrustPolicy<'k>,
        identity: DeviceIdentity<'k>,
        components: &'k [ComponentId<'k>],
    ) -> Self {
        Self {
            anchors,
            policy,
            identity,
            components,
            buf: [0; BUF],
        }
    }
}

impl<const BUF: usize> ImageVerifier for SuitVerifier<'_, BUF> {
    fn verify<F: ReadNorFlash>(
        &mut self,
        image: ImageIndex,
        slot: &mut F,
    ) -> Result<Measurement, VerifyError> {
        let mut header = [0u8; HEADER_SIZE as usize];
        slot.read(0, &mut header)?;
        let header = SlotHeader::parse(&header)?.ok_or(VerifyError::Empty)?;
        let end = u64::from(header.image_offset) + u64::from(header.image_len);
        if end > slot.capacity() as u64 {
            return Err(VerifyError::Rejected);
        }
        let envelope_len =
            usize::try_from(header.envelope_len).map_err(|_| VerifyError::Rejected)?;
        let buf = self
            .buf
            .get_mut(..envelope_len)
            .ok_or(VerifyError::Rejected)?;
        slot.read(HEADER_SIZE, buf)?;
        let component = *self
            .components
            .get(usize::from(image.0))
            .ok_or(VerifyError::Rejected)?;
        // Manifest §6.2: authenticate before parsing anything else.
        let verified = Envelope::decode(buf)
            .and_then(|e| e.verify(self.anchors, &self.policy))
            .map_err(|_| VerifyError::Rejected)?;
        let index = manifest_index(&verified, &component).ok_or(VerifyError::Rejected)?;
        let mut platform = SlotPlatform {
            slot,
            header,
            component,
            index,
            identity: self.identity,
            matched: false,
            read_error: false,
        };
        // Secure boot is the invocation procedure up to invoke: the bootloader jumps itself.
        // Anti-rollback is the bootloader's counter, compared with the security version.
        let mut processor = Processor::new(&verified, &mut platform, ProcessorPolicy::default())
            .map_err(|_| VerifyError::Rejected)?;
        let ran = processor
            .run(Section::Validate)
            .map_err(|_| VerifyError::Rejected)?;
        let digest = processor
            .parameters(index)
            .and_then(|p| p.image_digest)
            .ok_or(VerifyError::Rejected)?;
        if !ran || !platform.matched || platform.read_error {
            // A manifest whose validate section does not check this image proves nothing
            // about it (manifest §7.2, trusted invocation: validate = image-match).
            return Err(VerifyError::Rejected);
        }
        Ok(Measurement {
            digest: ImageDigest::new(digest.bytes).ok_or(VerifyError::Rejected)?,
            security_version: SecurityVersion(verified.sequence_number()),
            size: u32::try_from(end).map_err(|_| VerifyError::Rejected)?,
        })
    }
}

fn manifest_index(
    verified: &suitcase_manifest::VerifiedManifest<'_>,
    id: &ComponentId<'_>,
) -> Option<usize> {
    verified.manifest().components.iter().position(|c| c == *id)
}

/// The slot as the processor's platform: one readable component, the image; nothing writable.
struct SlotPlatform<'s, 'k, F> {
    slot: &'s mut F,
    header: SlotHeader,
    component: ComponentId<'k>,
    index: usize,
    identity: DeviceIdentity<'k>,
    matched: bool,
    read_error: bool,
}

impl<F: ReadNorFlash> Platform for SlotPlatform<'_, '_, F> {
    fn capacity(&self, component: &Component<'_>) -> Option<u64> {
        // Components stored elsewhere (a staging component, another image) are not touched by
        // the validate section of this slot; they are not refused here.
        Some(if component.id == self.component {
            u64::from(self.header.image_len)
        } else {
            u64::MAX
        })
    }

    fn identity(&self, _component: &Component<'_>, kind: IdentityKind) -> Option<Identifier<'_>> {
        match kind {
            IdentityKind::Vendor => Some(Identifier::Uuid(self.identity.vendor)),
            IdentityKind::Class => Some(Identifier::Uuid(self.identity.class)),
            IdentityKind::Device => self.identity.device.map(Identifier::Uuid),
        }
    }

    fn read(
        &mut self,
        component: &Component<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, PlatformError> {
        if component.id != self.component {
            return Ok(0);
        }
        let len = u64::from(self.header.image_len);
        let n = usize::try_from(len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let at = u32::try_from(u64::from(self.header.image_offset) + offset)
            .map_err(|_| PlatformError::Failed)?;
        let chunk = buf.get_mut(..n).ok_or(PlatformError::Failed)?;
        if self.slot.read(at, chunk).is_err() {
            self.read_error = true;
            return Err(PlatformError::Failed);
        }
        Ok(n)
    }

    fn write_begin(&mut self, _: &Component<'_>, _: Option<u64>) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported)
    }

    fn write(&mut self, _: &Component<'_>, _: u64, _: &[u8]) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported)
    }

    fn write_end(&mut self, _: &Component<'_>) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported)
    }

    fn fetch(&mut self, _: &Component<'_>, _: &FetchRequest<'_>) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported)
    }

    fn record(&mut self, record: &Record<'_>) {
        if record.success
            && record.component == self.index
            && matches!(record.command, Command::Condition(Condition::ImageMatch, _))
            && record.section == Some(Section::Validate)
        {
            self.matched = true;
        }
    }
}

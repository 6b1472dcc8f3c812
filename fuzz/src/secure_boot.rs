//! `secure_boot`: the slot image format and the SUIT secure-boot verifier of
//! `suitcase-device` (what the bootloader runs before every boot). The fuzzed slot image's
//! header is parsed; if it frames an envelope, the envelope is re-authenticated with
//! [`FUZZ_KEY`] and the slot re-packed, so the verifier's whole path runs: header, envelope
//! read into its fixed buffer, verification, the validate section against the image in the
//! slot (image-match reading the slot through `ReadNorFlash`), the measurement. The slot as
//! given runs too.

use embedded_storage::nor_flash::{ErrorType, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use suitcase_boot::{ImageIndex, ImageVerifier};
use suitcase_device::{DeviceIdentity, HEADER_SIZE, SlotHeader, SuitVerifier, pack};
use suitcase_manifest::{ComponentId, PublicKey, TrustAnchor, TrustPolicy};

use crate::{CLASS, DEVICE, FUZZ_KEY, VENDOR, reauthenticate};

/// A slot in RAM.
#[derive(Debug)]
pub struct MemSlot(pub Vec<u8>);

/// Reads outside the slot.
#[derive(Debug, Clone, Copy)]
pub struct OutOfBounds;

impl NorFlashError for OutOfBounds {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::OutOfBounds
    }
}

impl ErrorType for MemSlot {
    type Error = OutOfBounds;
}

impl ReadNorFlash for MemSlot {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), OutOfBounds> {
        let s = offset as usize;
        let src = self.0.get(s..s + bytes.len()).ok_or(OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.0.len()
    }
}

/// The verifier's envelope buffer, as the Cortex-M bootloader sizes it.
pub const BUF: usize = 8192;

fn verify(slot: Vec<u8>) {
    let anchors = [TrustAnchor::new("fuzz", PublicKey::Hmac256(FUZZ_KEY))];
    let components = [
        ComponentId::decode(&[0x81, 0x41, 0x00]).unwrap(),
        ComponentId::decode(&[0x81, 0x41, 0x01]).unwrap(),
    ];
    let identity = DeviceIdentity {
        vendor: &VENDOR,
        class: &CLASS,
        device: Some(&DEVICE),
    };
    let mut verifier =
        SuitVerifier::<BUF>::new(&anchors, TrustPolicy::default(), identity, &components);
    let mut slot = MemSlot(slot);
    for image in [ImageIndex(0), ImageIndex(1)] {
        let _ = verifier.verify(image, &mut slot);
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let mut header = [0xFF; HEADER_SIZE as usize];
    let n = data.len().min(header.len());
    header[..n].copy_from_slice(&data[..n]);
    let parsed = SlotHeader::parse(&header);
    verify(data.to_vec());
    let Ok(Some(h)) = parsed else {
        return;
    };
    let start = HEADER_SIZE as usize;
    let Some(envelope) = data.get(start..start.saturating_add(h.envelope_len as usize)) else {
        return;
    };
    let image_start = (h.image_offset as usize).min(data.len());
    let image_end = image_start
        .saturating_add(h.image_len as usize)
        .min(data.len());
    let image = &data[image_start..image_end];
    if let Some(slot) = pack(&reauthenticate(envelope), image, 64) {
        verify(slot);
    }
}

//! The hook through which the bootloader asks "is this image authentic, and what is it?".

use core::fmt;

use embedded_storage::nor_flash::{ErrorType, NorFlashError, NorFlashErrorKind, ReadNorFlash};

/// The longest image digest a [`Measurement`] holds (SHA-512 / SHAKE256-512).
pub const MAX_DIGEST_LEN: usize = 64;

/// The digest of an image as measured by the verifier, for attestation and status reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ImageDigest {
    bytes: [u8; MAX_DIGEST_LEN],
    len: u8,
}

impl ImageDigest {
    /// A digest of no bytes, for an image that has not been measured.
    pub const EMPTY: Self = Self {
        bytes: [0; MAX_DIGEST_LEN],
        len: 0,
    };

    /// Wrap `digest`; `None` if it is longer than [`MAX_DIGEST_LEN`].
    pub fn new(digest: &[u8]) -> Option<Self> {
        let mut bytes = [0; MAX_DIGEST_LEN];
        bytes.get_mut(..digest.len())?.copy_from_slice(digest);
        Some(Self {
            bytes,
            len: u8::try_from(digest.len()).ok()?,
        })
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl fmt::Debug for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ImageDigest(")?;
        for byte in self.as_bytes() {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// An image's anti-rollback version: the SUIT sequence number of its manifest, or a separate
/// security epoch if the vendor keeps one. Only ever compared, never interpreted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecurityVersion(pub u64);

impl fmt::Display for SecurityVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which image of a multi-image layout (0 for single-image layouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageIndex(pub u8);

impl fmt::Display for ImageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a successful verification established about an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// The image digest (the one the verifier checked), for boot attestation.
    pub digest: ImageDigest,
    /// The version the anti-rollback counter is compared with.
    pub security_version: SecurityVersion,
    /// How many bytes from the start of the slot the image occupies (headers, manifest and
    /// payload). The swap layout copies only the sectors these bytes touch.
    pub size: u32,
}

impl Measurement {
    /// Placeholder for arrays that are filled in before use.
    pub const EMPTY: Self = Self {
        digest: ImageDigest::EMPTY,
        security_version: SecurityVersion(0),
        size: 0,
    };
}

/// Why the verifier refused an image. Deliberately coarse: the reason a signature or digest
/// check failed is of no use to the device and of some use to an attacker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// The slot holds no image (erased, or no recognisable header).
    Empty,
    /// The image or its manifest is not authentic, not for this device, or malformed.
    Rejected,
    /// The slot could not be read.
    Flash(NorFlashErrorKind),
}

impl<E: NorFlashError> From<E> for VerifyError {
    fn from(error: E) -> Self {
        Self::Flash(error.kind())
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no image in the slot"),
            Self::Rejected => f.write_str("image rejected by the verifier"),
            Self::Flash(kind) => write!(f, "slot unreadable: {kind}"),
        }
    }
}

impl core::error::Error for VerifyError {}

/// Verifies the image in a slot before the bootloader installs or boots it.
///
/// This is where the SUIT processor plugs in: re-validate the stored manifest (signature,
/// vendor and class conditions) and check the image digest against it, then report the
/// manifest's sequence number as the security version. `suitcase-boot` itself knows nothing
/// of manifests (docs/architecture.md §4), so the boot path stays small enough to audit.
///
/// The bootloader calls `verify` on every boot for the image it is about to jump to, and for a
/// pending image before it moves anything. It never boots an image for which `verify` failed.
///
/// `slot` is a read-only view that starts where the image starts: the start of the slot,
/// except for an update staged in swap-offset mode ([`crate::Mode::SwapOffset`]), which starts
/// one sector into the secondary; its capacity is what an image there may occupy.
pub trait ImageVerifier {
    /// Verify image `image` stored at the start of `slot`.
    ///
    /// # Errors
    ///
    /// [`VerifyError`] if the image must not run.
    fn verify<F: ReadNorFlash>(
        &mut self,
        image: ImageIndex,
        slot: &mut F,
    ) -> Result<Measurement, VerifyError>;
}

impl<V: ImageVerifier> ImageVerifier for &mut V {
    fn verify<F: ReadNorFlash>(
        &mut self,
        image: ImageIndex,
        slot: &mut F,
    ) -> Result<Measurement, VerifyError> {
        V::verify(self, image, slot)
    }
}

/// A read-only view of a slot from `base` on: what the verifier is handed.
pub(crate) struct Window<'a, F> {
    flash: &'a mut F,
    base: u32,
}

impl<'a, F> Window<'a, F> {
    pub(crate) fn new(flash: &'a mut F, base: u32) -> Self {
        Self { flash, base }
    }
}

impl<F: ErrorType> ErrorType for Window<'_, F> {
    type Error = F::Error;
}

impl<F: ReadNorFlash> ReadNorFlash for Window<'_, F> {
    const READ_SIZE: usize = F::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        // Saturating: an offset past the end stays past the end, and the flash refuses it.
        self.flash.read(offset.saturating_add(self.base), bytes)
    }

    fn capacity(&self) -> usize {
        let base = usize::try_from(self.base).unwrap_or(usize::MAX);
        self.flash.capacity().saturating_sub(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_keeps_its_length_and_refuses_oversize() {
        let d = ImageDigest::new(&[1, 2, 3]).unwrap();
        assert_eq!(d.as_bytes(), &[1, 2, 3]);
        assert!(ImageDigest::new(&[0; MAX_DIGEST_LEN + 1]).is_none());
        assert_eq!(ImageDigest::EMPTY.as_bytes(), &[] as &[u8]);
    }

    #[test]
    fn window_reads_from_its_base_and_ends_where_the_slot_ends() {
        let mut flash = suitcase_flash_sim::SimFlash::<4, 64>::uniform(64, 4, 0).unwrap();
        flash.load(64, &[7; 64]).unwrap();
        let mut window = Window::new(&mut flash, 64);
        assert_eq!(window.capacity(), 192);
        let mut buf = [0; 4];
        window.read(0, &mut buf).unwrap();
        assert_eq!(buf, [7; 4]);
        assert!(window.read(192, &mut buf).is_err());
        assert!(window.read(u32::MAX - 2, &mut buf).is_err());
    }
}

//! What the consumer core needs from the device: a transport, the slots and a journal.
//!
//! Each trait is the narrowest interface one step needs; none of them sees a SUIT type, so a
//! Linux file slot, a simulated MCU and the Cortex-M flash driver implement them in a screen.

/// Why a device operation failed. The core turns it into [`super::Error`] with the step it
/// happened in; the implementation logs the details it has (the core is `no_std`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoError {
    /// The operation was attempted and failed (a network error, a flash error).
    Failed,
    /// The data does not fit the caller's buffer (an envelope larger than the device holds).
    TooLarge,
}

/// Where envelopes and payloads come from: HTTP with Range, CoAP Block2, a bundle file.
pub trait Transport {
    /// Reads the offered envelope into `buf` and returns its length.
    ///
    /// # Errors
    /// [`IoError::TooLarge`] if it does not fit, [`IoError::Failed`] otherwise.
    fn envelope(&mut self, buf: &mut [u8]) -> Result<usize, IoError>;

    /// Reads the payload at `uri` from `offset` into `buf`, filling it unless the payload ends
    /// first, and returns the number of bytes read (0 at the end). The core asks for one
    /// [`super::BLOCK`] at a time, at offsets that are multiples of it, and never before the
    /// envelope that names `uri` has been authenticated and checked.
    ///
    /// # Errors
    /// [`IoError::Failed`].
    fn payload(&mut self, uri: &str, offset: u64, buf: &mut [u8]) -> Result<usize, IoError>;
}

/// Which slot a read is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRole {
    /// The slot the running image executes from (the base of a delta patch; after
    /// activation, the new image).
    Running,
    /// The slot that is not in use, where an update is staged.
    Update,
}

/// The device's A/B slots and its bootloader (on the MCU: `suitcase-boot`'s `Updater`).
///
/// The core writes slot images in the format of [`crate::SlotHeader`] into the
/// [`SlotRole::Update`] slot: header, envelope, then the image at a multiple of
/// [`super::BLOCK`].
pub trait Slots {
    /// How many bytes a slot image may occupy in the slot that is not in use.
    ///
    /// # Errors
    /// [`IoError::Failed`].
    fn capacity(&mut self) -> Result<u64, IoError>;

    /// The smallest offset the image may start at in the slot image. An image that runs in
    /// place is linked for one address, so its slot image must put it there (the Cortex-M
    /// application: `layout::IMAGE_OFFSET`, 8 KiB); the core places it at this offset or right
    /// after the header and envelope, whichever is further, rounded up to [`super::BLOCK`].
    /// The default, 0, packs it right after the envelope.
    fn min_image_offset(&self) -> u32 {
        0
    }

    /// The anti-rollback state: the sequence number of the installed (confirmed) manifest.
    /// An update must carry a larger one (RFC 9124 REQ.SEC.SEQUENCE).
    ///
    /// # Errors
    /// [`IoError::Failed`].
    fn installed_sequence(&mut self) -> Result<u64, IoError>;

    /// Withdraws any pending update and erases the slot not in use for a slot image of `len`
    /// bytes (a multiple of [`super::BLOCK`]).
    ///
    /// # Errors
    /// [`IoError`] if the slot cannot be prepared.
    fn begin(&mut self, len: u64) -> Result<(), IoError>;

    /// Continues a slot image of `len` bytes begun before a restart, erasing nothing.
    ///
    /// # Errors
    /// [`IoError`] if the update cannot continue (then the core begins again).
    fn resume(&mut self, len: u64) -> Result<(), IoError>;

    /// Writes `data` (one [`super::BLOCK`]) at `offset` (a multiple of it) of the slot not in
    /// use. Each block is written once, in increasing order.
    ///
    /// # Errors
    /// [`IoError`] on a flash error.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), IoError>;

    /// Reads `buf.len()` bytes at `offset` of a slot.
    ///
    /// # Errors
    /// [`IoError`] on a flash error or a read outside the slot.
    fn read(&mut self, role: SlotRole, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;

    /// Marks the staged slot image pending: the next reset verifies and installs it.
    ///
    /// # Errors
    /// [`IoError`] on a flash error.
    fn mark_pending(&mut self) -> Result<(), IoError>;

    /// Resets into the bootloader, which verifies the pending image and boots it on trial.
    /// Returns whether the new image now runs on trial (`false`: the bootloader refused it and
    /// the old image runs). On a real MCU this does not return: the application calls
    /// [`super::resume`] after the reset.
    ///
    /// # Errors
    /// [`IoError`] on a flash error.
    fn activate(&mut self) -> Result<bool, IoError>;

    /// Whether the running image is on trial (booted by [`Self::activate`], not confirmed).
    ///
    /// # Errors
    /// [`IoError`] on a flash error.
    fn on_trial(&mut self) -> Result<bool, IoError>;

    /// Confirms the image on trial; the anti-rollback counter advances to its sequence number.
    ///
    /// # Errors
    /// [`IoError`] on a flash error.
    fn confirm(&mut self) -> Result<(), IoError>;

    /// Gives up on the image on trial: resets until the bootloader runs the confirmed image.
    ///
    /// # Errors
    /// [`IoError`] on a flash error.
    fn revert(&mut self) -> Result<(), IoError>;
}

/// Where an update stands, as the journal records it (the envelope itself is in the slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A slot image of `len` bytes is being written; the first `written` bytes (a multiple
    /// of [`super::BLOCK`]) are durable.
    Fetching {
        /// The slot image length.
        len: u64,
        /// Bytes durably written.
        written: u64,
    },
    /// The slot image is complete, verified and pending.
    Staged,
    /// The device was reset into the new image on trial.
    Activated,
}

/// Durable storage for one [`Progress`] record (a file, a flash sector, a register bank).
pub trait Journal {
    /// The last record stored, if any.
    ///
    /// # Errors
    /// [`IoError`] if it cannot be read.
    fn load(&mut self) -> Result<Option<Progress>, IoError>;

    /// Replaces the record (`None`: no update in progress).
    ///
    /// # Errors
    /// [`IoError`] if it cannot be written.
    fn store(&mut self, progress: Option<Progress>) -> Result<(), IoError>;
}

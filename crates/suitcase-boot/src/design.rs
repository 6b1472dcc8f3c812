//! Design notes: what the bootloader defends against, its defaults, and why. Documentation
//! only.
//!
//! # What can go wrong
//!
//! The bootloader runs after every reset, including the ones nobody planned: a power cut in
//! the middle of a flash write, a watchdog reset of a new image that hangs, a brown-out while
//! the application confirms. RFC 9019 §3: "Devices must not fail when a disruption, such as a
//! power failure or network interruption, occurs during the update process". It must also
//! never run code the [`crate::ImageVerifier`] refused (RFC 9019 §4: the firmware verifier
//! checks the image before invoking it).
//!
//! | threat | defence | where |
//! |---|---|---|
//! | power cut during any flash write or erase | the state record is replaced atomically (two halves, sequence numbers, CRC); swap progress is one write-once mark per idempotent step | [`crate::store`], [`crate::swap`] |
//! | new image hangs or resets before it works | trial boot counted *before* the jump; revert after `max_trial_boots` unconfirmed boots | [`crate::BootLoader`] |
//! | confirm interrupted | the record stays *trial*; the next boot counts another trial boot | [`crate::Updater::confirm`] |
//! | tampered or corrupted image (bit flip, attacker write) | verified before install and before every boot; never booted if refused | [`crate::BootLoader`] |
//! | old but authentic image (rollback) | per-image counter, raised on confirm only; images below it are neither installed nor booted | [`crate::BootLoader`], [`crate::StateRecord`] |
//! | mix-and-match of a multi-image update | one record for all images; boot only from *confirmed* or *trial*, written after every image moved | [`crate::BootLoader`] |
//! | torn state record | CRC and magic; the other half stays in force | [`crate::store`] |
//! | state record from a newer bootloader | refused (recovery) rather than guessed at | [`crate::RecoveryReason::UnsupportedState`] |
//! | application staging over the known-good image | the [`crate::Updater`] only writes the slot that is neither running nor the fallback, and refuses to stage while on trial | [`crate::Updater::begin`] |
//! | hostile flash contents driving the bootloader into a panic | no indexing, no `unwrap`; every size from flash is clamped to the geometry checked at construction | crate-wide `deny(clippy::indexing_slicing)` |
//!
//! # Defaults
//!
//! * Three trial boots ([`crate::DEFAULT_TRIAL_BOOTS`]): one is too few for an application
//!   that legitimately resets once during its first start (a modem firmware update, say);
//!   many more lengthen a boot loop.
//! * An image that fails verification before install is never moved: in the swap modes the
//!   secondary is verified in place before the first sector is touched.
//! * No fallback to "whatever else verifies": if the confirmed image fails verification, the
//!   bootloader stays in recovery rather than booting the other slot, which may hold an
//!   update the application never asked to install.
//!
//! # Decisions and deviations
//!
//! * Off-spec (RFC 9019 §6 suggests hardware-backed counters): the anti-rollback counter lives
//!   in the state record, protected by the same atomic update as the rest of the state. On a
//!   part with OTP fuses or a secure element, the platform should mirror each raise there and
//!   feed the verifier the hardware value; the record then only records intent.
//! * Progress marks are words programmed once after an erase, never bits cleared one by one
//!   in an already-programmed word: that would need `MultiwriteNorFlash`, which parts with
//!   ECC flash cannot offer.
//! * The swap uses a spare sector at the end of the primary rather than a scratch sector, so
//!   no sector is erased once per swapped sector; every slot sector is erased at most twice
//!   per swap. Swap-offset puts the spare sector at the start of the secondary instead and
//!   stages the update after it: no move pass, every slot sector erased once per swap, and
//!   3 image writes per update instead of 4 (MCUboot's swap-using-offset shape; the code is
//!   ours). Its cost: the secondary, not the primary, is one sector larger, and an update must
//!   be written one sector into it, which [`crate::Staging::write`] does.
//! * In the swap modes only the sectors the update and the image it replaces occupy are swapped
//!   (the sizes come from the verifier's [`crate::Measurement::size`]); a primary that does
//!   not verify is swapped whole.

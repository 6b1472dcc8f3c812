//! The partition map, shared by the firmware and the host tool `mps2-flash`.
//!
//! SSRAM1 (4 MiB at `0x0000_0000`, where QEMU loads `-kernel`) holds the bootloader and the
//! flash region; SSRAM2/3 (`0x2000_0000`) is the RAM of the bootloader and, after the jump, of
//! the application.
//!
//! | address | size | what |
//! |---|---|---|
//! | `0x0000_0000` | 1 MiB | bootloader code (vector table first) |
//! | `0x0010_0000` | 8 KiB | boot state: two 4 KiB halves ([`suitcase_boot::store`]) |
//! | `0x0010_2000` | 256 KiB | slot A, the primary (execution) slot |
//! | `0x0014_2000` | 260 KiB | slot B, the secondary (staging) slot: the spare sector the swap-offset swap needs, then the staged update |
//! | `0x0018_3000` | 8 KiB | trust area: two 4 KiB copies of the trust state in force ([`suitcase_boot::trust_store`]), written by the bootloader alone |
//! | `0x0018_5000` | 8 KiB | trust staging area: a trust update the application hands the bootloader |
//! | `0x0018_7000` | 4 KiB | device key: the payload key-encryption key, written at manufacturing (`mps2-flash provision-key`), read by the application |
//!
//! The slots were 64 KiB until the application carried its own update client (the SUIT
//! processor, P-256, AES, CoAP: more than the 56 KiB a 64 KiB slot leaves after the header
//! area); SSRAM1 has 4 MiB.
//!
//! **The device key lives outside the slots.** A slot's image is the release every device of
//! the class downloads, and the base of every delta: a key built into the application would
//! travel in clear in each plaintext release (RFC 9124 REQ.SEC.IMG.CONFIDENTIALITY). The
//! key-encryption key is therefore provisioned per device into [`DEVICE_KEY`], which no update
//! writes.
//!
//! A slot holds the `suitcase-device` slot image: header, SUIT envelope, then the application
//! image at [`IMAGE_OFFSET`], so the application is linked at [`APP_BASE`] and runs in place
//! from slot A.

use suitcase_boot::Config;

/// Erase sector of the flash region (and the unit of the swap).
pub const SECTOR: u32 = 4096;
/// Where the flash region starts in the address map.
pub const FLASH_BASE: u32 = 0x0010_0000;
/// Boot state partition: offset in the flash region and size.
pub const STATE: (u32, u32) = (0, 0x2000);
/// Slot A (primary): offset in the flash region and size.
pub const SLOT_A: (u32, u32) = (0x2000, 0x40000);
/// Slot B (secondary): offset in the flash region and size. One sector more than slot A: the
/// update is staged after its first sector (swap-offset, [`suitcase_boot::Mode::SwapOffset`]).
pub const SLOT_B: (u32, u32) = (0x42000, 0x41000);
/// Trust area (the bootloader's protected trust state, feature `trust` of the bootloader):
/// offset and size. Two sectors, one copy of the 1,536-byte record each.
pub const TRUST: (u32, u32) = (0x83000, 0x2000);
/// Trust staging area: offset and size. Holds one trust update envelope of up to
/// [`MAX_TRUST_UPDATE`] bytes after its 16-byte header.
pub const TRUST_STAGING: (u32, u32) = (0x85000, 0x2000);
/// Device key partition: offset and size. Written once at manufacturing (`mps2-flash
/// provision-key`), never by an update; read by the application. Its first 4 bytes are
/// [`DEVICE_KEY_MAGIC`], then the COSE_Key's length (2 bytes, big-endian), then the COSE_Key
/// (the AES key-wrap key for encrypted payloads); erased (`0xFF`) when none was provisioned.
pub const DEVICE_KEY: (u32, u32) = (0x87000, 0x1000);
/// The first bytes of a provisioned [`DEVICE_KEY`] partition.
pub const DEVICE_KEY_MAGIC: [u8; 4] = *b"SKEY";
/// The largest trust update the bootloader reads from the staging area (its RAM buffer); a
/// larger one is cleared unread.
pub const MAX_TRUST_UPDATE: usize = 4096;
/// Size of the flash region and of the host file that persists it.
pub const FLASH_SIZE: u32 = 0x88000;
/// Where the application image starts in a slot: after the 32-byte slot header and the
/// envelope (up to 8,160 bytes, enough for an HSS-LMS or ML-DSA-65 signature).
pub const IMAGE_OFFSET: u32 = 0x2000;
/// Where the application is linked: its vector table in slot A.
pub const APP_BASE: u32 = FLASH_BASE + SLOT_A.0 + IMAGE_OFFSET;
/// The largest application image: what slot A (and slot B after its spare sector) holds after
/// the header area.
pub const MAX_IMAGE: u32 = SLOT_A.1 - IMAGE_OFFSET;
/// RAM the application may use for its initial stack pointer (SSRAM2/3).
pub const RAM: (u32, u32) = (0x2000_0000, 0x0040_0000);

/// Swap-offset layout (execute in place from slot A; the update is staged one sector into
/// slot B and swapped in without a move pass: 3 image writes per update instead of 4), and one
/// trial boot: an update the application does not confirm in its first run is reverted at the
/// next reset, as MCUboot's "test" swap.
pub const CONFIG: Config = Config::swap_offset(SECTOR).with_max_trial_boots(1);

/// The SUIT component identifier of the application: `[h'00']`, CBOR-encoded.
pub const COMPONENT_ID: [u8; 3] = [0x81, 0x41, 0x00];
/// Vendor id: UUID5(DNS namespace, "example.com"), as `suitcase release build --vendor
/// example.com` writes it (cfbff0d1-9375-5685-968c-48ce8b15ae17).
pub const VENDOR_ID: [u8; 16] = [
    0xcf, 0xbf, 0xf0, 0xd1, 0x93, 0x75, 0x56, 0x85, 0x96, 0x8c, 0x48, 0xce, 0x8b, 0x15, 0xae, 0x17,
];
/// Class id: UUID5(vendor id, "mps2-an386"), as `--class mps2-an386` writes it
/// (4e6cc667-f8e7-5bd7-b8d6-fbd9512d43ba).
pub const CLASS_ID: [u8; 16] = [
    0x4e, 0x6c, 0xc6, 0x67, 0xf8, 0xe7, 0x5b, 0xd7, 0xb8, 0xd6, 0xfb, 0xd9, 0x51, 0x2d, 0x43, 0xba,
];

const _: () = {
    assert!(SLOT_A.0 == STATE.0 + STATE.1);
    assert!(SLOT_B.0 == SLOT_A.0 + SLOT_A.1);
    assert!(TRUST.0 == SLOT_B.0 + SLOT_B.1);
    assert!(TRUST_STAGING.0 == TRUST.0 + TRUST.1);
    assert!(DEVICE_KEY.0 == TRUST_STAGING.0 + TRUST_STAGING.1);
    assert!(FLASH_SIZE == DEVICE_KEY.0 + DEVICE_KEY.1);
    assert!(DEVICE_KEY.1 == SECTOR);
    assert!(TRUST.1 == 2 * SECTOR && TRUST_STAGING.1.is_multiple_of(SECTOR));
    assert!(SLOT_B.1 == SLOT_A.1 + SECTOR);
    // Vector table alignment for up to 128 entries.
    assert!(APP_BASE.is_multiple_of(512));
};

//! The suitcase bootloader for QEMU's `mps2-an386` board (Cortex-M4).
//!
//! On every reset it loads the flash (a host file standing in for it, see `mps2-board`), lets
//! `suitcase-boot` decide what runs — finish or undo an interrupted update, verify the image,
//! boot an update on trial, revert one the application did not confirm — and jumps to the
//! application in slot A. Whether an image is authentic is decided by `suitcase-device`'s
//! lean boot path, [`BootVerifier`] (docs/boot-path.md): it streams the SUIT envelope stored in
//! the slot from flash, checks the manifest digest and the signature against the trust anchor
//! built into this image, and runs the manifest's identity conditions and image-match over
//! the image beside it, before every boot. The full SUIT processor is not linked.
//!
//! **What it does not do.** It never boots an image the verifier refused or one older than the
//! anti-rollback counter; it fetches nothing and decrypts nothing (the application stages
//! updates); it holds no signing key. Exactly one verification algorithm is compiled in
//! (features `es256`, `es256-rustcrypto`, `ed25519`, `hss-lms`, `ml-dsa`), so that each
//! footprint in docs/benchmarks.md is that algorithm's alone.
//!
//! With the feature `trust` (instead of a verifier feature) the anchors are not built in: they
//! are the release signers of the trust state in force in the protected trust area, and a
//! staged trust update is committed at reset before any slot is verified (`trust.rs`).
//!
//! Everything it says goes to UART0, one line per event, prefixed `boot:`; tests read it.

#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embedded_storage::nor_flash::NorFlashErrorKind;
use embedded_storage::nor_flash::ReadNorFlash;
use mps2_board::flash::{Flash, Partition};
use mps2_board::layout::{self, APP_BASE, IMAGE_OFFSET, RAM};
use mps2_board::uart::Uart;
use mps2_board::{cycles, semihosting, stack};
use suitcase_boot::{
    BootDecision, BootError, BootLoader, Failure, ImageIndex, ImageSlots, ImageState,
    ImageVerifier, Measurement, RecoveryReason, SecurityVersion, Slot, VerifyError,
};
#[cfg(not(feature = "trust"))]
use suitcase_device::BootVerifier;
use suitcase_device::{DeviceIdentity, HEADER_SIZE, SlotHeader};
use suitcase_manifest::ComponentId;
#[cfg(any(feature = "es256-rustcrypto", feature = "hss-lms", feature = "ml-dsa"))]
use suitcase_manifest::key::CoseKey;
#[cfg(any(feature = "es256-rustcrypto", feature = "hss-lms", feature = "ml-dsa"))]
use suitcase_manifest::{PublicKey, TrustAnchor, TrustPolicy};

#[cfg(feature = "trust")]
mod trust;

// Exactly one verifier per build.
const _: () = assert!(
    cfg!(feature = "es256") as u8
        + cfg!(feature = "es256-rustcrypto") as u8
        + cfg!(feature = "ed25519") as u8
        + cfg!(feature = "hss-lms") as u8
        + cfg!(feature = "ml-dsa") as u8
        + cfg!(feature = "trust") as u8
        == 1,
    "enable exactly one verifier feature: es256, es256-rustcrypto, ed25519, hss-lms, ml-dsa or trust"
);

/// The author's public key, a COSE_Key (`suitcase key generate --format cose --public`).
#[cfg(any(feature = "es256-rustcrypto", feature = "hss-lms", feature = "ml-dsa"))]
const ANCHOR: &[u8] = include_bytes!(env!("SUITCASE_TRUST_ANCHOR"));

// The same key for ES256 and Ed25519, decoded from its COSE_Key by build.rs: ANCHOR_P256 and
// ANCHOR_ED25519.
#[cfg(any(feature = "es256", feature = "ed25519"))]
include!(concat!(env!("OUT_DIR"), "/anchor.rs"));

/// RAM for the authentication wrapper, the only part of the envelope the boot path copies
/// from flash: the SUIT_Digest and one classical signature block (about 130 bytes), or a
/// post-quantum signature (HSS-LMS h10w4,h10w4 5,076 bytes; ML-DSA-65 3,309 bytes) next to the
/// classical one the Quantum tier also carries.
/// (ES256 and Ed25519 read it from flash where it lies: `OneKey`.)
#[cfg(feature = "es256-rustcrypto")]
const AUTH_BUF: usize = 256;
/// Under a trust state: a release threshold of up to three classical signatures.
#[cfg(feature = "trust")]
const AUTH_BUF: usize = 512;
#[cfg(feature = "hss-lms")]
const AUTH_BUF: usize = 5632;
#[cfg(feature = "ml-dsa")]
const AUTH_BUF: usize = 4096;

/// The digests the boot path links: SHA-256 alone for the Basic tier's releases; every digest
/// (the Quantum tier's SHAKE256) for the post-quantum paths.
#[cfg(any(
    feature = "es256",
    feature = "es256-rustcrypto",
    feature = "ed25519",
    feature = "trust"
))]
type Digests = suitcase_device::Sha256Only;
#[cfg(any(feature = "hss-lms", feature = "ml-dsa"))]
type Digests = suitcase_manifest::Hasher;

#[cfg(feature = "es256")]
const ALG: &str = "es256";
#[cfg(feature = "es256-rustcrypto")]
const ALG: &str = "es256 (RustCrypto p256)";
#[cfg(feature = "ed25519")]
const ALG: &str = "ed25519";
#[cfg(feature = "hss-lms")]
const ALG: &str = "hss-lms";
#[cfg(feature = "ml-dsa")]
const ALG: &str = "ml-dsa-65";
#[cfg(feature = "trust")]
const ALG: &str = "es256/ed25519 under the trust state in force";

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    let mut uart = Uart::init();
    uart.write_str("boot: panic\n");
    semihosting::exit(false)
}

#[entry]
fn main() -> ! {
    // First: the instruction count from here to the jump is `boot_cycles` in
    // docs/benchmarks.md (meaningful under QEMU's `-icount shift=0`).
    cycles::start();
    let mut uart = Uart::init();
    say(
        &mut uart,
        &[
            &"boot: suitcase bootloader on mps2-an386, verifier ",
            &ALG,
            &"\n",
        ],
    );
    match boot(&mut uart) {
        Ok(()) => {
            say(&mut uart, &[&"boot: jumping to ", &Hex(APP_BASE), &"\n"]);
            let instructions = cycles::instructions();
            say(
                &mut uart,
                &[
                    &"boot: instructions from main to the jump: ",
                    &instructions,
                    &" (under -icount shift=0)\n",
                ],
            );
            // SAFETY: `check_vectors` found a vector table at APP_BASE whose stack pointer
            // lies in RAM and whose reset handler lies inside the verified image; the
            // bootloader holds no resources the application could conflict with.
            unsafe {
                (*cortex_m::peripheral::SCB::PTR).vtor.write(APP_BASE);
                cortex_m::asm::bootload(APP_BASE as *const u32)
            }
        }
        Err(why) => {
            say(&mut uart, &[&"boot: nothing to boot: ", &why, &"\n"]);
            semihosting::exit(false)
        }
    }
}

/// Decide what to boot, report it, and check the image before the jump.
fn boot(uart: &mut Uart) -> Result<(), &'static str> {
    let (flash, paint) = load()?;
    #[cfg(feature = "trust")]
    trust::boot(uart, flash, paint)?;
    // ES256 and Ed25519: the one built-in key, COSE_Sign1 read by the boot path itself
    // (suitcase-device's OneKey; manifest §9, the single trusted-key model).
    #[cfg(any(feature = "es256", feature = "ed25519"))]
    {
        let key = built_in_key().ok_or("the built-in trust anchor is not a usable key")?;
        let (components, identity) = device()?;
        let mut verifier = Measured {
            inner: BootVerifier::<Digests, 0, _>::with_authority(
                suitcase_device::OneKey(&key),
                identity,
                &components,
            ),
            paint,
            peak: 0,
            calls: 0,
        };
        let decision = decide(flash, &mut verifier)?;
        settle(uart, decision, &verifier)?;
    }
    #[cfg(any(feature = "es256-rustcrypto", feature = "hss-lms", feature = "ml-dsa"))]
    with_anchor(|key| {
        // Manifest §8.3: one trusted signature from the built-in anchor authorises the
        // manifest (TrustPolicy::default, threshold 1).
        let anchors = [TrustAnchor::new("author", key)];
        let (components, identity) = device()?;
        let mut verifier = Measured {
            inner: BootVerifier::<Digests, AUTH_BUF>::new(
                &anchors,
                TrustPolicy::default(),
                identity,
                &components,
            ),
            paint,
            peak: 0,
            calls: 0,
        };
        let decision = decide(flash, &mut verifier)?;
        settle(uart, decision, &verifier)
    })
    .ok_or("the built-in trust anchor is not a usable COSE_Key")??;
    let (mut a, _) = flash.slots();
    check_vectors(&mut a)
}

/// The component and the identity the manifest's conditions are checked against.
fn device() -> Result<([ComponentId<'static>; 1], DeviceIdentity<'static>), &'static str> {
    // Checked without the CBOR decoder: the bootloader links none (docs/benchmarks.md).
    let components = [ComponentId::from_static(&layout::COMPONENT_ID).ok_or("bad component id")?];
    let identity = DeviceIdentity {
        vendor: &layout::VENDOR_ID,
        class: &layout::CLASS_ID,
        device: None,
    };
    Ok((components, identity))
}

/// Decides what boots. RFC 9019 §4: the firmware verifier checks every image before it is
/// invoked. The bootloader calls `verifier` for a pending update before it moves anything and
/// for the image it is about to boot on every reset, and boots nothing the verifier refused or
/// whose sequence number is below the anti-rollback counter (RFC 9019 §6). Inlined as the
/// code it replaced was (out of line it cost 16 B more verification stack).
#[inline(always)]
fn decide<V: ImageVerifier>(
    flash: Flash,
    verifier: &mut V,
) -> Result<Result<BootDecision<1>, BootError>, &'static str> {
    let (a, b) = flash.slots();
    Ok(BootLoader::new(
        layout::CONFIG,
        [ImageSlots::new(a, b)],
        flash.state(),
        verifier,
    )
    .map_err(|_| "the partitions do not fit the boot configuration")?
    .boot())
}

/// Reports the stack the verifications used and what the bootloader decided.
fn settle<V>(
    uart: &mut Uart,
    decision: Result<BootDecision<1>, BootError>,
    verifier: &Measured<V>,
) -> Result<(), &'static str> {
    say(
        uart,
        &[
            &"boot: verification stack peak ",
            &verifier.peak,
            &" bytes over ",
            &verifier.calls,
            &" verifications; static RAM ",
            &stack::static_ram(RAM.0 as usize),
            &" bytes\n",
        ],
    );
    match decision {
        Ok(BootDecision::Boot(target)) => {
            if let Some(failure) = target.last_failure {
                say(uart, &[&"boot: last update failed: ", &failure, &"\n"]);
            }
            let [measurement] = target.measurements;
            report(uart, target.slot, target.state, &measurement);
            Ok(())
        }
        Ok(BootDecision::Recovery { reason }) => {
            say(uart, &[&"boot: recovery: ", &reason, &"\n"]);
            Err("no image may run")
        }
        Err(error) => {
            say(uart, &[&"boot: error: ", &error, &"\n"]);
            Err("the boot state could not be processed")
        }
    }
}

/// Loads the flash file the command line names and says whether to paint the stack. Not
/// inlined, so that the command-line buffer is not part of the frame the verification runs
/// under (the peak stack, docs/benchmarks.md).
#[inline(never)]
fn load() -> Result<(Flash, bool), &'static str> {
    let mut line = [0u8; 256];
    let cmdline = semihosting::cmdline(&mut line).unwrap_or_default();
    let path = semihosting::arg(cmdline, b"flash").unwrap_or(b"flash.bin");
    // `cycles`: count the boot as shipped, without the stack paint around each verification.
    let paint = !semihosting::flag(cmdline, b"cycles");
    let flash = Flash::load(path).map_err(|_| "cannot load the flash file (flash=PATH)")?;
    Ok((flash, paint))
}

fn report(uart: &mut Uart, slot: Slot, state: ImageState, m: &Measurement) {
    say(
        uart,
        &[
            &"boot: verified slot ",
            &slot,
            &": security version ",
            &m.security_version,
            &", image digest ",
        ],
    );
    for byte in m.digest.as_bytes().iter().take(8) {
        for nibble in [byte >> 4, byte & 0xf] {
            uart.write_byte(HEX_DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'?'));
        }
    }
    uart.write_str("...\n");
    match state {
        ImageState::Confirmed => say(uart, &[&"boot: booting slot ", &slot, &" (confirmed)\n"]),
        ImageState::Trial { boot, max } => say(
            uart,
            &[
                &"boot: booting slot ",
                &slot,
                &" (trial boot ",
                &boot,
                &" of ",
                &max,
                &")\n",
            ],
        ),
    }
}

/// Text for UART0 without `core::fmt`, whose formatting machinery (and the `Display`
/// implementations it pulls in) cost 2.7 KB of flash here (docs/benchmarks.md); the lines
/// are the same as `suitcase-boot`'s `Display` would print, which scripts/qemu-test.sh reads.
trait Say {
    fn say(&self, uart: &mut Uart);
}

/// Writes each part in turn.
fn say(uart: &mut Uart, parts: &[&dyn Say]) {
    for part in parts {
        part.say(uart);
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl Say for &str {
    fn say(&self, uart: &mut Uart) {
        uart.write_str(self);
    }
}

/// Decimal, without leading zeros.
fn decimal(uart: &mut Uart, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at = at.saturating_sub(1);
        let (q, digit) = div10(n);
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + digit;
        }
        n = q;
        if n == 0 || at == 0 {
            break;
        }
    }
    digits
        .get(at..)
        .unwrap_or_default()
        .iter()
        .for_each(|&d| uart.write_byte(d));
}

/// `n / 10` and `n % 10` by 32-bit divisions of 16-bit chunks (the Cortex-M4 divides 32-bit
/// words in hardware; a `u64` division links compiler-builtins' 394-byte routine, which
/// nothing else in the bootloader needs: docs/benchmarks.md, Ed25519 levers).
fn div10(n: u64) -> (u64, u8) {
    let (mut q, mut rem) = (0u64, 0u32);
    for shift in [48u32, 32, 16, 0] {
        let chunk = u32::try_from((n >> shift) & 0xffff).unwrap_or_default();
        // rem < 10, so the dividend stays below 10 · 2^16.
        let cur = (rem << 16) | chunk;
        q |= u64::from(cur / 10) << shift;
        rem = cur % 10;
    }
    (q, u8::try_from(rem).unwrap_or_default())
}

impl Say for u64 {
    fn say(&self, uart: &mut Uart) {
        decimal(uart, *self);
    }
}

impl Say for u32 {
    fn say(&self, uart: &mut Uart) {
        decimal(uart, u64::from(*self));
    }
}

impl Say for u8 {
    fn say(&self, uart: &mut Uart) {
        decimal(uart, u64::from(*self));
    }
}

impl Say for usize {
    fn say(&self, uart: &mut Uart) {
        decimal(uart, *self as u64);
    }
}

/// `0x` and eight hexadecimal digits.
struct Hex(u32);

impl Say for Hex {
    fn say(&self, uart: &mut Uart) {
        uart.write_str("0x");
        for shift in (0..8).rev() {
            let nibble = (self.0 >> (shift * 4)) & 0xf;
            uart.write_byte(HEX_DIGITS.get(nibble as usize).copied().unwrap_or(b'?'));
        }
    }
}

impl Say for Slot {
    fn say(&self, uart: &mut Uart) {
        uart.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        });
    }
}

impl Say for ImageIndex {
    fn say(&self, uart: &mut Uart) {
        self.0.say(uart);
    }
}

impl Say for SecurityVersion {
    fn say(&self, uart: &mut Uart) {
        self.0.say(uart);
    }
}

impl Say for NorFlashErrorKind {
    fn say(&self, uart: &mut Uart) {
        uart.write_str(match self {
            NorFlashErrorKind::NotAligned => "not aligned",
            NorFlashErrorKind::OutOfBounds => "out of bounds",
            _ => "flash driver error",
        });
    }
}

impl Say for VerifyError {
    fn say(&self, uart: &mut Uart) {
        match self {
            VerifyError::Empty => uart.write_str("no image in the slot"),
            VerifyError::Rejected => uart.write_str("image rejected by the verifier"),
            VerifyError::Flash(kind) => say(uart, &[&"slot unreadable: ", kind]),
        }
    }
}

impl Say for Failure {
    fn say(&self, uart: &mut Uart) {
        match self {
            Failure::NotConfirmed => uart.write_str("trial image not confirmed; reverted"),
            Failure::Invalid { image, error } => {
                say(uart, &[&"image ", image, &" invalid: ", error]);
            }
            Failure::Rollback {
                image,
                offered,
                minimum,
            } => say(
                uart,
                &[
                    &"image ",
                    image,
                    &" rolls back: security version ",
                    offered,
                    &" is below ",
                    minimum,
                ],
            ),
            Failure::TooLarge { image } => {
                say(uart, &[&"image ", image, &" does not fit its slots"])
            }
        }
    }
}

impl Say for RecoveryReason {
    fn say(&self, uart: &mut Uart) {
        match self {
            RecoveryReason::Invalid { slot, image, error } => say(
                uart,
                &[&"image ", image, &" in slot ", slot, &" invalid: ", error],
            ),
            RecoveryReason::Rollback {
                slot,
                image,
                offered,
                minimum,
            } => say(
                uart,
                &[
                    &"image ",
                    image,
                    &" in slot ",
                    slot,
                    &" rolls back: security version ",
                    offered,
                    &" is below ",
                    minimum,
                ],
            ),
            RecoveryReason::UnsupportedState { version } => say(
                uart,
                &[&"state record format ", version, &" is not supported"],
            ),
            RecoveryReason::StateMismatch => {
                uart.write_str("state record describes a different layout");
            }
        }
    }
}

impl Say for BootError {
    fn say(&self, uart: &mut Uart) {
        match self {
            BootError::Flash(kind) => say(uart, &[&"flash error: ", kind]),
            BootError::NoProgress => uart.write_str("boot state machine did not settle"),
        }
    }
}

/// The verified slot holds a header, the envelope and the image; before jumping, check that
/// the image sits where the application is linked and that its vector table points into RAM
/// and into the image. The manifest's digest already covers these bytes; this guards against
/// an authentic image built for another layout, which would otherwise crash the device. Not
/// inlined, for the same reason as [`load`].
#[inline(never)]
fn check_vectors(slot: &mut Partition) -> Result<(), &'static str> {
    let mut raw = [0u8; HEADER_SIZE as usize];
    slot.read(0, &mut raw).map_err(|_| "slot A unreadable")?;
    let header = SlotHeader::parse(&raw)
        .ok()
        .flatten()
        .ok_or("slot A has no slot header")?;
    if header.image_offset != IMAGE_OFFSET {
        return Err("the image is not at the offset the application is linked for");
    }
    let mut vectors = [0u8; 8];
    slot.read(IMAGE_OFFSET, &mut vectors)
        .map_err(|_| "slot A unreadable")?;
    let [sp0, sp1, sp2, sp3, pc0, pc1, pc2, pc3] = vectors;
    let sp = u32::from_le_bytes([sp0, sp1, sp2, sp3]);
    let reset = u32::from_le_bytes([pc0, pc1, pc2, pc3]);
    let ram = RAM.0..=RAM.0 + RAM.1;
    let image = APP_BASE..APP_BASE.saturating_add(header.image_len);
    // Thumb code: the reset vector's bit 0 must be set.
    if !ram.contains(&sp) || reset & 1 == 0 || !image.contains(&(reset & !1)) {
        return Err("the image's vector table does not point into RAM and the image");
    }
    Ok(())
}

/// The built-in trust anchor as a key for the lean boot path.
#[cfg(feature = "es256")]
fn built_in_key() -> Option<suitcase_device::Es256<Cm4Key>> {
    Cm4Key::from_sec1(&ANCHOR_P256?).map(suitcase_device::Es256)
}

/// The built-in trust anchor as a key for the lean boot path (small-order keys refused).
#[cfg(feature = "ed25519")]
fn built_in_key() -> Option<suitcase_device::Ed25519> {
    suitcase_device::Ed25519::from_bytes(&ANCHOR_ED25519?)
}

/// The SEC 1 uncompressed point (SEC 1 §2.3.3) of an EC2 P-256 COSE_Key (RFC 9053 §7.1.1)
/// with both coordinates; `None` for any other key.
#[cfg(feature = "es256-rustcrypto")]
fn p256_sec1(raw: &[u8]) -> Option<[u8; 65]> {
    use suitcase_manifest::key::{crv, kty};
    let key = CoseKey::decode(raw).ok()?;
    if key.kty != kty::EC2 || key.crv != Some(crv::P256) {
        return None;
    }
    let mut sec1 = [0u8; 65];
    let (tag, xy) = sec1.split_at_mut(1);
    let (x, y) = xy.split_at_mut(32);
    tag.copy_from_slice(&[4]);
    x.copy_from_slice(key.x.filter(|x| x.len() == 32)?);
    y.copy_from_slice(key.y.filter(|y| y.len() == 32)?);
    Some(sec1)
}

/// A P-256 public key for P256-Cortex-M4's verification: x and y as little-endian 32-bit
/// words, checked to lie on the curve.
#[cfg(feature = "es256")]
struct Cm4Key {
    x: [u32; 8],
    y: [u32; 8],
}

#[cfg(feature = "es256")]
impl Cm4Key {
    /// A SEC 1 uncompressed point (SEC 1 §2.3.3).
    fn from_sec1(sec1: &[u8; 65]) -> Option<Self> {
        let mut key = Self {
            x: [0; 8],
            y: [0; 8],
        };
        // SEC 1 §2.3.4 with the public key validation of §3.2.2.1: coordinates below p and
        // the point on the curve.
        // SAFETY: x and y are 8 words each, as p256_octet_string_to_point writes; `sec1` is
        // 65 bytes, the length passed.
        let valid = unsafe {
            p256_cortex_m4_sys::p256_octet_string_to_point(
                key.x.as_mut_ptr(),
                key.y.as_mut_ptr(),
                sec1.as_ptr(),
                65,
            )
        };
        valid.then_some(key)
    }
}

/// A 32-byte big-endian integer as P256-Cortex-M4's little-endian words.
#[cfg(feature = "es256")]
fn words(be: &[u8]) -> [u32; 8] {
    let mut words = [0u32; 8];
    for (word, chunk) in words.iter_mut().zip(be.rchunks_exact(4)) {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(chunk);
        *word = u32::from_be_bytes(bytes);
    }
    words
}

#[cfg(feature = "es256")]
impl suitcase_manifest::P256PrehashVerifier for Cm4Key {
    fn verify_prehash(&self, digest: &[u8; 32], signature: &[u8; 64]) -> bool {
        let (r, s) = signature.split_at(32);
        let (r, s) = (words(r), words(s));
        // FIPS 186-5 §6.4.2: P256-Cortex-M4 refuses r or s outside [1, n-1] and accepts a
        // high s, as the host's `p256` does (docs/boot-path.md).
        // SAFETY: every pointer is to 8 words (x, y, r, s) or to the 32 bytes passed (digest);
        // p256_verify only reads them.
        unsafe {
            p256_cortex_m4_sys::p256_verify(
                self.x.as_ptr(),
                self.y.as_ptr(),
                digest.as_ptr(),
                32,
                r.as_ptr(),
                s.as_ptr(),
            )
        }
    }
}

/// Calls `f` with the built-in trust anchor as a key.
#[cfg(feature = "es256-rustcrypto")]
fn with_anchor<R>(f: impl FnOnce(PublicKey<'_>) -> R) -> Option<R> {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&p256_sec1(ANCHOR)?).ok()?;
    Some(f(PublicKey::P256(key)))
}

/// Calls `f` with the built-in trust anchor as a key.
#[cfg(feature = "hss-lms")]
fn with_anchor<R>(f: impl FnOnce(PublicKey<'_>) -> R) -> Option<R> {
    use suitcase_manifest::key::kty;
    let key = CoseKey::decode(ANCHOR).ok()?;
    if key.kty != kty::HSS_LMS {
        return None;
    }
    Some(f(PublicKey::HssLms(key.public?)))
}

/// Calls `f` with the built-in trust anchor as a key.
#[cfg(feature = "ml-dsa")]
fn with_anchor<R>(f: impl FnOnce(PublicKey<'_>) -> R) -> Option<R> {
    use suitcase_manifest::key::kty;
    let key = CoseKey::decode(ANCHOR).ok()?;
    if key.kty != kty::AKP {
        return None;
    }
    let encoded = ml_dsa::EncodedVerifyingKey::<ml_dsa::MlDsa65>::try_from(key.public?).ok()?;
    let key = ml_dsa::VerifyingKey::<ml_dsa::MlDsa65>::decode(&encoded);
    Some(f(PublicKey::MlDsa65(&key)))
}

/// An [`ImageVerifier`] that measures the stack its inner verifier uses: it paints the free
/// stack before each verification and records the deepest point reached (unless `paint` is
/// off: the instruction-count run measures the boot without the paint's own loops).
struct Measured<V> {
    inner: V,
    paint: bool,
    /// The deepest stack (bytes from the top) any verification reached.
    peak: usize,
    calls: u32,
}

impl<V: ImageVerifier> ImageVerifier for Measured<V> {
    fn verify<F: ReadNorFlash>(
        &mut self,
        image: ImageIndex,
        slot: &mut F,
    ) -> Result<Measurement, VerifyError> {
        if self.paint {
            stack::paint();
        }
        let result = self.inner.verify(image, slot);
        if self.paint {
            self.peak = self.peak.max(stack::peak());
        }
        self.calls = self.calls.saturating_add(1);
        result
    }
}

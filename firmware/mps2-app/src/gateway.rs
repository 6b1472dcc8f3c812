//! The update client (feature `gateway`): the application updates itself through the
//! gateway agent (issue 19 item 3; docs/qemu.md, "Self-update through the gateway").
//!
//! Over UART1, CoAP in SLIP frames to the gateway ([`crate::link`], docs/gateway.md §2), it
//! checks in, downloads the offered envelope block-wise, **authenticates it** with the
//! firmware consumer core ([`Offer::authenticate`], against the release key built in at build
//! time) **before it asks for any payload block**, then streams the payload block by block
//! (512 bytes, CoAP Block2) through the SUIT processor (which decrypts it with the device's
//! AES-KW key, provisioned at manufacturing into the device key partition outside the slots, or applies it as a `suitcase-delta` patch against slot A) into slot B, reads it
//! back against the manifest's digest, marks it pending, and reports each step to
//! `/d/reports`. After the reset, on trial, it checks in again (saying so: the server then
//! still names the release it offered) and reports `activate`, and `clean-up` once confirmed.

use core::fmt::Write;

use embedded_storage::nor_flash::NorFlashErrorKind;
use embedded_storage::nor_flash::ReadNorFlash;
use mps2_board::flash::{Flash, FlashError, Partition};
use mps2_board::layout::{
    CLASS_ID, COMPONENT_ID, DEVICE_KEY_MAGIC, IMAGE_OFFSET, SECTOR, VENDOR_ID,
};
use mps2_board::uart::Uart;
use suitcase_boot::{Failure, ImageIndex, ImageVerifier};
use suitcase_device::consumer::{
    self, BLOCK, Device, IoError, Journal, Offer, Progress, Refusal, Transport,
};
use suitcase_device::{DeviceIdentity, HEADER_SIZE, SlotHeader, SuitVerifier};
use suitcase_link::coap::{self, Block, CF_CBOR};
use suitcase_manifest::encryption::{DecryptionKey, KeyMaterial};
use suitcase_manifest::{
    ComponentId, Envelope, Manifest, PublicKey, Reason, TrustAnchor, TrustPolicy,
};

use crate::link::{Link, LinkError, MAX_MESSAGE};
use crate::slots::BoardSlots;
use crate::wire;

/// The release signer's COSE_Key (P-256), from `APP_TRUST_ANCHOR` at build time (build.rs);
/// empty when none was given: the application then takes no update.
const ANCHOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/anchor.cose"));

/// The largest COSE_Key the device key partition holds (layout.rs `DEVICE_KEY`, after the
/// 4-byte magic and the 2-byte length); a symmetric key-wrap key is about 40 bytes.
const MAX_DEVICE_KEY: usize = 256;

/// The largest envelope this device takes: the slot header area before the image
/// (layout.rs `IMAGE_OFFSET`), less the slot header.
const MAX_ENVELOPE: usize = (IMAGE_OFFSET - HEADER_SIZE) as usize;
const _: () = assert!(
    MAX_ENVELOPE == 8160,
    "the envelope refusal below names 8160 bytes"
);
/// SZX 5: 512-byte blocks, the consumer's [`BLOCK`].
const SZX: u8 = 5;
/// How often a 5.03 (the gateway is still fetching the object) is waited out.
const MAX_UNAVAILABLE: u32 = 30;
/// How often a report is sent before it is given up (a 5.03 `queue-full` or no answer).
const REPORT_ATTEMPTS: u32 = 4;
/// The longest wait for a report's 5.03 Max-Age (the gateway says 60 s; the session's
/// 300 s bound the whole).
const MAX_REPORT_WAIT_S: u32 = 60;

/// The trial boot's session with the gateway: the release it runs, as the server names it.
pub struct Trial {
    client: Client,
    release: wire::Text<80>,
}

/// On a trial boot: check in (on trial) and report `activate`.
pub fn trial(uart: &mut Uart, flash: Flash) -> Option<Trial> {
    let mut envelope = [0u8; MAX_ENVELOPE];
    let (a, _) = flash.slots();
    let running = running_sequence(a, &mut envelope).unwrap_or(0);
    let mut client = Client::new(uart);
    // A check-in on trial is answered with the offer still in force: the server counts the
    // update installed only once it is confirmed.
    let release = match client.check_in(uart, running, true) {
        Ok(Some(offer)) if offer.sequence == running => offer.release_id,
        Ok(_) => {
            let _ = writeln!(uart, "app: on trial, but no offer names this release");
            return None;
        }
        Err(()) => return None,
    };
    client.report(
        uart,
        release.as_str(),
        "activate",
        "success",
        None,
        Some("booted on trial by the bootloader after its verification"),
        None,
    );
    Some(Trial { client, release })
}

impl Trial {
    /// After the confirmation: report `clean-up` (the update is done).
    pub fn confirmed(&mut self, uart: &mut Uart) {
        let release = self.release;
        self.client.report(
            uart,
            release.as_str(),
            "clean-up",
            "success",
            None,
            Some("confirmed: the anti-rollback counter advanced"),
            None,
        );
    }
}

/// The sequence number of the manifest in slot A (the bootloader verified it at this reset).
fn running_sequence(a: Partition, buf: &mut [u8]) -> Option<u64> {
    slot_sequence(a, 0, buf)
}

/// The sequence number of the manifest of the slot image at `at` in `part` (not authenticated:
/// used to recognise an offer, never to trust one).
fn slot_sequence(mut part: Partition, at: u32, buf: &mut [u8]) -> Option<u64> {
    let mut header = [0u8; HEADER_SIZE as usize];
    part.read(at, &mut header).ok()?;
    let header = SlotHeader::parse(&header).ok()??;
    let envelope = buf.get_mut(..usize::try_from(header.envelope_len).ok()?)?;
    part.read(at + HEADER_SIZE, envelope).ok()?;
    let envelope = Envelope::decode(envelope).ok()?;
    Some(
        Manifest::decode_unauthenticated(envelope.manifest_bytes())
            .ok()?
            .sequence_number,
    )
}

/// The CoAP client: the link and a scratch buffer for answers.
struct Client {
    link: Link,
    answer: [u8; MAX_MESSAGE],
}

impl Client {
    fn new(uart: &mut Uart) -> Self {
        let _ = writeln!(
            uart,
            "app: link to the gateway on UART1 (CoAP over SLIP, docs/gateway.md)"
        );
        Self {
            link: Link::open(),
            answer: [0; MAX_MESSAGE],
        }
    }

    /// POST /d/checkin; the offer, if any.
    fn check_in(
        &mut self,
        uart: &mut Uart,
        sequence: u64,
        trial: bool,
    ) -> Result<Option<wire::Offer>, ()> {
        let mut body = [0u8; 384];
        let c = wire::CheckIn {
            vendor: &VENDOR_ID,
            class: &CLASS_ID,
            component: "00",
            sequence,
            trial,
            agent: concat!("mps2-app/", env!("CARGO_PKG_VERSION")),
        };
        let n = match wire::check_in(&c, &mut body) {
            Ok(n) => n,
            Err(e) => {
                let _ = writeln!(uart, "app: check-in not encoded: {e}");
                return Err(());
            }
        };
        for _ in 0..MAX_UNAVAILABLE {
            let a = match self.link.request(
                coap::code::POST,
                "/d/checkin",
                Some(CF_CBOR),
                None,
                body.get(..n).unwrap_or_default(),
                &mut self.answer,
            ) {
                Ok(a) => a,
                Err(e) => {
                    let _ = writeln!(uart, "app: check-in failed: {e}");
                    return Err(());
                }
            };
            if a.code == coap::code::SERVICE_UNAVAILABLE {
                if let Err(e) = self
                    .link
                    .sleep_ms(u64::from(a.max_age.unwrap_or(1).min(5)) * 1000)
                {
                    let _ = writeln!(uart, "app: {e}");
                    return Err(());
                }
                continue;
            }
            if a.code != coap::code::CHANGED {
                let (class, detail) = coap::code::split(a.code);
                let text = core::str::from_utf8(self.answer.get(..a.len).unwrap_or_default())
                    .unwrap_or("");
                let _ = writeln!(uart, "app: check-in answered {class}.{detail:02}: {text}");
                return Err(());
            }
            return match wire::answer(self.answer.get(..a.len).unwrap_or_default()) {
                Ok(offer) => Ok(offer),
                Err(e) => {
                    let _ = writeln!(uart, "app: {e}");
                    Err(())
                }
            };
        }
        let _ = writeln!(uart, "app: check-in: the gateway stayed unavailable");
        Err(())
    }

    /// GET `path`'s block `num` (512 bytes) into `out`; its length, whether more follow, and
    /// Size2. A 5.03 (the gateway is still fetching it) is waited out for its Max-Age. RFC 7959
    /// §2.2: every block but the last is exactly the block size, so a short block with the
    /// More flag set is refused, as is an answer larger than the block (link.rs).
    fn block(
        &mut self,
        uart: &mut Uart,
        path: &str,
        num: u32,
        out: &mut [u8],
    ) -> Result<(usize, bool, Option<u32>), ()> {
        let want = Block {
            num,
            more: false,
            szx: SZX,
        };
        for _ in 0..MAX_UNAVAILABLE {
            let a = match self
                .link
                .request(coap::code::GET, path, None, Some(want), &[], out)
            {
                Ok(a) => a,
                Err(e) => {
                    let _ = writeln!(uart, "app: GET {path} block {num}: {e}");
                    return Err(());
                }
            };
            match a.code {
                coap::code::CONTENT => {
                    // RFC 7959 §2.4: the server may answer with a smaller block than asked;
                    // this client writes whole 512-byte blocks, so it takes only its own size.
                    return match a.block2 {
                        None if num == 0 => Ok((a.len, false, a.size2)),
                        Some(b) if b.more && a.len != BLOCK => {
                            let _ = writeln!(
                                uart,
                                "app: GET {path} block {num}: {} bytes with more to follow; a block but the last is 512 bytes (RFC 7959 §2.2)",
                                a.len
                            );
                            Err(())
                        }
                        Some(b) if b.num == num && b.szx == SZX => Ok((a.len, b.more, a.size2)),
                        _ => {
                            let _ = writeln!(
                                uart,
                                "app: GET {path}: answered with another block than block {num} of 512 bytes"
                            );
                            Err(())
                        }
                    };
                }
                coap::code::SERVICE_UNAVAILABLE => {
                    if let Err(e) = self
                        .link
                        .sleep_ms(u64::from(a.max_age.unwrap_or(1).min(5)) * 1000)
                    {
                        let _ = writeln!(uart, "app: {e}");
                        return Err(());
                    }
                }
                code => {
                    let (class, detail) = coap::code::split(code);
                    let text =
                        core::str::from_utf8(out.get(..a.len).unwrap_or_default()).unwrap_or("");
                    let _ = writeln!(
                        uart,
                        "app: GET {path} block {num} answered {class}.{detail:02}: {text}"
                    );
                    return Err(());
                }
            }
        }
        let _ = writeln!(uart, "app: GET {path}: the gateway stayed unavailable");
        Err(())
    }

    /// POST /d/reports: one step report. A report that is not taken is said on the UART;
    /// the update goes on (the gateway queues what it took, docs/gateway.md §4).
    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        uart: &mut Uart,
        release: &str,
        step: &str,
        outcome: &str,
        reason: Option<&str>,
        detail: Option<&str>,
        progress: Option<u64>,
    ) {
        let mut body = [0u8; 512];
        let r = wire::Report {
            release_id: release,
            step,
            outcome,
            reason,
            detail,
            progress,
        };
        let Ok(n) = wire::report(&r, &mut body) else {
            let _ = writeln!(uart, "app: report {step} not encoded");
            return;
        };
        // docs/gateway.md §3: a 5.03 `queue-full` means the gateway did not take it; the
        // sub-device keeps the report and sends it again after the answer's Max-Age. A timeout
        // sends the same message again (same message id: the gateway acts on it once).
        for attempt in 1..=REPORT_ATTEMPTS {
            match self.link.request(
                coap::code::POST,
                "/d/reports",
                Some(CF_CBOR),
                None,
                body.get(..n).unwrap_or_default(),
                &mut self.answer,
            ) {
                Ok(a) if a.code == coap::code::CHANGED => {
                    let _ = writeln!(uart, "app: reported {step} {outcome}");
                    return;
                }
                Ok(a) if a.code == coap::code::SERVICE_UNAVAILABLE => {
                    let wait = u64::from(a.max_age.unwrap_or(1).clamp(1, MAX_REPORT_WAIT_S));
                    let _ = writeln!(
                        uart,
                        "app: report {step} answered 5.03 (attempt {attempt} of {REPORT_ATTEMPTS}); sending it again in {wait} s"
                    );
                    if let Err(e) = self.link.sleep_ms(wait * 1000) {
                        let _ = writeln!(uart, "app: report {step}: {e}");
                        break;
                    }
                }
                Ok(a) => {
                    let (class, detail) = coap::code::split(a.code);
                    let _ = writeln!(uart, "app: report {step} answered {class}.{detail:02}");
                    return;
                }
                Err(LinkError::SessionOver) => {
                    let _ = writeln!(uart, "app: report {step}: {}", LinkError::SessionOver);
                    break;
                }
                Err(e) => {
                    let _ = writeln!(
                        uart,
                        "app: report {step} failed (attempt {attempt} of {REPORT_ATTEMPTS}): {e}"
                    );
                    // Only a timeout sends the same message again (the gateway may have taken
                    // it and its answer got lost; RFC 7252 §4.5), and only if another attempt
                    // follows: otherwise the next, different request would reuse this message
                    // id and token and be answered from the gateway's duplicate cache. After
                    // a reset, an unreadable or oversized answer, a new message is sent.
                    if matches!(e, LinkError::Timeout) && attempt < REPORT_ATTEMPTS {
                        self.link.repeat_next();
                    }
                }
            }
        }
        let _ = writeln!(
            uart,
            "app: report {step} not taken after {REPORT_ATTEMPTS} attempts; the server learns the outcome from the next check-in"
        );
    }
}

/// The consumer's transport: payload blocks over CoAP Block2 from the gateway.
struct CoapTransport<'c, 'u> {
    client: &'c mut Client,
    uart: &'u mut Uart,
    uri: &'c str,
    url: &'c str,
    blocks: u32,
    /// The block number after the last one (an answer without More), once seen.
    end: Option<u32>,
}

impl Transport for CoapTransport<'_, '_> {
    fn envelope(&mut self, _: &mut [u8]) -> Result<usize, IoError> {
        Err(IoError::Failed) // the envelope is downloaded before the consumer starts
    }

    fn payload(&mut self, uri: &str, offset: u64, buf: &mut [u8]) -> Result<usize, IoError> {
        if uri != self.uri {
            let _ = writeln!(
                self.uart,
                "app: the manifest fetches {uri}, the offer carries {}",
                self.uri
            );
            return Err(IoError::Failed);
        }
        let num = u32::try_from(offset / BLOCK as u64).map_err(|_| IoError::Failed)?;
        if offset % BLOCK as u64 != 0 || self.end.is_some_and(|end| num >= end) {
            let _ = writeln!(
                self.uart,
                "app: the payload asked for at byte {offset}, past its last block or not on a block"
            );
            return Err(IoError::Failed);
        }
        self.blocks += 1;
        let (n, more, _) = self
            .client
            .block(self.uart, self.url, num, buf)
            .map_err(|()| IoError::Failed)?;
        if !more {
            self.end = Some(num + 1);
        }
        Ok(n)
    }
}

/// The journal in RAM: an interrupted download starts again after a reset.
struct RamJournal(Option<Progress>);

impl Journal for RamJournal {
    fn load(&mut self) -> Result<Option<Progress>, IoError> {
        Ok(self.0)
    }

    fn store(&mut self, progress: Option<Progress>) -> Result<(), IoError> {
        self.0 = progress;
        Ok(())
    }
}

/// `StepReport.reason` for a refusal: the SUIT processor's canonical code
/// (`suitcase_manifest::Reason::code`, what `suitcase manifest check --json` prints and the
/// server's quarantine rules read: `signature` for the signature-failures rule,
/// `sequence-rollback` for the rollback-attempt rule; RFC 8240 §9, docs/gateway.md §3).
fn reason(r: &Refusal) -> &'static str {
    match r {
        Refusal::Unauthenticated(e) => e.reason().code(),
        Refusal::Rollback { .. } => Reason::SequenceRollback.code(),
        Refusal::WrongVendor => Reason::VendorId.code(),
        Refusal::WrongClass => Reason::ClassId.code(),
        Refusal::WrongDevice => Reason::DeviceId.code(),
        Refusal::TooLarge { .. } => Reason::Size.code(),
        Refusal::NoDecryptionKey => Reason::Decrypt.code(),
        Refusal::UnsupportedComponent { .. } | Refusal::NoImage => Reason::Condition.code(),
        _ => Reason::Malformed.code(),
    }
}

/// `StepReport.reason` for an update that stopped after the check (canonical codes, as
/// [`reason`]): a payload block the link did not deliver is `fetch`, a flash failure `storage`.
fn error_reason(e: &consumer::Error) -> &'static str {
    match e {
        consumer::Error::Refused(r) => reason(r),
        consumer::Error::Io(consumer::Step::Fetch, _) => Reason::Fetch.code(),
        consumer::Error::Io(..) => Reason::Storage.code(),
        consumer::Error::Processing(e) => e.reason().code(),
        _ => Reason::Condition.code(),
    }
}

/// The release signer's key, decoded from [`ANCHOR`].
fn anchor() -> Option<p256::ecdsa::VerifyingKey> {
    use suitcase_manifest::key::{CoseKey, crv, kty};
    let key = CoseKey::decode(ANCHOR).ok()?;
    if key.kty != kty::EC2 || key.crv != Some(crv::P256) {
        return None;
    }
    let mut sec1 = [4u8; 65];
    sec1.get_mut(1..33)?
        .copy_from_slice(key.x.filter(|x| x.len() == 32)?);
    sec1.get_mut(33..)?
        .copy_from_slice(key.y.filter(|y| y.len() == 32)?);
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()
}

/// The device key partition's COSE_Key (layout.rs `DEVICE_KEY`), copied into `buf`; `None`
/// when the partition is erased (nothing provisioned) or does not hold a key record.
///
/// The key-encryption key lives there and not in the image: the image is what every plaintext
/// release and every delta base carries, so a built-in key would be public (RFC 9124
/// REQ.SEC.IMG.CONFIDENTIALITY).
fn device_key(flash: Flash, buf: &mut [u8; MAX_DEVICE_KEY]) -> Option<&[u8]> {
    let mut part = flash.device_key();
    let mut head = [0u8; 6];
    part.read(0, &mut head).ok()?;
    let (magic, len) = head.split_at(4);
    if magic != DEVICE_KEY_MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes(len.try_into().ok()?));
    let key = buf.get_mut(..len)?;
    part.read(6, key).ok()?;
    Some(key)
}

/// The payload decryption key in `cose` (RFC 9124 REQ.SEC.IMG.CONFIDENTIALITY;
/// draft-ietf-suit-firmware-encryption, AES-KW recipients).
fn kek(cose: &[u8]) -> Option<DecryptionKey<'_>> {
    use suitcase_manifest::key::CoseKey;
    let key = CoseKey::decode(cose).ok()?;
    let k = key.k?;
    let material = match k.len() {
        16 => KeyMaterial::Aes128Kw(k.try_into().ok()?),
        32 => KeyMaterial::Aes256Kw(k.try_into().ok()?),
        _ => return None,
    };
    Some(DecryptionKey {
        kid: key.kid,
        material,
    })
}

/// `StepReport.reason` for an update the bootloader did not keep (canonical codes, as
/// [`reason`]).
fn failure_reason(f: &Failure) -> &'static str {
    match f {
        Failure::NotConfirmed => Reason::Condition.code(),
        Failure::Invalid { .. } => Reason::Digest.code(),
        Failure::Rollback { .. } => Reason::SequenceRollback.code(),
        Failure::TooLarge { .. } => Reason::Size.code(),
    }
}

/// Slot B from one sector in: where an update is staged, and where the bootloader leaves one
/// it refused or swaps back one it reverted (swap-offset; what suitcase-boot's verifier reads).
struct StagedSlot(Partition);

impl embedded_storage::nor_flash::ErrorType for StagedSlot {
    type Error = FlashError;
}

impl ReadNorFlash for StagedSlot {
    const READ_SIZE: usize = <Partition as ReadNorFlash>::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let at = offset
            .checked_add(SECTOR)
            .ok_or(FlashError::Bounds(NorFlashErrorKind::OutOfBounds))?;
        self.0.read(at, bytes)
    }

    fn capacity(&self) -> usize {
        self.0.capacity().saturating_sub(SECTOR as usize)
    }
}

/// The sequence number of the image in slot B if it is a **complete** update image: its
/// envelope authentic under the release key and the whole image matching the manifest's
/// digest (the verification the bootloader runs, suitcase-device's `SuitVerifier`; manifest
/// §7.2 image-match). `None` for an erased slot or a download cut short: the consumer writes
/// the header and envelope before the first payload block, so they alone prove nothing.
#[inline(never)] // its 8 KB envelope buffer is not on the stack during the update
fn complete_staged(b: Partition) -> Option<u64> {
    let key = anchor()?;
    let anchors = [TrustAnchor::new("release", PublicKey::P256(key))];
    let components = [ComponentId::decode(&COMPONENT_ID).ok()?];
    let identity = DeviceIdentity {
        vendor: &VENDOR_ID,
        class: &CLASS_ID,
        device: None,
    };
    let mut verifier: SuitVerifier<'_, MAX_ENVELOPE> =
        SuitVerifier::new(&anchors, TrustPolicy::default(), identity, &components);
    verifier
        .verify(ImageIndex(0), &mut StagedSlot(b))
        .ok()
        .map(|m| m.security_version.0)
}

/// The bootloader's failure to report for an offer of sequence `offered`, if the offer is the
/// update it refused or reverted: `last_failure` is set (suitcase-boot keeps it until the next
/// update is staged *and marked pending*, so it outlives a download that was begun and cut)
/// and slot B holds the complete image of that sequence (`staged`, [`complete_staged`]).
/// A partial download (`staged` `None`) never counts as refused: the offer is downloaded.
/// The offer carries no envelope digest (`UpdateOffer`), so the sequence number is the match.
fn refused_by_bootloader(
    last_failure: Option<Failure>,
    staged: Option<u64>,
    offered: u64,
) -> Option<Failure> {
    let failure = last_failure?;
    (staged? == offered).then_some(failure)
}

/// One update from the gateway; `true` unless the device itself failed. `last_failure`: why
/// the bootloader refused or reverted the last update this application staged.
pub fn update(uart: &mut Uart, flash: Flash, last_failure: Option<Failure>) -> bool {
    // The update the bootloader refused or reverted, to recognise it offered again: only a
    // complete image in slot B is one the bootloader examined.
    let staged = last_failure.and_then(|failure| {
        let (_, b) = flash.slots();
        let staged = complete_staged(b);
        if staged.is_none() {
            let _ = writeln!(
                uart,
                "app: the bootloader's last failure ({failure}) is not about slot B's contents: no complete authentic image there (a download cut short); an offer is downloaded"
            );
        }
        staged
    });
    download(uart, flash, last_failure, staged)
}

/// [`update`] once slot B has been examined.
#[inline(never)]
fn download(
    uart: &mut Uart,
    flash: Flash,
    last_failure: Option<Failure>,
    staged: Option<u64>,
) -> bool {
    let mut envelope = [0u8; MAX_ENVELOPE];
    let (a, _) = flash.slots();
    let running = running_sequence(a, &mut envelope).unwrap_or(0);
    let envelope = &mut envelope;
    let Some(key) = anchor() else {
        let _ = writeln!(
            uart,
            "app: no release key built in (APP_TRUST_ANCHOR); not checking in"
        );
        return false;
    };
    let mut client = Client::new(uart);
    let offer = match client.check_in(uart, running, false) {
        Ok(Some(offer)) => offer,
        Ok(None) => {
            let _ = writeln!(uart, "app: checked in: no update offered");
            return true;
        }
        Err(()) => return false,
    };
    let release = offer.release_id.as_str();
    let _ = writeln!(
        uart,
        "app: offered release {release}, sequence {}, envelope {} bytes",
        offer.sequence, offer.manifest_size
    );
    // The bootloader refused or reverted this very release (RFC 9019 §3: the status tracker
    // hears of it): report `activate` failed, with the reason, and do not download it again;
    // the server closes the device's part of the campaign on the failure, so this happens
    // once.
    if let Some(failure) = refused_by_bootloader(last_failure, staged, offer.sequence) {
        let mut detail = Detail::default();
        let _ = write!(detail, "the bootloader did not keep it: {failure}");
        let _ = writeln!(
            uart,
            "app: release {release} {}; not downloading it again",
            detail.as_str()
        );
        client.report(
            uart,
            release,
            "activate",
            "failure",
            Some(failure_reason(&failure)),
            Some(detail.as_str()),
            None,
        );
        return true;
    }
    // The envelope, block-wise: the only bytes taken before authentication.
    let size = usize::try_from(offer.manifest_size).unwrap_or(usize::MAX);
    if size > envelope.len() {
        client.report(
            uart,
            release,
            "receive",
            "failure",
            Some(Reason::Size.code()),
            Some("envelope larger than the 8160 bytes the slot header area holds"),
            None,
        );
        return true;
    }
    let mut got = 0;
    let mut num = 0;
    let mut total_ok = true;
    loop {
        // Every block but the last is full (block() refuses a short one with More), so block
        // `num` starts at num * 512, where `got` is.
        if got >= size {
            total_ok = false; // more blocks than the offered size holds
            break;
        }
        let Some(dst) = envelope.get_mut(got..(got + BLOCK).min(size)) else {
            total_ok = false; // more blocks than the offered size holds
            break;
        };
        let Ok((n, more, size2)) = client.block(uart, offer.manifest_url.as_str(), num, dst) else {
            client.report(
                uart,
                release,
                "receive",
                "failure",
                Some(Reason::Fetch.code()),
                Some("the envelope download failed"),
                Some(got as u64),
            );
            return false;
        };
        // RFC 7959 §4: Size2 is the whole envelope's size; it must be the offered one.
        if size2.is_some_and(|s| u64::from(s) != offer.manifest_size) {
            total_ok = false;
            break;
        }
        got += n;
        num += 1;
        if !more || n == 0 {
            break;
        }
    }
    if !total_ok || got != size {
        let mut detail = Detail::default();
        let _ = write!(
            detail,
            "the envelope download does not have the offered size of {size} bytes (got {got} in {num} blocks, or Size2 differs)"
        );
        let _ = writeln!(uart, "app: {}", detail.as_str());
        client.report(
            uart,
            release,
            "receive",
            "failure",
            Some(Reason::Size.code()),
            Some(detail.as_str()),
            Some(got as u64),
        );
        return true;
    }
    let _ = writeln!(uart, "app: envelope {got} bytes in {num} blocks of 512");
    let Some(envelope) = envelope.get(..got) else {
        return false;
    };

    let anchors = [TrustAnchor::new("release", PublicKey::P256(key))];
    let mut key_buf = [0u8; MAX_DEVICE_KEY];
    let keys = match device_key(flash, &mut key_buf) {
        Some(cose) => {
            let k = kek(cose);
            if k.is_none() {
                let _ = writeln!(
                    uart,
                    "app: the device key partition holds no AES-KW key (A128KW/A256KW COSE_Key)"
                );
            }
            k
        }
        None => {
            let _ = writeln!(
                uart,
                "app: no device key provisioned (the device key partition is empty): an encrypted release is refused"
            );
            None
        }
    };
    let Ok(component) = ComponentId::decode(&COMPONENT_ID) else {
        return false;
    };
    let device = Device {
        anchors: &anchors,
        policy: TrustPolicy::default(),
        identity: DeviceIdentity {
            vendor: &VENDOR_ID,
            class: &CLASS_ID,
            device: None,
        },
        component,
        keys: keys.as_slice(),
    };
    let (a, b) = flash.slots();
    let mut slots = BoardSlots::new(a, b, flash.state(), running);
    // RFC 9019 §4 / RFC 9124 REQ.SEC.AUTHENTIC: signature, rollback, identity and size are
    // checked here, before the first payload block is asked for.
    let authenticated = match Offer::new(envelope).authenticate(&device, &mut slots) {
        Ok(a) => a,
        Err(consumer::Error::Refused(r)) => {
            let mut detail = Detail::default();
            let _ = write!(detail, "refused before download: {r}");
            let _ = writeln!(
                uart,
                "app: release {release} {}; payload blocks requested: 0",
                detail.as_str()
            );
            client.report(
                uart,
                release,
                "check",
                "failure",
                Some(reason(&r)),
                Some(detail.as_str()),
                None,
            );
            return true;
        }
        Err(e) => {
            let _ = writeln!(uart, "app: authentication failed: {e}");
            return false;
        }
    };
    let _ = writeln!(
        uart,
        "app: envelope authenticated: sequence {} above {running}, signed by the built-in release key",
        authenticated.manifest().sequence_number()
    );
    client.report(
        uart,
        release,
        "check",
        "success",
        None,
        Some("envelope authenticated on the device before any payload block"),
        None,
    );
    let image_len = authenticated.image_len();
    let mut journal = RamJournal(None);
    let mut transport = CoapTransport {
        client: &mut client,
        uart,
        uri: offer.payload_uri.as_str(),
        url: offer.payload_url.as_str(),
        blocks: 0,
        end: None,
    };
    let fetched = authenticated.fetch(&device, &mut transport, &mut slots, &mut journal);
    let blocks = transport.blocks;
    let _ = writeln!(uart, "app: payload blocks requested: {blocks}");
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            let mut detail = Detail::default();
            let _ = write!(detail, "{e}");
            let _ = writeln!(uart, "app: fetch failed: {}", detail.as_str());
            client.report(
                uart,
                release,
                "apply",
                "failure",
                Some(error_reason(&e)),
                Some(detail.as_str()),
                None,
            );
            return true;
        }
    };
    let _ = writeln!(uart, "app: image {image_len} bytes streamed into slot B");
    client.report(
        uart,
        release,
        "receive",
        "success",
        None,
        None,
        Some(image_len),
    );
    client.report(
        uart,
        release,
        "apply",
        "success",
        None,
        Some("written block by block into slot B"),
        None,
    );
    let verified = match fetched.verify(&device, &mut slots) {
        Ok(v) => v,
        Err(e) => {
            let mut detail = Detail::default();
            let _ = write!(detail, "{e}");
            let _ = writeln!(uart, "app: slot B does not verify: {}", detail.as_str());
            client.report(
                uart,
                release,
                "reverify",
                "failure",
                Some(error_reason(&e)),
                Some(detail.as_str()),
                None,
            );
            return true;
        }
    };
    client.report(
        uart,
        release,
        "reverify",
        "success",
        None,
        Some("slot B read back: image-match"),
        None,
    );
    match verified.stage(&mut slots, &mut journal) {
        Ok(_) => {
            client.report(
                uart,
                release,
                "stage",
                "success",
                None,
                Some("pending: the bootloader verifies and swaps it in at the next reset"),
                None,
            );
            let _ = writeln!(
                uart,
                "app: session with the gateway: {} ms",
                client.link.elapsed_ms()
            );
            let _ = writeln!(uart, "app: update staged (pending); resetting");
            true
        }
        Err(e) => {
            let _ = writeln!(uart, "app: staging failed: {e}");
            false
        }
    }
}

/// A report's detail text, bounded.
struct Detail {
    buf: [u8; 200],
    len: usize,
}

impl Default for Detail {
    fn default() -> Self {
        Self {
            buf: [0; 200],
            len: 0,
        }
    }
}

impl Detail {
    fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or("")
    }
}

impl Write for Detail {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let mut end = s.len().min(self.buf.len() - self.len);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + end), s.get(..end)) {
            dst.copy_from_slice(src.as_bytes());
            self.len += end;
        }
        Ok(())
    }
}

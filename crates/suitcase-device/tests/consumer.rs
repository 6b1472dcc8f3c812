//! The firmware-consumer core end to end on a simulated MCU: `suitcase-boot` A/B slots (the
//! library's `BootSlots`) on a `suitcase-flash-sim` NOR flash, the SUIT secure-boot verifier in the bootloader, a
//! transport that counts the payload blocks it serves, and releases laid out as `suitcase
//! release build` writes them (plain, encrypted, delta).
//!
//! The attack tests count payload blocks: a release the device refuses must cost its envelope
//! and not one payload block.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::std_instead_of_core,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

use std::collections::HashMap;

use ed25519_dalek::Signer as _;
use suitcase_boot::{BootLoader, Config, ImageSlots, Phase, Updater};
use suitcase_device::consumer::{
    Activation, BLOCK, BootSlots, Device, Error, IoError, Journal, Offer, Progress, Refusal, Reset,
    Resumed, SlotRole, Slots, Transport, resume,
};
use suitcase_device::{DeviceIdentity, SuitVerifier, pack};
use suitcase_flash_sim::{Partition, SharedFlash, SimFlash};
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, Index, ManifestBuilder, Param};
use suitcase_manifest::codepoints::{alg, helper};
use suitcase_manifest::encryption::{DecryptionKey, KeyMaterial};
use suitcase_manifest::{
    ComponentId, Condition, DigestAlgorithm, Directive, PublicKey, TrustAnchor, TrustPolicy,
};

const VENDOR: [u8; 16] = [0xfa; 16];
const OTHER_VENDOR: [u8; 16] = [0xbb; 16];
const CLASS: [u8; 16] = [0x14; 16];
const SECTOR: u32 = 256;
const SLOT: u32 = 48 * SECTOR;
/// `["mcu"]`, CBOR-encoded.
const COMPONENT: [u8; 5] = [0x81, 0x43, b'm', b'c', b'u'];
const KEK: [u8; 16] = [0x42; 16];
const URI: &str = "coap://fw.example/mcu.bin";

fn author() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[3; 32])
}

fn stranger() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9; 32])
}

fn image(version: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 7) as u8).wrapping_mul(version).wrapping_add(version))
        .collect()
}

/// What a release is made of.
struct Release {
    sequence: u64,
    image: Vec<u8>,
    vendor: [u8; 16],
    signer: ed25519_dalek::SigningKey,
    encrypt_for: Option<[u8; 16]>,
    delta_from: Option<Vec<u8>>,
}

impl Release {
    fn new(sequence: u64, image: Vec<u8>) -> Self {
        Self {
            sequence,
            image,
            vendor: VENDOR,
            signer: author(),
            encrypt_for: None,
            delta_from: None,
        }
    }

    /// The envelope and the payload to serve at [`URI`], laid out as
    /// `suitcase_author::release::build` lays them out (its module doc).
    fn build(&self) -> (Vec<u8>, Vec<u8>) {
        let sha = DigestAlgorithm::Sha256;
        let mut components = vec![vec![b"mcu".to_vec()]];
        let mut helper_component = |suffix: &[u8]| {
            components.push(vec![b"mcu".to_vec(), suffix.to_vec()]);
            components.len() as u64 - 1
        };
        let mut shared = vec![
            Cmd::SetComponentIndex(Index::All),
            Cmd::OverrideParameters(vec![
                Param::VendorIdentifier(self.vendor.to_vec()),
                Param::ClassIdentifier(CLASS.to_vec()),
            ]),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::OverrideParameters(vec![
                Param::ImageDigest(sha, sha.digest(&self.image).as_bytes().to_vec()),
                Param::ImageSize(self.image.len() as u64),
            ]),
        ];
        let mut install = Vec::new();
        let plain = match &self.delta_from {
            Some(old) => {
                let opts = suitcase_delta::Options {
                    strategy: suitcase_delta::Strategy::Delta,
                    ..Default::default()
                };
                suitcase_delta::create(old, &self.image, &opts)
                    .unwrap()
                    .bytes
            }
            None => self.image.clone(),
        };
        let (served, info) = match self.encrypt_for {
            Some(kek) => {
                let recipient = suitcase_author::keys::PublicKey::Symmetric {
                    alg: alg::A128KW,
                    k: zeroize::Zeroizing::new(kek.to_vec()),
                };
                let e = suitcase_author::encrypt::encrypt(
                    &plain,
                    alg::A128CTR,
                    alg::ECDH_ES_A128KW,
                    &[recipient],
                )
                .unwrap();
                (e.ciphertext, Some(e.info))
            }
            None => (plain, None),
        };
        let fetch_into = if info.is_none() && self.delta_from.is_none() {
            0
        } else {
            let s = helper_component(helper::STAGING);
            shared.push(Cmd::SetComponentIndex(Index::One(s)));
            shared.push(Cmd::OverrideParameters(vec![Param::ImageSize(
                served.len() as u64,
            )]));
            s
        };
        let base = self.delta_from.as_ref().map(|old| {
            let b = helper_component(helper::INSTALLED);
            shared.push(Cmd::SetComponentIndex(Index::One(b)));
            shared.push(Cmd::OverrideParameters(vec![
                Param::ImageDigest(sha, sha.digest(old).as_bytes().to_vec()),
                Param::ImageSize(old.len() as u64),
            ]));
            install.extend([
                Cmd::SetComponentIndex(Index::One(b)),
                Cmd::Condition(Condition::ImageMatch, 15),
            ]);
            b
        });
        install.extend([
            Cmd::SetComponentIndex(Index::One(fetch_into)),
            Cmd::OverrideParameters(vec![Param::Uri(URI.into())]),
            Cmd::Directive(Directive::Fetch, 2),
        ]);
        if let Some(info) = info {
            assert!(base.is_none(), "an encrypted delta needs a patch component");
            install.extend([
                Cmd::SetComponentIndex(Index::One(0)),
                Cmd::OverrideParameters(vec![
                    Param::EncryptionInfo(info),
                    Param::SourceComponent(fetch_into),
                ]),
                Cmd::Directive(Directive::Copy, 2),
            ]);
        }
        if let Some(base) = base {
            install.extend([
                Cmd::SetComponentIndex(Index::One(0)),
                Cmd::OverrideParameters(vec![
                    Param::SourceComponent(fetch_into),
                    Param::DeltaBase(base),
                ]),
                Cmd::Directive(Directive::Copy, 2),
            ]);
        }
        install.extend([
            Cmd::SetComponentIndex(Index::One(0)),
            Cmd::Condition(Condition::ImageMatch, 15),
        ]);
        let m = ManifestBuilder {
            sequence_number: self.sequence,
            components,
            shared_sequence: Some(shared),
            install: Some(install),
            validate: Some(vec![
                Cmd::SetComponentIndex(Index::One(0)),
                Cmd::Condition(Condition::ImageMatch, 15),
            ]),
            ..Default::default()
        };
        let mut b = EnvelopeBuilder::new(&m, sha);
        b.sign1(alg::ED25519, None, |tbs| {
            self.signer.sign(tbs).to_bytes().to_vec()
        });
        (b.encode(), served)
    }
}

/// The update server as the device sees it; counts every payload block it serves.
struct Server {
    envelope: Vec<u8>,
    payloads: HashMap<String, Vec<u8>>,
    blocks: usize,
    /// Fail every payload request after this many blocks (a power cut mid-download).
    cut_after: Option<usize>,
}

impl Server {
    fn offering(release: &Release) -> Self {
        let (envelope, payload) = release.build();
        Self {
            envelope,
            payloads: HashMap::from([(URI.to_owned(), payload)]),
            blocks: 0,
            cut_after: None,
        }
    }

    fn tamper_payload(&mut self, at: usize) {
        let p = self.payloads.get_mut(URI).unwrap();
        p[at] ^= 0x01;
    }
}

impl Transport for Server {
    fn envelope(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
        let dst = buf
            .get_mut(..self.envelope.len())
            .ok_or(IoError::TooLarge)?;
        dst.copy_from_slice(&self.envelope);
        Ok(self.envelope.len())
    }

    fn payload(&mut self, uri: &str, offset: u64, buf: &mut [u8]) -> Result<usize, IoError> {
        if self.cut_after.is_some_and(|n| self.blocks >= n) {
            return Err(IoError::Failed);
        }
        self.blocks += 1;
        let p = self.payloads.get(uri).ok_or(IoError::Failed)?;
        let rest = p.get(offset as usize..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// The journal in RAM that survives a "power cut" (the test keeps it across runs).
#[derive(Default)]
struct MemJournal(Option<Progress>);

impl Journal for MemJournal {
    fn load(&mut self) -> Result<Option<Progress>, IoError> {
        Ok(self.0)
    }

    fn store(&mut self, progress: Option<Progress>) -> Result<(), IoError> {
        self.0 = progress;
        Ok(())
    }
}

/// A simulated MCU: state sectors and two slots on one NOR flash, the `suitcase-boot`
/// bootloader and updater, the SUIT verifier.
struct Mcu {
    flash: SharedFlash<4, 256>,
    slots: BootSlots<Part, Part, SimReset>,
}

type Part = Partition<4, 256>;

fn config() -> Config {
    Config::ab(SECTOR).with_max_trial_boots(2)
}

fn identity() -> DeviceIdentity<'static> {
    DeviceIdentity {
        vendor: &VENDOR,
        class: &CLASS,
        device: None,
    }
}

fn io<E>(_: E) -> IoError {
    IoError::Failed
}

impl Mcu {
    /// A device running the factory image `factory` (sequence 1), booted and confirmed.
    fn new(factory: &[u8]) -> Self {
        let flash = SharedFlash::new(SimFlash::<4, 256>::uniform(SECTOR, 2 + 2 * 48, 1).unwrap());
        let (envelope, _) = Release::new(1, factory.to_vec()).build();
        let slot_image = pack(&envelope, factory, BLOCK as u32).unwrap();
        flash
            .with(|f| f.load(2 * SECTOR, &slot_image))
            .unwrap()
            .unwrap();
        let a = flash.partition(2 * SECTOR, SLOT).unwrap();
        let b = flash.partition(2 * SECTOR + SLOT, SLOT).unwrap();
        let state = flash.partition(0, 2 * SECTOR).unwrap();
        let slots = BootSlots::new(config(), ImageSlots::new(a, b), state, SimReset).unwrap();
        let mcu = Self { flash, slots };
        mcu.boot();
        mcu
    }

    fn parts(&self) -> ([ImageSlots<Part>; 1], Part) {
        let a = self.flash.partition(2 * SECTOR, SLOT).unwrap();
        let b = self.flash.partition(2 * SECTOR + SLOT, SLOT).unwrap();
        (
            [ImageSlots::new(a, b)],
            self.flash.partition(0, 2 * SECTOR).unwrap(),
        )
    }

    fn updater(&self) -> Updater<Part, Part, 1> {
        let (slots, state) = self.parts();
        Updater::new(config(), slots, state).unwrap()
    }

    fn boot(&self) {
        let key = author().verifying_key();
        let anchors = [TrustAnchor::new("author", PublicKey::Ed25519(key))];
        let components = [ComponentId::decode(&COMPONENT).unwrap()];
        let verifier =
            SuitVerifier::<4096>::new(&anchors, TrustPolicy::default(), identity(), &components);
        let (slots, state) = self.parts();
        let _ = BootLoader::new(config(), slots, state, verifier)
            .unwrap()
            .boot()
            .unwrap();
    }

    fn phase(&self) -> Phase {
        self.updater().status().unwrap().phase
    }

    /// The image the device runs (from its slot header).
    fn running_image(&mut self) -> Vec<u8> {
        let mut header = [0u8; 32];
        self.read(SlotRole::Running, 0, &mut header).unwrap();
        let h = suitcase_device::SlotHeader::parse(&header)
            .unwrap()
            .unwrap();
        let mut img = vec![0u8; h.image_len as usize];
        self.read(SlotRole::Running, u64::from(h.image_offset), &mut img)
            .unwrap();
        img
    }
}

/// The simulated reset: the bootloader runs on the partitions with the SUIT verifier.
struct SimReset;

impl Reset<Part, Part> for SimReset {
    fn reset(
        &mut self,
        config: Config,
        slots: [ImageSlots<&mut Part>; 1],
        state: &mut Part,
    ) -> Result<(), IoError> {
        let key = author().verifying_key();
        let anchors = [TrustAnchor::new("author", PublicKey::Ed25519(key))];
        let components = [ComponentId::decode(&COMPONENT).unwrap()];
        let verifier =
            SuitVerifier::<4096>::new(&anchors, TrustPolicy::default(), identity(), &components);
        let mut bootloader = BootLoader::new(config, slots, state, verifier).map_err(io)?;
        bootloader.boot().map_err(io)?;
        Ok(())
    }
}

/// The device's slots are the library's `BootSlots`; the test only adds its flash.
impl Slots for Mcu {
    fn capacity(&mut self) -> Result<u64, IoError> {
        self.slots.capacity()
    }

    fn installed_sequence(&mut self) -> Result<u64, IoError> {
        self.slots.installed_sequence()
    }

    fn begin(&mut self, len: u64) -> Result<(), IoError> {
        self.slots.begin(len)
    }

    fn resume(&mut self, len: u64) -> Result<(), IoError> {
        self.slots.resume(len)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        self.slots.write(offset, data)
    }

    fn read(&mut self, role: SlotRole, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.slots.read(role, offset, buf)
    }

    fn mark_pending(&mut self) -> Result<(), IoError> {
        self.slots.mark_pending()
    }

    fn activate(&mut self) -> Result<bool, IoError> {
        self.slots.activate()
    }

    fn on_trial(&mut self) -> Result<bool, IoError> {
        self.slots.on_trial()
    }

    fn confirm(&mut self) -> Result<(), IoError> {
        self.slots.confirm()
    }

    fn revert(&mut self) -> Result<(), IoError> {
        self.slots.revert()
    }
}

/// The device's configuration: the author's key, its identity, its KEK.
struct Keys {
    anchors: [TrustAnchor<'static>; 1],
    keys: [DecryptionKey<'static>; 1],
    component: ComponentId<'static>,
}

impl Keys {
    fn new() -> Self {
        Self {
            anchors: [TrustAnchor::new(
                "author",
                PublicKey::Ed25519(author().verifying_key()),
            )],
            keys: [DecryptionKey {
                kid: None,
                material: KeyMaterial::Aes128Kw(KEK),
            }],
            component: ComponentId::decode(&COMPONENT).unwrap(),
        }
    }

    fn device(&self) -> Device<'_> {
        Device {
            anchors: &self.anchors,
            policy: TrustPolicy::default(),
            identity: identity(),
            component: self.component,
            keys: &self.keys,
        }
    }
}

/// Runs one update from offer to confirmation; returns the payload blocks fetched.
fn update(mcu: &mut Mcu, server: &mut Server, keys: &Keys) -> Result<usize, Error> {
    let device = keys.device();
    let mut journal = MemJournal::default();
    let mut buf = [0u8; 4096];
    let offer = Offer::receive(server, &mut buf)?;
    let authenticated = offer.authenticate(&device, mcu)?;
    let fetched = authenticated.fetch(&device, server, mcu, &mut journal)?;
    let candidates = fetched.verify(&device, mcu)?;
    let staged = candidates.stage(mcu, &mut journal)?;
    let Activation::Trial(activated) = staged.activate(mcu, &mut journal)? else {
        panic!("the bootloader refused a verified image");
    };
    let confirmed = activated.confirm(mcu, &mut journal)?;
    assert_eq!(confirmed.sequence_number(), 2);
    assert_eq!(journal.0, None);
    Ok(server.blocks)
}

fn expect_refused(mcu: &mut Mcu, release: &Release, keys: &Keys, why: Refusal) {
    let mut server = Server::offering(release);
    let before = mcu.running_image();
    let err = update(mcu, &mut server, keys).unwrap_err();
    assert_eq!(err, Error::Refused(why), "{err}");
    assert_eq!(
        server.blocks, 0,
        "a refused release must cost no payload block"
    );
    assert_eq!(mcu.running_image(), before);
    assert_eq!(mcu.phase(), Phase::Confirmed);
}

#[test]
fn plain_update_is_fetched_verified_staged_activated_and_confirmed() {
    let old = image(1, 3000);
    let new = image(2, 5000);
    let mut mcu = Mcu::new(&old);
    let keys = Keys::new();
    let mut server = Server::offering(&Release::new(2, new.clone()));
    let blocks = update(&mut mcu, &mut server, &keys).unwrap();
    assert_eq!(blocks, new.len().div_ceil(BLOCK));
    assert_eq!(mcu.running_image(), new);
    assert_eq!(mcu.phase(), Phase::Confirmed);
    assert_eq!(mcu.installed_sequence().unwrap(), 2);
}

#[test]
fn encrypted_update_streams_through_decryption_into_the_slot() {
    let new = image(3, 4000);
    let mut mcu = Mcu::new(&image(1, 3000));
    let keys = Keys::new();
    let mut release = Release::new(2, new.clone());
    release.encrypt_for = Some(KEK);
    let mut server = Server::offering(&release);
    let blocks = update(&mut mcu, &mut server, &keys).unwrap();
    assert_eq!(
        blocks,
        new.len().div_ceil(BLOCK),
        "each block requested once"
    );
    assert_eq!(mcu.running_image(), new);
}

#[test]
fn delta_update_patches_the_running_image_into_the_slot() {
    let old = image(1, 6000);
    let mut new = old.clone();
    new[100..200].fill(7);
    new.extend_from_slice(&[1, 2, 3, 4, 5]);
    let mut mcu = Mcu::new(&old);
    let keys = Keys::new();
    let mut release = Release::new(2, new.clone());
    release.delta_from = Some(old);
    let mut server = Server::offering(&release);
    let blocks = update(&mut mcu, &mut server, &keys).unwrap();
    assert!(
        blocks < new.len() / BLOCK,
        "a delta fetches less than the image"
    );
    assert_eq!(mcu.running_image(), new);
}

#[test]
fn a_trial_image_that_is_given_up_is_reverted_by_the_bootloader() {
    let old = image(1, 3000);
    let mut mcu = Mcu::new(&old);
    let keys = Keys::new();
    let device = keys.device();
    let mut server = Server::offering(&Release::new(2, image(2, 3500)));
    let mut journal = MemJournal::default();
    let mut buf = [0u8; 4096];
    let staged = Offer::receive(&mut server, &mut buf)
        .unwrap()
        .authenticate(&device, &mut mcu)
        .unwrap()
        .fetch(&device, &mut server, &mut mcu, &mut journal)
        .unwrap()
        .verify(&device, &mut mcu)
        .unwrap()
        .stage(&mut mcu, &mut journal)
        .unwrap();
    let Activation::Trial(activated) = staged.activate(&mut mcu, &mut journal).unwrap() else {
        panic!("refused");
    };
    assert_eq!(mcu.phase(), Phase::Trial);
    let reverted = activated.revert(&mut mcu, &mut journal).unwrap();
    assert_eq!(reverted.sequence_number(), 2);
    assert_eq!(mcu.phase(), Phase::Confirmed);
    assert_eq!(mcu.running_image(), old);
    assert_eq!(journal.0, None);
}

#[test]
fn attack_untrusted_signer_fetches_no_payload_block() {
    let mut mcu = Mcu::new(&image(1, 3000));
    let mut release = Release::new(2, image(2, 3000));
    release.signer = stranger();
    let mut server = Server::offering(&release);
    let keys = Keys::new();
    let err = update(&mut mcu, &mut server, &keys).unwrap_err();
    assert!(
        matches!(err, Error::Refused(Refusal::Unauthenticated(_))),
        "{err}"
    );
    assert_eq!(server.blocks, 0);
}

#[test]
fn attack_rollback_refused_before_fetch() {
    let mut mcu = Mcu::new(&image(1, 3000));
    let keys = Keys::new();
    let mut server = Server::offering(&Release::new(2, image(2, 3000)));
    update(&mut mcu, &mut server, &keys).unwrap();
    // The authentic release 1 (the factory image's) replayed after 2 is installed.
    expect_refused(
        &mut mcu,
        &Release::new(1, image(1, 3000)),
        &keys,
        Refusal::Rollback {
            installed: 2,
            offered: 1,
        },
    );
}

#[test]
fn attack_wrong_vendor_refused_before_fetch() {
    let mut mcu = Mcu::new(&image(1, 3000));
    let mut release = Release::new(2, image(2, 3000));
    release.vendor = OTHER_VENDOR;
    expect_refused(&mut mcu, &release, &Keys::new(), Refusal::WrongVendor);
}

#[test]
fn attack_no_decryption_key_refused_before_fetch() {
    let mut mcu = Mcu::new(&image(1, 3000));
    let mut release = Release::new(2, image(2, 3000));
    release.encrypt_for = Some([0x77; 16]);
    expect_refused(&mut mcu, &release, &Keys::new(), Refusal::NoDecryptionKey);
}

#[test]
fn attack_oversized_image_refused_before_fetch() {
    let mut mcu = Mcu::new(&image(1, 3000));
    let release = Release::new(2, image(2, SLOT as usize));
    let mut server = Server::offering(&release);
    let err = update(&mut mcu, &mut server, &Keys::new()).unwrap_err();
    assert!(
        matches!(err, Error::Refused(Refusal::TooLarge { .. })),
        "{err}"
    );
    assert_eq!(server.blocks, 0);
}

#[test]
fn attack_tampered_payload_never_becomes_verified_candidates() {
    let old = image(1, 3000);
    for encrypted in [false, true] {
        let mut mcu = Mcu::new(&old);
        let keys = Keys::new();
        let device = keys.device();
        let mut release = Release::new(2, image(2, 3000));
        release.encrypt_for = encrypted.then_some(KEK);
        let mut server = Server::offering(&release);
        server.tamper_payload(1234);
        let mut journal = MemJournal::default();
        let mut buf = [0u8; 4096];
        let authenticated = Offer::receive(&mut server, &mut buf)
            .unwrap()
            .authenticate(&device, &mut mcu)
            .unwrap();
        // The install section's image-match fails: there is no Fetched, so no verify, so no
        // VerifiedCandidates, so nothing to stage.
        let err = authenticated
            .fetch(&device, &mut server, &mut mcu, &mut journal)
            .unwrap_err();
        assert!(matches!(err, Error::Processing(_)), "{err}");
        assert_eq!(mcu.phase(), Phase::Confirmed, "nothing pending");
        mcu.boot();
        assert_eq!(mcu.running_image(), old);
    }
}

#[test]
fn resume_after_a_cut_mid_download_reauthenticates_and_continues() {
    let new = image(4, 6000);
    let mut mcu = Mcu::new(&image(1, 3000));
    let keys = Keys::new();
    let device = keys.device();
    let mut server = Server::offering(&Release::new(2, new.clone()));
    let mut journal = MemJournal::default();
    // The power fails after 5 payload blocks.
    server.cut_after = Some(5);
    {
        let mut buf = [0u8; 4096];
        let authenticated = Offer::receive(&mut server, &mut buf)
            .unwrap()
            .authenticate(&device, &mut mcu)
            .unwrap();
        let err = authenticated
            .fetch(&device, &mut server, &mut mcu, &mut journal)
            .unwrap_err();
        assert!(matches!(err, Error::Io(..)), "{err}");
    }
    let Some(Progress::Fetching { written, .. }) = journal.0 else {
        panic!("journal: {:?}", journal.0);
    };
    // After the restart: one function re-authenticates the envelope stored in the slot.
    server.cut_after = None;
    server.blocks = 0;
    let mut buf = [0u8; 4096];
    let Resumed::Fetching(authenticated) =
        resume(&device, &mut mcu, &mut journal, &mut buf).unwrap()
    else {
        panic!("not resumed at fetching");
    };
    assert_eq!(authenticated.resumed_at(), written);
    let candidates = authenticated
        .fetch(&device, &mut server, &mut mcu, &mut journal)
        .unwrap()
        .verify(&device, &mut mcu)
        .unwrap();
    assert_eq!(
        server.blocks,
        new.len().div_ceil(BLOCK) - 5,
        "the first five blocks are not fetched again"
    );
    let staged = candidates.stage(&mut mcu, &mut journal).unwrap();
    let Activation::Trial(activated) = staged.activate(&mut mcu, &mut journal).unwrap() else {
        panic!("refused");
    };
    // A reset on trial: resume finds the new image running and re-authenticates it.
    let _ = activated;
    let mut buf = [0u8; 4096];
    let Resumed::Activated(activated) = resume(&device, &mut mcu, &mut journal, &mut buf).unwrap()
    else {
        panic!("not resumed at activated");
    };
    activated.confirm(&mut mcu, &mut journal).unwrap();
    assert_eq!(mcu.running_image(), new);
    assert_eq!(mcu.phase(), Phase::Confirmed);
}

#[test]
fn attack_resume_refuses_an_envelope_tampered_in_the_slot() {
    let mut mcu = Mcu::new(&image(1, 3000));
    let keys = Keys::new();
    let device = keys.device();
    let mut server = Server::offering(&Release::new(2, image(2, 6000)));
    let mut journal = MemJournal::default();
    server.cut_after = Some(2);
    let mut buf = [0u8; 4096];
    let authenticated = Offer::receive(&mut server, &mut buf)
        .unwrap()
        .authenticate(&device, &mut mcu)
        .unwrap();
    authenticated
        .fetch(&device, &mut server, &mut mcu, &mut journal)
        .unwrap_err();
    // Flip a bit of the stored envelope (in the manifest, near its end) in the update slot.
    let env_len = server.envelope.len() as u32;
    let target = 2 * SECTOR + SLOT + 32 + env_len - 40;
    mcu.flash.with(|f| f.flip_bit(target, 0)).unwrap().unwrap();
    let mut buf = [0u8; 4096];
    let err = resume(&device, &mut mcu, &mut journal, &mut buf).unwrap_err();
    assert!(
        matches!(err, Error::Refused(Refusal::Unauthenticated(_))),
        "{err}"
    );
    assert_eq!(journal.0, None, "the journal is cleared");
}

/// Receives, authenticates, fetches, verifies and stages an update.
fn stage_update<'e>(
    mcu: &mut Mcu,
    server: &mut Server,
    device: &Device<'_>,
    journal: &mut MemJournal,
    buf: &'e mut [u8],
) -> suitcase_device::consumer::Staged<'e> {
    Offer::receive(server, buf)
        .unwrap()
        .authenticate(device, mcu)
        .unwrap()
        .fetch(device, server, mcu, journal)
        .unwrap()
        .verify(device, mcu)
        .unwrap()
        .stage(mcu, journal)
        .unwrap()
}

#[test]
fn resume_after_a_reset_while_staged_verifies_again_and_activates() {
    let new = image(5, 4500);
    let mut mcu = Mcu::new(&image(1, 3000));
    let keys = Keys::new();
    let device = keys.device();
    let mut server = Server::offering(&Release::new(2, new.clone()));
    let mut journal = MemJournal::default();
    let mut buf = [0u8; 4096];
    let _ = stage_update(&mut mcu, &mut server, &device, &mut journal, &mut buf);
    assert_eq!(journal.0, Some(Progress::Staged));
    let mut buf = [0u8; 4096];
    let Resumed::Staged(staged) = resume(&device, &mut mcu, &mut journal, &mut buf).unwrap() else {
        panic!("not resumed at staged");
    };
    let Activation::Trial(activated) = staged.activate(&mut mcu, &mut journal).unwrap() else {
        panic!("refused");
    };
    activated.confirm(&mut mcu, &mut journal).unwrap();
    assert_eq!(mcu.running_image(), new);
}

#[test]
fn resume_after_a_block_written_but_not_journalled_starts_the_download_over() {
    let new = image(6, 6000);
    let mut mcu = Mcu::new(&image(1, 3000));
    let keys = Keys::new();
    let device = keys.device();
    let mut server = Server::offering(&Release::new(2, new.clone()));
    let mut journal = MemJournal::default();
    server.cut_after = Some(6);
    let mut buf = [0u8; 4096];
    let authenticated = Offer::receive(&mut server, &mut buf)
        .unwrap()
        .authenticate(&device, &mut mcu)
        .unwrap();
    authenticated
        .fetch(&device, &mut server, &mut mcu, &mut journal)
        .unwrap_err();
    // The cut fell after a block reached the flash and before the journal said so.
    let Some(Progress::Fetching { len, written }) = journal.0 else {
        panic!("journal: {:?}", journal.0);
    };
    journal.0 = Some(Progress::Fetching {
        len,
        written: written - BLOCK as u64,
    });
    server.cut_after = None;
    server.blocks = 0;
    let mut buf = [0u8; 4096];
    let Resumed::Fetching(authenticated) =
        resume(&device, &mut mcu, &mut journal, &mut buf).unwrap()
    else {
        panic!("not resumed at fetching");
    };
    assert_eq!(
        authenticated.resumed_at(),
        0,
        "the slot is erased and written again"
    );
    let staged = authenticated
        .fetch(&device, &mut server, &mut mcu, &mut journal)
        .unwrap()
        .verify(&device, &mut mcu)
        .unwrap()
        .stage(&mut mcu, &mut journal)
        .unwrap();
    assert_eq!(server.blocks, new.len().div_ceil(BLOCK));
    let Activation::Trial(activated) = staged.activate(&mut mcu, &mut journal).unwrap() else {
        panic!("refused");
    };
    activated.confirm(&mut mcu, &mut journal).unwrap();
    assert_eq!(mcu.running_image(), new);
}

#[test]
fn attack_image_tampered_in_flash_after_staging_is_refused_by_the_bootloader() {
    let old = image(1, 3000);
    let mut mcu = Mcu::new(&old);
    let keys = Keys::new();
    let device = keys.device();
    let mut server = Server::offering(&Release::new(2, image(7, 3000)));
    let mut journal = MemJournal::default();
    let mut buf = [0u8; 4096];
    let staged = stage_update(&mut mcu, &mut server, &device, &mut journal, &mut buf);
    // Secure boot is the last line: a bit flipped in the staged image after verification.
    let image_at =
        2 * SECTOR + SLOT + (32 + server.envelope.len() as u32).next_multiple_of(BLOCK as u32);
    mcu.flash
        .with(|f| f.flip_bit(image_at + 100, 3))
        .unwrap()
        .unwrap();
    let Activation::Refused(reverted) = staged.activate(&mut mcu, &mut journal).unwrap() else {
        panic!("the bootloader booted a tampered image");
    };
    assert_eq!(reverted.sequence_number(), 2);
    assert_eq!(mcu.running_image(), old);
    assert_eq!(journal.0, None);
}

#[test]
fn attack_corrupted_envelopes_are_refused_without_a_panic_or_a_block() {
    let mut mcu = Mcu::new(&image(1, 3000));
    let keys = Keys::new();
    let device = keys.device();
    let mut release = Release::new(2, image(2, 3000));
    release.encrypt_for = Some(KEK);
    let (envelope, _) = release.build();
    // Every byte of the envelope, flipped in turn, and every truncation: refused at
    // authenticate (an error value, never a panic), so no state exists that could fetch.
    for at in 0..envelope.len() {
        let mut bad = envelope.clone();
        bad[at] ^= 0x5a;
        assert!(
            Offer::new(&bad).authenticate(&device, &mut mcu).is_err(),
            "byte {at}"
        );
        assert!(
            Offer::new(&envelope[..at])
                .authenticate(&device, &mut mcu)
                .is_err(),
            "truncated at {at}"
        );
    }
}

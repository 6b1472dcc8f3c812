//! Secure boot end to end: the bootloader (`suitcase-boot`) on a simulated NOR flash, with the
//! SUIT processor as its image verifier. Only images whose stored, signed manifest authenticates
//! and whose digest matches are booted; older authentic images are refused by the
//! anti-rollback counter.

#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

use ed25519_dalek::Signer as _;
use suitcase_boot::{
    BootDecision, BootLoader, Config, ImageSlots, ImageState, RecoveryReason, Slot, Updater,
    VerifyError,
};
use suitcase_device::{DeviceIdentity, SuitVerifier, pack};
use suitcase_flash_sim::{SharedFlash, SimFlash};
use suitcase_manifest::build::{Cmd, EnvelopeBuilder, ManifestBuilder, Param};
use suitcase_manifest::codepoints::alg;
use suitcase_manifest::{
    ComponentId, Condition, DigestAlgorithm, Directive, PublicKey, TrustAnchor, TrustPolicy,
};

const VENDOR: [u8; 16] = [0xfa; 16];
const CLASS: [u8; 16] = [0x14; 16];
const SECTOR: u32 = 256;
const SLOT: u32 = 16 * SECTOR;

fn author() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[3; 32])
}

fn envelope(
    sequence: u64,
    image: &[u8],
    vendor: [u8; 16],
    signer: &ed25519_dalek::SigningKey,
) -> Vec<u8> {
    let m = ManifestBuilder {
        sequence_number: sequence,
        components: vec![vec![vec![0]]],
        shared_sequence: Some(vec![
            Cmd::OverrideParameters(vec![
                Param::VendorIdentifier(vendor.to_vec()),
                Param::ClassIdentifier(CLASS.to_vec()),
                Param::ImageDigest(
                    DigestAlgorithm::Sha256,
                    DigestAlgorithm::Sha256.digest(image).as_bytes().to_vec(),
                ),
                Param::ImageSize(image.len() as u64),
            ]),
            Cmd::Condition(Condition::VendorIdentifier, 15),
            Cmd::Condition(Condition::ClassIdentifier, 15),
        ]),
        validate: Some(vec![Cmd::Condition(Condition::ImageMatch, 15)]),
        invoke: Some(vec![Cmd::Directive(Directive::Invoke, 2)]),
        ..Default::default()
    };
    let mut b = EnvelopeBuilder::new(&m, DigestAlgorithm::Sha256);
    b.sign1(alg::ED25519, None, |tbs| {
        signer.sign(tbs).to_bytes().to_vec()
    });
    b.encode()
}

fn image(version: u8) -> Vec<u8> {
    (0..1500u32)
        .map(|i| (i as u8).wrapping_mul(version).wrapping_add(version))
        .collect()
}

fn slot_image(sequence: u64, version: u8) -> Vec<u8> {
    let img = image(version);
    pack(&envelope(sequence, &img, VENDOR, &author()), &img, 64).unwrap()
}

struct Device {
    flash: SharedFlash<4, 256>,
}

impl Device {
    fn new(factory: &[u8]) -> Self {
        let flash = SharedFlash::new(SimFlash::<4, 256>::uniform(SECTOR, 2 + 2 * 16, 1).unwrap());
        flash
            .with(|f| f.load(2 * SECTOR, factory))
            .unwrap()
            .unwrap();
        Self { flash }
    }

    fn parts(
        &self,
    ) -> (
        [ImageSlots<suitcase_flash_sim::Partition<4, 256>>; 1],
        suitcase_flash_sim::Partition<4, 256>,
    ) {
        let a = self.flash.partition(2 * SECTOR, SLOT).unwrap();
        let b = self.flash.partition(2 * SECTOR + SLOT, SLOT).unwrap();
        (
            [ImageSlots::new(a, b)],
            self.flash.partition(0, 2 * SECTOR).unwrap(),
        )
    }

    fn boot(&self) -> BootDecision<1> {
        let key = author().verifying_key();
        let anchors = [TrustAnchor::new("author", PublicKey::Ed25519(key))];
        let components = [ComponentId::decode(&[0x81, 0x41, 0x00]).unwrap()];
        let identity = DeviceIdentity {
            vendor: &VENDOR,
            class: &CLASS,
            device: None,
        };
        let verifier =
            SuitVerifier::<2048>::new(&anchors, TrustPolicy::default(), identity, &components);
        let (slots, state) = self.parts();
        BootLoader::new(Config::ab(SECTOR), slots, state, verifier)
            .unwrap()
            .boot()
            .unwrap()
    }

    fn stage(&self, slot_image: &[u8]) {
        let (slots, state) = self.parts();
        let mut updater = Updater::new(Config::ab(SECTOR), slots, state).unwrap();
        let mut staging = updater.begin([slot_image.len() as u32]).unwrap();
        staging
            .write(suitcase_boot::ImageIndex(0), 0, slot_image)
            .unwrap();
        staging.finish().unwrap();
    }

    fn confirm(&self) {
        let (slots, state) = self.parts();
        Updater::new(Config::ab(SECTOR), slots, state)
            .unwrap()
            .confirm()
            .unwrap();
    }
}

#[test]
fn boots_an_authentic_image_and_reports_its_measurement() {
    let dev = Device::new(&slot_image(1, 1));
    let BootDecision::Boot(target) = dev.boot() else {
        panic!("expected a boot")
    };
    assert_eq!(target.slot, Slot::A);
    let m = target.measurements[0];
    assert_eq!(
        m.digest.as_bytes(),
        DigestAlgorithm::Sha256.digest(&image(1)).as_bytes()
    );
    assert_eq!(m.security_version.0, 1);
}

#[test]
fn update_boots_on_trial_and_is_confirmed() {
    let dev = Device::new(&slot_image(1, 1));
    dev.stage(&slot_image(2, 2));
    let BootDecision::Boot(t) = dev.boot() else {
        panic!()
    };
    assert_eq!((t.slot, t.measurements[0].security_version.0), (Slot::B, 2));
    assert!(matches!(t.state, ImageState::Trial { boot: 1, .. }));
    dev.confirm();
    let BootDecision::Boot(t) = dev.boot() else {
        panic!()
    };
    assert_eq!(t.state, ImageState::Confirmed);
}

#[test]
fn attack_tampered_image_is_never_booted() {
    let mut tampered = slot_image(1, 1);
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let dev = Device::new(&tampered);
    assert!(matches!(
        dev.boot(),
        BootDecision::Recovery {
            reason: RecoveryReason::Invalid {
                error: VerifyError::Rejected,
                ..
            }
        }
    ));
}

#[test]
fn attack_tampered_update_is_refused_and_the_old_image_keeps_running() {
    let dev = Device::new(&slot_image(1, 1));
    let mut bad = slot_image(2, 2);
    bad[40] ^= 0x80; // inside the envelope
    dev.stage(&bad);
    let BootDecision::Boot(t) = dev.boot() else {
        panic!()
    };
    assert_eq!((t.slot, t.measurements[0].security_version.0), (Slot::A, 1));
}

#[test]
fn attack_image_signed_by_an_untrusted_key() {
    let img = image(1);
    let forged = pack(
        &envelope(
            9,
            &img,
            VENDOR,
            &ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        ),
        &img,
        64,
    )
    .unwrap();
    assert!(matches!(
        Device::new(&forged).boot(),
        BootDecision::Recovery { .. }
    ));
}

#[test]
fn attack_image_for_another_vendor() {
    let img = image(1);
    let other = pack(&envelope(1, &img, [0x11; 16], &author()), &img, 64).unwrap();
    assert!(matches!(
        Device::new(&other).boot(),
        BootDecision::Recovery { .. }
    ));
}

#[test]
fn attack_rollback_to_an_older_authentic_image() {
    let dev = Device::new(&slot_image(1, 1));
    dev.stage(&slot_image(5, 5));
    dev.boot();
    dev.confirm();
    // An attacker stages the old, correctly signed version 1.
    dev.stage(&slot_image(1, 1));
    let BootDecision::Boot(t) = dev.boot() else {
        panic!()
    };
    assert_eq!(
        t.measurements[0].security_version.0, 5,
        "the counter refuses the old image"
    );
}

#[test]
fn unconfirmed_update_reverts() {
    let dev = Device::new(&slot_image(1, 1));
    dev.stage(&slot_image(2, 2));
    let mut slots = Vec::new();
    for _ in 0..6 {
        if let BootDecision::Boot(t) = dev.boot() {
            slots.push(t.slot);
        }
    }
    assert_eq!(slots.first(), Some(&Slot::B));
    assert_eq!(
        slots.last(),
        Some(&Slot::A),
        "reverted after the trial boots ran out: {slots:?}"
    );
}

#[test]
fn erased_or_garbage_slot_headers() {
    use suitcase_device::SlotHeader;
    assert_eq!(SlotHeader::parse(&[0xFF; 32]), Ok(None));
    assert_eq!(SlotHeader::parse(&[0x00; 32]), Err(VerifyError::Rejected));
    let mut h = slot_image(1, 1)[..32].to_vec();
    h[12..16].copy_from_slice(&1u32.to_le_bytes()); // image inside the header
    assert_eq!(
        SlotHeader::parse(&h.try_into().unwrap()),
        Err(VerifyError::Rejected)
    );
}

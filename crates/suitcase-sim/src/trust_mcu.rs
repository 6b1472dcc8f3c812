//! A simulated MCU whose bootloader keeps the trust state in its protected trust area (issue 18
//! item 2): `suitcase-boot`'s trust store and A/B bootloader on `suitcase-flash-sim` NOR flash,
//! with `suitcase-device`'s lean boot path under the state in force (`boot_trust`).
//!
//! ```text
//!  [ state 2 S | slot A 4 S | slot B 4 S | trust area 2 S (two copies) | staging 2 S ]
//!                                               ^ bootloader only          ^ the consumer
//! ```
//!
//! A trust update delivered to the MCU ([`TrustMcu::deliver_trust_update`], what the consumer
//! does with a downloaded trust update) only reaches the staging area; at the next
//! [`TrustMcu::reset`] the bootloader verifies it under the root in force and commits it to the
//! trust area power-fail safe, **before** it verifies any slot, and then checks every image
//! against the release signers of the state in force. A release signed by a revoked key is
//! refused with the revocation named.

use suitcase_boot::trust_store::{Commit, CommitBuffers, TrustStaging, TrustStore, commit_staged};
use suitcase_boot::{
    BootDecision, BootLoader, BootStatus, Config, ImageIndex, ImageSlots, Updater,
};
use suitcase_device::boot_trust::{
    TRUST_RECORD_LEN, apply_staged, state_of, with_trusted_verifier,
};
use suitcase_device::{DeviceIdentity, Sha256Only};
use suitcase_flash_sim::{Partition, SharedFlash, SimFlash};
use suitcase_manifest::{ComponentId, Reason};
use suitcase_trust::TrustState;

/// Sector size of the simulated part.
pub const SECTOR: u32 = 2048;
const SLOT_SECTORS: u32 = 4;
/// The largest slot image.
pub const SLOT_SIZE: u32 = SLOT_SECTORS * SECTOR;
/// The largest trust update envelope the staging area (and the bootloader's buffer) holds.
pub const MAX_TRUST_UPDATE: usize = 4096 - 16;
/// RAM for the authentication wrapper: up to 8 release signatures.
const AUTH: usize = 1024;

type Part = Partition<4, 256>;

/// What happened to a staged trust update at a reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustEvent {
    /// Nothing was staged.
    Nothing,
    /// Committed: the state in force went from `from` to `to`.
    Committed {
        /// The previous trust sequence.
        from: u64,
        /// The new one.
        to: u64,
    },
    /// Refused and cleared; the state in force is unchanged.
    Refused {
        /// The stable reason code.
        reason: Reason,
        /// Why.
        detail: String,
    },
}

/// What one reset did.
#[derive(Clone, Debug)]
pub struct ResetReport {
    /// The staged trust update's fate.
    pub trust: TrustEvent,
    /// The trust sequence in force after the reset.
    pub trust_sequence: u64,
    /// What the bootloader decided.
    pub decision: BootDecision<1>,
    /// The last image the verifier refused at this reset: its reason code (for a signature
    /// refusal) and detail (a revoked key is named).
    pub refusal: Option<(Option<Reason>, String)>,
}

/// The simulated MCU. See the [module documentation](self).
#[derive(Debug)]
pub struct TrustMcu {
    flash: SharedFlash<4, 256>,
    vendor: [u8; 16],
    class: [u8; 16],
    component: Vec<u8>,
}

const STATE: (u32, u32) = (0, 2 * SECTOR);
const SLOT_A: (u32, u32) = (STATE.1, SLOT_SIZE);
const SLOT_B: (u32, u32) = (SLOT_A.0 + SLOT_A.1, SLOT_SIZE);
const TRUST: (u32, u32) = (SLOT_B.0 + SLOT_B.1, 2 * SECTOR);
const STAGING: (u32, u32) = (TRUST.0 + TRUST.1, 2 * SECTOR);
const CONFIG: Config = Config::ab(SECTOR);

fn err<E: core::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl TrustMcu {
    /// A factory-fresh MCU: `genesis` in the trust area (provisioned out of band, TUF §5.2),
    /// `factory` (a slot image) in slot A, for the device of `vendor`/`class` whose image is
    /// the component `component` (encoded SUIT_Component_Identifier).
    ///
    /// # Errors
    /// A message if the image does not fit or the flash refuses.
    pub fn new(
        genesis: &TrustState,
        factory: &[u8],
        vendor: [u8; 16],
        class: [u8; 16],
        component: Vec<u8>,
    ) -> Result<Self, String> {
        let sectors = (STAGING.0 + STAGING.1) / SECTOR;
        let sim = SimFlash::<4, 256>::uniform(SECTOR, sectors, 1).map_err(err("flash"))?;
        let flash = SharedFlash::new(sim);
        if factory.len() > SLOT_SIZE as usize {
            return Err("the factory image is larger than a slot".into());
        }
        flash
            .with(|f| f.load(SLOT_A.0, factory))
            .map_err(err("flash"))?
            .map_err(err("flash"))?;
        let me = Self {
            flash,
            vendor,
            class,
            component,
        };
        me.trust_area()?
            .write(None, genesis.sequence(), &genesis.encode_record())
            .map_err(err("provisioning the trust area"))?;
        Ok(me)
    }

    fn part(&self, (at, len): (u32, u32)) -> Result<Part, String> {
        self.flash.partition(at, len).map_err(err("partition"))
    }

    fn trust_area(&self) -> Result<TrustStore<Part>, String> {
        TrustStore::new(self.part(TRUST)?, TRUST_RECORD_LEN).map_err(err("trust area"))
    }

    fn staging(&self) -> Result<TrustStaging<Part>, String> {
        TrustStaging::new(self.part(STAGING)?).map_err(err("trust staging"))
    }

    /// The shared flash, to inject faults (power cuts, bit flips).
    pub fn flash(&self) -> &SharedFlash<4, 256> {
        &self.flash
    }

    /// The consumer's side of a trust update: stage it for the bootloader. The application
    /// cannot write the trust area; nothing is trusted until the next reset verifies it.
    ///
    /// # Errors
    /// A message if it is larger than the staging area or the flash refuses.
    pub fn deliver_trust_update(&self, envelope: &[u8]) -> Result<(), String> {
        self.staging()?
            .stage(envelope)
            .map_err(err("staging the trust update"))
    }

    /// The application's side of a release: stage a slot image into the other slot and mark
    /// it pending (`suitcase-boot`'s `Updater`).
    ///
    /// # Errors
    /// A message from the updater.
    pub fn stage_release(&self, slot_image: &[u8]) -> Result<(), String> {
        let size = u32::try_from(slot_image.len()).map_err(|_| "too large".to_string())?;
        let mut updater = self.updater()?;
        let mut staging = updater
            .begin([size])
            .map_err(|e| format!("update: {e:?}"))?;
        staging
            .write(ImageIndex(0), 0, slot_image)
            .map_err(|e| format!("update: {e:?}"))?;
        staging.finish().map_err(|e| format!("update: {e:?}"))
    }

    fn updater(&self) -> Result<Updater<Part, Part, 1>, String> {
        Updater::new(
            CONFIG,
            [ImageSlots::new(self.part(SLOT_A)?, self.part(SLOT_B)?)],
            self.part(STATE)?,
        )
        .map_err(err("updater"))
    }

    /// The application confirms the image on trial.
    ///
    /// # Errors
    /// A message from the updater.
    pub fn confirm(&self) -> Result<(), String> {
        self.updater()?
            .confirm()
            .map_err(|e| format!("confirm: {e:?}"))
    }

    /// The boot state.
    ///
    /// # Errors
    /// A message from the updater.
    pub fn status(&self) -> Result<BootStatus<1>, String> {
        self.updater()?
            .status()
            .map_err(|e| format!("status: {e:?}"))
    }

    /// The trust state in force (what the bootloader would load).
    ///
    /// # Errors
    /// A message if the trust area holds no valid state.
    pub fn trust_state(&self) -> Result<TrustState, String> {
        let mut record = vec![0u8; TRUST_RECORD_LEN];
        self.trust_area()?
            .load(&mut record)
            .map_err(err("trust area"))?
            .ok_or("the trust area holds no state")?;
        state_of(&record).map_err(err("trust record"))
    }

    /// A reset: the bootloader commits a staged trust update (or refuses it), then decides
    /// what boots under the trust state in force.
    ///
    /// # Errors
    /// A message for flash errors or an unusable trust area (a real bootloader stops in
    /// recovery then).
    pub fn reset(&self) -> Result<ResetReport, String> {
        let mut record = vec![0u8; TRUST_RECORD_LEN];
        let mut next = vec![0u8; TRUST_RECORD_LEN];
        let mut envelope = vec![0u8; MAX_TRUST_UPDATE];
        let (in_force, commit) = commit_staged(
            &mut self.trust_area()?,
            &mut self.staging()?,
            CommitBuffers {
                record: &mut record,
                next: &mut next,
                envelope: &mut envelope,
            },
            apply_staged,
        )
        .map_err(err("trust area"))?
        .ok_or("the trust area was never provisioned")?;
        let trust = match commit {
            Commit::Nothing => TrustEvent::Nothing,
            Commit::Committed { from, to } => TrustEvent::Committed { from, to },
            Commit::Refused(e) => TrustEvent::Refused {
                reason: e.reason(),
                detail: e.to_string(),
            },
        };
        let state = state_of(&record).map_err(err("trust record"))?;
        let components = [ComponentId::decode(&self.component).map_err(err("component"))?];
        let identity = DeviceIdentity {
            vendor: &self.vendor,
            class: &self.class,
            device: None,
        };
        let (a, b, st) = (self.part(SLOT_A)?, self.part(SLOT_B)?, self.part(STATE)?);
        let (decision, refusal) = with_trusted_verifier::<Sha256Only, AUTH, _>(
            &state,
            identity,
            &components,
            None,
            |v| {
                let decision = BootLoader::new(CONFIG, [ImageSlots::new(a, b)], st, &mut *v)
                    .map_err(err("bootloader"))?
                    .boot()
                    .map_err(err("boot"))?;
                let refusal = v.last_refusal().map(|(_, r)| (r.reason(), r.to_string()));
                Ok::<_, String>((decision, refusal))
            },
        )?;
        Ok(ResetReport {
            trust,
            trust_sequence: in_force.sequence,
            decision,
            refusal,
        })
    }
}

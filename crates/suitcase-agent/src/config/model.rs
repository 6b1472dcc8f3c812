//! The checked configuration's parts: the server, identity, polling, consent, health, push
//! and each component (file slots, MCUs, update modules).

use std::path::PathBuf;
use std::time::Duration;

use super::{ActivateMode, ConsentMode, ImageFormat};
use crate::bootloader::Backend;

/// Server settings.
#[derive(Debug)]
pub struct Server {
    /// Base URL, e.g. `https://updates.example.com` (no trailing slash).
    pub url: String,
    /// The device's bearer token.
    pub token: Option<String>,
    /// CA certificates (PEM) for the server; the system roots otherwise.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM, concatenated) for mutual TLS.
    pub identity_pem: Option<Vec<u8>>,
    /// Per-request timeout (connect and each read).
    pub timeout: Duration,
    /// The slowest a download may go (`download_min_bytes` per `download_window_seconds`).
    pub min_rate: crate::http::MinRate,
}

/// Vendor, class and device identifiers (UUIDs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Vendor UUID.
    pub vendor: [u8; 16],
    /// Class UUID.
    pub class: [u8; 16],
    /// Device UUID, if the device has one.
    pub device: Option<[u8; 16]>,
}

/// Polling and back-off.
#[derive(Clone, Copy, Debug)]
pub struct Polling {
    /// Interval before the server has said anything (and after errors, as the cap's floor).
    pub interval: Duration,
    /// First back-off after an error.
    pub backoff_min: Duration,
    /// Largest back-off.
    pub backoff_max: Duration,
    /// Download attempts per cycle before giving up until the next cycle.
    pub download_attempts: u32,
}

/// Consent policy.
#[derive(Debug, Clone)]
pub struct Consent {
    /// The mode.
    pub mode: ConsentMode,
    /// The command (mode `command`).
    pub command: Vec<String>,
    /// The window (mode `window`).
    pub window: Option<crate::consent::Window>,
    /// Command timeout.
    pub timeout: Duration,
}

/// Health check.
#[derive(Debug, Clone)]
pub struct Health {
    /// The command; exit 0 is healthy. None: always healthy.
    pub command: Vec<String>,
    /// Timeout.
    pub timeout: Duration,
}

/// MQTT push.
#[derive(Debug, Clone)]
pub struct Push {
    /// Subscribe when the server offers topics.
    pub enabled: bool,
    /// MQTT client id.
    pub client_id: String,
}

/// One component.
#[derive(Debug)]
pub struct ComponentConfig {
    /// A name for people and logs.
    pub name: String,
    /// The SUIT component identifier's segments.
    pub id: Vec<Vec<u8>>,
    /// A version string for the inventory.
    pub version: Option<String>,
    /// Where it lives.
    pub kind: Kind,
}

impl ComponentConfig {
    /// The component identifier as hex segments (the inventory's form).
    pub fn id_hex(&self) -> Vec<String> {
        self.id.iter().map(hex::encode).collect()
    }
}

/// Storage of a component.
#[derive(Debug)]
pub enum Kind {
    /// Two files or block devices as A/B slots and an active-slot pointer file.
    File(FileSlots),
    /// A simulated MCU: suitcase-boot A/B slots on simulated NOR flash persisted to a file.
    Mcu(McuConfig),
    /// An update module: a payload installed by a handler ([`crate::module`]).
    Module(ModuleConfig),
}

/// An update module component.
#[derive(Debug, Clone)]
pub struct ModuleConfig {
    /// How its payload is installed.
    pub handler: Handler,
    /// Where Apply puts the verified payload (in the state directory).
    pub staged: PathBuf,
    /// The handler's own files (what it keeps for a rollback), in the state directory.
    pub dir: PathBuf,
    /// The most bytes the payload (an archive: its unpacked files) may take.
    pub capacity: u64,
    /// Run after the install (restart the service that uses it).
    pub restart: Vec<String>,
}

/// An update module's handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// The payload replaces one file atomically.
    File {
        /// The file.
        path: PathBuf,
        /// Its permission bits; `None` keeps the previous file's (or the umask's).
        mode: Option<u32>,
    },
    /// The payload is a tar archive, extracted to a new directory swapped in for `path`.
    Archive {
        /// The directory.
        path: PathBuf,
    },
    /// The payload is a script run as `SCRIPT install`, `SCRIPT commit`, `SCRIPT rollback`.
    Script {
        /// It implements `rollback`.
        rollback: bool,
    },
    /// The payload is a Debian package installed with `dpkg --install`.
    Deb {
        /// The dpkg command (e.g. `["dpkg", "--root=/mnt/sysroot"]`); `--install FILE` is
        /// added.
        dpkg: Vec<String>,
    },
}

impl Handler {
    /// Its name in `agent.toml` and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::File { .. } => "file",
            Self::Archive { .. } => "archive",
            Self::Script { .. } => "script",
            Self::Deb { .. } => "deb",
        }
    }
}

/// File slots.
#[derive(Debug, Clone)]
pub struct FileSlots {
    /// Slot A and slot B.
    pub slots: [PathBuf; 2],
    /// The pointer file: the agent's record of the active and the confirmed slot (with
    /// `bootloader = "pointer"`, the device's whole bootloader state).
    pub pointer: PathBuf,
    /// Which bootloader switches the slots.
    pub bootloader: Backend,
    /// The most bytes a slot takes.
    pub capacity: u64,
    /// How the new image starts.
    pub activate: ActivateMode,
    /// The restart command (mode restart).
    pub restart: Vec<String>,
    /// The reboot command (mode reboot); none simulates the reboot.
    pub reboot: Vec<String>,
}

/// A simulated MCU.
#[derive(Debug)]
pub struct McuConfig {
    /// The flash file.
    pub flash: PathBuf,
    /// Sector size (a multiple of 256).
    pub sector_size: u32,
    /// Sectors per slot.
    pub slot_sectors: u32,
    /// Trial boots before the bootloader reverts.
    pub max_trial_boots: u8,
    /// What the payload is.
    pub image: ImageFormat,
    /// A slot image loaded into slot A when the flash file is first created.
    pub factory: Option<PathBuf>,
    /// A secondary MCU verifies with its own anchors and identity; `None` for the agent's own.
    pub secondary: Option<SecondaryTrust>,
}

impl McuConfig {
    /// Bytes per slot.
    pub fn slot_size(&self) -> u64 {
        u64::from(self.sector_size) * u64::from(self.slot_sectors)
    }
}

/// A secondary MCU's own trust.
#[derive(Debug)]
pub struct SecondaryTrust {
    /// Its anchors.
    pub anchors: Vec<(String, suitcase_host::keys::PublicKey)>,
    /// Its identity.
    pub identity: Identity,
    /// The component id of its image in its own manifest.
    pub inner_component: Vec<Vec<u8>>,
}

//! `agent.toml`: what the agent talks to, what it trusts, who it is and where each component
//! lives. Paths are relative to the configuration file. Every key is documented in
//! `docs/agent.md`.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use suitcase_manifest::encryption::{DeviceKeys, KeyMaterial};

use crate::bootloader::{Backend, CustomBackend, EnvBackend};
use crate::error::AgentError;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    state_dir: PathBuf,
    server: ServerFile,
    trust: TrustFile,
    identity: IdentityFile,
    #[serde(default)]
    polling: PollingFile,
    #[serde(default)]
    consent: ConsentFile,
    #[serde(default)]
    health: HealthFile,
    #[serde(default)]
    push: PushFile,
    #[serde(default)]
    storage: StorageFile,
    #[serde(rename = "component", default)]
    components: Vec<ComponentFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    url: String,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    timeout_seconds: f64,
}

fn default_timeout() -> f64 {
    30.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    anchors: Vec<PathBuf>,
    #[serde(default = "one")]
    threshold: usize,
    #[serde(default)]
    hybrid: bool,
    #[serde(default)]
    decrypt: Vec<PathBuf>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    vendor: String,
    class: String,
    device: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PollingFile {
    #[serde(default = "default_interval")]
    interval_seconds: f64,
    #[serde(default = "default_backoff_min")]
    backoff_min_seconds: f64,
    #[serde(default = "default_backoff_max")]
    backoff_max_seconds: f64,
    #[serde(default = "default_retries")]
    download_attempts: u32,
}

impl Default for PollingFile {
    fn default() -> Self {
        Self {
            interval_seconds: default_interval(),
            backoff_min_seconds: default_backoff_min(),
            backoff_max_seconds: default_backoff_max(),
            download_attempts: default_retries(),
        }
    }
}

fn default_interval() -> f64 {
    300.0
}
fn default_backoff_min() -> f64 {
    5.0
}
fn default_backoff_max() -> f64 {
    3600.0
}
fn default_retries() -> u32 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentFile {
    #[serde(default)]
    mode: ConsentMode,
    command: Option<Vec<String>>,
    window: Option<WindowFile>,
    #[serde(default = "default_command_timeout")]
    timeout_seconds: f64,
}

fn default_command_timeout() -> f64 {
    60.0
}

impl Default for ConsentFile {
    fn default() -> Self {
        Self {
            mode: ConsentMode::Auto,
            command: None,
            window: None,
            timeout_seconds: default_command_timeout(),
        }
    }
}

impl Default for HealthFile {
    fn default() -> Self {
        Self {
            command: None,
            timeout_seconds: default_command_timeout(),
        }
    }
}

/// How the Announce step obtains consent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentMode {
    /// Install without asking (the device has no user).
    #[default]
    Auto,
    /// Run `consent.command`: exit 0 installs, exit 75 (EX_TEMPFAIL) defers, anything else
    /// refuses.
    Command,
    /// Install only inside `consent.window` (UTC); outside it the update is deferred.
    Window,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFile {
    start: String,
    end: String,
    #[serde(default)]
    days: Vec<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    command: Option<Vec<String>>,
    #[serde(default = "default_command_timeout")]
    timeout_seconds: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushFile {
    #[serde(default = "yes")]
    enabled: bool,
    client_id: Option<String>,
}

impl Default for PushFile {
    fn default() -> Self {
        Self {
            enabled: true,
            client_id: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageFile {
    #[serde(default)]
    reserve_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentFile {
    name: String,
    id: IdFile,
    kind: KindName,
    // file
    slots: Option<Vec<PathBuf>>,
    pointer: Option<PathBuf>,
    bootloader: Option<BootloaderName>,
    boot: Option<BootFile>,
    capacity: Option<u64>,
    activate: Option<ActivateMode>,
    restart: Option<Vec<String>>,
    reboot: Option<Vec<String>>,
    // mcu, secondary
    flash: Option<PathBuf>,
    sector_size: Option<u32>,
    slot_sectors: Option<u32>,
    max_trial_boots: Option<u8>,
    image: Option<ImageFormat>,
    factory: Option<PathBuf>,
    // secondary
    trust: Option<Vec<PathBuf>>,
    vendor: Option<String>,
    class: Option<String>,
    inner_component: Option<IdFile>,
    version: Option<String>,
    // module
    handler: Option<HandlerName>,
    path: Option<PathBuf>,
    mode: Option<String>,
    rollback: Option<bool>,
    dpkg: Option<Vec<String>>,
}

/// `handler = "…"` of a module component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum HandlerName {
    File,
    Archive,
    Script,
    Deb,
}

/// `bootloader = "…"` of a file-slot component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum BootloaderName {
    Pointer,
    Uboot,
    Grub,
    Custom,
}

/// `[component.boot]`: the bootloader backend's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BootFile {
    tries: Option<u8>,
    cmdline: Option<PathBuf>,
    timeout_seconds: Option<f64>,
    fw_env_config: Option<PathBuf>,
    grubenv: Option<PathBuf>,
    status: Option<Vec<String>>,
    trial: Option<Vec<String>>,
    confirm: Option<Vec<String>>,
    revert: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdFile {
    Text(String),
    Segments(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum KindName {
    File,
    Mcu,
    Secondary,
    Module,
}

/// How a file-slot component's new image starts running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivateMode {
    /// Flip the pointer and run the `restart` command (an application; no reboot).
    #[default]
    Restart,
    /// Flip the pointer and run the `reboot` command; the agent resumes after the reboot.
    Reboot,
}

/// What a simulated MCU's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// The bare image: the agent writes the slot header and the envelope in front of it.
    Raw,
    /// A ready slot image (`suitcase_device::pack`) carrying the MCU's own signed manifest.
    SlotImage,
}

/// Everything the agent needs, loaded and checked.
#[derive(Debug)]
pub struct Config {
    /// Where the file was (for messages).
    pub path: PathBuf,
    /// The state directory: journal, downloads, installed inventory, report outbox.
    pub state_dir: PathBuf,
    /// The server.
    pub server: Server,
    /// Trust anchors and the signer policy.
    pub trust: Trust,
    /// The device's identity.
    pub identity: Identity,
    /// Polling and back-off.
    pub polling: Polling,
    /// Consent (Announce).
    pub consent: Consent,
    /// Health check (Clean-up).
    pub health: Health,
    /// MQTT push.
    pub push: Push,
    /// Bytes of free space the agent never uses.
    pub reserve_bytes: u64,
    /// The components.
    pub components: Vec<ComponentConfig>,
}

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
}

/// The trust anchors and policy.
#[derive(Debug)]
pub struct Trust {
    /// `(name, key)` of each anchor.
    pub anchors: Vec<(String, suitcase_author::keys::PublicKey)>,
    /// Distinct signers required.
    pub threshold: NonZeroUsize,
    /// Require a classical and a post-quantum signature.
    pub hybrid: bool,
    /// Decryption keys for encrypted payloads.
    pub keys: DeviceKeys,
}

impl Trust {
    /// The anchors as the manifest crate wants them.
    pub fn anchors(&self) -> Vec<suitcase_manifest::TrustAnchor<'_>> {
        anchors_of(&self.anchors)
    }

    /// The policy at time `now`.
    pub fn policy(&self, now: u64) -> suitcase_manifest::TrustPolicy<'static> {
        suitcase_manifest::TrustPolicy {
            threshold: self.threshold,
            rules: &[],
            hybrid: self.hybrid,
            time: Some(now),
        }
    }
}

pub(crate) fn anchors_of(
    keys: &[(String, suitcase_author::keys::PublicKey)],
) -> Vec<suitcase_manifest::TrustAnchor<'_>> {
    keys.iter()
        .filter_map(|(name, key)| {
            key.as_trust_key()
                .map(|k| suitcase_manifest::TrustAnchor::new(name, k))
        })
        .collect()
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
    pub anchors: Vec<(String, suitcase_author::keys::PublicKey)>,
    /// Its identity.
    pub identity: Identity,
    /// The component id of its image in its own manifest.
    pub inner_component: Vec<Vec<u8>>,
}

fn bad(path: &Path, what: impl core::fmt::Display) -> AgentError {
    AgentError::Config(format!("{}: {what}", path.display()))
}

fn seconds(path: &Path, key: &str, s: f64) -> Result<Duration, AgentError> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        bad(
            path,
            format!("{key} = {s}: give a non-negative number of seconds"),
        )
    })
}

fn parse_id(path: &Path, what: &str, id: &IdFile) -> Result<Vec<Vec<u8>>, AgentError> {
    let segments: Vec<&str> = match id {
        IdFile::Text(t) => t.split(['/', ',']).collect(),
        IdFile::Segments(v) => v.iter().map(String::as_str).collect(),
    };
    let out = segments
        .iter()
        .map(|s| {
            hex::decode(s.trim()).map_err(|_| {
                bad(
                    path,
                    format!("{what}: segment {s:?} is not hex (e.g. id = \"617070\" or [\"00\", \"01\"])"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Err(bad(path, format!("{what}: an empty component id")));
    }
    Ok(out)
}

fn load_anchors(
    path: &Path,
    base: &Path,
    files: &[PathBuf],
) -> Result<Vec<(String, suitcase_author::keys::PublicKey)>, AgentError> {
    files
        .iter()
        .map(|f| {
            let p = base.join(f);
            refuse_private_key(path, &p)?;
            let key = suitcase_author::keys::load_public(&p).map_err(|e| {
                bad(
                    path,
                    format!("trust anchor {}: {e} (a PEM public key or COSE_Key, as `suitcase key public` writes)", p.display()),
                )
            })?;
            if !key.is_authenticator() {
                return Err(bad(
                    path,
                    format!(
                        "trust anchor {}: a {} key cannot sign manifests",
                        p.display(),
                        key.kind()
                    ),
                ));
            }
            Ok((p.display().to_string(), key))
        })
        .collect()
}

/// Refuses a trust anchor file that holds private key material (a PEM private key, a COSE_Key
/// with `d` or an AKP private seed, an HSS-LMS key file with its state). `load_public` would
/// read its public half and work, but the signing secret would then sit on every device, where
/// it authorises nothing and can be stolen, and whoever extracts it from one device can sign
/// updates for the whole fleet (RFC 9124 REQ.SEC.KEY.PROTECTION: signing keys are kept where
/// networked devices cannot reach them; a device verifies with the public key). Shared HMAC secrets
/// (COSE_Mac0) are secret by nature and not refused here. The error names the file and the
/// command that writes its public half; it never shows the file's contents.
fn refuse_private_key(path: &Path, anchor: &Path) -> Result<(), AgentError> {
    let Ok(bytes) = std::fs::read(anchor) else {
        // Unreadable: `load_public` reports it with the reason.
        return Ok(());
    };
    if suitcase_author::keys::holds_private_key(&bytes) {
        return Err(bad(
            path,
            format!(
                "trust anchor {f} is a private key: a device must hold only the public key, \
                 never the signing secret (remove {f} from this device). List the public key \
                 instead: the file `suitcase key generate --public FILE.pub` wrote, or make one \
                 with `suitcase key public {f} -o {f}.pub` on the author's machine",
                f = anchor.display()
            ),
        ));
    }
    Ok(())
}

fn load_decryption_key(path: &Path, p: &Path) -> Result<KeyMaterial, AgentError> {
    if p.extension().is_some_and(|e| e == "hex") {
        let text = std::fs::read_to_string(p)
            .map_err(|e| bad(path, format!("decryption key {}: {e}", p.display())))?;
        let k = hex::decode(text.trim())
            .map_err(|_| bad(path, format!("decryption key {}: not hex", p.display())))?;
        return match k.len() {
            16 => Ok(KeyMaterial::Aes128Kw(
                k.as_slice()
                    .try_into()
                    .map_err(|_| bad(path, "key length"))?,
            )),
            32 => Ok(KeyMaterial::Aes256Kw(
                k.as_slice()
                    .try_into()
                    .map_err(|_| bad(path, "key length"))?,
            )),
            n => Err(bad(
                path,
                format!(
                    "decryption key {}: an AES key-encryption key is 16 or 32 bytes, got {n}",
                    p.display()
                ),
            )),
        };
    }
    let key = suitcase_author::keys::load_private(p)
        .map_err(|e| bad(path, format!("decryption key {}: {e}", p.display())))?;
    key.key_material().ok_or_else(|| {
        bad(
            path,
            format!(
                "decryption key {}: this key cannot decrypt content keys (use a128kw, a256kw, p256-ecdh, x25519 or ml-kem-768)",
                p.display()
            ),
        )
    })
}

fn identity(
    path: &Path,
    vendor: &str,
    class: &str,
    device: Option<&str>,
) -> Result<Identity, AgentError> {
    let vendor_id = suitcase_author::uuid::vendor(vendor);
    Ok(Identity {
        vendor: vendor_id,
        class: suitcase_author::uuid::class(&vendor_id, class),
        device: device
            .map(|d| {
                suitcase_author::uuid::parse(d)
                    .ok_or_else(|| bad(path, format!("identity.device {d:?} is not a UUID")))
            })
            .transpose()?,
    })
}

impl Config {
    /// Reads and checks `agent.toml`.
    ///
    /// # Errors
    /// [`AgentError::Config`] naming the file, the key and what to write instead.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(path, format!("cannot read the agent configuration: {e}")))?;
        Self::parse(path, &text)
    }

    /// Parses configuration text; relative paths are taken relative to `path`'s directory.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, AgentError> {
        let f: File = toml::from_str(text).map_err(|e| bad(path, e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let rel = |p: &Path| base.join(p);

        let url = f.server.url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(
                path,
                format!("server.url {url:?}: give an http:// or https:// URL"),
            ));
        }
        let token = match (&f.server.token, &f.server.token_file) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    path,
                    "give server.token or server.token_file, not both",
                ));
            }
            (Some(t), None) => Some(t.trim().to_owned()),
            (None, Some(file)) => Some(
                std::fs::read_to_string(rel(file))
                    .map_err(|e| {
                        bad(
                            path,
                            format!("server.token_file {}: {e}", rel(file).display()),
                        )
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let identity_pem = match (&f.server.client_cert, &f.server.client_key) {
            (Some(c), Some(k)) => {
                let mut pem = std::fs::read(rel(c))
                    .map_err(|e| bad(path, format!("server.client_cert: {e}")))?;
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(rel(k))
                        .map_err(|e| bad(path, format!("server.client_key: {e}")))?,
                );
                Some(pem)
            }
            (None, None) => None,
            _ => {
                return Err(bad(
                    path,
                    "mutual TLS needs both server.client_cert and server.client_key",
                ));
            }
        };
        if token.is_none() && identity_pem.is_none() {
            return Err(bad(
                path,
                "the device needs a credential: server.token, server.token_file or server.client_cert + server.client_key",
            ));
        }
        let ca_pem = f
            .server
            .ca_file
            .as_ref()
            .map(|c| {
                std::fs::read(rel(c))
                    .map_err(|e| bad(path, format!("server.ca_file {}: {e}", rel(c).display())))
            })
            .transpose()?;
        let server = Server {
            url,
            token,
            ca_pem,
            identity_pem,
            timeout: seconds(path, "server.timeout_seconds", f.server.timeout_seconds)?,
        };

        if f.trust.anchors.is_empty() {
            return Err(bad(
                path,
                "trust.anchors is empty: list the public keys that sign your releases",
            ));
        }
        let anchors = load_anchors(path, &base, &f.trust.anchors)?;
        let threshold = NonZeroUsize::new(f.trust.threshold)
            .ok_or_else(|| bad(path, "trust.threshold must be at least 1"))?;
        if threshold.get() > anchors.len() {
            return Err(bad(
                path,
                format!(
                    "trust.threshold = {threshold} but only {} anchors are listed",
                    anchors.len()
                ),
            ));
        }
        let mut keys = DeviceKeys::default();
        for k in &f.trust.decrypt {
            keys.keys.push((None, load_decryption_key(path, &rel(k))?));
        }
        let trust = Trust {
            anchors,
            threshold,
            hybrid: f.trust.hybrid,
            keys,
        };

        let identity = identity(
            path,
            &f.identity.vendor,
            &f.identity.class,
            f.identity.device.as_deref(),
        )?;

        let polling = Polling {
            interval: seconds(path, "polling.interval_seconds", f.polling.interval_seconds)?,
            backoff_min: seconds(
                path,
                "polling.backoff_min_seconds",
                f.polling.backoff_min_seconds,
            )?,
            backoff_max: seconds(
                path,
                "polling.backoff_max_seconds",
                f.polling.backoff_max_seconds,
            )?,
            download_attempts: f.polling.download_attempts.max(1),
        };

        let consent = Consent {
            mode: f.consent.mode,
            command: f.consent.command.clone().unwrap_or_default(),
            window: f
                .consent
                .window
                .as_ref()
                .map(|w| {
                    crate::consent::Window::parse(&w.start, &w.end, &w.days)
                        .map_err(|e| bad(path, format!("consent.window: {e}")))
                })
                .transpose()?,
            timeout: seconds(path, "consent.timeout_seconds", f.consent.timeout_seconds)?,
        };
        match consent.mode {
            ConsentMode::Command if consent.command.is_empty() => {
                return Err(bad(
                    path,
                    "consent.mode = \"command\" needs consent.command = [\"program\", \"arg\"...]",
                ));
            }
            ConsentMode::Window if consent.window.is_none() => {
                return Err(bad(
                    path,
                    "consent.mode = \"window\" needs consent.window = { start = \"02:00\", end = \"04:00\" }",
                ));
            }
            _ => {}
        }
        let health = Health {
            command: f.health.command.clone().unwrap_or_default(),
            timeout: seconds(path, "health.timeout_seconds", f.health.timeout_seconds)?,
        };
        let push =
            Push {
                enabled: f.push.enabled,
                client_id: f.push.client_id.clone().unwrap_or_else(|| {
                    format!("suitcase-agent-{}", hex::encode(random_bytes::<6>()))
                }),
            };

        if f.components.is_empty() {
            return Err(bad(
                path,
                "no [[component]]: describe at least one component the agent updates",
            ));
        }
        let mut components = Vec::new();
        for c in &f.components {
            components.push(component(path, &base, &rel(&f.state_dir), c)?);
        }
        for (i, c) in components.iter().enumerate() {
            if components
                .iter()
                .skip(i + 1)
                .any(|o| o.id == c.id || o.name == c.name)
            {
                return Err(bad(
                    path,
                    format!(
                        "component {:?}: two components share a name or an id",
                        c.name
                    ),
                ));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            state_dir: rel(&f.state_dir),
            server,
            trust,
            identity,
            polling,
            consent,
            health,
            push,
            reserve_bytes: f.storage.reserve_bytes,
            components,
        })
    }

    /// The component with this identifier.
    pub fn component(&self, id: &[Vec<u8>]) -> Option<(usize, &ComponentConfig)> {
        self.components.iter().enumerate().find(|(_, c)| c.id == id)
    }
}

fn component(
    path: &Path,
    base: &Path,
    state_dir: &Path,
    c: &ComponentFile,
) -> Result<ComponentConfig, AgentError> {
    let rel = |p: &Path| base.join(p);
    let what = format!("component {:?}", c.name);
    let id = parse_id(path, &format!("{what} id"), &c.id)?;
    let needs = |v: bool, key: &str| -> Result<(), AgentError> {
        if v {
            Ok(())
        } else {
            Err(bad(path, format!("{what}: kind {:?} needs {key}", c.kind)))
        }
    };
    let refuses = |v: bool, key: &str| -> Result<(), AgentError> {
        if v {
            Err(bad(
                path,
                format!("{what}: {key} does not apply to kind {:?}", c.kind),
            ))
        } else {
            Ok(())
        }
    };
    if c.kind != KindName::Module {
        refuses(c.handler.is_some(), "handler")?;
        refuses(c.path.is_some(), "path")?;
        refuses(c.mode.is_some(), "mode")?;
        refuses(c.rollback.is_some(), "rollback")?;
        refuses(c.dpkg.is_some(), "dpkg")?;
    }
    let kind = match c.kind {
        KindName::Module => {
            for (set, key) in [
                (c.slots.is_some(), "slots"),
                (c.pointer.is_some(), "pointer"),
                (c.bootloader.is_some(), "bootloader"),
                (c.boot.is_some(), "[component.boot]"),
                (c.activate.is_some(), "activate"),
                (c.reboot.is_some(), "reboot"),
                (c.flash.is_some(), "flash"),
                (c.trust.is_some(), "trust"),
            ] {
                refuses(set, key)?;
            }
            let Some(name) = c.handler else {
                return Err(bad(
                    path,
                    format!(
                        "{what}: kind \"module\" needs handler = \"file\", \"archive\", \"script\" or \"deb\""
                    ),
                ));
            };
            let only = |v: bool, key: &str, handlers: &str| -> Result<(), AgentError> {
                if v {
                    Err(bad(
                        path,
                        format!("{what}: {key} applies to handler {handlers} only"),
                    ))
                } else {
                    Ok(())
                }
            };
            let target = |key: &str| -> Result<PathBuf, AgentError> {
                c.path.as_deref().map(rel).ok_or_else(|| {
                    bad(
                        path,
                        format!("{what}: handler {name:?} needs path = \"{key}\""),
                    )
                })
            };
            let handler = match name {
                HandlerName::File => {
                    only(c.rollback.is_some(), "rollback", "\"script\"")?;
                    only(c.dpkg.is_some(), "dpkg", "\"deb\"")?;
                    let mode = match &c.mode {
                        None => None,
                        Some(m) => Some(
                            u32::from_str_radix(m.trim_start_matches("0o"), 8)
                                .ok()
                                .filter(|m| *m <= 0o7777)
                                .ok_or_else(|| {
                                    bad(
                                        path,
                                        format!(
                                            "{what}: mode = {m:?}: octal permission bits, e.g. \"0644\""
                                        ),
                                    )
                                })?,
                        ),
                    };
                    Handler::File {
                        path: target("/etc/app/app.conf")?,
                        mode,
                    }
                }
                HandlerName::Archive => {
                    only(c.rollback.is_some(), "rollback", "\"script\"")?;
                    only(c.dpkg.is_some(), "dpkg", "\"deb\"")?;
                    only(c.mode.is_some(), "mode", "\"file\"")?;
                    Handler::Archive {
                        path: target("/opt/app")?,
                    }
                }
                HandlerName::Script => {
                    only(c.path.is_some(), "path", "\"file\" and \"archive\"")?;
                    only(c.mode.is_some(), "mode", "\"file\"")?;
                    only(c.dpkg.is_some(), "dpkg", "\"deb\"")?;
                    Handler::Script {
                        rollback: c.rollback.unwrap_or(true),
                    }
                }
                HandlerName::Deb => {
                    only(c.path.is_some(), "path", "\"file\" and \"archive\"")?;
                    only(c.mode.is_some(), "mode", "\"file\"")?;
                    only(c.rollback.is_some(), "rollback", "\"script\"")?;
                    let dpkg = c.dpkg.clone().unwrap_or_else(|| vec!["dpkg".into()]);
                    if dpkg.is_empty() {
                        return Err(bad(
                            path,
                            format!("{what}: dpkg = [\"dpkg\", …]: a command"),
                        ));
                    }
                    Handler::Deb { dpkg }
                }
            };
            let dir = state_dir.join("modules").join(hex::encode(id.concat()));
            Kind::Module(ModuleConfig {
                handler,
                staged: dir.join("staged"),
                dir,
                capacity: c.capacity.ok_or_else(|| {
                    bad(
                        path,
                        format!("{what}: kind \"module\" needs capacity = BYTES (the largest payload it takes)"),
                    )
                })?,
                restart: c.restart.clone().unwrap_or_default(),
            })
        }
        KindName::File => {
            refuses(c.flash.is_some(), "flash")?;
            refuses(c.trust.is_some(), "trust")?;
            let slots = c.slots.clone().unwrap_or_default();
            let [a, b]: [PathBuf; 2] = slots.try_into().map_err(|_| {
                bad(
                    path,
                    format!(
                        "{what}: slots = [\"slot-a\", \"slot-b\"] (two files or block devices)"
                    ),
                )
            })?;
            let bootloader_name = c.bootloader.unwrap_or(BootloaderName::Pointer);
            let pointer = match (&c.pointer, bootloader_name) {
                (Some(p), _) => rel(p),
                (None, BootloaderName::Pointer) => {
                    return Err(bad(
                        path,
                        format!("{what}: pointer = \"FILE\" (the active-slot pointer file)"),
                    ));
                }
                // The agent's own record of the slots; the bootloader does not read it.
                (None, _) => state_dir.join(format!("slots-{}.pointer", hex::encode(id.concat()))),
            };
            let slots = [rel(&a), rel(&b)];
            let capacity = match c.capacity {
                Some(n) => n,
                None => block_size(&slots[0])
                    .ok_or_else(|| bad(path, format!("{what}: give capacity = BYTES (the slots are not block devices whose size the agent can read)")))?,
            };
            let bootloader = backend(path, base, &what, bootloader_name, c.boot.as_ref())?;
            let switches_at_boot = matches!(bootloader, Backend::Uboot(_) | Backend::Grub(_));
            let activate = c.activate.unwrap_or(if switches_at_boot {
                ActivateMode::Reboot
            } else {
                ActivateMode::Restart
            });
            let restart = c.restart.clone().unwrap_or_default();
            let reboot = c.reboot.clone().unwrap_or_default();
            if switches_at_boot && (activate != ActivateMode::Reboot || reboot.is_empty()) {
                // The bootloader switches slots only when the device boots: without a reboot
                // the agent would confirm a slot that never ran.
                return Err(bad(
                    path,
                    format!(
                        "{what}: bootloader = {:?} switches slots at boot: set activate = \"reboot\" \
                         and reboot = [\"systemctl\", \"reboot\"] (or your reboot command)",
                        bootloader.name()
                    ),
                ));
            }
            Kind::File(FileSlots {
                slots,
                pointer,
                bootloader,
                capacity,
                activate,
                restart,
                reboot,
            })
        }
        KindName::Mcu | KindName::Secondary => {
            refuses(c.slots.is_some(), "slots")?;
            refuses(c.pointer.is_some(), "pointer")?;
            refuses(c.bootloader.is_some(), "bootloader")?;
            refuses(c.boot.is_some(), "[component.boot]")?;
            needs(c.flash.is_some(), "flash = \"FILE\"")?;
            let sector_size = c.sector_size.unwrap_or(4096);
            if sector_size == 0 || !sector_size.is_multiple_of(256) {
                return Err(bad(
                    path,
                    format!("{what}: sector_size = {sector_size}: a multiple of 256"),
                ));
            }
            let slot_sectors = c.slot_sectors.unwrap_or(64);
            if slot_sectors == 0
                || u64::from(sector_size) * (2 + 2 * u64::from(slot_sectors)) > u64::from(u32::MAX)
            {
                return Err(bad(
                    path,
                    format!(
                        "{what}: slot_sectors = {slot_sectors}: at least 1, and the flash must stay below 4 GiB"
                    ),
                ));
            }
            let secondary = if c.kind == KindName::Secondary {
                let trust = c.trust.clone().unwrap_or_default();
                needs(!trust.is_empty(), "trust = [\"its-author.pub\"]")?;
                needs(c.vendor.is_some() && c.class.is_some(), "vendor and class")?;
                Some(SecondaryTrust {
                    anchors: load_anchors(path, base, &trust)?,
                    identity: identity(
                        path,
                        c.vendor.as_deref().unwrap_or_default(),
                        c.class.as_deref().unwrap_or_default(),
                        None,
                    )?,
                    inner_component: match &c.inner_component {
                        Some(i) => parse_id(path, &format!("{what} inner_component"), i)?,
                        None => vec![vec![0]],
                    },
                })
            } else {
                refuses(c.trust.is_some(), "trust")?;
                None
            };
            Kind::Mcu(McuConfig {
                flash: rel(c.flash.as_deref().unwrap_or(Path::new(""))),
                sector_size,
                slot_sectors,
                max_trial_boots: c.max_trial_boots.unwrap_or(3).max(1),
                image: c.image.unwrap_or(if secondary.is_some() {
                    ImageFormat::SlotImage
                } else {
                    ImageFormat::Raw
                }),
                factory: c.factory.as_deref().map(rel),
                secondary,
            })
        }
    };
    Ok(ComponentConfig {
        name: c.name.clone(),
        id,
        version: c.version.clone(),
        kind,
    })
}

/// The bootloader backend from `bootloader = "…"` and `[component.boot]`.
fn backend(
    path: &Path,
    base: &Path,
    what: &str,
    name: BootloaderName,
    boot: Option<&BootFile>,
) -> Result<Backend, AgentError> {
    let empty = BootFile::default();
    let b = boot.unwrap_or(&empty);
    let kind = match name {
        BootloaderName::Pointer => "pointer",
        BootloaderName::Uboot => "uboot",
        BootloaderName::Grub => "grub",
        BootloaderName::Custom => "custom",
    };
    let refuses = |v: bool, key: &str| -> Result<(), AgentError> {
        if v {
            Err(bad(
                path,
                format!("{what}: [component.boot] {key} does not apply to bootloader = {kind:?}"),
            ))
        } else {
            Ok(())
        }
    };
    let timeout = seconds(
        path,
        &format!("{what}: [component.boot] timeout_seconds"),
        b.timeout_seconds.unwrap_or(10.0),
    )?;
    let commands =
        b.status.is_some() || b.trial.is_some() || b.confirm.is_some() || b.revert.is_some();
    match name {
        BootloaderName::Pointer => {
            if boot.is_some() {
                return Err(bad(
                    path,
                    format!(
                        "{what}: [component.boot] needs bootloader = \"uboot\", \"grub\" or \"custom\""
                    ),
                ));
            }
            Ok(Backend::Pointer)
        }
        BootloaderName::Uboot | BootloaderName::Grub => {
            refuses(commands, "status/trial/confirm/revert")?;
            let tries = b.tries.unwrap_or(crate::bootloader::DEFAULT_TRIES);
            if tries == 0 || tries > crate::bootloader::MAX_TRIES {
                return Err(bad(
                    path,
                    format!(
                        "{what}: [component.boot] tries = {tries}: from 1 to {} (the boot scripts count in one decimal digit)",
                        crate::bootloader::MAX_TRIES
                    ),
                ));
            }
            let file = if name == BootloaderName::Uboot {
                refuses(b.grubenv.is_some(), "grubenv")?;
                b.fw_env_config.as_deref().map(|p| base.join(p))
            } else {
                refuses(b.fw_env_config.is_some(), "fw_env_config")?;
                Some(
                    base.join(
                        b.grubenv
                            .as_deref()
                            .unwrap_or(Path::new(crate::bootloader::DEFAULT_GRUBENV)),
                    ),
                )
            };
            let e = EnvBackend {
                file,
                tries,
                cmdline: base.join(b.cmdline.as_deref().unwrap_or(Path::new("/proc/cmdline"))),
                timeout,
            };
            Ok(if name == BootloaderName::Uboot {
                Backend::Uboot(e)
            } else {
                Backend::Grub(e)
            })
        }
        BootloaderName::Custom => {
            refuses(b.tries.is_some(), "tries")?;
            refuses(b.cmdline.is_some(), "cmdline")?;
            refuses(b.fw_env_config.is_some(), "fw_env_config")?;
            refuses(b.grubenv.is_some(), "grubenv")?;
            let argv = |v: &Option<Vec<String>>, key: &str| -> Result<Vec<String>, AgentError> {
                match v {
                    Some(a) if !a.is_empty() => Ok(a.clone()),
                    _ => Err(bad(
                        path,
                        format!(
                            "{what}: bootloader = \"custom\" needs [component.boot] {key} = [\"command\", \"arg\", …] (docs/bootloaders.md §4)"
                        ),
                    )),
                }
            };
            Ok(Backend::Custom(CustomBackend {
                status: argv(&b.status, "status")?,
                trial: argv(&b.trial, "trial")?,
                confirm: argv(&b.confirm, "confirm")?,
                revert: argv(&b.revert, "revert")?,
                timeout,
            }))
        }
    }
}

/// The size of a block device, if `path` is one.
fn block_size(path: &Path) -> Option<u64> {
    use std::io::Seek as _;
    use std::os::unix::fs::FileTypeExt as _;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(std::io::SeekFrom::End(0)).ok()
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // A failing system RNG only makes ids and jitter less random; never fatal here.
    let _ = getrandom::fill(&mut b);
    b
}

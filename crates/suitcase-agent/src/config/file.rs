//! `agent.toml` as written: the serde shape of the file, checked and resolved into
//! [`super::Config`] by the parent module.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ActivateMode, ConsentMode, ImageFormat};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) state_dir: PathBuf,
    pub(super) server: ServerFile,
    pub(super) trust: TrustFile,
    pub(super) identity: IdentityFile,
    #[serde(default)]
    pub(super) polling: PollingFile,
    #[serde(default)]
    pub(super) consent: ConsentFile,
    #[serde(default)]
    pub(super) health: HealthFile,
    #[serde(default)]
    pub(super) push: PushFile,
    #[serde(default)]
    pub(super) storage: StorageFile,
    #[serde(rename = "component", default)]
    pub(super) components: Vec<ComponentFile>,
    /// Gateway mode (docs/gateway.md): sub-devices on serial links.
    #[serde(default)]
    pub(super) gateway: Option<crate::gateway::config::GatewayFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    pub(super) url: String,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) client_cert: Option<PathBuf>,
    pub(super) client_key: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub(super) timeout_seconds: f64,
    /// A download must receive this many bytes in every `download_window_seconds`.
    #[serde(default = "default_download_min_bytes")]
    pub(super) download_min_bytes: u64,
    #[serde(default = "default_download_window")]
    pub(super) download_window_seconds: f64,
}

pub(super) fn default_timeout() -> f64 {
    30.0
}

pub(super) fn default_download_min_bytes() -> u64 {
    crate::http::MinRate::DEFAULT.bytes.get()
}

pub(super) fn default_download_window() -> f64 {
    crate::http::MinRate::DEFAULT.window.as_secs_f64()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrustFile {
    #[serde(default)]
    pub(super) anchors: Vec<PathBuf>,
    /// A trust state file (`suitcase trust init`), instead of `anchors`.
    pub(super) state: Option<PathBuf>,
    pub(super) threshold: Option<usize>,
    #[serde(default)]
    pub(super) hybrid: bool,
    #[serde(default)]
    pub(super) decrypt: Vec<PathBuf>,
    /// Refuse offers without a valid freshness statement (docs/trust.md, "Freshness").
    #[serde(default)]
    pub(super) require_freshness: bool,
    /// The name this device is registered under at the server (freshness statements bind it).
    pub(super) device_name: Option<String>,
    /// Report staleness after this long without a valid freshness statement.
    #[serde(default = "default_stale_after")]
    pub(super) stale_after_seconds: f64,
    /// The device has a real-time clock (false: `use-before` uses the statement's time).
    #[serde(default = "default_rtc")]
    pub(super) rtc: bool,
}

pub(super) fn default_stale_after() -> f64 {
    86_400.0
}

pub(super) fn default_rtc() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentityFile {
    pub(super) vendor: String,
    pub(super) class: String,
    pub(super) device: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PollingFile {
    #[serde(default = "default_interval")]
    pub(super) interval_seconds: f64,
    #[serde(default = "default_backoff_min")]
    pub(super) backoff_min_seconds: f64,
    #[serde(default = "default_backoff_max")]
    pub(super) backoff_max_seconds: f64,
    #[serde(default = "default_retries")]
    pub(super) download_attempts: u32,
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

pub(super) fn default_interval() -> f64 {
    300.0
}
pub(super) fn default_backoff_min() -> f64 {
    5.0
}
pub(super) fn default_backoff_max() -> f64 {
    3600.0
}
pub(super) fn default_retries() -> u32 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsentFile {
    #[serde(default)]
    pub(super) mode: ConsentMode,
    pub(super) command: Option<Vec<String>>,
    pub(super) window: Option<WindowFile>,
    #[serde(default = "default_command_timeout")]
    pub(super) timeout_seconds: f64,
}

pub(super) fn default_command_timeout() -> f64 {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WindowFile {
    pub(super) start: String,
    pub(super) end: String,
    #[serde(default)]
    pub(super) days: Vec<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthFile {
    pub(super) command: Option<Vec<String>>,
    #[serde(default = "default_command_timeout")]
    pub(super) timeout_seconds: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PushFile {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    pub(super) client_id: Option<String>,
}

impl Default for PushFile {
    fn default() -> Self {
        Self {
            enabled: true,
            client_id: None,
        }
    }
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StorageFile {
    #[serde(default)]
    pub(super) reserve_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ComponentFile {
    pub(super) name: String,
    pub(super) id: IdFile,
    pub(super) kind: KindName,
    // file
    pub(super) slots: Option<Vec<PathBuf>>,
    pub(super) pointer: Option<PathBuf>,
    pub(super) bootloader: Option<BootloaderName>,
    pub(super) boot: Option<BootFile>,
    pub(super) capacity: Option<u64>,
    pub(super) activate: Option<ActivateMode>,
    pub(super) restart: Option<Vec<String>>,
    pub(super) reboot: Option<Vec<String>>,
    // mcu, secondary
    pub(super) flash: Option<PathBuf>,
    pub(super) sector_size: Option<u32>,
    pub(super) slot_sectors: Option<u32>,
    pub(super) max_trial_boots: Option<u8>,
    pub(super) image: Option<ImageFormat>,
    pub(super) factory: Option<PathBuf>,
    // secondary
    pub(super) trust: Option<Vec<PathBuf>>,
    pub(super) vendor: Option<String>,
    pub(super) class: Option<String>,
    pub(super) inner_component: Option<IdFile>,
    pub(super) version: Option<String>,
    // module
    pub(super) handler: Option<HandlerName>,
    pub(super) path: Option<PathBuf>,
    pub(super) mode: Option<String>,
    pub(super) rollback: Option<bool>,
    pub(super) dpkg: Option<Vec<String>>,
}

/// `handler = "…"` of a module component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum HandlerName {
    File,
    Archive,
    Script,
    Deb,
}

/// `bootloader = "…"` of a file-slot component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum BootloaderName {
    Pointer,
    Uboot,
    Grub,
    Custom,
}

/// `[component.boot]`: the bootloader backend's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BootFile {
    pub(super) tries: Option<u8>,
    pub(super) cmdline: Option<PathBuf>,
    pub(super) timeout_seconds: Option<f64>,
    pub(super) fw_env_config: Option<PathBuf>,
    pub(super) grubenv: Option<PathBuf>,
    pub(super) status: Option<Vec<String>>,
    pub(super) trial: Option<Vec<String>>,
    pub(super) confirm: Option<Vec<String>>,
    pub(super) revert: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum IdFile {
    Text(String),
    Segments(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum KindName {
    File,
    Mcu,
    Secondary,
    Module,
}

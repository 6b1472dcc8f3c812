//! `agent.toml`: what the agent talks to, what it trusts, who it is and where each component
//! lives. Paths are relative to the configuration file. Every key is documented in
//! `docs/agent.md`.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use suitcase_manifest::encryption::DeviceKeys;

use crate::error::AgentError;

mod components;
mod file;
mod model;
mod trust;

use components::component;
use file::{File, IdFile};
pub use model::{
    ComponentConfig, Consent, FileSlots, Handler, Health, Identity, Kind, McuConfig, ModuleConfig,
    Polling, Push, SecondaryTrust, Server,
};
pub(crate) use trust::anchors_of;
pub use trust::{Freshness, Trust};
use trust::{identity, load_anchors, load_decryption_key};

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
    /// Gateway mode (`[gateway]`, docs/gateway.md): the sub-devices it fronts.
    pub gateway: Option<crate::gateway::GatewayConfig>,
}

pub(crate) fn bad(path: &Path, what: impl core::fmt::Display) -> AgentError {
    AgentError::Config(format!("{}: {what}", path.display()))
}

pub(crate) fn seconds(path: &Path, key: &str, s: f64) -> Result<Duration, AgentError> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        bad(
            path,
            format!("{key} = {s}: give a non-negative number of seconds"),
        )
    })
}

/// The longest `server.download_window_seconds` (a day).
const MAX_DOWNLOAD_WINDOW: Duration = Duration::from_secs(86_400);

/// `server.download_min_bytes` per `server.download_window_seconds`: both above zero (a
/// zero would turn the slow-retrieval bound off, or cut every download at once), the window
/// at most [`MAX_DOWNLOAD_WINDOW`].
fn min_rate(path: &Path, s: &file::ServerFile) -> Result<crate::http::MinRate, AgentError> {
    let window = seconds(
        path,
        "server.download_window_seconds",
        s.download_window_seconds,
    )?;
    // A window past a day is no bound on a slow retrieval, and a huge one would overflow the
    // clock the download computes its deadlines with.
    if window > MAX_DOWNLOAD_WINDOW {
        return Err(bad(
            path,
            format!(
                "server.download_window_seconds = {}: at most {} seconds (a day)",
                s.download_window_seconds,
                MAX_DOWNLOAD_WINDOW.as_secs()
            ),
        ));
    }
    let bytes = core::num::NonZeroU64::new(s.download_min_bytes);
    match bytes {
        Some(bytes) if !window.is_zero() => Ok(crate::http::MinRate { bytes, window }),
        _ => Err(bad(
            path,
            format!(
                "server.download_min_bytes = {} per server.download_window_seconds = {}: give a positive number of bytes per a positive number of seconds (the slowest a download may go before it is cut)",
                s.download_min_bytes, s.download_window_seconds
            ),
        )),
    }
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
            min_rate: min_rate(path, &f.server)?,
        };

        let (anchors, threshold, state) = match &f.trust.state {
            Some(file) => {
                // The state's release threshold, rules and signers apply; fixed-anchor
                // settings beside it would be silently ignored, so they are refused.
                if !f.trust.anchors.is_empty() || f.trust.threshold.is_some() || f.trust.hybrid {
                    return Err(bad(
                        path,
                        "trust.state replaces trust.anchors, trust.threshold and trust.hybrid (the trust state holds the release signers and thresholds): give either trust.state or trust.anchors",
                    ));
                }
                let file = rel(file);
                crate::trust::load(&file).map_err(|e| bad(path, e))?;
                (Vec::new(), NonZeroUsize::MIN, Some(file))
            }
            None => {
                if f.trust.anchors.is_empty() {
                    return Err(bad(
                        path,
                        "trust.anchors is empty: list the public keys that sign your releases (or give trust.state, a trust state file)",
                    ));
                }
                let anchors = load_anchors(path, &base, &f.trust.anchors)?;
                let threshold = NonZeroUsize::new(f.trust.threshold.unwrap_or(1))
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
                (anchors, threshold, None)
            }
        };
        let mut keys = DeviceKeys::default();
        for k in &f.trust.decrypt {
            keys.keys.push((None, load_decryption_key(path, &rel(k))?));
        }
        let trust = Trust {
            anchors,
            state,
            threshold,
            hybrid: f.trust.hybrid,
            keys,
            freshness: trust::freshness(
                path,
                f.trust.require_freshness,
                f.trust.state.is_some(),
                f.trust.device_name.as_deref(),
                f.trust.stale_after_seconds,
                f.trust.rtc,
            )?,
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
        if trust.state.is_some()
            && let Some(c) = components
                .iter()
                .find(|c| matches!(&c.kind, Kind::Mcu(m) if m.secondary.is_none()))
        {
            // The MCU's own boot path verifies with the agent's fixed anchors; checking it
            // against a trust state is not built yet (docs/trust.md, Not yet).
            return Err(bad(
                path,
                format!(
                    "component {:?}: the MCU verifies its images with trust.anchors (a secondary MCU with its own `trust` keys excepted), which trust.state replaces: checking an MCU against a trust state is not supported yet",
                    c.name
                ),
            ));
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
            gateway: f.gateway.map(|g| g.resolve(path, &base)).transpose()?,
        })
    }

    /// The component with this identifier.
    pub fn component(&self, id: &[Vec<u8>]) -> Option<(usize, &ComponentConfig)> {
        self.components.iter().enumerate().find(|(_, c)| c.id == id)
    }
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // A failing system RNG only makes ids and jitter less random; never fatal here.
    let _ = getrandom::fill(&mut b);
    b
}

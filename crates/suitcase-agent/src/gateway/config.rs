//! The `[gateway]` section of `agent.toml` (docs/gateway.md §5): the sub-devices on their
//! serial links and the store-and-forward bounds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{bad, seconds};
use crate::error::AgentError;

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewayFile {
    #[serde(default = "default_cache_bytes")]
    cache_bytes: u64,
    #[serde(default = "default_queue_reports")]
    queue_reports: usize,
    #[serde(default = "default_retry_min")]
    retry_min_seconds: f64,
    #[serde(default = "default_retry_max")]
    retry_max_seconds: f64,
    #[serde(rename = "subdevice", default)]
    subdevices: Vec<SubdeviceFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubdeviceFile {
    id: String,
    serial: Option<PathBuf>,
    socket: Option<PathBuf>,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

fn default_cache_bytes() -> u64 {
    256 << 20
}

fn default_queue_reports() -> usize {
    4096
}

fn default_retry_min() -> f64 {
    1.0
}

fn default_retry_max() -> f64 {
    60.0
}

/// The most reports the queue may be configured to hold (each at most a CoAP body, 1024
/// bytes of CBOR).
pub(crate) const QUEUE_REPORTS_MAX: usize = 1 << 16;
/// The most sub-devices one gateway fronts (one task and one serial link each).
pub(crate) const SUBDEVICES_MAX: usize = 256;

/// The gateway's configuration, checked.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The most bytes of envelopes and payloads the cache holds (least recently used go).
    pub cache_bytes: u64,
    /// The most step reports queued for the server; over it a report is refused with 5.03
    /// (the sub-device keeps it and sends it again), never dropped.
    pub queue_reports: usize,
    /// First wait before the queue is sent again after the server could not be reached.
    pub retry_min: Duration,
    /// Largest wait between attempts (doubling from `retry_min`).
    pub retry_max: Duration,
    /// The sub-devices.
    pub subdevices: Vec<Subdevice>,
}

/// One sub-device: its serial link and its credential at the server.
#[derive(Clone)]
pub struct Subdevice {
    /// A name for logs, file names and the report queue: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// Its link.
    pub link: Link,
    /// Its device token at the server (`sct_d_…`): the gateway acts for it over HTTP.
    pub token: String,
}

impl core::fmt::Debug for Subdevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Subdevice")
            .field("id", &self.id)
            .field("link", &self.link)
            .field("token", &"***")
            .finish()
    }
}

/// A sub-device's link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The character device of a serial line (a UART, a USB serial adapter, a pty), opened.
    Serial(PathBuf),
    /// A UNIX stream socket the gateway listens on, one connection at a time (QEMU's
    /// `-serial unix:PATH` connects to it).
    Socket(PathBuf),
}

impl Link {
    /// Its path.
    pub fn path(&self) -> &Path {
        match self {
            Self::Serial(p) | Self::Socket(p) => p,
        }
    }
}

impl GatewayFile {
    /// Checks the section; relative paths are relative to `base` (the file's directory).
    pub(crate) fn resolve(self, path: &Path, base: &Path) -> Result<GatewayConfig, AgentError> {
        if self.subdevices.is_empty() {
            return Err(bad(
                path,
                "[gateway] has no sub-device: add [[gateway.subdevice]] with id, serial (or socket) and token (or token_file)",
            ));
        }
        if self.subdevices.len() > SUBDEVICES_MAX {
            return Err(bad(
                path,
                format!(
                    "[gateway] lists {} sub-devices; at most {SUBDEVICES_MAX}",
                    self.subdevices.len()
                ),
            ));
        }
        if self.queue_reports == 0 || self.queue_reports > QUEUE_REPORTS_MAX {
            return Err(bad(
                path,
                format!(
                    "gateway.queue_reports = {}: give 1 to {QUEUE_REPORTS_MAX}",
                    self.queue_reports
                ),
            ));
        }
        if self.cache_bytes < 1 << 20 {
            return Err(bad(
                path,
                format!(
                    "gateway.cache_bytes = {}: give at least 1048576 (1 MiB)",
                    self.cache_bytes
                ),
            ));
        }
        let retry_min = seconds(path, "gateway.retry_min_seconds", self.retry_min_seconds)?;
        let retry_max = seconds(path, "gateway.retry_max_seconds", self.retry_max_seconds)?;
        if retry_max < retry_min {
            return Err(bad(
                path,
                "gateway.retry_max_seconds is less than gateway.retry_min_seconds",
            ));
        }
        let mut subdevices: Vec<Subdevice> = Vec::new();
        for s in self.subdevices {
            let id_ok = !s.id.is_empty()
                && s.id.len() <= 64
                && s.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !id_ok {
                return Err(bad(
                    path,
                    format!(
                        "gateway.subdevice id {:?}: give 1 to 64 of A-Z a-z 0-9 . _ -",
                        s.id
                    ),
                ));
            }
            let link = match (&s.serial, &s.socket) {
                (Some(p), None) => Link::Serial(base.join(p)),
                (None, Some(p)) => Link::Socket(base.join(p)),
                _ => {
                    return Err(bad(
                        path,
                        format!(
                            "gateway.subdevice {:?}: give serial (a character device) or socket (a UNIX socket the gateway listens on), one of them",
                            s.id
                        ),
                    ));
                }
            };
            if let Some(other) = subdevices
                .iter()
                .find(|o| o.id == s.id || o.link.path() == link.path())
            {
                return Err(bad(
                    path,
                    format!(
                        "gateway.subdevice {:?}: its id or link path is also sub-device {:?}'s; each needs its own",
                        s.id, other.id
                    ),
                ));
            }
            let token = match (s.token, s.token_file) {
                (Some(t), None) => t.trim().to_owned(),
                (None, Some(f)) => std::fs::read_to_string(base.join(&f))
                    .map_err(|e| {
                        bad(
                            path,
                            format!(
                                "gateway.subdevice {:?} token_file {}: {e}",
                                s.id,
                                base.join(&f).display()
                            ),
                        )
                    })?
                    .trim()
                    .to_owned(),
                _ => {
                    return Err(bad(
                        path,
                        format!(
                            "gateway.subdevice {:?}: give token or token_file (one of them): the sub-device's token at the server",
                            s.id
                        ),
                    ));
                }
            };
            if token.is_empty() {
                return Err(bad(
                    path,
                    format!("gateway.subdevice {:?}: the token is empty", s.id),
                ));
            }
            subdevices.push(Subdevice {
                id: s.id,
                link,
                token,
            });
        }
        Ok(GatewayConfig {
            cache_bytes: self.cache_bytes,
            queue_reports: self.queue_reports,
            retry_min,
            retry_max,
            subdevices,
        })
    }
}

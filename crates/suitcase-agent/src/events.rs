//! Status events: what the agent is doing, for logs and `suitcase agent --json` (one JSON
//! object per line).

use std::sync::Arc;

use serde::Serialize;

/// One event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A check-in was answered.
    CheckIn {
        /// `none` or `update`.
        action: String,
        /// The offered release.
        #[serde(skip_serializing_if = "Option::is_none")]
        release_id: Option<String>,
        /// The server's polling interval for this device.
        next_poll_seconds: u32,
    },
    /// An update step ended (or started, `in-progress`).
    Step {
        /// The release.
        release_id: String,
        /// The step's wire name.
        step: String,
        /// The outcome's wire name.
        outcome: String,
        /// The reason code on failure.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// What happened.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// Bytes done.
        #[serde(skip_serializing_if = "Option::is_none")]
        progress: Option<u64>,
    },
    /// An interrupted update is picked up again.
    Resume {
        /// The release.
        release_id: String,
        /// The step it resumes at.
        step: String,
    },
    /// An update ended.
    Update {
        /// The release.
        release_id: String,
        /// `installed`, `failed`, `deferred`, or `rebooting` (activated on trial and the
        /// reboot command ran: not confirmed until the agent runs again after the reboot).
        result: String,
        /// Traffic of this update beyond what was already counted.
        #[serde(skip_serializing_if = "Option::is_none")]
        traffic: Option<crate::http::Traffic>,
    },
    /// A push notification arrived.
    Push {
        /// The topic.
        topic: String,
    },
    /// The push subscription is in place.
    Subscribed {
        /// The topics.
        topics: Vec<String>,
    },
    /// Something went wrong; the agent retries.
    Error {
        /// What.
        message: String,
        /// When it tries again.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_seconds: Option<f64>,
    },
    /// An offline bundle was opened (`--bundle`, `--watch`; docs/bundles.md).
    Bundle {
        /// Its path.
        path: String,
        /// The release chosen to install, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        release_id: Option<String>,
        /// Why nothing is installed from it, or why it cannot be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The agent sleeps until the next check-in (or a push).
    Sleep {
        /// Seconds.
        seconds: f64,
    },
}

/// Where events go.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A sink that logs events with `tracing`.
pub fn log_sink() -> EventSink {
    Arc::new(|e: &Event| {
        let line = serde_json::to_string(e).unwrap_or_default();
        tracing::info!(target: "suitcase_agent", "{line}");
    })
}

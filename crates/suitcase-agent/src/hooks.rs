//! The hooks an embedder or a test gives the agent: the clock, an in-process health check,
//! faults to inject.

use std::sync::Arc;

/// The clock: seconds since 1970.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Test hooks: faults to inject and a clock to control. `Hooks::default()` injects nothing.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Crash (stop with [`crate::AgentError::InjectedCrash`], leaving everything as a killed process
    /// would) right after this many durable writes (journal, outbox, installed, pointer, flash).
    pub crash_after_writes: Option<u64>,
    /// Cut download transfers after `download_cuts[0]`, `[1]`, ... body bytes (each applies to
    /// the next transfer that would carry more than that).
    pub download_cuts: Vec<u64>,
    /// The clock (seconds since 1970); the system clock if `None`.
    pub clock: Option<Clock>,
    /// An HTTP client to share (a simulated fleet in one process uses one connection pool
    /// for all its devices). The caller configures it: `server.ca_file`, `client_cert` and
    /// `timeout_seconds` are not applied to it; the device's token still is.
    pub client: Option<reqwest::Client>,
    /// A health check run in-process instead of `health.command` (a simulated device
    /// "boots" its new image and says whether it works); `None` runs the command.
    pub health: Option<HealthHook>,
}

/// An in-process health check: `true` confirms the update, `false` reverts it.
pub type HealthHook = Arc<dyn Fn(&HealthCheck) -> bool + Send + Sync>;

/// What an in-process health check is told about the update it judges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The release.
    pub release_id: String,
    /// The manifest's sequence number.
    pub sequence: u64,
}

impl core::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Hooks")
            .field("crash_after_writes", &self.crash_after_writes)
            .field("download_cuts", &self.download_cuts)
            .field("shared_client", &self.client.is_some())
            .field("health_hook", &self.health.is_some())
            .finish_non_exhaustive()
    }
}

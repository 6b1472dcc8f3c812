//! What every step needs ([`Ctx`]: the configuration, the transport, the state directory,
//! the event sink, the clock and the health hook), and the blocking-pool helpers the steps
//! run their file-heavy work on.

use std::sync::Arc;

use crate::config::Config;
use crate::error::{AgentError, Stop};
use crate::events::EventSink;
use crate::hooks::{Clock, HealthHook};
use crate::http::Http;
use crate::state::{Journal, StateDir};

/// What every step needs.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) cfg: Arc<Config>,
    pub(crate) http: Http,
    pub(crate) state: StateDir,
    pub(crate) events: EventSink,
    pub(crate) clock: Clock,
    pub(crate) health: Option<HealthHook>,
    /// Installing from this offline bundle (docs/bundles.md): `bundle:` URLs are read from
    /// it, and reports are only queued while the update runs (no server is reachable).
    pub(crate) bundle: Option<Arc<crate::bundle::Source>>,
    /// The update in progress came from a bundle: its reports are marked `offline`.
    pub(crate) offline: bool,
}

impl Ctx {
    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }
}

/// Runs file-heavy work (a step, or part of one) on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    ctx: &Ctx,
    j: &mut Journal,
    f: fn(&Ctx, &mut Journal) -> Result<T, Stop>,
) -> Result<T, Stop> {
    let c = ctx.clone();
    let mut owned = j.clone();
    let (owned, r) = off_worker("step", move || {
        let r = f(&c, &mut owned);
        (owned, r)
    })
    .await?;
    *j = owned;
    r
}

/// Runs `f` on the blocking pool, off the async worker: file-heavy work, and every bootloader
/// operation (`fw_printenv`, `fw_setenv`, `grub-editenv`, the custom commands: `bootloader.rs`
/// waits for them with `std::process`, each up to its timeout).
pub(crate) async fn off_worker<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Local(format!("{what} worker: {e}")))
}

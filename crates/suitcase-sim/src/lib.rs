//! The suitcase fleet simulator: rehearse a rollout against a real server with thousands of
//! simulated devices and realistic faults before touching a real fleet.
//!
//! ```text
//!   scenario::rehearse ── admin.rs ──▶ server: key, 4 releases, N devices, campaign in waves
//!        │
//!        ├─ device.rs × N (tokio tasks, one shared connection pool, a concurrency gate)
//!        │     the real suitcase-agent ─▶ simulated MCU: flash file + suitcase-boot + SUIT
//!        │     faults.rs: download cuts, power cuts, sleepy devices, old releases, bad image
//!        │
//!        └─ every 200 ms: campaign state from the server + each device's step ─▶ Snapshot
//!           at the end: each device's flash says which image its bootloader runs ─▶ Summary
//! ```
//!
//! Each simulated device is the real agent (every NTIA step, the journal, Range-resumed
//! downloads, reports) over a simulated MCU: `suitcase-flash-sim` NOR flash persisted to a
//! file, the `suitcase-boot` bootloader, and the SUIT secure-boot verifier of
//! `suitcase-device`. Only the application's health check is simulated: the new image "runs"
//! and reports healthy, unless the rehearsal injects a bad image.
//!
//! `suitcase demo` runs a rehearsal against a server it starts in-process; `suitcase sim`
//! against any server. See `docs/sim.md`.

#![expect(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a host crate: the core/alloc discipline matters for the device crates only"
)]

pub mod admin;
pub mod device;
pub mod faults;
pub mod scenario;
pub mod trust_mcu;

pub use faults::Faults;
pub use scenario::{Plan, Snapshot, Summary, rehearse};

/// The simulated MCU's SUIT component identifier (one segment, `"mcu"`).
pub const COMPONENT: &[u8] = b"mcu";

/// What stops a rehearsal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused or could not be reached.
    #[error("server: {0}")]
    Server(String),
    /// A local problem or a wrong argument.
    #[error("{0}")]
    Input(String),
}

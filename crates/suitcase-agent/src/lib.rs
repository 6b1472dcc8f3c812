//! The suitcase device agent: the firmware consumer and status-tracker client of RFC 9019 on
//! the device. It checks in with a `suitcase server`, runs every NTIA update step (Receive,
//! Check, Announce, Distribute, Process, Stage, Apply, Re-verify, Activate, Clean-up), reports
//! each one, and survives network cuts, crashes and power loss by resuming from a crash-safe
//! journal.
//!
//! ```text
//!   Agent::cycle ── check-in ──▶ offer ──▶ runner::run ── step machine (machine.rs, pure)
//!       │                                     │ each step:   I/O adapters
//!       │                                     ├─ Receive:    http.rs (Range/If-Range resume)
//!       │                                     ├─ Check/Process/Re-verify: platform.rs (SUIT Platform)
//!       │                                     ├─ Apply/Activate/Clean-up: slots.rs (Linux A/B),
//!       │                                     │               bootloader.rs (U-Boot, GRUB, custom),
//!       │                                     │               mcu.rs (the core's BootSlots on flash-sim)
//!       │                                     └─ journal:    state.rs (write-temp + fsync + rename)
//!       └─ sleep next_poll_seconds │ push (push.rs, MQTT) │ back-off with jitter on errors
//! ```
//!
//! **Parse, don't validate.** Every step after Receive reaches the manifest through one
//! function (`verified::authenticated`) that reads the stored envelope and has the
//! firmware-consumer core authenticate it with the trust anchors again
//! (`suitcase_device::consumer::Offer::verify`), so only a
//! [`suitcase_manifest::VerifiedManifest`] is ever used. The install path takes only what a
//! verified step produced: Apply writes `candidates::VerifiedCandidates`, the core's
//! `consumer::Matched`, which only the core's image-match makes, in Process or in the re-entry
//! from the journal (authenticate again, then the manifest's image-match over the journalled
//! candidates); Re-verify checks what was written before Activate.
//!
//! **Memory does not grow with the image.** Payloads stream from the network to a file in
//! chunks; the SUIT processor reads and decrypts them in 256-byte steps through a 64 KiB
//! window; Apply copies with a 256 KiB buffer. Only the envelope (at most 1 MiB) is held whole.
//!
//! The configuration reference, the journal format and the measurements are in
//! `docs/agent.md`.

#![expect(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a host crate: the core/alloc discipline matters for the device crates only"
)]

mod agent;
mod backend;
pub mod bootloader;
pub mod bundle;
mod candidates;
pub mod command;
pub mod config;
pub mod consent;
mod ctx;
pub mod delta;
pub mod error;
pub mod events;
pub mod freshness;
pub mod gateway;
mod hooks;
pub mod http;
mod inventory;
pub mod machine;
pub mod mcu;
pub mod module;
mod pacing;
mod platform;
mod push;
mod report;
mod runner;
pub mod slot;
pub mod slots;
pub mod state;
mod steps;
pub mod trust;
mod verified;

pub use agent::{Agent, Cycle, UpdateResult};
pub use config::Config;
pub use error::{AgentError, StepFailure};
pub use events::{Event, EventSink};
pub use hooks::{Clock, HealthCheck, HealthHook, Hooks};
pub use http::Traffic;
pub use runner::Finished;
pub use verified::MAX_ENVELOPE;

/// The agent's name and version, as sent in check-ins and the User-Agent header.
pub const AGENT: &str = concat!("suitcase-agent/", env!("CARGO_PKG_VERSION"));

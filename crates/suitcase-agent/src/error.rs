//! Errors: what stops the agent, and why an update step failed.

use suitcase_protocol::Step;

/// Agent reason codes, next to the SUIT processor's (`suitcase_manifest::Reason::code`).
pub mod reason {
    /// Not enough free space or slot capacity for the offered payloads.
    pub const NO_SPACE: &str = "no-space";
    /// A download could not be completed or did not match the offer.
    pub const DOWNLOAD: &str = "download";
    /// The new image failed its health check and was reverted.
    pub const HEALTH_CHECK: &str = "health-check";
    /// The user (or the consent command) refused the update.
    pub const CONSENT: &str = "consent";
    /// The bootloader refused to boot the new image.
    pub const BOOT_REFUSED: &str = "boot-refused";
    /// The restart or reboot command failed.
    pub const ACTIVATE: &str = "activate";
    /// The envelope is larger than the agent accepts.
    pub const ENVELOPE_SIZE: &str = "size";
    /// A local storage operation failed (slot write, pointer, flash).
    pub const STORAGE: &str = "storage";
}

/// A step that failed for good: reported to the server, the update ends on this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepFailure {
    /// The step.
    pub step: Step,
    /// The reason code.
    pub reason: String,
    /// What happened, for people.
    pub detail: String,
    /// The end of the failing command's output (redacted, at most 8 KiB), if there is one.
    pub log: Option<String>,
}

impl StepFailure {
    /// A failure of `step`.
    pub fn new(step: Step, reason: &str, detail: impl Into<String>) -> Self {
        Self {
            step,
            reason: reason.to_owned(),
            detail: detail.into(),
            log: None,
        }
    }

    /// The failure with the end of a command's output (none if it wrote nothing).
    #[must_use]
    pub fn with_log(mut self, log: String) -> Self {
        self.log = (!log.is_empty()).then_some(log);
        self
    }

    /// A failure carrying the SUIT processor's reason code.
    pub fn suit(step: Step, e: &suitcase_manifest::Error) -> Self {
        Self::new(step, e.reason().code(), e.to_string())
    }
}

/// What stops the agent (as opposed to a failed update, which is reported and handled).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The server could not be reached or answered with an error; the agent retries later.
    #[error("server: {0}")]
    Server(String),
    /// The state directory or a slot could not be read or written.
    #[error("{0}")]
    Local(String),
    /// The reboot command ran: the agent stops and resumes at its next start. The update is
    /// activated on trial, not confirmed: the health check and Clean-up run after the reboot.
    #[error(
        "rebooting into the new image on trial; it is not confirmed yet: run the agent again after the reboot"
    )]
    Rebooting,
    /// `--bundle`: nothing in the offline bundle is for this device, or nothing newer than
    /// what is installed (nothing was changed).
    #[error("{0}")]
    NothingInBundle(String),
    /// A crash injected by a test hook ([`crate::Hooks::crash_after_writes`]).
    #[error("injected crash (test hook)")]
    InjectedCrash,
}

impl AgentError {
    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Server(_))
    }
}

/// Wraps an I/O error with what was being done.
pub(crate) fn local(what: impl core::fmt::Display) -> impl FnOnce(std::io::Error) -> AgentError {
    move |e| AgentError::Local(format!("{what}: {e}"))
}

/// How a step ends when it does not succeed.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Failed for good (reported).
    Fail(StepFailure),
    /// Interrupted: the state is kept and the step runs again later.
    Interrupt(AgentError),
}

/// A step failure for good, as a [`Stop`].
pub(crate) fn fail(step: Step, reason: &str, detail: impl Into<String>) -> Stop {
    Stop::Fail(StepFailure::new(step, reason, detail))
}

impl From<AgentError> for Stop {
    fn from(e: AgentError) -> Self {
        Self::Interrupt(e)
    }
}

impl From<StepFailure> for Stop {
    fn from(f: StepFailure) -> Self {
        Self::Fail(f)
    }
}

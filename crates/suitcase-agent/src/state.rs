//! The state directory and its crash-safe files.
//!
//! ```text
//! STATE_DIR/
//!   journal.json     the update in progress (absent when idle)
//!   installed.json   what is installed: component ids, sequence numbers, digests
//!   outbox.json      step reports not yet accepted by the server
//!   work/            downloads (envelope.suit, payload-N.bin) and candidates (c-N.bin)
//! ```
//!
//! Every file except those under `work/` is replaced atomically: written to a temporary file
//! in the same directory, flushed to disk (`fsync`), renamed over the old one, and the
//! directory is flushed too. A crash or power cut leaves the old file or the new one, never a
//! mixture. `work/` files are appended to and their durable length is recorded in the
//! journal after an `fsync`, so anything beyond it is discarded on resume.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use suitcase_protocol::{InstalledComponent, Step, StepReport, UpdateOffer};

use crate::error::{AgentError, local};
use crate::machine::Undo;

mod target;

pub use target::{Role, Target, TargetRecord, TargetState};

/// The journal format version.
pub const JOURNAL_VERSION: u32 = 1;

/// The most reports the outbox holds (`outbox.json`, about 300 bytes each: 150 KiB at most).
/// An update makes about a dozen, so this is some forty updates' worth, e.g. bundles
/// installed offline for a long time. At the bound the oldest `in-progress` reports go
/// first, then the oldest successes, then the oldest deferrals; failures are dropped last
/// (oldest first), so what went wrong is what reaches the server (RFC 9124
/// REQ.SEC.RESOURCE-EXHAUSTION: nothing the agent keeps grows without bound).
pub const MAX_OUTBOX: usize = 512;

/// Trims `outbox` to [`MAX_OUTBOX`] (see there); returns how many reports were dropped.
pub fn bound_outbox(outbox: &mut Vec<StepReport>) -> usize {
    let over = outbox.len().saturating_sub(MAX_OUTBOX);
    let mut left = over;
    for outcome in [
        suitcase_protocol::Outcome::InProgress,
        suitcase_protocol::Outcome::Success,
        suitcase_protocol::Outcome::Deferred,
        suitcase_protocol::Outcome::Failure,
    ] {
        // Every outcome is in this list, so `left` reaches 0 by its end.
        outbox.retain(|r| {
            if left > 0 && r.outcome == outcome {
                left -= 1;
                false
            } else {
                true
            }
        });
    }
    over
}

/// Counts durable writes, and crashes on cue (a test hook).
#[derive(Debug, Default)]
pub struct Durability {
    writes: AtomicU64,
    crash_after: Option<u64>,
}

impl Durability {
    /// Crash (return [`AgentError::InjectedCrash`]) right after the `n`-th durable write.
    pub fn crash_after(n: Option<u64>) -> Self {
        Self {
            writes: AtomicU64::new(0),
            crash_after: n,
        }
    }

    /// Durable writes so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Called after each durable write.
    ///
    /// # Errors
    /// [`AgentError::InjectedCrash`] at the armed write.
    pub fn wrote(&self) -> Result<(), AgentError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash_after.is_some_and(|limit| n >= limit) {
            return Err(AgentError::InjectedCrash);
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically (temp + fsync + rename + directory fsync).
///
/// # Errors
/// [`AgentError::Local`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp"));
    let what = format!("cannot write {}", path.display());
    {
        let mut f = std::fs::File::create(&tmp).map_err(local(&what))?;
        f.write_all(bytes).map_err(local(&what))?;
        f.sync_all().map_err(local(&what))?;
    }
    std::fs::rename(&tmp, path).map_err(local(&what))?;
    sync_dir(dir)
}

/// Flushes a directory, so that a rename or a new file in it survives a power cut.
///
/// # Errors
/// [`AgentError::Local`].
pub fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(local(format!("cannot flush directory {}", dir.display())))
}

/// A file being downloaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Download {
    /// The server path.
    pub url: String,
    /// Offered size.
    pub size: u64,
    /// Offered SHA-256 (hex), for payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// File name under `work/`.
    pub file: String,
    /// Bytes known to be on disk (flushed).
    pub durable: u64,
    /// The entity tag the bytes came with (for `If-Range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Every byte is in and checked.
    pub complete: bool,
    /// Times the download was resumed with a range request.
    #[serde(default)]
    pub resumes: u32,
    /// Times the whole download was restarted (digest mismatch, changed payload).
    #[serde(default)]
    pub restarts: u32,
}

impl Download {
    /// A download not started yet.
    pub fn new(url: String, size: u64, sha256: Option<String>, file: String) -> Self {
        Self {
            url,
            size,
            sha256,
            file,
            durable: 0,
            etag: None,
            complete: false,
            resumes: 0,
            restarts: 0,
        }
    }
}

/// The content the processor produced for a component (Process), verified against the
/// manifest's digest before anything was written to a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The manifest component index.
    pub index: usize,
    /// The file under `work/`.
    pub file: String,
    /// Its length.
    pub len: u64,
}

/// A delta being tried for one payload (in the journal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaState {
    /// The payload index.
    pub index: usize,
    /// The patch download.
    pub patch: Download,
    /// Given up: the full payload is downloaded instead.
    pub abandoned: bool,
    /// Why it was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A failed update being undone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undoing {
    /// What undoing takes.
    pub undo: Undo,
    /// The failed step.
    pub step: Step,
    /// Its reason code.
    pub reason: String,
    /// Its detail.
    pub detail: String,
    /// The end of the failing command's output, for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// The update in progress (`journal.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// [`JOURNAL_VERSION`].
    pub version: u32,
    /// The offer being installed.
    pub offer: UpdateOffer,
    /// The step in progress (run again after a restart).
    pub step: Step,
    /// A failure being undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoing: Option<Undoing>,
    /// The envelope download.
    pub envelope: Download,
    /// The payload downloads, in offer order.
    pub payloads: Vec<Download>,
    /// A `deferred` report was sent for this offer.
    #[serde(default)]
    pub deferred_reported: bool,
    /// Announce granted consent.
    #[serde(default)]
    pub consent_granted: bool,
    /// Where each manifest component goes (Distribute).
    #[serde(default)]
    pub targets: Vec<Target>,
    /// What Process produced.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Delta patches tried instead of full payloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<DeltaState>,
    /// The manifest's sequence number (Check).
    #[serde(default)]
    pub sequence: u64,
    /// The components a SUIT dependency of the manifest writes (draft-ietf-suit-trust-domains;
    /// an author's manifest wrapped in an operator's root), each with that dependency's own
    /// sequence number (Check): Clean-up records it as the component's
    /// [`Installed::writers`] entry (the root's sequence number for the others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writers: Vec<WriterSequence>,
    /// A trust update (docs/trust.md): the trust sequence number Check is storing or stored.
    /// Set (and journalled) before the new trust state is written, so that a Check run again
    /// after a crash knows the state in force may already be this one; the steps after Check
    /// have nothing to install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_update: Option<u64>,
    /// When the step in progress began (kept across restarts, so a resumed step reports its
    /// original start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<StepStarted>,
}

/// When a step began, in seconds since 1970.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStarted {
    /// The step.
    pub step: Step,
    /// When it began.
    pub at: u64,
}

impl Journal {
    /// A fresh journal for an offer.
    pub fn new(offer: UpdateOffer) -> Self {
        let payloads = offer
            .payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Download::new(
                    p.url.clone(),
                    p.size,
                    Some(p.sha256.clone()),
                    format!("payload-{i}.bin"),
                )
            })
            .collect();
        Self {
            version: JOURNAL_VERSION,
            envelope: Download::new(
                offer.manifest_url.clone(),
                offer.manifest_size,
                None,
                "envelope.suit".into(),
            ),
            sequence: offer.sequence_number,
            offer,
            step: Step::Receive,
            undoing: None,
            payloads,
            deferred_reported: false,
            consent_granted: false,
            targets: Vec::new(),
            candidates: Vec::new(),
            deltas: Vec::new(),
            started: None,
            trust_update: None,
            writers: Vec::new(),
        }
    }

    /// When the step in progress began, if the journal says.
    pub fn started_at(&self, step: Step) -> Option<u64> {
        self.started.filter(|s| s.step == step).map(|s| s.at)
    }

    /// The release id.
    pub fn release(&self) -> &str {
        &self.offer.release_id
    }
}

/// What is installed (`installed.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Components by identifier, with the sequence number of the manifest that installed them.
    #[serde(default)]
    pub components: Vec<InstalledComponent>,
    /// A failed update was reverted since the last check-in.
    #[serde(default)]
    pub reverted: bool,
    /// The last release installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_release: Option<String>,
    /// Per component, the sequence number of the manifest that wrote it, in that manifest's
    /// own signer's domain: a SUIT dependency's (an author's manifest wrapped in an
    /// operator's root, draft-ietf-suit-trust-domains) when a dependency wrote it, else the
    /// release's own (`components`' `sequence_number` is always the root's, the operator's
    /// counter). Anti-rollback (manifest §8.4.2, RFC 9124 REQ.SEC.SEQUENCE) compares a
    /// dependency, and a release installed directly, with it (docs/trust.md "Trust
    /// domains"). Absent for a component installed before this record was kept (the
    /// root's sequence number is all that is known of it then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writers: Vec<WriterSequence>,
}

/// A component and the sequence number of the manifest that wrote it ([`Installed::writers`],
/// [`Journal::writers`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterSequence {
    /// The component identifier's segments, hex.
    pub id: Vec<String>,
    /// The writing manifest's sequence number.
    pub sequence: u64,
}

impl Installed {
    /// The installed sequence number of a component.
    pub fn sequence(&self, id: &[String]) -> Option<u64> {
        self.components
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.sequence_number)
    }

    /// The sequence number of the manifest that wrote a component, if recorded
    /// ([`Installed::writers`]).
    pub fn writer_sequence(&self, id: &[String]) -> Option<u64> {
        self.writers.iter().find(|w| w.id == id).map(|w| w.sequence)
    }

    /// Records the sequence number of the manifest that wrote a component.
    pub fn set_writer(&mut self, w: WriterSequence) {
        match self.writers.iter_mut().find(|x| x.id == w.id) {
            Some(x) => *x = w,
            None => self.writers.push(w),
        }
    }

    /// Records a component.
    pub fn set(&mut self, c: InstalledComponent) {
        match self.components.iter_mut().find(|x| x.id == c.id) {
            Some(x) => *x = c,
            None => self.components.push(c),
        }
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// Its path.
    pub dir: PathBuf,
    /// The durable-write counter and crash hook.
    pub durability: Arc<Durability>,
}

impl StateDir {
    /// Opens (creating) the state directory.
    ///
    /// # Errors
    /// [`AgentError::Local`] if it cannot be created.
    pub fn open(dir: &Path, durability: Arc<Durability>) -> Result<Self, AgentError> {
        std::fs::create_dir_all(dir.join("work")).map_err(local(format!(
            "cannot create the state directory {}",
            dir.display()
        )))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            durability,
        })
    }

    /// The work directory.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// A file in the work directory.
    pub fn work_file(&self, name: &str) -> PathBuf {
        self.work().join(name)
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, AgentError> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                AgentError::Local(format!(
                    "{} is damaged ({e}); move it away to start afresh",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AgentError::Local(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| AgentError::Local(format!("cannot encode {name}: {e}")))?;
        write_atomic(&self.dir.join(name), &bytes)?;
        self.durability.wrote()
    }

    /// The journal, if an update is in progress.
    ///
    /// # Errors
    /// [`AgentError::Local`] if it cannot be read or is not this version's.
    pub fn journal(&self) -> Result<Option<Journal>, AgentError> {
        let j: Option<Journal> = self.read_json("journal.json")?;
        if let Some(j) = &j
            && j.version != JOURNAL_VERSION
        {
            return Err(AgentError::Local(format!(
                "journal.json has version {} but this agent writes {JOURNAL_VERSION}",
                j.version
            )));
        }
        Ok(j)
    }

    /// Saves the journal (atomically).
    ///
    /// # Errors
    /// [`AgentError::Local`], or the injected crash.
    pub fn save_journal(&self, j: &Journal) -> Result<(), AgentError> {
        self.write_json("journal.json", j)
    }

    /// Ends the update: removes the journal, then the work area.
    ///
    /// # Errors
    /// [`AgentError::Local`], or the injected crash.
    pub fn finish(&self) -> Result<(), AgentError> {
        match std::fs::remove_file(self.dir.join("journal.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AgentError::Local(format!("cannot remove the journal: {e}"))),
        }
        sync_dir(&self.dir)?;
        self.durability.wrote()?;
        self.clear_work()
    }

    /// Empties the work area.
    ///
    /// # Errors
    /// [`AgentError::Local`].
    pub fn clear_work(&self) -> Result<(), AgentError> {
        let work = self.work();
        match std::fs::remove_dir_all(&work) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AgentError::Local(format!(
                    "cannot remove {}: {e}",
                    work.display()
                )));
            }
        }
        std::fs::create_dir_all(&work).map_err(local(format!("cannot create {}", work.display())))
    }

    /// What is installed.
    ///
    /// # Errors
    /// [`AgentError::Local`].
    pub fn installed(&self) -> Result<Installed, AgentError> {
        Ok(self.read_json("installed.json")?.unwrap_or_default())
    }

    /// Saves what is installed.
    ///
    /// # Errors
    /// [`AgentError::Local`], or the injected crash.
    pub fn save_installed(&self, i: &Installed) -> Result<(), AgentError> {
        self.write_json("installed.json", i)
    }

    /// Reports waiting to be delivered.
    ///
    /// # Errors
    /// [`AgentError::Local`].
    pub fn outbox(&self) -> Result<Vec<StepReport>, AgentError> {
        Ok(self.read_json("outbox.json")?.unwrap_or_default())
    }

    /// Saves the outbox.
    ///
    /// # Errors
    /// [`AgentError::Local`], or the injected crash.
    pub fn save_outbox(&self, o: &[StepReport]) -> Result<(), AgentError> {
        self.write_json("outbox.json", &o)
    }

    /// Free bytes on the state directory's file system.
    pub fn free_bytes(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(&self.dir).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }
}

#[cfg(test)]
mod tests;

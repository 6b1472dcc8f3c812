//! The gateway's durable queue of the sub-devices' step reports (docs/gateway.md §4): one
//! file per report (`<20-digit sequence>.json`), written aside, synced and renamed before the
//! sub-device is told 2.04, removed (and the removal synced) only once the server has
//! answered it. Bounded: at most `max` reports, and at most a share of them per sub-device (so
//! one sub-device cannot fill the queue for the others); over it a report is refused, never
//! dropped. A report the server refused for its sub-device's credential is moved to
//! `refused/` (kept for the operator, bounded to `max` files) by [`Queue::park`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use suitcase_protocol::StepReport;

use super::cache::{sync_dir, write_atomic};
use crate::error::AgentError;

/// A queued report and whose it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// The sub-device's `id` (configuration).
    pub subdevice: String,
    /// The report as the sub-device sent it.
    pub report: StepReport,
}

/// Whether a report was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// On disk, durably.
    Queued,
    /// The queue holds its maximum: refused (the sub-device sends it again later).
    Full,
}

/// The queue.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    max: usize,
    /// Sequence numbers on disk (with their sub-device), and the next one.
    state: Mutex<(BTreeMap<u64, String>, u64)>,
}

/// Removes `path`; a file already gone is no error.
fn remove_if_present(path: &Path) -> Result<(), AgentError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::Local(format!("{}: {e}", path.display()))),
    }
}

fn name(seq: u64) -> String {
    format!("{seq:020}.json")
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, holding at most `max` reports.
    ///
    /// # Errors
    /// `Local` if the directory cannot be used.
    pub fn open(dir: &Path, max: usize) -> Result<Self, AgentError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| AgentError::Local(format!("{}: {e}", dir.display())))?;
        let mut seqs = BTreeMap::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| AgentError::Local(format!("{}: {e}", dir.display())))?;
        // Bounded: the queue never holds more than `max` (≤ 65,536) reports; leftovers of a
        // crash (`.tmp`) are removed as they are met.
        for entry in entries.take(super::config::QUEUE_REPORTS_MAX * 2 + 16) {
            let Ok(entry) = entry else { continue };
            let file = entry.file_name().to_string_lossy().into_owned();
            match file
                .strip_suffix(".json")
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(seq) => {
                    // Whose it is (for the per-sub-device share); one that does not parse is
                    // moved aside as `oldest` would.
                    match std::fs::read(entry.path())
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Queued>(&b).ok())
                    {
                        Some(q) => {
                            seqs.insert(seq, q.subdevice);
                        }
                        None => {
                            tracing::error!(file = %entry.path().display(), "a queued report does not parse; moved aside");
                            let _ =
                                std::fs::rename(entry.path(), entry.path().with_extension("bad"));
                        }
                    }
                }
                None if file.ends_with(".tmp") => {
                    let _ = std::fs::remove_file(entry.path());
                }
                None => {}
            }
        }
        let next = seqs.keys().next_back().map_or(1, |s| s + 1);
        Ok(Self {
            dir: dir.to_path_buf(),
            max,
            state: Mutex::new((seqs, next)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (BTreeMap<u64, String>, u64)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `q` durably (synced before this returns), if the queue holds fewer than `max`
    /// reports and fewer than `share` of `q`'s sub-device.
    ///
    /// # Errors
    /// `Local` if the disk fails.
    pub fn push(&self, q: &Queued, share: usize) -> Result<Pushed, AgentError> {
        let mut st = self.lock();
        if st.0.len() >= self.max || st.0.values().filter(|s| **s == q.subdevice).count() >= share {
            return Ok(Pushed::Full);
        }
        let seq = st.1;
        let bytes =
            serde_json::to_vec(q).map_err(|e| AgentError::Local(format!("report queue: {e}")))?;
        write_atomic(&self.dir.join(name(seq)), &bytes)?;
        st.0.insert(seq, q.subdevice.clone());
        st.1 = seq + 1;
        Ok(Pushed::Queued)
    }

    /// The oldest reports, at most `limit`, in the order they were queued. A file that does
    /// not parse (the disk corrupted it) is moved aside as `<name>.bad` and skipped.
    pub fn oldest(&self, limit: usize) -> Vec<(u64, Queued)> {
        self.oldest_except(limit, &std::collections::HashSet::new())
    }

    /// As [`Queue::oldest`], leaving out the reports of the sub-devices in `except`.
    pub fn oldest_except(
        &self,
        limit: usize,
        except: &std::collections::HashSet<String>,
    ) -> Vec<(u64, Queued)> {
        let seqs: Vec<u64> = self
            .lock()
            .0
            .iter()
            .filter(|(_, s)| !except.contains(*s))
            .map(|(seq, _)| *seq)
            .take(limit)
            .collect();
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let path = self.dir.join(name(seq));
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(q) => out.push((seq, q)),
                None => {
                    tracing::error!(file = %path.display(), "a queued report does not parse; moved aside");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                    self.lock().0.remove(&seq);
                }
            }
        }
        out
    }

    /// Removes report `seq` (the server answered it), durably.
    ///
    /// # Errors
    /// `Local` if the disk fails (the report is then sent again: at least once).
    pub fn remove(&self, seq: u64) -> Result<(), AgentError> {
        let path = self.dir.join(name(seq));
        remove_if_present(&path)?;
        sync_dir(&path)?;
        self.lock().0.remove(&seq);
        Ok(())
    }

    /// Sets report `seq` aside in `refused/` (the server refused it for its sub-device's
    /// credential), durably; dropped instead when `refused/` already holds `max` files.
    /// Returns whether it was kept.
    ///
    /// # Errors
    /// `Local` if the disk fails (the report then stays queued).
    pub fn park(&self, seq: u64) -> Result<bool, AgentError> {
        let path = self.dir.join(name(seq));
        let aside = self.dir.join("refused");
        std::fs::create_dir_all(&aside)
            .map_err(|e| AgentError::Local(format!("{}: {e}", aside.display())))?;
        let held = std::fs::read_dir(&aside)
            .map(|d| d.take(self.max + 1).count())
            .unwrap_or(0);
        let kept = held < self.max;
        if kept {
            let to = aside.join(name(seq));
            std::fs::rename(&path, &to)
                .map_err(|e| AgentError::Local(format!("{}: {e}", path.display())))?;
            sync_dir(&to)?;
        } else {
            remove_if_present(&path)?;
        }
        sync_dir(&path)?;
        self.lock().0.remove(&seq);
        Ok(kept)
    }

    /// Reports queued.
    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    /// Whether none is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {

    use suitcase_protocol::{Outcome, Step};

    use super::*;

    fn q(n: u64) -> Queued {
        Queued {
            subdevice: "s1".into(),
            report: StepReport {
                release_id: "rel".into(),
                step: Step::Receive,
                outcome: Outcome::InProgress,
                reason: None,
                detail: None,
                progress: Some(n),
                started_at: None,
                log: None,
                suit_report: None,
                offline: false,
            },
        }
    }

    #[test]
    fn order_bound_and_restart_keep_every_report_once() {
        let t = tempfile::tempdir().unwrap();
        let queue = Queue::open(t.path(), 3).unwrap();
        for n in 0..3 {
            assert_eq!(queue.push(&q(n), 3).unwrap(), Pushed::Queued);
        }
        assert_eq!(queue.push(&q(9), 3).unwrap(), Pushed::Full);
        let first = queue.oldest(10);
        assert_eq!(
            first
                .iter()
                .map(|(_, x)| x.report.progress)
                .collect::<Vec<_>>(),
            vec![Some(0), Some(1), Some(2)]
        );
        queue.remove(first[0].0).unwrap();
        drop(queue);
        // A crash left a half-written file aside: it is not a report.
        std::fs::write(t.path().join("00000000000000000099.tmp"), b"{").unwrap();
        let queue = Queue::open(t.path(), 3).unwrap();
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.push(&q(3), 3).unwrap(), Pushed::Queued);
        let rest: Vec<_> = queue
            .oldest(10)
            .into_iter()
            .map(|(_, x)| x.report.progress)
            .collect();
        assert_eq!(rest, vec![Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn one_subdevice_cannot_take_the_others_share() {
        let t = tempfile::tempdir().unwrap();
        let queue = Queue::open(t.path(), 4).unwrap();
        assert_eq!(queue.push(&q(0), 2).unwrap(), Pushed::Queued);
        assert_eq!(queue.push(&q(1), 2).unwrap(), Pushed::Queued);
        assert_eq!(queue.push(&q(2), 2).unwrap(), Pushed::Full);
        let mut other = q(3);
        other.subdevice = "s2".into();
        assert_eq!(queue.push(&other, 2).unwrap(), Pushed::Queued);
        // The share survives a restart (whose each report is, is read from its file).
        drop(queue);
        let queue = Queue::open(t.path(), 4).unwrap();
        assert_eq!(queue.push(&q(4), 2).unwrap(), Pushed::Full);
        // Set aside: out of the queue, kept in refused/.
        let first = queue.oldest(1)[0].0;
        assert!(queue.park(first).unwrap());
        assert!(t.path().join("refused").join(name(first)).exists());
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.push(&q(5), 2).unwrap(), Pushed::Queued);
    }
}

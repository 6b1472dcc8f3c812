//! Downloads: a file of the offer fetched into the work area, resumed with `Range` and
//! `If-Range` from its last flushed byte, flushed and checkpointed every
//! [`super::CHECKPOINT_BYTES`], and cut when it runs slower than [`MinRate`].

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};

use super::{CHECKPOINT_BYTES, DownloadError, Http, MinRate, Pending, SendError};
use crate::error::{AgentError, local};
use crate::state::Download;

impl Http {
    /// Downloads `d` into `path`, resuming from `d.durable`. `checkpoint` is called after each
    /// flush with the updated state (the caller journals it).
    ///
    /// # Errors
    /// [`DownloadError`].
    pub async fn download(
        &self,
        d: &mut Download,
        path: &Path,
        checkpoint: &mut (dyn FnMut(&Download) -> Result<(), AgentError> + Send),
        progress: &mut (dyn FnMut(u64) -> Option<Pending> + Send),
    ) -> Result<(), DownloadError> {
        let what = format!("cannot write {}", path.display());
        let (mut file, restarted) = open_resumable(path, d)?;
        if restarted {
            d.etag = None;
        }

        let url = self.resolve(&d.url).map_err(DownloadError::Refused)?;
        let mut rb = self.client.get(url);
        let resuming = d.durable > 0 && d.etag.is_some();
        if resuming {
            rb = rb.header(RANGE, format!("bytes={}-", d.durable));
            if let Some(tag) = &d.etag {
                rb = rb.header(IF_RANGE, tag.as_str());
            }
        } else if d.durable > 0 {
            // No entity tag to resume safely with: start over.
            d.durable = 0;
            file.set_len(0).map_err(local(&what))?;
            file.seek(SeekFrom::Start(0)).map_err(local(&what))?;
        }
        let req = rb
            .build()
            .map_err(|e| DownloadError::Transient(format!("{}: {e}", d.url)))?;
        let rate = self.min_rate;
        // The answer's head (and any redirects) within one window: headers trickled a byte
        // per read timeout would otherwise hold the agent as long as a trickled body.
        let sent = tokio::time::timeout(rate.window, self.send(req))
            .await
            .map_err(|_| {
                DownloadError::Transient(format!(
                    "{}: no answer within {:?} (server.download_window_seconds: the slow-retrieval bound)",
                    d.url, rate.window
                ))
            })?;
        let mut resp = sent.map_err(|e| match e {
            SendError::Refused(m) => DownloadError::Refused(m),
            SendError::Net(e) => DownloadError::Transient(format!("{}: {e}", d.url)),
        })?;
        let status = resp.status();
        match status {
            StatusCode::OK => {
                if d.durable > 0 {
                    // If-Range did not match: the payload changed; the whole new one follows.
                    d.durable = 0;
                    d.restarts += 1;
                    file.set_len(0).map_err(local(&what))?;
                    file.seek(SeekFrom::Start(0)).map_err(local(&what))?;
                }
                d.etag = resp
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
            }
            StatusCode::PARTIAL_CONTENT => {
                let start = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(a, _)| a.trim().parse::<u64>().ok());
                if start != Some(d.durable) {
                    return Err(DownloadError::Transient(format!(
                        "{}: the server answered a range that does not start at byte {}",
                        d.url, d.durable
                    )));
                }
                d.resumes += 1;
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // Asked past the end: what we hold is at least the whole file; check it.
                d.durable = 0;
                d.etag = None;
                file.set_len(0).map_err(local(&what))?;
                return Err(DownloadError::Transient(format!(
                    "{}: range not satisfiable; downloading again",
                    d.url
                )));
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(DownloadError::Gone(format!(
                    "{}: the server no longer offers it (HTTP {status})",
                    d.url
                )));
            }
            s => {
                // TUF "slow retrieval" (RFC 9019 §4): an error body trickling in is bounded
                // by the same window as a payload, not only by the read timeout per byte.
                let answer = tokio::time::timeout(rate.window, self.error_answer(&d.url, s, resp))
                    .await
                    .map_or_else(
                        |_| {
                            format!(
                                "{}: HTTP {s}, and its error body did not arrive within the download window ({:?}): cut",
                                d.url, rate.window
                            )
                        },
                        |e| e.to_string(),
                    );
                return Err(DownloadError::Transient(answer));
            }
        }
        // Test hook: the next cut applies to the first transfer long enough to reach it.
        let left = d.size.saturating_sub(d.durable);
        let cut = self.cuts.lock().ok().and_then(|mut c| {
            if c.front().is_some_and(|n| *n < left) {
                c.pop_front()
            } else {
                None
            }
        });
        let mut this_transfer = 0u64;
        let mut since_flush = 0u64;
        // TUF "slow retrieval" (RFC 9019 §4 availability): at least `rate.bytes` in every
        // window, or the transfer is cut (what arrived is kept for the next attempt).
        // A window need not bring more than what is left of the file.
        let mut window_end = window_end_from_now(rate.window);
        let mut in_window = 0u64;
        let mut need = rate.bytes.get().min(d.size.saturating_sub(d.durable));
        loop {
            if tokio::time::Instant::now() >= window_end {
                if in_window < need {
                    flush(&mut file, d, &what)?;
                    checkpoint(d)?;
                    return Err(DownloadError::Transient(too_slow(
                        &d.url, in_window, rate, d.durable, d.size,
                    )));
                }
                in_window = 0;
                window_end = window_end_from_now(rate.window);
                need = rate
                    .bytes
                    .get()
                    .min(d.size.saturating_sub(d.durable + since_flush));
            }
            // Waiting for a chunk is cancel-safe: a frame not yet received stays in the body.
            let Ok(next) = tokio::time::timeout_at(window_end, resp.chunk()).await else {
                continue;
            };
            let chunk = match next {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    flush(&mut file, d, &what)?;
                    checkpoint(d)?;
                    return Err(DownloadError::Transient(format!(
                        "{}: transfer broke after {} bytes: {e}",
                        d.url, d.durable
                    )));
                }
            };
            let mut data: &[u8] = &chunk;
            if let Some(limit) = cut {
                let room =
                    usize::try_from(limit.saturating_sub(this_transfer)).unwrap_or(usize::MAX);
                data = data.get(..room.min(data.len())).unwrap_or_default();
            }
            let n = data.len() as u64;
            if d.durable + since_flush + n > d.size {
                return Err(DownloadError::Transient(format!(
                    "{}: the server sent more than the offered {} bytes",
                    d.url, d.size
                )));
            }
            file.write_all(data).map_err(local(&what))?;
            self.counters.received.fetch_add(n, Ordering::Relaxed);
            self.counters.download_body.fetch_add(n, Ordering::Relaxed);
            this_transfer += n;
            since_flush += n;
            in_window += n;
            // The caller decides whether this is worth a progress report (rarely: never per
            // chunk) and hands back the sending of it, done before the next chunk.
            if let Some(send) = progress(d.durable + since_flush) {
                send.await;
            }
            if since_flush >= CHECKPOINT_BYTES {
                file.sync_data().map_err(local(&what))?;
                d.durable += since_flush;
                since_flush = 0;
                checkpoint(d)?;
            }
            if cut.is_some_and(|limit| this_transfer >= limit) {
                file.sync_data().map_err(local(&what))?;
                d.durable += since_flush;
                checkpoint(d)?;
                return Err(DownloadError::Transient(format!(
                    "{}: connection cut after {this_transfer} bytes (injected fault)",
                    d.url
                )));
            }
        }
        file.sync_data().map_err(local(&what))?;
        d.durable += since_flush;
        if d.durable != d.size {
            checkpoint(d)?;
            return Err(DownloadError::Transient(format!(
                "{}: the transfer ended at {} of {} bytes",
                d.url, d.durable, d.size
            )));
        }
        Ok(())
    }
}

/// Why a download was cut for being too slow, naming the configured rate.
fn too_slow(url: &str, got: u64, rate: MinRate, held: u64, size: u64) -> String {
    format!(
        "{url}: too slow, {got} bytes in {:?}; a download must receive at least {} bytes in every {:?} (server.download_min_bytes per server.download_window_seconds: the slow-retrieval bound); cut at {held} of {size} bytes, kept for the next attempt",
        rate.window,
        rate.bytes.get(),
        rate.window
    )
}

fn flush(file: &mut std::fs::File, d: &mut Download, what: &str) -> Result<(), AgentError> {
    file.flush().map_err(local(what))?;
    file.sync_data().map_err(local(what))?;
    let len = file.metadata().map_err(local(what))?.len();
    d.durable = len.min(d.size);
    Ok(())
}

/// Opens the partial download `path` to go on at `d.durable`: bytes past the last flush are
/// dropped (after a power cut they may be garbage), and a file shorter than what was flushed
/// (it lost data, or was replaced) starts again from 0 (`true`: restarted).
///
/// # Errors
/// `Local`, naming the file.
pub(crate) fn open_resumable(
    path: &Path,
    d: &mut Download,
) -> Result<(std::fs::File, bool), DownloadError> {
    let what = format!("cannot write {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(local(&what))?;
    let on_disk = file.metadata().map_err(local(&what))?.len();
    let restarted = on_disk < d.durable;
    if restarted {
        d.durable = 0;
    }
    file.set_len(d.durable).map_err(local(&what))?;
    file.seek(SeekFrom::Start(d.durable))
        .map_err(local(&what))?;
    Ok((file, restarted))
}

/// SHA-256 of a file, hex, read in chunks.
///
/// # Errors
/// [`AgentError::Local`].
pub fn sha256_file(path: &Path) -> Result<String, AgentError> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let what = format!("cannot read {}", path.display());
    let mut f = std::fs::File::open(path).map_err(local(&what))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(local(&what))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(h.finalize()))
}

/// The end of a window starting now. `Instant + Duration` panics on overflow: a window too
/// long for the clock (the config refuses more than a day; a library caller may build any
/// [`super::MinRate`]) ends a year from now instead.
fn window_end_from_now(window: core::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(window)
        .or_else(|| now.checked_add(core::time::Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

//! Every external bootloader command (and the update modules' commands) runs here: with a
//! timeout, in its own process group (killed whole on timeout), its output read up to
//! [`MAX_OUTPUT`] bytes.

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::MAX_OUTPUT;

/// Runs `argv` (stdin: `input` or nothing; `env` added) for at most `timeout`; returns its
/// stdout (up to [`MAX_OUTPUT`] bytes, lossy UTF-8).
///
/// # Errors
/// It could not start (named), timed out (killed), or exited non-zero (with the first 300
/// characters of its stderr).
pub fn run(
    argv: &[String],
    input: Option<&[u8]>,
    env: &[(String, String)],
    timeout: Duration,
    what: &str,
) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err(format!("{what}: no command configured"));
    };
    let mut child = Command::new(program)
        // Its own process group, so that a timeout kills what it started too (a helper left
        // behind would hold the output pipes open).
        .process_group(0)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{what}: {program} not found on this device")
            } else {
                format!("{what}: cannot start {program}: {e}")
            }
        })?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small (a few variables): fits the pipe buffer, so this cannot block for long; a
        // child that exits without reading is a write error, reported by its exit status.
        let _ = stdin.write_all(bytes);
    }
    let out = child.stdout.take().map(capped_reader);
    let err = child.stderr.take().map(capped_reader);
    let deadline = Instant::now() + timeout;
    let kill = |child: &mut std::process::Child| {
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_child(child),
            rustix::process::Signal::KILL,
        );
        let _ = child.kill();
        let _ = child.wait();
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                kill(&mut child);
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                kill(&mut child);
                return Err(format!("{what}: waiting for {program}: {e}"));
            }
        }
    };
    // The output, waited for until the same deadline (plus a moment for the pipes to drain):
    // a process the command left running may hold them open.
    let grace = deadline.max(Instant::now()) + Duration::from_millis(200);
    let collect = |rx: Option<std::sync::mpsc::Receiver<String>>| {
        rx.and_then(|rx| {
            rx.recv_timeout(grace.saturating_duration_since(Instant::now()))
                .ok()
        })
        .unwrap_or_default()
    };
    let stdout = collect(out);
    let stderr = collect(err);
    let Some(status) = status else {
        return Err(format!(
            "{what}: {program} did not finish within {:.1} s and was killed",
            timeout.as_secs_f64()
        ));
    };
    if !status.success() {
        let msg: String = stderr.trim().chars().take(300).collect();
        return Err(format!(
            "{what}: {program} {}{}",
            status.code().map_or_else(
                || "was killed by a signal".to_owned(),
                |c| format!("exited with {c}")
            ),
            if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            }
        ));
    }
    Ok(stdout)
}

/// Reads up to [`MAX_OUTPUT`] bytes on a thread, then discards the rest until the pipe closes
/// (so the child never blocks on a full pipe; the caller's timeout bounds it).
fn capped_reader<R: std::io::Read + Send + 'static>(mut r: R) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut r).take(MAX_OUTPUT as u64).read_to_end(&mut buf);
        // The first MAX_OUTPUT bytes are what the caller gets; it need not wait for the rest.
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    rx
}

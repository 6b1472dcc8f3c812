//! Hook commands (consent, restart, reboot, health check): run with a timeout, the update
//! described in environment variables, stdin closed, output inherited; or, for the commands
//! whose failure ends an update (health check, restart), output captured so that its end
//! goes with the failure report ([`run_captured`]).

use std::time::Duration;

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code (`None`: killed by a signal).
    Code(Option<i32>),
    /// It ran past the timeout and was killed.
    TimedOut,
    /// It could not be started.
    NotStarted(String),
}

impl Exit {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        *self == Self::Code(Some(0))
    }

    /// For reports.
    pub fn describe(&self, what: &str) -> String {
        match self {
            Self::Code(Some(c)) => format!("{what} exited with {c}"),
            Self::Code(None) => format!("{what} was killed by a signal"),
            Self::TimedOut => format!("{what} did not finish in time and was killed"),
            Self::NotStarted(e) => format!("{what} could not be started: {e}"),
        }
    }
}

/// `program args` with `env` added and stdin closed, killed if dropped.
fn command(program: &str, args: &[String], env: &[(String, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Waits for `child` for at most `timeout`, then kills it.
async fn wait(child: &mut tokio::process::Child, program: &str, timeout: Duration) -> Exit {
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Exit::Code(status.code()),
        Ok(Err(e)) => Exit::NotStarted(format!("{program}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Exit::TimedOut
        }
    }
}

/// Runs `argv` with `env` added, for at most `timeout`.
pub async fn run(argv: &[String], env: &[(String, String)], timeout: Duration) -> Exit {
    let Some((program, args)) = argv.split_first() else {
        return Exit::Code(Some(0));
    };
    match command(program, args, env).spawn() {
        Ok(mut child) => wait(&mut child, program, timeout).await,
        Err(e) => Exit::NotStarted(format!("{program}: {e}")),
    }
}

/// The most bytes of a command's output a failure report carries (its end). The agent holds
/// at most twice this of a command's output, however much it writes (RFC 9124
/// REQ.SEC.RESOURCE-EXHAUSTION: nothing the device reads is unbounded).
pub const LOG_TAIL_MAX: usize = 8 * 1024;

/// Runs `argv` like [`run`], with its standard output and error captured: the exit, and the
/// last [`LOG_TAIL_MAX`] bytes of what it wrote (both streams, as they came), with anything
/// that looks like a token redacted ([`redact`]). The output is also logged. A command that
/// leaves a child holding its output open (a daemon started in the background) is not waited
/// for beyond its own exit.
pub async fn run_captured(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> (Exit, String) {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncReadExt as _;
    let Some((program, args)) = argv.split_first() else {
        return (Exit::Code(Some(0)), String::new());
    };
    let mut cmd = command(program, args, env);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Exit::NotStarted(format!("{program}: {e}")), String::new()),
    };
    // The raw tail: twice what is kept, so that redaction sees whole tokens.
    let tail: Arc<Mutex<(Vec<u8>, bool)>> = Arc::new(Mutex::new((Vec::new(), false)));
    let mut readers = Vec::new();
    let outs: [Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>; 2] = [
        child.stdout.take().map(|o| Box::new(o) as _),
        child.stderr.take().map(|o| Box::new(o) as _),
    ];
    for mut out in outs.into_iter().flatten() {
        let tail = tail.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf).await {
                let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
                    break;
                };
                if let Ok(mut t) = tail.lock() {
                    t.0.extend_from_slice(chunk);
                    let over = t.0.len().saturating_sub(2 * LOG_TAIL_MAX);
                    if over > 0 {
                        t.0.drain(..over);
                        t.1 = true;
                    }
                }
            }
        }));
    }
    let exit = wait(&mut child, program, timeout).await;
    // What it wrote just before it ended; not what a child it left behind writes later.
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout(Duration::from_millis(200), r)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    let (raw, cut) = tail.lock().map(|t| t.clone()).unwrap_or_default();
    let mut text = String::from_utf8_lossy(&raw).into_owned();
    if cut {
        // The first line may be the end of a token: drop it.
        text = text
            .split_once('\n')
            .map_or_else(String::new, |(_, rest)| rest.to_owned());
    }
    let text = clip_tail(&redact(&text), LOG_TAIL_MAX);
    if !text.is_empty() {
        tracing::info!("{program} wrote: {text}");
    }
    (exit, text)
}

/// The last `max` bytes of `s` (at a character boundary).
pub fn clip_tail(s: &str, max: usize) -> String {
    let mut from = s.len().saturating_sub(max);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    s.get(from..).unwrap_or_default().to_owned()
}

/// `s` with anything that looks like a credential replaced by `***`: suitcase tokens
/// (`sct_...`) and what follows `Bearer ` (any case). A command's output goes to the log and
/// to the server with the failure report, where the device's bearer token must not appear
/// (RFC 6750 §5.3: "ensure that bearer tokens are not leaked to unintended parties").
pub fn redact(s: &str) -> String {
    let token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '~' | '+' | '/' | '=');
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let lower = rest.to_ascii_lowercase();
        let next = ["sct_", "bearer "]
            .iter()
            .filter_map(|p| lower.find(p).map(|i| (i, p.len())))
            .min_by_key(|x| x.0);
        let Some((i, len)) = next else {
            out.push_str(rest);
            return out;
        };
        let (before, after) = rest.split_at(i);
        let (prefix, after) = after.split_at(len);
        out.push_str(before);
        out.push_str(prefix);
        let secret = after.find(|c: char| !token_char(c)).unwrap_or(after.len());
        out.push_str("***");
        rest = after.get(secret..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(
            redact("token sct_d_AbC-123 and Authorization: bearer eyJ.x_y; done"),
            "token sct_*** and Authorization: bearer ***; done"
        );
        assert_eq!(redact("no secrets"), "no secrets");
        assert_eq!(clip_tail("aé", 1), "");
        assert_eq!(clip_tail("abc", 2), "bc");
    }
}

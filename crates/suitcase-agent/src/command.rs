//! Hook commands (consent, restart, reboot, health check): run with a timeout, the update
//! described in environment variables, stdin closed, output inherited.

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

/// Runs `argv` with `env` added, for at most `timeout`.
pub async fn run(argv: &[String], env: &[(String, String)], timeout: Duration) -> Exit {
    let Some((program, args)) = argv.split_first() else {
        return Exit::Code(Some(0));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Exit::NotStarted(format!("{program}: {e}")),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Exit::Code(status.code()),
        Ok(Err(e)) => Exit::NotStarted(format!("{program}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Exit::TimedOut
        }
    }
}

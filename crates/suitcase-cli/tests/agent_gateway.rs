//! `suitcase agent` starts the gateway of its `[gateway]` section (docs/gateway.md): alone with
//! `--gateway`, beside the agent's own update loop without it; and `--gateway` on a
//! configuration without the section is refused, naming what to add. The gateway's behaviour
//! (relay, cache, report queue) is tested in suitcase-agent's tests/gateway.rs; this is the
//! command line's wiring, with the real binary.

#![expect(clippy::unwrap_used, clippy::std_instead_of_core, reason = "test code")]

mod common;

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A device directory whose agent.toml has a `[gateway]` with one sub-device on a UNIX
/// socket in that directory; the server is a closed port (the gateway must start anyway:
/// serving while the server is away is its purpose).
fn device(dir: &Path, gateway: bool) {
    common::es256_key(dir, "author");
    let section = if gateway {
        format!(
            "[gateway]\n[[gateway.subdevice]]\nid = \"pump-1\"\nsocket = \"{}\"\ntoken = \"sct_d_x\"\n",
            dir.join("pump-1.sock").display()
        )
    } else {
        String::new()
    };
    std::fs::write(
        dir.join("agent.toml"),
        common::agent_toml("http://127.0.0.1:9", "t", &section, ""),
    )
    .unwrap();
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `suitcase agent --config agent.toml ARGS` in `dir` and waits (at most 30 s) until
/// the sub-device's socket accepts a connection.
fn socket_accepts(dir: &Path, args: &[&str]) {
    let child = Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(dir)
        .args(["agent", "--config", "agent.toml"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let sock = dir.join("pump-1.sock");
    let start = Instant::now();
    loop {
        if UnixStream::connect(&sock).is_ok() {
            break;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "suitcase agent {args:?} exited before its gateway listened"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "suitcase agent {args:?}: no gateway socket at {} after 30 s",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agent_gateway_flag_runs_the_gateway_alone() {
    let dir = tempfile::tempdir().unwrap();
    device(dir.path(), true);
    socket_accepts(dir.path(), &["--gateway"]);
}

#[test]
fn agent_forever_runs_the_gateway_beside_its_own_updates() {
    let dir = tempfile::tempdir().unwrap();
    device(dir.path(), true);
    socket_accepts(dir.path(), &[]);
}

#[test]
fn agent_gateway_flag_without_a_gateway_section_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    device(dir.path(), false);
    let (code, _, out) = common::run(
        Command::new(env!("CARGO_BIN_EXE_suitcase"))
            .current_dir(dir.path())
            .args(["agent", "--config", "agent.toml", "--gateway"]),
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("--gateway needs a [gateway] section"), "{out}");
    assert!(out.contains("docs/gateway.md"), "{out}");
}

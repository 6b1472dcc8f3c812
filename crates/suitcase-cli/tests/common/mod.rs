//! What the CLI integration tests share: running the `suitcase` binary and generating keys.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code; not every test file uses every helper"
)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `suitcase ARGS` in `dir`: (exit code, stdout as JSON or null, stdout + stderr).
pub fn suitcase(dir: &Path, args: &[&str]) -> (i32, Value, String) {
    run(Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(dir)
        .args(args))
}

/// Runs `cmd`: (exit code, stdout as JSON or null, stdout + stderr).
pub fn run(cmd: &mut Command) -> (i32, Value, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Runs `suitcase ARGS` in `dir`, which must succeed; returns its JSON output.
pub fn ok(dir: &Path, args: &[&str]) -> Value {
    let (code, json, out) = suitcase(dir, args);
    assert_eq!(code, 0, "suitcase {args:?}:\n{out}");
    json
}

/// `suitcase key generate --alg ALG -o NAME --public NAME.pub` (small HSS trees, so quantum
/// tier keys take milliseconds).
pub fn keygen(dir: &Path, alg: &str, name: &str) {
    ok(
        dir,
        &[
            "key",
            "generate",
            "--alg",
            alg,
            "--hss-params",
            "h5w4",
            "-o",
            name,
            "--public",
            &format!("{name}.pub"),
            "--json",
        ],
    );
}

/// `suitcase key generate --alg es256 -o NAME.key --public NAME.pub`: a software key file.
pub fn es256_key(dir: &Path, name: &str) {
    ok(
        dir,
        &[
            "key",
            "generate",
            "--alg",
            "es256",
            "-o",
            &format!("{name}.key"),
            "--public",
            &format!("{name}.pub"),
        ],
    );
}

/// `suitcase release build` of the one image `app.bin` (vendor example.com, class `class`,
/// sequence number `sequence`), then `rest`: how the image is reached, the signers, the output.
pub fn build_args<'a>(class: &'a str, sequence: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "release",
        "build",
        "--image",
        "app.bin",
        "--vendor",
        "example.com",
        "--class",
        class,
        "--sequence",
        sequence,
    ];
    args.extend_from_slice(rest);
    args
}

/// `suitcase release sign app.suit --key KEY -o OUT`.
pub fn sign_args<'a>(key: &'a str, out: &'a str) -> [&'a str; 7] {
    ["release", "sign", "app.suit", "--key", key, "-o", out]
}

/// `suitcase trust update` of docs/trust.md's signer rotation on `trust.cbor`: author2 added,
/// author1 revoked, signed by root1 and root2; the update in `update-1.suit`, the state after
/// it in `trust-1.cbor`.
pub const ROTATE_AUTHOR_ARGS: [&str; 16] = [
    "trust",
    "update",
    "--state",
    "trust.cbor",
    "--add-signer",
    "author2.pub",
    "--revoke",
    "author1.pub",
    "--sign",
    "root1.key",
    "--sign",
    "root2.key",
    "--out",
    "update-1.suit",
    "--state-out",
    "trust-1.cbor",
];

/// `suitcase manifest check ENVELOPE --trust T… --threshold N`.
pub fn check_args<'a>(envelope: &'a str, trust: &[&'a str], threshold: &'a str) -> Vec<&'a str> {
    let mut args = vec!["manifest", "check", envelope];
    for t in trust {
        args.extend(["--trust", t]);
    }
    args.extend(["--threshold", threshold]);
    args
}

/// An `agent.toml` for a device that takes [`ServerProcess::release`]'s releases from `base`
/// with `token`: state in `state`, trust in `author.pub`, push off, one file component `app`
/// (id `617070`, slots `app-a.bin` / `app-b.bin`). `sections` (a `[health]` table, …) come
/// before the component table, `component` lines (`activate = …`) go into it.
pub fn agent_toml(base: &str, token: &str, sections: &str, component: &str) -> String {
    format!(
        r#"
state_dir = "state"
[server]
url = "{base}"
token = "{token}"
[trust]
anchors = ["author.pub"]
[identity]
vendor = "example.com"
class = "thermostat"
[push]
enabled = false
{sections}[[component]]
name = "app"
id = "617070"
kind = "file"
slots = ["app-a.bin", "app-b.bin"]
pointer = "app.slot"
capacity = 1048576
{component}"#
    )
}

/// Runs `suitcase agent --once --config agent.toml` in the device directory `ddir`.
pub fn agent_once(ddir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(ddir)
        .args(["agent", "--once", "--config", "agent.toml"])
        .output()
        .unwrap()
}

/// A `suitcase server` child process on a free loopback port, its data in `dir`; killed when
/// dropped. `fleet` commands run against it with the first admin token.
pub struct ServerProcess {
    child: std::process::Child,
    pub base: String,
    pub admin: String,
}

/// A loopback TCP port nothing listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// As [`Self::start`], with more `suitcase server` flags.
    pub fn start_with(dir: &Path, flags: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_suitcase"))
            .current_dir(dir)
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let token_file = dir.join("suitcase-data/admin-token");
        for _ in 0..600 {
            if token_file.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(core::time::Duration::from_millis(50));
        }
        let admin = std::fs::read_to_string(&token_file)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_owned();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin,
        }
    }

    /// `suitcase ARGS` in `dir`, with SUITCASE_SERVER and SUITCASE_TOKEN set for this server.
    pub fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_suitcase"));
        c.current_dir(dir)
            .env("SUITCASE_SERVER", &self.base)
            .env("SUITCASE_TOKEN", &self.admin)
            .args(args);
        c
    }

    /// Runs `suitcase ARGS`, which must succeed; returns its stdout.
    pub fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.command(dir, args).output().unwrap();
        assert!(
            out.status.success(),
            "suitcase {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Registers an author key, builds and uploads a one-image release of `image` (component
    /// `617070`, vendor example.com, class thermostat) with sequence number `sequence`;
    /// returns the release id. The key is `author` / `author.pub` in `dir`.
    pub fn release(&self, dir: &Path, sequence: u64, image: &[u8]) -> String {
        if !dir.join("author.pub").exists() {
            keygen(dir, "es256", "author");
            self.ok(dir, &["fleet", "key", "add", "author", "author.pub"]);
        }
        let bin = format!("app-{sequence}.bin");
        let suit = format!("app-{sequence}.suit");
        std::fs::write(dir.join(&bin), image).unwrap();
        self.ok(
            dir,
            &[
                "release",
                "build",
                "--image",
                &bin,
                "--component",
                "617070",
                "--vendor",
                "example.com",
                "--class",
                "thermostat",
                "--sequence",
                &sequence.to_string(),
                "--uri",
                &format!("https://fw.example/{bin}"),
                "--profile",
                "basic",
                "--sign",
                "author",
                "-o",
                &suit,
            ],
        );
        let rel: Value = serde_json::from_str(&self.ok(
            dir,
            &[
                "fleet",
                "--json",
                "release",
                "upload",
                &suit,
                "--payload",
                &bin,
            ],
        ))
        .unwrap();
        rel["id"].as_str().unwrap().to_owned()
    }

    /// The device directory `dir/NAME`, with a copy of `author.pub` and an [`agent_toml`] for
    /// this server and `token` (`sections` as there).
    pub fn agent_dir(
        &self,
        dir: &Path,
        name: &str,
        token: &str,
        sections: &str,
    ) -> std::path::PathBuf {
        let ddir = dir.join(name);
        std::fs::create_dir_all(&ddir).unwrap();
        std::fs::copy(dir.join("author.pub"), ddir.join("author.pub")).unwrap();
        std::fs::write(
            ddir.join("agent.toml"),
            agent_toml(&self.base, token, sections, ""),
        )
        .unwrap();
        ddir
    }

    /// `fleet campaign create --release RELEASE --device DEVICE --start`: one device's update,
    /// offered at once; returns the command's stdout.
    pub fn start_campaign(&self, dir: &Path, release: &str, device: &str) -> String {
        self.ok(
            dir,
            &[
                "fleet",
                "campaign",
                "create",
                "--release",
                release,
                "--device",
                device,
                "--start",
            ],
        )
    }

    /// Registers a device; returns (id, token).
    pub fn device(&self, dir: &Path, name: &str) -> (String, String) {
        let d: Value =
            serde_json::from_str(&self.ok(dir, &["fleet", "--json", "device", "add", name]))
                .unwrap();
        (
            d["id"].as_str().unwrap().to_owned(),
            d["token"].as_str().unwrap().to_owned(),
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

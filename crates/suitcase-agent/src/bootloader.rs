//! Bootloader backends for A/B file-slot components: who decides which slot boots.
//!
//! The agent keeps its own record of the slots in the pointer file (`active`, `confirmed`,
//! `slots.rs`); with `bootloader = "pointer"` that file is all there is, and the integrator's
//! boot script reads it. With `uboot` or `grub` the agent also drives the bootloader's
//! environment, and with `custom` it runs the integrator's commands:
//!
//! | operation | when | U-Boot / GRUB environment afterwards |
//! |---|---|---|
//! | [`Backend::revert`] to `from` (also *prepare*, before Apply writes `to`) | Apply; undo | `BOOT_ORDER="FROM TO"`, `BOOT_FROM_LEFT=tries`, `BOOT_TO_LEFT=0` |
//! | [`Backend::trial`] of `to` | Activate | `BOOT_ORDER="TO FROM"`, both `LEFT=tries` |
//! | [`Backend::confirm`] of `to` | Clean-up; every agent start with no slot on trial (mark good) | `BOOT_ORDER="TO FROM"`, `BOOT_TO_LEFT=tries` (the other counter unchanged: `tries` after an update, 0 after a revert) |
//! | [`Backend::status`] | Distribute; Activate after the reboot | reads `booted` (kernel command line `suitcase.slot=`) and `next` |
//!
//! The boot scripts (`docs/bootloaders/uboot-boot.cmd`, `docs/bootloaders/grub.cfg`) take
//! the first slot of `BOOT_ORDER` whose `BOOT_x_LEFT` is above 0, decrement that counter,
//! save the environment and boot the slot with `suitcase.slot=x` on the kernel command line.
//! So a trial slot that never comes up is tried `tries` times, then the other slot boots
//! ("fallback"), and the agent, running on the old slot, sees `booted != to` and `next != to`.
//! The variable contract is documented in `docs/bootloaders.md`.
//!
//! Every external command runs with a timeout, its output read up to [`MAX_OUTPUT`] bytes.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod exec;

pub use exec::run;

/// The environment variable holding the boot order ("A B" or "B A").
pub const ORDER_VAR: &str = "BOOT_ORDER";
/// The environment variables holding the boot attempts left for slot A and slot B.
pub const LEFT_VARS: [&str; 2] = ["BOOT_A_LEFT", "BOOT_B_LEFT"];
/// The slot names in the environment and on the kernel command line.
pub const ENV_SLOTS: [&str; 2] = ["A", "B"];
/// The kernel command-line parameter that names the booted slot (`suitcase.slot=A`).
pub const CMDLINE_KEY: &str = "suitcase.slot";
/// The GRUB environment block the GRUB backend edits unless `grubenv` names another.
pub const DEFAULT_GRUBENV: &str = "/boot/grub/grubenv";
/// The order and count the boot scripts assume when a variable is not set (first boot), and
/// the count they restore when no slot has attempts left.
pub const DEFAULT_ORDER: &str = "A B";
/// See [`DEFAULT_ORDER`].
pub const DEFAULT_TRIES: u8 = 3;
/// The most attempts per slot: the GRUB script decrements through a table (GRUB script has
/// no arithmetic) and U-Boot's `setexpr` computes in hexadecimal, so counts stay one
/// decimal digit, where both agree.
pub const MAX_TRIES: u8 = 9;
/// Bytes of a command's stdout (and, separately, stderr) the agent reads; the rest is
/// discarded (a U-Boot environment is at most a few hundred KiB, the variables we need are
/// a few bytes; RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION: nothing the device reads is unbounded).
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Which bootloader switches the slots of a file-slot component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The pointer file alone (the integrator's boot script or service reads it).
    Pointer,
    /// U-Boot's environment through `fw_printenv` / `fw_setenv` (libubootenv).
    Uboot(EnvBackend),
    /// GRUB's environment block through `grub-editenv`.
    Grub(EnvBackend),
    /// The integrator's commands.
    Custom(CustomBackend),
}

/// Settings shared by the U-Boot and GRUB backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvBackend {
    /// U-Boot: the `fw_env.config` passed as `-c` (none: the tools' default,
    /// `/etc/fw_env.config`). GRUB: the `grubenv` file.
    pub file: Option<PathBuf>,
    /// Boot attempts a slot gets (1..=[`MAX_TRIES`]).
    pub tries: u8,
    /// Where the kernel command line is read (`/proc/cmdline`).
    pub cmdline: PathBuf,
    /// Per command.
    pub timeout: Duration,
}

/// The integrator's commands (argv), with `SUITCASE_SLOT` naming the slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomBackend {
    /// Prints `booted=a|b` and `next=a|b|none`.
    pub status: Vec<String>,
    /// Makes `SUITCASE_SLOT` boot next, on trial, the other slot as the fallback.
    pub trial: Vec<String>,
    /// Marks `SUITCASE_SLOT` good.
    pub confirm: Vec<String>,
    /// Makes `SUITCASE_SLOT` boot, the other slot not bootable.
    pub revert: Vec<String>,
    /// Per command.
    pub timeout: Duration,
}

/// What the bootloader says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootState {
    /// The slot the running system booted from (0 = a, 1 = b).
    pub booted: usize,
    /// The slot the bootloader will boot next (none: no slot has attempts left).
    pub next: Option<usize>,
    /// Attempts left per slot, when the backend counts.
    pub left: [Option<u8>; 2],
    /// The raw state, for messages (`BOOT_ORDER="B A" BOOT_A_LEFT=3 BOOT_B_LEFT=0`).
    pub detail: String,
}

impl Backend {
    /// `pointer`, `uboot`, `grub` or `custom`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pointer => "pointer",
            Self::Uboot(_) => "uboot",
            Self::Grub(_) => "grub",
            Self::Custom(_) => "custom",
        }
    }

    /// The attempts a slot gets, for the backends that count.
    pub fn tries(&self) -> Option<u8> {
        match self {
            Self::Uboot(e) | Self::Grub(e) => Some(e.tries),
            _ => None,
        }
    }

    /// Reads the boot state. `None` for the pointer backend (the pointer file is the state).
    ///
    /// # Errors
    /// What is wrong and what to do: a missing tool, an unreadable environment, a variable
    /// with an unexpected value, a kernel command line without `suitcase.slot=`.
    pub fn status(&self, slot_paths: &[PathBuf; 2]) -> Result<Option<BootState>, String> {
        match self {
            Self::Pointer => Ok(None),
            Self::Uboot(e) | Self::Grub(e) => {
                let vars = self.read_env(e)?;
                let booted = booted_slot(&e.cmdline)?;
                let (order, left) = parse_env(&vars, self.what())?;
                let next = order
                    .iter()
                    .copied()
                    .find(|&s| left.get(s).copied().unwrap_or(0) > 0);
                let detail = format!(
                    "{ORDER_VAR}=\"{}\" {}={} {}={}",
                    order
                        .iter()
                        .map(|&s| ENV_SLOTS.get(s).copied().unwrap_or("?"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    LEFT_VARS[0],
                    left[0],
                    LEFT_VARS[1],
                    left[1],
                );
                Ok(Some(BootState {
                    booted,
                    next,
                    left: [Some(left[0]), Some(left[1])],
                    detail,
                }))
            }
            Self::Custom(c) => {
                let out = run(
                    &c.status,
                    None,
                    &slot_env(None, slot_paths),
                    c.timeout,
                    "the bootloader status command",
                )?;
                parse_custom_status(&out).map(Some)
            }
        }
    }

    /// Before Apply writes `to`: make it unbootable (it is about to hold a partial image), and
    /// keep `from` first. The same as [`Backend::revert`] to `from`.
    ///
    /// # Errors
    /// As [`Backend::status`].
    pub fn prepare(&self, from: usize, slot_paths: &[PathBuf; 2]) -> Result<(), String> {
        match self {
            Self::Pointer => Ok(()),
            _ => self.revert(from, slot_paths),
        }
    }

    /// Activate: `to` boots next, on trial, for `tries` attempts; the other slot stays the
    /// fallback with `tries` attempts.
    ///
    /// # Errors
    /// As [`Backend::status`].
    pub fn trial(&self, to: usize, slot_paths: &[PathBuf; 2]) -> Result<(), String> {
        match self {
            Self::Pointer => Ok(()),
            Self::Uboot(e) | Self::Grub(e) => self.set(e, to, e.tries, Some(e.tries)),
            Self::Custom(c) => run(
                &c.trial,
                None,
                &slot_env(Some(to), slot_paths),
                c.timeout,
                "the bootloader trial command",
            )
            .map(drop),
        }
    }

    /// Clean-up (and every agent start with no slot on trial, as "mark good"): `to` is good; its attempts are
    /// restored, the other slot stays the fallback.
    ///
    /// # Errors
    /// As [`Backend::status`].
    pub fn confirm(&self, to: usize, slot_paths: &[PathBuf; 2]) -> Result<(), String> {
        match self {
            Self::Pointer => Ok(()),
            Self::Uboot(e) | Self::Grub(e) => self.set(e, to, e.tries, None),
            Self::Custom(c) => run(
                &c.confirm,
                None,
                &slot_env(Some(to), slot_paths),
                c.timeout,
                "the bootloader confirm command",
            )
            .map(drop),
        }
    }

    /// Undo: `to` boots (with `tries` attempts), the other slot is not bootable.
    ///
    /// # Errors
    /// As [`Backend::status`].
    pub fn revert(&self, to: usize, slot_paths: &[PathBuf; 2]) -> Result<(), String> {
        match self {
            Self::Pointer => Ok(()),
            Self::Uboot(e) | Self::Grub(e) => self.set(e, to, e.tries, Some(0)),
            Self::Custom(c) => run(
                &c.revert,
                None,
                &slot_env(Some(to), slot_paths),
                c.timeout,
                "the bootloader revert command",
            )
            .map(drop),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Self::Grub(_) => "the GRUB environment",
            _ => "the U-Boot environment",
        }
    }

    /// Sets `BOOT_ORDER="FIRST OTHER"`, `LEFT(first) = first_left` and, if given,
    /// `LEFT(other) = other_left`, in one write, and reads it back.
    fn set(
        &self,
        e: &EnvBackend,
        first: usize,
        first_left: u8,
        other_left: Option<u8>,
    ) -> Result<(), String> {
        let first = first.min(1);
        let other = 1 - first;
        let order = format!("{} {}", ENV_SLOTS[first], ENV_SLOTS[other]);
        let mut want = vec![
            (ORDER_VAR, order),
            (LEFT_VARS[first], first_left.to_string()),
        ];
        if let Some(n) = other_left {
            want.push((LEFT_VARS[other], n.to_string()));
        }
        want.sort_by_key(|(k, _)| *k);
        match self {
            Self::Uboot(_) => {
                // One script on stdin: libubootenv applies it as one environment write, so a
                // power cut leaves the old or the new environment, never half of it.
                let script: String = want.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                let mut argv = vec!["fw_setenv".to_owned()];
                argv.extend(config_arg(e));
                argv.extend(["-s".to_owned(), "-".to_owned()]);
                run(&argv, Some(script.as_bytes()), &[], e.timeout, "fw_setenv")
                    .map_err(|m| format!("{m}{}", install_hint("fw_setenv", "libubootenv-tool")))?;
            }
            _ => {
                let file = grubenv(e)?;
                let mut argv = vec![
                    "grub-editenv".to_owned(),
                    file.display().to_string(),
                    "set".to_owned(),
                ];
                argv.extend(want.iter().map(|(k, v)| format!("{k}={v}")));
                run(&argv, None, &[], e.timeout, "grub-editenv")
                    .map_err(|m| format!("{m}{}", install_hint("grub-editenv", "grub-common")))?;
            }
        }
        // Read back: a tool that accepts the command but writes elsewhere (another
        // fw_env.config, u-boot-tools' fw_setenv reading scripts as "name value") must not
        // pass for a switched slot.
        let got = self.read_env(e)?;
        for (k, v) in &want {
            let have = lookup(&got, k);
            if have != Some(v.as_str()) {
                return Err(format!(
                    "{} was written but reads back {k}={} instead of {k}={v}: check that the \
                     tool writes the environment the bootloader reads ({}), and that fw_setenv \
                     is libubootenv's (Debian libubootenv-tool), which reads \"name=value\" scripts",
                    self.what(),
                    have.unwrap_or("(not set)"),
                    self.file_name(e),
                ));
            }
        }
        Ok(())
    }

    fn file_name(&self, e: &EnvBackend) -> String {
        match (self, &e.file) {
            (Self::Grub(_), Some(f)) => f.display().to_string(),
            (_, Some(f)) => format!("fw_env.config {}", f.display()),
            (_, None) => "fw_env.config /etc/fw_env.config".to_owned(),
        }
    }

    /// All variables, as `name=value` lines.
    fn read_env(&self, e: &EnvBackend) -> Result<Vec<(String, String)>, String> {
        let out = match self {
            Self::Uboot(_) => {
                if let Some(f) = &e.file
                    && let Err(err) = std::fs::metadata(f)
                {
                    return Err(format!(
                        "cannot read the fw_env.config {}: {err}; it names the device (or file), \
                         offset and size of the U-Boot environment (docs/bootloaders.md)",
                        f.display()
                    ));
                }
                let mut argv = vec!["fw_printenv".to_owned()];
                argv.extend(config_arg(e));
                run(&argv, None, &[], e.timeout, "fw_printenv").map_err(|m| {
                    format!(
                        "{m}{}; if the environment is not initialised yet, boot once with the \
                         suitcase boot script or write it with fw_setenv -f DEFAULTS \
                         (docs/bootloaders.md)",
                        install_hint("fw_printenv", "libubootenv-tool")
                    )
                })?
            }
            _ => {
                let file = grubenv(e)?;
                run(
                    &[
                        "grub-editenv".to_owned(),
                        file.display().to_string(),
                        "list".to_owned(),
                    ],
                    None,
                    &[],
                    e.timeout,
                    "grub-editenv",
                )
                .map_err(|m| format!("{m}{}", install_hint("grub-editenv", "grub-common")))?
            }
        };
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
            .collect())
    }
}

fn config_arg(e: &EnvBackend) -> Vec<String> {
    e.file
        .as_ref()
        .map(|f| vec!["-c".to_owned(), f.display().to_string()])
        .unwrap_or_default()
}

/// The GRUB environment file, which must exist: `grub-editenv FILE list` creates a missing
/// one, and an environment the agent created where GRUB does not look would switch nothing.
fn grubenv(e: &EnvBackend) -> Result<&Path, String> {
    let f = e.file.as_deref().unwrap_or(Path::new(DEFAULT_GRUBENV));
    match std::fs::metadata(f) {
        Ok(m) if m.is_file() => Ok(f),
        Ok(_) => Err(format!(
            "the GRUB environment {} is not a file",
            f.display()
        )),
        Err(err) => Err(format!(
            "cannot read the GRUB environment {}: {err}; create it where grub.cfg loads it \
             (grub-editenv {} create) or set grubenv in [component.boot]",
            f.display(),
            f.display()
        )),
    }
}

fn install_hint(tool: &str, package: &str) -> String {
    format!(" (if {tool} is missing: install {package}, e.g. apt-get install {package})")
}

fn lookup<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `BOOT_ORDER` as slot indexes and both counters, with the boot scripts' defaults for unset
/// variables.
///
/// # Errors
/// A variable whose value the boot scripts would not understand, named with what it should be.
pub fn parse_env(vars: &[(String, String)], what: &str) -> Result<(Vec<usize>, [u8; 2]), String> {
    let order_text = lookup(vars, ORDER_VAR).unwrap_or(DEFAULT_ORDER);
    let mut order = Vec::new();
    for word in order_text.split_whitespace() {
        let Some(s) = ENV_SLOTS.iter().position(|n| *n == word) else {
            return Err(format!(
                "{what}: {ORDER_VAR}=\"{order_text}\" names {word:?}; expected \"A B\" or \"B A\" \
                 (fix it with the boot script's defaults, docs/bootloaders.md)"
            ));
        };
        if order.contains(&s) {
            return Err(format!(
                "{what}: {ORDER_VAR}=\"{order_text}\" names {word} twice; expected \"A B\" or \"B A\""
            ));
        }
        order.push(s);
    }
    if order.is_empty() {
        return Err(format!(
            "{what}: {ORDER_VAR} is empty; expected \"A B\" or \"B A\""
        ));
    }
    let mut left = [DEFAULT_TRIES; 2];
    for (i, var) in LEFT_VARS.iter().enumerate() {
        if let Some(v) = lookup(vars, var) {
            let n = v
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= MAX_TRIES)
                .ok_or_else(|| {
                    format!(
                        "{what}: {var}={v:?}; expected a count from 0 to {MAX_TRIES} \
                         (the boot scripts count in one decimal digit)"
                    )
                })?;
            if let Some(l) = left.get_mut(i) {
                *l = n;
            }
        }
    }
    Ok((order, left))
}

/// The slot named by `suitcase.slot=` on the kernel command line in `path`.
///
/// # Errors
/// The file cannot be read, or names no slot (the boot script must add it).
pub fn booted_slot(path: &Path) -> Result<usize, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_OUTPUT as u64).read_to_string(&mut text))
        .map_err(|e| {
            format!(
                "cannot read the kernel command line {}: {e}",
                path.display()
            )
        })?;
    let prefix = format!("{CMDLINE_KEY}=");
    let value = text
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix(&prefix));
    match value.map(|v| (v, slot_letter(v))) {
        Some((_, Some(slot))) => Ok(slot),
        Some((v, None)) => Err(format!(
            "the kernel command line ({}) says {CMDLINE_KEY}={}; expected A or B",
            path.display(),
            v.to_ascii_uppercase()
        )),
        None => Err(format!(
            "the kernel command line ({}) has no {CMDLINE_KEY}=A|B: the suitcase boot script \
             adds it (docs/bootloaders/uboot-boot.cmd, docs/bootloaders/grub.cfg); without it \
             the agent cannot tell which slot runs",
            path.display()
        )),
    }
}

/// A slot named `a` or `b`, in either case (the environment and the kernel command line say
/// `A`/`B`, the custom commands `a`/`b`).
fn slot_letter(s: &str) -> Option<usize> {
    crate::slot::Slot::parse(s.trim()).map(crate::slot::Slot::index)
}

/// The custom status command's output: `booted=a|b` and `next=a|b|none` lines (others ignored).
///
/// # Errors
/// A missing or unexpected line, quoted.
pub fn parse_custom_status(out: &str) -> Result<BootState, String> {
    let mut booted = None;
    let mut next = None;
    for line in out.lines() {
        match line.trim().split_once('=') {
            Some(("booted", v)) => {
                booted = Some(slot_letter(v).ok_or_else(|| {
                    format!("the bootloader status command printed booted={v:?}; expected a or b")
                })?);
            }
            Some(("next", v)) => {
                next = Some(if v.trim() == "none" {
                    None
                } else {
                    Some(slot_letter(v).ok_or_else(|| {
                        format!(
                            "the bootloader status command printed next={v:?}; expected a, b or none"
                        )
                    })?)
                });
            }
            _ => {}
        }
    }
    match (booted, next) {
        (Some(booted), Some(next)) => Ok(BootState {
            booted,
            next,
            left: [None, None],
            // The detail goes into messages and step reports: the first 300 characters, as
            // the stderr quote above (the output itself is bounded at 64 KiB).
            detail: out.trim().replace('\n', " ").chars().take(300).collect(),
        }),
        _ => Err(format!(
            "the bootloader status command must print booted=a|b and next=a|b|none; it printed {:?}",
            out.chars().take(200).collect::<String>()
        )),
    }
}

fn slot_env(slot: Option<usize>, paths: &[PathBuf; 2]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(s) = slot {
        env.push((
            "SUITCASE_SLOT".to_owned(),
            crate::slot::Slot::from_index(s)
                .unwrap_or(crate::slot::Slot::B)
                .name()
                .to_owned(),
        ));
        env.push((
            "SUITCASE_SLOT_PATH".to_owned(),
            paths
                .get(s)
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ));
    }
    env.push((
        "SUITCASE_SLOT_A_PATH".to_owned(),
        paths[0].display().to_string(),
    ));
    env.push((
        "SUITCASE_SLOT_B_PATH".to_owned(),
        paths[1].display().to_string(),
    ));
    env
}

#[cfg(test)]
mod tests;

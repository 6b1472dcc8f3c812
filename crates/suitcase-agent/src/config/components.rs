//! `[[component]]` tables checked into [`ComponentConfig`]s: which keys apply to which kind
//! and handler (one table), and the bootloader backend of a file-slot pair.

use std::path::{Path, PathBuf};

use super::file::{BootFile, BootloaderName, ComponentFile, HandlerName, KindName};
use super::trust::{identity, load_anchors};
use super::{
    ActivateMode, ComponentConfig, FileSlots, Handler, ImageFormat, Kind, McuConfig, ModuleConfig,
    SecondaryTrust, bad, parse_id, seconds,
};
use crate::bootloader::{Backend, CustomBackend, EnvBackend};
use crate::error::AgentError;

use KindName::{File, Mcu, Module, Secondary};

/// Which optional `[[component]]` keys apply where: the key, whether it is set, the kinds
/// it applies to, and for kind "module" the handlers it applies to (with their names for the
/// message). Checked in this order, before anything else of the component.
type KeyRule = (
    &'static str,
    fn(&ComponentFile) -> bool,
    &'static [KindName],
    Option<(&'static [HandlerName], &'static str)>,
);

const KEYS: &[KeyRule] = &[
    ("handler", |c| c.handler.is_some(), &[Module], None),
    (
        "path",
        |c| c.path.is_some(),
        &[Module],
        Some((
            &[HandlerName::File, HandlerName::Archive],
            "\"file\" and \"archive\"",
        )),
    ),
    (
        "mode",
        |c| c.mode.is_some(),
        &[Module],
        Some((&[HandlerName::File], "\"file\"")),
    ),
    (
        "rollback",
        |c| c.rollback.is_some(),
        &[Module],
        Some((&[HandlerName::Script], "\"script\"")),
    ),
    (
        "dpkg",
        |c| c.dpkg.is_some(),
        &[Module],
        Some((&[HandlerName::Deb], "\"deb\"")),
    ),
    ("slots", |c| c.slots.is_some(), &[File], None),
    ("pointer", |c| c.pointer.is_some(), &[File], None),
    ("bootloader", |c| c.bootloader.is_some(), &[File], None),
    ("[component.boot]", |c| c.boot.is_some(), &[File], None),
    (
        "activate",
        |c| c.activate.is_some(),
        &[File, Mcu, Secondary],
        None,
    ),
    (
        "reboot",
        |c| c.reboot.is_some(),
        &[File, Mcu, Secondary],
        None,
    ),
    ("flash", |c| c.flash.is_some(), &[Mcu, Secondary], None),
    ("trust", |c| c.trust.is_some(), &[Secondary], None),
];

/// Refuses a key set where it does not apply ([`KEYS`]).
fn check_keys(path: &Path, what: &str, c: &ComponentFile) -> Result<(), AgentError> {
    for (key, set, kinds, handlers) in KEYS {
        if !set(c) {
            continue;
        }
        if !kinds.contains(&c.kind) {
            return Err(bad(
                path,
                format!("{what}: {key} does not apply to kind {:?}", c.kind),
            ));
        }
        if let (Some((handlers, names)), Some(h)) = (handlers, c.handler)
            && !handlers.contains(&h)
        {
            return Err(bad(
                path,
                format!("{what}: {key} applies to handler {names} only"),
            ));
        }
    }
    Ok(())
}

pub(super) fn component(
    path: &Path,
    base: &Path,
    state_dir: &Path,
    c: &ComponentFile,
) -> Result<ComponentConfig, AgentError> {
    let rel = |p: &Path| base.join(p);
    let what = format!("component {:?}", c.name);
    let id = parse_id(path, &format!("{what} id"), &c.id)?;
    check_keys(path, &what, c)?;
    let needs = |v: bool, key: &str| -> Result<(), AgentError> {
        if v {
            Ok(())
        } else {
            Err(bad(path, format!("{what}: kind {:?} needs {key}", c.kind)))
        }
    };
    let kind = match c.kind {
        Module => {
            let Some(name) = c.handler else {
                return Err(bad(
                    path,
                    format!(
                        "{what}: kind \"module\" needs handler = \"file\", \"archive\", \"script\" or \"deb\""
                    ),
                ));
            };
            let target = |key: &str| -> Result<PathBuf, AgentError> {
                c.path.as_deref().map(rel).ok_or_else(|| {
                    bad(
                        path,
                        format!("{what}: handler {name:?} needs path = \"{key}\""),
                    )
                })
            };
            let handler = match name {
                HandlerName::File => {
                    let mode = match &c.mode {
                        None => None,
                        Some(m) => Some(
                            u32::from_str_radix(m.trim_start_matches("0o"), 8)
                                .ok()
                                .filter(|m| *m <= 0o7777)
                                .ok_or_else(|| {
                                    bad(
                                        path,
                                        format!(
                                            "{what}: mode = {m:?}: octal permission bits, e.g. \"0644\""
                                        ),
                                    )
                                })?,
                        ),
                    };
                    Handler::File {
                        path: target("/etc/app/app.conf")?,
                        mode,
                    }
                }
                HandlerName::Archive => Handler::Archive {
                    path: target("/opt/app")?,
                },
                HandlerName::Script => Handler::Script {
                    rollback: c.rollback.unwrap_or(true),
                },
                HandlerName::Deb => {
                    let dpkg = c.dpkg.clone().unwrap_or_else(|| vec!["dpkg".into()]);
                    if dpkg.is_empty() {
                        return Err(bad(
                            path,
                            format!("{what}: dpkg = [\"dpkg\", …]: a command"),
                        ));
                    }
                    Handler::Deb { dpkg }
                }
            };
            let dir = state_dir.join("modules").join(hex::encode(id.concat()));
            Kind::Module(ModuleConfig {
                handler,
                staged: dir.join("staged"),
                dir,
                capacity: c.capacity.ok_or_else(|| {
                    bad(
                        path,
                        format!("{what}: kind \"module\" needs capacity = BYTES (the largest payload it takes)"),
                    )
                })?,
                restart: c.restart.clone().unwrap_or_default(),
            })
        }
        File => {
            let slots = c.slots.clone().unwrap_or_default();
            let [a, b]: [PathBuf; 2] = slots.try_into().map_err(|_| {
                bad(
                    path,
                    format!(
                        "{what}: slots = [\"slot-a\", \"slot-b\"] (two files or block devices)"
                    ),
                )
            })?;
            let bootloader_name = c.bootloader.unwrap_or(BootloaderName::Pointer);
            let pointer = match (&c.pointer, bootloader_name) {
                (Some(p), _) => rel(p),
                (None, BootloaderName::Pointer) => {
                    return Err(bad(
                        path,
                        format!("{what}: pointer = \"FILE\" (the active-slot pointer file)"),
                    ));
                }
                // The agent's own record of the slots; the bootloader does not read it.
                (None, _) => state_dir.join(format!("slots-{}.pointer", hex::encode(id.concat()))),
            };
            let slots = [rel(&a), rel(&b)];
            let capacity = match c.capacity {
                Some(n) => n,
                None => block_size(&slots[0])
                    .ok_or_else(|| bad(path, format!("{what}: give capacity = BYTES (the slots are not block devices whose size the agent can read)")))?,
            };
            let bootloader = backend(path, base, &what, bootloader_name, c.boot.as_ref())?;
            let switches_at_boot = matches!(bootloader, Backend::Uboot(_) | Backend::Grub(_));
            let activate = c.activate.unwrap_or(if switches_at_boot {
                ActivateMode::Reboot
            } else {
                ActivateMode::Restart
            });
            let restart = c.restart.clone().unwrap_or_default();
            let reboot = c.reboot.clone().unwrap_or_default();
            if switches_at_boot && (activate != ActivateMode::Reboot || reboot.is_empty()) {
                // The bootloader switches slots only when the device boots: without a reboot
                // the agent would confirm a slot that never ran.
                return Err(bad(
                    path,
                    format!(
                        "{what}: bootloader = {:?} switches slots at boot: set activate = \"reboot\" \
                         and reboot = [\"systemctl\", \"reboot\"] (or your reboot command)",
                        bootloader.name()
                    ),
                ));
            }
            Kind::File(FileSlots {
                slots,
                pointer,
                bootloader,
                capacity,
                activate,
                restart,
                reboot,
            })
        }
        Mcu | Secondary => {
            needs(c.flash.is_some(), "flash = \"FILE\"")?;
            let sector_size = c.sector_size.unwrap_or(4096);
            if sector_size == 0 || !sector_size.is_multiple_of(256) {
                return Err(bad(
                    path,
                    format!("{what}: sector_size = {sector_size}: a multiple of 256"),
                ));
            }
            let slot_sectors = c.slot_sectors.unwrap_or(64);
            if slot_sectors == 0
                || u64::from(sector_size) * (2 + 2 * u64::from(slot_sectors)) > u64::from(u32::MAX)
            {
                return Err(bad(
                    path,
                    format!(
                        "{what}: slot_sectors = {slot_sectors}: at least 1, and the flash must stay below 4 GiB"
                    ),
                ));
            }
            let secondary = if c.kind == Secondary {
                let trust = c.trust.clone().unwrap_or_default();
                needs(!trust.is_empty(), "trust = [\"its-author.pub\"]")?;
                needs(c.vendor.is_some() && c.class.is_some(), "vendor and class")?;
                Some(SecondaryTrust {
                    anchors: load_anchors(path, base, &trust)?,
                    identity: identity(
                        path,
                        c.vendor.as_deref().unwrap_or_default(),
                        c.class.as_deref().unwrap_or_default(),
                        None,
                    )?,
                    inner_component: match &c.inner_component {
                        Some(i) => parse_id(path, &format!("{what} inner_component"), i)?,
                        None => vec![vec![0]],
                    },
                })
            } else {
                None
            };
            Kind::Mcu(McuConfig {
                flash: rel(c.flash.as_deref().unwrap_or(Path::new(""))),
                sector_size,
                slot_sectors,
                max_trial_boots: c.max_trial_boots.unwrap_or(3).max(1),
                image: c.image.unwrap_or(if secondary.is_some() {
                    ImageFormat::SlotImage
                } else {
                    ImageFormat::Raw
                }),
                factory: c.factory.as_deref().map(rel),
                secondary,
            })
        }
    };
    Ok(ComponentConfig {
        name: c.name.clone(),
        id,
        version: c.version.clone(),
        kind,
    })
}

/// The bootloader backend from `bootloader = "…"` and `[component.boot]`.
fn backend(
    path: &Path,
    base: &Path,
    what: &str,
    name: BootloaderName,
    boot: Option<&BootFile>,
) -> Result<Backend, AgentError> {
    let empty = BootFile::default();
    let b = boot.unwrap_or(&empty);
    let kind = match name {
        BootloaderName::Pointer => "pointer",
        BootloaderName::Uboot => "uboot",
        BootloaderName::Grub => "grub",
        BootloaderName::Custom => "custom",
    };
    let refuses = |v: bool, key: &str| -> Result<(), AgentError> {
        if v {
            Err(bad(
                path,
                format!("{what}: [component.boot] {key} does not apply to bootloader = {kind:?}"),
            ))
        } else {
            Ok(())
        }
    };
    let timeout = seconds(
        path,
        &format!("{what}: [component.boot] timeout_seconds"),
        b.timeout_seconds.unwrap_or(10.0),
    )?;
    let commands =
        b.status.is_some() || b.trial.is_some() || b.confirm.is_some() || b.revert.is_some();
    match name {
        BootloaderName::Pointer => {
            if boot.is_some() {
                return Err(bad(
                    path,
                    format!(
                        "{what}: [component.boot] needs bootloader = \"uboot\", \"grub\" or \"custom\""
                    ),
                ));
            }
            Ok(Backend::Pointer)
        }
        BootloaderName::Uboot | BootloaderName::Grub => {
            refuses(commands, "status/trial/confirm/revert")?;
            let tries = b.tries.unwrap_or(crate::bootloader::DEFAULT_TRIES);
            if tries == 0 || tries > crate::bootloader::MAX_TRIES {
                return Err(bad(
                    path,
                    format!(
                        "{what}: [component.boot] tries = {tries}: from 1 to {} (the boot scripts count in one decimal digit)",
                        crate::bootloader::MAX_TRIES
                    ),
                ));
            }
            let file = if name == BootloaderName::Uboot {
                refuses(b.grubenv.is_some(), "grubenv")?;
                b.fw_env_config.as_deref().map(|p| base.join(p))
            } else {
                refuses(b.fw_env_config.is_some(), "fw_env_config")?;
                Some(
                    base.join(
                        b.grubenv
                            .as_deref()
                            .unwrap_or(Path::new(crate::bootloader::DEFAULT_GRUBENV)),
                    ),
                )
            };
            let e = EnvBackend {
                file,
                tries,
                cmdline: base.join(b.cmdline.as_deref().unwrap_or(Path::new("/proc/cmdline"))),
                timeout,
            };
            Ok(if name == BootloaderName::Uboot {
                Backend::Uboot(e)
            } else {
                Backend::Grub(e)
            })
        }
        BootloaderName::Custom => {
            refuses(b.tries.is_some(), "tries")?;
            refuses(b.cmdline.is_some(), "cmdline")?;
            refuses(b.fw_env_config.is_some(), "fw_env_config")?;
            refuses(b.grubenv.is_some(), "grubenv")?;
            let argv = |v: &Option<Vec<String>>, key: &str| -> Result<Vec<String>, AgentError> {
                match v {
                    Some(a) if !a.is_empty() => Ok(a.clone()),
                    _ => Err(bad(
                        path,
                        format!(
                            "{what}: bootloader = \"custom\" needs [component.boot] {key} = [\"command\", \"arg\", …] (docs/bootloaders.md §4)"
                        ),
                    )),
                }
            };
            Ok(Backend::Custom(CustomBackend {
                status: argv(&b.status, "status")?,
                trial: argv(&b.trial, "trial")?,
                confirm: argv(&b.confirm, "confirm")?,
                revert: argv(&b.revert, "revert")?,
                timeout,
            }))
        }
    }
}

/// The size of a block device, if `path` is one.
fn block_size(path: &Path) -> Option<u64> {
    use std::io::Seek as _;
    use std::os::unix::fs::FileTypeExt as _;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(std::io::SeekFrom::End(0)).ok()
}

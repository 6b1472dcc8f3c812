//! Update modules: payloads that are not whole slot images (`kind = "module"`).
//!
//! A module component goes through the same NTIA steps as a slot image (docs/agent.md): the
//! payload is verified against the manifest (Process), copied into the module's staging file
//! (Apply), verified again there (Re-verify), then *installed* by its handler (Activate), kept
//! or rolled back after the health check (Clean-up, Undo). The handlers:
//!
//! | handler   | install                                               | roll back                       |
//! |-----------|-------------------------------------------------------|---------------------------------|
//! | `file`    | atomic replace of one file (temp + fsync + rename)    | the previous file, kept aside   |
//! | `archive` | a tar (or .tar.gz) extracted to a new directory, swapped atomically | the previous directory, kept |
//! | `script`  | the payload run as `SCRIPT install`                   | `SCRIPT rollback` (if declared) |
//! | `deb`     | `dpkg -i`                                             | `dpkg -i` of the previous .deb  |
//!
//! Every operation here is idempotent, so that a power cut at any point followed by the same
//! call again (the journal resumes the step) ends where one uninterrupted call would. Every
//! operation is blocking (files, `dpkg`): callers run it off the async worker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Handler, ModuleConfig};
use crate::state::{sync_dir, write_atomic};

/// The most entries a directory archive may hold (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION: a
/// signed archive is trusted for content, not for the work it makes the device do).
pub const MAX_ARCHIVE_ENTRIES: u64 = 100_000;

/// What a handler can do after the new content ran and failed its health check.
pub fn can_roll_back(m: &ModuleConfig) -> bool {
    match &m.handler {
        Handler::File { .. } | Handler::Archive { .. } => true,
        Handler::Script { rollback } => *rollback,
        // Only a package the agent installed itself can be put back: dpkg keeps no old .deb.
        Handler::Deb { .. } => m.dir.join(CURRENT_DEB).is_file(),
    }
}

const PREVIOUS: &str = "previous";
const ABSENT: &str = "previous.absent";
const SCRIPT: &str = "script";
const CURRENT_DEB: &str = "current.deb";
const PREVIOUS_DEB: &str = "previous.deb";

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> String {
    let what = what.into();
    move |e| format!("{what}: {e}")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Installs the staged payload. `env` describes the update to a script or dpkg; `timeout`
/// bounds each command. Returns a note for the report; an error names what failed.
///
/// # Errors
/// The reason, for the step's failure report.
pub fn install(
    m: &ModuleConfig,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<String, String> {
    std::fs::create_dir_all(&m.dir).map_err(io(format!("cannot create {}", m.dir.display())))?;
    match &m.handler {
        Handler::File { path, mode } => install_file(m, path, *mode),
        Handler::Archive { path } => install_archive(m, path),
        Handler::Script { .. } => {
            let script = m.dir.join(SCRIPT);
            copy_durable(&m.staged, &script, Some(0o700))?;
            run(
                &[path_arg(&script), "install".into()],
                env,
                timeout,
                "the install script",
            )
        }
        Handler::Deb { dpkg } => {
            let current = m.dir.join(CURRENT_DEB);
            let previous = m.dir.join(PREVIOUS_DEB);
            // The package installed before this update becomes the rollback target, once: a
            // resumed install finds it moved already and the staged package in place.
            if current.is_file() && !same_file_content(&current, &m.staged)? {
                std::fs::rename(&current, &previous)
                    .map_err(io(format!("cannot keep {}", current.display())))?;
                sync_dir(&m.dir).map_err(|e| e.to_string())?;
            }
            copy_durable(&m.staged, &current, None)?;
            let mut argv = dpkg.clone();
            argv.extend(["--install".into(), path_arg(&current)]);
            run(&argv, env, timeout, "dpkg --install")
        }
    }
}

/// Keeps the installed content: drops what was kept for a rollback.
///
/// # Errors
/// The reason, for the report (the update stays installed).
pub fn commit(
    m: &ModuleConfig,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<String, String> {
    match &m.handler {
        Handler::File { .. } => {
            remove_file(&m.dir.join(PREVIOUS))?;
            remove_file(&m.dir.join(ABSENT))?;
            Ok("previous file discarded".into())
        }
        Handler::Archive { path } => {
            remove_dir(&sibling(path, ".suitcase-previous"))?;
            remove_file(&m.dir.join(ABSENT))?;
            Ok("previous directory discarded".into())
        }
        Handler::Script { .. } => {
            let script = m.dir.join(SCRIPT);
            run(
                &[path_arg(&script), "commit".into()],
                env,
                timeout,
                "the commit step of the script",
            )
        }
        Handler::Deb { .. } => {
            remove_file(&m.dir.join(PREVIOUS_DEB))?;
            Ok("previous package discarded".into())
        }
    }
}

/// Puts back what ran before [`install`] (also after an install that failed half-way, or that
/// never started). Returns a note.
///
/// # Errors
/// The reason the handler cannot roll back, or what failed.
pub fn roll_back(
    m: &ModuleConfig,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<String, String> {
    match &m.handler {
        Handler::File { path, .. } => restore_or_remove(m, path, remove_file, || {
            let previous = m.dir.join(PREVIOUS);
            if !previous.is_file() {
                return Ok(false);
            }
            copy_durable(&previous, &sibling(path, ".suitcase-new"), None)?;
            rename_durable(&sibling(path, ".suitcase-new"), path)?;
            remove_file(&previous)?;
            Ok(true)
        }),
        Handler::Archive { path } => {
            remove_dir(&sibling(path, ".suitcase-new"))?;
            restore_or_remove(m, path, remove_dir, || {
                let previous = sibling(path, ".suitcase-previous");
                if !previous.is_dir() {
                    return Ok(false);
                }
                // The new tree moves aside and the old one back, in one exchange where the
                // file system has it.
                swap_dirs(&previous, path)?;
                remove_dir(&previous)?;
                Ok(true)
            })
        }
        Handler::Script { rollback } => {
            if !rollback {
                return Err(
                    "the script handler is configured without rollback (rollback = false)".into(),
                );
            }
            let script = m.dir.join(SCRIPT);
            if !script.is_file() {
                return Ok("the install script never ran".into());
            }
            run(
                &[path_arg(&script), "rollback".into()],
                env,
                timeout,
                "the rollback script",
            )
        }
        Handler::Deb { dpkg } => {
            let previous = m.dir.join(PREVIOUS_DEB);
            let current = m.dir.join(CURRENT_DEB);
            if !previous.is_file() {
                return Err(
                    "no earlier package installed by the agent to go back to (dpkg keeps none)"
                        .into(),
                );
            }
            let mut argv = dpkg.clone();
            argv.extend(["--install".into(), path_arg(&previous)]);
            let note = run(
                &argv,
                env,
                timeout,
                "dpkg --install of the previous package",
            )?;
            rename_durable(&previous, &current)?;
            Ok(note)
        }
    }
}

/// The end of a file or archive rollback: `restore` puts back what was kept (false: nothing
/// was); else what did not exist before the install is removed again; else nothing had been
/// replaced yet.
fn restore_or_remove(
    m: &ModuleConfig,
    path: &Path,
    remove: fn(&Path) -> Result<(), String>,
    restore: impl FnOnce() -> Result<bool, String>,
) -> Result<String, String> {
    if restore()? {
        return Ok(format!("{} restored", path.display()));
    }
    let absent = m.dir.join(ABSENT);
    if absent.is_file() {
        remove(path)?;
        remove_file(&absent)?;
        return Ok(format!(
            "{} removed (it did not exist before)",
            path.display()
        ));
    }
    Ok(format!("{} was not replaced", path.display()))
}

fn install_file(m: &ModuleConfig, path: &Path, mode: Option<u32>) -> Result<String, String> {
    let previous = m.dir.join(PREVIOUS);
    let absent = m.dir.join(ABSENT);
    // Keep what is there now, once: a resumed install must not keep its own new content.
    if !previous.is_file() && !absent.is_file() {
        if path.is_file() {
            copy_durable(path, &previous, None)?;
        } else if path.exists() {
            return Err(format!("{} exists and is not a file", path.display()));
        } else {
            write_atomic(&absent, b"").map_err(|e| e.to_string())?;
        }
    }
    let new = sibling(path, ".suitcase-new");
    // The file's own permission bits stay unless the configuration sets them.
    let mode = mode.or_else(|| file_mode(path));
    copy_durable(&m.staged, &new, mode)?;
    rename_durable(&new, path)?;
    Ok(format!("{} replaced", path.display()))
}

fn install_archive(m: &ModuleConfig, path: &Path) -> Result<String, String> {
    let previous = sibling(path, ".suitcase-previous");
    let new = sibling(path, ".suitcase-new");
    let absent = m.dir.join(ABSENT);
    if previous.is_dir() || (absent.is_file() && path.is_dir() && !new.exists()) {
        return Ok(format!("{} installed earlier", path.display()));
    }
    remove_dir(&new)?;
    let (files, bytes) = match extract(&m.staged, &new, m.capacity) {
        Ok(n) => n,
        Err(why) => {
            // What was unpacked of a refused archive goes at once.
            remove_dir(&new)?;
            return Err(why);
        }
    };
    if path.is_dir() {
        // One exchange: `path` holds the new tree and `new` the old one, with no moment
        // where neither is there. Then the old one moves aside for a rollback.
        swap_dirs(&new, path)?;
        rename_durable(&new, &previous)?;
    } else if path.exists() {
        return Err(format!("{} exists and is not a directory", path.display()));
    } else {
        write_atomic(&absent, b"").map_err(|e| e.to_string())?;
        rename_durable(&new, path)?;
    }
    Ok(format!(
        "{} replaced by the archive ({files} files, {bytes} bytes)",
        path.display()
    ))
}

/// Extracts the tar archive `src` (plain or gzip-compressed) into the new directory `dst`. Only directories, regular
/// files and symbolic links; no entry outside `dst` (the tar crate refuses `..` and absolute
/// paths and checks each entry's parent after links), at most `capacity` bytes of file
/// content and [`MAX_ARCHIVE_ENTRIES`] entries. Returns (files, bytes).
fn extract(src: &Path, dst: &Path, capacity: u64) -> Result<(u64, u64), String> {
    let mut file = std::io::BufReader::new(
        std::fs::File::open(src).map_err(io(format!("cannot read {}", src.display())))?,
    );
    std::fs::create_dir_all(dst).map_err(io(format!("cannot create {}", dst.display())))?;
    // A gzip stream (RFC 1952 §2.3.1: ID1 ID2 = 1f 8b) is unpacked on the fly; `capacity`
    // bounds what it expands to, not only what was downloaded.
    let gzip = std::io::BufRead::fill_buf(&mut file)
        .map_err(io(format!("cannot read {}", src.display())))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn std::io::Read> = if gzip {
        Box::new(flate2::bufread::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    let bad = |e: std::io::Error| format!("the archive is not a readable tar file: {e}");
    let (mut files, mut bytes, mut entries) = (0u64, 0u64, 0u64);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        entries += 1;
        if entries > MAX_ARCHIVE_ENTRIES {
            return Err(format!(
                "the archive holds more than {MAX_ARCHIVE_ENTRIES} entries"
            ));
        }
        let path = entry.path().map_err(bad)?.into_owned();
        let name = path.display().to_string();
        // The crate would strip a leading `/` and skip `..`: an archive that names either is
        // refused whole instead, so what installs is what the author listed.
        if path.components().any(|c| {
            matches!(
                c,
                std::path::Component::RootDir
                    | std::path::Component::Prefix(_)
                    | std::path::Component::ParentDir
            )
        }) {
            return Err(format!(
                "the archive entry {name} points outside the directory it installs to"
            ));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory | tar::EntryType::Symlink => {}
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                files += 1;
                bytes = bytes.saturating_add(entry.size());
                if bytes > capacity {
                    return Err(format!(
                        "the archive unpacks to more than capacity = {capacity} bytes (at {name})"
                    ));
                }
            }
            // pax/GNU long-name records are read by the crate itself.
            tar::EntryType::XHeader
            | tar::EntryType::XGlobalHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            other => {
                return Err(format!(
                    "the archive entry {name} is a {other:?}: only directories, files and symbolic links are installed"
                ));
            }
        }
        let inside = entry
            .unpack_in(dst)
            .map_err(|e| format!("cannot extract {name}: {e}"))?;
        if !inside {
            return Err(format!(
                "the archive entry {name} points outside the directory it installs to"
            ));
        }
    }
    sync_tree(dst)?;
    Ok((files, bytes))
}

/// Flushes every file and directory under `dir` (an extracted tree must be on disk before it
/// is swapped in).
fn sync_tree(dir: &Path) -> Result<(), String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(format!("cannot read {}", d.display())))? {
            let e = e.map_err(io(format!("cannot read {}", d.display())))?;
            let t = e.file_type().map_err(io("file type"))?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                std::fs::File::open(e.path())
                    .and_then(|f| f.sync_all())
                    .map_err(io(format!("cannot flush {}", e.path().display())))?;
            }
        }
        sync_dir(&d).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Exchanges two directories in one step (`renameat2(RENAME_EXCHANGE)`); where the file
/// system lacks it, with three renames through a temporary name (the journal resumes it).
fn swap_dirs(a: &Path, b: &Path) -> Result<(), String> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            let tmp = sibling(b, ".suitcase-swap");
            rename_durable(b, &tmp)?;
            rename_durable(a, b)?;
            rename_durable(&tmp, a)?;
        }
        Err(e) => {
            return Err(format!(
                "cannot exchange {} and {}: {e}",
                a.display(),
                b.display()
            ));
        }
    }
    sync_dir(parent(a)).map_err(|e| e.to_string())?;
    sync_dir(parent(b)).map_err(|e| e.to_string())
}

fn copy_durable(from: &Path, to: &Path, mode: Option<u32>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let what = format!("cannot copy {} to {}", from.display(), to.display());
    let mut src = std::fs::File::open(from).map_err(io(&what))?;
    let mut dst = std::fs::File::create(to).map_err(io(&what))?;
    std::io::copy(&mut src, &mut dst).map_err(io(&what))?;
    if let Some(mode) = mode {
        dst.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&what))?;
    }
    dst.sync_all().map_err(io(&what))?;
    sync_dir(parent(to)).map_err(|e| e.to_string())
}

fn rename_durable(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::rename(from, to).map_err(io(format!(
        "cannot rename {} to {}",
        from.display(),
        to.display()
    )))?;
    sync_dir(parent(to)).map_err(|e| e.to_string())
}

fn remove_file(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

fn remove_dir(path: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => sync_dir(parent(path)).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode())
}

fn same_file_content(a: &Path, b: &Path) -> Result<bool, String> {
    let digest = |p: &Path| crate::http::sha256_file(p).map_err(|e| e.to_string());
    Ok(digest(a)? == digest(b)?)
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// Runs a handler command on the current thread (the callers are on the blocking pool) with
/// the bootloader commands' runner: its own process group killed whole at `timeout`, output
/// bounded, the start of its error output in the failure.
fn run(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
    what: &str,
) -> Result<String, String> {
    crate::bootloader::run(argv, None, env, timeout, what).map(|_| format!("{what} succeeded"))
}

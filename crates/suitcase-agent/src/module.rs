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

mod archive;

use archive::extract;

/// The most entries a directory archive may hold (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION: a
/// signed archive is trusted for content, not for the work it makes the device do).
pub const MAX_ARCHIVE_ENTRIES: u64 = 100_000;

/// The largest pax or GNU long-name record an archive may carry (long paths and a few
/// attributes need far less; the tar crate holds each one in memory whole).
pub const MAX_EXTENSION_RECORD: u64 = 64 * 1024;

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
/// The SHA-256 of the payload being installed: written before anything is touched, removed
/// once it is committed or rolled back. Present with the staged payload's digest: an install
/// resumed after a power cut, which keeps the backups it made; absent or another digest: a
/// new install, which first drops whatever an earlier one left.
const INSTALLING: &str = "installing";
/// The install is done (the staged payload's digest): a resumed Activate does not do it twice.
const INSTALLED: &str = "installed";
/// An archive swap in progress: the inode of the new tree, which must end up at `path`.
const SWAP_INTENT: &str = "swap.intent";
/// An archive rollback in progress: the inode of the previous tree, which must end up at
/// `path`.
const ROLLBACK_INTENT: &str = "rollback.intent";

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> String {
    let what = what.into();
    move |e| format!("{what}: {e}")
}

fn local(e: crate::error::AgentError) -> String {
    e.to_string()
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

/// The archive handler's names beside `path`: the new tree before it is swapped in, the
/// previous tree kept for a rollback, the third name of a swap without `RENAME_EXCHANGE`.
struct Trees {
    new: PathBuf,
    previous: PathBuf,
    swap: PathBuf,
}

fn trees(path: &Path) -> Trees {
    Trees {
        new: sibling(path, ".suitcase-new"),
        previous: sibling(path, ".suitcase-previous"),
        swap: sibling(path, ".suitcase-swap"),
    }
}

/// Copies the verified payload `src` into the module's staging file (Apply), whole or not at
/// all; returns its SHA-256, hex, computed as it is copied.
///
/// # Errors
/// What failed, naming the file.
pub fn stage(m: &ModuleConfig, src: &Path) -> Result<String, String> {
    use sha2::Digest as _;
    use std::io::{Read as _, Write as _};
    std::fs::create_dir_all(&m.dir).map_err(io(format!("cannot create {}", m.dir.display())))?;
    let what = format!("cannot stage {}", m.staged.display());
    let tmp = sibling(&m.staged, ".suitcase-tmp");
    let mut hash = sha2::Sha256::new();
    {
        let mut from = std::fs::File::open(src).map_err(io(&what))?;
        let mut to = std::fs::File::create(&tmp).map_err(io(&what))?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = from.read(&mut buf).map_err(io(&what))?;
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
                break;
            };
            hash.update(chunk);
            to.write_all(chunk).map_err(io(&what))?;
        }
        to.sync_all().map_err(io(&what))?;
    }
    rename_durable(&tmp, &m.staged)?;
    Ok(hex::encode(hash.finalize()))
}

/// Installs the staged payload, whose SHA-256 (hex, as [`stage`] returned it and the journal
/// kept) is `digest`. `env` describes the update to a script or dpkg; `timeout` bounds each
/// command. Returns a note for the report; an error names what failed.
///
/// # Errors
/// The reason, for the step's failure report.
pub fn install(
    m: &ModuleConfig,
    digest: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<String, String> {
    std::fs::create_dir_all(&m.dir).map_err(io(format!("cannot create {}", m.dir.display())))?;
    let marker = m.dir.join(INSTALLING);
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(digest) {
        // A new install: what an earlier one left (a commit that could not clean up) is not
        // a backup of what runs now.
        drop_backups(m)?;
        write_atomic(&marker, digest.as_bytes()).map_err(local)?;
    }
    let done = m.dir.join(INSTALLED);
    if std::fs::read_to_string(&done).ok().as_deref() == Some(digest) {
        return Ok(format!(
            "installed earlier by the {} handler",
            m.handler.name()
        ));
    }
    let note = match &m.handler {
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
            // resumed install finds it moved already and the staged package in place (each
            // copy is whole or absent, never partial).
            if current.is_file() && !same_file_content(&current, &m.staged)? {
                rename_durable(&current, &previous)?;
            }
            copy_durable(&m.staged, &current, None)?;
            let mut argv = dpkg.clone();
            argv.extend(["--install".into(), path_arg(&current)]);
            run(&argv, env, timeout, "dpkg --install")
        }
    }?;
    // Marked done before the swap intent goes: until then a resumed install finishes the swap.
    write_atomic(&done, digest.as_bytes()).map_err(local)?;
    remove_file(&m.dir.join(SWAP_INTENT))?;
    Ok(note)
}

/// Drops what an install keeps for a rollback (and a script, which must not be asked to roll
/// back an update it did not install).
fn drop_backups(m: &ModuleConfig) -> Result<(), String> {
    for f in [
        PREVIOUS,
        ABSENT,
        SCRIPT,
        PREVIOUS_DEB,
        SWAP_INTENT,
        ROLLBACK_INTENT,
        INSTALLED,
    ] {
        remove_file(&m.dir.join(f))?;
    }
    if let Handler::Archive { path } = &m.handler {
        let t = trees(path);
        remove_dir(&t.new)?;
        remove_dir(&t.previous)?;
    }
    Ok(())
}

/// Keeps the installed content: drops what was kept for a rollback, and the staged payload.
///
/// # Errors
/// The reason, for the report (the update stays installed).
pub fn commit(
    m: &ModuleConfig,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<String, String> {
    let note = match &m.handler {
        Handler::File { .. } => "previous file discarded".to_owned(),
        Handler::Archive { .. } => "previous directory discarded".to_owned(),
        Handler::Script { .. } => run(
            &[path_arg(&m.dir.join(SCRIPT)), "commit".into()],
            env,
            timeout,
            "the commit step of the script",
        )?,
        Handler::Deb { .. } => "previous package discarded".to_owned(),
    };
    drop_backups(m)?;
    finished(m)?;
    Ok(note)
}

/// The install is over (committed or rolled back): the marker and the staged copy go.
fn finished(m: &ModuleConfig) -> Result<(), String> {
    remove_file(&m.dir.join(INSTALLING))?;
    remove_file(&m.staged)
}

/// Puts back what ran before [`install`] (also after an install that failed half-way, or that
/// never started). Returns a note. Run again after a power cut, it ends where one run would.
///
/// # Errors
/// The reason the handler cannot roll back, or what failed.
pub fn roll_back(
    m: &ModuleConfig,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<String, String> {
    if !m.dir.join(INSTALLING).is_file() {
        // Never begun (a power cut right after Activate was journalled), or rolled back
        // already by an earlier run cut short at its very end.
        return Ok("nothing was installed".into());
    }
    let note = match &m.handler {
        Handler::File { path, .. } => restore_or_remove(m, path, remove_file, || {
            let previous = m.dir.join(PREVIOUS);
            if !previous.is_file() {
                return Ok(false);
            }
            // Copied, not moved: a power cut before the end leaves the backup to copy again.
            copy_durable(&previous, path, file_mode(&previous))?;
            Ok(true)
        })?,
        Handler::Archive { path } => {
            // First, an install cut short: its swap finished, or undone.
            let t = trees(path);
            if m.dir.join(SWAP_INTENT).is_file() {
                finish_swap(path, &t.new)?;
                if t.new.exists() {
                    if is_at(m, SWAP_INTENT, path)? {
                        rename_durable(&t.new, &t.previous)?;
                    } else {
                        remove_dir(&t.new)?;
                    }
                }
                remove_file(&m.dir.join(SWAP_INTENT))?;
            }
            remove_dir(&t.new)?;
            restore_or_remove(m, path, remove_dir, || {
                let intent = m.dir.join(ROLLBACK_INTENT);
                if !intent.is_file() {
                    let Some((d, i)) = inode(&t.previous).filter(|_| t.previous.is_dir()) else {
                        return Ok(false);
                    };
                    write_atomic(&intent, format!("{d}:{i}").as_bytes()).map_err(local)?;
                }
                // The previous tree back at `path` in one exchange, unless a run cut short
                // did that already (the intent names the tree that must end up there); the
                // refused tree is then at the previous tree's name.
                finish_swap(path, &t.previous)?;
                if !is_at(m, ROLLBACK_INTENT, path)? {
                    swap_dirs(&t.previous, path)?;
                }
                remove_dir(&t.previous)?;
                remove_file(&intent)?;
                Ok(true)
            })?
        }
        Handler::Script { rollback } => {
            let script = m.dir.join(SCRIPT);
            if !rollback {
                return Err(
                    "the script handler is configured without rollback (rollback = false)".into(),
                );
            }
            if !script.is_file() {
                "the install script never ran".into()
            } else {
                run(
                    &[path_arg(&script), "rollback".into()],
                    env,
                    timeout,
                    "the rollback script",
                )?
            }
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
            // Copied, then removed: a power cut in between installs it once more, harmlessly.
            copy_durable(&previous, &current, None)?;
            remove_file(&previous)?;
            note
        }
    };
    drop_backups(m)?;
    finished(m)?;
    Ok(note)
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
    // Keep what is there now, once: a resumed install must not keep its own new content. The
    // copy is whole or absent (`copy_durable`), so a backup that exists is complete.
    if !previous.is_file() && !absent.is_file() {
        if path.is_file() {
            copy_durable(path, &previous, file_mode(path))?;
        } else if path.exists() {
            return Err(format!("{} exists and is not a file", path.display()));
        } else {
            write_atomic(&absent, b"").map_err(local)?;
        }
    }
    // The file's own permission bits stay unless the configuration sets them.
    let mode = mode.or_else(|| file_mode(&previous));
    copy_durable(&m.staged, path, mode)?;
    Ok(format!("{} replaced", path.display()))
}

/// The inode of a tree (its identity across renames).
fn inode(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|md| (md.dev(), md.ino()))
}

/// Whether the tree the intent file `name` names is at `path` now.
fn is_at(m: &ModuleConfig, name: &str, path: &Path) -> Result<bool, String> {
    let intent = std::fs::read_to_string(m.dir.join(name))
        .map_err(io(format!("cannot read {}", m.dir.join(name).display())))?;
    Ok(inode(path).map(|(d, i)| format!("{d}:{i}")).as_deref() == Some(intent.trim()))
}

/// Completes a three-rename swap of `other` and `path` that a power cut interrupted (see
/// [`swap_dirs`]): `path` was moved to the swap name, then `other` to `path`, then the swap
/// name to `other`.
fn finish_swap(path: &Path, other: &Path) -> Result<(), String> {
    let swap = trees(path).swap;
    if swap.exists() {
        if !path.exists() {
            rename_durable(other, path)?;
        }
        rename_durable(&swap, other)?;
    }
    Ok(())
}

fn install_archive(m: &ModuleConfig, path: &Path) -> Result<String, String> {
    let t = trees(path);
    let intent = m.dir.join(SWAP_INTENT);
    let mut counts = None;
    if !intent.is_file() {
        // Nothing swapped yet (the intent is written before any rename, and removed only
        // once the install is marked done): extract, again after a cut during the first
        // extraction.
        remove_dir(&t.new)?;
        remove_dir(&t.previous)?;
        counts = Some(match extract(&m.staged, &t.new, m.capacity) {
            Ok(n) => n,
            Err(why) => {
                // What was unpacked of a refused archive goes at once.
                remove_dir(&t.new)?;
                return Err(why);
            }
        });
        if !path.exists() {
            write_atomic(&m.dir.join(ABSENT), b"").map_err(local)?;
        } else if !path.is_dir() {
            remove_dir(&t.new)?;
            return Err(format!("{} exists and is not a directory", path.display()));
        }
        let (d, i) = inode(&t.new).ok_or_else(|| format!("{} vanished", t.new.display()))?;
        write_atomic(&intent, format!("{d}:{i}").as_bytes()).map_err(local)?;
    }
    finish_swap(path, &t.new)?;
    if !is_at(m, SWAP_INTENT, path)? {
        if path.exists() {
            // One exchange: `path` holds the new tree and `new` the old one, with no moment
            // where neither is there.
            swap_dirs(&t.new, path)?;
        } else {
            rename_durable(&t.new, path)?;
        }
    }
    // `new` now holds the previous tree (if there was one): kept for a rollback.
    if t.new.exists() {
        rename_durable(&t.new, &t.previous)?;
    }
    Ok(match counts {
        Some((files, bytes)) => format!(
            "{} replaced by the archive ({files} files, {bytes} bytes)",
            path.display()
        ),
        None => format!("{} replaced by the archive", path.display()),
    })
}

/// Flushes every file and directory under `dir` (an extracted tree must be on disk before it
/// is swapped in).
pub(crate) fn sync_tree(dir: &Path) -> Result<(), String> {
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

/// Copies `from` to `to` whole or not at all: into a temporary name beside `to`, flushed,
/// then renamed over it (a power cut leaves either the old `to` or the complete copy).
fn copy_durable(from: &Path, to: &Path, mode: Option<u32>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let what = format!("cannot copy {} to {}", from.display(), to.display());
    let tmp = sibling(to, ".suitcase-tmp");
    {
        let mut src = std::fs::File::open(from).map_err(io(&what))?;
        let mut dst = std::fs::File::create(&tmp).map_err(io(&what))?;
        std::io::copy(&mut src, &mut dst).map_err(io(&what))?;
        if let Some(mode) = mode {
            dst.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io(&what))?;
        }
        dst.sync_all().map_err(io(&what))?;
    }
    rename_durable(&tmp, to)
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

#[cfg(test)]
mod tests;

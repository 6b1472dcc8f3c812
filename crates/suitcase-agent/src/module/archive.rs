//! The `archive` handler's unpacking: a tar (optionally gzip-compressed) extracted into a
//! fresh directory, bounded in entries, bytes and extension records, refusing any path that
//! leaves the target.

use std::path::Path;

use super::{MAX_ARCHIVE_ENTRIES, MAX_EXTENSION_RECORD, io, sync_tree};

/// Extracts the tar archive `src` (plain or gzip-compressed) into the new directory `dst`:
/// only directories, regular files and symbolic links; an entry naming `..` or an absolute
/// path is refused here (the crate would skip or strip it), and one that would land outside
/// `dst` through a link is refused by the crate's `unpack_in`; at most `capacity` bytes of
/// file content and [`MAX_ARCHIVE_ENTRIES`] entries (RFC 9124 REQ.SEC.RESOURCE-EXHAUSTION).
/// Returns (files, bytes).
pub(super) fn extract(src: &Path, dst: &Path, capacity: u64) -> Result<(u64, u64), String> {
    let bad = |e: std::io::Error| format!("the archive is not a readable tar file: {e}");
    // First pass, entries as they are: the crate reads a pax or GNU long-name record whole
    // into memory, so each one's size is checked before the second pass lets it.
    let mut raw = tar::Archive::new(archive_reader(src)?);
    for (n, entry) in (1u64..).zip(raw.entries().map_err(bad)?.raw(true)) {
        let entry = entry.map_err(bad)?;
        if n > 2 * MAX_ARCHIVE_ENTRIES {
            return Err(format!(
                "the archive holds more than {MAX_ARCHIVE_ENTRIES} entries"
            ));
        }
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::XHeader
                | tar::EntryType::XGlobalHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) && entry.size() > MAX_EXTENSION_RECORD
        {
            return Err(format!(
                "the archive has an extended header record of {} bytes (at most {MAX_EXTENSION_RECORD})",
                entry.size()
            ));
        }
    }
    std::fs::create_dir_all(dst).map_err(io(format!("cannot create {}", dst.display())))?;
    let reader = archive_reader(src)?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
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

/// The archive's bytes: a gzip stream (RFC 1952 §2.3.1: ID1 ID2 = 1f 8b) is unpacked on
/// the fly; `capacity` bounds what it expands to, not only what was downloaded.
fn archive_reader(src: &Path) -> Result<Box<dyn std::io::Read>, String> {
    let mut file = std::io::BufReader::new(
        std::fs::File::open(src).map_err(io(format!("cannot read {}", src.display())))?,
    );
    let gzip = std::io::BufRead::fill_buf(&mut file)
        .map_err(io(format!("cannot read {}", src.display())))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(flate2::bufread::GzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

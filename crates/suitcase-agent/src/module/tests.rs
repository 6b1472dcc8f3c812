//! Power cuts inside a handler: each intermediate state a cut can leave is built by hand,
//! and the next run (install resumed, or rollback) must end where an uninterrupted run
//! would, with the previous content never lost.

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    m: ModuleConfig,
    path: PathBuf,
}

fn archive_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("index.html"), b"old").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "index.html", &b"new"[..]).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("staged"), b.into_inner().unwrap()).unwrap();
    let m = ModuleConfig {
        handler: Handler::Archive { path: path.clone() },
        staged: state.join("staged"),
        dir: state,
        capacity: 1 << 20,
        restart: Vec::new(),
    };
    Fixture { _dir: dir, m, path }
}

fn file_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.conf");
    std::fs::write(&path, b"old").unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("staged"), b"new").unwrap();
    let m = ModuleConfig {
        handler: Handler::File {
            path: path.clone(),
            mode: None,
        },
        staged: state.join("staged"),
        dir: state,
        capacity: 1 << 20,
        restart: Vec::new(),
    };
    Fixture { _dir: dir, m, path }
}

fn page(path: &Path) -> String {
    std::fs::read_to_string(path.join("index.html")).unwrap()
}

fn install(f: &Fixture) -> Result<String, String> {
    let digest = crate::http::sha256_file(&f.m.staged).unwrap();
    super::install(&f.m, &digest, &[], Duration::from_secs(5))
}

fn roll_back(f: &Fixture) -> Result<String, String> {
    super::roll_back(&f.m, &[], Duration::from_secs(5))
}

/// The marker and the intent as an install writes them before its swap.
fn begun(f: &Fixture, new_tree: &Path) {
    let digest = crate::http::sha256_file(&f.m.staged).unwrap();
    std::fs::write(f.m.dir.join(INSTALLING), digest).unwrap();
    let (d, i) = inode(new_tree).unwrap();
    std::fs::write(f.m.dir.join(SWAP_INTENT), format!("{d}:{i}")).unwrap();
}

fn extracted(f: &Fixture) -> PathBuf {
    let new = trees(&f.path).new;
    std::fs::create_dir_all(&new).unwrap();
    std::fs::write(new.join("index.html"), b"new").unwrap();
    new
}

#[test]
fn power_cut_after_the_archive_exchange_keeps_the_previous_tree() {
    let f = archive_fixture();
    let new = extracted(&f);
    begun(&f, &new);
    // The exchange happened; the rename of the old tree to its kept name did not.
    swap_dirs(&new, &f.path).unwrap();
    assert_eq!(page(&new), "old");
    install(&f).unwrap();
    assert_eq!(page(&f.path), "new");
    assert_eq!(page(&trees(&f.path).previous), "old");
    roll_back(&f).unwrap();
    assert_eq!(page(&f.path), "old");
}

#[test]
fn power_cut_after_the_archive_exchange_then_rollback_restores_the_previous_tree() {
    let f = archive_fixture();
    let new = extracted(&f);
    begun(&f, &new);
    swap_dirs(&new, &f.path).unwrap();
    roll_back(&f).unwrap();
    assert_eq!(page(&f.path), "old");
    assert!(!new.exists());
    assert!(!trees(&f.path).previous.exists());
}

#[test]
fn power_cut_inside_a_three_rename_swap_is_finished() {
    for renames in 1..=2 {
        let f = archive_fixture();
        let new = extracted(&f);
        begun(&f, &new);
        let swap = trees(&f.path).swap;
        std::fs::rename(&f.path, &swap).unwrap();
        if renames == 2 {
            std::fs::rename(&new, &f.path).unwrap();
        }
        install(&f).unwrap();
        assert_eq!(page(&f.path), "new", "after {renames} renames");
        assert_eq!(page(&trees(&f.path).previous), "old");
        assert!(!swap.exists());
        roll_back(&f).unwrap();
        assert_eq!(page(&f.path), "old", "after {renames} renames");
    }
}

#[test]
fn power_cut_during_the_rollback_exchange_never_swaps_the_refused_tree_back() {
    let f = archive_fixture();
    install(&f).unwrap();
    let previous = trees(&f.path).previous;
    // The rollback wrote its intent and exchanged the trees, then the power went.
    let (d, i) = inode(&previous).unwrap();
    std::fs::write(f.m.dir.join(ROLLBACK_INTENT), format!("{d}:{i}")).unwrap();
    swap_dirs(&previous, &f.path).unwrap();
    assert_eq!(page(&f.path), "old");
    roll_back(&f).unwrap();
    assert_eq!(page(&f.path), "old");
    assert!(!previous.exists());
    assert_eq!(roll_back(&f).unwrap(), "nothing was installed");
    assert_eq!(page(&f.path), "old");
}

#[test]
fn resumed_installs_keep_the_first_backup() {
    let f = archive_fixture();
    install(&f).unwrap();
    assert!(install(&f).unwrap().contains("installed earlier"));
    assert_eq!(page(&trees(&f.path).previous), "old");
    roll_back(&f).unwrap();
    assert_eq!(page(&f.path), "old");

    let f = file_fixture();
    install(&f).unwrap();
    // The install's own work redone (its done mark lost to the cut).
    remove_file(&f.m.dir.join(INSTALLED)).unwrap();
    install(&f).unwrap();
    assert_eq!(std::fs::read(&f.path).unwrap(), b"new");
    roll_back(&f).unwrap();
    assert_eq!(std::fs::read(&f.path).unwrap(), b"old");
}

#[test]
fn a_new_install_drops_what_an_unfinished_commit_left() {
    let f = archive_fixture();
    install(&f).unwrap();
    // A commit cut short: the marker stays, the kept tree too.
    remove_file(&f.m.dir.join(INSTALLED)).unwrap();
    std::fs::write(f.m.dir.join(INSTALLING), b"an earlier payload").unwrap();
    install(&f).unwrap();
    // The backup is what ran just before this install, not the stale tree.
    assert_eq!(page(&trees(&f.path).previous), "new");
}

#[test]
fn commit_and_rollback_leave_nothing_behind() {
    for roll in [false, true] {
        let f = archive_fixture();
        install(&f).unwrap();
        if roll {
            roll_back(&f).unwrap();
        } else {
            commit(&f.m, &[], Duration::from_secs(5)).unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(&f.m.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let t = trees(&f.path);
        assert!(!t.new.exists() && !t.previous.exists() && !t.swap.exists());
    }
}

/// A signed archive whose pax record claims 4 GiB is refused from its header: nothing of
/// it is read into memory, nothing is extracted.
#[test]
fn attack_archive_with_a_4_gib_pax_record_is_refused_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("././@PaxHeader").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(4 << 30);
    h.set_cksum();
    let src = dir.path().join("evil.tar");
    std::fs::write(&src, h.as_bytes()).unwrap();
    let dst = dir.path().join("out");
    let e = extract(&src, &dst, 1 << 20).unwrap_err();
    assert!(
        e.contains("extended header record of 4294967296 bytes"),
        "{e}"
    );
    assert!(!dst.exists());
}

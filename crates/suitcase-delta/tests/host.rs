//! The host applier (`host::apply_with_progress`, behind `suitcase delta apply` and
//! `apply_to_vec`) against headers that declare huge sizes: refused from the header and the
//! source alone, before any allocation that depends on them (issue 22).
//!
//! The attacks run in a child process under `ulimit -v` (512 MiB of address space): the
//! applier as it was allocated the declared slot before any check, which aborts there.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

use std::process::Command;

use suitcase_delta::format::MAX_HEADER_LEN;
use suitcase_delta::host::{MAX_IMAGE_SIZE, SparseFlash, apply_with_progress, check_header};
use suitcase_delta::{
    Error, Flash, Header, InPlaceOptions, Limits, Mode, Options, apply_to_vec, create,
};

/// The 62-byte in-place patch of issue 22: new size 2 GiB, old size 4 GiB - 4 KiB, shift
/// 4 GiB - 4 KiB, so the old applier filled an 8 GiB slot before checking anything.
const PATCH_62: &str = concat!(
    "53434450020204808001808080800880c0ffff0f",
    "000000000000000000000000000000000000000000000000000000000000000000",
    "802080e0ffff0f8020",
);

/// Its 54-byte variant: old and new size 1 GiB, no shift; the old applier allocated and
/// filled 1 GiB and hashed it (2.7 s) before refusing the source.
const PATCH_54: &str = concat!(
    "5343445002020480800180808080040000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "8020008020",
);

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Address space the child may use: far below what the attacks made the applier allocate.
const CHILD_LIMIT_KIB: u32 = 512 * 1024;
const CHILD_ENV: &str = "SUITCASE_DELTA_HOST_CHILD";

/// Runs test `name` again in a child process limited to [`CHILD_LIMIT_KIB`] of address space
/// (the test body runs there, see [`in_child`]); fails if the child fails or aborts.
fn run_limited(name: &str) {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CHILD_LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("sh runs");
    assert!(
        status.status.success(),
        "{name} failed or aborted under ulimit -v {CHILD_LIMIT_KIB}: {}\n{}{}",
        status.status,
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
}

/// True in the memory-limited child: run the body. False in the parent, after the child
/// passed (or when there is no `sh` with `ulimit`, on non-Unix hosts: run the body directly).
fn in_child(name: &str) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() || !cfg!(unix) {
        return true;
    }
    run_limited(name);
    false
}

#[test]
fn attack_62_byte_patch_cannot_force_an_8_gib_allocation() {
    if !in_child("attack_62_byte_patch_cannot_force_an_8_gib_allocation") {
        return;
    }
    let patch = unhex(PATCH_62);
    assert_eq!(patch.len(), 62);
    let h = Header::parse(&patch).unwrap();
    assert_eq!(h.mode, Mode::InPlace);
    let g = h.geometry.unwrap();
    assert_eq!(
        u64::from(h.old_size) + u64::from(g.shift),
        8 * (1 << 30) - 8192,
        "the slot this header asks for"
    );
    let err = apply_to_vec(b"any old image", &patch).unwrap_err();
    assert_eq!(
        err,
        Error::ImageTooLarge {
            what: "new image",
            size: 1 << 31,
            limit: MAX_IMAGE_SIZE.into(),
        }
    );
    assert!(err.to_string().contains("2147483648 bytes"), "{err}");
    // A caller that allows a larger new image still gets the slot refused.
    let err = check_header(&h, b"any", Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, Error::ImageTooLarge { .. }), "{err:?}");
}

#[test]
fn attack_54_byte_patch_cannot_force_a_1_gib_allocation_and_hash() {
    if !in_child("attack_54_byte_patch_cannot_force_a_1_gib_allocation_and_hash") {
        return;
    }
    let patch = unhex(PATCH_54);
    assert_eq!(patch.len(), 54);
    let h = Header::parse(&patch).unwrap();
    assert_eq!((h.old_size, h.new_size), (1 << 30, 1 << 30));
    let start = std::time::Instant::now();
    // Within the size limit, but the source is 13 bytes, not 1 GiB: refused at once.
    assert_eq!(
        apply_to_vec(b"any old image", &patch),
        Err(Error::SourceSizeMismatch)
    );
    assert!(start.elapsed().as_secs() < 1, "{:?}", start.elapsed());
}

/// `patch` with its header rewritten by `edit`.
fn with_header(patch: &[u8], edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut h = Header::parse(patch).unwrap();
    let old_len = h.len();
    edit(&mut h);
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = h.write(&mut buf);
    let mut out = buf[..n].to_vec();
    out.extend_from_slice(&patch[old_len..]);
    out
}

fn images() -> (Vec<u8>, Vec<u8>) {
    let old: Vec<u8> = (0..20_000u32).map(|i| (i * 7 / 3) as u8).collect();
    let mut new = old.clone();
    new[5000..5100].fill(0x42);
    new.extend((0..3000u32).map(|i| (i % 251) as u8));
    (old, new)
}

fn in_place_patch(old: &[u8], new: &[u8]) -> Vec<u8> {
    create(
        old,
        new,
        &Options {
            in_place: Some(InPlaceOptions {
                block_size: 4096,
                slot_size: 64 * 1024,
                segment_size: 8192,
            }),
            ..Options::default()
        },
    )
    .unwrap()
    .bytes
}

#[test]
fn attack_in_place_shift_of_768_mib_on_the_genuine_source_costs_no_memory() {
    if !in_child("attack_in_place_shift_of_768_mib_on_the_genuine_source_costs_no_memory") {
        return;
    }
    // The source is public, so a forger can name it; the shift then decides the slot size.
    // The slot is sparse: the shift moves the old image up, and the gap costs nothing.
    let (old, new) = images();
    let patch = with_header(&in_place_patch(&old, &new), |h| {
        h.geometry.as_mut().unwrap().shift = 768 << 20;
    });
    assert_eq!(apply_to_vec(&old, &patch).unwrap(), new);
    // One block more than the host allows is refused from the header.
    let patch = with_header(&patch, |h| {
        h.geometry.as_mut().unwrap().shift = MAX_IMAGE_SIZE - 4096;
    });
    assert!(matches!(
        apply_to_vec(&old, &patch),
        Err(Error::ImageTooLarge {
            what: "old image plus in-place shift",
            ..
        })
    ));
}

#[test]
fn attack_sequential_header_claiming_a_4_gib_result_is_refused_before_allocating() {
    if !in_child("attack_sequential_header_claiming_a_4_gib_result_is_refused_before_allocating") {
        return;
    }
    let (old, new) = images();
    let patch = create(&old, &new, &Options::default()).unwrap().bytes;
    let forged = with_header(&patch, |h| {
        h.old_size = u32::MAX - 10;
        h.new_size = u32::MAX - 10;
    });
    assert!(matches!(
        apply_to_vec(&old, &forged),
        Err(Error::ImageTooLarge {
            what: "new image",
            ..
        })
    ));
    // Within the limit, the real source, a 1 GiB result declared: the output grows only as the
    // patch produces it, and the stream ends long before 1 GiB.
    let forged = with_header(&patch, |h| h.new_size = MAX_IMAGE_SIZE);
    assert_eq!(apply_to_vec(&old, &forged), Err(Error::Corrupt));
    // A source too short for the declared old size is refused before applying.
    let forged = with_header(&patch, |h| h.old_size = MAX_IMAGE_SIZE);
    assert_eq!(apply_to_vec(&old, &forged), Err(Error::SourceSizeMismatch));
    // And the real patch still applies.
    assert_eq!(apply_to_vec(&old, &patch).unwrap(), new);
}

#[test]
fn host_checks_the_source_digest_before_applying() {
    let (old, new) = images();
    for patch in [
        create(&old, &new, &Options::default()).unwrap().bytes,
        in_place_patch(&old, &new),
    ] {
        let mut other = old.clone();
        other[10] ^= 1;
        assert_eq!(
            apply_to_vec(&other, &patch),
            Err(Error::SourceDigestMismatch)
        );
        assert_eq!(
            apply_to_vec(&old[..100], &patch),
            Err(Error::SourceSizeMismatch)
        );
        // A caller's smaller slot is the limit.
        let limits = Limits {
            slot_size: 1000,
            ..Limits::DEFAULT
        };
        assert!(matches!(
            apply_with_progress(&old, &patch, 4096, limits, |_| {}),
            Err(Error::ImageTooLarge { limit: 1000, .. })
        ));
    }
}

#[test]
fn sparse_flash_keeps_only_written_blocks() {
    let mut f = SparseFlash::new(1 << 30, 4096).unwrap();
    let mut buf = [0u8; 10];
    f.read((1 << 30) - 10, &mut buf).unwrap();
    assert_eq!(buf, [0xFF; 10]);
    assert_eq!(f.resident(), 0);
    // A write across a block boundary, NOR semantics (bits only go to zero).
    f.write(4090, &[0x0F; 10]).unwrap();
    f.write(4090, &[0xF1; 10]).unwrap();
    f.read(4090, &mut buf).unwrap();
    assert_eq!(buf, [0x01; 10]);
    assert_eq!(f.resident(), 8192);
    f.erase(4096).unwrap();
    assert_eq!(f.resident(), 4096);
    f.read(4090, &mut buf).unwrap();
    assert_eq!(buf, [1, 1, 1, 1, 1, 1, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(f.read(1 << 30, &mut buf), Err(Error::Io));
    assert_eq!(f.erase(100), Err(Error::Io), "unaligned erase");
    assert_eq!(f.erase(1 << 30), Err(Error::Io));
    let prefix = f.into_prefix(4100).unwrap();
    assert_eq!(prefix.len(), 4100);
    assert_eq!(&prefix[4090..], &[1, 1, 1, 1, 1, 1, 0xFF, 0xFF, 0xFF, 0xFF]);
}

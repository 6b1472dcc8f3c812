//! Shared helpers for the integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::std_instead_of_core,
    reason = "shared by several test binaries, each using a part of it: an expectation would be unmet in some"
)]

use std::path::PathBuf;

use suitcase_delta::{Applier, Error, Limits, NewImage, Status};

/// The synthetic pairs shipped in testdata/delta.
pub fn testdata_pairs() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/delta");
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/delta exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let old = std::fs::read(dir.join(&n).join("old.bin")).unwrap();
        let new = std::fs::read(dir.join(&n).join("new.bin")).unwrap();
        out.push((n, old, new));
    }
    out
}

/// The real firmware corpus, if present (env SUITCASE_CORPUS or ../shared/corpus/firmware).
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SUITCASE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/firmware")
        });
    if dir.join("anchors.tsv").exists() {
        Some(dir)
    } else {
        println!(
            "corpus not found at {} (set SUITCASE_CORPUS); skipping",
            dir.display()
        );
        None
    }
}

pub fn corpus_pair(dir: &std::path::Path, name: &str) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join(name).join("old.bin")).unwrap(),
        std::fs::read(dir.join(name).join("new.bin")).unwrap(),
    )
}

/// A slot of fixed size that records the highest byte ever written.
#[derive(Debug)]
pub struct Slot {
    pub buf: Vec<u8>,
    pub high_water: usize,
}

impl Slot {
    pub fn new(size: usize) -> Self {
        Self {
            buf: vec![0xFF; size],
            high_water: 0,
        }
    }
}

impl NewImage for Slot {
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Error> {
        let s = offset as usize;
        let d = self.buf.get_mut(s..s + data.len()).ok_or(Error::Io)?;
        d.copy_from_slice(data);
        self.high_water = self.high_water.max(s + data.len());
        Ok(())
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        let s = offset as usize;
        buf.copy_from_slice(self.buf.get(s..s + buf.len()).ok_or(Error::Io)?);
        Ok(())
    }
}

/// Applies `patch` fed in chunks of `chunk` bytes into a slot of `slot` bytes.
pub fn apply_chunked(
    old: &[u8],
    patch: &[u8],
    chunk: usize,
    slot: usize,
) -> (Result<(), Error>, Slot) {
    let mut s = Slot::new(slot);
    let mut a = Applier::new(Limits {
        max_ram: 16 * 1024,
        slot_size: slot as u32,
    });
    let mut o = old;
    let mut res = Ok(());
    for c in patch.chunks(chunk.max(1)) {
        match a.feed(c, &mut o, &mut s) {
            Ok(Status::NeedMore | Status::Done) => {}
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    if patch.is_empty() {
        res = a.feed(&[], &mut o, &mut s).map(|_| ());
    }
    if res.is_ok() {
        res = a.finish();
    }
    (res, s)
}

//! Round trips on the real firmware corpus (SUITCASE_CORPUS or ../shared/corpus/firmware).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use common::{apply_chunked, corpus_dir, corpus_pair};
use suitcase_delta::{Options, create};

const MCU_PAIRS: [&str; 6] = [
    "esp32s3-flasher-stub",
    "cynthion-moondancer-rust",
    "greatfet-usb",
    "microbit-v2-makecode-app",
    "microbit-micropython-patch",
    "microbit-micropython-major",
];

fn round_trip(dir: &std::path::Path, name: &str) -> usize {
    let (old, new) = corpus_pair(dir, name);
    let patch = create(&old, &new, &Options::default()).unwrap();
    let (res, slot) = apply_chunked(&old, &patch.bytes, 4096, new.len());
    res.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(slot.buf == new, "{name}: image differs");
    println!(
        "{name}: {} -> {} bytes ({:?})",
        new.len(),
        patch.bytes.len(),
        patch.header.mode
    );
    patch.bytes.len()
}

#[test]
fn mcu_corpus_pairs_round_trip() {
    let Some(dir) = corpus_dir() else { return };
    for name in MCU_PAIRS {
        round_trip(&dir, name);
    }
}

#[test]
#[ignore = "slow in debug builds: 35 MB of images; scripts/delta-bench.sh runs it in release"]
fn whole_corpus_round_trips() {
    let Some(dir) = corpus_dir() else { return };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 11);
    for name in names {
        round_trip(&dir, &name);
    }
}

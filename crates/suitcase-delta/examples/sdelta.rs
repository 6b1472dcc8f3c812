//! Minimal file-level tool used by scripts/delta-bench.sh (no CLI dependencies):
//! `sdelta create OLD NEW PATCH [SLOT_SIZE BLOCK_SIZE]` (with the sizes: in-place) and
//! `sdelta apply OLD PATCH NEW`.
#![expect(clippy::expect_used, reason = "an example program")]

use suitcase_delta::{InPlaceOptions, Options};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    match a.first().map(String::as_str) {
        Some("create") if a.len() >= 4 => {
            let old = std::fs::read(&a[1]).expect("old");
            let new = std::fs::read(&a[2]).expect("new");
            let in_place = (a.len() >= 6).then(|| InPlaceOptions {
                slot_size: a[4].parse().expect("slot size"),
                block_size: a[5].parse().expect("block size"),
                segment_size: 0,
            });
            let p = suitcase_delta::create(
                &old,
                &new,
                &Options {
                    in_place,
                    ..Options::default()
                },
            )
            .expect("create");
            std::fs::write(&a[3], &p.bytes).expect("write patch");
            println!(
                "{} {:?} {}",
                p.bytes.len(),
                p.header.mode,
                p.header.ram_bound
            );
        }
        Some("apply") if a.len() == 4 => {
            let old = std::fs::read(&a[1]).expect("old");
            let patch = std::fs::read(&a[2]).expect("patch");
            let new = suitcase_delta::apply_to_vec(&old, &patch).expect("apply");
            std::fs::write(&a[3], new).expect("write new");
        }
        _ => {
            eprintln!(
                "usage: sdelta create OLD NEW PATCH [SLOT BLOCK] | sdelta apply OLD PATCH NEW"
            );
            std::process::exit(2);
        }
    }
}

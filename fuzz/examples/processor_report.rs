//! How far the processor target's corpus gets: for each input, whether it verified, updated
//! and invoked, and which commands ran (with how many succeeded). `cargo run --release
//! --example processor_report [DIR...]` (default: seeds/processor); docs/fuzzing.md quotes it.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn main() {
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds/processor"));
    }
    let mut commands: BTreeMap<&'static str, (u32, u32)> = BTreeMap::new();
    let (mut inputs, mut verified, mut updated, mut invoked) = (0, 0, 0, 0);
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let Ok(data) = std::fs::read(e.path()) else {
                continue;
            };
            inputs += 1;
            let (r, dev) = suitcase_fuzz::processor::run_reporting(&data);
            verified += u32::from(r.verified);
            updated += u32::from(r.updated);
            invoked += u32::from(r.invoked);
            for rec in dev.map(|d| d.records).unwrap_or_default() {
                let c = commands.entry(rec.command).or_default();
                c.0 += 1;
                c.1 += u32::from(rec.success);
            }
        }
    }
    println!(
        "{inputs} inputs: {verified} verified, {updated} completed the update procedure, {invoked} the invocation procedure"
    );
    println!();
    println!("| command | runs | succeeded |");
    println!("|---|---|---|");
    for (name, (runs, ok)) in commands {
        println!("| {name} | {runs} | {ok} |");
    }
}

//! Measures patch sizes on the firmware corpus: `cargo run --release --example measure [DIR] [PAIR...]`.
#![expect(clippy::unwrap_used, reason = "an example program")]

use std::time::Instant;

fn best_anchor(dir: &str, pair: &str) -> Option<u64> {
    let tsv = std::fs::read_to_string(format!("{dir}/anchors.tsv")).ok()?;
    tsv.lines()
        .skip(1)
        .filter(|l| l.split('\t').next() == Some(pair))
        .filter_map(|l| l.split('\t').nth(4)?.parse::<u64>().ok())
        .min()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| "../shared/corpus/firmware".into());
    let only: Vec<String> = args.collect();
    let mut pairs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pairs.sort();
    let mut logsum = 0.0;
    let mut n = 0;
    for pair in pairs {
        if !only.is_empty() && !only.contains(&pair) {
            continue;
        }
        let old = std::fs::read(format!("{dir}/{pair}/old.bin")).unwrap();
        let new = std::fs::read(format!("{dir}/{pair}/new.bin")).unwrap();
        let t = Instant::now();
        let patch = suitcase_delta::create(&old, &new, &Default::default()).unwrap();
        let ct = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = suitcase_delta::apply_to_vec(&old, &patch.bytes).unwrap();
        let at = t.elapsed().as_secs_f64();
        assert_eq!(out, new);
        let best = best_anchor(&dir, &pair).unwrap_or(1);
        let ratio = patch.bytes.len() as f64 / best as f64;
        logsum += ratio.ln();
        n += 1;
        println!(
            "{pair:28} {:>9} best {:>9} ratio {ratio:.3} mode {:?} create {ct:.2}s apply {at:.2}s",
            patch.bytes.len(),
            best,
            patch.header.mode
        );
    }
    println!("geomean {:.4} over {n}", (logsum / f64::from(n)).exp());
}

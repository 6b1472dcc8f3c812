//! Regenerates the small synthetic pairs in `testdata/delta` (deterministic):
//! `cargo run -p suitcase-delta --example gen_testdata`.
#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::type_complexity,
    reason = "an example program"
)]

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// Thumb-2 BL encoding of a branch from `from` to `to` (byte addresses).
fn bl(from: u32, to: u32) -> [u8; 4] {
    let off = (to as i64 - (from as i64 + 4)) >> 1;
    let off = off as u32;
    let s = (off >> 23) & 1;
    let i1 = (off >> 22) & 1;
    let i2 = (off >> 21) & 1;
    let j1 = (!(i1 ^ s)) & 1;
    let j2 = (!(i2 ^ s)) & 1;
    let hi = 0xF000 | (s << 10) | ((off >> 11) & 0x3FF);
    let lo = 0xD000 | (j1 << 13) | (j2 << 11) | (off & 0x7FF);
    let h = (hi as u16).to_le_bytes();
    let l = (lo as u16).to_le_bytes();
    [h[0], h[1], l[0], l[1]]
}

/// A toy Thumb firmware: a vector table, functions of random halfwords with BL calls to other
/// functions, a literal pool of pointers, and a string table.
fn firmware(funcs: &[Vec<u16>], calls: &[Vec<(usize, usize)>], strings: &[&str]) -> Vec<u8> {
    let base = 0x0800_0000u32;
    let mut addr = Vec::new();
    let mut pos = 64u32;
    for f in funcs {
        addr.push(pos);
        pos += (f.len() as u32) * 2;
    }
    let mut out = vec![0u8; 64];
    for (i, a) in addr.iter().take(16).enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&(base + a + 1).to_le_bytes());
    }
    for (fi, f) in funcs.iter().enumerate() {
        let start = out.len();
        for h in f {
            out.extend_from_slice(&h.to_le_bytes());
        }
        for &(at, target) in &calls[fi] {
            let from = start + at * 2;
            let b = bl(from as u32, addr[target % addr.len()]);
            out[from..from + 4].copy_from_slice(&b);
        }
    }
    for a in &addr {
        out.extend_from_slice(&(base + a + 1).to_le_bytes());
    }
    for s in strings {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    while !out.len().is_multiple_of(16) {
        out.push(0xFF);
    }
    out
}

fn gen_funcs(rng: &mut Rng, n: usize) -> (Vec<Vec<u16>>, Vec<Vec<(usize, usize)>>) {
    let mut funcs = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..n {
        let len = 8 + rng.below(60) as usize;
        let mut f: Vec<u16> = (0..len).map(|_| rng.next() as u16 & 0x7FFF).collect();
        f.push(0x4770); // bx lr
        let mut c = Vec::new();
        let mut at = 2;
        while at + 2 < len {
            if rng.below(4) == 0 {
                c.push((at, rng.below(n as u32) as usize));
                at += 2;
            }
            at += 1 + rng.below(6) as usize;
        }
        funcs.push(f);
        calls.push(c);
    }
    (funcs, calls)
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/delta");
    std::fs::create_dir_all(&dir).unwrap();
    let strings = [
        "suitcase demo firmware v1.0.0",
        "sensor init failed",
        "ok",
        "temperature=%d",
    ];
    let mut rng = Rng(0x5EED);

    // 1. thumb-shift: a function grows in the middle, every later function moves.
    let (funcs, calls) = gen_funcs(&mut rng, 60);
    let old = firmware(&funcs, &calls, &strings);
    let (mut f2, mut c2) = (funcs.clone(), calls.clone());
    for _ in 0..40 {
        f2[30].insert(5, rng.next() as u16 & 0x7FFF);
    }
    c2[30] = c2[30].iter().map(|&(a, t)| (a + 40, t)).collect();
    f2[45][3] ^= 0x0040;
    let strings2 = [
        "suitcase demo firmware v1.0.1",
        "sensor init failed",
        "ok",
        "temperature=%d",
    ];
    let new = firmware(&f2, &c2, &strings2);
    write(&dir, "thumb-shift", &old, &new);

    // 2. thumb-insert: a new function is added and a few old ones change.
    let (mut f3, mut c3) = (funcs, calls);
    let (nf, nc) = gen_funcs(&mut rng, 3);
    for (i, (f, c)) in nf.into_iter().zip(nc).enumerate() {
        f3.insert(10 + i * 7, f);
        c3.insert(10 + i * 7, c);
    }
    f3[50][2] = 0x2001;
    let new3 = firmware(&f3, &c3, &strings2);
    write(&dir, "thumb-insert", &old, &new3);

    // 3. random-rewrite: a new image unrelated to the old one (a delta does not pay).
    let random: Vec<u8> = (0..3000).map(|_| rng.next() as u8).collect();
    write(&dir, "unrelated", &old[..2000], &random);

    // 4. tiny: a few bytes, and an empty old image.
    write(&dir, "tiny", b"", b"hello, world\n");
}

fn write(dir: &std::path::Path, name: &str, old: &[u8], new: &[u8]) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("old.bin"), old).unwrap();
    std::fs::write(d.join("new.bin"), new).unwrap();
    println!("{name}: old {} new {}", old.len(), new.len());
}

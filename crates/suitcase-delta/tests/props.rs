//! Property tests: round trips on random and mutated images; no panic on any patch bytes.
#![expect(
    clippy::std_instead_of_core,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use common::apply_chunked;
use proptest::prelude::*;
use suitcase_delta::{Options, Strategy as Plan, create};

/// An image and an edited copy of it (insertions, deletions, byte changes, moved blocks).
fn pair() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec((0usize..4, any::<usize>(), any::<u8>(), 1usize..64), 0..12),
        any::<bool>(),
    )
        .prop_map(|(mut old, edits, structured)| {
            if structured {
                // Code-like: repeat a small alphabet so matches are ambiguous.
                for b in &mut old {
                    *b %= 7;
                }
            }
            let mut new = old.clone();
            for (kind, at, val, len) in edits {
                let at = if new.is_empty() { 0 } else { at % new.len() };
                match kind {
                    0 => new
                        .splice(at..at, std::iter::repeat_n(val, len))
                        .for_each(drop),
                    1 => {
                        let end = (at + len).min(new.len());
                        new.drain(at..end);
                    }
                    2 => {
                        if let Some(b) = new.get_mut(at) {
                            *b = b.wrapping_add(val | 1);
                        }
                    }
                    _ => {
                        let end = (at + len).min(new.len());
                        let chunk: Vec<u8> = new[at..end].to_vec();
                        new.extend_from_slice(&chunk);
                    }
                }
            }
            (old, new)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_edits_round_trip((old, new) in pair(), chunk in 1usize..300, full in any::<bool>()) {
        let strategy = if full { Plan::Full } else { Plan::Auto };
        let patch = create(&old, &new, &Options { strategy, ..Options::default() }).unwrap();
        let (res, slot) = apply_chunked(&old, &patch.bytes, chunk, new.len());
        prop_assert_eq!(res, Ok(()));
        prop_assert_eq!(slot.buf, new);
    }

    #[test]
    fn mutated_patches_never_panic_nor_write_past_the_slot(
        (old, new) in pair(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
        chunk in 1usize..200,
    ) {
        let mut p = create(&old, &new, &Options::default()).unwrap().bytes;
        for (at, x) in flips {
            let i = at % p.len();
            p[i] ^= x | 1;
        }
        if cut % 3 == 0 {
            p.truncate(cut % (p.len() + 1));
        }
        let (res, slot) = apply_chunked(&old, &p, chunk, new.len());
        prop_assert!(slot.high_water <= new.len());
        if res.is_ok() {
            prop_assert_eq!(slot.buf, new);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..600),
        mode in 0u8..3,
        sizes in (0u32..5000, 0u32..5000, 0u32..700),
        chunk in 1usize..100,
    ) {
        // A well-formed header so that the payload decoder is reached, then garbage.
        let old = vec![0x55u8; sizes.0 as usize];
        use sha2::Digest;
        let full = mode == 1;
        let h = suitcase_delta::Header {
            mode: if full { suitcase_delta::Mode::Full } else { suitcase_delta::Mode::Sequential },
            ram_bound: suitcase_delta::REQUIRED_RAM,
            old_size: if full { 0 } else { sizes.0 },
            new_size: sizes.1,
            payload_len: tail.len() as u32,
            old_digest: if full { [0; 32] } else { sha2::Sha256::digest(&old).into() },
            new_digest: [0xAB; 32],
            geometry: None,
            flags: 0,
        };
        let mut buf = [0u8; suitcase_delta::format::MAX_HEADER_LEN];
        let n = h.write(&mut buf);
        let mut p = buf[..n].to_vec();
        p.extend_from_slice(&tail);
        let (res, slot) = apply_chunked(&old, &p, chunk, sizes.1 as usize);
        prop_assert!(res.is_err());
        prop_assert!(slot.high_water <= sizes.1 as usize);
    }
}

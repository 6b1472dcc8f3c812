//! Sequential and full-image patches: round trips and refusals.
#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use common::{apply_chunked, testdata_pairs};
use suitcase_delta::format::MAX_HEADER_LEN;
use suitcase_delta::{
    Applier, Error, Header, Limits, MAX_RAM_BOUND, Mode, Options, REQUIRED_RAM, Strategy, create,
    parse_info,
};

/// The patch with its header rewritten by `edit` (the header's length may change).
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

fn make(old: &[u8], new: &[u8], strategy: Strategy) -> Vec<u8> {
    create(
        old,
        new,
        &Options {
            strategy,
            ..Options::default()
        },
    )
    .unwrap()
    .bytes
}

#[test]
fn applier_state_fits_16_kib() {
    assert!(
        size_of::<Applier>() <= 16 * 1024,
        "{}",
        size_of::<Applier>()
    );
    assert!(size_of::<suitcase_delta::InPlaceApplier>() <= 16 * 1024);
    assert_eq!(
        REQUIRED_RAM as usize,
        size_of::<Applier>().max(size_of::<suitcase_delta::InPlaceApplier>())
    );
    const { assert!(REQUIRED_RAM <= MAX_RAM_BOUND) };
}

#[test]
fn testdata_pairs_round_trip_in_every_mode_and_chunking() {
    for (name, old, new) in testdata_pairs() {
        for strategy in [Strategy::Auto, Strategy::Delta, Strategy::Full] {
            let patch = make(&old, &new, strategy);
            for chunk in [1, 3, 64, 1000, usize::MAX] {
                let (res, slot) =
                    apply_chunked(&old, &patch, chunk.min(patch.len().max(1)), new.len());
                res.unwrap_or_else(|e| panic!("{name} {strategy:?} chunk {chunk}: {e}"));
                assert_eq!(slot.buf, new, "{name} {strategy:?} chunk {chunk}");
            }
        }
    }
}

#[test]
fn shifted_thumb_code_gives_a_small_patch() {
    let pairs = testdata_pairs();
    let (_, old, new) = pairs.iter().find(|(n, ..)| n == "thumb-shift").unwrap();
    let patch = make(old, new, Strategy::Auto);
    assert!(
        patch.len() < new.len() / 8,
        "patch {} for {} bytes",
        patch.len(),
        new.len()
    );
}

#[test]
fn unrelated_image_falls_back_to_full_mode() {
    let pairs = testdata_pairs();
    let (_, old, new) = pairs.iter().find(|(n, ..)| n == "unrelated").unwrap();
    let p = create(old, new, &Options::default()).unwrap();
    assert_eq!(p.header.mode, Mode::Full);
    assert!(p.rejected_delta_bytes.is_some());
    // A full patch applies without the old image.
    let (res, slot) = apply_chunked(&[], &p.bytes, 100, new.len());
    res.unwrap();
    assert_eq!(&slot.buf, new);
}

#[test]
fn header_info_names_source_and_result() {
    let pairs = testdata_pairs();
    let (_, old, new) = pairs.iter().find(|(n, ..)| n == "thumb-shift").unwrap();
    let patch = make(old, new, Strategy::Delta);
    let info = parse_info(&patch).unwrap();
    use sha2::Digest;
    let (old_sha, new_sha) = (
        <[u8; 32]>::from(sha2::Sha256::digest(old)),
        <[u8; 32]>::from(sha2::Sha256::digest(new)),
    );
    // By default the header carries SHA-256 truncated to 128 bits.
    assert_eq!(info.digest_len, 16);
    assert_eq!(info.source_digest[..16], old_sha[..16]);
    assert_eq!(info.result_digest[..16], new_sha[..16]);
    assert!(info.source_matches(&old_sha) && info.result_matches(&new_sha));
    assert!(!info.source_matches(&new_sha) && !info.result_matches(&old_sha));
    assert_eq!(info.new_size as usize, new.len());
    assert_eq!(info.ram_bound, REQUIRED_RAM);
    assert!(info.needs_source && !info.in_place);
    assert_eq!(parse_info(&patch[..40]), Err(Error::Truncated));

    // --full-digests: the whole SHA-256, 32 bytes more, the same payload.
    let full = create(
        old,
        new,
        &Options {
            strategy: Strategy::Delta,
            full_digests: true,
            ..Options::default()
        },
    )
    .unwrap()
    .bytes;
    let finfo = parse_info(&full).unwrap();
    assert_eq!(finfo.digest_len, 32);
    assert_eq!(
        (finfo.source_digest, finfo.result_digest),
        (old_sha, new_sha)
    );
    assert_eq!(full.len(), patch.len() + 32);
    let (res, slot) = apply_chunked(old, &full, 7, new.len());
    res.unwrap();
    assert_eq!(&slot.buf, new);
}

fn thumb() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let pairs = testdata_pairs();
    let (_, old, new) = pairs
        .into_iter()
        .find(|(n, ..)| n == "thumb-insert")
        .unwrap();
    let patch = make(&old, &new, Strategy::Delta);
    (old, new, patch)
}

#[test]
fn truncated_patch_is_refused() {
    let (old, new, patch) = thumb();
    for cut in 0..patch.len() {
        let (res, slot) = apply_chunked(&old, &patch[..cut], 17, new.len());
        assert!(res.is_err(), "accepted a patch cut at {cut}");
        assert!(slot.high_water <= new.len());
    }
}

#[test]
fn patch_with_trailing_bytes_is_refused() {
    let (old, new, mut patch) = thumb();
    patch.push(0);
    let (res, _) = apply_chunked(&old, &patch, 1000, new.len());
    assert_eq!(res, Err(Error::TrailingData));
}

#[test]
fn patch_claiming_huge_ram_bound_is_refused() {
    let (old, new, patch) = thumb();
    let patch = with_header(&patch, |h| h.ram_bound = 1 << 20);
    let (res, slot) = apply_chunked(&old, &patch, 1000, new.len());
    assert!(
        matches!(res, Err(Error::RamBoundTooLarge { .. })),
        "{res:?}"
    );
    assert_eq!(slot.high_water, 0);
    // And a device granting less RAM than the patch declares refuses it too.
    let (_, _, patch) = thumb();
    let mut a = Applier::new(Limits {
        max_ram: 4096,
        slot_size: u32::MAX,
    });
    let mut o = old.as_slice();
    let mut out = Vec::new();
    assert!(matches!(
        a.feed(&patch, &mut o, &mut out),
        Err(Error::RamBoundTooLarge { .. })
    ));
}

#[test]
fn patch_claiming_too_little_ram_is_refused() {
    let (old, new, patch) = thumb();
    let patch = with_header(&patch, |h| h.ram_bound = 64);
    let (res, _) = apply_chunked(&old, &patch, 1000, new.len());
    assert!(
        matches!(res, Err(Error::RamBoundTooSmall { .. })),
        "{res:?}"
    );
}

#[test]
fn patch_for_other_source_image_is_refused() {
    let (mut old, new, patch) = thumb();
    old[100] ^= 1;
    let (res, slot) = apply_chunked(&old, &patch, 1000, new.len());
    assert_eq!(res, Err(Error::SourceDigestMismatch));
    assert_eq!(slot.high_water, 0, "wrote before checking the source");
    let (res, _) = apply_chunked(&old[..old.len() - 1], &patch, 1000, new.len());
    assert!(res.is_err());
}

#[test]
fn patch_larger_than_slot_is_refused_before_writing() {
    let (old, new, patch) = thumb();
    let (res, slot) = apply_chunked(&old, &patch, 1000, new.len() - 1);
    assert!(matches!(res, Err(Error::TooLargeForSlot { .. })), "{res:?}");
    assert_eq!(slot.high_water, 0);
}

#[test]
fn forged_result_digest_is_refused() {
    let (old, new, mut patch) = thumb();
    // The result digest is the header's last 16 bytes (sequential mode, truncated SHA-256).
    let h = Header::parse(&patch).unwrap();
    assert_eq!(h.digest_len(), 16);
    let at = h.len() - 10;
    patch[at] ^= 0x80;
    let (res, _) = apply_chunked(&old, &patch, 1000, new.len());
    assert_eq!(res, Err(Error::ResultDigestMismatch));
}

#[test]
fn every_single_byte_corruption_is_refused_without_writing_past_the_slot() {
    let (old, new, patch) = thumb();
    for i in 0..patch.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut p = patch.clone();
            p[i] ^= flip;
            let (res, slot) = apply_chunked(&old, &p, 97, new.len());
            assert!(slot.high_water <= new.len());
            if res.is_ok() {
                // Only possible if the corruption did not change the output (e.g. a reserved
                // byte we do not read); the result digest was verified.
                assert_eq!(
                    slot.buf, new,
                    "byte {i} flip {flip:#x} accepted with a wrong image"
                );
            }
        }
    }
}

#[test]
fn wrong_magic_and_version_are_refused() {
    let (old, new, patch) = thumb();
    let mut p = patch.clone();
    p[0] = b'X';
    assert_eq!(
        apply_chunked(&old, &p, 10, new.len()).0,
        Err(Error::BadMagic)
    );
    let mut p = patch.clone();
    p[4] = 9;
    assert_eq!(
        apply_chunked(&old, &p, 10, new.len()).0,
        Err(Error::UnsupportedVersion(9))
    );
    let mut p = patch;
    p[6] = 0x80;
    assert_eq!(
        apply_chunked(&old, &p, 10, new.len()).0,
        Err(Error::UnsupportedFlags(0x80))
    );
}

#[test]
fn empty_images_round_trip() {
    for (old, new) in [(&b""[..], &b""[..]), (b"abc", b""), (b"", b"x")] {
        for strategy in [Strategy::Auto, Strategy::Delta, Strategy::Full] {
            let patch = make(old, new, strategy);
            let (res, slot) = apply_chunked(old, &patch, 5, new.len());
            res.unwrap();
            assert_eq!(slot.buf, new);
        }
    }
}

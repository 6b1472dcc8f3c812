//! `suitcase key reserve`: an HSS-LMS master key hands a range of signatures to a reservation
//! file, which signs releases until its range is used up; the master carries on after it.

#![allow(clippy::unwrap_used, reason = "test code")]

mod common;

use common::{ok, suitcase};

#[test]
fn reservation_signs_its_range_then_refuses_and_the_master_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &[
            "key",
            "generate",
            "--alg",
            "hss-lms",
            "--hss-params",
            "h5w4",
            "-o",
            "master.hss",
            "--public",
            "master.pub",
        ],
    );
    ok(
        d,
        &[
            "key",
            "generate",
            "--alg",
            "es256",
            "-o",
            "author.key",
            "--public",
            "author.pub",
        ],
    );
    std::fs::write(d.join("app.bin"), b"image").unwrap();
    ok(
        d,
        &[
            "release",
            "build",
            "--image",
            "app.bin",
            "--vendor",
            "example.com",
            "--class",
            "c",
            "--sequence",
            "1",
            "--integrated",
            "--sign",
            "author.key",
            "-o",
            "app.suit",
        ],
    );
    let r = ok(
        d,
        &[
            "key",
            "reserve",
            "--key",
            "master.hss",
            "--count",
            "2",
            "-o",
            "r.hss",
            "--json",
        ],
    );
    assert_eq!((r["first"].as_u64(), r["end"].as_u64()), (Some(0), Some(2)));
    assert_eq!(r["master_left"], 30);
    // An existing reservation is not overwritten by accident.
    let (code, _, out) = suitcase(
        d,
        &[
            "key",
            "reserve",
            "--key",
            "master.hss",
            "--count",
            "1",
            "-o",
            "r.hss",
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("refusing to overwrite"), "{out}");
    for _ in 0..2 {
        ok(
            d,
            &[
                "release", "sign", "app.suit", "--key", "r.hss", "-o", "app.suit",
            ],
        );
    }
    let (code, _, out) = suitcase(
        d,
        &[
            "release", "sign", "app.suit", "--key", "r.hss", "-o", "x.suit",
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is used up"), "{out}");
    let (code, _, out) = suitcase(
        d,
        &[
            "manifest",
            "check",
            "app.suit",
            "--trust",
            "author.pub",
            "--trust",
            "master.pub",
            "--threshold",
            "2",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let again = ok(
        d,
        &[
            "key",
            "reserve",
            "--key",
            "master.hss",
            "--count",
            "3",
            "-o",
            "r2.hss",
            "--json",
        ],
    );
    assert_eq!(
        again["first"], 2,
        "the master never goes back into the range"
    );
}

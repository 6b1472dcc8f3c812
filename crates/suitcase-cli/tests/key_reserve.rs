//! `suitcase key reserve`: an HSS-LMS master key hands a range of signatures to a reservation
//! file, which signs releases until its range is used up; the master carries on after it.

mod common;

use common::{build_args, check_args, es256_key, ok, sign_args, suitcase};

/// `suitcase key reserve --key master.hss --count COUNT -o OUT`.
fn reserve<'a>(count: &'a str, out: &'a str) -> [&'a str; 8] {
    [
        "key",
        "reserve",
        "--key",
        "master.hss",
        "--count",
        count,
        "-o",
        out,
    ]
}

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
    es256_key(d, "author");
    std::fs::write(d.join("app.bin"), b"image").unwrap();
    ok(
        d,
        &build_args(
            "c",
            "1",
            &["--integrated", "--sign", "author.key", "-o", "app.suit"],
        ),
    );
    let r = ok(d, &[&reserve("2", "r.hss")[..], &["--json"]].concat());
    assert_eq!((r["first"].as_u64(), r["end"].as_u64()), (Some(0), Some(2)));
    assert_eq!(r["master_left"], 30);
    // An existing reservation is not overwritten by accident.
    let (code, _, out) = suitcase(d, &reserve("1", "r.hss"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("refusing to overwrite"), "{out}");
    for _ in 0..2 {
        ok(d, &sign_args("r.hss", "app.suit"));
    }
    let (code, _, out) = suitcase(d, &sign_args("r.hss", "x.suit"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is used up"), "{out}");
    let (code, _, out) = suitcase(
        d,
        &check_args("app.suit", &["author.pub", "master.pub"], "2"),
    );
    assert_eq!(code, 0, "{out}");
    let again = ok(d, &[&reserve("3", "r2.hss")[..], &["--json"]].concat());
    assert_eq!(
        again["first"], 2,
        "the master never goes back into the range"
    );
}

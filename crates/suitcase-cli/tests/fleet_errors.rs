//! What `suitcase fleet` says when a call fails: a server it cannot reach (and what to
//! check), and a refusal as the server gave it (status, message, hint), through the typed
//! client's errors.

mod common;

use common::{ServerProcess, build_args, es256_key, free_port, ok, run};

#[test]
fn fleet_says_what_failed_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Nothing listens on the port: say where it tried, and what to check.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (code, _, out) = run(std::process::Command::new(env!("CARGO_BIN_EXE_suitcase"))
        .current_dir(d)
        .args(["fleet", "--server", &base, "--token", "t", "key", "list"]));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!("cannot reach the server at {base}"))
            && out.contains("is `suitcase server` running? (--server URL)"),
        "{out}"
    );

    let s = ServerProcess::start(d);
    // A refusal with the server's message and, on its own line, its hint (the body is read
    // as an envelope before any key is looked up: a malformed one is named as such).
    std::fs::write(d.join("x.suit"), b"not an envelope").unwrap();
    let (code, _, out) = run(&mut s.command(d, &["fleet", "release", "upload", "x.suit"]));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("the server answered 422 Unprocessable Entity: the body is not a SUIT envelope (malformed)")
            && out.contains("\n  hint: upload the signed envelope file (suitcase release build -o FILE)"),
        "{out}"
    );
    // A signed envelope while no release-signing key is registered: 409 and what to do.
    es256_key(d, "a");
    std::fs::write(d.join("app.bin"), [7u8; 256]).unwrap();
    ok(
        d,
        &build_args(
            "thermostat",
            "1",
            &["--integrated", "--sign", "a.key", "-o", "ok.suit"],
        ),
    );
    let (code, _, out) = run(&mut s.command(d, &["fleet", "release", "upload", "ok.suit"]));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("the server answered 409 Conflict: no release-signing keys are registered")
            && out.contains("\n  hint: an admin registers the author's public key"),
        "{out}"
    );
    // A wrong token: the status and the server's message, no JSON on stdout.
    let (code, json, out) =
        run(&mut s.command(d, &["fleet", "--json", "--token", "wrong", "key", "list"]));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("the server answered 401 Unauthorized"),
        "{out}"
    );
    assert!(json.is_null(), "{json}");
}

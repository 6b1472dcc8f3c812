//! `suitcase trust` and `manifest check --trust-update`, run as docs/trust.md runs them: the
//! real binary, real keys, real envelopes. Root rotation, signer rotation and revocation
//! (RFC 8240 §3), ownership transfer (RFC 8240 §5), and the attacks on each.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let d = Self(tempfile::tempdir().unwrap());
        for k in [
            "root1",
            "root2",
            "root3",
            "root4",
            "root5",
            "author1",
            "author2",
            "owner-root",
            "owner-author",
        ] {
            d.ok(&[
                "key",
                "generate",
                "--alg",
                "ed25519",
                "-o",
                &format!("{k}.key"),
                "--public",
                &format!("{k}.pub"),
            ]);
        }
        std::fs::write(d.path().join("app.bin"), [7u8; 300]).unwrap();
        // Genesis: root 2-of-3, author1 signs releases.
        d.ok(&[
            "trust",
            "init",
            "--root",
            "root1.pub",
            "--root",
            "root2.pub",
            "--root",
            "root3.pub",
            "--threshold",
            "2",
            "--signer",
            "author1.pub",
            "--out",
            "trust.cbor",
        ]);
        d
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_suitcase"))
            .current_dir(self.path())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, text) = self.run(args);
        assert_eq!(code, 0, "suitcase {args:?}: {text}");
        text
    }

    fn release(&self, out: &str, seq: u32, key: &str) {
        self.ok(&[
            "release",
            "build",
            "--image",
            "app.bin",
            "--vendor",
            "example.com",
            "--class",
            "thermostat",
            "--sequence",
            &seq.to_string(),
            "--integrated",
            "--sign",
            key,
            "-o",
            out,
        ]);
    }

    /// `manifest check --json` with the genesis trust and `updates`: (exit code, verdict).
    fn check(&self, envelope: &str, updates: &[&str]) -> (i32, Value) {
        let mut args = vec![
            "manifest",
            "check",
            envelope,
            "--trust",
            "trust.cbor",
            "--json",
        ];
        for u in updates {
            args.extend(["--trust-update", u]);
        }
        let (code, text) = self.run(&args);
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The walk-through's rotation: author2 added, author1 revoked, signed by root1+root2.
    fn rotate_author(&self) {
        self.ok(&common::ROTATE_AUTHOR_ARGS);
    }
}

fn kid(dir: &Dir, key: &str) -> String {
    let out = dir.ok(&[
        "trust", "init", "--root", key, "--out", "tmp.cbor", "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["roots"][0]["kid"].as_str().unwrap().to_owned()
}

#[test]
fn rotation_walk_through_old_key_refused_new_key_accepted() {
    let d = Dir::new();
    d.release("app-1.suit", 1, "author1.key");
    assert_eq!(
        d.check("app-1.suit", &[]).0,
        0,
        "author1 is trusted at genesis"
    );
    d.rotate_author();
    d.release("app-2.suit", 2, "author2.key");
    let (code, v) = d.check("app-2.suit", &["update-1.suit"]);
    assert_eq!((code, v["verdict"].as_str()), (0, Some("accept")), "{v}");
    assert_eq!(
        v["signers"][0],
        format!("signer {}", kid(&d, "author2.pub"))
    );
    // Before the trust update, author2 is nobody.
    assert_eq!(d.check("app-2.suit", &[]).1["reason"], "signature");
    // `trust apply` reaches the same state the author wrote.
    d.ok(&[
        "trust",
        "apply",
        "--state",
        "trust.cbor",
        "update-1.suit",
        "--out",
        "applied.cbor",
    ]);
    assert_eq!(
        std::fs::read(d.path().join("applied.cbor")).unwrap(),
        std::fs::read(d.path().join("trust-1.cbor")).unwrap()
    );
}

#[test]
fn attack_revoked_key_release_refused() {
    let d = Dir::new();
    d.release("app-1.suit", 1, "author1.key");
    d.rotate_author();
    let (code, v) = d.check("app-1.suit", &["update-1.suit"]);
    assert_eq!(code, 1);
    assert_eq!(v["verdict"], "reject");
    assert_eq!(v["reason"], "signature");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("revoked"), "{detail}");
    assert!(detail.contains(&kid(&d, "author1.pub")), "{detail}");
    // Also against the new state file directly.
    let (code, text) = d.run(&["manifest", "check", "app-1.suit", "--trust", "trust-1.cbor"]);
    assert_eq!(code, 1);
    assert!(text.contains("revoked"), "{text}");
    // The hint fits a trust state, not only key files.
    assert!(
        text.contains("hint: ") && text.contains("`suitcase trust show`"),
        "{text}"
    );
}

#[test]
fn attack_release_signer_cannot_issue_trust_update() {
    let d = Dir::new();
    // author1 (a release signer) signs a trust update adding its accomplice.
    d.ok(&[
        "trust",
        "update",
        "--state",
        "trust.cbor",
        "--add-signer",
        "author2.pub",
        "--sign",
        "author1.key",
        "--out",
        "evil.suit",
    ]);
    d.release("app-2.suit", 2, "author2.key");
    let (code, v) = d.check("app-2.suit", &["evil.suit"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("signature")), "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("trust update evil.suit refused")
    );
    let (code, _) = d.run(&["trust", "apply", "--state", "trust.cbor", "evil.suit"]);
    assert_eq!(code, 1);
}

#[test]
fn attack_trust_update_below_threshold_refused() {
    // One root key of a 2-of-3 root compromised: alone it cannot change the trust.
    let d = Dir::new();
    let out = d.ok(&[
        "trust",
        "update",
        "--state",
        "trust.cbor",
        "--add-signer",
        "author2.pub",
        "--sign",
        "root3.key",
        "--out",
        "one.suit",
    ]);
    assert!(out.contains("would refuse"), "the tool warns: {out}");
    d.release("app-2.suit", 2, "author2.key");
    let (code, v) = d.check("app-2.suit", &["one.suit"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("signature")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("requires 2"), "{v}");
    // A second root holder co-signs: now it applies.
    d.ok(&["trust", "sign", "one.suit", "--key", "root1.key"]);
    assert_eq!(d.check("app-2.suit", &["one.suit"]).0, 0);
}

#[test]
fn attack_trust_update_rollback_refused() {
    let d = Dir::new();
    d.rotate_author();
    // An older trust state re-signed by the root, replayed after update 1 (sequence 1 again).
    d.ok(&[
        "trust",
        "update",
        "--state",
        "trust.cbor",
        "--release-threshold",
        "1",
        "--sign",
        "root1.key",
        "--sign",
        "root2.key",
        "--out",
        "old.suit",
    ]);
    d.release("app-1.suit", 1, "author1.key");
    let (code, v) = d.check("app-1.suit", &["update-1.suit", "old.suit"]);
    assert_eq!(
        (code, v["reason"].as_str()),
        (1, Some("sequence-rollback")),
        "{v}"
    );
    // Replaying the same update twice is a rollback too.
    let (code, v) = d.check("app-1.suit", &["update-1.suit", "update-1.suit"]);
    assert_eq!(
        (code, v["reason"].as_str()),
        (1, Some("sequence-rollback")),
        "{v}"
    );
}

#[test]
fn root_rotation_chain() {
    let d = Dir::new();
    d.rotate_author();
    // Root {1,2,3} 2-of-3 → {4,5} 2-of-2, signed by both thresholds (TUF §5.3.4).
    d.ok(&[
        "trust",
        "rotate-root",
        "--state",
        "trust-1.cbor",
        "--new-root",
        "root4.pub",
        "--new-root",
        "root5.pub",
        "--threshold",
        "2",
        "--sign",
        "root1.key",
        "--sign",
        "root2.key",
        "--sign",
        "root4.key",
        "--sign",
        "root5.key",
        "--out",
        "update-2.suit",
        "--state-out",
        "trust-2.cbor",
    ]);
    // The new root (alone) then rotates the author key back... to a third state.
    d.ok(&[
        "trust",
        "update",
        "--state",
        "trust-2.cbor",
        "--release-threshold",
        "1",
        "--sign",
        "root4.key",
        "--sign",
        "root5.key",
        "--out",
        "update-3.suit",
    ]);
    d.release("app-2.suit", 2, "author2.key");
    let chain = ["update-1.suit", "update-2.suit", "update-3.suit"];
    assert_eq!(d.check("app-2.suit", &chain).0, 0);
    // Out of order, update-3 is not signed by the root in force (the old one).
    let (code, v) = d.check("app-2.suit", &["update-1.suit", "update-3.suit"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("signature")), "{v}");
    // The old root can no longer sign after the rotation.
    d.ok(&[
        "trust",
        "update",
        "--state",
        "trust-2.cbor",
        "--sequence",
        "9",
        "--add-signer",
        "owner-author.pub",
        "--sign",
        "root1.key",
        "--sign",
        "root2.key",
        "--out",
        "old-root.suit",
    ]);
    let (code, _) = d.check(
        "app-2.suit",
        &["update-1.suit", "update-2.suit", "old-root.suit"],
    );
    assert_eq!(code, 1);
    // A rotation signed only by the old root (new keys never signed) is refused.
    d.ok(&[
        "trust",
        "rotate-root",
        "--state",
        "trust-1.cbor",
        "--new-root",
        "root4.pub",
        "--threshold",
        "1",
        "--sign",
        "root1.key",
        "--sign",
        "root2.key",
        "--out",
        "typo.suit",
    ]);
    let (code, v) = d.check("app-2.suit", &["update-1.suit", "typo.suit"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("signature")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("new root"), "{v}");
}

#[test]
fn attack_old_owner_after_handover_refused() {
    let d = Dir::new();
    d.release("app-1.suit", 1, "author1.key");
    // The vendor hands over; the new owner countersigns with its root.
    d.ok(&[
        "trust",
        "handover",
        "--state",
        "trust.cbor",
        "--new-root",
        "owner-root.pub",
        "--new-signer",
        "owner-author.pub",
        "--sign",
        "root1.key",
        "--sign",
        "root2.key",
        "--out",
        "handover.suit",
        "--state-out",
        "owner.cbor",
    ]);
    d.ok(&["trust", "sign", "handover.suit", "--key", "owner-root.key"]);
    d.release("owner-1.suit", 5, "owner-author.key");
    assert_eq!(d.check("owner-1.suit", &["handover.suit"]).0, 0);
    // The vendor's release key is revoked...
    let (code, v) = d.check("app-1.suit", &["handover.suit"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("signature")));
    assert!(v["detail"].as_str().unwrap().contains("revoked"), "{v}");
    // ...and its whole root together cannot take the device back.
    d.ok(&[
        "trust",
        "update",
        "--state",
        "owner.cbor",
        "--add-signer",
        "author2.pub",
        "--sign",
        "root1.key",
        "--sign",
        "root2.key",
        "--sign",
        "root3.key",
        "--out",
        "takeback.suit",
    ]);
    d.release("app-2.suit", 2, "author2.key");
    let (code, v) = d.check("app-2.suit", &["handover.suit", "takeback.suit"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("signature")), "{v}");
    // Without the owner's countersignature the handover does not apply at all.
    d.ok(&[
        "trust",
        "handover",
        "--state",
        "trust.cbor",
        "--new-root",
        "owner-root.pub",
        "--sign",
        "root1.key",
        "--sign",
        "root2.key",
        "--out",
        "unsigned-handover.suit",
    ]);
    assert_eq!(d.check("app-1.suit", &["unsigned-handover.suit"]).0, 1);
}

#[test]
fn show_explains_a_state_and_an_update() {
    let d = Dir::new();
    d.rotate_author();
    let out = d.ok(&["trust", "show", "update-1.suit", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sequence"], 1);
    assert_eq!(v["revoked"][0], kid(&d, "author1.pub"));
    let out = d.ok(&["trust", "show", "trust.cbor"]);
    assert!(out.contains("root: 2 of 3"), "{out}");
    let help = d.ok(&["trust", "--help"]);
    assert!(
        help.contains("rotate-root") && help.contains("handover"),
        "{help}"
    );
}

#[test]
fn walk_through_in_docs_runs_as_written() {
    // docs/trust.md's shell blocks, pasted into an empty directory as the page says.
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/trust.md"))
            .unwrap();
    let mut script = String::from("set -ex\n");
    let mut inside = false;
    for line in page.lines() {
        match (inside, line) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, l) => {
                script.push_str(l);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(script.contains("--trust-update"), "no walk-through found");
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_suitcase")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // The old key's release refused naming the revocation, the new key's accepted.
    assert!(
        text.contains("REJECT app-1.suit (signature): signed by revoked key"),
        "{text}"
    );
    assert!(text.contains("ACCEPT app-2.suit"), "{text}");
    assert!(text.contains("ACCEPT owner-3.suit"), "{text}");
    assert!(
        text.contains("REJECT app-2.suit (signature): signed by revoked key"),
        "{text}"
    );
}

#[test]
fn attack_trust_update_unrevoking_key_refused() {
    let d = Dir::new();
    d.release("app-1.suit", 1, "author1.key");
    d.rotate_author();
    // Root holders (or one who fooled them) sign an update built from a state that never
    // revoked author1: the same roots, author1 a signer again, a higher sequence.
    d.ok(&[
        "trust",
        "init",
        "--root",
        "root1.pub",
        "--root",
        "root2.pub",
        "--root",
        "root3.pub",
        "--threshold",
        "2",
        "--signer",
        "author1.pub",
        "--out",
        "forgetting.cbor",
    ]);
    d.ok(&[
        "trust",
        "update",
        "--state",
        "forgetting.cbor",
        "--sequence",
        "2",
        "--sign",
        "root1.key",
        "--sign",
        "root2.key",
        "--out",
        "update-2.suit",
    ]);
    let (code, v) = d.check("app-1.suit", &["update-1.suit", "update-2.suit"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["verdict"], "reject");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("revocation is permanent"), "{detail}");
    assert!(detail.contains(&kid(&d, "author1.pub")), "{detail}");
    let (code, text) = d.run(&["trust", "apply", "--state", "trust-1.cbor", "update-2.suit"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("revocation is permanent"), "{text}");
}

#[test]
fn a_full_revocation_list_is_refused_by_the_builder_naming_the_way_out() {
    let d = Dir::new();
    let ids: Vec<String> = (1..=17).map(|i| format!("{i:016x}")).collect();
    let mut args = vec!["trust", "update", "--state", "trust.cbor"];
    for id in &ids {
        args.extend(["--revoke", id]);
    }
    args.extend([
        "--sign",
        "root1.key",
        "--sign",
        "root2.key",
        "--out",
        "full.suit",
    ]);
    let (code, text) = d.run(&args);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("revocation list is full"), "{text}");
    assert!(text.contains("--remove-signer"), "{text}");
    assert!(!d.path().join("full.suit").exists());
}

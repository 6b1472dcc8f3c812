//! Signing through a real PKCS#11 token: Debian's SoftHSM2 (`apt-get install softhsm2`).
//!
//! Each test initialises its own token in a temporary directory (`SOFTHSM2_CONF` names a
//! configuration whose `directories.tokendir` is there), makes keys on it with
//! `suitcase key generate --pkcs11`, signs releases through it and verifies them with the
//! exported public key, as a device would. Without SoftHSM2 the tests print a SKIP line and
//! pass, unless `SUITCASE_REQUIRE_SOFTHSM=1` (CI sets it), which turns a missing SoftHSM2 into
//! a failure.

#![expect(clippy::unwrap_used, clippy::panic, reason = "test code")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{build_args, check_args, es256_key, sign_args};
use serde_json::Value;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";
const SO_PIN: &str = "5678";
const LABEL: &str = "suitcase-test";

/// A SoftHSM2 token of its own, in a temporary directory.
struct Token {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Token {
    /// A fresh, initialised token; `None` (after a SKIP line) when SoftHSM2 is not installed.
    fn new(test: &str) -> Option<Self> {
        let have_util = Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have_util || !Path::new(MODULE).is_file() {
            assert!(
                std::env::var("SUITCASE_REQUIRE_SOFTHSM").as_deref() != Ok("1"),
                "SUITCASE_REQUIRE_SOFTHSM=1 but SoftHSM2 is not installed \
                 (softhsm2-util and {MODULE}): apt-get install -y softhsm2"
            );
            skip(&format!(
                "SKIP {test}: SoftHSM2 is not installed (apt-get install -y softhsm2)"
            ));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        write_conf(&conf, &dir.path().join("tokens"), "");
        let token = Self { dir, conf };
        token.softhsm2_util(&[
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ]);
        std::fs::write(token.path("pin.txt"), format!("{PIN}\n")).unwrap();
        Some(token)
    }

    /// Runs `softhsm2-util ARGS` on this token, in its directory; it must succeed.
    fn softhsm2_util(&self, args: &[&str]) {
        let out = Command::new("softhsm2-util")
            .current_dir(self.dir.path())
            .env("SOFTHSM2_CONF", &self.conf)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The URI of key `object` on this token, the PIN from pin.txt.
    fn uri(&self, object: &str) -> String {
        uri(
            object,
            MODULE,
            "pin-source",
            &self.path("pin.txt").display(),
        )
    }

    /// Runs `suitcase ARGS` against this token: (exit code, JSON stdout or null, all output).
    fn run_with(&self, conf: &Path, args: &[&str]) -> (i32, Value, String) {
        common::run(
            Command::new(env!("CARGO_BIN_EXE_suitcase"))
                .current_dir(self.dir.path())
                .env("SOFTHSM2_CONF", conf)
                .args(args),
        )
    }

    fn run(&self, args: &[&str]) -> (i32, Value, String) {
        self.run_with(&self.conf, args)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (code, json, out) = self.run(args);
        assert_eq!(code, 0, "suitcase {args:?}:\n{out}");
        json
    }

    /// `suitcase ARGS` must fail (exit 2); returns what it printed.
    fn fails(&self, args: &[&str]) -> String {
        let (code, _, out) = self.run(args);
        assert_eq!(code, 2, "suitcase {args:?} should fail:\n{out}");
        out
    }

    /// Countersigning `app.suit` with `key` into `x.suit` must fail; returns what it printed.
    fn sign_fails(&self, key: &str) -> String {
        self.fails(&sign_args(key, "x.suit"))
    }

    /// A software key pair `NAME.key`, `NAME.pub` next to the token.
    fn software_key(&self, name: &str) {
        es256_key(self.dir.path(), name);
    }

    /// `suitcase key public KEY -o OUT --json`: the key's report.
    fn public(&self, key: &str, out: &str) -> Value {
        self.ok(&["key", "public", key, "-o", out, "--json"])
    }

    /// An integrated release of `app.bin` ("image"), class c, sequence number `sequence`, built
    /// with `rest` (the signers, the output); the `release build` arguments.
    fn integrated<'a>(&self, sequence: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        std::fs::write(self.path("app.bin"), b"image").unwrap();
        build_args("c", sequence, &[&["--integrated"], rest].concat())
    }

    /// Makes a key pair on the token and exports its public key to `NAME.pub`.
    fn generate(&self, alg: &str, name: &str) -> Value {
        self.ok(&[
            "key",
            "generate",
            "--alg",
            alg,
            "--pkcs11",
            &self.uri(name),
            "--public",
            &format!("{name}.pub"),
            "--json",
        ])
    }

    /// A single-image release signed with `sign` (a key file or a URI), written to `out`.
    fn release(&self, sign: &str, out: &str) -> Value {
        std::fs::write(self.path("app.bin"), b"firmware built for the token test").unwrap();
        self.ok(&build_args(
            "thermostat",
            "7",
            &[
                "--component",
                "00",
                "--uri",
                "https://fw.example.com/app-7.bin",
                "--sign",
                sign,
                "-o",
                out,
                "--json",
            ],
        ))
    }

    fn check(&self, envelope: &str, trust: &[&str], threshold: &str) -> (i32, String) {
        let (code, _, out) = self.run(&check_args(envelope, trust, threshold));
        (code, out)
    }
}

/// A PKCS#11 URI for key `object` on the test token: `module-path=MODULE&PIN=VALUE` (`PIN` is
/// `pin-source` or `pin-value`).
fn uri(object: &str, module: &str, pin: &str, value: &dyn core::fmt::Display) -> String {
    format!("pkcs11:token={LABEL};object={object}?module-path={module}&{pin}={value}")
}

/// Prints a SKIP line that shows even though the test harness captures `eprintln!`: a skipped
/// test must be visible in the log, not pass in silence.
fn skip(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn write_conf(conf: &Path, tokendir: &Path, extra: &str) {
    std::fs::write(
        conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n{extra}",
            tokendir.display()
        ),
    )
    .unwrap();
}

/// The protected header, the signed payload (the encoded SUIT_Digest) and the signature of
/// the first COSE_Sign1 in an envelope, decoded here without suitcase's own code.
fn first_sign1(envelope: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut d = minicbor::Decoder::new(envelope);
    d.tag().unwrap();
    let n = d.map().unwrap().unwrap();
    for _ in 0..n {
        if d.u64().unwrap() != 2 {
            d.skip().unwrap();
            continue;
        }
        let mut auth = minicbor::Decoder::new(d.bytes().unwrap());
        auth.array().unwrap();
        let digest = auth.bytes().unwrap().to_vec();
        let mut sign1 = minicbor::Decoder::new(auth.bytes().unwrap());
        assert_eq!(sign1.tag().unwrap(), minicbor::data::Tag::new(18));
        assert_eq!(sign1.array().unwrap(), Some(4));
        let protected = sign1.bytes().unwrap().to_vec();
        sign1.skip().unwrap(); // unprotected
        sign1.null().unwrap(); // detached payload
        let signature = sign1.bytes().unwrap().to_vec();
        return (protected, digest, signature);
    }
    panic!("no authentication wrapper");
}

/// Sig_structure (RFC 9052 §4.4) for a COSE_Sign1 without external AAD.
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    e.array(4)
        .unwrap()
        .str("Signature1")
        .unwrap()
        .bytes(protected)
        .unwrap()
        .bytes(&[])
        .unwrap()
        .bytes(payload)
        .unwrap();
    e.into_writer()
}

#[test]
fn es256_release_signed_on_the_token_verifies_with_the_exported_key() {
    let Some(t) = Token::new("es256_release_signed_on_the_token_verifies_with_the_exported_key")
    else {
        return;
    };
    let made = t.generate("es256", "author");
    assert_eq!(made["alg"], "es256");
    let uri = t.uri("author");
    let built = t.release(&uri, "app.suit");
    assert_eq!(built["signatures"][0]["kid"], made["kid"]);
    assert_eq!(built["signatures"][0]["alg"], -9);
    let (code, out) = t.check("app.suit", &["author.pub"], "1");
    assert_eq!(code, 0, "{out}");
    // The same check with an unrelated key must reject: the acceptance above is the token's.
    t.software_key("other");
    let (code, out) = t.check("app.suit", &["other.pub"], "1");
    assert_eq!(code, 1, "{out}");
}

#[test]
fn es256_token_signature_verifies_with_independent_verifiers() {
    let Some(t) = Token::new("es256_token_signature_verifies_with_independent_verifiers") else {
        return;
    };
    t.generate("es256", "author");
    t.release(&t.uri("author"), "app.suit");
    let envelope = std::fs::read(t.path("app.suit")).unwrap();
    let (protected, payload, signature) = first_sign1(&envelope);
    assert_eq!(
        signature.len(),
        64,
        "COSE ES256 is raw r||s (RFC 9053 §2.1)"
    );
    let tbs = sig_structure(&protected, &payload);

    // RustCrypto's p256 on the exported SPKI key.
    use p256::ecdsa::signature::Verifier as _;
    use p256::pkcs8::DecodePublicKey as _;
    let pem = std::fs::read_to_string(t.path("author.pub")).unwrap();
    let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&signature).unwrap();
    key.verify(&tbs, &sig).unwrap();
    let mut tampered = tbs.clone();
    *tampered.last_mut().unwrap() ^= 1;
    key.verify(&tampered, &sig).unwrap_err();

    // OpenSSL, where installed (it wants the signature in DER).
    if Command::new("openssl").arg("version").output().is_ok() {
        std::fs::write(t.path("tbs.bin"), &tbs).unwrap();
        std::fs::write(t.path("sig.der"), sig.to_der().as_bytes()).unwrap();
        let out = Command::new("openssl")
            .current_dir(t.dir.path())
            .args(["dgst", "-sha256", "-verify", "author.pub"])
            .args(["-signature", "sig.der", "tbs.bin"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        skip("note: openssl not installed; checked with p256 only");
    }
}

#[test]
fn ed25519_operator_countersigns_from_the_token_and_both_signatures_verify() {
    let Some(t) =
        Token::new("ed25519_operator_countersigns_from_the_token_and_both_signatures_verify")
    else {
        return;
    };
    // The author signs with a key file, the operator countersigns with a token key.
    t.software_key("author");
    t.release("author.key", "app.suit");
    let made = t.generate("ed25519", "operator");
    let signed = t.ok(&[&sign_args(&t.uri("operator"), "app.suit")[..], &["--json"]].concat());
    assert_eq!(signed["alg"], -19);
    assert_eq!(signed["kid"], made["kid"]);
    assert_eq!(signed["signatures"], 2);
    let (code, out) = t.check("app.suit", &["author.pub", "operator.pub"], "2");
    assert_eq!(code, 0, "{out}");
    // Without the operator's key the threshold of two is not met.
    let (code, out) = t.check("app.suit", &["author.pub"], "2");
    assert_eq!(code, 1, "{out}");
}

#[test]
fn token_key_kid_equals_the_software_kid_of_the_same_public_key() {
    let Some(t) = Token::new("token_key_kid_equals_the_software_kid_of_the_same_public_key") else {
        return;
    };
    for (alg, name) in [("es256", "p"), ("ed25519", "e")] {
        let made = t.generate(alg, name);
        // The exported file, read as any public key file is.
        let from_file = t.public(&format!("{name}.pub"), &format!("{name}.again.pub"));
        assert_eq!(made["kid"], from_file["kid"], "{alg}");
        // `key public URI` reads back the same key.
        let from_token = t.public(&t.uri(name), &format!("{name}.token.pub"));
        assert_eq!(made["kid"], from_token["kid"], "{alg}");
        assert_eq!(
            std::fs::read(t.path(&format!("{name}.pub"))).unwrap(),
            std::fs::read(t.path(&format!("{name}.token.pub"))).unwrap()
        );
    }
}

#[test]
fn private_key_on_the_token_is_never_readable() {
    let Some(t) = Token::new("private_key_on_the_token_is_never_readable") else {
        return;
    };
    let made = t.generate("es256", "author");
    let read_back = t.public(&t.uri("author"), "again.pub");
    for report in [&made["token"], &read_back["token"]] {
        // PKCS#11 v2.40 base, "Private key objects": sensitive, never extractable;
        // C_GetAttributeValue: CKA_VALUE is refused (CKR_ATTRIBUTE_SENSITIVE) when the key is
        // asked for.
        assert_eq!(report["sensitive"], true, "{report}");
        assert_eq!(report["extractable"], false, "{report}");
        assert_eq!(report["always_sensitive"], true, "{report}");
        assert_eq!(report["never_extractable"], true, "{report}");
        assert_eq!(report["value_readable"], false, "{report}");
    }
}

#[test]
fn wrong_pin_is_refused_and_names_the_pin_to_fix() {
    let Some(t) = Token::new("wrong_pin_is_refused_and_names_the_pin_to_fix") else {
        return;
    };
    t.generate("es256", "author");
    std::fs::write(t.path("wrong.txt"), "9999\n").unwrap();
    let uri = uri(
        "author",
        MODULE,
        "pin-source",
        &t.path("wrong.txt").display(),
    );
    let out = t.fails(&t.integrated("1", &["--sign", &uri, "-o", "x.suit"]));
    assert!(out.contains("wrong PIN"), "{out}");
    assert!(out.contains("pin-source"), "{out}");
    assert!(!t.path("x.suit").exists());
    // pin-value is accepted too, and a wrong one never appears in the message.
    let uri = self::uri("author", MODULE, "pin-value", &4321);
    let out = t.fails(&["key", "public", &uri, "-o", "a.pub"]);
    assert!(out.contains("wrong PIN"), "{out}");
    assert!(
        !out.contains("4321"),
        "the PIN leaked into the message: {out}"
    );
}

#[test]
fn missing_object_is_refused_and_says_how_to_create_it() {
    let Some(t) = Token::new("missing_object_is_refused_and_says_how_to_create_it") else {
        return;
    };
    t.release_input();
    let out = t.sign_fails(&t.uri("no-such-key"));
    assert!(out.contains("no private key object=no-such-key"), "{out}");
    assert!(out.contains("suitcase key generate --pkcs11"), "{out}");
}

#[test]
fn token_without_the_eddsa_mechanism_is_refused_before_signing() {
    let Some(t) = Token::new("token_without_the_eddsa_mechanism_is_refused_before_signing") else {
        return;
    };
    t.generate("ed25519", "operator");
    t.release_input();
    // The same token, with SoftHSM2 told to offer only the ECDSA mechanisms
    // (softhsm2.conf(5) slots.mechanisms; its "-CKM_..." exclusion form misreads its first
    // entry in 2.6.1, so the list is positive).
    let conf = t.path("no-eddsa.conf");
    write_conf(
        &conf,
        &t.path("tokens"),
        "slots.mechanisms = CKM_ECDSA,CKM_EC_KEY_PAIR_GEN,CKM_EC_EDWARDS_KEY_PAIR_GEN\n",
    );
    let (code, _, out) = t.run_with(&conf, &sign_args(&t.uri("operator"), "x.suit"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not offer CKM_EDDSA"), "{out}");
    assert!(out.contains("--alg es256"), "{out}");
    // Generating an Ed25519 key there is refused the same way.
    let (code, _, out) = t.run_with(
        &conf,
        &[
            "key",
            "generate",
            "--alg",
            "ed25519",
            "--pkcs11",
            &t.uri("another"),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not offer CKM_EDDSA"), "{out}");
}

#[test]
fn algorithm_mismatch_an_rsa_key_on_the_token_is_refused() {
    let Some(t) = Token::new("algorithm_mismatch_an_rsa_key_on_the_token_is_refused") else {
        return;
    };
    let have_openssl = Command::new("openssl")
        .current_dir(t.dir.path())
        .args(["genpkey", "-algorithm", "RSA", "-out", "rsa.pem"])
        .args(["-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_openssl {
        skip("SKIP algorithm_mismatch_an_rsa_key_on_the_token_is_refused: no openssl");
        return;
    }
    t.softhsm2_util(&[
        "--import", "rsa.pem", "--token", LABEL, "--label", "rsa", "--id", "0a0b", "--pin", PIN,
    ]);
    t.release_input();
    let out = t.sign_fails(&t.uri("rsa"));
    assert!(out.contains("not an elliptic-curve key"), "{out}");
    assert!(out.contains("P-256 (es256) or Ed25519"), "{out}");
}

#[test]
fn wrong_module_path_is_refused_and_names_the_module_to_use() {
    let Some(t) = Token::new("wrong_module_path_is_refused_and_names_the_module_to_use") else {
        return;
    };
    t.release_input();
    let pin = t.path("pin.txt");
    let missing = uri(
        "author",
        "/usr/lib/no-such-module.so",
        "pin-source",
        &pin.display(),
    );
    let out = t.sign_fails(&missing);
    assert!(out.contains("does not exist"), "{out}");
    assert!(out.contains(MODULE), "{out}");
    // A file that exists but is no PKCS#11 module.
    let not_a_module = uri(
        "author",
        &pin.display().to_string(),
        "pin-source",
        &pin.display(),
    );
    let out = t.sign_fails(&not_a_module);
    assert!(out.contains("as a PKCS#11 module"), "{out}");
}

#[test]
fn misspelt_uri_attribute_is_refused_not_ignored() {
    let Some(t) = Token::new("misspelt_uri_attribute_is_refused_not_ignored") else {
        return;
    };
    t.generate("es256", "author");
    t.release_input();
    let uri = t.uri("author").replace("object=", "objcet=");
    let out = t.sign_fails(&uri);
    assert!(out.contains("unknown attribute `objcet`"), "{out}");
}

#[test]
fn release_toml_takes_a_pkcs11_uri_as_a_signer() {
    let Some(t) = Token::new("release_toml_takes_a_pkcs11_uri_as_a_signer") else {
        return;
    };
    t.generate("es256", "author");
    std::fs::create_dir(t.path("rel")).unwrap();
    std::fs::write(t.path("rel/app.bin"), b"image").unwrap();
    std::fs::write(
        t.path("rel/RELEASE.toml"),
        format!(
            "sequence = 3\nprofile = \"basic\"\nvendor = \"example.com\"\nclass = \"c\"\n\
             sign = [\"{}\"]\n\n[[image]]\nfile = \"app.bin\"\ncomponent = \"00\"\n\
             integrated = true\n",
            t.uri("author")
        ),
    )
    .unwrap();
    t.ok(&[
        "release",
        "build",
        "rel/RELEASE.toml",
        "-o",
        "app.suit",
        "--json",
    ]);
    let (code, out) = t.check("app.suit", &["author.pub"], "1");
    assert_eq!(code, 0, "{out}");
}

impl Token {
    /// An envelope `app.suit` signed by a software key, for the countersigning tests.
    fn release_input(&self) {
        self.software_key("sw");
        self.release("sw.key", "app.suit");
    }
}

#[test]
fn x509_root_and_signer_keys_on_the_token_issue_a_chain_devices_accept() {
    let Some(t) = Token::new("x509_root_and_signer_keys_on_the_token_issue_a_chain_devices_accept")
    else {
        return;
    };
    t.generate("es256", "root");
    t.generate("es256", "signer");
    let root = t.uri("root");
    t.ok(&[
        "key",
        "cert",
        "--key",
        &root,
        "--cn",
        "Token Root",
        "--ca",
        "-o",
        "root.pem",
    ]);
    t.ok(&[
        "key",
        "cert",
        "--key",
        "signer.pub",
        "--cn",
        "Token Signer",
        "--issuer-key",
        &root,
        "--issuer-chain",
        "root.pem",
        "-o",
        "signer-chain.pem",
    ]);
    let signer = t.uri("signer");
    t.ok(&t.integrated(
        "5",
        &[
            "--profile",
            "enhanced",
            "--sign",
            &signer,
            "--x5chain",
            "signer-chain.pem",
            "-o",
            "app.suit",
        ],
    ));
    let (code, out) = t.check("app.suit", &["root.pem"], "1");
    assert_eq!(code, 0, "{out}");
    // An Ed25519 token key cannot issue X.509 certificates here: said, not mis-signed.
    t.generate("ed25519", "edroot");
    let out = t.fails(&[
        "key",
        "cert",
        "--key",
        &t.uri("edroot"),
        "--cn",
        "Ed Root",
        "--ca",
        "-o",
        "ed.pem",
    ]);
    assert!(out.contains("P-256"), "{out}");
}

#[test]
fn two_token_keys_sign_one_release_in_one_process() {
    let Some(t) = Token::new("two_token_keys_sign_one_release_in_one_process") else {
        return;
    };
    // One module, one login shared by both signers' sessions (PKCS#11 v2.40 base, C_Login).
    t.generate("es256", "author");
    t.generate("ed25519", "operator");
    let (author, operator) = (t.uri("author"), t.uri("operator"));
    let built = t.ok(&t.integrated(
        "9",
        &[
            "--profile",
            "enhanced",
            "--sign",
            &author,
            "--sign",
            &operator,
            "-o",
            "app.suit",
            "--json",
        ],
    ));
    assert_eq!(built["signatures"].as_array().map(Vec::len), Some(2));
    let (code, out) = t.check("app.suit", &["author.pub", "operator.pub"], "2");
    assert_eq!(code, 0, "{out}");
}

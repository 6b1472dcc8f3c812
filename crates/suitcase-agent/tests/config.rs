//! `agent.toml`: the example in testdata parses with every key, and mistakes are named with
//! what to write instead.

#![expect(clippy::panic, reason = "test code")]

use std::path::{Path, PathBuf};

use suitcase_agent::config::{ActivateMode, ConsentMode, ImageFormat, Kind};
use suitcase_agent::{AgentError, Config};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/agent/agent.toml")
}

#[test]
fn the_example_uses_every_key_and_parses() {
    let c = Config::load(&example()).unwrap();
    assert_eq!(c.server.url, "https://updates.example.com");
    assert_eq!(
        c.server.token.as_deref(),
        Some("sct_d_example_token_not_valid_anywhere")
    );
    assert_eq!(c.trust.anchors.len(), 1);
    assert_eq!(c.trust.keys.keys.len(), 1);
    assert_eq!(
        c.identity.vendor,
        suitcase_author::uuid::vendor("example.com")
    );
    assert_eq!(
        (c.server.min_rate.bytes.get(), c.server.min_rate.window),
        (16384, core::time::Duration::from_secs(60))
    );
    assert_eq!(c.consent.mode, ConsentMode::Window);
    assert_eq!(c.consent.window.as_ref().unwrap().start_minute, 120);
    assert_eq!(c.health.command, ["/usr/libexec/healthy"]);
    assert_eq!(c.push.client_id, "gateway-0042");
    assert_eq!(c.reserve_bytes, 64 << 20);
    assert_eq!(c.components.len(), 3);
    let Kind::File(app) = &c.components[0].kind else {
        panic!()
    };
    assert_eq!(app.activate, ActivateMode::Restart);
    assert_eq!(app.capacity, 256 << 20);
    let Kind::Mcu(mcu) = &c.components[1].kind else {
        panic!()
    };
    assert_eq!((mcu.image, mcu.slot_size()), (ImageFormat::Raw, 256 << 10));
    assert!(mcu.secondary.is_none());
    let Kind::Mcu(radio) = &c.components[2].kind else {
        panic!()
    };
    assert_eq!(radio.image, ImageFormat::SlotImage);
    let s = radio.secondary.as_ref().unwrap();
    assert_eq!(s.inner_component, vec![vec![0u8]]);
    assert_eq!(
        s.identity.vendor,
        suitcase_author::uuid::vendor("radio.example")
    );
}

fn parse(text: &str) -> Result<Config, AgentError> {
    Config::parse(&example(), text)
}

const BASE: &str = r#"
state_dir = "state"
[server]
url = "http://127.0.0.1:8080"
token = "t"
[trust]
anchors = ["author.pub"]
[identity]
vendor = "example.com"
class = "thermostat"
"#;

const APP: &str = r#"
[[component]]
name = "app"
id = "617070"
kind = "file"
slots = ["a", "b"]
pointer = "p"
capacity = 10
"#;

fn message(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mistakes_are_named() {
    assert!(parse(&format!("{BASE}{APP}")).is_ok());
    let cases = [
        (BASE.to_owned(), "no [[component]]"),
        (
            format!("{BASE}{APP}").replace("token = \"t\"\n", ""),
            "needs a credential",
        ),
        (
            format!("{BASE}{APP}").replace("http://127", "ftp://127"),
            "http:// or https://",
        ),
        (
            format!("{BASE}{APP}").replace("id = \"617070\"", "id = \"zz\""),
            "is not hex",
        ),
        (
            format!("{BASE}{APP}").replace("capacity = 10\n", ""),
            "give capacity",
        ),
        (
            format!("{BASE}{APP}").replace("slots = [\"a\", \"b\"]", "slots = [\"a\"]"),
            "two files or block devices",
        ),
        (
            format!("{BASE}{APP}").replace("author.pub", "missing.pub"),
            "trust anchor",
        ),
        (
            format!("{BASE}[trust]\nthreshold = 2\n{APP}"),
            "duplicate key",
        ),
        (
            format!("{BASE}{APP}[consent]\nmode = \"command\"\n"),
            "needs consent.command",
        ),
        (
            format!(
                "{BASE}{APP}[consent]\nmode = \"window\"\nwindow = {{ start = \"2am\", end = \"04:00\" }}\n"
            ),
            "HH:MM",
        ),
        (format!("{BASE}{APP}{APP}"), "share a name or an id"),
        (
            format!("{BASE}{APP}").replace("kind = \"file\"", "kind = \"mcu\""),
            "slots does not apply",
        ),
        (
            format!("{BASE}{APP}")
                .replace("token = \"t\"\n", "token = \"t\"\ndownload_min_bytes = 0\n"),
            "server.download_min_bytes = 0 per server.download_window_seconds = 30",
        ),
        (
            format!("{BASE}{APP}").replace(
                "token = \"t\"\n",
                "token = \"t\"\ndownload_window_seconds = 0\n",
            ),
            "give a positive number of bytes per a positive number of seconds",
        ),
        // A window so long it bounds nothing (and would overflow the download's deadline).
        (
            format!("{BASE}{APP}").replace(
                "token = \"t\"\n",
                "token = \"t\"\ndownload_window_seconds = 1e15\n",
            ),
            "server.download_window_seconds = 1000000000000000: at most 86400 seconds",
        ),
        (format!("{BASE}{APP}frobnicate = 1\n"), "unknown field"),
    ];
    for (text, want) in cases {
        let m = message(&text);
        assert!(m.contains(want), "{want:?} not in {m:?}");
    }
}

/// A private key listed as a trust anchor is refused in every format the agent reads (PEM,
/// COSE_Key binary and hex, HSS-LMS key files; top-level and secondary anchors), with an error
/// naming the file and the public key to list instead, and without a byte of the key in it.
/// The public halves of the same keys are accepted.
#[test]
fn attack_private_key_as_trust_anchor_is_refused_without_echoing_it() {
    use suitcase_author::keys::{self, KeyAlg};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    for alg in [
        KeyAlg::Es256,
        KeyAlg::Ed25519,
        KeyAlg::HssLms,
        KeyAlg::MlDsa65,
    ] {
        let g = keys::generate(alg, "h5w4").unwrap();
        let path = d.join(format!("{}.key", alg.name()));
        keys::write_atomic(&path, &g.private, true).unwrap();
        let private = keys::load_private(&path).unwrap();
        let (public, _) = keys::public_of(&private).unwrap().encode().unwrap();
        cases.push((
            format!("{}.key", alg.name()),
            g.private.clone(),
            public.clone(),
        ));
        if let Some(cose) = private.encode_cose().unwrap() {
            cases.push((format!("{}.cose", alg.name()), cose.clone(), public.clone()));
            cases.push((
                format!("{}.cose.hex", alg.name()),
                hex::encode(&cose).into_bytes(),
                public,
            ));
        }
    }
    assert!(cases.len() >= 9, "{} formats", cases.len());
    for (name, private, public) in &cases {
        let anchor = d.join(name);
        std::fs::write(&anchor, private).unwrap();
        let pub_path = d.join(format!("{name}.pub"));
        std::fs::write(&pub_path, public).unwrap();
        let with = |a: &Path| {
            format!("{BASE}{APP}")
                .replace("\"author.pub\"", &format!("{:?}", a.display().to_string()))
        };
        Config::parse(&example(), &with(&pub_path))
            .unwrap_or_else(|e| panic!("{name}: the public key is refused: {e}"));
        let m = message(&with(&anchor));
        assert!(m.contains("is a private key"), "{name}: {m}");
        assert!(m.contains(&anchor.display().to_string()), "{name}: {m}");
        assert!(m.contains("suitcase key public"), "{name}: {m}");
        // No key material: no 16-byte run of the file, as text or as hex.
        let text = String::from_utf8_lossy(private).into_owned();
        for line in text
            .lines()
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
        {
            assert!(!m.contains(line), "{name}: the error echoes the key: {m}");
        }
        for w in private.windows(16).step_by(8) {
            assert!(
                !m.contains(&hex::encode(w)),
                "{name}: the error echoes the key: {m}"
            );
        }
        // A secondary MCU's own anchors go through the same check.
        let secondary = format!(
            "{BASE}{APP}\n[[component]]\nname = \"radio\"\nid = \"00\"\nkind = \"secondary\"\n\
             flash = \"radio.flash\"\ntrust = [{:?}]\nvendor = \"radio.example\"\nclass = \"radio\"\n",
            anchor.display().to_string()
        );
        let m = message(&secondary);
        assert!(
            m.contains("is a private key"),
            "{name} as a secondary anchor: {m}"
        );
    }
}

const UBOOT_APP: &str = r#"
[[component]]
name = "app"
id = "617070"
kind = "file"
slots = ["a", "b"]
capacity = 10
bootloader = "uboot"
reboot = ["systemctl", "reboot"]
[component.boot]
fw_env_config = "fw_env.config"
"#;

/// `bootloader` and `[component.boot]`: the old configurations keep the pointer backend; each
/// backend's settings parse, with their defaults; mistakes are named with what to write.
#[test]
fn bootloader_backends_parse_and_mistakes_are_named() {
    use suitcase_agent::bootloader::Backend;
    let c = parse(&format!("{BASE}{APP}")).unwrap();
    let Kind::File(s) = &c.components[0].kind else {
        panic!()
    };
    assert_eq!(s.bootloader, Backend::Pointer);
    assert_eq!(s.activate, ActivateMode::Restart);

    let c = parse(&format!("{BASE}{UBOOT_APP}")).unwrap();
    let Kind::File(s) = &c.components[0].kind else {
        panic!()
    };
    let Backend::Uboot(e) = &s.bootloader else {
        panic!("{:?}", s.bootloader)
    };
    let dir = example().parent().unwrap().to_path_buf();
    assert_eq!(e.file.as_deref(), Some(dir.join("fw_env.config").as_path()));
    assert_eq!(e.tries, 3);
    assert_eq!(e.cmdline, Path::new("/proc/cmdline"));
    assert_eq!(e.timeout, core::time::Duration::from_secs(10));
    // Reboot by default; the agent's record in the state directory when no pointer is given.
    assert_eq!(s.activate, ActivateMode::Reboot);
    assert_eq!(s.pointer, dir.join("state/slots-617070.pointer"));

    let grub = UBOOT_APP
        .replace("\"uboot\"", "\"grub\"")
        .replace("fw_env_config", "grubenv");
    let c = parse(&format!(
        "{BASE}{grub}\ntries = 5\ncmdline = \"/tmp/cmdline\"\n"
    ))
    .unwrap();
    let Kind::File(s) = &c.components[0].kind else {
        panic!()
    };
    let Backend::Grub(e) = &s.bootloader else {
        panic!("{:?}", s.bootloader)
    };
    assert_eq!(
        (e.tries, e.cmdline.as_path()),
        (5, Path::new("/tmp/cmdline"))
    );

    let custom = format!(
        "{BASE}{}",
        UBOOT_APP
            .replace("\"uboot\"", "\"custom\"")
            .replace(
                "fw_env_config = \"fw_env.config\"",
                "status = [\"bs\", \"status\"]\ntrial = [\"bs\", \"trial\"]\nconfirm = [\"bs\", \"confirm\"]\nrevert = [\"bs\", \"revert\"]"
            )
    );
    let c = parse(&custom).unwrap();
    let Kind::File(s) = &c.components[0].kind else {
        panic!()
    };
    assert!(matches!(&s.bootloader, Backend::Custom(b) if b.status == ["bs", "status"]));

    let cases = [
        (
            format!("{BASE}{UBOOT_APP}").replace("reboot = [\"systemctl\", \"reboot\"]\n", ""),
            "switches slots at boot: set activate = \"reboot\" and reboot =",
        ),
        (
            format!("{BASE}{UBOOT_APP}").replace(
                "bootloader = \"uboot\"\n",
                "activate = \"restart\"\nbootloader = \"uboot\"\n",
            ),
            "switches slots at boot",
        ),
        (
            format!("{BASE}{APP}[component.boot]\ntries = 3\n"),
            "[component.boot] needs bootloader = \"uboot\", \"grub\" or \"custom\"",
        ),
        (
            format!("{BASE}{UBOOT_APP}grubenv = \"x\"\n"),
            "grubenv does not apply to bootloader = \"uboot\"",
        ),
        (
            format!("{BASE}{UBOOT_APP}tries = 12\n"),
            "tries = 12: from 1 to 9",
        ),
        (
            format!("{BASE}{UBOOT_APP}tries = 0\n"),
            "tries = 0: from 1 to 9",
        ),
        (
            custom.replace("status = [\"bs\", \"status\"]\n", ""),
            "needs [component.boot] status = [",
        ),
        (
            custom.replace("revert = [\"bs\", \"revert\"]", "revert = []"),
            "needs [component.boot] revert = [",
        ),
        (
            format!("{BASE}{UBOOT_APP}").replace("\"uboot\"", "\"lilo\""),
            "unknown variant",
        ),
        (
            format!("{BASE}{UBOOT_APP}frobnicate = 1\n"),
            "unknown field",
        ),
        (
            format!("{BASE}{APP}")
                .replace("kind = \"file\"", "kind = \"mcu\"\nflash = \"f\"")
                .replace(
                    "slots = [\"a\", \"b\"]\npointer = \"p\"\ncapacity = 10\n",
                    "bootloader = \"uboot\"\n",
                ),
            "bootloader does not apply",
        ),
    ];
    for (text, want) in cases {
        let m = message(&text);
        assert!(m.contains(want), "{want:?} not in {m:?}");
    }
}

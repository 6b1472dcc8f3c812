//! Update modules (`kind = "module"`): a single file replaced atomically, a directory archive
//! swapped in, a script with install/commit/rollback entry points, and a Debian package
//! installed with the real `dpkg` into a throwaway root. Each installs through the same NTIA
//! steps as a slot image, from a real server, and each that can roll back is rolled back
//! after a failed health check.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::{Device, Fleet, run_with_crashes, server_steps, wait_campaign};
use serde_json::json;

const FAILING_HEALTH: &str = "[health]\ncommand = [\"sh\", \"-c\", \"exit 1\"]\n";

fn module(handler: &str, more: &str) -> String {
    format!(
        r#"
[[component]]
name = "app"
id = "617070"
kind = "module"
handler = "{handler}"
capacity = 1048576
{more}
"#
    )
}

/// A device whose only component is an update module.
async fn device(fleet: &Fleet, name: &str, handler: &str, more: &str) -> Device {
    let mut dev = Device::new(fleet, name).await;
    dev.components = module(handler, more);
    dev
}

/// Releases `bytes` as sequence `seq` to `dev` and runs one agent cycle; `Ok(())` when
/// installed, else the failure's (step, reason, detail).
async fn update(
    fleet: &Fleet,
    dev: &Device,
    seq: u64,
    bytes: &[u8],
) -> Result<(), (String, String, String)> {
    let rel = fleet.release(seq, bytes).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (mut agent, events) = dev.agent(fleet, suitcase_agent::Hooks::default());
    let u = agent.cycle().await.unwrap().update.unwrap();
    match u.finished {
        suitcase_agent::Finished::Installed => Ok(()),
        suitcase_agent::Finished::Failed(f) => Err((f.step.name().to_owned(), f.reason, f.detail)),
        other => panic!("{other:?}: {:?}", events.all()),
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *bytes).unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar whose one entry has a raw name the tar crate's own builder would refuse to write.
fn tar_with_raw_entry(name: &str, kind: tar::EntryType, link: &str, body: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, body).unwrap();
    b.into_inner().unwrap()
}

/// The installed tree before an update: `site/index.html` = "v1".
fn site_v1(dev: &Device) {
    std::fs::create_dir_all(dev.path("site")).unwrap();
    std::fs::write(dev.path("site/index.html"), b"v1").unwrap();
}

fn v1() -> Vec<(String, Vec<u8>)> {
    vec![("index.html".into(), b"v1".to_vec())]
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// file
// ---------------------------------------------------------------------------------------------

/// The file is replaced (its permission bits kept), nothing is left beside it, the inventory
/// carries the new sequence number, and the server timeline shows every step.
#[tokio::test]
async fn file_module_replaces_the_file_and_keeps_its_mode() {
    let fleet = Fleet::new().await;
    let dev = device(&fleet, "cfg", "file", "path = \"app.conf\"").await;
    std::fs::write(dev.path("app.conf"), b"level = 1\n").unwrap();
    std::fs::set_permissions(dev.path("app.conf"), std::fs::Permissions::from_mode(0o640)).unwrap();
    update(&fleet, &dev, 2, b"level = 2\n").await.unwrap();
    assert_eq!(dev.read("app.conf"), b"level = 2\n");
    assert_eq!(mode(&dev.path("app.conf")), 0o640);
    assert!(!dev.path("app.conf.suitcase-new").exists());
    assert!(!dev.path("state/modules/617070/previous").exists());
    assert_eq!(dev.installed()["components"][0]["sequence_number"], 2);
    let steps = server_steps(&fleet.device_info(&dev.id).await);
    assert!(
        steps.contains(&("distribute".into(), "success".into(), None)),
        "{steps:?}"
    );
    assert!(steps.contains(&("clean-up".into(), "success".into(), None)));
}

/// A failed health check puts the previous file back, byte for byte, and the failure names
/// what was restored.
#[tokio::test]
async fn file_module_failed_health_check_restores_the_previous_file() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "cfg-sick", "file", "path = \"app.conf\"").await;
    std::fs::write(dev.path("app.conf"), b"level = 1\n").unwrap();
    dev.extra = FAILING_HEALTH.into();
    let (step, reason, detail) = update(&fleet, &dev, 2, b"level = 2\n").await.unwrap_err();
    assert_eq!(
        (step.as_str(), reason.as_str()),
        ("clean-up", "health-check")
    );
    assert!(detail.contains("app.conf restored"), "{detail}");
    assert_eq!(dev.read("app.conf"), b"level = 1\n");
    assert!(dev.installed()["reverted"].as_bool().unwrap());
}

/// A file that did not exist before the update is removed again by the rollback, and the
/// `mode` setting applies to a new file.
#[tokio::test]
async fn file_module_rollback_removes_a_file_that_did_not_exist() {
    let fleet = Fleet::new().await;
    let mut dev = device(
        &fleet,
        "cfg-new",
        "file",
        "path = \"new.conf\"\nmode = \"0600\"\nrestart = [\"sh\", \"-c\", \"stat -c %a new.conf >> mode.seen\"]",
    )
    .await;
    dev.extra = FAILING_HEALTH.into();
    // The restart command ran in the test's working directory: give it the device's.
    let cfg = dev.components.replace(
        "stat -c %a new.conf >> mode.seen",
        &format!(
            "stat -c %a {} >> {}",
            dev.path("new.conf").display(),
            dev.path("mode.seen").display()
        ),
    );
    dev.components = cfg;
    let (_, _, detail) = update(&fleet, &dev, 2, b"fresh").await.unwrap_err();
    // Installed with the configured mode; the restart after the rollback finds no file.
    assert_eq!(dev.text("mode.seen"), "600\n");
    assert!(
        detail.contains("removed (it did not exist before)"),
        "{detail}"
    );
    assert!(!dev.path("new.conf").exists());
}

// ---------------------------------------------------------------------------------------------
// archive
// ---------------------------------------------------------------------------------------------

/// The archive's tree replaces the directory whole: old files gone, new ones in place, the
/// previous tree discarded after the health check.
#[tokio::test]
async fn archive_module_swaps_in_the_new_tree() {
    let fleet = Fleet::new().await;
    let dev = device(&fleet, "www", "archive", "path = \"site\"").await;
    std::fs::create_dir_all(dev.path("site/old")).unwrap();
    std::fs::write(dev.path("site/old/page.html"), b"v1").unwrap();
    let archive = tar_of(&[("index.html", b"v2"), ("css/site.css", b"body{}")]);
    update(&fleet, &dev, 2, &archive).await.unwrap();
    assert_eq!(
        tree(&dev.path("site")),
        vec![
            ("css/site.css".into(), b"body{}".to_vec()),
            ("index.html".into(), b"v2".to_vec())
        ]
    );
    assert!(!dev.path("site.suitcase-previous").exists());
    assert!(!dev.path("site.suitcase-new").exists());
}

/// A failed health check brings the previous tree back.
#[tokio::test]
async fn archive_module_failed_health_check_restores_the_previous_tree() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "www-sick", "archive", "path = \"site\"").await;
    site_v1(&dev);
    dev.extra = FAILING_HEALTH.into();
    let archive = tar_of(&[("index.html", b"v2")]);
    let (_, reason, detail) = update(&fleet, &dev, 2, &archive).await.unwrap_err();
    assert_eq!(reason, "health-check");
    assert!(detail.contains("site restored"), "{detail}");
    assert_eq!(tree(&dev.path("site")), v1());
    assert!(!dev.path("site.suitcase-previous").exists());
}

/// An archive signed by the author is still not trusted to write outside its directory: a
/// `../` entry, an absolute path, a symlink leading out followed by a file through it, and a
/// device node are each refused at Activate, and the installed tree is untouched.
#[tokio::test]
async fn attack_archive_entries_outside_the_directory_are_refused() {
    let fleet = Fleet::new().await;
    let dev = device(&fleet, "www-evil", "archive", "path = \"site\"").await;
    site_v1(&dev);
    let outside = dev.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mut escape_by_link = tar_with_raw_entry(
        "link",
        tar::EntryType::Symlink,
        outside.to_str().unwrap(),
        b"",
    );
    // Drop the end-of-archive blocks and append a file through the link.
    escape_by_link.truncate(escape_by_link.len() - 1024);
    escape_by_link.extend(tar_with_raw_entry(
        "link/evil",
        tar::EntryType::Regular,
        "",
        b"x",
    ));
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        (
            "dot-dot",
            tar_with_raw_entry("../evil", tar::EntryType::Regular, "", b"x"),
        ),
        (
            "absolute",
            tar_with_raw_entry(
                &format!("{}/evil", outside.display()),
                tar::EntryType::Regular,
                "",
                b"x",
            ),
        ),
        ("symlink", escape_by_link),
        (
            "device",
            tar_with_raw_entry("null", tar::EntryType::Char, "", b""),
        ),
    ];
    for (seq, (what, archive)) in (2..).zip(attacks) {
        let r = update(&fleet, &dev, seq, &archive).await;
        let (step, _, detail) = r.expect_err(what);
        assert_eq!(step, "activate", "{what}: {detail}");
        assert_eq!(tree(&dev.path("site")), v1(), "{what}");
        assert!(!dev.path("evil").exists(), "{what}");
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "{what}"
        );
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

/// A .tar.gz installs like a tar.
#[tokio::test]
async fn archive_module_installs_a_gzip_compressed_tar() {
    let fleet = Fleet::new().await;
    let dev = device(&fleet, "www-gz", "archive", "path = \"site\"").await;
    let archive = gzip(&tar_of(&[("index.html", b"compressed")]));
    update(&fleet, &dev, 2, &archive).await.unwrap();
    assert_eq!(
        tree(&dev.path("site")),
        vec![("index.html".into(), b"compressed".to_vec())]
    );
}

/// A gzip bomb: a payload of a few KiB that expands past the component's capacity is refused
/// while unpacking, and nothing is installed.
#[tokio::test]
async fn attack_gzip_bomb_archive_is_refused_at_its_capacity() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "www-bomb", "archive", "path = \"site\"").await;
    dev.components = dev
        .components
        .replace("capacity = 1048576", "capacity = 100000");
    let zeros = vec![0u8; 4 << 20];
    let archive = gzip(&tar_of(&[("a", &zeros), ("b", &zeros)]));
    assert!(archive.len() < 100_000, "{}", archive.len());
    let (step, _, detail) = update(&fleet, &dev, 2, &archive).await.unwrap_err();
    assert_eq!(step, "activate");
    assert!(detail.contains("more than capacity = 100000"), "{detail}");
    assert!(!dev.path("site").exists());
    assert!(!dev.path("site.suitcase-new").exists());
}

/// A crash (a power cut: every durable write so far kept, nothing else) after each durable
/// write of an archive update in turn, then a restart: every device ends with the new tree
/// installed once, no half tree and nothing left beside it, and the campaign completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_crash_after_every_durable_write_of_an_archive_update_installs_once() {
    let fleet = Fleet::new().await;
    let archive = tar_of(&[("index.html", b"v2"), ("css/site.css", b"body{}")]);
    let rel = fleet.release(2, &archive).await;
    let probe = device(&fleet, "arch-probe", "archive", "path = \"site\"").await;
    let mut devices = Vec::new();
    for i in 0..40 {
        devices.push(device(&fleet, &format!("arch-{i}"), "archive", "path = \"site\"").await);
    }
    for d in devices.iter().chain([&probe]) {
        site_v1(d);
    }
    let mut ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    ids.push(&probe.id);
    let campaign = fleet.campaign(&rel, &ids, json!({})).await;
    let (mut agent, _) = probe.agent(&fleet, suitcase_agent::Hooks::default());
    assert_eq!(
        agent.cycle().await.unwrap().update.unwrap().finished,
        suitcase_agent::Finished::Installed
    );
    let writes = agent.durable_writes();
    assert!(
        writes >= 10 && writes <= devices.len() as u64,
        "{writes} durable writes"
    );
    let want = vec![
        ("css/site.css".to_owned(), b"body{}".to_vec()),
        ("index.html".to_owned(), b"v2".to_vec()),
    ];
    for (i, dev) in devices.iter().enumerate().take(writes as usize) {
        let (crashes, finished) = run_with_crashes(dev, &fleet, &[i as u64 + 1]).await;
        assert_eq!(crashes, 1, "device {i}");
        assert!(
            matches!(finished, None | Some(suitcase_agent::Finished::Installed)),
            "crash at write {}: {finished:?}",
            i + 1
        );
        assert_eq!(tree(&dev.path("site")), want, "device {i}");
        assert!(!dev.path("site.suitcase-previous").exists(), "device {i}");
        assert!(!dev.path("site.suitcase-new").exists(), "device {i}");
        assert_eq!(dev.installed()["components"][0]["sequence_number"], 2);
    }
    for dev in devices.iter().skip(writes as usize) {
        dev.installed_cycle(&fleet).await;
    }
    let c = wait_campaign(&fleet, &campaign, "succeeded", devices.len() as u64 + 1).await;
    assert_eq!(c["state"], "completed", "{c}");
}

// ---------------------------------------------------------------------------------------------
// script
// ---------------------------------------------------------------------------------------------

const SCRIPT: &str = "#!/bin/sh\necho \"$1 $SUITCASE_SEQUENCE $SUITCASE_MODULE\" >> \"$LOG\"\n";

/// The script is run as `install`, then `commit` once healthy; with a failing health check
/// as `install`, then `rollback`.
#[tokio::test]
async fn script_module_installs_commits_and_rolls_back() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "scripted", "script", "").await;
    let log = dev.path("script.log");
    let script = SCRIPT.replace("$LOG", log.to_str().unwrap());
    update(&fleet, &dev, 2, script.as_bytes()).await.unwrap();
    assert_eq!(
        dev.text("script.log"),
        "install 2 script\ncommit 2 script\n"
    );
    dev.extra = FAILING_HEALTH.into();
    let (_, reason, _) = update(&fleet, &dev, 3, script.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(reason, "health-check");
    assert_eq!(
        dev.text("script.log"),
        "install 2 script\ncommit 2 script\ninstall 3 script\nrollback 3 script\n"
    );
}

/// A script that fails its install fails Activate with its own words, and is asked to roll
/// back; one declared without rollback says so instead.
#[tokio::test]
async fn script_module_failure_carries_its_output_and_no_rollback_is_reported() {
    let fleet = Fleet::new().await;
    let dev = device(&fleet, "scripted-bad", "script", "rollback = false").await;
    let failing = "#!/bin/sh\necho \"disk is read-only\" >&2\nexit 3\n";
    let (step, reason, detail) = update(&fleet, &dev, 2, failing.as_bytes())
        .await
        .unwrap_err();
    assert_eq!((step.as_str(), reason.as_str()), ("activate", "activate"));
    assert!(detail.contains("exited with 3"), "{detail}");
    assert!(detail.contains("disk is read-only"), "{detail}");
    let steps = server_steps(&fleet.device_info(&dev.id).await);
    assert!(
        steps
            .iter()
            .any(|(s, o, _)| s == "distribute" && o == "success"),
        "{steps:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// deb
// ---------------------------------------------------------------------------------------------

/// Builds `pkg_version.deb` holding `usr/share/suitcase-test/version` with `version`.
fn deb(dir: &Path, version: &str) -> Vec<u8> {
    let root = dir.join(format!("deb-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/suitcase-test")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: suitcase-test\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.com>\nDescription: test\n"
        ),
    )
    .unwrap();
    std::fs::write(root.join("usr/share/suitcase-test/version"), version).unwrap();
    let out = dir.join(format!("suitcase-test_{version}.deb"));
    let s = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&out)
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    std::fs::read(out).unwrap()
}

/// An empty dpkg root: the admin directory dpkg needs and nothing installed.
fn dpkg_root(root: &Path) {
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), b"").unwrap();
}

fn installed_version(root: &Path) -> String {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${Version}", "suitcase-test"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dpkg --install` (the real dpkg, into a throwaway root): version 1 installs; version 2
/// fails its health check and the agent reinstalls version 1 from the package it kept. The
/// very first package has nothing to go back to, and says so.
#[tokio::test]
async fn deb_module_installs_with_dpkg_and_rolls_back_to_the_kept_package() {
    let fleet = Fleet::new().await;
    let root = fleet.dir.path().join("sysroot");
    dpkg_root(&root);
    let dpkg = format!(
        "dpkg = [\"dpkg\", \"--root={root}\", \"--log={root}/var/log/dpkg.log\", \"--force-not-root\", \"--force-bad-path\"]",
        root = root.display()
    );
    let mut dev = device(&fleet, "debian", "deb", &dpkg).await;
    let file = root.join("usr/share/suitcase-test/version");

    // Nothing kept yet: a failure of the very first package cannot be rolled back.
    dev.extra = FAILING_HEALTH.into();
    let (_, _, detail) = update(&fleet, &dev, 2, &deb(fleet.dir.path(), "0.9"))
        .await
        .unwrap_err();
    assert!(
        detail.contains("no earlier package installed by the agent"),
        "{detail}"
    );
    assert_eq!(installed_version(&root), "0.9");

    dev.extra = String::new();
    update(&fleet, &dev, 3, &deb(fleet.dir.path(), "1.0"))
        .await
        .unwrap();
    assert_eq!(installed_version(&root), "1.0");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1.0");

    dev.extra = FAILING_HEALTH.into();
    let (_, reason, detail) = update(&fleet, &dev, 4, &deb(fleet.dir.path(), "2.0"))
        .await
        .unwrap_err();
    assert_eq!(reason, "health-check");
    assert!(
        detail.contains("dpkg --install of the previous package succeeded"),
        "{detail}"
    );
    assert_eq!(installed_version(&root), "1.0");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1.0");
}

/// A payload that is not a Debian package fails Activate with dpkg's own words.
#[tokio::test]
async fn deb_module_refuses_what_dpkg_refuses() {
    let fleet = Fleet::new().await;
    let root = fleet.dir.path().join("sysroot");
    dpkg_root(&root);
    let dpkg = format!(
        "dpkg = [\"dpkg\", \"--root={root}\", \"--log={root}/var/log/dpkg.log\", \"--force-not-root\", \"--force-bad-path\"]",
        root = root.display()
    );
    let dev = device(&fleet, "debian-bad", "deb", &dpkg).await;
    let (step, _, detail) = update(&fleet, &dev, 2, b"not a package").await.unwrap_err();
    assert_eq!(step, "activate");
    assert!(
        detail.contains("dpkg --install: dpkg exited with"),
        "{detail}"
    );
    assert!(detail.contains("dpkg-deb: error"), "{detail}");
}

// ---------------------------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------------------------

/// Each handler's settings are checked where they are written: a key of another handler, a
/// slot key, or a missing path is refused naming the key.
#[test]
fn module_configuration_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_, anchor) = common::keypair(dir.path(), "a", suitcase_author::keys::KeyAlg::Es256);
    let base = format!(
        "state_dir = \"s\"\n[server]\nurl = \"http://127.0.0.1:1\"\ntoken = \"t\"\n[trust]\nanchors = [\"{}\"]\n[identity]\nvendor = \"v\"\nclass = \"c\"\n",
        anchor.display()
    );
    for (more, expect) in [
        (module("file", ""), "needs path"),
        (
            module("archive", "mode = \"0644\""),
            "mode applies to handler \"file\" only",
        ),
        (module("script", "path = \"x\""), "path applies to handler"),
        (
            module("deb", "rollback = true"),
            "rollback applies to handler \"script\" only",
        ),
        (
            module("file", "path = \"x\"\nmode = \"rw\""),
            "octal permission bits",
        ),
        (
            module("file", "path = \"x\"\nslots = [\"a\", \"b\"]"),
            "slots does not apply",
        ),
        (module("deb", "dpkg = []"), "a command"),
        (
            "[[component]]\nname = \"app\"\nid = \"617070\"\nkind = \"module\"\ncapacity = 1\n"
                .to_owned(),
            "needs handler",
        ),
        (
            module("file", "path = \"x\"").replace("capacity = 1048576\n", ""),
            "needs capacity",
        ),
    ] {
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, format!("{base}{more}")).unwrap();
        let e = suitcase_agent::Config::load(&path)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(expect), "{more}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// inventory
// ---------------------------------------------------------------------------------------------

/// The inventory the server receives names each module's handler and whether it can roll
/// back (a `deb` the agent never installed cannot: dpkg keeps no old package), and a campaign
/// dry run warns of it before anything starts.
#[tokio::test]
async fn inventory_carries_each_module_handler_and_rollback_and_a_dry_run_warns() {
    let fleet = Fleet::new().await;
    let mut dev = device(&fleet, "inventory", "deb", "").await;
    dev.components.push_str(
        r#"
[[component]]
name = "conf"
id = "636f6e66"
kind = "module"
handler = "file"
path = "app.conf"
capacity = 1024
"#,
    );
    let (mut agent, _) = dev.agent(&fleet, suitcase_agent::Hooks::default());
    assert!(agent.cycle().await.unwrap().update.is_none());
    // The server records a check-in through its write buffer: wait (bounded) until it shows.
    let mut info = fleet.device_info(&dev.id).await;
    for _ in 0..100 {
        if !info["inventory"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        info = fleet.device_info(&dev.id).await;
    }
    let comps = &info["inventory"]["components"];
    assert_eq!(comps[0]["id"], json!(["617070"]), "{info}");
    assert_eq!(comps[0]["handler"], "deb", "{info}");
    assert_eq!(comps[0]["rollback"], false, "{info}");
    assert_eq!(comps[1]["id"], json!(["636f6e66"]), "{info}");
    assert_eq!(comps[1]["handler"], "file", "{info}");
    assert_eq!(comps[1]["rollback"], true, "{info}");
    assert!(
        info["inventory"].get("boot").is_none(),
        "modules have no boot state: {info}"
    );

    let rel = fleet.release(2, b"app 2").await;
    let (st, v) = fleet
        .post(
            "/api/v1/campaigns/dry-run",
            &json!({"name": "warn", "release_id": rel, "filter": {"devices": [dev.id]}}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    assert_eq!(
        v["no_rollback"],
        json!([{"component": ["617070"], "handler": "deb", "devices": 1, "of": 1}]),
        "{v}"
    );
    let gap: suitcase_protocol::RollbackGap =
        serde_json::from_value(v["no_rollback"][0].clone()).unwrap();
    assert_eq!(
        gap.text(),
        "1 of 1 device cannot roll back app (deb handler)"
    );
}

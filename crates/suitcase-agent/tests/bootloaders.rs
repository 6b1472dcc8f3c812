//! The agent driving real bootloader environments: U-Boot's through libubootenv's
//! `fw_printenv`/`fw_setenv` on a file-backed `fw_env.config`, GRUB's through `grub-editenv`.
//! The test plays the bootloader between agent runs with [`boot`], which does what the shipped
//! boot scripts (`docs/bootloaders/uboot-boot.cmd`, `docs/bootloaders/grub.cfg`) do, and after
//! each step the environment is read with the real tools and compared with what the boot
//! script needs.
//!
//! Without the tools each test prints a SKIP line and passes, unless
//! `SUITCASE_REQUIRE_BOOTLOADER_TOOLS=1` (CI), where it fails.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "test code"
)]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{ALL_STEPS, Device, Fleet, image, server_steps, wait_campaign};
use serde_json::json;
use suitcase_agent::bootloader::{
    Backend, CMDLINE_KEY, DEFAULT_ORDER, DEFAULT_TRIES, ENV_SLOTS, EnvBackend, LEFT_VARS,
    MAX_TRIES, ORDER_VAR,
};
use suitcase_agent::{AgentError, Finished, Hooks};

// ---------------------------------------------------------------------------------------------
// The contract, in one table: the variables the agent writes and the boot scripts read, and
// what each script must contain for it. `boot_scripts_and_the_simulated_bootloader_agree`
// checks the shipped scripts against it.
// ---------------------------------------------------------------------------------------------

/// (variable, default when unset) — the agent's constants, which the scripts must use.
fn contract() -> Vec<(String, String)> {
    vec![
        (ORDER_VAR.to_owned(), DEFAULT_ORDER.to_owned()),
        (LEFT_VARS[0].to_owned(), DEFAULT_TRIES.to_string()),
        (LEFT_VARS[1].to_owned(), DEFAULT_TRIES.to_string()),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    Uboot,
    Grub,
}

/// A bootloader environment, read and written with the real tools (not the agent's code).
struct Env {
    flavor: Flavor,
    /// fw_env.config (U-Boot) or the grubenv file (GRUB).
    file: PathBuf,
}

impl Env {
    fn list(&self) -> BTreeMap<String, String> {
        let out = match self.flavor {
            Flavor::Uboot => Command::new("fw_printenv")
                .arg("-c")
                .arg(&self.file)
                .output()
                .unwrap(),
            Flavor::Grub => Command::new("grub-editenv")
                .arg(&self.file)
                .arg("list")
                .output()
                .unwrap(),
        };
        assert!(
            out.status.success(),
            "{:?}: {}",
            self.flavor,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn set(&self, vars: &[(&str, String)]) {
        let ok = match self.flavor {
            Flavor::Uboot => {
                let mut child = Command::new("fw_setenv")
                    .arg("-c")
                    .arg(&self.file)
                    .args(["-s", "-"])
                    .stdin(Stdio::piped())
                    .spawn()
                    .unwrap();
                let script: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(script.as_bytes())
                    .unwrap();
                child.wait().unwrap().success()
            }
            Flavor::Grub => Command::new("grub-editenv")
                .arg(&self.file)
                .arg("set")
                .args(vars.iter().map(|(k, v)| format!("{k}={v}")))
                .status()
                .unwrap()
                .success(),
        };
        assert!(ok, "{:?}: cannot set {vars:?}", self.flavor);
    }

    /// Sets `initial` (nothing when it is empty).
    fn set_all(&self, initial: &[(&str, &str)]) {
        if !initial.is_empty() {
            self.set(
                &initial
                    .iter()
                    .map(|(k, v)| (*k, (*v).to_owned()))
                    .collect::<Vec<_>>(),
            );
        }
    }

    /// The variables of the contract (and, for U-Boot, the script's `suitcase_slot`).
    fn boot_vars(&self) -> BTreeMap<String, String> {
        self.list()
            .into_iter()
            .filter(|(k, _)| k.starts_with("BOOT_") || k == "suitcase_slot")
            .collect()
    }
}

fn vars(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The [`Env::boot_vars`] a `flavor` device should hold: the order, both counters and, for
/// U-Boot, the script's `suitcase_slot`.
fn expect_vars(
    flavor: Flavor,
    order: &str,
    a_left: &str,
    b_left: &str,
    slot: &str,
) -> BTreeMap<String, String> {
    let mut v = vars(&[
        ("BOOT_ORDER", order),
        ("BOOT_A_LEFT", a_left),
        ("BOOT_B_LEFT", b_left),
    ]);
    if flavor == Flavor::Uboot {
        v.insert("suitcase_slot".into(), slot.into());
    }
    v
}

/// A fresh environment made with the real tools, its files named after `name` in `dir`: for
/// U-Boot a file-backed environment of 16 KiB holding the default environment; for GRUB an
/// empty grubenv.
fn new_env(flavor: Flavor, dir: &Path, name: &str) -> Env {
    match flavor {
        Flavor::Uboot => {
            let store = dir.join(format!("{name}.env"));
            std::fs::write(&store, vec![0u8; 0x4000]).unwrap();
            let config = dir.join(format!("{name}.config"));
            std::fs::write(&config, format!("{} 0x0000 0x4000\n", store.display())).unwrap();
            uboot_defaults(config, &dir.join(format!("{name}-defaults.txt")))
        }
        Flavor::Grub => grub_env(dir.join(format!("{name}.grubenv"))),
    }
}

/// Writes U-Boot's default environment (`bootdelay=0`, from the file `defaults`) with a valid
/// CRC through `config` with `fw_setenv -f` (what a board's default environment would be).
fn uboot_defaults(config: PathBuf, defaults: &Path) -> Env {
    std::fs::write(defaults, "bootdelay=0\n").unwrap();
    let ok = Command::new("fw_setenv")
        .arg("-c")
        .arg(&config)
        .arg("-f")
        .arg(defaults)
        .args(["bootdelay", "0"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "fw_setenv -f");
    Env {
        flavor: Flavor::Uboot,
        file: config,
    }
}

/// An empty grubenv at `file`, made with `grub-editenv create`.
fn grub_env(file: PathBuf) -> Env {
    let ok = Command::new("grub-editenv")
        .arg(&file)
        .arg("create")
        .status()
        .unwrap()
        .success();
    assert!(ok, "grub-editenv create");
    Env {
        flavor: Flavor::Grub,
        file,
    }
}

/// The `app` file component switched by `bootloader`, activated by a reboot running
/// `reboot` (a TOML array), with the `[component.boot]` lines `boot`.
fn app_component(capacity: u64, bootloader: &str, reboot: &str, boot: &str) -> String {
    format!(
        r#"
[[component]]
name = "app"
id = "617070"
kind = "file"
slots = ["app-a.bin", "app-b.bin"]
capacity = {capacity}
bootloader = "{bootloader}"
activate = "reboot"
reboot = {reboot}
[component.boot]
{boot}"#
    )
}

/// One boot, as the shipped boot scripts do it: defaults for unset variables; the first slot
/// of `BOOT_ORDER` with `BOOT_x_LEFT > 0` is chosen and its counter decremented (GRUB's table
/// spends any count outside 1..9 at once; U-Boot's setexpr agrees on 1..9, the only counts the
/// agent writes); the environment is saved before the kernel starts; the kernel command line
/// names the slot. No slot left: both counters back to 3, saved, and the machine resets
/// (returns `None`: the caller boots again).
fn boot(env: &Env, cmdline: &Path) -> Option<&'static str> {
    let have = env.list();
    let get = |k: &str, default: &str| have.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let order = get(ORDER_VAR, DEFAULT_ORDER);
    let mut left = [
        get(LEFT_VARS[0], &DEFAULT_TRIES.to_string()),
        get(LEFT_VARS[1], &DEFAULT_TRIES.to_string()),
    ];
    let mut chosen = None;
    for word in order.split_whitespace() {
        let Some(i) = ENV_SLOTS.iter().position(|s| *s == word) else {
            continue;
        };
        let n: i64 = left[i].parse().unwrap_or(0);
        if n > 0 {
            left[i] = if (1..=9).contains(&n) {
                (n - 1).to_string()
            } else {
                "0".to_owned()
            };
            chosen = Some(ENV_SLOTS[i]);
            break;
        }
    }
    let Some(slot) = chosen else {
        env.set(&[(LEFT_VARS[0], "3".into()), (LEFT_VARS[1], "3".into())]);
        return None;
    };
    let mut save = vec![
        (ORDER_VAR, order),
        (LEFT_VARS[0], left[0].clone()),
        (LEFT_VARS[1], left[1].clone()),
    ];
    if env.flavor == Flavor::Uboot {
        // The U-Boot script's scratch variable is saved with the rest.
        save.push(("suitcase_slot", slot.to_owned()));
    }
    env.set(&save);
    std::fs::write(
        cmdline,
        format!("console=ttyS0 root=/dev/slot-{slot} ro {CMDLINE_KEY}={slot} quiet\n"),
    )
    .unwrap();
    Some(slot)
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// Whether the tools are there; a SKIP line if not, a failure if CI requires them.
fn tools(flavor: Flavor) -> bool {
    let (needed, package): (&[&str], &str) = match flavor {
        Flavor::Uboot => (&["fw_printenv", "fw_setenv"], "libubootenv-tool"),
        Flavor::Grub => (&["grub-editenv"], "grub-common"),
    };
    let missing: Vec<&str> = needed.iter().copied().filter(|t| !have(t)).collect();
    present(
        &missing,
        "SUITCASE_REQUIRE_BOOTLOADER_TOOLS",
        package,
        &format!("{flavor:?} tests not run"),
    )
}

/// Whether nothing is `missing`; if something is, a failure when the environment variable
/// `require` is 1 (CI), else a SKIP line saying what to install and what was not run.
fn present(missing: &[&str], require: &str, install: &str, not_run: &str) -> bool {
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var(require).as_deref() != Ok("1"),
        "{require}=1 but {missing:?} missing: apt-get install {install}"
    );
    eprintln!("SKIP: {missing:?} not installed (apt-get install {install}); {not_run}");
    false
}

/// A device whose `app` component is switched by `flavor`, its environment initialised as a
/// freshly flashed device's (the defaults), booted once into slot A running the old image.
struct Board {
    env: Env,
    cmdline: PathBuf,
    reboots: PathBuf,
}

fn board(dev: &mut Device, flavor: Flavor, health: &str) -> Board {
    let dir = dev.dir.clone();
    let env = new_env(flavor, &dir, "bootenv");
    let cmdline = dir.join("cmdline");
    let reboots = dir.join("reboots.log");
    // The first boot of a fresh device: the script's defaults, slot A.
    assert_eq!(boot(&env, &cmdline), Some("A"));
    std::fs::write(dev.path("app-a.bin"), b"the old image").unwrap();
    let (name, key, file) = match flavor {
        Flavor::Uboot => ("uboot", "fw_env_config", env.file.display().to_string()),
        Flavor::Grub => ("grub", "grubenv", env.file.display().to_string()),
    };
    dev.components = app_component(
        67_108_864,
        name,
        &format!(
            r#"["sh", "-c", "echo \"$SUITCASE_SLOT\" >> '{}'"]"#,
            reboots.display()
        ),
        &format!(
            "{key} = \"{file}\"\ncmdline = \"{}\"\ntries = 3\ntimeout_seconds = 20\n",
            cmdline.display()
        ),
    );
    dev.extra = format!("[health]\ncommand = [\"sh\", \"-c\", \"{health}\"]\n");
    Board {
        env,
        cmdline,
        reboots,
    }
}

/// A `flavor` device named `name` on a fresh fleet, its board's health check `health`, and a
/// campaign offering it release 2 of `img`: the fleet, the device, its board and the campaign.
async fn offered(
    flavor: Flavor,
    name: &str,
    health: &str,
    img: &[u8],
) -> (Fleet, Device, Board, String) {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, name).await;
    let b = board(&mut dev, flavor, health);
    let rel = fleet.release(2, img).await;
    let campaign = fleet.campaign(&rel, &[&dev.id], json!({})).await;
    (fleet, dev, b, campaign)
}

/// Runs one agent cycle that must end in the reboot command (activated on trial).
async fn until_reboot(fleet: &Fleet, dev: &Device) {
    let (mut agent, events) = dev.agent(fleet, Hooks::default());
    match agent.cycle().await {
        Err(AgentError::Rebooting) => {}
        other => panic!("expected the reboot: {other:?} {:?}", events.all()),
    }
}

/// The device's last check-in as the server recorded it reports `boot.reverted`; returns
/// its `boot` (the server buffers check-ins for a moment: polled, bounded).
async fn server_saw_reverted(fleet: &Fleet, dev: &Device) -> serde_json::Value {
    let mut info = serde_json::Value::Null;
    for _ in 0..100 {
        info = fleet.device_info(&dev.id).await;
        if info["inventory"]["boot"]["reverted"] == true {
            return info["inventory"]["boot"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server never saw boot.reverted: {info}");
}

async fn normal_update(flavor: Flavor) {
    if !tools(flavor) {
        return;
    }
    let img = image(7, 200_000);
    let (fleet, dev, b, campaign) =
        offered(flavor, &format!("{flavor:?}-normal"), "exit 0", &img).await;
    let expect = |order: &str, a: &str, bb: &str, s: &str| expect_vars(flavor, order, a, bb, s);
    // Booted once: A has used an attempt.
    assert_eq!(b.env.boot_vars(), expect("A B", "2", "3", "A"));

    // Until the reboot: the agent marked A good (its attempts back), wrote B (made
    // unbootable first), then put B first on trial with full attempts, A as the fallback.
    until_reboot(&fleet, &dev).await;
    assert_eq!(dev.read("app-b.bin"), img);
    assert_eq!(b.env.boot_vars(), expect("B A", "3", "3", "A"));
    assert_eq!(std::fs::read_to_string(&b.reboots).unwrap(), "b\n");
    let record = dev.path(&format!("state/slots-{}.pointer", hex::encode("app")));
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "active=b\nconfirmed=a\n"
    );

    // The bootloader boots B (one attempt used), the agent starts again, sees B running,
    // runs the health check and confirms: B first with its attempts back.
    assert_eq!(boot(&b.env, &b.cmdline), Some("B"));
    assert_eq!(b.env.boot_vars(), expect("B A", "3", "2", "B"));
    let (agent, events) = dev.installed_cycle(&fleet).await;
    assert_eq!(b.env.boot_vars(), expect("B A", "3", "3", "B"));
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "active=b\nconfirmed=b\n"
    );
    let activate = events.detail("activate").unwrap_or_default();
    assert!(activate.contains("booted slot b on trial"), "{activate}");
    let info = fleet.device_info(&dev.id).await;
    let steps = server_steps(&info);
    assert_eq!(
        steps.iter().map(|(s, _, _)| s.as_str()).collect::<Vec<_>>(),
        ALL_STEPS
    );
    assert!(steps.iter().all(|(_, o, _)| o == "success"), "{steps:?}");
    wait_campaign(&fleet, &campaign, "succeeded", 1).await;
    let inv = agent.inventory().unwrap();
    let boot_status = inv.boot.unwrap();
    assert_eq!(boot_status.slot.as_deref(), Some("b"));
    assert!(!boot_status.trial && !boot_status.reverted);

    // Every later boot uses an attempt; the agent, started after it, gives it back.
    assert_eq!(boot(&b.env, &b.cmdline), Some("B"));
    assert_eq!(b.env.boot_vars(), expect("B A", "3", "2", "B"));
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    assert!(agent.cycle().await.unwrap().update.is_none());
    assert_eq!(b.env.boot_vars(), expect("B A", "3", "3", "B"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uboot_update_boots_the_new_slot_on_trial_and_confirms_it() {
    normal_update(Flavor::Uboot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grub_update_boots_the_new_slot_on_trial_and_confirms_it() {
    normal_update(Flavor::Grub).await;
}

async fn failed_health_check(flavor: Flavor) {
    if !tools(flavor) {
        return;
    }
    let (fleet, dev, b, campaign) = offered(
        flavor,
        &format!("{flavor:?}-sick"),
        "exit 1",
        &image(8, 100_000),
    )
    .await;
    until_reboot(&fleet, &dev).await;
    assert_eq!(boot(&b.env, &b.cmdline), Some("B"));

    // B came up but is unhealthy: the agent reverts (A first, B not bootable), reports,
    // and reboots into A.
    let (_, f) = dev.failed_cycle(&fleet).await;
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("clean-up", "health-check")
    );
    assert!(f.detail.contains("reverted to slot a"), "{}", f.detail);
    assert!(f.detail.contains("rebooting into slot a"), "{}", f.detail);
    assert_eq!(std::fs::read_to_string(&b.reboots).unwrap(), "b\na\n");
    let want = |s: &str| expect_vars(flavor, "A B", "3", "0", s);
    assert_eq!(b.env.boot_vars(), want("B"));
    server_saw_reverted(&fleet, &dev).await;
    wait_campaign(&fleet, &campaign, "failed", 1).await;

    // The reboot: A (one attempt used, B not tried); the agent started on it marks it good
    // again, and B stays unbootable.
    assert_eq!(boot(&b.env, &b.cmdline), Some("A"));
    assert_eq!(b.env.boot_vars(), expect_vars(flavor, "A B", "2", "0", "A"));
    let (mut agent, _) = dev.agent(&fleet, Hooks::default());
    agent.cycle().await.unwrap();
    assert_eq!(b.env.boot_vars(), want("A"));
    assert_eq!(dev.read("app-a.bin"), b"the old image");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_uboot_failed_health_check_reverts_to_the_old_slot() {
    failed_health_check(Flavor::Uboot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_grub_failed_health_check_reverts_to_the_old_slot() {
    failed_health_check(Flavor::Grub).await;
}

async fn never_comes_up(flavor: Flavor) {
    if !tools(flavor) {
        return;
    }
    let (fleet, dev, b, campaign) = offered(
        flavor,
        &format!("{flavor:?}-dead"),
        "exit 0",
        &image(9, 100_000),
    )
    .await;
    until_reboot(&fleet, &dev).await;

    // B never comes up (kernel panic, watchdog): the agent never runs on it. The bootloader
    // tries it three times, then boots A.
    for left in ["2", "1", "0"] {
        assert_eq!(boot(&b.env, &b.cmdline), Some("B"));
        assert_eq!(b.env.list()["BOOT_B_LEFT"], left);
    }
    assert_eq!(boot(&b.env, &b.cmdline), Some("A"));

    // The agent, on A, reads the fallback back: Activate fails with boot-refused, the update
    // is reverted (B stays unbootable) and the check-in reports `reverted`.
    let (agent, f) = dev.failed_cycle(&fleet).await;
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("activate", "boot-refused"),
        "{}",
        f.detail
    );
    assert!(
        f.detail.contains("fell back to slot a") && f.detail.contains("BOOT_B_LEFT=0"),
        "{}",
        f.detail
    );
    assert_eq!(b.env.boot_vars(), expect_vars(flavor, "A B", "3", "0", "A"));
    // Running A already: no reboot after the revert.
    assert_eq!(std::fs::read_to_string(&b.reboots).unwrap(), "b\n");
    // The check-in right after the update reported the revert (once: the flag is cleared).
    let boot = server_saw_reverted(&fleet, &dev).await;
    assert_eq!(boot["slot"], "a", "{boot}");
    assert_eq!(boot["trial"], false, "{boot}");
    let inv = agent.inventory().unwrap();
    assert!(!inv.boot.unwrap().reverted);
    assert_eq!(inv.components[0].sequence_number, 0);
    let info = fleet.device_info(&dev.id).await;
    assert!(server_steps(&info).contains(&(
        "activate".into(),
        "failure".into(),
        Some("boot-refused".into())
    )));
    wait_campaign(&fleet, &campaign, "failed", 1).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_uboot_new_slot_never_comes_up_and_the_bootloader_falls_back() {
    never_comes_up(Flavor::Uboot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_grub_new_slot_never_comes_up_and_the_bootloader_falls_back() {
    never_comes_up(Flavor::Grub).await;
}

/// The agent runs again after Activate without the system having rebooted through the boot
/// script (it was restarted before the reboot, or the bootloader ignores the script): the old
/// slot runs and the new one was never tried. Rebooting again could loop for ever, so this is
/// `boot-refused`, reverted and reported, bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_uboot_restart_without_a_reboot_is_refused_not_looped() {
    if !tools(Flavor::Uboot) {
        return;
    }
    let (fleet, dev, b, _) = offered(
        Flavor::Uboot,
        "uboot-no-reboot",
        "exit 0",
        &image(13, 10_000),
    )
    .await;
    until_reboot(&fleet, &dev).await;
    // No boot: the kernel command line still says A, B_LEFT untouched.
    let (_, f) = dev.failed_cycle(&fleet).await;
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("activate", "boot-refused")
    );
    assert!(f.detail.contains("has not tried slot b"), "{}", f.detail);
    assert_eq!(
        b.env.boot_vars(),
        expect_vars(Flavor::Uboot, "A B", "3", "0", "A")
    );
    // One reboot command in all (the Activate before the restart); none after the revert.
    assert_eq!(std::fs::read_to_string(&b.reboots).unwrap(), "b\n");
    fleet.stop().await;
}

/// Runs the agent (crashing after `crash_at` durable writes, if given) and plays the
/// bootloader after every stop that is a reboot or a power cut, until the update ends
/// (bounded). Returns whether the injected crash happened and how the update ended.
async fn power_cut_run(
    fleet: &Fleet,
    dev: &Device,
    b: &Board,
    crash_at: Option<u64>,
) -> (bool, Option<Finished>) {
    let mut crashed = false;
    let mut crash = crash_at;
    for _ in 0..8 {
        let hooks = Hooks {
            crash_after_writes: crash.take(),
            ..Hooks::default()
        };
        let (mut agent, _) = dev.agent(fleet, hooks);
        match agent.cycle().await {
            Err(AgentError::InjectedCrash) => crashed = true,
            Err(AgentError::Rebooting) => {}
            Ok(c) => {
                if let Some(u) = c.update {
                    return (crashed, Some(u.finished));
                }
                if c.answer.is_some_and(|a| a.update.is_none()) {
                    return (crashed, None);
                }
            }
            Err(e) => panic!("{e}"),
        }
        // A power cut or the reboot: the bootloader runs.
        assert!(boot(&b.env, &b.cmdline).is_some());
    }
    panic!("the update never ended");
}

/// The power is cut right after each durable write of a U-Boot update in turn (the agent's
/// journal, outbox, inventory, record and the environment writes it makes), before and after
/// the reboot; every cut is followed by a boot through the boot script. Every device ends on
/// slot B, confirmed once, with the environment the script needs, and the campaign counts
/// every device as succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_uboot_power_cut_after_every_durable_write_installs_once() {
    if !tools(Flavor::Uboot) {
        return;
    }
    let fleet = Fleet::new().await;
    let img = image(14, 100_000);
    let rel = fleet.release(2, &img).await;
    // A clean run counts the durable writes before and after the reboot.
    let mut probe = Device::new(&fleet, "cut-probe").await;
    let pb = board(&mut probe, Flavor::Uboot, "exit 0");
    fleet.campaign(&rel, &[&probe.id], json!({})).await;
    let (mut agent, _) = probe.agent(&fleet, Hooks::default());
    assert!(matches!(agent.cycle().await, Err(AgentError::Rebooting)));
    let before = agent.durable_writes();
    assert_eq!(boot(&pb.env, &pb.cmdline), Some("B"));
    let (mut agent, _) = probe.agent(&fleet, Hooks::default());
    assert_eq!(
        agent.cycle().await.unwrap().update.unwrap().finished,
        Finished::Installed
    );
    let after = agent.durable_writes();
    assert!(
        before >= 10 && after >= 2,
        "{before} + {after} durable writes"
    );
    let mut ids = Vec::new();
    let mut runs = Vec::new();
    for (phase, n) in (1..=before)
        .map(|n| (0, n))
        .chain((1..=after).map(|n| (1, n)))
    {
        let mut dev = Device::new(&fleet, &format!("cut-{phase}-{n}")).await;
        let b = board(&mut dev, Flavor::Uboot, "exit 0");
        ids.push(dev.id.clone());
        runs.push((phase, n, dev, b));
    }
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let campaign = fleet.campaign(&rel, &id_refs, json!({})).await;
    for (phase, n, dev, b) in &runs {
        if *phase == 1 {
            until_reboot(&fleet, dev).await;
            assert_eq!(boot(&b.env, &b.cmdline), Some("B"));
        }
        let (crashed, finished) = power_cut_run(&fleet, dev, b, Some(*n)).await;
        let what = format!("cut after write {n} of phase {phase}");
        assert!(crashed, "{what}: no crash");
        assert!(
            matches!(finished, None | Some(Finished::Installed)),
            "{what}: {finished:?}"
        );
        assert_eq!(dev.read("app-b.bin"), img, "{what}");
        assert_eq!(
            b.env.boot_vars(),
            expect_vars(Flavor::Uboot, "B A", "3", "3", "B"),
            "{what}"
        );
        assert_eq!(
            dev.installed()["components"][0]["sequence_number"],
            2,
            "{what}"
        );
        assert!(!dev.path("state/journal.json").exists(), "{what}");
    }
    let c = wait_campaign(&fleet, &campaign, "succeeded", runs.len() as u64).await;
    assert_eq!(c["state"], "completed", "{c}");
    fleet.stop().await;
}

/// A variable the boot script would not understand stops the update at Distribute, before
/// anything is written, with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_uboot_unexpected_variable_is_named_before_anything_is_written() {
    if !tools(Flavor::Uboot) {
        return;
    }
    let (fleet, dev, b, _) =
        offered(Flavor::Uboot, "uboot-odd", "exit 0", &image(10, 10_000)).await;
    b.env.set(&[("BOOT_ORDER", "A C".into())]);
    let (_, f) = dev.failed_cycle(&fleet).await;
    assert_eq!(
        (f.step.name(), f.reason.as_str()),
        ("distribute", "storage")
    );
    assert!(
        f.detail.contains("BOOT_ORDER=\"A C\"") && f.detail.contains("expected \"A B\" or \"B A\""),
        "{}",
        f.detail
    );
    assert!(!dev.path("app-b.bin").exists());
    assert_eq!(b.env.list()["BOOT_ORDER"], "A C");
    fleet.stop().await;
}

/// `bootloader = "custom"`: the integrator's commands, called with `SUITCASE_SLOT`, in the
/// order the contract says (docs/agent.md): mark good at start, revert to the running slot
/// before writing the other, trial at Activate, status after the reboot, confirm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_bootloader_commands_run_in_contract_order() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "custom").await;
    let state = dev.path("boot.state");
    let log = dev.path("boot.log");
    std::fs::write(&state, "booted=a\nnext=a\n").unwrap();
    let bs = dev.script(
        "bs",
        &format!(
            r#"state='{state}'
case "$1" in
status) cat "$state" ;;
trial|confirm|revert)
    echo "$1 $SUITCASE_SLOT" >> '{log}'
    booted=$(grep '^booted=' "$state")
    printf '%s\nnext=%s\n' "$booted" "$SUITCASE_SLOT" > "$state" ;;
*) exit 64 ;;
esac"#,
            state = state.display(),
            log = log.display()
        ),
    );
    let bs = bs.display();
    dev.components = app_component(
        1_048_576,
        "custom",
        r#"["true"]"#,
        &["status", "trial", "confirm", "revert"]
            .map(|c| format!("{c} = [\"{bs}\", \"{c}\"]\n"))
            .concat(),
    );
    let img = image(12, 50_000);
    let rel = fleet.release(2, &img).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    until_reboot(&fleet, &dev).await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "confirm a\nrevert a\ntrial b\n"
    );
    // The "bootloader" boots what it was told to.
    std::fs::write(&state, "booted=b\nnext=b\n").unwrap();
    dev.installed_cycle(&fleet).await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "confirm a\nrevert a\ntrial b\nconfirm b\n"
    );
    assert_eq!(dev.read("app-b.bin"), img);
    fleet.stop().await;
}

/// The bootloader refuses to make the target slot unbootable before Apply writes it: Apply
/// fails (`storage`, with the command's message), nothing is written or switched, and the
/// failure is reported instead of the agent stopping at every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_bootloader_that_cannot_be_written_fails_apply_before_writing() {
    let fleet = Fleet::new().await;
    let mut dev = Device::new(&fleet, "custom-broken").await;
    dev.components = app_component(
        1_048_576,
        "custom",
        r#"["true"]"#,
        r#"status = ["printf", "booted=a\nnext=a\n"]
trial = ["true"]
confirm = ["true"]
revert = ["sh", "-c", "echo environment is read-only >&2; exit 1"]
"#,
    );
    let rel = fleet.release(2, &image(15, 10_000)).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    let (_, f) = dev.failed_cycle(&fleet).await;
    assert_eq!((f.step.name(), f.reason.as_str()), ("apply", "storage"));
    assert!(
        f.detail.contains("the bootloader revert command")
            && f.detail.contains("environment is read-only"),
        "{}",
        f.detail
    );
    assert!(!dev.path("app-b.bin").exists());
    let info = fleet.device_info(&dev.id).await;
    assert!(server_steps(&info).contains(&(
        "apply".into(),
        "failure".into(),
        Some("storage".into())
    )));
    fleet.stop().await;
}

/// The environment tools are missing or `fw_env.config` cannot be read: the messages say
/// what to install or fix. The tools are hidden by running this test again in a child
/// process with an empty `PATH` (changing this process's environment would race the other
/// tests' threads).
#[test]
fn fault_missing_tool_or_fw_env_config_names_what_to_fix() {
    const CHILD: &str = "SUITCASE_TEST_CHILD_WITHOUT_TOOLS";
    if std::env::var_os(CHILD).is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fault_missing_tool_or_fw_env_config_names_what_to_fix",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("checked: missing tools"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let slots = [dir.path().join("a"), dir.path().join("b")];
    let config = dir.path().join("fw_env.config");
    std::fs::write(&config, "/nonexistent/uboot.env 0x0 0x4000\n").unwrap();
    let grubenv = dir.path().join("grubenv");
    std::fs::write(&grubenv, b"").unwrap();
    let cmdline = dir.path().join("cmdline");
    std::fs::write(&cmdline, "suitcase.slot=A\n").unwrap();
    let env = |file: &Path| EnvBackend {
        file: Some(file.to_path_buf()),
        tries: 3,
        cmdline: cmdline.clone(),
        timeout: std::time::Duration::from_secs(5),
    };
    let e = Backend::Uboot(env(&config)).status(&slots).unwrap_err();
    assert!(
        e.contains("fw_printenv not found") && e.contains("install libubootenv-tool"),
        "{e}"
    );
    let e = Backend::Uboot(env(&config)).trial(1, &slots).unwrap_err();
    assert!(
        e.contains("fw_setenv not found") && e.contains("install libubootenv-tool"),
        "{e}"
    );
    let e = Backend::Grub(env(&grubenv)).status(&slots).unwrap_err();
    assert!(
        e.contains("grub-editenv not found") && e.contains("install grub-common"),
        "{e}"
    );
    let e = Backend::Uboot(env(&dir.path().join("missing.config")))
        .status(&slots)
        .unwrap_err();
    assert!(e.contains("cannot read the fw_env.config"), "{e}");
    let e = Backend::Grub(env(&dir.path().join("missing-grubenv")))
        .status(&slots)
        .unwrap_err();
    assert!(e.contains("grub-editenv") && e.contains("create"), "{e}");
    println!("checked: missing tools");
}

// ---------------------------------------------------------------------------------------------
// The shipped GRUB script run by GRUB itself (grub-emu), against the simulated bootloader
// ---------------------------------------------------------------------------------------------

/// A program on `PATH` or in the system directories (`mke2fs`, `debugfs` live in sbin).
fn find(tool: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(tool)).find(|p| p.is_file())
}

/// Runs `cmd` for at most `secs` seconds (killed after), stdin closed; its stdout.
fn bounded(cmd: &mut Command, secs: u64) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran past {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    String::from_utf8_lossy(&reader.join().unwrap()).into_owned()
}

/// The environments both shipped scripts are booted from, against the simulated bootloader:
/// a first boot, trials, fallbacks, counts outside the table, no slot left.
const BOOT_CASES: &[&[(&str, &str)]] = &[
    &[],
    &[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "3"),
    ],
    &[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "1"),
    ],
    &[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
    ],
    &[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "9"),
        ("BOOT_B_LEFT", "0"),
    ],
    &[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "12"),
        ("BOOT_B_LEFT", "2"),
    ],
    &[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "0"),
        ("BOOT_B_LEFT", "0"),
    ],
];

/// One boot of the shipped `grub.cfg` in GRUB's user-space emulator: the environment block
/// starts as `initial`, on an ext2 image (GRUB's `save_env` writes through the file system's
/// block list, which the emulator's host file system lacks); returns the slot GRUB chose
/// (the script's `suitcase_slot`, `None` when it reset) and the environment GRUB saved.
fn grub_emu_boot(
    dir: &Path,
    initial: &[(&str, &str)],
) -> (Option<String>, BTreeMap<String, String>) {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("grub")).unwrap();
    let env = root.join("grub/grubenv");
    let _ = std::fs::remove_file(&env);
    grub_env(env).set_all(initial);
    // The shipped script, then report the choice and stop before a menu entry boots.
    std::fs::write(
        root.join("grub/grub.cfg"),
        format!(
            "{}\necho \"suitcase-chose:[${{suitcase_slot}}]\"\nhalt\n",
            script("grub.cfg")
        ),
    )
    .unwrap();
    let image = dir.join("disk.img");
    let _ = std::fs::remove_file(&image);
    let mut mkfs = Command::new(find("mke2fs").unwrap());
    bounded(
        mkfs.args(["-q", "-F", "-t", "ext2", "-d"])
            .arg(&root)
            .arg(&image)
            .arg("4M"),
        30,
    );
    // GRUB's own prefix: a host directory whose grub.cfg switches to the disk image.
    let boot = dir.join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(
        boot.join("grub.cfg"),
        "insmod ext2\nset root=(hd0)\nset prefix=(hd0)/grub\nconfigfile (hd0)/grub/grub.cfg\n",
    )
    .unwrap();
    let map = dir.join("device.map");
    std::fs::write(&map, format!("(hd0) {}\n", image.display())).unwrap();
    let mut emu = Command::new("grub-emu");
    let out = bounded(emu.arg("-d").arg(&boot).arg("-m").arg(&map), 60);
    let chose = out
        .split("suitcase-chose:[")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .map(str::to_owned);
    let mut cat = Command::new(find("debugfs").unwrap());
    let saved = bounded(cat.arg("-R").arg("cat /grub/grubenv").arg(&image), 30);
    let env = saved
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // `reboot` (the script's no-slot branch) ends the emulator before the echo.
    (chose.filter(|c| !c.is_empty()), env)
}

/// The shipped `grub.cfg`, run by GRUB itself (Debian's grub-emu: the real GRUB script
/// interpreter, `load_env`, `save_env` and the ext2 driver, in user space), makes the same
/// choice and leaves the same environment as the simulated bootloader the agent tests use,
/// for first boots, trials, fallbacks, the reset when no slot is left, and counts outside
/// the table. So the agent tests' "reboots" are GRUB's.
#[test]
fn grub_script_in_grub_emu_agrees_with_the_simulated_bootloader() {
    let missing: Vec<&str> = ["grub-emu", "grub-editenv", "mke2fs", "debugfs"]
        .into_iter()
        .filter(|t| find(t).is_none())
        .collect();
    if !present(
        &missing,
        "SUITCASE_REQUIRE_BOOTLOADER_TOOLS",
        "grub-emu grub-common e2fsprogs",
        "the GRUB script was not run in GRUB",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, initial) in BOOT_CASES.iter().enumerate() {
        let (grub_chose, grub_env) = grub_emu_boot(dir.path(), initial);
        // The simulated bootloader on the same environment, in a plain grubenv file.
        let sim = new_env(Flavor::Grub, dir.path(), &format!("sim-{i}"));
        sim.set_all(initial);
        let sim_chose = boot(&sim, &dir.path().join("cmdline"));
        assert_eq!(
            grub_chose.as_deref(),
            sim_chose,
            "case {initial:?}: GRUB chose {grub_chose:?}"
        );
        let grub_vars: BTreeMap<String, String> = grub_env
            .into_iter()
            .filter(|(k, _)| k.starts_with("BOOT_"))
            .collect();
        assert_eq!(grub_vars, sim.boot_vars(), "case {initial:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The shipped U-Boot script run by U-Boot (Debian's qemu_arm64 build in QEMU)
// ---------------------------------------------------------------------------------------------

/// One boot of the shipped `uboot-boot.cmd` in U-Boot: Debian's `qemu_arm64` U-Boot in
/// `qemu-system-aarch64`, its environment in the second flash bank, written beforehand with
/// `fw_setenv` through a `fw_env.config` naming that flash image (so the environment U-Boot
/// reads is the one the agent's tool wrote), the compiled script (`mkimage`) loaded into RAM
/// by QEMU and `source`d by `bootcmd`, and each slot's boot command an `echo` and `poweroff`.
/// Returns the script's own report line: `booting slot X (BOOT_ORDER=… BOOT_A_LEFT=…
/// BOOT_B_LEFT=…)` with the decremented counter, or its no-slot line.
fn uboot_qemu_boot(dir: &Path, scr: &Path, initial: &[(&str, &str)]) -> String {
    let flash = dir.join("flash1.img");
    // The qemu_arm64 board's environment: 256 KiB at the start of the second 64 MiB bank.
    std::fs::write(&flash, vec![0xffu8; 64 << 20]).unwrap();
    let config = dir.join("fw_env.config");
    std::fs::write(
        &config,
        format!("{} 0x0 0x40000 0x40000\n", flash.display()),
    )
    .unwrap();
    let env = uboot_defaults(config, &dir.join("defaults.txt"));
    let mut vars: Vec<(&str, String)> = vec![
        ("bootcmd", "source 0x40200000".into()),
        ("suitcase_boot_A", "echo SUITCASE-BOOTED-A; poweroff".into()),
        ("suitcase_boot_B", "echo SUITCASE-BOOTED-B; poweroff".into()),
    ];
    vars.extend(initial.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env.set(&vars);
    let mut qemu = Command::new("qemu-system-aarch64");
    let out = bounded(
        qemu.args([
            "-machine",
            "virt",
            "-cpu",
            "cortex-a57",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-net",
            "none",
            "-bios",
            "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
            "-drive",
        ])
        .arg(format!(
            "if=pflash,format=raw,index=1,file={}",
            flash.display()
        ))
        .arg("-device")
        .arg(format!("loader,file={},addr=0x40200000", scr.display())),
        60,
    );
    out.lines()
        .find_map(|l| l.trim().strip_prefix("suitcase: "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the script did not run in U-Boot: {out}"))
}

/// The shipped U-Boot script, run by U-Boot itself, chooses the slot and decrements the
/// counter exactly as the simulated bootloader the agent tests use, for every count the
/// agent writes (1..=9; `setexpr` computes in hexadecimal, so a hand-written count above 9
/// would differ, which is why the agent refuses one). What U-Boot prints is its in-memory
/// environment at `saveenv`: this QEMU's CFI flash model times out on U-Boot's buffered
/// flash writes, so the saved copy is not read back here (docs/bootloaders.md §6).
/// Needs qemu-system-aarch64 (Debian qemu-system-arm), u-boot-qemu, u-boot-tools (mkimage)
/// and libubootenv-tool; without them it prints SKIP, unless SUITCASE_REQUIRE_UBOOT_QEMU=1.
#[test]
fn uboot_script_in_qemu_agrees_with_the_simulated_bootloader() {
    let firmware = Path::new("/usr/lib/u-boot/qemu_arm64/u-boot.bin");
    let mut missing: Vec<&str> = ["qemu-system-aarch64", "mkimage", "fw_setenv", "fw_printenv"]
        .into_iter()
        .filter(|t| find(t).is_none())
        .collect();
    if !firmware.is_file() {
        missing.push("u-boot-qemu");
    }
    if !present(
        &missing,
        "SUITCASE_REQUIRE_UBOOT_QEMU",
        "qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool",
        "the U-Boot script was not run in U-Boot",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scr = dir.path().join("boot.scr");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/bootloaders/uboot-boot.cmd");
    let mut mkimage = Command::new("mkimage");
    bounded(
        mkimage
            .args([
                "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-d",
            ])
            .arg(&src)
            .arg(&scr),
        30,
    );
    // Only the counts the agent writes (1..=9): setexpr computes in hexadecimal.
    let cases = BOOT_CASES
        .iter()
        .filter(|c| !c.iter().any(|(_, v)| v.parse::<u32>().is_ok_and(|n| n > 9)));
    for (i, initial) in cases.enumerate() {
        let case = dir.path().join(format!("case-{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let said = uboot_qemu_boot(&case, &scr, initial);
        // The simulated bootloader on the same variables, in a file-backed environment.
        let sim = new_env(Flavor::Uboot, &case, "sim");
        sim.set_all(initial);
        let want = match boot(&sim, &case.join("cmdline")) {
            Some(slot) => {
                let v = sim.list();
                format!(
                    "booting slot {slot} (BOOT_ORDER={} BOOT_A_LEFT={} BOOT_B_LEFT={})",
                    v["BOOT_ORDER"], v["BOOT_A_LEFT"], v["BOOT_B_LEFT"]
                )
            }
            None => "no slot has boot attempts left; giving both slots 3 again".to_owned(),
        };
        assert_eq!(said, want, "case {initial:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The shipped scripts against the contract and the simulated bootloader
// ---------------------------------------------------------------------------------------------

fn script(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/bootloaders")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The variables, defaults, kernel parameter and decrement of the simulated bootloader
/// ([`boot`]) are the ones in the shipped scripts; GRUB's decrement table maps every count
/// 1..=9 to one less; the GRUB script passes `grub-script-check` when it is installed.
#[test]
fn boot_scripts_and_the_simulated_bootloader_agree() {
    for name in ["uboot-boot.cmd", "grub.cfg"] {
        let s = script(name);
        for (var, default) in contract() {
            assert!(
                s.contains(&format!("${{{var}}}")),
                "{name} never reads {var}"
            );
            let set = if name == "grub.cfg" {
                if var == ORDER_VAR {
                    format!("set {var}=\"{default}\"")
                } else {
                    format!("set {var}={default}")
                }
            } else if var == ORDER_VAR {
                format!("setenv {var} \"{default}\"")
            } else {
                format!("setenv {var} {default}")
            };
            assert!(s.contains(&set), "{name}: no default `{set}`");
        }
        for slot in ENV_SLOTS {
            assert!(
                s.contains(&format!("{CMDLINE_KEY}=")),
                "{name}: no {CMDLINE_KEY}= on the kernel command line"
            );
            assert!(s.contains(&format!("\"{slot}\"")), "{name}: slot {slot}");
        }
        // Saved before booting: the save comes after the choice and before the kernel.
        let (save, boot_kw) = if name == "grub.cfg" {
            (
                "save_env --file \"${suitcase_env}\" BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT",
                "menuentry",
            )
        } else {
            ("saveenv\nsetenv bootargs", "run suitcase_boot_")
        };
        let at_save = s
            .find(save)
            .unwrap_or_else(|| panic!("{name}: no {save:?}"));
        assert!(
            at_save < s.find(boot_kw).unwrap(),
            "{name}: saved after booting"
        );
    }
    // U-Boot decrements with setexpr by one, for both slots.
    let u = script("uboot-boot.cmd");
    for v in LEFT_VARS {
        assert!(u.contains(&format!("setexpr {v} ${{{v}}} - 1")), "{v}");
        assert!(u.contains(&format!("test ${{{v}}} -gt 0")), "{v}");
    }
    // GRUB's table: every count from 1 to MAX_TRIES maps to one less, anything else to 0.
    let g = script("grub.cfg");
    for v in LEFT_VARS {
        for n in 1..=MAX_TRIES {
            let line = format!("[ \"${{{v}}}\" = {n} ]; then set {v}={}", n - 1);
            assert!(g.contains(&line), "grub.cfg lacks `{line}`");
        }
        assert!(g.contains(&format!("else set {v}=0")), "{v}");
    }
    if have("grub-script-check") {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/bootloaders/grub.cfg");
        let out = Command::new("grub-script-check").arg(&p).output().unwrap();
        assert!(
            out.status.success(),
            "grub-script-check: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

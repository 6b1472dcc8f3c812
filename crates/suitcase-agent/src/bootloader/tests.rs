use std::time::Instant;

use super::*;

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn env_defaults_are_the_boot_scripts_defaults() {
    let (order, left) = parse_env(&[], "env").unwrap();
    assert_eq!(order, vec![0, 1]);
    assert_eq!(left, [3, 3]);
    let (order, left) = parse_env(
        &vars(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "0"),
            ("BOOT_B_LEFT", "2"),
        ]),
        "env",
    )
    .unwrap();
    assert_eq!(order, vec![1, 0]);
    assert_eq!(left, [0, 2]);
}

#[test]
fn fault_unexpected_variable_values_are_named() {
    for (k, v, needle) in [
        ("BOOT_ORDER", "A C", "\"C\""),
        ("BOOT_ORDER", "A A", "twice"),
        ("BOOT_ORDER", " ", "empty"),
        ("BOOT_A_LEFT", "x", "BOOT_A_LEFT=\"x\""),
        ("BOOT_B_LEFT", "10", "from 0 to 9"),
        ("BOOT_B_LEFT", "-1", "BOOT_B_LEFT"),
    ] {
        let e = parse_env(&vars(&[(k, v)]), "the U-Boot environment").unwrap_err();
        assert!(e.contains(needle), "{k}={v}: {e}");
        assert!(e.starts_with("the U-Boot environment"), "{e}");
    }
}

#[test]
fn fault_kernel_command_line_without_the_slot_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cmdline");
    std::fs::write(&p, "console=ttyS0 root=/dev/sda2 suitcase.slot=B quiet\n").unwrap();
    assert_eq!(booted_slot(&p).unwrap(), 1);
    std::fs::write(&p, "console=ttyS0\n").unwrap();
    assert!(
        booted_slot(&p)
            .unwrap_err()
            .contains("has no suitcase.slot=")
    );
    std::fs::write(&p, "suitcase.slot=C\n").unwrap();
    assert!(booted_slot(&p).unwrap_err().contains("expected A or B"));
    assert!(
        booted_slot(&dir.path().join("none"))
            .unwrap_err()
            .contains("cannot read the kernel command line")
    );
}

#[test]
fn custom_status_contract() {
    let s = parse_custom_status("booted=a\nnext=b\nsomething else\n").unwrap();
    assert_eq!((s.booted, s.next), (0, Some(1)));
    let s = parse_custom_status("booted=B\nnext=none\n").unwrap();
    assert_eq!((s.booted, s.next), (1, None));
    assert!(
        parse_custom_status("booted=a\n")
            .unwrap_err()
            .contains("must print")
    );
    assert!(
        parse_custom_status("booted=x\nnext=a")
            .unwrap_err()
            .contains("booted=\"x\"")
    );
}

#[test]
fn fault_missing_tool_timeout_and_output_cap() {
    let e = run(
        &["/nonexistent/fw_printenv".into()],
        None,
        &[],
        Duration::from_secs(5),
        "fw_printenv",
    )
    .unwrap_err();
    assert!(e.contains("not found"), "{e}");
    let t = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let e = run(
        &[
            "sh".into(),
            "-c".into(),
            format!("sleep 30 & echo $! > {}; wait", pid_file.display()),
        ],
        None,
        &[],
        Duration::from_millis(200),
        "status",
    )
    .unwrap_err();
    assert!(e.contains("did not finish"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
    // The child it left behind was killed with it (its process group): gone, or a zombie
    // waiting for whoever adopted it. SIGKILL is delivered asynchronously: on a loaded
    // machine the child can still show as running for a moment, so look for up to 5 s.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let dead = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        let state = stat.as_deref().map(|s| s.rsplit(") ").next().unwrap_or(""));
        (
            state.is_err() || state.is_ok_and(|s| s.starts_with('Z')),
            stat,
        )
    };
    let mut last = dead();
    for _ in 0..100 {
        if last.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        last = dead();
    }
    assert!(last.0, "the background child still runs: {:?}", last.1);
    let out = run(
        &[
            "sh".into(),
            "-c".into(),
            "head -c 1000000 /dev/zero | tr '\\0' x".into(),
        ],
        None,
        &[],
        Duration::from_secs(20),
        "status",
    )
    .unwrap();
    assert_eq!(out.len(), MAX_OUTPUT);
    let e = run(
        &["sh".into(), "-c".into(), "echo broken >&2; exit 3".into()],
        None,
        &[],
        Duration::from_secs(5),
        "status",
    )
    .unwrap_err();
    assert!(e.contains("exited with 3: broken"), "{e}");
}

//! Measures the agent: peak memory (VmHWM) while it installs updates of several sizes, and
//! the bytes it sends and receives beyond the payload, counted by the agent at the HTTP
//! layer and on the wire by a TCP proxy between it and the server.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-agent cargo run -p suitcase-agent --example agent-rss -- 10 100
//! ```
//!
//! For each size (MiB) it starts a server in this process (SQLite in a temporary directory),
//! uploads a signed release of that size, and runs the agent for one cycle in a child process
//! (this program with `child CONFIG`), so that the child's peak RSS is the agent's alone. The
//! child can also be run under `/usr/bin/time -v` (`--time` does that).

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_precision_loss,
    reason = "a benchmark program"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use suitcase_agent::{Agent, Config, Event, Hooks};
use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::release::{self, ImageInput, ReleaseRequest};
use suitcase_author::{Tier, uuid};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn child(config: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = Config::load(config).unwrap();
    let before = vm_hwm_kib();
    let start = Instant::now();
    let (finished, traffic) = rt.block_on(async {
        let mut agent = Agent::new(cfg, Hooks::default(), Arc::new(|_: &Event| {})).unwrap();
        let c = agent.cycle().await.unwrap();
        (
            c.update.map(|u| format!("{:?}", u.finished)),
            agent.traffic(),
        )
    });
    println!(
        "{}",
        json!({
            "finished": finished,
            "seconds": start.elapsed().as_secs_f64(),
            "traffic": traffic,
            "vmhwm_kib_at_start": before,
            "vmhwm_kib": vm_hwm_kib(),
        })
    );
}

#[derive(Default)]
struct Wire {
    up: AtomicU64,
    down: AtomicU64,
}

async fn proxy(target: std::net::SocketAddr, wire: Arc<Wire>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let wire = wire.clone();
            tokio::spawn(async move {
                let server = tokio::net::TcpStream::connect(target).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let w = wire.clone();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        w.up.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    let _ = sw.shutdown().await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    wire.down.fetch_add(n as u64, Ordering::Relaxed);
                }
                let _ = up.await;
            });
        }
    });
    addr
}

fn image(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

async fn measure(mib: usize, time_v: bool) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = suitcase_server::Config::new(dir.path().join("data"));
    sc.listen = "127.0.0.1:0".parse().unwrap();
    let (server, opened) = suitcase_server::start(sc).await.unwrap();
    let admin = opened.admin_token.unwrap();
    let http = reqwest::Client::new();
    let base = server.url();
    let key = dir.path().join("author.key");
    let anchor = dir.path().join("author.pub");
    let g = keys::generate(KeyAlg::Es256, "h5w4").unwrap();
    keys::write_atomic(&key, &g.private, true).unwrap();
    let (pem, _) = keys::public_of(&keys::load_private(&key).unwrap())
        .unwrap()
        .encode()
        .unwrap();
    std::fs::write(&anchor, &pem).unwrap();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    post(
        "/api/v1/keys",
        json!({"name": "author", "key": String::from_utf8(pem).unwrap()}),
    )
    .await
    .unwrap();
    let vendor = uuid::vendor("example.com");
    let size = mib << 20;
    let built = release::build(
        &ReleaseRequest {
            sequence: 2,
            tier: Tier::Basic,
            vendor,
            class: uuid::class(&vendor, "thermostat"),
            device: None,
            images: vec![ImageInput {
                name: "app".into(),
                bytes: image(size),
                component: vec![b"app".to_vec()],
                uri: Some("https://fw.example/app.bin".into()),
                integrated: false,
                invoke: false,
                delta_from: None,
            }],
            sign: vec![key],
            encrypt_for: vec![],
            x5chain: vec![],
            content: None,
            reference_uri: None,
            description: None,
        },
        &mut |_, _, _| {},
    )
    .unwrap();
    let rel: Value = http
        .post(format!("{base}/api/v1/releases?name=bench"))
        .bearer_auth(&admin)
        .body(built.envelope.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rel = rel["id"].as_str().unwrap().to_owned();
    let payload = built.payloads.into_iter().next().unwrap().bytes;
    http.put(format!("{base}/api/v1/releases/{rel}/payloads/0"))
        .bearer_auth(&admin)
        .body(payload)
        .send()
        .await
        .unwrap();
    let d: Value = post("/api/v1/devices", json!({"name": "bench"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c: Value = post(
        "/api/v1/campaigns",
        json!({"name": "bench", "release_id": rel, "filter": {"devices": [d["id"]]}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    post(
        &format!("/api/v1/campaigns/{}/start", c["id"].as_str().unwrap()),
        json!({}),
    )
    .await
    .unwrap();

    let wire = Arc::new(Wire::default());
    let via = proxy(server.addr, wire.clone()).await;
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
state_dir = "state"
[server]
url = "http://{via}"
token = "{token}"
[trust]
anchors = ["{anchor}"]
[identity]
vendor = "example.com"
class = "thermostat"
[[component]]
name = "app"
id = "617070"
kind = "file"
slots = ["app-a.bin", "app-b.bin"]
pointer = "app.slot"
capacity = {cap}
"#,
            token = d["token"].as_str().unwrap(),
            anchor = anchor.display(),
            cap = size * 2,
        ),
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if time_v {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.arg("child")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut result: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "child output {stdout:?} ({e}); stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if time_v {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some(kb) = stderr
            .lines()
            .find(|l| l.contains("Maximum resident set size"))
            .and_then(|l| l.rsplit(' ').next())
        {
            result["time_v_max_rss_kib"] = json!(kb.trim().parse::<u64>().unwrap_or(0));
        }
    }
    let slot = std::fs::metadata(dir.path().join("app-b.bin")).map_or(0, |m| m.len());
    assert_eq!(slot, size as u64, "the update was not installed");
    let envelope = built.envelope.len() as u64;
    let t = &result["traffic"];
    let received = t["received"].as_u64().unwrap();
    let sent = t["sent"].as_u64().unwrap();
    let (up, down) = (
        wire.up.load(Ordering::Relaxed),
        wire.down.load(Ordering::Relaxed),
    );
    result["size_bytes"] = json!(size);
    result["envelope_bytes"] = json!(envelope);
    result["http_overhead"] = json!({
        "received_beyond_payload": received - size as u64,
        "sent": sent,
    });
    result["wire"] = json!({
        "up": up,
        "down": down,
        "down_beyond_payload": down - size as u64,
    });
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    result
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        child(Path::new(&args[1]));
        return;
    }
    let time_v = args.iter().any(|a| a == "--time");
    let sizes: Vec<usize> = args
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect::<Vec<_>>();
    let sizes = if sizes.is_empty() {
        vec![10, 100]
    } else {
        sizes
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| image | agent peak RSS (VmHWM) | update time | HTTP received beyond payload | HTTP sent | wire down beyond payload | wire up |"
    );
    println!("|---|---|---|---|---|---|---|");
    for mib in sizes {
        let r = rt.block_on(measure(mib, time_v));
        println!(
            "| {mib} MiB | {:.1} MiB{} | {:.2} s | {} B | {} B | {} B | {} B |",
            r["vmhwm_kib"].as_u64().unwrap() as f64 / 1024.0,
            r["time_v_max_rss_kib"]
                .as_u64()
                .map(|k| format!(" (time -v: {:.1} MiB)", k as f64 / 1024.0))
                .unwrap_or_default(),
            r["seconds"].as_f64().unwrap(),
            r["http_overhead"]["received_beyond_payload"],
            r["http_overhead"]["sent"],
            r["wire"]["down_beyond_payload"],
            r["wire"]["up"],
        );
        eprintln!("{r}");
    }
}

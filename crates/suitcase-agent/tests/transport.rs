//! Transports: MQTT push wakes the agent long before its next poll (a local Mosquitto on a
//! free port), and mutual TLS identifies the device by its client certificate.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::std_instead_of_core,
    reason = "test code"
)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Device, Fleet, image};
use serde_json::json;
use suitcase_agent::{Agent, Event, Hooks};

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn broker() -> (Broker, u16) {
    let port = free_port();
    let broker = Broker(
        Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("mosquitto is needed for this test ({e})")),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (broker, port);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("mosquitto did not start on port {port}");
}

/// Hybrid push + poll: the device polls hourly, but starting the campaign pushes "check in
/// now" to its topic and it installs the update within moments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_notification_triggers_an_immediate_check_in() {
    let (_broker, port) = broker().await;
    let fleet = Fleet::with(|c| c.mqtt = Some(format!("mqtt://127.0.0.1:{port}"))).await;
    let dev = Device::new(&fleet, "pushed").await;
    let events = common::Events::default();
    let mut agent = Agent::new(dev.config(&fleet), Hooks::default(), events.sink()).unwrap();
    let runner = tokio::spawn(async move { agent.run().await });
    // The first check-in names the topics; wait for the subscription.
    for i in 0..250 {
        if events
            .all()
            .iter()
            .any(|e| matches!(e, Event::Subscribed { .. }))
        {
            break;
        }
        assert!(i < 249, "never subscribed: {:?}", events.all());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sleep = events
        .all()
        .iter()
        .find_map(|e| match e {
            Event::Sleep { seconds } => Some(*seconds),
            _ => None,
        })
        .unwrap();
    assert!(sleep > 600.0, "the agent polls every {sleep} s");
    let img = image(51, 50_000);
    let rel = fleet.release(2, &img).await;
    fleet.campaign(&rel, &[&dev.id], json!({})).await;
    for i in 0..250 {
        if dev.read("app.slot") == b"active=b\nconfirmed=b\n" {
            break;
        }
        assert!(
            i < 249,
            "the push did not wake the agent: {:?}",
            events.all()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dev.read("app-b.bin"), img);
    assert!(
        events
            .all()
            .iter()
            .any(|e| matches!(e, Event::Push { topic } if topic.contains("/d/")))
    );
    runner.abort();
    fleet.stop().await;
}

/// Mutual TLS: the agent trusts the server's CA only and proves who it is with its client
/// certificate (no token); the update runs over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_device_certificate_and_pinned_server_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use sha2::Digest as _;
    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    let server_ca = ca("test server CA");
    let device_ca = ca("test device CA");
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "server");
    let server_cert = p.signed_by(&key, &server_ca).unwrap();
    std::fs::write(d.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(d.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(d.join("server-ca.pem"), server_ca.pem()).unwrap();
    std::fs::write(d.join("device-ca.pem"), device_ca.pem()).unwrap();
    let dkey = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "device-tls");
    let dcert = p.signed_by(&dkey, &device_ca).unwrap();
    std::fs::write(d.join("device.pem"), dcert.pem()).unwrap();
    std::fs::write(d.join("device.key"), dkey.serialize_pem()).unwrap();

    let dir = d.to_path_buf();
    let fleet = Fleet::with_client(
        |c| {
            c.tls = Some(suitcase_server::TlsConfig {
                cert: dir.join("server.pem"),
                key: dir.join("server.key"),
                client_ca: Some(dir.join("device-ca.pem")),
            });
        },
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(server_ca.pem().as_bytes()).unwrap()])
            .build()
            .unwrap(),
    )
    .await;
    assert!(fleet.base.starts_with("https://"));
    let fp = hex::encode(sha2::Sha256::digest(dcert.der()));
    let (s, v) = fleet
        .post(
            "/api/v1/devices",
            &json!({"name": "device-tls", "certificate_sha256": fp}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let devdir = fleet.dir.path().join("device-tls");
    std::fs::create_dir_all(&devdir).unwrap();
    let dev = Device {
        dir: devdir,
        token: String::new(),
        id: id.clone(),
        extra: String::new(),
        components: common::APP_COMPONENT.into(),
        base: None,
    };
    let toml = dev.toml(&fleet).replace(
        "token = \"\"\n",
        &format!(
            "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            d.join("server-ca.pem").display(),
            d.join("device.pem").display(),
            d.join("device.key").display()
        ),
    );
    std::fs::write(dev.path("agent.toml"), toml).unwrap();
    let img = image(52, 80_000);
    let rel = fleet.release(2, &img).await;
    fleet.campaign(&rel, &[&id], json!({})).await;
    let cfg = suitcase_agent::Config::load(&dev.path("agent.toml")).unwrap();
    let mut agent = Agent::new(cfg, Hooks::default(), common::Events::default().sink()).unwrap();
    let u = agent.cycle().await.unwrap().update.unwrap();
    assert_eq!(u.finished, suitcase_agent::Finished::Installed);
    assert_eq!(dev.read("app-b.bin"), img);
    fleet.stop().await;
}

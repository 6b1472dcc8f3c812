//! `suitcase server`: the firmware server and status tracker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use suitcase_server::{Config, TlsConfig};

/// Arguments of `suitcase server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the SQLite database, the payloads and the first admin token live. Created if
    /// missing; reusing it keeps everything across restarts.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "suitcase-data",
        env = "SUITCASE_DATA",
        global = true
    )]
    data: PathBuf,
    /// Address and port to listen on. The default serves this machine only; use
    /// 0.0.0.0:8080 (with --tls-cert) to serve a fleet.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8080",
        env = "SUITCASE_LISTEN"
    )]
    listen: SocketAddr,
    /// Use PostgreSQL instead of the embedded SQLite, e.g.
    /// postgres://suitcase@db.example/suitcase.
    #[arg(long, value_name = "URL", env = "SUITCASE_DATABASE", global = true)]
    database: Option<String>,
    /// Where payloads go: a directory (default DATA/payloads), or s3://BUCKET/PREFIX with the
    /// usual AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT variables.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX", env = "SUITCASE_PAYLOADS")]
    payloads: Option<String>,
    /// MQTT broker for push notifications (devices then update without waiting for their
    /// next poll), e.g. mqtt://127.0.0.1:1883.
    #[arg(long, value_name = "URL", env = "SUITCASE_MQTT")]
    mqtt: Option<String>,
    /// How often devices poll, in seconds; each answer adds ±25% random jitter.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    poll_interval: u32,
    /// TLS certificate chain (PEM). With --tls-key, the server speaks HTTPS only.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) of device certificates: devices may then authenticate with a
    /// TLS client certificate (mutual TLS) instead of a token.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Serve the device API over plain HTTP to other hosts. A device's token identifies it,
    /// so by default plain HTTP is for this machine only (RFC 8240 §3).
    #[arg(long)]
    allow_plaintext_devices: bool,
    /// Enable the hawkBit DDI gateway token (docs/ddi.md): a file holding one tenant-wide
    /// secret that acts for any controller id (`Authorization: GatewayToken <secret>`) and
    /// registers unknown controllers on their first poll, as hawkBit's does. Off by default;
    /// DDI devices then authenticate with their own token (`TargetToken`).
    #[arg(long, value_name = "FILE")]
    ddi_gateway_token_file: Option<PathBuf>,
    /// Serve CoAP (docs/coap.md) on this UDP address, e.g. 127.0.0.1:5683: resource
    /// discovery in plain CoAP, and the device resources over DTLS 1.2 PSK on --coaps-listen
    /// (by default the next port, 5684 for 5683).
    #[arg(long, value_name = "ADDR:PORT")]
    coap_listen: Option<SocketAddr>,
    /// Serve the CoAP device resources over DTLS 1.2 PSK (coaps://) on this UDP address.
    /// Device credentials: `suitcase server coap-credential DEVICE`.
    #[arg(long, value_name = "ADDR:PORT")]
    coaps_listen: Option<SocketAddr>,
    /// How many registered keys must have signed an uploaded release (2 = author and
    /// operator, for example).
    #[arg(long, value_name = "N", default_value_t = 1)]
    release_signatures: usize,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// The most open connections. At the limit the longest-idle connection is closed to make
    /// room; also capped at three quarters of the open-file limit.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (on a new connection, or between
    /// requests on a kept-alive one): slow clients cannot hold sockets.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a connection with no request in flight stays open.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds a request body (JSON, CBOR, an envelope) has to arrive.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    body_timeout: u64,
    /// Seconds a payload upload may stall (it must also average 1 KiB/s over that time).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    upload_stall: u64,
    /// Seconds between sweeps of the payload store for orphans (what killed uploads leave
    /// behind; files nothing refers to, over an hour old). Default: every 30 minutes.
    #[arg(long, value_name = "SECONDS")]
    sweep_interval: Option<u64>,
    /// Quarantine a device (RFC 8240 §9, docs/server.md §8) after this many online failure
    /// reports with reason `signature` within --quarantine-window. The server only offers
    /// releases it verified against its registered keys, so a device that keeps refusing
    /// their signatures trusts other keys or is fed releases by someone else; one refusal is
    /// more likely a misconfiguration. 0 turns the rule off.
    #[arg(long, value_name = "N", default_value_t = 3)]
    quarantine_signature_failures: u32,
    /// The window of --quarantine-signature-failures: a number with a unit, s, m, h or d
    /// (e.g. 90m, 24h, 7d; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration)]
    quarantine_window: Duration,
    /// Do not quarantine a device that refuses a release as a rollback (reason
    /// `sequence-rollback`) although its inventory said it runs something older: by default
    /// that contradiction (it lied in its check-in, or its anti-rollback counter was tampered
    /// with) quarantines it.
    #[arg(long)]
    no_quarantine_rollback: bool,
    /// Do not quarantine a device that reports on a release it was never offered: by default
    /// it is (a genuine agent reports only on what a check-in offered it).
    #[arg(long)]
    no_quarantine_never_offered: bool,
    /// The fleet posture (`suitcase fleet posture`) counts a device unreachable when it has
    /// not checked in for this long: a number with a unit, s, m, h or d (e.g. 24h, 7d).
    /// Choose more than the devices' poll interval.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration)]
    unreachable_after: Duration,
    #[command(subcommand)]
    action: Option<Action>,
}

/// Local maintenance, run on the server's machine instead of serving.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Show how many admin tokens work, or, with --reset, create a new admin token when
    /// every one was revoked or lost. Needs the data directory (and --database, if the server
    /// uses PostgreSQL); the server may keep running. The new token is written to
    /// DATA/admin-token and the reset is recorded in the audit log.
    ///
    /// Example: suitcase server --data /var/lib/suitcase admin-token --reset
    AdminToken {
        /// Create a new admin token.
        #[arg(long)]
        reset: bool,
    },
    /// Print a new CoAP credential (DTLS PSK identity and key, docs/coap.md) for a device,
    /// made from DATA/coap-secret (created if missing; every node serving CoAP needs the
    /// same file). The identity is opaque: it names no device (RFC 8240 §3).
    ///
    /// Example: suitcase server --data /var/lib/suitcase coap-credential sensor-17
    CoapCredential {
        /// The device's name (or id).
        device: String,
        /// A 16-character key (96 bits) for DTLS stacks that hold no longer one (tinydtls,
        /// aiocoap's DTLSSocket); the default is 32 characters (192 bits).
        #[arg(long)]
        short_key: bool,
    },
    /// Print the public key of the server's freshness key, DATA/freshness-key (an Ed25519
    /// key, created if missing, mode 0600; every node needs the same file), to register it in
    /// the devices' trust with `suitcase trust update --add-freshness-signer FILE`
    /// (docs/trust.md, "Freshness"). Writes the PEM to -o FILE, or prints it.
    ///
    /// Example: suitcase server --data /var/lib/suitcase freshness-key -o freshness.pub
    FreshnessKey {
        /// Write the public key (PEM) here instead of printing it.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    init_logging(args.log_json);
    let mut config = Config::new(&args.data);
    if let Some(Action::AdminToken { reset }) = args.action {
        config.database = args.database;
        return admin_token(&config, reset);
    }
    if let Some(Action::FreshnessKey { output }) = &args.action {
        let (pem, kid) = suitcase_server::freshness_public_key(&args.data)?;
        match output {
            Some(path) => {
                suitcase_host::keys::write_atomic(path, pem.as_bytes(), false)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                outln!(
                    "freshness key {kid}: public key written to {}",
                    path.display()
                );
            }
            None => outln!("{}", pem.trim_end()),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(Action::CoapCredential { device, short_key }) = args.action {
        config.database = args.database;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let len = if short_key {
            suitcase_server::CoapKeyLength::Short
        } else {
            suitcase_server::CoapKeyLength::Full
        };
        let c = runtime.block_on(suitcase_server::coap_credential(&config, &device, len))?;
        outln!("identity: {}", c.identity);
        outln!("key: {}", c.key);
        return Ok(ExitCode::SUCCESS);
    }
    config.listen = args.listen;
    config.database = args.database;
    config.payloads = args.payloads;
    config.mqtt = args.mqtt;
    config.poll_interval = args.poll_interval.max(1);
    config.allow_plaintext_devices = args.allow_plaintext_devices;
    config.coap_listen = args.coap_listen;
    config.coaps_listen = match (args.coaps_listen, args.coap_listen) {
        (Some(a), _) => Some(a),
        (None, None) => None,
        // coaps on the next port: there is none after 65535.
        (None, Some(a)) if a.port() == u16::MAX => anyhow::bail!(
            "--coap-listen {a}: coaps would take the next port and there is none; give --coaps-listen"
        ),
        (None, Some(mut a)) => {
            if a.port() != 0 {
                a.set_port(a.port().saturating_add(1));
            }
            Some(a)
        }
    };
    if let Some(f) = &args.ddi_gateway_token_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the DDI gateway token {}", f.display()))?;
        let t = t.trim();
        anyhow::ensure!(
            t.len() >= 16,
            "the DDI gateway token in {} is shorter than 16 characters: anyone could guess it",
            f.display()
        );
        config.ddi_gateway_token = Some(t.to_owned());
    }
    config.release_signatures = args.release_signatures.max(1);
    config.sweep_interval = args.sweep_interval.map(|s| Duration::from_secs(s.max(1)));
    config.quarantine = suitcase_server::QuarantineRules {
        signature_failures: args.quarantine_signature_failures,
        signature_window: args.quarantine_window,
        rollback_attempt: !args.no_quarantine_rollback,
        never_offered: !args.no_quarantine_never_offered,
        unreachable_after: args.unreachable_after,
    };
    config.limits = suitcase_server::Limits {
        max_connections: args.max_connections.max(1),
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        body_timeout: Duration::from_secs(args.body_timeout.max(1)),
        upload_stall: Duration::from_secs(args.upload_stall.max(1)),
    };
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsConfig {
            cert,
            key,
            client_ca: args.client_ca,
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (server, opened) = suitcase_server::start(config).await?;
        outln!("suitcase server listening on {}", server.url());
        outln!("  database: {}", opened.database);
        outln!("  payloads: {}", opened.payloads);
        match &opened.admin_token {
            Some(_) => outln!(
                "  first admin token written to {} (keep it secret; create other tokens with it)",
                opened.admin_token_file.display()
            ),
            None => outln!(
                "  admin token: see {} (or a token created since)",
                opened.admin_token_file.display()
            ),
        }
        if let Some(a) = server.coap_addr {
            outln!("  CoAP: coap://{a} (discovery)");
        }
        if let Some(a) = server.coaps_addr {
            outln!("  CoAP over DTLS (devices): coaps://{a}");
        }
        outln!("  API description: {}/openapi.json", server.url());
        server.run_until_signal().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn admin_token(config: &Config, reset: bool) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if !reset {
        let n = runtime.block_on(suitcase_server::admin_token_count(config))?;
        outln!("{n} admin token(s) work");
        if n == 0 {
            outln!("  none: create one with `suitcase server --data DIR admin-token --reset`");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let done = runtime.block_on(suitcase_server::reset_admin_token(config))?;
    outln!(
        "new admin token written to {} ({} admin token(s) worked before; the reset is in the audit log)",
        done.file.display(),
        done.working_before
    );
    Ok(ExitCode::SUCCESS)
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rumqttc=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// The most a duration flag takes: ten years, far past any sensible window, and small enough
/// that the server's second counts cannot overflow.
const DURATION_MAX_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// A duration flag: a positive whole number with an optional unit `s`, `m`, `h` or `d`
/// (`90m`, `24h`, `7d`; a bare number is seconds).
fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        _ => {
            return Err(format!(
                "{text:?}: use a whole number with s, m, h or d, e.g. 90m, 24h or 7d"
            ));
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: use a whole number with s, m, h or d, e.g. 24h"))?;
    match n.checked_mul(scale) {
        Some(0) => Err(format!("{text:?}: must be more than zero")),
        Some(secs) if secs <= DURATION_MAX_SECONDS => Ok(Duration::from_secs(secs)),
        _ => Err(format!("{text:?}: at most ten years")),
    }
}

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn durations_take_a_unit_and_refuse_nonsense() {
        assert_eq!(duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "",
            "h",
            "0",
            "0h",
            "1w",
            "-1h",
            "1.5h",
            "99999999999999999999d",
            "4000d",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}

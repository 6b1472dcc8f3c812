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
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    init_logging(args.log_json);
    let mut config = Config::new(&args.data);
    if let Some(Action::AdminToken { reset }) = args.action {
        config.database = args.database;
        return admin_token(&config, reset);
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
    config.coaps_listen = args.coaps_listen.or_else(|| {
        args.coap_listen.map(|mut a| {
            if a.port() != 0 {
                a.set_port(a.port().saturating_add(1));
            }
            a
        })
    });
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

//! Listeners: plain HTTP, or TLS with optional client certificates (mutual TLS), HTTP/1.1 and
//! HTTP/2, and a graceful stop that drains connections and writes buffered check-ins.
//!
//! axum's own `serve` cannot hand a TLS client certificate to handlers, so connections are
//! accepted here (tokio-rustls + hyper-util) and each request carries a [`ConnInfo`]: the
//! peer address, whether the connection is TLS, and the client certificate if one was shown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt as _;

use crate::AppState;

/// What the connection tells about a request. The listener inserts it into every request;
/// a program that serves [`crate::app`]'s router itself should insert it too (without it, a
/// request counts as local).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client certificate (DER), if the peer showed one.
    pub client_cert: Option<Vec<u8>>,
}

/// TLS settings.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) that issue device certificates. With it, devices may
    /// authenticate with a client certificate instead of a token.
    pub client_ca: Option<PathBuf>,
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
    /// The bound plain CoAP address, if CoAP is on (docs/coap.md).
    pub coap_addr: Option<SocketAddr>,
    /// The bound CoAP-over-DTLS address, if on.
    pub coaps_addr: Option<SocketAddr>,
    coap: crate::coap::CoapListeners,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    flusher: JoinHandle<()>,
}

impl RunningServer {
    /// The base URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting, lets open requests finish (up to 10 s) and writes buffered check-ins.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        self.coap.stopped().await;
        let _ = self.flusher.await;
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
        tracing::info!("stopping");
        self.shutdown().await;
    }
}

fn tls_acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .with_context(|| format!("cannot read the TLS certificate {}", cfg.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in {}", cfg.cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", cfg.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .with_context(|| format!("cannot read the TLS key {}", cfg.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let mut config = match &cfg.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("cannot read the client CA {}", ca.display()))?
            {
                roots
                    .add(c.with_context(|| format!("bad PEM in {}", ca.display()))?)
                    .with_context(|| format!("bad CA certificate in {}", ca.display()))?;
            }
            // Certificates are optional at the handshake: devices with tokens and management
            // clients connect without one. A certificate that is shown must chain to the CA.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .context("client certificate verifier")?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
        }
        None => builder.with_no_client_auth().with_single_cert(certs, key),
    }
    .context("the TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds and serves in the background.
pub(crate) async fn serve(state: AppState) -> Result<RunningServer, crate::ServerError> {
    let acceptor = state
        .config
        .tls
        .as_ref()
        .map(tls_acceptor)
        .transpose()
        .map_err(crate::ServerError::Tls)?;
    let listen = state.config.listen;
    let bad_listen = |error| crate::ServerError::Listen {
        addr: listen,
        error,
    };
    let listener = TcpListener::bind(listen).await.map_err(bad_listen)?;
    let addr = listener.local_addr().map_err(bad_listen)?;
    let router = crate::api::router(state.clone());
    let (stop, stop_rx) = watch::channel(false);
    let flusher = tokio::spawn(crate::devices::flusher(
        Arc::downgrade(&state.0),
        state.config.flush_interval,
        Some(stop_rx.clone()),
    ));
    let tls = acceptor.is_some();
    let mut limits = state.config.limits.clone();
    if let Some(room) = crate::limits::connection_room() {
        limits.max_connections = limits.max_connections.min(room.max(16));
    }
    tracing::debug!(max_connections = limits.max_connections, "connection limit");
    let coap = crate::coap::start(&state, stop_rx.clone()).await?;
    let accept = tokio::spawn(accept_loop(listener, router, acceptor, stop_rx, limits));
    Ok(RunningServer {
        addr,
        tls,
        coap_addr: coap.plain,
        coaps_addr: coap.dtls,
        coap,
        stop,
        accept,
        flusher,
    })
}

async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    acceptor: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    limits: crate::Limits,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    // Slowloris: a request's headers must arrive in time, also on a kept-alive connection
    // waiting for its next request (hyper starts the timer at each new request).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let max = limits.max_connections.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let registry = Arc::new(crate::limits::Registry::new());
    loop {
        // A slot first: at the limit, the longest-idle connection makes room; if every
        // connection is busy, new ones wait in the listen queue.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if registry.evict_idlest() {
                    tracing::debug!("connection limit reached; closed the longest-idle connection");
                } else {
                    tracing::warn!(max, "connection limit reached; new connections wait");
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = stop.changed() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let registry = registry.clone();
        let idle_timeout = limits.idle_timeout;
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let (id, conn) = registry.open();
            let make = |info: ConnInfo| {
                let conn = conn.clone();
                let registry = registry.clone();
                hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(info.clone());
                    let guard = conn.begin(&registry);
                    let fut = router.clone().oneshot(req.map(Body::new));
                    async move {
                        // The request lasts until its answer's body is sent (or dropped).
                        fut.await.map(|res| {
                            res.map(|b| {
                                Body::new(GuardedBody {
                                    inner: b,
                                    _guard: guard,
                                })
                            })
                        })
                    }
                })
            };
            let served = async {
                match acceptor {
                    None => {
                        let info = ConnInfo {
                            peer,
                            tls: false,
                            client_cert: None,
                        };
                        let c = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), make(info));
                        if let Err(e) = watcher.watch(c.into_owned()).await {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                    }
                    Some(acceptor) => {
                        let tls =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            };
                        let client_cert = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.as_ref().to_vec());
                        let info = ConnInfo {
                            peer,
                            tls: true,
                            client_cert,
                        };
                        let c =
                            builder.serve_connection_with_upgrades(TokioIo::new(tls), make(info));
                        if let Err(e) = watcher.watch(c.into_owned()).await {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                    }
                }
            };
            // Closed when it ends, when evicted, or when idle (no request in flight) for
            // `idle_timeout` (HTTP/2 has no header timeout between streams).
            let idle = async {
                let tick =
                    (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
                loop {
                    tokio::time::sleep(tick).await;
                    if conn.is_idle_for(&registry, idle_timeout) {
                        return;
                    }
                }
            };
            tokio::select! {
                () = served => {}
                () = conn.closed() => tracing::debug!(%peer, "connection evicted"),
                () = idle => tracing::debug!(%peer, "idle connection closed"),
            }
            registry.remove(id);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
}

/// An answer's body that ends its request (for the idle and eviction bookkeeping) when it is
/// sent in full or dropped.
struct GuardedBody {
    inner: Body,
    _guard: crate::limits::RequestGuard,
}

impl http_body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

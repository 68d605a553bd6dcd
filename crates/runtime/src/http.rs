//! `/metrics`, `/healthz` and `/readyz` for a service, and serving a
//! router over plain HTTP or TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, Metrics};

mod stall;
use stall::{Stalls, WriteBound};

/// The operational routes; merge more routes into it before serving.
pub fn routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], m.render())
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                }
            }),
        )
        .with_state(metrics)
}

/// Takes `addr` for the HTTP endpoints: done before a service starts its
/// work, so that an address in use stops the process at once, saying so,
/// instead of leaving it running with no `/readyz`.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let why =
            format!("cannot listen on {addr} (--http / FORECAST_HTTP): {e}; choose a free address");
        // Kept as the cause, for the error's domain (crate::failure).
        anyhow::Error::new(e).context(why)
    })
}

/// Serves `router` on `listener` until `token` is cancelled, with the
/// default [`HttpLimits`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Router,
    token: CancellationToken,
) -> anyhow::Result<()> {
    serve_with(listener, router, None, HttpLimits::default(), token).await
}

/// Serves `router` on `addr` until `token` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    token: CancellationToken,
) -> anyhow::Result<()> {
    serve_on(bind(addr).await?, router, token).await
}

/// The server side of TLS, as [`TlsArgs::config`] reads it.
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// TLS of an HTTP endpoint: both flags or neither.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS (TLS 1.2 and 1.3, rustls) with this certificate chain
    /// (PEM, the server's certificate first); needs --tls-key.
    #[arg(
        long,
        env = "FORECAST_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "FORECAST_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The server's TLS configuration, or `None` for plain HTTP.
    pub fn config(&self) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => tls_config(cert, key).map(Some),
            _ => Ok(None),
        }
    }
}

/// A TLS server configuration from PEM files. Errors name the file and
/// never hold key material.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read certificates from {} (--tls-cert): {e}",
                cert.display()
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} (--tls-cert) holds no PEM certificate",
        cert.display()
    );
    let private = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        anyhow::anyhow!(
            "cannot read a private key from {} (--tls-key): PEM PKCS#8, PKCS#1 or SEC1 expected",
            key.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, private)
    .map_err(|e| {
        anyhow::anyhow!(
            "{} and {} do not make a TLS identity: {e}",
            cert.display(),
            key.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The largest request head (start line and headers) served; a larger one
/// is answered `431 Request Header Fields Too Large` and the connection
/// closed.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most headers a request may have (a request with more is answered 431).
pub const MAX_HEADERS: usize = 64;

/// Connections served at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;

/// Seconds a client has to send a request's headers unless told otherwise.
pub const DEFAULT_HEADER_TIMEOUT_SECONDS: u64 = 10;

/// Seconds a write may stay stalled (the client reading nothing) unless
/// told otherwise.
pub const DEFAULT_WRITE_TIMEOUT_SECONDS: u64 = 10;

/// While every connection slot is taken, a connection whose writes have
/// been stalled this long is closed to make room.
pub const STALLED_GIVES_WAY_AFTER: Duration = Duration::from_millis(250);

/// What an HTTP endpoint that faces the network takes from its clients
/// before it refuses or waits (docs/operations.md, "HTTP limits").
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimits {
    /// Connections served at once; more wait in the listen queue until one
    /// closes
    #[arg(
        long = "http-max-connections",
        env = "FORECAST_HTTP_MAX_CONNECTIONS",
        default_value_t = DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..=65_536),
        value_name = "N"
    )]
    pub max_connections: u32,
    /// Seconds a client has to send a request's headers, from connecting or
    /// from the end of its previous response: a slow or idle client is
    /// disconnected then, and its connection freed
    #[arg(
        long = "http-header-timeout",
        env = "FORECAST_HTTP_HEADER_TIMEOUT",
        default_value_t = DEFAULT_HEADER_TIMEOUT_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..=3_600),
        value_name = "SECONDS"
    )]
    pub header_timeout_seconds: u64,
    /// Seconds a response may wait for a client that reads nothing (its
    /// writes stalled): the connection is closed then, and its slot freed.
    /// While every slot is taken, a connection stalled for 250 ms is closed
    /// at once to make room
    #[arg(
        long = "http-write-timeout",
        env = "FORECAST_HTTP_WRITE_TIMEOUT",
        default_value_t = DEFAULT_WRITE_TIMEOUT_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..=3_600),
        value_name = "SECONDS"
    )]
    pub write_timeout_seconds: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout_seconds: DEFAULT_HEADER_TIMEOUT_SECONDS,
            write_timeout_seconds: DEFAULT_WRITE_TIMEOUT_SECONDS,
        }
    }
}

impl HttpLimits {
    fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_seconds)
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_seconds)
    }
}

/// Serves `router` on `listener`, over TLS when `tls` is given, until
/// `token` is cancelled, then gives open connections 5 s to finish.
///
/// What it refuses, so that no client can hold the server's memory or its
/// connections without bound: a request head over [`MAX_HEADER_BYTES`] or
/// [`MAX_HEADERS`] (431), a client that sends no complete head within the
/// header timeout (also an idle keep-alive connection: disconnected), a TLS
/// handshake not done within it (dropped), a client that reads nothing
/// for the write timeout (disconnected; while every slot is taken, one
/// stalled for [`STALLED_GIVES_WAY_AFTER`] is disconnected at once), and
/// more than `max_connections` connections at once (the rest wait to be
/// accepted). Live streams (SSE) are bounded by their route, not here.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: HttpLimits,
    token: CancellationToken,
) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
        tracing::info!(%addr, max_connections = limits.max_connections, "serving {scheme}");
    }
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections as usize));
    let stalls = Arc::new(Stalls::default());
    let (header_timeout, write_timeout) = (limits.header_timeout(), limits.write_timeout());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let mut full = false;
    'accept: loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                full = false;
                slot
            }
            Err(_) => {
                if !full {
                    full = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "every connection slot is taken (--http-max-connections): new connections wait, and connections that read nothing give way"
                    );
                }
                loop {
                    let closed = stalls.close_stalled_for(STALLED_GIVES_WAY_AFTER);
                    if closed > 0 {
                        tracing::debug!(
                            closed,
                            "closed connections that read nothing, to make room"
                        );
                    }
                    tokio::select! {
                        () = token.cancelled() => break 'accept,
                        slot = slots.clone().acquire_owned() => break slot?,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (id, closed) = stalls.register();
        let tcp = WriteBound::new(tcp, write_timeout, id, stalls.clone());
        let (acceptor, router, watcher, http, stalls) = (
            acceptor.clone(),
            router.clone(),
            graceful.watcher(),
            http.clone(),
            stalls.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let _registered = stall::Registered::new(id, stalls);
            // No upgrades (WebSockets) are served: a plain connection, which
            // the graceful shutdown can close.
            let serve = |io| {
                let service = hyper_util::service::TowerToHyperService::new(router);
                let connection =
                    watcher.watch(http.serve_connection(hyper_util::rt::TokioIo::new(io), service));
                async move {
                    tokio::select! {
                        served = connection => served,
                        // Closed to make room: it read nothing.
                        () = closed.cancelled() => Ok(()),
                    }
                }
            };
            let served = match acceptor {
                None => serve(Either::Left(tcp)).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve(Either::Right(stream)).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("closed HTTP connections still open after 5 s");
    }
    Ok(())
}

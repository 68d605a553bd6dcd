//! `/metrics`, `/healthz` and `/readyz` for a service, and serving a
//! router over plain HTTP or TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The operational routes; merge more routes into it before serving.
pub fn routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.render() }),
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
        anyhow::anyhow!(
            "cannot listen on {addr} (--http / FORECAST_HTTP): {e}; choose a free address"
        )
    })
}

/// Serves `router` on `listener` until `token` is cancelled.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Router,
    token: CancellationToken,
) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(token.cancelled_owned())
        .await?;
    Ok(())
}

/// Serves `router` on `addr` until `token` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    token: CancellationToken,
) -> anyhow::Result<()> {
    serve_on(bind(addr).await?, router, token).await
}

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

/// Serves `router` on `listener` over TLS until `token` is cancelled, then
/// gives open connections 5 s to finish. A client that fails its handshake
/// (or takes over 10 s) is dropped, never the server.
pub async fn serve_tls_on(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving HTTPS");
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
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
        let (acceptor, router, watcher) = (acceptor.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let service = hyper_util::service::TowerToHyperService::new(router);
            // No upgrades (WebSockets) are served: a plain connection,
            // which the graceful shutdown can close.
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("closed HTTPS connections still open after 5 s");
    }
    Ok(())
}

/// [`serve_on`], or [`serve_tls_on`] when `tls` is given.
pub async fn serve_maybe_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    match tls {
        Some(tls) => serve_tls_on(listener, router, tls, token).await,
        None => serve_on(listener, router, token).await,
    }
}

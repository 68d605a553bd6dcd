//! `/metrics`, `/healthz` and `/readyz` for a service.

use std::net::SocketAddr;
use std::sync::Arc;

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

//! One root cancellation token, cancelled by SIGINT or SIGTERM; a second
//! signal while the process drains exits at once.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM. A second one exits
/// the process at once (code 130), without finishing what is in flight:
/// nothing is lost, since offsets not committed are read again.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                    let _ = ctrl_c.await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT: stopping (again to exit at once)"),
                _ = term.recv() => tracing::info!("SIGTERM: stopping (again to exit at once)"),
            }
            t.cancel();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::warn!(
                "second signal: exiting without finishing what is in flight; records not committed will be read again"
            );
            std::process::exit(130);
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
            t.cancel();
        }
    });
    token
}

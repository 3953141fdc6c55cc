//! `switchboard serve`: the API, dashboard and background work, until SIGINT or SIGTERM.

use crate::app::Application;
use switchboard_core::config::Config;

pub(super) async fn serve(config: Config) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let base = config.base_url();
    let app = Application::build(config).await?;
    if let Some(c) = &app.bootstrap {
        say!(
            "\nSwitchboard is set up (shown once; store these now):\n  \
             dashboard  {base}/dashboard\n  login      {}\n  password   {}\n  API key    {}\n  project    {}\n",
            c.email, c.password, c.api_key, c.project
        );
    }
    tracing::info!(url = %base, port = app.port(), "listening");
    if let Some(port) = app.metrics_port() {
        tracing::info!(port, "serving /metrics on the metrics listener");
    }
    app.run_until_stopped(stop).await
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives while the node starts is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            tracing::info!("shutting down: draining in-flight requests");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: draining in-flight requests");
    }
}

//! `switchboard worker`: job workers, maintenance and cron without the API.

use super::shutdown_signal;
use crate::app;
use switchboard_core::config::Config;

pub(super) async fn worker(config: Config) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let (db, _) = app::connect(&config).await?;
    let runtime = switchboard_queue::runtime::Runtime::builder()
        .heartbeat(std::time::Duration::from_millis(config.job_heartbeat_ms))
        .push_allow(config.push_allow.clone())
        .limits(app::limits(&config))
        .build(db.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(runtime.run(stop_rx));
    tracing::info!(backend = db.backend().name(), "worker running");
    stop.await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), running).await;
    db.close().await;
    Ok(())
}

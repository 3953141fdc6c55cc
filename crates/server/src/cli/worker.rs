//! `switchboard worker`: job workers, maintenance and cron without the API.

use super::shutdown_signal;
use switchboard_core::config::Config;

pub(super) async fn worker(config: Config) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let node = crate::worker::Worker::build(&config).await?;
    node.run_until_stopped(stop).await;
    Ok(())
}

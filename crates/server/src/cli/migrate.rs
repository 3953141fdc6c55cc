//! `switchboard migrate`: apply the migrations and exit.

use crate::app;
use switchboard_core::config::Config;

pub(super) async fn migrate(config: &Config) -> anyhow::Result<()> {
    let (db, _) = app::connect(config).await?;
    say!("migrations applied ({})", db.backend().name());
    db.close().await;
    Ok(())
}

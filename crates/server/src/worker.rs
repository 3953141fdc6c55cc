//! `switchboard worker`: a node that runs jobs (built-in kinds, push jobs), cron and
//! maintenance against the shared database, and serves no HTTP.

use crate::{app, builtins};
use std::future::Future;
use std::time::Duration;
use switchboard_core::config::Config;
use switchboard_core::db::Db;
use switchboard_queue::runtime::{Runtime, RuntimeBuilder};

/// A worker node, built but not yet running.
pub struct Worker {
    db: Db,
    runtime: Runtime,
}

impl Worker {
    /// Connects to (and migrates) the database `config` names and builds the runtime with
    /// every built-in kind (see [`builtins::runtime`]).
    pub async fn build(config: &Config) -> anyhow::Result<Worker> {
        Self::build_with(config, Runtime::builder(), None).await
    }

    /// [`Worker::build`] with the caller's timing or handlers on `builder`, and `extra`
    /// kinds registered with the built-in ones.
    pub async fn build_with(
        config: &Config,
        builder: RuntimeBuilder,
        extra: Option<builtins::Extra>,
    ) -> anyhow::Result<Worker> {
        let (db, _) = app::connect(config).await?;
        let runtime = builtins::runtime(config, &db, builder, extra);
        Ok(Worker { db, runtime })
    }

    /// The database it works on.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Its runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Runs jobs until `stop` resolves; then lets running jobs finish (up to 30 s) and
    /// closes the database.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(self.runtime.run(stop_rx));
        tracing::info!(backend = self.db.backend().name(), "worker running");
        stop.await;
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
        self.db.close().await;
    }
}

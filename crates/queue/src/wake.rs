//! Wake-ups for waiting claimers: in-process per queue, and across nodes through PostgreSQL
//! LISTEN/NOTIFY (one NOTIFY per committing transaction, not per job). Waiters also poll, so
//! a lost notification (or a pooler that drops LISTEN) costs latency, never jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The NOTIFY channel.
pub const CHANNEL: &str = "switchboard_jobs";

/// Per-(project, queue) notifiers.
#[derive(Clone, Default)]
pub struct Wakeups {
    inner: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

fn key(project: &str, queue: &str) -> String {
    format!("{project}/{queue}")
}

impl Wakeups {
    /// The notifier for a queue.
    pub fn get(&self, project: &str, queue: &str) -> Arc<Notify> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key(project, queue)).or_default().clone()
    }

    /// Wakes every waiter of a queue, and the node's dispatcher (`*`/`*`).
    pub fn wake(&self, project: &str, queue: &str) {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(&key(project, queue)) {
            n.notify_waiters();
        }
        if let Some(n) = map.get(&key("*", "*")) {
            n.notify_one();
        }
    }

    /// Wakes from a NOTIFY payload `project/queue`.
    pub fn wake_payload(&self, payload: &str) {
        if let Some((p, q)) = payload.split_once('/') {
            self.wake(p, q);
        }
    }

    /// Listens for NOTIFY on PostgreSQL until the task is dropped; reconnects by itself.
    pub async fn listen(self, pool: sqlx::PgPool) {
        loop {
            match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "LISTEN failed; retrying");
                    } else {
                        loop {
                            match listener.recv().await {
                                Ok(n) => self.wake_payload(n.payload()),
                                Err(e) => {
                                    tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN; retrying"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

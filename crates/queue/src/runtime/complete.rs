//! Recording finished attempts: one completer task per node commits whatever has arrived
//! while its previous commit was under way.

use crate::handler::JobError;
use crate::model::JobId;
use crate::store::{self, Completion, FailOptions, QueueError};
use std::time::Duration;
use switchboard_core::db::Db;
use switchboard_core::id::ProjectId;
use tokio::sync::{mpsc, oneshot};

/// A finished attempt waiting to be recorded by the completer.
pub(super) enum Outcome {
    Done(Completion),
    Failed {
        project: ProjectId,
        id: JobId,
        token: String,
        error: JobError,
    },
    /// Everything sent before this is committed when the sender is answered.
    Drain(oneshot::Sender<()>),
}

/// Records finished attempts in batches: whatever arrives while one batch commits rides the
/// next commit, so a burst of completions costs one transaction, not one each.
pub(super) async fn complete_loop(db: Db, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    let mut batch: Vec<Outcome> = Vec::with_capacity(1024);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut waiters = Vec::new();
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for o in batch.drain(..) {
            match o {
                Outcome::Done(c) => done.push(c),
                Outcome::Failed {
                    project,
                    id,
                    token,
                    error,
                } => failed.push((project, id, token, error)),
                Outcome::Drain(tx) => waiters.push(tx),
            }
        }
        for attempt in 1..=3 {
            match record_outcomes(&db, &done, &failed).await {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    tracing::warn!(error = %e, "recording job outcomes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => tracing::error!(error = %e, jobs = done.len() + failed.len(),
                    "could not record job outcomes; their leases will lapse and they will run again"),
            }
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

async fn record_outcomes(
    db: &Db,
    done: &[Completion],
    failed: &[(ProjectId, JobId, String, JobError)],
) -> Result<(), QueueError> {
    if done.is_empty() && failed.is_empty() {
        return Ok(());
    }
    if failed.is_empty() {
        for r in store::complete_now(db, done).await? {
            if let Err(e) = r {
                log_refused(&e);
            }
        }
        return Ok(());
    }
    let mut tx = db.begin().await?;
    for r in store::complete_many(&mut tx, done).await? {
        if let Err(e) = r {
            log_refused(&e);
        }
    }
    for (project, id, token, e) in failed {
        let opts = FailOptions {
            retry_after_ms: e.retry_after_ms,
            permanent: e.permanent,
        };
        match store::fail(&mut tx, project, id, token, &e.message, opts).await {
            Ok(_) => {}
            Err(QueueError::Db(e)) => return Err(QueueError::Db(e)),
            Err(other) => log_refused(&other),
        }
    }
    tx.commit().await?;
    Ok(())
}

fn log_refused(e: &QueueError) {
    match e {
        QueueError::StaleLease | QueueError::Cancelled | QueueError::NotFound(_) => {
            tracing::info!(error = %e, "job changed while running; outcome discarded")
        }
        other => tracing::error!(error = %other, "could not record job outcome"),
    }
}

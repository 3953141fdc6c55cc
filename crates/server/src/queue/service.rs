//! Audited queue operations shared by the HTTP API, the dashboard and the CLI: each runs in
//! one transaction with its audit event. Callers wake queues or signal workers afterwards.

use crate::error::{ApiError, ApiResult};
use switchboard_core::audit::{self, AuditContext, Change};
use switchboard_core::db::Db;
use switchboard_core::time::Timestamp;
use switchboard_queue::store;
use switchboard_queue::{Job, JobState, QueueName, QueueSettings};

/// An operator's action on one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOp {
    /// Back to available with fresh attempts.
    Retry,
    /// Stop it.
    Cancel,
    /// Remove it.
    Delete,
}

/// Runs `op` on a job of `ctx`'s project.
pub async fn job_op(db: &Db, ctx: &AuditContext, id: &str, op: JobOp) -> ApiResult<Job> {
    let project = &ctx.project_id;
    let mut tx = db.begin().await?;
    let before = store::get(tx.ex(), project, id)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    let (action, after) = match op {
        JobOp::Retry => ("job.retry", store::retry(&mut tx, project, id).await?),
        JobOp::Cancel => ("job.cancel", store::cancel(&mut tx, project, id).await?),
        JobOp::Delete => ("job.delete", store::delete(&mut tx, project, id).await?),
    };
    let brief = |j: &Job| serde_json::json!({ "state": j.state, "attempt": j.attempt });
    let change = Change {
        action,
        entity_type: "job",
        entity_id: id,
        before: Some(brief(&before)),
        after: (op != JobOp::Delete).then(|| brief(&after)),
    };
    audit::record(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// Changes a queue's settings, creating the queue if needed (within the project's cap of
/// `max_queues`). The queue's row stays locked from the read to the commit, so concurrent
/// changes (a pause and a new limit, say) apply one after the other and none undoes
/// another.
pub async fn save_settings(
    db: &Db,
    ctx: &AuditContext,
    name: &QueueName,
    action: &str,
    max_queues: u32,
    change: impl FnOnce(QueueSettings) -> ApiResult<QueueSettings>,
) -> ApiResult<QueueSettings> {
    let project = &ctx.project_id;
    let mut tx = db.begin().await?;
    store::create_queues(&mut tx, project, &[name], max_queues).await?;
    let before = store::lock_settings(&mut tx, project, name)
        .await?
        .ok_or_else(|| ApiError::not_found("queue"))?;
    let after = change(before.clone())?;
    store::save_settings(&mut tx, project, name, &after).await?;
    let change = Change {
        action,
        entity_type: "queue",
        entity_id: name.as_str(),
        before: serde_json::to_value(&before).ok(),
        after: serde_json::to_value(&after).ok(),
    };
    audit::record(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// A bulk operation on a queue's jobs.
#[derive(Clone, Copy, Debug)]
pub enum BulkOp {
    /// Retry every failed job.
    RetryFailed,
    /// Delete finished jobs of a state that finished before a time, at most `limit`.
    Clean {
        /// completed, failed or cancelled.
        state: JobState,
        /// Finished before.
        before: Timestamp,
        /// Most jobs.
        limit: i64,
    },
}

/// Runs a bulk operation; returns how many jobs it touched.
pub async fn bulk(db: &Db, ctx: &AuditContext, name: &QueueName, op: BulkOp) -> ApiResult<i64> {
    let project = &ctx.project_id;
    let mut tx = db.begin().await?;
    let (action, count, detail) = match op {
        BulkOp::RetryFailed => {
            let n = store::retry_failed(&mut tx, project, name).await?;
            ("queue.retry_failed", n, serde_json::json!({}))
        }
        BulkOp::Clean {
            state,
            before,
            limit,
        } => {
            let n = store::clean(&mut tx, project, name, state, before, limit).await?;
            (
                "queue.clean",
                n,
                serde_json::json!({ "state": state, "before": before }),
            )
        }
    };
    let mut after = detail;
    after["count"] = serde_json::json!(count);
    let change = Change {
        action,
        entity_type: "queue",
        entity_id: name.as_str(),
        before: None,
        after: Some(after),
    };
    audit::record(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(count)
}

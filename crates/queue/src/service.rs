//! The queue's services: each operation opens its transaction, applies the rules and writes
//! its audit event with the change, and answers a [`QueueError`]. The HTTP routes, the
//! dashboard and the CLI call these same functions; the server maps the errors to problems
//! in one place.
//!
//! Callers wake queues or signal workers afterwards where they can do it faster than the
//! commit's own wake-up (see [`enqueue_in`]).

use crate::cron::{CronSpec, Schedule};
use crate::error::{QueueError, Result};
use crate::limits::{Limits, QueueAdmission};
use crate::model::*;
use crate::schedules as repo;
use crate::store::{self, Enqueued};
use switchboard_core::audit::{self, AuditContext, Change};
use switchboard_core::db::{Db, Tx};
use switchboard_core::id::ProjectId;
use switchboard_core::time::Timestamp;

/// Enqueues `jobs` inside the caller's transaction `tx`, all or none: the one way to enqueue
/// as part of a larger change (a notification and its delivery job, a payment and its sync
/// job commit together or not at all). Their queues are woken when `tx` commits, on SQLite
/// (this process's runtime) and PostgreSQL (every node, through NOTIFY) alike; a rollback
/// wakes nothing.
///
/// Built-in work stays apart: a job of a built-in kind (`sb.…`) must run in-process in a
/// built-in queue, and a built-in queue takes nothing else ([`NewJob::check_reserved`]).
/// Missing queues are created with default settings and are not held to the project's queue
/// cap: built-in queues never are; for queues a tenant names, call
/// [`QueueAdmission::admit_in`] first (the cron tick does). Outside a transaction, enqueue
/// with [`crate::runtime::Runtime::enqueue`].
#[tracing::instrument(skip_all, fields(project = %project, jobs = jobs.len()))]
pub async fn enqueue_in(
    tx: &mut Tx,
    project: &ProjectId,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>> {
    for j in jobs {
        j.check_reserved()?;
    }
    store::enqueue(tx, project, jobs).await
}

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

/// Runs `op` on a job of `ctx`'s project, audited as `job.retry`, `job.cancel` or
/// `job.delete`. The caller then wakes the queue (retry) or signals the job's worker.
#[tracing::instrument(skip_all, fields(project = %ctx.project_id, job = %id, op = ?op))]
pub async fn job_op(db: &Db, ctx: &AuditContext, id: &JobId, op: JobOp) -> Result<Job> {
    let project = &ctx.project_id;
    let mut tx = db.begin().await?;
    let before = store::get(tx.ex(), project, id)
        .await?
        .ok_or(QueueError::NotFound("job"))?;
    let (action, after) = match op {
        JobOp::Retry => ("job.retry", store::retry(&mut tx, project, id).await?),
        JobOp::Cancel => ("job.cancel", store::cancel(&mut tx, project, id).await?),
        JobOp::Delete => ("job.delete", store::delete(&mut tx, project, id).await?),
    };
    let brief = |j: &Job| serde_json::json!({ "state": j.state, "attempt": j.attempt });
    let change = Change {
        action,
        entity_type: "job",
        entity_id: id.as_str(),
        before: Some(brief(&before)),
        after: (op != JobOp::Delete).then(|| brief(&after)),
    };
    audit::record(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// Changes a queue's settings, creating the queue if needed (within the project's cap of
/// `max_queues`), audited as `action`. The queue's row stays locked from the read to the
/// commit, so concurrent changes (a pause and a new limit, say) apply one after the other
/// and none undoes another.
///
/// Switchboard's own queues (`sb.…`) can be paused and tuned like any other, but are not
/// created here: changing one that does not exist is refused on `queue`.
#[tracing::instrument(skip_all, fields(project = %ctx.project_id, queue = %name, action))]
pub async fn save_settings(
    db: &Db,
    ctx: &AuditContext,
    name: &QueueName,
    action: &str,
    max_queues: u32,
    change: impl FnOnce(QueueSettings) -> Result<QueueSettings>,
) -> Result<QueueSettings> {
    let project = &ctx.project_id;
    let mut tx = db.begin().await?;
    if !name.is_reserved() {
        store::create_queues(&mut tx, project, &[name], max_queues).await?;
    }
    let before = match store::lock_settings(&mut tx, project, name).await? {
        Some(s) => s,
        None if name.is_reserved() => return Err(Invalid::new("queue", RESERVED_MESSAGE).into()),
        None => return Err(QueueError::NotFound("queue")),
    };
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

/// Runs a bulk operation, audited as `queue.retry_failed` or `queue.clean`; returns how many
/// jobs it touched.
#[tracing::instrument(skip_all, fields(project = %ctx.project_id, queue = %name, op = ?op))]
pub async fn bulk(db: &Db, ctx: &AuditContext, name: &QueueName, op: BulkOp) -> Result<i64> {
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

/// Whether a schedule fires more than once a minute (counted against its own cap).
pub fn frequent(s: &Schedule) -> bool {
    CronSpec::parse(&s.cron, &s.timezone).is_ok_and(|c| c.more_than_once_a_minute())
}

/// Saves a schedule (a new one when `insert`), refusing a name the project already uses.
async fn save_schedule(tx: &mut Tx, project: &ProjectId, s: &Schedule, insert: bool) -> Result<()> {
    repo::save(tx.ex(), project, s, insert).await.map_err(|e| {
        match switchboard_core::db::is_unique_violation(&e) {
            true => QueueError::ScheduleNameTaken,
            false => QueueError::Db(e),
        }
    })
}

/// Records a schedule's change in the audit trail.
async fn audit_schedule(
    tx: &mut Tx,
    ctx: &AuditContext,
    action: &str,
    before: Option<&Schedule>,
    after: Option<&Schedule>,
    id: &ScheduleId,
) -> Result<()> {
    let change = Change {
        action,
        entity_type: "schedule",
        entity_id: id.as_str(),
        before: before.and_then(|b| serde_json::to_value(b).ok()),
        after: after.and_then(|a| serde_json::to_value(a).ok()),
    };
    audit::record(tx, ctx, change).await?;
    Ok(())
}

/// Creates a validated schedule within the project's caps, audited as `schedule.create`.
#[tracing::instrument(skip_all, fields(project = %ctx.project_id, schedule = %s.id))]
pub async fn create_schedule(
    db: &Db,
    ctx: &AuditContext,
    s: &Schedule,
    limits: &Limits,
) -> Result<()> {
    let project = &ctx.project_id;
    let mut tx = db.begin().await?;
    repo::check_limits(&mut tx, project, &s.id, true, frequent(s), limits).await?;
    save_schedule(&mut tx, project, s, true).await?;
    audit_schedule(&mut tx, ctx, "schedule.create", None, Some(s), &s.id).await?;
    tx.commit().await?;
    Ok(())
}

/// Changes a schedule by `change` (which validates), within the project's caps, audited as
/// `schedule.update`; returns it as saved.
#[tracing::instrument(skip_all, fields(project = %ctx.project_id, schedule = %id))]
pub async fn update_schedule(
    db: &Db,
    ctx: &AuditContext,
    id: &ScheduleId,
    limits: &Limits,
    change: impl FnOnce(Schedule) -> Result<Schedule>,
) -> Result<Schedule> {
    let project = &ctx.project_id;
    let mut tx = db.begin().await?;
    let before = repo::get(tx.ex(), project, id)
        .await?
        .ok_or(QueueError::NotFound("schedule"))?;
    let after = change(before.clone())?;
    // Only a change that makes it fire more than once a minute is counted against the cap.
    let newly_frequent = frequent(&after) && !frequent(&before);
    repo::check_limits(&mut tx, project, &after.id, false, newly_frequent, limits).await?;
    save_schedule(&mut tx, project, &after, false).await?;
    audit_schedule(
        &mut tx,
        ctx,
        "schedule.update",
        Some(&before),
        Some(&after),
        id,
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes a schedule (jobs it already enqueued stay), audited as `schedule.delete`.
#[tracing::instrument(skip_all, fields(project = %ctx.project_id, schedule = %id))]
pub async fn delete_schedule(db: &Db, ctx: &AuditContext, id: &ScheduleId) -> Result<()> {
    let project = &ctx.project_id;
    let mut tx = db.begin().await?;
    let before = repo::get(tx.ex(), project, id)
        .await?
        .ok_or(QueueError::NotFound("schedule"))?;
    repo::delete(tx.ex(), project, id).await?;
    audit_schedule(&mut tx, ctx, "schedule.delete", Some(&before), None, id).await?;
    tx.commit().await?;
    Ok(())
}

/// Enqueues one run of a schedule now, outside the cron rhythm, audited as
/// `schedule.trigger`; returns the job.
#[tracing::instrument(skip_all, fields(project = %ctx.project_id, schedule = %id))]
pub async fn trigger_schedule(
    db: &Db,
    ctx: &AuditContext,
    id: &ScheduleId,
    local_kinds: &[String],
    admission: &QueueAdmission,
) -> Result<Job> {
    let project = &ctx.project_id;
    let mut tx = db.begin().await?;
    let s = repo::get(tx.ex(), project, id)
        .await?
        .ok_or(QueueError::NotFound("schedule"))?;
    let job = repo::enqueue_run(&mut tx, project, &s, None, local_kinds, admission).await?;
    let change = Change {
        action: "schedule.trigger",
        entity_type: "schedule",
        entity_id: id.as_str(),
        before: None,
        after: Some(serde_json::json!({ "job_id": job.id })),
    };
    audit::record(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(job)
}

//! Operators' actions on jobs: cancel, retry, delete, retry every failed job, clean.

use super::*;
use crate::wake::CHANNEL;
use sqlx::Row;
use switchboard_core::db::{Exec, Tx};
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

/// A job's state, queue and runner (locked on PostgreSQL with `lock`).
async fn state_of(
    ex: Exec<'_>,
    project: &ProjectId,
    id: &JobId,
    lock: bool,
) -> Result<Option<(JobState, String, Runner)>, sqlx::Error> {
    let lock = if lock && matches!(ex, Exec::Postgres(_)) {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql =
        format!("SELECT state, queue, runner FROM jobs WHERE project_id = $1 AND id = $2{lock}");
    on_db!(ex, c => {
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id.as_str()).fetch_optional(c).await?;
        row.map(|r| Ok((
            JobState::parse(&r.try_get::<String, _>("state")?).unwrap_or(JobState::Failed),
            r.try_get("queue")?,
            Runner::parse(&r.try_get::<String, _>("runner")?),
        ))).transpose()
    })
}

/// Cancels a job that has not finished. A running job's worker learns it on its next
/// heartbeat (409 `job-cancelled`); its completion is then refused.
pub async fn cancel(tx: &mut Tx, project: &ProjectId, id: &JobId) -> Result<Job> {
    let (state, queue, runner) = state_of(tx.ex(), project, id, true)
        .await?
        .ok_or(QueueError::NotFound("job"))?;
    if state.is_final() {
        return Err(QueueError::WrongState(format!(
            "the job is already {}",
            state.as_str()
        )));
    }
    let now = time::to_db(time::now());
    on_db!(tx.ex(), c => sqlx::query(
        "UPDATE jobs SET state = 'cancelled', finished_at = $3, lease_token = NULL, lease_expires_at = NULL \
         WHERE project_id = $1 AND id = $2",
    ).bind(project.as_str()).bind(id.as_str()).bind(now).execute(c).await.map(|_| ()))?;
    let mut d = Deltas::default();
    d.add_job(project.as_str(), &queue, state, runner, -1);
    d.add(project.as_str(), &queue, JobState::Cancelled, 1);
    d.apply(tx.ex()).await?;
    get(tx.ex(), project, id)
        .await?
        .ok_or(QueueError::NotFound("job"))
}

/// Makes a failed, cancelled or completed job available again with a fresh set of attempts.
pub async fn retry(tx: &mut Tx, project: &ProjectId, id: &JobId) -> Result<Job> {
    let (state, queue, runner) = state_of(tx.ex(), project, id, true)
        .await?
        .ok_or(QueueError::NotFound("job"))?;
    if !state.is_final() {
        return Err(QueueError::WrongState(format!(
            "only finished jobs can be retried; this one is {}",
            state.as_str()
        )));
    }
    let now = time::to_db(time::now());
    on_db!(tx.ex(), c => sqlx::query(
        "UPDATE jobs SET state = 'available', attempt = 0, run_at = $3, finished_at = NULL, result = NULL \
         WHERE project_id = $1 AND id = $2",
    ).bind(project.as_str()).bind(id.as_str()).bind(now).execute(c).await.map(|_| ()))?;
    let mut d = Deltas::default();
    d.add(project.as_str(), &queue, state, -1);
    d.add_job(project.as_str(), &queue, JobState::Available, runner, 1);
    d.apply(tx.ex()).await?;
    for n in notices(project, std::iter::once((&QueueName::from_db(queue), None))) {
        tx.notify_after_commit(CHANNEL, n);
    }
    get(tx.ex(), project, id)
        .await?
        .ok_or(QueueError::NotFound("job"))
}

/// Retries every failed job of a queue; returns how many.
pub async fn retry_failed(tx: &mut Tx, project: &ProjectId, queue: &QueueName) -> Result<i64> {
    let now = time::to_db(time::now());
    let runners: Vec<String> = on_db!(tx.ex(), c => {
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'available', attempt = 0, run_at = $3, finished_at = NULL \
             WHERE project_id = $1 AND queue = $2 AND state = 'failed' AND state IN ('completed', 'failed', 'cancelled') \
             RETURNING runner",
        ).bind(project.as_str()).bind(queue.as_str()).bind(now).fetch_all(c).await?;
        rows.iter().map(|r| r.try_get("runner")).collect::<Result<_, _>>()?
    });
    let n = runners.len() as i64;
    let mut d = Deltas::default();
    d.add(project.as_str(), queue.as_str(), JobState::Failed, -n);
    for r in &runners {
        d.add_job(
            project.as_str(),
            queue.as_str(),
            JobState::Available,
            Runner::parse(r),
            1,
        );
    }
    d.apply(tx.ex()).await?;
    if n > 0 {
        for n in notices(project, std::iter::once((queue, None))) {
            tx.notify_after_commit(CHANNEL, n);
        }
    }
    Ok(n)
}

/// Deletes a job in any state (a running job's worker then gets 404 on completion).
pub async fn delete(tx: &mut Tx, project: &ProjectId, id: &JobId) -> Result<Job> {
    let job = get(tx.ex(), project, id)
        .await?
        .ok_or(QueueError::NotFound("job"))?;
    delete_ids(tx, &[id.to_string()])
        .await?
        .apply(tx.ex())
        .await?;
    Ok(job)
}

/// Deletes finished jobs of a queue in `state` that finished before `before`, at most
/// `limit` (the API calls it repeatedly to clean large queues in batches).
pub async fn clean(
    tx: &mut Tx,
    project: &ProjectId,
    queue: &QueueName,
    state: JobState,
    before: Timestamp,
    limit: i64,
) -> Result<i64> {
    if !state.is_final() {
        return Err(Invalid::new(
            "state",
            "only completed, failed or cancelled jobs can be cleaned",
        )
        .into());
    }
    let ids: Vec<String> = on_db!(tx.ex(), c => {
        let rows = sqlx::query("SELECT id FROM jobs WHERE project_id = $1 AND queue = $2 AND state = $3 AND finished_at < $4 \
             AND state IN ('completed', 'failed', 'cancelled') LIMIT $5")
            .bind(project.as_str()).bind(queue.as_str()).bind(state.as_str()).bind(time::to_db(before)).bind(limit)
            .fetch_all(c).await?;
        rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?
    });
    let d = delete_ids(tx, &ids).await?;
    d.apply(tx.ex()).await?;
    Ok(ids.len() as i64)
}

/// Deletes jobs by id and returns the counter changes of the rows really deleted.
pub(super) async fn delete_ids(tx: &mut Tx, ids: &[String]) -> Result<Deltas, sqlx::Error> {
    let mut d = Deltas::default();
    for chunk in ids.chunks(500) {
        let gone: Vec<(String, String, String, String)> = on_db!(tx.ex(), c => {
            let mut q = sqlx::QueryBuilder::new("DELETE FROM job_errors WHERE job_id IN (");
            let mut sep = q.separated(", ");
            for id in chunk { sep.push_bind(id); }
            q.push(")");
            q.build().execute(&mut *c).await?;
            let mut q = sqlx::QueryBuilder::new("DELETE FROM jobs WHERE id IN (");
            let mut sep = q.separated(", ");
            for id in chunk { sep.push_bind(id); }
            q.push(") RETURNING project_id, queue, state, runner");
            let rows = q.build().fetch_all(&mut *c).await?;
            rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get("project_id")?, r.try_get("queue")?, r.try_get("state")?, r.try_get("runner")?))).collect::<Result<_, _>>()?
        });
        for (p, q, st, runner) in gone {
            d.add_job(
                &p,
                &q,
                JobState::parse(&st).unwrap_or(JobState::Completed),
                Runner::parse(&runner),
                -1,
            );
        }
    }
    Ok(d)
}

/// Deletes a queue with everything in it: its jobs (and their errors), counters and
/// throughput (the benchmark's cleanup).
pub async fn drop_queue(
    tx: &mut Tx,
    project: &ProjectId,
    queue: &QueueName,
) -> Result<(), sqlx::Error> {
    on_db!(tx.ex(), c => {
        sqlx::query("DELETE FROM job_errors WHERE job_id IN (SELECT id FROM jobs WHERE project_id = $1 AND queue = $2)")
            .bind(project.as_str()).bind(queue.as_str()).execute(&mut *c).await?;
        sqlx::query("DELETE FROM jobs WHERE project_id = $1 AND queue = $2")
            .bind(project.as_str()).bind(queue.as_str()).execute(&mut *c).await?;
        sqlx::query("DELETE FROM queue_counts WHERE project_id = $1 AND queue = $2")
            .bind(project.as_str()).bind(queue.as_str()).execute(&mut *c).await?;
        sqlx::query("DELETE FROM queue_minutes WHERE project_id = $1 AND queue = $2")
            .bind(project.as_str()).bind(queue.as_str()).execute(&mut *c).await?;
        sqlx::query("DELETE FROM queues WHERE project_id = $1 AND name = $2")
            .bind(project.as_str()).bind(queue.as_str()).execute(&mut *c).await.map(|_| ())
    })
}

//! What the holder of a lease does: heartbeat, complete (one job or set-based batches), fail.

use super::*;
use crate::backoff::Backoff;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use switchboard_core::db::{Backend, Db, Exec, Tx};
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

/// Why an update carrying a lease token matched nothing.
pub(super) async fn lease_miss(ex: Exec<'_>, project: &ProjectId, id: &JobId) -> QueueError {
    let state: Result<Option<String>, sqlx::Error> = on_db!(ex, c => sqlx::query("SELECT state FROM jobs WHERE project_id = $1 AND id = $2")
        .bind(project.as_str()).bind(id.as_str()).fetch_optional(c).await
        .and_then(|r| r.map(|r| r.try_get("state")).transpose()));
    match state {
        Err(e) => QueueError::Db(e),
        Ok(None) => QueueError::NotFound("job"),
        Ok(Some(s)) if s == "cancelled" => QueueError::Cancelled,
        Ok(Some(_)) => QueueError::StaleLease,
    }
}

/// Lease length of a heartbeat that names none, for jobs claimed before claims remembered
/// theirs (migration 0011), ms.
pub const DEFAULT_LEASE_MS: i64 = 30_000;

/// Extends a lease (and records progress); refuses stale tokens and cancelled jobs. Without
/// `lease_ms` the lease is extended by the length the job was claimed with (or last given
/// by a heartbeat); with it, by that, which later heartbeats then keep.
pub async fn heartbeat(
    tx: &mut Tx,
    project: &ProjectId,
    id: &JobId,
    token: &str,
    lease_ms: Option<i64>,
    progress: Option<&serde_json::Value>,
) -> Result<Timestamp> {
    let now = time::to_db(time::now());
    let until: Option<i64> = on_db!(tx.ex(), c => sqlx::query(
        "UPDATE jobs SET lease_ms = COALESCE($5, lease_ms, $6), \
         lease_expires_at = $4 + COALESCE($5, lease_ms, $6) * 1000, progress = COALESCE($7, progress) \
         WHERE project_id = $1 AND id = $2 AND state = 'running' AND lease_token = $3 RETURNING lease_expires_at",
    )
    .bind(project.as_str()).bind(id.as_str()).bind(token).bind(now).bind(lease_ms).bind(DEFAULT_LEASE_MS)
    .bind(progress.map(|p| p.to_string()))
    .fetch_optional(c).await?.map(|r| r.try_get("lease_expires_at")).transpose()?);
    match until {
        Some(until) => Ok(time::from_db(until)),
        None => Err(lease_miss(tx.ex(), project, id).await),
    }
}

/// Extends the leases of many held jobs of a project (300 per statement); returns the ids
/// whose lease was extended. The others were cancelled, deleted or re-leased.
pub async fn heartbeat_many(
    tx: &mut Tx,
    project: &ProjectId,
    pairs: &[(JobId, String)],
    lease_ms: i64,
) -> Result<std::collections::HashSet<JobId>, sqlx::Error> {
    let until = time::to_db(time::now()) + lease_ms * 1000;
    let mut kept = std::collections::HashSet::with_capacity(pairs.len());
    for chunk in pairs.chunks(300) {
        let ids: Vec<String> = on_db!(tx.ex(), c => {
            let mut q = sqlx::QueryBuilder::new("UPDATE jobs SET lease_expires_at = ");
            q.push_bind(until);
            q.push(" WHERE project_id = ");
            q.push_bind(project.as_str());
            // No `state = 'running'`: see "Leased jobs by token".
            q.push(" AND (id, lease_token) IN (VALUES ");
            let mut sep = q.separated(", ");
            for (id, token) in chunk {
                sep.push("(");
                sep.push_bind_unseparated(id.as_str());
                sep.push_unseparated(", ");
                sep.push_bind_unseparated(token);
                sep.push_unseparated(")");
            }
            q.push(") RETURNING id");
            let rows = q.build().fetch_all(&mut *c).await?;
            rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?
        });
        kept.extend(ids.into_iter().map(JobId::from_db));
    }
    Ok(kept)
}

// Leased jobs by token: the set-based statements below find jobs by `(id, lease_token)`
// alone. Only a running job has a lease token (every way out of `running` clears it), so a
// matching token means a running job. Adding `state = 'running'` lets PostgreSQL's planner
// pick a bitmap scan of the partial lease index, whose entries for jobs that already
// finished pile up until vacuum (a completion batch then took 50–100 ms instead of 2 ms).

/// Marks a running job completed and returns it; refuses stale tokens.
pub async fn complete(
    tx: &mut Tx,
    project: &ProjectId,
    id: &JobId,
    token: &str,
    result: Option<&serde_json::Value>,
) -> Result<Job> {
    let mut out = complete_each(tx, &[(project, id, token, result)]).await?;
    out.pop().unwrap_or(Err(QueueError::NotFound("job")))
}

/// One job to complete: project, job id, lease token, result.
pub type Completing<'a> = (
    &'a ProjectId,
    &'a JobId,
    &'a str,
    Option<&'a serde_json::Value>,
);

/// Completes jobs one statement each (each returns its job, or its refusal: stale token,
/// cancelled or unknown job, which writes nothing), then moves the counters once for all, at
/// one completion time. An `Err` is a database error: the transaction must be given up.
pub async fn complete_each(tx: &mut Tx, items: &[Completing<'_>]) -> Result<Vec<Result<Job>>> {
    let now = time::now();
    let mut out = Vec::with_capacity(items.len());
    let mut done = Vec::with_capacity(items.len());
    for (project, id, token, result) in items {
        match complete_row(tx, project, id, token, *result, now).await? {
            Some(job) => {
                done.push((project.to_string(), job.queue.to_string()));
                out.push(Ok(job));
            }
            None => out.push(answer(Err(lease_miss(tx.ex(), project, id).await))?),
        }
    }
    record_completed(tx, done, Vec::new(), now).await?;
    Ok(out)
}

/// One completion of a batch.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The job's project.
    pub project: ProjectId,
    /// The job's queue.
    pub queue: QueueName,
    /// Job id.
    pub id: JobId,
    /// Lease token of the claim.
    pub token: String,
    /// Result to store.
    pub result: Option<serde_json::Value>,
    /// The queue keeps no completed jobs (`keep_completed_secs = 0`, as its settings were
    /// when the job was claimed): delete the job rather than mark it completed.
    pub remove: bool,
}

/// Completes one job and reads it back (`None`: the token matched no running job).
async fn complete_row(
    tx: &mut Tx,
    project: &ProjectId,
    id: &JobId,
    token: &str,
    result: Option<&serde_json::Value>,
    now: Timestamp,
) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!(
        "UPDATE jobs SET state = 'completed', result = $4, finished_at = $5, lease_token = NULL, \
         lease_expires_at = NULL WHERE project_id = $1 AND id = $2 AND state = 'running' AND lease_token = $3 \
         RETURNING {JOB_COLUMNS}"
    );
    on_db!(tx.ex(), c => {
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id.as_str()).bind(token)
            .bind(result.map(|r| r.to_string())).bind(time::to_db(now))
            .fetch_optional(c).await?;
        row.map(|r| Ok(job_from_row!(&r))).transpose()
    })
}

/// Counters, throughput and metrics for completed jobs, given as `(project, queue)`;
/// `deleted` of them were removed on completion (their queue keeps no completed jobs).
async fn record_completed(
    tx: &mut Tx,
    done: Vec<(String, String)>,
    deleted: Vec<(String, String)>,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let mut d = Deltas::default();
    let mut per_queue: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (p, q) in done {
        d.add(&p, &q, JobState::Completed, 1);
        d.add(&p, &q, JobState::Running, -1);
        *per_queue.entry((p, q)).or_default() += 1;
    }
    for (p, q) in deleted {
        d.add(&p, &q, JobState::Running, -1);
        *per_queue.entry((p, q)).or_default() += 1;
    }
    d.apply(tx.ex()).await?;
    for ((p, q), n) in per_queue {
        bump_minute(tx.ex(), &p, &q, now, n, 0).await?;
        metrics::counter!("queue_jobs_completed_total", &labels(&p, &q)).increment(n as u64);
    }
    Ok(())
}

/// Completes many running jobs in one transaction: jobs without a result in set-based
/// statements of up to 300 `(id, lease_token)` pairs, the others one by one; one counter and
/// throughput update for the whole batch. Each item succeeds or is refused on its own.
///
/// In queues that keep no completed jobs (`keep_completed_secs = 0`, BullMQ's
/// `removeOnComplete`) the jobs are deleted instead: no index entries to add, nothing left
/// for retention pruning.
pub async fn complete_many(tx: &mut Tx, items: &[Completion]) -> Result<Vec<Result<()>>> {
    let now = time::now();
    let mut out: Vec<Option<Result<()>>> = items.iter().map(|_| None).collect();
    let mut done: Vec<(String, String)> = Vec::new();
    let mut deleted: Vec<(String, String)> = Vec::new();
    let by_id: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.id.as_str(), i))
        .collect();
    // Set-based paths: no result to store, so only the state changes (or the row goes).
    let (gone, kept): (Vec<usize>, Vec<usize>) = (0..items.len())
        .filter(|i| items[*i].result.is_none())
        .partition(|i| items[*i].remove);
    if tx.backend() == Backend::Postgres {
        // One statement moves the counters too: nothing for `record_completed` below.
        let set: Vec<usize> = gone.iter().chain(&kept).copied().collect();
        for id in complete_pg(tx.ex(), items, &set, now).await? {
            if let Some(i) = by_id.get(id.as_str()) {
                out[*i] = Some(Ok(()));
            }
        }
        count_completed(items, set.iter().copied().filter(|i| out[*i].is_some()));
    }
    let sets = match tx.backend() {
        Backend::Postgres => Vec::new(),
        Backend::Sqlite => vec![(true, gone), (false, kept)],
    };
    for (delete, which) in sets {
        for chunk in which.chunks(300) {
            let Exec::Sqlite(c) = tx.ex() else {
                break;
            };
            // Matched rows come back as one row (see `SQLITE_PICK`), then go by rowid.
            let mut q = sqlx::QueryBuilder::new(
                "SELECT json_group_array(json_array(rowid, id, project_id, queue, attempt)) AS hit \
                 FROM jobs WHERE (id, lease_token) IN (VALUES ",
            );
            // No `state = 'running'`: see "Leased jobs by token".
            let mut sep = q.separated(", ");
            for i in chunk {
                sep.push("(");
                sep.push_bind_unseparated(items[*i].id.as_str());
                sep.push_unseparated(", ");
                sep.push_bind_unseparated(&items[*i].token);
                sep.push_unseparated(")");
            }
            q.push(")");
            let json: String = q.build().fetch_one(&mut *c).await?.try_get("hit")?;
            let hit: Vec<(i64, String, String, String, i32)> =
                serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let rowids: Vec<i64> = hit.iter().map(|h| h.0).collect();
            let sql = if delete {
                "DELETE FROM jobs WHERE rowid IN (SELECT value FROM json_each($1))"
            } else {
                "UPDATE jobs SET state = 'completed', finished_at = $2, lease_token = NULL, \
                 lease_expires_at = NULL WHERE rowid IN (SELECT value FROM json_each($1))"
            };
            sqlx::query(sql)
                .bind(serde_json::to_string(&rowids).unwrap_or_default())
                .bind(time::to_db(now))
                .execute(&mut *c)
                .await?;
            let hit = hit
                .into_iter()
                .map(|(_, id, p, q, attempt)| (id, p, q, attempt));
            let mut retried: Vec<String> = Vec::new();
            for (id, p, q, attempt) in hit {
                if let Some(i) = by_id.get(id.as_str()) {
                    out[*i] = Some(Ok(()));
                    if delete {
                        deleted.push((p, q));
                        if attempt > 1 {
                            retried.push(id);
                        }
                    } else {
                        done.push((p, q));
                    }
                }
            }
            for ids in retried.chunks(500) {
                on_db!(tx.ex(), c => {
                    let mut q = sqlx::QueryBuilder::new("DELETE FROM job_errors WHERE job_id IN (");
                    let mut sep = q.separated(", ");
                    for id in ids { sep.push_bind(id); }
                    q.push(")");
                    q.build().execute(c).await.map(|_| ())
                })?;
            }
        }
    }
    for (i, it) in items.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        let row = match &it.result {
            Some(r) => complete_row(tx, &it.project, &it.id, &it.token, Some(r), now).await?,
            None => None,
        };
        out[i] = Some(match row {
            Some(job) => {
                done.push((it.project.to_string(), job.queue.to_string()));
                Ok(())
            }
            None => Err(lease_miss(tx.ex(), &it.project, &it.id).await),
        });
    }
    record_completed(tx, done, deleted, now).await?;
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or(Err(QueueError::NotFound("job"))))
        .collect())
}

/// PostgreSQL's set-based completion, one statement: jobs of `remove` queues deleted (with
/// the errors of earlier attempts), the others marked completed, counters and throughput
/// moved. Pairs are matched by `(id, lease_token)` alone (see "Leased jobs by token").
const PG_COMPLETE: &str = concat!(
    "WITH pairs AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bool[]) AS p(id, token, remove)), \
    gone AS (DELETE FROM jobs j USING pairs p WHERE p.remove AND j.id = p.id AND j.lease_token = p.token \
      RETURNING j.id, j.project_id, j.queue, j.attempt), \
    done AS (UPDATE jobs j SET state = 'completed', finished_at = $4, lease_token = NULL, lease_expires_at = NULL \
      FROM pairs p WHERE NOT p.remove AND j.id = p.id AND j.lease_token = p.token RETURNING j.id, j.project_id, j.queue), \
    errs AS (DELETE FROM job_errors e USING gone g WHERE g.attempt > 1 AND e.job_id = g.id), \
    fin AS (SELECT project_id, queue, FALSE AS kept FROM gone UNION ALL SELECT project_id, queue, TRUE FROM done), \
    per AS (SELECT project_id, queue, count(*) AS n, count(*) FILTER (WHERE kept) AS k FROM fin GROUP BY project_id, queue), \
    counted AS (INSERT INTO queue_counts (project_id, queue, state, shard, n) \
      SELECT per.project_id, per.queue, s.state, ",
    pg_shard!(),
    ", s.n \
      FROM per CROSS JOIN LATERAL (VALUES ('running', -per.n), ('completed', per.k)) AS s(state, n) WHERE s.n <> 0 \
      ",
    counts_upsert!(),
    "), \
    minutes AS (INSERT INTO queue_minutes (project_id, queue, minute, completed, failed) \
      SELECT project_id, queue, $5, n, 0 FROM per \
      ON CONFLICT (project_id, queue, minute) DO UPDATE SET completed = queue_minutes.completed + excluded.completed) \
    SELECT id FROM gone UNION ALL SELECT id FROM done"
);

/// Runs [`PG_COMPLETE`] for `items[which]`; returns the ids it completed.
async fn complete_pg(
    ex: Exec<'_>,
    items: &[Completion],
    which: &[usize],
    now: Timestamp,
) -> Result<Vec<String>, sqlx::Error> {
    let Exec::Postgres(c) = ex else {
        return Ok(Vec::new());
    };
    if which.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = which.iter().map(|i| items[*i].id.as_str()).collect();
    let tokens: Vec<&str> = which.iter().map(|i| items[*i].token.as_str()).collect();
    let remove: Vec<bool> = which.iter().map(|i| items[*i].remove).collect();
    let rows = sqlx::query(PG_COMPLETE)
        .bind(&ids)
        .bind(&tokens)
        .bind(&remove)
        .bind(time::to_db(now))
        .bind(now.as_second().div_euclid(60) * 60)
        .fetch_all(&mut *c)
        .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// Counts the completions `items[i]` in `queue_jobs_completed_total`.
fn count_completed(items: &[Completion], completed: impl Iterator<Item = usize>) {
    let mut per_queue: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for i in completed {
        *per_queue
            .entry((items[i].project.as_str(), items[i].queue.as_str()))
            .or_default() += 1;
    }
    for ((p, q), n) in per_queue {
        metrics::counter!("queue_jobs_completed_total", &labels(p, q)).increment(n);
    }
}

/// Completes and commits: on PostgreSQL, a batch without results is one statement committing
/// on its own (one round trip where a transaction costs five); otherwise [`complete_many`]
/// in a transaction of its own.
pub async fn complete_now(db: &Db, items: &[Completion]) -> Result<Vec<Result<()>>> {
    if items.iter().all(|it| it.result.is_none()) {
        if let Some(mut conn) = db.autocommit().await? {
            let all: Vec<usize> = (0..items.len()).collect();
            let hit: std::collections::HashSet<String> =
                complete_pg(conn.ex(), items, &all, time::now())
                    .await?
                    .into_iter()
                    .collect();
            switchboard_core::db::note_commit();
            count_completed(
                items,
                all.into_iter()
                    .filter(|i| hit.contains(items[*i].id.as_str())),
            );
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                out.push(match hit.contains(it.id.as_str()) {
                    true => Ok(()),
                    false => Err(lease_miss(conn.ex(), &it.project, &it.id).await),
                });
            }
            return Ok(out);
        }
    }
    let mut tx = db.begin().await?;
    let out = complete_many(&mut tx, items).await?;
    tx.commit().await?;
    Ok(out)
}

/// How a failure should be treated.
#[derive(Clone, Copy, Debug, Default)]
pub struct FailOptions {
    /// Wait at least this long before the next attempt (e.g. a `Retry-After`).
    pub retry_after_ms: Option<i64>,
    /// Do not retry.
    pub permanent: bool,
}

/// Records a failed attempt: retryable with backoff while attempts remain, else failed.
pub async fn fail(
    tx: &mut Tx,
    project: &ProjectId,
    id: &JobId,
    token: &str,
    error: &str,
    opts: FailOptions,
) -> Result<Job> {
    let now = time::now();
    let current: Option<(i32, i32, String, String, Option<String>)> = on_db!(tx.ex(), c => {
        let row = sqlx::query(
            "SELECT attempt, max_attempts, backoff, queue, worker FROM jobs \
             WHERE project_id = $1 AND id = $2 AND state = 'running' AND lease_token = $3",
        )
        .bind(project.as_str()).bind(id.as_str()).bind(token).fetch_optional(c).await?;
        row.map(|r| Ok::<_, sqlx::Error>((r.try_get("attempt")?, r.try_get("max_attempts")?, r.try_get("backoff")?, r.try_get("queue")?, r.try_get("worker")?))).transpose()?
    });
    let Some((attempt, max_attempts, backoff, queue, worker)) = current else {
        return Err(lease_miss(tx.ex(), project, id).await);
    };
    let backoff: Backoff = serde_json::from_str(&backoff).unwrap_or_default();
    let error: String = error.chars().take(8_000).collect();
    let retry = !opts.permanent && attempt < max_attempts;
    let (state, run_at, finished) = if retry {
        let delay = backoff
            .delay_ms(attempt)
            .max(opts.retry_after_ms.unwrap_or(0));
        (JobState::Retryable, time::to_db(now) + delay * 1000, None)
    } else {
        (JobState::Failed, time::to_db(now), Some(time::to_db(now)))
    };
    let sql = format!(
        "UPDATE jobs SET state = $4, run_at = $5, finished_at = $6, last_error = $7, lease_token = NULL, \
         lease_expires_at = NULL WHERE project_id = $1 AND id = $2 AND lease_token = $3 RETURNING {JOB_COLUMNS}"
    );
    let job = on_db!(tx.ex(), c => {
        sqlx::query("INSERT INTO job_errors (job_id, attempt, error, worker, at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id.as_str()).bind(attempt).bind(&error).bind(&worker).bind(time::to_db(now))
            .execute(&mut *c).await?;
        let r = sqlx::query(&sql).bind(project.as_str()).bind(id.as_str()).bind(token).bind(state.as_str())
            .bind(run_at).bind(finished).bind(&error).fetch_one(&mut *c).await?;
        job_from_row!(&r)
    });
    let mut d = Deltas::default();
    d.add(project.as_str(), &queue, JobState::Running, -1);
    d.add(project.as_str(), &queue, state, 1);
    d.apply(tx.ex()).await?;
    if state == JobState::Failed {
        bump_minute(tx.ex(), project.as_str(), &queue, now, 0, 1).await?;
        metrics::counter!("queue_jobs_failed_total", &labels(project.as_str(), &queue))
            .increment(1);
    } else {
        metrics::counter!(
            "queue_jobs_retried_total",
            &labels(project.as_str(), &queue)
        )
        .increment(1);
    }
    Ok(job)
}

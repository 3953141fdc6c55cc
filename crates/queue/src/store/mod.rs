//! All SQL of the queue engine, by concern. Portable SQL except the claim path, which uses
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL and relies on the single writer on SQLite.
//!
//! Every state change also adjusts `queue_counts` in the same transaction, so counts per
//! state come from maintained counters, never from `count(*)` over `jobs`.
//!
//! - enqueue: inserting jobs;
//! - claim: handing available jobs out under a lease;
//! - lease: heartbeat, complete, fail with the lease token;
//! - admin: cancel, retry, delete, clean;
//! - maintain: promotion, lease rescue, retention;
//! - queues: queue rows, settings, caps, runnable queues;
//! - read: jobs, queues with counts, throughput;
//! - counts: the maintained counters.

use crate::model::*;

pub use crate::error::{QueueError, Result};

/// [`PG_SHARD`] as a literal, for statements put together with `concat!`.
macro_rules! pg_shard {
    () => {
        "CAST(pg_backend_pid() % 64 AS SMALLINT)"
    };
}

/// [`COUNTS_UPSERT`] as a literal, for statements put together with `concat!`.
macro_rules! counts_upsert {
    () => {
        "ON CONFLICT (project_id, queue, state, shard) DO UPDATE SET n = queue_counts.n + excluded.n"
    };
}

/// A queue's settings from a row of `QUEUE_COLUMNS` (see `queues`).
macro_rules! settings_from_row {
    ($r:expr) => {{
        let r = $r;
        let limit: Option<i32> = r.try_get("rate_limit")?;
        let period: Option<i64> = r.try_get("rate_period_ms")?;
        QueueSettings {
            concurrency: r.try_get("concurrency")?,
            global_concurrency: r.try_get("global_concurrency")?,
            rate_limit: limit
                .zip(period)
                .map(|(limit, period_ms)| RateLimit { limit, period_ms }),
            paused: r.try_get("paused")?,
            keep_completed_secs: r.try_get("keep_completed_secs")?,
            keep_failed_secs: r.try_get("keep_failed_secs")?,
            keep_cancelled_secs: r.try_get("keep_cancelled_secs")?,
        }
    }};
}

/// A job from a row of [`JOB_COLUMNS`].
macro_rules! job_from_row {
    ($r:expr) => {{
        let r = $r;
        let tags: String = r.try_get("tags")?;
        Job {
            id: JobId::from_db(r.try_get("id")?),
            queue: QueueName::from_db(r.try_get("queue")?),
            kind: JobKind::from_db(r.try_get("kind")?),
            payload: parse_json(Some(r.try_get("payload")?)).unwrap_or(serde_json::Value::Null),
            state: JobState::parse(&r.try_get::<String, _>("state")?).unwrap_or(JobState::Failed),
            priority: Priority::from_db(r.try_get("priority")?),
            run_at: time::from_db(r.try_get("run_at")?),
            attempt: r.try_get("attempt")?,
            max_attempts: r.try_get("max_attempts")?,
            backoff: serde_json::from_str(&r.try_get::<String, _>("backoff")?).unwrap_or_default(),
            timeout_ms: r.try_get("timeout_ms")?,
            unique_key: r.try_get("unique_key")?,
            tags: tags_from_db(&tags),
            progress: parse_json(r.try_get("progress")?),
            result: parse_json(r.try_get("result")?),
            last_error: r.try_get("last_error")?,
            target: parse_json(r.try_get("target")?).and_then(|v| serde_json::from_value(v).ok()),
            runner: Runner::parse(&r.try_get::<String, _>("runner")?),
            worker: r.try_get("worker")?,
            lease_expires_at: r
                .try_get::<Option<i64>, _>("lease_expires_at")?
                .map(time::from_db),
            created_at: time::from_db(r.try_get("created_at")?),
            started_at: r
                .try_get::<Option<i64>, _>("started_at")?
                .map(time::from_db),
            finished_at: r
                .try_get::<Option<i64>, _>("finished_at")?
                .map(time::from_db),
        }
    }};
}

mod admin;
mod claim;
mod counts;
mod enqueue;
mod lease;
mod maintain;
mod queues;
mod read;

pub use admin::*;
pub use claim::*;
pub use counts::*;
pub use enqueue::*;
pub use lease::*;
pub use maintain::*;
pub use queues::*;
pub use read::*;

const JOB_COLUMNS: &str = "id, queue, kind, payload, state, priority, run_at, attempt, \
    max_attempts, backoff, timeout_ms, unique_key, tags, progress, result, last_error, target, \
    runner, worker, lease_expires_at, created_at, started_at, finished_at";

fn parse_json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

fn tags_to_db(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(",{},", tags.join(","))
    }
}

fn tags_from_db(tags: &str) -> Vec<String> {
    tags.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Prometheus labels of a queue, within the node's label budget (see [`crate::labels`]).
pub fn labels(project: &str, queue: &str) -> [(&'static str, String); 2] {
    crate::labels::labels(project, queue)
}

/// One caller's answer within a transaction shared by several: a refusal (stale token,
/// cancelled or unknown job: nothing written) is that caller's, a database error gives the
/// whole transaction up (`Err`).
pub fn answer<T>(r: Result<T>) -> Result<Result<T>> {
    match r {
        Err(QueueError::Db(e)) => Err(QueueError::Db(e)),
        other => Ok(other),
    }
}

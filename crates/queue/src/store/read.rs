//! Reads for the API and the dashboard: jobs, attempt errors, queues with their counts,
//! throughput per minute, the oldest waiting job.

use super::*;
use sqlx::Row;
use std::collections::HashMap;
use switchboard_core::db::{Backend, Exec};
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

/// One job of the project.
pub async fn get(
    ex: Exec<'_>,
    project: &ProjectId,
    id: &JobId,
) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE project_id = $1 AND id = $2");
    on_db!(ex, c => {
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id.as_str()).fetch_optional(c).await?;
        row.map(|r| Ok(job_from_row!(&r))).transpose()
    })
}

/// Filters of [`list`].
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Queue.
    pub queue: Option<QueueName>,
    /// State.
    pub state: Option<JobState>,
    /// Kind.
    pub kind: Option<String>,
    /// Tag.
    pub tag: Option<String>,
    /// Cursor: jobs with a smaller id (newest first).
    pub before_id: Option<String>,
}

/// Jobs of the project, newest first.
pub async fn list(
    ex: Exec<'_>,
    project: &ProjectId,
    f: &JobFilter,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    // Only the filters given become conditions, so the planner can walk `jobs_queue`
    // newest first; a state is written as a literal (it is one of a fixed set) so partial
    // indexes on state can be used. On PostgreSQL running jobs sit in `jobs_running`, the
    // others in `jobs_queue` (migration 0006): without a state both are walked and merged.
    // Without a queue, PostgreSQL walks each of the project's queues that way and merges
    // them; SQLite walks the primary key newest first (`+project_id` keeps it from sorting
    // the whole project's jobs by `jobs_queue`).
    let limit = limit.clamp(0, 10_000);
    let backend = ex.backend();
    let mut binds: Vec<String> = vec![project.to_string()];
    let mut conds = match (&f.queue, backend) {
        (Some(_), _) => "project_id = $1".to_owned(),
        (None, Backend::Postgres) => "project_id = q.project_id AND queue = q.name".to_owned(),
        (None, Backend::Sqlite) => "+project_id = $1".to_owned(),
    };
    let mut cond = |sql: &mut String, column: &str, op: &str, value: String| {
        binds.push(value);
        sql.push_str(&format!(" AND {column} {op} ${}", binds.len()));
    };
    if let Some(q) = &f.queue {
        cond(&mut conds, "queue", "=", q.to_string());
    }
    if let Some(k) = &f.kind {
        cond(&mut conds, "kind", "=", k.clone());
    }
    if let Some(t) = &f.tag {
        // Tags are stored as `,a,b,`; LIKE wildcards in the tag itself are escaped.
        let escaped = t.replace('!', "!!").replace('%', "!%").replace('_', "!_");
        cond(&mut conds, "tags", "LIKE", format!("%,{escaped},%"));
        conds.push_str(" ESCAPE '!'");
    }
    if let Some(before) = &f.before_id {
        cond(&mut conds, "id", "<", before.clone());
    }
    let walk = |state: &str| {
        format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE {conds}{state} ORDER BY id DESC LIMIT {limit}"
        )
    };
    let mut sql = match (f.state, backend) {
        (Some(state), _) => walk(&format!(" AND state = '{}'", state.as_str())),
        (None, Backend::Sqlite) => walk(""),
        (None, Backend::Postgres) => format!(
            "SELECT * FROM (({}) UNION ALL ({})) s ORDER BY id DESC LIMIT {limit}",
            walk(" AND state <> 'running'"),
            walk(" AND state = 'running'")
        ),
    };
    if f.queue.is_none() && backend == Backend::Postgres {
        sql = format!(
            "SELECT j.* FROM queues q CROSS JOIN LATERAL ({sql}) j \
             WHERE q.project_id = $1 ORDER BY j.id DESC LIMIT {limit}"
        );
    }
    on_db!(ex, c => {
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(c).await?;
        rows.iter().map(|r| Ok(job_from_row!(r))).collect()
    })
}

/// Errors of every failed attempt, oldest first.
pub async fn attempt_errors(ex: Exec<'_>, job: &JobId) -> Result<Vec<AttemptError>, sqlx::Error> {
    on_db!(ex, c => {
        let rows = sqlx::query("SELECT attempt, error, worker, at FROM job_errors WHERE job_id = $1 ORDER BY at, attempt")
            .bind(job.as_str()).fetch_all(c).await?;
        rows.iter().map(|r| Ok(AttemptError {
            attempt: r.try_get("attempt")?,
            error: r.try_get("error")?,
            worker: r.try_get("worker")?,
            at: time::from_db(r.try_get("at")?),
        })).collect()
    })
}

/// Every queue of the project (or one), with counts and last-minute throughput.
pub async fn queues(
    ex: Exec<'_>,
    project: &ProjectId,
    only: Option<&QueueName>,
) -> Result<Vec<QueueInfo>, sqlx::Error> {
    let minute = time::now().as_second().div_euclid(60) * 60 - 60;
    let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE project_id = $1 AND ($2 IS NULL OR name = $2) ORDER BY name");
    on_db!(ex, c => {
        let rows = sqlx::query(&sql).bind(project.as_str()).bind(only.map(|q| q.as_str())).fetch_all(&mut *c).await?;
        let mut out: Vec<QueueInfo> = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(QueueInfo {
                name: QueueName::from_db(r.try_get("name")?),
                settings: settings_from_row!(r),
                counts: JobState::ALL.iter().map(|s| (*s, 0)).collect(),
                completed_last_minute: 0,
                failed_last_minute: 0,
            });
        }
        let counts = sqlx::query("SELECT queue, state, CAST(SUM(n) AS BIGINT) AS n FROM queue_counts \
            WHERE project_id = $1 AND ($2 IS NULL OR queue = $2) GROUP BY queue, state")
            .bind(project.as_str()).bind(only.map(|q| q.as_str())).fetch_all(&mut *c).await?;
        let mut index: HashMap<String, usize> = out.iter().enumerate().map(|(i, q)| (q.name.to_string(), i)).collect();
        for r in &counts {
            let q: String = r.try_get("queue")?;
            let s: String = r.try_get("state")?;
            // Available jobs for pull workers have a counter of their own: added back here.
            if let (Some(i), Some(state)) = (index.get(&q), counted_state(&s)) {
                *out[*i].counts.entry(state).or_default() += r.try_get::<i64, _>("n")?;
            }
        }
        let minutes = sqlx::query("SELECT queue, CAST(SUM(completed) AS BIGINT) AS c, CAST(SUM(failed) AS BIGINT) AS f FROM queue_minutes \
            WHERE project_id = $1 AND minute >= $2 AND ($3 IS NULL OR queue = $3) GROUP BY queue")
            .bind(project.as_str()).bind(minute).bind(only.map(|q| q.as_str())).fetch_all(&mut *c).await?;
        for r in &minutes {
            let q: String = r.try_get("queue")?;
            if let Some(i) = index.get_mut(&q) {
                out[*i].completed_last_minute = r.try_get::<Option<i64>, _>("c")?.unwrap_or(0);
                out[*i].failed_last_minute = r.try_get::<Option<i64>, _>("f")?.unwrap_or(0);
            }
        }
        Ok(out)
    })
}

/// Finished jobs of one queue in one minute, from `queue_minutes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteCount {
    /// Queue.
    pub queue: String,
    /// Start of the minute, seconds since the epoch.
    pub minute: i64,
    /// Jobs completed in it.
    pub completed: i64,
    /// Jobs that failed for good in it.
    pub failed: i64,
}

/// Per-minute completed and failed counts since `since` (seconds, inclusive) of every queue
/// of the project (or one), oldest first; minutes without finished jobs have no row.
pub async fn minutes(
    ex: Exec<'_>,
    project: &ProjectId,
    only: Option<&QueueName>,
    since: i64,
) -> Result<Vec<MinuteCount>, sqlx::Error> {
    // Driven from `queues` so each queue's rows are one range of the primary key
    // (project_id, queue, minute): older minutes of busy queues are never read.
    on_db!(ex, c => {
        let rows = sqlx::query(
            "SELECT m.queue, m.minute, m.completed, m.failed FROM queues q JOIN queue_minutes m \
             ON m.project_id = q.project_id AND m.queue = q.name AND m.minute >= $2 \
             WHERE q.project_id = $1 AND ($3 IS NULL OR q.name = $3) ORDER BY m.queue, m.minute",
        )
        .bind(project.as_str()).bind(since).bind(only.map(|q| q.as_str()))
        .fetch_all(c).await?;
        rows.iter().map(|r| Ok(MinuteCount {
            queue: r.try_get("queue")?,
            minute: r.try_get("minute")?,
            completed: r.try_get("completed")?,
            failed: r.try_get("failed")?,
        })).collect()
    })
}

/// The statement behind [`oldest_available`], for one runner (`$3`): a skip scan over the
/// priorities present in the queue's `jobs_ready` entries, reading the first entry of each.
/// On PostgreSQL the text columns compare in the "C" collation of that index (migration
/// 0005), so no other index can be chosen for it.
pub fn oldest_available_sql(backend: Backend) -> String {
    let c = match backend {
        Backend::Postgres => " COLLATE \"C\"",
        Backend::Sqlite => "",
    };
    let ready = format!(
        "j.project_id{c} = $1 AND j.queue{c} = $2 AND j.runner{c} = $3 AND j.state = 'available'"
    );
    format!(
        "WITH RECURSIVE p(priority) AS (\
         SELECT (SELECT j.priority FROM jobs j WHERE {ready} ORDER BY j.priority LIMIT 1) \
         UNION ALL \
         SELECT (SELECT j.priority FROM jobs j WHERE {ready} AND j.priority > p.priority \
                 ORDER BY j.priority LIMIT 1) FROM p WHERE p.priority IS NOT NULL) \
         SELECT MIN((SELECT j.run_at FROM jobs j WHERE {ready} AND j.priority = p.priority \
                 ORDER BY j.run_at LIMIT 1)) AS oldest FROM p WHERE p.priority IS NOT NULL"
    )
}

/// Since when the longest-waiting available job of a queue has been runnable (its `run_at`),
/// or `None` when nothing waits.
///
/// A plain `min(run_at)` would read every available entry of the queue (100,000 entries on
/// a backed-up queue); `jobs_ready` is ordered by (runner, priority, run_at), so the oldest
/// job of each runner and priority is the first entry of its range: a few index probes per
/// priority in use.
pub async fn oldest_available(
    ex: Exec<'_>,
    project: &ProjectId,
    queue: &QueueName,
) -> Result<Option<Timestamp>, sqlx::Error> {
    let sql = oldest_available_sql(ex.backend());
    let mut oldest: Option<i64> = None;
    on_db!(ex, c => {
        for runner in [Runner::Pull, Runner::Push, Runner::Local] {
            let v: Option<i64> = sqlx::query(&sql)
                .bind(project.as_str()).bind(queue.as_str()).bind(runner.as_str())
                .fetch_one(&mut *c).await?
                .try_get("oldest")?;
            oldest = match (oldest, v) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    });
    Ok(oldest.map(time::from_db))
}

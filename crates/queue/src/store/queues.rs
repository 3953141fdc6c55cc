//! Queues: creation within the project's cap, settings, and which queues the runtime claims
//! from.

use super::*;
use sqlx::Row;
use switchboard_core::db::{Backend, Db, Exec, Tx};
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use switchboard_core::time;

/// The head of the statement creating queues with default settings.
const ENSURE_QUEUE: &str =
    "INSERT INTO queues (project_id, name, concurrency, paused, keep_completed_secs, \
    keep_failed_secs, keep_cancelled_secs, created_at)";

/// Creates the queue with default settings if it does not exist.
pub async fn ensure_queue(
    ex: Exec<'_>,
    project: &ProjectId,
    queue: &QueueName,
) -> Result<(), sqlx::Error> {
    let d = QueueSettings::default();
    let sql =
        format!("{ENSURE_QUEUE} VALUES ($1, $2, $3, FALSE, $4, $5, $6, $7) ON CONFLICT DO NOTHING");
    on_db!(ex, c => sqlx::query(&sql)
    .bind(project.as_str()).bind(queue.as_str()).bind(d.concurrency)
    .bind(d.keep_completed_secs).bind(d.keep_failed_secs).bind(d.keep_cancelled_secs)
    .bind(time::to_db(time::now()))
    .execute(c).await.map(|_| ()))
}

/// Makes concurrent creators of one project's queues or schedules take turns, so a
/// per-project cap counted in one transaction still holds when the other commits: on
/// PostgreSQL a lock on the project's row (`FOR NO KEY UPDATE`, which the foreign-key checks
/// of inserts referring to the project do not wait for); SQLite's writer transactions
/// already run one at a time. Held until the transaction ends.
pub async fn lock_project(tx: &mut Tx, project: &ProjectId) -> Result<(), sqlx::Error> {
    if let Exec::Postgres(c) = tx.ex() {
        sqlx::query("SELECT id FROM projects WHERE id = $1 FOR NO KEY UPDATE")
            .bind(project.as_str())
            .fetch_optional(&mut *c)
            .await?;
    }
    Ok(())
}

/// The names given as `$2`, a JSON array (one parameter whatever their number), as a set
/// of rows of one text column `value`.
fn names_in(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "json_array_elements_text(CAST($2 AS json)) AS n(value)",
        Backend::Sqlite => "json_each($2)",
    }
}

fn names_json(names: &[&str]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".to_owned())
}

/// The names of queues that exist among `names` (at most a batch's worth).
async fn existing_queues(
    ex: Exec<'_>,
    project: &ProjectId,
    names: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "SELECT name FROM queues WHERE project_id = $1 AND name IN (SELECT value FROM {})",
        names_in(ex.backend())
    );
    on_db!(ex, c => {
        let rows = sqlx::query(&sql).bind(project.as_str()).bind(names_json(names)).fetch_all(c).await?;
        rows.iter().map(|r| r.try_get("name")).collect()
    })
}

/// Creates those of `queues` the project does not have yet (with default settings), unless
/// it would then have more than `max` queues; returns the ones that existed already.
/// Checking costs one read when they all exist; creating takes [`lock_project`] and counts
/// the project's queues.
pub async fn create_queues(
    tx: &mut Tx,
    project: &ProjectId,
    queues: &[&QueueName],
    max: u32,
) -> Result<Vec<String>> {
    let mut names: Vec<&str> = queues.iter().map(|q| q.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let existing = existing_queues(tx.ex(), project, &names).await?;
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !existing.iter().any(|e| e == n))
        .collect();
    if missing.is_empty() {
        return Ok(existing);
    }
    lock_project(tx, project).await?;
    // Read again under the lock: a creator that held it before has committed by now.
    let sql = format!(
        "SELECT CAST(count(*) AS BIGINT) AS total, CAST(COALESCE(SUM(CASE WHEN name IN (SELECT value FROM {}) \
         THEN 1 ELSE 0 END), 0) AS BIGINT) AS present FROM queues WHERE project_id = $1",
        names_in(tx.backend())
    );
    let missing_json = names_json(&missing);
    let (total, present): (i64, i64) = on_db!(tx.ex(), c => {
        let r = sqlx::query(&sql).bind(project.as_str()).bind(&missing_json).fetch_one(c).await?;
        (r.try_get("total")?, r.try_get("present")?)
    });
    let new = missing.len().saturating_sub(present.max(0) as usize);
    if total.saturating_add(new as i64) > i64::from(max) {
        return Err(QueueError::QueueLimit {
            limit: max,
            existing: total,
            new,
        });
    }
    let d = QueueSettings::default();
    // (`WHERE true`: SQLite's parser needs it to tell the upsert from a join condition.)
    let sql = format!(
        "{ENSURE_QUEUE} SELECT $1, value, $3, FALSE, $4, $5, $6, $7 FROM {} WHERE true ON CONFLICT DO NOTHING",
        names_in(tx.backend())
    );
    on_db!(tx.ex(), c => sqlx::query(&sql)
        .bind(project.as_str()).bind(&missing_json)
        .bind(d.concurrency).bind(d.keep_completed_secs).bind(d.keep_failed_secs)
        .bind(d.keep_cancelled_secs).bind(time::to_db(time::now()))
        .execute(c).await.map(|_| ()))?;
    Ok(existing)
}

pub(super) const QUEUE_COLUMNS: &str =
    "name, concurrency, global_concurrency, rate_limit, rate_period_ms, paused, \
    keep_completed_secs, keep_failed_secs, keep_cancelled_secs";

/// A queue's settings, if it exists.
pub async fn queue_settings(
    ex: Exec<'_>,
    project: &ProjectId,
    queue: &QueueName,
) -> Result<Option<QueueSettings>, sqlx::Error> {
    let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE project_id = $1 AND name = $2");
    on_db!(ex, c => {
        let row = sqlx::query(&sql).bind(project.as_str()).bind(queue.as_str()).fetch_optional(c).await?;
        row.map(|r| Ok(settings_from_row!(&r))).transpose()
    })
}

/// A queue's settings, if it exists, and how many of its jobs are running under the
/// `worker` name: one statement, so a pull claim costs no extra round trip for its
/// per-worker limit. (The count walks the queue's running jobs: `jobs_running` on
/// PostgreSQL, `jobs_queue_state` on SQLite.)
pub(super) async fn settings_and_held(
    ex: Exec<'_>,
    project: &ProjectId,
    queue: &QueueName,
    worker: &str,
) -> Result<Option<(QueueSettings, i64)>, sqlx::Error> {
    let sql = format!(
        "SELECT {QUEUE_COLUMNS}, (SELECT CAST(count(*) AS BIGINT) FROM jobs WHERE project_id = $1 AND queue = $2 \
         AND state = 'running' AND worker = $3) AS held FROM queues WHERE project_id = $1 AND name = $2"
    );
    on_db!(ex, c => {
        let row = sqlx::query(&sql).bind(project.as_str()).bind(queue.as_str()).bind(worker)
            .fetch_optional(c).await?;
        row.map(|r| Ok((settings_from_row!(&r), r.try_get("held")?))).transpose()
    })
}

/// A queue's settings, if it exists, with its row locked until the transaction ends
/// (`FOR UPDATE` on PostgreSQL; SQLite's writer transactions run one at a time anyway): for
/// changes that read the settings and write them back, so that two at once cannot undo one
/// another under READ COMMITTED.
pub async fn lock_settings(
    tx: &mut Tx,
    project: &ProjectId,
    queue: &QueueName,
) -> Result<Option<QueueSettings>, sqlx::Error> {
    let lock = match tx.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql =
        format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE project_id = $1 AND name = $2{lock}");
    on_db!(tx.ex(), c => {
        let row = sqlx::query(&sql).bind(project.as_str()).bind(queue.as_str()).fetch_optional(c).await?;
        row.map(|r| Ok(settings_from_row!(&r))).transpose()
    })
}

/// Writes a queue's settings (creating it if needed).
pub async fn save_settings(
    tx: &mut Tx,
    project: &ProjectId,
    queue: &QueueName,
    s: &QueueSettings,
) -> Result<(), sqlx::Error> {
    ensure_queue(tx.ex(), project, queue).await?;
    on_db!(tx.ex(), c => sqlx::query(
        "UPDATE queues SET concurrency = $3, global_concurrency = $4, rate_limit = $5, rate_period_ms = $6, paused = $7, \
         keep_completed_secs = $8, keep_failed_secs = $9, keep_cancelled_secs = $10, \
         rate_tokens = CASE WHEN $5 IS NULL THEN NULL ELSE rate_tokens END WHERE project_id = $1 AND name = $2",
    )
    .bind(project.as_str()).bind(queue.as_str()).bind(s.concurrency).bind(s.global_concurrency)
    .bind(s.rate_limit.map(|r| r.limit)).bind(s.rate_limit.map(|r| r.period_ms)).bind(s.paused)
    .bind(s.keep_completed_secs).bind(s.keep_failed_secs).bind(s.keep_cancelled_secs)
    .execute(c).await.map(|_| ()))
}

/// An unpaused queue with available jobs for the runtime, as it sees it.
#[derive(Clone, Debug)]
pub struct Runnable {
    /// Project id.
    pub project: String,
    /// Queue name.
    pub queue: String,
    /// Per-node concurrency.
    pub concurrency: i32,
    /// Completed jobs are deleted on completion.
    pub remove_completed: bool,
    /// Has a cluster-wide concurrency cap or a rate limit (claims must take the queue lock).
    pub limited: bool,
    /// Its turn in the read that found it: 0 for each project's first queue, 1 for each
    /// project's second, and so on (see [`runnable_queues`]).
    pub turn: i64,
}

/// Where the next read of [`runnable_queues`] starts, so that reads cut short by their
/// limit reach every queue in turn.
#[derive(Clone, Debug, Default)]
pub struct Rotation {
    /// Shifts each project's queues (in name order, cyclically) before turns are numbered.
    pub shift: i64,
    /// Within a turn, projects after this one come first.
    pub after_project: String,
}

impl Rotation {
    /// The next read starts where `read` (a read of at most `limit` queues) stopped: the
    /// queues of its last turn that did not fit become the first turn, the projects after
    /// the last one read first.
    pub fn advance(&mut self, read: &[Runnable], limit: i64) {
        if (read.len() as i64) < limit {
            return;
        }
        if let Some(last) = read.last() {
            self.shift = self.shift.wrapping_add(last.turn).rem_euclid(1 << 40);
            self.after_project = last.project.clone();
        }
    }
}

/// Unpaused queues with available jobs for the runtime (push, and local kinds) by the
/// counters, across projects, at most `limit`, taking turns: each project's first queue,
/// then each project's second, and so on, so a project with thousands of queues cannot
/// crowd out one with a single queue; `rotation` moves the cut when not all of them fit.
pub async fn runnable_queues(
    ex: Exec<'_>,
    rotation: &Rotation,
    limit: i64,
) -> Result<Vec<Runnable>, sqlx::Error> {
    // From the maintained counters alone: probing the job table here (as a correlated
    // EXISTS, PostgreSQL hashed it into a scan of every available job; as one probe per
    // queue, it walked the same index entries the claim walks next). Available jobs for
    // pull workers are counted apart (`available:pull`), so queues holding only those are
    // not read at all. A queue whose available jobs are local jobs of kinds this node has
    // no handler for costs one claim that finds nothing.
    on_db!(ex, c => {
        let rows = sqlx::query(
            "SELECT project_id, name, concurrency, keep_completed_secs, limited, turn FROM (\
               SELECT q.project_id, q.name, q.concurrency, q.keep_completed_secs, \
               (q.global_concurrency IS NOT NULL OR q.rate_limit IS NOT NULL) AS limited, \
               (row_number() OVER (PARTITION BY q.project_id ORDER BY q.name) - 1 + $1) \
                 % count(*) OVER (PARTITION BY q.project_id) AS turn \
               FROM queues q JOIN \
               (SELECT project_id, queue FROM queue_counts WHERE state = 'available' \
                GROUP BY project_id, queue HAVING SUM(n) > 0) n \
               ON q.project_id = n.project_id AND q.name = n.queue \
               WHERE q.paused = FALSE) r \
             ORDER BY turn, CASE WHEN project_id > $2 THEN 0 ELSE 1 END, project_id, name LIMIT $3",
        )
        .bind(rotation.shift).bind(&rotation.after_project).bind(limit)
        .fetch_all(c).await?;
        rows.iter().map(|r| Ok(Runnable {
            project: r.try_get("project_id")?,
            queue: r.try_get("name")?,
            concurrency: r.try_get("concurrency")?,
            remove_completed: r.try_get::<i64, _>("keep_completed_secs")? == 0,
            limited: r.try_get("limited")?,
            turn: r.try_get("turn")?,
        })).collect()
    })
}

/// The project's push-signing secret, created on first use (insert if absent, then read:
/// every node gets the same one).
pub async fn push_secret(db: &Db, project: &ProjectId) -> Result<String, sqlx::Error> {
    let name = format!("push_secret/{project}");
    let mut tx = db.begin().await?;
    let value: String = on_db!(tx.ex(), c => {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&name).bind(crate::push::new_secret()).execute(&mut *c).await?;
        sqlx::query("SELECT value FROM settings WHERE name = $1").bind(&name).fetch_one(&mut *c).await?.try_get("value")?
    });
    tx.commit().await?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runnable(project: &str, queue: &str, turn: i64) -> Runnable {
        Runnable {
            project: project.into(),
            queue: queue.into(),
            concurrency: 1,
            remove_completed: false,
            limited: false,
            turn,
        }
    }

    /// A read cut short by its limit moves the next one on: the last turn it reached
    /// becomes the first, and the projects after the last one read come first in it. A read
    /// that got everything leaves the rotation alone.
    #[test]
    fn rotation_starts_where_a_cut_read_stopped() {
        let mut r = Rotation::default();
        let read = [
            runnable("proj_a", "q1", 0),
            runnable("proj_b", "x", 0),
            runnable("proj_a", "q2", 1),
        ];
        r.advance(&read, 4);
        assert_eq!((r.shift, r.after_project.as_str()), (0, ""));
        r.advance(&read, 3);
        assert_eq!((r.shift, r.after_project.as_str()), (1, "proj_a"));
        // More projects than fit in one read: the turn stays, the projects move on.
        r.advance(&[runnable("proj_c", "y", 0), runnable("proj_d", "z", 0)], 2);
        assert_eq!((r.shift, r.after_project.as_str()), (1, "proj_d"));
    }
}

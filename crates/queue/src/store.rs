//! All SQL of the queue engine. Portable SQL except the claim path, which uses
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL and relies on the single writer on SQLite.
//!
//! Every state change also adjusts `queue_counts` in the same transaction, so counts per
//! state come from maintained counters, never from `count(*)` over `jobs`.

use crate::backoff::Backoff;
use crate::model::*;
use crate::wake::CHANNEL;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use switchboard_core::db::{Backend, Db, Exec, Tx};
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No such job (or queue, or schedule) in this project.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The lease token is not the job's current one: another worker holds it now, or the
    /// lease expired and the job was handed out again.
    #[error("the lease token is stale: this job was re-leased or is no longer running")]
    StaleLease,
    /// The job was cancelled while running.
    #[error("the job was cancelled")]
    Cancelled,
    /// The operation does not apply to the job's state.
    #[error("{0}")]
    WrongState(String),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Creating the queue(s) would give the project more queues than it may have.
    #[error(
        "this project already has {existing} queues and may have at most {limit} \
         (SWITCHBOARD_MAX_QUEUES_PER_PROJECT); this would create {new} more: use existing queues"
    )]
    QueueLimit {
        /// The cap.
        limit: u32,
        /// The project's queues now.
        existing: i64,
        /// Queues the request would have created.
        new: usize,
    },
    /// The project may not have another schedule of this kind (the message says which cap).
    #[error("{0}")]
    ScheduleLimit(String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Store result.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

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

/// Prometheus labels of a queue, within the node's label budget (see [`crate::labels`]).
pub fn labels(project: &str, queue: &str) -> [(&'static str, String); 2] {
    crate::labels::labels(project, queue)
}

/// The counter of available jobs for pull workers. They are counted apart from the other
/// available jobs so the runtime, which never runs them, can tell the queues with work for
/// it without reading jobs (see [`runnable_queues`]); whoever shows counts adds them back
/// into `available` (see [`counted_state`]).
pub const AVAILABLE_PULL: &str = "available:pull";

/// The `queue_counts` row a job in `state` run by `runner` is counted in.
pub fn counter(state: JobState, runner: Runner) -> &'static str {
    match (state, runner) {
        (JobState::Available, Runner::Pull) => AVAILABLE_PULL,
        _ => state.as_str(),
    }
}

/// The job state a `queue_counts` row counts (its `state` column).
pub fn counted_state(counter: &str) -> Option<JobState> {
    match counter {
        AVAILABLE_PULL => Some(JobState::Available),
        other => JobState::parse(other),
    }
}

/// Counter changes of one transaction, folded per (project, queue, counter).
#[derive(Default)]
pub struct Deltas(BTreeMap<(String, String, &'static str), i64>);

impl Deltas {
    /// Adds `n` jobs to `state`, which must not be `available` (whose counter depends on
    /// the runner: see [`Deltas::add_job`]).
    pub fn add(&mut self, project: &str, queue: &str, state: JobState, n: i64) {
        debug_assert!(
            state != JobState::Available,
            "available counts need the runner"
        );
        self.add_counter(project, queue, state.as_str(), n);
    }

    /// Adds `n` jobs run by `runner` to `state`.
    pub fn add_job(&mut self, project: &str, queue: &str, state: JobState, runner: Runner, n: i64) {
        self.add_counter(project, queue, counter(state, runner), n);
    }

    fn add_counter(&mut self, project: &str, queue: &str, counter: &'static str, n: i64) {
        *self
            .0
            .entry((project.to_owned(), queue.to_owned(), counter))
            .or_default() += n;
    }

    /// Writes the changes.
    pub async fn apply(self, ex: Exec<'_>) -> Result<(), sqlx::Error> {
        let rows: Vec<_> = self.0.into_iter().filter(|(_, n)| *n != 0).collect();
        if rows.is_empty() {
            return Ok(());
        }
        // Each PostgreSQL connection writes its own shard of the counters, so concurrent
        // transactions of one queue don't wait on one row's lock until the other commits.
        let shard = match ex.backend() {
            Backend::Postgres => format!(", {PG_SHARD}"),
            Backend::Sqlite => ", 0".to_owned(),
        };
        on_db!(ex, c => {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO queue_counts (project_id, queue, state, shard, n) ");
            q.push_values(&rows, |mut b, ((p, queue, s), n)| {
                b.push_bind(p).push_bind(queue).push_bind(*s).push_unseparated(&shard).push_bind(*n);
            });
            q.push(" ").push(COUNTS_UPSERT);
            q.build().execute(&mut *c).await.map(|_| ())
        })
    }
}

/// Records finished jobs in the per-minute throughput table.
async fn bump_minute(
    ex: Exec<'_>,
    project: &str,
    queue: &str,
    now: Timestamp,
    completed: i64,
    failed: i64,
) -> Result<(), sqlx::Error> {
    let minute = now.as_second().div_euclid(60) * 60;
    on_db!(ex, c => sqlx::query(
        "INSERT INTO queue_minutes (project_id, queue, minute, completed, failed) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (project_id, queue, minute) DO UPDATE SET completed = queue_minutes.completed + excluded.completed, \
         failed = queue_minutes.failed + excluded.failed",
    )
    .bind(project).bind(queue).bind(minute).bind(completed).bind(failed)
    .execute(c).await.map(|_| ()))
}

/// The head of the statement creating queues with default settings.
const ENSURE_QUEUE: &str =
    "INSERT INTO queues (project_id, name, concurrency, paused, keep_completed_secs, \
    keep_failed_secs, keep_cancelled_secs, created_at)";

/// This PostgreSQL connection's shard of the queue counters.
const PG_SHARD: &str = pg_shard!();

/// [`PG_SHARD`] as a literal, for statements put together with `concat!`.
macro_rules! pg_shard {
    () => {
        "CAST(pg_backend_pid() % 64 AS SMALLINT)"
    };
}
use pg_shard;

/// Adds to a counter row that exists already.
const COUNTS_UPSERT: &str = counts_upsert!();

/// [`COUNTS_UPSERT`] as a literal, for statements put together with `concat!`.
macro_rules! counts_upsert {
    () => {
        "ON CONFLICT (project_id, queue, state, shard) DO UPDATE SET n = queue_counts.n + excluded.n"
    };
}
use counts_upsert;

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

/// The outcome of one enqueue.
#[derive(Clone, Debug)]
pub struct Enqueued {
    /// The job (the existing one for a duplicate unique key).
    pub job: Job,
    /// False when a live job with the same unique key was returned instead.
    pub created: bool,
}

fn new_job_record(j: &NewJob, now: Timestamp) -> Job {
    let state = if j.run_at > now {
        JobState::Scheduled
    } else {
        JobState::Available
    };
    Job {
        id: JobId::generate(),
        queue: j.queue.clone(),
        kind: j.kind.clone(),
        payload: j.payload.clone(),
        state,
        priority: j.priority,
        run_at: j.run_at,
        attempt: 0,
        max_attempts: j.max_attempts,
        backoff: j.backoff.clone(),
        timeout_ms: j.timeout_ms,
        unique_key: j.unique.as_ref().map(|(k, _)| k.clone()),
        tags: j.tags.clone(),
        progress: None,
        result: None,
        last_error: None,
        target: j.target.clone(),
        runner: j.runner,
        worker: None,
        lease_expires_at: None,
        created_at: now,
        started_at: None,
        finished_at: None,
    }
}

/// Inserts jobs inside `tx` (up to 10,000; all or none). Jobs whose unique key is still held
/// by another job come back as that job with `created: false`.
pub async fn enqueue(tx: &mut Tx, project: &ProjectId, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
    let (out, notices) = enqueue_on(tx.ex(), project, jobs).await?;
    for n in notices {
        tx.notify_after_commit(CHANNEL, n);
    }
    Ok(out)
}

/// Enqueues and commits. On PostgreSQL, jobs without unique keys go in as one statement
/// committing on its own (one round trip, where a transaction costs three); otherwise as
/// [`enqueue`] in a transaction of their own.
pub async fn enqueue_now(db: &Db, project: &ProjectId, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
    if jobs.iter().all(|j| j.unique.is_none()) {
        if let Some(mut conn) = db.autocommit().await? {
            let (out, notices) = enqueue_on(conn.ex(), project, jobs).await?;
            switchboard_core::db::note_commit();
            db.notify(CHANNEL, notices);
            return Ok(out);
        }
    }
    let mut tx = db.begin().await?;
    let out = enqueue(&mut tx, project, jobs).await?;
    tx.commit().await?;
    Ok(out)
}

/// The statements of [`enqueue`] on `ex`; returns the jobs and the NOTIFY payloads to send
/// once they are committed.
async fn enqueue_on(
    mut ex: Exec<'_>,
    project: &ProjectId,
    jobs: &[NewJob],
) -> Result<(Vec<Enqueued>, Vec<String>)> {
    let now = time::now();
    let mut out: Vec<Enqueued> = Vec::with_capacity(jobs.len());
    let mut fresh: Vec<Job> = Vec::with_capacity(jobs.len());
    let mut queues: Vec<&QueueName> = Vec::new();
    for j in jobs {
        if !queues.contains(&&j.queue) {
            queues.push(&j.queue);
        }
    }
    let pg = ex.backend() == Backend::Postgres;
    // A unique key given twice in one call: the later job is the earlier one's answer. (In
    // the database the key already points at the earlier job, whose row is not inserted
    // yet, so the lookup below would find no job and create a second one.)
    let mut keyed: HashMap<&str, Job> = HashMap::new();
    for j in jobs {
        let rec = new_job_record(j, now);
        if let Some((key, _)) = &j.unique {
            if let Some(job) = keyed.get(key.as_str()) {
                out.push(Enqueued {
                    job: job.clone(),
                    created: false,
                });
                continue;
            }
        }
        if let Some((key, window)) = &j.unique {
            let expires = time::to_db(time::add_secs(now, *window));
            let holder: Option<String> = on_db!(ex.re(), c => {
                let row = sqlx::query(
                    "INSERT INTO job_uniques (project_id, unique_key, job_id, expires_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (project_id, unique_key) DO UPDATE SET job_id = excluded.job_id, expires_at = excluded.expires_at \
                     WHERE job_uniques.expires_at <= $5 RETURNING job_id",
                )
                .bind(project.as_str()).bind(key).bind(rec.id.as_str()).bind(expires).bind(time::to_db(now))
                .fetch_optional(&mut *c).await?;
                match row {
                    Some(_) => None,
                    None => Some(
                        sqlx::query("SELECT job_id FROM job_uniques WHERE project_id = $1 AND unique_key = $2")
                            .bind(project.as_str()).bind(key)
                            .fetch_one(&mut *c).await?.try_get("job_id")?,
                    ),
                }
            });
            if let Some(existing) = holder {
                if let Some(job) = get(ex.re(), project, &existing).await? {
                    keyed.insert(key, job.clone());
                    out.push(Enqueued {
                        job,
                        created: false,
                    });
                    continue;
                }
            }
            keyed.insert(key, rec.clone());
        }
        out.push(Enqueued {
            job: rec.clone(),
            created: true,
        });
        fresh.push(rec);
    }
    // On PostgreSQL the queues are created, the jobs inserted and the counters moved by one
    // statement (see [`PG_ENQUEUE`]).
    let mut deltas = Deltas::default();
    if pg && !fresh.is_empty() {
        insert_pg(ex.re(), project, &queues, &fresh, now).await?;
    } else {
        for q in &queues {
            ensure_queue(ex.re(), project, q).await?;
        }
        for chunk in fresh.chunks(500) {
            on_db!(ex.re(), c => {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO jobs (id, project_id, queue, kind, payload, state, priority, run_at, attempt, \
                     max_attempts, backoff, timeout_ms, unique_key, tags, target, runner, created_at) ",
                );
                q.push_values(chunk, |mut b, j| {
                    let r = JobRow::of(j);
                    b.push_bind(j.id.as_str())
                        .push_bind(project.as_str())
                        .push_bind(j.queue.as_str())
                        .push_bind(j.kind.as_str())
                        .push_bind(r.payload)
                        .push_bind(j.state.as_str())
                        .push_bind(j.priority.value())
                        .push_bind(time::to_db(j.run_at))
                        .push_bind(0i32)
                        .push_bind(j.max_attempts)
                        .push_bind(r.backoff)
                        .push_bind(j.timeout_ms)
                        .push_bind(j.unique_key.clone())
                        .push_bind(r.tags)
                        .push_bind(r.target)
                        .push_bind(j.runner.as_str())
                        .push_bind(time::to_db(j.created_at));
                });
                q.build().execute(&mut *c).await.map(|_| ())?
            });
            for j in chunk {
                deltas.add_job(project.as_str(), j.queue.as_str(), j.state, j.runner, 1);
            }
        }
    }
    deltas.apply(ex.re()).await?;
    for q in &queues {
        let n = fresh.iter().filter(|j| j.queue == **q).count();
        metrics::counter!(
            "queue_jobs_enqueued_total",
            &labels(project.as_str(), q.as_str())
        )
        .increment(n as u64);
    }
    if pg && !fresh.is_empty() {
        // Each queue's earliest new job in claim order rides the NOTIFY, so claimers that
        // read on from where they stopped know whether to start from the top again.
        let woken: Vec<(&QueueName, Option<ClaimKey>)> = queues
            .into_iter()
            .map(|q| {
                let first = fresh
                    .iter()
                    .filter(|j| j.queue == *q)
                    .map(ClaimKey::of)
                    .min();
                (q, first)
            })
            .collect();
        return Ok((out, notices(project, woken.into_iter())));
    }
    Ok((out, Vec::new()))
}

/// The serialised columns of a new job.
struct JobRow {
    payload: String,
    backoff: String,
    tags: String,
    target: Option<String>,
}

impl JobRow {
    fn of(j: &Job) -> JobRow {
        JobRow {
            payload: j.payload.to_string(),
            backoff: serde_json::to_string(&j.backoff).unwrap_or_default(),
            tags: tags_to_db(&j.tags),
            target: j
                .target
                .as_ref()
                .map(|t| serde_json::to_string(t).unwrap_or_default()),
        }
    }
}

/// PostgreSQL's enqueue: queues created, jobs inserted and counters moved (available jobs
/// for pull workers under [`AVAILABLE_PULL`]) by one statement whose text never changes (one prepared statement for any batch size; each column is one
/// array parameter). A `VALUES` list of bind parameters (17 per job) had to be parsed and
/// planned anew for every batch size and cost most of the bulk enqueue's time.
const PG_ENQUEUE: &str = concat!(
    "WITH ensured AS (\
    INSERT INTO queues (project_id, name, concurrency, paused, keep_completed_secs, keep_failed_secs, \
    keep_cancelled_secs, created_at) SELECT $1, q, $2, FALSE, $3, $4, $5, $6 FROM unnest($7::text[]) AS q \
    ON CONFLICT DO NOTHING), \
    added AS (INSERT INTO jobs (id, project_id, queue, kind, payload, state, priority, run_at, attempt, \
    max_attempts, backoff, timeout_ms, unique_key, tags, target, runner, created_at) \
    SELECT id, $1, queue, kind, payload, state, priority, run_at, 0, max_attempts, backoff, timeout_ms, \
    unique_key, tags, target, runner, $6 FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], \
    $12::text[], $13::int4[], $14::int8[], $15::int4[], $16::text[], $17::int8[], $18::text[], $19::text[], \
    $20::text[], $21::text[]) AS t(id, queue, kind, payload, state, priority, run_at, max_attempts, backoff, \
    timeout_ms, unique_key, tags, target, runner) \
    RETURNING queue, CASE WHEN state = 'available' AND runner = 'pull' THEN 'available:pull' ELSE state END AS counter) \
    INSERT INTO queue_counts (project_id, queue, state, shard, n) \
    SELECT $1, queue, counter, ",
    pg_shard!(),
    ", count(*) FROM added GROUP BY queue, counter ",
    counts_upsert!()
);

/// Runs [`PG_ENQUEUE`] for `jobs` (all created at `now`).
async fn insert_pg(
    ex: Exec<'_>,
    project: &ProjectId,
    queues: &[&QueueName],
    jobs: &[Job],
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let Exec::Postgres(c) = ex else {
        return Ok(());
    };
    let d = QueueSettings::default();
    let rows: Vec<JobRow> = jobs.iter().map(JobRow::of).collect();
    fn col<'a, T>(jobs: &'a [Job], f: impl Fn(&'a Job) -> T) -> Vec<T> {
        jobs.iter().map(f).collect()
    }
    let ids = col(jobs, |j| j.id.as_str());
    let queue_col = col(jobs, |j| j.queue.as_str());
    let kinds = col(jobs, |j| j.kind.as_str());
    let states = col(jobs, |j| j.state.as_str());
    let priorities = col(jobs, |j| j.priority.value());
    let run_at = col(jobs, |j| time::to_db(j.run_at));
    let max_attempts = col(jobs, |j| j.max_attempts);
    let timeouts = col(jobs, |j| j.timeout_ms);
    let unique_keys = col(jobs, |j| j.unique_key.as_deref());
    let runners = col(jobs, |j| j.runner.as_str());
    let payloads: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
    let backoffs: Vec<&str> = rows.iter().map(|r| r.backoff.as_str()).collect();
    let tags: Vec<&str> = rows.iter().map(|r| r.tags.as_str()).collect();
    let targets: Vec<Option<&str>> = rows.iter().map(|r| r.target.as_deref()).collect();
    let names: Vec<&str> = queues.iter().map(|q| q.as_str()).collect();
    sqlx::query(PG_ENQUEUE)
        .bind(project.as_str())
        .bind(d.concurrency)
        .bind(d.keep_completed_secs)
        .bind(d.keep_failed_secs)
        .bind(d.keep_cancelled_secs)
        .bind(time::to_db(now))
        .bind(&names)
        .bind(&ids)
        .bind(&queue_col)
        .bind(&kinds)
        .bind(&payloads)
        .bind(&states)
        .bind(&priorities)
        .bind(&run_at)
        .bind(&max_attempts)
        .bind(&backoffs)
        .bind(&timeouts)
        .bind(&unique_keys)
        .bind(&tags)
        .bind(&targets)
        .bind(&runners)
        .execute(&mut *c)
        .await
        .map(|_| ())
}

/// One NOTIFY per queue, sent once the transaction has committed: `project/queue`, plus
/// `/priority/run_at/id` of the earliest job made available when that is known (without it,
/// claimers start again from the top of the queue).
fn notices<'a>(
    project: &ProjectId,
    queues: impl Iterator<Item = (&'a QueueName, Option<ClaimKey>)>,
) -> Vec<String> {
    queues
        .map(|(q, first)| match first {
            Some(k) => format!("{project}/{q}/{}/{}/{}", k.priority, k.run_at, k.id),
            None => format!("{project}/{q}"),
        })
        .collect()
}

/// One job of the project.
pub async fn get(ex: Exec<'_>, project: &ProjectId, id: &str) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE project_id = $1 AND id = $2");
    on_db!(ex, c => {
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id).fetch_optional(c).await?;
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

/// A job's place in claim order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimKey {
    /// Priority (smaller runs first).
    pub priority: i32,
    /// When it became runnable, µs.
    pub run_at: i64,
    /// Job id.
    pub id: String,
}

impl ClaimKey {
    /// The key of a job.
    pub fn of(job: &Job) -> ClaimKey {
        ClaimKey {
            priority: job.priority.value(),
            run_at: time::to_db(job.run_at),
            id: job.id.to_string(),
        }
    }
}

/// Where a runtime's next claims of a queue start reading, per runner (inclusive).
///
/// On PostgreSQL the ready-index entries before that point are mostly dead versions of jobs
/// already claimed, which every claim from the top would step over again until vacuum
/// removes them (100,000 of them cost 3–5 ms per claim); reading on from the hint skips
/// them. A wake-up naming an earlier job moves the hint back to that job; one naming none
/// drops it (the next claim starts from the top), and the runtime drops it on its own
/// schedule too (see its `HINTS_AT_MOST`).
#[derive(Clone, Debug, Default)]
pub struct Hints {
    /// Local (in-process) jobs.
    pub local: Option<ClaimKey>,
    /// HTTP push jobs.
    pub push: Option<ClaimKey>,
}

impl Hints {
    /// Claims read on from the last job claimed of each runner.
    pub fn advance(&mut self, claimed: &[ClaimedJob]) {
        for c in claimed {
            let key = Some(ClaimKey::of(&c.job));
            let slot = match c.job.runner {
                Runner::Local => &mut self.local,
                _ => &mut self.push,
            };
            if key > *slot {
                *slot = key;
            }
        }
    }

    /// A job at `first` (or somewhere unknown: `None`) became available; claims of every
    /// runner must read from there again. Returns whether a hint moved.
    pub fn rewind(&mut self, first: Option<&ClaimKey>) -> bool {
        let mut moved = false;
        for slot in [&mut self.local, &mut self.push] {
            match (first, slot.as_ref()) {
                (_, None) => {}
                (None, Some(_)) => {
                    *slot = None;
                    moved = true;
                }
                (Some(k), Some(h)) if k < h => {
                    *slot = Some(k.clone());
                    moved = true;
                }
                _ => {}
            }
        }
        moved
    }
}

/// Which jobs a claimer takes.
#[derive(Clone, Copy, Debug)]
pub enum ClaimFor<'a> {
    /// External pull workers.
    Pull,
    /// This node's runtime: push jobs, and local jobs of these kinds, each runner read on
    /// from its hint if there is one.
    Runtime(&'a [String], &'a Hints),
}

/// A claim: up to `max` available jobs of a queue for `who`, leased to `worker` for
/// `lease_ms` each.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    /// The queue's project.
    pub project: &'a ProjectId,
    /// The queue.
    pub queue: &'a QueueName,
    /// Which jobs.
    pub who: ClaimFor<'a>,
    /// Recorded on each job as its worker.
    pub worker: &'a str,
    /// At most this many jobs.
    pub max: i64,
    /// Lease length.
    pub lease_ms: i64,
}

/// Claims jobs in priority order within the queue's pause, global concurrency and rate
/// limit, and for pull workers within `concurrency` per worker name: a pull claim takes at
/// most `concurrency` minus the jobs of the queue already running under its `worker` name.
/// (The runtime keeps its own per-node slots.)
pub async fn claim(tx: &mut Tx, c: &Claim<'_>) -> Result<Vec<ClaimedJob>> {
    let Claim {
        project,
        queue,
        max,
        ..
    } = *c;
    let now = time::now();
    let read = match c.who {
        ClaimFor::Pull => settings_and_held(tx.ex(), project, queue, c.worker).await?,
        ClaimFor::Runtime(..) => queue_settings(tx.ex(), project, queue)
            .await?
            .map(|s| (s, 0)),
    };
    let Some((settings, held)) = read else {
        return Ok(Vec::new());
    };
    if settings.paused || max <= 0 {
        return Ok(Vec::new());
    }
    let mut n = match c.who {
        ClaimFor::Pull => max.min(i64::from(settings.concurrency) - held),
        ClaimFor::Runtime(..) => max,
    };
    let limited = settings.global_concurrency.is_some() || settings.rate_limit.is_some();
    let mut bucket: Option<(f64, i64)> = None;
    if limited {
        // Lock the queue row: claimers of a limited queue take turns so the caps hold exactly.
        let (_, tokens, updated) = lock_queue(tx, project, queue).await?;
        if let Some(cap) = settings.global_concurrency {
            let running = count_state(tx.ex(), project, queue, JobState::Running).await?;
            n = n.min(i64::from(cap) - running);
        }
        if let Some(rl) = settings.rate_limit {
            let per_ms = f64::from(rl.limit) / rl.period_ms.max(1) as f64;
            let elapsed_ms =
                (time::to_db(now) - updated.unwrap_or(time::to_db(now))) as f64 / 1000.0;
            let available = (tokens.unwrap_or(f64::from(rl.limit)) + elapsed_ms.max(0.0) * per_ms)
                .min(f64::from(rl.limit));
            n = n.min(available.floor() as i64);
            bucket = Some((available, time::to_db(now)));
        }
    }
    if n <= 0 {
        return Ok(Vec::new());
    }
    let claimed = claim_rows(tx.ex(), &Claim { max: n, ..*c }).await?;
    let k = claimed.len() as i64;
    if let Some((tokens, at)) = bucket {
        on_db!(tx.ex(), c => sqlx::query("UPDATE queues SET rate_tokens = $3, rate_updated_at = $4 WHERE project_id = $1 AND name = $2")
            .bind(project.as_str()).bind(queue.as_str()).bind(tokens - k as f64).bind(at)
            .execute(c).await.map(|_| ()))?;
    }
    Ok(claimed)
}

/// Claims and commits. A queue the caller knows to be unpaused and free of global
/// concurrency caps and rate limits (`unlimited`; the runtime learns it from
/// [`runnable_queues`]) needs no settings read and no queue lock, so on PostgreSQL the claim
/// is one statement committing on its own (one round trip where a transaction costs four);
/// on SQLite or behind a transaction pooler, the claim statements in a transaction of their
/// own. A pause or limit set at that instant applies from the next claim. Otherwise [`claim`]
/// in a transaction of its own.
pub async fn claim_now(db: &Db, c: &Claim<'_>, unlimited: bool) -> Result<Vec<ClaimedJob>> {
    if unlimited {
        if let Some(mut conn) = db.autocommit().await? {
            let claimed = claim_rows(conn.ex(), c).await?;
            switchboard_core::db::note_commit();
            return Ok(claimed);
        }
    }
    let mut tx = db.begin().await?;
    let claimed = if unlimited {
        claim_rows(tx.ex(), c).await?
    } else {
        claim(&mut tx, c).await?
    };
    tx.commit().await?;
    Ok(claimed)
}

/// The claim statements alone: no pause, cap or rate-limit checks.
async fn claim_rows(mut ex: Exec<'_>, c: &Claim<'_>) -> Result<Vec<ClaimedJob>> {
    let Claim {
        project,
        queue,
        who,
        worker,
        max: n,
        lease_ms,
    } = *c;
    let now = time::now();
    let backend = ex.backend();
    let token_base = switchboard_core::secret::random_token("");
    let lease_until = time::to_db(now) + lease_ms * 1000;
    // One index walk per runner, each in priority order. PostgreSQL takes them in one
    // statement (merged in priority order); SQLite, in process, one statement each.
    let branches: Vec<Branch<'_>> = match who {
        ClaimFor::Pull => vec![("pull", &[], None)],
        ClaimFor::Runtime([], h) => vec![("push", &[], h.push.as_ref())],
        ClaimFor::Runtime(kinds, h) => vec![
            ("local", kinds, h.local.as_ref()),
            ("push", &[], h.push.as_ref()),
        ],
    };
    // Pull workers' available jobs are counted apart from the runtime's (push and local).
    let runner = match who {
        ClaimFor::Pull => Runner::Pull,
        ClaimFor::Runtime(..) => Runner::Push,
    };
    let statements: Vec<&[Branch<'_>]> = match backend {
        Backend::Postgres => vec![&branches[..]],
        Backend::Sqlite => branches.chunks(1).collect(),
    };
    let mut claimed: Vec<ClaimedJob> = Vec::new();
    for branches in statements {
        let want = n - claimed.len() as i64;
        if want <= 0 {
            break;
        }
        let shape: Vec<(usize, bool)> = branches
            .iter()
            .map(|(_, kinds, after)| (kinds.len(), after.is_some()))
            .collect();
        let sql = claim_sql(backend, &shape, counter(JobState::Available, runner));
        let got: Vec<ClaimedJob> = on_db!(ex.re(), c => {
            let mut q = sqlx::query(&sql)
                .bind(project.as_str())
                .bind(queue.as_str())
                .bind(want)
                .bind(&token_base)
                .bind(lease_until)
                .bind(worker)
                .bind(time::to_db(now));
            for (runner, kinds, after) in branches {
                q = q.bind(*runner);
                for k in kinds.iter() {
                    q = q.bind(k);
                }
                if let Some(a) = after {
                    q = q.bind(a.priority).bind(a.run_at).bind(&a.id);
                }
            }
            let rows = q.fetch_all(&mut *c).await?;
            if backend == Backend::Sqlite {
                let picked: Option<String> = rows.first().map(|r| r.try_get("jobs")).transpose()?;
                let lease = Lease { token_base: &token_base, until: lease_until, worker, now };
                let (rowids, jobs) = sqlite_picked(picked.as_deref().unwrap_or("[]"), &lease)?;
                // The writer's transaction holds the write lock from its start (`BEGIN
                // IMMEDIATE`), so the rows read above are still available.
                sqlx::query(SQLITE_LEASE)
                    .bind(&token_base).bind(lease_until).bind(worker).bind(time::to_db(now))
                    .bind(serde_json::to_string(&rowids).unwrap_or_default())
                    .execute(&mut *c).await?;
                jobs
            } else {
                rows.iter().map(|r| Ok::<_, sqlx::Error>(ClaimedJob {
                    job: job_from_row!(r),
                    lease_token: r.try_get("lease_token")?,
                })).collect::<Result<Vec<_>, _>>()?
            }
        });
        claimed.extend(got);
    }
    if claimed.is_empty() {
        return Ok(claimed);
    }
    // RETURNING gives no order guarantee: hand jobs out in priority order.
    let waits = metrics::histogram!(
        "queue_enqueue_to_start_seconds",
        &labels(project.as_str(), queue.as_str())
    );
    for c in &claimed {
        waits.record((time::to_db(now) - time::to_db(c.job.run_at)).max(0) as f64 / 1e6);
    }
    claimed.sort_by(|a, b| {
        (a.job.priority, a.job.run_at, a.job.id.as_str()).cmp(&(
            b.job.priority,
            b.job.run_at,
            b.job.id.as_str(),
        ))
    });
    if backend == Backend::Sqlite {
        // (PostgreSQL moved them in the claim statement.)
        let k = claimed.len() as i64;
        let mut d = Deltas::default();
        d.add_job(
            project.as_str(),
            queue.as_str(),
            JobState::Available,
            runner,
            -k,
        );
        d.add(project.as_str(), queue.as_str(), JobState::Running, k);
        d.apply(ex.re()).await?;
    }
    Ok(claimed)
}

/// One runner's walk of the ready index in a claim: the runner, the local kinds it takes
/// (none: any), and where to start reading (a hint).
type Branch<'a> = (&'a str, &'a [String], Option<&'a ClaimKey>);

/// The claim statement: one branch per runner (`$8…`: the runner, then `kinds` local kinds
/// if any, then a hint if `after`), each an index walk in claim order; several branches
/// (PostgreSQL only) are merged in claim order up to `$3` jobs.
///
/// Kinds are matched with `kind IN (…)` so PostgreSQL's planner estimates them from the
/// column statistics; a pattern match there made it misjudge the ready index once the table
/// was analysed and fall back to a sequential scan and sort of the whole table.
///
/// With `after`, only jobs from a key on in claim order are read. `available` is the
/// counter the claimed jobs leave (see [`counter`]).
fn claim_sql(backend: Backend, branches: &[(usize, bool)], available: &str) -> String {
    // PostgreSQL's ready index keys its text columns in the "C" collation and only the claim
    // compares them so: no other index can serve the walk, however the statistics misjudge
    // a queue (see migration 0005).
    let c = match backend {
        Backend::Postgres => " COLLATE \"C\"",
        Backend::Sqlite => "",
    };
    let mut next = 8;
    let mut walks = Vec::new();
    for (kinds, after) in branches {
        let mut filter = format!("runner{c} = ${next} AND state = 'available'");
        next += 1;
        if *kinds > 0 {
            let binds: Vec<String> = (next..next + kinds).map(|i| format!("${i}")).collect();
            filter.push_str(&format!(" AND kind IN ({})", binds.join(", ")));
            next += kinds;
        }
        if *after {
            filter.push_str(&format!(
                " AND (priority, run_at, id{c}) >= (${}, ${}, ${})",
                next,
                next + 1,
                next + 2
            ));
            next += 3;
        }
        walks.push(format!(
            "FROM jobs WHERE project_id{c} = $1 AND queue{c} = $2 AND {filter} \
             ORDER BY priority, run_at, id{c} LIMIT $3"
        ));
    }
    // The lease length is remembered for heartbeats that name none (`lease_ms`, from the
    // lease's end and the claim time already bound: no parameter of its own).
    let set = "SET state = 'running', attempt = attempt + 1, lease_token = CAST(attempt + 1 AS TEXT) || '.' || $4, \
        lease_expires_at = $5, worker = $6, started_at = $7, lease_ms = ($5 - $7) / 1000";
    match backend {
        // The counters move in the same statement (one round trip less per claim).
        Backend::Postgres => {
            let ctes: Vec<String> = walks
                .iter()
                .enumerate()
                .map(|(i, w)| format!("w{i} AS (SELECT id, priority, run_at {w} FOR UPDATE SKIP LOCKED)"))
                .collect();
            let picked = if walks.len() == 1 {
                "picked AS (SELECT id FROM w0)".to_owned()
            } else {
                let all: Vec<String> = (0..walks.len()).map(|i| format!("SELECT * FROM w{i}")).collect();
                format!(
                    "picked AS (SELECT id FROM ({}) u ORDER BY priority, run_at, id{c} LIMIT $3)",
                    all.join(" UNION ALL ")
                )
            };
            format!(
                "WITH {ctes}, {picked}, \
                 claimed AS (UPDATE jobs {set} FROM picked WHERE jobs.id = picked.id RETURNING {cols}, lease_token), \
                 counted AS (INSERT INTO queue_counts (project_id, queue, state, shard, n) \
                   SELECT $1, $2, s.state, {PG_SHARD}, s.sign * c.n FROM (SELECT count(*) AS n FROM claimed) c \
                   CROSS JOIN (VALUES ('{available}', -1), ('running', 1)) AS s(state, sign) WHERE c.n > 0 {COUNTS_UPSERT}) \
                 SELECT * FROM claimed",
                ctes = ctes.join(", "),
                cols = JOB_COLUMNS
                    .split(", ")
                    .map(|c| format!("jobs.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        // The picked jobs come back as one row holding a JSON array (see `SQLITE_PICK`);
        // `SQLITE_LEASE` then leases them by rowid. One branch per statement.
        Backend::Sqlite => format!(
            "SELECT json_group_array(json_array({SQLITE_PICK})) AS jobs FROM (SELECT rowid AS rid, * {})",
            walks.join(" ")
        ),
    }
}

/// What SQLite's claim reads of each picked job, in this order (see [`SqlitePicked`]).
///
/// As one row: the SQLite driver hands each result row from its connection thread to the
/// async side on its own, and a claim or completion of a thousand rows meant a thousand
/// thread wake-ups; a third of the drain's CPU went to context switches.
const SQLITE_PICK: &str = "rid, id, queue, kind, payload, priority, run_at, attempt, max_attempts, backoff, \
    timeout_ms, unique_key, tags, progress, result, last_error, target, runner, created_at, finished_at";

/// Leases the picked jobs (`$5`: a JSON array of rowids) as `claim_sql`'s `set` does.
const SQLITE_LEASE: &str = "UPDATE jobs SET state = 'running', attempt = attempt + 1, \
    lease_token = CAST(attempt + 1 AS TEXT) || '.' || $1, lease_expires_at = $2, worker = $3, started_at = $4, \
    lease_ms = ($2 - $4) / 1000 WHERE rowid IN (SELECT value FROM json_each($5))";

/// One job as [`SQLITE_PICK`] lists it (before the lease).
#[derive(serde::Deserialize)]
struct SqlitePicked(
    i64,
    String,
    String,
    String,
    String,
    i32,
    i64,
    i32,
    i32,
    String,
    i64,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
);

/// The lease a claim gives each job.
struct Lease<'a> {
    token_base: &'a str,
    until: i64,
    worker: &'a str,
    now: Timestamp,
}

/// Decodes SQLite's picked jobs as they are once leased; returns their rowids too.
fn sqlite_picked(
    json: &str,
    lease: &Lease<'_>,
) -> Result<(Vec<i64>, Vec<ClaimedJob>), sqlx::Error> {
    let picked: Vec<SqlitePicked> =
        serde_json::from_str(json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let mut rowids = Vec::with_capacity(picked.len());
    let mut jobs = Vec::with_capacity(picked.len());
    for p in picked {
        rowids.push(p.0);
        let attempt = p.7 + 1;
        jobs.push(ClaimedJob {
            lease_token: format!("{attempt}.{}", lease.token_base),
            job: Job {
                id: JobId::from_db(p.1),
                queue: QueueName::from_db(p.2),
                kind: JobKind::from_db(p.3),
                payload: parse_json(Some(p.4)).unwrap_or(serde_json::Value::Null),
                state: JobState::Running,
                priority: Priority::from_db(p.5),
                run_at: time::from_db(p.6),
                attempt,
                max_attempts: p.8,
                backoff: serde_json::from_str(&p.9).unwrap_or_default(),
                timeout_ms: p.10,
                unique_key: p.11,
                tags: tags_from_db(&p.12),
                progress: parse_json(p.13),
                result: parse_json(p.14),
                last_error: p.15,
                target: parse_json(p.16).and_then(|v| serde_json::from_value(v).ok()),
                runner: Runner::parse(&p.17),
                worker: Some(lease.worker.to_owned()),
                lease_expires_at: Some(time::from_db(lease.until)),
                created_at: time::from_db(p.18),
                started_at: Some(lease.now),
                finished_at: p.19.map(time::from_db),
            },
        });
    }
    Ok((rowids, jobs))
}

async fn lock_queue(
    tx: &mut Tx,
    project: &ProjectId,
    queue: &QueueName,
) -> Result<(bool, Option<f64>, Option<i64>), sqlx::Error> {
    let lock = if tx.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!("SELECT paused, rate_tokens, rate_updated_at FROM queues WHERE project_id = $1 AND name = $2{lock}");
    on_db!(tx.ex(), c => {
        let r = sqlx::query(&sql).bind(project.as_str()).bind(queue.as_str()).fetch_one(c).await?;
        Ok((r.try_get("paused")?, r.try_get("rate_tokens")?, r.try_get("rate_updated_at")?))
    })
}

/// Jobs of a queue in `state`, by the counters (available ones of every runner).
async fn count_state(
    ex: Exec<'_>,
    project: &ProjectId,
    queue: &QueueName,
    state: JobState,
) -> Result<i64, sqlx::Error> {
    let pull = counter(state, Runner::Pull);
    on_db!(ex, c => {
        let row = sqlx::query("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM queue_counts \
             WHERE project_id = $1 AND queue = $2 AND state IN ($3, $4)")
            .bind(project.as_str()).bind(queue.as_str()).bind(state.as_str()).bind(pull)
            .fetch_optional(c).await?;
        row.map(|r| r.try_get("n")).transpose().map(|n| n.unwrap_or(0))
    })
}

/// Why an update carrying a lease token matched nothing.
async fn lease_miss(ex: Exec<'_>, project: &ProjectId, id: &str) -> QueueError {
    let state: Result<Option<String>, sqlx::Error> = on_db!(ex, c => sqlx::query("SELECT state FROM jobs WHERE project_id = $1 AND id = $2")
        .bind(project.as_str()).bind(id).fetch_optional(c).await
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
    id: &str,
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
    .bind(project.as_str()).bind(id).bind(token).bind(now).bind(lease_ms).bind(DEFAULT_LEASE_MS)
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
    pairs: &[(String, String)],
    lease_ms: i64,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
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
                sep.push_bind_unseparated(id);
                sep.push_unseparated(", ");
                sep.push_bind_unseparated(token);
                sep.push_unseparated(")");
            }
            q.push(") RETURNING id");
            let rows = q.build().fetch_all(&mut *c).await?;
            rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?
        });
        kept.extend(ids);
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
    id: &str,
    token: &str,
    result: Option<&serde_json::Value>,
) -> Result<Job> {
    let mut out = complete_each(tx, &[(project, id, token, result)]).await?;
    out.pop().unwrap_or(Err(QueueError::NotFound("job")))
}

/// One job to complete: project, job id, lease token, result.
pub type Completing<'a> = (
    &'a ProjectId,
    &'a str,
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

/// One caller's answer within a transaction shared by several: a refusal (stale token,
/// cancelled or unknown job: nothing written) is that caller's, a database error gives the
/// whole transaction up (`Err`).
pub fn answer<T>(r: Result<T>) -> Result<Result<T>> {
    match r {
        Err(QueueError::Db(e)) => Err(QueueError::Db(e)),
        other => Ok(other),
    }
}

/// One completion of a batch.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The job's project.
    pub project: ProjectId,
    /// The job's queue.
    pub queue: QueueName,
    /// Job id.
    pub id: String,
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
    id: &str,
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
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id).bind(token)
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
                sep.push_bind_unseparated(&items[*i].id);
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
                all.into_iter().filter(|i| hit.contains(&items[*i].id)),
            );
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                out.push(match hit.contains(&it.id) {
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
    id: &str,
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
        .bind(project.as_str()).bind(id).bind(token).fetch_optional(c).await?;
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
            .bind(id).bind(attempt).bind(&error).bind(&worker).bind(time::to_db(now))
            .execute(&mut *c).await?;
        let r = sqlx::query(&sql).bind(project.as_str()).bind(id).bind(token).bind(state.as_str())
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

/// A job's state, queue and runner (locked on PostgreSQL with `lock`).
async fn state_of(
    ex: Exec<'_>,
    project: &ProjectId,
    id: &str,
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
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id).fetch_optional(c).await?;
        row.map(|r| Ok((
            JobState::parse(&r.try_get::<String, _>("state")?).unwrap_or(JobState::Failed),
            r.try_get("queue")?,
            Runner::parse(&r.try_get::<String, _>("runner")?),
        ))).transpose()
    })
}

/// Cancels a job that has not finished. A running job's worker learns it on its next
/// heartbeat (409 `job-cancelled`); its completion is then refused.
pub async fn cancel(tx: &mut Tx, project: &ProjectId, id: &str) -> Result<Job> {
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
    ).bind(project.as_str()).bind(id).bind(now).execute(c).await.map(|_| ()))?;
    let mut d = Deltas::default();
    d.add_job(project.as_str(), &queue, state, runner, -1);
    d.add(project.as_str(), &queue, JobState::Cancelled, 1);
    d.apply(tx.ex()).await?;
    get(tx.ex(), project, id)
        .await?
        .ok_or(QueueError::NotFound("job"))
}

/// Makes a failed, cancelled or completed job available again with a fresh set of attempts.
pub async fn retry(tx: &mut Tx, project: &ProjectId, id: &str) -> Result<Job> {
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
    ).bind(project.as_str()).bind(id).bind(now).execute(c).await.map(|_| ()))?;
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
pub async fn delete(tx: &mut Tx, project: &ProjectId, id: &str) -> Result<Job> {
    let job = get(tx.ex(), project, id)
        .await?
        .ok_or(QueueError::NotFound("job"))?;
    delete_ids(tx, &[id.to_owned()])
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
async fn delete_ids(tx: &mut Tx, ids: &[String]) -> Result<Deltas, sqlx::Error> {
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

/// Moves due scheduled and retryable jobs to available; returns the queues to wake.
/// Counter changes come from the rows actually updated, so concurrent maintenance on
/// several nodes never counts a job twice.
pub async fn promote_due(tx: &mut Tx, limit: i64) -> Result<Vec<(String, String)>> {
    let now = time::to_db(time::now());
    let mut d = Deltas::default();
    let mut woken: Vec<(String, String)> = Vec::new();
    for from in [JobState::Scheduled, JobState::Retryable] {
        // The state is a literal so PostgreSQL can use the partial `jobs_due` index even in a
        // generic plan.
        let pick = format!(
            "SELECT id FROM jobs WHERE state = '{}' AND run_at <= $1 ORDER BY run_at LIMIT $2",
            from.as_str()
        );
        let sql = match tx.backend() {
            Backend::Postgres => format!(
                "WITH picked AS ({pick} FOR UPDATE SKIP LOCKED) UPDATE jobs SET state = 'available' \
                 FROM picked WHERE jobs.id = picked.id RETURNING jobs.project_id, jobs.queue, jobs.runner"
            ),
            Backend::Sqlite => format!(
                "UPDATE jobs SET state = 'available' WHERE id IN ({pick}) RETURNING project_id, queue, runner"
            ),
        };
        let rows: Vec<(String, String, String)> = on_db!(tx.ex(), c => {
            let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(c).await?;
            rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get("project_id")?, r.try_get("queue")?, r.try_get("runner")?))).collect::<Result<_, _>>()?
        });
        for (p, q, runner) in rows {
            d.add(&p, &q, from, -1);
            d.add_job(&p, &q, JobState::Available, Runner::parse(&runner), 1);
            if !woken.iter().any(|(wp, wq)| *wp == p && *wq == q) {
                woken.push((p, q));
            }
        }
    }
    d.apply(tx.ex()).await?;
    for (p, q) in &woken {
        tx.notify_after_commit(CHANNEL, format!("{p}/{q}"));
    }
    Ok(woken)
}

/// Running jobs whose lease lapsed (worker died or hung) go back to retryable — or to
/// failed when out of attempts — with the error recorded; returns how many.
///
/// The lapsed leases are read in index order: on PostgreSQL a plain index scan marks the
/// entries of finished jobs dead as it passes them, so the next scan skips them (a bitmap
/// scan would revisit every such entry until vacuum).
pub async fn rescue_expired(tx: &mut Tx, limit: i64) -> Result<i64> {
    let now = time::now();
    let lock = if tx.backend() == Backend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "SELECT id, project_id, queue, attempt, max_attempts, backoff, worker, lease_token FROM jobs \
         WHERE state = 'running' AND lease_expires_at < $1 ORDER BY lease_expires_at LIMIT $2{lock}"
    );
    type Row = (
        String,
        String,
        String,
        i32,
        i32,
        String,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = on_db!(tx.ex(), c => {
        let rows = sqlx::query(&sql).bind(time::to_db(now)).bind(limit).fetch_all(c).await?;
        rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("project_id")?, r.try_get("queue")?, r.try_get("attempt")?,
            r.try_get("max_attempts")?, r.try_get("backoff")?, r.try_get("worker")?, r.try_get("lease_token")?))).collect::<Result<_, _>>()?
    });
    let mut d = Deltas::default();
    let mut rescued = 0i64;
    for (id, project, queue, attempt, max, backoff, worker, token) in &rows {
        let backoff: Backoff = serde_json::from_str(backoff).unwrap_or_default();
        let retry = attempt < max;
        let state = if retry {
            JobState::Retryable
        } else {
            JobState::Failed
        };
        let run_at = time::to_db(now)
            + if retry {
                backoff.delay_ms(*attempt) * 1000
            } else {
                0
            };
        let finished = (!retry).then(|| time::to_db(now));
        let error = format!(
            "lease expired: worker {} stopped heartbeating",
            worker.as_deref().unwrap_or("?")
        );
        let hit = on_db!(tx.ex(), c => {
            let n = sqlx::query("UPDATE jobs SET state = $2, run_at = $3, finished_at = $4, last_error = $5, lease_token = NULL, \
                         lease_expires_at = NULL WHERE id = $1 AND state = 'running' AND lease_token = $6")
                .bind(id).bind(state.as_str()).bind(run_at).bind(finished).bind(&error).bind(token)
                .execute(&mut *c).await?.rows_affected();
            if n == 1 {
                sqlx::query("INSERT INTO job_errors (job_id, attempt, error, worker, at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(id).bind(attempt).bind(&error).bind(worker).bind(time::to_db(now)).execute(&mut *c).await?;
            }
            n == 1
        });
        if hit {
            rescued += 1;
            d.add(project, queue, JobState::Running, -1);
            d.add(project, queue, state, 1);
        }
    }
    d.apply(tx.ex()).await?;
    if rescued > 0 {
        metrics::counter!("queue_lease_expiries_total").increment(rescued as u64);
    }
    Ok(rescued)
}

/// Finished jobs past their queue's retention: one branch per final state, each a range
/// scan of `jobs_final` per queue (`CROSS JOIN` makes SQLite's planner put `queues`
/// outside; PostgreSQL plans it as an inner join).
static PRUNE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    ["completed", "failed", "cancelled"]
        .iter()
        .map(|state| {
            format!(
                "SELECT j.id FROM queues q CROSS JOIN jobs j \
                 WHERE j.project_id = q.project_id AND j.queue = q.name AND j.state = '{state}' AND j.state IN ('completed', 'failed', 'cancelled') \
                 AND j.finished_at < $1 - q.keep_{state}_secs * 1000000"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
        + " LIMIT $2"
});

/// Deletes finished jobs past their queue's retention, `limit` at most; returns how many.
pub async fn prune(tx: &mut Tx, limit: i64) -> Result<i64> {
    let now = time::to_db(time::now());
    let ids: Vec<String> = on_db!(tx.ex(), c => {
        let rows = sqlx::query(
            &PRUNE_SQL,
        ).bind(now).bind(limit).fetch_all(c).await?;
        rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?
    });
    delete_ids(tx, &ids).await?.apply(tx.ex()).await?;
    on_db!(tx.ex(), c => {
        sqlx::query("DELETE FROM job_uniques WHERE expires_at < $1").bind(now).execute(&mut *c).await?;
        sqlx::query("DELETE FROM queue_minutes WHERE minute < $1").bind(now / 1_000_000 - 7 * 24 * 3600).execute(&mut *c).await.map(|_| ())?
    });
    Ok(ids.len() as i64)
}

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

const QUEUE_COLUMNS: &str =
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
async fn settings_and_held(
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

    #[test]
    fn available_pull_jobs_have_a_counter_of_their_own() {
        assert_eq!(counter(JobState::Available, Runner::Pull), AVAILABLE_PULL);
        assert_eq!(counter(JobState::Available, Runner::Push), "available");
        assert_eq!(counter(JobState::Available, Runner::Local), "available");
        assert_eq!(counter(JobState::Running, Runner::Pull), "running");
        assert_eq!(counted_state(AVAILABLE_PULL), Some(JobState::Available));
        assert_eq!(counted_state("failed"), Some(JobState::Failed));
        assert_eq!(counted_state("bogus"), None);
    }
}

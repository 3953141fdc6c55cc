//! Inserting jobs: one statement per batch on PostgreSQL, unique keys, and the wake-ups sent
//! once they are committed.

use super::*;
use crate::wake::CHANNEL;
use sqlx::Row;
use std::collections::HashMap;
use switchboard_core::db::{Backend, Db, Exec, Tx};
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

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

/// Inserts jobs inside `tx` (up to 10,000; all or none), creating missing queues with
/// default settings (no cap: callers apply it, see [`crate::limits::QueueAdmission`]). Jobs
/// whose unique key is still held by another job come back as that job with
/// `created: false`. Their queues are woken once `tx` commits, on every node
/// ([`Tx::notify_after_commit`]).
///
/// The statements of [`crate::service::enqueue_in`], which callers outside the queue engine
/// use (it also keeps built-in jobs apart).
pub async fn enqueue(tx: &mut Tx, project: &ProjectId, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
    let (out, notices) = enqueue_on(tx.ex(), project, jobs).await?;
    for n in notices {
        tx.notify_after_commit(CHANNEL, n);
    }
    Ok(out)
}

/// Enqueues and commits (the statements of [`crate::runtime::Runtime::enqueue`], whose
/// gathered commits call it). On PostgreSQL, jobs without unique keys go in as one statement
/// committing on its own (one round trip, where a transaction costs three); otherwise as
/// [`enqueue`] in a transaction of their own. Other nodes are woken through NOTIFY; this
/// node's waiters are the caller's to wake (on SQLite, which no other node shares, nothing
/// is sent).
pub async fn enqueue_now(db: &Db, project: &ProjectId, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
    let pg = db.backend() == Backend::Postgres;
    if jobs.iter().all(|j| j.unique.is_none()) {
        if let Some(mut conn) = db.autocommit().await? {
            let (out, notices) = enqueue_on(conn.ex(), project, jobs).await?;
            switchboard_core::db::note_commit();
            db.notify(CHANNEL, notices);
            return Ok(out);
        }
    }
    let mut tx = db.begin().await?;
    let (out, notices) = enqueue_on(tx.ex(), project, jobs).await?;
    if pg {
        for n in notices {
            tx.notify_after_commit(CHANNEL, n);
        }
    }
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
                if let Some(job) = get(ex.re(), project, &JobId::from_db(existing)).await? {
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
    if fresh.is_empty() {
        return Ok((out, Vec::new()));
    }
    // On PostgreSQL each queue's earliest new job in claim order rides the NOTIFY, so
    // claimers that read on from where they stopped know whether to start from the top
    // again (SQLite's claims keep no such place).
    let woken: Vec<(&QueueName, Option<ClaimKey>)> = queues
        .into_iter()
        .map(|q| {
            let first = pg
                .then(|| {
                    fresh
                        .iter()
                        .filter(|j| j.queue == *q)
                        .map(ClaimKey::of)
                        .min()
                })
                .flatten();
            (q, first)
        })
        .collect();
    Ok((out, notices(project, woken.into_iter())))
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
pub(super) fn notices<'a>(
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

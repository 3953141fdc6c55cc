//! The claim path: available jobs of a queue, in priority order, leased to a worker within
//! the queue's pause, caps and rate limit.

use super::*;
use sqlx::Row;
use switchboard_core::db::{Backend, Db, Exec, Tx};
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

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

//! SQL for cron schedules and the tick that turns due schedules into jobs.

use crate::cron::{due_ticks, CronSpec, Overlap, Schedule};
use crate::limits::{Limits, QueueAdmission};
use crate::model::{Invalid, Job, JobId, JobSpec, ScheduleId};
use crate::store::{self, QueueError, Result};
use sqlx::Row;
use std::time::Duration;
use switchboard_core::db::{Exec, Tx};
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

const COLUMNS: &str =
    "id, project_id, name, cron, timezone, job, misfire, backfill_limit, overlap, paused, \
    next_run_at, last_run_at, last_job_id, created_at";

macro_rules! schedule_from_row {
    ($r:expr) => {{
        let r = $r;
        Schedule {
            id: ScheduleId::from_db(r.try_get("id")?),
            name: r.try_get("name")?,
            cron: r.try_get("cron")?,
            timezone: r.try_get("timezone")?,
            job: serde_json::from_str(&r.try_get::<String, _>("job")?).unwrap_or_default(),
            misfire: serde_json::from_value(serde_json::Value::String(r.try_get("misfire")?))
                .unwrap_or_default(),
            backfill_limit: r.try_get("backfill_limit")?,
            overlap: serde_json::from_value(serde_json::Value::String(r.try_get("overlap")?))
                .unwrap_or_default(),
            paused: r.try_get("paused")?,
            next_run_at: time::from_db(r.try_get("next_run_at")?),
            last_run_at: r
                .try_get::<Option<i64>, _>("last_run_at")?
                .map(time::from_db),
            last_job_id: r
                .try_get::<Option<String>, _>("last_job_id")?
                .map(JobId::from_db),
            created_at: time::from_db(r.try_get("created_at")?),
        }
    }};
}

fn enum_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Inserts or fully rewrites a schedule.
pub async fn save(
    ex: Exec<'_>,
    project: &ProjectId,
    s: &Schedule,
    insert: bool,
) -> Result<(), sqlx::Error> {
    let sql = if insert {
        "INSERT INTO schedules (id, project_id, name, cron, timezone, job, misfire, backfill_limit, overlap, paused, \
         next_run_at, last_run_at, last_job_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    } else {
        "UPDATE schedules SET name = $3, cron = $4, timezone = $5, job = $6, misfire = $7, backfill_limit = $8, \
         overlap = $9, paused = $10, next_run_at = $11, last_run_at = $12, last_job_id = $13, created_at = $14 \
         WHERE id = $1 AND project_id = $2"
    };
    on_db!(ex, c => sqlx::query(sql)
        .bind(s.id.as_str()).bind(project.as_str()).bind(&s.name).bind(&s.cron).bind(&s.timezone)
        .bind(s.job.to_string()).bind(enum_str(&s.misfire)).bind(s.backfill_limit).bind(enum_str(&s.overlap))
        .bind(s.paused).bind(time::to_db(s.next_run_at)).bind(s.last_run_at.map(time::to_db))
        .bind(s.last_job_id.as_ref().map(|j| j.to_string())).bind(time::to_db(s.created_at))
        .execute(c).await.map(|_| ()))
}

/// One schedule of the project.
pub async fn get(
    ex: Exec<'_>,
    project: &ProjectId,
    id: &ScheduleId,
) -> Result<Option<Schedule>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE project_id = $1 AND id = $2");
    on_db!(ex, c => {
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id.as_str()).fetch_optional(c).await?;
        row.map(|r| Ok(schedule_from_row!(&r))).transpose()
    })
}

/// The project's schedules by name.
pub async fn list(
    ex: Exec<'_>,
    project: &ProjectId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Schedule>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE project_id = $1 AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3");
    on_db!(ex, c => {
        let rows = sqlx::query(&sql).bind(project.as_str()).bind(after).bind(limit).fetch_all(c).await?;
        rows.iter().map(|r| Ok(schedule_from_row!(r))).collect()
    })
}

/// Deletes a schedule; false when absent.
pub async fn delete(
    ex: Exec<'_>,
    project: &ProjectId,
    id: &ScheduleId,
) -> Result<bool, sqlx::Error> {
    on_db!(ex, c => sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND id = $2")
        .bind(project.as_str()).bind(id.as_str()).execute(c).await.map(|r| r.rows_affected() == 1))
}

/// Refuses a schedule the project may not have ([`QueueError::ScheduleLimit`]): one more
/// than `limits.schedules` (when `new`), or one more than `limits.frequent_schedules` firing
/// more than once a minute (when `frequent`). `id` is the schedule being saved (not counted
/// among the others). Takes [`store::lock_project`] so concurrent creators cannot both pass.
pub async fn check_limits(
    tx: &mut Tx,
    project: &ProjectId,
    id: &ScheduleId,
    new: bool,
    frequent: bool,
    limits: &Limits,
) -> Result<()> {
    if !new && !frequent {
        return Ok(());
    }
    store::lock_project(tx, project).await?;
    // At most a cap's worth of rows (every schedule was checked when saved).
    let others: Vec<(String, String)> = on_db!(tx.ex(), c => {
        let rows = sqlx::query("SELECT cron, timezone FROM schedules WHERE project_id = $1 AND id <> $2")
            .bind(project.as_str()).bind(id.as_str()).fetch_all(c).await?;
        rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get("cron")?, r.try_get("timezone")?))).collect::<Result<_, _>>()?
    });
    if new && others.len() >= limits.schedules as usize {
        return Err(QueueError::ScheduleLimit(format!(
            "this project already has {} schedules, the most it may have \
             (SWITCHBOARD_MAX_SCHEDULES_PER_PROJECT)",
            others.len()
        )));
    }
    if frequent {
        let busy = others
            .iter()
            .filter(|(cron, tz)| {
                CronSpec::parse(cron, tz).is_ok_and(|c| c.more_than_once_a_minute())
            })
            .count();
        if busy >= limits.frequent_schedules as usize {
            return Err(QueueError::ScheduleLimit(format!(
                "this project already has {busy} schedules firing more than once a minute, \
                 the most it may have (SWITCHBOARD_MAX_FREQUENT_SCHEDULES_PER_PROJECT); \
                 fire at most once a minute (five fields, or a single second)"
            )));
        }
    }
    Ok(())
}

/// Enqueues one run of a schedule inside `tx`: for a cron `tick`, or a manual trigger
/// (`None`); returns the job. A queue that does not exist yet is created within the
/// project's cap.
pub async fn enqueue_run(
    tx: &mut Tx,
    project: &ProjectId,
    s: &Schedule,
    tick: Option<Timestamp>,
    local_kinds: &[String],
    queues: &QueueAdmission,
) -> Result<Job> {
    let mut spec: JobSpec = serde_json::from_value(s.job.clone())
        .map_err(|e| QueueError::from(Invalid::new("job", e.to_string())))?;
    spec.run_at = None;
    spec.delay_ms = None;
    let mut tags = spec.tags.clone();
    tags.push(format!("schedule:{}", s.id));
    spec.tags = tags;
    if let (None, Some(tick)) = (&spec.unique_key, tick) {
        // A tick can never produce two jobs, even if two nodes raced past the CAS.
        spec.unique_key = Some(format!("{}@{}", s.id, tick.as_second()));
        spec.unique_window_secs = Some(7 * 24 * 3600);
    }
    let new = spec
        .validate(time::now(), local_kinds)
        .map_err(QueueError::Invalid)?;
    queues.admit_in(tx, project, &[&new.queue]).await?;
    let mut out = crate::service::enqueue_in(tx, project, std::slice::from_ref(&new)).await?;
    Ok(out.remove(0).job)
}

/// What a [`tick`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ticked {
    /// Jobs enqueued.
    pub enqueued: usize,
    /// Schedules were still due when it ran out of time.
    pub more: bool,
}

/// Due schedules read at once by [`tick`].
const DUE_AT_ONCE: i64 = 100;

/// Runs due schedules for up to `budget`; returns how many jobs were enqueued and whether
/// schedules are still due. Each schedule's tick is claimed by a compare-and-set on
/// `next_run_at` in the same transaction as its job.
///
/// Projects take turns: each read of due schedules takes every project's longest-due one,
/// then every project's second, and so on (100 at most), so however many schedules one
/// project has due, another project's wait for its own is one read's worth of work.
pub async fn tick(
    db: &switchboard_core::db::Db,
    local_kinds: &[String],
    grace_secs: i64,
    queues: &QueueAdmission,
    budget: Duration,
) -> Result<Ticked> {
    let started = std::time::Instant::now();
    let mut out = Ticked::default();
    loop {
        let now = time::now();
        let due = due_by_turns(db, now, DUE_AT_ONCE).await?;
        let full = due.len() as i64 >= DUE_AT_ONCE;
        for (project, s) in due {
            out.enqueued += run_due(
                db,
                &ProjectId::from_db(project),
                &s,
                now,
                local_kinds,
                grace_secs,
                queues,
            )
            .await?;
        }
        if !full {
            return Ok(out);
        }
        if started.elapsed() >= budget {
            out.more = true;
            return Ok(out);
        }
    }
}

/// Up to `limit` due schedules, projects taking turns (see [`tick`]).
async fn due_by_turns(
    db: &switchboard_core::db::Db,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<(String, Schedule)>> {
    let mut conn = db.read().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM (SELECT {COLUMNS}, \
           row_number() OVER (PARTITION BY project_id ORDER BY next_run_at, id) AS turn \
           FROM schedules WHERE paused = FALSE AND next_run_at <= $1) s \
         ORDER BY turn, next_run_at, id LIMIT $2"
    );
    let due = on_db!(conn.ex(), c => {
        let rows = sqlx::query(&sql).bind(time::to_db(now)).bind(limit).fetch_all(c).await?;
        rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get("project_id")?, schedule_from_row!(r)))).collect::<Result<Vec<_>, _>>()?
    });
    Ok(due)
}

/// Runs one due schedule's ticks in a transaction of its own; returns the jobs enqueued
/// (none when another node ran them first).
async fn run_due(
    db: &switchboard_core::db::Db,
    project: &ProjectId,
    s: &Schedule,
    now: Timestamp,
    local_kinds: &[String],
    grace_secs: i64,
    queues: &QueueAdmission,
) -> Result<usize> {
    let (ticks, following) = match CronSpec::parse(&s.cron, &s.timezone) {
        Ok(spec) => due_ticks(
            &spec,
            s.next_run_at,
            now,
            s.misfire,
            s.backfill_limit,
            grace_secs,
        ),
        // Saved schedules were valid; a zone gone from the time-zone database is not. Left
        // due, it would be read again at every pass: it is put off instead.
        Err(e) => {
            tracing::warn!(schedule = %s.id, error = %e, "schedule cannot be read; put off for a year");
            (Vec::new(), None)
        }
    };
    let mut tx = db.begin().await?;
    let mut last_job = s.last_job_id.clone();
    let mut last_run = s.last_run_at;
    let mut made = 0;
    for t in &ticks {
        if s.overlap == Overlap::Skip {
            if let Some(prev) = &last_job {
                let running = store::get(tx.ex(), project, prev)
                    .await?
                    .is_some_and(|j| !j.state.is_final());
                if running {
                    continue;
                }
            }
        }
        match enqueue_run(&mut tx, project, s, Some(*t), local_kinds, queues).await {
            Ok(job) => {
                last_job = Some(job.id);
                last_run = Some(*t);
                made += 1;
            }
            Err(e @ (QueueError::Invalid(_) | QueueError::QueueLimit { .. })) => {
                tracing::warn!(schedule = %s.id, error = %e, "schedule's job cannot be enqueued; tick skipped");
            }
            Err(e) => return Err(e),
        }
    }
    let next = following.unwrap_or(time::add_secs(now, 365 * 24 * 3600));
    let claimed = on_db!(tx.ex(), c => sqlx::query(
        "UPDATE schedules SET next_run_at = $3, last_run_at = $4, last_job_id = $5 \
         WHERE id = $1 AND project_id = $2 AND next_run_at = $6",
    )
    .bind(s.id.as_str()).bind(project.as_str()).bind(time::to_db(next)).bind(last_run.map(time::to_db))
    .bind(last_job.as_ref().map(|j| j.to_string())).bind(time::to_db(s.next_run_at))
    .execute(c).await?.rows_affected() == 1);
    // When another node ran this tick first, dropping the transaction discards our jobs.
    if claimed {
        tx.commit().await?;
        return Ok(made);
    }
    Ok(0)
}

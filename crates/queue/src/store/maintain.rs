//! Maintenance: promotion of due jobs, rescue of lapsed leases, retention pruning.

use super::*;
use crate::backoff::Backoff;
use crate::wake::CHANNEL;
use sqlx::Row;
use switchboard_core::db::{Backend, Db, Tx};
use switchboard_core::on_db;
use switchboard_core::time;

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

/// Gives PostgreSQL's planner fresh statistics of the queue tables, as autovacuum would
/// (the benchmark runs it, untimed, after its enqueue). Nothing on SQLite.
pub async fn analyze(db: &Db) -> Result<(), sqlx::Error> {
    if let Db::Postgres(pool, _) = db {
        sqlx::query("ANALYZE jobs, queues, queue_counts")
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// PostgreSQL's WAL syncs so far (`pg_stat_wal`), for the benchmark's report; `None` on
/// SQLite or when the statistics cannot be read.
pub async fn wal_syncs(db: &Db) -> Option<i64> {
    let Db::Postgres(pool, _) = db else {
        return None;
    };
    sqlx::query("SELECT CAST(wal_sync AS BIGINT) AS n FROM pg_stat_wal")
        .fetch_one(pool)
        .await
        .ok()
        .and_then(|r| r.try_get("n").ok())
}

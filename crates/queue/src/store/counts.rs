//! The maintained counters: jobs per (project, queue, state) in `queue_counts` and finished
//! jobs per minute in `queue_minutes`, moved in the transaction of each state change.

use super::*;
use std::collections::BTreeMap;
use switchboard_core::db::{Backend, Exec};
use switchboard_core::on_db;
use switchboard_core::time::Timestamp;

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
pub(super) async fn bump_minute(
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

/// This PostgreSQL connection's shard of the queue counters.
pub(super) const PG_SHARD: &str = pg_shard!();

/// Adds to a counter row that exists already.
pub(super) const COUNTS_UPSERT: &str = counts_upsert!();

#[cfg(test)]
mod tests {
    use super::*;

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

//! SQL of the health endpoints: the queue depths `/metrics` reports.

use sqlx::Row;
use switchboard_core::db::Exec;
use switchboard_core::on_db;

/// Jobs of one queue in one state.
pub struct QueueDepth {
    /// Project id.
    pub project: String,
    /// Queue name.
    pub queue: String,
    /// State name (available jobs for pull workers count as `available`).
    pub state: String,
    /// How many.
    pub jobs: i64,
}

/// Jobs per project, queue and state, from the maintained counters (one small query,
/// never `count(*)` over the jobs table).
pub async fn queue_depths(ex: Exec<'_>) -> Result<Vec<QueueDepth>, sqlx::Error> {
    let sql = format!(
        "SELECT project_id, queue, CASE WHEN state = '{}' THEN 'available' ELSE state END AS state, \
         CAST(SUM(n) AS BIGINT) AS n FROM queue_counts GROUP BY 1, 2, 3",
        switchboard_queue::store::AVAILABLE_PULL
    );
    on_db!(ex, c => {
        let rows = sqlx::query(&sql).fetch_all(c).await?;
        rows.iter()
            .map(|r| {
                Ok(QueueDepth {
                    project: r.try_get("project_id")?,
                    queue: r.try_get("queue")?,
                    state: r.try_get("state")?,
                    jobs: r.try_get("n")?,
                })
            })
            .collect()
    })
}

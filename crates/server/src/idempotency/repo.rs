//! SQL for `Idempotency-Key` records.

use sqlx::Row;
use switchboard_core::db::Exec;
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

/// A key: one principal's, within its project.
pub struct KeyRef<'a> {
    /// The project.
    pub project: &'a ProjectId,
    /// The principal (`api_key:key_…`, `user:user_…`).
    pub principal: &'a str,
    /// The `Idempotency-Key` value.
    pub key: &'a str,
}

/// A stored key.
pub struct Record {
    /// Digest of the first request.
    pub request_hash: String,
    /// `running` or `done`.
    pub state: String,
    /// Status of the kept answer.
    pub status: Option<i32>,
    /// Body of the kept answer.
    pub body: Option<Vec<u8>>,
    /// When the first request came.
    pub created_at: Timestamp,
}

/// Inserts the key as `running`; false when it is already there.
pub async fn insert_running(
    ex: Exec<'_>,
    k: &KeyRef<'_>,
    request_hash: &str,
    now: Timestamp,
) -> Result<bool, sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "INSERT INTO idempotency_keys (project_id, principal, idem_key, request_hash, state, created_at) \
         VALUES ($1, $2, $3, $4, 'running', $5) ON CONFLICT DO NOTHING",
    )
    .bind(k.project.as_str())
    .bind(k.principal)
    .bind(k.key)
    .bind(request_hash)
    .bind(time::to_db(now))
    .execute(c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// The stored key, if any.
pub async fn get(ex: Exec<'_>, k: &KeyRef<'_>) -> Result<Option<Record>, sqlx::Error> {
    on_db!(ex, c => {
        let row = sqlx::query(
            "SELECT request_hash, state, response_status, response_body, created_at \
             FROM idempotency_keys WHERE project_id = $1 AND principal = $2 AND idem_key = $3",
        )
        .bind(k.project.as_str())
        .bind(k.principal)
        .bind(k.key)
        .fetch_optional(c)
        .await?;
        row.map(|r| Ok(Record {
            request_hash: r.try_get("request_hash")?,
            state: r.try_get("state")?,
            status: r.try_get("response_status")?,
            body: r.try_get("response_body")?,
            created_at: time::from_db(r.try_get("created_at")?),
        }))
        .transpose()
    })
}

/// Keeps the answer and marks the key `done`.
pub async fn finish(
    ex: Exec<'_>,
    k: &KeyRef<'_>,
    status: u16,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $4, response_body = $5 \
         WHERE project_id = $1 AND principal = $2 AND idem_key = $3",
    )
    .bind(k.project.as_str())
    .bind(k.principal)
    .bind(k.key)
    .bind(i32::from(status))
    .bind(body)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Deletes the key.
pub async fn delete(ex: Exec<'_>, k: &KeyRef<'_>) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "DELETE FROM idempotency_keys WHERE project_id = $1 AND principal = $2 AND idem_key = $3",
    )
    .bind(k.project.as_str())
    .bind(k.principal)
    .bind(k.key)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Deletes every key created before `cutoff`; returns how many.
pub async fn delete_older(ex: Exec<'_>, cutoff: Timestamp) -> Result<u64, sqlx::Error> {
    on_db!(ex, c => sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(time::to_db(cutoff))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
}

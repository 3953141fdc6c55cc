//! SQL for refresh tokens, dashboard sessions and the login throttle's counts.

use super::RefreshToken;
use sqlx::Row;
use switchboard_core::db::Exec;
use switchboard_core::id::{ProjectId, TokenFamilyId, UserId};
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

/// Stores a new refresh token.
pub async fn insert_refresh(
    ex: Exec<'_>,
    token_hash: &str,
    family: &TokenFamilyId,
    user: &UserId,
    project: &ProjectId,
    now: Timestamp,
    expires: Timestamp,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, project_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash)
    .bind(family.as_str())
    .bind(user.as_str())
    .bind(project.as_str())
    .bind(time::to_db(now))
    .bind(time::to_db(expires))
    .execute(c)
    .await
    .map(|_| ()))
}

/// Marks a live token used, atomically: true only for the one caller that wins.
pub async fn consume_refresh(
    ex: Exec<'_>,
    token_hash: &str,
    now: Timestamp,
) -> Result<bool, sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 \
         AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(time::to_db(now))
    .execute(c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// A refresh token by digest.
pub async fn find_refresh(
    ex: Exec<'_>,
    token_hash: &str,
) -> Result<Option<RefreshToken>, sqlx::Error> {
    on_db!(ex, c => {
        let row = sqlx::query(
            "SELECT family_id, user_id, project_id, expires_at, used_at, revoked_at \
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(c)
        .await?;
        row.map(|r| {
            Ok(RefreshToken {
                family_id: TokenFamilyId::from_db(r.try_get("family_id")?),
                user_id: UserId::from_db(r.try_get("user_id")?),
                project_id: ProjectId::from_db(r.try_get("project_id")?),
                expires_at: r.try_get("expires_at")?,
                used_at: r.try_get("used_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .transpose()
    })
}

/// Revokes every live token of a family.
pub async fn revoke_family(
    ex: Exec<'_>,
    family: &TokenFamilyId,
    now: Timestamp,
) -> Result<u64, sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family.as_str())
    .bind(time::to_db(now))
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
}

/// Ends every refresh token and dashboard session of a user.
pub async fn revoke_all_for_user(
    ex: Exec<'_>,
    user: &UserId,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(user.as_str())
            .bind(time::to_db(now))
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *c)
            .await
            .map(|_| ())
    })
}

/// Stores a dashboard session.
pub async fn insert_session(
    ex: Exec<'_>,
    token_hash: &str,
    user: &UserId,
    project: &ProjectId,
    now: Timestamp,
    expires: Timestamp,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, project_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user.as_str())
    .bind(project.as_str())
    .bind(time::to_db(now))
    .bind(time::to_db(expires))
    .execute(c)
    .await
    .map(|_| ()))
}

/// The user of a live session.
pub async fn find_session(
    ex: Exec<'_>,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<UserId>, sqlx::Error> {
    on_db!(ex, c => {
        let row = sqlx::query("SELECT user_id FROM sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(token_hash)
            .bind(time::to_db(now))
            .fetch_optional(c)
            .await?;
        row.map(|r| r.try_get("user_id").map(UserId::from_db)).transpose()
    })
}

/// Ends a dashboard session.
pub async fn delete_session(ex: Exec<'_>, token_hash: &str) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(c)
        .await
        .map(|_| ()))
}

/// A login account's failure count: `(failures, last_failure_at, locked_until)` in database
/// time, its row created if needed and locked until the transaction ends (PostgreSQL `FOR
/// UPDATE`; on SQLite the transaction runs alone on the writer).
pub async fn lock_failures(
    mut ex: Exec<'_>,
    email: &str,
    now_us: i64,
) -> Result<(i64, i64, i64), sqlx::Error> {
    on_db!(ex.re(), c => sqlx::query(
        "INSERT INTO login_failures (email, failures, last_failure_at, locked_until) \
         VALUES ($1, 0, $2, 0) ON CONFLICT DO NOTHING",
    )
    .bind(email)
    .bind(now_us)
    .execute(c)
    .await
    .map(|_| ()))?;
    const SQL: &str =
        "SELECT failures, last_failure_at, locked_until FROM login_failures WHERE email = $1";
    match ex {
        Exec::Sqlite(c) => sqlx::query_as(SQL).bind(email).fetch_one(c).await,
        Exec::Postgres(c) => {
            sqlx::query_as(&format!("{SQL} FOR UPDATE"))
                .bind(email)
                .fetch_one(c)
                .await
        }
    }
}

/// Writes an account's failure count.
pub async fn set_failures(
    ex: Exec<'_>,
    email: &str,
    failures: i64,
    last_failure_at: i64,
    locked_until: i64,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "UPDATE login_failures SET failures = $2, last_failure_at = $3, locked_until = $4 \
         WHERE email = $1",
    )
    .bind(email)
    .bind(failures)
    .bind(last_failure_at)
    .bind(locked_until)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Forgets an account's failures.
pub async fn clear_failures(ex: Exec<'_>, email: &str) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query("DELETE FROM login_failures WHERE email = $1")
        .bind(email)
        .execute(c)
        .await
        .map(|_| ()))
}

/// Deletes counts whose last failure and lock both ended before `cutoff` (database time);
/// returns how many.
pub async fn prune_failures(ex: Exec<'_>, cutoff: i64) -> Result<u64, sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "DELETE FROM login_failures WHERE last_failure_at < $1 AND locked_until < $1",
    )
    .bind(cutoff)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
}

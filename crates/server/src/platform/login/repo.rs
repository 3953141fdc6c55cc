//! SQL for refresh tokens and dashboard sessions.

use sqlx::Row;
use switchboard_core::db::Exec;
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

/// A stored refresh token.
pub struct RefreshToken {
    /// Rotation family.
    pub family_id: String,
    /// Owner.
    pub user_id: String,
    /// Project.
    pub project_id: String,
    /// Expiry.
    pub expires_at: i64,
    /// Set once rotated.
    pub used_at: Option<i64>,
    /// Set once revoked.
    pub revoked_at: Option<i64>,
}

/// Stores a new refresh token.
pub async fn insert_refresh(
    ex: Exec<'_>,
    token_hash: &str,
    family: &str,
    user: &str,
    project: &str,
    now: Timestamp,
    expires: Timestamp,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, project_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash)
    .bind(family)
    .bind(user)
    .bind(project)
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
                family_id: r.try_get("family_id")?,
                user_id: r.try_get("user_id")?,
                project_id: r.try_get("project_id")?,
                expires_at: r.try_get("expires_at")?,
                used_at: r.try_get("used_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .transpose()
    })
}

/// Revokes every live token of a family.
pub async fn revoke_family(ex: Exec<'_>, family: &str, now: Timestamp) -> Result<u64, sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .bind(time::to_db(now))
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
}

/// Ends every refresh token and dashboard session of a user.
pub async fn revoke_all_for_user(
    ex: Exec<'_>,
    user: &str,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(user)
            .bind(time::to_db(now))
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user)
            .execute(&mut *c)
            .await
            .map(|_| ())
    })
}

/// Stores a dashboard session.
pub async fn insert_session(
    ex: Exec<'_>,
    token_hash: &str,
    user: &str,
    project: &str,
    now: Timestamp,
    expires: Timestamp,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, project_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user)
    .bind(project)
    .bind(time::to_db(now))
    .bind(time::to_db(expires))
    .execute(c)
    .await
    .map(|_| ()))
}

/// The user id of a live session.
pub async fn find_session(
    ex: Exec<'_>,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<String>, sqlx::Error> {
    on_db!(ex, c => {
        let row = sqlx::query("SELECT user_id FROM sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(token_hash)
            .bind(time::to_db(now))
            .fetch_optional(c)
            .await?;
        row.map(|r| r.try_get("user_id")).transpose()
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

//! SQL for API keys.

use super::ApiKey;
use crate::auth::{Role, Scopes};
use sqlx::Row;
use switchboard_core::db::Exec;
use switchboard_core::id::{ApiKeyId, ProjectId};
use switchboard_core::on_db;
use switchboard_core::time::{self, Timestamp};

const COLUMNS: &str =
    "id, project_id, name, prefix, scopes, role, created_at, last_used_at, expires_at, revoked_at";

macro_rules! key_from_row {
    ($r:expr) => {
        ApiKey {
            id: ApiKeyId::from_db($r.try_get("id")?),
            name: $r.try_get("name")?,
            prefix: $r.try_get("prefix")?,
            scopes: Scopes::from_db(&$r.try_get::<String, _>("scopes")?),
            // An unknown stored role (a newer version wrote it) counts as the lowest.
            role: Role::parse(&$r.try_get::<String, _>("role")?).unwrap_or(Role::Viewer),
            created_at: time::from_db($r.try_get("created_at")?),
            last_used_at: $r
                .try_get::<Option<i64>, _>("last_used_at")?
                .map(time::from_db),
            expires_at: $r
                .try_get::<Option<i64>, _>("expires_at")?
                .map(time::from_db),
            revoked_at: $r
                .try_get::<Option<i64>, _>("revoked_at")?
                .map(time::from_db),
        }
    };
}

/// Inserts a key with the digest of its secret.
pub async fn insert(
    ex: Exec<'_>,
    project: &ProjectId,
    k: &ApiKey,
    secret_hash: &str,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "INSERT INTO api_keys (id, project_id, name, prefix, secret_hash, scopes, role, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(k.id.as_str())
    .bind(project.as_str())
    .bind(&k.name)
    .bind(&k.prefix)
    .bind(secret_hash)
    .bind(k.scopes.to_db())
    .bind(k.role.as_str())
    .bind(time::to_db(k.created_at))
    .bind(k.expires_at.map(time::to_db))
    .execute(c)
    .await
    .map(|_| ()))
}

/// One key of the project.
pub async fn get(
    ex: Exec<'_>,
    project: &ProjectId,
    id: &ApiKeyId,
) -> Result<Option<ApiKey>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE project_id = $1 AND id = $2");
    on_db!(ex, c => {
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id.as_str()).fetch_optional(c).await?;
        row.map(|r| Ok(key_from_row!(r))).transpose()
    })
}

/// The key whose secret has this digest, with its project.
pub async fn find_by_digest(
    ex: Exec<'_>,
    digest: &str,
) -> Result<Option<(ApiKey, ProjectId)>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1");
    on_db!(ex, c => {
        let row = sqlx::query(&sql).bind(digest).fetch_optional(c).await?;
        row.map(|r| {
            let project: String = r.try_get("project_id")?;
            Ok((key_from_row!(r), ProjectId::from_db(project)))
        })
        .transpose()
    })
}

/// The project's keys in id order, after the cursor `after`, `limit` at most.
pub async fn list(
    ex: Exec<'_>,
    project: &ProjectId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ApiKey>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE project_id = $1 AND ($2 IS NULL OR id > $2) \
         ORDER BY id LIMIT $3"
    );
    on_db!(ex, c => {
        let rows = sqlx::query(&sql).bind(project.as_str()).bind(after).bind(limit).fetch_all(c).await?;
        rows.iter().map(|r| Ok(key_from_row!(r))).collect()
    })
}

/// Marks a key revoked; false when it was not active.
pub async fn revoke(
    ex: Exec<'_>,
    project: &ProjectId,
    id: &ApiKeyId,
    at: Timestamp,
) -> Result<bool, sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "UPDATE api_keys SET revoked_at = $3 WHERE project_id = $1 AND id = $2 AND revoked_at IS NULL",
    )
    .bind(project.as_str())
    .bind(id.as_str())
    .bind(time::to_db(at))
    .execute(c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Records a successful use of the key.
pub async fn touch(ex: Exec<'_>, id: &ApiKeyId, at: Timestamp) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(time::to_db(at))
        .execute(c)
        .await
        .map(|_| ()))
}

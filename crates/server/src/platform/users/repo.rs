//! SQL for users.

use super::{User, UserRecord};
use crate::auth::Role;
use sqlx::Row;
use switchboard_core::db::Exec;
use switchboard_core::id::{ProjectId, TokenFamilyId, UserId};
use switchboard_core::on_db;
use switchboard_core::time;

const COLUMNS: &str = "id, project_id, email, name, role, created_at, disabled_at, password_hash";

macro_rules! record_from_row {
    ($r:expr) => {
        UserRecord {
            user: User {
                id: UserId::from_db($r.try_get("id")?),
                email: $r.try_get("email")?,
                name: $r.try_get("name")?,
                role: Role::parse(&$r.try_get::<String, _>("role")?).unwrap_or(Role::Viewer),
                created_at: time::from_db($r.try_get("created_at")?),
                disabled_at: $r
                    .try_get::<Option<i64>, _>("disabled_at")?
                    .map(time::from_db),
            },
            project_id: ProjectId::from_db($r.try_get("project_id")?),
            password_hash: $r.try_get("password_hash")?,
        }
    };
}

/// Inserts a user.
pub async fn insert(
    ex: Exec<'_>,
    project: &ProjectId,
    u: &User,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "INSERT INTO users (id, project_id, email, name, role, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(u.id.as_str())
    .bind(project.as_str())
    .bind(&u.email)
    .bind(&u.name)
    .bind(u.role.as_str())
    .bind(password_hash)
    .bind(time::to_db(u.created_at))
    .execute(c)
    .await
    .map(|_| ()))
}

async fn fetch_one_where(
    ex: Exec<'_>,
    condition: &str,
    binds: &[&str],
) -> Result<Option<UserRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE {condition}");
    on_db!(ex, c => {
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(*b);
        }
        let row = q.fetch_optional(c).await?;
        row.map(|r| Ok(record_from_row!(r))).transpose()
    })
}

/// A user of the project by id.
pub async fn get(
    ex: Exec<'_>,
    project: &ProjectId,
    id: &UserId,
) -> Result<Option<User>, sqlx::Error> {
    Ok(fetch_one_where(
        ex,
        "project_id = $1 AND id = $2",
        &[project.as_str(), id.as_str()],
    )
    .await?
    .map(|r| r.user))
}

/// The users with this login e-mail: in `project` only when given, else in every project
/// (at most `limit`, in id order).
pub async fn find_by_email(
    ex: Exec<'_>,
    email: &str,
    project: Option<&ProjectId>,
    limit: i64,
) -> Result<Vec<UserRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE email = $1 AND ($2 IS NULL OR project_id = $2) \
         ORDER BY id LIMIT $3"
    );
    on_db!(ex, c => {
        let rows = sqlx::query(&sql)
            .bind(email)
            .bind(project.map(ProjectId::as_str))
            .bind(limit)
            .fetch_all(c)
            .await?;
        rows.iter().map(|r| Ok(record_from_row!(r))).collect()
    })
}

/// A user by id, any project (for token checks).
pub async fn find_by_id(ex: Exec<'_>, id: &UserId) -> Result<Option<UserRecord>, sqlx::Error> {
    fetch_one_where(ex, "id = $1", &[id.as_str()]).await
}

/// A user by id, any project, with whether the login session `family` (a refresh-token
/// family) of theirs is still live: one statement, an indexed probe of the family
/// (`refresh_tokens_family`).
pub async fn find_with_session(
    ex: Exec<'_>,
    id: &UserId,
    family: &TokenFamilyId,
) -> Result<Option<(UserRecord, bool)>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = $2 \
         AND t.user_id = users.id AND t.revoked_at IS NULL) AS live FROM users WHERE id = $1"
    );
    on_db!(ex, c => {
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(family.as_str())
            .fetch_optional(c)
            .await?;
        row.map(|r| Ok((record_from_row!(r), r.try_get("live")?)))
            .transpose()
    })
}

/// The project's users in id order, after the cursor `after`.
pub async fn list(
    ex: Exec<'_>,
    project: &ProjectId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<User>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE project_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    );
    on_db!(ex, c => {
        let rows = sqlx::query(&sql).bind(project.as_str()).bind(after).bind(limit).fetch_all(c).await?;
        rows.iter().map(|r| Ok(record_from_row!(r).user)).collect()
    })
}

/// Writes name, role and disabled state; the password too when given.
pub async fn update(
    ex: Exec<'_>,
    project: &ProjectId,
    u: &User,
    password_hash: Option<&str>,
) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "UPDATE users SET name = $3, role = $4, disabled_at = $5, \
         password_hash = COALESCE($6, password_hash) WHERE project_id = $1 AND id = $2",
    )
    .bind(project.as_str())
    .bind(u.id.as_str())
    .bind(&u.name)
    .bind(u.role.as_str())
    .bind(u.disabled_at.map(time::to_db))
    .bind(password_hash)
    .execute(c)
    .await
    .map(|_| ()))
}

/// The ids of the project's active owners, locked until the transaction ends, so that two
/// concurrent demotions cannot both see the other owner still active. PostgreSQL: `FOR
/// UPDATE` in id order (concurrent callers queue rather than deadlock; a waiter re-checks
/// each row after the holder commits, so an owner demoted meanwhile is no longer counted).
/// SQLite: every transaction already runs alone on the single writer.
pub async fn lock_active_owners(
    ex: Exec<'_>,
    project: &ProjectId,
) -> Result<Vec<UserId>, sqlx::Error> {
    const SQL: &str =
        "SELECT id FROM users WHERE project_id = $1 AND role = 'owner' AND disabled_at IS NULL \
         ORDER BY id";
    let ids: Vec<String> = match ex {
        Exec::Sqlite(c) => {
            sqlx::query_scalar(SQL)
                .bind(project.as_str())
                .fetch_all(c)
                .await?
        }
        Exec::Postgres(c) => {
            sqlx::query_scalar(&format!("{SQL} FOR UPDATE"))
                .bind(project.as_str())
                .fetch_all(c)
                .await?
        }
    };
    Ok(ids.into_iter().map(UserId::from_db).collect())
}

//! SQL for projects.

use super::Project;
use sqlx::Row;
use switchboard_core::db::{Backend, Exec};
use switchboard_core::id::ProjectId;
use switchboard_core::{on_db, time};

/// Inserts a project.
pub async fn insert(ex: Exec<'_>, p: &Project) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query("INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(p.id.as_str())
        .bind(&p.name)
        .bind(time::to_db(p.created_at))
        .execute(c)
        .await
        .map(|_| ()))
}

/// One project by id.
pub async fn get(ex: Exec<'_>, id: &ProjectId) -> Result<Option<Project>, sqlx::Error> {
    on_db!(ex, c => {
        let row = sqlx::query("SELECT id, name, created_at FROM projects WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(c)
            .await?;
        row.map(|r| {
            Ok(Project {
                id: ProjectId::from_db(r.try_get("id")?),
                name: r.try_get("name")?,
                created_at: time::from_db(r.try_get("created_at")?),
            })
        })
        .transpose()
    })
}

/// Renames a project; false when it does not exist.
pub async fn rename(ex: Exec<'_>, id: &ProjectId, name: &str) -> Result<bool, sqlx::Error> {
    on_db!(ex, c => sqlx::query("UPDATE projects SET name = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(name)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Whether any project exists yet.
pub async fn any_exists(ex: Exec<'_>) -> Result<bool, sqlx::Error> {
    Ok(first(ex).await?.is_some())
}

/// The first project (in id order: the oldest), if any.
pub async fn first(ex: Exec<'_>) -> Result<Option<ProjectId>, sqlx::Error> {
    on_db!(ex, c => sqlx::query("SELECT id FROM projects ORDER BY id LIMIT 1")
        .fetch_optional(c)
        .await?
        .map(|r| r.try_get("id").map(ProjectId::from_db))
        .transpose())
}

/// Claims the creation of the first project for this node: true for the one caller whose
/// `bootstrapped_at` row in `settings` went in (the row commits with the transaction).
pub async fn claim_bootstrap(ex: Exec<'_>, at: time::Timestamp) -> Result<bool, sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "INSERT INTO settings (name, value) VALUES ('bootstrapped_at', $1) ON CONFLICT DO NOTHING",
    )
    .bind(at.to_string())
    .execute(c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Whether the database has Switchboard's tables (its `projects` table), for commands that
/// must not create a database.
pub async fn schema_exists(ex: Exec<'_>) -> Result<bool, sqlx::Error> {
    let sql = match ex.backend() {
        Backend::Postgres => {
            "SELECT CAST(count(*) AS BIGINT) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'projects'"
        }
        Backend::Sqlite => {
            "SELECT CAST(count(*) AS BIGINT) AS n FROM sqlite_master WHERE type = 'table' \
             AND name = 'projects'"
        }
    };
    let n: i64 = on_db!(ex, c => sqlx::query(sql).fetch_one(c).await?.try_get("n")?);
    Ok(n > 0)
}

/// The id of a project named `name` (the first, when several share it).
pub async fn find_by_name(ex: Exec<'_>, name: &str) -> Result<Option<ProjectId>, sqlx::Error> {
    on_db!(ex, c => {
        let row = sqlx::query("SELECT id FROM projects WHERE name = $1 LIMIT 1")
            .bind(name)
            .fetch_optional(c)
            .await?;
        row.map(|r| r.try_get("id").map(ProjectId::from_db)).transpose()
    })
}

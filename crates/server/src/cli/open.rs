//! Opening the database of an existing node, and the project a command works in.

use crate::app;
use crate::platform::projects;
use anyhow::Context;
use std::path::PathBuf;
use switchboard_core::config::Config;
use switchboard_core::db::Db;
use switchboard_core::id::ProjectId;

/// Where a command that works on an existing database is pointed, for messages.
const POINT_ELSEWHERE: &str = "point at the node's database with --config FILE, \
    DATABASE_URL=… (SQLite or PostgreSQL URL) or SWITCHBOARD_DATA_DIR=DIR (the folder holding \
    switchboard.db)";

/// The SQLite file a `sqlite:` URL names, absolute (`None` for an in-memory database).
pub(super) fn sqlite_file(url: &str) -> anyhow::Result<Option<PathBuf>> {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .with_context(|| format!("DATABASE_URL {url} is not a SQLite URL"))?;
    let file = options.get_filename();
    if file.as_os_str().is_empty() || file.as_os_str() == ":memory:" {
        return Ok(None);
    }
    Ok(Some(std::path::absolute(file)?))
}

/// Opens the database a node already uses, for commands that work on one (everything but
/// `serve`, `worker`, `migrate` and `bench`): a missing SQLite file or a PostgreSQL
/// database without Switchboard's tables is an error naming where it looked and how to
/// point elsewhere, never a new empty database. Says on stderr which database it opened.
pub(super) async fn open_existing(config: &Config) -> anyhow::Result<Db> {
    let url = &config.database_url;
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let shown = if postgres {
        format!("PostgreSQL database {}", app::redact(url))
    } else {
        match sqlite_file(url)? {
            Some(file) if !file.is_file() => anyhow::bail!(
                "no Switchboard database at {} (commands other than `serve` and `migrate` \
                 do not create one): {POINT_ELSEWHERE}",
                file.display()
            ),
            Some(file) => format!("SQLite database {}", file.display()),
            None => format!("SQLite database {url}"),
        }
    };
    let db = Db::connect(url, config.db_max_connections.min(4))
        .await
        .with_context(|| format!("cannot open the {shown}"))?;
    let tables = {
        let mut conn = db.read().await?;
        projects::repo::schema_exists(conn.ex()).await?
    };
    if !tables {
        db.close().await;
        anyhow::bail!(
            "the {shown} has no Switchboard tables (commands other than `serve` and `migrate` \
             do not create them): {POINT_ELSEWHERE}"
        );
    }
    // Pending migrations of a newer binary are applied, as a node would at start.
    db.migrate().await.context("cannot migrate the database")?;
    eprintln!("switchboard: using the {shown}");
    Ok(db)
}

pub(super) async fn project_for(db: &Db, given: Option<String>) -> anyhow::Result<ProjectId> {
    if let Some(p) = given {
        return ProjectId::parse(&p).map_err(|e| anyhow::anyhow!("--project: {e}"));
    }
    let first = projects::service::first(db).await?;
    first.context(
        "this database has no project yet: run `switchboard serve` on it once to create the \
         default project",
    )
}

//! The database handle: SQLite (embedded default) or PostgreSQL (scale-out).
//!
//! SQL is written once with `$1`-style placeholders, which both drivers bind by number, and
//! run through [`on_db!`], which expands the same code once per backend with the concrete
//! connection type. Dialect differences stay in the repo functions that need them.
//!
//! SQLite runs in WAL mode with one writer connection (every transaction goes through it,
//! so writers never fight over the lock) and a pool of read-only connections.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

/// Which engine a [`Db`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Errors opening or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL could not be understood.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// Connecting or querying failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed or the applied history does not match this binary.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The data directory could not be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A cheap, cloneable handle to the database.
#[derive(Clone, Debug)]
pub enum Db {
    /// SQLite: one writer connection, several readers.
    Sqlite {
        /// The single writer.
        writer: SqlitePool,
        /// Read-only connections.
        reader: SqlitePool,
    },
    /// PostgreSQL pool, and the task sending notifications of committed transactions.
    Postgres(PgPool, Notifier),
}

/// A connection borrowed for a sequence of statements: what repo functions take.
pub enum Exec<'a> {
    /// SQLite connection.
    Sqlite(&'a mut SqliteConnection),
    /// PostgreSQL connection.
    Postgres(&'a mut PgConnection),
}

impl Exec<'_> {
    /// Borrows the same connection again, for the next statement.
    pub fn re(&mut self) -> Exec<'_> {
        match self {
            Exec::Sqlite(c) => Exec::Sqlite(c),
            Exec::Postgres(c) => Exec::Postgres(c),
        }
    }

    /// Which engine this connection talks to.
    pub fn backend(&self) -> Backend {
        match self {
            Exec::Sqlite(_) => Backend::Sqlite,
            Exec::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Runs `$body` with `$c` bound to the concrete connection of `$exec` (an [`Exec`]).
#[macro_export]
macro_rules! on_db {
    ($exec:expr, $c:ident => $body:expr) => {
        match $exec {
            $crate::db::Exec::Sqlite($c) => $body,
            $crate::db::Exec::Postgres($c) => $body,
        }
    };
}

/// A pooled connection for reads.
pub enum Conn {
    /// SQLite reader.
    Sqlite(PoolConnection<Sqlite>),
    /// PostgreSQL connection.
    Postgres(PoolConnection<Postgres>),
}

impl Conn {
    /// The connection as an executor for repo functions.
    pub fn ex(&mut self) -> Exec<'_> {
        match self {
            Conn::Sqlite(c) => Exec::Sqlite(&mut *c),
            Conn::Postgres(c) => Exec::Postgres(&mut *c),
        }
    }
}

static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Transactions committed by this process (benchmarks report commits per job: each durable
/// commit costs one WAL flush).
pub fn commits() -> u64 {
    COMMITS.load(std::sync::atomic::Ordering::Relaxed)
}

/// An open transaction; dropped without [`Tx::commit`] it rolls back.
pub enum Tx {
    /// On the SQLite writer.
    Sqlite(Transaction<'static, Sqlite>),
    /// On PostgreSQL, with the notifications to send once it has committed.
    Postgres(Transaction<'static, Postgres>, AfterCommit),
}

/// PostgreSQL notifications a transaction sends when (and only if) it commits.
pub struct AfterCommit {
    notices: Vec<(String, String)>,
    notifier: Notifier,
}

impl Tx {
    /// The transaction as an executor for repo functions.
    pub fn ex(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(t) => Exec::Sqlite(&mut *t),
            Tx::Postgres(t, _) => Exec::Postgres(&mut *t),
        }
    }

    /// Which engine this transaction runs on.
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(..) => Backend::Postgres,
        }
    }

    /// Sends `NOTIFY channel, payload` after the transaction commits (nothing on SQLite,
    /// where one process owns the database and wakes its waiters directly).
    ///
    /// Not `pg_notify` inside the transaction: a notifying transaction holds a database-wide
    /// lock from its commit until the end of its WAL flush, so concurrent single-job
    /// enqueues would commit one flush at a time. Wake-ups are hints (claimers also poll),
    /// so sending them just after the commit loses nothing.
    pub fn notify_after_commit(&mut self, channel: &str, payload: String) {
        if let Tx::Postgres(_, after) = self {
            after.notices.push((channel.to_owned(), payload));
        }
    }

    /// Makes every write of the transaction durable.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t, after) => {
                t.commit().await?;
                after.notifier.send(after.notices);
                Ok(())
            }
        }
    }
}

/// Sends committed transactions' notifications from one task: whatever arrives while a
/// `NOTIFY` statement is in flight goes out in the next one.
#[derive(Clone, Debug)]
pub struct Notifier(tokio::sync::mpsc::UnboundedSender<Vec<(String, String)>>);

impl Notifier {
    fn start(pool: PgPool) -> Notifier {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(String, String)>>();
        tokio::spawn(async move {
            while let Some(mut all) = rx.recv().await {
                while all.len() < 1000 {
                    match rx.try_recv() {
                        Ok(more) => all.extend(more),
                        Err(_) => break,
                    }
                }
                all.sort();
                all.dedup();
                let (channels, payloads): (Vec<String>, Vec<String>) = all.into_iter().unzip();
                let sent = sqlx::query(
                    "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)",
                )
                .bind(&channels)
                .bind(&payloads)
                .execute(&pool)
                .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "NOTIFY failed; listeners fall back to polling");
                }
            }
        });
        Notifier(tx)
    }

    fn send(&self, notices: Vec<(String, String)>) {
        if !notices.is_empty() {
            let _ = self.0.send(notices);
        }
    }
}

macro_rules! migrations {
    ($dir:literal: $($version:literal $name:literal),* $(,)?) => {
        vec![$(Migration::new(
            $version,
            Cow::Borrowed($name),
            MigrationType::Simple,
            Cow::Borrowed(include_str!(concat!("../../../migrations/", $dir, "/", $name, ".sql"))),
            false,
        )),*]
    };
}

fn migrator(backend: Backend) -> Migrator {
    let migrations = match backend {
        Backend::Sqlite => {
            migrations!(
                "sqlite": 1 "0001_platform", 2 "0002_queue", 3 "0003_job_indexes", 4 "0004_count_shards"
            )
        }
        Backend::Postgres => {
            migrations!(
                "postgres": 1 "0001_platform", 2 "0002_queue", 3 "0003_job_indexes", 4 "0004_count_shards"
            )
        }
    };
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

impl Db {
    /// Opens the database at `url` (`sqlite://…` or `postgres://…`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| DbError::InvalidUrl(e.to_string()))?
                .application_name("switchboard");
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            let notifier = Notifier::start(pool.clone());
            return Ok(Db::Postgres(pool, notifier));
        }
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| DbError::InvalidUrl(e.to_string()))?;
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|source| DbError::DataDir {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .row_buffer_size(4096);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Db::Sqlite { writer, reader })
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(..) => Backend::Postgres,
        }
    }

    /// Applies every migration this binary carries that the database lacks.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let m = migrator(self.backend());
        match self {
            Db::Sqlite { writer, .. } => m.run(writer).await?,
            Db::Postgres(pool, _) => m.run(pool).await?,
        }
        Ok(())
    }

    /// Starts a transaction (on SQLite, on the single writer).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite { writer, .. } => Tx::Sqlite(writer.begin().await?),
            Db::Postgres(pool, notifier) => Tx::Postgres(
                pool.begin().await?,
                AfterCommit {
                    notices: Vec::new(),
                    notifier: notifier.clone(),
                },
            ),
        })
    }

    /// A connection for reads.
    pub async fn read(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Db::Sqlite { reader, .. } => Conn::Sqlite(reader.acquire().await?),
            Db::Postgres(pool, _) => Conn::Postgres(pool.acquire().await?),
        })
    }

    /// A PostgreSQL connection for a statement that commits on its own (autocommit): one
    /// round trip instead of BEGIN, statement, COMMIT. `None` on SQLite, where every write
    /// goes through the writer's transactions.
    pub async fn autocommit(&self) -> Result<Option<Conn>, sqlx::Error> {
        Ok(match self {
            Db::Sqlite { .. } => None,
            Db::Postgres(pool, _) => Some(Conn::Postgres(pool.acquire().await?)),
        })
    }

    /// Sends notifications now (after an autocommit statement); nothing on SQLite.
    pub fn notify(&self, channel: &str, payloads: Vec<String>) {
        if let Db::Postgres(_, notifier) = self {
            notifier.send(
                payloads
                    .into_iter()
                    .map(|p| (channel.to_owned(), p))
                    .collect(),
            );
        }
    }

    /// A trivial round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.read().await?;
        on_db!(conn.ex(), c => sqlx::query("SELECT 1").execute(c).await.map(|_| ()))
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Db::Sqlite { writer, reader } => {
                writer.close().await;
                reader.close().await;
            }
            Db::Postgres(pool, _) => pool.close().await,
        }
    }
}

/// True when `e` is a unique-constraint violation (same SQLSTATE class on both engines).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

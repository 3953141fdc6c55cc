//! The database handle: SQLite (embedded default) or PostgreSQL (scale-out).
//!
//! SQL is written once with `$1`-style placeholders, which both drivers bind by number, and
//! run through [`on_db!`], which expands the same code once per backend with the concrete
//! connection type. Dialect differences stay in the repo functions that need them.
//!
//! SQLite runs in WAL mode with one writer connection (every transaction goes through it,
//! so writers never fight over the lock) and a pool of read-only connections.
//!
//! PostgreSQL may sit behind a transaction-mode pooler (`?pooler=transaction`): then every
//! statement runs inside a transaction (see [`PgSide`]).

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
    /// Migrations are pending and the URL goes through a transaction pooler, where the
    /// migrator's session lock cannot be held.
    #[error(
        "database migrations are pending: apply them with `switchboard migrate` using a URL \
         that reaches PostgreSQL directly, not through the transaction pooler"
    )]
    PendingBehindPooler,
    /// After migrating SQLite, rows refer to rows that do not exist (a migration bug).
    #[error("after migrating, {0} rows break foreign keys (PRAGMA foreign_key_check)")]
    ForeignKeyViolations(usize),
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
        /// This process's listeners of committed transactions' notifications.
        local: LocalListeners,
    },
    /// PostgreSQL pool, and what else a PostgreSQL connection needs.
    Postgres(PgPool, PgSide),
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
    /// Behind a transaction-mode pooler: statements run inside a transaction, so the pooler
    /// keeps them on one server connection.
    PostgresTx(Transaction<'static, Postgres>),
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
            Conn::PostgresTx(t) => Exec::Postgres(&mut *t),
        }
    }
}

static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Transactions committed by this process (benchmarks report commits per job: each durable
/// commit costs one WAL flush).
pub fn commits() -> u64 {
    COMMITS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts a statement that committed on its own (see [`Db::autocommit`]).
pub fn note_commit() {
    COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// An open transaction; dropped without [`Tx::commit`] it rolls back.
pub enum Tx {
    /// On the SQLite writer, with the notifications to deliver once it has committed.
    Sqlite(Transaction<'static, Sqlite>, AfterCommit),
    /// On PostgreSQL, with the notifications to send once it has committed.
    Postgres(Transaction<'static, Postgres>, AfterCommit),
}

/// Notifications a transaction sends when (and only if) it commits.
pub struct AfterCommit {
    notices: Vec<(String, String)>,
    to: Deliver,
}

/// Where notifications go.
enum Deliver {
    /// `NOTIFY` on PostgreSQL, to every node listening.
    Postgres(PgSide),
    /// SQLite: straight to this process's listeners (one process owns the database).
    Local(LocalListeners),
}

/// A listener of committed transactions' notifications in this process: `(channel, payload)`.
pub type LocalListener = dyn Fn(&str, &str) + Send + Sync;

/// SQLite's `LISTEN`: the listeners a [`Db`] calls, in the committing task, right after a
/// transaction with notifications commits. Held weakly: a listener stops when its owner drops
/// the last `Arc` of it.
#[derive(Clone, Default)]
pub struct LocalListeners(std::sync::Arc<std::sync::Mutex<Vec<std::sync::Weak<LocalListener>>>>);

impl std::fmt::Debug for LocalListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalListeners")
    }
}

impl LocalListeners {
    fn add(&self, listener: &std::sync::Arc<LocalListener>) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|l| l.strong_count() > 0);
        all.push(std::sync::Arc::downgrade(listener));
    }

    fn send(&self, notices: &[(String, String)]) {
        if notices.is_empty() {
            return;
        }
        let live: Vec<std::sync::Arc<LocalListener>> = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for l in live {
            for (channel, payload) in notices {
                l(channel, payload);
            }
        }
    }
}

impl Tx {
    /// The transaction as an executor for repo functions.
    pub fn ex(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(t, _) => Exec::Sqlite(&mut *t),
            Tx::Postgres(t, _) => Exec::Postgres(&mut *t),
        }
    }

    /// Which engine this transaction runs on.
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(..) => Backend::Sqlite,
            Tx::Postgres(..) => Backend::Postgres,
        }
    }

    /// Sends `NOTIFY channel, payload` after the transaction commits: on PostgreSQL to every
    /// node listening; on SQLite, where one process owns the database, to this process's
    /// listeners ([`Db::listen_local`]) as the commit returns. Nothing is sent if it rolls
    /// back.
    ///
    /// Not `pg_notify` inside the transaction: a notifying transaction holds a database-wide
    /// lock from its commit until the end of its WAL flush, so concurrent single-job
    /// enqueues would commit one flush at a time. Wake-ups are hints (claimers also poll),
    /// so sending them just after the commit loses nothing.
    pub fn notify_after_commit(&mut self, channel: &str, payload: String) {
        let (Tx::Sqlite(_, after) | Tx::Postgres(_, after)) = self;
        after.notices.push((channel.to_owned(), payload));
    }

    /// Makes every write of the transaction durable.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let after = match self {
            Tx::Sqlite(t, after) => {
                t.commit().await?;
                after
            }
            Tx::Postgres(t, after) => {
                t.commit().await?;
                after
            }
        };
        match after.to {
            Deliver::Postgres(side) => side.notifier.send(after.notices),
            Deliver::Local(local) => local.send(&after.notices),
        }
        Ok(())
    }
}

/// What a PostgreSQL handle carries besides its pool.
#[derive(Clone, Debug)]
pub struct PgSide {
    notifier: Notifier,
    /// Connected through a transaction-mode pooler (PgBouncer): see [`POOLER_BEGIN`].
    pooled: bool,
}

impl PgSide {
    /// Whether the URL asked for transaction-pooler mode (`?pooler=transaction`).
    pub fn pooled(&self) -> bool {
        self.pooled
    }
}

/// How transactions start behind a transaction-mode pooler. The driver sends a statement's
/// Parse and its Bind/Execute as two exchanges, which a pooler may route to different server
/// connections unless a transaction pins them; so every statement runs in a transaction.
/// Prepared statements are not cached (`statement-cache-capacity=0`), but those a transaction
/// prepares stay on its server connection, where another client's next transaction could
/// collide with their names: each transaction first drops them.
const POOLER_BEGIN: &str = "BEGIN; DEALLOCATE ALL";

/// Begins a transaction on `pool`, the pooler-safe way when `pooled`.
async fn begin_pg(
    pool: &PgPool,
    pooled: bool,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    if pooled {
        pool.begin_with(POOLER_BEGIN).await
    } else {
        pool.begin().await
    }
}

/// Sends committed transactions' notifications from one task: whatever arrives while a
/// `NOTIFY` statement is in flight goes out in the next one.
#[derive(Clone, Debug)]
pub struct Notifier(tokio::sync::mpsc::UnboundedSender<Vec<(String, String)>>);

impl Notifier {
    fn start(pool: PgPool, pooled: bool) -> Notifier {
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
                let notify = sqlx::query(
                    "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)",
                )
                .bind(&channels)
                .bind(&payloads);
                let sent = async {
                    if !pooled {
                        // One statement committing on its own.
                        return notify.execute(&pool).await.map(|_| ());
                    }
                    let mut tx = begin_pg(&pool, true).await?;
                    notify.execute(&mut *tx).await?;
                    tx.commit().await
                }
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
                "sqlite": 1 "0001_platform", 2 "0002_queue", 3 "0003_job_indexes", 4 "0004_count_shards",
                5 "0005_drop_jobs_list", 7 "0007_pull_counts", 8 "0008_auth_hardening",
                11 "0011_lease_length"
            )
        }
        Backend::Postgres => {
            migrations!(
                "postgres": 1 "0001_platform", 2 "0002_queue", 3 "0003_job_indexes", 4 "0004_count_shards",
                5 "0005_drop_jobs_list", 6 "0006_running_apart", 7 "0007_pull_counts",
                8 "0008_auth_hardening", 9 "0009_audit_no_truncate", 11 "0011_lease_length"
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

/// Takes Switchboard's own `pooler=transaction` parameter off a PostgreSQL URL (the
/// driver would ignore it with a warning); true when it was there.
fn pooler_mode(url: &str) -> Result<(String, bool), DbError> {
    let mut parsed = url::Url::parse(url).map_err(|e| DbError::InvalidUrl(e.to_string()))?;
    let mut pooled = false;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("pooler", "transaction") => pooled = true,
            ("pooler", "none" | "session") => {}
            ("pooler", other) => {
                return Err(DbError::InvalidUrl(format!(
                    "pooler={other}: expected `transaction`, `session` or `none`"
                )))
            }
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.to_string(), pooled))
}

impl Db {
    /// Opens the database at `url` (`sqlite://…` or `postgres://…`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (url, pooled) = pooler_mode(url)?;
            let mut options = PgConnectOptions::from_str(&url)
                .map_err(|e| DbError::InvalidUrl(e.to_string()))?
                .application_name("switchboard");
            if pooled {
                options = options.statement_cache_capacity(0);
            }
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            let side = PgSide {
                notifier: Notifier::start(pool.clone(), pooled),
                pooled,
            };
            return Ok(Db::Postgres(pool, side));
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
            .row_buffer_size(4096)
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", "10000");
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
        Ok(Db::Sqlite {
            writer,
            reader,
            local: LocalListeners::default(),
        })
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(..) => Backend::Postgres,
        }
    }

    /// Applies this binary's migrations up to and including `version` only: upgrade tests
    /// build an older schema with it, fill it, then [`Db::migrate`] the rest.
    #[doc(hidden)]
    pub async fn migrate_to(&self, version: i64) -> Result<(), DbError> {
        let mut m = migrator(self.backend());
        m.migrations = Cow::Owned(
            m.migrations
                .iter()
                .filter(|mig| mig.version <= version)
                .cloned()
                .collect(),
        );
        self.run_migrator(&m).await
    }

    /// Runs `m`. On SQLite, with foreign keys off: changing a constraint there means
    /// rebuilding the table (new table, copy, drop, rename), and dropping a table that others
    /// reference fails while they are enforced; `PRAGMA foreign_keys` cannot change inside
    /// the migrator's transaction, so it is switched around the run, and the result is
    /// checked with `PRAGMA foreign_key_check` before enforcement resumes.
    async fn run_migrator(&self, m: &Migrator) -> Result<(), DbError> {
        let writer = match self {
            Db::Postgres(pool, _) => return Ok(m.run(pool).await?),
            Db::Sqlite { writer, .. } => writer,
        };
        let mut conn = writer.acquire().await?;
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *conn)
            .await?;
        let ran = m.run(&mut *conn).await;
        let violations = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut *conn)
            .await
            .map(|rows| rows.len());
        let enforced = sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut *conn)
            .await;
        if enforced.is_err() {
            // Never hand the pool a connection that does not enforce foreign keys.
            let _ = conn.detach();
        }
        ran?;
        enforced?;
        match violations? {
            0 => Ok(()),
            n => Err(DbError::ForeignKeyViolations(n)),
        }
    }

    /// Applies every migration this binary carries that the database lacks.
    ///
    /// When none is missing, nothing is locked: the migrator's lock is a session-level
    /// advisory lock, which a pooler in transaction mode (PgBouncer) may take on one server
    /// connection and release on another, so nodes starting behind a pooler only take it
    /// when there is something to apply.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let m = migrator(self.backend());
        // Exactly this binary's migrations, applied with the same checksums (else the
        // migrator runs: it applies what is missing and reports a mismatch or a migration
        // this binary does not know, e.g. after a downgrade).
        if self.applied().await.is_ok_and(|applied| {
            applied.len() == m.migrations.len()
                && m.migrations.iter().all(|mig| {
                    applied
                        .iter()
                        .any(|(v, sum)| *v == mig.version && sum[..] == mig.checksum[..])
                })
        }) {
            return Ok(());
        }
        if let Db::Postgres(_, side) = self {
            if side.pooled {
                return Err(DbError::PendingBehindPooler);
            }
        }
        self.run_migrator(&m).await
    }

    /// Versions and checksums of the migrations applied successfully (an error if there is
    /// no record yet).
    async fn applied(&self) -> Result<Vec<(i64, Vec<u8>)>, sqlx::Error> {
        let sql = "SELECT version, checksum FROM _sqlx_migrations WHERE success";
        let mut conn = self.read().await?;
        on_db!(conn.ex(), c => sqlx::query_as(sql).fetch_all(c).await)
    }

    /// Starts a transaction (on SQLite, on the single writer).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            // IMMEDIATE: the write lock from the start, so a transaction that reads and then
            // writes (a claim) cannot find its reads overtaken by another process's commit.
            Db::Sqlite { writer, local, .. } => Tx::Sqlite(
                writer.begin_with("BEGIN IMMEDIATE").await?,
                AfterCommit {
                    notices: Vec::new(),
                    to: Deliver::Local(local.clone()),
                },
            ),
            Db::Postgres(pool, side) => Tx::Postgres(
                begin_pg(pool, side.pooled).await?,
                AfterCommit {
                    notices: Vec::new(),
                    to: Deliver::Postgres(side.clone()),
                },
            ),
        })
    }

    /// A connection for reads.
    pub async fn read(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Db::Sqlite { reader, .. } => Conn::Sqlite(reader.acquire().await?),
            Db::Postgres(pool, side) if side.pooled => {
                Conn::PostgresTx(begin_pg(pool, true).await?)
            }
            Db::Postgres(pool, _) => Conn::Postgres(pool.acquire().await?),
        })
    }

    /// A PostgreSQL connection for a statement that commits on its own (autocommit): one
    /// round trip instead of BEGIN, statement, COMMIT. `None` on SQLite, where every write
    /// goes through the writer's transactions.
    pub async fn autocommit(&self) -> Result<Option<Conn>, sqlx::Error> {
        Ok(match self {
            Db::Sqlite { .. } => None,
            Db::Postgres(pool, side) if !side.pooled => Some(Conn::Postgres(pool.acquire().await?)),
            Db::Postgres(..) => None,
        })
    }

    /// Sends notifications now (after an autocommit statement), as
    /// [`Tx::notify_after_commit`] does after a commit.
    pub fn notify(&self, channel: &str, payloads: Vec<String>) {
        let notices: Vec<(String, String)> = payloads
            .into_iter()
            .map(|p| (channel.to_owned(), p))
            .collect();
        match self {
            Db::Postgres(_, side) => side.notifier.send(notices),
            Db::Sqlite { local, .. } => local.send(&notices),
        }
    }

    /// On SQLite, calls `listener` with every notification a transaction of this process
    /// sends once it has committed ([`Tx::notify_after_commit`]), until the last `Arc` of it
    /// is dropped; returns false on PostgreSQL, whose notifications arrive through `LISTEN`.
    pub fn listen_local(&self, listener: &std::sync::Arc<LocalListener>) -> bool {
        match self {
            Db::Sqlite { local, .. } => {
                local.add(listener);
                true
            }
            Db::Postgres(..) => false,
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
            Db::Sqlite { writer, reader, .. } => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrating_an_up_to_date_database_changes_nothing_and_unknown_history_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::connect(&url, 1).await.unwrap();
        db.migrate().await.unwrap();
        // Up to date: nothing to do, and nothing refused.
        db.migrate().await.unwrap();
        // A migration this binary does not carry (a newer binary ran here): refused, not
        // skipped as "everything applied".
        let Db::Sqlite { writer, .. } = &db else {
            panic!("sqlite")
        };
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (999, 'from the future', TRUE, x'00', 0)",
        )
        .execute(writer)
        .await
        .unwrap();
        assert!(db.migrate().await.is_err());
        db.close().await;
    }

    #[test]
    fn pooler_parameter_is_taken_off_the_url() {
        let (url, pooled) =
            pooler_mode("postgres://u@h:6432/db?pooler=transaction&sslmode=disable").unwrap();
        assert!(pooled);
        assert_eq!(url, "postgres://u@h:6432/db?sslmode=disable");
        let (url, pooled) = pooler_mode("postgres://u@h/db").unwrap();
        assert!(!pooled);
        assert_eq!(url, "postgres://u@h/db");
        assert!(pooler_mode("postgres://u@h/db?pooler=statement").is_err());
    }
}

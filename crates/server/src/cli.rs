//! The command line: `serve`, `migrate`, `keys`, `users`, `doctor`.

use crate::app::{self, Application};
use crate::auth::{password, Role, Scopes};
use crate::platform::{api_keys, users};
use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::Row;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_core::audit::{Actor, AuditContext};
use switchboard_core::config::{Config, CONFIG_FILE_ENV};
use switchboard_core::db::Db;
use switchboard_core::id::ProjectId;
use switchboard_core::{on_db, time};

/// Writes one line to stdout. A stdout closed by its reader (`switchboard job get ID | head`)
/// is a [`StdoutClosed`] error, which ends the command quietly (exit 141, as a shell tool
/// killed by SIGPIPE), where `println!` would panic.
macro_rules! say {
    ($($t:tt)*) => { write_line(format_args!($($t)*))? };
}

/// Stdout was closed by its reader: nothing more can be said, and nothing went wrong.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Exit code of a command whose reader went away (128 + SIGPIPE).
const EXIT_STDOUT_CLOSED: u8 = 141;

fn write_line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}

/// Durable jobs, notifications, payments, storage and webhooks behind one HTTP API.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    /// TOML configuration file (also `SWITCHBOARD_CONFIG`); the environment overrides it.
    #[arg(long, global = true, env = CONFIG_FILE_ENV)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, dashboard and background work.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Check configuration, database, Redis and storage; exit 1 if anything fails.
    Doctor,
    /// Run job workers, maintenance and cron without the API.
    Worker,
    /// Inspect and operate queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Enqueue and operate jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Measure the engine against the configured database.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `switchboard bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Enqueue, drain and paced-latency phases on a throwaway queue.
    Queue {
        /// Jobs to enqueue and drain.
        #[arg(long, default_value_t = 100_000)]
        jobs: u64,
        /// Jobs run at once.
        #[arg(long, default_value_t = 50)]
        concurrency: i32,
        /// Jobs per enqueue transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Keep completed jobs (for an hour) instead of deleting them on completion, which
        /// is what BullMQ's `removeOnComplete` and graphile-worker do.
        #[arg(long)]
        keep_completed: bool,
        /// Run only the store-alone phase (claims of 1,000 jobs completed at once), e.g.
        /// under a profiler.
        #[arg(long)]
        store_only: bool,
        /// Jobs/s offered in the latency phase instead of half the single-job peak (or of
        /// the drain rate), to compare latencies at one load.
        #[arg(long)]
        rate: Option<f64>,
    },
}

/// `switchboard queue …`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Every queue with its counts in every state and its running limit.
    List {
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// One queue's settings, counts, throughput and running limit, as JSON.
    Stats {
        /// Queue name.
        name: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// Stop handing out jobs.
    Pause {
        /// Queue name.
        name: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// Hand out jobs again.
    Resume {
        /// Queue name.
        name: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// Retry every failed job.
    RetryFailed {
        /// Queue name.
        name: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// Delete finished jobs (as `POST /v1/queues/{name}/clean`).
    Clean {
        /// Queue name.
        name: String,
        /// completed, failed or cancelled.
        #[arg(long, default_value = "completed")]
        state: String,
        /// Only jobs finished at least this many milliseconds ago.
        #[arg(long, default_value_t = 0)]
        older_than_ms: i64,
        /// At most this many (default: all, deleted 10,000 at a time).
        #[arg(long)]
        limit: Option<i64>,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
}

/// `switchboard job …`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Enqueue a job as `POST /v1/jobs` does (same fields, same checks); prints its id.
    Enqueue(Box<EnqueueArgs>),
    /// A job with its attempt errors, as JSON.
    Get {
        /// Job id.
        id: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// Retry a finished job.
    Retry {
        /// Job id.
        id: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// Cancel a job.
    Cancel {
        /// Job id.
        id: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
}

/// `switchboard job enqueue`: the fields of `POST /v1/jobs`, named as there (`-` for `_`).
#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {
    /// Queue.
    #[arg(long)]
    pub queue: String,
    /// Kind.
    #[arg(long)]
    pub kind: String,
    /// JSON payload.
    #[arg(long, default_value = "null")]
    pub payload: String,
    /// critical, high, normal, low or 0–100.
    #[arg(long)]
    pub priority: Option<String>,
    /// Earliest start, RFC 3339 (e.g. 2030-01-01T09:00:00Z).
    #[arg(long)]
    pub run_at: Option<String>,
    /// Or start no earlier than this many ms from now.
    #[arg(long)]
    pub delay_ms: Option<i64>,
    /// Attempts before the job fails (default 3).
    #[arg(long)]
    pub max_attempts: Option<i32>,
    /// Retry delays as JSON, e.g. `{"type":"fixed","delay_ms":5000}` (default exponential).
    #[arg(long)]
    pub backoff: Option<String>,
    /// Per-attempt limit, ms (default 30,000).
    #[arg(long)]
    pub timeout_ms: Option<i64>,
    /// Dedupe key: while held, the same key returns the existing job.
    #[arg(long)]
    pub unique_key: Option<String>,
    /// How long the key is held, seconds (default 3600).
    #[arg(long)]
    pub unique_window_secs: Option<i64>,
    /// A label (repeat for more).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Makes it an HTTP push job: the URL Switchboard sends it to.
    #[arg(long)]
    pub target_url: Option<String>,
    /// The push request's method: POST (default), PUT or PATCH.
    #[arg(long, requires = "target_url")]
    pub target_method: Option<String>,
    /// A push request header, `Name: value` (repeat for more).
    #[arg(long = "target-header", requires = "target_url")]
    pub target_headers: Vec<String>,
    /// Project id (default: the first project).
    #[arg(long)]
    pub project: Option<String>,
}

/// `switchboard keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown once).
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes, `*` for all.
        #[arg(long, default_value = "*")]
        scopes: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// List keys.
    List {
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// Revoke a key.
    Revoke {
        /// Key id.
        id: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
}

/// `switchboard users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Set a new password for a user (e.g. a lost owner password): prints a random one
    /// unless one is given; ends the user's sessions; audited.
    ResetPassword {
        /// The user's login e-mail.
        #[arg(long)]
        email: String,
        /// The new password (also `SWITCHBOARD_NEW_USER_PASSWORD`); random when absent.
        #[arg(long, env = "SWITCHBOARD_NEW_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Project id (needed only when several projects have a user with this e-mail).
        #[arg(long)]
        project: Option<String>,
    },
    /// Create a user; prints a random password unless one is given.
    Create {
        /// Login e-mail.
        #[arg(long)]
        email: String,
        /// owner, admin, operator or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Password (also `SWITCHBOARD_NEW_USER_PASSWORD`); random when absent.
        #[arg(long, env = "SWITCHBOARD_NEW_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
}

/// Runs the command; configuration errors exit with 2, other failures with 1.
pub fn run(cli: Cli) -> ExitCode {
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match Config::load(cli.config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init_logs(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await.map(|()| ExitCode::SUCCESS),
            Command::Migrate => migrate(&config).await.map(|()| ExitCode::SUCCESS),
            Command::Keys(k) => keys(&config, k).await.map(|()| ExitCode::SUCCESS),
            Command::Users(u) => users_cmd(&config, u).await.map(|()| ExitCode::SUCCESS),
            Command::Doctor => doctor(&config).await,
            Command::Worker => worker(config).await.map(|()| ExitCode::SUCCESS),
            Command::Queue(q) => queue_cmd(&config, q).await.map(|()| ExitCode::SUCCESS),
            Command::Job(j) => job_cmd(&config, j).await.map(|()| ExitCode::SUCCESS),
            Command::Bench(BenchCommand::Queue {
                jobs,
                concurrency,
                batch,
                keep_completed,
                store_only,
                rate,
            }) => {
                let valid = jobs > 0
                    && (1..=10_000).contains(&concurrency)
                    && (1..=10_000).contains(&batch)
                    && rate.is_none_or(|r| (1.0..=1e6).contains(&r));
                if valid {
                    let opts = crate::bench::BenchOptions {
                        jobs,
                        concurrency,
                        batch,
                        keep_completed,
                        store_only,
                        rate,
                    };
                    crate::bench::run(&config, opts).await.map(|_| ExitCode::SUCCESS)
                } else {
                    eprintln!("switchboard: --jobs must be positive, --concurrency and --batch 1 to 10000, --rate 1 to 1000000");
                    Ok(ExitCode::from(2))
                }
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<StdoutClosed>().is_some() => ExitCode::from(EXIT_STDOUT_CLOSED),
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let base = config.base_url();
    let app = Application::build(config).await?;
    if let Some(c) = &app.bootstrap {
        say!(
            "\nSwitchboard is set up (shown once; store these now):\n  \
             dashboard  {base}/dashboard\n  login      {}\n  password   {}\n  API key    {}\n  project    {}\n",
            c.email, c.password, c.api_key, c.project
        );
    }
    tracing::info!(url = %base, port = app.port(), "listening");
    if let Some(port) = app.metrics_port() {
        tracing::info!(port, "serving /metrics on the metrics listener");
    }
    app.run_until_stopped(stop).await
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives while the node starts is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            tracing::info!("shutting down: draining in-flight requests");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: draining in-flight requests");
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let (db, _) = app::connect(config).await?;
    say!("migrations applied ({})", db.backend().name());
    db.close().await;
    Ok(())
}

/// Where a command that works on an existing database is pointed, for messages.
const POINT_ELSEWHERE: &str = "point at the node's database with --config FILE, \
    DATABASE_URL=… (SQLite or PostgreSQL URL) or SWITCHBOARD_DATA_DIR=DIR (the folder holding \
    switchboard.db)";

/// The SQLite file a `sqlite:` URL names, absolute (`None` for an in-memory database).
fn sqlite_file(url: &str) -> anyhow::Result<Option<PathBuf>> {
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
async fn open_existing(config: &Config) -> anyhow::Result<Db> {
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
    let sql = if postgres {
        "SELECT CAST(count(*) AS BIGINT) AS n FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = 'projects'"
    } else {
        "SELECT CAST(count(*) AS BIGINT) AS n FROM sqlite_master WHERE type = 'table' AND name = 'projects'"
    };
    let tables: i64 = {
        let mut conn = db.read().await?;
        on_db!(conn.ex(), c => sqlx::query(sql).fetch_one(c).await?.try_get("n")?)
    };
    if tables == 0 {
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

async fn project_for(db: &Db, given: Option<String>) -> anyhow::Result<ProjectId> {
    if let Some(p) = given {
        return ProjectId::parse(&p).map_err(|e| anyhow::anyhow!("--project: {e}"));
    }
    let mut conn = db.read().await?;
    let first: Option<String> = on_db!(conn.ex(), c => sqlx::query("SELECT id FROM projects ORDER BY id LIMIT 1")
        .fetch_optional(c)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?);
    first.map(ProjectId::from_db).context(
        "this database has no project yet: run `switchboard serve` on it once to create the \
         default project",
    )
}

fn cli_actor(project: &ProjectId) -> AuditContext {
    AuditContext {
        project_id: project.clone(),
        actor: Actor::system("cli"),
        ip: None,
        user_agent: None,
        request_id: None,
    }
}

async fn keys(config: &Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let db = open_existing(config).await?;
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            project,
        } => {
            let project = project_for(&db, project).await?;
            let scopes = Scopes::try_from(
                scopes
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
            let mut tx = db.begin().await?;
            // Whoever runs the CLI holds the database: its keys are owner keys.
            let created = api_keys::create_in_tx(
                &mut tx,
                &cli_actor(&project),
                &project,
                api_keys::NewKey {
                    name: &name,
                    scopes,
                    role: Role::Owner,
                    expires_at: None,
                    secret: None,
                },
            )
            .await?;
            tx.commit().await?;
            say!("{}\t{}", created.key.id, created.secret);
        }
        KeysCommand::List { project } => {
            let project = project_for(&db, project).await?;
            let mut conn = db.read().await?;
            for k in api_keys::repo::list(conn.ex(), &project, None, 10_000).await? {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                say!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    k.prefix,
                    k.scopes.to_db(),
                    k.role.as_str(),
                    status
                );
            }
        }
        KeysCommand::Revoke { id, project } => {
            let project = project_for(&db, project).await?;
            let mut tx = db.begin().await?;
            api_keys::revoke_in_tx(&mut tx, &cli_actor(&project), &project, &id)
                .await?
                .with_context(|| format!("no API key {id} in project {project}"))?;
            tx.commit().await?;
            say!("revoked {id}");
        }
    }
    db.close().await;
    Ok(())
}

/// A password given on the command line, or a random one (`true`: generated).
fn password_or_random(given: Option<String>) -> (String, bool) {
    match given {
        Some(p) => (p, false),
        None => (
            switchboard_core::secret::random_token("")
                .chars()
                .take(20)
                .collect(),
            true,
        ),
    }
}

async fn users_cmd(config: &Config, cmd: UsersCommand) -> anyhow::Result<()> {
    let db = open_existing(config).await?;
    let (email, role, pw, name, project) = match cmd {
        UsersCommand::Create {
            email,
            role,
            password,
            name,
            project,
        } => (email, role, password, name, project),
        UsersCommand::ResetPassword {
            email,
            password,
            project,
        } => {
            let out = reset_password(config, &db, &email, password, project).await;
            db.close().await;
            return out;
        }
    };
    let project = project_for(&db, project).await?;
    let role = Role::parse(&role)
        .with_context(|| format!("--role: `{role}` is not owner, admin, operator or viewer"))?;
    let email = users::parse_email(&email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let (pw, generated) = password_or_random(pw);
    password::check_strength(&pw).map_err(|m| anyhow::anyhow!("--password {m}"))?;
    let user = users::User {
        id: switchboard_core::id::UserId::generate(),
        email,
        name,
        role,
        created_at: time::now(),
        disabled_at: None,
    };
    let hash = password::Passwords::from_config(config)
        .hash(&pw)
        .await
        .map_err(|e| anyhow::anyhow!("hash: {e}"))?;
    let mut tx = db.begin().await?;
    users::repo::insert(tx.ex(), &project, &user, &hash)
        .await
        .map_err(|e| {
            if switchboard_core::db::is_unique_violation(&e) {
                anyhow::anyhow!("a user with e-mail {} already exists", user.email)
            } else {
                e.into()
            }
        })?;
    switchboard_core::audit::record(
        &mut tx,
        &cli_actor(&project),
        switchboard_core::audit::Change {
            action: "user.create",
            entity_type: "user",
            entity_id: user.id.as_str(),
            before: None,
            after: serde_json::to_value(&user).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    if generated {
        say!("{}\t{}\tpassword: {pw}", user.id, user.email);
    } else {
        say!("{}\t{}", user.id, user.email);
    }
    db.close().await;
    Ok(())
}

/// `users reset-password`: a new password for the user with this e-mail (in `project`, or
/// the only project that has one), every session of theirs ended, audited as
/// `user.password_reset` by the CLI.
async fn reset_password(
    config: &Config,
    db: &Db,
    email: &str,
    password: Option<String>,
    project: Option<String>,
) -> anyhow::Result<()> {
    let email = users::parse_email(email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let project = project
        .map(|p| ProjectId::parse(&p).map_err(|e| anyhow::anyhow!("--project: {e}")))
        .transpose()?;
    let (pw, generated) = password_or_random(password);
    password::check_strength(&pw).map_err(|m| anyhow::anyhow!("--password {m}"))?;
    let found = {
        let mut conn = db.read().await?;
        users::repo::find_by_email(conn.ex(), &email, project.as_ref(), 2).await?
    };
    let rec = match found.as_slice() {
        [] => anyhow::bail!("no user with e-mail {email}"),
        [one] => one.clone(),
        _ => anyhow::bail!(
            "several projects have a user with e-mail {email}: say which with --project"
        ),
    };
    let hash = password::Passwords::from_config(config)
        .hash(&pw)
        .await
        .map_err(|e| anyhow::anyhow!("hash: {e}"))?;
    let now = time::now();
    let mut tx = db.begin().await?;
    users::repo::update(tx.ex(), &rec.project_id, &rec.user, Some(&hash)).await?;
    // Whoever had the old password may hold sessions: they end with it.
    crate::platform::login::repo::revoke_all_for_user(tx.ex(), rec.user.id.as_str(), now).await?;
    switchboard_core::audit::record(
        &mut tx,
        &cli_actor(&rec.project_id),
        switchboard_core::audit::Change {
            action: "user.password_reset",
            entity_type: "user",
            entity_id: rec.user.id.as_str(),
            before: None,
            after: Some(serde_json::json!({ "email": rec.user.email, "sessions_ended": true })),
        },
    )
    .await?;
    tx.commit().await?;
    if generated {
        say!("{}\t{}\tpassword: {pw}", rec.user.id, rec.user.email);
    } else {
        say!("{}\t{}", rec.user.id, rec.user.email);
    }
    Ok(())
}

/// Prints one line per check; the exit code is 1 if any failed. Creates nothing: a SQLite
/// database or data folder that does not exist yet is reported as such (`serve` creates
/// them).
pub async fn doctor(config: &Config) -> anyhow::Result<ExitCode> {
    let mut lines: Vec<(bool, &str, String)> = Vec::new();
    let mut line = |ok: bool, name: &'static str, detail: &str| {
        lines.push((ok, name, detail.to_owned()));
    };
    line(
        true,
        "config",
        &format!(
            "listen {}, data dir {}",
            config.listen,
            config.data_dir.display()
        ),
    );
    let missing_file = match config.database_url.starts_with("sqlite:") {
        true => sqlite_file(&config.database_url)?.filter(|f| !f.exists()),
        false => None,
    };
    if let Some(file) = missing_file {
        line(
            true,
            "database",
            &format!(
                "sqlite {} does not exist yet (`switchboard serve` creates it)",
                file.display()
            ),
        );
    } else {
        match Db::connect(&config.database_url, 2).await {
            Ok(db) => {
                match db.ping().await {
                    Ok(()) => line(
                        true,
                        "database",
                        &format!(
                            "{} {}",
                            db.backend().name(),
                            app::redact(&config.database_url)
                        ),
                    ),
                    Err(e) => line(false, "database", &e.to_string()),
                }
                db.close().await;
            }
            Err(e) => line(
                false,
                "database",
                &format!("{}: {e}", app::redact(&config.database_url)),
            ),
        }
    }
    match &config.redis_url {
        None => line(
            true,
            "redis",
            "not configured (in-process rate limits and cache)",
        ),
        Some(url) => {
            let ping = async {
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            };
            match tokio::time::timeout(std::time::Duration::from_secs(5), ping).await {
                Ok(Ok(_)) => line(true, "redis", &app::redact(url)),
                Ok(Err(e)) => line(false, "redis", &format!("{}: {e}", app::redact(url))),
                Err(_) => line(false, "redis", &format!("{}: timed out", app::redact(url))),
            }
        }
    }
    let probe = config.data_dir.join(".doctor-probe");
    if config.data_dir.is_dir() {
        let storage = std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe));
        match storage {
            Ok(()) => line(
                true,
                "storage",
                &format!("{} writable", config.data_dir.display()),
            ),
            Err(e) => line(
                false,
                "storage",
                &format!("{}: {e}", config.data_dir.display()),
            ),
        }
    } else {
        line(
            true,
            "storage",
            &format!(
                "{} does not exist yet (`switchboard serve` creates it)",
                config.data_dir.display()
            ),
        );
    }
    let mut failed = false;
    for (ok, name, detail) in lines {
        failed |= !ok;
        say!("{:<4} {name:<9} {detail}", if ok { "ok" } else { "FAIL" });
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn worker(config: Config) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let node = crate::worker::Worker::build(&config).await?;
    node.run_until_stopped(stop).await;
    Ok(())
}

fn queue_arg(name: &str) -> anyhow::Result<switchboard_queue::QueueName> {
    switchboard_queue::QueueName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))
}

fn api_err(e: impl Into<crate::error::ApiError>) -> anyhow::Error {
    anyhow::anyhow!("{}", e.into().problem().detail)
}

async fn queue_cmd(config: &Config, cmd: QueueCommand) -> anyhow::Result<()> {
    use crate::queue::service::{self, BulkOp};
    use switchboard_queue::{store, JobState, QueueSettings};
    let db = open_existing(config).await?;
    let (project, name) = match &cmd {
        QueueCommand::List { project } => (project.clone(), None),
        QueueCommand::Stats { name, project }
        | QueueCommand::Pause { name, project }
        | QueueCommand::Resume { name, project }
        | QueueCommand::RetryFailed { name, project }
        | QueueCommand::Clean { name, project, .. } => (project.clone(), Some(queue_arg(name)?)),
    };
    let project = project_for(&db, project).await?;
    let ctx = cli_actor(&project);
    let known = match &name {
        Some(n) => {
            let mut conn = db.read().await?;
            let found = store::queues(conn.ex(), &project, Some(n)).await?;
            Some(
                found
                    .into_iter()
                    .next()
                    .with_context(|| format!("no queue {n}"))?,
            )
        }
        None => None,
    };
    match (cmd, name, known) {
        (QueueCommand::List { .. }, ..) => {
            let mut conn = db.read().await?;
            let states: Vec<String> = JobState::ALL
                .iter()
                .map(|s| format!("{:>9}", s.as_str()))
                .collect();
            say!(
                "{:<24} {:>6} {}  running at most",
                "queue",
                "paused",
                states.join(" ")
            );
            for q in store::queues(conn.ex(), &project, None).await? {
                let counts: Vec<String> = JobState::ALL
                    .iter()
                    .map(|s| format!("{:>9}", q.counts.get(s).copied().unwrap_or(0)))
                    .collect();
                say!(
                    "{:<24} {:>6} {}  {}",
                    q.name.as_str(),
                    q.settings.paused,
                    counts.join(" "),
                    q.settings.running_limit()
                );
            }
        }
        (QueueCommand::Stats { .. }, _, Some(info)) => {
            // The limits in words next to the counts, as the dashboard shows them.
            let mut v = serde_json::to_value(&info)?;
            v["running_limit"] = serde_json::json!(info.settings.running_limit());
            say!("{}", serde_json::to_string_pretty(&v)?)
        }
        (QueueCommand::Pause { .. }, Some(n), _) => {
            let pause = |s| Ok(QueueSettings { paused: true, ..s });
            service::save_settings(
                &db,
                &ctx,
                &n,
                "queue.pause",
                config.max_queues_per_project,
                pause,
            )
            .await
            .map_err(api_err)?;
            say!("paused {n}");
        }
        (QueueCommand::Resume { .. }, Some(n), _) => {
            let resume = |s| Ok(QueueSettings { paused: false, ..s });
            service::save_settings(
                &db,
                &ctx,
                &n,
                "queue.resume",
                config.max_queues_per_project,
                resume,
            )
            .await
            .map_err(api_err)?;
            say!("resumed {n}");
        }
        (QueueCommand::RetryFailed { .. }, Some(n), _) => {
            let count = service::bulk(&db, &ctx, &n, BulkOp::RetryFailed)
                .await
                .map_err(api_err)?;
            say!("retried {count} failed jobs of {n}");
        }
        (
            QueueCommand::Clean {
                state,
                older_than_ms,
                limit,
                ..
            },
            Some(n),
            _,
        ) => {
            // The API's rules for the same fields.
            let state = JobState::parse(&state)
                .filter(|s| s.is_final())
                .context("--state must be completed, failed or cancelled")?;
            anyhow::ensure!(older_than_ms >= 0, "--older-than-ms must not be negative");
            anyhow::ensure!(limit.is_none_or(|l| l >= 1), "--limit must be at least 1");
            let before =
                time::from_db(time::to_db(time::now()) - older_than_ms.saturating_mul(1000));
            let bar = indicatif::ProgressBar::new_spinner().with_message(format!("cleaning {n}"));
            let mut total = 0;
            loop {
                let batch = limit.map_or(10_000, |l| (l - total).min(10_000));
                if batch <= 0 {
                    break;
                }
                let op = BulkOp::Clean {
                    state,
                    before,
                    limit: batch,
                };
                let n_done = service::bulk(&db, &ctx, &n, op).await.map_err(api_err)?;
                total += n_done;
                bar.set_message(format!("cleaning {n}: {total} deleted"));
                bar.tick();
                if n_done < batch {
                    break;
                }
            }
            bar.finish_and_clear();
            say!("deleted {total} {} jobs of {n}", state.as_str());
        }
        _ => {}
    }
    db.close().await;
    Ok(())
}

/// The `POST /v1/jobs` body `job enqueue`'s flags describe (checked as the API checks it
/// afterwards; here only what does not fit its JSON shape is refused).
fn enqueue_spec(a: &EnqueueArgs) -> anyhow::Result<switchboard_queue::JobSpec> {
    let json = |flag: &str, v: &str| -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(v).with_context(|| format!("{flag} is not JSON"))
    };
    let mut spec = serde_json::json!({
        "queue": a.queue,
        "kind": a.kind,
        "payload": json("--payload", &a.payload)?,
        "delay_ms": a.delay_ms,
        "max_attempts": a.max_attempts,
        "timeout_ms": a.timeout_ms,
        "unique_key": a.unique_key,
        "unique_window_secs": a.unique_window_secs,
        "tags": a.tags,
    });
    if let Some(p) = &a.priority {
        spec["priority"] = p
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or(serde_json::Value::String(p.clone()));
    }
    if let Some(t) = &a.run_at {
        let at: time::Timestamp = t
            .parse()
            .with_context(|| format!("--run-at `{t}` is not an RFC 3339 time"))?;
        spec["run_at"] = serde_json::json!(at);
    }
    if let Some(b) = &a.backoff {
        spec["backoff"] = json("--backoff", b)?;
    }
    if let Some(url) = &a.target_url {
        let mut headers = serde_json::Map::new();
        for h in &a.target_headers {
            let (k, v) = h
                .split_once(':')
                .with_context(|| format!("--target-header `{h}` is not `Name: value`"))?;
            headers.insert(k.trim().to_owned(), serde_json::json!(v.trim()));
        }
        spec["target"] = serde_json::json!({
            "url": url,
            "method": a.target_method.as_deref().unwrap_or("POST"),
            "headers": headers,
        });
    }
    serde_json::from_value(spec).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn job_cmd(config: &Config, cmd: JobCommand) -> anyhow::Result<()> {
    use crate::queue::service::{self, JobOp};
    use switchboard_queue::store;
    let db = open_existing(config).await?;
    match cmd {
        JobCommand::Enqueue(a) => {
            let project = project_for(&db, a.project.clone()).await?;
            let spec = enqueue_spec(&a)?;
            // The API's own checks, with this configuration's egress policy; the stock
            // binary has no in-process kinds, so the job goes to pull workers or is pushed.
            let egress = switchboard_queue::egress::Egress::new(config.push_allow.clone());
            let new =
                crate::queue::validate_with(&egress, &[], &spec, time::now()).map_err(|e| {
                    anyhow::anyhow!(e
                        .iter()
                        .map(|i| format!("--{}: {}", i.field.replace('_', "-"), i.message))
                        .collect::<Vec<_>>()
                        .join("; "))
                })?;
            let mut tx = db.begin().await?;
            store::create_queues(
                &mut tx,
                &project,
                &[&new.queue],
                config.max_queues_per_project,
            )
            .await?;
            let out = switchboard_queue::enqueue_in(&mut tx, &project, std::slice::from_ref(&new))
                .await?;
            tx.commit().await?;
            if !out[0].created {
                eprintln!("switchboard: the unique key is held by this existing job");
            }
            say!("{}", out[0].job.id);
        }
        JobCommand::Get { id, project } => {
            let project = project_for(&db, project).await?;
            let mut conn = db.read().await?;
            let job = match switchboard_queue::JobId::parse(&id) {
                Ok(job) => store::get(conn.ex(), &project, &job).await?,
                Err(_) => None,
            }
            .with_context(|| format!("no job {id}"))?;
            let errors = store::attempt_errors(conn.ex(), &job.id).await?;
            say!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "job": job, "errors": errors }))?
            );
        }
        JobCommand::Retry { id, project } => {
            let project = project_for(&db, project).await?;
            let id = crate::queue::job_id(&id).map_err(api_err)?;
            let job = service::job_op(&db, &cli_actor(&project), &id, JobOp::Retry)
                .await
                .map_err(api_err)?;
            say!("{} {}", job.id, job.state.as_str());
        }
        JobCommand::Cancel { id, project } => {
            let project = project_for(&db, project).await?;
            let id = crate::queue::job_id(&id).map_err(api_err)?;
            let job = service::job_op(&db, &cli_actor(&project), &id, JobOp::Cancel)
                .await
                .map_err(api_err)?;
            say!("{} {}", job.id, job.state.as_str());
        }
    }
    db.close().await;
    Ok(())
}

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
    /// Every queue with its counts.
    List {
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
    /// One queue's settings, counts and throughput, as JSON.
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
    /// Delete finished jobs.
    Clean {
        /// Queue name.
        name: String,
        /// completed, failed or cancelled.
        #[arg(long, default_value = "completed")]
        state: String,
        /// Only jobs finished at least this many seconds ago.
        #[arg(long, default_value_t = 0)]
        older_than_secs: i64,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
}

/// `switchboard job …`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Enqueue a job; prints its id.
    Enqueue {
        /// Queue.
        #[arg(long)]
        queue: String,
        /// Kind.
        #[arg(long)]
        kind: String,
        /// JSON payload.
        #[arg(long, default_value = "null")]
        payload: String,
        /// critical, high, normal, low or 0–100.
        #[arg(long)]
        priority: Option<String>,
        /// Start no earlier than this many ms from now.
        #[arg(long)]
        delay_ms: Option<i64>,
        /// Project id (default: the first project).
        #[arg(long)]
        project: Option<String>,
    },
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
            Command::Doctor => Ok(doctor(&config).await),
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
        println!(
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
    println!("migrations applied ({})", db.backend().name());
    db.close().await;
    Ok(())
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
    first
        .map(ProjectId::from_db)
        .context("no project yet: run `switchboard serve` once to create the default project")
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
    let (db, _) = app::connect(config).await?;
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            project,
        } => {
            let project = project_for(&db, project).await?;
            let scopes = Scopes::try_from(scopes.split(',').map(str::to_owned).collect::<Vec<_>>())
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
            println!("{}\t{}", created.key.id, created.secret);
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
                println!(
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
            println!("revoked {id}");
        }
    }
    db.close().await;
    Ok(())
}

async fn users_cmd(config: &Config, cmd: UsersCommand) -> anyhow::Result<()> {
    let (db, _) = app::connect(config).await?;
    let UsersCommand::Create {
        email,
        role,
        password: pw,
        name,
        project,
    } = cmd;
    let project = project_for(&db, project).await?;
    let role = Role::parse(&role)
        .with_context(|| format!("--role: `{role}` is not owner, admin, operator or viewer"))?;
    let email = users::parse_email(&email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let (pw, generated) = match pw {
        Some(p) => (p, false),
        None => (
            switchboard_core::secret::random_token("")
                .chars()
                .take(20)
                .collect(),
            true,
        ),
    };
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
        println!("{}\t{}\tpassword: {pw}", user.id, user.email);
    } else {
        println!("{}\t{}", user.id, user.email);
    }
    db.close().await;
    Ok(())
}

/// Prints one line per check; the exit code is 1 if any failed.
pub async fn doctor(config: &Config) -> ExitCode {
    let mut failed = false;
    let mut line = |ok: bool, name: &str, detail: &str| {
        failed |= !ok;
        println!("{:<4} {name:<9} {detail}", if ok { "ok" } else { "FAIL" });
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
    let storage = std::fs::create_dir_all(&config.data_dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe));
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
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn worker(config: Config) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let (db, _) = app::connect(&config).await?;
    let runtime = switchboard_queue::runtime::Runtime::builder()
        .heartbeat(std::time::Duration::from_millis(config.job_heartbeat_ms))
        .push_allow(config.push_allow.clone())
        .limits(app::limits(&config))
        .build(db.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(runtime.run(stop_rx));
    tracing::info!(backend = db.backend().name(), "worker running");
    stop.await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), running).await;
    db.close().await;
    Ok(())
}

fn queue_arg(name: &str) -> anyhow::Result<switchboard_queue::QueueName> {
    switchboard_queue::QueueName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))
}

fn api_err(e: crate::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.problem().detail)
}

async fn queue_cmd(config: &Config, cmd: QueueCommand) -> anyhow::Result<()> {
    use crate::queue::service::{self, BulkOp};
    use switchboard_queue::{store, JobState, QueueSettings};
    let (db, _) = app::connect(config).await?;
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
            println!(
                "{:<24} {:>6} {:>9} {:>9} {:>8} {:>10} {:>8} {:>9}",
                "queue",
                "paused",
                "scheduled",
                "available",
                "running",
                "completed",
                "failed",
                "retryable"
            );
            for q in store::queues(conn.ex(), &project, None).await? {
                let c = |s: JobState| q.counts.get(&s).copied().unwrap_or(0);
                println!(
                    "{:<24} {:>6} {:>9} {:>9} {:>8} {:>10} {:>8} {:>9}",
                    q.name.as_str(),
                    q.settings.paused,
                    c(JobState::Scheduled),
                    c(JobState::Available),
                    c(JobState::Running),
                    c(JobState::Completed),
                    c(JobState::Failed),
                    c(JobState::Retryable)
                );
            }
        }
        (QueueCommand::Stats { .. }, _, Some(info)) => {
            // The limits in words next to the counts, as the dashboard shows them.
            let mut v = serde_json::to_value(&info)?;
            v["running_limit"] = serde_json::json!(info.settings.running_limit());
            println!("{}", serde_json::to_string_pretty(&v)?)
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
            println!("paused {n}");
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
            println!("resumed {n}");
        }
        (QueueCommand::RetryFailed { .. }, Some(n), _) => {
            let count = service::bulk(&db, &ctx, &n, BulkOp::RetryFailed)
                .await
                .map_err(api_err)?;
            println!("retried {count} failed jobs of {n}");
        }
        (
            QueueCommand::Clean {
                state,
                older_than_secs,
                ..
            },
            Some(n),
            _,
        ) => {
            let state = JobState::parse(&state)
                .filter(|s| s.is_final())
                .context("--state must be completed, failed or cancelled")?;
            let before = time::add_secs(time::now(), -older_than_secs.max(0));
            let mut total = 0;
            loop {
                let op = BulkOp::Clean {
                    state,
                    before,
                    limit: 10_000,
                };
                let n_done = service::bulk(&db, &ctx, &n, op).await.map_err(api_err)?;
                total += n_done;
                if n_done < 10_000 {
                    break;
                }
            }
            println!("deleted {total} {} jobs of {n}", state.as_str());
        }
        _ => {}
    }
    db.close().await;
    Ok(())
}

async fn job_cmd(config: &Config, cmd: JobCommand) -> anyhow::Result<()> {
    use crate::queue::service::{self, JobOp};
    use switchboard_queue::{store, JobSpec};
    let (db, _) = app::connect(config).await?;
    match cmd {
        JobCommand::Enqueue {
            queue,
            kind,
            payload,
            priority,
            delay_ms,
            project,
        } => {
            let project = project_for(&db, project).await?;
            let payload: serde_json::Value =
                serde_json::from_str(&payload).context("--payload is not JSON")?;
            let priority = priority.map(|p| {
                p.parse::<i64>()
                    .map(serde_json::Value::from)
                    .unwrap_or(serde_json::Value::String(p))
            });
            let spec: JobSpec = serde_json::from_value(serde_json::json!({
                "queue": queue, "kind": kind, "payload": payload, "priority": priority, "delay_ms": delay_ms,
            }))?;
            let new = spec.validate(time::now(), &[]).map_err(|e| {
                anyhow::anyhow!(e
                    .iter()
                    .map(|i| i.to_string())
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
            let out = store::enqueue(&mut tx, &project, std::slice::from_ref(&new)).await?;
            tx.commit().await?;
            println!("{}", out[0].job.id);
        }
        JobCommand::Get { id, project } => {
            let project = project_for(&db, project).await?;
            let mut conn = db.read().await?;
            let job = store::get(conn.ex(), &project, &id)
                .await?
                .with_context(|| format!("no job {id}"))?;
            let errors = store::attempt_errors(conn.ex(), &job.id).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "job": job, "errors": errors }))?
            );
        }
        JobCommand::Retry { id, project } => {
            let project = project_for(&db, project).await?;
            let job = service::job_op(&db, &cli_actor(&project), &id, JobOp::Retry)
                .await
                .map_err(api_err)?;
            println!("{} {}", job.id, job.state.as_str());
        }
        JobCommand::Cancel { id, project } => {
            let project = project_for(&db, project).await?;
            let job = service::job_op(&db, &cli_actor(&project), &id, JobOp::Cancel)
                .await
                .map_err(api_err)?;
            println!("{} {}", job.id, job.state.as_str());
        }
    }
    db.close().await;
    Ok(())
}

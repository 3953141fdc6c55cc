//! The command line: `serve`, `migrate`, `keys`, `users`, `doctor`, `worker`, `queue`,
//! `job`, `bench`. This file holds the clap types, [`run`] and what several commands share;
//! each command group has its file. Commands that change platform or queue state call the
//! same services as the API (audited as the system actor `cli`).

/// Writes one line to stdout. A stdout closed by its reader (`switchboard job get ID | head`)
/// is a [`StdoutClosed`] error, which ends the command quietly (exit 141, as a shell tool
/// killed by SIGPIPE), where `println!` would panic.
macro_rules! say {
    ($($t:tt)*) => { $crate::cli::write_line(format_args!($($t)*))? };
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

mod doctor;
mod job;
mod keys;
mod migrate;
mod open;
mod queue;
mod serve;
mod users;
mod worker;

pub use doctor::doctor;
pub use serve::shutdown_signal;

use crate::auth::Caller;
use crate::platform::PlatformError;
use clap::{Parser, Subcommand};
use job::job_cmd;
use keys::keys;
use migrate::migrate;
use queue::queue_cmd;
use serve::serve;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_core::audit::AuditContext;
use switchboard_core::config::{Config, CONFIG_FILE_ENV};
use switchboard_core::id::ProjectId;
use users::users_cmd;
use worker::worker;

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

/// The audit context of the CLI acting in `project` (what the queue service takes).
fn cli_actor(project: &ProjectId) -> AuditContext {
    operator(project).audit()
}

/// The node's operator acting in `project`, as the audit trail names the CLI.
fn operator(project: &ProjectId) -> Caller {
    Caller::operator(project, CLI_ACTOR)
}

/// How the audit trail names the CLI.
const CLI_ACTOR: &str = "cli";

/// A platform service's refusal in the CLI's words: input issues name their flag.
fn cli_error(e: PlatformError) -> anyhow::Error {
    match e {
        PlatformError::Invalid(issues) => anyhow::anyhow!(
            "{}",
            issues
                .iter()
                .map(|i| format!("--{} {}", i.field.replace('_', "-"), i.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.into(),
    }
}

/// A refusal in the API's words (its detail), for commands whose service answers in them.
fn api_err(e: impl Into<crate::error::ApiError>) -> anyhow::Error {
    anyhow::anyhow!("{}", e.into().problem().detail)
}

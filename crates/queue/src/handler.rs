//! The seam between the queue engine and the code that runs jobs in-process: what a handler
//! is given ([`JobContext`]), what it answers ([`HandlerFuture`], [`JobError`]), and the
//! built-in kinds Switchboard's own capabilities register ([`BuiltinKind`]).
//!
//! A handler of a built-in kind reads and writes its domain's rows through `ctx.db`, scoped
//! to `ctx.project`, and reaches providers through `ctx.services`:
//!
//! ```ignore
//! pub const DELIVER: BuiltinKind = BuiltinKind::new("sb.notify.deliver", "sb.notify");
//!
//! async fn deliver(ctx: JobContext) -> Result<Option<serde_json::Value>, JobError> {
//!     let mut tx = ctx.db.begin().await.map_err(JobError::db)?;
//!     // … repo calls with `&ctx.project`, a provider call through `ctx.services.http()` …
//!     tx.commit().await.map_err(JobError::db)?;
//!     Ok(None)
//! }
//! ```

use crate::egress::Egress;
use crate::model::{Job, JobKind, NewJob, QueueName, RESERVED_PREFIX};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use switchboard_core::db::Db;
use switchboard_core::id::ProjectId;
use tokio::sync::watch;

/// Why a handler failed.
#[derive(Debug, Clone)]
pub struct JobError {
    /// What went wrong.
    pub message: String,
    /// Wait at least this long before the next attempt.
    pub retry_after_ms: Option<i64>,
    /// Do not retry.
    pub permanent: bool,
}

impl JobError {
    /// A retryable failure.
    pub fn retry(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry_after_ms: None,
            permanent: false,
        }
    }

    /// A failure retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry_after_ms: None,
            permanent: true,
        }
    }

    /// A database failure: retried (the database may be back by the next attempt).
    pub fn db(e: impl std::fmt::Display) -> JobError {
        JobError::retry(format!("database: {e}"))
    }
}

/// What a handler sees.
pub struct JobContext {
    /// The job.
    pub job: Job,
    /// The project the job belongs to: every row a handler reads or writes for it is scoped
    /// to this project.
    pub project: ProjectId,
    /// The database.
    pub db: Db,
    /// What handlers share on this node (the HTTP client for providers, …).
    pub services: Services,
    /// Becomes true when the job is cancelled (or its lease is lost).
    pub cancelled: watch::Receiver<bool>,
}

/// Output of a handler run.
pub type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, JobError>> + Send>>;

/// An in-process job handler.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt.
    fn run(&self, ctx: JobContext) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<serde_json::Value>, JobError>> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(self(ctx))
    }
}

/// What the handlers of a node share, cheap to clone: an HTTP client that reaches only what
/// the node's egress policy permits (the one push jobs use), and room for what later
/// capabilities share (a cache, provider clients).
#[derive(Clone, Debug)]
pub struct Services(Arc<ServicesInner>);

#[derive(Debug)]
struct ServicesInner {
    egress: Egress,
    http: reqwest::Client,
}

impl Services {
    /// Services whose HTTP client follows `egress` (see [`Egress::client`]).
    pub fn new(egress: Egress) -> Services {
        Services(Arc::new(ServicesInner {
            http: egress.client(),
            egress,
        }))
    }

    /// The HTTP client for outgoing calls: resolves names through the egress policy, uses no
    /// proxy from the environment, follows no redirects.
    pub fn http(&self) -> &reqwest::Client {
        &self.0.http
    }

    /// The egress policy the client follows (check IP-literal URLs with
    /// [`Egress::check_url`] before calling them).
    pub fn egress(&self) -> &Egress {
        &self.0.egress
    }
}

/// A kind of Switchboard's own jobs and the queue they run in, both named under
/// [`RESERVED_PREFIX`] (`sb.`): API callers can neither enqueue them nor claim them, so only
/// the nodes' in-process handlers run them. [`BuiltinKind::new`] refuses other names at
/// compile time when used in a `const`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinKind {
    kind: &'static str,
    queue: &'static str,
}

impl BuiltinKind {
    /// The kind `kind`, run in the queue `queue`; both must start with `sb.`.
    pub const fn new(kind: &'static str, queue: &'static str) -> BuiltinKind {
        assert!(
            reserved(kind) && reserved(queue),
            "built-in kinds and their queues are named `sb.…`"
        );
        BuiltinKind { kind, queue }
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The queue its jobs run in.
    pub fn queue(&self) -> &'static str {
        self.queue
    }

    /// A job of this kind in its queue, runnable now, with the defaults of `POST /v1/jobs`
    /// (change fields of the result for others).
    pub fn job(&self, payload: serde_json::Value) -> NewJob {
        NewJob::local(
            QueueName::from_db(self.queue.to_owned()),
            JobKind::from_db(self.kind.to_owned()),
            payload,
        )
    }
}

/// Whether `name` starts with [`RESERVED_PREFIX`] (usable in `const` context).
const fn reserved(name: &str) -> bool {
    let (name, prefix) = (name.as_bytes(), RESERVED_PREFIX.as_bytes());
    if name.len() <= prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if name[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_live_in_reserved_queues() {
        const K: BuiltinKind = BuiltinKind::new("sb.test.ping", "sb.test");
        let job = K.job(serde_json::json!({"n": 1}));
        assert!(job.kind.is_reserved() && job.queue.is_reserved());
        assert_eq!(job.runner, crate::model::Runner::Local);
        assert!(job.check_reserved().is_ok());
        assert!(reserved("sb.x") && !reserved("sb.") && !reserved("sbx.y") && !reserved("s"));
    }

    #[test]
    #[should_panic(expected = "named `sb.")]
    fn other_names_are_refused() {
        let _ = BuiltinKind::new("notify.deliver", "sb.notify");
    }
}

//! The queue's domain errors: what its store, runtime and services refuse, and why. The
//! server maps them to HTTP problems in one place (`impl From<QueueError> for ApiError` in
//! `crates/server/src/queue/mod.rs`).

use crate::model::Invalid;

/// What the queue engine refuses, or what failed under it.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No such job (or queue, or schedule) in this project.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The lease token is not the job's current one: another worker holds it now, or the
    /// lease expired and the job was handed out again.
    #[error("the lease token is stale: this job was re-leased or is no longer running")]
    StaleLease,
    /// The job was cancelled while running.
    #[error("the job was cancelled")]
    Cancelled,
    /// The operation does not apply to the job's state.
    #[error("{0}")]
    WrongState(String),
    /// Bad input: each complaint names its field.
    #[error("{}", describe(.0))]
    Invalid(Vec<Invalid>),
    /// Creating the queue(s) would give the project more queues than it may have.
    #[error(
        "this project already has {existing} queues and may have at most {limit} \
         (SWITCHBOARD_MAX_QUEUES_PER_PROJECT); this would create {new} more: use existing queues"
    )]
    QueueLimit {
        /// The cap.
        limit: u32,
        /// The project's queues now.
        existing: i64,
        /// Queues the request would have created.
        new: usize,
    },
    /// The project may not have another schedule of this kind (the message says which cap).
    #[error("{0}")]
    ScheduleLimit(String),
    /// Another schedule of the project has this name.
    #[error("a schedule with this name already exists")]
    ScheduleNameTaken,
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<Invalid> for QueueError {
    fn from(i: Invalid) -> Self {
        QueueError::Invalid(vec![i])
    }
}

impl From<Vec<Invalid>> for QueueError {
    fn from(list: Vec<Invalid>) -> Self {
        QueueError::Invalid(list)
    }
}

fn describe(list: &[Invalid]) -> String {
    list.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Result of the queue's operations.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

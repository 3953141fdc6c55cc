//! The queue engine's HTTP surface: `/v1/jobs`, `/v1/queues`, `/v1/schedules`.
//!
//! Admin actions (queue settings, pause/resume, clean, retries, cancels, deletes, schedules)
//! are audited; the data plane (enqueue, claim, heartbeat, complete, fail) is measured by
//! metrics instead, so the audit chain never becomes the queue's bottleneck.

pub mod jobs;
pub mod queues;
pub mod schedules;

/// The queue's services (in the queue crate), which the routes, the dashboard and the CLI
/// call.
pub use switchboard_queue::service;

use crate::error::{codes, ApiError, FieldError};
use switchboard_core::time::Timestamp;
use switchboard_queue::egress::Egress;
use switchboard_queue::runtime::Runtime;
use switchboard_queue::{Invalid, JobId, JobSpec, NewJob, QueueError, ScheduleId};

/// Every refusal of the queue engine as an HTTP problem (the one place they are mapped).
impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotFound(what) => ApiError::not_found(what),
            QueueError::StaleLease => ApiError::new(codes::STALE_LEASE, e.to_string()),
            QueueError::Cancelled => ApiError::new(codes::JOB_CANCELLED, e.to_string()),
            QueueError::WrongState(m) => ApiError::new(codes::INVALID_STATE, m),
            QueueError::Invalid(list) => invalid(list, ""),
            QueueError::QueueLimit { .. } => ApiError::new(codes::QUEUE_LIMIT, e.to_string()),
            QueueError::ScheduleLimit(m) => ApiError::new(codes::SCHEDULE_LIMIT, m),
            QueueError::ScheduleNameTaken => ApiError::new(codes::NAME_TAKEN, e.to_string()),
            QueueError::Db(e) => e.into(),
        }
    }
}

/// A job id from a path: one that cannot be an id names no job (404, as an unknown one).
pub fn job_id(id: &str) -> Result<JobId, QueueError> {
    JobId::parse(id).map_err(|_| QueueError::NotFound("job"))
}

/// A schedule id from a path (404 when it cannot be one).
pub fn schedule_id(id: &str) -> Result<ScheduleId, QueueError> {
    ScheduleId::parse(id).map_err(|_| QueueError::NotFound("schedule"))
}

/// 422 from domain complaints, with field paths under `prefix` (e.g. `jobs[3].`).
pub fn invalid(list: Vec<Invalid>, prefix: &str) -> ApiError {
    ApiError::invalid(
        list.into_iter()
            .map(|i| FieldError {
                field: format!("{prefix}{}", i.field),
                message: i.message,
            })
            .collect(),
    )
}

/// Validates a job as clients describe it, with this node's handlers and egress policy: a
/// push target whose URL is an IP literal the node would refuse to reach is refused here
/// already (names are checked when they are resolved, at delivery).
pub fn validate_spec(
    runtime: &Runtime,
    spec: &JobSpec,
    now: Timestamp,
) -> Result<NewJob, Vec<Invalid>> {
    validate_with(runtime.egress(), runtime.local_kinds(), spec, now)
}

/// [`validate_spec`] with an egress policy and in-process kinds given (the CLI, which runs
/// no runtime, validates `job enqueue` so).
pub fn validate_with(
    egress: &Egress,
    local_kinds: &[String],
    spec: &JobSpec,
    now: Timestamp,
) -> Result<NewJob, Vec<Invalid>> {
    let refused = spec
        .target
        .as_ref()
        .and_then(|t| egress.check_url(&t.url).err())
        .map(|r| Invalid::new("target", r.to_string()));
    match (spec.validate(now, local_kinds), refused) {
        (Ok(job), None) => Ok(job),
        (Ok(_), Some(r)) => Err(vec![r]),
        (Err(mut e), Some(r)) => {
            e.push(r);
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

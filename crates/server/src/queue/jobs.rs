//! `/v1/jobs`: enqueue (single and batch), inspect, retry, cancel, delete, and the pull
//! worker's heartbeat / complete / fail with the lease token.

use super::service::{self, JobOp};
use super::{invalid, job_id, validate_spec};
use crate::auth::{scope, Authed};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::page::Page;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchboard_core::id::ProjectId;
use switchboard_core::rules::{self, Chars, Int, Items, Text};
use switchboard_core::time;
use switchboard_queue::store::{self, Enqueued, FailOptions, JobFilter};
use switchboard_queue::{AttemptError, Job, JobId, JobSpec, JobState, NewJob, QueueName};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Routes of this capability.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(create_batch))
        .routes(routes!(get_job, delete_job))
        .routes(routes!(retry_job))
        .routes(routes!(cancel_job))
        .routes(routes!(heartbeat))
        .routes(routes!(complete))
        .routes(routes!(fail))
}

/// Most jobs in one batch.
pub const MAX_BATCH: usize = 10_000;
/// Jobs in one batch.
pub const BATCH: Items = Items::new(1, MAX_BATCH);
/// Lease lengths, ms.
pub const LEASE_MS: Int = Int::new(1_000, 3_600_000);
/// Lease length unless a worker says otherwise, ms.
pub const DEFAULT_LEASE_MS: i64 = 30_000;
/// `retry_after_ms` of a failed attempt.
pub const RETRY_AFTER_MS: Int = Int::new(0, 30 * 24 * 3600 * 1000).said("0 to 30 days (in ms)");
/// What went wrong, as a worker reports it.
pub const ERROR_TEXT: Text = Text::new(1, usize::MAX, Chars::NotBlank);

fn batch_schema() -> utoipa::openapi::schema::Schema {
    BATCH.schema(
        utoipa::openapi::Ref::from_schema_name("JobSpec"),
        "Jobs, inserted all or none",
        "jobs",
    )
}
/// The schema of an optional `lease_ms`.
pub fn lease_schema() -> utoipa::openapi::Object {
    LEASE_MS.nullable(&format!(
        "Lease length from now, ms (default {DEFAULT_LEASE_MS}); heartbeat before it ends"
    ))
}
fn retry_after_schema() -> utoipa::openapi::Object {
    RETRY_AFTER_MS.nullable("Wait at least this long before the next attempt, ms")
}
fn error_schema() -> utoipa::openapi::Object {
    ERROR_TEXT.schema("What went wrong")
}

/// A job with its attempt history.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Every failed attempt.
    pub errors: Vec<AttemptError>,
}

/// Inserts validated jobs (all or none) and wakes their queues.
pub async fn enqueue(
    state: &AppState,
    project: &ProjectId,
    jobs: &[NewJob],
) -> ApiResult<Vec<Enqueued>> {
    Ok(state.runtime.enqueue(project, jobs).await?)
}

/// Enqueues a job. A job whose `unique_key` is still held returns the existing job (200).
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body = JobSpec,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = Job, description = "Created"), (status = 200, body = Job, description = "Existing job with the same unique key"), (status = 409, description = "queue-limit")),
    security(("bearer" = ["jobs:write"])))]
async fn create_job(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Json(spec): Json<JobSpec>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let new = validate_spec(&state.runtime, &spec, time::now()).map_err(|e| invalid(e, ""))?;
    let mut out = enqueue(&state, auth.project(), std::slice::from_ref(&new)).await?;
    let e = out.remove(0);
    let status = if e.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(e.job)))
}

/// Body of `POST /v1/jobs/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    /// Up to 10,000 jobs, inserted all or none.
    #[schema(schema_with = batch_schema)]
    pub jobs: Vec<JobSpec>,
}

/// One entry of a batch answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// Job id.
    pub id: String,
    /// Its state.
    #[schema(value_type = String)]
    pub state: JobState,
    /// False for a duplicate unique key (the existing job's id is given).
    pub created: bool,
}

/// Answer of `POST /v1/jobs/batch`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    /// In request order.
    pub jobs: Vec<BatchItem>,
}

/// Enqueues up to 10,000 jobs in one transaction.
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs",
    request_body = BatchIn,
    responses((status = 201, body = BatchOut), (status = 409, description = "queue-limit")),
    security(("bearer" = ["jobs:write"])))]
async fn create_batch(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Json(input): Json<BatchIn>,
) -> ApiResult<(StatusCode, Json<BatchOut>)> {
    if !BATCH.allows(input.jobs.len()) {
        return Err(ApiError::invalid_field("jobs", BATCH.message("jobs")));
    }
    let now = time::now();
    let mut valid = Vec::with_capacity(input.jobs.len());
    let mut errors = Vec::new();
    for (i, spec) in input.jobs.iter().enumerate() {
        match validate_spec(&state.runtime, spec, now) {
            Ok(j) => valid.push(j),
            Err(e) => errors.extend(invalid(e, &format!("jobs[{i}].")).problem().errors),
        }
        if errors.len() >= 100 {
            break;
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let out = enqueue(&state, auth.project(), &valid).await?;
    let jobs = out
        .into_iter()
        .map(|e| BatchItem {
            id: e.job.id.to_string(),
            state: e.job.state,
            created: e.created,
        })
        .collect();
    Ok((StatusCode::CREATED, Json(BatchOut { jobs })))
}

/// Filters of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// Queue.
    #[param(schema_with = queue_filter_schema)]
    pub queue: Option<String>,
    /// scheduled, available, running, completed, retryable, failed or cancelled.
    #[param(schema_with = state_filter_schema)]
    pub state: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// Tag.
    pub tag: Option<String>,
    /// 1 to 200 (default 50).
    #[param(schema_with = crate::page::limit_schema)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub after: Option<String>,
}

fn queue_filter_schema() -> utoipa::openapi::Object {
    switchboard_queue::QUEUE_NAME.schema("Only jobs of this queue")
}
fn state_filter_schema() -> utoipa::openapi::Object {
    let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
    rules::one_of(&states, "Only jobs in this state")
}

/// Parses job filters from a query.
pub fn job_filter(q: &JobQuery) -> ApiResult<JobFilter> {
    Ok(JobFilter {
        queue: q
            .queue
            .as_deref()
            .map(QueueName::parse)
            .transpose()
            .map_err(|e| invalid(vec![e], ""))?,
        state: q
            .state
            .as_deref()
            .map(|s| {
                JobState::parse(s)
                    .ok_or_else(|| ApiError::invalid_field("state", "is not a job state"))
            })
            .transpose()?,
        kind: q.kind.clone(),
        tag: q.tag.clone(),
        before_id: q.after.clone(),
    })
}

/// Lists jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(JobQuery),
    responses((status = 200, body = Page<Job>)),
    security(("bearer" = ["jobs:read"])))]
async fn list_jobs(
    State(state): State<AppState>,
    auth: Authed<scope::JobsRead>,
    Query(q): Query<JobQuery>,
) -> ApiResult<Json<Page<Job>>> {
    let limit = crate::page::check_limit(q.limit)?;
    let filter = job_filter(&q)?;
    let mut conn = state.db.read().await?;
    let jobs = store::list(conn.ex(), auth.project(), &filter, limit + 1).await?;
    Ok(Json(Page::from_overfetch(jobs, limit, |j| {
        j.id.to_string()
    })))
}

/// Loads a job with its attempt errors.
pub async fn load_detail(
    state: &AppState,
    project: &ProjectId,
    id: &JobId,
) -> ApiResult<JobDetail> {
    let mut conn = state.db.read().await?;
    let job = store::get(conn.ex(), project, id)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    let errors = store::attempt_errors(conn.ex(), &job.id).await?;
    Ok(JobDetail { job, errors })
}

/// One job with the errors of its failed attempts.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobDetail), (status = 404, description = "not-found")),
    security(("bearer" = ["jobs:read"])))]
async fn get_job(
    State(state): State<AppState>,
    auth: Authed<scope::JobsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobDetail>> {
    load_detail(&state, auth.project(), &job_id(&id)?)
        .await
        .map(Json)
}

/// Runs `op` with its audit event, then wakes the queue or signals the job's worker.
pub async fn admin_op(
    state: &AppState,
    auth: &Authed<scope::JobsWrite>,
    id: &str,
    op: JobOp,
) -> ApiResult<Job> {
    let id = job_id(id)?;
    let job = service::job_op(&state.db, &auth.audit(), &id, op).await?;
    match op {
        JobOp::Retry => state
            .runtime
            .wakeups()
            .wake(auth.project().as_str(), job.queue.as_str()),
        JobOp::Cancel | JobOp::Delete => state.runtime.signal_cancel(&id),
    }
    Ok(job)
}

/// Makes a finished job available again with a fresh set of attempts.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, description = "not-found"), (status = 409, description = "invalid-state")),
    security(("bearer" = ["jobs:write"])))]
async fn retry_job(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    admin_op(&state, &auth, &id, JobOp::Retry).await.map(Json)
}

/// Cancels a job; a running job's worker is told on its next heartbeat.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, description = "not-found"), (status = 409, description = "invalid-state")),
    security(("bearer" = ["jobs:write"])))]
async fn cancel_job(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    admin_op(&state, &auth, &id, JobOp::Cancel).await.map(Json)
}

/// Deletes a job and its history.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, description = "not-found")),
    security(("bearer" = ["jobs:write"])))]
async fn delete_job(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    admin_op(&state, &auth, &id, JobOp::Delete).await.map(Json)
}

/// Body of `POST /v1/jobs/{id}/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatIn {
    /// From the claim.
    pub lease_token: String,
    /// New lease length from now, ms, 1,000–3,600,000 (default: the length the job was
    /// claimed with, or the last one a heartbeat gave). Later heartbeats keep it.
    #[schema(schema_with = lease_schema)]
    pub lease_ms: Option<i64>,
    /// Progress to record (any JSON, e.g. a percentage).
    #[schema(value_type = Option<Object>)]
    pub progress: Option<serde_json::Value>,
}

/// Answer of a heartbeat.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatOut {
    /// The lease now ends at.
    #[schema(value_type = String, format = DateTime)]
    pub lease_expires_at: time::Timestamp,
}

/// Validates a lease length.
pub fn lease_ms(v: Option<i64>) -> ApiResult<i64> {
    LEASE_MS
        .check(v.unwrap_or(DEFAULT_LEASE_MS))
        .map_err(|m| ApiError::invalid_field("lease_ms", m))
}

/// Extends the lease; 409 `job-cancelled` tells the worker to stop, 409 `stale-lease` that
/// the job was handed to someone else.
#[utoipa::path(post, path = "/v1/jobs/{id}/heartbeat", tag = "workers",
    params(("id" = String, Path, description = "Job id")),
    request_body = HeartbeatIn,
    responses((status = 200, body = HeartbeatOut), (status = 404, description = "not-found"), (status = 409, description = "stale-lease, job-cancelled")),
    security(("bearer" = ["jobs:write"])))]
async fn heartbeat(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Path(id): Path<String>,
    Json(input): Json<HeartbeatIn>,
) -> ApiResult<Json<HeartbeatOut>> {
    let lease = input.lease_ms.map(|v| lease_ms(Some(v))).transpose()?;
    let until = state
        .runtime
        .gatherer()
        .heartbeat(
            auth.project(),
            &job_id(&id)?,
            &input.lease_token,
            lease,
            input.progress,
        )
        .await?;
    Ok(Json(HeartbeatOut {
        lease_expires_at: until,
    }))
}

/// Body of `POST /v1/jobs/{id}/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteIn {
    /// From the claim.
    pub lease_token: String,
    /// Result to store (any JSON).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

/// Completes a claimed job; a stale token is refused with 409.
#[utoipa::path(post, path = "/v1/jobs/{id}/complete", tag = "workers",
    params(("id" = String, Path, description = "Job id")),
    request_body = CompleteIn,
    responses((status = 200, body = Job), (status = 404, description = "not-found"), (status = 409, description = "stale-lease, job-cancelled")),
    security(("bearer" = ["jobs:write"])))]
async fn complete(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Path(id): Path<String>,
    Json(input): Json<CompleteIn>,
) -> ApiResult<Json<Job>> {
    let job = state
        .runtime
        .gatherer()
        .complete(
            auth.project(),
            &job_id(&id)?,
            &input.lease_token,
            input.result,
        )
        .await?;
    Ok(Json(job))
}

/// Body of `POST /v1/jobs/{id}/fail`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailIn {
    /// From the claim.
    pub lease_token: String,
    /// What went wrong.
    #[schema(schema_with = error_schema)]
    pub error: String,
    /// Wait at least this long before the next attempt, ms.
    #[schema(schema_with = retry_after_schema)]
    pub retry_after_ms: Option<i64>,
    /// Do not retry.
    #[serde(default)]
    pub permanent: bool,
}

/// Fails the attempt: retryable with backoff while attempts remain, else failed.
#[utoipa::path(post, path = "/v1/jobs/{id}/fail", tag = "workers",
    params(("id" = String, Path, description = "Job id")),
    request_body = FailIn,
    responses((status = 200, body = Job), (status = 404, description = "not-found"), (status = 409, description = "stale-lease, job-cancelled")),
    security(("bearer" = ["jobs:write"])))]
async fn fail(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Path(id): Path<String>,
    Json(input): Json<FailIn>,
) -> ApiResult<Json<Job>> {
    if let Err(m) = ERROR_TEXT.check(&input.error) {
        return Err(ApiError::invalid_field("error", m));
    }
    if let Some(Err(m)) = input.retry_after_ms.map(|r| RETRY_AFTER_MS.check(r)) {
        return Err(ApiError::invalid_field("retry_after_ms", m));
    }
    let opts = FailOptions {
        retry_after_ms: input.retry_after_ms,
        permanent: input.permanent,
    };
    let job = state
        .runtime
        .gatherer()
        .fail(
            auth.project(),
            &job_id(&id)?,
            &input.lease_token,
            &input.error,
            opts,
        )
        .await?;
    Ok(Json(job))
}

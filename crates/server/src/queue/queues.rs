//! `/v1/queues`: counts and settings, pause/resume, retry-failed, clean, and the pull
//! workers' long-polling claim.

use super::invalid;
use super::service::{self, BulkOp};
use crate::auth::{scope, Authed};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::page::Page;
use crate::state::AppState;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use switchboard_core::rules::{self, Chars, Int, Text};
use switchboard_core::time;
use switchboard_queue::store;
use switchboard_queue::{
    ClaimedJob, Invalid, JobState, QueueError, QueueInfo, QueueName, QueueSettings, RateLimit,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Jobs one node runs at once.
pub const CONCURRENCY: Int = Int::new(1, 1000);
/// Jobs running at once across the cluster.
pub const GLOBAL_CONCURRENCY: Int = Int::new(1, 100_000);
/// How long finished jobs are kept, seconds.
pub const KEEP_SECS: Int = Int::new(0, 365 * 24 * 3600).said("0 to 365 days in seconds");
/// `older_than_ms` of a clean.
pub const OLDER_THAN_MS: Int = Int::new(0, i64::MAX).said("0 or more");
/// Most jobs one clean deletes.
pub const CLEAN_LIMIT: Int = Int::new(1, 10_000);
/// Worker names.
pub const WORKER: Text = Text::new(1, 200, Chars::NotBlank);
/// Jobs one claim takes.
pub const CLAIM_MAX: Int = Int::new(1, 1000);
/// How long a claim waits for a job, ms.
pub const WAIT_MS: Int = Int::new(0, 30_000);

/// The `{name}` of queue routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct QueuePath {
    /// Queue name.
    #[param(schema_with = name_schema)]
    name: String,
}

fn name_schema() -> utoipa::openapi::Object {
    switchboard_queue::QUEUE_NAME.schema("Queue name")
}
fn concurrency_schema() -> utoipa::openapi::Object {
    CONCURRENCY.nullable("Jobs one node runs at once (in-process and push)")
}
fn global_schema() -> utoipa::openapi::Object {
    GLOBAL_CONCURRENCY.nullable("Running jobs across the cluster, or null for no cap")
}
fn keep_schema() -> utoipa::openapi::Object {
    KEEP_SECS.nullable("Keep finished jobs of this state this long, seconds")
}
fn clean_state_schema() -> utoipa::openapi::Object {
    let states: Vec<&str> = JobState::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| s.as_str())
        .collect();
    rules::one_of(&states, "Delete jobs in this state")
}
fn older_than_schema() -> utoipa::openapi::Object {
    OLDER_THAN_MS.schema("Only jobs finished at least this long ago, ms (default 0)")
}
fn clean_limit_schema() -> utoipa::openapi::Object {
    CLEAN_LIMIT.nullable("At most this many (default 10000)")
}
fn worker_schema() -> utoipa::openapi::Object {
    WORKER.schema("Worker name (recorded on the job)")
}
fn claim_max_schema() -> utoipa::openapi::Object {
    CLAIM_MAX.nullable("Most jobs to take (default 1)")
}
fn wait_schema() -> utoipa::openapi::Object {
    WAIT_MS.nullable("Wait up to this long for a job, ms (default 0)")
}

/// Routes of this capability.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_queues))
        .routes(routes!(get_queue, update_queue))
        .routes(routes!(claim))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(retry_failed))
        .routes(routes!(clean))
        .routes(routes!(push_secret))
}

fn queue_name(s: &str) -> ApiResult<QueueName> {
    QueueName::parse(s).map_err(|_| ApiError::not_found("queue"))
}

/// Every queue of the project with counts per state and last-minute throughput.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, body = Page<QueueInfo>)),
    security(("bearer" = ["queues:read"])))]
async fn list_queues(
    State(state): State<AppState>,
    auth: Authed<scope::QueuesRead>,
) -> ApiResult<Json<Page<QueueInfo>>> {
    let mut conn = state.db.read().await?;
    let data = store::queues(conn.ex(), auth.project(), None).await?;
    Ok(Json(Page {
        data,
        has_more: false,
        next_cursor: None,
    }))
}

/// Loads one queue or 404.
pub async fn load_queue(
    state: &AppState,
    project: &switchboard_core::id::ProjectId,
    name: &QueueName,
) -> ApiResult<QueueInfo> {
    let mut conn = state.db.read().await?;
    store::queues(conn.ex(), project, Some(name))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("queue"))
}

/// One queue.
#[utoipa::path(get, path = "/v1/queues/{name}", tag = "queues",
    params(QueuePath),
    responses((status = 200, body = QueueInfo), (status = 404, description = "not-found")),
    security(("bearer" = ["queues:read"])))]
async fn get_queue(
    State(state): State<AppState>,
    auth: Authed<scope::QueuesRead>,
    Path(name): Path<String>,
) -> ApiResult<Json<QueueInfo>> {
    load_queue(&state, auth.project(), &queue_name(&name)?)
        .await
        .map(Json)
}

/// Body of `PATCH /v1/queues/{name}`; absent fields keep their value, `null` clears a limit.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    /// Jobs one worker runs at once, 1–1000: a node's runtime (in-process and push jobs),
    /// or a pull worker by the `worker` name of its claims.
    #[schema(schema_with = concurrency_schema)]
    pub concurrency: Option<i32>,
    /// Running jobs across all workers and nodes, 1–100,000, or null for no cap.
    #[serde(default, with = "double_option")]
    #[schema(schema_with = global_schema)]
    pub global_concurrency: Option<Option<i32>>,
    /// `{limit, period_ms}` starts per period across the cluster, or null.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<Option<RateLimit>>,
    /// Keep completed jobs this long, seconds.
    #[schema(schema_with = keep_schema)]
    pub keep_completed_secs: Option<i64>,
    /// Keep failed jobs this long, seconds.
    #[schema(schema_with = keep_schema)]
    pub keep_failed_secs: Option<i64>,
    /// Keep cancelled jobs this long, seconds.
    #[schema(schema_with = keep_schema)]
    pub keep_cancelled_secs: Option<i64>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Applies a patch over settings with the API's validation (every bad field at once).
pub fn apply_patch(mut s: QueueSettings, p: &QueuePatch) -> Result<QueueSettings, QueueError> {
    let mut errors = Vec::new();
    let mut check = |result: Result<(), String>, field: &'static str| {
        if let Err(message) = result {
            errors.push(Invalid::new(field, message));
        }
    };
    let range = |rule: Int, v: i32| rule.check(i64::from(v)).map(|_| ());
    if let Some(c) = p.concurrency {
        check(range(CONCURRENCY, c), "concurrency");
        s.concurrency = c;
    }
    if let Some(g) = p.global_concurrency {
        check(
            g.map_or(Ok(()), |g| range(GLOBAL_CONCURRENCY, g))
                .map_err(|m| format!("{m} or null")),
            "global_concurrency",
        );
        s.global_concurrency = g;
    }
    if let Some(r) = p.rate_limit {
        check(r.map_or(Ok(()), |r| r.check()), "rate_limit");
        s.rate_limit = r;
    }
    // 0 keeps nothing: completed jobs are deleted as they complete, failed and cancelled
    // ones at the next retention pass.
    for (v, field, slot) in [
        (
            p.keep_completed_secs,
            "keep_completed_secs",
            &mut s.keep_completed_secs,
        ),
        (
            p.keep_failed_secs,
            "keep_failed_secs",
            &mut s.keep_failed_secs,
        ),
        (
            p.keep_cancelled_secs,
            "keep_cancelled_secs",
            &mut s.keep_cancelled_secs,
        ),
    ] {
        if let Some(v) = v {
            check(KEEP_SECS.check(v).map(|_| ()), field);
            *slot = v;
        }
    }
    if errors.is_empty() {
        Ok(s)
    } else {
        Err(QueueError::Invalid(errors))
    }
}

async fn save(
    state: &AppState,
    auth: &Authed<scope::QueuesWrite>,
    name: &QueueName,
    action: &str,
    change: impl FnOnce(QueueSettings) -> Result<QueueSettings, QueueError>,
) -> ApiResult<QueueInfo> {
    let max = state.runtime.limits().queues;
    service::save_settings(&state.db, &auth.audit(), name, action, max, change).await?;
    state
        .runtime
        .wakeups()
        .settings_changed(auth.project().as_str(), name.as_str());
    load_queue(state, auth.project(), name).await
}

/// Changes a queue's settings (creating the queue if needed).
#[utoipa::path(patch, path = "/v1/queues/{name}", tag = "queues",
    params(QueuePath),
    request_body = QueuePatch,
    responses((status = 200, body = QueueInfo), (status = 409, description = "queue-limit")),
    security(("bearer" = ["queues:write"])))]
async fn update_queue(
    State(state): State<AppState>,
    auth: Authed<scope::QueuesWrite>,
    Path(name): Path<String>,
    Json(patch): Json<QueuePatch>,
) -> ApiResult<Json<QueueInfo>> {
    let name = QueueName::parse(&name).map_err(|e| invalid(vec![e], ""))?;
    save(&state, &auth, &name, "queue.update", |s| {
        apply_patch(s, &patch)
    })
    .await
    .map(Json)
}

async fn existing(
    state: &AppState,
    auth: &Authed<scope::QueuesWrite>,
    name: &str,
) -> ApiResult<QueueName> {
    let name = queue_name(name)?;
    load_queue(state, auth.project(), &name).await?;
    Ok(name)
}

/// Stops handing out jobs of this queue (running jobs finish).
#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues",
    params(QueuePath),
    responses((status = 200, body = QueueInfo), (status = 404, description = "not-found")),
    security(("bearer" = ["queues:write"])))]
async fn pause(
    State(state): State<AppState>,
    auth: Authed<scope::QueuesWrite>,
    Path(name): Path<String>,
) -> ApiResult<Json<QueueInfo>> {
    let name = existing(&state, &auth, &name).await?;
    save(&state, &auth, &name, "queue.pause", |s| {
        Ok(QueueSettings { paused: true, ..s })
    })
    .await
    .map(Json)
}

/// Resumes a paused queue.
#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues",
    params(QueuePath),
    responses((status = 200, body = QueueInfo), (status = 404, description = "not-found")),
    security(("bearer" = ["queues:write"])))]
async fn resume(
    State(state): State<AppState>,
    auth: Authed<scope::QueuesWrite>,
    Path(name): Path<String>,
) -> ApiResult<Json<QueueInfo>> {
    let name = existing(&state, &auth, &name).await?;
    save(&state, &auth, &name, "queue.resume", |s| {
        Ok(QueueSettings { paused: false, ..s })
    })
    .await
    .map(Json)
}

/// How many jobs an operation touched.
#[derive(Debug, Serialize, ToSchema)]
pub struct Affected {
    /// Count.
    pub count: i64,
}

async fn run_bulk(
    state: &AppState,
    auth: &Authed<scope::QueuesWrite>,
    name: &QueueName,
    op: BulkOp,
) -> ApiResult<Json<Affected>> {
    let count = service::bulk(&state.db, &auth.audit(), name, op).await?;
    state
        .runtime
        .wakeups()
        .wake(auth.project().as_str(), name.as_str());
    Ok(Json(Affected { count }))
}

/// Retries every failed job of the queue.
#[utoipa::path(post, path = "/v1/queues/{name}/retry-failed", tag = "queues",
    params(QueuePath),
    responses((status = 200, body = Affected), (status = 404, description = "not-found")),
    security(("bearer" = ["queues:write"])))]
async fn retry_failed(
    State(state): State<AppState>,
    auth: Authed<scope::QueuesWrite>,
    Path(name): Path<String>,
) -> ApiResult<Json<Affected>> {
    let name = existing(&state, &auth, &name).await?;
    run_bulk(&state, &auth, &name, BulkOp::RetryFailed).await
}

/// Body of `POST /v1/queues/{name}/clean`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanIn {
    /// completed, failed or cancelled.
    #[schema(schema_with = clean_state_schema)]
    pub state: String,
    /// Only jobs finished at least this long ago, ms (default 0).
    #[serde(default)]
    #[schema(schema_with = older_than_schema)]
    pub older_than_ms: i64,
    /// At most this many (default and maximum 10,000).
    #[schema(schema_with = clean_limit_schema)]
    pub limit: Option<i64>,
}

/// Deletes finished jobs of one state (BullMQ's `clean`).
#[utoipa::path(post, path = "/v1/queues/{name}/clean", tag = "queues",
    params(QueuePath),
    request_body = CleanIn,
    responses((status = 200, body = Affected), (status = 404, description = "not-found")),
    security(("bearer" = ["queues:write"])))]
async fn clean(
    State(state): State<AppState>,
    auth: Authed<scope::QueuesWrite>,
    Path(name): Path<String>,
    Json(input): Json<CleanIn>,
) -> ApiResult<Json<Affected>> {
    let name = existing(&state, &auth, &name).await?;
    let st = JobState::parse(&input.state)
        .filter(|s| s.is_final())
        .ok_or_else(|| {
            ApiError::invalid_field("state", "must be completed, failed or cancelled")
        })?;
    if let Err(m) = OLDER_THAN_MS.check(input.older_than_ms) {
        return Err(ApiError::invalid_field("older_than_ms", m));
    }
    let limit = CLEAN_LIMIT
        .check(input.limit.unwrap_or(CLEAN_LIMIT.max))
        .map_err(|m| ApiError::invalid_field("limit", m))?;
    let before = time::from_db(time::to_db(time::now()) - input.older_than_ms.saturating_mul(1000));
    run_bulk(
        &state,
        &auth,
        &name,
        BulkOp::Clean {
            state: st,
            before,
            limit,
        },
    )
    .await
}

/// Body of `POST /v1/queues/{name}/claim`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimIn {
    /// Worker name (recorded on the job), 1–200 characters.
    #[schema(schema_with = worker_schema)]
    pub worker: String,
    /// Most jobs to take, 1–1000 (default 1). A claim also takes no more than the queue's
    /// `concurrency` minus the jobs already running under this `worker` name, and no more
    /// than `global_concurrency` allows.
    #[schema(schema_with = claim_max_schema)]
    pub max: Option<i64>,
    /// Wait up to this long for a job, ms, 0–30,000 (default 0).
    #[schema(schema_with = wait_schema)]
    pub wait_ms: Option<i64>,
    /// Lease length, ms, 1,000–3,600,000 (default 30,000). Heartbeat before it ends.
    #[schema(schema_with = super::jobs::lease_schema)]
    pub lease_ms: Option<i64>,
}

/// Answer of a claim.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimOut {
    /// Claimed jobs, each with its `lease_token`.
    pub jobs: Vec<ClaimedJob>,
}

/// Claims jobs for a pull worker, long-polling up to `wait_ms`.
#[utoipa::path(post, path = "/v1/queues/{name}/claim", tag = "workers",
    params(QueuePath),
    request_body = ClaimIn,
    responses((status = 200, body = ClaimOut)),
    security(("bearer" = ["jobs:write"])))]
async fn claim(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Path(name): Path<String>,
    Json(input): Json<ClaimIn>,
) -> ApiResult<Json<ClaimOut>> {
    let name = QueueName::parse(&name).map_err(|e| invalid(vec![e], ""))?;
    if let Err(m) = WORKER.check(&input.worker) {
        return Err(ApiError::invalid_field("worker", m));
    }
    let max = CLAIM_MAX
        .check(input.max.unwrap_or(1))
        .map_err(|m| ApiError::invalid_field("max", m))?;
    let wait = WAIT_MS
        .check(input.wait_ms.unwrap_or(0))
        .map_err(|m| ApiError::invalid_field("wait_ms", m))?;
    let lease = super::jobs::lease_ms(input.lease_ms)?;
    let deadline = Instant::now() + Duration::from_millis(wait as u64);
    let notify = state
        .runtime
        .wakeups()
        .get(auth.project().as_str(), name.as_str());
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let jobs = state
            .runtime
            .gatherer()
            .claim_pull(auth.project(), &name, input.worker.trim(), max, lease)
            .await?;
        let now = Instant::now();
        if !jobs.is_empty() || now >= deadline {
            return Ok(Json(ClaimOut { jobs }));
        }
        // Woken by an enqueue on any node, or poll (a missed NOTIFY costs latency only).
        let nap = (deadline - now).min(Duration::from_millis(250));
        tokio::select! {
            _ = &mut notified => {},
            _ = tokio::time::sleep(nap) => {},
        }
    }
}

/// The project's secret for verifying HTTP-push signatures (Standard Webhooks, `whsec_…`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PushSecret {
    /// The secret.
    pub secret: String,
}

/// The secret push jobs are signed with.
#[utoipa::path(get, path = "/v1/queues/push-secret", tag = "queues",
    responses((status = 200, body = PushSecret)),
    security(("bearer" = ["queues:write"])))]
async fn push_secret(
    State(state): State<AppState>,
    auth: Authed<scope::QueuesWrite>,
) -> ApiResult<Json<PushSecret>> {
    let secret = state.runtime.push_secret(auth.project()).await?;
    Ok(Json(PushSecret { secret }))
}

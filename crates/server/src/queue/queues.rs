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
use switchboard_core::time;
use switchboard_queue::store;
use switchboard_queue::{ClaimedJob, JobState, QueueInfo, QueueName, QueueSettings, RateLimit};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

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
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueInfo), (status = 404, body = crate::error::Problem)),
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
    pub concurrency: Option<i32>,
    /// Running jobs across all workers and nodes, 1–100,000, or null for no cap.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<i32>)]
    pub global_concurrency: Option<Option<i32>>,
    /// `{limit, period_ms}` starts per period across the cluster, or null.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<Option<RateLimit>>,
    /// Keep completed jobs this long, seconds.
    pub keep_completed_secs: Option<i64>,
    /// Keep failed jobs this long, seconds.
    pub keep_failed_secs: Option<i64>,
    /// Keep cancelled jobs this long, seconds.
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
pub fn apply_patch(mut s: QueueSettings, p: &QueuePatch) -> ApiResult<QueueSettings> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, field: &str, msg: &str| {
        if !ok {
            errors.push(crate::error::FieldError {
                field: field.into(),
                message: msg.into(),
            });
        }
    };
    if let Some(c) = p.concurrency {
        check((1..=1000).contains(&c), "concurrency", "must be 1 to 1000");
        s.concurrency = c;
    }
    if let Some(g) = p.global_concurrency {
        check(
            g.is_none_or(|g| (1..=100_000).contains(&g)),
            "global_concurrency",
            "must be 1 to 100000 or null",
        );
        s.global_concurrency = g;
    }
    if let Some(r) = p.rate_limit {
        check(
            r.is_none_or(|r| {
                (1..=1_000_000).contains(&r.limit) && (1..=86_400_000).contains(&r.period_ms)
            }),
            "rate_limit",
            "limit must be 1 to 1000000 and period_ms 1 to 86400000",
        );
        s.rate_limit = r;
    }
    // 0 keeps nothing: completed jobs are deleted as they complete, failed and cancelled
    // ones at the next retention pass.
    let keep = 0..=365 * 24 * 3600;
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
            check(keep.contains(&v), field, "must be 0 to 365 days in seconds");
            *slot = v;
        }
    }
    if errors.is_empty() {
        Ok(s)
    } else {
        Err(ApiError::invalid(errors))
    }
}

async fn save(
    state: &AppState,
    auth: &Authed<scope::QueuesWrite>,
    name: &QueueName,
    action: &str,
    change: impl FnOnce(QueueSettings) -> ApiResult<QueueSettings>,
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
    params(("name" = String, Path, description = "Queue name")),
    request_body = QueuePatch,
    responses((status = 200, body = QueueInfo), (status = 409, body = crate::error::Problem, description = "`queue-limit`: the project may not have another queue"),
        (status = 422, body = crate::error::Problem)),
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
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueInfo), (status = 404, body = crate::error::Problem)),
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
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueInfo), (status = 404, body = crate::error::Problem)),
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
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = Affected), (status = 404, body = crate::error::Problem)),
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
    pub state: String,
    /// Only jobs finished at least this long ago, ms (default 0).
    #[serde(default)]
    pub older_than_ms: i64,
    /// At most this many (default and maximum 10,000).
    pub limit: Option<i64>,
}

/// Deletes finished jobs of one state (BullMQ's `clean`).
#[utoipa::path(post, path = "/v1/queues/{name}/clean", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    request_body = CleanIn,
    responses((status = 200, body = Affected), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
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
    if input.older_than_ms < 0 {
        return Err(ApiError::invalid_field(
            "older_than_ms",
            "must not be negative",
        ));
    }
    let limit = input.limit.unwrap_or(10_000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 10000"));
    }
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
    pub worker: String,
    /// Most jobs to take, 1–1000 (default 1). A claim also takes no more than the queue's
    /// `concurrency` minus the jobs already running under this `worker` name, and no more
    /// than `global_concurrency` allows.
    pub max: Option<i64>,
    /// Wait up to this long for a job, ms, 0–30,000 (default 0).
    pub wait_ms: Option<i64>,
    /// Lease length, ms, 1,000–3,600,000 (default 30,000). Heartbeat before it ends.
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
    params(("name" = String, Path, description = "Queue name")),
    request_body = ClaimIn,
    responses((status = 200, body = ClaimOut), (status = 422, body = crate::error::Problem)),
    security(("bearer" = ["jobs:write"])))]
async fn claim(
    State(state): State<AppState>,
    auth: Authed<scope::JobsWrite>,
    Path(name): Path<String>,
    Json(input): Json<ClaimIn>,
) -> ApiResult<Json<ClaimOut>> {
    let name = QueueName::parse(&name).map_err(|e| invalid(vec![e], ""))?;
    if input.worker.trim().is_empty() || input.worker.len() > 200 {
        return Err(ApiError::invalid_field(
            "worker",
            "must be 1 to 200 characters",
        ));
    }
    let max = input.max.unwrap_or(1);
    if !(1..=1000).contains(&max) {
        return Err(ApiError::invalid_field("max", "must be 1 to 1000"));
    }
    let wait = input.wait_ms.unwrap_or(0);
    if !(0..=30_000).contains(&wait) {
        return Err(ApiError::invalid_field("wait_ms", "must be 0 to 30000"));
    }
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
    let secret = state.runtime.push_secret(auth.project().as_str()).await?;
    Ok(Json(PushSecret { secret }))
}

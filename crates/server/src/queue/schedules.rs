//! `/v1/schedules`: cron schedules that enqueue a job per tick.

use super::service;
use super::{invalid, schedule_id, validate_spec};
use crate::auth::{scope, Authed};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::page::{Page, PageParams};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchboard_core::audit::AuditContext;
use switchboard_core::rules::{Chars, Int, Text};
use switchboard_core::time;
use switchboard_queue::cron::{CronSpec, Misfire, Overlap, Schedule};
use switchboard_queue::runtime::Runtime;
use switchboard_queue::{schedules as repo, Invalid, JobId, JobSpec, QueueError, ScheduleId};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Fields `POST /v1/schedules` requires (non-null); PATCH takes any subset.
pub const REQUIRED_ON_CREATE: [&str; 3] = ["name", "cron", "job"];
/// The component the OpenAPI document gives the body of `POST /v1/schedules`: `ScheduleIn`
/// with [`REQUIRED_ON_CREATE`] required.
pub const CREATE_SCHEMA: &str = "ScheduleNew";

/// Schedule names.
pub const SCHEDULE_NAME: Text = Text::new(1, 100, Chars::NotBlank);
/// Most missed ticks a backfill runs.
pub const BACKFILL_LIMIT: Int = Int::new(1, 1000);

fn name_schema() -> utoipa::openapi::Object {
    SCHEDULE_NAME.nullable("Unique name in the project, e.g. `daily-report`")
}
fn cron_schema() -> utoipa::openapi::Object {
    let mut s = switchboard_queue::cron::CRON_TEXT.nullable(
        "5 fields (`0 2 * * *`: minute, hour, day of month, month, day of week) or 6 with \
         seconds first",
    );
    s.pattern = Some(switchboard_queue::cron::cron_pattern());
    s
}
/// The IANA zones this node knows (its time-zone database).
fn timezone_schema() -> utoipa::openapi::Object {
    let mut zones: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
    zones.sort();
    let mut s = utoipa::openapi::ObjectBuilder::new()
        .schema_type(switchboard_core::rules::nullable(
            utoipa::openapi::Type::String,
        ))
        .description(Some("IANA time zone (default `UTC`)"))
        .examples([serde_json::json!("Europe/Berlin")]);
    if !zones.is_empty() {
        s = s.enum_values(Some(
            zones
                .into_iter()
                .map(serde_json::Value::from)
                .chain([serde_json::Value::Null]),
        ));
    }
    s.build()
}
fn backfill_schema() -> utoipa::openapi::Object {
    BACKFILL_LIMIT.nullable("With `backfill`: most missed ticks to run (default 10)")
}

/// Routes of this capability.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_schedules, create_schedule))
        .routes(routes!(get_schedule, update_schedule, delete_schedule))
        .routes(routes!(trigger))
}

/// Body of `POST /v1/schedules` (and, all fields optional, of PATCH).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleIn {
    /// Unique name in the project, e.g. `daily-report`.
    #[schema(schema_with = name_schema)]
    pub name: Option<String>,
    /// 5 fields (`0 2 * * *`) or 6 with seconds first.
    #[schema(schema_with = cron_schema)]
    pub cron: Option<String>,
    /// IANA zone, default `UTC`.
    #[schema(schema_with = timezone_schema)]
    pub timezone: Option<String>,
    /// The job each tick enqueues (same fields as `POST /v1/jobs`).
    pub job: Option<JobSpec>,
    /// `skip`, `run_once` (default) or `backfill`.
    pub misfire: Option<Misfire>,
    /// With `backfill`: most missed ticks to run (default 10).
    #[schema(schema_with = backfill_schema)]
    pub backfill_limit: Option<i32>,
    /// `allow` (default) or `skip` while the previous run is unfinished.
    pub overlap: Option<Overlap>,
    /// Paused schedules do not tick.
    pub paused: Option<bool>,
}

/// A schedule with its next runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleOut {
    /// The schedule.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// The next five ticks (UTC).
    #[schema(value_type = Vec<String>)]
    pub upcoming: Vec<time::Timestamp>,
}

/// A schedule with its next five ticks.
pub fn out(s: Schedule) -> ScheduleOut {
    let upcoming = CronSpec::parse(&s.cron, &s.timezone)
        .map(|c| c.upcoming(time::now(), 5))
        .unwrap_or_default();
    ScheduleOut {
        schedule: s,
        upcoming,
    }
}

/// Applies input over `base`, validating everything (every bad field at once).
fn build(base: Schedule, input: ScheduleIn, runtime: &Runtime) -> Result<Schedule, QueueError> {
    let mut errors: Vec<Invalid> = Vec::new();
    let mut s = base;
    if let Some(n) = input.name {
        if let Err(m) = SCHEDULE_NAME.check(&n) {
            errors.push(Invalid::new("name", m));
        }
        s.name = n.trim().to_owned();
    }
    let cron_changed = input.cron.is_some() || input.timezone.is_some();
    if let Some(c) = input.cron {
        if let Err(m) = switchboard_queue::cron::CRON_TEXT.check(&c) {
            errors.push(Invalid::new("cron", m));
        }
        s.cron = c.trim().to_owned();
    }
    if let Some(z) = input.timezone {
        s.timezone = z.trim().to_owned();
    }
    let spec = CronSpec::parse(&s.cron, &s.timezone)
        .map_err(|e| {
            if !errors.iter().any(|known| known.field == e.field) {
                errors.push(e)
            }
        })
        .ok();
    if spec.is_none()
        && jiff::tz::TimeZone::get(&s.timezone).is_err()
        && !errors.iter().any(|e| e.field == "timezone")
    {
        errors.push(Invalid::new(
            "timezone",
            format!("`{}` is not an IANA time zone", s.timezone),
        ));
    }
    if let Some(j) = input.job {
        if let Err(mut e) = validate_spec(runtime, &j, time::now()) {
            for i in &mut e {
                i.field = match i.field {
                    "queue" => "job.queue",
                    "kind" => "job.kind",
                    "priority" => "job.priority",
                    "payload" => "job.payload",
                    "target" => "job.target",
                    "backoff" => "job.backoff",
                    "tags" => "job.tags",
                    _ => "job",
                };
            }
            errors.extend(e);
        }
        s.job = serde_json::to_value(&j).unwrap_or_default();
    }
    if let Some(m) = input.misfire {
        s.misfire = m;
    }
    if let Some(b) = input.backfill_limit {
        if let Err(m) = BACKFILL_LIMIT.check(i64::from(b)) {
            errors.push(Invalid::new("backfill_limit", m));
        }
        s.backfill_limit = b;
    }
    if let Some(o) = input.overlap {
        s.overlap = o;
    }
    if let Some(p) = input.paused {
        s.paused = p;
    }
    if !errors.is_empty() {
        return Err(QueueError::Invalid(errors));
    }
    if cron_changed || s.last_run_at.is_none() {
        if let Some(spec) = spec {
            s.next_run_at = spec.next_after(time::now()).unwrap_or(s.next_run_at);
        }
    }
    Ok(s)
}

/// Lists schedules by name.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    params(PageParams),
    responses((status = 200, body = Page<ScheduleOut>)),
    security(("bearer" = ["schedules:read"])))]
async fn list_schedules(
    State(state): State<AppState>,
    auth: Authed<scope::SchedulesRead>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Page<ScheduleOut>>> {
    let limit = page.limit()?;
    let mut conn = state.db.read().await?;
    let list = repo::list(conn.ex(), auth.project(), page.after.as_deref(), limit + 1).await?;
    let page = Page::from_overfetch(list, limit, |s| s.name.clone());
    Ok(Json(Page {
        data: page.data.into_iter().map(out).collect(),
        has_more: page.has_more,
        next_cursor: page.next_cursor,
    }))
}

/// Creates a schedule.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules",
    request_body(content = ScheduleIn, description = "`ScheduleIn` with `name`, `cron` and `job` required (component `ScheduleNew`)"),
    responses((status = 201, body = ScheduleOut), (status = 409, description = "name-taken, schedule-limit")),
    security(("bearer" = ["schedules:write"])))]
async fn create_schedule(
    State(state): State<AppState>,
    auth: Authed<scope::SchedulesWrite>,
    Json(input): Json<ScheduleIn>,
) -> ApiResult<(StatusCode, Json<ScheduleOut>)> {
    let mut missing = Vec::new();
    for (v, f) in [
        (input.name.is_none(), REQUIRED_ON_CREATE[0]),
        (input.cron.is_none(), REQUIRED_ON_CREATE[1]),
        (input.job.is_none(), REQUIRED_ON_CREATE[2]),
    ] {
        if v {
            missing.push(Invalid::new(f, "is required"));
        }
    }
    if !missing.is_empty() {
        return Err(invalid(missing, ""));
    }
    let now = time::now();
    let base = Schedule {
        id: ScheduleId::generate(),
        name: String::new(),
        cron: String::new(),
        timezone: "UTC".into(),
        job: serde_json::Value::Null,
        misfire: Misfire::default(),
        backfill_limit: 10,
        overlap: Overlap::default(),
        paused: false,
        next_run_at: now,
        last_run_at: None,
        last_job_id: None,
        created_at: now,
    };
    let s = build(base, input, &state.runtime)?;
    service::create_schedule(&state.db, &auth.audit(), &s, &state.runtime.limits()).await?;
    Ok((StatusCode::CREATED, Json(out(s))))
}

/// One schedule with its next five ticks.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, body = ScheduleOut), (status = 404, description = "not-found")),
    security(("bearer" = ["schedules:read"])))]
async fn get_schedule(
    State(state): State<AppState>,
    auth: Authed<scope::SchedulesRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleOut>> {
    let id = schedule_id(&id)?;
    let mut conn = state.db.read().await?;
    repo::get(conn.ex(), auth.project(), &id)
        .await?
        .map(|s| Json(out(s)))
        .ok_or_else(|| ApiError::not_found("schedule"))
}

/// Changes a schedule.
#[utoipa::path(patch, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    request_body = ScheduleIn,
    responses((status = 200, body = ScheduleOut), (status = 404, description = "not-found"), (status = 409, description = "name-taken, schedule-limit")),
    security(("bearer" = ["schedules:write"])))]
async fn update_schedule(
    State(state): State<AppState>,
    auth: Authed<scope::SchedulesWrite>,
    Path(id): Path<String>,
    Json(input): Json<ScheduleIn>,
) -> ApiResult<Json<ScheduleOut>> {
    update(&state, &auth.audit(), &schedule_id(&id)?, input)
        .await
        .map(|s| Json(out(s)))
        .map_err(ApiError::from)
}

/// Changes a schedule by `input` (validated as on creation), audited as `schedule.update`
/// (API and dashboard).
pub async fn update(
    state: &AppState,
    ctx: &AuditContext,
    id: &ScheduleId,
    input: ScheduleIn,
) -> Result<Schedule, QueueError> {
    let limits = state.runtime.limits();
    service::update_schedule(&state.db, ctx, id, &limits, |before| {
        build(before, input, &state.runtime)
    })
    .await
}

/// Deletes a schedule (jobs it already enqueued stay).
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 204), (status = 404, description = "not-found")),
    security(("bearer" = ["schedules:write"])))]
async fn delete_schedule(
    State(state): State<AppState>,
    auth: Authed<scope::SchedulesWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    service::delete_schedule(&state.db, &auth.audit(), &schedule_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Answer of a manual trigger.
#[derive(Debug, Serialize, ToSchema)]
pub struct Triggered {
    /// The enqueued job.
    #[schema(value_type = String)]
    pub job_id: JobId,
}

/// Enqueues one run now, outside the cron rhythm.
#[utoipa::path(post, path = "/v1/schedules/{id}/trigger", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 201, body = Triggered), (status = 404, description = "not-found"), (status = 409, description = "queue-limit"), (status = 422, description = "validation-failed")),
    security(("bearer" = ["schedules:write"])))]
async fn trigger(
    State(state): State<AppState>,
    auth: Authed<scope::SchedulesWrite>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Triggered>)> {
    let job_id = trigger_now(&state, &auth.audit(), &schedule_id(&id)?).await?;
    Ok((StatusCode::CREATED, Json(Triggered { job_id })))
}

/// Enqueues one run of a schedule now, audited as `schedule.trigger` (API and dashboard),
/// and wakes its queue on this node at once.
pub async fn trigger_now(
    state: &AppState,
    ctx: &AuditContext,
    id: &ScheduleId,
) -> Result<JobId, QueueError> {
    let rt = &state.runtime;
    let job =
        service::trigger_schedule(&state.db, ctx, id, rt.local_kinds(), rt.admission()).await?;
    rt.wakeups()
        .wake(ctx.project_id.as_str(), job.queue.as_str());
    Ok(job.id)
}

//! Cron schedules: next runs in the schedule's own zone and in UTC, pause / resume / edit /
//! delete / trigger now through the same audited code as `/v1/schedules`, and the last runs
//! with their jobs (tagged `schedule:<id>`).

use super::components::{
    confirm_step, detail, empty_state, href, messages, Action, Field, Row, Table,
};
use super::jobs::target_html;
use super::page::{done_message, esc, ts, FormData, Page, PageError, PageResult, QueryData};
use super::DashboardUser;
use crate::auth::ClientInfo;
use crate::error::{ApiError, FieldError};
use crate::queue::schedules::{self as api, ScheduleIn};
use crate::queue::{schedule_id, service};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use std::fmt::Write;
use switchboard_core::time::{self, Timestamp};
use switchboard_queue::cron::{CronSpec, Misfire, Overlap, Schedule};
use switchboard_queue::store::{self, JobFilter};
use switchboard_queue::{schedules as repo, JobSpec, QueueName};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/schedules", get(list_page))
        .route("/dashboard/schedules/{id}", get(schedule_page))
        .route("/dashboard/schedules/{id}/{action}", post(schedule_action))
}

/// A tick in the schedule's zone and in UTC (once when the zone is UTC).
fn both_zones(t: Timestamp, zone: &str) -> String {
    let utc = t.strftime("%Y-%m-%d %H:%M UTC").to_string();
    match jiff::tz::TimeZone::get(zone) {
        Ok(tz) if zone != "UTC" && zone != "Etc/UTC" => {
            let local = t.to_zoned(tz).strftime("%Y-%m-%d %H:%M %Z").to_string();
            format!(
                "<span class=\"zoned\">{}</span> <small class=\"utc\">({})</small>",
                esc(&local),
                esc(&utc)
            )
        }
        _ => format!("<span class=\"utc\">{}</span>", esc(&utc)),
    }
}

/// The next `n` ticks, in both zones, as a list.
fn upcoming(s: &Schedule, n: usize) -> String {
    if s.paused {
        return "<span class=\"muted\">paused: no runs</span>".into();
    }
    match CronSpec::parse(&s.cron, &s.timezone) {
        Ok(spec) => {
            let items: String = spec
                .upcoming(time::now(), n)
                .into_iter()
                .map(|t| format!("<li>{}</li>", both_zones(t, &s.timezone)))
                .collect();
            format!("<ul class=\"ticks\">{items}</ul>")
        }
        Err(e) => format!("<span class=\"error\">{}</span>", esc(&e.message)),
    }
}

fn queue_of(s: &Schedule) -> &str {
    s.job.get("queue").and_then(|q| q.as_str()).unwrap_or("")
}

fn actions(me: &DashboardUser, s: &Schedule, back: &str) -> String {
    if !me.can_operate() {
        return String::new();
    }
    let id = s.id.as_str();
    let url = |a: &str| format!("/dashboard/schedules/{id}/{a}");
    let (toggle, label) = if s.paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    let list = [
        Action {
            url: url(toggle),
            label,
            id: None,
            confirm: None,
            hidden: vec![("back", back.to_owned())],
            danger: false,
        },
        Action {
            url: url("trigger"),
            label: "Run now",
            id: None,
            confirm: None,
            hidden: Vec::new(),
            danger: false,
        },
        Action {
            url: url("delete"),
            label: "Delete",
            id: None,
            confirm: Some(format!(
                "Delete the schedule “{}”? Jobs it already enqueued stay.",
                s.name
            )),
            hidden: Vec::new(),
            danger: true,
        },
    ];
    let mut out = String::new();
    for a in list {
        out.push_str(&a.render());
        out.push(' ');
    }
    let _ = write!(
        out,
        "<a href=\"/dashboard/schedules/{}#edit\">Edit</a>",
        esc(id)
    );
    out
}

async fn list_page(
    State(state): State<AppState>,
    me: DashboardUser,
    headers: HeaderMap,
    q: QueryData,
) -> PageResult<Response> {
    let mut conn = state.db.read().await?;
    let list = repo::list(conn.ex(), &me.0.project_id, None, 500).await?;
    let mut rows = Vec::with_capacity(list.len());
    for s in &list {
        let last_job = match &s.last_job_id {
            Some(j) => store::get(conn.ex(), &me.0.project_id, j).await?,
            None => None,
        };
        let last = match (&s.last_run_at, last_job) {
            (Some(at), Some(j)) => format!(
                "{}<br><a href=\"/dashboard/jobs/{id}\">{id}</a> <span class=\"state-{st}\">{st}</span>",
                ts(Some(*at)),
                id = esc(j.id.as_str()),
                st = j.state.as_str()
            ),
            (Some(at), None) => ts(Some(*at)),
            (None, _) => "never".into(),
        };
        let id = esc(s.id.as_str());
        rows.push(Row {
            attrs: vec![("data-schedule", s.name.clone())],
            cells_html: vec![
                format!("<a href=\"/dashboard/schedules/{id}\">{}</a>", esc(&s.name)),
                format!("<code>{}</code>", esc(&s.cron)),
                esc(&s.timezone),
                esc(queue_of(s)),
                upcoming(s, 3),
                last,
                format!(
                    "<span class=\"status\">{}</span>",
                    if s.paused { "paused" } else { "active" }
                ),
                actions(&me, s, "/dashboard/schedules"),
            ],
            select: None,
        });
    }
    let base = super::overview::base_url(&state, &headers);
    let curl = format!(
        "curl -X POST {}/v1/schedules \\\n  -H \"Authorization: Bearer $SWITCHBOARD_API_KEY\" \\\n  \
         -H \"Content-Type: application/json\" \\\n  \
         -d '{{\"name\": \"daily-report\", \"cron\": \"0 2 * * *\", \"timezone\": \"Europe/Berlin\", \
         \"job\": {{\"queue\": \"reports\", \"kind\": \"daily\"}}}}'",
        base
    );
    let table = Table {
        id: "schedules",
        columns: &[
            "Name",
            "Cron",
            "Time zone",
            "Queue",
            "Next runs (own zone, UTC)",
            "Last run",
            "Status",
            "",
        ],
        rows,
        empty_html: empty_state(
            "No schedules yet.",
            &format!(
                "<p>Create one through the API:</p><pre class=\"curl\">{}</pre>",
                esc(&curl)
            ),
        ),
        next: None,
        first: None,
        selection: None,
    };
    Ok(Page::new("Schedules", Some(&me.0), table.render())
        .flash(done_message(&q))
        .into_response())
}

/// The stored job spec without its unset (null) fields, as a person would write it.
fn without_nulls(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The edit form's values as typed.
struct EditForm {
    name: String,
    cron: String,
    timezone: String,
    misfire: String,
    overlap: String,
    backfill_limit: String,
    job: String,
}

fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl EditForm {
    fn of(s: &Schedule) -> Self {
        EditForm {
            name: s.name.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            misfire: enum_text(&s.misfire),
            overlap: enum_text(&s.overlap),
            backfill_limit: s.backfill_limit.to_string(),
            job: serde_json::to_string_pretty(&without_nulls(&s.job)).unwrap_or_default(),
        }
    }

    fn from_form(f: &FormData) -> Self {
        EditForm {
            name: f.raw("name").to_owned(),
            cron: f.raw("cron").to_owned(),
            timezone: f.raw("timezone").to_owned(),
            misfire: f.raw("misfire").to_owned(),
            overlap: f.raw("overlap").to_owned(),
            backfill_limit: f.raw("backfill_limit").trim().to_owned(),
            job: f.raw("job").to_owned(),
        }
    }

    /// The same input `PATCH /v1/schedules/{id}` takes; what cannot be parsed is refused
    /// here, everything else by the API's own validation.
    fn input(&self) -> Result<ScheduleIn, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut refuse = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.into(),
                message,
            })
        };
        let misfire: Option<Misfire> =
            serde_json::from_value(serde_json::Value::String(self.misfire.clone()))
                .map_err(|_| refuse("misfire", "must be skip, run_once or backfill".into()))
                .ok();
        let overlap: Option<Overlap> =
            serde_json::from_value(serde_json::Value::String(self.overlap.clone()))
                .map_err(|_| refuse("overlap", "must be allow or skip".into()))
                .ok();
        let backfill = self
            .backfill_limit
            .parse::<i32>()
            .map_err(|_| {
                refuse(
                    "backfill_limit",
                    format!("“{}” is not a whole number", self.backfill_limit),
                )
            })
            .ok();
        let job = serde_json::from_str::<JobSpec>(&self.job)
            .map_err(|e| refuse("job", format!("is not a job: {e}")))
            .ok();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ScheduleIn {
            name: Some(self.name.clone()),
            cron: Some(self.cron.clone()),
            timezone: Some(self.timezone.clone()),
            job,
            misfire,
            backfill_limit: backfill,
            overlap,
            paused: None,
        })
    }

    fn render(&self, id: &str, errors: &BTreeMap<String, String>, editable: bool) -> String {
        let field = |name: &'static str, label: &'static str, value: &str, hint: &'static str| {
            Field {
                name,
                label,
                value: value.to_owned(),
                kind: "text",
                hint,
                error: errors.get(name).cloned(),
            }
            .render()
        };
        let select = |name: &str, label: &str, value: &str, options: &[&str]| {
            let opts: String = options
                .iter()
                .map(|o| {
                    format!(
                        "<option{}>{o}</option>",
                        if *o == value { " selected" } else { "" }
                    )
                })
                .collect();
            format!(
                "<div class=\"field\"><label for=\"f-{name}\">{label}</label><select id=\"f-{name}\" name=\"{name}\">{opts}</select>{}</div>",
                errors
                    .get(name)
                    .map(|e| format!("<span class=\"field-error\">{}</span>", esc(e)))
                    .unwrap_or_default()
            )
        };
        // Field errors of the job (`job.queue`, `job.kind`…) show under the job.
        let job_errors: Vec<String> = errors
            .iter()
            .filter(|(k, _)| k.as_str() == "job" || k.starts_with("job."))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let job_error = if job_errors.is_empty() {
            String::new()
        } else {
            format!(
                "<span class=\"field-error\" id=\"f-job-error\">{}</span>",
                esc(&job_errors.join("; "))
            )
        };
        let summary = if errors.is_empty() {
            String::new()
        } else {
            "<p class=\"error\" role=\"alert\" id=\"edit-error\">Nothing was saved: correct the fields marked below.</p>".into()
        };
        let disabled = if editable { "" } else { " disabled" };
        let save = if editable {
            "<button type=\"submit\" class=\"primary\" id=\"save-schedule\">Save schedule</button>"
        } else {
            ""
        };
        format!(
            "<form method=\"post\" action=\"/dashboard/schedules/{id}/edit\" class=\"card\" id=\"edit\" novalidate>{summary}\
             <fieldset{disabled}><div class=\"fields\">{}{}{}{}{}{}</div>\
             <div class=\"field wide{}\"><label for=\"f-job\">Job (JSON, as for POST /v1/jobs)</label>\
             <textarea id=\"f-job\" name=\"job\" spellcheck=\"false\">{}</textarea>{job_error}</div></fieldset>{save}</form>",
            field("name", "Name", &self.name, "1 to 100 characters, unique in the project."),
            field("cron", "Cron", &self.cron, "5 fields (0 2 * * *) or 6 with seconds first."),
            field("timezone", "Time zone", &self.timezone, "IANA zone, e.g. Europe/Berlin."),
            select("misfire", "Missed ticks", &self.misfire, &["skip", "run_once", "backfill"]),
            select("overlap", "While the last run is unfinished", &self.overlap, &["allow", "skip"]),
            field("backfill_limit", "Backfill limit", &self.backfill_limit, "With backfill: most missed ticks run, 1 to 1000."),
            if job_error.is_empty() { "" } else { " invalid" },
            esc(&self.job),
            id = esc(id),
        )
    }
}

async fn render(
    state: &AppState,
    me: &DashboardUser,
    id: &str,
    q: &QueryData,
    form: Option<(EditForm, BTreeMap<String, String>)>,
) -> PageResult<Response> {
    let project = &me.0.project_id;
    let id = schedule_id(id)?;
    let mut conn = state.db.read().await?;
    let s = repo::get(conn.ex(), project, &id)
        .await?
        .ok_or_else(|| PageError::not_found("schedule"))?;
    // Its jobs carry `schedule:<id>`: newest first within its queue, one page.
    let runs = match QueueName::parse(queue_of(&s)) {
        Ok(queue) => {
            let filter = JobFilter {
                queue: Some(queue),
                tag: Some(format!("schedule:{}", s.id)),
                ..JobFilter::default()
            };
            store::list(conn.ex(), project, &filter, 10).await?
        }
        Err(_) => Vec::new(),
    };
    drop(conn);
    let rows = runs
        .iter()
        .map(|j| Row {
            attrs: vec![("data-job", j.id.to_string())],
            cells_html: vec![
                format!(
                    "<a href=\"/dashboard/jobs/{id}\">{id}</a>",
                    id = esc(j.id.as_str())
                ),
                format!("<span class=\"state-{s}\">{s}</span>", s = j.state.as_str()),
                ts(Some(j.created_at)),
                ts(j.finished_at),
                target_html(j),
            ],
            select: None,
        })
        .collect();
    let runs_table = Table {
        id: "schedule-runs",
        columns: &["Job", "State", "Enqueued", "Finished", "Runs by"],
        rows,
        empty_html: empty_state(
            "No runs yet.",
            "<p>Its jobs appear here when it ticks or is run by hand.</p>",
        ),
        next: None,
        first: None,
        selection: None,
    }
    .render();
    let more = format!(
        "<p><a href=\"{}\">All its jobs</a></p>",
        esc(&href(
            "/dashboard/jobs",
            &[
                ("queue", queue_of(&s)),
                ("tag", &format!("schedule:{}", s.id))
            ]
        ))
    );
    let kind = s.job.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let pane = detail(
        "schedule-detail",
        &[
            ("Cron", format!("<code>{}</code>", esc(&s.cron))),
            ("Time zone", esc(&s.timezone)),
            (
                "Status",
                format!(
                    "<strong id=\"schedule-status\">{}</strong>",
                    if s.paused { "paused" } else { "active" }
                ),
            ),
            (
                "Job",
                format!(
                    "<a href=\"/dashboard/queues/{q}\">{q}</a> · <code>{}</code>",
                    esc(kind),
                    q = esc(queue_of(&s))
                ),
            ),
            ("Missed ticks", esc(&enum_text(&s.misfire))),
            ("Overlap", esc(&enum_text(&s.overlap))),
            ("Last run", ts(s.last_run_at)),
            ("Created", ts(Some(s.created_at))),
        ],
    );
    let (values, errors) = form.unwrap_or_else(|| (EditForm::of(&s), BTreeMap::new()));
    let invalid = !errors.is_empty();
    let path = format!("/dashboard/schedules/{}", s.id);
    let body = format!(
        "<div class=\"card\"><p>{actions}</p>{pane}</div>\
         <h2>Next runs</h2><div id=\"next-runs\">{next}</div>\
         <h2>Last runs</h2>{runs_table}{more}<h2>Edit</h2>{edit}",
        actions = actions(me, &s, &path),
        next = upcoming(&s, 5),
        edit = values.render(s.id.as_str(), &errors, me.can_operate()),
    );
    Ok(Page::new(format!("Schedule {}", s.name), Some(&me.0), body)
        .flash(done_message(q))
        .status(if invalid {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        })
        .into_response())
}

async fn schedule_page(
    State(state): State<AppState>,
    me: DashboardUser,
    Path(id): Path<String>,
    q: QueryData,
) -> PageResult<Response> {
    render(&state, &me, &id, &q, None).await
}

async fn schedule_action(
    State(state): State<AppState>,
    me: DashboardUser,
    client: ClientInfo,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    form: FormData,
) -> PageResult<Response> {
    me.may_change(&headers)?;
    let ctx = me.audit(&client);
    let page = format!("/dashboard/schedules/{id}");
    let sid = schedule_id(&id)?;
    let back = super::jobs::back_to(form.get("back"), &page);
    let done = |to: &str, done: &str| -> Response {
        Redirect::to(&super::jobs::with_outcome(to, &[("done", done)])).into_response()
    };
    match action.as_str() {
        "pause" | "resume" => {
            let input = ScheduleIn {
                paused: Some(action == "pause"),
                ..ScheduleIn::default()
            };
            api::update(&state, &ctx, &sid, input).await?;
            Ok(done(
                &back,
                if action == "pause" {
                    "schedule-paused"
                } else {
                    "schedule-resumed"
                },
            ))
        }
        "trigger" => {
            let job = api::trigger_now(&state, &ctx, &sid).await?;
            Ok(done(&format!("/dashboard/jobs/{job}"), "triggered"))
        }
        "delete" => {
            if !form.confirmed() {
                let name = {
                    let mut conn = state.db.read().await?;
                    repo::get(conn.ex(), &me.0.project_id, &sid)
                        .await?
                        .ok_or_else(|| PageError::not_found("schedule"))?
                        .name
                };
                let body = confirm_step(
                    &format!("Delete the schedule “{name}”? Jobs it already enqueued stay."),
                    &format!("{page}/delete"),
                    &form.0,
                    "Delete the schedule",
                    &page,
                );
                return Ok(Page::new("Please confirm", Some(&me.0), body).into_response());
            }
            service::delete_schedule(&state.db, &ctx, &sid).await?;
            Ok(done("/dashboard/schedules", "schedule-deleted"))
        }
        "edit" => {
            let values = EditForm::from_form(&form);
            let saved = match values.input() {
                Ok(input) => api::update(&state, &ctx, &sid, input)
                    .await
                    .map_err(PageError::from),
                Err(fields) => Err(PageError::from(ApiError::invalid(fields))),
            };
            match saved {
                Ok(_) => Ok(done(&page, "schedule-saved")),
                Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY => {
                    let errors = messages(e.fields());
                    render(
                        &state,
                        &me,
                        &id,
                        &QueryData(Vec::new()),
                        Some((values, errors)),
                    )
                    .await
                }
                Err(e) if e.status() == StatusCode::CONFLICT => {
                    let errors = BTreeMap::from([("name".to_owned(), e.message().to_owned())]);
                    render(
                        &state,
                        &me,
                        &id,
                        &QueryData(Vec::new()),
                        Some((values, errors)),
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        }
        _ => Err(PageError::new(
            StatusCode::NOT_FOUND,
            "There is no such schedule action.",
        )),
    }
}

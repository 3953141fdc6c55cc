//! Dashboard pages of the queue engine: queues with live counts and throughput, the job
//! list with filters, job detail with retry/cancel/delete, and cron schedules — what an
//! operator did in Bull Board.

use super::{esc, layout, ts, DashboardUser};
use crate::auth::Role;
use crate::error::ApiError;
use crate::queue::jobs::{job_filter, load_detail, JobQuery};
use crate::queue::service::{self, BulkOp, JobOp};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::fmt::Write;
use switchboard_core::audit::{Actor, AuditContext};
use switchboard_core::time;
use switchboard_queue::cron::CronSpec;
use switchboard_queue::{schedules, store, JobState, QueueName, QueueSettings};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/queues", get(queues_page))
        .route("/dashboard/queues/{name}/{action}", post(queue_action))
        .route("/dashboard/jobs", get(jobs_page))
        .route("/dashboard/jobs/{id}", get(job_page))
        .route("/dashboard/jobs/{id}/{action}", post(job_action))
        .route("/dashboard/schedules", get(schedules_page))
        .route("/dashboard/schedules/{id}/trigger", post(trigger_schedule))
}

/// Who acts through the dashboard, for the audit trail.
fn ctx(me: &DashboardUser, client: &crate::auth::ClientInfo) -> AuditContext {
    AuditContext {
        project_id: me.0.project_id.clone(),
        actor: Actor {
            kind: "user".into(),
            id: me.0.user.id.to_string(),
        },
        ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        request_id: client.request_id.clone(),
    }
}

/// `Some(refusal)` for viewers and for POSTs from other origins.
fn refuse(me: &DashboardUser, headers: &HeaderMap) -> Option<Response> {
    if me.0.user.role == Role::Viewer {
        return Some(
            (
                StatusCode::FORBIDDEN,
                layout(
                    "Forbidden",
                    Some(&me.0),
                    "<p>Viewers cannot change queues or jobs.</p>",
                ),
            )
                .into_response(),
        );
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_none_or(|o| o.split("://").nth(1) == Some(host));
    if origin_ok {
        None
    } else {
        Some(
            (
                StatusCode::FORBIDDEN,
                "cross-origin form submission refused",
            )
                .into_response(),
        )
    }
}

fn count_cell(queue: &str, state: JobState, n: i64) -> String {
    format!(
        "<td class=\"num\"><a href=\"/dashboard/jobs?queue={}&amp;state={}\" data-state=\"{}\">{n}</a></td>",
        esc(queue),
        state.as_str(),
        state.as_str()
    )
}

async fn queues_page(
    State(state): State<AppState>,
    me: DashboardUser,
) -> Result<Html<String>, ApiError> {
    let mut conn = state.db.read().await?;
    let queues = store::queues(conn.ex(), &me.0.project_id, None).await?;
    let mut rows = String::new();
    for q in &queues {
        let name = q.name.as_str();
        let mut cells = String::new();
        for s in JobState::ALL {
            cells.push_str(&count_cell(name, s, q.counts.get(&s).copied().unwrap_or(0)));
        }
        let toggle = if q.settings.paused { "resume" } else { "pause" };
        let _ = write!(
            rows,
            "<tr data-queue=\"{n}\"><td><a href=\"/dashboard/jobs?queue={n}\">{n}</a>{paused}</td>{cells}\
             <td class=\"num\">{thr}/min</td><td>{conc}</td><td>\
             <form class=\"inline\" method=\"post\" action=\"/dashboard/queues/{n}/{toggle}\"><button name=\"go\" value=\"1\">{toggle}</button></form> \
             <form class=\"inline\" method=\"post\" action=\"/dashboard/queues/{n}/retry-failed\"><button>retry failed</button></form> \
             <form class=\"inline\" method=\"post\" action=\"/dashboard/queues/{n}/clean-completed\"><button>clean completed</button></form>\
             </td></tr>",
            n = esc(name),
            paused = if q.settings.paused { " <strong class=\"paused\">(paused)</strong>" } else { "" },
            thr = q.completed_last_minute,
            conc = q.settings.concurrency,
        );
    }
    let head: String = JobState::ALL
        .iter()
        .map(|s| format!("<th>{}</th>", s.as_str()))
        .collect();
    let body = format!(
        "<p>Counts refresh every 5 seconds.</p><table id=\"queues\"><thead><tr><th>Queue</th>{head}\
         <th>Throughput</th><th>Concurrency</th><th>Actions</th></tr></thead><tbody>{rows}</tbody></table>"
    );
    let mut page = layout("Queues", Some(&me.0), &body).0;
    page = page.replacen(
        "<head>",
        "<head><meta http-equiv=\"refresh\" content=\"5\">",
        1,
    );
    Ok(Html(page))
}

async fn queue_action(
    State(state): State<AppState>,
    me: DashboardUser,
    client: crate::auth::ClientInfo,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if let Some(refusal) = refuse(&me, &headers) {
        return Ok(refusal);
    }
    let name = QueueName::parse(&name).map_err(|_| ApiError::not_found("queue"))?;
    let ctx = ctx(&me, &client);
    {
        let mut conn = state.db.read().await?;
        if store::queues(conn.ex(), &me.0.project_id, Some(&name))
            .await?
            .is_empty()
        {
            return Err(ApiError::not_found("queue"));
        }
    }
    match action.as_str() {
        "pause" | "resume" => {
            let paused = action == "pause";
            let act = if paused {
                "queue.pause"
            } else {
                "queue.resume"
            };
            let max = state.runtime.limits().queues;
            service::save_settings(&state.db, &ctx, &name, act, max, |s| {
                Ok(QueueSettings { paused, ..s })
            })
            .await?;
        }
        "retry-failed" => {
            service::bulk(&state.db, &ctx, &name, BulkOp::RetryFailed).await?;
        }
        "clean-completed" => {
            let op = BulkOp::Clean {
                state: JobState::Completed,
                before: time::now(),
                limit: 10_000,
            };
            service::bulk(&state.db, &ctx, &name, op).await?;
        }
        _ => return Err(ApiError::not_found("action")),
    }
    // (Pause and resume change settings the dispatcher may have remembered.)
    state
        .runtime
        .wakeups()
        .settings_changed(me.0.project_id.as_str(), name.as_str());
    Ok(Redirect::to("/dashboard/queues").into_response())
}

async fn jobs_page(
    State(state): State<AppState>,
    me: DashboardUser,
    Query(q): Query<JobQuery>,
) -> Result<Html<String>, ApiError> {
    let filter = job_filter(&q)?;
    let mut conn = state.db.read().await?;
    let jobs = store::list(conn.ex(), &me.0.project_id, &filter, 51).await?;
    let more = jobs.len() > 50;
    let mut rows = String::new();
    for j in jobs.iter().take(50) {
        let _ = write!(
            rows,
            "<tr><td><a href=\"/dashboard/jobs/{id}\">{id}</a></td><td>{queue}</td><td>{kind}</td>\
             <td class=\"state-{st}\">{st}</td><td>{attempt}/{max}</td><td>{prio}</td><td>{created}</td></tr>",
            id = esc(j.id.as_str()),
            queue = esc(j.queue.as_str()),
            kind = esc(j.kind.as_str()),
            st = j.state.as_str(),
            attempt = j.attempt,
            max = j.max_attempts,
            prio = j.priority.value(),
            created = ts(Some(j.created_at)),
        );
    }
    let options: String = std::iter::once(String::from("<option value=\"\">any state</option>"))
        .chain(JobState::ALL.iter().map(|s| {
            let sel = if filter.state == Some(*s) {
                " selected"
            } else {
                ""
            };
            format!("<option{sel}>{}</option>", s.as_str())
        }))
        .collect();
    let next = if more {
        let last = jobs.get(49).map(|j| j.id.to_string()).unwrap_or_default();
        let mut link = format!("/dashboard/jobs?after={}", esc(&last));
        for (k, v) in [
            ("queue", &q.queue),
            ("state", &q.state),
            ("kind", &q.kind),
            ("tag", &q.tag),
        ] {
            if let Some(v) = v {
                let _ = write!(link, "&amp;{k}={}", esc(v));
            }
        }
        format!("<p><a id=\"next-page\" href=\"{link}\">Older jobs →</a></p>")
    } else {
        String::new()
    };
    let val = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/dashboard/jobs\">\
         <input name=\"queue\" placeholder=\"queue\" value=\"{}\"><select name=\"state\">{options}</select>\
         <input name=\"kind\" placeholder=\"kind\" value=\"{}\"><input name=\"tag\" placeholder=\"tag\" value=\"{}\">\
         <button type=\"submit\">Filter</button></form>\
         <table id=\"jobs\"><thead><tr><th>Id</th><th>Queue</th><th>Kind</th><th>State</th><th>Attempt</th>\
         <th>Priority</th><th>Created</th></tr></thead><tbody>{rows}</tbody></table>{next}",
        val(&q.queue),
        val(&q.kind),
        val(&q.tag),
    );
    Ok(layout("Jobs", Some(&me.0), &body))
}

fn pretty(v: &Option<serde_json::Value>) -> String {
    match v {
        None => "—".into(),
        Some(v) => format!(
            "<pre>{}</pre>",
            esc(&serde_json::to_string_pretty(v).unwrap_or_default())
        ),
    }
}

async fn job_page(
    State(state): State<AppState>,
    me: DashboardUser,
    Path(id): Path<String>,
) -> Result<Html<String>, ApiError> {
    let detail = load_detail(&state, &me.0.project_id, &id).await?;
    let j = &detail.job;
    let mut errors = String::new();
    for e in &detail.errors {
        let _ = write!(
            errors,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            e.attempt,
            ts(Some(e.at)),
            esc(e.worker.as_deref().unwrap_or("—")),
            esc(&e.error)
        );
    }
    let mut actions = String::new();
    let button = |a: &str, label: &str| {
        format!("<form class=\"inline\" method=\"post\" action=\"/dashboard/jobs/{}/{a}\"><button id=\"{a}\">{label}</button></form> ", esc(j.id.as_str()))
    };
    if j.state.is_final() {
        actions.push_str(&button("retry", "Retry"));
    } else {
        actions.push_str(&button("cancel", "Cancel"));
    }
    actions.push_str(&button("delete", "Delete"));
    let body = format!(
        "<div class=\"card\"><p>State: <strong id=\"job-state\" class=\"state-{st}\">{st}</strong> · queue \
         <a href=\"/dashboard/jobs?queue={q}\">{q}</a> · kind <code>{kind}</code> · attempt {att}/{max} · priority {prio}</p>\
         <p>Run at {run_at} · created {created} · started {started} · finished {finished} · worker {worker}</p>\
         <p>{actions}</p></div>\
         <h2>Payload</h2>{payload}<h2>Progress</h2>{progress}<h2>Result</h2>{result}\
         <h2>Failed attempts</h2><table id=\"attempts\"><thead><tr><th>#</th><th>When</th><th>Worker</th><th>Error</th></tr></thead>\
         <tbody>{errors}</tbody></table>",
        st = j.state.as_str(),
        q = esc(j.queue.as_str()),
        kind = esc(j.kind.as_str()),
        att = j.attempt,
        max = j.max_attempts,
        prio = j.priority.value(),
        run_at = ts(Some(j.run_at)),
        created = ts(Some(j.created_at)),
        started = ts(j.started_at),
        finished = ts(j.finished_at),
        worker = esc(j.worker.as_deref().unwrap_or("—")),
        payload = pretty(&Some(j.payload.clone())),
        progress = pretty(&j.progress),
        result = pretty(&j.result),
    );
    Ok(layout(&format!("Job {}", j.id), Some(&me.0), &body))
}

async fn job_action(
    State(state): State<AppState>,
    me: DashboardUser,
    client: crate::auth::ClientInfo,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if let Some(refusal) = refuse(&me, &headers) {
        return Ok(refusal);
    }
    let op = match action.as_str() {
        "retry" => JobOp::Retry,
        "cancel" => JobOp::Cancel,
        "delete" => JobOp::Delete,
        _ => return Err(ApiError::not_found("action")),
    };
    let job = service::job_op(&state.db, &ctx(&me, &client), &id, op).await?;
    match op {
        JobOp::Retry => state
            .runtime
            .wakeups()
            .wake(me.0.project_id.as_str(), job.queue.as_str()),
        JobOp::Cancel | JobOp::Delete => state.runtime.signal_cancel(&id),
    }
    let to = if op == JobOp::Delete {
        format!("/dashboard/jobs?queue={}", job.queue)
    } else {
        format!("/dashboard/jobs/{id}")
    };
    Ok(Redirect::to(&to).into_response())
}

async fn schedules_page(
    State(state): State<AppState>,
    me: DashboardUser,
) -> Result<Html<String>, ApiError> {
    let mut conn = state.db.read().await?;
    let list = schedules::list(conn.ex(), &me.0.project_id, None, 500).await?;
    let mut rows = String::new();
    for s in &list {
        let next: Vec<String> = CronSpec::parse(&s.cron, &s.timezone)
            .map(|c| c.upcoming(time::now(), 3))
            .unwrap_or_default()
            .into_iter()
            .map(|t| ts(Some(t)))
            .collect();
        let _ = write!(
            rows,
            "<tr><td>{name}</td><td><code>{cron}</code></td><td>{tz}</td><td>{queue}</td><td>{next}</td><td>{last}</td><td>{paused}</td>\
             <td><form class=\"inline\" method=\"post\" action=\"/dashboard/schedules/{id}/trigger\"><button>Run now</button></form></td></tr>",
            name = esc(&s.name),
            cron = esc(&s.cron),
            tz = esc(&s.timezone),
            queue = esc(s.job.get("queue").and_then(|q| q.as_str()).unwrap_or("")),
            next = next.join("<br>"),
            last = ts(s.last_run_at),
            paused = if s.paused { "paused" } else { "active" },
            id = esc(s.id.as_str()),
        );
    }
    let body = format!(
        "<table id=\"schedules\"><thead><tr><th>Name</th><th>Cron</th><th>Time zone</th><th>Queue</th><th>Next runs</th>\
         <th>Last run</th><th>Status</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    );
    Ok(layout("Schedules", Some(&me.0), &body))
}

async fn trigger_schedule(
    State(state): State<AppState>,
    me: DashboardUser,
    client: crate::auth::ClientInfo,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(refusal) = refuse(&me, &headers) {
        return Ok(refusal);
    }
    let job = crate::queue::schedules::trigger_now(&state, &ctx(&me, &client), &id).await?;
    Ok(Redirect::to(&format!("/dashboard/jobs/{job}")).into_response())
}

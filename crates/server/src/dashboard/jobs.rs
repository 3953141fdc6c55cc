//! Jobs: the searchable job table (all jobs, or one queue's on its page) with bulk retry and
//! delete of a selection, and a job's detail with its runs, target, payload, result and
//! timeline.

use super::components::{
    confirm_step, detail, empty_state, filtered_table, href, json_view, live, Action, Button,
    Filter, Filters, LiveValues, Row, Selection, Table,
};
use super::page::{done_message, esc, span, ts, FormData, Page, PageError, PageResult, QueryData};
use super::DashboardUser;
use crate::auth::ClientInfo;
use crate::queue::job_id;
use crate::queue::jobs::load_detail;
use crate::queue::service::{self, JobOp};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::fmt::Write;
use switchboard_core::time::Timestamp;
use switchboard_queue::history::{self, Run};
use switchboard_queue::store::{self, JobFilter};
use switchboard_queue::{Job, JobId, JobKind, JobState, QueueError, QueueName, Runner};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/jobs", get(jobs_page))
        .route("/dashboard/jobs/bulk", post(bulk))
        .route("/dashboard/jobs/find", get(find_job))
        .route("/dashboard/jobs/{id}", get(job_page))
        .route("/dashboard/jobs/{id}/{action}", post(job_action))
}

/// Jobs per page.
const PAGE: usize = 50;

/// Most jobs one bulk action takes.
const MAX_SELECTION: usize = 500;

/// Key of a job's live value.
pub fn jkey(id: &str, what: &str) -> String {
    format!("job:{id}:{what}")
}

/// Live values of a job.
pub fn job_values(values: &mut LiveValues, job: &Job) {
    let id = job.id.as_str();
    values.set(jkey(id, "state"), job.state.as_str());
    values.set(jkey(id, "attempt"), job.attempt.to_string());
}

/// A local dashboard path to come back to, or `default` (never another site).
pub fn back_to(value: Option<&str>, default: &str) -> String {
    match value {
        Some(b) if b.starts_with("/dashboard") && !b.contains("//") && !b.contains('\\') => {
            b.to_owned()
        }
        _ => default.to_owned(),
    }
}

/// `back` with `?done=…` (or `&done=…`) outcome parameters added.
pub fn with_outcome(back: &str, params: &[(&str, &str)]) -> String {
    // Earlier outcome parameters are dropped, so repeated actions don't pile them up.
    let (path, query) = back.split_once('?').unwrap_or((back, ""));
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| !matches!(k.as_str(), "done" | "n" | "skipped"))
        .collect();
    pairs.extend(
        params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let list: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    href(path, &list)
}

/// A job search from the query string; a bad filter becomes a message, not an error.
pub struct Search {
    /// The filter to list with, when the search is valid.
    pub filter: Option<JobFilter>,
    /// What is wrong with it, for people.
    pub problem: Option<String>,
    /// Raw values, to show in the form again.
    pub queue: String,
    /// State.
    pub state: String,
    /// Kind.
    pub kind: String,
    /// Tag.
    pub tag: String,
    /// Cursor.
    pub after: String,
}

impl Search {
    /// Reads `queue`, `state`, `kind`, `tag` and `after`; `queue` is fixed on a queue's page.
    pub fn parse(q: &QueryData, fixed_queue: Option<&QueueName>) -> Search {
        let mut s = Search {
            filter: None,
            problem: None,
            queue: fixed_queue
                .map(|n| n.to_string())
                .or_else(|| q.owned("queue"))
                .unwrap_or_default(),
            state: q.owned("state").unwrap_or_default(),
            kind: q.owned("kind").unwrap_or_default(),
            tag: q.owned("tag").unwrap_or_default(),
            after: q.owned("after").unwrap_or_default(),
        };
        let mut problems = Vec::new();
        let queue = match (fixed_queue, s.queue.as_str()) {
            (Some(n), _) => Some(n.clone()),
            (None, "") => None,
            (None, name) => QueueName::parse(name)
                .map_err(|_| {
                    problems.push(format!(
                        "“{name}” is not a queue name: names are 1 to 100 characters of a-z, A-Z, 0-9, -, _, . and :."
                    ))
                })
                .ok(),
        };
        let state = match s.state.as_str() {
            "" => None,
            st => JobState::parse(st).or_else(|| {
                problems.push(format!(
                    "“{st}” is not a job state. Pick one of {}.",
                    JobState::ALL.map(|s| s.as_str()).join(", ")
                ));
                None
            }),
        };
        if !s.kind.is_empty() && JobKind::parse(&s.kind).is_err() {
            problems.push(format!(
                "“{}” is not a job kind: kinds are 1 to 200 characters of a-z, A-Z, 0-9, -, _, . and :.",
                s.kind
            ));
        }
        if s.tag.len() > 100 || s.tag.contains(',') {
            problems.push("Tags are at most 100 characters, without commas.".into());
        }
        if !s.after.is_empty() && JobId::parse(&s.after).is_err() {
            problems.push("This page link is damaged: start again from the newest jobs.".into());
        }
        if problems.is_empty() {
            s.filter = Some(JobFilter {
                queue,
                state,
                kind: (!s.kind.is_empty()).then(|| s.kind.clone()),
                tag: (!s.tag.is_empty()).then(|| s.tag.clone()),
                before_id: (!s.after.is_empty()).then(|| s.after.clone()),
            });
        } else {
            s.problem = Some(problems.join(" "));
        }
        s
    }

    /// Query parameters of this search (without the cursor).
    fn params(&self, with_queue: bool) -> Vec<(&'static str, &str)> {
        let mut p = Vec::new();
        if with_queue {
            p.push(("queue", self.queue.as_str()));
        }
        p.extend([
            ("state", self.state.as_str()),
            ("kind", self.kind.as_str()),
            ("tag", self.tag.as_str()),
        ]);
        p
    }

    /// Whether anything narrows the list (besides a fixed queue).
    fn narrowed(&self, fixed_queue: bool) -> bool {
        (!fixed_queue && !self.queue.is_empty())
            || !self.state.is_empty()
            || !self.kind.is_empty()
            || !self.tag.is_empty()
    }
}

/// A push job's target without secrets: method, URL (password removed) and header names.
pub fn target_html(job: &Job) -> String {
    match (&job.target, job.runner) {
        (Some(t), _) => {
            let names: Vec<String> = t
                .headers
                .keys()
                .map(|k| format!("<code>{}</code>", esc(k)))
                .collect();
            let headers = if names.is_empty() {
                String::new()
            } else {
                format!(
                    "<br><small>headers {} (values hidden)</small>",
                    names.join(", ")
                )
            };
            format!(
                "<code>{}</code> <code class=\"url\">{}</code>{headers}",
                esc(&t.method),
                esc(&crate::app::redact(&t.url))
            )
        }
        (None, Runner::Pull) => "pull worker".into(),
        (None, Runner::Local) => "built-in handler".into(),
        (None, Runner::Push) => "HTTP push".into(),
    }
}

/// The job table of a search: the all-jobs page and a queue's page.
pub async fn job_list(
    state: &AppState,
    me: &DashboardUser,
    q: &QueryData,
    fixed_queue: Option<&QueueName>,
    path: &str,
) -> PageResult<(String, bool)> {
    let search = Search::parse(q, fixed_queue);
    let mut jobs = Vec::new();
    if let Some(f) = &search.filter {
        let mut conn = state.db.read().await?;
        jobs = store::list(conn.ex(), &me.0.project_id, f, PAGE as i64 + 1).await?;
    }
    let more = jobs.len() > PAGE;
    jobs.truncate(PAGE);
    let with_queue = fixed_queue.is_none();
    let params = search.params(with_queue);
    let next = more.then(|| jobs.last()).flatten().map(|j| {
        let mut p = params.clone();
        p.push(("after", j.id.as_str()));
        href(path, &p)
    });
    let first = (!search.after.is_empty()).then(|| href(path, &params));
    let mut this_page = params.clone();
    this_page.push(("after", search.after.as_str()));
    let back = href(path, &this_page);
    let rows = jobs
        .iter()
        .map(|j| {
            let id = esc(j.id.as_str());
            let mut cells = vec![format!("<a href=\"/dashboard/jobs/{id}\">{id}</a>")];
            if with_queue {
                cells.push(format!(
                    "<a href=\"/dashboard/queues/{q}\">{q}</a>",
                    q = esc(j.queue.as_str())
                ));
            }
            cells.extend([
                format!("<code>{}</code>", esc(j.kind.as_str())),
                format!(
                    "<span class=\"state-{s}\" data-state=\"{s}\">{s}</span>",
                    s = j.state.as_str()
                ),
                format!("{}/{}", j.attempt, j.max_attempts),
                target_html(j),
                format!("<span class=\"nowrap\">{}</span>", ts(Some(j.created_at))),
                j.last_error
                    .as_deref()
                    .map(|e| {
                        format!(
                            "<small>{}</small>",
                            esc(&e.chars().take(120).collect::<String>())
                        )
                    })
                    .unwrap_or_default(),
            ]);
            Row {
                attrs: vec![("data-job", j.id.to_string())],
                cells_html: cells,
                select: Some(j.id.to_string()),
            }
        })
        .collect();
    let mut columns = vec!["Id"];
    if with_queue {
        columns.push("Queue");
    }
    columns.extend([
        "Kind",
        "State",
        "Attempt",
        "Runs by",
        "Created",
        "Last error",
    ]);
    let empty = if search.problem.is_some() {
        empty_state(
            "The search could not be run.",
            &format!("<p><a href=\"{}\">Show all jobs</a></p>", esc(path)),
        )
    } else if search.narrowed(fixed_queue.is_some()) {
        empty_state(
            "No jobs match.",
            &format!(
                "<p>Nothing {} here. <a href=\"{}\">Show all jobs</a></p>",
                if search.state.is_empty() {
                    "matches these filters".to_owned()
                } else {
                    format!("is {}", esc(&search.state))
                },
                esc(path)
            ),
        )
    } else {
        empty_state(
            "No jobs yet.",
            "<p>Jobs appear here once they are enqueued; finished jobs leave after the queue's retention time.</p>",
        )
    };
    let selection = me.can_operate().then(|| Selection {
        action: "/dashboard/jobs/bulk".into(),
        name: "id",
        buttons: vec![
            Button {
                name: "action",
                value: "retry",
                label: "Retry selected",
                confirm: Some(
                    "Retry the selected jobs? Finished ones start a new run with fresh attempts."
                        .into(),
                ),
                danger: false,
            },
            Button {
                name: "action",
                value: "delete",
                label: "Delete selected",
                confirm: Some(
                    "Delete the selected jobs and their history? This cannot be undone.".into(),
                ),
                danger: true,
            },
        ],
        hidden: vec![("back", back)],
    });
    let columns_ref: Vec<&str> = columns;
    let table = Table {
        id: "jobs",
        columns: &columns_ref,
        rows,
        empty_html: empty,
        next,
        first,
        selection,
    };
    let mut fields = Vec::new();
    if with_queue {
        fields.push(Filter::Text {
            name: "queue",
            label: "Queue",
            value: &search.queue,
            placeholder: "any queue",
        });
    }
    let states: Vec<(String, String)> = std::iter::once((String::new(), "any".to_owned()))
        .chain(
            JobState::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), s.as_str().to_owned())),
        )
        .collect();
    fields.extend([
        Filter::Choice {
            name: "state",
            label: "State",
            options: states,
            selected: &search.state,
        },
        Filter::Text {
            name: "kind",
            label: "Kind",
            value: &search.kind,
            placeholder: "any kind",
        },
        Filter::Text {
            name: "tag",
            label: "Tag",
            value: &search.tag,
            placeholder: "any tag",
        },
    ]);
    let filters = Filters {
        action: path,
        fields,
        problem: search.problem.clone(),
    };
    let html = format!(
        "<form class=\"filters find\" method=\"get\" action=\"/dashboard/jobs/find\" role=\"search\">\
         <label>Job id <input name=\"id\" placeholder=\"job_01…\" id=\"find-job\"></label> <button type=\"submit\">Open</button></form>{}",
        filtered_table(&filters, &table)
    );
    Ok((html, search.problem.is_some()))
}

async fn jobs_page(
    State(state): State<AppState>,
    me: DashboardUser,
    q: QueryData,
) -> PageResult<Response> {
    let (table, bad) = job_list(&state, &me, &q, None, "/dashboard/jobs").await?;
    let page = Page::new("Jobs", Some(&me.0), table).flash(done_message(&q));
    Ok(if bad {
        page.status(StatusCode::BAD_REQUEST).into_response()
    } else {
        page.into_response()
    })
}

/// Opens a job by id (the "Job id" box).
async fn find_job(me: DashboardUser, q: QueryData) -> PageResult<Response> {
    let Some(id) = q.get("id") else {
        return Ok(Redirect::to("/dashboard/jobs").into_response());
    };
    if JobId::parse(id).is_ok() {
        return Ok(Redirect::to(&format!("/dashboard/jobs/{id}")).into_response());
    }
    let body = format!(
        "<p class=\"notice\" role=\"alert\" id=\"filter-problem\">“{}” is not a job id: ids look like \
         <code>job_01jqz6w0m3f2t9x4y5z6a7b8c9</code>.</p><p><a href=\"/dashboard/jobs\">Back to the jobs</a></p>",
        esc(id)
    );
    Ok(Page::new("Find a job", Some(&me.0), body)
        .status(StatusCode::BAD_REQUEST)
        .into_response())
}

/// Runs an action on each selected job, each with its audit event; jobs whose state does
/// not allow it are skipped and counted.
async fn bulk(
    State(state): State<AppState>,
    me: DashboardUser,
    client: ClientInfo,
    headers: HeaderMap,
    form: FormData,
) -> PageResult<Response> {
    me.may_change(&headers)?;
    let back = back_to(form.get("back"), "/dashboard/jobs");
    let (op, verb, done) = match form.get("action") {
        Some("retry") => (JobOp::Retry, "Retry", "retried"),
        Some("delete") => (JobOp::Delete, "Delete", "deleted"),
        _ => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "Choose Retry selected or Delete selected.",
            ))
        }
    };
    let ids = form.all("id");
    if ids.is_empty() {
        return Ok(Redirect::to(&with_outcome(&back, &[("done", "none")])).into_response());
    }
    if ids.len() > MAX_SELECTION {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            format!("Select at most {MAX_SELECTION} jobs at once."),
        ));
    }
    if !form.confirmed() {
        let question = match (op, ids.len()) {
            (JobOp::Delete, 1) => {
                "Delete the selected job and its history? This cannot be undone.".to_owned()
            }
            (JobOp::Delete, n) => {
                format!("Delete {n} selected jobs and their history? This cannot be undone.")
            }
            (_, 1) => "Retry the selected job?".to_owned(),
            (_, n) => format!("Retry {n} selected jobs?"),
        };
        let body = confirm_step(&question, "/dashboard/jobs/bulk", &form.0, verb, &back);
        return Ok(Page::new("Please confirm", Some(&me.0), body).into_response());
    }
    let ctx = me.audit(&client);
    let (mut changed, mut skipped) = (0i64, 0i64);
    let mut queues: Vec<String> = Vec::new();
    for id in ids {
        let done = match job_id(id) {
            Ok(id) => service::job_op(&state.db, &ctx, &id, op)
                .await
                .map(|j| (id, j)),
            Err(e) => Err(e),
        };
        match done {
            Ok((id, job)) => {
                changed += 1;
                match op {
                    JobOp::Retry => {
                        if !queues.iter().any(|q| q == job.queue.as_str()) {
                            queues.push(job.queue.to_string());
                        }
                    }
                    JobOp::Cancel | JobOp::Delete => state.runtime.signal_cancel(&id),
                }
            }
            // Gone meanwhile, or in a state the action does not apply to.
            Err(QueueError::NotFound(_) | QueueError::WrongState(_)) => skipped += 1,
            Err(e) => return Err(e.into()),
        }
    }
    for q in &queues {
        state.runtime.wakeups().wake(me.0.project_id.as_str(), q);
    }
    let (n, s) = (changed.to_string(), skipped.to_string());
    Ok(Redirect::to(&with_outcome(
        &back,
        &[("done", done), ("n", &n), ("skipped", &s)],
    ))
    .into_response())
}

/// The runs of a job, each with its failed attempts.
fn runs_html(job: &Job, runs: &[Run]) -> String {
    let mut out = String::from("<div class=\"runs\" id=\"runs\">");
    for r in runs {
        let title = match (r.number, r.current && runs.len() > 1) {
            (1, _) => "Run 1".to_owned(),
            (n, true) => format!("Run {n} (current, after a manual retry)"),
            (n, false) => format!("Run {n} (after a manual retry)"),
        };
        let status = if r.current {
            format!(
                "<span class=\"state-{s}\">{s}</span>, attempt {} of {}",
                job.attempt,
                job.max_attempts,
                s = job.state.as_str()
            )
        } else {
            match r.errors.len() {
                1 => "1 failed attempt".to_owned(),
                n => format!("{n} failed attempts"),
            }
        };
        let _ = write!(
            out,
            "<section class=\"run{}\" data-run=\"{}\"><h3>{title} · {status}</h3>",
            if r.current { " current" } else { "" },
            r.number
        );
        if r.errors.is_empty() {
            out.push_str("<p class=\"muted\">No failed attempts in this run.</p>");
        } else {
            out.push_str("<table class=\"attempts\"><thead><tr><th>Attempt</th><th>When</th><th>Worker</th><th>Error</th></tr></thead><tbody>");
            for e in &r.errors {
                let _ = write!(
                    out,
                    "<tr data-attempt=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    e.attempt,
                    e.attempt,
                    ts(Some(e.at)),
                    esc(e.worker.as_deref().unwrap_or("—")),
                    esc(&e.error)
                );
            }
            out.push_str("</tbody></table>");
        }
        out.push_str("</section>");
    }
    out.push_str("</div>");
    out
}

/// Created, each run's failed attempts, the latest start and the end, in order.
fn timeline_html(job: &Job, runs: &[Run]) -> String {
    let mut items: Vec<(Option<Timestamp>, &str, String)> =
        vec![(Some(job.created_at), "", "Created".to_owned())];
    for r in runs {
        let mut section: Vec<(Option<Timestamp>, &str, String)> = Vec::new();
        if r.number > 1 {
            items.push((
                None,
                "run",
                format!(
                    "Retried by hand: run {} begins with fresh attempts",
                    r.number
                ),
            ));
        }
        for e in &r.errors {
            section.push((
                Some(e.at),
                "fail",
                format!(
                    "Attempt {} failed: {}",
                    e.attempt,
                    e.error.chars().take(200).collect::<String>()
                ),
            ));
        }
        if r.current {
            if let Some(s) = job.started_at.filter(|_| job.attempt > 0) {
                section.push((Some(s), "run", format!("Attempt {} started", job.attempt)));
            }
            if let Some(f) = job.finished_at {
                let class = if job.state == JobState::Completed {
                    "done"
                } else {
                    "fail"
                };
                section.push((Some(f), class, format!("Finished: {}", job.state.as_str())));
            } else if matches!(job.state, JobState::Scheduled | JobState::Retryable) {
                section.push((Some(job.run_at), "", "Runs next".to_owned()));
            }
        }
        section.sort_by_key(|(t, _, _)| *t);
        items.extend(section);
    }
    let mut out = String::from("<ol class=\"timeline\" id=\"timeline\">");
    for (t, class, text) in items {
        let when = t
            .map(|t| {
                format!(
                    "<time datetime=\"{t}\">{}</time>",
                    t.strftime("%Y-%m-%d %H:%M:%S%.3f UTC")
                )
            })
            .unwrap_or_default();
        let _ = write!(out, "<li class=\"{class}\">{when}{}</li>", esc(&text));
    }
    out.push_str("</ol>");
    out
}

async fn job_page(
    State(state): State<AppState>,
    me: DashboardUser,
    Path(id): Path<String>,
    q: QueryData,
) -> PageResult<Response> {
    let d = load_detail(&state, &me.0.project_id, &job_id(&id)?).await?;
    let j = &d.job;
    let id = j.id.as_str();
    let runs = history::runs(j, &d.errors);
    let mut actions = String::new();
    if me.can_operate() {
        let url = |a: &str| format!("/dashboard/jobs/{id}/{a}");
        if j.state.is_final() {
            actions.push_str(
                &Action {
                    url: url("retry"),
                    label: "Retry",
                    id: Some("retry"),
                    confirm: None,
                    hidden: Vec::new(),
                    danger: false,
                }
                .render(),
            );
        } else {
            actions.push_str(
                &Action {
                    url: url("cancel"),
                    label: "Cancel",
                    id: Some("cancel"),
                    confirm: Some("Cancel this job? A running attempt is told to stop.".into()),
                    hidden: Vec::new(),
                    danger: true,
                }
                .render(),
            );
        }
        actions.push(' ');
        actions.push_str(
            &Action {
                url: url("delete"),
                label: "Delete",
                id: Some("delete"),
                confirm: Some("Delete this job and its history? This cannot be undone.".into()),
                hidden: Vec::new(),
                danger: true,
            }
            .render(),
        );
    }
    let tags = if j.tags.is_empty() {
        "—".to_owned()
    } else {
        j.tags
            .iter()
            .map(|t| {
                format!(
                    "<a class=\"tag\" href=\"{}\">{}</a>",
                    esc(&href("/dashboard/jobs", &[("tag", t)])),
                    esc(t)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let state_html = format!(
        "<strong id=\"job-state\" class=\"live state-{s}\" data-live=\"{k}\" data-live-class=\"state-\">{s}</strong>",
        s = j.state.as_str(),
        k = esc(&jkey(id, "state"))
    );
    let pane = detail(
        "job-detail",
        &[
            ("State", state_html),
            (
                "Queue",
                format!(
                    "<a href=\"/dashboard/queues/{q}\">{q}</a>",
                    q = esc(j.queue.as_str())
                ),
            ),
            ("Kind", format!("<code>{}</code>", esc(j.kind.as_str()))),
            (
                "Attempt",
                format!(
                    "<span id=\"job-attempt\">{}</span> of <span id=\"max-attempts\">{}</span> (this run)",
                    live(&jkey(id, "attempt"), &j.attempt.to_string()),
                    j.max_attempts
                ),
            ),
            ("Runs by", format!("<span id=\"job-target\">{}</span>", target_html(j))),
            ("Tags", format!("<span id=\"job-tags\">{tags}</span>")),
            (
                "Unique key",
                j.unique_key
                    .as_deref()
                    .map(|k| format!("<code id=\"unique-key\">{}</code>", esc(k)))
                    .unwrap_or_else(|| "—".into()),
            ),
            ("Priority", j.priority.value().to_string()),
            (
                "Timeout",
                if j.timeout_ms < 1000 {
                    format!("{} ms", j.timeout_ms)
                } else {
                    span(j.timeout_ms / 1000)
                },
            ),
            (
                "Backoff",
                format!(
                    "<code>{}</code>",
                    esc(&serde_json::to_string(&j.backoff).unwrap_or_default())
                ),
            ),
            ("Run at", ts(Some(j.run_at))),
            ("Worker", esc(j.worker.as_deref().unwrap_or("—"))),
            ("Lease ends", ts(j.lease_expires_at)),
        ],
    );
    let or_dash = |id: &str, v: &Option<serde_json::Value>| match v {
        Some(v) => json_view(id, v),
        None => format!("<p class=\"muted\" id=\"{id}\">—</p>"),
    };
    let body = format!(
        "<div class=\"card\"><p>{actions}</p>{pane}</div>\
         <div class=\"grid\"><section><h2>Payload</h2>{payload}</section>\
         <section><h2>Result</h2>{result}<h2>Progress</h2>{progress}</section></div>\
         <h2>Runs</h2>{runs}<h2>Timeline</h2>{timeline}",
        payload = json_view("payload", &j.payload),
        result = or_dash("result", &j.result),
        progress = or_dash("progress", &j.progress),
        runs = runs_html(j, &runs),
        timeline = timeline_html(j, &runs),
    );
    Ok(Page::new(format!("Job {id}"), Some(&me.0), body)
        .live(href(
            "/dashboard/live",
            &[("queue", j.queue.as_str()), ("job", id)],
        ))
        .flash(done_message(&q))
        .into_response())
}

async fn job_action(
    State(state): State<AppState>,
    me: DashboardUser,
    client: ClientInfo,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    form: FormData,
) -> PageResult<Response> {
    me.may_change(&headers)?;
    let (op, question, label) = match action.as_str() {
        "retry" => (JobOp::Retry, None, "Retry"),
        "cancel" => (
            JobOp::Cancel,
            Some("Cancel this job? A running attempt is told to stop."),
            "Cancel the job",
        ),
        "delete" => (
            JobOp::Delete,
            Some("Delete this job and its history? This cannot be undone."),
            "Delete the job",
        ),
        _ => {
            return Err(PageError::new(
                StatusCode::NOT_FOUND,
                "There is no such job action.",
            ))
        }
    };
    if let (Some(question), false) = (question, form.confirmed()) {
        let url = format!("/dashboard/jobs/{id}/{action}");
        let body = confirm_step(
            question,
            &url,
            &form.0,
            label,
            &format!("/dashboard/jobs/{id}"),
        );
        return Ok(Page::new("Please confirm", Some(&me.0), body).into_response());
    }
    let job_id = job_id(&id)?;
    let job = service::job_op(&state.db, &me.audit(&client), &job_id, op).await?;
    match op {
        JobOp::Retry => state
            .runtime
            .wakeups()
            .wake(me.0.project_id.as_str(), job.queue.as_str()),
        JobOp::Cancel | JobOp::Delete => state.runtime.signal_cancel(&job_id),
    }
    let to = match op {
        JobOp::Delete => href(
            &format!("/dashboard/queues/{}", job.queue),
            &[("done", "deleted"), ("n", "1")],
        ),
        JobOp::Retry => href(
            &format!("/dashboard/jobs/{id}"),
            &[("done", "retried"), ("n", "1")],
        ),
        JobOp::Cancel => href(&format!("/dashboard/jobs/{id}"), &[("done", "cancelled")]),
    };
    Ok(Redirect::to(&to).into_response())
}

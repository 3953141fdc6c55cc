//! Every queue's health at a glance (the overview and the queue list) and the live
//! endpoint the pages poll.
//!
//! Health reads maintained counters (never `count(*)` over jobs), the per-minute
//! throughput rows of the last hour, and for queues with waiting jobs the oldest one's age
//! through a few probes of the `jobs_ready` index.

use super::components::{empty_state, href, live, Action, Chart, LiveValues, Series};
use super::page::{age_secs, done_message, esc, num, span, Page, PageError, PageResult, QueryData};
use super::DashboardUser;
use crate::platform::{api_keys, projects};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::fmt::Write;
use switchboard_core::audit;
use switchboard_core::id::ProjectId;
use switchboard_core::time::{self, Timestamp};
use switchboard_queue::{store, JobState, QueueInfo, QueueName};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(overview))
        .route("/dashboard/queues", get(queues_page))
        .route("/dashboard/live", get(live_values))
}

/// Minutes the charts cover.
const MINUTES: i64 = 60;

/// A queue's health: counters, settings, the last hour per minute and the oldest waiting job.
pub struct Health {
    /// Counts and settings.
    pub info: QueueInfo,
    /// `[completed, failed]` per minute, oldest first, [`MINUTES`] of them (the last is the
    /// current minute).
    pub minutes: Vec<[i64; 2]>,
    /// Since when the longest-waiting available job has been runnable.
    pub oldest: Option<Timestamp>,
    /// Start of the first minute, seconds.
    pub since: i64,
}

impl Health {
    /// Jobs completed in the last hour.
    pub fn completed_hour(&self) -> i64 {
        self.minutes.iter().map(|m| m[0]).sum()
    }

    /// Jobs failed for good in the last hour.
    pub fn failed_hour(&self) -> i64 {
        self.minutes.iter().map(|m| m[1]).sum()
    }

    /// Jobs of a state.
    pub fn count(&self, s: JobState) -> i64 {
        self.info.counts.get(&s).copied().unwrap_or(0)
    }

    /// The oldest waiting job's age for people.
    pub fn oldest_text(&self) -> String {
        self.oldest
            .map(|t| span(age_secs(t)))
            .unwrap_or_else(|| "—".into())
    }

    /// The throughput chart.
    pub fn chart(&self, id: &str, width: u32, height: u32) -> String {
        let points = self
            .minutes
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let at = time::from_db((self.since + i as i64 * 60) * 1_000_000);
                (at.strftime("%H:%M UTC").to_string(), m.to_vec())
            })
            .collect();
        Chart {
            id,
            title: "Last hour, per minute",
            series: vec![
                Series {
                    name: "completed",
                    class: "completed",
                },
                Series {
                    name: "failed",
                    class: "failed",
                },
            ],
            points,
            width,
            height,
        }
        .render()
    }
}

/// Loads the health of every queue of the project (or one).
pub async fn health(
    state: &AppState,
    project: &ProjectId,
    only: Option<&QueueName>,
) -> PageResult<Vec<Health>> {
    let now_minute = time::now().as_second().div_euclid(60) * 60;
    let since = now_minute - (MINUTES - 1) * 60;
    let mut conn = state.db.read().await?;
    let queues = store::queues(conn.ex(), project, only).await?;
    let rows = store::minutes(conn.ex(), project, only, since).await?;
    let mut out = Vec::with_capacity(queues.len());
    for info in queues {
        let mut minutes = vec![[0i64; 2]; MINUTES as usize];
        for r in rows.iter().filter(|r| r.queue == info.name.as_str()) {
            if let Some(slot) = usize::try_from((r.minute - since) / 60)
                .ok()
                .and_then(|i| minutes.get_mut(i))
            {
                *slot = [r.completed, r.failed];
            }
        }
        let waiting = info.counts.get(&JobState::Available).copied().unwrap_or(0);
        let oldest = if waiting > 0 {
            store::oldest_available(conn.ex(), project, &info.name).await?
        } else {
            None
        };
        out.push(Health {
            info,
            minutes,
            oldest,
            since,
        });
    }
    Ok(out)
}

/// Key of a queue's live value.
pub fn qkey(queue: &str, what: &str) -> String {
    format!("q:{queue}:{what}")
}

/// The text of a queue's paused badge.
fn paused_text(paused: bool) -> &'static str {
    if paused {
        "paused"
    } else {
        ""
    }
}

/// Live values of queues' health.
pub fn queue_values(values: &mut LiveValues, list: &[Health]) {
    for h in list {
        let q = h.info.name.as_str();
        for s in JobState::ALL {
            values.set(qkey(q, s.as_str()), num(h.count(s)));
        }
        values.set(qkey(q, "paused"), paused_text(h.info.settings.paused));
        values.set(qkey(q, "oldest"), h.oldest_text());
        values.set(qkey(q, "completed_hour"), num(h.completed_hour()));
        values.set(qkey(q, "failed_hour"), num(h.failed_hour()));
    }
}

/// The paused badge of a queue, kept current.
pub fn paused_badge(h: &Health) -> String {
    format!(
        "<span class=\"badge\" data-live=\"{}\">{}</span>",
        esc(&qkey(h.info.name.as_str(), "paused")),
        paused_text(h.info.settings.paused)
    )
}

/// Counts by state, each linking to that state's jobs of the queue.
pub fn count_links(h: &Health) -> String {
    let q = h.info.name.as_str();
    let mut out = String::from("<div class=\"counts\">");
    for s in JobState::ALL {
        let _ = write!(
            out,
            "<a href=\"{}\" data-state=\"{st}\"><small>{st}</small><strong>{}</strong></a>",
            esc(&href(
                &format!("/dashboard/queues/{q}"),
                &[("state", s.as_str())]
            )),
            live(&qkey(q, s.as_str()), &num(h.count(s))),
            st = s.as_str(),
        );
    }
    out.push_str("</div>");
    out
}

/// Oldest waiting and last-hour totals.
pub fn facts(h: &Health) -> String {
    let q = h.info.name.as_str();
    format!(
        "<div class=\"facts\"><span>Oldest waiting: <strong>{}</strong></span>\
         <span>Last hour: <strong>{}</strong> completed, <strong>{}</strong> failed</span>\
         <span class=\"limit\">Running at most {}</span></div>",
        live(&qkey(q, "oldest"), &h.oldest_text()),
        live(&qkey(q, "completed_hour"), &num(h.completed_hour())),
        live(&qkey(q, "failed_hour"), &num(h.failed_hour())),
        esc(&h.info.settings.running_limit()),
    )
}

/// The node's base URL for commands people copy: the configured public URL, else the host
/// this page was requested from (the listen address may be `0.0.0.0` or port 0).
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()));
    match (&state.config.public_url, host) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(host)) => format!("http://{host}"),
        (None, None) => state.config.base_url(),
    }
}

/// What to do when there is no queue yet: enqueue a first job.
pub fn no_queues(base: &str) -> String {
    let curl = format!(
        "curl -X POST {}/v1/jobs \\\n  -H \"Authorization: Bearer $SWITCHBOARD_API_KEY\" \\\n  \
         -H \"Content-Type: application/json\" \\\n  \
         -d '{{\"queue\": \"emails\", \"kind\": \"send_welcome\", \"payload\": {{\"to\": \"ada@example.com\"}}}}'",
        base
    );
    empty_state(
        "No queues yet.",
        &format!(
            "<p>A queue appears with its first job. Enqueue one with an API key \
             (create one under <a href=\"/dashboard/keys\">API keys</a>):</p>\
             <pre class=\"curl\" id=\"first-job\">{}</pre>",
            esc(&curl)
        ),
    )
}

async fn overview(
    State(state): State<AppState>,
    me: DashboardUser,
    headers: HeaderMap,
    q: QueryData,
) -> PageResult<Response> {
    let project_id = &me.0.project_id;
    let (project, keys, events) = {
        let mut conn = state.db.read().await?;
        let project = projects::repo::get(conn.ex(), project_id)
            .await?
            .ok_or_else(|| PageError::not_found("project"))?;
        let keys = api_keys::repo::list(conn.ex(), project_id, None, 1000).await?;
        let events = audit::head_seq(conn.ex(), project_id).await?;
        (project, keys, events)
    };
    let active = keys.iter().filter(|k| k.revoked_at.is_none()).count();
    let list = health(&state, project_id, None).await?;
    let verify = Action {
        url: "/dashboard/audit/verify".into(),
        label: "Verify the chain",
        id: Some("verify-audit"),
        confirm: None,
        hidden: Vec::new(),
        danger: false,
    }
    .render();
    let mut body = format!(
        "<div class=\"card\"><div class=\"facts\"><span>Project <strong>{}</strong> <code>{}</code></span>\
         <span>Active API keys: <strong id=\"active-keys\">{active}</strong></span>\
         <span>Audit trail: <strong id=\"audit-events\">{}</strong> events {verify}</span>\
         <span>Database: <strong>{}</strong></span></div></div>",
        esc(&project.name),
        esc(project.id.as_str()),
        num(events),
        state.db.backend().name(),
    );
    if list.is_empty() {
        let _ = write!(
            body,
            "<div class=\"empty\" id=\"queues-empty\">{}</div>",
            no_queues(&base_url(&state, &headers))
        );
    } else {
        body.push_str("<h2>Queues</h2><div class=\"grid\" id=\"queue-cards\">");
        for h in &list {
            let q = h.info.name.as_str();
            let _ = write!(
                body,
                "<article class=\"card queue-card\" data-queue=\"{qe}\"><h3><a href=\"/dashboard/queues/{qe}\">{qe}</a>{badge}</h3>\
                 {counts}{facts}{chart}</article>",
                qe = esc(q),
                badge = paused_badge(h),
                counts = count_links(h),
                facts = facts(h),
                chart = h.chart(&format!("chart-{q}"), 320, 48),
            );
        }
        body.push_str("</div>");
    }
    Ok(Page::new("Overview", Some(&me.0), body)
        .live("/dashboard/live".into())
        .flash(done_message(&q))
        .into_response())
}

async fn queues_page(
    State(state): State<AppState>,
    me: DashboardUser,
    headers: HeaderMap,
    q: QueryData,
) -> PageResult<Response> {
    let list = health(&state, &me.0.project_id, None).await?;
    let body = if list.is_empty() {
        format!(
            "<div class=\"empty\" id=\"queues-empty\">{}</div>",
            no_queues(&base_url(&state, &headers))
        )
    } else {
        let mut rows = String::new();
        for h in &list {
            let q = h.info.name.as_str();
            let mut cells = String::new();
            for s in JobState::ALL {
                let _ = write!(
                    cells,
                    "<td class=\"num\"><a href=\"{}\" data-state=\"{}\">{}</a></td>",
                    esc(&href(
                        &format!("/dashboard/queues/{q}"),
                        &[("state", s.as_str())]
                    )),
                    s.as_str(),
                    live(&qkey(q, s.as_str()), &num(h.count(s)))
                );
            }
            let toggle = if !me.can_operate() {
                String::new()
            } else {
                let (action, label) = if h.info.settings.paused {
                    ("resume", "Resume")
                } else {
                    ("pause", "Pause")
                };
                Action {
                    url: format!("/dashboard/queues/{q}/{action}"),
                    label,
                    id: None,
                    confirm: None,
                    hidden: vec![("back", "/dashboard/queues".into())],
                    danger: false,
                }
                .render()
            };
            let _ = write!(
                rows,
                "<tr data-queue=\"{qe}\"><td><a href=\"/dashboard/queues/{qe}\">{qe}</a> {badge}</td>{cells}\
                 <td class=\"limit\">{limit}</td><td class=\"num\">{oldest}</td><td>{chart}</td><td>{toggle}</td></tr>",
                qe = esc(q),
                badge = paused_badge(h),
                limit = esc(&h.info.settings.running_limit()),
                oldest = live(&qkey(q, "oldest"), &h.oldest_text()),
                chart = h.chart(&format!("chart-{q}"), 180, 28),
            );
        }
        let head: String = JobState::ALL
            .iter()
            .map(|s| format!("<th class=\"num\">{}</th>", s.as_str()))
            .collect();
        format!(
            "<table id=\"queues\"><thead><tr><th>Queue</th>{head}<th>Running at most</th><th class=\"num\">Oldest waiting</th>\
             <th>Last hour (completed / failed per minute)</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    Ok(Page::new("Queues", Some(&me.0), body)
        .live("/dashboard/live".into())
        .flash(done_message(&q))
        .into_response())
}

/// Current values for the page's live elements: every queue's health (or `?queue=`'s),
/// and with `?job=` that job's state and attempt.
async fn live_values(
    State(state): State<AppState>,
    me: DashboardUser,
    q: QueryData,
) -> PageResult<LiveValues> {
    let project = &me.0.project_id;
    let only = q.get("queue").and_then(|n| QueueName::parse(n).ok());
    let mut values = LiveValues::default();
    let list = health(&state, project, only.as_ref()).await?;
    queue_values(&mut values, &list);
    if let Some(Ok(id)) = q.get("job").map(switchboard_queue::JobId::parse) {
        let mut conn = state.db.read().await?;
        if let Some(job) = store::get(conn.ex(), project, &id).await? {
            super::jobs::job_values(&mut values, &job);
        }
    }
    Ok(values)
}

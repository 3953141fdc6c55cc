//! A queue's page: its health and charts, its jobs by state with search and bulk actions,
//! pause/resume, retry-all-failed and clean, and its settings edited with the API's rules
//! (`apply_patch` through the same audited service call as `PATCH /v1/queues/{name}`).

use super::components::{confirm_step, href, messages, Action, Field};
use super::jobs::{back_to, job_list, with_outcome};
use super::overview::{count_links, facts, health, paused_badge, Health};
use super::page::{done_message, esc, num, FormData, Page, PageError, PageResult, QueryData};
use super::DashboardUser;
use crate::auth::ClientInfo;
use crate::error::{ApiError, FieldError};
use crate::queue::queues::{apply_patch, QueuePatch};
use crate::queue::service::{self, BulkOp};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use switchboard_core::time;
use switchboard_queue::{JobState, QueueName, QueueSettings, RateLimit};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/queues/{name}", get(queue_page))
        .route("/dashboard/queues/{name}/{action}", post(queue_action))
}

fn parse_name(name: &str) -> PageResult<QueueName> {
    QueueName::parse(name).map_err(|_| PageError::not_found("queue"))
}

/// The queue's health, or a 404 page.
async fn load(state: &AppState, me: &DashboardUser, name: &QueueName) -> PageResult<Health> {
    health(state, &me.0.project_id, Some(name))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| PageError::not_found("queue"))
}

/// The settings form's values as typed (kept when they are refused).
struct SettingsForm {
    concurrency: String,
    global_concurrency: String,
    rate_limit: String,
    rate_period_ms: String,
    keep_completed_secs: String,
    keep_failed_secs: String,
    keep_cancelled_secs: String,
}

impl SettingsForm {
    fn of(s: &QueueSettings) -> Self {
        SettingsForm {
            concurrency: s.concurrency.to_string(),
            global_concurrency: s
                .global_concurrency
                .map(|g| g.to_string())
                .unwrap_or_default(),
            rate_limit: s
                .rate_limit
                .map(|r| r.limit.to_string())
                .unwrap_or_default(),
            rate_period_ms: s
                .rate_limit
                .map(|r| r.period_ms.to_string())
                .unwrap_or_default(),
            keep_completed_secs: s.keep_completed_secs.to_string(),
            keep_failed_secs: s.keep_failed_secs.to_string(),
            keep_cancelled_secs: s.keep_cancelled_secs.to_string(),
        }
    }

    fn from_form(f: &FormData) -> Self {
        let v = |k: &str| f.raw(k).trim().to_owned();
        SettingsForm {
            concurrency: v("concurrency"),
            global_concurrency: v("global_concurrency"),
            rate_limit: v("rate_limit"),
            rate_period_ms: v("rate_period_ms"),
            keep_completed_secs: v("keep_completed_secs"),
            keep_failed_secs: v("keep_failed_secs"),
            keep_cancelled_secs: v("keep_cancelled_secs"),
        }
    }

    /// The patch these values mean; numbers that are not numbers are refused here, the
    /// ranges by `apply_patch` (the API's rules).
    fn patch(&self) -> Result<QueuePatch, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.rate_limit.is_empty() != self.rate_period_ms.is_empty() {
            errors.push(FieldError {
                field: "rate_limit".into(),
                message: "give both the limit and its period, or leave both empty".into(),
            });
        }
        let mut whole = |field: &str, v: &str| -> Option<i64> {
            whole_number(field, v).map_err(|e| errors.push(e)).ok()
        };
        let small = |n: i64| i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX });
        let concurrency = whole("concurrency", &self.concurrency).map(small);
        let global = match self.global_concurrency.as_str() {
            "" => Some(None),
            g => whole("global_concurrency", g).map(|g| Some(small(g))),
        };
        let rate = match (self.rate_limit.as_str(), self.rate_period_ms.as_str()) {
            ("", "") => Some(None),
            ("", _) | (_, "") => None,
            (l, p) => match (whole("rate_limit", l), whole("rate_period_ms", p)) {
                (Some(l), Some(p)) => Some(Some(RateLimit {
                    limit: small(l),
                    period_ms: p,
                })),
                _ => None,
            },
        };
        let completed = whole("keep_completed_secs", &self.keep_completed_secs);
        let failed = whole("keep_failed_secs", &self.keep_failed_secs);
        let cancelled = whole("keep_cancelled_secs", &self.keep_cancelled_secs);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(QueuePatch {
            concurrency,
            global_concurrency: global,
            rate_limit: rate,
            keep_completed_secs: completed,
            keep_failed_secs: failed,
            keep_cancelled_secs: cancelled,
        })
    }

    fn render(&self, queue: &str, errors: &BTreeMap<String, String>, editable: bool) -> String {
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
        let summary = if errors.is_empty() {
            String::new()
        } else {
            "<p class=\"error\" role=\"alert\" id=\"settings-error\">Nothing was saved: correct the fields marked below.</p>".into()
        };
        let disabled = if editable { "" } else { " disabled" };
        let save = if editable {
            "<button type=\"submit\" class=\"primary\" id=\"save-settings\">Save settings</button>"
        } else {
            "<p class=\"muted\">Viewers see the settings but cannot change them.</p>"
        };
        format!(
            "<form method=\"post\" action=\"/dashboard/queues/{q}/settings\" class=\"card\" id=\"settings\" novalidate>{summary}\
             <fieldset{disabled}><div class=\"fields\">{}{}{}{}{}{}{}</div></fieldset>{save}</form>",
            field("concurrency", "Concurrency", &self.concurrency, "Jobs one worker runs at once (a node, or a pull worker by its name), 1 to 1000."),
            field("global_concurrency", "Global concurrency", &self.global_concurrency, "Running jobs across all workers and nodes, 1 to 100000; empty for no cap."),
            field("rate_limit", "Rate limit: starts", &self.rate_limit, "Starts allowed per period, 1 to 1000000; empty for no limit."),
            field("rate_period_ms", "Rate limit: period (ms)", &self.rate_period_ms, "1 to 86400000 (one day)."),
            field("keep_completed_secs", "Keep completed (s)", &self.keep_completed_secs, "0 to 31536000 (365 days); 0 deletes on completion."),
            field("keep_failed_secs", "Keep failed (s)", &self.keep_failed_secs, "0 to 31536000 (365 days)."),
            field("keep_cancelled_secs", "Keep cancelled (s)", &self.keep_cancelled_secs, "0 to 31536000 (365 days)."),
            q = esc(queue),
        )
    }
}

/// A whole number typed into `field` (thousands separators allowed).
fn whole_number(field: &str, v: &str) -> Result<i64, FieldError> {
    let message = match v {
        "" => "is required".to_owned(),
        v => match v.replace([',', '_', ' '], "").parse::<i64>() {
            Ok(n) => return Ok(n),
            Err(_) => format!("“{v}” is not a whole number"),
        },
    };
    Err(FieldError {
        field: field.into(),
        message,
    })
}

/// The whole queue page, with the settings form as given.
async fn render(
    state: &AppState,
    me: &DashboardUser,
    name: &QueueName,
    q: &QueryData,
    form: Option<(SettingsForm, BTreeMap<String, String>)>,
) -> PageResult<Response> {
    let h = load(state, me, name).await?;
    let qn = name.as_str();
    let path = format!("/dashboard/queues/{qn}");
    let mut actions = String::new();
    if me.can_operate() {
        let (toggle, label) = if h.info.settings.paused {
            ("resume", "Resume")
        } else {
            ("pause", "Pause")
        };
        let failed = h.count(JobState::Failed);
        for a in [
            Action {
                url: format!("{path}/{toggle}"),
                label,
                id: Some("toggle-pause"),
                confirm: None,
                hidden: Vec::new(),
                danger: false,
            },
            Action {
                url: format!("{path}/retry-failed"),
                label: "Retry all failed",
                id: Some("retry-failed"),
                confirm: Some(format!(
                    "Retry all {} failed jobs of {qn}?",
                    num(failed)
                )),
                hidden: Vec::new(),
                danger: false,
            },
            Action {
                url: format!("{path}/clean"),
                label: "Delete completed",
                id: Some("clean-completed"),
                confirm: Some(format!(
                    "Delete every completed job of {qn} (up to 10,000 at a time)? This cannot be undone."
                )),
                hidden: vec![("state", "completed".into())],
                danger: true,
            },
        ] {
            actions.push_str(&a.render());
            actions.push(' ');
        }
    }
    let (table, bad_filter) = job_list(state, me, q, Some(name), &path).await?;
    let (values, errors) =
        form.unwrap_or_else(|| (SettingsForm::of(&h.info.settings), BTreeMap::new()));
    let invalid = !errors.is_empty();
    let mut body = format!(
        "<div class=\"card\"><div class=\"toolbar\">{badge} {actions}</div>{counts}{facts}{chart}</div>\
         <h2>Jobs</h2>{table}<h2>Settings</h2>{settings}",
        badge = paused_badge(&h),
        counts = count_links(&h),
        facts = facts(&h),
        chart = h.chart("chart", 720, 90),
        settings = values.render(qn, &errors, me.can_operate()),
    );
    if let Some(s) = q.get("state") {
        // Marks the count of the state being listed.
        body = body.replacen(
            &format!("data-state=\"{}\"", esc(s)),
            &format!("data-state=\"{}\" class=\"on\"", esc(s)),
            1,
        );
    }
    let status = if invalid {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if bad_filter {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(Page::new(format!("Queue {qn}"), Some(&me.0), body)
        .live(href("/dashboard/live", &[("queue", qn)]))
        .flash(done_message(q))
        .status(status)
        .into_response())
}

async fn queue_page(
    State(state): State<AppState>,
    me: DashboardUser,
    Path(name): Path<String>,
    q: QueryData,
) -> PageResult<Response> {
    let name = parse_name(&name)?;
    render(&state, &me, &name, &q, None).await
}

async fn queue_action(
    State(state): State<AppState>,
    me: DashboardUser,
    client: ClientInfo,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    form: FormData,
) -> PageResult<Response> {
    me.may_change(&headers)?;
    let name = parse_name(&name)?;
    let h = load(&state, &me, &name).await?;
    let ctx = me.audit(&client);
    let project = me.0.project_id.as_str();
    let page = format!("/dashboard/queues/{name}");
    let back = back_to(form.get("back"), &page);
    let confirm = |question: String, label: &str| -> Response {
        let url = format!("{page}/{action}");
        let body = confirm_step(&question, &url, &form.0, label, &back);
        Page::new("Please confirm", Some(&me.0), body).into_response()
    };
    let outcome = match action.as_str() {
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
            state
                .runtime
                .wakeups()
                .settings_changed(project, name.as_str());
            vec![("done", if paused { "paused" } else { "resumed" }.to_owned())]
        }
        "retry-failed" => {
            if !form.confirmed() {
                let n = num(h.count(JobState::Failed));
                return Ok(confirm(
                    format!("Retry all {n} failed jobs of {name}?"),
                    "Retry all failed",
                ));
            }
            let n = service::bulk(&state.db, &ctx, &name, BulkOp::RetryFailed).await?;
            state.runtime.wakeups().wake(project, name.as_str());
            vec![("done", "retried".into()), ("n", n.to_string())]
        }
        "clean" => {
            let st = form
                .get("state")
                .and_then(JobState::parse)
                .filter(|s| s.is_final())
                .ok_or_else(|| {
                    PageError::new(
                        StatusCode::BAD_REQUEST,
                        "Only completed, failed or cancelled jobs can be cleaned.",
                    )
                })?;
            if !form.confirmed() {
                return Ok(confirm(
                    format!(
                        "Delete every {} job of {name} (up to 10,000 at a time)? This cannot be undone.",
                        st.as_str()
                    ),
                    "Delete them",
                ));
            }
            let op = BulkOp::Clean {
                state: st,
                before: time::now(),
                limit: 10_000,
            };
            let n = service::bulk(&state.db, &ctx, &name, op).await?;
            vec![("done", "deleted".into()), ("n", n.to_string())]
        }
        "settings" => {
            let values = SettingsForm::from_form(&form);
            let saved = match values.patch() {
                Ok(patch) => service::save_settings(
                    &state.db,
                    &ctx,
                    &name,
                    "queue.update",
                    state.runtime.limits().queues,
                    |s| apply_patch(s, &patch),
                )
                .await
                .map_err(PageError::from),
                Err(fields) => Err(PageError::from(ApiError::invalid(fields))),
            };
            match saved {
                Ok(_) => {
                    state
                        .runtime
                        .wakeups()
                        .settings_changed(project, name.as_str());
                    vec![("done", "settings".into())]
                }
                Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY => {
                    let errors = messages(e.fields());
                    let q = QueryData(Vec::new());
                    return render(&state, &me, &name, &q, Some((values, errors))).await;
                }
                Err(e) => return Err(e),
            }
        }
        _ => {
            return Err(PageError::new(
                StatusCode::NOT_FOUND,
                "There is no such queue action.",
            ))
        }
    };
    let pairs: Vec<(&str, &str)> = outcome.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let to = if action == "settings" {
        format!("{}#settings", with_outcome(&page, &pairs))
    } else {
        with_outcome(&back, &pairs)
    };
    Ok(Redirect::to(&to).into_response())
}

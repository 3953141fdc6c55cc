//! The server-rendered dashboard at `/dashboard`: password login with a session cookie,
//! then pages an operator reads and acts on. Pages are built from the components in
//! [`components`]; `dashboard.js` (a file: the CSP forbids inline scripts) adds live values,
//! confirmation dialogs and selections on top, and every page works without it. Actions are
//! POST forms; the session cookie is SameSite=Lax and the Origin of every POST is checked,
//! so other sites cannot submit them. Destructive actions need `confirmed=1`, which the
//! dialog adds and the server's confirm step asks for otherwise. Errors are pages, never
//! problem documents. Each user's requests share the API's per-user rate limit.

mod assets;
pub mod components;
mod jobs;
mod overview;
pub mod page;
mod project;
mod queues;
mod schedules;

use crate::auth::{ClientInfo, Role};
use crate::error::ApiError;
use crate::middleware as mw;
use crate::platform::login::service::{self as login, Login};
use crate::platform::users::UserRecord;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use switchboard_core::audit::{Actor, AuditContext};
use switchboard_core::time;

pub use page::{esc, layout, ts, Page, PageError, PageResult};

const COOKIE: &str = "sb_session";
const SESSION_SECS: i64 = 12 * 3600;

/// The dashboard's routes.
pub fn router(state: AppState) -> Router<AppState> {
    let login_post = Router::new()
        .route("/dashboard/login", post(login_submit))
        .layer(from_fn_with_state(state.clone(), mw::rate_limit_ip));
    Router::new()
        .route("/dashboard/login", get(login_form))
        .route("/dashboard/logout", post(logout))
        .merge(overview::router())
        .merge(project::router())
        .merge(queues::router())
        .merge(jobs::router())
        .merge(schedules::router())
        .route("/dashboard/{*rest}", any(not_found_page))
        .merge(login_post)
        .method_not_allowed_fallback(wrong_method)
        .route_layer(from_fn_with_state(state, session))
        .merge(assets::router())
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .layer(axum::middleware::from_fn(html_errors))
}

/// Turns any error answer that is not a page (a problem document from a shared handler or
/// layer such as the login rate limit, a framework rejection in plain text) into an error
/// page with the same status and headers: the dashboard never shows raw problem JSON.
async fn html_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status().as_u16() < 400 {
        return resp;
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let problem = content_type.starts_with(crate::error::PROBLEM_JSON);
    let plain = content_type.is_empty() || content_type.starts_with("text/plain");
    if !(problem || plain) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let err = if problem {
        let p: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let detail = p["detail"].as_str().unwrap_or("").to_owned();
        let fields = p["errors"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| crate::error::FieldError {
                        field: e["field"].as_str().unwrap_or("").to_owned(),
                        message: e["message"].as_str().unwrap_or("").to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        PageError::from_problem(parts.status, &detail, fields)
    } else {
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        let text = if text.is_empty() {
            parts
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_owned()
        } else {
            text
        };
        PageError::new(parts.status, text)
    };
    let mut page = err.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            page.headers_mut().insert(name.clone(), value.clone());
        }
    }
    page
}

async fn wrong_method(method: axum::http::Method) -> PageError {
    PageError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed here: this address takes the form of a dashboard page;              open the page and use its button."
        ),
    )
}

async fn not_found_page() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "There is no dashboard page here.")
}

/// The user a session cookie belongs to, put in the request by [`session`].
#[derive(Clone)]
struct SessionUser(UserRecord);

/// Resolves the session cookie once per request and takes a token from the user's rate
/// limit bucket (the one their API calls use): over the limit, a 429 page.
async fn session(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let jar = CookieJar::from_headers(req.headers());
    let Some(token) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
        return next.run(req).await;
    };
    let rec = match login::session_user(&state.db, &token, time::now()).await {
        Ok(Some(rec)) => rec,
        Ok(None) => return next.run(req).await,
        Err(e) => return PageError::from(ApiError::from(e)).into_response(),
    };
    let actor = Actor {
        kind: "user".into(),
        id: rec.user.id.to_string(),
    };
    let decision = state
        .limiter
        .take(&mw::principal_key(&actor), mw::principal_rate(&state))
        .await;
    let mut resp = if decision.allowed {
        req.extensions_mut().insert(SessionUser(rec));
        next.run(req).await
    } else {
        PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many requests from your account. Try again in {} s.",
                decision.retry_after_secs
            ),
        )
        .into_response()
    };
    mw::apply_headers(&mut resp, &decision);
    resp
}

/// `Some(refusal)` for a form POST whose `Origin` is another site's: every dashboard POST,
/// login and logout included (a forged login would sign the victim into the attacker's
/// account). Requests without `Origin` (not sent by a browser) pass.
pub fn refuse_cross_origin(headers: &HeaderMap) -> Option<Response> {
    if same_origin(headers) {
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

/// Whether a request's `Origin` (when it has one) is this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_none_or(|o| o.split("://").nth(1) == Some(host))
}

/// A logged-in dashboard user; anything else is sent to the login page.
pub struct DashboardUser(pub UserRecord);

impl FromRequestParts<AppState> for DashboardUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionUser>()
            .map(|s| DashboardUser(s.0.clone()))
            .ok_or_else(|| Redirect::to("/dashboard/login").into_response())
    }
}

impl DashboardUser {
    /// Who acts through the dashboard, for the audit trail.
    pub fn audit(&self, client: &ClientInfo) -> AuditContext {
        AuditContext {
            project_id: self.0.project_id.clone(),
            actor: Actor {
                kind: "user".into(),
                id: self.0.user.id.to_string(),
            },
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            request_id: client.request_id.clone(),
        }
    }

    /// Whether this user may change things (viewers only read).
    pub fn can_operate(&self) -> bool {
        self.0.user.role != Role::Viewer
    }

    /// Refuses viewers and POSTs from other origins.
    pub fn may_change(&self, headers: &HeaderMap) -> Result<(), PageError> {
        if !self.can_operate() {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "Viewers cannot change anything: ask an owner or admin for the operator role.",
            ));
        }
        if same_origin(headers) {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "This form was submitted from another site; nothing was changed.",
            ))
        }
    }
}

async fn login_form() -> Html<String> {
    login_page(None, "")
}

/// The login form; after a failed attempt it keeps the e-mail typed.
fn login_page(error: Option<&str>, email: &str) -> Html<String> {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    layout(
        "Log in",
        None,
        &format!(
            "<div class=\"card\" style=\"max-width:360px\">{error}\
             <form method=\"post\" action=\"/dashboard/login\">\
             <label>E-mail<input name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{}\"></label>\
             <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required{}></label>\
             <label>Project (only if your e-mail is in several)<input name=\"project\" placeholder=\"proj_…\"></label>\
             <button type=\"submit\">Log in</button></form></div>",
            esc(email),
            if email.is_empty() { "" } else { " autofocus" },
        ),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    project: Option<String>,
}

async fn login_submit(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    if let Some(refused) = refuse_cross_origin(&headers) {
        return Ok(refused);
    }
    let attempt = Login {
        email: &form.email,
        password: &form.password,
        project: form.project.as_deref(),
    };
    let rec = match login::check_password(&state.db, &state.passwords, &attempt)
        .await
        .map_err(ApiError::from)
    {
        Ok(r) => r,
        Err(e) => {
            let message = match e.status() {
                StatusCode::UNAUTHORIZED => "Wrong e-mail or password.",
                StatusCode::TOO_MANY_REQUESTS => {
                    "Too many failed logins for this account. Try again later."
                }
                StatusCode::SERVICE_UNAVAILABLE => "The server is busy. Try again in a moment.",
                StatusCode::CONFLICT => {
                    "This e-mail and password match accounts in several projects: enter the project id."
                }
                StatusCode::UNPROCESSABLE_ENTITY => "That is not a project id (proj_…).",
                _ => return Err(e),
            };
            let mut resp = login_page(Some(message), &form.email).into_response();
            *resp.status_mut() = e.status();
            if let Some(retry) = e.header(&header::RETRY_AFTER) {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, retry.clone());
            }
            return Ok(resp);
        }
    };
    let token = login::open_session(&state.db, &client, &rec, SESSION_SECS).await?;
    let cookie = Cookie::build((COOKIE, token))
        .path("/dashboard")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.base_url().starts_with("https://"));
    Ok((jar.add(cookie), Redirect::to("/dashboard")).into_response())
}

async fn logout(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    user: Result<DashboardUser, Response>,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    if let Some(refused) = refuse_cross_origin(&headers) {
        return Ok(refused);
    }
    if let (Some(c), Ok(DashboardUser(rec))) = (jar.get(COOKIE), user) {
        login::close_session(&state.db, &client, &rec, c.value()).await?;
    }
    let jar = jar.remove(Cookie::build(COOKIE).path("/dashboard"));
    Ok((jar, Redirect::to("/dashboard/login")).into_response())
}

//! The server-rendered dashboard at `/dashboard`: password login with a session cookie,
//! then pages an operator reads and acts on. No JavaScript is needed; the CSP forbids inline
//! scripts. Actions are POST forms; the session cookie is SameSite=Lax and the Origin of
//! every POST is checked, so other sites cannot submit them.

mod queues;

use crate::auth::ClientInfo;
use crate::error::ApiError;
use crate::middleware as mw;
use crate::platform::login::{self, repo as sessions};
use crate::platform::users::repo::{self as users, UserRecord};
use crate::platform::{api_keys, projects};
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use std::fmt::Write;
use switchboard_core::audit::{self, Filter};
use switchboard_core::{secret, time};

const COOKIE: &str = "sb_session";
const SESSION_SECS: i64 = 12 * 3600;

/// The dashboard's routes.
pub fn router(state: AppState) -> Router<AppState> {
    let login_post = Router::new()
        .route("/dashboard/login", post(login_submit))
        .layer(from_fn_with_state(state, mw::rate_limit_ip));
    Router::new()
        .route("/dashboard", get(overview))
        .route("/dashboard/login", get(login_form))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/keys", get(keys_page))
        .route("/dashboard/audit", get(audit_page))
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .merge(queues::router())
        .merge(login_post)
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1a1a1a;background:#f6f7f9}\
header{background:#1f2937;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}\
header a{color:#d1d5db;text-decoration:none}header a:hover{color:#fff}\
header form{margin-left:auto}main{padding:1.2rem;max-width:1200px}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{border-bottom:1px solid #e5e7eb;padding:.4rem .6rem;text-align:left;font-size:.9rem;vertical-align:top}\
th{background:#f3f4f6}code{font-size:.85rem}.card{background:#fff;padding:1rem;margin-bottom:1rem;border:1px solid #e5e7eb}\
.error{color:#b91c1c}input{padding:.4rem;margin:.2rem 0 .6rem;width:100%;box-sizing:border-box}\
button{padding:.4rem .9rem}form.inline{display:inline;margin:0}form.inline button{padding:.15rem .5rem}\
.filters input,.filters select{width:auto;margin-right:.5rem}pre{background:#f3f4f6;padding:.6rem;overflow:auto}\
.state-failed{color:#b91c1c}.state-completed{color:#15803d}.state-running{color:#1d4ed8}.flash{background:#ecfdf5;border:1px solid #a7f3d0;padding:.5rem}";

/// Wraps a page body in the common layout.
pub fn layout(title: &str, user: Option<&UserRecord>, body: &str) -> Html<String> {
    let nav = match user {
        Some(u) => format!(
            "<a href=\"/dashboard\">Overview</a><a href=\"/dashboard/queues\">Queues</a>\
             <a href=\"/dashboard/jobs\">Jobs</a><a href=\"/dashboard/schedules\">Schedules</a>\
             <a href=\"/dashboard/keys\">API keys</a>\
             <a href=\"/dashboard/audit\">Audit log</a><a href=\"/docs/\">API docs</a>\
             <form method=\"post\" action=\"/dashboard/logout\"><span>{} ({})</span> \
             <button type=\"submit\">Log out</button></form>",
            esc(&u.user.email),
            u.user.role.as_str()
        ),
        None => String::new(),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Switchboard</title><style>{STYLE}</style></head>\
         <body><header><strong>Switchboard</strong>{nav}</header><main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    ))
}

/// `Some(refusal)` for a form POST whose `Origin` is another site's: every dashboard POST,
/// login and logout included (a forged login would sign the victim into the attacker's
/// account). Requests without `Origin` (not sent by a browser) pass.
pub fn refuse_cross_origin(headers: &HeaderMap) -> Option<Response> {
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

/// A logged-in dashboard user; anything else is sent to the login page.
pub struct DashboardUser(pub UserRecord);

impl FromRequestParts<AppState> for DashboardUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/dashboard/login").into_response();
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
            return Err(to_login());
        };
        let lookup = async {
            let mut conn = state.db.read().await?;
            let Some(user_id) =
                sessions::find_session(conn.ex(), &secret::digest(&token), time::now()).await?
            else {
                return Ok(None);
            };
            users::find_by_id(conn.ex(), &user_id).await
        };
        match lookup.await {
            Ok(Some(rec)) if rec.user.disabled_at.is_none() => Ok(DashboardUser(rec)),
            Ok(_) => Err(to_login()),
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}

async fn login_form() -> Html<String> {
    login_page(None)
}

fn login_page(error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    layout(
        "Log in",
        None,
        &format!(
            "<div class=\"card\" style=\"max-width:360px\">{error}\
             <form method=\"post\" action=\"/dashboard/login\">\
             <label>E-mail<input name=\"email\" type=\"email\" autocomplete=\"username\" required></label>\
             <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <label>Project (only if your e-mail is in several)<input name=\"project\" placeholder=\"proj_…\"></label>\
             <button type=\"submit\">Log in</button></form></div>"
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
    let rec = match login::http::check_password(
        &state,
        &form.email,
        &form.password,
        form.project.as_deref(),
    )
    .await
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
            let mut resp = login_page(Some(message)).into_response();
            *resp.status_mut() = e.status();
            if let Some(retry) = e.header(&header::RETRY_AFTER) {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, retry.clone());
            }
            return Ok(resp);
        }
    };
    let token = secret::random_token("sbs_");
    let now = time::now();
    let mut tx = state.db.begin().await?;
    sessions::insert_session(
        tx.ex(),
        &secret::digest(&token),
        rec.user.id.as_str(),
        rec.project_id.as_str(),
        now,
        time::add_secs(now, SESSION_SECS),
    )
    .await?;
    login::http::record_self(&mut tx, &rec, &client, "auth.dashboard_login", None).await?;
    tx.commit().await?;
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
        let mut tx = state.db.begin().await?;
        sessions::delete_session(tx.ex(), &secret::digest(c.value())).await?;
        login::http::record_self(&mut tx, &rec, &client, "auth.dashboard_logout", None).await?;
        tx.commit().await?;
    }
    let jar = jar.remove(Cookie::build(COOKIE).path("/dashboard"));
    Ok((jar, Redirect::to("/dashboard/login")).into_response())
}

async fn overview(
    State(state): State<AppState>,
    DashboardUser(me): DashboardUser,
) -> Result<Html<String>, ApiError> {
    let mut conn = state.db.read().await?;
    let project = projects::repo::get(conn.ex(), &me.project_id)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let keys = api_keys::repo::list(conn.ex(), &me.project_id, None, 1000).await?;
    let active = keys.iter().filter(|k| k.revoked_at.is_none()).count();
    let chain = audit::verify(conn.ex(), &me.project_id).await?;
    let body = format!(
        "<div class=\"card\"><p>Project <strong>{}</strong> <code>{}</code></p>\
         <p>Active API keys: <strong id=\"active-keys\">{active}</strong></p>\
         <p>Audit trail: <strong id=\"audit-status\">{}</strong> ({} events checked)</p>\
         <p>Database: {}</p></div>",
        esc(&project.name),
        esc(project.id.as_str()),
        if chain.ok { "intact" } else { "BROKEN" },
        chain.checked,
        state.db.backend().name(),
    );
    Ok(layout("Overview", Some(&me), &body))
}

/// A timestamp for people, or a dash.
pub fn ts(t: Option<time::Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

async fn keys_page(
    State(state): State<AppState>,
    DashboardUser(me): DashboardUser,
) -> Result<Html<String>, ApiError> {
    let mut conn = state.db.read().await?;
    let keys = api_keys::repo::list(conn.ex(), &me.project_id, None, 1000).await?;
    let mut rows = String::new();
    for k in &keys {
        let _ = write!(
            rows,
            "<tr><td><code>{}</code></td><td>{}</td><td><code>{}…</code></td><td>{}</td><td class=\"role\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(k.id.as_str()),
            esc(&k.name),
            esc(&k.prefix),
            esc(&k.scopes.to_db()),
            k.role.as_str(),
            ts(Some(k.created_at)),
            ts(k.last_used_at),
            if k.revoked_at.is_some() { "revoked" } else { "active" },
        );
    }
    let body = format!(
        "<table id=\"keys\"><thead><tr><th>Id</th><th>Name</th><th>Prefix</th><th>Scopes</th>\
         <th>Role</th><th>Created</th><th>Last used</th><th>Status</th></tr></thead><tbody>{rows}</tbody></table>"
    );
    Ok(layout("API keys", Some(&me), &body))
}

#[derive(Deserialize)]
struct AuditParams {
    action: Option<String>,
}

async fn audit_page(
    State(state): State<AppState>,
    DashboardUser(me): DashboardUser,
    axum::extract::Query(q): axum::extract::Query<AuditParams>,
) -> Result<Html<String>, ApiError> {
    let filter = Filter {
        action: q.action.filter(|a| !a.is_empty()),
        ..Filter::default()
    };
    let mut conn = state.db.read().await?;
    let events = audit::list(conn.ex(), &me.project_id, &filter, 200).await?;
    let mut rows = String::new();
    for e in &events {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}:{}</td><td><code>{}</code></td><td>{} <code>{}</code></td><td>{}</td></tr>",
            e.seq,
            ts(Some(e.created_at)),
            esc(&e.actor.kind),
            esc(&e.actor.id),
            esc(&e.action),
            esc(&e.entity_type),
            esc(&e.entity_id),
            esc(e.ip.as_deref().unwrap_or("—")),
        );
    }
    let body = format!(
        "<form method=\"get\"><label>Action <input name=\"action\" placeholder=\"e.g. api_key.create\" style=\"width:auto\"></label> \
         <button type=\"submit\">Filter</button></form>\
         <table id=\"audit\"><thead><tr><th>#</th><th>When</th><th>Actor</th><th>Action</th><th>Entity</th><th>IP</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    );
    Ok(layout("Audit log", Some(&me), &body))
}

//! What every dashboard page shares: escaping and formatting, the layout, error pages, and
//! forms and query strings read without ever answering with a raw problem document.

use super::assets;
use crate::error::{ApiError, FieldError};
use crate::platform::users::UserRecord;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use switchboard_core::time::{self, Timestamp};

/// Escapes text for HTML (element content and quoted attributes).
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

/// A timestamp in UTC for people, or a dash.
pub fn ts(t: Option<Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// A whole number with thousands separators.
pub fn num(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A length of time for people: `45 s`, `12 min`, `3 h 20 min`, `2 d 4 h`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => match (s / 3600, s % 3600 / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        _ => match (s / 86_400, s % 86_400 / 3600) {
            (d, 0) => format!("{d} d"),
            (d, h) => format!("{d} d {h} h"),
        },
    }
}

/// Seconds from `t` to now.
pub fn age_secs(t: Timestamp) -> i64 {
    (time::to_db(time::now()) - time::to_db(t)) / 1_000_000
}

/// A page: title, body and what the layout around it needs.
pub struct Page<'a> {
    title: String,
    user: Option<&'a UserRecord>,
    body: String,
    live: Option<String>,
    status: StatusCode,
    flash: Option<String>,
}

impl<'a> Page<'a> {
    /// A page for a logged-in user (or `None` on the login page).
    pub fn new(title: impl Into<String>, user: Option<&'a UserRecord>, body: String) -> Self {
        Page {
            title: title.into(),
            user,
            body,
            live: None,
            status: StatusCode::OK,
            flash: None,
        }
    }

    /// `dashboard.js` polls this `/dashboard/live?…` URL and updates the page's live values.
    pub fn live(mut self, url: String) -> Self {
        self.live = Some(url);
        self
    }

    /// Answers with this status (the body is still a full page).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A one-line notice above the body (the outcome of the action that led here).
    pub fn flash(mut self, message: Option<String>) -> Self {
        self.flash = message;
        self
    }

    /// The whole document.
    pub fn html(&self) -> String {
        let nav = match self.user {
            Some(u) => format!(
                "<nav><a href=\"/dashboard\">Overview</a><a href=\"/dashboard/queues\">Queues</a>\
                 <a href=\"/dashboard/jobs\">Jobs</a><a href=\"/dashboard/schedules\">Schedules</a>\
                 <a href=\"/dashboard/keys\">API keys</a><a href=\"/dashboard/audit\">Audit log</a>\
                 <a href=\"/docs/\">API docs</a></nav>\
                 <form method=\"post\" action=\"/dashboard/logout\"><span>{} ({})</span> \
                 <button type=\"submit\">Log out</button></form>",
                esc(&u.user.email),
                u.user.role.as_str()
            ),
            None => String::new(),
        };
        let live = self
            .live
            .as_deref()
            .map(|u| format!(" data-live-src=\"{}\"", esc(u)))
            .unwrap_or_default();
        let flash = self
            .flash
            .as_deref()
            .map(|m| format!("<p class=\"flash\" role=\"status\">{}</p>", esc(m)))
            .unwrap_or_default();
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · Switchboard</title>\
             <link rel=\"stylesheet\" href=\"{css}\"><script src=\"{js}\" defer></script></head>\
             <body{live}><header><a class=\"brand\" href=\"/dashboard\">Switchboard</a>{nav}</header>\
             <main><h1>{title}</h1>{flash}{body}</main></body></html>",
            title = esc(&self.title),
            css = assets::CSS_PATH.as_str(),
            js = assets::JS_PATH.as_str(),
            body = self.body,
        )
    }
}

impl IntoResponse for Page<'_> {
    fn into_response(self) -> Response {
        (self.status, Html(self.html())).into_response()
    }
}

/// Wraps a page body in the common layout.
pub fn layout(title: &str, user: Option<&UserRecord>, body: &str) -> Html<String> {
    Html(Page::new(title, user, body.to_owned()).html())
}

/// An error shown as a page: the dashboard never answers with a problem document.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
    fields: Vec<FieldError>,
    retry_after: Option<HeaderValue>,
}

impl PageError {
    /// An error page with a status and a message for people.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
        }
    }

    /// 404 for a missing thing.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("No such {what}."))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Field-level messages, when the input was at fault.
    pub fn fields(&self) -> &[FieldError] {
        &self.fields
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl PageError {
    /// From a problem's status, detail and field errors, worded for people.
    pub fn from_problem(status: StatusCode, detail: &str, fields: Vec<FieldError>) -> Self {
        let message = match status {
            StatusCode::NOT_FOUND => {
                let what = detail.trim_end_matches(" not found");
                format!("No such {what}.")
            }
            s if s.is_server_error() => format!(
                "Something went wrong on the server: {}. Try again in a moment.",
                detail.trim_end_matches('.')
            ),
            _ => capitalize(detail),
        };
        PageError {
            status,
            message,
            fields,
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE)
                .then(|| HeaderValue::from_static("1")),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        let p = e.problem();
        PageError::from_problem(e.status(), &p.detail, p.errors)
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<switchboard_queue::store::QueueError> for PageError {
    fn from(e: switchboard_queue::store::QueueError) -> Self {
        ApiError::from(e).into()
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => {
            let mut out: String = f.to_uppercase().collect();
            out.push_str(c.as_str());
            if !out.ends_with('.') {
                out.push('.');
            }
            out
        }
        None => String::new(),
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::TOO_MANY_REQUESTS => "Slow down",
            s if s.is_server_error() => "Server error",
            _ => "Cannot do that",
        };
        let fields: String = self
            .fields
            .iter()
            .map(|f| {
                if f.field.is_empty() {
                    format!("<li>{}</li>", esc(&f.message))
                } else {
                    format!(
                        "<li><code>{}</code>: {}</li>",
                        esc(&f.field),
                        esc(&f.message)
                    )
                }
            })
            .collect();
        let fields = if fields.is_empty() {
            fields
        } else {
            format!("<ul>{fields}</ul>")
        };
        let body = format!(
            "<div class=\"card error-page\"><p class=\"error\" role=\"alert\">{}</p>{fields}\
             <p><a href=\"/dashboard\">Back to the overview</a></p></div>",
            esc(&self.message)
        );
        let mut resp = Page::new(title, None, body)
            .status(self.status)
            .into_response();
        if let Some(v) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Result of a dashboard handler.
pub type PageResult<T = Response> = Result<T, PageError>;

/// Fields of a submitted form, in order (repeated names such as selected ids included).
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of `name`, trimmed, if not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The raw first value of `name` (empty when absent).
    pub fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// Whether the person confirmed a destructive action (the dialog or the confirm step).
    pub fn confirmed(&self) -> bool {
        self.get("confirmed") == Some("1")
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A bodiless POST (a button with no fields, sent by a script or curl) is an empty form.
        if !req.headers().contains_key(header::CONTENT_TYPE) {
            let bytes = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
            return Ok(FormData(
                form_urlencoded::parse(&bytes).into_owned().collect(),
            ));
        }
        axum::Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map(|axum::Form(v)| FormData(v))
            .map_err(|e| {
                PageError::new(
                    StatusCode::BAD_REQUEST,
                    format!("The form could not be read ({}).", e.body_text()),
                )
            })
    }
}

/// Query-string parameters; reading them never fails (a bad value is the page's to explain).
pub struct QueryData(pub Vec<(String, String)>);

impl QueryData {
    /// The first value of `name`, trimmed, if not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first value of `name` as an owned string, if not empty.
    pub fn owned(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryData {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        Ok(QueryData(
            form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
        ))
    }
}

/// The notice for an action's outcome, passed as `?done=<code>&n=<count>` after a redirect
/// (only these fixed texts, so a link cannot make the dashboard say anything else).
pub fn done_message(q: &QueryData) -> Option<String> {
    let n: i64 = q.get("n").and_then(|n| n.parse().ok()).unwrap_or(0);
    let jobs = |verb: &str| match n {
        1 => format!("1 job {verb}."),
        n => format!("{} jobs {verb}.", num(n)),
    };
    let message = match q.get("done")? {
        "paused" => "Queue paused: no new jobs start until it is resumed.".into(),
        "resumed" => "Queue resumed.".into(),
        "settings" => "Settings saved.".into(),
        "retried" => jobs("retried"),
        "deleted" => jobs("deleted"),
        "cancelled" => "Job cancelled.".into(),
        "none" => "Nothing selected: tick the jobs first.".into(),
        "schedule-paused" => "Schedule paused.".into(),
        "schedule-resumed" => "Schedule resumed.".into(),
        "schedule-saved" => "Schedule saved.".into(),
        "schedule-deleted" => "Schedule deleted (the jobs it enqueued stay).".into(),
        "triggered" => "Schedule triggered: this is the job it enqueued.".into(),
        _ => return None,
    };
    let skipped: i64 = q.get("skipped").and_then(|n| n.parse().ok()).unwrap_or(0);
    Some(if skipped > 0 {
        format!(
            "{message} {} skipped: their state does not allow it.",
            num(skipped)
        )
    } else {
        message
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_spans_read_well() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1000), "1,000");
        assert_eq!(num(-1234567), "-1,234,567");
        assert_eq!(span(42), "42 s");
        assert_eq!(span(600), "10 min");
        assert_eq!(span(3600), "1 h");
        assert_eq!(span(3600 + 120), "1 h 2 min");
        assert_eq!(span(2 * 86_400 + 3 * 3600), "2 d 3 h");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}

//! One error type for the whole HTTP surface, rendered as RFC 9457 `application/problem+json`.
//!
//! Every problem has a stable kebab-case `code` (also the last segment of `type`), a human
//! `detail`, and for input errors a per-field `errors` list. Internal errors are logged with
//! their source chain and answered with a bare 500 that leaks nothing.
//!
//! Codes come from one catalogue, [`codes`]: each binds a code to its status and meaning.
//! [`ApiError`] can only be built from it, the OpenAPI document describes error responses
//! with it, and docs/api.md's table of codes is generated from it (a test compares them).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem code of the catalogue: its name, HTTP status and meaning. Only [`codes`]
/// makes them, so every code a client can see is listed there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    name: &'static str,
    status: StatusCode,
    meaning: &'static str,
}

impl Code {
    /// The stable kebab-case name (`validation-failed`).
    pub fn name(self) -> &'static str {
        self.name
    }
    /// The status every problem with this code has.
    pub fn status(self) -> StatusCode {
        self.status
    }
    /// When it happens, for documentation.
    pub fn meaning(self) -> &'static str {
        self.meaning
    }
    /// The catalogue entry named `name`.
    pub fn find(name: &str) -> Option<Code> {
        codes::ALL.iter().copied().find(|c| c.name == name)
    }
}

macro_rules! catalogue {
    ($($(#[$doc:meta])* $id:ident = ($status:ident, $name:literal, $meaning:literal);)*) => {
        $(
            $(#[$doc])*
            pub const $id: Code = Code { name: $name, status: StatusCode::$status, meaning: $meaning };
        )*
        /// Every code, in the order of the documentation table.
        pub const ALL: &[Code] = &[$($id),*];
    };
}

/// The catalogue of problem codes.
pub mod codes {
    use super::{Code, StatusCode};

    catalogue! {
        /// A malformed header or request the framework refused.
        BAD_REQUEST = (BAD_REQUEST, "bad-request",
            "a malformed header (such as `Idempotency-Key`) or request");
        /// The body is not JSON.
        MALFORMED_JSON = (BAD_REQUEST, "malformed-json",
            "the body is not JSON (the detail gives line and column)");
        /// A query parameter is unknown or of the wrong type.
        INVALID_QUERY = (BAD_REQUEST, "invalid-query",
            "a query parameter is unknown or of the wrong type (the detail names it)");
        /// No valid credential.
        UNAUTHORIZED = (UNAUTHORIZED, "unauthorized",
            "missing, invalid, expired or revoked credential, or wrong login");
        /// A rotated refresh token came back.
        REFRESH_TOKEN_REUSED = (UNAUTHORIZED, "refresh-token-reused",
            "an already-rotated refresh token was presented; its whole login is revoked");
        /// A provider callback's signature does not verify.
        INVALID_SIGNATURE = (UNAUTHORIZED, "invalid-signature",
            "a provider callback under `/hooks/` whose signature does not verify (logged with the client IP)");
        /// The credential lacks the scope.
        FORBIDDEN = (FORBIDDEN, "forbidden",
            "the credential lacks the operation's scope");
        /// Nothing there for this caller.
        NOT_FOUND = (NOT_FOUND, "not-found",
            "unknown route, or no such thing in your project");
        /// `/metrics` is not served on this listener.
        METRICS_DISABLED = (NOT_FOUND, "metrics-disabled",
            "`/metrics` is not served on this listener (see `SWITCHBOARD_METRICS_TOKEN`)");
        /// Wrong method.
        METHOD_NOT_ALLOWED = (METHOD_NOT_ALLOWED, "method-not-allowed",
            "wrong method on a known route");
        /// The request took too long.
        TIMEOUT = (REQUEST_TIMEOUT, "timeout",
            "the request took too long to arrive");
        /// Same key, first request still running.
        IDEMPOTENCY_KEY_IN_USE = (CONFLICT, "idempotency-key-in-use",
            "a request with this `Idempotency-Key` is still being processed");
        /// A replay would need a secret that is not kept.
        SECRET_NOT_REPLAYABLE = (CONFLICT, "secret-not-replayable",
            "a replayed request created a secret, which is shown only once (the body names what was created)");
        /// Another user has this e-mail.
        EMAIL_TAKEN = (CONFLICT, "email-taken",
            "a user with this e-mail already exists in the project");
        /// Another schedule has this name.
        NAME_TAKEN = (CONFLICT, "name-taken",
            "a schedule with this name already exists in the project");
        /// The last owner cannot go.
        LAST_OWNER = (CONFLICT, "last-owner",
            "the project's last active owner cannot be demoted or disabled");
        /// Several accounts match a login.
        PROJECT_REQUIRED = (CONFLICT, "project-required",
            "the e-mail and password match accounts in several projects: send `project`");
        /// The project may not have another queue.
        QUEUE_LIMIT = (CONFLICT, "queue-limit",
            "the request would give the project more queues than `SWITCHBOARD_MAX_QUEUES_PER_PROJECT` allows (the detail gives the limit)");
        /// The project may not have another schedule.
        SCHEDULE_LIMIT = (CONFLICT, "schedule-limit",
            "the project may not have another schedule, or another firing more than once a minute (the detail gives the limit)");
        /// The job is not in a state the operation applies to.
        INVALID_STATE = (CONFLICT, "invalid-state",
            "the job is not in a state this operation applies to (e.g. retrying a running job)");
        /// The lease token is no longer the job's.
        STALE_LEASE = (CONFLICT, "stale-lease",
            "the lease token is not the job's current one (its lease ended and the job was handed out again)");
        /// The job was cancelled while a worker held it.
        JOB_CANCELLED = (CONFLICT, "job-cancelled",
            "the job was cancelled while the worker held it: stop working on it");
        /// The body is too large.
        BODY_TOO_LARGE = (PAYLOAD_TOO_LARGE, "body-too-large",
            "the body is larger than the route's limit: `SWITCHBOARD_BODY_LIMIT`, `SWITCHBOARD_HOOKS_BODY_LIMIT` under `/hooks/`, or an upload's own (the detail gives it in bytes)");
        /// Not JSON.
        UNSUPPORTED_MEDIA_TYPE = (UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type",
            "a body without `Content-Type: application/json`");
        /// Wrong values.
        VALIDATION_FAILED = (UNPROCESSABLE_ENTITY, "validation-failed",
            "missing fields, wrong types or values (per-field `errors`)");
        /// Same key, different request.
        IDEMPOTENCY_KEY_REUSED = (UNPROCESSABLE_ENTITY, "idempotency-key-reused",
            "this `Idempotency-Key` was used with a different request");
        /// The caller's bucket is empty.
        RATE_LIMITED = (TOO_MANY_REQUESTS, "rate-limited",
            "the caller's (or the client IP's) request bucket is empty; see `Retry-After`");
        /// Too many failed logins.
        LOGIN_THROTTLED = (TOO_MANY_REQUESTS, "login-throttled",
            "too many failed logins for this account; see `Retry-After`");
        /// A bug.
        INTERNAL = (INTERNAL_SERVER_ERROR, "internal",
            "a bug; logged with the request id, nothing internal in the body");
        /// The database is unreachable.
        DATABASE_UNAVAILABLE = (SERVICE_UNAVAILABLE, "database-unavailable",
            "the database cannot be reached; retry (see `Retry-After`)");
        /// Password hashing is saturated.
        SERVER_BUSY = (SERVICE_UNAVAILABLE, "server-busy",
            "too many password checks are in progress; retry (see `Retry-After`)");
    }
}

/// One field-level complaint.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct FieldError {
    /// JSON path of the field (`scopes[2]`, `email`); empty for the whole body.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI reference identifying the problem type (`/problems/<code>`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Short, stable summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Human explanation of this occurrence.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// Field-level errors, when the input was at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error a handler returns.
#[derive(Debug)]
pub struct ApiError {
    code: Code,
    detail: String,
    errors: Vec<FieldError>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// A problem of catalogue entry `code` with a detail.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// 400 with code `bad-request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(codes::BAD_REQUEST, detail)
    }

    /// 404: the thing does not exist *for this caller* (other projects' data included).
    pub fn not_found(what: &str) -> Self {
        Self::new(codes::NOT_FOUND, format!("{what} not found"))
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(codes::UNAUTHORIZED, detail).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"switchboard\""),
        )
    }

    /// 403 for a missing scope or role.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(codes::FORBIDDEN, detail)
    }

    /// 422 listing what is wrong with which fields.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| {
                if e.field.is_empty() {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.field, e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(codes::VALIDATION_FAILED, detail).with_errors(errors)
    }

    /// 422 for a single field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    /// Adds field-level errors (any code: a bad query parameter is named this way too).
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// `code` (a 409) when `e` is a unique-constraint violation, else the database error.
    pub fn unique(e: sqlx::Error, code: Code, detail: &str) -> Self {
        if switchboard_core::db::is_unique_violation(&e) {
            Self::new(code, detail)
        } else {
            e.into()
        }
    }

    /// 500, after logging what went wrong.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(
            codes::INTERNAL,
            "an internal error occurred; it has been logged",
        )
    }

    /// Adds a response header (e.g. `Retry-After`).
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A header this error's response carries (e.g. `Retry-After`).
    pub fn header(&self, name: &header::HeaderName) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code.status
    }

    /// The catalogue entry.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        problem(
            self.code.status,
            self.code,
            &self.detail,
            self.errors.clone(),
        )
    }
}

/// Builds a problem document; `status` is the code's own except for rejections the
/// framework made with a status of its own (rewritten by `middleware::problem_errors`).
pub fn problem(status: StatusCode, code: Code, detail: &str, errors: Vec<FieldError>) -> Problem {
    let code = code.name;
    Problem {
        type_: format!("/problems/{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail.to_owned(),
        code: code.to_owned(),
        errors,
    }
}

/// Serialises a problem into a response.
pub fn problem_response(p: &Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(p).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = problem_response(&self.problem());
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::new(
                    codes::DATABASE_UNAVAILABLE,
                    "the database is not reachable; try again shortly",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            _ => ApiError::internal(&e),
        }
    }
}

impl From<crate::auth::password::PasswordError> for ApiError {
    fn from(e: crate::auth::password::PasswordError) -> Self {
        match e {
            crate::auth::password::PasswordError::Busy => ApiError::new(
                codes::SERVER_BUSY,
                "too many password checks are in progress; try again shortly",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            other => ApiError::internal(&other),
        }
    }
}

impl From<crate::platform::PlatformError> for ApiError {
    fn from(e: crate::platform::PlatformError) -> Self {
        use crate::platform::PlatformError as E;
        match e {
            E::NotFound(what) => ApiError::not_found(what),
            E::Invalid(issues) => ApiError::invalid(
                issues
                    .into_iter()
                    .map(|i| FieldError {
                        field: i.field,
                        message: i.message,
                    })
                    .collect(),
            ),
            E::EmailTaken => ApiError::new(codes::EMAIL_TAKEN, e.to_string()),
            E::LastOwner => ApiError::new(codes::LAST_OWNER, e.to_string()),
            E::Unauthorized(why) => ApiError::unauthorized(why),
            E::ProjectRequired(_) => ApiError::new(codes::PROJECT_REQUIRED, e.to_string()),
            E::Throttled { retry_after_secs } => {
                let value = HeaderValue::from_str(&retry_after_secs.to_string())
                    .unwrap_or(HeaderValue::from_static("60"));
                ApiError::new(codes::LOGIN_THROTTLED, e.to_string())
                    .with_header(header::RETRY_AFTER, value)
            }
            E::RefreshTokenReused => ApiError::new(codes::REFRESH_TOKEN_REUSED, e.to_string()),
            E::Password(p) => p.into(),
            E::Token(t) => ApiError::internal(&t),
            E::Db(d) => d.into(),
        }
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::PasswordError;
    use crate::platform::{FieldIssue, PlatformError};

    /// Each refusal of a platform service is answered with its catalogue code, the detail
    /// the API has always given, and the headers a client acts on.
    #[test]
    fn platform_errors_map_to_their_catalogue_codes() {
        let answer = |e: PlatformError| {
            let a = ApiError::from(e);
            (a.code(), a.problem().detail)
        };
        assert_eq!(
            answer(PlatformError::NotFound("API key")),
            (codes::NOT_FOUND, "API key not found".to_owned())
        );
        assert_eq!(
            answer(PlatformError::EmailTaken),
            (
                codes::EMAIL_TAKEN,
                "a user with this e-mail already exists in this project".to_owned()
            )
        );
        assert_eq!(answer(PlatformError::LastOwner).0, codes::LAST_OWNER);
        assert_eq!(
            answer(PlatformError::RefreshTokenReused).0,
            codes::REFRESH_TOKEN_REUSED
        );
        let project = switchboard_core::id::ProjectId::generate();
        let (code, detail) = answer(PlatformError::ProjectRequired(vec![project.clone()]));
        assert_eq!(code, codes::PROJECT_REQUIRED);
        assert!(detail.ends_with(&format!("one of: {project}")), "{detail}");

        let invalid = ApiError::from(PlatformError::Invalid(vec![
            FieldIssue::new("email", "is not an e-mail address"),
            FieldIssue::new("role", "too high"),
        ]));
        assert_eq!(invalid.code(), codes::VALIDATION_FAILED);
        let p = invalid.problem();
        assert_eq!(p.detail, "email: is not an e-mail address; role: too high");
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.errors[1].field, "role");

        let throttled = ApiError::from(PlatformError::Throttled {
            retry_after_secs: 42,
        });
        assert_eq!(throttled.code(), codes::LOGIN_THROTTLED);
        assert_eq!(throttled.header(&header::RETRY_AFTER).unwrap(), "42");
        let wrong = ApiError::from(PlatformError::Unauthorized("wrong"));
        assert_eq!(wrong.code(), codes::UNAUTHORIZED);
        assert!(wrong.header(&header::WWW_AUTHENTICATE).is_some());
        let busy = ApiError::from(PlatformError::Password(PasswordError::Busy));
        assert_eq!(busy.code(), codes::SERVER_BUSY);
        assert_eq!(busy.header(&header::RETRY_AFTER).unwrap(), "1");
        let db = ApiError::from(PlatformError::Db(sqlx::Error::PoolTimedOut));
        assert_eq!(db.code(), codes::DATABASE_UNAVAILABLE);
        let bug = ApiError::from(PlatformError::Db(sqlx::Error::RowNotFound));
        assert_eq!(bug.code(), codes::INTERNAL);
    }
}

//! What a platform service (users, API keys, projects, login, audit) can refuse or fail
//! with. Services return [`PlatformError`], never an HTTP answer: the API maps it once
//! (`impl From<PlatformError> for ApiError` in `crate::error`), the CLI words it for a
//! terminal, the dashboard renders it as a page.

use crate::auth::password::PasswordError;
use switchboard_core::id::ProjectId;

/// One rule an input breaks: which field, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldIssue {
    /// The field (`email`, `scopes`); the API names it in `errors[].field`, the CLI as a flag.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldIssue {
    /// An issue with `field`.
    pub fn new(field: &str, message: impl Into<String>) -> FieldIssue {
        FieldIssue {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Why a platform operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// No such thing in the caller's project (another project's is not found either).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The input breaks rules: each issue names its field. Role ceilings are issues of
    /// the field `role` (or `scopes` for a key): what is asked for, not who asks, is wrong.
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldIssue>),
    /// Another user of the project has this e-mail.
    #[error("a user with this e-mail already exists in this project")]
    EmailTaken,
    /// The change would leave the project without an active owner.
    #[error("the project's last active owner cannot be demoted or disabled")]
    LastOwner,
    /// A credential (password, refresh token) was refused; the message says why, as far
    /// as that is safe to say.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The e-mail and password match accounts in several projects.
    #[error(
        "this e-mail and password match accounts in several projects; send `project`, one \
         of: {}",
        join(.0)
    )]
    ProjectRequired(Vec<ProjectId>),
    /// Too many failed logins for this account.
    #[error("too many failed logins for this account; try again in {retry_after_secs} s")]
    Throttled {
        /// Seconds until the lock ends.
        retry_after_secs: i64,
    },
    /// A rotated refresh token came back; its whole login is now revoked.
    #[error("this refresh token was already used; every session of this login is revoked")]
    RefreshTokenReused,
    /// Password hashing refused (busy) or failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// An access token could not be signed.
    #[error("cannot sign an access token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl PlatformError {
    /// [`PlatformError::Invalid`] with one issue.
    pub fn invalid(field: &str, message: impl Into<String>) -> PlatformError {
        PlatformError::Invalid(vec![FieldIssue::new(field, message)])
    }
}

/// `field: message; …`, as the API's `detail` lists them.
fn describe(issues: &[FieldIssue]) -> String {
    issues
        .iter()
        .map(|i| {
            if i.field.is_empty() {
                i.message.clone()
            } else {
                format!("{}: {}", i.field, i.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn join(ids: &[ProjectId]) -> String {
    ids.iter()
        .map(ProjectId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Result of a platform service.
pub type PlatformResult<T> = Result<T, PlatformError>;

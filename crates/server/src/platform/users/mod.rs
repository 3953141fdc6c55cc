//! Users: people who log in to the dashboard or take JWTs for the API. Each belongs to one
//! project with one role; an e-mail address is unique within its project (the same address
//! may have an account in several projects, each with its own password).

pub mod http;
pub mod repo;

use crate::auth::Role;
use serde::Serialize;
use switchboard_core::id::UserId;
use switchboard_core::time::Timestamp;
use utoipa::ToSchema;

/// A user as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct User {
    /// `user_…`
    #[schema(value_type = String)]
    pub id: UserId,
    /// Login e-mail (lowercase).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role in the project.
    pub role: Role,
    /// Creation time.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When the user was disabled (cannot log in, tokens stop working).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<Timestamp>,
}

/// Normalises and checks an e-mail address.
pub fn parse_email(email: &str) -> Result<String, &'static str> {
    let e = email.trim().to_ascii_lowercase();
    let valid = e.len() <= 254
        && !e.contains(char::is_whitespace)
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if valid {
        Ok(e)
    } else {
        Err("is not an e-mail address")
    }
}

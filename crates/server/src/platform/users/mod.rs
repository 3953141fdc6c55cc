//! Users: people who log in to the dashboard or take JWTs for the API. Each belongs to one
//! project with one role; an e-mail address is unique within its project (the same address
//! may have an account in several projects, each with its own password).

pub mod http;
pub mod repo;

use crate::auth::Role;
use serde::Serialize;
use switchboard_core::id::UserId;
use switchboard_core::rules::{Chars, Text};
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

/// E-mail addresses of users.
pub const EMAIL: Text = Text::new(3, 254, Chars::Email);
/// Display names of users.
pub const USER_NAME: Text = Text::new(0, 100, Chars::Any);

/// Checks an e-mail address ([`EMAIL`]) and lowercases it.
pub fn parse_email(email: &str) -> Result<String, String> {
    EMAIL.check(email).map(|()| email.to_ascii_lowercase())
}

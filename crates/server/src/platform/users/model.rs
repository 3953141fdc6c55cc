//! Users as the API shows them, as stored, and the rules their fields follow.

use crate::auth::{Principal, Role};
use serde::Serialize;
use switchboard_core::audit::Actor;
use switchboard_core::id::{ProjectId, UserId};
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

/// A user row with the fields the API does not show.
#[derive(Clone)]
pub struct UserRecord {
    /// The user.
    pub user: User,
    /// Its project.
    pub project_id: ProjectId,
    /// argon2id PHC string.
    pub password_hash: String,
}

impl UserRecord {
    /// The principal the user acts as: their project, and their role's scopes.
    pub fn principal(&self) -> Principal {
        Principal {
            project_id: self.project_id.clone(),
            actor: Actor {
                kind: "user".into(),
                id: self.user.id.to_string(),
            },
            scopes: self.user.role.scopes(),
            role: self.user.role,
        }
    }
}

/// E-mail addresses of users.
pub const EMAIL: Text = Text::new(3, 254, Chars::Email);
/// Display names of users.
pub const USER_NAME: Text = Text::new(0, 100, Chars::Any);

/// Checks an e-mail address ([`EMAIL`]) and lowercases it.
pub fn parse_email(email: &str) -> Result<String, String> {
    EMAIL.check(email).map(|()| email.to_ascii_lowercase())
}

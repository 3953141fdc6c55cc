//! API keys as the API shows them, and the rules their fields follow.

use crate::auth::{Role, Scopes};
use serde::Serialize;
use switchboard_core::id::ApiKeyId;
use switchboard_core::rules::{Chars, Text};
use switchboard_core::time::Timestamp;
use utoipa::ToSchema;

/// Every key starts with this, which is how a bearer token is told apart from a JWT.
pub const KEY_PREFIX: &str = "sb_";

/// Names of keys.
pub const KEY_NAME: Text = Text::new(1, 100, Chars::NotBlank);

/// An API key as the API shows it (never the secret).
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct ApiKey {
    /// `key_…`
    #[schema(value_type = String)]
    pub id: ApiKeyId,
    /// What it is for.
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    /// What it may do.
    pub scopes: Scopes,
    /// Its ceiling: the role of the user (or of the key's ceiling) that created it; keys made
    /// by bootstrap, the CLI or with a new project are `owner`. A key never creates or
    /// changes a user above this role.
    pub role: Role,
    /// Creation time.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Last successful use (updated at most once a minute).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// When it stops working, if ever.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

/// A newly created key, with its secret (shown this once).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    /// The key's metadata.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The secret to send as `Authorization: Bearer …`.
    pub secret: String,
}

/// What a new key is.
pub struct NewKey<'a> {
    /// What it is for.
    pub name: &'a str,
    /// What it may do.
    pub scopes: Scopes,
    /// Its ceiling (the creator's role).
    pub role: Role,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// The wanted secret (bootstrap); `None` draws a random one.
    pub secret: Option<String>,
}

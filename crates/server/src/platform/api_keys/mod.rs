//! API keys: project-scoped, capability-scoped, shown once, stored as a SHA-256 digest,
//! last use recorded (at most once a minute), revocation immediate (no key cache).

pub mod http;
pub mod repo;

use crate::auth::{Role, Scopes};
use serde::Serialize;
use switchboard_core::audit::{self, AuditContext, Change};
use switchboard_core::db::Tx;
use switchboard_core::id::{ApiKeyId, ProjectId};
use switchboard_core::secret;
use switchboard_core::time::{self, Timestamp};
use utoipa::ToSchema;

/// Every key starts with this, which is how a bearer token is told apart from a JWT.
pub const KEY_PREFIX: &str = "sb_";

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

/// Creates a key inside `tx` and records it in the audit trail.
pub async fn create_in_tx(
    tx: &mut Tx,
    ctx: &AuditContext,
    project: &ProjectId,
    new: NewKey<'_>,
) -> Result<ApiKeyCreated, sqlx::Error> {
    let NewKey {
        name,
        scopes,
        role,
        expires_at,
        secret,
    } = new;
    let secret = secret.unwrap_or_else(|| secret::random_token(KEY_PREFIX));
    let key = ApiKey {
        id: ApiKeyId::generate(),
        name: name.to_owned(),
        prefix: secret.chars().take(KEY_PREFIX.len() + 6).collect(),
        scopes,
        role,
        created_at: time::now(),
        last_used_at: None,
        expires_at,
        revoked_at: None,
    };
    repo::insert(tx.ex(), project, &key, &secret::digest(&secret)).await?;
    audit::record(
        tx,
        ctx,
        Change {
            action: "api_key.create",
            entity_type: "api_key",
            entity_id: key.id.as_str(),
            before: None,
            after: serde_json::to_value(&key).ok(),
        },
    )
    .await?;
    Ok(ApiKeyCreated { key, secret })
}

/// Revokes a key inside `tx` and records it; `None` when the project has no such key.
/// Revoking an already revoked key changes nothing and writes no event.
pub async fn revoke_in_tx(
    tx: &mut Tx,
    ctx: &AuditContext,
    project: &ProjectId,
    id: &str,
) -> Result<Option<ApiKey>, sqlx::Error> {
    let Some(before) = repo::get(tx.ex(), project, id).await? else {
        return Ok(None);
    };
    if before.revoked_at.is_some() {
        return Ok(Some(before));
    }
    let now = time::now();
    repo::revoke(tx.ex(), project, id, now).await?;
    let after = ApiKey {
        revoked_at: Some(now),
        ..before.clone()
    };
    audit::record(
        tx,
        ctx,
        Change {
            action: "api_key.revoke",
            entity_type: "api_key",
            entity_id: id,
            before: serde_json::to_value(&before).ok(),
            after: serde_json::to_value(&after).ok(),
        },
    )
    .await?;
    Ok(Some(after))
}

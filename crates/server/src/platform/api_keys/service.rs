//! What may be done with API keys and what it records. A key never grants more than the
//! credential that creates it (its scopes, and its role as the new key's ceiling); each
//! creation and revocation writes its audit event in the same transaction.

use super::{repo, ApiKey, ApiKeyCreated, NewKey, KEY_NAME, KEY_PREFIX};
use crate::auth::{Caller, Principal, Scopes};
use crate::platform::{FieldIssue, PlatformError, PlatformResult};
use switchboard_core::audit::{self, Actor, AuditContext, Change};
use switchboard_core::db::{Db, Tx};
use switchboard_core::id::{ApiKeyId, ProjectId};
use switchboard_core::secret;
use switchboard_core::time::{self, Timestamp};

/// A key to create, as the API body or the CLI's flags give it (checked here).
pub struct KeyRequest {
    /// What the key is for (kept trimmed).
    pub name: String,
    /// What it may do.
    pub scopes: Scopes,
    /// When it stops working, if ever (must be in the future).
    pub expires_at: Option<Timestamp>,
}

/// Last use is written at most this often (microseconds): once a minute.
const TOUCH_EVERY_US: i64 = 60_000_000;

/// The project's keys in id order (revoked ones included), after the cursor `after`.
#[tracing::instrument(skip_all, fields(project = %project))]
pub async fn list(
    db: &Db,
    project: &ProjectId,
    after: Option<&str>,
    limit: i64,
) -> PlatformResult<Vec<ApiKey>> {
    let mut conn = db.read().await?;
    Ok(repo::list(conn.ex(), project, after, limit).await?)
}

/// One key of the project.
#[tracing::instrument(skip_all, fields(project = %project, key = %id))]
pub async fn get(db: &Db, project: &ProjectId, id: &ApiKeyId) -> PlatformResult<ApiKey> {
    let mut conn = db.read().await?;
    repo::get(conn.ex(), project, id)
        .await?
        .ok_or(PlatformError::NotFound("API key"))
}

/// Creates a key in the caller's project with at most the caller's scopes; its ceiling is
/// the caller's role (a key made by a key inherits it).
#[tracing::instrument(skip_all, fields(project = %caller.project(), key = tracing::field::Empty))]
pub async fn create(
    db: &Db,
    caller: &Caller,
    request: KeyRequest,
) -> PlatformResult<ApiKeyCreated> {
    let mut errors = Vec::new();
    if let Err(message) = KEY_NAME.check(&request.name) {
        errors.push(FieldIssue::new("name", message));
    }
    if request.expires_at.is_some_and(|e| e <= time::now()) {
        errors.push(FieldIssue::new("expires_at", "must be in the future"));
    }
    if let Some(s) = Vec::<String>::from(request.scopes.clone())
        .into_iter()
        .find(|s| !caller.principal.scopes.can_grant(s))
    {
        errors.push(FieldIssue::new(
            "scopes",
            format!("cannot grant `{s}`, which this credential does not hold"),
        ));
    }
    if !errors.is_empty() {
        return Err(PlatformError::Invalid(errors));
    }
    let mut tx = db.begin().await?;
    let created = create_in_tx(
        &mut tx,
        &caller.audit(),
        caller.project(),
        NewKey {
            name: request.name.trim(),
            scopes: request.scopes,
            role: caller.principal.role,
            expires_at: request.expires_at,
            secret: None,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::Span::current().record("key", created.key.id.as_str());
    Ok(created)
}

/// Creates a key inside `tx` and records `api_key.create`: what [`create`], a new
/// project's first key and bootstrap share. Nothing is checked: the caller decided.
#[tracing::instrument(skip_all, fields(project = %project, key = tracing::field::Empty))]
pub async fn create_in_tx(
    tx: &mut Tx,
    ctx: &AuditContext,
    project: &ProjectId,
    new: NewKey<'_>,
) -> PlatformResult<ApiKeyCreated> {
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
    tracing::Span::current().record("key", key.id.as_str());
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

/// Revokes a key of the caller's project; it stops working at once. Revoking an already
/// revoked key changes nothing and writes no event.
#[tracing::instrument(skip_all, fields(project = %caller.project(), key = %id))]
pub async fn revoke(db: &Db, caller: &Caller, id: &ApiKeyId) -> PlatformResult<ApiKey> {
    let project = caller.project();
    let mut tx = db.begin().await?;
    let before = repo::get(tx.ex(), project, id)
        .await?
        .ok_or(PlatformError::NotFound("API key"))?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    let now = time::now();
    repo::revoke(tx.ex(), project, id, now).await?;
    let after = ApiKey {
        revoked_at: Some(now),
        ..before.clone()
    };
    audit::record(
        &mut tx,
        &caller.audit(),
        Change {
            action: "api_key.revoke",
            entity_type: "api_key",
            entity_id: id.as_str(),
            before: serde_json::to_value(&before).ok(),
            after: serde_json::to_value(&after).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Resolves a bearer API key to its principal, or `None` when unknown, revoked or expired;
/// records its use (at most once a minute). The token is never logged.
#[tracing::instrument(skip_all)]
pub async fn authenticate(db: &Db, token: &str) -> PlatformResult<Option<Principal>> {
    let found = {
        let mut conn = db.read().await?;
        repo::find_by_digest(conn.ex(), &secret::digest(token)).await?
    };
    let Some((key, project)) = found else {
        return Ok(None);
    };
    let now = time::now();
    if key.revoked_at.is_some() || key.expires_at.is_some_and(|e| e <= now) {
        return Ok(None);
    }
    let stale = key
        .last_used_at
        .is_none_or(|t| time::to_db(now) - time::to_db(t) > TOUCH_EVERY_US);
    if stale {
        let mut tx = db.begin().await?;
        repo::touch(tx.ex(), &key.id, now).await?;
        tx.commit().await?;
    }
    Ok(Some(Principal {
        project_id: project,
        actor: Actor {
            kind: "api_key".into(),
            id: key.id.to_string(),
        },
        scopes: key.scopes,
        role: key.role,
    }))
}

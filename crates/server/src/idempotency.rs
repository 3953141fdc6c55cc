//! `Idempotency-Key` on creating POSTs, with Stripe's semantics, stored in the database so
//! it holds across nodes: a replay returns the first response with `Idempotent-Replayed:
//! true`; the same key with a different request is 422; the same key while the first
//! request still runs is 409. Only successful (2xx) responses are kept — a failed request
//! wrote nothing, so retrying it with the same key runs it again. Keys live 24 hours.
//!
//! Keys belong to one principal (the API key or user that sent the request), and a replay
//! is answered only after the caller's scopes are checked against what the operation
//! declares in the OpenAPI document ([`crate::auth::declared_requirement`]): this layer runs
//! before the handler's own check. A response that carries a secret ([`CarriesSecret`]) is
//! never stored: its replay is a 409 `secret-not-replayable` naming what was created.

pub mod repo;

use crate::auth::{Principal, Requirement};
use crate::error::{codes, ApiError, PROBLEM_JSON};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use repo::{KeyRef, Record};
use serde::Serialize;
use sha2::{Digest, Sha256};
use switchboard_core::db::Db;
use switchboard_core::id::ProjectId;
use switchboard_core::time;

/// Longest `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// Whether `key` is a valid `Idempotency-Key`: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The schema of the `Idempotency-Key` header: [`valid_key`]'s rule (`!`..`~` is the visible
/// ASCII range).
pub fn key_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_KEY_LEN))
        .pattern(Some(format!("^[!-~]{{1,{MAX_KEY_LEN}}}$")))
        .build()
}

/// How long a key is remembered.
pub const TTL_SECS: i64 = 24 * 3600;
/// A request still marked running after this long is taken as abandoned (its node died).
const ABANDONED_SECS: i64 = 300;

/// Marks a response that carries a secret shown only once (a new API key's): the layer
/// keeps no copy, and answers a replay with 409 `secret-not-replayable` naming `.0`.
#[derive(Clone, Debug)]
pub struct CarriesSecret(pub Vec<Created>);

/// Something a request created, named in a withheld replay so the client can revoke it.
#[derive(Clone, Debug, Serialize)]
pub struct Created {
    /// `api_key`, `project`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its id.
    pub id: String,
}

/// Whose key it is: a project and, within it, one principal.
struct Owner {
    project: ProjectId,
    principal: String,
}

impl Owner {
    fn key<'a>(&'a self, key: &'a str) -> KeyRef<'a> {
        KeyRef {
            project: &self.project,
            principal: &self.principal,
            key,
        }
    }
}

async fn try_start(db: &Db, owner: &Owner, key: &str, hash: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let inserted = repo::insert_running(tx.ex(), &owner.key(key), hash, time::now()).await?;
    tx.commit().await?;
    Ok(inserted)
}

async fn load(db: &Db, owner: &Owner, key: &str) -> Result<Option<Record>, sqlx::Error> {
    let mut conn = db.read().await?;
    repo::get(conn.ex(), &owner.key(key)).await
}

async fn finish(
    db: &Db,
    owner: &Owner,
    key: &str,
    status: u16,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    repo::finish(tx.ex(), &owner.key(key), status, body).await?;
    tx.commit().await
}

async fn forget(db: &Db, owner: &Owner, key: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    repo::delete(tx.ex(), &owner.key(key)).await?;
    tx.commit().await
}

/// Deletes keys older than [`TTL_SECS`]; returns how many.
pub async fn prune(db: &Db) -> Result<u64, sqlx::Error> {
    let cutoff = time::add_secs(time::now(), -TTL_SECS);
    let mut tx = db.begin().await?;
    let n = repo::delete_older(tx.ex(), cutoff).await?;
    tx.commit().await?;
    Ok(n)
}

fn request_hash(req: &axum::http::request::Parts, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(req.method.as_str());
    h.update([0]);
    h.update(req.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""));
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

/// The 409 a replay of a secret-bearing response gets instead of the secret.
fn withheld(created: &[Created]) -> Vec<u8> {
    let names = created
        .iter()
        .map(|c| format!("{} {}", c.kind, c.id))
        .collect::<Vec<_>>()
        .join(" and ");
    let detail = format!(
        "the request with this Idempotency-Key already succeeded and created {names}; the \
         secret it returned is shown only once and is not kept for replays. If that response \
         was lost, revoke the key and create another"
    );
    let mut doc =
        serde_json::to_value(ApiError::new(codes::SECRET_NOT_REPLAYABLE, detail).problem())
            .unwrap_or_default();
    doc["created"] = serde_json::to_value(created).unwrap_or_default();
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// The middleware; it runs after authentication (keys are per principal) and before the
/// handler (so it checks the operation's declared scope itself before replaying).
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get("idempotency-key") else {
        return next.run(req).await;
    };
    let Some(key) = raw
        .to_str()
        .ok()
        .filter(|k| valid_key(k))
        .map(str::to_owned)
    else {
        return ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        ))
        .into_response();
    };
    let Some(principal) = req.extensions().get::<Principal>() else {
        return next.run(req).await;
    };
    let requirement = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|route| crate::auth::declared_requirement(req.method(), route.as_str()));
    match requirement {
        Some(Requirement::Authenticated) => {}
        Some(Requirement::Scope(scope)) if principal.scopes.allows(scope) => {}
        // Not allowed: the handler answers 403 and nothing is kept or replayed.
        Some(Requirement::Scope(_)) => return next.run(req).await,
        None => {
            // Every operation declares its scope (a test walks them all); if one does not,
            // it runs without idempotency rather than replay unchecked.
            tracing::error!(path = %req.uri().path(), "no declared scope; Idempotency-Key ignored");
            return next.run(req).await;
        }
    }
    let owner = Owner {
        project: principal.project_id.clone(),
        principal: format!("{}:{}", principal.actor.kind, principal.actor.id),
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.config.body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return crate::extract::too_large(Some(crate::extract::BodyLimit(
                state.config.body_limit,
            )))
            .into_response()
        }
    };
    let hash = request_hash(&parts, &bytes);
    let db = &state.db;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_start(db, &owner, &key, &hash).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return ApiError::from(e).into_response(),
        }
        let record = match load(db, &owner, &key).await {
            Ok(Some(r)) => r,
            Ok(None) if attempts < 3 => continue,
            Ok(None) => {
                return ApiError::new(codes::IDEMPOTENCY_KEY_IN_USE, "try again").into_response()
            }
            Err(e) => return ApiError::from(e).into_response(),
        };
        let age = time::to_db(time::now()) - time::to_db(record.created_at);
        let expired = age > TTL_SECS * 1_000_000
            || (record.state == "running" && age > ABANDONED_SECS * 1_000_000);
        if expired && attempts < 3 {
            if let Err(e) = forget(db, &owner, &key).await {
                return ApiError::from(e).into_response();
            }
            continue;
        }
        if record.state != "done" {
            return ApiError::new(
                codes::IDEMPOTENCY_KEY_IN_USE,
                "a request with this Idempotency-Key is still being processed",
            )
            .into_response();
        }
        if record.request_hash != hash {
            return ApiError::new(
                codes::IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used with a different request",
            )
            .into_response();
        }
        let status = record
            .status
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        // Only 2xx answers and withheld-secret problems are stored.
        let content_type = if status.is_success() {
            "application/json"
        } else {
            PROBLEM_JSON
        };
        return (
            status,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::HeaderName::from_static("idempotent-replayed"),
                    HeaderValue::from_static("true"),
                ),
            ],
            record.body.unwrap_or_default(),
        )
            .into_response();
    }

    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if !resp.status().is_success() {
        if let Err(e) = forget(db, &owner, &key).await {
            tracing::error!(error = %e, "could not release idempotency key");
        }
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let stored = match parts.extensions.get::<CarriesSecret>() {
        // The secret stays in this one response; the record names what was created.
        Some(CarriesSecret(created)) => {
            finish(
                db,
                &owner,
                &key,
                StatusCode::CONFLICT.as_u16(),
                &withheld(created),
            )
            .await
        }
        None => finish(db, &owner, &key, parts.status.as_u16(), &body).await,
    };
    if let Err(e) = stored {
        // The change is committed; only the replay record is missing. Say so, keep the answer.
        tracing::error!(error = %e, "could not store idempotent response");
    }
    Response::from_parts(parts, Body::from(body))
}

//! `/v1/api-keys`.

use super::{create_in_tx, repo, revoke_in_tx, ApiKey, ApiKeyCreated, NewKey};
use crate::auth::{scope, Authed, Scopes};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{Json, Path, Query};
use crate::idempotency::{CarriesSecret, Created};
use crate::page::{Page, PageParams};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use switchboard_core::rules::{Chars, Text};
use switchboard_core::time::{self, Timestamp};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Routes of this capability.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(get_key, revoke_key))
}

/// Body of `POST /v1/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    /// What the key is for, 1–100 characters.
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Scopes; `["*"]` grants everything.
    pub scopes: Scopes,
    /// Optional expiry (RFC 3339, in the future).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}

/// Names of keys.
pub const KEY_NAME: Text = Text::new(1, 100, Chars::NotBlank);

fn name_schema() -> utoipa::openapi::Object {
    KEY_NAME.schema("What the key is for")
}

/// Lists the project's keys (revoked ones included, marked).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys",
    params(PageParams),
    responses((status = 200, body = Page<ApiKey>)),
    security(("bearer" = ["keys:read"])))]
async fn list_keys(
    State(state): State<AppState>,
    auth: Authed<scope::KeysRead>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Page<ApiKey>>> {
    let limit = page.limit()?;
    let mut conn = state.db.read().await?;
    let keys = repo::list(conn.ex(), auth.project(), page.after.as_deref(), limit + 1).await?;
    Ok(Json(Page::from_overfetch(keys, limit, |k| {
        k.id.to_string()
    })))
}

/// Creates a key; its secret is in this response only (an idempotent replay answers 409
/// `secret-not-replayable` naming the key instead).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys",
    request_body = ApiKeyIn,
    responses((status = 201, body = ApiKeyCreated), (status = 409, description = "secret-not-replayable")),
    security(("bearer" = ["keys:write"])))]
async fn create_key(
    State(state): State<AppState>,
    auth: Authed<scope::KeysWrite>,
    Json(input): Json<ApiKeyIn>,
) -> ApiResult<(StatusCode, Extension<CarriesSecret>, Json<ApiKeyCreated>)> {
    let mut errors = Vec::new();
    let name = input.name.trim();
    if let Err(message) = KEY_NAME.check(&input.name) {
        errors.push(FieldError {
            field: "name".into(),
            message,
        });
    }
    if input.expires_at.is_some_and(|e| e <= time::now()) {
        errors.push(FieldError {
            field: "expires_at".into(),
            message: "must be in the future".into(),
        });
    }
    // A key can never grant more than the credential that creates it.
    if let Some(s) = Vec::<String>::from(input.scopes.clone())
        .into_iter()
        .find(|s| !auth.principal.scopes.can_grant(s))
    {
        errors.push(FieldError {
            field: "scopes".into(),
            message: format!("cannot grant `{s}`, which this credential does not hold"),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let mut tx = state.db.begin().await?;
    // The new key carries its creator's role as its ceiling (a key made by a key inherits).
    let created = create_in_tx(
        &mut tx,
        &auth.audit(),
        auth.project(),
        NewKey {
            name,
            scopes: input.scopes,
            role: auth.principal.role,
            expires_at: input.expires_at,
            secret: None,
        },
    )
    .await?;
    tx.commit().await?;
    let secret = CarriesSecret(vec![Created {
        kind: "api_key",
        id: created.key.id.to_string(),
    }]);
    Ok((StatusCode::CREATED, Extension(secret), Json(created)))
}

/// One key.
#[utoipa::path(get, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, body = ApiKey), (status = 404, description = "not-found")),
    security(("bearer" = ["keys:read"])))]
async fn get_key(
    State(state): State<AppState>,
    auth: Authed<scope::KeysRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKey>> {
    let mut conn = state.db.read().await?;
    repo::get(conn.ex(), auth.project(), &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("API key"))
}

/// Revokes a key; it stops working at once.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, body = ApiKey), (status = 404, description = "not-found")),
    security(("bearer" = ["keys:write"])))]
async fn revoke_key(
    State(state): State<AppState>,
    auth: Authed<scope::KeysWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKey>> {
    let mut tx = state.db.begin().await?;
    let key = revoke_in_tx(&mut tx, &auth.audit(), auth.project(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    tx.commit().await?;
    Ok(Json(key))
}

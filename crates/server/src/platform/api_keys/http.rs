//! `/v1/api-keys`. The rules (grant ceilings) are the service's.

use super::service::{self, KeyRequest};
use super::{ApiKey, ApiKeyCreated, KEY_NAME};
use crate::auth::{scope, Authed, Scopes};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::idempotency::{CarriesSecret, Created};
use crate::page::{Page, PageParams};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use switchboard_core::id::ApiKeyId;
use switchboard_core::time::Timestamp;
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

fn name_schema() -> utoipa::openapi::Object {
    KEY_NAME.schema("What the key is for")
}

/// A key id from the path; one that cannot be an id names no key.
fn key_id(id: &str) -> ApiResult<ApiKeyId> {
    ApiKeyId::parse(id).map_err(|_| ApiError::not_found("API key"))
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
    let keys = service::list(&state.db, auth.project(), page.after.as_deref(), limit + 1).await?;
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
    let request = KeyRequest {
        name: input.name,
        scopes: input.scopes,
        expires_at: input.expires_at,
    };
    let created = service::create(&state.db, &auth.caller(), request).await?;
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
    let id = key_id(&id)?;
    Ok(Json(service::get(&state.db, auth.project(), &id).await?))
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
    let id = key_id(&id)?;
    Ok(Json(service::revoke(&state.db, &auth.caller(), &id).await?))
}

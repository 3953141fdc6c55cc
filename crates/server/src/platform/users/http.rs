//! `/v1/users`. The rules (role ceilings, the last owner, passwords) are the service's.

use super::service::{self, NewUser, UserChange};
use super::User;
use crate::auth::{password, scope, Authed, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::page::{Page, PageParams};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use switchboard_core::id::UserId;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Routes of this capability.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
}

/// Body of `POST /v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    /// Login e-mail.
    #[schema(schema_with = email_schema)]
    pub email: String,
    /// Display name.
    #[serde(default)]
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Role in the project.
    pub role: Role,
    /// Initial password, 8–256 characters.
    #[schema(schema_with = password::password_schema)]
    pub password: String,
}

fn email_schema() -> utoipa::openapi::Object {
    // The pattern is the e-mail format the server checks (HTML's); `format: email` would
    // promise RFC 5322, a different rule.
    super::EMAIL.schema("Login e-mail (stored lowercase; unique in the project)")
}
fn name_schema() -> utoipa::openapi::Object {
    super::USER_NAME.schema("Display name")
}
fn optional_name_schema() -> utoipa::openapi::Object {
    super::USER_NAME.nullable("New display name")
}

/// Body of `PATCH /v1/users/{id}`; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// New display name.
    #[schema(schema_with = optional_name_schema)]
    pub name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// New password.
    #[schema(schema_with = password::optional_password_schema)]
    pub password: Option<String>,
    /// Disable (true) or re-enable (false).
    pub disabled: Option<bool>,
}

/// A user id from the path; one that cannot be an id names no user.
fn user_id(id: &str) -> ApiResult<UserId> {
    UserId::parse(id).map_err(|_| ApiError::not_found("user"))
}

/// Lists the project's users.
#[utoipa::path(get, path = "/v1/users", tag = "users",
    params(PageParams),
    responses((status = 200, body = Page<User>)),
    security(("bearer" = ["users:read"])))]
async fn list_users(
    State(state): State<AppState>,
    auth: Authed<scope::UsersRead>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Page<User>>> {
    let limit = page.limit()?;
    let users = service::list(&state.db, auth.project(), page.after.as_deref(), limit + 1).await?;
    Ok(Json(Page::from_overfetch(users, limit, |u| {
        u.id.to_string()
    })))
}

/// Creates a user.
#[utoipa::path(post, path = "/v1/users", tag = "users",
    request_body = UserIn,
    responses((status = 201, body = User), (status = 409, description = "email-taken"),
        (status = 503, description = "server-busy")),
    security(("bearer" = ["users:write"])))]
async fn create_user(
    State(state): State<AppState>,
    auth: Authed<scope::UsersWrite>,
    Json(input): Json<UserIn>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let new = NewUser {
        email: input.email,
        name: input.name,
        role: input.role,
        password: input.password,
    };
    let user = service::create(&state.db, &state.passwords, &auth.caller(), new).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = User), (status = 404, description = "not-found")),
    security(("bearer" = ["users:read"])))]
async fn get_user(
    State(state): State<AppState>,
    auth: Authed<scope::UsersRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let id = user_id(&id)?;
    Ok(Json(service::get(&state.db, auth.project(), &id).await?))
}

/// Changes a user's name, role, password or disabled state.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body = UserPatch,
    responses((status = 200, body = User), (status = 404, description = "not-found"),
        (status = 409, description = "last-owner"), (status = 503, description = "server-busy")),
    security(("bearer" = ["users:write"])))]
async fn update_user(
    State(state): State<AppState>,
    auth: Authed<scope::UsersWrite>,
    Path(id): Path<String>,
    Json(patch): Json<UserPatch>,
) -> ApiResult<Json<User>> {
    let id = user_id(&id)?;
    let change = UserChange {
        name: patch.name,
        role: patch.role,
        password: patch.password,
        disabled: patch.disabled,
    };
    let user = service::update(&state.db, &state.passwords, &auth.caller(), &id, change).await?;
    Ok(Json(user))
}

//! `/v1/users`. No credential creates or changes a user ranking above its own role (a key's
//! role is its creator's), nor hands out, through a role, scopes it does not hold; the last
//! active owner can be neither demoted nor disabled.

use super::{parse_email, repo, User};
use crate::auth::{password, scope, Authed, Role};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{Json, Path, Query};
use crate::page::{Page, PageParams};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use switchboard_core::audit::{self, Change};
use switchboard_core::id::UserId;
use switchboard_core::time;
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
    let mut conn = state.db.read().await?;
    let users = repo::list(conn.ex(), auth.project(), page.after.as_deref(), limit + 1).await?;
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
    let mut errors = Vec::new();
    let email = parse_email(&input.email).map_err(|m| errors.push(field("email", &m)));
    if let Err(m) = password::check_strength(&input.password) {
        errors.push(field("password", &m));
    }
    if let Err(m) = super::USER_NAME.check(&input.name) {
        errors.push(field("name", &m));
    }
    if let Some(why) = auth.principal.cannot_assign(input.role) {
        errors.push(field("role", &why));
    }
    let email = match email {
        Ok(e) if errors.is_empty() => e,
        _ => return Err(ApiError::invalid(errors)),
    };
    let user = User {
        id: UserId::generate(),
        email,
        name: input.name.trim().to_owned(),
        role: input.role,
        created_at: time::now(),
        disabled_at: None,
    };
    let hash = state.passwords.hash(&input.password).await?;
    let mut tx = state.db.begin().await?;
    repo::insert(tx.ex(), auth.project(), &user, &hash)
        .await
        .map_err(|e| {
            ApiError::unique(
                e,
                crate::error::codes::EMAIL_TAKEN,
                "a user with this e-mail already exists in this project",
            )
        })?;
    record(&mut tx, &auth, "user.create", &user, None).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user)))
}

fn field(name: &str, message: &str) -> FieldError {
    FieldError {
        field: name.to_owned(),
        message: message.to_owned(),
    }
}

async fn record(
    tx: &mut switchboard_core::db::Tx,
    auth: &Authed<scope::UsersWrite>,
    action: &str,
    after: &User,
    before: Option<&User>,
) -> Result<(), sqlx::Error> {
    audit::record(
        tx,
        &auth.audit(),
        Change {
            action,
            entity_type: "user",
            entity_id: after.id.as_str(),
            before: before.and_then(|b| serde_json::to_value(b).ok()),
            after: serde_json::to_value(after).ok(),
        },
    )
    .await
    .map(|_| ())
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
    let mut conn = state.db.read().await?;
    repo::get(conn.ex(), auth.project(), &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("user"))
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
    let mut errors = Vec::new();
    if let Some(Err(m)) = patch.password.as_deref().map(password::check_strength) {
        errors.push(field("password", &m));
    }
    if let Some(Err(m)) = patch.name.as_deref().map(|n| super::USER_NAME.check(n)) {
        errors.push(field("name", &m));
    }
    // Hashed before the transaction: no lock (on SQLite, the writer) waits for argon2.
    let hash = match patch.password.as_deref() {
        Some(p) if errors.is_empty() => Some(state.passwords.hash(p).await?),
        _ => None,
    };
    let mut tx = state.db.begin().await?;
    // Lock the active owners before reading anything: the last-owner check below must see
    // what concurrent changes committed (two owners demoting each other at once).
    let owners = repo::lock_active_owners(tx.ex(), auth.project()).await?;
    let before = repo::get(tx.ex(), auth.project(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let role = patch.role.unwrap_or(before.role);
    // Changing a user at all (name, password, state) needs authority over their current
    // role, and a new role must be one the caller could give.
    if let Some(why) = auth
        .principal
        .cannot_assign(before.role)
        .or_else(|| auth.principal.cannot_assign(role))
    {
        errors.push(field("role", &why));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let now = time::now();
    let after = User {
        name: patch
            .name
            .map(|n| n.trim().to_owned())
            .unwrap_or(before.name.clone()),
        role,
        disabled_at: match patch.disabled {
            Some(true) => before.disabled_at.or(Some(now)),
            Some(false) => None,
            None => before.disabled_at,
        },
        ..before.clone()
    };
    let loses_owner = before.role == Role::Owner
        && before.disabled_at.is_none()
        && (after.role != Role::Owner || after.disabled_at.is_some());
    if loses_owner && owners.iter().all(|o| o == before.id.as_str()) {
        return Err(ApiError::new(
            crate::error::codes::LAST_OWNER,
            "the project's last active owner cannot be demoted or disabled",
        ));
    }
    repo::update(tx.ex(), auth.project(), &after, hash.as_deref()).await?;
    if after.disabled_at.is_some() || hash.is_some() {
        // Disabling or a new password ends every refresh-token family and dashboard session.
        crate::platform::login::repo::revoke_all_for_user(tx.ex(), after.id.as_str(), now).await?;
    }
    record(&mut tx, &auth, "user.update", &after, Some(&before)).await?;
    tx.commit().await?;
    Ok(Json(after))
}

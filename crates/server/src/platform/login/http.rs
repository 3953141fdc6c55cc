//! `/v1/auth/login|refresh|logout` (public, rate-limited per client IP) and `/v1/me`.

use super::service::{self, Issuer, Login};
use super::TokenPair;
use crate::auth::{ClientInfo, Principal, Role};
use crate::error::ApiResult;
use crate::extract::Json;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::{Deserialize, Serialize};
use switchboard_core::audit::Actor;
use switchboard_core::id::ProjectId;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Login, refresh and logout: no credential needed.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// `/v1/me`: needs a credential.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// Body of `POST /v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    /// Login e-mail.
    pub email: String,
    /// Password.
    pub password: String,
    /// The project (`proj_…`) of the account. E-mails are unique per project: without it,
    /// the password is checked against the accounts with this e-mail (a few at most), and
    /// one of several matching is a 409 `project-required`.
    #[serde(default)]
    #[schema(schema_with = project_schema)]
    pub project: Option<String>,
}

/// `project` of a login: a project id, or blank for none (what
/// [`service::check_password`] accepts).
fn project_schema() -> utoipa::openapi::Object {
    let id = switchboard_core::id::pattern(ProjectId::PREFIX);
    let id = id.trim_start_matches('^').trim_end_matches('$');
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(switchboard_core::rules::nullable(
            utoipa::openapi::Type::String,
        ))
        .pattern(Some(format!("^\\s*(?:{id}\\s*)?$")))
        .description(Some(
            "The project (`proj_…`) of the account. E-mails are unique per project: without \
             it, the password is checked against the accounts with this e-mail (a few at \
             most), and one of several matching is a 409 `project-required`.",
        ))
        .build()
}

/// Body of `POST /v1/auth/refresh` and `/v1/auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshIn {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The caller's project.
    #[schema(value_type = String)]
    pub project_id: ProjectId,
    /// `user` or `api_key`, with its id.
    #[schema(value_type = Object)]
    pub actor: Actor,
    /// What it may do.
    pub scopes: crate::auth::Scopes,
    /// A user's role; for an API key, the role it was created under (its ceiling).
    pub role: Role,
}

/// What signs tokens on this node.
fn issuer(state: &AppState) -> Issuer<'_> {
    Issuer {
        jwt: &state.jwt,
        refresh_ttl_secs: state.config.refresh_token_ttl_secs,
    }
}

/// Exchanges an e-mail and password for tokens.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth",
    request_body = LoginIn,
    responses((status = 200, body = TokenPair), (status = 401, description = "unauthorized"),
        (status = 409, description = "project-required"), (status = 429, description = "login-throttled"),
        (status = 503, description = "server-busy")))]
async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(input): Json<LoginIn>,
) -> ApiResult<Json<TokenPair>> {
    let login = Login {
        email: &input.email,
        password: &input.password,
        project: input.project.as_deref(),
    };
    let pair = service::login(
        &state.db,
        &state.passwords,
        &issuer(&state),
        &client,
        &login,
    )
    .await?;
    Ok(Json(pair))
}

/// Rotates a refresh token. Reusing a rotated token revokes its whole family.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshIn,
    responses((status = 200, body = TokenPair),
        (status = 401, description = "unauthorized, refresh-token-reused")))]
async fn refresh(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(input): Json<RefreshIn>,
) -> ApiResult<Json<TokenPair>> {
    let pair = service::refresh(&state.db, &issuer(&state), &client, &input.refresh_token).await?;
    Ok(Json(pair))
}

/// Ends a login: its refresh-token family is revoked.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    request_body = RefreshIn,
    responses((status = 204), (status = 401, description = "unauthorized")))]
async fn logout(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(input): Json<RefreshIn>,
) -> ApiResult<StatusCode> {
    service::logout(&state.db, &client, &input.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's identity, project and scopes.
#[utoipa::path(get, path = "/v1/me", tag = "auth",
    responses((status = 200, body = Me)),
    security(("bearer" = [])))]
async fn me(Extension(p): Extension<Principal>) -> Json<Me> {
    Json(Me {
        project_id: p.project_id,
        actor: p.actor,
        scopes: p.scopes,
        role: p.role,
    })
}

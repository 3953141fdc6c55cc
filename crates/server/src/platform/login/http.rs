//! `/v1/auth/login|refresh|logout` (public, rate-limited per client IP) and `/v1/me`.

use super::{repo, throttle};
use crate::auth::{ClientInfo, Principal, Role};
use crate::error::{codes, ApiError, ApiResult};
use crate::extract::Json;
use crate::platform::users::{self, repo::UserRecord};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::Extension;
use serde::{Deserialize, Serialize};
use switchboard_core::audit::{self, Actor, AuditContext, Change};
use switchboard_core::db::Tx;
use switchboard_core::id::{ProjectId, TokenFamilyId};
use switchboard_core::secret;
use switchboard_core::time;
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

/// `project` of a login: a project id, or blank for none (what [`check_password`] accepts).
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

/// Tokens for an API client.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: i64,
    /// Single-use token that buys the next pair.
    pub refresh_token: String,
    /// Seconds the refresh token lives.
    pub refresh_expires_in: i64,
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

const REFRESH_PREFIX: &str = "sbr_";

/// Records an event of a user acting on their own account (login, refresh, logout).
pub async fn record_self(
    tx: &mut Tx,
    rec: &UserRecord,
    client: &ClientInfo,
    action: &str,
    after: Option<serde_json::Value>,
) -> Result<(), sqlx::Error> {
    let ctx = AuditContext {
        project_id: rec.project_id.clone(),
        actor: Actor {
            kind: "user".into(),
            id: rec.user.id.to_string(),
        },
        ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        request_id: client.request_id.clone(),
    };
    let change = Change {
        action,
        entity_type: "user",
        entity_id: rec.user.id.as_str(),
        before: None,
        after,
    };
    audit::record(tx, &ctx, change).await.map(|_| ())
}

/// Issues an access token and stores a new refresh token of `family` inside `tx`.
async fn issue(
    state: &AppState,
    tx: &mut Tx,
    rec: &UserRecord,
    family: &str,
) -> ApiResult<TokenPair> {
    let now = time::now();
    let ttl = state.config.refresh_token_ttl_secs;
    let refresh_token = secret::random_token(REFRESH_PREFIX);
    repo::insert_refresh(
        tx.ex(),
        &secret::digest(&refresh_token),
        family,
        rec.user.id.as_str(),
        rec.project_id.as_str(),
        now,
        time::add_secs(now, ttl),
    )
    .await?;
    let access_token = state
        .jwt
        .issue(rec.user.id.as_str(), rec.project_id.as_str(), family)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: state.jwt.ttl_secs(),
        refresh_token,
        refresh_expires_in: ttl,
    })
}

/// Most accounts one login without a project checks its password against.
const MAX_CANDIDATES: i64 = 5;

/// What a failed login says, whatever failed (unknown e-mail or project, wrong password,
/// disabled user), so the answer reveals nothing.
const WRONG: &str = "wrong e-mail or password (if this e-mail is used in several projects, \
                     send `project`)";

/// Checks an e-mail and password, in `project` when given, else among the (at most
/// [`MAX_CANDIDATES`]) accounts with that e-mail; exactly one must match. The same 401 for an
/// unknown e-mail, a wrong password and a disabled user, an unknown e-mail costing the same
/// hashing work as one account (a decoy). Before any of it: a place in the bounded hashing
/// line (else 503 `server-busy`) and the account's throttle (else 429 `login-throttled`,
/// the same for e-mails no account has).
pub async fn check_password(
    state: &AppState,
    email: &str,
    pw: &str,
    project: Option<&str>,
) -> ApiResult<UserRecord> {
    let email = email.trim().to_ascii_lowercase();
    let project = match project.map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            ProjectId::parse(p)
                .map_err(|_| ApiError::invalid_field("project", "is not a project id"))?,
        ),
    };
    let slot = state.passwords.admit()?;
    if let throttle::Charge::Locked { retry_after_secs } =
        throttle::charge(&state.db, &email, time::now()).await?
    {
        tracing::info!(email = %email, "login refused: account throttled");
        return Err(throttled(retry_after_secs));
    }
    let mut conn = state.db.read().await?;
    let candidates =
        users::repo::find_by_email(conn.ex(), &email, project.as_ref(), MAX_CANDIDATES).await?;
    drop(conn);
    let hashes: Vec<String> = candidates.iter().map(|c| c.password_hash.clone()).collect();
    let matches = slot.verify_each(pw, hashes).await?;
    let mut matching: Vec<UserRecord> = candidates
        .into_iter()
        .zip(matches)
        .filter(|(c, ok)| *ok && c.user.disabled_at.is_none())
        .map(|(c, _)| c)
        .collect();
    match matching.len() {
        1 => {
            throttle::clear(&state.db, &email).await?;
            Ok(matching.remove(0))
        }
        0 => {
            tracing::info!(email = %email, "failed login");
            Err(ApiError::unauthorized(WRONG))
        }
        _ => {
            // The caller knows the password of each of these accounts: naming their
            // projects discloses nothing it could not learn by logging in to each.
            let ids: Vec<&str> = matching.iter().map(|c| c.project_id.as_str()).collect();
            Err(ApiError::new(
                codes::PROJECT_REQUIRED,
                format!(
                    "this e-mail and password match accounts in several projects; send \
                     `project`, one of: {}",
                    ids.join(", ")
                ),
            ))
        }
    }
}

/// 429 `login-throttled` with `Retry-After`.
fn throttled(retry_after_secs: i64) -> ApiError {
    let value = HeaderValue::from_str(&retry_after_secs.to_string())
        .unwrap_or(HeaderValue::from_static("60"));
    ApiError::new(
        codes::LOGIN_THROTTLED,
        format!("too many failed logins for this account; try again in {retry_after_secs} s"),
    )
    .with_header(header::RETRY_AFTER, value)
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
    let rec = check_password(
        &state,
        &input.email,
        &input.password,
        input.project.as_deref(),
    )
    .await?;
    let family = TokenFamilyId::generate();
    let mut tx = state.db.begin().await?;
    let pair = issue(&state, &mut tx, &rec, family.as_str()).await?;
    record_self(
        &mut tx,
        &rec,
        &client,
        "auth.login",
        Some(serde_json::json!({ "token_family": family })),
    )
    .await?;
    tx.commit().await?;
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
    let digest = secret::digest(input.refresh_token.trim());
    let now = time::now();
    let mut tx = state.db.begin().await?;
    let won = repo::consume_refresh(tx.ex(), &digest, now).await?;
    let Some(token) = repo::find_refresh(tx.ex(), &digest).await? else {
        return Err(ApiError::unauthorized("unknown refresh token"));
    };
    let rec = users::repo::find_by_id(tx.ex(), &token.user_id).await?;
    let Some(rec) = rec.filter(|r| r.user.disabled_at.is_none()) else {
        return Err(ApiError::unauthorized("the user is disabled"));
    };
    if !won {
        if token.used_at.is_some() && token.revoked_at.is_none() {
            // A token that was already rotated came back: someone holds a copy.
            repo::revoke_family(tx.ex(), &token.family_id, now).await?;
            record_self(
                &mut tx,
                &rec,
                &client,
                "auth.refresh_reuse",
                Some(serde_json::json!({ "revoked_family": token.family_id })),
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(user = %rec.user.id, "refresh token reuse; family revoked");
            return Err(ApiError::new(
                codes::REFRESH_TOKEN_REUSED,
                "this refresh token was already used; every session of this login is revoked",
            ));
        }
        let why = if token.revoked_at.is_some() {
            "the refresh token was revoked"
        } else if token.expires_at <= time::to_db(now) {
            "the refresh token expired"
        } else {
            "the refresh token is not valid"
        };
        return Err(ApiError::unauthorized(why));
    }
    let pair = issue(&state, &mut tx, &rec, &token.family_id).await?;
    record_self(
        &mut tx,
        &rec,
        &client,
        "auth.refresh",
        Some(serde_json::json!({ "token_family": token.family_id })),
    )
    .await?;
    tx.commit().await?;
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
    let digest = secret::digest(input.refresh_token.trim());
    let mut tx = state.db.begin().await?;
    let Some(token) = repo::find_refresh(tx.ex(), &digest).await? else {
        return Err(ApiError::unauthorized("unknown refresh token"));
    };
    let revoked = repo::revoke_family(tx.ex(), &token.family_id, time::now()).await?;
    if revoked > 0 {
        if let Some(rec) = users::repo::find_by_id(tx.ex(), &token.user_id).await? {
            record_self(
                &mut tx,
                &rec,
                &client,
                "auth.logout",
                Some(serde_json::json!({ "revoked_family": token.family_id })),
            )
            .await?;
        }
    }
    tx.commit().await?;
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

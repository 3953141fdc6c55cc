//! Logging in and out: password checks (throttled, bounded, revealing nothing), access and
//! refresh tokens for API clients, session cookies for the dashboard, and the audit events
//! of a user acting on their own account.

use super::{repo, throttle, TokenPair};
use crate::auth::jwt::JwtKeys;
use crate::auth::password::Passwords;
use crate::auth::ClientInfo;
use crate::platform::users::{self, UserRecord};
use crate::platform::{PlatformError, PlatformResult};
use switchboard_core::audit::{self, Actor, AuditContext, Change};
use switchboard_core::db::{Db, Tx};
use switchboard_core::id::{ProjectId, TokenFamilyId};
use switchboard_core::secret;
use switchboard_core::time::{self, Timestamp};

/// What signs a login's tokens.
pub struct Issuer<'a> {
    /// Access-token keys.
    pub jwt: &'a JwtKeys,
    /// How long a refresh token lives, in seconds.
    pub refresh_ttl_secs: i64,
}

/// A password login as typed.
pub struct Login<'a> {
    /// Login e-mail (any case, maybe padded).
    pub email: &'a str,
    /// Password.
    pub password: &'a str,
    /// The project (`proj_…`) of the account; blank is none.
    pub project: Option<&'a str>,
}

const REFRESH_PREFIX: &str = "sbr_";
const SESSION_PREFIX: &str = "sbs_";

/// Most accounts one login without a project checks its password against.
const MAX_CANDIDATES: i64 = 5;

/// What a failed login says, whatever failed (unknown e-mail or project, wrong password,
/// disabled user), so the answer reveals nothing.
const WRONG: &str = "wrong e-mail or password (if this e-mail is used in several projects, \
                     send `project`)";

/// Checks an e-mail and password, in `project` when given, else among the (at most
/// [`MAX_CANDIDATES`]) accounts with that e-mail; exactly one must match. The same
/// `Unauthorized` for an unknown e-mail, a wrong password and a disabled user, an unknown
/// e-mail costing the same hashing work as one account (a decoy). Before any of it: a place
/// in the bounded hashing line (else busy) and the account's throttle (else `Throttled`,
/// the same for e-mails no account has).
#[tracing::instrument(skip_all)]
pub async fn check_password(
    db: &Db,
    passwords: &Passwords,
    login: &Login<'_>,
) -> PlatformResult<UserRecord> {
    let email = login.email.trim().to_ascii_lowercase();
    let project = match login.project.map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            ProjectId::parse(p)
                .map_err(|_| PlatformError::invalid("project", "is not a project id"))?,
        ),
    };
    let slot = passwords.admit()?;
    if let throttle::Charge::Locked { retry_after_secs } =
        throttle::charge(db, &email, time::now()).await?
    {
        tracing::info!(email = %email, "login refused: account throttled");
        return Err(PlatformError::Throttled { retry_after_secs });
    }
    let mut conn = db.read().await?;
    let candidates =
        users::repo::find_by_email(conn.ex(), &email, project.as_ref(), MAX_CANDIDATES).await?;
    drop(conn);
    let hashes: Vec<String> = candidates.iter().map(|c| c.password_hash.clone()).collect();
    let matches = slot.verify_each(login.password, hashes).await?;
    let mut matching: Vec<UserRecord> = candidates
        .into_iter()
        .zip(matches)
        .filter(|(c, ok)| *ok && c.user.disabled_at.is_none())
        .map(|(c, _)| c)
        .collect();
    match matching.len() {
        1 => {
            throttle::clear(db, &email).await?;
            Ok(matching.remove(0))
        }
        0 => {
            tracing::info!(email = %email, "failed login");
            Err(PlatformError::Unauthorized(WRONG))
        }
        // The caller knows the password of each of these accounts: naming their projects
        // discloses nothing it could not learn by logging in to each.
        _ => Err(PlatformError::ProjectRequired(
            matching.into_iter().map(|c| c.project_id).collect(),
        )),
    }
}

/// Exchanges an e-mail and password for a new login's tokens (`auth.login`).
#[tracing::instrument(skip_all, fields(user = tracing::field::Empty))]
pub async fn login(
    db: &Db,
    passwords: &Passwords,
    issuer: &Issuer<'_>,
    client: &ClientInfo,
    login: &Login<'_>,
) -> PlatformResult<TokenPair> {
    let rec = check_password(db, passwords, login).await?;
    tracing::Span::current().record("user", rec.user.id.as_str());
    let family = TokenFamilyId::generate();
    let mut tx = db.begin().await?;
    let pair = issue(issuer, &mut tx, &rec, &family).await?;
    record_self(
        &mut tx,
        &rec,
        client,
        "auth.login",
        Some(serde_json::json!({ "token_family": family })),
    )
    .await?;
    tx.commit().await?;
    Ok(pair)
}

/// Rotates a refresh token (`auth.refresh`). A token that was already rotated came back:
/// someone holds a copy, so its whole family is revoked (`auth.refresh_reuse`, committed)
/// and the answer is [`PlatformError::RefreshTokenReused`].
#[tracing::instrument(skip_all, fields(user = tracing::field::Empty))]
pub async fn refresh(
    db: &Db,
    issuer: &Issuer<'_>,
    client: &ClientInfo,
    refresh_token: &str,
) -> PlatformResult<TokenPair> {
    let digest = secret::digest(refresh_token.trim());
    let now = time::now();
    let mut tx = db.begin().await?;
    let won = repo::consume_refresh(tx.ex(), &digest, now).await?;
    let Some(token) = repo::find_refresh(tx.ex(), &digest).await? else {
        return Err(PlatformError::Unauthorized("unknown refresh token"));
    };
    tracing::Span::current().record("user", token.user_id.as_str());
    let rec = users::repo::find_by_id(tx.ex(), &token.user_id).await?;
    let Some(rec) = rec.filter(|r| r.user.disabled_at.is_none()) else {
        return Err(PlatformError::Unauthorized("the user is disabled"));
    };
    if !won {
        if token.used_at.is_some() && token.revoked_at.is_none() {
            repo::revoke_family(tx.ex(), &token.family_id, now).await?;
            record_self(
                &mut tx,
                &rec,
                client,
                "auth.refresh_reuse",
                Some(serde_json::json!({ "revoked_family": token.family_id })),
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(user = %rec.user.id, "refresh token reuse; family revoked");
            return Err(PlatformError::RefreshTokenReused);
        }
        let why = if token.revoked_at.is_some() {
            "the refresh token was revoked"
        } else if token.expires_at <= time::to_db(now) {
            "the refresh token expired"
        } else {
            "the refresh token is not valid"
        };
        return Err(PlatformError::Unauthorized(why));
    }
    let pair = issue(issuer, &mut tx, &rec, &token.family_id).await?;
    record_self(
        &mut tx,
        &rec,
        client,
        "auth.refresh",
        Some(serde_json::json!({ "token_family": token.family_id })),
    )
    .await?;
    tx.commit().await?;
    Ok(pair)
}

/// Ends a login: its refresh-token family is revoked (`auth.logout`, when anything was).
#[tracing::instrument(skip_all)]
pub async fn logout(db: &Db, client: &ClientInfo, refresh_token: &str) -> PlatformResult<()> {
    let digest = secret::digest(refresh_token.trim());
    let mut tx = db.begin().await?;
    let Some(token) = repo::find_refresh(tx.ex(), &digest).await? else {
        return Err(PlatformError::Unauthorized("unknown refresh token"));
    };
    let revoked = repo::revoke_family(tx.ex(), &token.family_id, time::now()).await?;
    if revoked > 0 {
        if let Some(rec) = users::repo::find_by_id(tx.ex(), &token.user_id).await? {
            record_self(
                &mut tx,
                &rec,
                client,
                "auth.logout",
                Some(serde_json::json!({ "revoked_family": token.family_id })),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Opens a dashboard session of `ttl_secs` for a user whose password was checked
/// (`auth.dashboard_login`); returns the cookie's secret token.
#[tracing::instrument(skip_all, fields(user = %rec.user.id))]
pub async fn open_session(
    db: &Db,
    client: &ClientInfo,
    rec: &UserRecord,
    ttl_secs: i64,
) -> PlatformResult<String> {
    let token = secret::random_token(SESSION_PREFIX);
    let now = time::now();
    let mut tx = db.begin().await?;
    repo::insert_session(
        tx.ex(),
        &secret::digest(&token),
        &rec.user.id,
        &rec.project_id,
        now,
        time::add_secs(now, ttl_secs),
    )
    .await?;
    record_self(&mut tx, rec, client, "auth.dashboard_login", None).await?;
    tx.commit().await?;
    Ok(token)
}

/// The active user a dashboard session token belongs to, if the session is live. The
/// token is never logged.
#[tracing::instrument(skip_all)]
pub async fn session_user(
    db: &Db,
    token: &str,
    now: Timestamp,
) -> PlatformResult<Option<UserRecord>> {
    let mut conn = db.read().await?;
    let Some(user_id) = repo::find_session(conn.ex(), &secret::digest(token), now).await? else {
        return Ok(None);
    };
    let rec = users::repo::find_by_id(conn.ex(), &user_id).await?;
    Ok(rec.filter(|r| r.user.disabled_at.is_none()))
}

/// Ends the dashboard session `token` of `rec` (`auth.dashboard_logout`).
#[tracing::instrument(skip_all, fields(user = %rec.user.id))]
pub async fn close_session(
    db: &Db,
    client: &ClientInfo,
    rec: &UserRecord,
    token: &str,
) -> PlatformResult<()> {
    let mut tx = db.begin().await?;
    repo::delete_session(tx.ex(), &secret::digest(token)).await?;
    record_self(&mut tx, rec, client, "auth.dashboard_logout", None).await?;
    tx.commit().await?;
    Ok(())
}

/// Issues an access token and stores a new refresh token of `family` inside `tx`.
async fn issue(
    issuer: &Issuer<'_>,
    tx: &mut Tx,
    rec: &UserRecord,
    family: &TokenFamilyId,
) -> PlatformResult<TokenPair> {
    let now = time::now();
    let ttl = issuer.refresh_ttl_secs;
    let refresh_token = secret::random_token(REFRESH_PREFIX);
    repo::insert_refresh(
        tx.ex(),
        &secret::digest(&refresh_token),
        family,
        &rec.user.id,
        &rec.project_id,
        now,
        time::add_secs(now, ttl),
    )
    .await?;
    let access_token = issuer.jwt.issue(
        rec.user.id.as_str(),
        rec.project_id.as_str(),
        family.as_str(),
    )?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: issuer.jwt.ttl_secs(),
        refresh_token,
        refresh_expires_in: ttl,
    })
}

/// Records an event of a user acting on their own account (login, refresh, logout).
async fn record_self(
    tx: &mut Tx,
    rec: &UserRecord,
    client: &ClientInfo,
    action: &str,
    after: Option<serde_json::Value>,
) -> PlatformResult<()> {
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
    audit::record(tx, &ctx, change).await?;
    Ok(())
}

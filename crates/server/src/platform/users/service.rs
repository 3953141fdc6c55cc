//! What may be done to users, by whom, and what it records. The API, the CLI and bootstrap
//! create and change users only through here: every credential is held to its role ceiling
//! (no credential creates or changes a user ranking above its own role, nor hands out,
//! through a role, scopes it does not hold), the last active owner can be neither demoted
//! nor disabled, passwords follow one rule, and each change writes its audit event in the
//! same transaction.

use super::{parse_email, repo, User, USER_NAME};
use crate::auth::jwt::Claims;
use crate::auth::password::{self, Passwords};
use crate::auth::{Caller, Principal, Role};
use crate::platform::login;
use crate::platform::{FieldIssue, PlatformError, PlatformResult};
use switchboard_core::audit::{self, AuditContext, Change};
use switchboard_core::db::{is_unique_violation, Db, Tx};
use switchboard_core::id::{ProjectId, TokenFamilyId, UserId};
use switchboard_core::time;

/// A user to create, as the API body or the CLI's flags give it (checked here).
pub struct NewUser {
    /// Login e-mail.
    pub email: String,
    /// Display name (kept trimmed).
    pub name: String,
    /// Role in the project.
    pub role: Role,
    /// Initial password.
    pub password: String,
}

/// What to change of a user; `None` leaves a field as it is.
#[derive(Default)]
pub struct UserChange {
    /// New display name.
    pub name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// New password.
    pub password: Option<String>,
    /// Disable (true) or re-enable (false).
    pub disabled: Option<bool>,
}

/// The project's users in id order, after the cursor `after`, `limit` at most.
#[tracing::instrument(skip_all, fields(project = %project))]
pub async fn list(
    db: &Db,
    project: &ProjectId,
    after: Option<&str>,
    limit: i64,
) -> PlatformResult<Vec<User>> {
    let mut conn = db.read().await?;
    Ok(repo::list(conn.ex(), project, after, limit).await?)
}

/// One user of the project.
#[tracing::instrument(skip_all, fields(project = %project, user = %id))]
pub async fn get(db: &Db, project: &ProjectId, id: &UserId) -> PlatformResult<User> {
    let mut conn = db.read().await?;
    repo::get(conn.ex(), project, id)
        .await?
        .ok_or(PlatformError::NotFound("user"))
}

/// Creates a user in the caller's project, within the caller's role ceiling; the password
/// is hashed before the transaction, so no lock waits for argon2.
#[tracing::instrument(skip_all, fields(project = %caller.project(), role = new.role.as_str()))]
pub async fn create(
    db: &Db,
    passwords: &Passwords,
    caller: &Caller,
    new: NewUser,
) -> PlatformResult<User> {
    let mut errors = Vec::new();
    let email = parse_email(&new.email).map_err(|m| errors.push(FieldIssue::new("email", m)));
    if let Err(m) = password::check_strength(&new.password) {
        errors.push(FieldIssue::new("password", m));
    }
    if let Err(m) = USER_NAME.check(&new.name) {
        errors.push(FieldIssue::new("name", m));
    }
    if let Some(why) = caller.principal.cannot_assign(new.role) {
        errors.push(FieldIssue::new("role", why));
    }
    let email = match email {
        Ok(e) if errors.is_empty() => e,
        _ => return Err(PlatformError::Invalid(errors)),
    };
    let user = User {
        id: UserId::generate(),
        email,
        name: new.name.trim().to_owned(),
        role: new.role,
        created_at: time::now(),
        disabled_at: None,
    };
    let hash = passwords.hash(&new.password).await?;
    let mut tx = db.begin().await?;
    insert_in_tx(&mut tx, &caller.audit(), &user, &hash).await?;
    tx.commit().await?;
    tracing::info!(user = %user.id, "user created");
    Ok(user)
}

/// Inserts `user` (its password already hashed) into the project of `ctx` inside `tx` and
/// records `user.create`: what [`create`] and bootstrap's first owner share.
#[tracing::instrument(skip_all, fields(project = %ctx.project_id, user = %user.id))]
pub async fn insert_in_tx(
    tx: &mut Tx,
    ctx: &AuditContext,
    user: &User,
    password_hash: &str,
) -> PlatformResult<()> {
    repo::insert(tx.ex(), &ctx.project_id, user, password_hash)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                PlatformError::EmailTaken
            } else {
                e.into()
            }
        })?;
    record(tx, ctx, "user.create", user, None).await
}

/// Changes a user's name, role, password or disabled state. Changing a user at all needs
/// authority over their current role, and a new role must be one the caller could give;
/// disabling or a new password ends every login of theirs.
#[tracing::instrument(skip_all, fields(project = %caller.project(), user = %id))]
pub async fn update(
    db: &Db,
    passwords: &Passwords,
    caller: &Caller,
    id: &UserId,
    change: UserChange,
) -> PlatformResult<User> {
    let mut errors = Vec::new();
    if let Some(Err(m)) = change.password.as_deref().map(password::check_strength) {
        errors.push(FieldIssue::new("password", m));
    }
    if let Some(Err(m)) = change.name.as_deref().map(|n| USER_NAME.check(n)) {
        errors.push(FieldIssue::new("name", m));
    }
    // Hashed before the transaction: no lock (on SQLite, the writer) waits for argon2.
    let hash = match change.password.as_deref() {
        Some(p) if errors.is_empty() => Some(passwords.hash(p).await?),
        _ => None,
    };
    let project = caller.project();
    let mut tx = db.begin().await?;
    // Lock the active owners before reading anything: the last-owner check below must see
    // what concurrent changes committed (two owners demoting each other at once).
    let owners = repo::lock_active_owners(tx.ex(), project).await?;
    let before = repo::get(tx.ex(), project, id)
        .await?
        .ok_or(PlatformError::NotFound("user"))?;
    let role = change.role.unwrap_or(before.role);
    if let Some(why) = caller
        .principal
        .cannot_assign(before.role)
        .or_else(|| caller.principal.cannot_assign(role))
    {
        errors.push(FieldIssue::new("role", why));
    }
    if !errors.is_empty() {
        return Err(PlatformError::Invalid(errors));
    }
    let now = time::now();
    let after = User {
        name: change
            .name
            .map(|n| n.trim().to_owned())
            .unwrap_or(before.name.clone()),
        role,
        disabled_at: match change.disabled {
            Some(true) => before.disabled_at.or(Some(now)),
            Some(false) => None,
            None => before.disabled_at,
        },
        ..before.clone()
    };
    if leaves_no_owner(&before, &after, &owners) {
        return Err(PlatformError::LastOwner);
    }
    repo::update(tx.ex(), project, &after, hash.as_deref()).await?;
    if after.disabled_at.is_some() || hash.is_some() {
        // Disabling or a new password ends every refresh-token family and dashboard session.
        login::repo::revoke_all_for_user(tx.ex(), &after.id, now).await?;
    }
    record(
        &mut tx,
        &caller.audit(),
        "user.update",
        &after,
        Some(&before),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Whether changing `before` into `after` takes an active owner away from a project whose
/// only active owner (of `owners`, locked) it is.
fn leaves_no_owner(before: &User, after: &User, owners: &[UserId]) -> bool {
    let loses_owner = before.role == Role::Owner
        && before.disabled_at.is_none()
        && (after.role != Role::Owner || after.disabled_at.is_some());
    loses_owner && owners.iter().all(|o| *o == before.id)
}

/// Sets a new password for the user with this e-mail (in `project`, or the only project
/// that has one, e.g. a lost owner password), ends every login of theirs and records
/// `user.password_reset` by the node's operator `operator` (the CLI).
#[tracing::instrument(skip_all, fields(operator = %operator, user = tracing::field::Empty))]
pub async fn reset_password(
    db: &Db,
    passwords: &Passwords,
    operator: &str,
    email: &str,
    project: Option<&ProjectId>,
    new_password: &str,
) -> PlatformResult<User> {
    let email = parse_email(email).map_err(|m| PlatformError::invalid("email", m))?;
    password::check_strength(new_password).map_err(|m| PlatformError::invalid("password", m))?;
    let found = {
        let mut conn = db.read().await?;
        repo::find_by_email(conn.ex(), &email, project, 2).await?
    };
    let rec = match found.as_slice() {
        [] => return Err(PlatformError::NotFound("user")),
        [one] => one.clone(),
        several => {
            let projects = several.iter().map(|r| r.project_id.clone()).collect();
            return Err(PlatformError::ProjectRequired(projects));
        }
    };
    tracing::Span::current().record("user", rec.user.id.as_str());
    let hash = passwords.hash(new_password).await?;
    let now = time::now();
    let caller = Caller::operator(&rec.project_id, operator);
    let mut tx = db.begin().await?;
    repo::update(tx.ex(), &rec.project_id, &rec.user, Some(&hash)).await?;
    // Whoever had the old password may hold sessions: they end with it.
    login::repo::revoke_all_for_user(tx.ex(), &rec.user.id, now).await?;
    audit::record(
        &mut tx,
        &caller.audit(),
        Change {
            action: "user.password_reset",
            entity_type: "user",
            entity_id: rec.user.id.as_str(),
            before: None,
            after: Some(serde_json::json!({ "email": rec.user.email, "sessions_ended": true })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(rec.user)
}

/// Resolves a verified access token to its principal, if the user is still active and the
/// token's login session (refresh-token family) is still live. The role is read fresh, so
/// demotions and disabling take effect on the next request; logout, refresh-token reuse and
/// a password change revoke the family, which ends its access tokens at once too.
#[tracing::instrument(skip_all, fields(user = %claims.sub))]
pub async fn principal_for_token(db: &Db, claims: &Claims) -> PlatformResult<Option<Principal>> {
    let (Ok(user), Ok(family)) = (
        UserId::parse(&claims.sub),
        TokenFamilyId::parse(&claims.sid),
    ) else {
        return Ok(None);
    };
    let mut conn = db.read().await?;
    let found = repo::find_with_session(conn.ex(), &user, &family).await?;
    Ok(match found {
        Some((rec, true))
            if rec.user.disabled_at.is_none() && rec.project_id.as_str() == claims.pid =>
        {
            Some(rec.principal())
        }
        _ => None,
    })
}

async fn record(
    tx: &mut Tx,
    ctx: &AuditContext,
    action: &str,
    after: &User,
    before: Option<&User>,
) -> PlatformResult<()> {
    audit::record(
        tx,
        ctx,
        Change {
            action,
            entity_type: "user",
            entity_id: after.id.as_str(),
            before: before.and_then(|b| serde_json::to_value(b).ok()),
            after: serde_json::to_value(after).ok(),
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, disabled: bool) -> User {
        User {
            id: UserId::generate(),
            email: "a@example.com".into(),
            name: String::new(),
            role,
            created_at: time::now(),
            disabled_at: disabled.then(time::now),
        }
    }

    #[test]
    fn the_last_active_owner_stays() {
        let owner = user(Role::Owner, false);
        let other = user(Role::Owner, false);
        let demoted = User {
            role: Role::Admin,
            ..owner.clone()
        };
        let disabled = User {
            disabled_at: Some(time::now()),
            ..owner.clone()
        };
        let alone = [owner.id.clone()];
        assert!(leaves_no_owner(&owner, &demoted, &alone));
        assert!(leaves_no_owner(&owner, &disabled, &alone));
        // Another active owner remains, or the change keeps this one an active owner.
        assert!(!leaves_no_owner(
            &owner,
            &demoted,
            &[owner.id.clone(), other.id.clone()]
        ));
        assert!(!leaves_no_owner(&owner, &owner, &alone));
        // A disabled owner or an admin was not one of the active owners.
        let admin = user(Role::Admin, false);
        assert!(!leaves_no_owner(&admin, &user(Role::Viewer, false), &alone));
        let gone = user(Role::Owner, true);
        assert!(!leaves_no_owner(&gone, &user(Role::Admin, true), &alone));
    }
}

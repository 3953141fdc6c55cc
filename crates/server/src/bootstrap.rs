//! First start: an empty database gets the project `default`, an owner and an API key with
//! every scope. Exactly one node does it, even when several start at once: the claim is a
//! unique row in `settings`, inserted in the same transaction as everything else.

use crate::auth::{password, Role, Scopes};
use crate::platform::api_keys;
use crate::platform::projects::{self, Project};
use crate::platform::users::{self, User};
use secrecy::ExposeSecret;
use switchboard_core::audit::{self, Actor, AuditContext, Change};
use switchboard_core::config::Config;
use switchboard_core::db::Db;
use switchboard_core::id::{ProjectId, UserId};
use switchboard_core::{on_db, secret, settings, time};

/// What to show the person who started the node, once.
pub struct Credentials {
    /// The new project.
    pub project: ProjectId,
    /// Owner login.
    pub email: String,
    /// Owner password.
    pub password: String,
    /// The API key.
    pub api_key: String,
}

/// Creates the first project, owner and key if the database has no project yet.
pub async fn bootstrap(
    db: &Db,
    config: &Config,
    passwords: &password::Passwords,
) -> anyhow::Result<Option<Credentials>> {
    use anyhow::Context;
    let mut tx = db.begin().await.context("bootstrap: begin")?;
    let claimed = on_db!(tx.ex(), c => sqlx::query(
        "INSERT INTO settings (name, value) VALUES ('bootstrapped_at', $1) ON CONFLICT DO NOTHING",
    )
    .bind(time::now().to_string())
    .execute(c)
    .await
    .context("bootstrap: claim")?
    .rows_affected() == 1);
    if !claimed || projects::repo::any_exists(tx.ex()).await? {
        return Ok(None);
    }
    let project = Project {
        id: ProjectId::generate(),
        name: "default".into(),
        created_at: time::now(),
    };
    projects::repo::insert(tx.ex(), &project).await?;
    audit::init_chain(tx.ex(), &project.id).await?;
    let ctx = AuditContext {
        project_id: project.id.clone(),
        actor: Actor::system("bootstrap"),
        ip: None,
        user_agent: None,
        request_id: None,
    };
    audit::record(
        &mut tx,
        &ctx,
        Change {
            action: "project.create",
            entity_type: "project",
            entity_id: project.id.as_str(),
            before: None,
            after: serde_json::to_value(&project).ok(),
        },
    )
    .await?;
    let pw = config
        .bootstrap_password
        .as_ref()
        .map(|p| p.expose_secret().to_owned())
        .unwrap_or_else(|| secret::random_token("").chars().take(20).collect());
    let owner = User {
        id: UserId::generate(),
        email: config.bootstrap_email.clone(),
        name: "Owner".into(),
        role: Role::Owner,
        created_at: time::now(),
        disabled_at: None,
    };
    let hash = passwords
        .hash(&pw)
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap: hash password: {e}"))?;
    users::repo::insert(tx.ex(), &project.id, &owner, &hash).await?;
    audit::record(
        &mut tx,
        &ctx,
        Change {
            action: "user.create",
            entity_type: "user",
            entity_id: owner.id.as_str(),
            before: None,
            after: serde_json::to_value(&owner).ok(),
        },
    )
    .await?;
    let key = api_keys::create_in_tx(
        &mut tx,
        &ctx,
        &project.id,
        api_keys::NewKey {
            name: "bootstrap",
            scopes: Scopes::all(),
            role: Role::Owner,
            expires_at: None,
            secret: config
                .bootstrap_api_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned()),
        },
    )
    .await?;
    tx.commit().await.context("bootstrap: commit")?;
    Ok(Some(Credentials {
        project: project.id,
        email: owner.email,
        password: pw,
        api_key: key.secret,
    }))
}

/// The HMAC secret for access tokens: configured, or generated once and shared by every
/// node through the database.
pub async fn jwt_secret(db: &Db, config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &config.jwt_secret {
        return Ok(s.expose_secret().as_bytes().to_vec());
    }
    let value = settings::get_or_create(db, "jwt_secret", || secret::random_token("")).await?;
    Ok(value.into_bytes())
}

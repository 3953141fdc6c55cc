//! First start: an empty database gets the project `default`, an owner and an API key with
//! every scope. Exactly one node does it, even when several start at once: the claim is a
//! unique row in `settings`, inserted in the same transaction as everything else.

use crate::auth::{password, Caller, Role, Scopes};
use crate::platform::api_keys;
use crate::platform::projects::{self, Project};
use crate::platform::users::{self, User};
use secrecy::ExposeSecret;
use switchboard_core::config::Config;
use switchboard_core::db::Db;
use switchboard_core::id::{ProjectId, UserId};
use switchboard_core::{secret, settings, time};

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
    let claimed = projects::repo::claim_bootstrap(tx.ex(), time::now())
        .await
        .context("bootstrap: claim")?;
    if !claimed || projects::repo::any_exists(tx.ex()).await? {
        return Ok(None);
    }
    let project = Project::new("default".into());
    let ctx = Caller::operator(&project.id, "bootstrap").audit();
    projects::service::insert_in_tx(&mut tx, &ctx, &project).await?;
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
    users::service::insert_in_tx(&mut tx, &ctx, &owner, &hash).await?;
    let key = api_keys::service::create_in_tx(
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

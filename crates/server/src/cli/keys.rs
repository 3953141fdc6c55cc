//! `switchboard keys create|list|revoke`, through the API keys service.

use super::open::{open_existing, project_for};
use super::{cli_error, operator, KeysCommand};
use crate::auth::Scopes;
use crate::platform::{api_keys, PlatformError};
use switchboard_core::config::Config;
use switchboard_core::id::ApiKeyId;

pub(super) async fn keys(config: &Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let db = open_existing(config).await?;
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            project,
        } => {
            let project = project_for(&db, project).await?;
            let scopes = Scopes::try_from(
                scopes
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
            // Whoever runs the CLI holds the database: its keys are owner keys.
            let request = api_keys::service::KeyRequest {
                name,
                scopes,
                expires_at: None,
            };
            let created = api_keys::service::create(&db, &operator(&project), request)
                .await
                .map_err(cli_error)?;
            say!("{}\t{}", created.key.id, created.secret);
        }
        KeysCommand::List { project } => {
            let project = project_for(&db, project).await?;
            let keys = api_keys::service::list(&db, &project, None, 10_000).await?;
            for k in keys {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                say!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    k.prefix,
                    k.scopes.to_db(),
                    k.role.as_str(),
                    status
                );
            }
        }
        KeysCommand::Revoke { id, project } => {
            let project = project_for(&db, project).await?;
            let missing = || anyhow::anyhow!("no API key {id} in project {project}");
            let key = ApiKeyId::parse(&id).map_err(|_| missing())?;
            match api_keys::service::revoke(&db, &operator(&project), &key).await {
                Ok(_) => {}
                Err(PlatformError::NotFound(_)) => return Err(missing()),
                Err(e) => return Err(cli_error(e)),
            }
            say!("revoked {id}");
        }
    }
    db.close().await;
    Ok(())
}

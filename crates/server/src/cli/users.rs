//! `switchboard users create|reset-password`, through the users service.

use super::open::{open_existing, project_for};
use super::{cli_error, operator, UsersCommand, CLI_ACTOR};
use crate::auth::{password, Role};
use crate::platform::{users, PlatformError};
use anyhow::Context;
use switchboard_core::config::Config;
use switchboard_core::db::Db;
use switchboard_core::id::ProjectId;

/// A password given on the command line, or a random one (`true`: generated).
fn password_or_random(given: Option<String>) -> (String, bool) {
    match given {
        Some(p) => (p, false),
        None => (
            switchboard_core::secret::random_token("")
                .chars()
                .take(20)
                .collect(),
            true,
        ),
    }
}

pub(super) async fn users_cmd(config: &Config, cmd: UsersCommand) -> anyhow::Result<()> {
    let db = open_existing(config).await?;
    let (email, role, pw, name, project) = match cmd {
        UsersCommand::Create {
            email,
            role,
            password,
            name,
            project,
        } => (email, role, password, name, project),
        UsersCommand::ResetPassword {
            email,
            password,
            project,
        } => {
            let out = reset_password(config, &db, &email, password, project).await;
            db.close().await;
            return out;
        }
    };
    let project = project_for(&db, project).await?;
    let role = Role::parse(&role)
        .with_context(|| format!("--role: `{role}` is not owner, admin, operator or viewer"))?;
    let (pw, generated) = password_or_random(pw);
    let new = users::service::NewUser {
        email: email.clone(),
        name,
        role,
        password: pw.clone(),
    };
    let passwords = password::Passwords::from_config(config);
    let user = match users::service::create(&db, &passwords, &operator(&project), new).await {
        Ok(user) => user,
        Err(PlatformError::EmailTaken) => anyhow::bail!(
            "a user with e-mail {} already exists",
            email.to_ascii_lowercase()
        ),
        Err(e) => return Err(cli_error(e)),
    };
    if generated {
        say!("{}\t{}\tpassword: {pw}", user.id, user.email);
    } else {
        say!("{}\t{}", user.id, user.email);
    }
    db.close().await;
    Ok(())
}

/// `users reset-password`: a new password for the user with this e-mail (in `project`, or
/// the only project that has one), every session of theirs ended, audited as
/// `user.password_reset` by the CLI.
async fn reset_password(
    config: &Config,
    db: &Db,
    email: &str,
    password: Option<String>,
    project: Option<String>,
) -> anyhow::Result<()> {
    let project = project
        .map(|p| ProjectId::parse(&p).map_err(|e| anyhow::anyhow!("--project: {e}")))
        .transpose()?;
    let (pw, generated) = password_or_random(password);
    let passwords = password::Passwords::from_config(config);
    let reset =
        users::service::reset_password(db, &passwords, CLI_ACTOR, email, project.as_ref(), &pw)
            .await;
    let email = email.to_ascii_lowercase();
    let user = match reset {
        Ok(user) => user,
        Err(PlatformError::NotFound(_)) => anyhow::bail!("no user with e-mail {email}"),
        Err(PlatformError::ProjectRequired(_)) => anyhow::bail!(
            "several projects have a user with e-mail {email}: say which with --project"
        ),
        Err(e) => return Err(cli_error(e)),
    };
    if generated {
        say!("{}\t{}\tpassword: {pw}", user.id, user.email);
    } else {
        say!("{}\t{}", user.id, user.email);
    }
    Ok(())
}

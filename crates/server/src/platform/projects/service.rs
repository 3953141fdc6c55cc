//! What may be done with projects and what it records. A caller sees only its own project;
//! a new project gets its own audit chain and a first key, which is its owner (it has no
//! user yet), while its creation is recorded in the creator's chain.

use super::{parse_name, repo, Project, ProjectCreated};
use crate::auth::{Caller, Role, Scopes};
use crate::platform::api_keys::{self, NewKey};
use crate::platform::{PlatformError, PlatformResult};
use switchboard_core::audit::{self, AuditContext, Change};
use switchboard_core::db::{Db, Tx};
use switchboard_core::id::ProjectId;

/// The projects the caller can see: its own.
#[tracing::instrument(skip_all, fields(project = %caller.project()))]
pub async fn visible(db: &Db, caller: &Caller) -> PlatformResult<Vec<Project>> {
    let mut conn = db.read().await?;
    Ok(repo::get(conn.ex(), caller.project())
        .await?
        .into_iter()
        .collect())
}

/// A project, if it is the caller's.
#[tracing::instrument(skip_all, fields(project = %caller.project(), id = %id))]
pub async fn get(db: &Db, caller: &Caller, id: &ProjectId) -> PlatformResult<Project> {
    if id != caller.project() {
        return Err(PlatformError::NotFound("project"));
    }
    let mut conn = db.read().await?;
    repo::get(conn.ex(), id)
        .await?
        .ok_or(PlatformError::NotFound("project"))
}

/// Creates a project and its first key (every scope, role `owner`), recording the creation
/// in the caller's chain and the key in the new project's.
#[tracing::instrument(skip_all, fields(project = %caller.project(), new_project = tracing::field::Empty))]
pub async fn create(db: &Db, caller: &Caller, name: &str) -> PlatformResult<ProjectCreated> {
    let name = parse_name(name).map_err(|m| PlatformError::invalid("name", m))?;
    let project = Project::new(name);
    tracing::Span::current().record("new_project", project.id.as_str());
    let mut tx = db.begin().await?;
    // The creation is recorded in the creator's project…
    insert_in_tx(&mut tx, &caller.audit(), &project).await?;
    // …and its first key in the new project's own chain.
    let mut ctx = caller.audit();
    ctx.project_id = project.id.clone();
    // The new project has no user yet: its first key is its owner.
    let api_key = api_keys::service::create_in_tx(
        &mut tx,
        &ctx,
        &project.id,
        NewKey {
            name: "initial key",
            scopes: Scopes::all(),
            role: Role::Owner,
            expires_at: None,
            secret: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(ProjectCreated { project, api_key })
}

/// Inserts `project` inside `tx`, starts its audit chain and records `project.create` in
/// the chain of `ctx`'s project (the creator's, or the new one's for bootstrap).
#[tracing::instrument(skip_all, fields(project = %project.id))]
pub async fn insert_in_tx(
    tx: &mut Tx,
    ctx: &AuditContext,
    project: &Project,
) -> PlatformResult<()> {
    repo::insert(tx.ex(), project).await?;
    audit::init_chain(tx.ex(), &project.id).await?;
    audit::record(
        tx,
        ctx,
        Change {
            action: "project.create",
            entity_type: "project",
            entity_id: project.id.as_str(),
            before: None,
            after: serde_json::to_value(project).ok(),
        },
    )
    .await?;
    Ok(())
}

/// Renames the caller's project.
#[tracing::instrument(skip_all, fields(project = %caller.project(), id = %id))]
pub async fn rename(
    db: &Db,
    caller: &Caller,
    id: &ProjectId,
    name: &str,
) -> PlatformResult<Project> {
    if id != caller.project() {
        return Err(PlatformError::NotFound("project"));
    }
    let name = parse_name(name).map_err(|m| PlatformError::invalid("name", m))?;
    let mut tx = db.begin().await?;
    let before = repo::get(tx.ex(), id)
        .await?
        .ok_or(PlatformError::NotFound("project"))?;
    repo::rename(tx.ex(), id, &name).await?;
    let after = Project {
        name,
        ..before.clone()
    };
    audit::record(
        &mut tx,
        &caller.audit(),
        Change {
            action: "project.update",
            entity_type: "project",
            entity_id: after.id.as_str(),
            before: serde_json::to_value(&before).ok(),
            after: serde_json::to_value(&after).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// The oldest project (the one bootstrap created), which commands default to.
#[tracing::instrument(skip_all)]
pub async fn first(db: &Db) -> PlatformResult<Option<ProjectId>> {
    let mut conn = db.read().await?;
    Ok(repo::first(conn.ex()).await?)
}

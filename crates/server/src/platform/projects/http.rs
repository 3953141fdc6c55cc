//! `/v1/projects`. A caller sees only its own project; creating a project returns the new
//! project's first API key (the caller's own credential never reaches into it).

use super::{parse_name, repo, Project};
use crate::auth::{scope, Authed, Role, Scopes};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::idempotency::{CarriesSecret, Created};
use crate::page::{Page, PageParams};
use crate::platform::api_keys::{self, ApiKeyCreated};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::{Deserialize, Serialize};
use switchboard_core::audit::{self, Change};
use switchboard_core::id::ProjectId;
use switchboard_core::time;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Routes of this capability.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project))
}

/// Body of `POST /v1/projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectIn {
    /// Display name, 1–100 characters.
    #[schema(schema_with = name_schema)]
    pub name: String,
}

fn name_schema() -> utoipa::openapi::Object {
    super::PROJECT_NAME.schema("Display name")
}

/// Answer of `POST /v1/projects`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectCreated {
    /// The new project.
    pub project: Project,
    /// Its first API key, with every scope; the secret is shown only here.
    pub api_key: ApiKeyCreated,
}

/// Lists the projects the caller can see (its own).
#[utoipa::path(get, path = "/v1/projects", tag = "projects",
    params(PageParams),
    responses((status = 200, body = Page<Project>)),
    security(("bearer" = ["projects:read"])))]
async fn list_projects(
    State(state): State<AppState>,
    auth: Authed<scope::ProjectsRead>,
    crate::extract::Query(page): crate::extract::Query<PageParams>,
) -> ApiResult<Json<Page<Project>>> {
    page.limit()?;
    let mut conn = state.db.read().await?;
    let own = repo::get(conn.ex(), auth.project()).await?;
    let data: Vec<Project> = own
        .into_iter()
        .filter(|p| page.after.as_deref().is_none_or(|a| p.id.as_str() > a))
        .collect();
    Ok(Json(Page {
        data,
        has_more: false,
        next_cursor: None,
    }))
}

/// Creates a project and its first API key (an idempotent replay answers 409
/// `secret-not-replayable` naming both instead).
#[utoipa::path(post, path = "/v1/projects", tag = "projects",
    request_body = ProjectIn,
    responses((status = 201, body = ProjectCreated), (status = 409, description = "secret-not-replayable")),
    security(("bearer" = ["projects:write"])))]
async fn create_project(
    State(state): State<AppState>,
    auth: Authed<scope::ProjectsWrite>,
    Json(input): Json<ProjectIn>,
) -> ApiResult<(StatusCode, Extension<CarriesSecret>, Json<ProjectCreated>)> {
    let name = parse_name(&input.name).map_err(|m| ApiError::invalid_field("name", m))?;
    let project = Project {
        id: ProjectId::generate(),
        name,
        created_at: time::now(),
    };
    let mut tx = state.db.begin().await?;
    repo::insert(tx.ex(), &project).await?;
    audit::init_chain(tx.ex(), &project.id).await?;
    // The creation is recorded in the creator's project…
    let after = serde_json::to_value(&project).ok();
    audit::record(
        &mut tx,
        &auth.audit(),
        Change {
            action: "project.create",
            entity_type: "project",
            entity_id: project.id.as_str(),
            before: None,
            after: after.clone(),
        },
    )
    .await?;
    // …and its first key in the new project's own chain.
    let mut ctx = auth.audit();
    ctx.project_id = project.id.clone();
    // The new project has no user yet: its first key is its owner.
    let api_key = api_keys::create_in_tx(
        &mut tx,
        &ctx,
        &project.id,
        api_keys::NewKey {
            name: "initial key",
            scopes: Scopes::all(),
            role: Role::Owner,
            expires_at: None,
            secret: None,
        },
    )
    .await?;
    tx.commit().await?;
    let secret = CarriesSecret(vec![
        Created {
            kind: "project",
            id: project.id.to_string(),
        },
        Created {
            kind: "api_key",
            id: api_key.key.id.to_string(),
        },
    ]);
    Ok((
        StatusCode::CREATED,
        Extension(secret),
        Json(ProjectCreated { project, api_key }),
    ))
}

/// One project (404 unless it is the caller's).
#[utoipa::path(get, path = "/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = Project), (status = 404, description = "not-found")),
    security(("bearer" = ["projects:read"])))]
async fn get_project(
    State(state): State<AppState>,
    auth: Authed<scope::ProjectsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<Project>> {
    if id != auth.project().as_str() {
        return Err(ApiError::not_found("project"));
    }
    let mut conn = state.db.read().await?;
    repo::get(conn.ex(), auth.project())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("project"))
}

/// Renames the caller's project.
#[utoipa::path(patch, path = "/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path, description = "Project id")),
    request_body = ProjectIn,
    responses((status = 200, body = Project), (status = 404, description = "not-found")),
    security(("bearer" = ["projects:write"])))]
async fn update_project(
    State(state): State<AppState>,
    auth: Authed<scope::ProjectsWrite>,
    Path(id): Path<String>,
    Json(input): Json<ProjectIn>,
) -> ApiResult<Json<Project>> {
    if id != auth.project().as_str() {
        return Err(ApiError::not_found("project"));
    }
    let name = parse_name(&input.name).map_err(|m| ApiError::invalid_field("name", m))?;
    let mut tx = state.db.begin().await?;
    let before = repo::get(tx.ex(), auth.project())
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    repo::rename(tx.ex(), auth.project(), &name).await?;
    let after = Project {
        name,
        ..before.clone()
    };
    audit::record(
        &mut tx,
        &auth.audit(),
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
    Ok(Json(after))
}

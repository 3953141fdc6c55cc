//! `/v1/projects`. A caller sees only its own project; creating a project returns the new
//! project's first API key (the caller's own credential never reaches into it).

use super::service;
use super::{Project, ProjectCreated};
use crate::auth::{scope, Authed};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::idempotency::{CarriesSecret, Created};
use crate::page::{Page, PageParams};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use switchboard_core::id::ProjectId;
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

/// A project id from the path; one that cannot be an id names no project.
fn project_id(id: &str) -> ApiResult<ProjectId> {
    ProjectId::parse(id).map_err(|_| ApiError::not_found("project"))
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
    let data: Vec<Project> = service::visible(&state.db, &auth.caller())
        .await?
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
    let created = service::create(&state.db, &auth.caller(), &input.name).await?;
    let secret = CarriesSecret(vec![
        Created {
            kind: "project",
            id: created.project.id.to_string(),
        },
        Created {
            kind: "api_key",
            id: created.api_key.key.id.to_string(),
        },
    ]);
    Ok((StatusCode::CREATED, Extension(secret), Json(created)))
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
    let id = project_id(&id)?;
    Ok(Json(service::get(&state.db, &auth.caller(), &id).await?))
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
    let id = project_id(&id)?;
    let project = service::rename(&state.db, &auth.caller(), &id, &input.name).await?;
    Ok(Json(project))
}

//! `/v1/audit-events`: query the trail and verify its hash chain.

use super::service;
use crate::auth::{scope, Authed};
use crate::error::ApiResult;
use crate::extract::{Json, Query};
use crate::page::{Page, MAX_LIMIT};
use crate::state::AppState;
use axum::extract::State;
use serde::Deserialize;
use switchboard_core::audit::{AuditEvent, Filter, Verification};
use switchboard_core::time::Timestamp;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Routes of this capability.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(verify_chain))
}

/// Filters of `GET /v1/audit-events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Actor id (a user or API key id).
    pub actor: Option<String>,
    /// Exact action, e.g. `api_key.revoke`.
    pub action: Option<String>,
    /// Entity kind, e.g. `user`.
    pub entity_type: Option<String>,
    /// Entity id.
    pub entity_id: Option<String>,
    /// Events at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    /// Events before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
    /// Items per page, 1 to 200 (default 50).
    #[param(schema_with = crate::page::limit_schema)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page (a sequence number).
    pub after: Option<i64>,
}

/// The project's audit events, newest first.
#[utoipa::path(get, path = "/v1/audit-events", tag = "audit",
    params(AuditQuery),
    responses((status = 200, body = Page<serde_json::Value>)),
    security(("bearer" = ["audit:read"])))]
async fn list_events(
    State(state): State<AppState>,
    auth: Authed<scope::AuditRead>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Page<AuditEvent>>> {
    let limit = crate::page::check_limit(q.limit)?;
    let before_seq = q.after;
    let filter = Filter {
        actor_id: q.actor,
        action: q.action,
        entity_type: q.entity_type,
        entity_id: q.entity_id,
        since: q.since,
        until: q.until,
        before_seq,
    };
    let events = service::list(
        &state.db,
        auth.project(),
        &filter,
        (limit + 1).min(MAX_LIMIT + 1),
    )
    .await?;
    Ok(Json(Page::from_overfetch(events, limit, |e| {
        e.seq.to_string()
    })))
}

/// Recomputes the project's hash chain and reports the first broken link, if any.
#[utoipa::path(get, path = "/v1/audit-events/verify", tag = "audit",
    responses((status = 200, body = serde_json::Value)),
    security(("bearer" = ["audit:read"])))]
async fn verify_chain(
    State(state): State<AppState>,
    auth: Authed<scope::AuditRead>,
) -> ApiResult<Json<Verification>> {
    Ok(Json(service::verify(&state.db, auth.project()).await?))
}

//! Project pages: API keys, and the audit log with its chain verified on demand (a full
//! walk reads every event, so it never runs on a page view).

use super::components::{href, Filter, Filters, Row, Table};
use super::page::{esc, num, ts, Page, PageResult, QueryData};
use super::DashboardUser;
use crate::error::ApiError;
use crate::platform::{api_keys, audit};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use switchboard_core::audit::{Filter as AuditFilter, Verification};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/keys", get(keys_page))
        .route("/dashboard/audit", get(audit_page))
        .route("/dashboard/audit/verify", post(verify))
}

async fn keys_page(State(state): State<AppState>, me: DashboardUser) -> PageResult<Response> {
    let keys = api_keys::service::list(&state.db, &me.0.project_id, None, 1000)
        .await
        .map_err(ApiError::from)?;
    let rows = keys
        .iter()
        .map(|k| Row {
            cells_html: vec![
                format!("<code>{}</code>", esc(k.id.as_str())),
                esc(&k.name),
                format!("<code>{}…</code>", esc(&k.prefix)),
                esc(&k.scopes.to_db()),
                k.role.as_str().into(),
                ts(Some(k.created_at)),
                ts(k.last_used_at),
                if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                }
                .into(),
            ],
            ..Row::default()
        })
        .collect();
    let table = Table {
        id: "keys",
        columns: &[
            "Id",
            "Name",
            "Prefix",
            "Scopes",
            "Role",
            "Created",
            "Last used",
            "Status",
        ],
        rows,
        empty_html:
            "<p><strong>No API keys.</strong> Create one with <code>switchboard keys create</code> \
                     or <code>POST /v1/api-keys</code>.</p>"
                .into(),
        next: None,
        first: None,
        selection: None,
    };
    Ok(Page::new("API keys", Some(&me.0), table.render()).into_response())
}

const AUDIT_PAGE: i64 = 100;

async fn audit_page(
    State(state): State<AppState>,
    me: DashboardUser,
    q: QueryData,
) -> PageResult<Response> {
    audit_body(&state, &me, &q, None).await
}

/// Walks the whole chain now, on request.
async fn verify(
    State(state): State<AppState>,
    me: DashboardUser,
    q: QueryData,
) -> PageResult<Response> {
    let result = audit::service::verify(&state.db, &me.0.project_id)
        .await
        .map_err(ApiError::from)?;
    audit_body(&state, &me, &q, Some(result)).await
}

async fn audit_body(
    state: &AppState,
    me: &DashboardUser,
    q: &QueryData,
    verified: Option<Verification>,
) -> PageResult<Response> {
    let action = q.get("action").unwrap_or("");
    let before: Option<i64> = q.get("before").and_then(|b| b.parse().ok());
    let filter = AuditFilter {
        action: (!action.is_empty()).then(|| action.to_owned()),
        before_seq: before,
        ..AuditFilter::default()
    };
    let project = &me.0.project_id;
    let events = audit::service::list(&state.db, project, &filter, AUDIT_PAGE + 1)
        .await
        .map_err(ApiError::from)?;
    let head = audit::service::head(&state.db, project)
        .await
        .map_err(ApiError::from)?;
    let more = events.len() as i64 > AUDIT_PAGE;
    let next = more
        .then(|| events.get(AUDIT_PAGE as usize - 1))
        .flatten()
        .map(|e| {
            href(
                "/dashboard/audit",
                &[("action", action), ("before", &e.seq.to_string())],
            )
        });
    let rows = events
        .iter()
        .take(AUDIT_PAGE as usize)
        .map(|e| Row {
            cells_html: vec![
                e.seq.to_string(),
                ts(Some(e.created_at)),
                format!("{}:{}", esc(&e.actor.kind), esc(&e.actor.id)),
                format!("<code>{}</code>", esc(&e.action)),
                format!("{} <code>{}</code>", esc(&e.entity_type), esc(&e.entity_id)),
                esc(e.ip.as_deref().unwrap_or("—")),
            ],
            ..Row::default()
        })
        .collect();
    let table = Table {
        id: "audit",
        columns: &["#", "When", "Actor", "Action", "Entity", "IP"],
        rows,
        empty_html: if action.is_empty() {
            "<p><strong>No events yet.</strong></p>".into()
        } else {
            format!(
                "<p><strong>No <code>{}</code> events.</strong> Actions look like \
                 <code>queue.pause</code> or <code>api_key.create</code>.</p>",
                esc(action)
            )
        },
        next,
        first: before.map(|_| href("/dashboard/audit", &[("action", action)])),
        selection: None,
    };
    let filters = Filters {
        action: "/dashboard/audit",
        fields: vec![Filter::Text {
            name: "action",
            label: "Action",
            value: action,
            placeholder: "e.g. queue.pause",
        }],
        problem: None,
    };
    let status = match &verified {
        None => String::new(),
        Some(v) if v.ok => format!(
            "<p class=\"flash\" role=\"status\">Audit trail: <strong id=\"audit-status\">intact</strong> \
             ({} events checked).</p>",
            num(v.checked)
        ),
        Some(v) => {
            let why = v
                .first_broken
                .as_ref()
                .map(|b| format!(" at event #{} ({}): {}", b.seq, esc(b.id.as_deref().unwrap_or("—")), esc(&b.reason)))
                .unwrap_or_default();
            format!(
                "<p class=\"notice\" role=\"alert\">Audit trail: <strong id=\"audit-status\">BROKEN</strong>{why}.</p>"
            )
        }
    };
    let body = format!(
        "{status}<div class=\"card facts\"><span><strong>{}</strong> events in the chain.</span>\
         <form class=\"inline\" method=\"post\" action=\"/dashboard/audit/verify\">\
         <button type=\"submit\" id=\"verify-audit\">Verify the chain</button></form>\
         <small>Recomputes every event's hash: it reads the whole trail.</small></div>{}{}",
        num(head),
        filters.render(),
        table.render()
    );
    Ok(Page::new("Audit log", Some(&me.0), body).into_response())
}

//! `/healthz`, `/readyz` and `/metrics`.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Routes of this capability.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `database`, `redis`, …
    pub name: String,
    /// Whether it answered.
    pub ok: bool,
    /// Backend, or what failed.
    pub detail: String,
}

/// Answer of `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Every check.
    pub checks: Vec<Check>,
}

/// Checks every dependency the node needs, each with a time limit.
pub async fn run_checks(state: &AppState) -> Vec<Check> {
    let limit = Duration::from_secs(3);
    let mut checks = Vec::new();
    let db = tokio::time::timeout(limit, state.db.ping()).await;
    checks.push(match db {
        Ok(Ok(())) => Check {
            name: "database".into(),
            ok: true,
            detail: state.db.backend().name().into(),
        },
        Ok(Err(e)) => Check {
            name: "database".into(),
            ok: false,
            detail: e.to_string(),
        },
        Err(_) => Check {
            name: "database".into(),
            ok: false,
            detail: "timed out".into(),
        },
    });
    if let Some(conn) = &state.redis {
        let mut conn = conn.clone();
        let ping =
            tokio::time::timeout(limit, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        let (ok, detail) = match ping {
            Ok(Ok(_)) => (true, "PONG".to_owned()),
            Ok(Err(e)) => (false, e.to_string()),
            Err(_) => (false, "timed out".to_owned()),
        };
        checks.push(Check {
            name: "redis".into(),
            ok,
            detail,
        });
    }
    checks
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = serde_json::Value)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Database and Redis (when configured) are reachable; 503 names what is not.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let checks = run_checks(&state).await;
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ok { "ok" } else { "unavailable" },
            checks,
        }),
    )
}

/// Prometheus metrics: HTTP requests by route template and status, process metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::telemetry::collect_process_metrics();
    if let Err(e) = record_queue_depths(&state).await {
        tracing::warn!(error = %e, "queue depth gauges not refreshed");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Sets `queue_jobs{project, queue, state}` from the maintained counters (one small query,
/// never `count(*)` over the jobs table); available jobs for pull workers, counted apart,
/// are added into `available`.
async fn record_queue_depths(state: &AppState) -> Result<(), sqlx::Error> {
    use sqlx::Row;
    let mut conn = state.db.read().await?;
    let sql = format!(
        "SELECT project_id, queue, CASE WHEN state = '{}' THEN 'available' ELSE state END AS state, \
         CAST(SUM(n) AS BIGINT) AS n FROM queue_counts GROUP BY 1, 2, 3",
        switchboard_queue::store::AVAILABLE_PULL
    );
    let rows: Vec<(String, String, String, i64)> = switchboard_core::on_db!(conn.ex(), c => {
        let rows = sqlx::query(&sql).fetch_all(c).await?;
        rows.iter()
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("project_id")?, r.try_get("queue")?, r.try_get("state")?, r.try_get("n")?)))
            .collect::<Result<_, _>>()?
    });
    for (project, queue, st, n) in rows {
        let labels = [("project", project), ("queue", queue), ("state", st)];
        metrics::gauge!("queue_jobs", &labels).set(n as f64);
    }
    Ok(())
}

//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Metrics name every project and queue of the node, so they are not public: the public
//! listener serves them only to bearers of `SWITCHBOARD_METRICS_TOKEN`, and
//! `SWITCHBOARD_METRICS_LISTEN` serves them on an address of their own (e.g. an internal
//! interface; with the token set, it asks for it too).

mod repo;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use switchboard_queue::{store, JobState};
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

/// Checks every dependency the node needs, each with a time limit. Details are generic
/// (`unreachable`, `timed out`): `/readyz` is public, so the driver's error text (addresses,
/// user names, versions) goes to the log instead.
pub async fn run_checks(state: &AppState) -> Vec<Check> {
    let limit = Duration::from_secs(3);
    let mut checks = Vec::new();
    let db = tokio::time::timeout(limit, state.db.ping()).await;
    let (ok, detail) = match db {
        Ok(Ok(())) => (true, state.db.backend().name()),
        Ok(Err(sqlx::Error::PoolTimedOut)) => (false, "timed out"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            (false, "unreachable")
        }
        Err(_) => (false, "timed out"),
    };
    checks.push(Check {
        name: "database".into(),
        ok,
        detail: detail.into(),
    });
    if let Some(conn) = &state.redis {
        let mut conn = conn.clone();
        let ping =
            tokio::time::timeout(limit, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        let (ok, detail) = match ping {
            Ok(Ok(_)) => (true, "PONG"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: Redis check failed");
                (false, "unreachable")
            }
            Err(_) => (false, "timed out"),
        };
        checks.push(Check {
            name: "redis".into(),
            ok,
            detail: detail.into(),
        });
    }
    if checks.iter().any(|c| !c.ok) {
        let failing: Vec<&str> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect();
        tracing::warn!(?failing, "not ready");
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

/// Prometheus metrics: HTTP requests by route template and status, queue depths and
/// throughput, process metrics. Needs the bearer token of `SWITCHBOARD_METRICS_TOKEN`;
/// without one configured this listener does not serve metrics (404).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, content_type = "text/plain", body = String),
        (status = 401, description = "unauthorized"),
        (status = 404, description = "metrics-disabled")))]
async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize_metrics(&state, &headers, Listener::Public)?;
    Ok(render_metrics(&state).await)
}

/// `/metrics` on the metrics listener.
async fn metrics_on_own_listener(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize_metrics(&state, &headers, Listener::Metrics)?;
    Ok(render_metrics(&state).await)
}

/// The router of the metrics listener: `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_on_own_listener))
        .fallback(crate::middleware::not_found)
        .with_state(state)
}

/// Which listener a scrape arrived on.
#[derive(Clone, Copy, PartialEq)]
enum Listener {
    Public,
    Metrics,
}

/// A configured token is required on every listener; without one, only the metrics
/// listener serves metrics.
fn authorize_metrics(state: &AppState, headers: &HeaderMap, on: Listener) -> Result<(), ApiError> {
    let Some(token) = &state.config.metrics_token else {
        if on == Listener::Metrics {
            return Ok(());
        }
        let detail = if state.config.metrics_listen.is_some() {
            "metrics are served on the metrics listener (SWITCHBOARD_METRICS_LISTEN), not \
             here; set SWITCHBOARD_METRICS_TOKEN to also serve them here to bearers of that token"
        } else {
            "metrics are not served on this listener: set SWITCHBOARD_METRICS_TOKEN to serve \
             them here to bearers of that token, or SWITCHBOARD_METRICS_LISTEN to serve them \
             on an address of their own"
        };
        return Err(ApiError::new(crate::error::codes::METRICS_DISABLED, detail));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Digests are compared, so the time taken says nothing about the token.
    if Sha256::digest(given.trim().as_bytes()) == Sha256::digest(token.expose_secret().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "/metrics needs the bearer token configured in SWITCHBOARD_METRICS_TOKEN",
        ))
    }
}

async fn render_metrics(state: &AppState) -> impl IntoResponse {
    crate::telemetry::collect_process_metrics();
    if let Err(e) = record_queue_depths(state).await {
        tracing::warn!(error = %e, "queue depth gauges not refreshed");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// `project` and `queue` labels of a queue (or of `_other`).
type QueueLabels = [(&'static str, String); 2];

/// Label sets whose `queue_jobs` gauges the last scrape set.
fn reported() -> &'static Mutex<HashSet<QueueLabels>> {
    static REPORTED: OnceLock<Mutex<HashSet<QueueLabels>>> = OnceLock::new();
    REPORTED.get_or_init(Mutex::default)
}

/// Sets `queue_jobs{project, queue, state}` from the maintained counters (one small query,
/// never `count(*)` over the jobs table); available jobs for pull workers, counted apart,
/// are added into `available`. Labels come from the node's label budget
/// ([`store::labels`]; queues beyond it are summed into `_other`). Empty queues are left
/// out once their gauges read zero, so they go idle and disappear (their counter rows stay
/// in the database for good).
async fn record_queue_depths(state: &AppState) -> Result<(), sqlx::Error> {
    let rows = {
        let mut conn = state.db.read().await?;
        repo::queue_depths(conn.ex()).await?
    };
    let mut per_queue: BTreeMap<(String, String), Vec<(String, i64)>> = BTreeMap::new();
    for d in rows {
        per_queue
            .entry((d.project, d.queue))
            .or_default()
            .push((d.state, d.jobs));
    }
    let mut depths: BTreeMap<QueueLabels, BTreeMap<String, i64>> = BTreeMap::new();
    for ((project, queue), states) in per_queue {
        if states.iter().all(|(_, n)| *n == 0) {
            continue;
        }
        // Every state is set, so a state whose last queue left a folded set reads zero.
        let by_state = depths
            .entry(store::labels(&project, &queue))
            .or_insert_with(|| {
                JobState::ALL
                    .iter()
                    .map(|st| (st.as_str().to_owned(), 0))
                    .collect()
            });
        for (st, n) in states {
            *by_state.entry(st).or_default() += n;
        }
    }
    let mut reported = reported().lock().unwrap_or_else(|p| p.into_inner());
    // Label sets reported last time and empty now read zero once more, then go idle.
    for gone in reported.iter().filter(|l| !depths.contains_key(*l)) {
        for st in JobState::ALL {
            let [p, q] = gone.clone();
            metrics::gauge!("queue_jobs", &[p, q, ("state", st.as_str().to_owned())]).set(0.0);
        }
    }
    reported.clear();
    for (labels, by_state) in depths {
        for (st, n) in by_state {
            let [p, q] = labels.clone();
            metrics::gauge!("queue_jobs", &[p, q, ("state", st)]).set(n as f64);
        }
        reported.insert(labels);
    }
    Ok(())
}

//! Startup: [`Application::build`] connects, migrates, bootstraps and binds;
//! [`Application::run_until_stopped`] serves until the shutdown future resolves, then drains
//! in-flight requests.

use crate::auth::{authenticate, jwt::JwtKeys, password::Passwords};
use crate::bootstrap::{self, Credentials};
use crate::middleware as mw;
use crate::openapi::ApiDoc;
use crate::platform::{api_keys, audit, health, login, projects, users};
use crate::state::{AppState, Inner};
use crate::{builtins, dashboard, hooks, idempotency, queue, telemetry};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_core::config::Config;
use switchboard_core::crypto::Keyring;
use switchboard_core::db::Db;
use switchboard_core::ratelimit::RateLimiter;
use switchboard_queue::limits::Limits;
use switchboard_queue::runtime::{Runtime, RuntimeBuilder};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

/// A built node, listening but not yet serving.
pub struct Application {
    listener: TcpListener,
    /// The listener serving only `/metrics`, when configured.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    router: Router,
    /// Credentials created by this start, if it was the first.
    pub bootstrap: Option<Credentials>,
}

/// What a node serves beyond this build's capabilities: provider callbacks and streaming
/// routes added by the program embedding it (tests use this for routes of their own).
#[derive(Default)]
pub struct Extras {
    /// More providers for `/hooks/{provider}`.
    pub hooks: hooks::Registry,
    /// More routes for the streaming group (see [`streaming_routes`]); they are not in the
    /// OpenAPI document.
    pub streaming: Router<AppState>,
}

/// Connects to the database and Redis named by `config` and brings the schema up to date.
pub async fn connect(
    config: &Config,
) -> anyhow::Result<(Db, Option<redis::aio::ConnectionManager>)> {
    let db = Db::connect(&config.database_url, config.db_max_connections)
        .await
        .with_context(|| format!("cannot open database {}", redact(&config.database_url)))?;
    db.migrate().await.context("cannot migrate the database")?;
    let redis = match &config.redis_url {
        None => None,
        Some(url) => {
            let client = redis::Client::open(url.as_str())
                .with_context(|| format!("invalid REDIS_URL {}", redact(url)))?;
            Some(
                redis::aio::ConnectionManager::new(client)
                    .await
                    .with_context(|| format!("cannot connect to Redis at {}", redact(url)))?,
            )
        }
    };
    Ok((db, redis))
}

/// The per-project caps `config` sets.
pub fn limits(config: &Config) -> Limits {
    Limits {
        queues: config.max_queues_per_project,
        schedules: config.max_schedules_per_project,
        frequent_schedules: config.max_frequent_schedules_per_project,
    }
}

/// A URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Application {
    /// Connects, migrates, bootstraps an empty database and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with(config, Runtime::builder()).await
    }

    /// Like [`Application::build`], with in-process job handlers and timing of the caller's.
    pub async fn build_with(
        config: Config,
        runtime: RuntimeBuilder,
    ) -> anyhow::Result<Application> {
        Self::build_extended(config, runtime, Extras::default()).await
    }

    /// Like [`Application::build_with`], serving `extras` too.
    pub async fn build_extended(
        config: Config,
        runtime: RuntimeBuilder,
        extras: Extras,
    ) -> anyhow::Result<Application> {
        let hooks = hooks::Registry::builtin()
            .merge(extras.hooks)
            .map_err(anyhow::Error::msg)?;
        let (db, redis) = connect(&config).await?;
        let passwords = Passwords::from_config(&config);
        let bootstrap = bootstrap::bootstrap(&db, &config, &passwords).await?;
        let secret = bootstrap::jwt_secret(&db, &config).await?;
        let secrets = Keyring::load(&db, &config).await?;
        let limiter = match &redis {
            Some(conn) => RateLimiter::redis(conn.clone(), &config.redis_prefix),
            None => RateLimiter::memory(),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {addr}"))?,
            ),
            None => None,
        };
        switchboard_queue::labels::set_limit(config.metrics_max_queues);
        // Built-in kinds and handlers are registered now that the database is open.
        let runtime = builtins::runtime(&config, &db, runtime.dispatch(config.run_jobs), None);
        let state = AppState::new(Inner {
            runtime,
            jwt: JwtKeys::new(&secret, config.access_token_ttl_secs),
            passwords,
            metrics: telemetry::metrics_handle(),
            config,
            db,
            redis,
            limiter,
            secrets,
            hooks,
        });
        let router = router(state.clone(), extras.streaming);
        Ok(Application {
            listener,
            metrics_listener,
            state,
            router,
            bootstrap,
        })
    }

    /// The bound port (tests bind port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The bound port of the metrics listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// Shared state (tests reach the database through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let maintenance = tokio::spawn(maintenance(self.state.clone()));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let runtime = tokio::spawn(self.state.runtime.clone().run(stop_rx));
        let metrics = self.metrics_listener.map(|l| {
            let router = health::metrics_router(self.state.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, router).await {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            })
        });
        let result = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        maintenance.abort();
        // Scrapes are idempotent: the metrics listener just stops.
        if let Some(m) = metrics {
            m.abort();
        }
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), runtime).await;
        self.state.db.close().await;
        result.context("server error")
    }
}

/// Periodic housekeeping of this node (the queue engine's maintenance jobs take this over).
async fn maintenance(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match idempotency::prune(&state.db).await {
            Ok(n) if n > 0 => tracing::info!(pruned = n, "expired idempotency keys removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "idempotency pruning failed"),
        }
        match login::throttle::prune(&state.db, switchboard_core::time::now()).await {
            Ok(n) if n > 0 => tracing::info!(pruned = n, "quiet login-failure counts removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "login-failure pruning failed"),
        }
    }
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routers().1
}

fn api_routers() -> (OpenApiRouter<AppState>, utoipa::openapi::OpenApi) {
    let protected = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(projects::http::router())
        .merge(api_keys::http::router())
        .merge(users::http::router())
        .merge(audit::router())
        .merge(login::http::router())
        .merge(queue::jobs::router())
        .merge(queue::queues::router())
        .merge(queue::schedules::router());
    let (_, mut doc) = protected.clone().split_for_parts();
    let (_, public) = login::http::public_router().split_for_parts();
    let (_, health) = health::router().split_for_parts();
    let (_, streaming) = streaming_routes().split_for_parts();
    let (_, hooks) = hooks::router().split_for_parts();
    doc.merge(public);
    doc.merge(health);
    doc.merge(streaming);
    doc.merge(hooks);
    utoipa::Modify::modify(&crate::openapi::ProblemResponses, &mut doc);
    utoipa::Modify::modify(&crate::openapi::CrossFieldRules, &mut doc);
    (protected, doc)
}

/// Routes whose handlers take the request body as a stream (uploads), authenticated like
/// every `/v1` route but with no `Idempotency-Key` layer and no global body limit: each
/// handler reads with [`crate::extract::Streamed`] and a limit of its own. Storage adds its
/// upload routes here.
pub fn streaming_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}

/// Every route with every layer; `streaming` joins the streaming group.
pub fn router(state: AppState, streaming: Router<AppState>) -> Router {
    let (protected, doc) = api_routers();
    let protected: Router<AppState> = Router::from(protected)
        .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .layer(from_fn(mw::reject_unknown_query))
        .layer(from_fn_with_state(state.clone(), mw::rate_limit_principal))
        .layer(from_fn_with_state(state.clone(), authenticate));
    let public: Router<AppState> = Router::from(login::http::public_router())
        .layer(from_fn(mw::reject_unknown_query))
        .layer(from_fn_with_state(state.clone(), mw::rate_limit_ip));
    let health: Router<AppState> =
        Router::from(health::router()).layer(from_fn(mw::reject_unknown_query));
    // Nothing reads the body before these handlers do (no Idempotency-Key layer); the body
    // limit is theirs, not `SWITCHBOARD_BODY_LIMIT`, which binds only body extractors.
    let streaming: Router<AppState> = Router::from(streaming_routes())
        .merge(streaming)
        .layer(from_fn(mw::reject_unknown_query))
        .layer(from_fn_with_state(state.clone(), mw::rate_limit_principal))
        .layer(from_fn_with_state(state.clone(), authenticate));
    // Provider callbacks: no API key, no query check (providers add their own parameters).
    let hooks: Router<AppState> = Router::from(hooks::router())
        .layer(from_fn_with_state(state.clone(), mw::rate_limit_hooks));

    let mut app = Router::new()
        .merge(protected)
        .merge(public)
        .merge(health)
        .merge(streaming)
        .merge(hooks)
        .merge(dashboard::router(state.clone()))
        .fallback(mw::not_found)
        .method_not_allowed_fallback(mw::method_not_allowed)
        .with_state(state.clone())
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc).config(
            // No online validator: the CSP forbids it, and the spec stays on this host.
            utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none"),
        ))
        .layer(from_fn(mw::record_metrics))
        .layer(DefaultBodyLimit::max(state.config.body_limit));
    if !state.config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PATCH,
                    Method::PUT,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                    mw::REQUEST_ID.clone(),
                ])
                .expose_headers([
                    mw::REQUEST_ID.clone(),
                    HeaderName::from_static("idempotent-replayed"),
                    HeaderName::from_static("ratelimit-limit"),
                    HeaderName::from_static("ratelimit-remaining"),
                    HeaderName::from_static("ratelimit-reset"),
                    header::RETRY_AFTER,
                ])
                .max_age(Duration::from_secs(3600)),
        );
    }
    let limit = crate::extract::BodyLimit(state.config.body_limit);
    app.layer(from_fn_with_state(state.clone(), mw::security_headers))
        .layer(from_fn(mw::problem_errors))
        .layer(from_fn_with_state(state, mw::client_info))
        .layer(CatchPanicLayer::new())
        .layer(axum::Extension(limit))
}

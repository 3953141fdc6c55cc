//! Test harness: `spawn_app(backend)` gives a running node with its own database.

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use sqlx::Connection;
use switchboard_core::config::{Config, PushAllow};
use switchboard_core::db::Backend;
use switchboard_queue::runtime::{Runtime, RuntimeBuilder};
use switchboard_server::app::{Application, Extras};
use switchboard_server::state::AppState;
use tokio::sync::oneshot;

/// The owner password every test node is bootstrapped with.
pub const OWNER_PASSWORD: &str = "owner-password-1";
/// The owner login.
pub const OWNER_EMAIL: &str = "owner@localhost";

/// The Redis URL for tests, if any: for tests that check Redis in passing (a test that
/// needs it throughout is registered with `needs(Redis)` and is skipped without it).
pub fn redis_url() -> Option<String> {
    let url = std::env::var("SWITCHBOARD_TEST_REDIS_URL").ok();
    assert!(
        url.is_some() || std::env::var("SWITCHBOARD_TEST_REQUIRE_REDIS").is_err(),
        "SWITCHBOARD_TEST_REDIS_URL is not set but Redis tests are required"
    );
    url
}

/// A fresh, empty PostgreSQL database, dropped when the test ends; returns its URL.
pub async fn fresh_postgres() -> String {
    let admin = std::env::var("SWITCHBOARD_TEST_DATABASE_URL").expect("postgres url");
    let name = format!("sbtest_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to SWITCHBOARD_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    crate::harness::created_database(&admin, &name);
    let _ = conn.close().await;
    let mut url = url::Url::parse(&admin).expect("valid postgres url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A base configuration for `backend` in a fresh temporary folder.
pub async fn test_config(backend: Backend, dir: &std::path::Path) -> Config {
    let mut c = Config::with_data_dir(dir);
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.bootstrap_password = Some(OWNER_PASSWORD.to_owned().into());
    c.bootstrap_api_key = Some(format!("sb_test_{}", uuid::Uuid::now_v7().simple()).into());
    c.rate_limit_per_minute = 100_000;
    c.rate_limit_burst = 100_000;
    c.auth_rate_limit_per_minute = 10_000;
    c.redis_prefix = format!("sbtest:{}:", uuid::Uuid::now_v7().simple());
    // The fake targets (wiremock) listen on loopback, which push jobs may not reach by
    // default; tests of that default reset this.
    c.push_allow = PushAllow::parse("127.0.0.0/8").expect("allow-list");
    // The label budget is process-wide and every test's queues count against it; the
    // default (1,000) is tested in a binary of its own (`metrics_budget`).
    c.metrics_max_queues = 1_000_000;
    if backend == Backend::Postgres {
        c.database_url = fresh_postgres().await;
        c.db_max_connections = 5;
    }
    c
}

/// A running node.
pub struct TestApp {
    /// `http://127.0.0.1:port`
    pub addr: String,
    /// `http://127.0.0.1:port` of the metrics listener, when configured.
    pub metrics_addr: Option<String>,
    /// The bootstrap API key (every scope).
    pub key: String,
    /// Shared state (direct database access for assertions).
    pub state: AppState,
    /// The config it runs with.
    pub config: Config,
    /// HTTP client.
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// Starts a node on `backend` with default test settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// Starts a node after letting the test adjust its configuration.
pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(backend, dir.path()).await;
    adjust(&mut config);
    spawn_config(config, Some(dir)).await
}

/// Starts a node with exactly this configuration.
pub async fn spawn_config(config: Config, dir: Option<tempfile::TempDir>) -> TestApp {
    spawn_full(config, dir, Runtime::builder()).await
}

/// Starts a node on `backend` whose runtime has the caller's handlers.
pub async fn spawn_runtime(backend: Backend, runtime: RuntimeBuilder) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(backend, dir.path()).await;
    spawn_full(config, Some(dir), runtime).await
}

/// Starts a node on `backend` that also serves `extras` (hooks, streaming routes of the
/// test's own), after letting the test adjust its configuration.
pub async fn spawn_extras(
    backend: Backend,
    adjust: impl FnOnce(&mut Config),
    extras: Extras,
) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(backend, dir.path()).await;
    adjust(&mut config);
    spawn_extended(config, Some(dir), Runtime::builder(), extras).await
}

/// Starts a node with this configuration and runtime.
pub async fn spawn_full(
    config: Config,
    dir: Option<tempfile::TempDir>,
    runtime: RuntimeBuilder,
) -> TestApp {
    spawn_extended(config, dir, runtime, Extras::default()).await
}

/// Starts a node with this configuration, runtime and extras.
pub async fn spawn_extended(
    config: Config,
    dir: Option<tempfile::TempDir>,
    runtime: RuntimeBuilder,
    extras: Extras,
) -> TestApp {
    use secrecy::ExposeSecret;
    // Server logs of a failing test, with SWITCHBOARD_TEST_LOG=warn.
    switchboard_server::telemetry::init_test_logs();
    let key = config
        .bootstrap_api_key
        .as_ref()
        .map(|k| k.expose_secret().to_owned())
        .unwrap_or_default();
    let app = Application::build_extended(config.clone(), runtime, extras)
        .await
        .expect("build app");
    let addr = format!("http://127.0.0.1:{}", app.port());
    let metrics_addr = app.metrics_port().map(|p| format!("http://127.0.0.1:{p}"));
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        metrics_addr,
        key,
        state,
        config,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        shutdown: Some(tx),
        _dir: dir,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    /// Full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.addr)
    }

    /// A request authorised with `token`.
    pub fn req_as(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// A request authorised with the bootstrap key.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.req_as(method, path, &self.key)
    }

    /// GET with the bootstrap key.
    pub async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.expect("send")
    }

    /// POST JSON with the bootstrap key.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.req(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("send")
    }

    /// Creates an API key with `scopes` and returns `(id, secret)`.
    pub async fn create_key(&self, scopes: &[&str]) -> (String, String) {
        let r = self
            .post(
                "/v1/api-keys",
                &serde_json::json!({ "name": "test", "scopes": scopes }),
            )
            .await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.expect("json");
        (
            v["id"].as_str().expect("id").to_owned(),
            v["secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// `GET /metrics` on the public listener with the configured metrics token.
    pub async fn scrape(&self) -> String {
        use secrecy::ExposeSecret;
        let token = self
            .config
            .metrics_token
            .as_ref()
            .expect("configure metrics_token to scrape")
            .expose_secret()
            .to_owned();
        let r = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        r.text().await.expect("body")
    }

    /// Number of audit events in the caller's project.
    pub async fn audit_count(&self) -> usize {
        let v: Value = self
            .get("/v1/audit-events?limit=200")
            .await
            .json()
            .await
            .expect("json");
        v["data"].as_array().expect("data").len()
    }
}

/// Reads a body as JSON, asserting the status first.
pub async fn json_of(r: Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// Asserts a problem+json response with `status` and `code`, returning the body.
pub async fn problem(r: Response, status: u16, code: &str) -> Value {
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let v = json_of(r, status).await;
    assert_eq!(ct, "application/problem+json", "body: {v}");
    assert_eq!(v["code"], code, "body: {v}");
    assert_eq!(v["status"], status);
    assert_eq!(v["type"], format!("/problems/{code}"));
    v
}

/// `POST /v1/auth/login`.
pub async fn login(app: &TestApp, email: &str, password: &str) -> Response {
    app.client
        .post(app.url("/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .expect("send")
}

/// Logs in and returns the access token.
pub async fn access_token(app: &TestApp, email: &str, password: &str) -> String {
    json_of(login(app, email, password).await, 200).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Polls `GET path` until `done(body)` holds (at most `secs`), returning the last body.
pub async fn wait_for(
    app: &TestApp,
    path: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let v: Value = app.get(path).await.json().await.expect("json");
        if done(&v) || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Sends one request over a raw connection to `app`, for what reqwest cannot send (a body
/// in pieces with pauses, chunked encoding): `head` is the request line and headers (no
/// blank line; `Host` and `Connection: close` are added), then each of `parts` is written,
/// with `after(i)` awaited after part `i`. Returns the answer's status and body text.
pub async fn raw_exchange<F, Fut>(
    app: &TestApp,
    head: &str,
    parts: &[&[u8]],
    after: F,
) -> (u16, String)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.addr.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "{head}\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        app.key
    );
    // The server may answer (413) and close before everything is written: not an error here.
    let mut open = sock.write_all(head.as_bytes()).await.is_ok();
    for (i, part) in parts.iter().enumerate() {
        if open {
            open = sock.write_all(part).await.is_ok();
        }
        after(i).await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        sock.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

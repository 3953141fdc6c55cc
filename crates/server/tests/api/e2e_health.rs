//! Health, readiness, metrics, OpenAPI, docs, security headers, CORS.

use crate::both;
use crate::helpers::{json_of, problem, spawn_app, spawn_with};
use reqwest::Method;
use switchboard_core::db::Backend;

both!(
    health_metrics_and_docs,
    readyz_names_database_failure_without_driver_text,
    metrics_are_not_served_publicly_by_default,
    metrics_token_is_required,
    metrics_listener_serves_only_metrics,
    cors_and_security_headers,
    every_metric_family_has_help,
    protocol_details_of_pages
);
both!(needs(Redis): readyz_reports_redis_outage);

async fn health_metrics_and_docs(b: Backend) {
    let app = spawn_with(b, |c| {
        c.metrics_token = Some("metrics-token-0123456789".to_owned().into())
    })
    .await;
    assert_eq!(
        json_of(
            app.client.get(app.url("/healthz")).send().await.unwrap(),
            200
        )
        .await["status"],
        "ok"
    );
    let ready = json_of(
        app.client.get(app.url("/readyz")).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(ready["checks"][0]["name"], "database");
    assert_eq!(ready["checks"][0]["detail"], b.name());

    let (id, _) = app.create_key(&["keys:read"]).await;
    app.get(&format!("/v1/api-keys/{id}")).await;
    app.get("/v1/api-keys/key_missing").await;
    let metrics = app.scrape().await;
    assert!(
        metrics.contains(
            "http_requests_total{method=\"GET\",route=\"/v1/api-keys/{id}\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/v1/api-keys/{id}\",status=\"404\""));
    assert!(metrics.contains("http_request_duration_seconds_bucket{"));
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "process metrics"
    );

    // Queue metrics: depth per state, enqueued, completed, enqueue→start latency.
    for _ in 0..2 {
        json_of(
            app.post("/v1/jobs", &serde_json::json!({"queue": "m", "kind": "k"}))
                .await,
            201,
        )
        .await;
    }
    let c = json_of(
        app.post("/v1/queues/m/claim", &serde_json::json!({"worker": "w"}))
            .await,
        200,
    )
    .await;
    let id = c["jobs"][0]["id"].as_str().unwrap();
    let token = c["jobs"][0]["lease_token"].as_str().unwrap();
    let body = serde_json::json!({"lease_token": token});
    json_of(
        app.post(&format!("/v1/jobs/{id}/complete"), &body).await,
        200,
    )
    .await;
    let metrics = app.scrape().await;
    let me = json_of(app.get("/v1/me").await, 200).await;
    let project = format!("project=\"{}\"", me["project_id"].as_str().unwrap());
    let line = |prefix: &str, extra: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(prefix)
                    && l.contains("queue=\"m\"")
                    && l.contains(&project)
                    && l.contains(extra)
            })
            .map(str::to_owned)
    };
    let depth = line("queue_jobs{", "state=\"available\"");
    assert!(depth.is_some_and(|l| l.ends_with(" 1")), "{metrics}");
    assert!(
        line("queue_jobs_enqueued_total", "").is_some_and(|l| l.ends_with(" 2")),
        "{metrics}"
    );
    assert!(
        line("queue_jobs_completed_total", "").is_some_and(|l| l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        line("queue_enqueue_to_start_seconds_count", "").is_some_and(|l| l.ends_with(" 1")),
        "{metrics}"
    );

    let spec = json_of(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/api-keys",
        "/v1/api-keys/{id}",
        "/v1/users",
        "/v1/projects",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/audit-events",
        "/v1/audit-events/verify",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the spec"
        );
    }
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    // Every schema a path refers to is in the document.
    let text = spec.to_string();
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
    for name in [
        "Job",
        "JobSpec",
        "QueueInfo",
        "ClaimOut",
        "ScheduleOut",
        "Backoff",
    ] {
        assert!(schemas.contains_key(name), "{name} schema missing");
    }
    let docs = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));
    let js = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200, "assets are embedded in the binary");
}

async fn readyz_reports_redis_outage(b: Backend) {
    // A Redis of our own that we can stop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    let url = format!("redis://127.0.0.1:{port}");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let app = spawn_with(b, |c| c.redis_url = Some(url)).await;
    let ready = json_of(
        app.client.get(app.url("/readyz")).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(ready["checks"][1]["name"], "redis");
    assert_eq!(ready["checks"][1]["ok"], true);
    redis.kill().unwrap();
    redis.wait().unwrap();
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    let ready = json_of(r, 503).await;
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(ready["checks"][0]["ok"], true);
    assert_eq!(ready["checks"][1]["name"], "redis");
    assert_eq!(ready["checks"][1]["ok"], false);
    let detail = ready["checks"][1]["detail"].as_str().unwrap();
    assert!(
        ["unreachable", "timed out"].contains(&detail),
        "a generic detail, not the driver's text: {detail}"
    );
    // The API keeps answering: rate limiting fails open while Redis is away.
    assert_eq!(app.get("/v1/me").await.status(), 200);
}

async fn cors_and_security_headers(b: Backend) {
    let app = spawn_with(b, |c| {
        c.cors_origins = vec!["https://app.example.com".into()]
    })
    .await;
    let r = app
        .client
        .request(Method::OPTIONS, app.url("/v1/api-keys"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let r = app
        .client
        .request(Method::OPTIONS, app.url("/v1/api-keys"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = app
        .req(Method::GET, "/v1/me")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
}

async fn readyz_names_database_failure_without_driver_text(b: Backend) {
    let app = spawn_app(b).await;
    app.state.db.close().await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    let ready = json_of(r, 503).await;
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(
        ready["checks"][0],
        serde_json::json!({"name": "database", "ok": false, "detail": "unreachable"})
    );
}

const TOKEN: &str = "metrics-token-0123456789";

async fn metrics_are_not_served_publicly_by_default(b: Backend) {
    let app = spawn_app(b).await;
    // Not even to an API key with every scope.
    let r = app.req(Method::GET, "/metrics").send().await.unwrap();
    let p = problem(r, 404, "metrics-disabled").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("SWITCHBOARD_METRICS_TOKEN"), "{detail}");
    assert!(detail.contains("SWITCHBOARD_METRICS_LISTEN"), "{detail}");
    assert!(app.metrics_addr.is_none());
}

async fn metrics_token_is_required(b: Backend) {
    let app = spawn_with(b, |c| c.metrics_token = Some(TOKEN.to_owned().into())).await;
    let get = |token: Option<&str>| {
        let mut r = app.client.get(app.url("/metrics"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    problem(get(None).await.unwrap(), 401, "unauthorized").await;
    problem(
        get(Some("metrics-token-wrong")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    problem(get(Some(&app.key)).await.unwrap(), 401, "unauthorized").await;
    let r = get(Some(TOKEN)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("process_resident_memory_bytes"));
}

async fn metrics_listener_serves_only_metrics(b: Backend) {
    let app = spawn_with(b, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let own = app.metrics_addr.clone().expect("metrics listener");
    let r = app
        .client
        .get(format!("{own}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("process_resident_memory_bytes"));
    let r = app
        .client
        .get(format!("{own}/v1/me"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "nothing but /metrics there");
    let r = app
        .client
        .get(format!("{own}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The public listener points there.
    let p = problem(app.get("/metrics").await, 404, "metrics-disabled").await;
    assert!(
        p["detail"].as_str().unwrap().contains("metrics listener"),
        "{p}"
    );

    // With a token, the metrics listener asks for it too.
    let app = spawn_with(b, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_token = Some(TOKEN.to_owned().into());
    })
    .await;
    let own = app.metrics_addr.clone().expect("metrics listener");
    let r = app
        .client
        .get(format!("{own}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(format!("{own}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn every_metric_family_has_help(b: Backend) {
    let app = spawn_with(b, |c| {
        c.metrics_token = Some("metrics-token-0123456789".to_owned().into())
    })
    .await;
    // Enqueue, claim, complete one job and fail another, so the queue families exist.
    for _ in 0..2 {
        json_of(
            app.post("/v1/jobs", &serde_json::json!({"queue": "h", "kind": "k"}))
                .await,
            201,
        )
        .await;
    }
    let c = json_of(
        app.post(
            "/v1/queues/h/claim",
            &serde_json::json!({"worker": "w", "max": 2}),
        )
        .await,
        200,
    )
    .await;
    let jobs = c["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let (a, b_) = (&jobs[0], &jobs[1]);
    let body = |j: &serde_json::Value| serde_json::json!({"lease_token": j["lease_token"]});
    json_of(
        app.post(
            &format!("/v1/jobs/{}/complete", a["id"].as_str().unwrap()),
            &body(a),
        )
        .await,
        200,
    )
    .await;
    let mut fail = body(b_);
    fail["error"] = "boom".into();
    json_of(
        app.post(
            &format!("/v1/jobs/{}/fail", b_["id"].as_str().unwrap()),
            &fail,
        )
        .await,
        200,
    )
    .await;
    let text = app.scrape().await;
    let mut families = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        // Histogram and summary series belong to the family without their suffix.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| text.contains(&format!("# TYPE {f} ")))
            })
            .unwrap_or(name);
        families.insert(family.to_owned());
    }
    for f in [
        "http_requests_total",
        "http_request_duration_seconds",
        "queue_jobs",
        "queue_jobs_enqueued_total",
        "queue_jobs_completed_total",
        "queue_jobs_retried_total",
    ] {
        assert!(families.contains(f), "{f} missing from the scrape:\n{text}");
    }
    for f in &families {
        let help = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# HELP {f} ")));
        assert!(
            help.is_some_and(|h| !h.trim().is_empty()),
            "no `# HELP` for {f}:\n{text}"
        );
    }
}

async fn protocol_details_of_pages(b: Backend) {
    let app = spawn_app(b).await;
    // Every HTML page says its charset; every response carries a permissions policy.
    for path in ["/docs/", "/dashboard/login"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            r.headers()["content-type"],
            "text/html; charset=utf-8",
            "{path}"
        );
        let policy = r.headers()["permissions-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        for feature in ["camera=()", "microphone=()", "geolocation=()", "payment=()"] {
            assert!(policy.contains(feature), "{path}: {policy}");
        }
    }
    let r = app.get("/v1/me").await;
    assert!(r.headers().contains_key("permissions-policy"));
    // Swagger UI never calls the online validator (our CSP blocks it anyway).
    let js = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("\"validatorUrl\": \"none\""), "{js}");
}

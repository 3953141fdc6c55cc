//! Every kind of bad input gets the right problem+json, and a failed request writes nothing.

use crate::both;
use crate::helpers::{problem, spawn_app, spawn_with};
use reqwest::Method;
use serde_json::json;
use switchboard_core::db::Backend;

both!(
    errors_are_problem_documents,
    failed_requests_write_nothing,
    body_too_large_is_413,
    messages_name_the_field_and_the_rule
);

async fn errors_are_problem_documents(b: Backend) {
    let app = spawn_app(b).await;

    let v = problem(app.get("/v1/nothing-here").await, 404, "not-found").await;
    assert!(v["detail"].as_str().unwrap().contains("/v1/nothing-here"));

    problem(
        app.req(Method::PUT, "/v1/api-keys").send().await.unwrap(),
        405,
        "method-not-allowed",
    )
    .await;

    let r = app
        .req(Method::POST, "/v1/api-keys")
        .header("content-type", "application/json")
        .body("{\"name\": \"x\",\n \"scopes\": [")
        .send()
        .await
        .unwrap();
    let v = problem(r, 400, "malformed-json").await;
    assert!(
        v["detail"].as_str().unwrap().contains("line 2 column"),
        "{v}"
    );

    let r = app
        .post("/v1/api-keys", &json!({"name": 7, "scopes": ["*"]}))
        .await;
    let v = problem(r, 422, "validation-failed").await;
    assert_eq!(v["errors"][0]["field"], "name");

    let r = app
        .post(
            "/v1/api-keys",
            &json!({"name": "ok", "scopes": ["keys:read", "nope"]}),
        )
        .await;
    let v = problem(r, 422, "validation-failed").await;
    assert_eq!(v["errors"][0]["field"], "scopes");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("nope"));

    let r = app
        .req(Method::POST, "/v1/api-keys")
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    problem(r, 415, "unsupported-media-type").await;

    let r = app
        .client
        .get(app.url("/v1/api-keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"switchboard\""
    );
    problem(r, 401, "unauthorized").await;
    let r = app
        .req_as(Method::GET, "/v1/api-keys", "sb_not_a_real_key_0000000000")
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthorized").await;
    let r = app
        .req_as(Method::GET, "/v1/api-keys", "a.b.c")
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthorized").await;

    let (_, audit_only) = app.create_key(&["audit:read"]).await;
    let r = app
        .req_as(Method::GET, "/v1/api-keys", &audit_only)
        .send()
        .await
        .unwrap();
    let v = problem(r, 403, "forbidden").await;
    assert!(v["detail"].as_str().unwrap().contains("keys:read"));

    let r = app.get("/v1/api-keys?limit=abc").await;
    problem(r, 400, "invalid-query").await;
    let r = app.get("/v1/api-keys?limit=0").await;
    problem(r, 422, "validation-failed").await;
}

async fn failed_requests_write_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let events = app.audit_count().await;
    let keys = app
        .get("/v1/api-keys")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["data"]
        .as_array()
        .unwrap()
        .len();
    for body in [
        json!({"name": "", "scopes": ["*"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["*"], "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"name": "x", "scopes": ["*"], "surprise": true}),
    ] {
        let r = app.post("/v1/api-keys", &body).await;
        assert_eq!(r.status(), 422, "{body}");
    }
    let r = app
        .post(
            "/v1/users",
            &json!({"email": "bad", "role": "viewer", "password": "short"}),
        )
        .await;
    let v = problem(r, 422, "validation-failed").await;
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password"]);

    assert_eq!(app.audit_count().await, events);
    let after = app
        .get("/v1/api-keys")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, keys);
}

async fn body_too_large_is_413(b: Backend) {
    let app = spawn_with(b, |c| c.body_limit = 1024).await;
    let big = "x".repeat(4096);
    let r = app
        .post("/v1/api-keys", &json!({"name": big, "scopes": ["*"]}))
        .await;
    problem(r, 413, "body-too-large").await;
    let r = app
        .req(Method::POST, "/v1/api-keys")
        .header("idempotency-key", "big-1")
        .json(&json!({"name": big, "scopes": ["*"]}))
        .send()
        .await
        .unwrap();
    problem(r, 413, "body-too-large").await;
}

async fn messages_name_the_field_and_the_rule(b: Backend) {
    let app = spawn_with(b, |c| c.body_limit = 2048).await;
    let field_error = |v: &serde_json::Value, field: &str| {
        v["errors"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["field"] == field))
            .and_then(|e| e["message"].as_str())
            .unwrap_or_else(|| panic!("no error for `{field}`: {v}"))
            .to_owned()
    };
    // Cron: the field and its range, not the parser's internals.
    let r = app
        .post(
            "/v1/schedules",
            &json!({"name": "s", "cron": "61 * * * *", "job": {"queue": "q", "kind": "k"}}),
        )
        .await;
    let v = problem(r, 422, "validation-failed").await;
    let m = field_error(&v, "cron");
    assert!(m.starts_with("minute must be 0–59"), "{m}");
    // A missing field is named.
    let r = app.post("/v1/jobs", &json!({"kind": "k"})).await;
    let v = problem(r, 422, "validation-failed").await;
    assert_eq!(field_error(&v, "queue"), "is required");
    let r = app
        .post("/v1/jobs/batch", &json!({"jobs": [{"queue": "q"}]}))
        .await;
    let v = problem(r, 422, "validation-failed").await;
    assert_eq!(field_error(&v, "jobs[0].kind"), "is required");
    // Types in the API's words.
    let r = app
        .post(
            "/v1/jobs",
            &json!({"queue": "q", "kind": "k", "max_attempts": "x"}),
        )
        .await;
    let v = problem(r, 422, "validation-failed").await;
    assert_eq!(field_error(&v, "max_attempts"), "must be an integer");
    let r = app.get("/v1/jobs?limit=abc").await;
    let v = problem(r, 400, "invalid-query").await;
    assert_eq!(
        v["detail"], "query parameter `limit` must be an integer",
        "{v}"
    );
    // 413 states the limit.
    let r = app
        .post(
            "/v1/jobs",
            &json!({"queue": "q", "kind": "k", "payload": "x".repeat(4096)}),
        )
        .await;
    let v = problem(r, 413, "body-too-large").await;
    assert!(v["detail"].as_str().unwrap().contains("2048 bytes"), "{v}");
    // Valid JSON nested 200 deep: a rule about depth, not a syntax error.
    let deep = format!(
        r#"{{"queue": "q", "kind": "k", "payload": {}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let r = app
        .req(Method::POST, "/v1/jobs")
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    let v = problem(r, 422, "validation-failed").await;
    assert!(
        field_error(&v, "payload").contains("deeper than 127 levels"),
        "{v}"
    );
}

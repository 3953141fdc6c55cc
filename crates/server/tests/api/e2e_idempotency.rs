//! Idempotency-Key with Stripe's semantics.

use crate::both;
use crate::helpers::{json_of, problem, spawn_app};
use reqwest::Method;
use serde_json::json;
use switchboard_core::db::Backend;
use switchboard_core::{on_db, time};

both!(replays_conflicts_and_mismatches);

async fn replays_conflicts_and_mismatches(b: Backend) {
    let app = spawn_app(b).await;
    let body = json!({"name": "once", "scopes": ["keys:read"]});
    let send = |key: &'static str, body: serde_json::Value| {
        app.req(Method::POST, "/v1/api-keys")
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send("k-1", body.clone()).await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_of(first, 201).await;

    let again = send("k-1", body.clone()).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again = json_of(again, 201).await;
    assert_eq!(again, first, "the first response, secret included");
    let keys = json_of(app.get("/v1/api-keys").await, 200).await;
    let named: Vec<_> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "once")
        .collect();
    assert_eq!(named.len(), 1, "created once");

    problem(
        send("k-1", json!({"name": "other", "scopes": ["keys:read"]}))
            .await
            .unwrap(),
        422,
        "idempotency-key-reused",
    )
    .await;

    // A failed request keeps nothing: the same key may then succeed.
    problem(
        send("k-2", json!({"name": "", "scopes": ["keys:read"]}))
            .await
            .unwrap(),
        422,
        "validation-failed",
    )
    .await;
    let ok = send("k-2", json!({"name": "", "scopes": ["keys:read"]}))
        .await
        .unwrap();
    assert_eq!(
        ok.status(),
        422,
        "still invalid, evaluated again rather than replayed"
    );
    assert!(ok.headers().get("idempotent-replayed").is_none());

    // A request still in flight on another node holds the key.
    let me = json_of(app.get("/v1/me").await, 200).await;
    let project = me["project_id"].as_str().unwrap().to_owned();
    let mut tx = app.state.db.begin().await.unwrap();
    on_db!(tx.ex(), c => sqlx::query(
        "INSERT INTO idempotency_keys (project_id, idem_key, request_hash, state, created_at) VALUES ($1, 'k-3', 'x', 'running', $2)")
        .bind(&project).bind(time::to_db(time::now())).execute(c).await.map(|_| ())).unwrap();
    tx.commit().await.unwrap();
    problem(
        send("k-3", body.clone()).await.unwrap(),
        409,
        "idempotency-key-in-use",
    )
    .await;

    // Keys are per project: another project may use the same key string.
    let created = json_of(
        app.post("/v1/projects", &json!({"name": "other"})).await,
        201,
    )
    .await;
    let other_key = created["api_key"]["secret"].as_str().unwrap();
    let r = app
        .req_as(Method::POST, "/v1/api-keys", other_key)
        .header("idempotency-key", "k-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());

    problem(
        app.req(Method::POST, "/v1/api-keys")
            .header("idempotency-key", "")
            .json(&body)
            .send()
            .await
            .unwrap(),
        400,
        "bad-request",
    )
    .await;
}

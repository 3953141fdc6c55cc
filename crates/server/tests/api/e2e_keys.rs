//! API keys: shown once, stored hashed, scoped, last use recorded, revocation immediate.

use crate::both;
use crate::helpers::{json_of, problem, spawn_app};
use reqwest::Method;
use serde_json::json;
use sqlx::Row;
use switchboard_core::db::Backend;
use switchboard_core::on_db;

both!(key_lifecycle, keys_cannot_escalate, key_pagination);

async fn key_lifecycle(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .post(
            "/v1/api-keys",
            &json!({"name": "reporting", "scopes": ["audit:read", "keys:read"]}),
        )
        .await;
    let created = json_of(r, 201).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sb_") && secret.len() > 40);
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));

    // Shown once: neither the list nor the detail carries the secret…
    let one = json_of(app.get(&format!("/v1/api-keys/{id}")).await, 200).await;
    assert!(one.get("secret").is_none());
    assert_eq!(one["last_used_at"], serde_json::Value::Null);
    let listed = app.get("/v1/api-keys").await.text().await.unwrap();
    assert!(listed.contains(&id) && !listed.contains(&secret));
    // …and the database holds only its digest.
    let mut conn = app.state.db.read().await.unwrap();
    let stored: String = on_db!(conn.ex(), c => sqlx::query("SELECT secret_hash FROM api_keys WHERE id = $1")
        .bind(&id).fetch_one(c).await.unwrap().try_get("secret_hash").unwrap());
    drop(conn);
    assert_eq!(stored, switchboard_core::secret::digest(&secret));

    // The key works within its scopes and records its use.
    let me = json_of(
        app.req_as(Method::GET, "/v1/me", &secret)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(me["actor"]["id"], id.as_str());
    let one = json_of(app.get(&format!("/v1/api-keys/{id}")).await, 200).await;
    assert!(one["last_used_at"].is_string(), "{one}");
    let r = app
        .req_as(Method::POST, "/v1/api-keys", &secret)
        .json(&json!({"name": "x", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;

    // Revocation takes effect on the very next request.
    let revoked = json_of(
        app.req(Method::DELETE, &format!("/v1/api-keys/{id}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(revoked["revoked_at"].is_string());
    let r = app
        .req_as(Method::GET, "/v1/me", &secret)
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthorized").await;
    problem(
        app.get("/v1/api-keys/key_01jqzzzzzzzzzzzzzzzzzzzzzz").await,
        404,
        "not-found",
    )
    .await;
}

async fn keys_cannot_escalate(b: Backend) {
    let app = spawn_app(b).await;
    let (_, writer) = app.create_key(&["keys:write"]).await;
    let r = app
        .req_as(Method::POST, "/v1/api-keys", &writer)
        .json(&json!({"name": "x", "scopes": ["*"]}))
        .send()
        .await
        .unwrap();
    let v = problem(r, 422, "validation-failed").await;
    assert_eq!(v["errors"][0]["field"], "scopes");
    let r = app
        .req_as(Method::POST, "/v1/api-keys", &writer)
        .json(&json!({"name": "x", "scopes": ["audit:read"]}))
        .send()
        .await
        .unwrap();
    problem(r, 422, "validation-failed").await;
    let r = app
        .req_as(Method::POST, "/v1/api-keys", &writer)
        .json(&json!({"name": "x", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // An expiring key stops working when it expires.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let r = app
        .post(
            "/v1/api-keys",
            &json!({"name": "brief", "scopes": ["keys:read"], "expires_at": soon.to_string()}),
        )
        .await;
    let brief = json_of(r, 201).await["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        app.req_as(Method::GET, "/v1/me", &brief)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let status = app
            .req_as(Method::GET, "/v1/me", &brief)
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key still works 15 s after it expired: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(jiff::Timestamp::now() >= soon, "refused before it expired");
}

async fn key_pagination(b: Backend) {
    let app = spawn_app(b).await;
    for _ in 0..4 {
        app.create_key(&["keys:read"]).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/api-keys?limit=2&after={a}"),
            None => "/v1/api-keys?limit=2".to_owned(),
        };
        let page = json_of(app.get(&path).await, 200).await;
        for k in page["data"].as_array().unwrap() {
            seen.push(k["id"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        after = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 5, "bootstrap key + 4");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "ordered, no duplicates across pages");
}

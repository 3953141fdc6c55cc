//! Idempotency-Key with Stripe's semantics.

use crate::both;
use crate::helpers::{
    access_token, json_of, problem, spawn_app, TestApp, OWNER_EMAIL, OWNER_PASSWORD,
};
use reqwest::Method;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use switchboard_core::db::Backend;
use switchboard_core::{on_db, time};

both!(
    replays_conflicts_and_mismatches,
    replays_are_authorized_and_hold_no_secrets,
    every_operation_declares_the_scope_its_handler_enforces
);

async fn replays_conflicts_and_mismatches(b: Backend) {
    let app = spawn_app(b).await;
    let body = json!({"email": "once@example.com", "role": "viewer", "password": "long-enough-1"});
    let send = |key: &'static str, body: serde_json::Value| {
        app.req(Method::POST, "/v1/users")
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
    assert_eq!(again, first, "the first response");
    let users = json_of(app.get("/v1/users").await, 200).await;
    let named: Vec<_> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["email"] == "once@example.com")
        .collect();
    assert_eq!(named.len(), 1, "created once");

    problem(
        send(
            "k-1",
            json!({"email": "other@example.com", "role": "viewer", "password": "long-enough-1"}),
        )
        .await
        .unwrap(),
        422,
        "idempotency-key-reused",
    )
    .await;

    // A failed request keeps nothing: the same key may then succeed.
    let invalid = json!({"email": "", "role": "viewer", "password": "long-enough-1"});
    problem(
        send("k-2", invalid.clone()).await.unwrap(),
        422,
        "validation-failed",
    )
    .await;
    let ok = send("k-2", invalid).await.unwrap();
    assert_eq!(
        ok.status(),
        422,
        "still invalid, evaluated again rather than replayed"
    );
    assert!(ok.headers().get("idempotent-replayed").is_none());

    // A request still in flight on another node holds the key.
    let me = json_of(app.get("/v1/me").await, 200).await;
    let project = me["project_id"].as_str().unwrap().to_owned();
    let principal = format!("api_key:{}", me["actor"]["id"].as_str().unwrap());
    let mut tx = app.state.db.begin().await.unwrap();
    on_db!(tx.ex(), c => sqlx::query(
        "INSERT INTO idempotency_keys (project_id, principal, idem_key, request_hash, state, created_at) \
         VALUES ($1, $2, 'k-3', 'x', 'running', $3)")
        .bind(&project).bind(&principal).bind(time::to_db(time::now())).execute(c).await.map(|_| ())).unwrap();
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
        .req_as(Method::POST, "/v1/users", other_key)
        .header("idempotency-key", "k-1")
        .json(&json!({"email": "b@example.com", "role": "viewer", "password": "long-enough-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());

    problem(
        app.req(Method::POST, "/v1/users")
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

/// Every stored idempotency record's response body.
async fn stored_bodies(app: &TestApp) -> Vec<String> {
    let mut conn = app.state.db.read().await.unwrap();
    let rows: Vec<(Option<Vec<u8>>,)> = on_db!(conn.ex(), c => sqlx::query_as(
        "SELECT response_body FROM idempotency_keys")
        .fetch_all(c).await.unwrap());
    rows.into_iter()
        .filter_map(|(b,)| b)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

async fn replays_are_authorized_and_hold_no_secrets(b: Backend) {
    let app = spawn_app(b).await;
    let body = json!({"name": "deploy", "scopes": ["*"]});
    let post_key = |token: &str| {
        app.req_as(Method::POST, "/v1/api-keys", token)
            .header("idempotency-key", "same")
            .json(&body)
            .send()
    };
    let first = json_of(post_key(&app.key).await.unwrap(), 201).await;
    let secret = first["secret"].as_str().unwrap().to_owned();
    let id = first["id"].as_str().unwrap().to_owned();
    let bodies = stored_bodies(&app).await;
    assert_eq!(bodies.len(), 1);
    assert!(!bodies[0].contains(&secret), "secret stored: {}", bodies[0]);

    // The same credential's replay names the key instead of repeating its secret.
    let r = post_key(&app.key).await.unwrap();
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let v = problem(r, 409, "secret-not-replayable").await;
    assert_eq!(v["created"], json!([{"type": "api_key", "id": id}]));
    assert!(!v.to_string().contains(&secret));

    // Other credentials of the project never see it: a read-only key, a viewer.
    let (_, reader) = app.create_key(&["keys:read"]).await;
    problem(post_key(&reader).await.unwrap(), 403, "forbidden").await;
    json_of(
        app.post(
            "/v1/users",
            &json!({"email": "viewer@example.com", "role": "viewer", "password": "long-enough-1"}),
        )
        .await,
        201,
    )
    .await;
    let viewer = access_token(&app, "viewer@example.com", "long-enough-1").await;
    problem(post_key(&viewer).await.unwrap(), 403, "forbidden").await;
    let keys = json_of(app.get("/v1/api-keys").await, 200).await;
    let deploys = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "deploy")
        .count();
    assert_eq!(deploys, 1);

    // A replay checks the scope again: a user demoted since the first request gets 403.
    let admin = json_of(
        app.post(
            "/v1/users",
            &json!({"email": "admin@example.com", "role": "admin", "password": "long-enough-1"}),
        )
        .await,
        201,
    )
    .await;
    let admin_jwt = access_token(&app, "admin@example.com", "long-enough-1").await;
    let create_user = || {
        app.req_as(Method::POST, "/v1/users", &admin_jwt)
            .header("idempotency-key", "u-1")
            .json(
                &json!({"email": "new@example.com", "role": "viewer", "password": "long-enough-1"}),
            )
            .send()
    };
    json_of(create_user().await.unwrap(), 201).await;
    let r = create_user().await.unwrap();
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    json_of(r, 201).await;
    let r = app
        .req(
            Method::PATCH,
            &format!("/v1/users/{}", admin["id"].as_str().unwrap()),
        )
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    json_of(r, 200).await;
    problem(create_user().await.unwrap(), 403, "forbidden").await;

    // A new project's first key is not kept either; the replay names both.
    let send = || {
        app.req(Method::POST, "/v1/projects")
            .header("idempotency-key", "p-1")
            .json(&json!({"name": "P"}))
            .send()
    };
    let created = json_of(send().await.unwrap(), 201).await;
    let project_secret = created["api_key"]["secret"].as_str().unwrap().to_owned();
    assert!(stored_bodies(&app)
        .await
        .iter()
        .all(|b| !b.contains(&project_secret) && !b.contains(&secret)));
    let v = problem(send().await.unwrap(), 409, "secret-not-replayable").await;
    assert_eq!(
        v["created"],
        json!([
            {"type": "project", "id": created["project"]["id"]},
            {"type": "api_key", "id": created["api_key"]["id"]},
        ])
    );

    // Login takes no Idempotency-Key: the same key twice logs in twice.
    let mut refresh = Vec::new();
    for _ in 0..2 {
        let r = app
            .client
            .post(app.url("/v1/auth/login"))
            .header("idempotency-key", "login-1")
            .json(&json!({"email": OWNER_EMAIL, "password": OWNER_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("idempotent-replayed").is_none());
        refresh.push(json_of(r, 200).await["refresh_token"].clone());
    }
    assert_ne!(refresh[0], refresh[1]);
}

/// Walks every operation of the OpenAPI document: each protected one declares one scope (or
/// none, meaning any credential), and its handler answers 403 to a key holding every other
/// scope, and not 401/403 to a key holding just that one. The idempotency layer authorises
/// replays from these declarations, so they must be what the handlers enforce.
async fn every_operation_declares_the_scope_its_handler_enforces(b: Backend) {
    let app = spawn_app(b).await;
    let spec = json_of(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let mut ops: Vec<(String, String, Option<String>)> = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                continue;
            }
            let public = !template.starts_with("/v1/") || template.starts_with("/v1/auth/");
            let bearer = op["security"]
                .as_array()
                .and_then(|reqs| reqs.iter().find_map(|r| r["bearer"].as_array()));
            if public {
                assert!(bearer.is_none(), "{method} {template} is public");
                continue;
            }
            let bearer = bearer
                .unwrap_or_else(|| panic!("{method} {template} declares no bearer requirement"));
            assert!(bearer.len() <= 1, "{method} {template}: one scope at most");
            let scope = bearer.first().map(|s| s.as_str().unwrap().to_owned());
            ops.push((method.clone(), template.clone(), scope));
        }
    }
    let mut all: BTreeSet<String> = BTreeSet::new();
    for (_, _, scope) in &ops {
        if let Some(s) = scope {
            all.insert(s.clone());
            if let Some(res) = s.strip_suffix(":write") {
                all.insert(format!("{res}:read"));
            }
        }
    }
    let mut keys: HashMap<Vec<String>, String> = HashMap::new();
    let mut key_for = async |scopes: Vec<String>| -> String {
        if let Some(k) = keys.get(&scopes) {
            return k.clone();
        }
        let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let (_, secret) = app.create_key(&refs).await;
        keys.insert(scopes, secret.clone());
        secret
    };
    let mut checked = 0;
    for (method, template, scope) in &ops {
        let path = template
            .replace("{id}", "x_01jqzzzzzzzzzzzzzzzzzzzzzz")
            .replace("{name}", "walk-queue");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let send = |token: String| {
            let mut req = app.req_as(m.clone(), &path, &token);
            if matches!(method.as_str(), "post" | "patch" | "put") {
                req = req.json(&json!({}));
            }
            req.send()
        };
        let any = key_for(vec!["audit:read".to_owned()]).await;
        let Some(scope) = scope else {
            let r = send(any).await.unwrap();
            assert_eq!(r.status(), 200, "{method} {template} with any key");
            continue;
        };
        let sibling = scope.replace(":read", ":write");
        let without: Vec<String> = all
            .iter()
            .filter(|s| *s != scope && **s != sibling)
            .cloned()
            .collect();
        let r = send(key_for(without).await).await.unwrap();
        problem(r, 403, "forbidden").await;
        let r = send(key_for(vec![scope.clone()]).await).await.unwrap();
        let status = r.status().as_u16();
        assert!(
            status != 401 && status != 403,
            "{method} {template} with `{scope}`: {status} {}",
            r.text().await.unwrap()
        );
        checked += 1;
    }
    assert!(checked >= 35, "checked only {checked} operations");
}

//! API keys: shown once, stored hashed, scoped, last use recorded, revocation immediate.

use crate::both;
use crate::helpers::{json_of, problem, spawn_app};
use reqwest::Method;
use serde_json::json;
use sqlx::Row;
use switchboard_core::db::Backend;
use switchboard_core::on_db;

both!(
    key_lifecycle,
    keys_cannot_escalate,
    key_pagination,
    migration_0008_upgrades_existing_data
);

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

/// Keys from before roles existed become `admin` keys (no power over owners) unless the audit
/// trail shows an owner-level origin: bootstrap or the CLI, a new project's first key, or a
/// user who is an active owner. Users keep their rows and the rows that refer to them while
/// their e-mails become unique per project (SQLite rebuilds the table), and foreign keys are
/// enforced again afterwards.
async fn migration_0008_upgrades_existing_data(b: Backend) {
    use switchboard_core::db::Db;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(b, dir.path()).await;
    let db = Db::connect(&config.database_url, 5).await.unwrap();
    db.migrate_to(7).await.unwrap();
    let statements = [
        "INSERT INTO projects (id, name, created_at) VALUES ('proj_p', 'p', 1), ('proj_q', 'q', 1)",
        "INSERT INTO users (id, project_id, email, name, role, password_hash, created_at) VALUES \
         ('user_o', 'proj_p', 'o@x', '', 'owner', 'x', 1), ('user_a', 'proj_p', 'a@x', '', 'admin', 'x', 1), \
         ('user_q', 'proj_q', 'q@x', '', 'owner', 'x', 1)",
        "INSERT INTO api_keys (id, project_id, name, prefix, secret_hash, scopes, created_at) VALUES \
         ('key_boot', 'proj_p', 'b', 'sb_', 'h1', '*', 1), ('key_byowner', 'proj_p', 'o', 'sb_', 'h2', '*', 1), \
         ('key_byadmin', 'proj_p', 'a', 'sb_', 'h3', '*', 1), ('key_bykey', 'proj_p', 'k', 'sb_', 'h4', '*', 1), \
         ('key_initial', 'proj_p', 'i', 'sb_', 'h5', '*', 1), ('key_unknown', 'proj_p', 'u', 'sb_', 'h6', '*', 1)",
        "INSERT INTO audit_events (id, project_id, seq, actor_type, actor_id, action, entity_type, entity_id, created_at, prev_hash, hash) VALUES \
         ('audit_1', 'proj_p', 1, 'system', 'bootstrap', 'api_key.create', 'api_key', 'key_boot', 1, '', ''), \
         ('audit_2', 'proj_p', 2, 'user', 'user_o', 'api_key.create', 'api_key', 'key_byowner', 1, '', ''), \
         ('audit_3', 'proj_p', 3, 'user', 'user_a', 'api_key.create', 'api_key', 'key_byadmin', 1, '', ''), \
         ('audit_4', 'proj_p', 4, 'api_key', 'key_boot', 'api_key.create', 'api_key', 'key_bykey', 1, '', ''), \
         ('audit_5', 'proj_p', 5, 'user', 'user_q', 'api_key.create', 'api_key', 'key_initial', 1, '', '')",
        "INSERT INTO sessions (token_hash, user_id, project_id, created_at, expires_at) \
         VALUES ('s1', 'user_o', 'proj_p', 1, 2)",
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, project_id, created_at, expires_at) \
         VALUES ('r1', 'f1', 'user_a', 'proj_p', 1, 2)",
    ];
    let mut tx = db.begin().await.unwrap();
    for sql in statements {
        on_db!(tx.ex(), c => sqlx::query(sql).execute(c).await.map(|_| ())).unwrap();
    }
    tx.commit().await.unwrap();
    db.migrate().await.unwrap();
    let mut conn = db.read().await.unwrap();
    let mut roles: Vec<(String, String)> = on_db!(conn.ex(), c => sqlx::query_as("SELECT id, role FROM api_keys ORDER BY id")
        .fetch_all(c).await.unwrap());
    roles.sort();
    let expected = [
        ("key_boot", "owner"),
        ("key_byadmin", "admin"),
        ("key_bykey", "admin"),
        ("key_byowner", "owner"),
        ("key_initial", "owner"),
        ("key_unknown", "admin"),
    ];
    let got: Vec<(&str, &str)> = roles
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(got, expected);
    let users: Vec<(String, String)> = on_db!(conn.ex(), c => sqlx::query_as(
        "SELECT u.id, s.token_hash FROM users u JOIN sessions s ON s.user_id = u.id")
        .fetch_all(c).await.unwrap());
    assert_eq!(users, [("user_o".to_owned(), "s1".to_owned())]);
    drop(conn);
    let mut tx = db.begin().await.unwrap();
    // The same e-mail in another project is fine now; twice in one project is not.
    on_db!(tx.ex(), c => sqlx::query("INSERT INTO users (id, project_id, email, name, role, password_hash, created_at) \
        VALUES ('user_o2', 'proj_q', 'o@x', '', 'owner', 'x', 1)").execute(c).await.map(|_| ())).unwrap();
    let dup = on_db!(tx.ex(), c => sqlx::query("INSERT INTO users (id, project_id, email, name, role, password_hash, created_at) \
        VALUES ('user_o3', 'proj_q', 'o@x', '', 'owner', 'x', 1)").execute(c).await.map(|_| ()));
    assert!(switchboard_core::db::is_unique_violation(&dup.unwrap_err()));
    drop(tx);
    // Foreign keys are enforced again.
    let mut tx = db.begin().await.unwrap();
    let orphan = on_db!(tx.ex(), c => sqlx::query("INSERT INTO sessions (token_hash, user_id, project_id, created_at, expires_at) \
        VALUES ('s2', 'user_nobody', 'proj_p', 1, 2)").execute(c).await.map(|_| ()));
    assert!(orphan.is_err(), "a session of no user was accepted");
    drop(tx);
    db.close().await;
}

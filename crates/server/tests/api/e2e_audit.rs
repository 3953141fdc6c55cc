//! The audit trail: who/what/when/where for every change, in the same transaction,
//! filterable, paginated, and a hash chain that reveals tampering.

use crate::both;
use crate::helpers::{json_of, spawn_app};
use reqwest::Method;
use serde_json::json;
use switchboard_core::db::Backend;
use switchboard_core::on_db;

both!(
    changes_are_audited_with_context,
    audit_write_failure_rolls_back_the_change,
    chain_verification_finds_tampering,
    chain_verification_finds_events_deleted_from_the_end,
    the_trail_cannot_be_emptied
);

async fn changes_are_audited_with_context(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .req(Method::POST, "/v1/api-keys")
        .header("x-request-id", "req-audit-1")
        .header("user-agent", "audit-test/1.0")
        .json(&json!({"name": "audited", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-audit-1");
    let key = json_of(r, 201).await;
    let key_id = key["id"].as_str().unwrap();
    app.req(Method::DELETE, &format!("/v1/api-keys/{key_id}"))
        .send()
        .await
        .unwrap();

    let me = json_of(app.get("/v1/me").await, 200).await;
    let actor = me["actor"]["id"].as_str().unwrap();
    let page = json_of(
        app.get(&format!("/v1/audit-events?entity_id={key_id}"))
            .await,
        200,
    )
    .await;
    let events = page["data"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let (revoke, create) = (&events[0], &events[1]);
    assert_eq!(create["action"], "api_key.create");
    assert_eq!(create["actor"], json!({"type": "api_key", "id": actor}));
    assert_eq!(create["request_id"], "req-audit-1");
    assert_eq!(create["user_agent"], "audit-test/1.0");
    assert_eq!(create["ip"], "127.0.0.1");
    assert!(create["before"].is_null());
    assert_eq!(create["after"]["name"], "audited");
    assert!(
        create["after"].get("secret").is_none(),
        "secrets never reach the trail"
    );
    assert_eq!(revoke["action"], "api_key.revoke");
    assert!(revoke["before"]["revoked_at"].is_null());
    assert!(revoke["after"]["revoked_at"].is_string());
    assert_eq!(revoke["prev_hash"], create["hash"]);
    // Generated request ids are echoed too.
    let r = app.get("/v1/me").await;
    assert_eq!(r.headers()["x-request-id"].len(), 32);

    // Filters and pagination.
    let page = json_of(
        app.get(&format!(
            "/v1/audit-events?actor={actor}&action=api_key.revoke"
        ))
        .await,
        200,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let future = "2999-01-01T00:00:00Z";
    let page = json_of(
        app.get(&format!("/v1/audit-events?since={future}")).await,
        200,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 0);
    let page = json_of(
        app.get("/v1/audit-events?until=2000-01-01T00:00:00Z").await,
        200,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 0);
    let all = app.audit_count().await;
    let first = json_of(app.get("/v1/audit-events?limit=2").await, 200).await;
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = json_of(
        app.get(&format!("/v1/audit-events?limit=200&after={cursor}"))
            .await,
        200,
    )
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), all - 2);
    assert!(rest["data"][0]["seq"].as_i64() < first["data"][1]["seq"].as_i64());
    let r = app.get("/v1/audit-events?since=yesterday").await;
    assert_eq!(r.status(), 400);
}

async fn audit_write_failure_rolls_back_the_change(b: Backend) {
    let app = spawn_app(b).await;
    let keys_before = json_of(app.get("/v1/api-keys").await, 200).await["data"]
        .as_array()
        .unwrap()
        .len();
    let me = json_of(app.get("/v1/me").await, 200).await;
    let project = me["project_id"].as_str().unwrap().to_owned();
    // Break the audit writer: without its chain head no event can be appended.
    let mut tx = app.state.db.begin().await.unwrap();
    on_db!(tx.ex(), c => sqlx::query("DELETE FROM audit_heads WHERE project_id = $1").bind(&project).execute(c).await.map(|_| ())).unwrap();
    tx.commit().await.unwrap();

    let r = app
        .post(
            "/v1/api-keys",
            &json!({"name": "orphan", "scopes": ["keys:read"]}),
        )
        .await;
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("audit_heads"),
        "internals do not leak: {body}"
    );
    let keys_after = json_of(app.get("/v1/api-keys").await, 200).await["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        keys_after, keys_before,
        "the key was not created without its audit event"
    );
}

async fn chain_verification_finds_tampering(b: Backend) {
    let app = spawn_app(b).await;
    for i in 0..3 {
        app.post(
            "/v1/api-keys",
            &json!({"name": format!("k{i}"), "scopes": ["keys:read"]}),
        )
        .await;
    }
    let v = json_of(app.get("/v1/audit-events/verify").await, 200).await;
    assert_eq!(v["ok"], true);
    let checked = v["checked"].as_i64().unwrap();
    assert!(checked >= 6, "{v}");

    // The database refuses edits to the trail…
    let mut tx = app.state.db.begin().await.unwrap();
    let refused = on_db!(tx.ex(), c => sqlx::query("UPDATE audit_events SET action = 'forged' WHERE seq = 4").execute(c).await.map(|_| ()));
    assert!(refused.is_err(), "append-only trigger");
    drop(tx);
    // …and someone who bypasses that is caught by the chain.
    let mut tx = app.state.db.begin().await.unwrap();
    let bypass = match b {
        Backend::Sqlite => "DROP TRIGGER audit_events_no_update",
        Backend::Postgres => "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update",
    };
    on_db!(tx.ex(), c => {
        sqlx::query(bypass).execute(&mut *c).await.unwrap();
        sqlx::query("UPDATE audit_events SET after_json = '{\"name\":\"forged\"}' WHERE seq = 4").execute(&mut *c).await.map(|_| ())
    }).unwrap();
    tx.commit().await.unwrap();
    let v = json_of(app.get("/v1/audit-events/verify").await, 200).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_broken"]["seq"], 4);
    assert_eq!(
        v["first_broken"]["reason"],
        "content does not match its hash"
    );
}

async fn chain_verification_finds_events_deleted_from_the_end(b: Backend) {
    let app = spawn_app(b).await;
    for i in 0..3 {
        app.post(
            "/v1/api-keys",
            &json!({"name": format!("k{i}"), "scopes": ["keys:read"]}),
        )
        .await;
    }
    let v = json_of(app.get("/v1/audit-events/verify").await, 200).await;
    assert_eq!(v["ok"], true, "{v}");
    let checked = v["checked"].as_i64().unwrap();
    let me = json_of(app.get("/v1/me").await, 200).await;
    let project = me["project_id"].as_str().unwrap().to_owned();

    // An attacker with database access gets past the append-only trigger and removes the
    // newest two events: every remaining link still verifies, only the head knows.
    let bypass = match b {
        Backend::Sqlite => "DROP TRIGGER audit_events_no_delete",
        Backend::Postgres => "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update",
    };
    let mut tx = app.state.db.begin().await.unwrap();
    on_db!(tx.ex(), c => {
        sqlx::query(bypass).execute(&mut *c).await.unwrap();
        sqlx::query("DELETE FROM audit_events WHERE project_id = $1 AND seq > $2")
            .bind(&project)
            .bind(checked - 2)
            .execute(&mut *c)
            .await
            .map(|_| ())
    })
    .unwrap();
    tx.commit().await.unwrap();

    let v = json_of(app.get("/v1/audit-events/verify").await, 200).await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["checked"], checked - 2, "{v}");
    assert_eq!(
        v["first_broken"]["seq"],
        checked - 1,
        "the first missing event: {v}"
    );
    assert!(v["first_broken"]["id"].is_null(), "{v}");
    assert_eq!(
        v["first_broken"]["reason"],
        "events missing at the end of the chain"
    );

    // Appending goes on from the head, and the gap stays visible.
    app.post(
        "/v1/api-keys",
        &json!({"name": "later", "scopes": ["keys:read"]}),
    )
    .await;
    let v = json_of(app.get("/v1/audit-events/verify").await, 200).await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_broken"]["seq"], checked + 1, "{v}");
}

async fn the_trail_cannot_be_emptied(b: Backend) {
    let app = spawn_app(b).await;
    let before = app.audit_count().await;
    assert!(before > 0);
    // SQLite has no TRUNCATE; emptying the table there is a DELETE, which its trigger refuses.
    let wipe = match b {
        Backend::Sqlite => "DELETE FROM audit_events",
        Backend::Postgres => "TRUNCATE audit_events",
    };
    let mut tx = app.state.db.begin().await.unwrap();
    let refused = on_db!(tx.ex(), c => sqlx::query(wipe).execute(c).await.map(|_| ()));
    let err = refused.expect_err("the trail is append-only");
    assert!(err.to_string().contains("append-only"), "{err}");
    drop(tx);
    assert_eq!(app.audit_count().await, before);
}

//! The platform services are the one way to change users and keys: the CLI and the API
//! go through the same rules and write the same audit events, differing only in who acted.

use crate::both;
use crate::helpers::{json_of, spawn_app, TestApp};
use serde_json::{json, Value};
use std::process::{Command, Output};
use switchboard_core::db::Backend;

both!(
    cli_and_api_write_the_same_events,
    cli_holds_users_and_keys_to_the_api_rules
);

/// `switchboard ARGS` on `app`'s database.
fn switchboard(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD_NEW_USER_PASSWORD")
        .env("SWITCHBOARD_LOG", "warn")
        .env("DATABASE_URL", &app.config.database_url)
        .env("SWITCHBOARD_DATA_DIR", &app.config.data_dir)
        .output()
        .expect("run switchboard")
}

fn succeeded(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The project's events of `action`, oldest first.
async fn events(app: &TestApp, action: &str) -> Vec<Value> {
    let page = json_of(
        app.get(&format!("/v1/audit-events?action={action}")).await,
        200,
    )
    .await;
    let mut list = page["data"].as_array().cloned().unwrap_or_default();
    list.reverse();
    list
}

/// What an event says apart from which entity, when and from where: its action, entity
/// kind, and the fields (not the values that differ per entity) before and after.
fn shape(e: &Value) -> Value {
    let keys = |v: &Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .map(Value::from)
            .unwrap_or(Value::Null)
    };
    json!({
        "action": e["action"],
        "entity_type": e["entity_type"],
        "before": keys(&e["before"]),
        "after": keys(&e["after"]),
    })
}

async fn cli_and_api_write_the_same_events(b: Backend) {
    let app = spawn_app(b).await;
    let by_api = json_of(
        app.post(
            "/v1/users",
            &json!({"email": "api@example.com", "name": "Ops", "role": "operator",
                    "password": "long-enough-1"}),
        )
        .await,
        201,
    )
    .await;
    succeeded(&switchboard(
        &app,
        &[
            "users",
            "create",
            "--email",
            "cli@example.com",
            "--name",
            "Ops",
            "--role",
            "operator",
            "--password",
            "long-enough-1",
        ],
    ));
    let created = events(&app, "user.create").await;
    let [.., api, cli] = created.as_slice() else {
        panic!("{created:?}");
    };
    assert_eq!(api["entity_id"], by_api["id"]);
    assert_eq!(api["actor"]["type"], "api_key");
    assert_eq!(cli["actor"], json!({"type": "system", "id": "cli"}));
    assert_eq!(shape(api), shape(cli));
    for field in ["name", "role", "disabled_at"] {
        assert_eq!(api["after"][field], cli["after"][field], "{field}");
    }
    assert_eq!(cli["after"]["email"], "cli@example.com");

    let (api_key, _) = app.create_key(&["keys:read"]).await;
    succeeded(&switchboard(
        &app,
        &["keys", "create", "--name", "test", "--scopes", "keys:read"],
    ));
    let created = events(&app, "api_key.create").await;
    let [.., api, cli] = created.as_slice() else {
        panic!("{created:?}");
    };
    assert_eq!(api["entity_id"], api_key.as_str());
    assert_eq!(cli["actor"], json!({"type": "system", "id": "cli"}));
    assert_eq!(shape(api), shape(cli));
    for field in ["scopes", "role", "expires_at", "revoked_at"] {
        assert_eq!(api["after"][field], cli["after"][field], "{field}");
    }
}

/// The CLI checks what the API checks, through the same service: a name the API refuses
/// is refused (naming the flag, creating nothing), and names are kept trimmed.
async fn cli_holds_users_and_keys_to_the_api_rules(b: Backend) {
    let app = spawn_app(b).await;
    let long = "n".repeat(101);
    let o = switchboard(
        &app,
        &[
            "users",
            "create",
            "--email",
            "long@example.com",
            "--name",
            &long,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--name"), "{err}");
    let users = json_of(app.get("/v1/users").await, 200).await;
    assert!(!users.to_string().contains("long@example.com"), "{users}");

    let o = switchboard(&app, &["keys", "create", "--name", "   "]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--name"), "{err}");

    let out = succeeded(&switchboard(
        &app,
        &[
            "users",
            "create",
            "--email",
            "Trim@Example.com",
            "--name",
            "  Ops  ",
        ],
    ));
    let id = out.split('\t').next().unwrap_or_default();
    let user = json_of(app.get(&format!("/v1/users/{id}")).await, 200).await;
    assert_eq!(user["name"], "Ops");
    assert_eq!(user["email"], "trim@example.com");
    // The e-mail is taken in this project whatever its case, as the API says.
    let o = switchboard(&app, &["users", "create", "--email", "TRIM@example.com"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already exists"), "{err}");
}

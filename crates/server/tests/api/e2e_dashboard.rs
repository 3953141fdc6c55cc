//! The dashboard in a real headless Chromium: login, queues, filters, job actions, schedules.
//! Needs Node.js, `tests/browser/node_modules` (npm install) and /usr/bin/chromium; CI sets
//! SWITCHBOARD_TEST_REQUIRE_BROWSER so a missing piece fails instead of skipping.

use crate::both;
use crate::helpers::{json_of, spawn_app, OWNER_EMAIL, OWNER_PASSWORD};
use serde_json::json;
use std::path::PathBuf;
use switchboard_core::db::Backend;

both!(operator_uses_the_dashboard_in_chromium);

fn browser_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    let ready = dir.join("node_modules/playwright-core").exists()
        && std::path::Path::new("/usr/bin/chromium").exists();
    if !ready {
        assert!(
            std::env::var("SWITCHBOARD_TEST_REQUIRE_BROWSER").is_err(),
            "browser tests required but tests/browser/node_modules or /usr/bin/chromium is missing"
        );
        eprintln!("skipping browser test: run `npm install` in tests/browser and install chromium");
        return None;
    }
    Some(dir)
}

async fn operator_uses_the_dashboard_in_chromium(b: Backend) {
    let Some(dir) = browser_dir() else { return };
    let app = spawn_app(b).await;
    for body in [
        json!({"queue": "emails", "kind": "welcome", "payload": {"to": "a@example.com"}}),
        json!({"queue": "emails", "kind": "welcome", "payload": {"to": "b@example.com"}}),
        json!({"queue": "emails", "kind": "welcome", "payload": {"to": "c@example.com"}}),
    ] {
        json_of(app.post("/v1/jobs", &body).await, 201).await;
    }
    let claimed = json_of(
        app.post("/v1/queues/emails/claim", &json!({"worker": "w"}))
            .await,
        200,
    )
    .await;
    let id = claimed["jobs"][0]["id"].as_str().unwrap();
    let token = claimed["jobs"][0]["lease_token"].as_str().unwrap();
    let r = app
        .post(
            &format!("/v1/jobs/{id}/fail"),
            &json!({"lease_token": token, "error": "smtp refused", "permanent": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    json_of(
        app.post("/v1/schedules", &json!({"name": "daily-report", "cron": "0 2 * * *", "job": {"queue": "reports", "kind": "daily"}})).await,
        201,
    )
    .await;

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = tokio::process::Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .current_dir(&dir)
        .env("BASE_URL", &app.addr)
        .env("EMAIL", OWNER_EMAIL)
        .env("PASSWORD", OWNER_PASSWORD)
        .env("SCREENSHOT_DIR", &shots)
        .output()
        .await
        .expect("run node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser run failed:\n{text}");
    assert!(text.contains("all steps passed"), "{text}");

    // What the operator did is in the audit trail, as the operator.
    let me = json_of(
        app.get(&format!("/v1/audit-events?entity_id={id}")).await,
        200,
    )
    .await;
    let actions: Vec<(&str, &str)> = me["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"]["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions, [("job.cancel", "user"), ("job.retry", "user")]);
    let q = json_of(app.get("/v1/queues/emails").await, 200).await;
    assert_eq!(q["paused"], false);
}

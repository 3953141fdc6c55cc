//! The queue needs of the five backends in SCENARIOS.md, end to end through the API.

use crate::both;
use crate::helpers::{json_of, spawn_app, TestApp};
use jiff::{tz::TimeZone, Timestamp, ToSpan};
use reqwest::Method;
use serde_json::{json, Value};
use switchboard_core::db::Backend;

both!(
    lawyer_marketplace_queues,
    home_care_crons_and_visit_reminders,
    crm_and_marketplace_bulk_sends
);

async fn patch_queue(app: &TestApp, name: &str, body: Value) -> Value {
    let r = app
        .req(Method::PATCH, &format!("/v1/queues/{name}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    json_of(r, 200).await
}

async fn lawyer_marketplace_queues(b: Backend) {
    let app = spawn_app(b).await;
    // A: five queues with their own concurrency; notifications limited to 100 a minute.
    for (q, c) in [
        ("notifications", 5),
        ("payments", 3),
        ("consultations", 10),
        ("emails", 10),
        ("analytics", 2),
    ] {
        assert_eq!(
            patch_queue(&app, q, json!({"concurrency": c})).await["concurrency"],
            c
        );
    }
    let n = patch_queue(
        &app,
        "notifications",
        json!({"rate_limit": {"limit": 100, "period_ms": 60000}}),
    )
    .await;
    assert_eq!(n["rate_limit"]["limit"], 100);
    let queues = json_of(app.get("/v1/queues").await, 200).await;
    assert_eq!(queues["data"].as_array().unwrap().len(), 5);

    // Priorities CRITICAL/HIGH/NORMAL/LOW; SMS OTP goes first; 3 attempts with backoff.
    for (kind, prio) in [
        ("digest", "low"),
        ("receipt", "normal"),
        ("confirm", "high"),
        ("otp_sms", "critical"),
    ] {
        json_of(app.post("/v1/jobs", &json!({"queue": "notifications", "kind": kind, "priority": prio, "max_attempts": 3})).await, 201).await;
    }
    let claimed = json_of(
        app.post(
            "/v1/queues/notifications/claim",
            &json!({"worker": "n1", "max": 4}),
        )
        .await,
        200,
    )
    .await;
    let kinds: Vec<&str> = claimed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["otp_sms", "confirm", "receipt", "digest"]);
    assert!(claimed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["max_attempts"] == 3 && j["backoff"]["type"] == "exponential"));

    // A consultation reminder one hour before the consultation.
    let consultation = Timestamp::now() + 3.hours();
    let remind_at = consultation - 1.hours();
    let reminder = json_of(
        app.post("/v1/jobs", &json!({"queue": "consultations", "kind": "reminder", "run_at": remind_at.to_string(), "payload": {"consultation": "c-1"}})).await,
        201,
    )
    .await;
    assert_eq!(reminder["state"], "scheduled");
    let at: Timestamp = reminder["run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(at.as_microsecond(), remind_at.as_microsecond());

    // The daily report at 02:00 Moscow time.
    let s = json_of(
        app.post("/v1/schedules", &json!({"name": "daily-report", "cron": "0 2 * * *", "timezone": "Europe/Moscow", "job": {"queue": "analytics", "kind": "daily_report"}})).await,
        201,
    )
    .await;
    let next: Timestamp = s["upcoming"][0].as_str().unwrap().parse().unwrap();
    let local = next.to_zoned(TimeZone::get("Europe/Moscow").unwrap());
    assert_eq!((local.hour(), local.minute()), (2, 0));

    // Operators: inspect by state, retry a failed job, remove one, pause/resume, clean.
    let first = &claimed["jobs"][0];
    let body =
        json!({"lease_token": first["lease_token"], "error": "provider down", "permanent": true});
    let id = first["id"].as_str().unwrap();
    json_of(app.post(&format!("/v1/jobs/{id}/fail"), &body).await, 200).await;
    for j in &claimed["jobs"].as_array().unwrap()[1..] {
        let jid = j["id"].as_str().unwrap();
        json_of(
            app.post(
                &format!("/v1/jobs/{jid}/complete"),
                &json!({"lease_token": j["lease_token"]}),
            )
            .await,
            200,
        )
        .await;
    }
    let failed = json_of(
        app.get("/v1/jobs?queue=notifications&state=failed").await,
        200,
    )
    .await;
    assert_eq!(failed["data"][0]["id"], id);
    let completed = json_of(
        app.get("/v1/jobs?queue=notifications&state=completed")
            .await,
        200,
    )
    .await;
    assert_eq!(completed["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        json_of(
            app.post("/v1/queues/notifications/retry-failed", &json!({}))
                .await,
            200
        )
        .await["count"],
        1
    );
    let r = app
        .req(Method::DELETE, &format!("/v1/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        json_of(
            app.post("/v1/queues/notifications/pause", &json!({})).await,
            200
        )
        .await["paused"],
        true
    );
    assert_eq!(
        json_of(
            app.post("/v1/queues/notifications/resume", &json!({}))
                .await,
            200
        )
        .await["paused"],
        false
    );
    let cleaned = json_of(
        app.post(
            "/v1/queues/notifications/clean",
            &json!({"state": "completed"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(cleaned["count"], 3);
    let q = json_of(app.get("/v1/queues/notifications").await, 200).await;
    let total: i64 = q["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(total, 0, "{q}");
}

async fn home_care_crons_and_visit_reminders(b: Backend) {
    let app = spawn_app(b).await;
    let zone = "America/Chicago";
    let tz = TimeZone::get(zone).unwrap();
    // C: cron in the agency's time zone.
    let crons = [
        ("monthly-invoices", "0 6 1 * *"),
        ("weekly-invoices", "0 6 * * 1"),
        ("overdue-reminders", "0 10 * * *"),
        ("credential-expiry", "0 9 * * *"),
        ("cleanup", "0 2 * * *"),
        ("metrics", "0 * * * *"),
    ];
    for (name, cron) in crons {
        let s = json_of(
            app.post("/v1/schedules", &json!({"name": name, "cron": cron, "timezone": zone, "job": {"queue": "billing", "kind": name}})).await,
            201,
        )
        .await;
        for t in s["upcoming"].as_array().unwrap() {
            let local = t
                .as_str()
                .unwrap()
                .parse::<Timestamp>()
                .unwrap()
                .to_zoned(tz.clone());
            let ok = match name {
                "monthly-invoices" => local.day() == 1 && local.hour() == 6,
                "weekly-invoices" => {
                    local.weekday() == jiff::civil::Weekday::Monday && local.hour() == 6
                }
                "overdue-reminders" => local.hour() == 10,
                "credential-expiry" => local.hour() == 9,
                "cleanup" => local.hour() == 2,
                _ => local.minute() == 0,
            };
            assert!(ok && local.minute() == 0, "{name}: {local}");
        }
    }
    // Visit reminders 24 h, 2 h and 30 min before, cancelled together when the visit moves.
    let visit = Timestamp::now() + 48.hours();
    for before in [24.hours(), 2.hours(), 30.minutes()] {
        let at = visit - before;
        json_of(
            app.post("/v1/jobs", &json!({"queue": "reminders", "kind": "visit_reminder", "run_at": at.to_string(), "tags": ["visit:v-17"], "payload": {"visit": "v-17"}})).await,
            201,
        )
        .await;
    }
    json_of(app.post("/v1/jobs", &json!({"queue": "reminders", "kind": "visit_reminder", "delay_ms": 3_600_000, "tags": ["visit:v-18"]})).await, 201).await;
    let pending = json_of(app.get("/v1/jobs?tag=visit:v-17").await, 200).await;
    let list = pending["data"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    for j in list {
        let id = j["id"].as_str().unwrap();
        assert_eq!(
            json_of(
                app.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await,
                200
            )
            .await["state"],
            "cancelled"
        );
    }
    let q = json_of(app.get("/v1/queues/reminders").await, 200).await;
    assert_eq!(
        (
            q["counts"]["cancelled"].as_i64(),
            q["counts"]["scheduled"].as_i64()
        ),
        (Some(3), Some(1))
    );
}

async fn crm_and_marketplace_bulk_sends(b: Backend) {
    let app = spawn_app(b).await;
    // B: webhooks, outbound messages, calls, media processing.
    for q in ["webhooks", "outbound-messages", "calls", "media-processing"] {
        json_of(
            app.post("/v1/jobs", &json!({"queue": q, "kind": "work"}))
                .await,
            201,
        )
        .await;
    }
    let names: Vec<String> = json_of(app.get("/v1/queues").await, 200).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["calls", "media-processing", "outbound-messages", "webhooks"]
    );
    // D: a bulk send to 5,000 users, one transaction, plus a notification scheduled for later.
    let jobs: Vec<Value> = (0..5000).map(|u| json!({"queue": "push", "kind": "promo", "payload": {"user": u}, "tags": ["campaign:black-friday"]})).collect();
    let out = json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await,
        201,
    )
    .await;
    assert_eq!(
        out["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["created"] == true)
            .count(),
        5000
    );
    let later = json_of(app.post("/v1/jobs", &json!({"queue": "push", "kind": "promo", "run_at": (Timestamp::now() + 24.hours()).to_string()})).await, 201).await;
    assert_eq!(later["state"], "scheduled");
    let q = json_of(app.get("/v1/queues/push").await, 200).await;
    assert_eq!(
        (
            q["counts"]["available"].as_i64(),
            q["counts"]["scheduled"].as_i64()
        ),
        (Some(5000), Some(1))
    );
}

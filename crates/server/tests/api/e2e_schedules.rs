//! Cron schedules through the API: ticks, pause, trigger, overlap, validation.

use crate::both;
use crate::helpers::{json_of, problem, spawn_app, wait_for};
use serde_json::json;
use std::time::Duration;
use switchboard_core::db::Backend;

both!(
    schedules_tick_trigger_and_pause,
    schedule_validation_and_zones,
    overlap_skip_waits_for_previous_run
);

async fn schedules_tick_trigger_and_pause(b: Backend) {
    let app = spawn_app(b).await;
    let s = json_of(
        app.post("/v1/schedules", &json!({"name": "every-second", "cron": "* * * * * *", "job": {"queue": "ticks", "kind": "tick"}})).await,
        201,
    )
    .await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(s["upcoming"].as_array().unwrap().len(), 5);
    let tag = format!("schedule:{id}");
    let jobs = wait_for(&app, &format!("/v1/jobs?tag={tag}"), 10, |v| {
        v["data"].as_array().unwrap().len() >= 2
    })
    .await;
    let list = jobs["data"].as_array().unwrap();
    assert!(list.len() >= 2, "{jobs}");
    let keys: std::collections::HashSet<&str> = list
        .iter()
        .map(|j| j["unique_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), list.len(), "one job per tick");

    let r = app
        .req(reqwest::Method::PATCH, &format!("/v1/schedules/{id}"))
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 200).await["paused"], true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = json_of(app.get(&format!("/v1/jobs?tag={tag}")).await, 200).await["data"]
        .as_array()
        .unwrap()
        .len();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let after = json_of(app.get(&format!("/v1/jobs?tag={tag}")).await, 200).await["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "paused schedules do not tick");

    let t = json_of(
        app.post(&format!("/v1/schedules/{id}/trigger"), &json!({}))
            .await,
        201,
    )
    .await;
    let job = json_of(
        app.get(&format!("/v1/jobs/{}", t["job_id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(
        (job["queue"].as_str(), job["kind"].as_str()),
        (Some("ticks"), Some("tick"))
    );

    let r = app
        .req(reqwest::Method::DELETE, &format!("/v1/schedules/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(
        app.get(&format!("/v1/schedules/{id}")).await,
        404,
        "not-found",
    )
    .await;
    let events = json_of(app.get("/v1/audit-events?entity_type=schedule").await, 200).await;
    let actions: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "schedule.delete",
            "schedule.trigger",
            "schedule.update",
            "schedule.create"
        ]
    );
}

async fn schedule_validation_and_zones(b: Backend) {
    let app = spawn_app(b).await;
    let v = problem(
        app.post("/v1/schedules", &json!({"name": "x", "cron": "61 * * * *", "timezone": "Mars/Base", "job": {"queue": "q", "kind": "k"}})).await,
        422,
        "validation-failed",
    )
    .await;
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"cron") && fields.contains(&"timezone"),
        "{v}"
    );
    let v = problem(
        app.post("/v1/schedules", &json!({"name": "x", "cron": "0 2 * * *"}))
            .await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(v["errors"][0]["field"], "job");
    let v = problem(
        app.post(
            "/v1/schedules",
            &json!({"name": "x", "cron": "0 2 * * *", "job": {"queue": "bad queue", "kind": "k"}}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(v["errors"][0]["field"], "job.queue");
    problem(
        app.post(
            "/v1/schedules",
            &json!({"name": "x", "cron": "0 2 * *", "job": {"queue": "q", "kind": "k"}}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;

    // Home-care invoices: 06:00 on the 1st in New York, whatever the DST offset.
    let s = json_of(
        app.post("/v1/schedules", &json!({"name": "monthly-invoices", "cron": "0 6 1 * *", "timezone": "America/New_York", "job": {"queue": "billing", "kind": "invoice"}})).await,
        201,
    )
    .await;
    for t in s["upcoming"].as_array().unwrap() {
        let ts: jiff::Timestamp = t.as_str().unwrap().parse().unwrap();
        let local = ts.to_zoned(jiff::tz::TimeZone::get("America/New_York").unwrap());
        assert_eq!(
            (local.day(), local.hour(), local.minute()),
            (1, 6, 0),
            "{t}"
        );
    }
    problem(
        app.post("/v1/schedules", &json!({"name": "monthly-invoices", "cron": "0 6 * * 1", "job": {"queue": "q", "kind": "k"}})).await,
        409,
        "name-taken",
    )
    .await;
    let list = json_of(app.get("/v1/schedules").await, 200).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "nothing written by the failures"
    );
}

async fn overlap_skip_waits_for_previous_run(b: Backend) {
    let app = spawn_app(b).await;
    let s = json_of(
        app.post("/v1/schedules", &json!({"name": "no-overlap", "cron": "* * * * * *", "overlap": "skip", "job": {"queue": "reports", "kind": "build"}})).await,
        201,
    )
    .await;
    let tag = format!("schedule:{}", s["id"].as_str().unwrap());
    wait_for(&app, &format!("/v1/jobs?tag={tag}"), 10, |v| {
        !v["data"].as_array().unwrap().is_empty()
    })
    .await;
    // Nobody runs the job: it stays unfinished, so later ticks are skipped.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let jobs = json_of(app.get(&format!("/v1/jobs?tag={tag}")).await, 200).await;
    assert_eq!(jobs["data"].as_array().unwrap().len(), 1, "{jobs}");
}

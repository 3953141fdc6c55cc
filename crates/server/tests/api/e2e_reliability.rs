//! Chaos: a `switchboard worker` process killed with SIGKILL mid-job under load.

use crate::both;
use crate::helpers::{json_of, spawn_with, wait_for};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchboard_core::db::Backend;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

both!(killed_worker_loses_no_job);

fn start_worker(app: &crate::helpers::TestApp) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("worker")
        .env_remove("REDIS_URL")
        .env("DATABASE_URL", &app.config.database_url)
        .env("SWITCHBOARD_DATA_DIR", &app.config.data_dir)
        .env("SWITCHBOARD_JOB_HEARTBEAT_MS", "400")
        // The fake target listens on loopback.
        .env("SWITCHBOARD_PUSH_ALLOW", "127.0.0.0/8")
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker")
}

async fn killed_worker_loses_no_job(b: Backend) {
    // The API node runs no jobs itself: only the worker processes do.
    let app = spawn_with(b, |c| c.run_jobs = false).await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&target)
        .await;
    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/chaos")
        .json(&json!({"concurrency": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let jobs: Vec<_> = (0..60)
        .map(|i| json!({"queue": "chaos", "kind": "push", "payload": {"i": i}, "max_attempts": 10,
                        "backoff": {"type": "fixed", "delay_ms": 0}, "target": {"url": format!("{}/work", target.uri())}}))
        .collect();
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await,
        201,
    )
    .await;

    let mut first = start_worker(&app);
    // Kill it while it has jobs in flight.
    let busy = wait_for(&app, "/v1/queues/chaos", 20, |q| {
        q["counts"]["running"].as_i64().unwrap_or(0) >= 4
    })
    .await;
    assert!(busy["counts"]["running"].as_i64().unwrap() >= 4, "{busy}");
    first.kill().unwrap();
    first.wait().unwrap();
    // What the dead worker held: its jobs stay running until their leases lapse (two
    // heartbeats, 800 ms), so this read right after the kill usually sees them all; the
    // count before the kill is the floor.
    let held = json_of(app.get("/v1/queues/chaos").await, 200).await;
    let in_flight = held["counts"]["running"]
        .as_i64()
        .unwrap()
        .max(busy["counts"]["running"].as_i64().unwrap());

    let mut second = start_worker(&app);
    let done = wait_for(&app, "/v1/queues/chaos", 60, |q| {
        q["counts"]["completed"] == 60
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    let c = &done["counts"];
    assert_eq!(c["completed"], 60, "{done}");
    for state in ["running", "available", "retryable", "failed", "scheduled"] {
        assert_eq!(c[state], 0, "{state}: {done}");
    }
    // Every job is completed exactly once in the database; the ones the dead worker held
    // were rescued after their lease lapsed and completed by the survivor.
    let all = json_of(app.get("/v1/jobs?queue=chaos&limit=200").await, 200).await;
    let list = all["data"].as_array().unwrap();
    assert_eq!(list.len(), 60);
    assert!(list.iter().all(|j| j["state"] == "completed"));
    let rescued = list
        .iter()
        .filter(|j| j["attempt"].as_i64().unwrap() > 1)
        .count() as i64;
    assert!(
        rescued >= 1 && rescued <= in_flight + 8,
        "rescued {rescued}, in flight {in_flight}"
    );
    for j in list.iter().filter(|j| j["attempt"].as_i64().unwrap() > 1) {
        let id = j["id"].as_str().unwrap();
        let d = json_of(app.get(&format!("/v1/jobs/{id}")).await, 200).await;
        assert!(
            d["errors"][0]["error"]
                .as_str()
                .unwrap()
                .contains("lease expired"),
            "{d}"
        );
    }
    // At-least-once: the target saw every job, some of them twice.
    let seen = target.received_requests().await.unwrap();
    let mut ids: Vec<String> = seen
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60);
}

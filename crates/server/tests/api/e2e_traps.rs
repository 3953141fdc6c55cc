//! Traps a newcomer fell into (issue 13): a heartbeat that cut a long lease short, a cron
//! that can never fire, and `concurrency` that pull workers ignored.

use crate::both;
use crate::helpers::{json_of, problem, spawn_app};
use reqwest::Method;
use serde_json::{json, Value};
use switchboard_core::db::Backend;

both!(
    heartbeat_keeps_the_claims_lease_length,
    a_cron_that_never_fires_is_refused,
    concurrency_limits_each_pull_worker
);

/// Seconds from now until an RFC 3339 timestamp.
fn secs_until(v: &Value) -> i64 {
    let t: jiff::Timestamp = v.as_str().expect("timestamp").parse().expect("RFC 3339");
    t.as_second() - jiff::Timestamp::now().as_second()
}

async fn heartbeat_keeps_the_claims_lease_length(b: Backend) {
    let app = spawn_app(b).await;
    json_of(
        app.post("/v1/jobs", &json!({"queue": "long", "kind": "render"}))
            .await,
        201,
    )
    .await;
    let claimed = json_of(
        app.post(
            "/v1/queues/long/claim",
            &json!({"worker": "w1", "lease_ms": 600_000}),
        )
        .await,
        200,
    )
    .await;
    let job = &claimed["jobs"][0];
    assert!(secs_until(&job["lease_expires_at"]) > 590, "{job}");
    let id = job["id"].as_str().unwrap();
    let token = job["lease_token"].as_str().unwrap();
    let beat = |body: Value| {
        let app = &app;
        async move { app.post(&format!("/v1/jobs/{id}/heartbeat"), &body).await }
    };
    // No `lease_ms`: the claim's ten minutes, not a 30 s default.
    let hb = json_of(
        beat(json!({"lease_token": token, "progress": {"pct": 10}})).await,
        200,
    )
    .await;
    let left = secs_until(&hb["lease_expires_at"]);
    assert!((590..=600).contains(&left), "{hb}");
    // A length given by a heartbeat holds for the ones after it.
    let hb = json_of(
        beat(json!({"lease_token": token, "lease_ms": 120_000})).await,
        200,
    )
    .await;
    assert!(
        (110..=120).contains(&secs_until(&hb["lease_expires_at"])),
        "{hb}"
    );
    let hb = json_of(beat(json!({"lease_token": token})).await, 200).await;
    assert!(
        (110..=120).contains(&secs_until(&hb["lease_expires_at"])),
        "{hb}"
    );
    let detail = json_of(app.get(&format!("/v1/jobs/{id}")).await, 200).await;
    assert_eq!(
        (detail["state"].as_str(), detail["progress"]["pct"].as_i64()),
        (Some("running"), Some(10))
    );
    // A bad length is refused and changes nothing.
    let v = problem(
        beat(json!({"lease_token": token, "lease_ms": 5})).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(v["errors"][0]["field"], "lease_ms");
    let after = json_of(app.get(&format!("/v1/jobs/{id}")).await, 200).await;
    assert_eq!(after["lease_expires_at"], hb["lease_expires_at"]);
}

async fn a_cron_that_never_fires_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    let job = json!({"queue": "never", "kind": "k"});
    let v = problem(
        app.post(
            "/v1/schedules",
            &json!({"name": "feb-30", "cron": "0 0 30 2 *", "job": job}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(v["errors"][0]["field"], "cron", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("never fires"),
        "{v}"
    );
    let list = json_of(app.get("/v1/schedules").await, 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");

    // Changing a good schedule to a date that does not exist is refused too.
    let s = json_of(
        app.post(
            "/v1/schedules",
            &json!({"name": "monthly", "cron": "0 0 1 * *", "job": job}),
        )
        .await,
        201,
    )
    .await;
    let id = s["id"].as_str().unwrap();
    let r = app
        .req(Method::PATCH, &format!("/v1/schedules/{id}"))
        .json(&json!({"cron": "0 0 31 4 *"}))
        .send()
        .await
        .unwrap();
    let v = problem(r, 422, "validation-failed").await;
    assert_eq!(v["errors"][0]["field"], "cron", "{v}");
    let now = json_of(app.get(&format!("/v1/schedules/{id}")).await, 200).await;
    assert_eq!(now["cron"], "0 0 1 * *");
    assert_eq!(now["next_run_at"], s["next_run_at"]);
    // Nothing was enqueued for either.
    let jobs = json_of(app.get("/v1/jobs?queue=never").await, 200).await;
    assert_eq!(jobs["data"].as_array().unwrap().len(), 0, "{jobs}");
}

async fn claim_ids(app: &crate::helpers::TestApp, worker: &str, max: i64) -> Vec<(String, String)> {
    let v = json_of(
        app.post(
            "/v1/queues/limited/claim",
            &json!({"worker": worker, "max": max}),
        )
        .await,
        200,
    )
    .await;
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_str().unwrap().to_owned(),
                j["lease_token"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn concurrency_limits_each_pull_worker(b: Backend) {
    let app = spawn_app(b).await;
    let jobs: Vec<Value> = (0..10)
        .map(|i| json!({"queue": "limited", "kind": "k", "payload": {"i": i}}))
        .collect();
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await,
        201,
    )
    .await;
    let r = app
        .req(Method::PATCH, "/v1/queues/limited")
        .json(&json!({"concurrency": 2}))
        .send()
        .await
        .unwrap();
    json_of(r, 200).await;

    // One worker name holds at most `concurrency` jobs, however many it asks for.
    let w1 = claim_ids(&app, "w1", 10).await;
    assert_eq!(w1.len(), 2);
    assert_eq!(claim_ids(&app, "w1", 10).await.len(), 0, "w1 is full");
    // Another worker has its own two.
    assert_eq!(claim_ids(&app, "w2", 10).await.len(), 2);
    // A finished job frees its worker's place.
    let (id, token) = &w1[0];
    json_of(
        app.post(
            &format!("/v1/jobs/{id}/complete"),
            &json!({"lease_token": token}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(claim_ids(&app, "w1", 10).await.len(), 1);
    let q = json_of(app.get("/v1/queues/limited").await, 200).await;
    assert_eq!(q["counts"]["running"], 4, "{q}");

    // The cluster cap bounds every worker together: 4 running, cap 5.
    let r = app
        .req(Method::PATCH, "/v1/queues/limited")
        .json(&json!({"global_concurrency": 5}))
        .send()
        .await
        .unwrap();
    json_of(r, 200).await;
    assert_eq!(claim_ids(&app, "w3", 10).await.len(), 1);
    assert_eq!(claim_ids(&app, "w4", 10).await.len(), 0);

    // The limit that applies is shown where the running count is.
    let login = app
        .client
        .post(app.url("/dashboard/login"))
        .form(&[
            ("email", crate::helpers::OWNER_EMAIL),
            ("password", crate::helpers::OWNER_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for path in ["/dashboard/queues", "/dashboard/queues/limited"] {
        let html = app
            .client
            .get(app.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("2 per worker, cluster cap 5"),
            "{path}: {html}"
        );
    }
}

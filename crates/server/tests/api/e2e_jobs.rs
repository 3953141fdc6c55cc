//! The queue engine through the HTTP API: pull workers, leases and fencing, retries,
//! cancellation, delays, unique keys, batches, pause, concurrency and rate limits.

use crate::both;
use crate::helpers::{json_of, problem, spawn_app, wait_for};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchboard_core::db::Backend;
use switchboard_core::on_db;

both!(
    pull_worker_lifecycle,
    lapsed_lease_is_rescued_and_stale_token_refused,
    cancel_reaches_the_worker,
    delays_unique_keys_and_batches,
    pause_global_concurrency_and_rate_limit,
    long_poll_wakes_on_enqueue,
    bad_job_input_writes_nothing,
    listing_merges_queues_newest_first,
    concurrent_enqueues_share_commits,
    concurrent_claims_and_completions_share_commits,
    concurrent_failures_share_commits,
    one_batch_with_a_unique_key_twice_creates_one_job,
    settings_changes_racing_a_pause_keep_both
);

async fn enqueue(app: &crate::helpers::TestApp, body: Value) -> Value {
    json_of(app.post("/v1/jobs", &body).await, 201).await
}

async fn claim(app: &crate::helpers::TestApp, queue: &str, body: Value) -> Vec<Value> {
    let v = json_of(
        app.post(&format!("/v1/queues/{queue}/claim"), &body).await,
        200,
    )
    .await;
    v["jobs"].as_array().unwrap().clone()
}

async fn counts(app: &crate::helpers::TestApp, queue: &str) -> Value {
    json_of(app.get(&format!("/v1/queues/{queue}")).await, 200).await["counts"].clone()
}

async fn pull_worker_lifecycle(b: Backend) {
    let app = spawn_app(b).await;
    let low = enqueue(
        &app,
        json!({"queue": "emails", "kind": "digest", "priority": "low"}),
    )
    .await;
    let critical = enqueue(&app, json!({"queue": "emails", "kind": "otp", "priority": "critical", "payload": {"code": "1234"}})).await;
    let normal = enqueue(&app, json!({"queue": "emails", "kind": "welcome", "max_attempts": 2, "backoff": {"type": "fixed", "delay_ms": 0}})).await;
    assert_eq!(critical["state"], "available");
    assert_eq!(counts(&app, "emails").await["available"], 3);

    let first = claim(&app, "emails", json!({"worker": "w1"})).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["id"], critical["id"], "critical first");
    assert_eq!(first[0]["attempt"], 1);
    assert_eq!(first[0]["payload"]["code"], "1234");
    let rest = claim(&app, "emails", json!({"worker": "w2", "max": 10})).await;
    let order: Vec<&Value> = rest.iter().map(|j| &j["id"]).collect();
    assert_eq!(order, [&normal["id"], &low["id"]]);
    let c = counts(&app, "emails").await;
    assert_eq!(
        (c["available"].as_i64(), c["running"].as_i64()),
        (Some(0), Some(3))
    );

    // Heartbeat with progress, then complete with a result.
    let id = first[0]["id"].as_str().unwrap();
    let token = first[0]["lease_token"].as_str().unwrap();
    let hb = json_of(
        app.post(
            &format!("/v1/jobs/{id}/heartbeat"),
            &json!({"lease_token": token, "progress": {"pct": 50}}),
        )
        .await,
        200,
    )
    .await;
    assert!(hb["lease_expires_at"].is_string());
    let detail = json_of(app.get(&format!("/v1/jobs/{id}")).await, 200).await;
    assert_eq!(detail["progress"]["pct"], 50);
    let done = json_of(
        app.post(
            &format!("/v1/jobs/{id}/complete"),
            &json!({"lease_token": token, "result": {"sent": true}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["result"]["sent"], true);
    problem(
        app.post(
            &format!("/v1/jobs/{id}/complete"),
            &json!({"lease_token": token}),
        )
        .await,
        409,
        "stale-lease",
    )
    .await;

    // Fail twice: retryable, then failed with both errors kept; then retry by hand.
    let nid = normal["id"].as_str().unwrap();
    let ntoken = rest[0]["lease_token"].as_str().unwrap();
    let f = json_of(
        app.post(
            &format!("/v1/jobs/{nid}/fail"),
            &json!({"lease_token": ntoken, "error": "smtp 451"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(f["state"], "retryable");
    wait_for(&app, &format!("/v1/jobs/{nid}"), 5, |j| {
        j["state"] == "available"
    })
    .await;
    let again = claim(&app, "emails", json!({"worker": "w3"})).await;
    assert_eq!(again[0]["id"], normal["id"]);
    assert_eq!(again[0]["attempt"], 2);
    let t2 = again[0]["lease_token"].as_str().unwrap();
    let f = json_of(
        app.post(
            &format!("/v1/jobs/{nid}/fail"),
            &json!({"lease_token": t2, "error": "smtp 550"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(f["state"], "failed");
    let detail = json_of(app.get(&format!("/v1/jobs/{nid}")).await, 200).await;
    let errors: Vec<&str> = detail["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors, ["smtp 451", "smtp 550"]);
    assert_eq!(detail["errors"][1]["worker"], "w3");

    let c = counts(&app, "emails").await;
    assert_eq!(
        (
            c["completed"].as_i64(),
            c["failed"].as_i64(),
            c["running"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let listed = json_of(app.get("/v1/jobs?queue=emails&state=failed").await, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let retried = json_of(
        app.post(&format!("/v1/jobs/{nid}/retry"), &json!({})).await,
        200,
    )
    .await;
    assert_eq!(
        (retried["state"].as_str(), retried["attempt"].as_i64()),
        (Some("available"), Some(0))
    );
    problem(
        app.post(&format!("/v1/jobs/{nid}/retry"), &json!({})).await,
        409,
        "invalid-state",
    )
    .await;
    let events = json_of(
        app.get(&format!("/v1/audit-events?entity_id={nid}")).await,
        200,
    )
    .await;
    assert_eq!(events["data"][0]["action"], "job.retry");

    // Delete removes it from the counts too.
    let r = app
        .req(reqwest::Method::DELETE, &format!("/v1/jobs/{nid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    problem(app.get(&format!("/v1/jobs/{nid}")).await, 404, "not-found").await;
    assert_eq!(counts(&app, "emails").await["available"], 0);
}

async fn lapsed_lease_is_rescued_and_stale_token_refused(b: Backend) {
    let app = spawn_app(b).await;
    let job = enqueue(
        &app,
        json!({"queue": "payments", "kind": "sync", "backoff": {"type": "fixed", "delay_ms": 0}}),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let lost = claim(
        &app,
        "payments",
        json!({"worker": "crashed", "lease_ms": 1000}),
    )
    .await;
    let old_token = lost[0]["lease_token"].as_str().unwrap().to_owned();
    // The worker dies: no heartbeat. Soon after the lease ends (1 s, plus one rescue sweep:
    // at most a second) the job is back; the bound leaves room for a loaded machine.
    let start = Instant::now();
    let back = wait_for(&app, &format!("/v1/jobs/{id}"), 15, |j| {
        j["state"] == "available"
    })
    .await;
    assert_eq!(back["state"], "available");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "rescued in {:?}",
        start.elapsed()
    );
    assert!(back["last_error"]
        .as_str()
        .unwrap()
        .contains("lease expired"));
    let again = claim(&app, "payments", json!({"worker": "healthy"})).await;
    let new_token = again[0]["lease_token"].as_str().unwrap();
    assert_ne!(new_token, old_token);
    assert_eq!(again[0]["attempt"], 2);
    // The old worker wakes up: everything it sends is refused.
    for (path, body) in [
        ("heartbeat", json!({"lease_token": old_token})),
        ("complete", json!({"lease_token": old_token})),
        ("fail", json!({"lease_token": old_token, "error": "late"})),
    ] {
        problem(
            app.post(&format!("/v1/jobs/{id}/{path}"), &body).await,
            409,
            "stale-lease",
        )
        .await;
    }
    let done = json_of(
        app.post(
            &format!("/v1/jobs/{id}/complete"),
            &json!({"lease_token": new_token}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (done["state"].as_str(), done["worker"].as_str()),
        (Some("completed"), Some("healthy"))
    );
    let c = counts(&app, "payments").await;
    assert_eq!(
        (
            c["completed"].as_i64(),
            c["running"].as_i64(),
            c["retryable"].as_i64()
        ),
        (Some(1), Some(0), Some(0))
    );
}

async fn cancel_reaches_the_worker(b: Backend) {
    let app = spawn_app(b).await;
    let job = enqueue(&app, json!({"queue": "media", "kind": "transcode"})).await;
    let id = job["id"].as_str().unwrap();
    let c = claim(&app, "media", json!({"worker": "w"})).await;
    let token = c[0]["lease_token"].as_str().unwrap();
    let cancelled = json_of(
        app.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await,
        200,
    )
    .await;
    assert_eq!(cancelled["state"], "cancelled");
    problem(
        app.post(
            &format!("/v1/jobs/{id}/heartbeat"),
            &json!({"lease_token": token}),
        )
        .await,
        409,
        "job-cancelled",
    )
    .await;
    problem(
        app.post(
            &format!("/v1/jobs/{id}/complete"),
            &json!({"lease_token": token}),
        )
        .await,
        409,
        "job-cancelled",
    )
    .await;
    problem(
        app.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await,
        409,
        "invalid-state",
    )
    .await;
    let c = counts(&app, "media").await;
    assert_eq!(
        (c["running"].as_i64(), c["cancelled"].as_i64()),
        (Some(0), Some(1))
    );
}

async fn delays_unique_keys_and_batches(b: Backend) {
    let app = spawn_app(b).await;
    let delayed = enqueue(
        &app,
        json!({"queue": "consultations", "kind": "reminder", "delay_ms": 700}),
    )
    .await;
    assert_eq!(delayed["state"], "scheduled");
    assert!(
        claim(&app, "consultations", json!({"worker": "w"}))
            .await
            .is_empty(),
        "not before its time"
    );
    let start = Instant::now();
    let got = claim(
        &app,
        "consultations",
        json!({"worker": "w", "wait_ms": 5000}),
    )
    .await;
    assert_eq!(got.len(), 1);
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );

    let first = enqueue(
        &app,
        json!({"queue": "analytics", "kind": "rollup", "unique_key": "day-1"}),
    )
    .await;
    let r = app
        .post(
            "/v1/jobs",
            &json!({"queue": "analytics", "kind": "rollup", "unique_key": "day-1"}),
        )
        .await;
    let dup = json_of(r, 200).await;
    assert_eq!(dup["id"], first["id"]);

    let jobs: Vec<Value> = (0..10_000)
        .map(|i| json!({"queue": "bulk", "kind": "noop", "payload": {"i": i}}))
        .collect();
    let r = app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await;
    let out = json_of(r, 201).await;
    assert_eq!(out["jobs"].as_array().unwrap().len(), 10_000);
    assert_eq!(counts(&app, "bulk").await["available"], 10_000);
    let batch = json!({"jobs": [{"queue": "bulk", "kind": "ok"}, {"queue": "bad queue", "kind": "x"}, {"queue": "bulk", "kind": "ok", "max_attempts": 0}]});
    let v = problem(
        app.post("/v1/jobs/batch", &batch).await,
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
    assert_eq!(fields, ["jobs[1].queue", "jobs[2].max_attempts"]);
    assert_eq!(
        counts(&app, "bulk").await["available"],
        10_000,
        "all or nothing"
    );
    let too_many: Vec<Value> = (0..10_001)
        .map(|_| json!({"queue": "bulk", "kind": "noop"}))
        .collect();
    problem(
        app.post("/v1/jobs/batch", &json!({"jobs": too_many})).await,
        422,
        "validation-failed",
    )
    .await;
}

async fn pause_global_concurrency_and_rate_limit(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/calls")
        .json(&json!({"global_concurrency": 2, "concurrency": 3}))
        .send()
        .await
        .unwrap();
    let q = json_of(r, 200).await;
    assert_eq!(q["global_concurrency"], 2);
    for _ in 0..5 {
        enqueue(&app, json!({"queue": "calls", "kind": "dial"})).await;
    }
    let got = claim(&app, "calls", json!({"worker": "w", "max": 10})).await;
    assert_eq!(got.len(), 2, "cluster-wide cap");
    assert!(claim(&app, "calls", json!({"worker": "w2", "max": 10}))
        .await
        .is_empty());

    json_of(app.post("/v1/queues/calls/pause", &json!({})).await, 200).await;
    let id = got[0]["id"].as_str().unwrap();
    let token = got[0]["lease_token"].as_str().unwrap();
    json_of(
        app.post(
            &format!("/v1/jobs/{id}/complete"),
            &json!({"lease_token": token}),
        )
        .await,
        200,
    )
    .await;
    assert!(
        claim(&app, "calls", json!({"worker": "w", "max": 10}))
            .await
            .is_empty(),
        "paused"
    );
    let q = json_of(app.post("/v1/queues/calls/resume", &json!({})).await, 200).await;
    assert_eq!(q["paused"], false);
    assert_eq!(
        claim(&app, "calls", json!({"worker": "w", "max": 10}))
            .await
            .len(),
        1
    );

    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/notifications")
        .json(&json!({"rate_limit": {"limit": 3, "period_ms": 60000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..5 {
        enqueue(&app, json!({"queue": "notifications", "kind": "sms"})).await;
    }
    let got = claim(&app, "notifications", json!({"worker": "w", "max": 10})).await;
    assert_eq!(got.len(), 3, "token bucket of 3");
    assert!(
        claim(&app, "notifications", json!({"worker": "w", "max": 10}))
            .await
            .is_empty()
    );

    let bad = app
        .req(reqwest::Method::PATCH, "/v1/queues/calls")
        .json(&json!({"concurrency": 0, "speed": "fast"}))
        .send()
        .await
        .unwrap();
    problem(bad, 422, "validation-failed").await;
    let bad = app
        .req(reqwest::Method::PATCH, "/v1/queues/calls")
        .json(&json!({"concurrency": 0}))
        .send()
        .await
        .unwrap();
    let v = problem(bad, 422, "validation-failed").await;
    assert_eq!(v["errors"][0]["field"], "concurrency");
    let q = json_of(app.get("/v1/queues/calls").await, 200).await;
    assert_eq!(q["concurrency"], 3, "nothing written");
    let events = json_of(app.get("/v1/audit-events?entity_type=queue").await, 200).await;
    let actions: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "queue.update",
            "queue.resume",
            "queue.pause",
            "queue.update"
        ]
    );
}

async fn long_poll_wakes_on_enqueue(b: Backend) {
    let app = spawn_app(b).await;
    let url = app.url("/v1/queues/webhooks/claim");
    let client = app.client.clone();
    let key = app.key.clone();
    let waiter = tokio::spawn(async move {
        let start = Instant::now();
        let r = client
            .post(url)
            .bearer_auth(key)
            .json(&json!({"worker": "lp", "wait_ms": 10000}))
            .send()
            .await
            .unwrap();
        (start.elapsed(), r.json::<Value>().await.unwrap())
    });
    // The claim is waiting (it holds the queue's notifier) before the job arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.runtime.tracked().notifiers < 2 {
        assert!(Instant::now() < deadline, "the claim never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let job = enqueue(&app, json!({"queue": "webhooks", "kind": "deliver"})).await;
    let (elapsed, body) = waiter.await.unwrap();
    assert_eq!(body["jobs"][0]["id"], job["id"]);
    assert!(
        elapsed < Duration::from_millis(2000),
        "woke after {elapsed:?}"
    );
}

async fn bad_job_input_writes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let big = "x".repeat(600 * 1024);
    for (body, field) in [
        (
            json!({"queue": "q", "kind": "k", "delay_ms": -5}),
            "delay_ms",
        ),
        (
            json!({"queue": "q", "kind": "k", "priority": "urgent"}),
            "priority",
        ),
        (
            json!({"queue": "q", "kind": "k", "priority": 101}),
            "priority",
        ),
        (json!({"queue": "", "kind": "k"}), "queue"),
        (
            json!({"queue": "q", "kind": "k", "payload": {"blob": big}}),
            "payload",
        ),
        (
            json!({"queue": "q", "kind": "k", "backoff": {"type": "fixed", "delay_ms": -1}}),
            "backoff",
        ),
        (
            json!({"queue": "q", "kind": "k", "target": {"url": "ftp://x"}}),
            "target",
        ),
        (
            json!({"queue": "q", "kind": "k", "timeout_ms": 0}),
            "timeout_ms",
        ),
        (
            json!({"queue": "q", "kind": "k", "run_at": "2030-01-01T00:00:00Z", "delay_ms": 5}),
            "delay_ms",
        ),
    ] {
        let v = problem(app.post("/v1/jobs", &body).await, 422, "validation-failed").await;
        assert_eq!(v["errors"][0]["field"], field, "{v}");
    }
    problem(
        app.post(
            "/v1/jobs",
            &json!({"queue": "q", "kind": "k", "colour": "red"}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    problem(
        app.post("/v1/queues/q/claim", &json!({"worker": "w", "max": 0}))
            .await,
        422,
        "validation-failed",
    )
    .await;
    problem(
        app.post(
            "/v1/queues/q/claim",
            &json!({"worker": "w", "wait_ms": 60000}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    problem(
        app.post("/v1/queues/q/claim", &json!({"worker": ""})).await,
        422,
        "validation-failed",
    )
    .await;
    let jobs = json_of(app.get("/v1/jobs").await, 200).await;
    assert!(jobs["data"].as_array().unwrap().is_empty());
    let queues = json_of(app.get("/v1/queues").await, 200).await;
    assert!(
        queues["data"].as_array().unwrap().is_empty(),
        "no queue created by bad input"
    );
    problem(
        app.get("/v1/jobs?state=exploded").await,
        422,
        "validation-failed",
    )
    .await;
}

/// Listing without a queue reads every queue of the project newest first and merges them;
/// pages follow on from the cursor with nothing skipped or repeated. Running jobs (kept in
/// an index of their own on PostgreSQL) are listed in their place.
async fn listing_merges_queues_newest_first(b: Backend) {
    let app = spawn_app(b).await;
    let ids_of = |jobs: &Value| -> Vec<String> {
        let jobs = jobs.as_array().unwrap().iter();
        jobs.map(|j| j["id"].as_str().unwrap().to_owned()).collect()
    };
    let mut jobs = Vec::new();
    for i in 0..8 {
        let queue = ["alpha", "beta", "gamma"][i % 3];
        let tags = [format!("n{i}")];
        jobs.push(enqueue(&app, json!({"queue": queue, "kind": "k", "tags": tags})).await);
    }
    jobs.reverse();
    let ids = ids_of(&json!(jobs));
    let running: Vec<Value> = claim(&app, "beta", json!({"worker": "w", "max": 2})).await;
    assert_eq!(running.len(), 2);
    let mut listed = Vec::new();
    let mut path = "/v1/jobs?limit=3".to_owned();
    loop {
        let page = json_of(app.get(&path).await, 200).await;
        listed.extend(ids_of(&page["data"]));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/jobs?limit=3&after={c}"),
            None => break,
        }
    }
    assert_eq!(listed, ids, "every job once, newest first across queues");
    let beta: Vec<Value> = jobs.into_iter().filter(|j| j["queue"] == "beta").collect();
    let listed = json_of(app.get("/v1/jobs?queue=beta").await, 200).await;
    assert_eq!(
        ids_of(&listed["data"]),
        ids_of(&json!(beta)),
        "a queue's running and waiting jobs, newest first"
    );
    let mut claimed = ids_of(&json!(running));
    claimed.sort_by(|a, b| b.cmp(a));
    for path in [
        "/v1/jobs?state=running",
        "/v1/jobs?queue=beta&state=running",
    ] {
        assert_eq!(
            ids_of(&json_of(app.get(path).await, 200).await["data"]),
            claimed,
            "{path}"
        );
    }
    let tagged = json_of(app.get("/v1/jobs?tag=n7&state=available").await, 200).await;
    let tagged = tagged["data"].as_array().unwrap();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0]["queue"], "beta");
}

/// Single-job enqueues arriving together go in as one commit (a shared commit stamps its
/// jobs with one creation time), each caller gets its own job back, and one caller's failing
/// insert does not fail the others gathered with it.
async fn concurrent_enqueues_share_commits(b: Backend) {
    use switchboard_core::id::ProjectId;
    use switchboard_queue::model::{JobKind, NewJob, QueueName};
    let app = spawn_app(b).await;
    let requests: Vec<_> = (0..100)
        .map(|i| {
            let req = app
                .req(reqwest::Method::POST, "/v1/jobs")
                .json(&json!({"queue": "burst", "kind": "k", "payload": {"n": i}}));
            tokio::spawn(async move { req.send().await })
        })
        .collect();
    let mut jobs = Vec::new();
    for (i, r) in requests.into_iter().enumerate() {
        let job = json_of(r.await.unwrap().unwrap(), 201).await;
        assert_eq!(job["payload"]["n"], i, "each caller gets its own job");
        jobs.push(job);
    }
    let ids: std::collections::HashSet<&str> =
        jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 100);
    let commits = commits_of(&app, "burst", "created_at").await;
    assert!(
        commits <= 90,
        "{commits} commits for 100 concurrent enqueues"
    );
    assert_eq!(counts(&app, "burst").await["available"], 100);
    let listed = json_of(app.get("/v1/jobs?queue=burst&limit=200").await, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 100);

    // PostgreSQL refuses a NUL character in text: that caller fails, the others do not.
    if b == Backend::Postgres {
        let me = json_of(app.get("/v1/me").await, 200).await;
        let project = ProjectId::from_db(me["project_id"].as_str().unwrap().to_owned());
        let queue = QueueName::from_db("mixed".into());
        let calls: Vec<_> = (0..41)
            .map(|i| {
                let kind = if i == 20 { "bad\0kind" } else { "good" };
                let job = NewJob::local(queue.clone(), JobKind::from_db(kind.into()), json!(i));
                let (runtime, project) = (app.state.runtime.clone(), project.clone());
                tokio::spawn(async move { runtime.enqueue(&project, &[job]).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let r = call.await.unwrap();
            match i {
                20 => assert!(r.is_err(), "the NUL kind was stored"),
                _ => assert_eq!(r.unwrap()[0].job.payload, json!(i)),
            }
        }
        assert_eq!(counts(&app, "mixed").await["available"], 40);
    }
}

/// How many commits last wrote the jobs of `queue`: rows written together share the time
/// stamped in `column` (and, on PostgreSQL, their transaction id).
async fn commits_of(app: &crate::helpers::TestApp, queue: &str, column: &str) -> i64 {
    let sql = match app.state.db.backend() {
        Backend::Sqlite => format!("SELECT count(DISTINCT {column}) FROM jobs WHERE queue = $1"),
        Backend::Postgres => "SELECT count(DISTINCT xmin::text) FROM jobs WHERE queue = $1".into(),
    };
    let mut conn = app.state.db.read().await.unwrap();
    on_db!(conn.ex(), c => sqlx::query_scalar(&sql).bind(queue).fetch_one(c).await).unwrap()
}

/// Pull workers' claims, heartbeats and completions arriving together share commits; a stale
/// token among them is refused (409) and the others still go through.
async fn concurrent_claims_and_completions_share_commits(b: Backend) {
    let app = spawn_app(b).await;
    let jobs: Vec<Value> = (0..60)
        .map(|i| json!({"queue": "done", "kind": "k", "payload": {"n": i}}))
        .collect();
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await,
        201,
    )
    .await;
    // 60 workers claim one job each at once: every job goes to exactly one of them.
    let calls: Vec<_> = (0..60)
        .map(|w| {
            let req = app
                .req(reqwest::Method::POST, "/v1/queues/done/claim")
                .json(&json!({"worker": format!("w{w}"), "max": 1}));
            tokio::spawn(async move { req.send().await })
        })
        .collect();
    let mut claimed = Vec::new();
    for call in calls {
        let got = json_of(call.await.unwrap().unwrap(), 200).await;
        claimed.extend(got["jobs"].as_array().unwrap().iter().cloned());
    }
    let ids: std::collections::HashSet<&str> =
        claimed.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!((claimed.len(), ids.len()), (60, 60));
    if b == Backend::Postgres {
        // Claimed together: the claims' rows share transactions.
        let commits = commits_of(&app, "done", "started_at").await;
        assert!(commits <= 50, "{commits} commits for 60 concurrent claims");
    }
    // Their heartbeats at once: each lease extended (and progress kept) but a stale token's.
    let beats = lease_calls(
        &app,
        &claimed,
        "heartbeat",
        7,
        |i| json!({"progress": {"i": i}, "lease_ms": 120_000}),
    );
    for (i, beat) in beats.into_iter().enumerate() {
        let r = beat.await.unwrap().unwrap();
        match i {
            7 => drop(problem(r, 409, "stale-lease").await),
            _ => assert!(json_of(r, 200).await["lease_expires_at"].is_string()),
        }
    }
    let detail = json_of(
        app.get(&format!("/v1/jobs/{}", claimed[8]["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(detail["progress"]["i"], 8);
    let detail = json_of(
        app.get(&format!("/v1/jobs/{}", claimed[7]["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert!(
        detail["progress"].is_null(),
        "the stale heartbeat wrote progress"
    );
    if b == Backend::Postgres {
        let commits = commits_of(&app, "done", "started_at").await;
        assert!(
            commits <= 50,
            "{commits} commits for 60 concurrent heartbeats"
        );
    }
    let calls = lease_calls(
        &app,
        &claimed,
        "complete",
        30,
        |i| json!({"result": {"i": i}}),
    );
    for (i, call) in calls.into_iter().enumerate() {
        let r = call.await.unwrap().unwrap();
        if i == 30 {
            problem(r, 409, "stale-lease").await;
        } else {
            let job = json_of(r, 200).await;
            assert_eq!(job["id"], claimed[i]["id"], "each worker gets its own job");
            assert_eq!(
                (job["state"].as_str(), job["result"]["i"].as_u64()),
                (Some("completed"), Some(i as u64))
            );
        }
    }
    let c = counts(&app, "done").await;
    assert_eq!(
        (c["completed"].as_i64(), c["running"].as_i64()),
        (Some(59), Some(1))
    );
    // 59 completed rows and the one still running.
    let commits = commits_of(&app, "done", "finished_at").await;
    assert!(
        commits <= 50,
        "{commits} commits for 59 concurrent completions"
    );
}

/// Pull workers' failures arriving together share commits too: each is retried or failed
/// for good as its own request says, and a stale token among them is refused alone.
async fn concurrent_failures_share_commits(b: Backend) {
    let app = spawn_app(b).await;
    let jobs: Vec<Value> = (0..40)
        .map(|i| json!({"queue": "flaky", "kind": "k", "max_attempts": 3, "payload": {"n": i}}))
        .collect();
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await,
        201,
    )
    .await;
    // One worker holds them all: its queue lets a worker run 40 at once.
    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/flaky")
        .json(&json!({"concurrency": 40}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let claimed = claim(&app, "flaky", json!({"worker": "w", "max": 40})).await;
    assert_eq!(claimed.len(), 40);
    let calls = lease_calls(
        &app,
        &claimed,
        "fail",
        5,
        |i| json!({"error": format!("boom {i}"), "permanent": i % 2 == 0}),
    );
    for (i, call) in calls.into_iter().enumerate() {
        let r = call.await.unwrap().unwrap();
        if i == 5 {
            problem(r, 409, "stale-lease").await;
            continue;
        }
        let job = json_of(r, 200).await;
        assert_eq!(job["id"], claimed[i]["id"], "each worker gets its own job");
        let want = if i % 2 == 0 { "failed" } else { "retryable" };
        assert_eq!(
            (job["state"].as_str(), job["last_error"].as_str()),
            (Some(want), Some(format!("boom {i}").as_str()))
        );
    }
    let c = counts(&app, "flaky").await;
    assert_eq!(
        (
            c["failed"].as_i64(),
            c["retryable"].as_i64(),
            c["running"].as_i64()
        ),
        (Some(20), Some(19), Some(1))
    );
    let stale = json_of(
        app.get(&format!("/v1/jobs/{}", claimed[5]["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(
        (stale["state"].as_str(), stale["last_error"].as_str()),
        (Some("running"), None),
        "the stale failure wrote nothing"
    );
    if b == Backend::Postgres {
        let commits = commits_of(&app, "flaky", "").await;
        assert!(
            commits <= 30,
            "{commits} commits for 40 concurrent failures and one claim"
        );
    }
}

/// Sends `POST /v1/jobs/{id}/{action}` for every claimed job at once, with its lease token
/// (a wrong one for the job at `stale`) added to `body(i)`.
fn lease_calls(
    app: &crate::helpers::TestApp,
    claimed: &[Value],
    action: &str,
    stale: usize,
    body: impl Fn(usize) -> Value,
) -> Vec<tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>> {
    claimed
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let id = job["id"].as_str().unwrap();
            let mut body = body(i);
            body["lease_token"] = match i == stale {
                true => json!("1.not-the-token"),
                false => job["lease_token"].clone(),
            };
            let req = app
                .req(reqwest::Method::POST, &format!("/v1/jobs/{id}/{action}"))
                .json(&body);
            tokio::spawn(async move { req.send().await })
        })
        .collect()
}

/// Two jobs of one batch with the same `unique_key`: the second is the first job, not a
/// second one (its key was taken by a job not yet inserted when the second was looked at).
async fn one_batch_with_a_unique_key_twice_creates_one_job(b: Backend) {
    let app = spawn_app(b).await;
    let batch = json!({"jobs": [
        {"queue": "invoices", "kind": "issue", "unique_key": "order-7", "payload": {"n": 1}},
        {"queue": "invoices", "kind": "issue", "payload": {"n": 2}},
        {"queue": "invoices", "kind": "issue", "unique_key": "order-7", "payload": {"n": 3}},
    ]});
    let out = json_of(app.post("/v1/jobs/batch", &batch).await, 201).await;
    let jobs = out["jobs"].as_array().unwrap();
    assert_eq!(
        (jobs[0]["created"].as_bool(), jobs[2]["created"].as_bool()),
        (Some(true), Some(false)),
        "{out}"
    );
    assert_eq!(jobs[2]["id"], jobs[0]["id"], "{out}");
    assert_eq!(counts(&app, "invoices").await["available"], 2);
    let listed = json_of(app.get("/v1/jobs?queue=invoices").await, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");
    // A later single enqueue with the key still gets that job.
    let r = app
        .post(
            "/v1/jobs",
            &json!({"queue": "invoices", "kind": "issue", "unique_key": "order-7"}),
        )
        .await;
    assert_eq!(json_of(r, 200).await["id"], jobs[0]["id"]);
}

/// A settings change racing a pause must not undo it (nor the pause the change): each
/// reads the queue's settings and writes them back, so on PostgreSQL under READ COMMITTED
/// the second writer used to write what it read before the first committed.
async fn settings_changes_racing_a_pause_keep_both(b: Backend) {
    let app = spawn_app(b).await;
    let patch = |concurrency: i64| {
        app.req(reqwest::Method::PATCH, "/v1/queues/race")
            .json(&json!({ "concurrency": concurrency }))
            .send()
    };
    json_of(patch(1).await.unwrap(), 200).await;
    for i in 2..42 {
        json_of(app.post("/v1/queues/race/resume", &json!({})).await, 200).await;
        let empty = json!({});
        let (changed, paused) = tokio::join!(patch(i), app.post("/v1/queues/race/pause", &empty));
        json_of(changed.unwrap(), 200).await;
        json_of(paused, 200).await;
        let q = json_of(app.get("/v1/queues/race").await, 200).await;
        assert_eq!(
            (q["paused"].as_bool(), q["concurrency"].as_i64()),
            (Some(true), Some(i)),
            "round {i}: one of the two writes was lost: {q}"
        );
    }
}

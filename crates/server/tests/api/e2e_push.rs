//! Jobs Switchboard runs itself: HTTP push to a target (checked against a fake server that
//! verifies the Standard Webhooks signature on its own) and in-process Rust handlers.

use crate::both;
use crate::helpers::{json_of, spawn_app, spawn_runtime, wait_for, TestApp};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::db::Backend;
use switchboard_queue::runtime::{JobContext, JobError, Runtime};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

both!(
    push_signed_and_completed,
    push_retries_and_failures,
    in_process_handlers_with_concurrency,
    heartbeats_keep_long_jobs_and_cancel_reaches_handlers,
    late_critical_job_overtakes_the_backlog,
    pause_reaches_the_dispatcher_at_once,
    queue_keeping_no_completed_jobs_deletes_them_on_completion
);

/// Verifies `webhook-signature` exactly as a receiving app would.
struct SignedWith(String);

impl wiremock::Match for SignedWith {
    fn matches(&self, req: &Request) -> bool {
        let get = |h: &str| {
            req.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (Some(id), Some(ts), Some(sig)) = (
            get("webhook-id"),
            get("webhook-timestamp"),
            get("webhook-signature"),
        ) else {
            return false;
        };
        let Ok(ts_num) = ts.parse::<i64>() else {
            return false;
        };
        if (jiff::Timestamp::now().as_second() - ts_num).abs() > 300 {
            return false;
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(self.0.trim_start_matches("whsec_"))
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(&req.body);
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        sig.split(' ').any(|s| s == format!("v1,{expected}"))
    }
}

async fn secret(app: &TestApp) -> String {
    json_of(app.get("/v1/queues/push-secret").await, 200).await["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn push_signed_and_completed(b: Backend) {
    let app = spawn_app(b).await;
    let target = MockServer::start().await;
    let secret = secret(&app).await;
    assert!(secret.starts_with("whsec_"));
    Mock::given(method("POST"))
        .and(path("/hooks/jobs"))
        .and(header("content-type", "application/json"))
        .and(header("x-tenant", "acme"))
        .and(SignedWith(secret.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"handled": true})))
        .expect(1)
        .mount(&target)
        .await;
    let job = json_of(
        app.post("/v1/jobs", &json!({
            "queue": "webhooks", "kind": "order.paid", "payload": {"order": 42},
            "target": {"url": format!("{}/hooks/jobs", target.uri()), "headers": {"x-tenant": "acme"}}
        })).await,
        201,
    )
    .await;
    assert_eq!(job["runner"], "push");
    let id = job["id"].as_str().unwrap();
    let done = wait_for(&app, &format!("/v1/jobs/{id}"), 10, |j| {
        j["state"] == "completed"
    })
    .await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["result"]["handled"], true);
    let received = &target.received_requests().await.unwrap()[0];
    assert_eq!(received.headers["webhook-id"], id);
    let body: Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(body["payload"]["order"], 42);
    assert_eq!(body["kind"], "order.paid");
    assert_eq!(body["attempt"], 1);
    // A pull worker never sees push jobs.
    let claimed = json_of(
        app.post("/v1/queues/webhooks/claim", &json!({"worker": "w"}))
            .await,
        200,
    )
    .await;
    assert!(claimed["jobs"].as_array().unwrap().is_empty());
}

async fn push_retries_and_failures(b: Backend) {
    let app = spawn_app(b).await;
    let target = MockServer::start().await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&target)
        .await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    Mock::given(path("/reject"))
        .respond_with(ResponseTemplate::new(400).set_body_string("bad payload"))
        .mount(&target)
        .await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&target)
        .await;
    let push = |p: &str, extra: Value| {
        let mut body = json!({"queue": "outbound", "kind": "send", "backoff": {"type": "fixed", "delay_ms": 0}, "target": {"url": format!("{}{p}", target.uri())}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let flaky = json_of(app.post("/v1/jobs", &push("/flaky", json!({}))).await, 201).await;
    let reject = json_of(app.post("/v1/jobs", &push("/reject", json!({}))).await, 201).await;
    let slow = json_of(
        app.post(
            "/v1/jobs",
            &push("/slow", json!({"timeout_ms": 300, "max_attempts": 1})),
        )
        .await,
        201,
    )
    .await;

    let id = flaky["id"].as_str().unwrap();
    let done = wait_for(&app, &format!("/v1/jobs/{id}"), 10, |j| {
        j["state"] == "completed"
    })
    .await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["attempt"], 2);
    assert!(done["errors"][0]["error"].as_str().unwrap().contains("503"));

    let id = reject["id"].as_str().unwrap();
    let failed = wait_for(&app, &format!("/v1/jobs/{id}"), 10, |j| {
        j["state"] == "failed"
    })
    .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["attempt"], 1, "a 4xx is not retried");
    assert!(failed["last_error"].as_str().unwrap().contains("400"));

    let id = slow["id"].as_str().unwrap();
    let timed_out = wait_for(&app, &format!("/v1/jobs/{id}"), 10, |j| {
        j["state"] == "failed"
    })
    .await;
    assert!(
        timed_out["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{timed_out}"
    );
}

async fn in_process_handlers_with_concurrency(b: Backend) {
    let now_running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (nr, pk) = (now_running.clone(), peak.clone());
    let runtime = Runtime::builder()
        .handler("double", |ctx: JobContext| async move {
            let n = ctx.job.payload["n"]
                .as_i64()
                .ok_or_else(|| JobError::permanent("n is missing"))?;
            Ok(Some(json!({"value": n * 2})))
        })
        .handler("slow", move |_ctx: JobContext| {
            let (nr, pk) = (nr.clone(), pk.clone());
            async move {
                let now = nr.fetch_add(1, Ordering::SeqCst) + 1;
                pk.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(250)).await;
                nr.fetch_sub(1, Ordering::SeqCst);
                Ok(None)
            }
        });
    let app = spawn_runtime(b, runtime).await;
    let job = json_of(
        app.post(
            "/v1/jobs",
            &json!({"queue": "math", "kind": "double", "payload": {"n": 21}}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(job["runner"], "local");
    let id = job["id"].as_str().unwrap();
    let done = wait_for(&app, &format!("/v1/jobs/{id}"), 10, |j| {
        j["state"] == "completed"
    })
    .await;
    assert_eq!(done["result"]["value"], 42);
    let bad = json_of(
        app.post(
            "/v1/jobs",
            &json!({"queue": "math", "kind": "double", "payload": {}}),
        )
        .await,
        201,
    )
    .await;
    let id = bad["id"].as_str().unwrap();
    let failed = wait_for(&app, &format!("/v1/jobs/{id}"), 10, |j| {
        j["state"] == "failed"
    })
    .await;
    assert_eq!(failed["last_error"], "n is missing");

    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/media")
        .json(&json!({"concurrency": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let jobs: Vec<Value> = (0..6)
        .map(|_| json!({"queue": "media", "kind": "slow"}))
        .collect();
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await,
        201,
    )
    .await;
    let q = wait_for(&app, "/v1/queues/media", 15, |q| {
        q["counts"]["completed"] == 6
    })
    .await;
    assert_eq!(q["counts"]["completed"], 6, "{q}");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "per-node concurrency of the queue"
    );
}

async fn heartbeats_keep_long_jobs_and_cancel_reaches_handlers(b: Backend) {
    let returned = Arc::new(tokio::sync::Notify::new());
    let r = returned.clone();
    let runtime = Runtime::builder()
        .handler("long", |_ctx: JobContext| async {
            tokio::time::sleep(Duration::from_millis(2000)).await;
            Ok(Some(json!({"done": true})))
        })
        .handler("quick", |_ctx: JobContext| async { Ok(None) })
        .handler("until-cancelled", move |mut ctx: JobContext| {
            let r = r.clone();
            async move {
                let _ = ctx.cancelled.wait_for(|c| *c).await;
                r.notify_one();
                Ok(Some(json!({"finished": "after cancel"})))
            }
        });
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(b, dir.path()).await;
    // Lease 800 ms (two intervals): the job outlives it 2.5 times, so only heartbeats keep
    // it; each may come up to an interval late.
    config.job_heartbeat_ms = 400;
    let app = crate::helpers::spawn_full(config, Some(dir), runtime).await;

    let long = json_of(
        app.post("/v1/jobs", &json!({"queue": "long", "kind": "long"}))
            .await,
        201,
    )
    .await;
    let id = long["id"].as_str().unwrap();
    let done = wait_for(&app, &format!("/v1/jobs/{id}"), 10, |j| {
        j["state"] == "completed"
    })
    .await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(
        done["attempt"], 1,
        "heartbeats kept the lease: never rescued"
    );
    assert!(done["errors"].as_array().unwrap().is_empty());

    let job = json_of(
        app.post(
            "/v1/jobs",
            &json!({"queue": "long", "kind": "until-cancelled"}),
        )
        .await,
        201,
    )
    .await;
    let id = job["id"].as_str().unwrap();
    wait_for(&app, &format!("/v1/jobs/{id}"), 10, |j| {
        j["state"] == "running"
    })
    .await;
    let c = json_of(
        app.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await,
        200,
    )
    .await;
    assert_eq!(c["state"], "cancelled");
    // The handler learns it (from the next heartbeat) and returns; its result is dropped.
    tokio::time::timeout(Duration::from_secs(10), returned.notified())
        .await
        .expect("the handler saw the cancel");
    // Outcomes are recorded in order: once a job finished later is, the handler's would be.
    let later = json_of(
        app.post("/v1/jobs", &json!({"queue": "long", "kind": "quick"}))
            .await,
        201,
    )
    .await;
    let later = later["id"].as_str().unwrap();
    let done = wait_for(&app, &format!("/v1/jobs/{later}"), 10, |j| {
        j["state"] == "completed"
    })
    .await;
    assert_eq!(done["state"], "completed");
    let after = json_of(app.get(&format!("/v1/jobs/{id}")).await, 200).await;
    assert_eq!(
        after["state"], "cancelled",
        "the handler's late result is discarded: {after}"
    );
    assert!(after["result"].is_null());
}

/// A critical job enqueued behind a backlog the runtime has started on is the next job it
/// claims. (On PostgreSQL claims read on from where the last one stopped; the job's
/// announcement must send the next claim back to the top of the queue.)
async fn late_critical_job_overtakes_the_backlog(b: Backend) {
    let started: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (s, g) = (started.clone(), gate.clone());
    let runtime = Runtime::builder().handler("step", move |ctx: JobContext| {
        let (s, g) = (s.clone(), g.clone());
        async move {
            let name = ctx.job.payload["name"].as_str().unwrap_or("?").to_owned();
            s.lock().unwrap_or_else(|p| p.into_inner()).push(name);
            if let Ok(permit) = g.acquire().await {
                permit.forget();
            }
            Ok(None)
        }
    });
    let app = spawn_runtime(b, runtime).await;
    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/line")
        .json(&json!({"concurrency": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let backlog: Vec<Value> = (0..10)
        .map(|i| json!({"queue": "line", "kind": "step", "payload": {"name": format!("n{i}")}}))
        .collect();
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": backlog})).await,
        201,
    )
    .await;
    let seen = |n: usize| {
        let started = started.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while started.lock().unwrap_or_else(|p| p.into_inner()).len() < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{n} jobs never started"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    seen(1).await;
    json_of(
        app.post(
            "/v1/jobs",
            &json!({"queue": "line", "kind": "step", "priority": "critical", "payload": {"name": "c"}}),
        )
        .await,
        201,
    )
    .await;
    if b == Backend::Postgres {
        // Its announcement (NOTIFY) has reached the runtime, which keeps it until its next
        // claim of the queue (it holds two jobs of this one-slot queue, so it claims nothing
        // before a gate opens).
        let me = json_of(app.get("/v1/me").await, 200).await;
        let project = me["project_id"].as_str().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while app
            .state
            .runtime
            .wakeups()
            .announced(project, "line")
            .flatten()
            .is_none_or(|first| first.priority != 0)
        {
            assert!(std::time::Instant::now() < deadline, "never announced");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for n in 2..=4 {
        gate.add_permits(1);
        seen(n).await;
    }
    gate.add_permits(100);
    let all = wait_for(&app, "/v1/jobs?queue=line&state=completed", 10, |v| {
        v["data"].as_array().map(|a| a.len()) == Some(11)
    })
    .await;
    let jobs = all["data"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 11, "{all}");
    // Claims stamp `started_at`; handlers of jobs already in hand may start in any order, so
    // the claim order is what is checked. The runtime held two jobs of this one-slot queue
    // when the critical job arrived (n0 and n1); the claim after one of them finished must
    // take the critical job, not n2.
    let claimed_at = |name: &str| {
        jobs.iter()
            .find(|j| j["payload"]["name"] == name)
            .and_then(|j| j["started_at"].as_str())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .expect("started_at")
    };
    let c = claimed_at("c");
    let before: Vec<String> = (0..10)
        .map(|i| format!("n{i}"))
        .filter(|n| claimed_at(n) < c)
        .collect();
    assert_eq!(
        before,
        vec!["n0", "n1"],
        "critical job claimed after {before:?}"
    );
}

/// `keep_completed_secs: 0` (BullMQ's `removeOnComplete`): a job is deleted when it
/// completes, with the errors of its earlier attempts; counters and throughput still add up,
/// and a queue that keeps completed jobs is not affected.
async fn queue_keeping_no_completed_jobs_deletes_them_on_completion(b: Backend) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let runtime = Runtime::builder()
        .handler("flaky", move |_ctx: JobContext| {
            let a = a.clone();
            async move {
                if a.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(JobError::retry("first attempt fails"))
                } else {
                    Ok(None)
                }
            }
        })
        .handler("plain", |_ctx: JobContext| async { Ok(None) });
    let app = spawn_runtime(b, runtime).await;
    for (queue, keep) in [("gone", 0), ("kept", 3600)] {
        let r = app
            .req(reqwest::Method::PATCH, &format!("/v1/queues/{queue}"))
            .json(&json!({"keep_completed_secs": keep}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let flaky = json_of(
        app.post(
            "/v1/jobs",
            &json!({"queue": "gone", "kind": "flaky", "backoff": {"type": "fixed", "delay_ms": 10}}),
        )
        .await,
        201,
    )
    .await;
    let plain = json_of(
        app.post("/v1/jobs", &json!({"queue": "gone", "kind": "plain"}))
            .await,
        201,
    )
    .await;
    let kept = json_of(
        app.post("/v1/jobs", &json!({"queue": "kept", "kind": "plain"}))
            .await,
        201,
    )
    .await;
    for job in [&flaky, &plain] {
        let id = job["id"].as_str().unwrap();
        let mut status = 0;
        for _ in 0..200 {
            status = app.get(&format!("/v1/jobs/{id}")).await.status().as_u16();
            if status == 404 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(status, 404, "job {id} should be gone once completed");
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let id = kept["id"].as_str().unwrap();
    let done = wait_for(&app, &format!("/v1/jobs/{id}"), 10, |j| {
        j["state"] == "completed"
    })
    .await;
    assert_eq!(done["state"], "completed");
    let gone = json_of(app.get("/v1/queues/gone").await, 200).await;
    for state in ["available", "running", "retryable", "completed"] {
        assert_eq!(
            gone["counts"][state].as_i64().unwrap_or(0),
            0,
            "{state}: {gone}"
        );
    }
    assert_eq!(gone["completed_last_minute"], 2, "{gone}");
    let kept = json_of(app.get("/v1/queues/kept").await, 200).await;
    assert_eq!(kept["counts"]["completed"], 1, "{kept}");
    // The first attempt's error went with the job.
    let mut conn = app.state.db.read().await.unwrap();
    let left = switchboard_queue::store::attempt_errors(
        conn.ex(),
        &switchboard_queue::JobId::from_db(flaky["id"].as_str().unwrap().to_owned()),
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// The dispatcher claims from a woken queue on the settings it read a moment ago; a pause
/// through this node must still stop it at once (the job enqueued right after the pause
/// stays available), and resume lets it run.
async fn pause_reaches_the_dispatcher_at_once(b: Backend) {
    let runtime = Runtime::builder().handler("tick", |_ctx: JobContext| async { Ok(None) });
    let app = spawn_runtime(b, runtime).await;
    // The dispatcher has read the queue's settings and claimed from it.
    let first = enqueue_tick(&app).await;
    let done = wait_for(&app, &format!("/v1/jobs/{first}"), 10, |j| {
        j["state"] == "completed"
    })
    .await;
    assert_eq!(done["state"], "completed");
    json_of(app.post("/v1/queues/ticks/pause", &json!({})).await, 200).await;
    let second = enqueue_tick(&app).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let held = json_of(app.get(&format!("/v1/jobs/{second}")).await, 200).await;
    assert_eq!(held["state"], "available", "ran in a paused queue: {held}");
    json_of(app.post("/v1/queues/ticks/resume", &json!({})).await, 200).await;
    let done = wait_for(&app, &format!("/v1/jobs/{second}"), 10, |j| {
        j["state"] == "completed"
    })
    .await;
    assert_eq!(done["state"], "completed");
}

async fn enqueue_tick(app: &TestApp) -> String {
    let job = json_of(
        app.post("/v1/jobs", &json!({"queue": "ticks", "kind": "tick"}))
            .await,
        201,
    )
    .await;
    job["id"].as_str().unwrap().to_owned()
}

//! One tenant must not starve the others: the dispatcher and the cron tick serve every
//! project in turn whatever one project holds.

use crate::both;
use crate::helpers::{json_of, problem, spawn_full, spawn_with, test_config, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchboard_core::db::Backend;
use switchboard_core::id::ProjectId;
use switchboard_queue::cron::{Misfire, Overlap, Schedule};
use switchboard_queue::runtime::{JobContext, Runtime, Tracked};
use switchboard_queue::ScheduleId;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

both!(
    thousands_of_pull_queues_do_not_starve_another_project,
    many_due_schedules_do_not_delay_another_project,
    queues_per_project_are_capped,
    concurrent_creators_cannot_pass_the_queue_cap,
    schedules_per_project_are_capped,
    idle_queues_are_forgotten_by_the_runtime,
    migration_0007_recounts_available_jobs_by_runner
);

/// A second project; returns its key.
async fn second_project(app: &TestApp) -> String {
    let created = json_of(
        app.post("/v1/projects", &json!({"name": "neighbour"}))
            .await,
        201,
    )
    .await;
    created["api_key"]["secret"].as_str().unwrap().to_owned()
}

/// POST as another project's key.
async fn post_as(app: &TestApp, key: &str, path: &str, body: &Value) -> reqwest::Response {
    app.req_as(reqwest::Method::POST, path, key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// GET as another project's key, until `done` holds or `secs` pass; the last body.
async fn wait_as(
    app: &TestApp,
    key: &str,
    path: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = app
            .req_as(reqwest::Method::GET, path, key)
            .send()
            .await
            .unwrap();
        let v = json_of(r, 200).await;
        if done(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Project A holds 5,000 queues of one pull job each (jobs the runtime never runs);
/// project B's push and in-process jobs must still run at once. The dispatcher used to take
/// 1,000 queues with available jobs of any runner, in no particular order: A's filled them.
async fn thousands_of_pull_queues_do_not_starve_another_project(b: Backend) {
    let runtime = Runtime::builder().handler("work", |_ctx: JobContext| async { Ok(None) });
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(b, dir.path()).await;
    config.max_queues_per_project = 10_000;
    let app = spawn_full(config, Some(dir), runtime).await;
    let pull: Vec<Value> = (0..5_000)
        .map(|i| json!({"queue": format!("a-{i:04}"), "kind": "for-pull-workers"}))
        .collect();
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": pull})).await,
        201,
    )
    .await;

    let key_b = second_project(&app).await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&target)
        .await;
    let push = json_of(
        post_as(
            &app,
            &key_b,
            "/v1/jobs",
            &json!({"queue": "b-push", "kind": "hook", "target": {"url": format!("{}/hook", target.uri())}}),
        )
        .await,
        201,
    )
    .await;
    let local = json_of(
        post_as(
            &app,
            &key_b,
            "/v1/jobs",
            &json!({"queue": "b-local", "kind": "work"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        (push["runner"].as_str(), local["runner"].as_str()),
        (Some("push"), Some("local"))
    );
    let start = Instant::now();
    for job in [&push, &local] {
        let id = job["id"].as_str().unwrap();
        let done = wait_as(&app, &key_b, &format!("/v1/jobs/{id}"), 20, |j| {
            j["state"] == "completed"
        })
        .await;
        assert_eq!(done["state"], "completed", "{done}");
    }
    // Both ran as soon as they were enqueued (well within the 20 s waited at most: "a
    // couple of seconds", with room for a loaded machine).
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "project B's jobs took {:?}",
        start.elapsed()
    );
    // A's jobs are still there for pull workers.
    let q = json_of(app.get("/v1/queues/a-4999").await, 200).await;
    assert_eq!(q["counts"]["available"], 1, "{q}");
}

/// Project A has 600 per-second schedules, all overdue; project B's per-second schedule
/// must still get its first job within a few seconds of being due. The tick used to take
/// the 100 longest-due schedules per second across projects, so B waited until A's backlog
/// was worked off (six passes of 100, at least five seconds).
async fn many_due_schedules_do_not_delay_another_project(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(b, dir.path()).await;
    let app = spawn_full(config, Some(dir), Runtime::builder()).await;
    let me = json_of(app.get("/v1/me").await, 200).await;
    let project_a = ProjectId::from_db(me["project_id"].as_str().unwrap().to_owned());
    // Inserted directly, due a minute ago (through the API they would start due from the
    // next second, one by one).
    let now = switchboard_core::time::now();
    let overdue = switchboard_core::time::from_db(switchboard_core::time::to_db(now) - 60_000_000);
    let mut tx = app.state.db.begin().await.unwrap();
    for i in 0..600 {
        let s = Schedule {
            id: ScheduleId::generate(),
            name: format!("a-{i}"),
            cron: "* * * * * *".into(),
            timezone: "UTC".into(),
            job: json!({"queue": "a-ticks", "kind": "tick"}),
            misfire: Misfire::RunOnce,
            backfill_limit: 10,
            overlap: Overlap::Allow,
            paused: false,
            next_run_at: overdue,
            last_run_at: None,
            last_job_id: None,
            created_at: now,
        };
        switchboard_queue::schedules::save(tx.ex(), &project_a, &s, true)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let key_b = second_project(&app).await;
    let s = json_of(
        post_as(
            &app,
            &key_b,
            "/v1/schedules",
            &json!({"name": "b", "cron": "* * * * * *", "job": {"queue": "b-ticks", "kind": "tick"}}),
        )
        .await,
        201,
    )
    .await;
    let due: jiff::Timestamp = s["next_run_at"].as_str().unwrap().parse().unwrap();
    let tag = format!("schedule:{}", s["id"].as_str().unwrap());
    let jobs = wait_as(&app, &key_b, &format!("/v1/jobs?tag={tag}"), 20, |v| {
        !v["data"].as_array().unwrap().is_empty()
    })
    .await;
    let first = jobs["data"]
        .as_array()
        .unwrap()
        .last()
        .unwrap_or_else(|| panic!("no job of B's schedule in 20 s: {jobs}"));
    let created: jiff::Timestamp = first["created_at"].as_str().unwrap().parse().unwrap();
    let late = created.duration_since(due);
    assert!(
        late < jiff::SignedDuration::from_secs(3),
        "B's first tick ran {late:?} after it was due"
    );
}

async fn queue_names(app: &TestApp) -> Vec<String> {
    let v = json_of(app.get("/v1/queues").await, 200).await;
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A project may have `max_queues_per_project` queues: whatever would create more (an
/// enqueue, a batch, queue settings, a schedule's run) is refused with 409 `queue-limit`
/// and writes nothing; existing queues take jobs as before, and other projects are not
/// affected.
async fn queues_per_project_are_capped(b: Backend) {
    let app = spawn_with(b, |c| c.max_queues_per_project = 3).await;
    for q in ["q1", "q2"] {
        json_of(
            app.post("/v1/jobs", &json!({"queue": q, "kind": "k"}))
                .await,
            201,
        )
        .await;
    }
    let batch = json!({"jobs": [
        {"queue": "q1", "kind": "k"}, {"queue": "q3", "kind": "k"}, {"queue": "q4", "kind": "k"}
    ]});
    let p = problem(app.post("/v1/jobs/batch", &batch).await, 409, "queue-limit").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("at most 3"), "{p}");
    assert_eq!(queue_names(&app).await, ["q1", "q2"]);
    let q1 = json_of(app.get("/v1/queues/q1").await, 200).await;
    assert_eq!(
        q1["counts"]["available"], 1,
        "nothing of the batch written: {q1}"
    );

    json_of(
        app.post("/v1/jobs", &json!({"queue": "q3", "kind": "k"}))
            .await,
        201,
    )
    .await;
    problem(
        app.post("/v1/jobs", &json!({"queue": "q4", "kind": "k"}))
            .await,
        409,
        "queue-limit",
    )
    .await;
    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/q5")
        .json(&json!({"concurrency": 2}))
        .send()
        .await
        .unwrap();
    problem(r, 409, "queue-limit").await;
    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/q3")
        .json(&json!({"concurrency": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 200).await["concurrency"], 2);
    // A schedule into a new queue is saved, but its runs are refused while the cap holds.
    let s = json_of(
        app.post(
            "/v1/schedules",
            &json!({"name": "nightly", "cron": "0 2 * * *", "job": {"queue": "q6", "kind": "k"}}),
        )
        .await,
        201,
    )
    .await;
    let id = s["id"].as_str().unwrap();
    problem(
        app.post(&format!("/v1/schedules/{id}/trigger"), &json!({}))
            .await,
        409,
        "queue-limit",
    )
    .await;
    // Existing queues take jobs, one at a time or in batches.
    let batch = json!({"jobs": [{"queue": "q1", "kind": "k"}, {"queue": "q3", "kind": "k"}]});
    json_of(app.post("/v1/jobs/batch", &batch).await, 201).await;
    assert_eq!(queue_names(&app).await, ["q1", "q2", "q3"]);
    let mut listed = 0;
    for q in ["q1", "q2", "q3"] {
        let v = json_of(app.get(&format!("/v1/jobs?queue={q}")).await, 200).await;
        listed += v["data"].as_array().unwrap().len();
    }
    assert_eq!(listed, 5);
    // The cap is per project.
    let key_b = second_project(&app).await;
    for q in ["q4", "q5", "q6"] {
        json_of(
            post_as(&app, &key_b, "/v1/jobs", &json!({"queue": q, "kind": "k"})).await,
            201,
        )
        .await;
    }
}

/// Twenty requests at once, each creating a queue, against a cap of five: exactly as many
/// succeed as the cap leaves room for (the count and the creation are one step per
/// project).
async fn concurrent_creators_cannot_pass_the_queue_cap(b: Backend) {
    let app = spawn_with(b, |c| c.max_queues_per_project = 5).await;
    json_of(
        app.post("/v1/jobs", &json!({"queue": "first", "kind": "k"}))
            .await,
        201,
    )
    .await;
    // Half enqueue into a new queue, half create one through its settings.
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let req = if i % 2 == 0 {
                app.req(reqwest::Method::POST, "/v1/jobs")
                    .json(&json!({"queue": format!("new-{i}"), "kind": "k"}))
            } else {
                app.req(reqwest::Method::PATCH, &format!("/v1/queues/new-{i}"))
                    .json(&json!({"concurrency": 3}))
            };
            tokio::spawn(async move { req.send().await })
        })
        .collect();
    let mut created = 0;
    for r in sends {
        let r = r.await.unwrap().unwrap();
        match r.status().as_u16() {
            200 | 201 => created += 1,
            _ => {
                problem(r, 409, "queue-limit").await;
            }
        }
    }
    assert_eq!(created, 4, "one queue existed, the cap is five");
    assert_eq!(queue_names(&app).await.len(), 5);
}

/// A project may have `max_schedules_per_project` schedules, of which
/// `max_frequent_schedules_per_project` may fire more than once a minute: creating or
/// changing one past either cap is refused with 409 `schedule-limit` and writes nothing.
async fn schedules_per_project_are_capped(b: Backend) {
    let app = spawn_with(b, |c| {
        c.max_schedules_per_project = 3;
        c.max_frequent_schedules_per_project = 1;
    })
    .await;
    let create = |name: &str, cron: &str| {
        app.req(reqwest::Method::POST, "/v1/schedules")
            .json(&json!({"name": name, "cron": cron, "job": {"queue": "ticks", "kind": "k"}}))
            .send()
    };
    json_of(create("every-second", "* * * * * *").await.unwrap(), 201).await;
    let p = problem(
        create("every-ten", "*/10 * * * * *").await.unwrap(),
        409,
        "schedule-limit",
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("more than once a minute"),
        "{p}"
    );
    // Once a minute is not frequent, with five fields or six.
    json_of(create("every-minute", "* * * * *").await.unwrap(), 201).await;
    let hourly = json_of(create("hourly", "30 0 * * * *").await.unwrap(), 201).await;
    let p = problem(
        create("daily", "0 2 * * *").await.unwrap(),
        409,
        "schedule-limit",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("3 schedules"), "{p}");
    // Changing a schedule to fire every second counts too; other changes do not.
    let id = hourly["id"].as_str().unwrap();
    let r = app
        .req(reqwest::Method::PATCH, &format!("/v1/schedules/{id}"))
        .json(&json!({"cron": "* * * * * *"}))
        .send()
        .await
        .unwrap();
    problem(r, 409, "schedule-limit").await;
    let r = app
        .req(reqwest::Method::PATCH, &format!("/v1/schedules/{id}"))
        .json(&json!({"cron": "15 0 * * * *"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 200).await["cron"], "15 0 * * * *");
    let list = json_of(app.get("/v1/schedules").await, 200).await;
    let crons: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cron"].as_str().unwrap())
        .collect();
    // (Listed by name.)
    assert_eq!(
        crons,
        ["* * * * *", "* * * * * *", "15 0 * * * *"],
        "{list}"
    );
    // The cap is per project.
    let key_b = second_project(&app).await;
    json_of(
        post_as(
            &app,
            &key_b,
            "/v1/schedules",
            &json!({"name": "b", "cron": "* * * * * *", "job": {"queue": "t", "kind": "k"}}),
        )
        .await,
        201,
    )
    .await;
}

/// What the runtime keeps per queue (slots, wake-up notifiers, announcements, settings) is
/// dropped once the queue has been idle for `Timing::idle`, so it does not grow with every
/// queue ever used.
async fn idle_queues_are_forgotten_by_the_runtime(b: Backend) {
    let timing = switchboard_queue::runtime::Timing {
        idle: Duration::from_millis(500),
        ..Default::default()
    };
    let runtime = Runtime::builder()
        .timing(timing)
        .handler("work", |_ctx: JobContext| async { Ok(None) });
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(b, dir.path()).await;
    let app = spawn_full(config, Some(dir), runtime).await;
    // Long-polling pull workers on other queues each hold a notifier while they wait.
    let waiting: Vec<_> = (0..10)
        .map(|i| {
            let req = app
                .req(reqwest::Method::POST, &format!("/v1/queues/pull-{i}/claim"))
                .json(&json!({"worker": "w", "wait_ms": 1500}));
            tokio::spawn(async move { req.send().await })
        })
        .collect();
    // Jobs the runtime runs, and (on PostgreSQL announced to it too) jobs for pull workers
    // it never claims.
    let mut jobs: Vec<Value> = (0..40)
        .map(|i| json!({"queue": format!("burst-{i}"), "kind": "work"}))
        .collect();
    jobs.extend((0..20).map(|i| json!({"queue": format!("for-pull-{i}"), "kind": "other"})));
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await,
        201,
    )
    .await;
    // Taken up: the queues' slots, the waiting claims' notifiers, the announcements.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = app.state.runtime.tracked();
        if t.slots > 0 && t.notifiers > 10 && (b == Backend::Sqlite || t.announced >= 20) {
            break;
        }
        assert!(Instant::now() < deadline, "never taken up: {t:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for w in waiting {
        json_of(w.await.unwrap().unwrap(), 200).await;
    }
    // All done and idle: forgotten (the dispatcher's own notifier stays).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = app.state.runtime.tracked();
        let done = json_of(app.get("/v1/queues").await, 200).await["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["counts"]["completed"] == 1)
            .count();
        let forgotten = Tracked {
            slots: 0,
            notifiers: 1,
            announced: 0,
            settings: 0,
        };
        if done == 40 && t == forgotten {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still kept after 20 s: {t:?} ({done} queues done)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Migration 0007 splits the available counters of an existing installation: available
/// jobs for pull workers under `available:pull`, the others under `available`, recounted
/// from the jobs. Here the counters are first put back the way earlier versions kept them
/// (all available jobs under `available`, and off by some drift), then the migration's SQL
/// runs again.
async fn migration_0007_recounts_available_jobs_by_runner(b: Backend) {
    let target = MockServer::start().await;
    let app = spawn_with(b, |c| c.run_jobs = false).await;
    let pull: Vec<Value> = (0..3)
        .map(|_| json!({"queue": "mixed", "kind": "p"}))
        .collect();
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": pull})).await,
        201,
    )
    .await;
    json_of(
        app.post(
            "/v1/jobs",
            &json!({"queue": "mixed", "kind": "h", "target": {"url": format!("{}/h", target.uri())}}),
        )
        .await,
        201,
    )
    .await;
    let counters = |app: &TestApp| {
        let db = app.state.db.clone();
        async move {
            let mut conn = db.read().await.unwrap();
            let rows: Vec<(String, i64)> = switchboard_core::on_db!(conn.ex(), c => {
                let rows = sqlx::query("SELECT state, CAST(SUM(n) AS BIGINT) AS n FROM queue_counts \
                     WHERE queue = 'mixed' AND state LIKE 'available%' GROUP BY state ORDER BY state")
                    .fetch_all(c).await.unwrap();
                rows.iter().map(|r| {
                    use sqlx::Row;
                    (r.get::<String, _>("state"), r.get::<i64, _>("n"))
                }).collect()
            });
            rows
        }
    };
    let split = vec![
        ("available".to_owned(), 1),
        ("available:pull".to_owned(), 3),
    ];
    assert_eq!(counters(&app).await, split);
    // As before the migration, and drifted.
    let mut tx = app.state.db.begin().await.unwrap();
    switchboard_core::on_db!(tx.ex(), c => {
        sqlx::query("DELETE FROM queue_counts WHERE queue = 'mixed' AND state LIKE 'available%'")
            .execute(&mut *c).await.unwrap();
        sqlx::query("INSERT INTO queue_counts (project_id, queue, state, shard, n) \
             SELECT id, 'mixed', 'available', 0, 7 FROM projects")
            .execute(&mut *c).await.unwrap();
    });
    tx.commit().await.unwrap();
    let sql = match b {
        Backend::Sqlite => include_str!("../../../../migrations/sqlite/0007_pull_counts.sql"),
        Backend::Postgres => include_str!("../../../../migrations/postgres/0007_pull_counts.sql"),
    };
    let mut tx = app.state.db.begin().await.unwrap();
    switchboard_core::on_db!(tx.ex(), c => {
        sqlx::raw_sql(sql).execute(&mut *c).await.unwrap();
    });
    tx.commit().await.unwrap();
    assert_eq!(counters(&app).await, split);
    let q = json_of(app.get("/v1/queues/mixed").await, 200).await;
    assert_eq!(q["counts"]["available"], 4, "{q}");
}

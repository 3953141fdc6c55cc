//! Built-in job kinds: a worker-only node (built as `switchboard worker` builds it) runs a
//! kind registered through `builtins::register`, whose handler works with the job's project
//! and the database; jobs enqueued inside a caller's transaction start when it commits, not
//! at the next poll; and callers cannot use the reserved `sb.` names.

use crate::both;
use crate::helpers::{json_of, problem, spawn_full, spawn_with, test_config, TestApp};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::audit::{self, Actor, AuditContext, Change};
use switchboard_core::db::{Backend, Db};
use switchboard_core::id::ProjectId;
use switchboard_queue::runtime::{
    BuiltinKind, JobContext, JobError, Runtime, RuntimeBuilder, Timing,
};
use switchboard_queue::{enqueue_in, store, Job, JobId, JobKind, JobState, NewJob, QueueName};
use switchboard_server::builtins::BuiltinDeps;
use switchboard_server::worker::Worker;

both!(
    a_worker_node_runs_a_builtin_kind_enqueued_in_a_transaction,
    jobs_enqueued_in_a_transaction_start_at_commit_on_a_serving_node,
    reserved_names_are_refused_to_callers
);

/// The test's built-in kind.
const PING: BuiltinKind = BuiltinKind::new("sb.test.ping", "sb.test");

/// No poll within a test's patience: a job that starts did so because it was woken.
fn long_poll() -> Timing {
    Timing {
        poll: Duration::from_secs(60),
        ..Timing::default()
    }
}

async fn project(app: &TestApp) -> ProjectId {
    let me = json_of(app.get("/v1/me").await, 200).await;
    ProjectId::from_db(me["project_id"].as_str().expect("project_id").to_owned())
}

/// PING's handler: records an audit event in the job's project and reads its own job back
/// through the project, in one transaction of its own.
async fn ping(ctx: JobContext) -> Result<Option<Value>, JobError> {
    let mut tx = ctx.db.begin().await.map_err(JobError::db)?;
    let who = AuditContext {
        project_id: ctx.project.clone(),
        actor: Actor::system("sb.test.ping"),
        ip: None,
        user_agent: None,
        request_id: None,
    };
    let change = Change {
        action: "test.ping",
        entity_type: "job",
        entity_id: ctx.job.id.as_str(),
        before: None,
        after: Some(ctx.job.payload.clone()),
    };
    audit::record(&mut tx, &who, change)
        .await
        .map_err(JobError::db)?;
    let seen = store::get(tx.ex(), &ctx.project, &ctx.job.id)
        .await
        .map_err(JobError::db)?
        .ok_or_else(|| JobError::permanent("the job is not in its own project"))?;
    tx.commit().await.map_err(JobError::db)?;
    Ok(Some(json!({"seen": seen.state, "n": ctx.job.payload["n"]})))
}

/// Enqueues `job` inside a transaction of the caller's, which also writes something of its
/// own (an audit event), and commits; returns the job id.
async fn enqueue_with_a_change(db: &Db, project: &ProjectId, job: NewJob) -> JobId {
    let mut tx = db.begin().await.expect("begin");
    let who = AuditContext {
        project_id: project.clone(),
        actor: Actor::system("test"),
        ip: None,
        user_agent: None,
        request_id: None,
    };
    let change = Change {
        action: "test.enqueue",
        entity_type: "test",
        entity_id: "t",
        before: None,
        after: None,
    };
    audit::record(&mut tx, &who, change).await.expect("audit");
    let out = enqueue_in(&mut tx, project, &[job])
        .await
        .expect("enqueue_in");
    tx.commit().await.expect("commit");
    out[0].job.id.clone()
}

/// Waits (at most `secs`) until the job is finished.
async fn finished(db: &Db, project: &ProjectId, id: &JobId, secs: u64) -> Job {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut conn = db.read().await.expect("read");
        let job = store::get(conn.ex(), project, id)
            .await
            .expect("get")
            .expect("job exists");
        if job.state.is_final() || Instant::now() > deadline {
            return job;
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_worker_node_runs_a_builtin_kind_enqueued_in_a_transaction(b: Backend) {
    // A serving node sets the project up and answers the API; it runs no jobs.
    let api = spawn_with(b, |c| c.run_jobs = false).await;
    let project = project(&api).await;
    let extra: switchboard_server::builtins::Extra =
        Arc::new(|b: RuntimeBuilder, _: &BuiltinDeps| b.builtin(PING, ping));
    let worker = Worker::build_with(
        &api.config,
        Runtime::builder().timing(long_poll()),
        Some(extra),
    )
    .await
    .expect("worker");
    assert!(worker
        .runtime()
        .local_kinds()
        .contains(&PING.kind().to_owned()));
    let db = worker.db().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    // Past the dispatcher's first pass (and, on PostgreSQL, LISTEN is up).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let id = enqueue_with_a_change(&db, &project, PING.job(json!({"n": 7}))).await;
    let job = finished(&db, &project, &id, 10).await;
    assert_eq!(job.state, JobState::Completed, "{job:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "started at the poll, not at the commit: {:?}",
        started.elapsed()
    );
    assert_eq!(job.queue.as_str(), "sb.test");
    assert_eq!(job.result, Some(json!({"seen": "running", "n": 7})));
    // The handler's row, in the job's project, as the API shows it.
    let events = json_of(
        api.get(&format!("/v1/audit-events?entity_id={id}")).await,
        200,
    )
    .await;
    let events = events["data"].as_array().expect("data");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["action"], "test.ping");
    assert_eq!(events[0]["after"]["n"], 7);

    // A transaction that rolls back enqueues (and wakes) nothing.
    let mut tx = db.begin().await.expect("begin");
    let out = enqueue_in(&mut tx, &project, &[PING.job(json!({"n": 8}))])
        .await
        .expect("enqueue_in");
    drop(tx);
    let mut conn = db.read().await.expect("read");
    assert!(store::get(conn.ex(), &project, &out[0].job.id)
        .await
        .expect("get")
        .is_none());
    drop(conn);

    let _ = stop.send(());
    running.await.expect("worker stopped");
}

async fn jobs_enqueued_in_a_transaction_start_at_commit_on_a_serving_node(b: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(b, dir.path()).await;
    let runtime = Runtime::builder()
        .timing(long_poll())
        .handler("work", |ctx: JobContext| async move {
            Ok(Some(json!({"project": ctx.project.as_str()})))
        });
    let app = spawn_full(config, Some(dir), runtime).await;
    let project = project(&app).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let db = app.state.db.clone();
    let started = Instant::now();
    let job = NewJob::local(
        QueueName::parse("inline").expect("queue"),
        JobKind::parse("work").expect("kind"),
        json!({}),
    );
    let id = enqueue_with_a_change(&db, &project, job).await;
    let job = finished(&db, &project, &id, 10).await;
    assert_eq!(job.state, JobState::Completed, "{job:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "started at the poll, not at the commit: {:?}",
        started.elapsed()
    );
    assert_eq!(job.result, Some(json!({"project": project.as_str()})));
}

/// The errors of a 422 answer, as `field: message`.
fn fields(p: &Value) -> Vec<String> {
    p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn reserved_names_are_refused_to_callers(b: Backend) {
    let app = spawn_with(b, |c| c.run_jobs = false).await;
    // Enqueue: kind and queue, named in the answer.
    for (job, field) in [
        (
            json!({"queue": "emails", "kind": "sb.notify.deliver"}),
            "kind",
        ),
        (json!({"queue": "sb.notify", "kind": "send"}), "queue"),
    ] {
        let p = problem(app.post("/v1/jobs", &job).await, 422, "validation-failed").await;
        assert_eq!(fields(&p), [field], "{p}");
    }
    let batch =
        json!({"jobs": [{"queue": "fine", "kind": "k"}, {"queue": "fine", "kind": "sb.x"}]});
    let p = problem(
        app.post("/v1/jobs/batch", &batch).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(fields(&p), ["jobs[1].kind"], "{p}");
    let none = json_of(app.get("/v1/jobs?queue=fine").await, 200).await;
    assert_eq!(none["data"].as_array().map(Vec::len), Some(0));
    // A schedule's job template.
    let schedule =
        json!({"name": "s", "cron": "0 2 * * *", "job": {"queue": "sb.cron", "kind": "k"}});
    let p = problem(
        app.post("/v1/schedules", &schedule).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(fields(&p), ["job.queue"], "{p}");
    // The command line, as the API.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["job", "enqueue", "--queue", "cli", "--kind", "sb.x"])
        .env_remove("SWITCHBOARD_CONFIG")
        .env("DATABASE_URL", &app.config.database_url)
        .env("SWITCHBOARD_DATA_DIR", &app.config.data_dir)
        .env("SWITCHBOARD_LOG", "warn")
        .output()
        .expect("run switchboard");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--kind") && stderr.contains("sb."),
        "{stderr}"
    );

    // Pull workers cannot claim from a built-in queue, existing or not.
    let claim = json!({"worker": "w"});
    let p = problem(
        app.post("/v1/queues/sb.test/claim", &claim).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(fields(&p), ["queue"], "{p}");
    // Nor create one through its settings.
    let patch = json!({"concurrency": 2});
    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/sb.test")
        .json(&patch)
        .send()
        .await
        .expect("send");
    let p = problem(r, 422, "validation-failed").await;
    assert_eq!(fields(&p), ["queue"], "{p}");
    json_of(app.get("/v1/queues/sb.test").await, 404).await;

    // Once Switchboard's own work made it, the queue is the project's to see, pause and
    // tune; still no pull worker gets its jobs.
    let project = project(&app).await;
    let id = enqueue_with_a_change(&app.state.db, &project, PING.job(json!({}))).await;
    let queues = json_of(app.get("/v1/queues").await, 200).await;
    let names: Vec<&str> = queues["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert!(names.contains(&"sb.test"), "{names:?}");
    let paused = json_of(app.post("/v1/queues/sb.test/pause", &json!({})).await, 200).await;
    assert_eq!(paused["paused"], true);
    let r = app
        .req(reqwest::Method::PATCH, "/v1/queues/sb.test")
        .json(&patch)
        .send()
        .await
        .expect("send");
    assert_eq!(json_of(r, 200).await["concurrency"], 2);
    let p = problem(
        app.post("/v1/queues/sb.test/claim", &claim).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(fields(&p), ["queue"], "{p}");
    let job = json_of(app.get(&format!("/v1/jobs/{id}")).await, 200).await;
    assert_eq!(job["runner"], "local");
    assert_eq!(job["state"], "available");
}

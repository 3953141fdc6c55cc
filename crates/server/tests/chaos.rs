//! Chaos that cannot share a process with the parallel suite: PostgreSQL is restarted under
//! load. Cargo runs test binaries one after another, so this one never overlaps `api`.
//! It restarts the machine's cluster, so it runs only with SWITCHBOARD_TEST_PG_RESTART=1
//! (set by `.ci/run`) and SWITCHBOARD_TEST_DATABASE_URL.

mod common;

use common::harness;

use serde_json::{json, Value};
use sqlx::{Connection, Row};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_queue::runtime::{JobContext, Runtime};
use switchboard_server::app::Application;

fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a cluster version");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "restart failed");
}

single!(needs(Postgres, PgRestart): postgres_restart_under_load_loses_nothing);

fn main() -> std::process::ExitCode {
    harness::main()
}

async fn postgres_restart_under_load_loses_nothing() {
    let admin = std::env::var("SWITCHBOARD_TEST_DATABASE_URL").expect("the harness checked it");
    let (_, url) = common::create_database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut config, key) = common::node_config(url.as_str(), dir.path());
    config.job_heartbeat_ms = 1000;
    let runtime = Runtime::builder().handler("work", |_ctx: JobContext| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(None)
    });
    let app = Application::build_with(config, runtime).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::new();
    let enqueue = |n: usize| {
        let jobs: Vec<Value> = (0..n).map(|i| json!({"queue": "chaos", "kind": "work", "payload": {"i": i}, "max_attempts": 20, "backoff": {"type": "fixed", "delay_ms": 100}})).collect();
        client
            .post(format!("{base}/v1/jobs/batch"))
            .bearer_auth(&key)
            .json(&json!({"jobs": jobs}))
            .send()
    };
    let r = client
        .patch(format!("{base}/v1/queues/chaos"))
        .bearer_auth(&key)
        .json(&json!({"concurrency": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(enqueue(1500).await.unwrap().status(), 201);

    let counts = || async {
        let r = client
            .get(format!("{base}/v1/queues/chaos"))
            .bearer_auth(&key)
            .send()
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        r.json::<Value>().await.ok().map(|v| v["counts"].clone())
    };
    // Restart while jobs are being worked.
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts()
        .await
        .is_none_or(|c| c["completed"].as_i64().unwrap_or(0) < 100)
    {
        assert!(Instant::now() < deadline, "no progress before the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = |url: String| async move {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let r = sqlx::query(
            "SELECT CAST(EXTRACT(EPOCH FROM pg_postmaster_start_time()) * 1000000 AS BIGINT) AS t",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        r.get::<i64, _>("t")
    };
    let before = started(admin.clone()).await;
    restart_postgres();
    assert_ne!(
        started(admin.clone()).await,
        before,
        "PostgreSQL really restarted"
    );
    // After the restart the node reconnects by itself: enqueue more and drain everything.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = enqueue(500).await {
            if r.status() == 201 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "API did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let last = loop {
        let c = counts().await;
        if c.as_ref().is_some_and(|c| c["completed"] == 2000) {
            break c.unwrap();
        }
        assert!(Instant::now() < deadline, "not all jobs completed: {c:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for s in ["available", "running", "retryable", "failed", "scheduled"] {
        assert_eq!(last[s], 0, "{s}: {last}");
    }
    // The maintained counters agree with the rows.
    let switchboard_core::db::Db::Postgres(pool, _) = &state.db else {
        panic!("postgres")
    };
    let rows =
        sqlx::query("SELECT state, COUNT(*) AS n FROM jobs WHERE queue = 'chaos' GROUP BY state")
            .fetch_all(pool)
            .await
            .unwrap();
    let actual: Vec<(String, i64)> = rows.iter().map(|r| (r.get("state"), r.get("n"))).collect();
    assert_eq!(actual, vec![("completed".to_owned(), 2000)]);
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
}

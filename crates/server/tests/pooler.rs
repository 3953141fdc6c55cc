//! Switchboard behind PgBouncer in transaction mode: a server connection per transaction, so
//! LISTEN does not reliably deliver and prepared statements do not survive a transaction.
//! The node must still start (migrations included), take work through the API, and run
//! jobs enqueued by another node, woken by its polling fallback.
//!
//! Needs SWITCHBOARD_TEST_DATABASE_URL and the `pgbouncer` binary (Debian's package), else
//! it is reported ignored; SWITCHBOARD_TEST_REQUIRE_PGBOUNCER=1 (set by `.ci/run`) turns a
//! missing one into a failure.

mod common;

use common::harness;

use serde_json::{json, Value};
use sqlx::{Connection, Row};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use switchboard_core::db::Db;
use switchboard_core::id::ProjectId;
use switchboard_queue::runtime::{JobContext, Runtime};
use switchboard_queue::{store, JobKind, NewJob, QueueName};
use switchboard_server::app::Application;

/// A PgBouncer process, stopped on drop.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    /// Transactions PgBouncer has passed to `database` (its statistics, refreshed every
    /// second), read from its admin console with psql.
    fn transactions(&self, database: &str) -> i64 {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-At", "-F", "|", "-c", "SHOW STATS", "pgbouncer"])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .find(|(db, _)| *db == database)
            .and_then(|(_, rest)| rest.split('|').next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts PgBouncer in transaction mode in front of `database` on the admin URL's server,
/// with fewer server connections than the node's pool so transactions share them.
fn start_pgbouncer(binary: &str, admin: &url::Url, database: &str) -> Bouncer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let ini = dir.path().join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\n{database} = host={host} port={pgport} dbname={database} user={user}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = any\npool_mode = transaction\ndefault_pool_size = 3\nmax_client_conn = 100\n\
             ignore_startup_parameters = extra_float_digits\nlogfile = {log}\n\
             admin_users = {user}\nstats_period = 1\n",
            host = admin.host_str().unwrap_or("127.0.0.1"),
            pgport = admin.port().unwrap_or(5432),
            user = admin.username(),
            log = dir.path().join("pgbouncer.log").display(),
        ),
    )
    .expect("write pgbouncer.ini");
    let mut cmd = Command::new(binary);
    if root {
        // PgBouncer refuses to run as root.
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(status.success());
        cmd.args(["-u", "postgres"]);
    }
    let child = cmd.arg(&ini).spawn().expect("start pgbouncer");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "pgbouncer did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Bouncer {
        child,
        port,
        _dir: dir,
    }
}

fn job(queue: &QueueName) -> NewJob {
    NewJob::local(
        queue.clone(),
        JobKind::from_db("work".into()),
        json!({"from": "another node"}),
    )
}

single!(needs(Postgres, Pgbouncer): behind_pgbouncer_in_transaction_mode_every_job_runs);

fn main() -> std::process::ExitCode {
    harness::main()
}

async fn behind_pgbouncer_in_transaction_mode_every_job_runs() {
    let admin = std::env::var("SWITCHBOARD_TEST_DATABASE_URL").expect("the harness checked it");
    let binary = harness::pgbouncer_path();
    let (name, direct) = common::create_database(&admin).await;
    let admin_url = url::Url::parse(&admin).unwrap();
    let bouncer = start_pgbouncer(&binary, &admin_url, &name);
    // What docs/queue.md tells users to put in DATABASE_URL behind such a pooler.
    let pooled = format!(
        "postgres://{}@127.0.0.1:{}/{name}?pooler=transaction",
        admin_url.username(),
        bouncer.port
    );
    let dir = tempfile::tempdir().unwrap();
    let (config, key) = common::node_config(&pooled, dir.path());
    // Migrations cannot run through the pooler (the migrator holds a session lock): the node
    // says so and starts once they are applied directly.
    let refused = Application::build_with(config.clone(), Runtime::builder()).await;
    let Err(e) = refused else {
        panic!("started with pending migrations behind the pooler")
    };
    assert!(format!("{e:#}").contains("switchboard migrate"), "{e:#}");
    let migrator = Db::connect(direct.as_str(), 1).await.unwrap();
    migrator.migrate().await.unwrap();
    migrator.close().await;
    let runtime = Runtime::builder().handler("work", |_ctx: JobContext| async { Ok(None) });
    let app = Application::build_with(config, runtime).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::new();

    // Through the API: a batch and single jobs.
    let batch: Vec<Value> = (0..200)
        .map(|i| json!({"queue": "pooled", "kind": "work", "payload": {"i": i}}))
        .collect();
    let r = client
        .post(format!("{base}/v1/jobs/batch"))
        .bearer_auth(&key)
        .json(&json!({"jobs": batch}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    for i in 0..20 {
        let r = client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(&key)
            .json(&json!({"queue": "pooled", "kind": "work", "payload": {"single": i}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let project: String = {
        let mut c = sqlx::PgConnection::connect(direct.as_str()).await.unwrap();
        let p = sqlx::query("SELECT project_id FROM jobs LIMIT 1")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get("project_id");
        c.close().await.unwrap();
        p
    };
    let project = ProjectId::from_db(project);
    let queue = QueueName::parse("pooled").unwrap();

    // Another node enqueues through the same pooler: nothing wakes this node in-process,
    // and NOTIFY to a LISTEN behind transaction pooling may never arrive.
    let other = Db::connect(&pooled, 2).await.unwrap();
    for _ in 0..10 {
        store::enqueue_now(&other, &project, &[job(&queue)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut tx = other.begin().await.unwrap();
    store::enqueue(&mut tx, &project, &vec![job(&queue); 70])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let counts = || async {
        let r = client
            .get(format!("{base}/v1/queues/pooled"))
            .bearer_auth(&key)
            .send()
            .await
            .ok()?;
        r.json::<Value>().await.ok().map(|v| v["counts"].clone())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let c = counts().await;
        if c.as_ref().is_some_and(|c| c["completed"] == 300) {
            break c.unwrap();
        }
        assert!(Instant::now() < deadline, "not every job ran: {c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for s in ["available", "running", "retryable", "failed"] {
        assert_eq!(last[s], 0, "{s}: {last}");
    }

    // A pull worker long-polls through the pooler and gets a job another node enqueues.
    let pull = json!({"queue": "pulled", "kind": "external", "payload": {}});
    let waiter = {
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        tokio::spawn(async move {
            client
                .post(format!("{base}/v1/queues/pulled/claim"))
                .bearer_auth(&key)
                .json(&json!({"worker": "w1", "max": 1, "wait_ms": 5000}))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(&key)
        .json(&pull)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let claimed: Value = waiter.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(
        claimed["jobs"].as_array().map(Vec::len),
        Some(1),
        "{claimed}"
    );

    // The node really went through the pooler: PgBouncer counted its transactions.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let xacts = bouncer.transactions(&name);
        if xacts > 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{xacts} transactions through PgBouncer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
    other.close().await;
    drop(bouncer);
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await;
}

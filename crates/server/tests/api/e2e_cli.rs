//! The `switchboard` binary: configuration errors, --version, doctor, keys, users, serve
//! with a clean SIGTERM shutdown.

use crate::helpers::{json_of, redis_url, spawn_app};
use crate::{both, plain};
use reqwest::Method;
use std::process::{Command, Output, Stdio};
use switchboard_core::db::Backend;

both!(cli_manages_keys_and_users);
plain!(
    bad_configuration_exits_2_naming_the_key,
    version_is_printed,
    doctor_reports_each_check,
    serve_bootstraps_once_and_stops_on_sigterm,
    bench_queue_runs_and_reports
);

fn switchboard(
    app: Option<&crate::helpers::TestApp>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("SWITCHBOARD_CONFIG")
        .env("SWITCHBOARD_LOG", "warn");
    if let Some(app) = app {
        cmd.env("DATABASE_URL", &app.config.database_url)
            .env("SWITCHBOARD_DATA_DIR", &app.config.data_dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run switchboard")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn bad_configuration_exits_2_naming_the_key() {
    let o = switchboard(
        None,
        &["doctor"],
        &[("SWITCHBOARD_LISTEN", "not-an-address")],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("SWITCHBOARD_LISTEN") && err.contains("not-an-address"),
        "{err}"
    );
    let o = switchboard(None, &["doctor"], &[("DATABASE_URL", "mysql://nope")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("DATABASE_URL"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sb.toml");
    std::fs::write(&file, "rate_limit_per_minute = \"lots\"\n").unwrap();
    let o = switchboard(None, &["--config", file.to_str().unwrap(), "doctor"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sb.toml:rate_limit_per_minute"));
}

fn version_is_printed() {
    let o = switchboard(None, &["--version"], &[]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("switchboard {}", env!("CARGO_PKG_VERSION"))
    );
}

fn doctor_reports_each_check() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = switchboard(None, &["doctor"], &[("SWITCHBOARD_DATA_DIR", data)]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    for check in ["config", "database", "redis", "storage"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "{check}: {out}"
        );
    }
    // A Redis that does not answer is a failure, exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = switchboard(
        None,
        &["doctor"],
        &[
            ("SWITCHBOARD_DATA_DIR", data),
            ("REDIS_URL", &format!("redis://127.0.0.1:{closed}")),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("redis")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("database")),
        "{out}"
    );
    if let Some(url) = redis_url() {
        let o = switchboard(
            None,
            &["doctor"],
            &[("SWITCHBOARD_DATA_DIR", data), ("REDIS_URL", &url)],
        );
        assert!(o.status.success(), "{}", stdout(&o));
    }
}

async fn cli_manages_keys_and_users(b: Backend) {
    let app = spawn_app(b).await;
    let o = switchboard(Some(&app), &["migrate"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = switchboard(
        Some(&app),
        &[
            "keys",
            "create",
            "--name",
            "from-cli",
            "--scopes",
            "keys:read",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let (id, secret) = out.trim().split_once('\t').unwrap();
    assert_eq!(
        app.req_as(Method::GET, "/v1/api-keys", secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.req_as(Method::GET, "/v1/users", secret)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    let o = switchboard(Some(&app), &["keys", "list"], &[]);
    assert!(stdout(&o)
        .lines()
        .any(|l| l.starts_with(id) && l.ends_with("active")));
    let o = switchboard(Some(&app), &["keys", "revoke", id], &[]);
    assert!(o.status.success());
    assert_eq!(
        app.req_as(Method::GET, "/v1/api-keys", secret)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let o = switchboard(
        Some(&app),
        &["keys", "create", "--name", "x", "--scopes", "bogus"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));

    let o = switchboard(
        Some(&app),
        &[
            "users",
            "create",
            "--email",
            "ops@example.com",
            "--role",
            "operator",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let password = out.trim().rsplit("password: ").next().unwrap();
    let r = crate::helpers::login(&app, "ops@example.com", password).await;
    assert_eq!(r.status(), 200);

    let events = json_of(app.get("/v1/audit-events?actor=cli").await, 200).await;
    let actions: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["user.create", "api_key.revoke", "api_key.create"]);
}

fn serve_bootstraps_once_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env("SWITCHBOARD_DATA_DIR", dir.path())
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_LOG", "warn")
            .env("SWITCHBOARD_BOOTSTRAP_PASSWORD", "serve-password-1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve")
    };
    let wait_ready = || {
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("serve did not start");
    };
    let stop = |child: std::process::Child| {
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "clean exit on SIGTERM: {:?}",
            out.status
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = start();
    wait_ready();
    let printed = stop(first);
    for line in [
        "dashboard  http://127.0.0.1:",
        "login      owner@localhost",
        "password   ",
        "API key    sb_",
    ] {
        assert!(printed.contains(line), "{line}: {printed}");
    }
    let second = start();
    wait_ready();
    // A request in flight when SIGTERM arrives still gets its answer.
    use std::io::{Read, Write};
    let body = br#"{"email":"owner@localhost","password":"serve-password-1"}"#;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(&body[..10]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = second.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // Shutting down: it stops accepting connections, and still answers the one in flight.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    conn.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("refresh_token"));
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !printed.contains("API key"),
        "credentials are printed only on the first start"
    );
}

both!(cli_operates_queues_and_jobs);

async fn cli_operates_queues_and_jobs(b: Backend) {
    let app = spawn_app(b).await;
    let run = |args: &[&str]| {
        let o = switchboard(Some(&app), args, &[]);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    let id = run(&[
        "job",
        "enqueue",
        "--queue",
        "cli-q",
        "--kind",
        "report",
        "--payload",
        "{\"a\":1}",
        "--priority",
        "high",
    ]);
    let id = id.trim().to_owned();
    assert!(id.starts_with("job_"));
    let got: serde_json::Value = serde_json::from_str(&run(&["job", "get", &id])).unwrap();
    assert_eq!(
        (
            got["job"]["state"].as_str(),
            got["job"]["priority"].as_i64()
        ),
        (Some("available"), Some(1))
    );
    assert!(run(&["queue", "list"])
        .lines()
        .any(|l| l.starts_with("cli-q")));

    run(&["queue", "pause", "cli-q"]);
    assert_eq!(
        json_of(app.get("/v1/queues/cli-q").await, 200).await["paused"],
        true
    );
    run(&["queue", "resume", "cli-q"]);
    let claimed = json_of(
        app.post(
            "/v1/queues/cli-q/claim",
            &serde_json::json!({"worker": "w"}),
        )
        .await,
        200,
    )
    .await;
    let token = claimed["jobs"][0]["lease_token"].as_str().unwrap();
    let failed = app
        .post(
            &format!("/v1/jobs/{id}/fail"),
            &serde_json::json!({"lease_token": token, "error": "boom", "permanent": true}),
        )
        .await;
    assert_eq!(failed.status(), 200);
    assert!(run(&["queue", "retry-failed", "cli-q"]).contains("retried 1"));
    assert!(run(&["job", "cancel", &id]).contains("cancelled"));
    assert!(run(&["queue", "clean", "cli-q", "--state", "cancelled"]).contains("deleted 1"));
    let stats: serde_json::Value =
        serde_json::from_str(&run(&["queue", "stats", "cli-q"])).unwrap();
    assert_eq!(stats["counts"]["cancelled"], 0);
    let o = switchboard(
        Some(&app),
        &["job", "enqueue", "--queue", "bad queue", "--kind", "k"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let o = switchboard(Some(&app), &["queue", "pause", "nope"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let events = json_of(
        app.get("/v1/audit-events?actor=cli&entity_type=queue")
            .await,
        200,
    )
    .await;
    assert_eq!(
        events["data"].as_array().unwrap().len(),
        4,
        "pause, resume, retry-failed, clean"
    );
}

fn bench_queue_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let o = switchboard(
        None,
        &[
            "bench",
            "queue",
            "--jobs",
            "300",
            "--concurrency",
            "10",
            "--batch",
            "100",
        ],
        &[("SWITCHBOARD_DATA_DIR", dir.path().to_str().unwrap())],
    );
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for line in [
        "enqueue",
        "drain",
        "end to end",
        "commits/job",
        "single-job enqueue peak",
        "p99",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    let o = switchboard(
        None,
        &["bench", "queue", "--jobs", "0"],
        &[("SWITCHBOARD_DATA_DIR", dir.path().to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(2));
}

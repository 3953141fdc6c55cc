//! The `switchboard` binary: configuration errors, --version, doctor, keys, users, serve
//! with a clean SIGTERM shutdown.

use crate::helpers::{json_of, redis_url, spawn_app};
use crate::{both, plain};
use reqwest::Method;
use std::process::{Command, Output, Stdio};
use switchboard_core::db::Backend;

both!(
    cli_manages_keys_and_users,
    cli_output_into_a_closed_pipe_ends_quietly,
    cli_never_creates_a_database_and_says_which_it_opened,
    cli_enqueue_takes_what_the_api_takes,
    cli_names_and_lists_follow_the_api,
    cli_resets_a_lost_password,
    cli_logs_have_no_colour_codes_off_a_terminal
);
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
    command(app, args, env).output().expect("run switchboard")
}

/// The `switchboard` command pointed at `app`'s database (or at nothing in particular).
fn command(app: Option<&crate::helpers::TestApp>, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD_DATA_DIR")
        .env_remove("SWITCHBOARD_PUSH_ALLOW")
        .env_remove("SWITCHBOARD_NEW_USER_PASSWORD")
        .env("SWITCHBOARD_LOG", "warn");
    if let Some(app) = app {
        cmd.env("DATABASE_URL", &app.config.database_url)
            .env("SWITCHBOARD_DATA_DIR", &app.config.data_dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `switchboard job get ID | head`: the reader goes away after a few bytes; the command
/// ends without a panic (exit 0, or 141 as a tool killed by SIGPIPE).
async fn cli_output_into_a_closed_pipe_ends_quietly(b: Backend) {
    let app = spawn_app(b).await;
    // More JSON than a pipe holds, so the command is still writing when the reader leaves.
    let big = "x".repeat(400_000);
    let job = json_of(
        app.post(
            "/v1/jobs",
            &serde_json::json!({"queue": "q", "kind": "k", "payload": {"big": big}}),
        )
        .await,
        201,
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let mut child = command(Some(&app), &["job", "get", id], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        matches!(o.status.code(), Some(0) | Some(141)),
        "{:?}: {err}",
        o.status
    );
    assert_eq!(&first[..1], b"{");
}

/// Run from another folder, a command other than `serve`/`migrate` creates nothing: it
/// names the database it looked for and how to point it elsewhere. Given the node's
/// database, it says which one it opened.
async fn cli_never_creates_a_database_and_says_which_it_opened(b: Backend) {
    let app = spawn_app(b).await;
    let o = switchboard(Some(&app), &["queue", "list"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stderr(&o);
    let expected = match b {
        Backend::Sqlite => format!(
            "switchboard: using the SQLite database {}",
            app.config.data_dir.join("switchboard.db").display()
        ),
        Backend::Postgres => "switchboard: using the PostgreSQL database postgres://".to_owned(),
    };
    assert!(said.starts_with(&expected), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");

    let elsewhere = tempfile::tempdir().unwrap();
    let commands: [&[&str]; 5] = [
        &["queue", "list"],
        &["job", "get", "job_x"],
        &["keys", "list"],
        &["users", "create", "--email", "a@example.com"],
        &["job", "enqueue", "--queue", "q", "--kind", "k"],
    ];
    for args in commands {
        let o = match b {
            // The default data folder, relative to wherever it is run.
            Backend::Sqlite => command(None, args, &[])
                .current_dir(elsewhere.path())
                .output()
                .unwrap(),
            // A PostgreSQL database without Switchboard's tables.
            Backend::Postgres => {
                let empty = crate::helpers::fresh_postgres().await;
                switchboard(None, args, &[("DATABASE_URL", &empty)])
            }
        };
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        for needle in ["--config", "DATABASE_URL", "SWITCHBOARD_DATA_DIR"] {
            assert!(err.contains(needle), "{args:?}: {needle}: {err}");
        }
        match b {
            Backend::Sqlite => {
                let looked = std::path::absolute(elsewhere.path())
                    .unwrap()
                    .join("data/switchboard.db");
                assert!(err.contains(&looked.display().to_string()), "{err}");
            }
            Backend::Postgres => assert!(err.contains("no Switchboard tables"), "{err}"),
        }
    }
    // Not even a folder was made (doctor, which only looks, included).
    let o = command(None, &["doctor"], &[])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("does not exist yet"), "{}", stdout(&o));
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

/// `job enqueue` builds the `POST /v1/jobs` body from its flags and checks it as the API
/// does; what it refuses, it refuses by flag name and writes nothing.
async fn cli_enqueue_takes_what_the_api_takes(b: Backend) {
    let app = spawn_app(b).await;
    let run_at = "2031-05-01T09:30:00Z";
    let args = [
        "job",
        "enqueue",
        "--queue",
        "full",
        "--kind",
        "report",
        "--payload",
        "{\"n\":1}",
        "--priority",
        "7",
        "--run-at",
        run_at,
        "--max-attempts",
        "5",
        "--backoff",
        "{\"type\":\"fixed\",\"delay_ms\":500}",
        "--timeout-ms",
        "1500",
        "--unique-key",
        "u-1",
        "--unique-window-secs",
        "60",
        "--tag",
        "a",
        "--tag",
        "b",
        "--target-url",
        "https://example.com/hooks/report",
        "--target-method",
        "PUT",
        "--target-header",
        "X-Api: k1",
    ];
    let o = switchboard(Some(&app), &args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    let job = json_of(app.get(&format!("/v1/jobs/{id}")).await, 200).await;
    assert_eq!(job["state"], "scheduled", "{job}");
    assert_eq!(job["priority"], 7);
    assert_eq!(job["max_attempts"], 5);
    assert_eq!(job["timeout_ms"], 1500);
    assert_eq!(job["unique_key"], "u-1");
    assert_eq!(job["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(job["backoff"]["type"], "fixed");
    assert_eq!(job["runner"], "push");
    assert_eq!(job["target"]["method"], "PUT");
    assert_eq!(job["target"]["headers"]["X-Api"], "k1");
    assert_eq!(job["payload"]["n"], 1);
    let at: jiff::Timestamp = job["run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(at, run_at.parse::<jiff::Timestamp>().unwrap());
    // The same unique key answers with the job that holds it.
    let o = switchboard(Some(&app), &args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), id);

    // Refused as the API refuses, by flag, and nothing is written.
    let bad: [(&[&str], &str); 5] = [
        (&["--max-attempts", "0"], "--max-attempts"),
        (&["--delay-ms", "10", "--run-at", run_at], "--delay-ms"),
        (&["--timeout-ms", "0"], "--timeout-ms"),
        // The egress policy applies too: loopback is not a public destination.
        (&["--target-url", "http://127.0.0.1:9/x"], "--target"),
        (&["--priority", "urgent"], "--priority"),
    ];
    for (extra, flag) in bad {
        let mut args = vec!["job", "enqueue", "--queue", "refused", "--kind", "k"];
        args.extend_from_slice(extra);
        let o = switchboard(Some(&app), &args, &[]);
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        assert!(stderr(&o).contains(flag), "{flag}: {}", stderr(&o));
    }
    let jobs = json_of(app.get("/v1/jobs?queue=refused").await, 200).await;
    assert_eq!(jobs["data"].as_array().unwrap().len(), 0);
}

/// `queue list` shows every state and the running limit; `queue clean` takes the API's
/// `older_than_ms` (in ms, as `--older-than-ms`) and `limit`.
async fn cli_names_and_lists_follow_the_api(b: Backend) {
    let app = spawn_app(b).await;
    let jobs: Vec<serde_json::Value> = (0..3)
        .map(|_| serde_json::json!({"queue": "tidy", "kind": "k"}))
        .collect();
    let made = json_of(
        app.post("/v1/jobs/batch", &serde_json::json!({"jobs": jobs}))
            .await,
        201,
    )
    .await;
    for j in made["jobs"].as_array().unwrap() {
        let id = j["id"].as_str().unwrap();
        json_of(
            app.post(&format!("/v1/jobs/{id}/cancel"), &serde_json::json!({}))
                .await,
            200,
        )
        .await;
    }
    let list = stdout(&switchboard(Some(&app), &["queue", "list"], &[]));
    let head = list.lines().next().unwrap();
    for state in [
        "scheduled",
        "available",
        "running",
        "completed",
        "retryable",
        "failed",
        "cancelled",
        "running at most",
    ] {
        assert!(head.contains(state), "{state}: {list}");
    }
    let row = list.lines().find(|l| l.starts_with("tidy")).unwrap();
    assert!(row.ends_with("10 per worker"), "{list}");
    assert_eq!(
        row.split_whitespace().nth(8),
        Some("3"),
        "cancelled: {list}"
    );

    let clean = |extra: &[&str]| {
        let mut args = vec!["queue", "clean", "tidy", "--state", "cancelled"];
        args.extend_from_slice(extra);
        switchboard(Some(&app), &args, &[])
    };
    let o = clean(&["--older-than-ms", "3600000"]);
    assert!(stdout(&o).contains("deleted 0"), "{}", stderr(&o));
    let o = clean(&["--older-than-ms", "0", "--limit", "2"]);
    assert!(stdout(&o).contains("deleted 2"), "{}", stderr(&o));
    let o = clean(&["--older-than-ms=-1"]);
    assert_eq!(o.status.code(), Some(1));
    // The old name, in seconds, is gone.
    assert_eq!(clean(&["--older-than-secs", "0"]).status.code(), Some(2));
    let stats: serde_json::Value = serde_json::from_str(&stdout(&switchboard(
        Some(&app),
        &["queue", "stats", "tidy"],
        &[],
    )))
    .unwrap();
    assert_eq!(stats["counts"]["cancelled"], 1);
    assert_eq!(stats["running_limit"], "10 per worker");
}

/// Logs carry no colour codes when stderr is not a terminal (a pipe, a file, a collector).
async fn cli_logs_have_no_colour_codes_off_a_terminal(b: Backend) {
    let app = spawn_app(b).await;
    let o = switchboard(
        Some(&app),
        &["queue", "list"],
        &[("SWITCHBOARD_LOG", "debug")],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.lines().count() > 1, "debug logs expected: {err}");
    assert!(!err.contains('\u{1b}'), "{err}");
}

/// A lost owner password: `users reset-password` sets a new one (printed once), ends the
/// user's sessions and is audited.
async fn cli_resets_a_lost_password(b: Backend) {
    use crate::helpers::{login, OWNER_EMAIL, OWNER_PASSWORD};
    let app = spawn_app(b).await;
    let session = json_of(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await, 200).await;
    let refresh = session["refresh_token"].as_str().unwrap();

    let o = switchboard(
        Some(&app),
        &["users", "reset-password", "--email", OWNER_EMAIL],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let new_password = out.trim().rsplit("password: ").next().unwrap();
    assert!(new_password.len() >= 12, "{out}");
    assert_eq!(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await.status(), 401);
    assert_eq!(login(&app, OWNER_EMAIL, new_password).await.status(), 200);
    // The session opened with the old password is over.
    let r = app
        .client
        .post(app.url("/v1/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let events = json_of(app.get("/v1/audit-events?actor=cli").await, 200).await;
    assert_eq!(
        events["data"][0]["action"], "user.password_reset",
        "{events}"
    );

    // A chosen password must be strong enough; an unknown e-mail is refused.
    let o = switchboard(
        Some(&app),
        &[
            "users",
            "reset-password",
            "--email",
            OWNER_EMAIL,
            "--password",
            "short",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--password"), "{}", stderr(&o));
    let o = switchboard(
        Some(&app),
        &["users", "reset-password", "--email", "nobody@example.com"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no user"), "{}", stderr(&o));
    assert_eq!(login(&app, OWNER_EMAIL, new_password).await.status(), 200);
}

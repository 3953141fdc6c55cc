//! How much a job keeps of what comes back: push answers are read up to 64 KiB (the
//! connection is dropped beyond), and results and progress are capped whoever reports them.

use crate::both;
use crate::helpers::{json_of, problem, spawn_app, spawn_runtime, wait_for, TestApp};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use switchboard_core::db::Backend;
use switchboard_queue::runtime::{JobContext, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both!(
    endless_push_answers_are_cut_off,
    pull_workers_cannot_store_huge_results,
    in_process_results_are_capped
);

/// Most bytes the endless target sends before giving up on its own.
const ENDLESS_CAP: u64 = 256 * 1024 * 1024;

/// A real HTTP server whose answer body never ends (up to [`ENDLESS_CAP`]): `/ok` answers
/// 200 with JSON-looking bytes, anything else 500. Returns its address and the bytes sent.
async fn endless_target() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let status = if head.starts_with(b"POST /ok ") {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let start = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n["
                );
                if sock.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = "0,".repeat(32 * 1024);
                while counter.load(Ordering::Relaxed) < ENDLESS_CAP {
                    if sock.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, sent)
}

async fn final_state(app: &TestApp, id: &str) -> Value {
    wait_for(app, &format!("/v1/jobs/{id}"), 20, |j| {
        matches!(j["state"].as_str(), Some("completed" | "failed"))
    })
    .await
}

async fn endless_push_answers_are_cut_off(b: Backend) {
    let app = spawn_app(b).await;
    let (addr, sent) = endless_target().await;
    // A long timeout: the job must end because the node stops reading, not because it
    // gave up waiting.
    let push = |path: &str| {
        json!({"queue": "out", "kind": "send", "timeout_ms": 600_000, "max_attempts": 1,
               "target": {"url": format!("{addr}{path}")}})
    };
    let ok = json_of(app.post("/v1/jobs", &push("/ok")).await, 201).await;
    let job = final_state(&app, ok["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(
        job["result"],
        json!({"truncated": true, "limit_bytes": 65536}),
        "{job}"
    );
    assert!(
        sent.load(Ordering::Relaxed) < ENDLESS_CAP / 4,
        "the node hung up instead of reading on: {} bytes sent",
        sent.load(Ordering::Relaxed)
    );

    // An error answer keeps its status and the start of its (capped) body.
    let err = json_of(app.post("/v1/jobs", &push("/err")).await, 201).await;
    let job = final_state(&app, err["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("target answered 500 Internal Server Error: [0,0,"),
        "{error}"
    );
    assert!(
        error.len() < 600,
        "a snippet, not the body: {}",
        error.len()
    );
}

async fn pull_workers_cannot_store_huge_results(b: Backend) {
    let app = spawn_app(b).await;
    json_of(
        app.post("/v1/jobs", &json!({"queue": "pull", "kind": "k"}))
            .await,
        201,
    )
    .await;
    let claimed = json_of(
        app.post("/v1/queues/pull/claim", &json!({"worker": "w"}))
            .await,
        200,
    )
    .await;
    let id = claimed["jobs"][0]["id"].as_str().unwrap();
    let token = claimed["jobs"][0]["lease_token"].as_str().unwrap();
    let huge = json!({"blob": "x".repeat(70_000)});

    let p = problem(
        app.post(
            &format!("/v1/jobs/{id}/heartbeat"),
            &json!({"lease_token": token, "progress": huge}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "progress", "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("65536 bytes"),
        "{p}"
    );
    let p = problem(
        app.post(
            &format!("/v1/jobs/{id}/complete"),
            &json!({"lease_token": token, "result": huge}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "result", "{p}");

    // Nothing changed: the job still runs, without progress, and completes normally.
    let job = json_of(app.get(&format!("/v1/jobs/{id}")).await, 200).await;
    assert_eq!(job["state"], "running", "{job}");
    assert!(job["progress"].is_null(), "{job}");
    let small = json!({"blob": "x".repeat(60_000)});
    let done = json_of(
        app.post(
            &format!("/v1/jobs/{id}/complete"),
            &json!({"lease_token": token, "result": small}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["result"], small);
}

async fn in_process_results_are_capped(b: Backend) {
    let runtime = Runtime::builder().handler("big", |ctx: JobContext| async move {
        let n = ctx.job.payload["n"].as_u64().unwrap_or(0) as usize;
        Ok(Some(json!({"blob": "x".repeat(n)})))
    });
    let app = spawn_runtime(b, runtime).await;
    for (n, capped) in [(100_000, true), (1_000, false)] {
        let job = json_of(
            app.post(
                "/v1/jobs",
                &json!({"queue": "local", "kind": "big", "payload": {"n": n}}),
            )
            .await,
            201,
        )
        .await;
        let job = final_state(&app, job["id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "completed", "{job}");
        if capped {
            // Not `assert_eq!`: a failure would print the whole blob.
            let stored = &job["result"];
            assert!(
                *stored == json!({"truncated": true, "limit_bytes": 65536}),
                "a result of {} bytes was stored",
                stored.to_string().len()
            );
        } else {
            assert_eq!(job["result"]["blob"].as_str().unwrap().len(), n);
        }
    }
}

//! The streaming route group (where uploads go): its handlers read the body as it arrives
//! with a limit of their own, past `SWITCHBOARD_BODY_LIMIT`, and no `Idempotency-Key` layer
//! buffers or stores it. Proved with a route of the test's own.

use crate::both;
use crate::helpers::{json_of, problem, raw_exchange, spawn_extras, TestApp};
use axum::extract::Request;
use axum::response::IntoResponse;
use reqwest::Method;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::db::Backend;
use switchboard_server::app::Extras;
use switchboard_server::extract::Streamed;

both!(
    streaming_routes_take_bodies_larger_than_the_global_limit,
    streaming_handlers_see_chunks_as_they_arrive,
    idempotency_keys_are_neither_buffered_nor_kept_on_the_streaming_group
);

/// The node's `SWITCHBOARD_BODY_LIMIT` in these tests.
const GLOBAL_LIMIT: usize = 16 * 1024;
/// The test route's own limit.
const ROUTE_LIMIT: u64 = 512 * 1024;
/// What the tests upload: many times the global limit.
const SIZE: usize = 256 * 1024;

/// What the test route saw.
#[derive(Default)]
struct Progress {
    runs: AtomicU64,
    bytes: AtomicU64,
}

/// A node whose streaming group has `POST /v1/test/uploads`, which counts bytes and chunks
/// as they arrive.
async fn spawn(b: Backend) -> (TestApp, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    let seen = progress.clone();
    let route = axum::Router::new().route(
        "/v1/test/uploads",
        axum::routing::post(move |req: Request| {
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let mut body =
                    match Streamed::new(&parts.headers, body, ROUTE_LIMIT, "the test route's") {
                        Ok(b) => b,
                        Err(e) => return e.into_response(),
                    };
                seen.runs.fetch_add(1, Ordering::SeqCst);
                let mut chunks = 0u64;
                loop {
                    match body.next_chunk().await {
                        Ok(Some(chunk)) => {
                            chunks += 1;
                            seen.bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        }
                        Ok(None) => break,
                        Err(e) => return e.into_response(),
                    }
                }
                axum::Json(json!({"bytes": body.bytes_read(), "chunks": chunks})).into_response()
            }
        }),
    );
    let app = spawn_extras(
        b,
        |c| c.body_limit = GLOBAL_LIMIT,
        Extras {
            streaming: route,
            ..Extras::default()
        },
    )
    .await;
    (app, progress)
}

async fn streaming_routes_take_bodies_larger_than_the_global_limit(b: Backend) {
    let (app, progress) = spawn(b).await;
    let r = app
        .req(Method::POST, "/v1/test/uploads")
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; SIZE])
        .send()
        .await
        .unwrap();
    let v = json_of(r, 200).await;
    assert_eq!(v["bytes"], SIZE as u64);
    assert_eq!(progress.bytes.load(Ordering::SeqCst), SIZE as u64);

    // The same size on a route of the API is over its limit.
    let r = app
        .post(
            "/v1/jobs",
            &json!({"queue": "q", "kind": "k", "payload": "x".repeat(SIZE)}),
        )
        .await;
    let v = problem(r, 413, "body-too-large").await;
    assert!(v["detail"].as_str().unwrap().contains("16384 bytes"), "{v}");

    // The group is authenticated like the rest of /v1.
    let r = app
        .client
        .post(app.url("/v1/test/uploads"))
        .body(vec![7u8; 10])
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthorized").await;

    // The route's own limit holds, counted as chunks arrive (no Content-Length to go by).
    let chunk = vec![b'z'; 64 * 1024];
    let mut chunked = format!("{:x}\r\n", chunk.len()).into_bytes();
    chunked.extend_from_slice(&chunk);
    chunked.extend_from_slice(b"\r\n");
    let parts: Vec<&[u8]> = std::iter::repeat_n(chunked.as_slice(), 9)
        .chain([b"0\r\n\r\n".as_slice()])
        .collect();
    let (status, body) = raw_exchange(
        &app,
        "POST /v1/test/uploads HTTP/1.1\r\nTransfer-Encoding: chunked",
        &parts,
        |_| async {},
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("524288 bytes (the test route's)"), "{body}");
}

async fn streaming_handlers_see_chunks_as_they_arrive(b: Backend) {
    let (app, progress) = spawn(b).await;
    let body = vec![1u8; SIZE];
    let (first, rest) = body.split_at(64 * 1024);
    let head = format!(
        "POST /v1/test/uploads HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {SIZE}"
    );
    let seen = progress.clone();
    let (status, answer) = raw_exchange(&app, &head, &[first, rest], |i| {
        let seen = seen.clone();
        async move {
            if i > 0 {
                return;
            }
            // The rest is not sent until the handler has counted the first part: a layer
            // that buffered the body would wait for the rest, and this would time out.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while seen.bytes.load(Ordering::SeqCst) < 64 * 1024 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the handler saw {} bytes of the first 65536 sent",
                    seen.bytes.load(Ordering::SeqCst)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await;
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["bytes"], SIZE as u64);
    assert!(v["chunks"].as_u64().unwrap() >= 2, "{v}");
}

async fn idempotency_keys_are_neither_buffered_nor_kept_on_the_streaming_group(b: Backend) {
    let (app, progress) = spawn(b).await;
    let stored = || async {
        let mut conn = app.state.db.read().await.unwrap();
        let n: i64 = switchboard_core::on_db!(conn.ex(), c =>
            sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys").fetch_one(c).await.unwrap());
        n
    };
    for _ in 0..2 {
        let r = app
            .req(Method::POST, "/v1/test/uploads")
            .header("idempotency-key", "upload-1")
            .body(vec![3u8; SIZE])
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("idempotent-replayed").is_none());
        assert_eq!(json_of(r, 200).await["bytes"], SIZE as u64);
    }
    assert_eq!(progress.runs.load(Ordering::SeqCst), 2, "no replay");
    assert_eq!(stored().await, 0, "nothing kept");
    // The same header on a route of the API is kept (the count above could see it).
    let r = app
        .req(Method::POST, "/v1/jobs")
        .header("idempotency-key", "job-1")
        .json(&json!({"queue": "q", "kind": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(stored().await, 1);
}

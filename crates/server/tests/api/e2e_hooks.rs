//! Provider callbacks under `/hooks/`: no API key, the exact bytes and headers reach the
//! provider's handler, a body limit and a per-IP bucket of their own, in the OpenAPI
//! document, 404 for a provider nobody registered.

use crate::both;
use crate::helpers::{json_of, problem, raw_exchange, spawn_extras, TestApp};
use reqwest::Method;
use serde_json::json;
use std::sync::{Arc, Mutex};
use switchboard_core::config::Config;
use switchboard_core::db::Backend;
use switchboard_server::app::Extras;
use switchboard_server::hooks::{HookError, HookRequest, HookResponse, Registry};

both!(
    a_registered_hook_gets_the_exact_bytes_and_headers_without_an_api_key,
    hook_errors_are_problems,
    unknown_providers_are_404,
    hooks_have_a_body_limit_of_their_own,
    hooks_are_rate_limited_per_ip,
    hooks_are_in_the_openapi_document
);

type Seen = Arc<Mutex<Vec<HookRequest>>>;

/// A node with an `echo` provider that records what it got and answers 202 `ack`, and a
/// `strict` one that answers each kind of refusal.
async fn spawn(b: Backend, adjust: impl FnOnce(&mut Config)) -> (TestApp, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let hooks = Registry::new()
        .with("echo", move |_state, req: HookRequest| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(req);
                let mut resp = HookResponse::json(&json!({"ok": true}));
                resp.status = reqwest::StatusCode::ACCEPTED;
                Ok(resp)
            }
        })
        .with("strict", |_state, req: HookRequest| async move {
            match req.key.as_deref() {
                Some("unknown") => Err(HookError::UnknownKey("no such account".into())),
                Some("garbled") => Err(HookError::Malformed("not a delivery report".into())),
                Some("broken") => Err(HookError::Internal(anyhow::anyhow!("store failed"))),
                _ if req.headers.get("x-signature").is_some_and(|s| s == "good") => {
                    Ok(HookResponse::ok())
                }
                _ => Err(HookError::BadSignature("signature mismatch".into())),
            }
        });
    let app = spawn_extras(
        b,
        adjust,
        Extras {
            hooks,
            ..Extras::default()
        },
    )
    .await;
    (app, seen)
}

async fn a_registered_hook_gets_the_exact_bytes_and_headers_without_an_api_key(b: Backend) {
    let (app, seen) = spawn(b, |_| {}).await;
    // Not JSON, not UTF-8, not even a valid form: a JSON extractor would refuse it.
    let body: Vec<u8> = b"a=1&b=%ZZ\r\n\x00\xff\xfe{not json"
        .iter()
        .copied()
        .chain(0..=255u8)
        .collect();
    for _ in 0..2 {
        let r = app
            .client
            .post(app.url("/hooks/echo/acct_01.x-y~z?event=delivered&id=7"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-signature", "t=1,v1=abc")
            .header("x-provider-weird", "  spaced  value ")
            // An Idempotency-Key means nothing here: every delivery reaches the handler.
            .header("idempotency-key", "same")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert!(r.headers().get("idempotent-replayed").is_none());
        assert_eq!(r.text().await.unwrap(), r#"{"ok":true}"#);
    }
    let r = app
        .client
        .post(app.url("/hooks/echo"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "every delivery reached the handler");
        let first = &seen[0];
        assert_eq!(first.provider, "echo");
        assert_eq!(first.key.as_deref(), Some("acct_01.x-y~z"));
        assert_eq!(first.body.as_ref(), body.as_slice(), "byte for byte");
        assert_eq!(first.headers["x-signature"], "t=1,v1=abc");
        assert_eq!(first.headers["x-provider-weird"], "spaced  value");
        assert_eq!(
            first.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(first.uri.query(), Some("event=delivered&id=7"));
        assert_eq!(first.uri.path(), "/hooks/echo/acct_01.x-y~z");
        assert_eq!(first.client.ip.as_deref(), Some("127.0.0.1"));
        assert!(first.client.request_id.is_some());
        assert_eq!(seen[2].key, None);
        assert_eq!(seen[2].body.as_ref(), b"{}");
    }

    // Nothing of it was kept as an idempotent response.
    let mut conn = app.state.db.read().await.unwrap();
    let rows: i64 = switchboard_core::on_db!(conn.ex(), c =>
        sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys").fetch_one(c).await.unwrap());
    assert_eq!(rows, 0);
}

async fn hook_errors_are_problems(b: Backend) {
    let (app, _) = spawn(b, |_| {}).await;
    let post = |path: &str, signature: &str| {
        app.client
            .post(app.url(path))
            .header("x-signature", signature)
            .body("payload")
            .send()
    };
    assert_eq!(post("/hooks/strict", "good").await.unwrap().status(), 200);
    let v = problem(
        post("/hooks/strict", "bad").await.unwrap(),
        401,
        "invalid-signature",
    )
    .await;
    assert_eq!(v["detail"], "signature mismatch");
    problem(
        post("/hooks/strict/unknown", "good").await.unwrap(),
        404,
        "not-found",
    )
    .await;
    problem(
        post("/hooks/strict/garbled", "good").await.unwrap(),
        400,
        "bad-request",
    )
    .await;
    let v = problem(
        post("/hooks/strict/broken", "good").await.unwrap(),
        500,
        "internal",
    )
    .await;
    assert!(
        !v["detail"].as_str().unwrap().contains("store failed"),
        "{v}"
    );
    // An API key changes nothing: the signature is the credential.
    let r = app
        .req(Method::POST, "/hooks/strict")
        .header("x-signature", "bad")
        .send()
        .await
        .unwrap();
    problem(r, 401, "invalid-signature").await;
}

async fn unknown_providers_are_404(b: Backend) {
    let (app, seen) = spawn(b, |_| {}).await;
    for path in [
        "/hooks/nobody",
        "/hooks/nobody/acct",
        "/hooks/ECHO",
        "/hooks/echo-",
    ] {
        let r = app
            .client
            .post(app.url(path))
            .body("x")
            .send()
            .await
            .unwrap();
        let v = problem(r, 404, "not-found").await;
        assert!(
            v["detail"].as_str().unwrap().contains("takes callbacks"),
            "{v}"
        );
    }
    for path in ["/hooks", "/hooks/", "/hooks/echo/a/b"] {
        let r = app
            .client
            .post(app.url(path))
            .body("x")
            .send()
            .await
            .unwrap();
        problem(r, 404, "not-found").await;
    }
    let r = app.client.get(app.url("/hooks/echo")).send().await.unwrap();
    problem(r, 405, "method-not-allowed").await;
    assert!(seen.lock().unwrap().is_empty());
}

async fn hooks_have_a_body_limit_of_their_own(b: Backend) {
    let (app, seen) = spawn(b, |c| {
        c.hooks_body_limit = 4096;
        c.body_limit = 1024;
    })
    .await;
    // Larger than the API's limit, within the hooks' one.
    let r = app
        .client
        .post(app.url("/hooks/echo"))
        .body(vec![b'a'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(seen.lock().unwrap()[0].body.len(), 4096);
    // Over it: refused from the Content-Length, before the handler.
    let r = app
        .client
        .post(app.url("/hooks/echo"))
        .body(vec![b'a'; 4097])
        .send()
        .await
        .unwrap();
    let v = problem(r, 413, "body-too-large").await;
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("4096 bytes") && detail.contains("SWITCHBOARD_HOOKS_BODY_LIMIT"),
        "{v}"
    );
    // Without a Content-Length (chunked), counted as it arrives.
    let chunk = vec![b'b'; 3000];
    let (status, body) = raw_exchange(
        &app,
        "POST /hooks/echo HTTP/1.1\r\nTransfer-Encoding: chunked",
        &[&chunked(&chunk), &chunked(&chunk), b"0\r\n\r\n"],
        |_| async {},
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("body-too-large"), "{body}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "refused bodies never reach it"
    );
    let (status, body) = raw_exchange(
        &app,
        "POST /hooks/echo HTTP/1.1\r\nTransfer-Encoding: chunked",
        &[&chunked(&chunk), b"0\r\n\r\n"],
        |_| async {},
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(seen.lock().unwrap()[1].body.len(), 3000);
}

/// One chunk of a chunked body.
fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

async fn hooks_are_rate_limited_per_ip(b: Backend) {
    let (app, _) = spawn(b, |c| {
        c.hooks_rate_limit_per_minute = 3;
        c.auth_rate_limit_per_minute = 3;
        c.trusted_proxies = 1;
    })
    .await;
    let from = |ip: &str| {
        app.client
            .post(app.url("/hooks/echo"))
            .header("x-forwarded-for", ip)
            .body("x")
            .send()
    };
    for _ in 0..3 {
        assert_eq!(from("203.0.113.7").await.unwrap().status(), 202);
    }
    let r = from("203.0.113.7").await.unwrap();
    assert!(r.headers().get("retry-after").is_some());
    problem(r, 429, "rate-limited").await;
    // Another client has its own bucket.
    assert_eq!(from("203.0.113.8").await.unwrap().status(), 202);
    // Callbacks and logins do not share one: the hooks burst left the login bucket whole.
    let login = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"email": "nobody@localhost", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    problem(login, 401, "unauthorized").await;
}

async fn hooks_are_in_the_openapi_document(b: Backend) {
    let (app, _) = spawn(b, |_| {}).await;
    let doc = json_of(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    for path in ["/hooks/{provider}", "/hooks/{provider}/{key}"] {
        let op = &doc["paths"][path]["post"];
        assert_eq!(op["tags"], json!(["hooks"]), "{path}");
        assert_eq!(op["security"], json!([{}]), "{path}");
        assert!(op["responses"]["404"].is_object(), "{path}");
        assert!(op["responses"]["413"].is_object(), "{path}");
        assert!(op["responses"]["429"].is_object(), "{path}");
    }
    assert!(doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "hooks"));
}

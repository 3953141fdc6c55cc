//! Password login, JWT access tokens, refresh rotation with reuse detection, logout,
//! per-IP login rate limits, dashboard session cookies.

use crate::both;
use crate::helpers::{
    json_of, login, problem, spawn_app, spawn_config, spawn_with, test_config, TestApp,
    OWNER_EMAIL, OWNER_PASSWORD,
};
use reqwest::Method;
use serde_json::{json, Value};
use switchboard_core::db::Backend;

both!(
    forwarded_for_cannot_be_forged,
    failed_logins_lock_the_account,
    password_work_is_bounded,
    access_tokens_end_with_their_session,
    dashboard_login_and_logout_refuse_other_origins,
    login_refresh_rotation_and_reuse,
    logout_revokes_family,
    login_is_rate_limited_per_ip,
    dashboard_session_cookie
);

async fn refresh(app: &crate::helpers::TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/refresh"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap()
}

async fn login_refresh_rotation_and_reuse(b: Backend) {
    let app = spawn_app(b).await;
    problem(
        login(&app, OWNER_EMAIL, "wrong-password").await,
        401,
        "unauthorized",
    )
    .await;
    problem(
        login(&app, "nobody@localhost", OWNER_PASSWORD).await,
        401,
        "unauthorized",
    )
    .await;

    let first: Value = json_of(login(&app, "Owner@Localhost", OWNER_PASSWORD).await, 200).await;
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    let access = first["access_token"].as_str().unwrap();
    let me = json_of(
        app.req_as(Method::GET, "/v1/me", access)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(me["role"], "owner");
    assert_eq!(me["actor"]["type"], "user");

    // Rotation: the old refresh token buys a new pair and is then spent.
    let old = first["refresh_token"].as_str().unwrap().to_owned();
    let second = json_of(refresh(&app, &old).await, 200).await;
    let newer = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(newer, old);
    let access2 = second["access_token"].as_str().unwrap();
    assert_eq!(
        app.req_as(Method::GET, "/v1/me", access2)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Reuse of the spent token revokes the whole family, the newer token included.
    problem(refresh(&app, &old).await, 401, "refresh-token-reused").await;
    problem(refresh(&app, &newer).await, 401, "unauthorized").await;
    let events = json_of(
        app.get("/v1/audit-events?action=auth.refresh_reuse").await,
        200,
    )
    .await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    let events = json_of(app.get("/v1/audit-events?action=auth.refresh").await, 200).await;
    assert_eq!(
        events["data"].as_array().unwrap().len(),
        1,
        "one successful rotation"
    );

    // A separate login is a separate family and keeps working.
    let other = json_of(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await, 200).await;
    assert_eq!(
        refresh(&app, other["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    problem(refresh(&app, "sbr_unknown").await, 401, "unauthorized").await;
    let r = app
        .req_as(Method::GET, "/v1/me", "eyJhbGciOiJIUzI1NiJ9.e30.bad")
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthorized").await;
}

async fn logout_revokes_family(b: Backend) {
    let app = spawn_app(b).await;
    let pair = json_of(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await, 200).await;
    let token = pair["refresh_token"].as_str().unwrap();
    let r = app
        .client
        .post(app.url("/v1/auth/logout"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(refresh(&app, token).await, 401, "unauthorized").await;
    let events = json_of(app.get("/v1/audit-events?action=auth.logout").await, 200).await;
    assert_eq!(events["data"][0]["actor"]["type"], "user");

    // Disabling a user ends its access tokens at once.
    let pair = json_of(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await, 200).await;
    let access = pair["access_token"].as_str().unwrap();
    let r = app
        .post(
            "/v1/users",
            &json!({"email": "op@example.com", "role": "admin", "password": "op-password-1"}),
        )
        .await;
    let admin = json_of(r, 201).await;
    let admin_pair = json_of(login(&app, "op@example.com", "op-password-1").await, 200).await;
    let admin_access = admin_pair["access_token"].as_str().unwrap();
    assert_eq!(
        app.req_as(Method::GET, "/v1/me", admin_access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = app
        .req_as(
            Method::PATCH,
            &format!("/v1/users/{}", admin["id"].as_str().unwrap()),
            access,
        )
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.req_as(Method::GET, "/v1/me", admin_access)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    problem(
        refresh(&app, admin_pair["refresh_token"].as_str().unwrap()).await,
        401,
        "unauthorized",
    )
    .await;
    problem(
        login(&app, "op@example.com", "op-password-1").await,
        401,
        "unauthorized",
    )
    .await;
}

async fn login_is_rate_limited_per_ip(b: Backend) {
    let app = spawn_with(b, |c| c.auth_rate_limit_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(
            login(&app, OWNER_EMAIL, "wrong-password").await.status(),
            401
        );
    }
    let r = login(&app, OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(r.headers()["ratelimit-limit"], "3");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "retry-after {retry}");
    problem(r, 429, "rate-limited").await;
    // API-key traffic is limited separately, per key.
    assert_eq!(app.get("/v1/me").await.status(), 200);
}

async fn dashboard_session_cookie(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/dashboard/login");
    let r = app
        .client
        .post(app.url("/dashboard/login"))
        .form(&[("email", OWNER_EMAIL), ("password", "nope-nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Wrong e-mail or password"));
    let r = app
        .client
        .post(app.url("/dashboard/login"))
        .form(&[("email", OWNER_EMAIL), ("password", OWNER_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = app
        .client
        .get(app.url("/dashboard"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains(OWNER_EMAIL) && html.contains("id=\"audit-events\">"),
        "{html}"
    );
    let r = app
        .client
        .post(app.url("/dashboard/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = app
        .client
        .get(app.url("/dashboard"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "session ended");
    for action in ["auth.dashboard_login", "auth.dashboard_logout"] {
        let events = json_of(
            app.get(&format!("/v1/audit-events?action={action}")).await,
            200,
        )
        .await;
        assert_eq!(events["data"].as_array().unwrap().len(), 1, "{action}");
    }
}

async fn me_status(app: &crate::helpers::TestApp, access: &Value) -> u16 {
    app.req_as(Method::GET, "/v1/me", access.as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An access token is refused as soon as its login session (refresh-token family) ends:
/// logout, refresh-token reuse, a password change.
async fn access_tokens_end_with_their_session(b: Backend) {
    let app = spawn_app(b).await;
    let session = || async { json_of(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await, 200).await };

    // Logout ends that session's access tokens, not another session's.
    let a = session().await;
    let other = session().await;
    assert_eq!(me_status(&app, &a["access_token"]).await, 200);
    let r = app
        .client
        .post(app.url("/v1/auth/logout"))
        .json(&json!({"refresh_token": a["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(me_status(&app, &a["access_token"]).await, 401);
    assert_eq!(me_status(&app, &other["access_token"]).await, 200);

    // Reuse of a rotated refresh token ends every access token of the family.
    let first = session().await;
    let second = json_of(
        refresh(&app, first["refresh_token"].as_str().unwrap()).await,
        200,
    )
    .await;
    assert_eq!(
        me_status(&app, &first["access_token"]).await,
        200,
        "rotation alone keeps it"
    );
    assert_eq!(me_status(&app, &second["access_token"]).await, 200);
    problem(
        refresh(&app, first["refresh_token"].as_str().unwrap()).await,
        401,
        "refresh-token-reused",
    )
    .await;
    assert_eq!(me_status(&app, &first["access_token"]).await, 401);
    assert_eq!(me_status(&app, &second["access_token"]).await, 401);
    assert_eq!(me_status(&app, &other["access_token"]).await, 200);

    // A password change (here through an API key) ends every session of the user.
    let owner_id = json_of(
        app.req_as(
            Method::GET,
            "/v1/me",
            other["access_token"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await["actor"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let third = session().await;
    let r = app
        .req(Method::PATCH, &format!("/v1/users/{owner_id}"))
        .json(&json!({"password": "a-new-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me_status(&app, &other["access_token"]).await, 401);
    assert_eq!(me_status(&app, &third["access_token"]).await, 401);
    let fresh = json_of(login(&app, OWNER_EMAIL, "a-new-password-1").await, 200).await;
    assert_eq!(me_status(&app, &fresh["access_token"]).await, 200);
}

async fn sessions_in_db(app: &crate::helpers::TestApp) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    switchboard_core::on_db!(conn.ex(), c => sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(c).await.unwrap())
}

/// Login CSRF: another site's form must not sign a browser in (into the attacker's account)
/// or out. Both answer 403 and change nothing.
async fn dashboard_login_and_logout_refuse_other_origins(b: Backend) {
    let app = spawn_app(b).await;
    let dashboard_login = |origin: Option<&str>| {
        let mut req = app
            .client
            .post(app.url("/dashboard/login"))
            .form(&[("email", OWNER_EMAIL), ("password", OWNER_PASSWORD)]);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    for origin in ["https://evil.example", "null"] {
        let r = dashboard_login(Some(origin)).await.unwrap();
        assert_eq!(r.status(), 403, "{origin}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    assert_eq!(sessions_in_db(&app).await, 0);
    let events = json_of(
        app.get("/v1/audit-events?action=auth.dashboard_login")
            .await,
        200,
    )
    .await;
    assert_eq!(events["data"].as_array().unwrap().len(), 0);

    // The dashboard's own origin logs in.
    let r = dashboard_login(Some(&app.addr)).await.unwrap();
    assert_eq!(r.status(), 303);
    let pair = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(sessions_in_db(&app).await, 1);

    let logout = |origin: &str| {
        app.client
            .post(app.url("/dashboard/logout"))
            .header("cookie", &pair)
            .header("origin", origin)
            .send()
    };
    let r = logout("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none(), "cookie kept");
    assert_eq!(sessions_in_db(&app).await, 1);
    let page = app
        .client
        .get(app.url("/dashboard"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "still logged in");

    let r = logout(&app.addr).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(sessions_in_db(&app).await, 0);
}

/// `POST /v1/auth/login` with an `X-Forwarded-For` header.
async fn login_via(app: &TestApp, forwarded: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"email": OWNER_EMAIL, "password": password}))
        .send()
        .await
        .unwrap()
}

/// The IP of the latest `auth.login` event.
async fn last_login_ip(app: &TestApp) -> Value {
    let events = json_of(app.get("/v1/audit-events?action=auth.login").await, 200).await;
    let data = events["data"].as_array().unwrap();
    data.iter().max_by_key(|e| e["seq"].as_i64()).unwrap()["ip"].clone()
}

/// Behind one trusted proxy the client is the right-most `X-Forwarded-For` entry: what the
/// client itself puts to the left changes neither its rate-limit bucket nor the audit IP.
/// With no trusted proxy (the default) the header is ignored.
async fn forwarded_for_cannot_be_forged(b: Backend) {
    let app = spawn_with(b, |c| {
        c.trusted_proxies = 1;
        c.auth_rate_limit_per_minute = 3;
    })
    .await;
    let r = login_via(&app, "6.6.6.6, 7.7.7.7", OWNER_PASSWORD).await;
    assert_eq!(r.status(), 200);
    assert_eq!(last_login_ip(&app).await, "7.7.7.7");
    for forged in ["9.9.9.1, 7.7.7.7", "9.9.9.2,7.7.7.7"] {
        assert_eq!(
            login_via(&app, forged, "wrong-password").await.status(),
            401
        );
    }
    // A new left-most entry is not a new client.
    problem(
        login_via(&app, "9.9.9.3, 7.7.7.7", OWNER_PASSWORD).await,
        429,
        "rate-limited",
    )
    .await;
    // Another client behind the same proxy has its own bucket; junk in its place is the peer.
    assert_eq!(
        login_via(&app, "8.8.8.8", OWNER_PASSWORD).await.status(),
        200
    );
    assert_eq!(last_login_ip(&app).await, "8.8.8.8");
    assert_eq!(
        login_via(&app, "7.7.7.7, garbage", OWNER_PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(last_login_ip(&app).await, "127.0.0.1");

    // Default: nobody is trusted, the header is ignored.
    let plain = spawn_app(b).await;
    assert_eq!(
        login_via(&plain, "7.7.7.7", OWNER_PASSWORD).await.status(),
        200
    );
    assert_eq!(last_login_ip(&plain).await, "127.0.0.1");
}

async fn login_failure_row(app: &TestApp, email: &str) -> Option<(i64, i64)> {
    let mut conn = app.state.db.read().await.unwrap();
    switchboard_core::on_db!(conn.ex(), c => sqlx::query_as(
        "SELECT failures, locked_until FROM login_failures WHERE email = $1")
        .bind(email).fetch_optional(c).await.unwrap())
}

/// Ends the account's current lock, as time passing would.
async fn end_lock(app: &TestApp, email: &str) {
    let mut tx = app.state.db.begin().await.unwrap();
    let past = switchboard_core::time::to_db(switchboard_core::time::now()) - 1_000_000;
    switchboard_core::on_db!(tx.ex(), c => sqlx::query(
        "UPDATE login_failures SET locked_until = $2 WHERE email = $1")
        .bind(email).bind(past).execute(c).await.map(|_| ()))
    .unwrap();
    tx.commit().await.unwrap();
}

fn retry_after(r: &reqwest::Response) -> i64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Five failed logins lock the account (the right password included) for a delay that
/// doubles; the answer is the same for an account that does not exist; every node sees the
/// lock; the dashboard login too; success resets the count.
async fn failed_logins_lock_the_account(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(b, dir.path()).await;
    let app = spawn_config(config.clone(), None).await;
    let other_node = spawn_config(config, Some(dir)).await;
    for email in [OWNER_EMAIL, "ghost@localhost"] {
        for _ in 0..5 {
            let r = login(&app, email, "wrong-password").await;
            problem(r, 401, "unauthorized").await;
        }
        for node in [&app, &other_node] {
            let r = login(node, email, OWNER_PASSWORD).await;
            let retry = retry_after(&r);
            assert!((1..=60).contains(&retry), "{retry}");
            let v = problem(r, 429, "login-throttled").await;
            assert!(v["detail"].as_str().unwrap().contains("try again"));
        }
    }
    // The normalised e-mail is what counts.
    problem(
        login(&app, "  OWNER@localhost ", OWNER_PASSWORD).await,
        429,
        "login-throttled",
    )
    .await;
    let r = app
        .client
        .post(app.url("/dashboard/login"))
        .form(&[("email", OWNER_EMAIL), ("password", OWNER_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("Too many failed logins"));

    // After the lock, one more failure locks again, for twice as long.
    end_lock(&app, OWNER_EMAIL).await;
    problem(
        login(&app, OWNER_EMAIL, "wrong-password").await,
        401,
        "unauthorized",
    )
    .await;
    let r = login(&app, OWNER_EMAIL, OWNER_PASSWORD).await;
    let retry = retry_after(&r);
    assert!((61..=120).contains(&retry), "{retry}");
    problem(r, 429, "login-throttled").await;

    // A success after the lock clears the count.
    end_lock(&app, OWNER_EMAIL).await;
    assert_eq!(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await.status(), 200);
    assert_eq!(login_failure_row(&app, OWNER_EMAIL).await, None);
    problem(
        login(&app, OWNER_EMAIL, "wrong-password").await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await.status(), 200);

    // Quiet counts are pruned by maintenance.
    assert!(login_failure_row(&app, "ghost@localhost").await.is_some());
    let later = switchboard_core::time::add_secs(switchboard_core::time::now(), 3600);
    let pruned = switchboard_server::platform::login::throttle::prune(&app.state.db, later)
        .await
        .unwrap();
    assert!(pruned >= 1);
    assert_eq!(login_failure_row(&app, "ghost@localhost").await, None);
}

/// With one hashing slot and no waiting line, a burst of logins gets fast 503 `server-busy`
/// answers with `Retry-After` instead of queueing without bound; nothing fails otherwise.
async fn password_work_is_bounded(b: Backend) {
    let app = spawn_with(b, |c| {
        c.password_hash_concurrency = 1;
        c.password_hash_queue = 0;
    })
    .await;
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..16 {
        let req = app
            .client
            .post(app.url("/v1/auth/login"))
            .json(&json!({"email": format!("flood{i}@example.com"), "password": "wrong-password"}));
        attempts.spawn(async move { req.send().await.unwrap() });
    }
    let mut busy = 0;
    while let Some(r) = attempts.join_next().await {
        let r = r.unwrap();
        match r.status().as_u16() {
            401 => {}
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                problem(r, 503, "server-busy").await;
                busy += 1;
            }
            s => panic!("unexpected {s}: {}", r.text().await.unwrap()),
        }
    }
    assert!(busy > 0, "no request was turned away");
    // A busy answer did not count against the account: five failures are still needed.
    assert_eq!(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await.status(), 200);
}

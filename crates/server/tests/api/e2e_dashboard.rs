//! The dashboard: HTML and JSON endpoints over HTTP, and a real headless Chromium run
//! (login, every page, the actions with their confirmations, live counts, screenshots).
//! The browser run needs Node.js, `tests/browser/node_modules` (npm install) and
//! /usr/bin/chromium (else it is reported ignored); CI sets SWITCHBOARD_TEST_REQUIRE_BROWSER
//! so a missing piece fails instead.

use crate::both;
use crate::helpers::{json_of, spawn_app, spawn_with, TestApp, OWNER_EMAIL, OWNER_PASSWORD};
use reqwest::Response;
use serde_json::{json, Value};
use std::path::PathBuf;
use switchboard_core::db::Backend;
use switchboard_core::on_db;

both!(needs(Browser): operator_uses_the_dashboard_in_chromium);
both!(
    pages_never_answer_with_problem_json,
    empty_states_say_how_to_start,
    viewers_are_refused_every_change,
    queue_settings_follow_the_api_rules,
    destructive_actions_need_confirmation,
    overview_does_not_walk_the_audit_chain,
    dashboard_pages_are_rate_limited_per_user,
    live_values_follow_the_queues,
    job_detail_separates_runs_and_hides_header_values,
    schedules_are_operated_through_the_api_code,
    oldest_waiting_job_reads_the_ready_index,
);

/// A dashboard session of `email`: its cookie pair.
async fn session(app: &TestApp, email: &str, password: &str) -> String {
    let r = app
        .client
        .post(app.url("/dashboard/login"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "login of {email}");
    r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn owner(app: &TestApp) -> String {
    session(app, OWNER_EMAIL, OWNER_PASSWORD).await
}

async fn get(app: &TestApp, cookie: &str, path: &str) -> Response {
    app.client
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// A form post as the browser sends it (same Origin).
async fn post(app: &TestApp, cookie: &str, path: &str, form: &[(&str, &str)]) -> Response {
    app.client
        .post(app.url(path))
        .header("cookie", cookie)
        .header("origin", &app.addr)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Asserts an HTML page with `status` and returns its text.
async fn html(r: Response, status: u16) -> String {
    let got = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    assert!(ct.starts_with("text/html"), "content-type {ct}: {text}");
    assert!(
        !text.contains("\"type\":\"/problems/"),
        "no raw problem document: {text}"
    );
    text
}

fn location(r: &Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

async fn enqueue(app: &TestApp, body: Value) -> String {
    json_of(app.post("/v1/jobs", &body).await, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Claims the only available job of `queue` (waiting for it) and fails it.
async fn claim_and_fail(app: &TestApp, queue: &str, error: &str, permanent: bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let c = json_of(
            app.post(
                &format!("/v1/queues/{queue}/claim"),
                &json!({"worker": "w1", "wait_ms": 1000}),
            )
            .await,
            200,
        )
        .await;
        if let Some(j) = c["jobs"].get(0) {
            let id = j["id"].as_str().unwrap().to_owned();
            let token = j["lease_token"].as_str().unwrap();
            let r = app
                .post(
                    &format!("/v1/jobs/{id}/fail"),
                    &json!({"lease_token": token, "error": error, "permanent": permanent}),
                )
                .await;
            assert_eq!(r.status(), 200);
            return id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing to claim in {queue}"
        );
    }
}

/// A job failed in two runs of two attempts each (errors `1, 2, 1, 2`), then retried again.
async fn job_with_three_runs(app: &TestApp, queue: &str) -> String {
    let id = enqueue(
        app,
        json!({"queue": queue, "kind": "sync", "max_attempts": 2,
               "backoff": {"type": "fixed", "delay_ms": 0}, "payload": {"account": 42}}),
    )
    .await;
    for run in 1..=2 {
        claim_and_fail(app, queue, &format!("run {run} attempt 1 failed"), false).await;
        claim_and_fail(app, queue, &format!("run {run} attempt 2 failed"), false).await;
        let j = json_of(app.get(&format!("/v1/jobs/{id}")).await, 200).await;
        assert_eq!(j["state"], "failed");
        json_of(
            app.post(&format!("/v1/jobs/{id}/retry"), &json!({})).await,
            200,
        )
        .await;
    }
    id
}

async fn audit_actions(app: &TestApp, filter: &str) -> Vec<(String, String)> {
    let v = json_of(app.get(&format!("/v1/audit-events?{filter}")).await, 200).await;
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"]["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn pages_never_answer_with_problem_json(b: Backend) {
    let app = spawn_app(b).await;
    enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    let c = owner(&app).await;
    for (path, status, says) in [
        (
            "/dashboard/jobs?state=bogus",
            400,
            "“bogus” is not a job state. Pick one of",
        ),
        (
            "/dashboard/jobs?queue=no%20spaces",
            400,
            "is not a queue name",
        ),
        ("/dashboard/jobs?kind=a%20b", 400, "is not a job kind"),
        (
            "/dashboard/jobs?after=garbage",
            400,
            "This page link is damaged",
        ),
        (
            "/dashboard/queues/emails?state=nope",
            400,
            "“nope” is not a job state",
        ),
        ("/dashboard/jobs/find?id=abc", 400, "“abc” is not a job id"),
        ("/dashboard/queues/nosuch", 404, "No such queue."),
        (
            "/dashboard/jobs/job_01jqz6w0m3f2t9x4y5z6a7b8c9",
            404,
            "No such job.",
        ),
        ("/dashboard/schedules/sched_nope", 404, "No such schedule."),
        (
            "/dashboard/nowhere",
            404,
            "There is no dashboard page here.",
        ),
        (
            "/dashboard/queues/emails/pause",
            405,
            "GET is not allowed here",
        ),
    ] {
        let text = html(get(&app, &c, path).await, status).await;
        assert!(text.contains(says), "{path}: {text}");
    }
    // The filter form still shows what was typed.
    let text = html(
        get(&app, &c, "/dashboard/jobs?state=bogus&kind=welcome").await,
        400,
    )
    .await;
    assert!(text.contains("value=\"welcome\""), "{text}");
    // Bodies the dashboard cannot read, and errors of the shared login handler.
    let r = app
        .client
        .post(app.url("/dashboard/jobs/bulk"))
        .header("cookie", &c)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(html(r, 400).await.contains("The form could not be read"));
    let r = app
        .client
        .post(app.url("/dashboard/login"))
        .form(&[("email", "x@example.com")])
        .send()
        .await
        .unwrap();
    assert!(html(r, 422).await.contains("password"));
    // A failed login keeps the e-mail typed.
    let r = app
        .client
        .post(app.url("/dashboard/login"))
        .form(&[
            ("email", "someone@example.com"),
            ("password", "wrong-password"),
        ])
        .send()
        .await
        .unwrap();
    let text = html(r, 401).await;
    assert!(
        text.contains("value=\"someone@example.com\"") && text.contains("Wrong e-mail or password"),
        "{text}"
    );
}

async fn empty_states_say_how_to_start(b: Backend) {
    let app = spawn_with(b, |c| {
        c.public_url = Some("https://jobs.example.com".into())
    })
    .await;
    let c = owner(&app).await;
    for path in ["/dashboard", "/dashboard/queues"] {
        let text = html(get(&app, &c, path).await, 200).await;
        assert!(text.contains("No queues yet."), "{text}");
        assert!(
            text.contains("curl -X POST https://jobs.example.com/v1/jobs"),
            "{text}"
        );
    }
    let text = html(get(&app, &c, "/dashboard/schedules").await, 200).await;
    assert!(
        text.contains("No schedules yet.")
            && text.contains("https://jobs.example.com/v1/schedules")
    );
    // Without a public URL, the host the page was asked from.
    let app = spawn_app(b).await;
    let c = owner(&app).await;
    let text = html(get(&app, &c, "/dashboard").await, 200).await;
    assert!(
        text.contains(&format!("curl -X POST {}/v1/jobs", app.addr)),
        "{text}"
    );
    // An empty job list says so, per state.
    enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    let text = html(
        get(&app, &c, "/dashboard/queues/emails?state=failed").await,
        200,
    )
    .await;
    assert!(
        text.contains("No jobs match.") && text.contains("Nothing is failed here."),
        "{text}"
    );
}

async fn viewers_are_refused_every_change(b: Backend) {
    let app = spawn_app(b).await;
    json_of(
        app.post(
            "/v1/users",
            &json!({"email": "viewer@example.com", "password": "viewer-password-1", "role": "viewer"}),
        )
        .await,
        201,
    )
    .await;
    let failed = enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    claim_and_fail(&app, "emails", "boom", true).await;
    let sched = json_of(
        app.post("/v1/schedules", &json!({"name": "nightly", "cron": "0 2 * * *", "job": {"queue": "reports", "kind": "daily"}}))
            .await,
        201,
    )
    .await;
    let sid = sched["id"].as_str().unwrap();
    let v = session(&app, "viewer@example.com", "viewer-password-1").await;
    let before = app.audit_count().await;
    // Viewers read every page but are offered no actions.
    let text = html(get(&app, &v, "/dashboard/queues/emails").await, 200).await;
    assert!(
        !text.contains("id=\"toggle-pause\"") && !text.contains("data-selection"),
        "{text}"
    );
    assert!(text.contains("<fieldset disabled>"));
    let text = html(
        get(&app, &v, &format!("/dashboard/jobs/{failed}")).await,
        200,
    )
    .await;
    assert!(!text.contains("id=\"retry\"") && !text.contains("id=\"delete\""));
    let bulk = format!("/dashboard/jobs/{failed}/retry");
    let del = format!("/dashboard/jobs/{failed}/delete");
    let s = |a: &str| format!("/dashboard/schedules/{sid}/{a}");
    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/dashboard/queues/emails/pause".into(), vec![]),
        (
            "/dashboard/queues/emails/retry-failed".into(),
            vec![("confirmed", "1")],
        ),
        (
            "/dashboard/queues/emails/clean".into(),
            vec![("state", "failed"), ("confirmed", "1")],
        ),
        (
            "/dashboard/queues/emails/settings".into(),
            vec![("concurrency", "5")],
        ),
        (
            "/dashboard/jobs/bulk".into(),
            vec![("action", "delete"), ("id", &failed), ("confirmed", "1")],
        ),
        (bulk.clone(), vec![]),
        (del.clone(), vec![("confirmed", "1")]),
        (s("pause"), vec![]),
        (s("trigger"), vec![]),
        (s("delete"), vec![("confirmed", "1")]),
        (s("edit"), vec![("name", "x"), ("cron", "* * * * *")]),
    ];
    for (path, form) in &attempts {
        let text = html(post(&app, &v, path, form).await, 403).await;
        assert!(
            text.contains("Viewers cannot change anything"),
            "{path}: {text}"
        );
    }
    assert_eq!(app.audit_count().await, before, "nothing changed");
    let q = json_of(app.get("/v1/queues/emails").await, 200).await;
    assert_eq!(
        (q["paused"].as_bool(), q["counts"]["failed"].as_i64()),
        (Some(false), Some(1))
    );
    // An operator is refused a form posted from another site.
    let c = owner(&app).await;
    let before = app.audit_count().await;
    let r = app
        .client
        .post(app.url("/dashboard/queues/emails/pause"))
        .header("cookie", &c)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(html(r, 403).await.contains("submitted from another site"));
    assert_eq!(app.audit_count().await, before);
    // Operators operate.
    json_of(
        app.post(
            "/v1/users",
            &json!({"email": "operator@example.com", "password": "operator-password-1", "role": "operator"}),
        )
        .await,
        201,
    )
    .await;
    let o = session(&app, "operator@example.com", "operator-password-1").await;
    let r = post(&app, &o, "/dashboard/queues/emails/pause", &[]).await;
    assert_eq!(location(&r), "/dashboard/queues/emails?done=paused");
    let r = post(&app, &o, &format!("/dashboard/schedules/{sid}/pause"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        audit_actions(&app, "action=queue.pause").await,
        [("queue.pause".to_owned(), "user".to_owned())]
    );
}

async fn queue_settings_follow_the_api_rules(b: Backend) {
    let app = spawn_app(b).await;
    enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    let c = owner(&app).await;
    let bad = [
        ("concurrency", "0"),
        ("global_concurrency", "lots"),
        ("rate_limit", "5"),
        ("rate_period_ms", ""),
        ("keep_completed_secs", "86400"),
        ("keep_failed_secs", "-1"),
        ("keep_cancelled_secs", "60"),
    ];
    let text = html(
        post(&app, &c, "/dashboard/queues/emails/settings", &bad).await,
        422,
    )
    .await;
    for says in [
        "Nothing was saved",
        "“lots” is not a whole number",
        "give both the limit and its period",
    ] {
        assert!(text.contains(says), "{says}: {text}");
    }
    // The typed values stay in the form.
    assert!(
        text.contains("value=\"lots\"") && text.contains("value=\"-1\""),
        "{text}"
    );
    // Once the numbers parse, the API's own rules answer (apply_patch).
    let bad = [
        ("concurrency", "0"),
        ("global_concurrency", ""),
        ("rate_limit", ""),
        ("rate_period_ms", ""),
        ("keep_completed_secs", "86400"),
        ("keep_failed_secs", "-1"),
        ("keep_cancelled_secs", "60"),
    ];
    let text = html(
        post(&app, &c, "/dashboard/queues/emails/settings", &bad).await,
        422,
    )
    .await;
    assert!(
        text.contains("must be 1 to 1000") && text.contains("must be 0 to 365 days in seconds"),
        "{text}"
    );
    assert!(text.contains("id=\"f-concurrency-error\""), "{text}");
    let q = json_of(app.get("/v1/queues/emails").await, 200).await;
    assert_eq!(q["concurrency"], 10, "nothing saved");
    assert!(audit_actions(&app, "action=queue.update").await.is_empty());

    let good = [
        ("concurrency", "4"),
        ("global_concurrency", "20"),
        ("rate_limit", "100"),
        ("rate_period_ms", "1,000"),
        ("keep_completed_secs", "3600"),
        ("keep_failed_secs", "0"),
        ("keep_cancelled_secs", "60"),
    ];
    let r = post(&app, &c, "/dashboard/queues/emails/settings", &good).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        location(&r),
        "/dashboard/queues/emails?done=settings#settings"
    );
    let q = json_of(app.get("/v1/queues/emails").await, 200).await;
    assert_eq!(
        (
            &q["concurrency"],
            &q["global_concurrency"],
            &q["rate_limit"],
            &q["keep_failed_secs"]
        ),
        (
            &json!(4),
            &json!(20),
            &json!({"limit": 100, "period_ms": 1000}),
            &json!(0)
        )
    );
    assert_eq!(
        audit_actions(&app, "action=queue.update").await,
        [("queue.update".to_owned(), "user".to_owned())]
    );
    let text = html(
        get(&app, &c, "/dashboard/queues/emails?done=settings").await,
        200,
    )
    .await;
    assert!(text.contains("Settings saved."));
    // Empty limits clear them, as `null` does in the API.
    let clear = [
        ("concurrency", "4"),
        ("global_concurrency", ""),
        ("rate_limit", ""),
        ("rate_period_ms", ""),
        ("keep_completed_secs", "3600"),
        ("keep_failed_secs", "0"),
        ("keep_cancelled_secs", "60"),
    ];
    assert_eq!(
        post(&app, &c, "/dashboard/queues/emails/settings", &clear)
            .await
            .status(),
        303
    );
    let q = json_of(app.get("/v1/queues/emails").await, 200).await;
    assert!(
        q["global_concurrency"].is_null() && q["rate_limit"].is_null(),
        "{q}"
    );
}

async fn destructive_actions_need_confirmation(b: Backend) {
    let app = spawn_app(b).await;
    let a = enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    let bb = enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    let c = owner(&app).await;
    let back = "/dashboard/queues/emails?state=available";
    let form = [
        ("action", "delete"),
        ("id", a.as_str()),
        ("id", bb.as_str()),
        ("back", back),
    ];
    // Without `confirmed`, the server asks (the no-JavaScript confirm step), changing nothing.
    let text = html(post(&app, &c, "/dashboard/jobs/bulk", &form).await, 200).await;
    assert!(
        text.contains("Delete 2 selected jobs and their history?"),
        "{text}"
    );
    assert!(
        text.contains(&format!("name=\"id\" value=\"{a}\""))
            && text.contains("name=\"confirmed\" value=\"1\"")
    );
    assert!(text.contains("id=\"confirm-no\""));
    assert_eq!(app.get(&format!("/v1/jobs/{a}")).await.status(), 200);
    let mut confirmed = form.to_vec();
    confirmed.push(("confirmed", "1"));
    let r = post(&app, &c, "/dashboard/jobs/bulk", &confirmed).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        location(&r),
        "/dashboard/queues/emails?state=available&done=deleted&n=2&skipped=0"
    );
    for id in [&a, &bb] {
        assert_eq!(app.get(&format!("/v1/jobs/{id}")).await.status(), 404);
    }
    assert_eq!(
        audit_actions(&app, "action=job.delete").await,
        vec![("job.delete".to_owned(), "user".to_owned()); 2]
    );
    // A bulk retry skips what cannot be retried and says so.
    let waiting = enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    let failed = claim_and_fail(&app, "emails", "boom", true).await;
    let other = enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    assert_ne!(failed, other);
    let r = post(
        &app,
        &c,
        "/dashboard/jobs/bulk",
        &[
            ("action", "retry"),
            ("id", &failed),
            ("id", &other),
            ("confirmed", "1"),
            ("back", "https://evil.example/"),
        ],
    )
    .await;
    assert_eq!(
        location(&r),
        "/dashboard/jobs?done=retried&n=1&skipped=1",
        "never another site"
    );
    let text = html(get(&app, &c, &location(&r)).await, 200).await;
    assert!(
        text.contains("1 job retried. 1 skipped: their state does not allow it."),
        "{text}"
    );
    let _ = waiting;
    // One job: cancel and delete ask first.
    let text = html(
        post(&app, &c, &format!("/dashboard/jobs/{other}/delete"), &[]).await,
        200,
    )
    .await;
    assert!(text.contains("Delete this job and its history?"));
    assert_eq!(app.get(&format!("/v1/jobs/{other}")).await.status(), 200);
    let r = post(
        &app,
        &c,
        &format!("/dashboard/jobs/{other}/cancel"),
        &[("confirmed", "1")],
    )
    .await;
    assert_eq!(r.status(), 303);
    let j = json_of(app.get(&format!("/v1/jobs/{other}")).await, 200).await;
    assert_eq!(j["state"], "cancelled");
    // Queue-wide actions too.
    let text = html(
        post(
            &app,
            &c,
            "/dashboard/queues/emails/clean",
            &[("state", "cancelled")],
        )
        .await,
        200,
    )
    .await;
    assert!(
        text.contains("Delete every cancelled job of emails"),
        "{text}"
    );
    let r = post(
        &app,
        &c,
        "/dashboard/queues/emails/clean",
        &[("state", "cancelled"), ("confirmed", "1")],
    )
    .await;
    assert_eq!(location(&r), "/dashboard/queues/emails?done=deleted&n=1");
    assert_eq!(app.get(&format!("/v1/jobs/{other}")).await.status(), 404);
    let text = html(
        post(&app, &c, "/dashboard/queues/emails/retry-failed", &[]).await,
        200,
    )
    .await;
    assert!(
        text.contains("Retry all 0 failed jobs of emails?"),
        "{text}"
    );
    assert_eq!(
        audit_actions(&app, "entity_type=queue").await.len(),
        1,
        "only the confirmed clean"
    );
}

async fn overview_does_not_walk_the_audit_chain(b: Backend) {
    let app = spawn_app(b).await;
    for i in 0..3 {
        app.post(
            "/v1/api-keys",
            &json!({"name": format!("k{i}"), "scopes": ["keys:read"]}),
        )
        .await;
    }
    let c = owner(&app).await;
    // Someone bypasses the append-only trigger and edits event 4.
    let mut tx = app.state.db.begin().await.unwrap();
    let bypass = match b {
        Backend::Sqlite => "DROP TRIGGER audit_events_no_update",
        Backend::Postgres => "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update",
    };
    on_db!(tx.ex(), c => {
        sqlx::query(bypass).execute(&mut *c).await.unwrap();
        sqlx::query("UPDATE audit_events SET after_json = '{\"name\":\"forged\"}' WHERE seq = 4").execute(&mut *c).await.map(|_| ())
    })
    .unwrap();
    tx.commit().await.unwrap();
    // The overview shows the trail's size from its head, without walking it…
    let text = html(get(&app, &c, "/dashboard").await, 200).await;
    assert!(
        !text.contains("BROKEN") && !text.contains("audit-status"),
        "{text}"
    );
    assert!(text.contains("id=\"audit-events\">"), "{text}");
    // …and the walk runs when asked for.
    let text = html(post(&app, &c, "/dashboard/audit/verify", &[]).await, 200).await;
    assert!(
        text.contains("id=\"audit-status\">BROKEN</strong> at event #4")
            && text.contains("content does not match its hash"),
        "{text}"
    );
}

async fn dashboard_pages_are_rate_limited_per_user(b: Backend) {
    let app = spawn_with(b, |c| {
        c.rate_limit_burst = 3;
        c.rate_limit_per_minute = 6;
    })
    .await;
    json_of(
        app.post(
            "/v1/users",
            &json!({"email": "viewer@example.com", "password": "viewer-password-1", "role": "viewer"}),
        )
        .await,
        201,
    )
    .await;
    let c = owner(&app).await;
    for remaining in ["2", "1", "0"] {
        let r = get(&app, &c, "/dashboard/queues").await;
        assert_eq!(r.headers()["ratelimit-remaining"], remaining);
        html(r, 200).await;
    }
    let r = get(&app, &c, "/dashboard/live").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    let text = html(r, 429).await;
    assert!(
        text.contains("Too many requests from your account"),
        "{text}"
    );
    // Another user has a bucket of their own; the login page needs no session.
    let v = session(&app, "viewer@example.com", "viewer-password-1").await;
    html(get(&app, &v, "/dashboard").await, 200).await;
    html(
        app.client
            .get(app.url("/dashboard/login"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
}

async fn live_values_follow_the_queues(b: Backend) {
    let app = spawn_app(b).await;
    let id = enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    let c = owner(&app).await;
    let live = |path: &'static str| {
        let (app, c) = (&app, &c);
        async move {
            let r = get(app, c, path).await;
            assert_eq!(r.headers()["cache-control"], "no-store");
            json_of(r, 200).await["values"].clone()
        }
    };
    let v = live("/dashboard/live").await;
    assert_eq!(v["q:emails:available"], "1");
    assert_eq!(v["q:emails:paused"], "");
    assert_ne!(v["q:emails:oldest"], "—");
    enqueue(&app, json!({"queue": "emails", "kind": "welcome"})).await;
    json_of(app.post("/v1/queues/emails/pause", &json!({})).await, 200).await;
    let v = live("/dashboard/live").await;
    assert_eq!(
        (
            v["q:emails:available"].as_str(),
            v["q:emails:paused"].as_str()
        ),
        (Some("2"), Some("paused"))
    );
    let r = get(&app, &c, &format!("/dashboard/live?queue=emails&job={id}")).await;
    let v = json_of(r, 200).await["values"].clone();
    assert_eq!(v[format!("job:{id}:state")], "available");
    assert_eq!(v[format!("job:{id}:attempt")], "0");
    // Without a session: to the login page (the script then stops polling).
    let r = app
        .client
        .get(app.url("/dashboard/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/dashboard/login".into())
    );
    // The page names its endpoint and carries the live keys.
    let text = html(get(&app, &c, "/dashboard/queues/emails").await, 200).await;
    assert!(
        text.contains("data-live-src=\"/dashboard/live?queue=emails\"")
            && text.contains("data-live=\"q:emails:available\">2<"),
        "{text}"
    );
    // The script is served from the binary with its content type (nothing inline).
    let js_path = text
        .split("<script src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(!text.contains("<script>"), "no inline script");
    let r = app.client.get(app.url(&js_path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(r.text().await.unwrap().contains("data-confirm"));
}

async fn job_detail_separates_runs_and_hides_header_values(b: Backend) {
    let app = spawn_app(b).await;
    let id = job_with_three_runs(&app, "sync").await;
    let c = owner(&app).await;
    let text = html(get(&app, &c, &format!("/dashboard/jobs/{id}")).await, 200).await;
    let runs: Vec<&str> = text.split("<section class=\"run").skip(1).collect();
    assert_eq!(runs.len(), 3, "{text}");
    assert!(
        runs[0].contains("Run 1 · 2 failed attempts") && runs[0].contains("run 1 attempt 2 failed")
    );
    assert!(!runs[0].contains("run 2 attempt"), "runs are separated");
    assert!(
        runs[1].contains("Run 2 (after a manual retry) · 2 failed attempts")
            && runs[1].contains("run 2 attempt 1 failed")
    );
    assert!(runs[2].contains("Run 3 (current, after a manual retry) · <span class=\"state-available\">available</span>, attempt 0 of 2"), "{}", runs[2]);
    assert!(runs[2].contains("No failed attempts in this run."));
    let timeline = text.split("id=\"timeline\"").nth(1).unwrap();
    assert_eq!(timeline.matches("Retried by hand").count(), 2, "{timeline}");
    assert!(timeline.find("Created").unwrap() < timeline.find("run 1 attempt 1 failed").unwrap());
    // The payload is readable JSON.
    assert!(
        text.contains("<span class=\"k\">&quot;account&quot;</span>: <span class=\"n\">42</span>"),
        "{text}"
    );

    // A push job: target without header values or URL password, tags, unique key.
    let push = enqueue(
        &app,
        json!({"queue": "hooks", "kind": "ping", "delay_ms": 3_600_000, "max_attempts": 7,
               "unique_key": "ping-1", "tags": ["tenant:9", "nightly"],
               "target": {"url": "https://app:hunter2@example.com/hooks/ping", "method": "PUT",
                          "headers": {"X-Api-Key": "s3cr3t-header-value"}}}),
    )
    .await;
    let text = html(get(&app, &c, &format!("/dashboard/jobs/{push}")).await, 200).await;
    assert!(
        text.contains(
            "<code>PUT</code> <code class=\"url\">https://app:***@example.com/hooks/ping</code>"
        ),
        "{text}"
    );
    assert!(text.contains("<code>X-Api-Key</code> (values hidden)"));
    assert!(!text.contains("s3cr3t-header-value") && !text.contains("hunter2"));
    assert!(text.contains("id=\"unique-key\">ping-1<") && text.contains("id=\"max-attempts\">7<"));
    assert!(text.contains(">tenant:9</a>") && text.contains(">nightly</a>"));
    // The list shows the target too, never the header value.
    let text = html(get(&app, &c, "/dashboard/queues/hooks").await, 200).await;
    assert!(text.contains("https://app:***@example.com/hooks/ping") && !text.contains("s3cr3t"));
}

async fn schedules_are_operated_through_the_api_code(b: Backend) {
    let app = spawn_app(b).await;
    let s = json_of(
        app.post(
            "/v1/schedules",
            &json!({"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
                    "job": {"queue": "reports", "kind": "daily"}}),
        )
        .await,
        201,
    )
    .await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let c = owner(&app).await;
    // Next runs in the zone and in UTC.
    let text = html(get(&app, &c, "/dashboard/schedules").await, 200).await;
    assert!(
        text.contains("02:30 CE") && (text.contains("01:30 UTC") || text.contains("00:30 UTC")),
        "{text}"
    );
    // Pause, resume, trigger.
    let r = post(
        &app,
        &c,
        &format!("/dashboard/schedules/{sid}/pause"),
        &[("back", "/dashboard/schedules")],
    )
    .await;
    assert_eq!(location(&r), "/dashboard/schedules?done=schedule-paused");
    assert_eq!(
        json_of(app.get(&format!("/v1/schedules/{sid}")).await, 200).await["paused"],
        true
    );
    post(&app, &c, &format!("/dashboard/schedules/{sid}/resume"), &[]).await;
    assert_eq!(
        json_of(app.get(&format!("/v1/schedules/{sid}")).await, 200).await["paused"],
        false
    );
    let r = post(
        &app,
        &c,
        &format!("/dashboard/schedules/{sid}/trigger"),
        &[],
    )
    .await;
    let to = location(&r);
    assert!(
        to.starts_with("/dashboard/jobs/job_") && to.ends_with("?done=triggered"),
        "{to}"
    );
    let job = to
        .trim_start_matches("/dashboard/jobs/")
        .trim_end_matches("?done=triggered")
        .to_owned();
    // Its last runs are its jobs.
    let text = html(
        get(&app, &c, &format!("/dashboard/schedules/{sid}")).await,
        200,
    )
    .await;
    assert!(text.contains(&format!("data-job=\"{job}\"")), "{text}");
    // Edit: a bad cron is explained and nothing is saved; then a good edit.
    let form = |cron: &'static str, job: &'static str| {
        vec![
            ("name", "nightly"),
            ("cron", cron),
            ("timezone", "America/New_York"),
            ("misfire", "skip"),
            ("overlap", "skip"),
            ("backfill_limit", "10"),
            ("job", job),
        ]
    };
    let text = html(
        post(
            &app,
            &c,
            &format!("/dashboard/schedules/{sid}/edit"),
            &form(
                "61 * * * *",
                "{\"queue\": \"reports\", \"kind\": \"daily\"}",
            ),
        )
        .await,
        422,
    )
    .await;
    assert!(
        text.contains("id=\"f-cron-error\"") && text.contains("value=\"61 * * * *\""),
        "{text}"
    );
    let text = html(
        post(
            &app,
            &c,
            &format!("/dashboard/schedules/{sid}/edit"),
            &form("0 6 * * 1", "{\"queue\": \"bad queue\""),
        )
        .await,
        422,
    )
    .await;
    assert!(
        text.contains("id=\"f-job-error\"") && text.contains("is not a job"),
        "{text}"
    );
    assert_eq!(
        json_of(app.get(&format!("/v1/schedules/{sid}")).await, 200).await["cron"],
        "30 2 * * *"
    );
    let r = post(
        &app,
        &c,
        &format!("/dashboard/schedules/{sid}/edit"),
        &form(
            "0 6 * * 1",
            "{\"queue\": \"reports\", \"kind\": \"weekly\"}",
        ),
    )
    .await;
    assert_eq!(
        location(&r),
        format!("/dashboard/schedules/{sid}?done=schedule-saved")
    );
    let saved = json_of(app.get(&format!("/v1/schedules/{sid}")).await, 200).await;
    assert_eq!(
        (
            saved["cron"].as_str(),
            saved["timezone"].as_str(),
            saved["overlap"].as_str(),
            saved["job"]["kind"].as_str()
        ),
        (
            Some("0 6 * * 1"),
            Some("America/New_York"),
            Some("skip"),
            Some("weekly")
        )
    );
    // Delete asks first.
    let text = html(
        post(&app, &c, &format!("/dashboard/schedules/{sid}/delete"), &[]).await,
        200,
    )
    .await;
    assert!(text.contains("Delete the schedule “nightly”?"));
    let r = post(
        &app,
        &c,
        &format!("/dashboard/schedules/{sid}/delete"),
        &[("confirmed", "1")],
    )
    .await;
    assert_eq!(location(&r), "/dashboard/schedules?done=schedule-deleted");
    assert_eq!(app.get(&format!("/v1/schedules/{sid}")).await.status(), 404);
    let actions = audit_actions(&app, &format!("entity_id={sid}")).await;
    let by = |a: &str, who: &str| (a.to_owned(), who.to_owned());
    assert_eq!(
        actions,
        [
            by("schedule.delete", "user"),
            by("schedule.update", "user"),
            by("schedule.trigger", "user"),
            by("schedule.update", "user"),
            by("schedule.update", "user"),
            by("schedule.create", "api_key"),
        ]
    );
}

async fn oldest_waiting_job_reads_the_ready_index(b: Backend) {
    use switchboard_queue::store::oldest_available_sql;
    let app = spawn_app(b).await;
    // A backed-up queue: 20,000 waiting jobs over four priorities, the oldest a low one.
    let first = enqueue(
        &app,
        json!({"queue": "bulk", "kind": "k", "priority": "low"}),
    )
    .await;
    for chunk in 0..4 {
        let jobs: Vec<Value> = (0..5000)
            .map(|i| json!({"queue": "bulk", "kind": "k", "priority": (chunk + i) % 4}))
            .collect();
        json_of(
            app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await,
            201,
        )
        .await;
    }
    let me = json_of(app.get("/v1/me").await, 200).await;
    let project = me["project_id"].as_str().unwrap().to_owned();
    let mut tx = app.state.db.begin().await.unwrap();
    let plan: Vec<String> = on_db!(tx.ex(), c => {
        let explain = match b {
            Backend::Sqlite => "EXPLAIN QUERY PLAN ",
            Backend::Postgres => "EXPLAIN ",
        };
        if b == Backend::Postgres {
            sqlx::query("ANALYZE jobs").execute(&mut *c).await.unwrap();
        }
        let rows = sqlx::query(&format!("{explain}{}", oldest_available_sql(b)))
            .bind(&project).bind("bulk").bind("pull")
            .fetch_all(&mut *c).await.unwrap();
        rows.iter().map(|r| {
            use sqlx::Row;
            match b {
                Backend::Sqlite => r.try_get::<String, _>("detail").unwrap(),
                Backend::Postgres => r.try_get::<String, _>(0).unwrap(),
            }
        }).collect()
    });
    drop(tx);
    let plan = plan.join("\n");
    eprintln!("{plan}");
    assert!(plan.contains("jobs_ready"), "{plan}");
    assert!(
        !plan.contains("Seq Scan") && !plan.contains("SCAN jobs\n") && !plan.ends_with("SCAN jobs"),
        "{plan}"
    );
    let c = owner(&app).await;
    let v = json_of(get(&app, &c, "/dashboard/live?queue=bulk").await, 200).await;
    assert_eq!(v["values"]["q:bulk:available"], "20,001");
    let first_job = json_of(app.get(&format!("/v1/jobs/{first}")).await, 200).await;
    assert!(first_job["run_at"].is_string());
    assert!(
        v["values"]["q:bulk:oldest"]
            .as_str()
            .unwrap()
            .ends_with(" s"),
        "{v}"
    );
}

async fn operator_uses_the_dashboard_in_chromium(b: Backend) {
    let dir = crate::harness::browser_dir();
    let app = spawn_app(b).await;
    for to in ["a@example.com", "b@example.com", "c@example.com"] {
        enqueue(
            &app,
            json!({"queue": "emails", "kind": "welcome", "payload": {"to": to}}),
        )
        .await;
    }
    let failed = claim_and_fail(&app, "emails", "smtp refused", true).await;
    for _ in 0..2 {
        enqueue(&app, json!({"queue": "imports", "kind": "csv"})).await;
        claim_and_fail(&app, "imports", "bad row 7", true).await;
    }
    let runs = job_with_three_runs(&app, "sync").await;
    let push = enqueue(
        &app,
        json!({"queue": "hooks", "kind": "ping", "delay_ms": 3_600_000,
               "target": {"url": "https://example.com/hooks/ping", "method": "PUT",
                          "headers": {"Authorization": "Bearer s3cr3t-header-value"}}}),
    )
    .await;
    let sched = json_of(
        app.post("/v1/schedules", &json!({"name": "daily-report", "cron": "0 2 * * *", "timezone": "Asia/Tashkent", "job": {"queue": "reports", "kind": "daily"}})).await,
        201,
    )
    .await;

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("dashboard-{}", b.name()));
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .current_dir(&dir)
        .env("BASE_URL", &app.addr)
        .env("EMAIL", OWNER_EMAIL)
        .env("PASSWORD", OWNER_PASSWORD)
        .env("API_KEY", &app.key)
        .env("FAILED_JOB", &failed)
        .env("RUNS_JOB", &runs)
        .env("PUSH_JOB", &push)
        .env("SCHEDULE", sched["id"].as_str().unwrap())
        .env("SCREENSHOT_DIR", &shots)
        .output()
        .await
        .expect("run node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser run failed:\n{text}");
    assert!(text.contains("all steps passed"), "{text}");
    eprintln!("screenshots in {}", shots.display());

    // What the operator did is in the audit trail, as the operator.
    let on_failed = audit_actions(&app, &format!("entity_id={failed}")).await;
    assert_eq!(
        on_failed,
        [
            ("job.cancel".to_owned(), "user".to_owned()),
            ("job.retry".to_owned(), "user".to_owned())
        ]
    );
    let on_queue: Vec<String> = audit_actions(&app, "entity_id=emails")
        .await
        .into_iter()
        .map(|(a, who)| {
            assert_eq!(who, "user");
            a
        })
        .collect();
    assert_eq!(on_queue, ["queue.update", "queue.resume", "queue.pause"]);
    let q = json_of(app.get("/v1/queues/emails").await, 200).await;
    assert_eq!(
        (q["paused"].as_bool(), q["concurrency"].as_i64()),
        (Some(false), Some(7))
    );
    let deleted = audit_actions(&app, "action=job.delete").await;
    assert_eq!(deleted.len(), 2, "bulk delete of two selected jobs");
    let sched_actions: Vec<String> = audit_actions(
        &app,
        &format!("entity_id={}", sched["id"].as_str().unwrap()),
    )
    .await
    .into_iter()
    .map(|(a, _)| a)
    .collect();
    assert_eq!(
        sched_actions,
        [
            "schedule.delete",
            "schedule.update",
            "schedule.trigger",
            "schedule.update",
            "schedule.update",
            "schedule.create"
        ]
    );
}

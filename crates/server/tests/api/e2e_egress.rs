//! Where HTTP-push jobs may go: public addresses only unless the operator allows more (no
//! requests to the node's loopback, private networks or cloud metadata), and what a job
//! keeps of a failed delivery.

use crate::both;
use crate::helpers::{json_of, problem, spawn_app, spawn_with, wait_for, TestApp};
use serde_json::{json, Value};
use switchboard_core::config::PushAllow;
use switchboard_core::db::Backend;
use switchboard_core::id::ProjectId;
use switchboard_core::time;
use switchboard_queue::JobSpec;
use wiremock::{Mock, MockServer, ResponseTemplate};

both!(
    loopback_targets_are_refused_by_default,
    names_resolving_to_loopback_are_refused_at_delivery,
    private_literals_are_refused_at_enqueue,
    allow_listed_destinations_are_reached,
    failed_deliveries_say_what_happened_in_plain_words
);

/// A node with the default egress policy (the harness allows loopback for its fakes).
async fn default_policy(b: Backend) -> TestApp {
    spawn_with(b, |c| c.push_allow = PushAllow::default()).await
}

/// A target that answers 200 to anything.
async fn target() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"leaked": "secret"})))
        .mount(&server)
        .await;
    server
}

fn push_job(url: &str) -> Value {
    json!({"queue": "out", "kind": "send", "target": {"url": url}})
}

async fn project(app: &TestApp) -> ProjectId {
    let me = json_of(app.get("/v1/me").await, 200).await;
    ProjectId::from_db(me["project_id"].as_str().unwrap().to_owned())
}

async fn wait_final(app: &TestApp, id: &str) -> Value {
    wait_for(app, &format!("/v1/jobs/{id}"), 15, |j| {
        matches!(j["state"].as_str(), Some("completed" | "failed"))
    })
    .await
}

fn refused_permanently(job: &Value) {
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["attempt"], 1,
        "a refused destination is not retried: {job}"
    );
    let error = job["last_error"].as_str().unwrap();
    assert!(error.starts_with("refused destination"), "{error}");
    assert!(error.contains("SWITCHBOARD_PUSH_ALLOW"), "{error}");
    assert!(job["result"].is_null(), "{job}");
}

async fn loopback_targets_are_refused_by_default(b: Backend) {
    let app = default_policy(b).await;
    let target = target().await;
    let url = format!("{}/hook", target.uri());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // Through the API: refused before anything is stored.
    let p = problem(
        app.post("/v1/jobs", &push_job(&url)).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "target", "{p}");
    let listed = json_of(app.get("/v1/jobs?queue=out").await, 200).await;
    assert!(listed["data"].as_array().unwrap().is_empty(), "{listed}");

    // A job stored before the guard existed (or by any path around the API) is refused at
    // delivery.
    let spec: JobSpec = serde_json::from_value(push_job(&url)).unwrap();
    let new = spec.validate(time::now(), &[]).unwrap();
    let stored = app
        .state
        .runtime
        .enqueue(&project(&app).await, &[new])
        .await
        .unwrap();
    let job = wait_final(&app, stored[0].job.id.as_str()).await;
    refused_permanently(&job);
    assert!(
        target.received_requests().await.unwrap().is_empty(),
        "the target heard nothing"
    );
}

async fn names_resolving_to_loopback_are_refused_at_delivery(b: Backend) {
    let app = default_policy(b).await;
    let target = target().await;
    // A name is accepted at enqueue (it may resolve anywhere later); what it resolves to
    // when the node connects is what counts, so rebinding it gains nothing.
    let url = target.uri().replace("127.0.0.1", "localhost") + "/hook";
    let job = json_of(app.post("/v1/jobs", &push_job(&url)).await, 201).await;
    let job = wait_final(&app, job["id"].as_str().unwrap()).await;
    refused_permanently(&job);
    assert!(job["last_error"].as_str().unwrap().contains("`localhost`"));
    assert!(target.received_requests().await.unwrap().is_empty());
}

async fn private_literals_are_refused_at_enqueue(b: Backend) {
    let app = default_policy(b).await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[::1]:8080/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0x7f000001/hook",
        "https://100.64.0.1/hook",
    ] {
        let p = problem(
            app.post("/v1/jobs", &push_job(url)).await,
            422,
            "validation-failed",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "target", "{url}: {p}");
        let message = p["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("not a public address"), "{message}");
        assert!(message.contains("SWITCHBOARD_PUSH_ALLOW"), "{message}");
    }
    let p = problem(
        app.post(
            "/v1/jobs/batch",
            &json!({"jobs": [push_job("https://example.com/ok"), push_job("http://192.168.1.1/")]}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "jobs[1].target", "{p}");
    let p = problem(
        app.post(
            "/v1/schedules",
            &json!({"name": "s", "cron": "* * * * *", "job": push_job("http://172.16.0.1/")}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "job.target", "{p}");
    let listed = json_of(app.get("/v1/jobs").await, 200).await;
    assert!(listed["data"].as_array().unwrap().is_empty(), "{listed}");
    // Public destinations are fine (delayed: this test does not reach out to the internet).
    let mut public = push_job("https://93.184.215.14/hook");
    public["delay_ms"] = json!(3_600_000);
    json_of(app.post("/v1/jobs", &public).await, 201).await;
}

async fn allow_listed_destinations_are_reached(b: Backend) {
    let app = spawn_with(b, |c| {
        c.push_allow = PushAllow::parse("127.0.0.0/8").unwrap();
    })
    .await;
    let target = target().await;
    let by_address = format!("{}/hook", target.uri());
    let by_name = by_address.replace("127.0.0.1", "localhost");
    for url in [by_address, by_name] {
        let job = json_of(app.post("/v1/jobs", &push_job(&url)).await, 201).await;
        let job = wait_final(&app, job["id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "completed", "{url}: {job}");
        assert_eq!(job["result"]["leaked"], "secret");
    }
    assert_eq!(target.received_requests().await.unwrap().len(), 2);
    // The allow-list opens what it lists, nothing else.
    problem(
        app.post("/v1/jobs", &push_job("http://10.0.0.1/")).await,
        422,
        "validation-failed",
    )
    .await;
}

async fn failed_deliveries_say_what_happened_in_plain_words(b: Backend) {
    let app = spawn_app(b).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let plain = target().await;
    let tls_to_plain = plain.uri().replace("http://", "https://") + "/hook";
    let port = plain.address().port();
    let cases = [
        (
            format!("http://127.0.0.1:{closed}/hook"),
            format!("could not connect to `127.0.0.1:{closed}`"),
        ),
        (
            "http://nothing-here.invalid/hook".to_owned(),
            "DNS lookup failed for `nothing-here.invalid`".to_owned(),
        ),
        (tls_to_plain, format!("TLS failed with `127.0.0.1:{port}`")),
    ];
    for (url, expected) in cases {
        let mut body = push_job(&url);
        body["max_attempts"] = json!(1);
        let job = json_of(app.post("/v1/jobs", &body).await, 201).await;
        let job = wait_final(&app, job["id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "failed", "{url}: {job}");
        assert_eq!(job["last_error"], expected, "{url}: {job}");
    }
}

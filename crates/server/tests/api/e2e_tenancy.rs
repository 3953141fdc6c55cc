//! Multi-tenancy: a key or user of project B gets 404 for anything of project A, on every
//! route of the OpenAPI document. A route with a path parameter this walk does not know
//! fails the test, so every new capability must join it.

use crate::both;
use crate::helpers::{access_token, json_of, spawn_app};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use switchboard_core::db::Backend;

both!(project_b_cannot_reach_project_a);

async fn project_b_cannot_reach_project_a(b: Backend) {
    let app = spawn_app(b).await;
    // Project A: the bootstrap project, with a key and a user.
    let me = json_of(app.get("/v1/me").await, 200).await;
    let project_a = me["project_id"].as_str().unwrap().to_owned();
    let (key_a, _) = app.create_key(&["keys:read"]).await;
    let user_a = json_of(
        app.post(
            "/v1/users",
            &json!({"email": "a@example.com", "role": "viewer", "password": "password-a1"}),
        )
        .await,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A queue with a job (claimed, so lease routes have something to refuse) and a schedule.
    let job_a = json_of(
        app.post(
            "/v1/jobs",
            &json!({"queue": "a-queue", "kind": "secret-work", "payload": {"owner": "A"}}),
        )
        .await,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let claimed = json_of(
        app.post("/v1/queues/a-queue/claim", &json!({"worker": "wa"}))
            .await,
        200,
    )
    .await;
    let token_a = claimed["jobs"][0]["lease_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post("/v1/jobs", &json!({"queue": "a-queue", "kind": "waiting"}))
        .await;
    let sched_a = json_of(
        app.post("/v1/schedules", &json!({"name": "a-sched", "cron": "0 2 * * *", "job": {"queue": "a-queue", "kind": "r"}})).await,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let queue_before = json_of(app.get("/v1/queues/a-queue").await, 200).await;

    // Project B, with its own key and owner.
    let created = json_of(app.post("/v1/projects", &json!({"name": "B"})).await, 201).await;
    let key_b = created["api_key"]["secret"].as_str().unwrap().to_owned();
    let r = app
        .req_as(Method::POST, "/v1/users", &key_b)
        .json(&json!({"email": "b@example.com", "role": "owner", "password": "password-b1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let jwt_b = access_token(&app, "b@example.com", "password-b1").await;

    // Project A's id for each parameterised route; bodies valid enough to reach the lookup.
    let ids: HashMap<&str, &str> = HashMap::from([
        ("/v1/api-keys/{id}", key_a.as_str()),
        ("/v1/users/{id}", user_a.as_str()),
        ("/v1/projects/{id}", project_a.as_str()),
        ("/v1/jobs/{id}", job_a.as_str()),
        ("/v1/jobs/{id}/retry", job_a.as_str()),
        ("/v1/jobs/{id}/cancel", job_a.as_str()),
        ("/v1/jobs/{id}/heartbeat", job_a.as_str()),
        ("/v1/jobs/{id}/complete", job_a.as_str()),
        ("/v1/jobs/{id}/fail", job_a.as_str()),
        ("/v1/schedules/{id}", sched_a.as_str()),
        ("/v1/schedules/{id}/trigger", sched_a.as_str()),
    ]);
    let bodies: HashMap<&str, Value> = HashMap::from([
        ("/v1/projects/{id}", json!({"name": "stolen"})),
        ("/v1/users/{id}", json!({"role": "viewer"})),
        ("/v1/jobs/{id}/heartbeat", json!({"lease_token": token_a})),
        ("/v1/jobs/{id}/complete", json!({"lease_token": token_a})),
        (
            "/v1/jobs/{id}/fail",
            json!({"lease_token": token_a, "error": "x"}),
        ),
        ("/v1/schedules/{id}", json!({"paused": true})),
        ("/v1/queues/{name}", json!({"concurrency": 1})),
        (
            "/v1/queues/{name}/claim",
            json!({"worker": "thief", "max": 10}),
        ),
        ("/v1/queues/{name}/clean", json!({"state": "completed"})),
    ]);
    let a_ids = [
        project_a.as_str(),
        key_a.as_str(),
        user_a.as_str(),
        job_a.as_str(),
        sched_a.as_str(),
    ];

    let spec = json_of(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let mut walked = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        if !template.starts_with("/v1/") || template.starts_with("/v1/auth/") {
            continue;
        }
        for method in ["get", "post", "patch", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            if template.contains("{name}") {
                let path = template.replace("{name}", "a-queue");
                for token in [&key_b, &jwt_b] {
                    let mut req = app.req_as(m.clone(), &path, token);
                    if matches!(method, "post" | "patch" | "put") {
                        req = req.json(bodies.get(template.as_str()).unwrap_or(&json!({})));
                    }
                    let r = req.send().await.unwrap();
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap();
                    assert!(
                        status == 200 || status == 404,
                        "{method} {path} as B: {status} {text}"
                    );
                    assert!(
                        !text.contains(&job_a),
                        "{method} {path} leaked A's job to B"
                    );
                    walked += 1;
                }
                continue;
            }
            if template.contains('{') {
                let id = ids.get(template.as_str()).unwrap_or_else(|| {
                    panic!("{method} {template}: add project A's entity for this route to the tenancy walk")
                });
                let path = template.replace("{id}", id);
                for token in [&key_b, &jwt_b] {
                    let mut req = app.req_as(m.clone(), &path, token);
                    if matches!(method, "post" | "patch" | "put") {
                        req = req.json(bodies.get(template.as_str()).unwrap_or(&json!({})));
                    }
                    let r = req.send().await.unwrap();
                    assert_eq!(r.status(), 404, "{method} {path} as project B");
                    walked += 1;
                }
            } else if method == "get" {
                for token in [&key_b, &jwt_b] {
                    let r = app.req_as(m.clone(), template, token).send().await.unwrap();
                    assert_eq!(r.status(), 200, "{method} {template} as project B");
                    let text = r.text().await.unwrap();
                    for a in a_ids {
                        assert!(!text.contains(a), "{template} leaked {a} to project B");
                    }
                    walked += 1;
                }
            }
        }
    }
    assert!(walked >= 50, "walked only {walked} route/credential pairs");
    // A's queue, job and schedule are untouched.
    let mut queue_after = json_of(app.get("/v1/queues/a-queue").await, 200).await;
    queue_after["completed_last_minute"] = queue_before["completed_last_minute"].clone();
    assert_eq!(queue_after, queue_before);
    let job = json_of(app.get(&format!("/v1/jobs/{job_a}")).await, 200).await;
    assert_eq!(job["state"], "running");
    assert_eq!(job["worker"], "wa");
    let sched = json_of(app.get(&format!("/v1/schedules/{sched_a}")).await, 200).await;
    assert_eq!(sched["paused"], false);
    // Project A is untouched.
    let key = json_of(app.get(&format!("/v1/api-keys/{key_a}")).await, 200).await;
    assert!(key["revoked_at"].is_null());
    let project = json_of(app.get(&format!("/v1/projects/{project_a}")).await, 200).await;
    assert_eq!(project["name"], "default");
}

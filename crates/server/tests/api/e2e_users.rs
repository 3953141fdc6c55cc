//! Users and roles: viewers read, only owners manage owners, the last owner stays.

use crate::both;
use crate::helpers::{access_token, json_of, problem, spawn_app, OWNER_EMAIL, OWNER_PASSWORD};
use reqwest::Method;
use serde_json::json;
use switchboard_core::db::Backend;

both!(roles_limit_what_users_do);

async fn roles_limit_what_users_do(b: Backend) {
    let app = spawn_app(b).await;
    let owner = access_token(&app, OWNER_EMAIL, OWNER_PASSWORD).await;
    for (email, role) in [
        ("viewer@example.com", "viewer"),
        ("admin@example.com", "admin"),
    ] {
        let r = app
            .req_as(Method::POST, "/v1/users", &owner)
            .json(&json!({"email": email, "role": role, "password": "long-enough-1"}))
            .send()
            .await
            .unwrap();
        let u = json_of(r, 201).await;
        assert_eq!(u["role"], role);
        assert!(u.get("password_hash").is_none());
    }
    let r = app
        .req_as(Method::POST, "/v1/users", &owner)
        .json(
            &json!({"email": "VIEWER@example.com", "role": "viewer", "password": "long-enough-1"}),
        )
        .send()
        .await
        .unwrap();
    problem(r, 409, "email-taken").await;

    let viewer = access_token(&app, "viewer@example.com", "long-enough-1").await;
    assert_eq!(
        app.req_as(Method::GET, "/v1/api-keys", &viewer)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = app
        .req_as(Method::POST, "/v1/api-keys", &viewer)
        .json(&json!({"name": "x", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;

    let admin = access_token(&app, "admin@example.com", "long-enough-1").await;
    let r = app
        .req_as(Method::POST, "/v1/users", &admin)
        .json(&json!({"email": "o2@example.com", "role": "owner", "password": "long-enough-1"}))
        .send()
        .await
        .unwrap();
    let v = problem(r, 422, "validation-failed").await;
    assert_eq!(v["errors"][0]["field"], "role");

    let me = json_of(
        app.req_as(Method::GET, "/v1/me", &owner)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let owner_id = me["actor"]["id"].as_str().unwrap().to_owned();
    let r = app
        .req_as(Method::PATCH, &format!("/v1/users/{owner_id}"), &admin)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    problem(r, 422, "validation-failed").await;
    let r = app
        .req_as(Method::PATCH, &format!("/v1/users/{owner_id}"), &owner)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    problem(r, 409, "last-owner").await;

    // A password change ends the old password and keeps the role.
    let r = app
        .req_as(Method::PATCH, &format!("/v1/users/{owner_id}"), &owner)
        .json(&json!({"password": "a-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 200).await["role"], "owner");
    let r = crate::helpers::login(&app, OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(r.status(), 401);
    access_token(&app, OWNER_EMAIL, "a-new-password").await;

    let listed = json_of(app.get("/v1/users").await, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
}

//! Users and roles: viewers read, only owners manage owners, the last owner stays.

use crate::both;
use crate::helpers::{
    access_token, json_of, login, problem, spawn_app, TestApp, OWNER_EMAIL, OWNER_PASSWORD,
};
use reqwest::Method;
use serde_json::json;
use switchboard_core::db::Backend;

both!(
    roles_limit_what_users_do,
    keys_cannot_escalate_through_users,
    concurrent_demotions_keep_an_owner,
    emails_are_per_project
);

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

async fn role_of(app: &TestApp, token: &str) -> String {
    let me = json_of(
        app.req_as(Method::GET, "/v1/me", token)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    me["role"].as_str().unwrap().to_owned()
}

/// Creates a key as `token`; `(status, body)`.
async fn key_as(app: &TestApp, token: &str, scopes: &[&str]) -> serde_json::Value {
    let r = app
        .req_as(Method::POST, "/v1/api-keys", token)
        .json(&json!({"name": "k", "scopes": scopes}))
        .send()
        .await
        .unwrap();
    json_of(r, 201).await
}

async fn keys_cannot_escalate_through_users(b: Backend) {
    let app = spawn_app(b).await;
    // Bootstrap, CLI and new-project keys are owner keys.
    assert_eq!(role_of(&app, &app.key).await, "owner");
    let owner_id = {
        let t = access_token(&app, OWNER_EMAIL, OWNER_PASSWORD).await;
        let me = json_of(
            app.req_as(Method::GET, "/v1/me", &t).send().await.unwrap(),
            200,
        )
        .await;
        me["actor"]["id"].as_str().unwrap().to_owned()
    };
    json_of(
        app.post(
            "/v1/users",
            &json!({"email": "admin@example.com", "role": "admin", "password": "long-enough-1"}),
        )
        .await,
        201,
    )
    .await;
    let admin = access_token(&app, "admin@example.com", "long-enough-1").await;

    // An admin mints a `*` key: it carries the admin's role as its ceiling, and so does
    // every key it mints in turn.
    let star = key_as(&app, &admin, &["*"]).await;
    assert_eq!(star["role"], "admin");
    let star_secret = star["secret"].as_str().unwrap().to_owned();
    assert_eq!(role_of(&app, &star_secret).await, "admin");
    let shown = json_of(
        app.get(&format!("/v1/api-keys/{}", star["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(shown["role"], "admin");
    let child = key_as(&app, &star_secret, &["*"]).await;
    assert_eq!(child["role"], "admin");
    let child_secret = child["secret"].as_str().unwrap().to_owned();

    // Neither key resets the owner's password, demotes the owner, or creates an owner.
    for token in [&star_secret, &child_secret] {
        for patch in [
            json!({"password": "hijacked-password"}),
            json!({"role": "viewer"}),
            json!({"disabled": true}),
        ] {
            let r = app
                .req_as(Method::PATCH, &format!("/v1/users/{owner_id}"), token)
                .json(&patch)
                .send()
                .await
                .unwrap();
            let v = problem(r, 422, "validation-failed").await;
            assert_eq!(v["errors"][0]["field"], "role");
        }
        let r = app
            .req_as(Method::POST, "/v1/users", token)
            .json(
                &json!({"email": "evil@example.com", "role": "owner", "password": "long-enough-1"}),
            )
            .send()
            .await
            .unwrap();
        problem(r, 422, "validation-failed").await;
    }
    assert_eq!(login(&app, OWNER_EMAIL, OWNER_PASSWORD).await.status(), 200);
    assert_eq!(
        login(&app, OWNER_EMAIL, "hijacked-password").await.status(),
        401
    );
    assert_eq!(
        login(&app, "evil@example.com", "long-enough-1")
            .await
            .status(),
        401
    );
    // Within its ceiling the admin key still manages users.
    let r = app
        .req_as(Method::POST, "/v1/users", &star_secret)
        .json(&json!({"email": "op@example.com", "role": "operator", "password": "long-enough-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 201).await["role"], "operator");

    // A key holding only `users:write` (an owner key) cannot hand out a role whose scopes it
    // lacks: no owner, not even a viewer (every `:read` scope).
    let (_, users_only) = app.create_key(&["users:write"]).await;
    assert_eq!(role_of(&app, &users_only).await, "owner");
    for role in ["owner", "admin", "viewer"] {
        let r = app
            .req_as(Method::POST, "/v1/users", &users_only)
            .json(&json!({"email": "u@example.com", "role": role, "password": "long-enough-1"}))
            .send()
            .await
            .unwrap();
        problem(r, 422, "validation-failed").await;
    }
    assert_eq!(
        login(&app, "u@example.com", "long-enough-1").await.status(),
        401
    );
    // Nor change a user whose role grants more than it holds.
    let admin_id = json_of(
        app.req_as(Method::GET, "/v1/me", &admin)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await["actor"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .req_as(Method::PATCH, &format!("/v1/users/{admin_id}"), &users_only)
        .json(&json!({"password": "taken-over-1"}))
        .send()
        .await
        .unwrap();
    problem(r, 422, "validation-failed").await;
    // A key with every read scope and `users:write` may create viewers.
    let mut viewer_scopes: Vec<&str> = vec!["users:write"];
    viewer_scopes.extend(
        [
            "projects:read",
            "keys:read",
            "audit:read",
            "jobs:read",
            "queues:read",
            "schedules:read",
        ]
        .iter(),
    );
    let (_, reader) = app.create_key(&viewer_scopes).await;
    let r = app
        .req_as(Method::POST, "/v1/users", &reader)
        .json(&json!({"email": "v@example.com", "role": "viewer", "password": "long-enough-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 201).await["role"], "viewer");

    // The owner's bootstrap key may create owners.
    let r = app
        .post(
            "/v1/users",
            &json!({"email": "o2@example.com", "role": "owner", "password": "long-enough-1"}),
        )
        .await;
    assert_eq!(json_of(r, 201).await["role"], "owner");

    // The dashboard's keys page shows each key's role.
    let r = app
        .client
        .post(app.url("/dashboard/login"))
        .form(&[("email", OWNER_EMAIL), ("password", OWNER_PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = app
        .client
        .get(app.url("/dashboard/keys"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<th>Role</th>") && html.contains("<td>admin</td>"),
        "{html}"
    );
}

/// Two owners demoting each other (or a key demoting both) at the same moment: one of them
/// must stay an active owner, every time.
async fn concurrent_demotions_keep_an_owner(b: Backend) {
    let app = spawn_app(b).await;
    for round in 0..24 {
        // A fresh project whose only users are two owners; its first key is an owner key.
        let created = json_of(
            app.post("/v1/projects", &json!({"name": format!("race-{round}")}))
                .await,
            201,
        )
        .await;
        let key = created["api_key"]["secret"].as_str().unwrap().to_owned();
        let mut owners = Vec::new();
        for who in ["a", "b"] {
            let email = format!("{who}{round}@race.example");
            let r = app
                .req_as(Method::POST, "/v1/users", &key)
                .json(&json!({"email": email, "role": "owner", "password": "long-enough-1"}))
                .send()
                .await
                .unwrap();
            let id = json_of(r, 201).await["id"].as_str().unwrap().to_owned();
            owners.push((id, email));
        }
        // Even rounds: each owner (JWT) demotes the other; odd rounds: one key demotes both.
        let (first, second) = if round % 2 == 0 {
            (
                access_token(&app, &owners[0].1, "long-enough-1").await,
                access_token(&app, &owners[1].1, "long-enough-1").await,
            )
        } else {
            (key.clone(), key.clone())
        };
        let demote = |token: String, target: String| {
            let req = app
                .req_as(Method::PATCH, &format!("/v1/users/{target}"), &token)
                .json(&json!({"role": "admin"}));
            async move { req.send().await.unwrap().status().as_u16() }
        };
        let (x, y) = tokio::join!(
            demote(first, owners[1].0.clone()),
            demote(second, owners[0].0.clone())
        );
        let users = json_of(
            app.req_as(Method::GET, "/v1/users", &key)
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        let active_owners = users["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["role"] == "owner" && u["disabled_at"].is_null())
            .count();
        assert!(
            active_owners >= 1,
            "round {round}: no owner left (answers {x} and {y})"
        );
        assert!([x, y].contains(&200), "round {round}: {x} {y}");
    }
}

async fn login_in(
    app: &TestApp,
    email: &str,
    password: &str,
    project: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({"email": email, "password": password});
    if let Some(p) = project {
        body["project"] = json!(p);
    }
    app.client
        .post(app.url("/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The project a token pair's access token belongs to.
async fn project_of(app: &TestApp, r: reqwest::Response) -> String {
    let access = json_of(r, 200).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    role_and_project(app, &access).await.1
}

async fn role_and_project(app: &TestApp, token: &str) -> (String, String) {
    let me = json_of(
        app.req_as(Method::GET, "/v1/me", token)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    (
        me["role"].as_str().unwrap().to_owned(),
        me["project_id"].as_str().unwrap().to_owned(),
    )
}

/// E-mails are unique per project: another project's admin learns nothing by creating a user
/// (same answer whether the address is used elsewhere or not), and login finds the account
/// by password, or by `project` when several match.
async fn emails_are_per_project(b: Backend) {
    let app = spawn_app(b).await;
    let project_a = role_and_project(&app, &app.key).await.1;
    let created = json_of(app.post("/v1/projects", &json!({"name": "B"})).await, 201).await;
    let key_b = created["api_key"]["secret"].as_str().unwrap().to_owned();
    let project_b = created["project"]["id"].as_str().unwrap().to_owned();
    let create_in_b = |email: &str, password: &str| {
        app.req_as(Method::POST, "/v1/users", &key_b)
            .json(&json!({"email": email, "role": "admin", "password": password}))
            .send()
    };
    json_of(
        app.post(
            "/v1/users",
            &json!({"email": "only-a@example.com", "role": "viewer", "password": "password-a-1"}),
        )
        .await,
        201,
    )
    .await;
    // Used in A, or nowhere: B gets the same answer.
    for email in ["only-a@example.com", "nowhere@example.com", OWNER_EMAIL] {
        let r = create_in_b(email, "password-b-1").await.unwrap();
        assert_eq!(json_of(r, 201).await["email"], email);
    }
    // Within B the address is taken.
    problem(
        create_in_b("Nowhere@Example.com", "password-b-1")
            .await
            .unwrap(),
        409,
        "email-taken",
    )
    .await;

    // Without `project`, the password picks the account.
    assert_eq!(
        project_of(
            &app,
            login_in(&app, OWNER_EMAIL, OWNER_PASSWORD, None).await
        )
        .await,
        project_a
    );
    assert_eq!(
        project_of(
            &app,
            login_in(&app, OWNER_EMAIL, "password-b-1", None).await
        )
        .await,
        project_b
    );
    problem(
        login_in(&app, OWNER_EMAIL, "nope-nope-nope", None).await,
        401,
        "unauthorized",
    )
    .await;
    // With `project`, only that project's account counts.
    problem(
        login_in(&app, OWNER_EMAIL, "password-b-1", Some(&project_a)).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        project_of(
            &app,
            login_in(&app, OWNER_EMAIL, OWNER_PASSWORD, Some(&project_a)).await
        )
        .await,
        project_a
    );
    problem(
        login_in(&app, OWNER_EMAIL, OWNER_PASSWORD, Some("bogus")).await,
        422,
        "validation-failed",
    )
    .await;

    // The same password in both projects: the login must name one.
    json_of(
        app.post(
            "/v1/users",
            &json!({"email": "nowhere@example.com", "role": "viewer", "password": "password-b-1"}),
        )
        .await,
        201,
    )
    .await;
    let v = problem(
        login_in(&app, "nowhere@example.com", "password-b-1", None).await,
        409,
        "project-required",
    )
    .await;
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains(&project_a) && detail.contains(&project_b),
        "{detail}"
    );
    let r = login_in(
        &app,
        "nowhere@example.com",
        "password-b-1",
        Some(&project_b),
    )
    .await;
    let access = json_of(r, 200).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        role_and_project(&app, &access).await,
        ("admin".to_owned(), project_b.clone())
    );

    // The dashboard login form takes the project too.
    let dashboard = |project: &str| {
        app.client
            .post(app.url("/dashboard/login"))
            .form(&[
                ("email", "nowhere@example.com"),
                ("password", "password-b-1"),
                ("project", project),
            ])
            .send()
    };
    let r = dashboard("").await.unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("enter the project id"));
    let r = dashboard(&project_b).await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = app
        .client
        .get(app.url("/dashboard"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&project_b), "{html}");
}

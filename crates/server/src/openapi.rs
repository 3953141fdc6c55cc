//! The OpenAPI 3.1 document, assembled from every capability's routes.
//!
//! Error responses are described once, here ([`ProblemResponses`]): every operation gets the
//! statuses its kind answers (authenticated or public, with a body, with query parameters,
//! a creating POST with `Idempotency-Key`), each operation adds its own in its annotation as
//! a list of catalogue codes (`(status = 409, description = "name-taken")`), and every error
//! response becomes an `application/problem+json` [`Problem`](crate::error::Problem) whose
//! description lists its codes and what they mean.

use crate::error::{codes, Code, PROBLEM_JSON};
use std::collections::BTreeMap;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required};
use utoipa::{Modify, OpenApi};

/// Top-level document; paths and schemas come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "Durable job queues, cron schedules, pull workers and signed HTTP push, \
                       with projects, API keys, users and a hash-chained audit trail. Errors \
                       are RFC 9457 problem documents. Notifications, payments, storage and \
                       outgoing webhooks are not part of this version yet.",
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    tags(
        (name = "projects", description = "Tenants"),
        (name = "api-keys", description = "Project-scoped API keys"),
        (name = "users", description = "Dashboard and API users"),
        (name = "auth", description = "Password login and tokens"),
        (name = "audit", description = "Hash-chained audit trail"),
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "jobs", description = "Enqueue and inspect jobs"),
        (name = "workers", description = "Pull workers: claim, heartbeat, complete, fail"),
        (name = "queues", description = "Queue counts, settings and operations"),
        (name = "schedules", description = "Cron schedules"),
        (name = "hooks", description = "Provider callbacks: no API key, verified by the provider's signature"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Adds the error responses of each operation's kind and renders every error response as a
/// problem document listing its codes (see the module documentation).
pub struct ProblemResponses;

/// What kind of operation this is, for the errors it can answer.
struct Kind {
    /// Declares a bearer requirement.
    authenticated: bool,
    /// Declares a scope (a missing one is 403).
    scoped: bool,
    /// Under `/v1` (rate-limited, reaches the database).
    api: bool,
    /// A provider callback under `/hooks/` (rate-limited per IP, any query parameters).
    callback: bool,
    /// Takes a JSON body.
    body: bool,
    /// Takes a body of another media type, read as it arrives with a limit of the route's
    /// own (the hooks and streaming groups, which no `Idempotency-Key` layer wraps).
    raw_body: bool,
    /// Takes query parameters.
    query: bool,
    /// A POST behind the `Idempotency-Key` layer.
    idempotent: bool,
}

impl Kind {
    fn of(path: &str, method: &str, op: &Operation) -> Kind {
        let security = serde_json::to_value(&op.security).unwrap_or_default();
        let bearer = security
            .as_array()
            .and_then(|reqs| reqs.iter().find_map(|r| r["bearer"].as_array()));
        let authenticated = bearer.is_some();
        let body = op
            .request_body
            .as_ref()
            .map(|b| b.content.keys().any(|media| media.contains("json")));
        let raw_body = body == Some(false);
        Kind {
            authenticated,
            scoped: bearer.is_some_and(|scopes| !scopes.is_empty()),
            api: path.starts_with("/v1/"),
            callback: path.starts_with("/hooks/"),
            body: body == Some(true),
            raw_body,
            query: op
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == ParameterIn::Query),
            idempotent: authenticated && method == "post" && !raw_body,
        }
    }

    /// The codes every operation of this kind can answer.
    fn codes(&self) -> Vec<Code> {
        // Every operation but a provider's callback refuses query parameters it does not
        // declare.
        let mut out = Vec::new();
        if !self.callback {
            out.push(codes::INVALID_QUERY);
        }
        if self.authenticated {
            out.push(codes::UNAUTHORIZED);
        }
        if self.scoped {
            out.push(codes::FORBIDDEN);
        }
        if self.api || self.callback {
            out.extend([codes::RATE_LIMITED, codes::DATABASE_UNAVAILABLE]);
        }
        if self.raw_body {
            out.push(codes::BODY_TOO_LARGE);
        }
        if self.body {
            out.extend([
                codes::MALFORMED_JSON,
                codes::BODY_TOO_LARGE,
                codes::UNSUPPORTED_MEDIA_TYPE,
                codes::VALIDATION_FAILED,
            ]);
        }
        if self.query {
            out.push(codes::VALIDATION_FAILED);
        }
        if self.idempotent {
            out.extend([
                codes::BAD_REQUEST,
                codes::IDEMPOTENCY_KEY_IN_USE,
                codes::IDEMPOTENCY_KEY_REUSED,
                codes::BODY_TOO_LARGE,
            ]);
        }
        out
    }
}

/// The codes an annotation lists in an error response's description (`"name-taken"`,
/// `"stale-lease, job-cancelled"`); `None` when it is not such a list.
pub fn listed_codes(description: &str, status: u16) -> Option<Vec<Code>> {
    let names: Vec<&str> = description
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let codes: Vec<Code> = names.iter().filter_map(|n| Code::find(n)).collect();
    (!names.is_empty()
        && codes.len() == names.len()
        && codes.iter().all(|c| c.status().as_u16() == status))
    .then_some(codes)
}

/// The description of an error response: each code with its meaning.
fn describe(codes: &[Code]) -> String {
    codes
        .iter()
        .map(|c| format!("`{}`: {}", c.name(), c.meaning()))
        .collect::<Vec<_>>()
        .join(". ")
}

fn problem_response(status: u16, codes: &[Code]) -> RefOr<utoipa::openapi::Response> {
    let mut r = ResponseBuilder::new().description(describe(codes)).content(
        PROBLEM_JSON,
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    // Every 429 and 503 problem says when to come back.
    if status == 429 || status == 503 {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    RefOr::T(r.build())
}

/// Merges parameters declared twice (a path parameter utoipa infers from the extractor and
/// the same one declared with its rule): one entry, required if either is, with the more
/// specific schema.
fn merge_parameters(op: &mut Operation) {
    let Some(params) = op.parameters.take() else {
        return;
    };
    let mut merged: Vec<utoipa::openapi::path::Parameter> = Vec::with_capacity(params.len());
    let weight = |p: &utoipa::openapi::path::Parameter| {
        serde_json::to_string(&p.schema).map_or(0, |s| s.len())
    };
    for p in params {
        match merged
            .iter_mut()
            .find(|m| m.name == p.name && m.parameter_in == p.parameter_in)
        {
            None => merged.push(p),
            Some(m) => {
                let required = m.required == Required::True || p.required == Required::True;
                let description = m.description.clone().or_else(|| p.description.clone());
                if weight(&p) > weight(m) {
                    *m = p;
                }
                m.required = if required {
                    Required::True
                } else {
                    Required::False
                };
                m.description = m.description.clone().or(description);
            }
        }
    }
    op.parameters = Some(merged);
}

fn is_problem(r: &RefOr<utoipa::openapi::Response>) -> bool {
    match r {
        RefOr::Ref(_) => false,
        RefOr::T(r) => r.content.values().all(|c| {
            serde_json::to_value(&c.schema)
                .ok()
                .and_then(|s| s["$ref"].as_str().map(|r| r.ends_with("/Problem")))
                .unwrap_or(false)
        }),
    }
}

impl ProblemResponses {
    fn operation(&self, path: &str, method: &str, op: &mut Operation) {
        merge_parameters(op);
        let kind = Kind::of(path, method, op);
        if kind.idempotent {
            let params = op.parameters.get_or_insert_with(Vec::new);
            params.retain(|p| !p.name.eq_ignore_ascii_case("idempotency-key"));
            params.push(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Makes retries safe: a replay returns the first answer (see docs/api.md)",
                    ))
                    .schema(Some(crate::idempotency::key_schema()))
                    .build(),
            );
        }
        let mut errors: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
        let existing = std::mem::take(&mut op.responses.responses);
        for (status, response) in existing {
            let code = status.parse::<u16>().unwrap_or(0);
            let listed = match &response {
                RefOr::T(r) if code >= 400 && is_problem(&response) => {
                    listed_codes(&r.description, code)
                }
                _ => None,
            };
            match (listed, response) {
                (Some(list), _) => errors.entry(code).or_default().extend(list),
                (None, RefOr::T(mut r)) if code >= 400 && r.content.is_empty() => {
                    // An error without a body of its own is a problem document.
                    r.content.insert(
                        PROBLEM_JSON.to_owned(),
                        Content::new(Some(Ref::from_schema_name("Problem"))),
                    );
                    op.responses.responses.insert(status, RefOr::T(r));
                }
                (None, response) => {
                    op.responses.responses.insert(status, response);
                }
            }
        }
        for code in kind.codes() {
            errors.entry(code.status().as_u16()).or_default().push(code);
        }
        for (status, response) in op.responses.responses.iter_mut() {
            if let RefOr::T(r) = response {
                if r.description.is_empty() {
                    r.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Success")
                        .to_owned();
                }
            }
        }
        for (status, mut list) in errors {
            // Catalogue order, once each.
            list.sort_by_key(|c| codes::ALL.iter().position(|a| a == c));
            list.dedup();
            op.responses
                .responses
                .insert(status.to_string(), problem_response(status, &list));
        }
    }
}

impl Modify for ProblemResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for (path, item) in api.paths.paths.iter_mut() {
            for (method, op) in [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ] {
                if let Some(op) = op {
                    self.operation(path, method, op);
                }
            }
        }
    }
}

/// The body of `POST /v1/schedules`: `ScheduleIn` (shared with PATCH, where every field is
/// optional) with the fields creation requires made required and non-null.
fn schedule_create_body(api: &mut utoipa::openapi::OpenApi) {
    use crate::queue::schedules::{CREATE_SCHEMA, REQUIRED_ON_CREATE};
    let Some(components) = api.components.as_mut() else {
        return;
    };
    let Some(base) = components.schemas.get("ScheduleIn") else {
        return;
    };
    let mut schema = serde_json::to_value(base).unwrap_or_default();
    schema["required"] = serde_json::json!(REQUIRED_ON_CREATE);
    for field in REQUIRED_ON_CREATE {
        let p = &mut schema["properties"][field];
        if let Some(types) = p["type"].as_array_mut() {
            types.retain(|t| t != "null");
        }
        if let Some(one_of) = p["oneOf"].as_array_mut() {
            one_of.retain(|s| s["type"] != "null");
            if one_of.len() == 1 {
                *p = one_of.remove(0);
            }
        }
    }
    schema["description"] = "Body of `POST /v1/schedules`.".into();
    let Ok(schema) = serde_json::from_value(schema) else {
        return;
    };
    components
        .schemas
        .insert(CREATE_SCHEMA.to_owned(), RefOr::T(schema));
    if let Some(op) = api
        .paths
        .paths
        .get_mut("/v1/schedules")
        .and_then(|item| item.post.as_mut())
    {
        if let Some(body) = op.request_body.as_mut() {
            for content in body.content.values_mut() {
                content.schema = Some(Ref::from_schema_name(CREATE_SCHEMA).into());
            }
        }
    }
}

/// Rules that no single field's schema can state, added to the derived component schemas.
pub struct CrossFieldRules;

impl Modify for CrossFieldRules {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let Some(components) = api.components.as_mut() else {
            return;
        };
        if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(o))) =
            components.schemas.get_mut("JobSpec")
        {
            switchboard_queue::JobSpec::constrain_schema(o);
        }
        if let Some(RefOr::T(s)) = components.schemas.get_mut("Backoff") {
            switchboard_queue::Backoff::constrain_schema(s);
        }
        schedule_create_body(api);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn operations() -> Vec<(String, String, Value)> {
        let doc = serde_json::to_value(crate::app::openapi()).unwrap_or_default();
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().cloned().unwrap_or_default() {
            for (method, op) in item.as_object().cloned().unwrap_or_default() {
                out.push((path.clone(), method, op));
            }
        }
        assert!(out.len() > 40, "the document has {} operations", out.len());
        out
    }

    fn schema(name: &str) -> Value {
        let doc = serde_json::to_value(crate::app::openapi()).unwrap_or_default();
        doc["components"]["schemas"][name].clone()
    }

    #[test]
    fn priority_is_a_name_or_a_number() {
        let p = &schema("JobSpec")["properties"]["priority"];
        assert_eq!(
            p["oneOf"][0]["enum"],
            serde_json::json!(["critical", "high", "normal", "low"])
        );
        assert_eq!(p["oneOf"][1]["type"], "integer");
        assert_eq!(
            (
                p["oneOf"][1]["minimum"].clone(),
                p["oneOf"][1]["maximum"].clone()
            ),
            (0.into(), 100.into())
        );
        assert_eq!(p["oneOf"][2]["type"], "null");
    }

    #[test]
    fn input_schemas_state_the_servers_rules() {
        let job = schema("JobSpec");
        let q = &job["properties"]["queue"];
        assert_eq!(
            (q["minLength"].clone(), q["maxLength"].clone()),
            (1.into(), 100.into())
        );
        assert_eq!(q["pattern"], "^[A-Za-z0-9._:\\-]*$");
        assert_eq!(job["properties"]["kind"]["maxLength"], 200);
        for (field, min, max) in [
            ("max_attempts", 1_i64, 1000_i64),
            ("timeout_ms", 1, 86_400_000),
            ("delay_ms", 0, 31_536_000_000),
            ("unique_window_secs", 1, 2_592_000),
        ] {
            let f = &job["properties"][field];
            assert_eq!(
                (f["minimum"].as_i64(), f["maximum"].as_i64()),
                (Some(min), Some(max)),
                "{field}"
            );
        }
        assert_eq!(job["properties"]["tags"]["maxItems"], 20);
        assert_eq!(job["properties"]["tags"]["items"]["pattern"], "^[^,]*$");
        assert_eq!(
            job["not"]["required"],
            serde_json::json!(["run_at", "delay_ms"])
        );
        assert_eq!(job["additionalProperties"], false);
        let batch = schema("BatchIn");
        assert_eq!(
            (
                batch["properties"]["jobs"]["minItems"].clone(),
                batch["properties"]["jobs"]["maxItems"].clone()
            ),
            (1.into(), 10_000.into())
        );
        let user = schema("UserIn");
        assert!(user["properties"]["email"]["pattern"]
            .as_str()
            .is_some_and(|p| p.contains('@')));
        assert_eq!(user["properties"]["email"]["maxLength"], 254);
        assert_eq!(user["properties"]["password"]["minLength"], 8);
        assert_eq!(user["properties"]["password"]["maxLength"], 256);
        let scopes = schema("Scopes");
        let names: Vec<&str> = scopes["items"]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(names.len(), crate::auth::SCOPES.len() + 1);
        assert_eq!(scopes["minItems"], 1);
        let sched = schema("ScheduleIn");
        assert!(sched["properties"]["cron"]["pattern"]
            .as_str()
            .is_some_and(|p| p.len() > 100));
        assert!(sched["properties"]["timezone"]["enum"]
            .as_array()
            .is_some_and(|z| z.iter().any(|z| z == "Europe/Berlin")));
        assert_eq!(sched["properties"]["backfill_limit"]["maximum"], 1000);
        // POST requires what PATCH leaves optional.
        let create = schema("ScheduleNew");
        assert_eq!(
            create["required"],
            serde_json::json!(["name", "cron", "job"])
        );
        assert_eq!(
            create["properties"]["job"]["$ref"],
            "#/components/schemas/JobSpec"
        );
        let doc = serde_json::to_value(crate::app::openapi()).unwrap_or_default();
        assert_eq!(
            doc["paths"]["/v1/schedules"]["post"]["requestBody"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/ScheduleNew"
        );
        assert_eq!(
            doc["paths"]["/v1/schedules/{id}"]["patch"]["requestBody"]["content"]
                ["application/json"]["schema"]["$ref"],
            "#/components/schemas/ScheduleIn"
        );
        let claim = schema("ClaimIn");
        assert_eq!(claim["properties"]["wait_ms"]["maximum"], 30_000);
        assert_eq!(claim["properties"]["lease_ms"]["minimum"], 1000);
        assert_eq!(claim["properties"]["worker"]["maxLength"], 200);
        let patch = schema("QueuePatch");
        assert_eq!(
            patch["properties"]["global_concurrency"]["maximum"],
            100_000
        );
        assert_eq!(
            schema("RateLimit")["properties"]["period_ms"]["maximum"],
            86_400_000
        );
        assert_eq!(
            schema("CleanIn")["properties"]["state"]["enum"],
            serde_json::json!(["completed", "failed", "cancelled"])
        );
        let backoff = schema("Backoff");
        for variant in backoff["oneOf"].as_array().into_iter().flatten() {
            assert_eq!(variant["additionalProperties"], false, "{variant}");
        }
        let doc = serde_json::to_value(crate::app::openapi()).unwrap_or_default();
        let limit = doc["paths"]["/v1/jobs"]["get"]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "limit").cloned())
            .unwrap_or_default();
        assert_eq!(
            (
                limit["schema"]["minimum"].clone(),
                limit["schema"]["maximum"].clone()
            ),
            (1.into(), 200.into())
        );
        let name = doc["paths"]["/v1/queues/{name}"]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(name.len(), 1, "{name:?}");
        assert_eq!(name[0]["required"], true);
        assert_eq!(name[0]["schema"]["maxLength"], 100);
    }

    #[test]
    fn every_error_response_is_a_problem_document_naming_its_codes() {
        for (path, method, op) in operations() {
            for (status, r) in op["responses"].as_object().cloned().unwrap_or_default() {
                let code: u16 = status.parse().unwrap_or(0);
                if code < 400 || (path == "/readyz" && code == 503) {
                    continue;
                }
                let content = r["content"].as_object().cloned().unwrap_or_default();
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    [crate::error::PROBLEM_JSON],
                    "{method} {path} {status}"
                );
                assert_eq!(
                    content[crate::error::PROBLEM_JSON]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
                let description = r["description"].as_str().unwrap_or_default();
                for part in description.split(". `") {
                    let name = part.trim_start_matches('`').split('`').next().unwrap_or("");
                    let known = crate::error::Code::find(name);
                    assert!(
                        known.is_some_and(|c| c.status().as_u16() == code),
                        "{method} {path} {status}: `{name}` is not a catalogue code of this status"
                    );
                }
            }
        }
    }

    #[test]
    fn every_operation_lists_the_errors_of_its_kind() {
        for (path, method, op) in operations() {
            let has = |status: &str, code: &str| {
                op["responses"][status]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("`{code}`")))
            };
            let scopes = op["security"][0]["bearer"].as_array().cloned();
            if let Some(scopes) = &scopes {
                assert!(has("401", "unauthorized"), "{method} {path}");
                assert_eq!(
                    has("403", "forbidden"),
                    !scopes.is_empty(),
                    "{method} {path}"
                );
            }
            let callback = path.starts_with("/hooks/");
            if path.starts_with("/v1/") || callback {
                assert!(has("429", "rate-limited"), "{method} {path}");
                assert!(has("503", "database-unavailable"), "{method} {path}");
            }
            let media: Vec<String> = op["requestBody"]["content"]
                .as_object()
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default();
            let json = media.iter().any(|m| m.contains("json"));
            if !media.is_empty() {
                assert!(has("413", "body-too-large"), "{method} {path}");
                assert_eq!(has("400", "malformed-json"), json, "{method} {path}");
                assert_eq!(
                    has("415", "unsupported-media-type"),
                    json,
                    "{method} {path}"
                );
                assert_eq!(has("422", "validation-failed"), json, "{method} {path}");
            }
            // Unknown query parameters are refused everywhere but in provider callbacks.
            assert_eq!(has("400", "invalid-query"), !callback, "{method} {path}");
            // A raw body is read as it arrives: no Idempotency-Key layer buffers it.
            if scopes.is_some() && method == "post" && (json || media.is_empty()) {
                assert!(has("409", "idempotency-key-in-use"), "{method} {path}");
                assert!(has("422", "idempotency-key-reused"), "{method} {path}");
                let header = op["parameters"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["name"] == "Idempotency-Key").cloned());
                assert!(
                    header.is_some_and(|h| h["schema"]["pattern"].is_string()),
                    "{method} {path} does not declare its Idempotency-Key header"
                );
            }
        }
    }

    #[test]
    fn provider_callbacks_are_public_raw_and_say_404_without_a_provider() {
        let ops: Vec<_> = operations()
            .into_iter()
            .filter(|(path, _, _)| path.starts_with("/hooks/"))
            .collect();
        let paths: Vec<(&str, &str)> = ops
            .iter()
            .map(|(p, m, _)| (p.as_str(), m.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("/hooks/{provider}", "post"),
                ("/hooks/{provider}/{key}", "post")
            ]
        );
        for (path, _, op) in &ops {
            assert_eq!(op["tags"], serde_json::json!(["hooks"]), "{path}");
            assert_eq!(
                op["security"],
                serde_json::json!([{}]),
                "{path}: no API key"
            );
            assert!(
                op["requestBody"]["content"]["application/octet-stream"].is_object(),
                "{path}: {}",
                op["requestBody"]
            );
            for (status, code) in [
                ("404", "not-found"),
                ("413", "body-too-large"),
                ("429", "rate-limited"),
                ("401", "invalid-signature"),
            ] {
                assert!(
                    op["responses"][status]["description"]
                        .as_str()
                        .is_some_and(|d| d.contains(&format!("`{code}`"))),
                    "{path} {status}"
                );
            }
            let header = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "Idempotency-Key");
            assert!(!header, "{path}");
        }
    }

    /// Capabilities the description may only promise once their routes exist: (word in
    /// the description, path prefix of its routes).
    const PLANNED: &[(&str, &str)] = &[
        ("notifications", "/v1/notifications"),
        ("payments", "/v1/payments"),
        ("storage", "/v1/buckets"),
        ("outgoing webhooks", "/v1/webhook-endpoints"),
    ];

    #[test]
    fn the_description_promises_only_what_is_served() {
        let doc = crate::app::openapi();
        let description = doc
            .info
            .description
            .clone()
            .unwrap_or_default()
            .to_lowercase();
        let (served, missing) = description
            .split_once("not part of this version yet")
            .map(|(before, _)| {
                let (served, missing) = before.rsplit_once('.').unwrap_or(("", before));
                (served.to_owned(), missing.to_owned())
            })
            .unwrap_or((description.clone(), String::new()));
        for (word, prefix) in PLANNED {
            let exists = doc.paths.paths.keys().any(|p| p.starts_with(prefix));
            assert!(
                !served.contains(word),
                "the description offers {word} outside the list of what is missing"
            );
            assert_eq!(
                missing.contains(word),
                !exists,
                "{word}: routes under {prefix} exist = {exists}, but the description says otherwise"
            );
        }
        assert!(served.contains("job queues") && served.contains("audit trail"));
    }
}

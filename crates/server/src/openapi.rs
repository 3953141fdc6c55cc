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
    /// Takes a JSON body.
    body: bool,
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
        Kind {
            authenticated,
            scoped: bearer.is_some_and(|scopes| !scopes.is_empty()),
            api: path.starts_with("/v1/"),
            body: op.request_body.is_some(),
            query: op
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == ParameterIn::Query),
            idempotent: authenticated && method == "post",
        }
    }

    /// The codes every operation of this kind can answer.
    fn codes(&self) -> Vec<Code> {
        let mut out = Vec::new();
        if self.authenticated {
            out.push(codes::UNAUTHORIZED);
        }
        if self.scoped {
            out.push(codes::FORBIDDEN);
        }
        if self.api {
            out.extend([codes::RATE_LIMITED, codes::DATABASE_UNAVAILABLE]);
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
            out.extend([codes::INVALID_QUERY, codes::VALIDATION_FAILED]);
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
            if path.starts_with("/v1/") {
                assert!(has("429", "rate-limited"), "{method} {path}");
                assert!(has("503", "database-unavailable"), "{method} {path}");
            }
            if op.get("requestBody").is_some() {
                assert!(has("400", "malformed-json"), "{method} {path}");
                assert!(has("413", "body-too-large"), "{method} {path}");
                assert!(has("415", "unsupported-media-type"), "{method} {path}");
                assert!(has("422", "validation-failed"), "{method} {path}");
            }
            let query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            if query {
                assert!(has("400", "invalid-query"), "{method} {path}");
            }
            if scopes.is_some() && method == "post" {
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

//! The OpenAPI 3.1 document, assembled from every capability's routes.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
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

#[cfg(test)]
mod tests {
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

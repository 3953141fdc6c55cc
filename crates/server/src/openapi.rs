//! The OpenAPI 3.1 document, assembled from every capability's routes.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Top-level document; paths and schemas come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "Durable jobs, notifications, payments, storage, webhooks and an audit \
                       trail behind one HTTP API. Errors are RFC 9457 problem documents.",
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

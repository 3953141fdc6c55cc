//! Authentication and authorisation.
//!
//! The [`authenticate`] middleware turns an `Authorization: Bearer …` header (an API key or a
//! JWT access token) into a [`Principal`] for every `/v1` route; handlers then take
//! [`Authed<S>`], which refuses with 403 unless the principal holds scope `S` before the
//! handler body runs. A handler that compiles is authenticated, authorised and project-scoped.

pub mod jwt;
pub mod password;

use crate::error::ApiError;
use crate::platform::{api_keys, users};
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use switchboard_core::audit::{Actor, AuditContext};
use switchboard_core::id::ProjectId;

/// Every scope an API key can carry. Later capabilities add theirs here.
pub const SCOPES: &[&str] = &[
    "projects:read",
    "projects:write",
    "keys:read",
    "keys:write",
    "users:read",
    "users:write",
    "audit:read",
    "jobs:read",
    "jobs:write",
    "queues:read",
    "queues:write",
    "schedules:read",
    "schedules:write",
];

/// Write scopes an operator holds on top of every read scope.
const OPERATOR_WRITES: &[&str] = &["jobs:write", "queues:write", "schedules:write"];

/// The scope that grants everything.
pub const ALL: &str = "*";

/// A validated set of scopes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Scopes(Vec<String>);

/// How many scopes a set holds.
pub const SCOPE_COUNT: switchboard_core::rules::Items = switchboard_core::rules::Items::new(1, 64);

impl utoipa::PartialSchema for Scopes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names: Vec<&str> = std::iter::once(ALL).chain(SCOPES.iter().copied()).collect();
        let mut list = SCOPE_COUNT.schema(
            switchboard_core::rules::one_of(&names, ""),
            "Scopes; `*` grants everything, a `:write` scope also grants its `:read`",
            "scopes",
        );
        if let utoipa::openapi::schema::Schema::Array(a) = &mut list {
            a.examples = vec![serde_json::json!(["keys:read", "audit:read"])];
        }
        list.into()
    }
}

impl utoipa::ToSchema for Scopes {}

impl TryFrom<Vec<String>> for Scopes {
    type Error = String;

    fn try_from(list: Vec<String>) -> Result<Self, String> {
        if !SCOPE_COUNT.allows(list.len()) {
            return Err(SCOPE_COUNT.message("scopes"));
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for s in list {
            if s != ALL && !SCOPES.contains(&s.as_str()) {
                return Err(format!(
                    "unknown scope `{s}` (known: *, {})",
                    SCOPES.join(", ")
                ));
            }
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(Scopes(out))
    }
}

impl From<Scopes> for Vec<String> {
    fn from(s: Scopes) -> Self {
        s.0
    }
}

impl Scopes {
    /// Every scope.
    pub fn all() -> Scopes {
        Scopes(vec![ALL.to_owned()])
    }

    /// Whether this set grants `required`; a `:write` scope also grants its `:read`.
    pub fn allows(&self, required: &str) -> bool {
        self.0.iter().any(|s| {
            s == ALL
                || s == required
                || required
                    .strip_suffix(":read")
                    .is_some_and(|res| s.strip_suffix(":write") == Some(res))
        })
    }

    /// Whether a credential with these scopes may hand out `wanted` (never more than it has).
    pub fn can_grant(&self, wanted: &str) -> bool {
        if wanted == ALL {
            self.0.iter().any(|s| s == ALL)
        } else {
            self.allows(wanted)
        }
    }

    /// Stored form: comma-separated.
    pub fn to_db(&self) -> String {
        self.0.join(",")
    }

    /// Reads the stored form back (unknown entries from newer versions are kept as-is).
    pub fn from_db(s: &str) -> Scopes {
        Scopes(
            s.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }
}

/// A user's role within a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including managing admins and owners.
    Owner,
    /// Everything but managing owners.
    Admin,
    /// Reads everything, operates queues and jobs.
    Operator,
    /// Reads everything.
    Viewer,
}

impl Role {
    /// Every role, highest first.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Operator, Role::Viewer];

    /// Stored / wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Position in the hierarchy: owner 3 … viewer 0.
    pub fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Operator => 1,
            Role::Viewer => 0,
        }
    }

    /// The scopes a user with this role holds.
    pub fn scopes(self) -> Scopes {
        match self {
            Role::Owner | Role::Admin => Scopes::all(),
            Role::Operator | Role::Viewer => Scopes(
                SCOPES
                    .iter()
                    .filter(|s| {
                        s.ends_with(":read")
                            || (self == Role::Operator && OPERATOR_WRITES.contains(s))
                    })
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
        }
    }
}

/// Who is calling: resolved once per request by [`authenticate`].
#[derive(Clone, Debug)]
pub struct Principal {
    /// The only project this caller can see.
    pub project_id: ProjectId,
    /// For the audit trail.
    pub actor: Actor,
    /// What it may do.
    pub scopes: Scopes,
    /// A user's role; for an API key, the role of whoever created it (its ceiling: a key
    /// never creates or changes a user above it, nor mints keys above it).
    pub role: Role,
}

impl Principal {
    /// Why this caller may not give a user `role` (create a user with it, or change a user
    /// who has it or is to get it), or `None` when it may. Giving a role grants its scopes,
    /// so the caller must hold every one of them, and may not rank below it.
    pub fn cannot_assign(&self, role: Role) -> Option<String> {
        if role.rank() > self.role.rank() {
            return Some(format!(
                "a credential with role `{}` cannot manage {}s",
                self.role.as_str(),
                role.as_str()
            ));
        }
        Vec::<String>::from(role.scopes())
            .into_iter()
            .find(|s| !self.scopes.can_grant(s))
            .map(|s| {
                format!(
                    "the role `{}` grants `{s}`, which this credential does not hold",
                    role.as_str()
                )
            })
    }
}

/// Who asks a platform service for something: the credential (its project, actor, scopes
/// and role ceiling, which the service's rules check) and where the request came from
/// (stamped on the audit events it writes). The API builds one from the request
/// ([`Authed::caller`]); the CLI and bootstrap act as the node's operator
/// ([`Caller::operator`]).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The credential.
    pub principal: Principal,
    /// Request origin.
    pub client: ClientInfo,
}

impl Caller {
    /// Whoever runs the node (the CLI, bootstrap): they hold the database, so they act as
    /// an owner with every scope, recorded as the system actor `component`.
    pub fn operator(project: &ProjectId, component: &str) -> Caller {
        Caller {
            principal: Principal {
                project_id: project.clone(),
                actor: Actor::system(component),
                scopes: Scopes::all(),
                role: Role::Owner,
            },
            client: ClientInfo::default(),
        }
    }

    /// The caller's project.
    pub fn project(&self) -> &ProjectId {
        &self.principal.project_id
    }

    /// Context stamped on the audit events the call writes.
    pub fn audit(&self) -> AuditContext {
        AuditContext {
            project_id: self.principal.project_id.clone(),
            actor: self.principal.actor.clone(),
            ip: self.client.ip.clone(),
            user_agent: self.client.user_agent.clone(),
            request_id: self.client.request_id.clone(),
        }
    }
}

/// Where a request came from, recorded with every audit event it causes.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// Client IP.
    pub ip: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `X-Request-Id`.
    pub request_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientInfo>()
            .cloned()
            .unwrap_or_default())
    }
}

/// A scope a handler requires, as a type.
pub trait RequiredScope {
    /// The scope string.
    const SCOPE: &'static str;
}

/// Scope marker types for [`Authed`].
pub mod scope {
    use super::RequiredScope;

    macro_rules! markers {
        ($($(#[$m:meta])* $name:ident => $s:literal),* $(,)?) => {
            $($(#[$m])* pub struct $name;
            impl RequiredScope for $name {
                const SCOPE: &'static str = $s;
            })*
        };
    }

    markers! {
        /// `projects:read`
        ProjectsRead => "projects:read",
        /// `projects:write`
        ProjectsWrite => "projects:write",
        /// `keys:read`
        KeysRead => "keys:read",
        /// `keys:write`
        KeysWrite => "keys:write",
        /// `users:read`
        UsersRead => "users:read",
        /// `users:write`
        UsersWrite => "users:write",
        /// `audit:read`
        AuditRead => "audit:read",
        /// `jobs:read`
        JobsRead => "jobs:read",
        /// `jobs:write`
        JobsWrite => "jobs:write",
        /// `queues:read`
        QueuesRead => "queues:read",
        /// `queues:write`
        QueuesWrite => "queues:write",
        /// `schedules:read`
        SchedulesRead => "schedules:read",
        /// `schedules:write`
        SchedulesWrite => "schedules:write",
    }
}

/// An authenticated caller holding scope `S`.
pub struct Authed<S> {
    /// The caller.
    pub principal: Principal,
    /// Request origin, for audit events.
    pub client: ClientInfo,
    _scope: PhantomData<S>,
}

impl<S> Authed<S> {
    /// The caller's project.
    pub fn project(&self) -> &ProjectId {
        &self.principal.project_id
    }

    /// The caller, for a service.
    pub fn caller(&self) -> Caller {
        Caller {
            principal: self.principal.clone(),
            client: self.client.clone(),
        }
    }

    /// Context stamped on the audit events this request writes.
    pub fn audit(&self) -> AuditContext {
        AuditContext {
            project_id: self.principal.project_id.clone(),
            actor: self.principal.actor.clone(),
            ip: self.client.ip.clone(),
            user_agent: self.client.user_agent.clone(),
            request_id: self.client.request_id.clone(),
        }
    }
}

impl<St: Send + Sync, S: RequiredScope> FromRequestParts<St> for Authed<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("missing API key or access token"))?;
        if !principal.scopes.allows(S::SCOPE) {
            return Err(ApiError::forbidden(format!(
                "this credential lacks the `{}` scope",
                S::SCOPE
            )));
        }
        Ok(Authed {
            principal,
            client: parts
                .extensions
                .get::<ClientInfo>()
                .cloned()
                .unwrap_or_default(),
            _scope: PhantomData,
        })
    }
}

/// What an operation requires of its caller, as its OpenAPI security requirement declares it
/// (`security(("bearer" = ["keys:write"]))`). The handler's [`Authed`] scope is what enforces
/// it; layers that answer before the handler runs (idempotent replays) check this instead,
/// and a test walks every operation to prove the two agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Any authenticated caller (`"bearer" = []`).
    Authenticated,
    /// A caller holding this scope.
    Scope(&'static str),
}

/// The requirement declared for `method` on the route template `route` (`/v1/jobs/{id}`);
/// `None` for an operation that declares none (public) or does not exist.
pub fn declared_requirement(method: &axum::http::Method, route: &str) -> Option<Requirement> {
    type Map = std::collections::HashMap<(String, String), Requirement>;
    static MAP: std::sync::OnceLock<Map> = std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        let doc = serde_json::to_value(crate::app::openapi()).unwrap_or_default();
        let mut map = Map::new();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        for (template, item) in paths {
            let Some(ops) = item.as_object() else {
                continue;
            };
            for (method, op) in ops {
                let Some(bearer) = op["security"]
                    .as_array()
                    .and_then(|reqs| reqs.iter().find_map(|r| r["bearer"].as_array()))
                else {
                    continue;
                };
                let requirement = match bearer.first().and_then(|s| s.as_str()) {
                    None => Requirement::Authenticated,
                    Some(s) => match SCOPES.iter().find(|known| **known == s) {
                        Some(known) => Requirement::Scope(known),
                        // A scope this build does not know: treated as undeclared.
                        None => continue,
                    },
                };
                map.insert((method.to_ascii_uppercase(), template.clone()), requirement);
            }
        }
        map
    })
    .get(&(method.as_str().to_owned(), route.to_owned()))
    .copied()
}

/// The bearer token of a request, if any.
fn bearer(parts: &axum::http::HeaderMap) -> Option<&str> {
    let value = parts.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Resolves the caller of every protected route, or answers 401.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return ApiError::unauthorized("missing API key or access token").into_response();
    };
    let principal = if token.starts_with(api_keys::KEY_PREFIX) {
        api_keys::service::authenticate(&state.db, token).await
    } else {
        match state.jwt.verify(token) {
            Ok(claims) => users::service::principal_for_token(&state.db, &claims).await,
            Err(_) => Ok(None),
        }
    };
    match principal {
        Ok(Some(p)) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Ok(None) => {
            ApiError::unauthorized("invalid, expired or revoked credential").into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_implies_read_and_star_implies_all() {
        let s = Scopes::try_from(vec!["keys:write".to_owned()]).unwrap();
        assert!(s.allows("keys:read"));
        assert!(s.allows("keys:write"));
        assert!(!s.allows("audit:read"));
        assert!(Scopes::all().allows("users:write"));
        assert!(Scopes::try_from(vec!["keys:eat".to_owned()]).is_err());
        assert!(Scopes::try_from(Vec::new()).is_err());
    }

    #[test]
    fn viewer_reads_only() {
        let s = Role::Viewer.scopes();
        assert!(s.allows("audit:read") && !s.allows("keys:write") && !s.allows("jobs:write"));
        let op = Role::Operator.scopes();
        assert!(op.allows("jobs:write") && op.allows("queues:write") && !op.allows("keys:write"));
        assert!(Role::Admin.scopes().allows("keys:write"));
    }
}

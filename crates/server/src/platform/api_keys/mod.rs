//! API keys: project-scoped, capability-scoped, shown once, stored as a SHA-256 digest,
//! last use recorded (at most once a minute), revocation immediate (no key cache).
//!
//! `model` (types and rules), `repo` (SQL), `service` (grant ceilings, audit events,
//! authentication: what the API, the CLI, new projects and bootstrap share), `http`
//! (`/v1/api-keys`).

pub mod http;
pub mod model;
pub mod repo;
pub mod service;

pub use model::{ApiKey, ApiKeyCreated, NewKey, KEY_NAME, KEY_PREFIX};

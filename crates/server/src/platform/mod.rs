//! The platform capabilities: projects, API keys, users and login, the audit trail, health.
//!
//! Every domain has the same inner shape: `model` (types), `repo` (SQL, both backends),
//! `service` (transactions, audit events, rules; returns [`PlatformError`]) and `http`
//! (routes, OpenAPI). The HTTP handlers, the dashboard, the CLI and bootstrap all call the
//! services, so a rule or an audit event is written once.

pub mod api_keys;
pub mod audit;
pub mod error;
pub mod health;
pub mod login;
pub mod projects;
pub mod users;

pub use error::{FieldIssue, PlatformError, PlatformResult};

//! Users: people who log in to the dashboard or take JWTs for the API. Each belongs to one
//! project with one role; an e-mail address is unique within its project (the same address
//! may have an account in several projects, each with its own password).
//!
//! `model` (types and input rules), `repo` (SQL), `service` (role ceilings, the last owner,
//! password rules, audit events: what the API, the CLI and bootstrap share), `http`
//! (`/v1/users`).

pub mod http;
pub mod model;
pub mod repo;
pub mod service;

pub use model::{parse_email, User, UserRecord, EMAIL, USER_NAME};

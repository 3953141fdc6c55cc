//! The platform capabilities: projects, API keys, users and login, the audit trail, health.

pub mod api_keys;
pub mod audit;
pub mod health;
pub mod login;
pub mod projects;
pub mod users;

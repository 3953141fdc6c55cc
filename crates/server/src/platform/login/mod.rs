//! Password login: JWT access tokens with rotating refresh tokens for API clients, and
//! session cookies for the dashboard.
//!
//! Refresh tokens rotate on every use. Presenting one that was already used means it was
//! copied: the whole family (every token descended from the same login) is revoked.

pub mod http;
pub mod repo;
pub mod throttle;

//! Password login: JWT access tokens with rotating refresh tokens for API clients, and
//! session cookies for the dashboard.
//!
//! Refresh tokens rotate on every use. Presenting one that was already used means it was
//! copied: the whole family (every token descended from the same login) is revoked.
//!
//! `model` (tokens), `repo` (SQL: refresh tokens, sessions, login failures), `service`
//! (password checks, token issue and rotation, dashboard sessions, audit events),
//! `throttle` (the per-account lock rule), `http` (`/v1/auth/…`, `/v1/me`).

pub mod http;
pub mod model;
pub mod repo;
pub mod service;
pub mod throttle;

pub use model::{RefreshToken, TokenPair};

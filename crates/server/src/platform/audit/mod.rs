//! The audit trail as the platform serves it. The trail itself (its model, its SQL and the
//! hash chain) is `switchboard_core::audit`, so that every crate can write events in its
//! own transactions; here are the reads a caller may make (`service`) and their routes
//! (`http`).

pub mod http;
pub mod service;

pub use http::router;

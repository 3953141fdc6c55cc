//! Shared state handed to every handler.

use crate::auth::jwt::JwtKeys;
use metrics_exporter_prometheus::PrometheusHandle;
use std::ops::Deref;
use std::sync::Arc;
use switchboard_core::config::Config;
use switchboard_core::db::Db;
use switchboard_core::ratelimit::RateLimiter;

/// Cheap to clone; everything inside is shared.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// The node's configuration.
    pub config: Config,
    /// The database.
    pub db: Db,
    /// Redis, when configured.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Token buckets for API rate limits.
    pub limiter: RateLimiter,
    /// Access-token keys.
    pub jwt: JwtKeys,
    /// Bounds the argon2 work in flight.
    pub passwords: crate::auth::password::Passwords,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The queue runtime of this node (handlers, wake-ups, push signing).
    pub runtime: switchboard_queue::runtime::Runtime,
    /// Seals and opens secrets kept in the database (provider credentials).
    pub secrets: switchboard_core::crypto::Keyring,
    /// The providers `/hooks/{provider}` takes callbacks from.
    pub hooks: crate::hooks::Registry,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

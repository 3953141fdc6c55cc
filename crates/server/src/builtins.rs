//! Switchboard's built-in job kinds, registered in one place. Every node builds its runtime
//! through [`runtime`]: `serve` ([`crate::app::Application`]) and `switchboard worker`
//! ([`crate::worker::Worker`]) alike, once the database is open, so every node runs the same
//! kinds and their handlers get the database, the job's project and the shared services in
//! their [`JobContext`](switchboard_queue::runtime::JobContext).
//!
//! A capability adds its kind with one line in [`register`]:
//!
//! ```ignore
//! builder
//!     .builtin(notify::jobs::DELIVER, notify::jobs::deliver)
//! ```
//!
//! where `DELIVER` is a `BuiltinKind::new("sb.notify.deliver", "sb.notify")` and `deliver`
//! an `async fn(JobContext) -> Result<Option<Value>, JobError>` (or a closure built from
//! `deps` when it needs configuration).

use crate::app;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::config::Config;
use switchboard_core::db::Db;
use switchboard_queue::egress::Egress;
use switchboard_queue::runtime::{Runtime, RuntimeBuilder, Services};

/// What registering the built-in kinds may use: handlers that need something beyond their
/// [`JobContext`](switchboard_queue::runtime::JobContext) (a provider's configuration, say)
/// capture it from here.
pub struct BuiltinDeps {
    /// The database (handlers also get it as `ctx.db`).
    pub db: Db,
    /// What handlers share (handlers also get it as `ctx.services`).
    pub services: Services,
    /// The node's configuration (capabilities read their sections from it).
    pub config: Config,
    /// Kinds registered after Switchboard's own, through the same function: tests register
    /// theirs here.
    pub extra: Option<Extra>,
}

/// More kinds for [`register`] to add (see [`BuiltinDeps::extra`]).
pub type Extra = Arc<dyn Fn(RuntimeBuilder, &BuiltinDeps) -> RuntimeBuilder + Send + Sync>;

/// Registers every built-in kind on `builder`: one line per kind.
pub fn register(builder: RuntimeBuilder, deps: &BuiltinDeps) -> RuntimeBuilder {
    // Switchboard's own kinds go here, one `.builtin(KIND, handler)` each; none ships yet.
    let builder = builder;
    match &deps.extra {
        Some(extra) => extra(builder, deps),
        None => builder,
    }
}

/// The node's runtime on `db`: `builder` (the caller's handlers and timing), the built-in
/// kinds, and what `config` sets (heartbeat, caps, egress policy). `serve` and `worker`
/// both build theirs here.
pub fn runtime(config: &Config, db: &Db, builder: RuntimeBuilder, extra: Option<Extra>) -> Runtime {
    let services = Services::new(Egress::new(config.push_allow.clone()));
    let deps = BuiltinDeps {
        db: db.clone(),
        services: services.clone(),
        config: config.clone(),
        extra,
    };
    register(builder, &deps)
        .services(services)
        .heartbeat(Duration::from_millis(config.job_heartbeat_ms))
        .limits(app::limits(config))
        .build(db.clone())
}

//! Switchboard core: the pieces every capability shares.
//!
//! - [`id`]: prefixed TypeIDs (`proj_01h…`).
//! - [`money`]: `i64` minor units with an ISO-4217 currency.
//! - [`time`]: UTC timestamps, stored as microseconds since the Unix epoch.
//! - [`config`]: layered, typed configuration.
//! - [`db`]: the [`db::Db`] handle over SQLite or PostgreSQL and the migrations.
//! - [`audit`]: the append-only, hash-chained audit trail.
//! - [`ratelimit`]: token buckets, in-process or shared through Redis.
//! - [`rules`]: input rules shared by validation and the OpenAPI schemas.
//! - [`settings`]: node-wide values kept in the database (generated secrets).
//! - [`crypto`]: sealing secrets stored in the database, with key rotation.
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod crypto;
pub mod db;
pub mod id;
pub mod money;
pub mod ratelimit;
pub mod rules;
pub mod secret;
pub mod settings;
pub mod time;

/// For [`config_section!`]: capabilities declare sections without depending on it.
#[doc(hidden)]
pub use inventory;

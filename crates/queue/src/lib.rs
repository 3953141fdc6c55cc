//! The queue engine: durable jobs on SQLite or PostgreSQL with leases and fencing tokens,
//! retries with backoff, unique keys, per-queue concurrency, rate limits and pause, cron
//! schedules, and the runtime that executes jobs in-process or by HTTP push.
//!
//! Everything else in Switchboard (notifications, payments, webhooks, storage) rides on it.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod cron;
pub mod egress;
pub mod error;
pub mod gather;
pub mod handler;
pub mod history;
pub mod labels;
pub mod limits;
pub mod model;
pub mod push;
pub mod runtime;
pub mod schedules;
pub mod service;
pub mod store;
pub mod wake;

pub use error::QueueError;
pub use model::*;
pub use service::enqueue_in;

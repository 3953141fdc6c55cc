//! Switchboard's HTTP API, dashboard and command line.
//!
//! [`app::Application`] is the whole server; `main.rs` only parses the command line.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod bench;
pub mod bootstrap;
pub mod builtins;
pub mod cli;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod hooks;
pub mod idempotency;
pub mod middleware;
pub mod openapi;
pub mod page;
pub mod platform;
pub mod queue;
pub mod reference;
pub mod state;
pub mod telemetry;
pub mod worker;

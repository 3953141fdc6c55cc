//! Black-box tests: each starts the real server on port 0 with a fresh database and talks
//! HTTP to it. Every scenario runs on SQLite and on PostgreSQL (`both!`); the harness
//! (`tests/common/harness.rs`) reports those that need what this machine lacks as ignored.

#[path = "../common/harness.rs"]
mod harness;
mod helpers;

mod e2e_audit;
mod e2e_auth;
mod e2e_builtins;
mod e2e_cli;
mod e2e_config_sections;
mod e2e_dashboard;
mod e2e_egress;
mod e2e_errors;
mod e2e_fairness;
mod e2e_health;
mod e2e_hooks;
mod e2e_idempotency;
mod e2e_jobs;
mod e2e_keys;
mod e2e_limits;
mod e2e_platform;
mod e2e_push;
mod e2e_rate_limit;
mod e2e_reliability;
mod e2e_scenarios;
mod e2e_schedules;
mod e2e_spec;
mod e2e_streaming;
mod e2e_tenancy;
mod e2e_traps;
mod e2e_users;

fn main() -> std::process::ExitCode {
    harness::main()
}

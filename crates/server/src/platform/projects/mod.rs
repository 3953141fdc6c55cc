//! Projects: the tenants. Every row of every capability belongs to one.
//!
//! `model` (types and rules), `repo` (SQL), `service` (creation with its first key,
//! renaming, audit events), `http` (`/v1/projects`).

pub mod http;
pub mod model;
pub mod repo;
pub mod service;

pub use model::{parse_name, Project, ProjectCreated, PROJECT_NAME};

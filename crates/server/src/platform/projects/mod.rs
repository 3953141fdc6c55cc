//! Projects: the tenants. Every row of every capability belongs to one.

pub mod http;
pub mod repo;

use serde::Serialize;
use switchboard_core::id::ProjectId;
use switchboard_core::time::Timestamp;
use utoipa::ToSchema;

/// A project as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct Project {
    /// `proj_…`
    #[schema(value_type = String, example = "proj_01jqz6w0m3f2t9x4y5z6a7b8c9")]
    pub id: ProjectId,
    /// Display name.
    pub name: String,
    /// Creation time (UTC).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// Checks a project name: 1 to 100 characters, not blank.
pub fn parse_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    match name.chars().count() {
        0 => Err("must not be empty"),
        1..=100 => Ok(name.to_owned()),
        _ => Err("must be at most 100 characters"),
    }
}

//! Projects as the API shows them, and the rules their fields follow.

use crate::platform::api_keys::ApiKeyCreated;
use serde::Serialize;
use switchboard_core::id::ProjectId;
use switchboard_core::rules::{Chars, Text};
use switchboard_core::time::{self, Timestamp};
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

impl Project {
    /// A new project named `name` (already checked), created now.
    pub fn new(name: String) -> Project {
        Project {
            id: ProjectId::generate(),
            name,
            created_at: time::now(),
        }
    }
}

/// A new project with its first API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectCreated {
    /// The new project.
    pub project: Project,
    /// Its first API key, with every scope; the secret is shown only here.
    pub api_key: ApiKeyCreated,
}

/// Project names.
pub const PROJECT_NAME: Text = Text::new(1, 100, Chars::NotBlank);

/// Checks a project name ([`PROJECT_NAME`]); it is kept trimmed.
pub fn parse_name(name: &str) -> Result<String, String> {
    PROJECT_NAME.check(name).map(|()| name.trim().to_owned())
}

//! Login tokens.

use serde::Serialize;
use switchboard_core::id::{ProjectId, TokenFamilyId, UserId};
use utoipa::ToSchema;

/// Tokens for an API client.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: i64,
    /// Single-use token that buys the next pair.
    pub refresh_token: String,
    /// Seconds the refresh token lives.
    pub refresh_expires_in: i64,
}

/// A stored refresh token.
pub struct RefreshToken {
    /// Rotation family.
    pub family_id: TokenFamilyId,
    /// Owner.
    pub user_id: UserId,
    /// Project.
    pub project_id: ProjectId,
    /// Expiry (database time).
    pub expires_at: i64,
    /// Set once rotated.
    pub used_at: Option<i64>,
    /// Set once revoked.
    pub revoked_at: Option<i64>,
}

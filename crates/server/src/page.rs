//! Cursor pagination: `?limit=…&after=…`, answered with `{data, has_more, next_cursor}`.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use switchboard_core::rules::Int;
use utoipa::{IntoParams, ToSchema};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 200;
/// Page sizes.
pub const LIMIT: Int = Int::new(1, MAX_LIMIT);

/// The schema of `limit`.
pub fn limit_schema() -> utoipa::openapi::Object {
    LIMIT.schema(&format!("Items per page (default {DEFAULT_LIMIT})"))
}

/// Query parameters of every list endpoint.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Items per page, 1 to 200 (default 50).
    #[param(schema_with = limit_schema)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// Checks a page size (`None`: the default).
pub fn check_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) => LIMIT
            .check(n)
            .map_err(|m| ApiError::invalid_field("limit", m)),
    }
}

impl PageParams {
    /// The page size, checked.
    pub fn limit(&self) -> Result<i64, ApiError> {
        check_limit(self.limit)
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Whether more items follow.
    pub has_more: bool,
    /// Pass as `after` to get the next page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched items (the extra one only says "more").
    pub fn from_overfetch(mut items: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Page<T> {
        let has_more = items.len() as i64 > limit;
        items.truncate(limit.max(0) as usize);
        let next_cursor = if has_more {
            items.last().map(cursor)
        } else {
            None
        };
        Page {
            data: items,
            has_more,
            next_cursor,
        }
    }
}

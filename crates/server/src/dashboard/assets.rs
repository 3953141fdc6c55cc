//! The dashboard's script and style sheet, compiled into the binary and served from
//! `/dashboard/assets/` (the CSP allows scripts from this origin only, never inline).
//! Their URLs carry a hash of their content, so browsers may cache them for good.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const JS: &str = include_str!("assets/dashboard.js");
const CSS: &str = include_str!("assets/dashboard.css");

fn versioned(name: &str, content: &str) -> String {
    let hash = hex::encode(Sha256::digest(content.as_bytes()));
    format!("/dashboard/assets/{name}?v={}", &hash[..12])
}

/// URL of the script, with its content hash.
pub static JS_PATH: LazyLock<String> = LazyLock::new(|| versioned("dashboard.js", JS));
/// URL of the style sheet, with its content hash.
pub static CSS_PATH: LazyLock<String> = LazyLock::new(|| versioned("dashboard.css", CSS));

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The asset routes (no session needed).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/dashboard/assets/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .route(
            "/dashboard/assets/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
}

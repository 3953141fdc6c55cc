//! Provider callbacks: `POST /hooks/{provider}` and `POST /hooks/{provider}/{key}`.
//!
//! Payment and messaging providers call back (a payment succeeded, an SMS was delivered)
//! without an API key: their signature is the credential, and checking it needs the exact
//! bytes they sent. So this group has no API key, no JSON extractor and no
//! `Idempotency-Key` layer in front of the handler, which gets the raw body and headers;
//! its own body limit (`SWITCHBOARD_HOOKS_BODY_LIMIT`) and a rate limit per client IP
//! (`SWITCHBOARD_HOOKS_RATE_LIMIT_PER_MINUTE`) bound what an anonymous sender can cost.
//!
//! A capability adds its providers to [`Registry::builtin`]; the optional `{key}` is
//! chosen by the capability to find the project a callback belongs to (e.g. the id of the
//! project's provider account). It is not a secret: the signature is what proves the
//! sender. A provider nobody registered answers 404.

use crate::auth::ClientInfo;
use crate::error::{codes, ApiError};
use crate::extract::{Path, Streamed};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use utoipa_axum::{router::OpenApiRouter, routes};

/// A provider callback as it arrived.
#[derive(Clone, Debug)]
pub struct HookRequest {
    /// The provider's name in the path (`stripe`).
    pub provider: String,
    /// The path's key, when the callback URL has one.
    pub key: Option<String>,
    /// Path and query exactly as received (some schemes sign the URL too).
    pub uri: Uri,
    /// Every header as received.
    pub headers: HeaderMap,
    /// The body, byte for byte.
    pub body: Bytes,
    /// Client IP (as `SWITCHBOARD_TRUSTED_PROXIES` decides it), user agent, request id.
    pub client: ClientInfo,
}

/// What to answer the provider: each expects its own acknowledgement.
#[derive(Clone, Debug)]
pub struct HookResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers (a `Content-Type` for a body).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl HookResponse {
    /// `200` with no body.
    pub fn ok() -> HookResponse {
        HookResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// `200` with a JSON body.
    pub fn json(value: &serde_json::Value) -> HookResponse {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        HookResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(value.to_string()),
        }
    }
}

impl IntoResponse for HookResponse {
    fn into_response(self) -> Response {
        (self.status, self.headers, self.body).into_response()
    }
}

/// Why a callback was refused.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The key names nothing this provider's capability knows (404 `not-found`).
    #[error("{0}")]
    UnknownKey(String),
    /// The signature does not verify (401 `invalid-signature`; logged with the client IP).
    #[error("{0}")]
    BadSignature(String),
    /// The body is not what this provider sends (400 `bad-request`).
    #[error("{0}")]
    Malformed(String),
    /// Anything else: logged, answered with a bare 500 so the provider retries.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<HookError> for ApiError {
    fn from(e: HookError) -> ApiError {
        match e {
            HookError::UnknownKey(detail) => ApiError::new(codes::NOT_FOUND, detail),
            HookError::BadSignature(detail) => ApiError::new(codes::INVALID_SIGNATURE, detail),
            HookError::Malformed(detail) => ApiError::new(codes::BAD_REQUEST, detail),
            HookError::Internal(e) => ApiError::internal(e.as_ref()),
        }
    }
}

/// What a provider's handler returns.
pub type HookFuture = Pin<Box<dyn Future<Output = Result<HookResponse, HookError>> + Send>>;

type Handler = Arc<dyn Fn(AppState, HookRequest) -> HookFuture + Send + Sync>;

/// The providers this node takes callbacks from, by name.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Handler>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.handlers.keys()).finish()
    }
}

/// Longest provider name.
const MAX_PROVIDER_LEN: usize = 40;

/// A provider name: lower-case letters, digits and `-`, starting with a letter.
fn valid_provider(name: &str) -> bool {
    (1..=MAX_PROVIDER_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Registry {
    /// No providers.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The providers of this build's capabilities. A capability adds its line here, e.g.
    /// `.with("eskiz", crate::notify::eskiz::callback)`.
    pub fn builtin() -> Registry {
        Registry::new()
    }

    /// Adds `provider`, served at `/hooks/{provider}[/{key}]` by `handler`.
    pub fn with<F, Fut>(mut self, provider: &str, handler: F) -> Registry
    where
        F: Fn(AppState, HookRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HookResponse, HookError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |state, req| Box::pin(handler(state, req)));
        self.handlers.insert(provider.to_owned(), handler);
        self
    }

    /// This registry and `other` together; a name in both, or one that is not lower-case
    /// letters, digits and `-` (at most 40), is refused.
    pub fn merge(mut self, other: Registry) -> Result<Registry, String> {
        for (name, handler) in other.handlers {
            if self.handlers.contains_key(&name) {
                return Err(format!("hook provider `{name}` is registered twice"));
            }
            self.handlers.insert(name, handler);
        }
        match self.handlers.keys().find(|n| !valid_provider(n)) {
            Some(bad) => Err(format!(
                "hook provider name `{bad}` must be 1 to {MAX_PROVIDER_LEN} lower-case letters, \
                 digits and `-`, starting with a letter"
            )),
            None => Ok(self),
        }
    }
}

/// The routes of this group (mounted by [`crate::app::router`] with its own layers).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive))
        .routes(routes!(receive_keyed))
}

/// A provider's callback. No API key: the provider's signature, checked by its handler over
/// the exact bytes received, is the credential. The body may be of any media type. A
/// provider this node has not registered answers 404.
#[utoipa::path(post, path = "/hooks/{provider}", tag = "hooks", security(()),
    params(("provider" = String, Path, description = "The provider (`stripe`, `eskiz`, …)",
        min_length = 1, max_length = 40, pattern = "^[a-z][a-z0-9-]*$")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The provider's payload, byte for byte (any media type)"),
    responses(
        (status = 200, description = "Accepted; the body is what the provider expects"),
        (status = 400, description = "bad-request"),
        (status = 401, description = "invalid-signature"),
        (status = 404, description = "not-found")))]
async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    client: ClientInfo,
    req: Request,
) -> Result<Response, ApiError> {
    dispatch(state, provider, None, client, req).await
}

/// A provider's callback for one of its accounts or channels: `{key}` (chosen by the
/// capability, e.g. the project's provider account id) tells which project it is for.
#[utoipa::path(post, path = "/hooks/{provider}/{key}", tag = "hooks", security(()),
    params(("provider" = String, Path, description = "The provider (`stripe`, `eskiz`, …)",
        min_length = 1, max_length = 40, pattern = "^[a-z][a-z0-9-]*$"),
        ("key" = String, Path, description = "What the capability put in the callback URL",
        min_length = 1, max_length = 200, pattern = "^[A-Za-z0-9._~-]+$")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The provider's payload, byte for byte (any media type)"),
    responses(
        (status = 200, description = "Accepted; the body is what the provider expects"),
        (status = 400, description = "bad-request"),
        (status = 401, description = "invalid-signature"),
        (status = 404, description = "not-found")))]
async fn receive_keyed(
    State(state): State<AppState>,
    Path((provider, key)): Path<(String, String)>,
    client: ClientInfo,
    req: Request,
) -> Result<Response, ApiError> {
    dispatch(state, provider, Some(key), client, req).await
}

async fn dispatch(
    state: AppState,
    provider: String,
    key: Option<String>,
    client: ClientInfo,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(handler) = state.hooks.handlers.get(&provider).cloned() else {
        return Err(ApiError::new(
            codes::NOT_FOUND,
            format!("no provider `{provider}` takes callbacks on this node"),
        ));
    };
    let limit = state.config.hooks_body_limit;
    let (parts, body) = req.into_parts();
    let body = Streamed::new(
        &parts.headers,
        body,
        limit as u64,
        "SWITCHBOARD_HOOKS_BODY_LIMIT",
    )?
    .collect()
    .await?;
    let request = HookRequest {
        provider: provider.clone(),
        key,
        uri: parts.uri,
        headers: parts.headers,
        body,
        client: client.clone(),
    };
    match handler(state, request).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(e) => {
            if let HookError::BadSignature(reason) = &e {
                // Recorded: who sent a callback that does not verify, and why.
                tracing::warn!(provider, ip = ?client.ip, reason, "hook signature rejected");
            }
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn nothing(_: AppState, _: HookRequest) -> Result<HookResponse, HookError> {
        Ok(HookResponse::ok())
    }

    #[test]
    fn names_are_checked_and_never_registered_twice() {
        let merged = Registry::new()
            .with("stripe", nothing)
            .merge(Registry::new().with("eskiz-2", nothing))
            .unwrap();
        assert_eq!(format!("{merged:?}"), r#"{"eskiz-2", "stripe"}"#);
        let twice = merged.merge(Registry::new().with("stripe", nothing));
        assert_eq!(
            twice.unwrap_err(),
            "hook provider `stripe` is registered twice"
        );
        for bad in ["", "Stripe", "2go", "a/b", "pay_me", &"a".repeat(41)] {
            let e = Registry::new()
                .merge(Registry::new().with(bad, nothing))
                .unwrap_err();
            assert!(
                e.contains("must be 1 to 40 lower-case letters"),
                "{bad}: {e}"
            );
        }
    }
}

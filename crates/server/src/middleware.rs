//! Cross-cutting HTTP behaviour: client info and request ids, security headers, metrics,
//! problem+json for every error, and rate limits.

use crate::auth::{ClientInfo, Principal};
use crate::error::{codes, problem, problem_response, ApiError};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use switchboard_core::ratelimit::{Decision, Rate};

/// The request-id header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts a sane incoming `X-Request-Id` or makes one; records client IP and user agent.
pub async fn client_info(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let incoming = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let request_id = incoming.unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ip = client_ip(&forwarded, state.config.trusted_proxies, peer).map(|ip| ip.to_string());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(512).collect());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    req.extensions_mut().insert(ClientInfo {
        ip,
        user_agent,
        request_id: Some(request_id.clone()),
    });
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let mut resp = {
        let _enter = span.enter();
        tracing::debug!("started");
        drop(_enter);
        tracing::Instrument::instrument(next.run(req), span.clone()).await
    };
    let _enter = span.enter();
    tracing::info!(status = resp.status().as_u16(), "finished");
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    resp
}

/// The client's address. Each proxy appends the address it received the request from to
/// `X-Forwarded-For`, so with `trusted` proxies in front of this node the entry `trusted`
/// places from the right is the nearest address they vouch for; everything left of it was
/// written by the client and could be anything. With no trusted proxy, too few entries, or
/// an entry that is not an IP address (positions are counted, never skipped, so junk cannot
/// shift the choice), the TCP peer is the answer.
pub fn client_ip(forwarded: &[&str], trusted: u32, peer: Option<IpAddr>) -> Option<IpAddr> {
    let Some(trusted) = usize::try_from(trusted).ok().filter(|n| *n > 0) else {
        return peer;
    };
    let entries: Vec<&str> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(entry) = entries
        .len()
        .checked_sub(trusted)
        .and_then(|i| entries.get(i))
    else {
        return peer;
    };
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .or(peer)
}

/// The `Permissions-Policy` of every response: no camera, microphone, location, payment,
/// USB, sensors… for this origin or anything it embeds.
pub const PERMISSIONS_POLICY: &str = "accelerometer=(), autoplay=(), camera=(), \
    display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), \
    hid=(), idle-detection=(), magnetometer=(), microphone=(), midi=(), payment=(), \
    picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), serial=(), \
    usb=(), xr-spatial-tracking=()";

/// `nosniff`, a same-origin referrer policy, no framing, a permissions policy, a CSP (strict for HTML, `default-src 'none'` for
/// everything else), HSTS when served over HTTPS.
pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`: nothing leaks to other sites, and browsers still send a real `Origin` on
    // the dashboard's own form posts (with `no-referrer` they send `Origin: null`).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // No page of ours uses these powerful features: deny them to anything it embeds too.
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(PERMISSIONS_POLICY),
    );
    // HTML without a charset (Swagger UI's assets) is read as UTF-8 by every browser alike.
    if h.get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"text/html"))
    {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if is_html {
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'"
        } else {
            "default-src 'none'; frame-ancestors 'none'"
        }),
    );
    if state.config.base_url().starts_with("https://") {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    resp
}

/// Counts requests and times them by route template, method and status.
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    // Clients may send any extension method: only the standard ones get a label of their own.
    let standard = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    let method = if standard.contains(req.method()) {
        req.method().as_str()
    } else {
        "other"
    }
    .to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", resp.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// Rewrites any error response that is not JSON (plain-text rejections from layers and the
/// framework: 413 from a body limit, a path that fails to parse…) into problem+json,
/// keeping its status and headers.
pub async fn problem_errors(req: Request, next: Next) -> Response {
    let limit = req.extensions().get::<crate::extract::BodyLimit>().copied();
    let resp = next.run(req).await;
    let status = resp.status();
    // Only bare framework rejections (plain text or no body type) are rewritten: problem
    // documents, deliberate JSON (such as `/readyz`'s 503) and HTML pages stay as they are.
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if status.as_u16() < 400 || !plain {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let detail = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        t => t.to_owned(),
    };
    let code = match status {
        StatusCode::NOT_FOUND => codes::NOT_FOUND,
        StatusCode::UNAUTHORIZED => codes::UNAUTHORIZED,
        StatusCode::FORBIDDEN => codes::FORBIDDEN,
        StatusCode::METHOD_NOT_ALLOWED => codes::METHOD_NOT_ALLOWED,
        StatusCode::PAYLOAD_TOO_LARGE => codes::BODY_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => codes::UNSUPPORTED_MEDIA_TYPE,
        StatusCode::REQUEST_TIMEOUT => codes::TIMEOUT,
        s if s.is_server_error() => codes::INTERNAL,
        _ => codes::BAD_REQUEST,
    };
    let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
        crate::extract::too_large(limit).problem().detail
    } else {
        detail
    };
    let fresh = problem_response(&problem(status, code, &detail, Vec::new()));
    let (fresh_parts, fresh_body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        fresh_parts.headers[header::CONTENT_TYPE].clone(),
    );
    Response::from_parts(parts, Body::new(fresh_body))
}

/// Query parameters each operation of the OpenAPI document declares, by method and route
/// template; `None` for a route the document does not describe.
fn declared_query(method: &Method, route: &str) -> Option<&'static [String]> {
    type Map = std::collections::HashMap<(String, String), Vec<String>>;
    static MAP: std::sync::OnceLock<Map> = std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        let doc = serde_json::to_value(crate::app::openapi()).unwrap_or_default();
        let mut map = Map::new();
        for (template, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let names = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect();
                map.insert((method.to_ascii_uppercase(), template.clone()), names);
            }
        }
        map
    })
    .get(&(method.as_str().to_owned(), route.to_owned()))
    .map(Vec::as_slice)
}

/// Refuses a query parameter the operation does not declare (400 `invalid-query` naming
/// it): a misspelt filter must not silently widen a list, as an unknown body field does not.
pub async fn reject_unknown_query(req: Request, next: Next) -> Response {
    let declared = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|route| declared_query(req.method(), route.as_str()));
    let (Some(declared), Some(query)) = (declared, req.uri().query()) else {
        return next.run(req).await;
    };
    let unknown = form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k.into_owned())
        .find(|k| !declared.iter().any(|d| d == k));
    let Some(name) = unknown else {
        return next.run(req).await;
    };
    let message = if declared.is_empty() {
        "is not a parameter of this operation (it takes none)".to_owned()
    } else {
        format!(
            "is not a parameter of this operation (known: {})",
            declared.join(", ")
        )
    };
    ApiError::new(
        codes::INVALID_QUERY,
        format!("query parameter `{name}` {message}"),
    )
    .with_errors(vec![crate::error::FieldError {
        field: name,
        message,
    }])
    .into_response()
}

/// 404 for every unknown route.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        codes::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// 405 for a known route with the wrong method.
pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        codes::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Sets the `RateLimit-*` headers of a decision (and `Retry-After` when refused).
pub fn apply_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    let num =
        |n: u64| HeaderValue::from_str(&n.to_string()).unwrap_or(HeaderValue::from_static("0"));
    h.insert("ratelimit-limit", num(u64::from(d.limit)));
    h.insert("ratelimit-remaining", num(u64::from(d.remaining)));
    h.insert("ratelimit-reset", num(d.reset_secs));
    if !d.allowed {
        h.insert(header::RETRY_AFTER, num(d.retry_after_secs));
    }
}

async fn limited(state: &AppState, key: String, rate: Rate, req: Request, next: Next) -> Response {
    let decision = state.limiter.take(&key, rate).await;
    let mut resp = if decision.allowed {
        next.run(req).await
    } else {
        ApiError::new(
            codes::RATE_LIMITED,
            format!(
                "too many requests; retry in {} s",
                decision.retry_after_secs
            ),
        )
        .into_response()
    };
    apply_headers(&mut resp, &decision);
    resp
}

/// Per-credential token bucket on authenticated routes.
pub async fn rate_limit_principal(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(p) = req.extensions().get::<Principal>() else {
        return next.run(req).await;
    };
    let key = principal_key(&p.actor);
    limited(&state, key, principal_rate(&state), req, next).await
}

/// The bucket of a credential or user: a user's API calls and dashboard pages share it.
pub fn principal_key(actor: &switchboard_core::audit::Actor) -> String {
    format!("{}:{}", actor.kind, actor.id)
}

/// The per-credential rate.
pub fn principal_rate(state: &AppState) -> Rate {
    Rate {
        capacity: state.config.rate_limit_burst,
        per_minute: state.config.rate_limit_per_minute,
    }
}

/// The client IP the request came from, as [`client_info`] decided it.
fn client_ip_of(req: &Request) -> String {
    req.extensions()
        .get::<ClientInfo>()
        .and_then(|c| c.ip.clone())
        .unwrap_or_else(|| "unknown".into())
}

/// Per-client-IP token bucket on login endpoints.
pub async fn rate_limit_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ip = client_ip_of(&req);
    let per_minute = state.config.auth_rate_limit_per_minute;
    let rate = Rate {
        capacity: per_minute,
        per_minute,
    };
    limited(&state, format!("ip:{ip}"), rate, req, next).await
}

/// Per-client-IP token bucket on provider callbacks (`/hooks/*`), apart from the login one:
/// a provider's burst of callbacks must not lock its IP out of logging in, nor the reverse.
pub async fn rate_limit_hooks(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ip = client_ip_of(&req);
    let per_minute = state.config.hooks_rate_limit_per_minute;
    let rate = Rate {
        capacity: per_minute,
        per_minute,
    };
    limited(&state, format!("hooks:{ip}"), rate, req, next).await
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use std::net::IpAddr;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let peer = ip("10.0.0.9");
        // No trusted proxy: the header is the client's to write, so it is ignored.
        assert_eq!(client_ip(&["1.1.1.1"], 0, peer), peer);
        // One proxy: what it appended (the right-most entry), never the client's own entries.
        assert_eq!(client_ip(&["6.6.6.6, 2.2.2.2"], 1, peer), ip("2.2.2.2"));
        // Two proxies; the entries may arrive in several header lines.
        assert_eq!(
            client_ip(&["6.6.6.6, 3.3.3.3", "10.0.0.2"], 2, peer),
            ip("3.3.3.3")
        );
        assert_eq!(
            client_ip(&["[2001:db8::1]:443"], 1, peer),
            ip("2001:db8::1")
        );
        assert_eq!(client_ip(&["4.4.4.4:5000"], 1, peer), ip("4.4.4.4"));
        // Fewer entries than proxies, junk where the client should be, no header: the peer.
        assert_eq!(client_ip(&["5.5.5.5"], 2, peer), peer);
        assert_eq!(client_ip(&["1.1.1.1, unknown"], 1, peer), peer);
        assert_eq!(client_ip(&["1.1.1.1,,"], 1, peer), peer);
        assert_eq!(client_ip(&[], 1, peer), peer);
    }
}

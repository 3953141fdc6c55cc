//! Request extractors whose rejections are problem documents: JSON bodies (400 with the
//! parser's position, 422 with the failing field's path and a message in the API's words,
//! 413 with the limit, 415), query strings and paths.

use crate::error::{codes, ApiError, FieldError};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// A JSON body, deserialised with field paths in its errors.
pub struct Json<T>(pub T);

/// The largest body this node accepts, in bytes (`SWITCHBOARD_BODY_LIMIT`), carried in
/// request extensions so rejections can state it.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// 413 stating the limit.
pub fn too_large(limit: Option<BodyLimit>) -> ApiError {
    let detail = match limit {
        Some(BodyLimit(n)) => format!(
            "the request body is larger than this server's limit of {n} bytes \
             (SWITCHBOARD_BODY_LIMIT)"
        ),
        None => "the request body is larger than this server accepts".to_owned(),
    };
    ApiError::new(codes::BODY_TOO_LARGE, detail)
}

/// A request body read chunk by chunk as it arrives, with a limit of the route's own: what
/// the hooks and streaming groups' handlers take. Nothing buffers such a body before the
/// handler and `SWITCHBOARD_BODY_LIMIT` does not apply to it (that limit binds extractors
/// that collect the body, such as [`Json`]).
pub struct Streamed {
    body: axum::body::Body,
    limit: u64,
    read: u64,
    setting: &'static str,
}

impl Streamed {
    /// `body`, of which at most `limit` bytes are accepted (`setting` names where the limit
    /// comes from, for the 413). A `Content-Length` over the limit is refused at once.
    pub fn new(
        headers: &axum::http::HeaderMap,
        body: axum::body::Body,
        limit: u64,
        setting: &'static str,
    ) -> Result<Streamed, ApiError> {
        let streamed = Streamed {
            body,
            limit,
            read: 0,
            setting,
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(n) if n > limit => Err(streamed.too_large()),
            _ => Ok(streamed),
        }
    }

    fn too_large(&self) -> ApiError {
        ApiError::new(
            codes::BODY_TOO_LARGE,
            format!(
                "the request body is larger than this route's limit of {} bytes ({})",
                self.limit, self.setting
            ),
        )
    }

    /// The next chunk as it arrives, `None` at the end: 413 once more than the limit has
    /// arrived, 400 when the body breaks off.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        use axum::body::HttpBody;
        loop {
            let frame =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut self.body).poll_frame(cx)).await;
            let data = match frame {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(ApiError::bad_request(format!(
                        "the request body could not be read: {e}"
                    )))
                }
                // Trailers carry no body bytes.
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            self.read += data.len() as u64;
            if self.read > self.limit {
                return Err(self.too_large());
            }
            return Ok(Some(data));
        }
    }

    /// Bytes received so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The whole body (within the limit), for handlers that need it at once (signatures).
    pub async fn collect(mut self) -> Result<Bytes, ApiError> {
        let mut all = bytes::BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }
}

/// Deepest nesting of arrays and objects a body may have (serde_json's recursion limit:
/// deeper documents are refused before they can exhaust the stack).
pub const MAX_JSON_DEPTH: usize = 127;

/// JSON has one number type: `3.0` is the integer 3 (as JSON Schema's `integer` says), so
/// numbers without a fraction become integers before the body meets typed fields.
fn integral_numbers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                // Beyond ±2^53 a float no longer says which integer it is.
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                    *v = serde_json::Value::from(f as i64);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Where in `bytes` parsing stops (for a body nested too deep: which field), found again by
/// a parse that tracks the path (only on this error path).
fn syntax_path(bytes: &[u8]) -> String {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, serde_json::Value>(&mut de) {
        Err(e) => e.path().to_string(),
        Ok(_) => String::new(),
    }
}

/// Parses a JSON body, mapping every failure to the right problem.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|e| (syntax_path(bytes), e))
        .and_then(|mut v| {
            integral_numbers(&mut v);
            serde_path_to_error::deserialize(v).map_err(|e| (e.path().to_string(), e.into_inner()))
        });
    value.map_err(|(path, inner)| {
        let path = if path == "." { String::new() } else { path };
        let text = strip_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data => {
                let (field, message) = explain(&path, &text);
                ApiError::invalid(vec![FieldError { field, message }])
            }
            // Valid JSON, only too deep: a rule of this API, not a syntax error.
            _ if text == "recursion limit exceeded" => ApiError::invalid(vec![FieldError {
                field: path.split(['.', '[']).next().unwrap_or_default().to_owned(),
                message: format!("nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"),
            }]),
            _ => ApiError::new(
                codes::MALFORMED_JSON,
                format!(
                    "malformed JSON at line {} column {}: {text}",
                    inner.line(),
                    inner.column(),
                ),
            ),
        }
    })
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// `path.name` (or `name` at the top).
fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The text between the first pair of backticks after `prefix`.
fn quoted<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.strip_prefix(prefix)?
        .strip_prefix('`')?
        .split('`')
        .next()
}

/// The names serde lists after "expected" (`` `a`, `b` ``, `` `a` or `b` ``) as `a, b`.
fn alternatives(text: &str) -> Option<String> {
    let list = text.split_once(", expected ")?.1;
    let names: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// What serde's name of an expected type means in the API's words.
fn expected(what: &str) -> String {
    let what = what.trim();
    match what {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a string" | "a borrowed string" | "a character" => "a string".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "an object".to_owned(),
        "variant identifier" => "one of the allowed names".to_owned(),
        w if w.starts_with("struct ") || w.starts_with("struct variant") => "an object".to_owned(),
        w if w.starts_with("internally tagged enum") => "an object with a `type` field".to_owned(),
        w => w.to_owned(),
    }
}

/// The range of an integer type, for "invalid value: integer `…`, expected i32".
fn integer_range(ty: &str) -> Option<(i128, i128)> {
    Some(match ty.trim() {
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        _ => return None,
    })
}

/// The field at fault and a message in the API's words for serde's `text` at `path`
/// (`missing field `x`` names `x`; `expected i32` says "an integer").
pub fn explain(path: &str, text: &str) -> (String, String) {
    if let Some(name) = quoted(text, "missing field ") {
        return (join(path, name), "is required".to_owned());
    }
    if let Some(name) = quoted(text, "unknown field ") {
        let field = if path.ends_with(name) {
            path.to_owned()
        } else {
            join(path, name)
        };
        let message = match alternatives(text) {
            Some(known) => format!("is not a field here (known: {known})"),
            None => "is not a field here".to_owned(),
        };
        return (field, message);
    }
    if text.starts_with("unknown variant ") {
        let message = match alternatives(text) {
            Some(known) => format!("must be one of {known}"),
            None => "is not one of the allowed names".to_owned(),
        };
        return (path.to_owned(), message);
    }
    if let Some(rest) = text.strip_prefix("invalid type: ") {
        if let Some((_, want)) = rest.rsplit_once(", expected ") {
            return (path.to_owned(), format!("must be {}", expected(want)));
        }
    }
    if let Some(rest) = text.strip_prefix("invalid value: integer ") {
        if let Some((_, ty)) = rest.rsplit_once(", expected ") {
            if let Some((lo, hi)) = integer_range(ty) {
                return (
                    path.to_owned(),
                    format!("must be an integer from {lo} to {hi}"),
                );
            }
            return (path.to_owned(), format!("must be {}", expected(ty)));
        }
    }
    (path.to_owned(), text.to_owned())
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                codes::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with `Content-Type: application/json`",
            ));
        }
        let limit = req.extensions().get::<BodyLimit>().copied();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// A query string, with 400 problems naming the parameter.
pub struct Query<T>(pub T);

/// What serde_urlencoded says about a value that does not parse, in the API's words.
fn explain_query(text: &str) -> String {
    match text {
        "invalid digit found in string"
        | "cannot parse integer from empty string"
        | "number too large to fit in target type"
        | "number too small to fit in target type" => "must be an integer".to_owned(),
        "provided string was not `true` or `false`" => "must be true or false".to_owned(),
        "invalid float literal" => "must be a number".to_owned(),
        t => explain("", t).1,
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let text = e.into_inner().to_string();
                let (field, message) = match explain(if path == "." { "" } else { &path }, &text) {
                    (f, m) if m != text => (f, m),
                    (f, _) => (f, explain_query(&text)),
                };
                ApiError::new(
                    codes::INVALID_QUERY,
                    format!("query parameter `{field}` {message}"),
                )
                .with_errors(vec![FieldError { field, message }])
            })
    }
}

/// A path parameter, with a 404 problem when it does not parse (an id of the wrong kind
/// names nothing that exists).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|_| ApiError::not_found("resource"))
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: i32,
        role: Option<Role>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Role {
        Owner,
        Viewer,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
        #[serde(default)]
        payload: serde_json::Value,
    }

    fn error(body: &str) -> FieldError {
        let e = parse_json::<Outer>(body.as_bytes()).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        e.problem().errors.remove(0)
    }

    #[test]
    fn data_errors_name_the_field_in_the_apis_words() {
        let e = error(r#"{"items": []}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("name", "is required")
        );
        let e = error(r#"{"name": "a", "items": [{}]}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("items[0].n", "is required")
        );
        let e = error(r#"{"name": "a", "items": [{"n": "x"}]}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("items[0].n", "must be an integer")
        );
        let e = error(r#"{"name": "a", "items": [{"n": 99999999999}]}"#);
        assert_eq!(
            e.message,
            "must be an integer from -2147483648 to 2147483647"
        );
        // JSON has one number type: 3.0 is an integer, 3.5 is not.
        assert!(
            parse_json::<Outer>(br#"{"name": "a", "items": [{"n": 3.0}, {"n": 2e1}]}"#).is_ok()
        );
        let e = error(r#"{"name": "a", "items": [{"n": 3.5}]}"#);
        assert_eq!(e.message, "must be an integer");
        let e = error(r#"{"name": 5, "items": []}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("name", "must be a string")
        );
        let e = error(r#"{"name": "a", "items": {}}"#);
        assert_eq!(e.message, "must be an array");
        let e = error(r#"{"name": "a", "items": [{"n": 1, "role": "king"}]}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("items[0].role", "must be one of owner, viewer")
        );
        let e = error(r#"{"name": "a", "items": [], "surprise": 1}"#);
        assert_eq!(e.field, "surprise");
        assert!(
            e.message.starts_with("is not a field here (known: "),
            "{}",
            e.message
        );
        assert!(!e.message.contains('`'), "{}", e.message);
    }

    #[test]
    fn deep_json_is_a_rule_not_a_syntax_error() {
        let deep = |n: usize| {
            format!(
                r#"{{"name": "a", "items": [], "payload": {}{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        // The body object itself is one level.
        assert!(parse_json::<Outer>(deep(MAX_JSON_DEPTH - 1).as_bytes()).is_ok());
        let e = parse_json::<Outer>(deep(200).as_bytes()).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let p = e.problem();
        assert_eq!(p.errors[0].field, "payload");
        assert!(p.errors[0].message.contains("127 levels"), "{:?}", p.errors);
        assert_eq!(
            parse_json::<Outer>(b"{").unwrap_err().problem().code,
            "malformed-json"
        );
    }

    #[test]
    fn the_depth_limit_is_serde_jsons() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_JSON_DEPTH)).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_JSON_DEPTH + 1)).is_err());
    }
}

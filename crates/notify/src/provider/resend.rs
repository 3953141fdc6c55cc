//! Resend: `POST /emails` with a bearer API key (`re_…`) and a JSON body; success is `200`
//! with `{"id"}`. Our delivery reference travels as the `Idempotency-Key` header (Resend keeps
//! it 24 hours and answers a repeat with the first result, so a retry after a lost answer
//! does not send twice) and as a tag. Errors are `{"statusCode", "message", "name"}`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    by_status, excerpt, parse, read_capped, retry_after, unreachable, Email, Receipt, SendError,
};

/// Resend's API root.
pub const API: &str = "https://api.resend.com";

/// A Resend account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResendConfig {
    /// The API key (`re_…`).
    pub api_key: String,
    /// The webhook signing secret (`whsec_…`).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// API root (tests point it at a fake server).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    API.to_string()
}

fn mailbox(email: &str, name: Option<&str>) -> String {
    match name {
        // Quotes and backslashes escaped, as RFC 5322 wants inside a quoted display name.
        Some(n) => format!(
            "\"{}\" <{email}>",
            n.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        None => email.to_string(),
    }
}

/// The request body for `email`.
pub fn body(email: &Email<'_>) -> Value {
    let mut body = json!({
        "from": mailbox(email.from, email.from_name),
        "to": [mailbox(email.to, email.to_name)],
        "subject": email.subject,
        "tags": [{"name": "sb_delivery", "value": email.reference}],
    });
    let map = body.as_object_mut().expect("a JSON object");
    if let Some(h) = email.html {
        map.insert("html".into(), json!(h));
    }
    if let Some(t) = email.text {
        map.insert("text".into(), json!(t));
    }
    if let Some(r) = email.reply_to {
        map.insert("reply_to".into(), json!(r));
    }
    if !email.headers.is_empty() {
        let headers: Map<String, Value> = email
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        map.insert("headers".into(), Value::Object(headers));
    }
    body
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct Failure {
    message: Option<String>,
    name: Option<String>,
}

/// Sends one e-mail.
pub async fn send(
    client: &reqwest::Client,
    config: &ResendConfig,
    email: &Email<'_>,
) -> Result<Receipt, SendError> {
    let response = client
        .post(format!("{}/emails", config.api_url.trim_end_matches('/')))
        .bearer_auth(&config.api_key)
        .header("Idempotency-Key", email.reference)
        .json(&body(email))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let retry = retry_after(&response);
    let text = read_capped(response).await;
    if status == 200 {
        let created: Created = parse(&text)?;
        return Ok(Receipt {
            message_id: Some(created.id),
            provider_status: "sent".into(),
            http_status: status,
        });
    }
    let failure: Option<Failure> = serde_json::from_str(&text).ok();
    let name = failure.as_ref().and_then(|f| f.name.clone());
    let message = match failure {
        Some(Failure {
            message: Some(m),
            name: Some(n),
        }) => format!("{n}: {m}"),
        Some(Failure {
            message: Some(m), ..
        }) => m,
        _ => format!("HTTP {status}: {}", excerpt(&text)),
    };
    Err(match (status, name.as_deref()) {
        // The same Idempotency-Key is still being processed: try again shortly.
        (409, Some("concurrent_idempotent_requests")) => SendError::Unavailable {
            message,
            retry_after: retry,
        },
        (409, _) => SendError::Refused {
            message,
            code: name,
            suppress: false,
        },
        _ => by_status(status, message, retry),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn config(server: &MockServer) -> ResendConfig {
        ResendConfig {
            api_key: "re_test".into(),
            webhook_secret: None,
            api_url: server.uri(),
        }
    }

    fn email() -> Email<'static> {
        Email {
            to: "anna@example.com",
            to_name: None,
            from: "no-reply@shop.example",
            from_name: Some("Shop \"Best\""),
            reply_to: None,
            subject: "Your order",
            text: Some("Hello"),
            html: Some("<p>Hello</p>"),
            headers: &[],
            reference: "dlv_01",
        }
    }

    #[tokio::test]
    async fn sends_with_the_idempotency_key_and_reads_the_id() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/emails"))
            .and(header("authorization", "Bearer re_test"))
            .and(header("idempotency-key", "dlv_01"))
            .and(body_json(json!({
                "from": "\"Shop \\\"Best\\\"\" <no-reply@shop.example>",
                "to": ["anna@example.com"],
                "subject": "Your order",
                "html": "<p>Hello</p>",
                "text": "Hello",
                "tags": [{"name": "sb_delivery", "value": "dlv_01"}],
            })))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let r = send(&reqwest::Client::new(), &config(&server), &email())
            .await
            .unwrap();
        assert_eq!(
            r.message_id.as_deref(),
            Some("49a3999c-0ce1-4ea6-ab68-afcd6dc2e794")
        );
    }

    #[tokio::test]
    async fn errors_classify() {
        let cases = [
            (
                422,
                json!({"statusCode": 422, "name": "validation_error", "message": "Invalid `to` field."}),
                false,
                false,
            ),
            (
                429,
                json!({"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests."}),
                true,
                true,
            ),
            (
                409,
                json!({"statusCode": 409, "name": "concurrent_idempotent_requests", "message": "Same idempotency key in progress."}),
                true,
                true,
            ),
            (
                409,
                json!({"statusCode": 409, "name": "invalid_idempotent_request", "message": "Same key, another payload."}),
                false,
                false,
            ),
            (
                403,
                json!({"statusCode": 403, "name": "validation_error", "message": "You can only send testing emails to your own email address."}),
                false,
                true,
            ),
            (
                500,
                json!({"statusCode": 500, "name": "application_error", "message": "Unexpected error."}),
                true,
                true,
            ),
        ];
        for (status, answer, retryable, fails_over) in cases {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(
                    ResponseTemplate::new(status)
                        .set_body_json(answer.clone())
                        .insert_header("retry-after", "2"),
                )
                .mount(&server)
                .await;
            let e = send(&reqwest::Client::new(), &config(&server), &email())
                .await
                .unwrap_err();
            assert_eq!(
                (e.is_retryable(), e.fails_over()),
                (retryable, fails_over),
                "{status} {answer}: {e:?}"
            );
            assert!(
                e.to_string().contains(answer["message"].as_str().unwrap()),
                "{e}"
            );
        }
    }
}

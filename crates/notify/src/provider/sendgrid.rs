//! SendGrid v3 Mail Send: `POST /v3/mail/send` with a bearer API key and a JSON body of
//! `personalizations`, `from`, `subject` and `content` (text before HTML). Success is `202
//! Accepted` with the message id in `X-Message-Id`; in sandbox mode `200 OK` (validated, not
//! sent). Errors are `{"errors": [{"message", "field", "help"}]}`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{by_status, excerpt, read_capped, retry_after, unreachable, Email, Receipt, SendError};

/// SendGrid's API root.
pub const API: &str = "https://api.sendgrid.com";

/// A SendGrid account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridConfig {
    /// The API key (`SG.…`) with Mail Send permission.
    pub api_key: String,
    /// Validate without sending (SendGrid's sandbox mode).
    #[serde(default)]
    pub sandbox: bool,
    /// The event webhook's verification key (base64 DER, as SendGrid shows it).
    #[serde(default)]
    pub webhook_public_key: Option<String>,
    /// API root (tests point it at a fake server).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    API.to_string()
}

fn address(email: &str, name: Option<&str>) -> Value {
    match name {
        Some(n) => json!({"email": email, "name": n}),
        None => json!({"email": email}),
    }
}

/// The request body for `email`.
pub fn body(config: &SendGridConfig, email: &Email<'_>) -> Value {
    let mut content = Vec::new();
    if let Some(t) = email.text {
        content.push(json!({"type": "text/plain", "value": t}));
    }
    if let Some(h) = email.html {
        content.push(json!({"type": "text/html", "value": h}));
    }
    let mut body = json!({
        "personalizations": [{
            "to": [address(email.to, email.to_name)],
            "custom_args": {"sb_delivery": email.reference},
        }],
        "from": address(email.from, email.from_name),
        "subject": email.subject,
        "content": content,
    });
    let map = body.as_object_mut().expect("a JSON object");
    if let Some(r) = email.reply_to {
        map.insert("reply_to".into(), json!({"email": r}));
    }
    if !email.headers.is_empty() {
        let headers: Map<String, Value> = email
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        map.insert("headers".into(), Value::Object(headers));
    }
    if config.sandbox {
        map.insert(
            "mail_settings".into(),
            json!({"sandbox_mode": {"enable": true}}),
        );
    }
    body
}

#[derive(Deserialize)]
struct Failure {
    errors: Vec<FailureItem>,
}

#[derive(Deserialize)]
struct FailureItem {
    message: Option<String>,
    field: Option<String>,
}

/// Sends one e-mail.
pub async fn send(
    client: &reqwest::Client,
    config: &SendGridConfig,
    email: &Email<'_>,
) -> Result<Receipt, SendError> {
    let response = client
        .post(format!(
            "{}/v3/mail/send",
            config.api_url.trim_end_matches('/')
        ))
        .bearer_auth(&config.api_key)
        .json(&body(config, email))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let message_id = response
        .headers()
        .get("x-message-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let retry = retry_after(&response).or_else(|| rate_limit_reset(&response));
    let text = read_capped(response).await;
    match status {
        202 => Ok(Receipt {
            message_id,
            provider_status: "accepted".into(),
            http_status: status,
        }),
        200 if config.sandbox => Ok(Receipt {
            message_id,
            provider_status: "sandbox: validated, not sent".into(),
            http_status: status,
        }),
        _ => {
            let detail = serde_json::from_str::<Failure>(&text)
                .ok()
                .map(|f| {
                    f.errors
                        .iter()
                        .map(|e| match (&e.field, &e.message) {
                            (Some(field), Some(m)) => format!("{field}: {m}"),
                            (None, Some(m)) => m.clone(),
                            _ => String::new(),
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| excerpt(&text));
            Err(by_status(status, format!("HTTP {status}: {detail}"), retry))
        }
    }
}

/// SendGrid's 429 carries `X-RateLimit-Reset`, the epoch second the limit resets.
fn rate_limit_reset(response: &reqwest::Response) -> Option<std::time::Duration> {
    let reset: i64 = response
        .headers()
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let now = jiff::Timestamp::now().as_second();
    u64::try_from(reset - now)
        .ok()
        .map(std::time::Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn config(server: &MockServer) -> SendGridConfig {
        SendGridConfig {
            api_key: "SG.test".into(),
            sandbox: false,
            webhook_public_key: None,
            api_url: server.uri(),
        }
    }

    fn headers() -> Vec<(String, String)> {
        vec![
            (
                "List-Unsubscribe".into(),
                "<https://sb.example/u/abc>".into(),
            ),
            (
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into(),
            ),
        ]
    }

    fn email(h: &[(String, String)]) -> Email<'_> {
        Email {
            to: "anna@example.com",
            to_name: Some("Anna"),
            from: "no-reply@shop.example",
            from_name: Some("Shop"),
            reply_to: Some("help@shop.example"),
            subject: "Your order",
            text: Some("Hello Anna"),
            html: Some("<p>Hello Anna</p>"),
            headers: h,
            reference: "dlv_01",
        }
    }

    #[tokio::test]
    async fn sends_the_documented_body_and_reads_x_message_id() {
        let server = MockServer::start().await;
        let h = headers();
        Mock::given(method("POST"))
            .and(path("/v3/mail/send"))
            .and(header("authorization", "Bearer SG.test"))
            .and(body_json(json!({
                "personalizations": [{"to": [{"email": "anna@example.com", "name": "Anna"}], "custom_args": {"sb_delivery": "dlv_01"}}],
                "from": {"email": "no-reply@shop.example", "name": "Shop"},
                "reply_to": {"email": "help@shop.example"},
                "subject": "Your order",
                "content": [{"type": "text/plain", "value": "Hello Anna"}, {"type": "text/html", "value": "<p>Hello Anna</p>"}],
                "headers": {"List-Unsubscribe": "<https://sb.example/u/abc>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
            })))
            .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "W86EgYT6SQKk0lRflfLRsA"))
            .expect(1)
            .mount(&server)
            .await;
        let r = send(&reqwest::Client::new(), &config(&server), &email(&h))
            .await
            .unwrap();
        assert_eq!(r.message_id.as_deref(), Some("W86EgYT6SQKk0lRflfLRsA"));
        assert_eq!(r.http_status, 202);
    }

    #[tokio::test]
    async fn sandbox_mode_is_validated_not_sent() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(wiremock::matchers::body_partial_json(
                json!({"mail_settings": {"sandbox_mode": {"enable": true}}}),
            ))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&server)
            .await;
        let mut c = config(&server);
        c.sandbox = true;
        let r = send(&reqwest::Client::new(), &c, &email(&[]))
            .await
            .unwrap();
        assert!(
            r.provider_status.starts_with("sandbox"),
            "{}",
            r.provider_status
        );
    }

    #[tokio::test]
    async fn errors_name_the_field_and_classify() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"errors": [{"message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email", "help": "http://sendgrid.com/docs"}]})))
            .mount(&server)
            .await;
        let e = send(&reqwest::Client::new(), &config(&server), &email(&[]))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("personalizations.0.to.0.email: Does not contain a valid address."),
            "{e}"
        );
        assert!(!e.fails_over());

        let server = MockServer::start().await;
        let reset = jiff::Timestamp::now().as_second() + 30;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("X-RateLimit-Reset", reset.to_string().as_str())
                    .set_body_json(json!({"errors": [{"message": "too many requests"}]})),
            )
            .mount(&server)
            .await;
        let e = send(&reqwest::Client::new(), &config(&server), &email(&[]))
            .await
            .unwrap_err();
        match e {
            SendError::Unavailable {
                retry_after: Some(d),
                ..
            } => assert!((28..=30).contains(&d.as_secs()), "{d:?}"),
            other => panic!("{other:?}"),
        }

        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(401).set_body_json(json!({"errors": [{"message": "The provided authorization grant is invalid, expired, or revoked"}]}))).mount(&server).await;
        let e = send(&reqwest::Client::new(), &config(&server), &email(&[]))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Misconfigured { .. }), "{e:?}");
    }
}

//! PlayMobile (smsxabar.uz) broker API: `POST /broker-api/send`, HTTP Basic, JSON
//! `{"messages": [{"recipient", "message-id", "sms": {"originator", "content": {"text"}}}]}`.
//! Success is a 2xx with the text "Request is received"; errors are 400 with
//! `{"error-code", "error-description"}`. PlayMobile gives no id of its own: the message is
//! known by the `message-id` we send, at most 20 characters.

use serde::Deserialize;

use super::{by_status, excerpt, read_capped, retry_after, unreachable, Receipt, SendError, Sms};

/// PlayMobile's API root.
pub const API: &str = "https://send.smsxabar.uz";

/// The longest `message-id` PlayMobile takes.
pub const MAX_MESSAGE_ID: usize = 20;

/// A PlayMobile account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayMobileConfig {
    /// The broker login.
    pub login: String,
    /// The broker password.
    pub password: String,
    /// The approved originator (sender) of the account, e.g. `3700`.
    pub originator: String,
    /// API root (tests point it at a fake server).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    API.to_string()
}

#[derive(Deserialize)]
struct Failure {
    #[serde(rename = "error-code")]
    code: Option<i64>,
    #[serde(rename = "error-description")]
    description: Option<String>,
}

/// The `message-id` for `reference`: its last 20 characters (the random end of our ids).
pub fn message_id(reference: &str) -> &str {
    let start = reference
        .char_indices()
        .rev()
        .nth(MAX_MESSAGE_ID - 1)
        .map_or(0, |(i, _)| i);
    &reference[start..]
}

/// Sends one SMS.
pub async fn send(
    client: &reqwest::Client,
    config: &PlayMobileConfig,
    sms: &Sms<'_>,
) -> Result<Receipt, SendError> {
    let id = message_id(sms.reference);
    let body = serde_json::json!({
        "messages": [{
            "recipient": sms.to.digits(),
            "message-id": id,
            "sms": {
                "originator": sms.from.unwrap_or(&config.originator),
                "content": {"text": sms.text},
            },
        }]
    });
    let response = client
        .post(format!(
            "{}/broker-api/send",
            config.api_url.trim_end_matches('/')
        ))
        .basic_auth(&config.login, Some(&config.password))
        .json(&body)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let retry = retry_after(&response);
    let text = read_capped(response).await;
    if (200..300).contains(&status) {
        return Ok(Receipt {
            message_id: Some(id.to_string()),
            provider_status: excerpt(&text),
            http_status: status,
        });
    }
    let failure: Option<Failure> = serde_json::from_str(&text).ok();
    match failure {
        Some(Failure {
            code: Some(code),
            description,
        }) if status == 400 => Err(SendError::Refused {
            message: format!("{code}: {}", description.unwrap_or_default()),
            code: Some(code.to_string()),
            suppress: false,
        }),
        _ => Err(by_status(
            status,
            format!("HTTP {status}: {}", excerpt(&text)),
            retry,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::Phone;
    use wiremock::matchers::{basic_auth, body_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn config(server: &MockServer) -> PlayMobileConfig {
        PlayMobileConfig {
            login: "broker".into(),
            password: "secret".into(),
            originator: "3700".into(),
            api_url: server.uri(),
        }
    }

    #[test]
    fn message_ids_keep_the_last_20_characters() {
        assert_eq!(
            message_id("dlv_01jabcdefghjkmnpqrstvwxyz0"),
            "defghjkmnpqrstvwxyz0"
        );
        assert_eq!(message_id("short"), "short");
        assert_eq!(message_id("dlv_01jabcdefghjkmnpqrstvwxyz0").len(), 20);
    }

    #[tokio::test]
    async fn sends_the_documented_json_with_basic_auth() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/broker-api/send"))
            .and(basic_auth("broker", "secret"))
            .and(body_json(serde_json::json!({"messages": [{
                "recipient": "998901234567",
                "message-id": "abcdefghij0123456789",
                "sms": {"originator": "3700", "content": {"text": "Kod: 1234"}}
            }]})))
            .respond_with(ResponseTemplate::new(200).set_body_string("Request is received"))
            .expect(1)
            .mount(&server)
            .await;
        let to = Phone::parse("+998901234567").unwrap();
        let sms = Sms {
            to: &to,
            text: "Kod: 1234",
            from: None,
            callback_url: None,
            reference: "dlv_abcdefghij0123456789",
        };
        let r = send(&reqwest::Client::new(), &config(&server), &sms)
            .await
            .unwrap();
        assert_eq!(r.message_id.as_deref(), Some("abcdefghij0123456789"));
        assert_eq!(r.provider_status, "Request is received");
    }

    #[tokio::test]
    async fn errors_are_parsed_and_classified() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(
                serde_json::json!({"error-code": 103, "error-description": "Invalid recipient"}),
            ))
            .mount(&server)
            .await;
        let to = Phone::parse("+998901234567").unwrap();
        let sms = Sms {
            to: &to,
            text: "x",
            from: None,
            callback_url: None,
            reference: "r1",
        };
        let e = send(&reqwest::Client::new(), &config(&server), &sms)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            SendError::Refused {
                message: "103: Invalid recipient".into(),
                code: Some("103".into()),
                suppress: false
            }
        );

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
            .mount(&server)
            .await;
        let e = send(&reqwest::Client::new(), &config(&server), &sms)
            .await
            .unwrap_err();
        assert!(e.is_retryable() && e.fails_over(), "{e:?}");

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let e = send(&reqwest::Client::new(), &config(&server), &sms)
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Misconfigured { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_huge_answer_is_read_only_up_to_the_cap() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).set_body_string("x".repeat(5 * 1024 * 1024)))
            .mount(&server)
            .await;
        let to = Phone::parse("+998901234567").unwrap();
        let sms = Sms {
            to: &to,
            text: "x",
            from: None,
            callback_url: None,
            reference: "r1",
        };
        let e = send(&reqwest::Client::new(), &config(&server), &sms)
            .await
            .unwrap_err();
        // The message carries an excerpt, not the body.
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
    }
}

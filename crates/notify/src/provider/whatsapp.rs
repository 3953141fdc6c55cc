//! WhatsApp Cloud API: `POST /{version}/{phone_number_id}/messages` with a bearer token and
//! `{"messaging_product": "whatsapp", "to", "type": "text", "text": {"body"}}`; success lists
//! the message's `wamid`. Errors are Graph API errors `{"error": {"message", "code",
//! "error_subcode"}}`. Status webhooks are signed with `X-Hub-Signature-256` (checked by
//! [`crate::signature::meta_verify`]).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{by_status, excerpt, read_capped, retry_after, unreachable, Receipt, SendError};
use crate::phone::Phone;

/// Graph API root and version.
pub const API: &str = "https://graph.facebook.com/v21.0";

/// A WhatsApp Business phone number.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// The business phone number's id.
    pub phone_number_id: String,
    /// A system user's access token.
    pub access_token: String,
    /// The app secret (the key of `X-Hub-Signature-256`).
    #[serde(default)]
    pub app_secret: Option<String>,
    /// API root with version (tests point it at a fake server).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    API.to_string()
}

/// Sends a text message (inside the 24-hour customer-service window; outside it WhatsApp
/// requires an approved template and answers 131047).
pub async fn send(
    client: &reqwest::Client,
    config: &WhatsAppConfig,
    to: &Phone,
    body: &str,
) -> Result<Receipt, SendError> {
    let response = client
        .post(format!(
            "{}/{}/messages",
            config.api_url.trim_end_matches('/'),
            config.phone_number_id
        ))
        .bearer_auth(&config.access_token)
        .json(&json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to.digits(),
            "type": "text",
            "text": {"preview_url": false, "body": body},
        }))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let retry = retry_after(&response);
    let text = read_capped(response).await;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status == 200 {
        let id = v["messages"][0]["id"].as_str().map(str::to_string);
        return Ok(Receipt {
            message_id: id,
            provider_status: "accepted".into(),
            http_status: status,
        });
    }
    let code = v["error"]["code"].as_i64();
    let message = match (code, v["error"]["message"].as_str()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        _ => format!("HTTP {status}: {}", excerpt(&text)),
    };
    let code_text = code.map(|c| c.to_string());
    Err(match code {
        // Rate limits: the business number's, or per recipient pair.
        Some(4 | 80007 | 130429 | 131056) => SendError::Unavailable {
            message,
            retry_after: retry,
        },
        // Access token expired or invalid; permission missing.
        Some(190 | 10 | 200) => SendError::Misconfigured { message },
        // The number is not on WhatsApp or cannot receive: suppress.
        Some(131026) => SendError::Refused {
            message,
            code: code_text,
            suppress: true,
        },
        // Outside the 24-hour window, bad parameters: refused.
        Some(131047 | 131051 | 131008 | 131009 | 100) => SendError::Refused {
            message,
            code: code_text,
            suppress: false,
        },
        // 131000 "something went wrong", 131016 service unavailable: retry.
        Some(131000 | 131016) => SendError::Unavailable {
            message,
            retry_after: retry,
        },
        _ => by_status(status, message, retry),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn config(server: &MockServer) -> WhatsAppConfig {
        WhatsAppConfig {
            phone_number_id: "106540352242922".into(),
            access_token: "EAAG".into(),
            app_secret: None,
            api_url: server.uri(),
        }
    }

    #[tokio::test]
    async fn sends_the_documented_text_message() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/106540352242922/messages"))
            .and(header("authorization", "Bearer EAAG"))
            .and(body_json(json!({
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": "998901234567",
                "type": "text", "text": {"preview_url": false, "body": "Salom"}
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": "998901234567", "wa_id": "998901234567"}],
                "messages": [{"id": "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"}]
            })))
            .expect(1)
            .mount(&server)
            .await;
        let to = Phone::parse("+998901234567").unwrap();
        let r = send(&reqwest::Client::new(), &config(&server), &to, "Salom")
            .await
            .unwrap();
        assert_eq!(
            r.message_id.as_deref(),
            Some("wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA")
        );
    }

    #[tokio::test]
    async fn graph_error_codes_classify() {
        let cases = [
            (400, 131047, "Re-engagement message", false, false, false),
            (400, 131026, "Message undeliverable", false, false, true),
            (429, 130429, "Rate limit hit", true, true, false),
            (
                401,
                190,
                "Error validating access token",
                false,
                true,
                false,
            ),
            (500, 131000, "Something went wrong", true, true, false),
        ];
        let to = Phone::parse("+998901234567").unwrap();
        for (status, code, msg, retryable, fails_over, suppress) in cases {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(status).set_body_json(json!({"error": {"message": msg, "type": "OAuthException", "code": code, "fbtrace_id": "A1"}})))
                .mount(&server)
                .await;
            let e = send(&reqwest::Client::new(), &config(&server), &to, "x")
                .await
                .unwrap_err();
            assert_eq!(
                (e.is_retryable(), e.fails_over()),
                (retryable, fails_over),
                "{code}: {e:?}"
            );
            assert_eq!(
                matches!(e, SendError::Refused { suppress: true, .. }),
                suppress,
                "{code}: {e:?}"
            );
            assert!(e.to_string().contains(msg));
        }
    }
}

//! Telegram Bot API `sendMessage`: `POST /bot<token>/sendMessage` with `{chat_id, text}`.
//! Answers are `{"ok": true, "result": {"message_id"}}` or `{"ok": false, "error_code",
//! "description", "parameters": {"retry_after"}}`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{by_status, excerpt, read_capped, unreachable, Receipt, SendError};

/// Telegram's API root.
pub const API: &str = "https://api.telegram.org";

/// A Telegram bot.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot token from @BotFather (`123456:ABC…`).
    pub bot_token: String,
    /// API root (tests point it at a fake server).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    API.to_string()
}

/// Sends `text` to `chat_id`.
pub async fn send(
    client: &reqwest::Client,
    config: &TelegramConfig,
    chat_id: &str,
    text: &str,
) -> Result<Receipt, SendError> {
    let url = format!(
        "{}/bot{}/sendMessage",
        config.api_url.trim_end_matches('/'),
        config.bot_token
    );
    let response = client
        .post(url)
        .json(&json!({"chat_id": chat_id, "text": text}))
        .send()
        .await
        .map_err(|e| unreachable(e.without_url()))?;
    let status = response.status().as_u16();
    let text = read_capped(response).await;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if v["ok"] == true {
        let id = v["result"]["message_id"].as_i64().map(|i| i.to_string());
        return Ok(Receipt {
            message_id: id,
            provider_status: "sent".into(),
            http_status: status,
        });
    }
    let description = v["description"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| excerpt(&text));
    let retry = v["parameters"]["retry_after"]
        .as_u64()
        .map(std::time::Duration::from_secs);
    let message = format!("HTTP {status}: {description}");
    Err(match status {
        // The user blocked the bot or deleted the chat: stop writing to it.
        403 => SendError::Refused {
            message,
            code: Some("403".into()),
            suppress: true,
        },
        // The token is wrong (Telegram answers 401, or 404 for a malformed one).
        401 | 404 => SendError::Misconfigured { message },
        _ => by_status(status, message, retry),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn config(server: &MockServer) -> TelegramConfig {
        TelegramConfig {
            bot_token: "123:ABC".into(),
            api_url: server.uri(),
        }
    }

    #[tokio::test]
    async fn sends_and_reads_the_message_id() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/bot123:ABC/sendMessage"))
            .and(body_json(json!({"chat_id": "-1001234567890", "text": "Yangi buyurtma #42"})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {"message_id": 77, "chat": {"id": -1001234567890i64}}})))
            .expect(1)
            .mount(&server)
            .await;
        let r = send(
            &reqwest::Client::new(),
            &config(&server),
            "-1001234567890",
            "Yangi buyurtma #42",
        )
        .await
        .unwrap();
        assert_eq!(r.message_id.as_deref(), Some("77"));
    }

    #[tokio::test]
    async fn blocked_limited_and_unauthorized_bots_are_told_apart() {
        let cases = [
            (
                403,
                json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
            ),
            (
                429,
                json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 5", "parameters": {"retry_after": 5}}),
            ),
            (
                401,
                json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
            ),
            (
                400,
                json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}),
            ),
        ];
        let mut got = Vec::new();
        for (status, body) in cases {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(status).set_body_json(body))
                .mount(&server)
                .await;
            got.push(
                send(&reqwest::Client::new(), &config(&server), "1", "x")
                    .await
                    .unwrap_err(),
            );
        }
        assert!(
            matches!(got[0], SendError::Refused { suppress: true, .. }),
            "{:?}",
            got[0]
        );
        assert!(
            matches!(got[1], SendError::Unavailable { retry_after: Some(d), .. } if d.as_secs() == 5),
            "{:?}",
            got[1]
        );
        assert!(
            matches!(got[2], SendError::Misconfigured { .. }),
            "{:?}",
            got[2]
        );
        assert!(
            matches!(
                got[3],
                SendError::Refused {
                    suppress: false,
                    ..
                }
            ),
            "{:?}",
            got[3]
        );
        // The bot token never appears in an error.
        assert!(got.iter().all(|e| !e.to_string().contains("123:ABC")));
    }
}

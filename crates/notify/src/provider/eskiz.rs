//! Eskiz.uz SMS (`https://notify.eskiz.uz/api`): log in with e-mail and password for a bearer
//! token (valid about 30 days), then send multipart forms with it. The token is cached per
//! account; an answer of 401 means it expired: the adapter logs in again once and replays
//! the send once.

use serde::Deserialize;
use tokio::sync::Mutex;

use super::{
    by_status, excerpt, parse, read_capped, retry_after, unreachable, Receipt, SendError, Sms,
};

/// Eskiz's API root.
pub const API: &str = "https://notify.eskiz.uz/api";

/// An Eskiz account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EskizConfig {
    /// The account's e-mail.
    pub email: String,
    /// The account's password (or API secret).
    pub password: String,
    /// The sender name ("nick") approved for the account; Eskiz's `4546` when unset.
    #[serde(default)]
    pub from: Option<String>,
    /// API root (tests point it at a fake server).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    API.to_string()
}

/// An Eskiz account with its cached token.
pub struct Eskiz {
    config: EskizConfig,
    token: Mutex<Option<String>>,
}

#[derive(Deserialize)]
struct Login {
    data: LoginData,
}

#[derive(Deserialize)]
struct LoginData {
    token: String,
}

#[derive(Deserialize)]
struct Sent {
    id: String,
    status: String,
}

/// What one send attempt with a token gave.
enum Attempt {
    Done(Result<Receipt, SendError>),
    Expired,
}

impl Eskiz {
    /// The adapter for `config` (no request until the first send).
    pub fn new(config: EskizConfig) -> Eskiz {
        Eskiz {
            config,
            token: Mutex::new(None),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_url.trim_end_matches('/'))
    }

    async fn login(&self, client: &reqwest::Client) -> Result<String, SendError> {
        let form = reqwest::multipart::Form::new()
            .text("email", self.config.email.clone())
            .text("password", self.config.password.clone());
        let response = client
            .post(self.url("/auth/login"))
            .multipart(form)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry = retry_after(&response);
        let body = read_capped(response).await;
        if status != 200 {
            let message = format!("login refused (HTTP {status}): {}", excerpt(&body));
            return Err(match status {
                400..=499 if status != 408 && status != 429 => SendError::Misconfigured { message },
                _ => by_status(status, message, retry),
            });
        }
        parse::<Login>(&body).map(|l| l.data.token)
    }

    async fn attempt(
        &self,
        client: &reqwest::Client,
        token: &str,
        sms: &Sms<'_>,
    ) -> Result<Attempt, SendError> {
        let mut form = reqwest::multipart::Form::new()
            .text("mobile_phone", sms.to.digits().to_string())
            .text("message", sms.text.to_string())
            .text(
                "from",
                sms.from
                    .or(self.config.from.as_deref())
                    .unwrap_or("4546")
                    .to_string(),
            );
        if let Some(cb) = sms.callback_url {
            form = form.text("callback_url", cb.to_string());
        }
        let response = client
            .post(self.url("/message/sms/send"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        if status == 401 {
            return Ok(Attempt::Expired);
        }
        let retry = retry_after(&response);
        let body = read_capped(response).await;
        if (200..300).contains(&status) {
            let sent: Sent = parse(&body)?;
            return Ok(Attempt::Done(Ok(Receipt {
                message_id: Some(sent.id),
                provider_status: sent.status,
                http_status: status,
            })));
        }
        let message = format!("HTTP {status}: {}", excerpt(&body));
        Ok(Attempt::Done(Err(by_status(status, message, retry))))
    }

    /// The cached token, or a new login's when none is cached or the cached one is `refused`
    /// (unless another send already replaced it).
    async fn token(
        &self,
        client: &reqwest::Client,
        refused: Option<&str>,
    ) -> Result<String, SendError> {
        let mut cached = self.token.lock().await;
        match cached.as_deref() {
            Some(t) if Some(t) != refused => Ok(t.to_string()),
            _ => {
                let t = self.login(client).await?;
                *cached = Some(t.clone());
                Ok(t)
            }
        }
    }

    /// Sends one SMS (logging in first when no token is cached, and once more on 401).
    pub async fn send(
        &self,
        client: &reqwest::Client,
        sms: &Sms<'_>,
    ) -> Result<Receipt, SendError> {
        let token = self.token(client, None).await?;
        if let Attempt::Done(result) = self.attempt(client, &token, sms).await? {
            return result;
        }
        // Expired: one new login, one replay.
        let fresh = self.token(client, Some(&token)).await?;
        match self.attempt(client, &fresh, sms).await? {
            Attempt::Done(result) => result,
            Attempt::Expired => Err(SendError::Misconfigured {
                message: "a fresh token was refused (HTTP 401)".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::Phone;
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn config(server: &MockServer) -> EskizConfig {
        EskizConfig {
            email: "ops@example.uz".into(),
            password: "pw".into(),
            from: None,
            api_url: server.uri(),
        }
    }

    fn field(name: &str, value: &str) -> String {
        format!("name=\"{name}\"\r\n\r\n{value}\r\n")
    }

    fn login_answer(token: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "message": "token_generated", "data": {"token": token}, "token_type": "bearer"
        }))
    }

    fn sent_answer() -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "4385062f-b1c6-4f4b-8a12-1b2c3d4e5f60", "message": "Waiting for SMS provider", "status": "waiting"
        }))
    }

    #[tokio::test]
    async fn logs_in_once_and_sends_multipart_with_the_bearer_token() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/auth/login"))
            .and(body_string_contains(field("email", "ops@example.uz")))
            .and(body_string_contains(field("password", "pw")))
            .respond_with(login_answer("tok1"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/message/sms/send"))
            .and(header("authorization", "Bearer tok1"))
            .and(body_string_contains(field("mobile_phone", "998901234567")))
            .and(body_string_contains(field("message", "Kod: 1234")))
            .and(body_string_contains(field("from", "4546")))
            .and(body_string_contains(field(
                "callback_url",
                "https://sb.example/hooks/eskiz/k1",
            )))
            .respond_with(sent_answer())
            .expect(2)
            .mount(&server)
            .await;
        let eskiz = Eskiz::new(config(&server));
        let to = Phone::parse("+998 90 123 45 67").unwrap();
        let sms = Sms {
            to: &to,
            text: "Kod: 1234",
            from: None,
            callback_url: Some("https://sb.example/hooks/eskiz/k1"),
            reference: "d1",
        };
        let client = reqwest::Client::new();
        let r = eskiz.send(&client, &sms).await.unwrap();
        assert_eq!(
            r.message_id.as_deref(),
            Some("4385062f-b1c6-4f4b-8a12-1b2c3d4e5f60")
        );
        assert_eq!(r.provider_status, "waiting");
        // The second send reuses the token: the login mock expects exactly one call.
        eskiz.send(&client, &sms).await.unwrap();
    }

    #[tokio::test]
    async fn an_expired_token_is_refreshed_exactly_once_and_the_send_replayed() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/auth/login"))
            .respond_with(login_answer("fresh"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/message/sms/send"))
            .and(header("authorization", "Bearer stale"))
            .respond_with(ResponseTemplate::new(401).set_body_json(
                serde_json::json!({"status": "token-invalid", "message": "Expired token"}),
            ))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/message/sms/send"))
            .and(header("authorization", "Bearer fresh"))
            .respond_with(sent_answer())
            .expect(1)
            .mount(&server)
            .await;
        let eskiz = Eskiz::new(config(&server));
        *eskiz.token.lock().await = Some("stale".into());
        let to = Phone::parse("+998901234567").unwrap();
        let sms = Sms {
            to: &to,
            text: "x",
            from: Some("MyShop"),
            callback_url: None,
            reference: "d1",
        };
        eskiz.send(&reqwest::Client::new(), &sms).await.unwrap();
    }

    #[tokio::test]
    async fn a_token_refused_twice_is_a_configuration_problem_not_a_loop() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/auth/login"))
            .respond_with(login_answer("t"))
            .expect(2)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/message/sms/send"))
            .respond_with(ResponseTemplate::new(401))
            .expect(2)
            .mount(&server)
            .await;
        let eskiz = Eskiz::new(config(&server));
        let to = Phone::parse("+998901234567").unwrap();
        let sms = Sms {
            to: &to,
            text: "x",
            from: None,
            callback_url: None,
            reference: "d1",
        };
        // First call: login, send (401), login again... the cached token equals the refused
        // one, so it logs in again (2 logins), sends again (401): misconfigured.
        let e = eskiz.send(&reqwest::Client::new(), &sms).await.unwrap_err();
        assert!(matches!(e, SendError::Misconfigured { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn bad_credentials_and_outages_are_told_apart() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/auth/login"))
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(serde_json::json!({"message": "Invalid credentials"})),
            )
            .mount(&server)
            .await;
        let to = Phone::parse("+998901234567").unwrap();
        let sms = Sms {
            to: &to,
            text: "x",
            from: None,
            callback_url: None,
            reference: "d1",
        };
        let e = Eskiz::new(config(&server))
            .send(&reqwest::Client::new(), &sms)
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Misconfigured { .. }), "{e:?}");

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/auth/login"))
            .respond_with(login_answer("t"))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/message/sms/send"))
            .respond_with(ResponseTemplate::new(502))
            .mount(&server)
            .await;
        let e = Eskiz::new(config(&server))
            .send(&reqwest::Client::new(), &sms)
            .await
            .unwrap_err();
        assert!(e.is_retryable() && e.fails_over(), "{e:?}");

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/auth/login"))
            .respond_with(login_answer("t"))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/message/sms/send"))
            .respond_with(ResponseTemplate::new(400).set_body_json(
                serde_json::json!({"message": "Invalid phone number", "status": "error"}),
            ))
            .mount(&server)
            .await;
        let e = Eskiz::new(config(&server))
            .send(&reqwest::Client::new(), &sms)
            .await
            .unwrap_err();
        assert!(
            !e.fails_over(),
            "a validation reject must not fail over: {e:?}"
        );
    }
}

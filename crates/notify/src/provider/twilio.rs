//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded, HTTP Basic with the account SID and auth token (or an API key SID and
//! secret). Success is `201 Created` with the message `sid`; errors are JSON with a numeric
//! `code` (twilio.com/docs/api/errors).

use serde::Deserialize;

use super::{
    by_status, excerpt, parse, read_capped, retry_after, unreachable, Receipt, SendError, Sms,
};

/// Twilio's API root.
pub const API: &str = "https://api.twilio.com";

/// A Twilio account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// `AC…`.
    pub account_sid: String,
    /// The auth token (also the key of callback signatures).
    pub auth_token: String,
    /// An API key `SK…` to authenticate with instead of the account SID and token.
    #[serde(default)]
    pub api_key_sid: Option<String>,
    /// The API key's secret.
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// A sender number in E.164 (one of `from` and `messaging_service_sid`).
    #[serde(default)]
    pub from: Option<String>,
    /// A Messaging Service `MG…` that picks the sender.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// API root (tests point it at a fake server).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    API.to_string()
}

impl TwilioConfig {
    /// Checks what Twilio would refuse on every message.
    pub fn validate(&self) -> Result<(), String> {
        if !self.account_sid.starts_with("AC") || self.account_sid.len() != 34 {
            return Err("account_sid: must be the 34-character AC… SID".into());
        }
        if self.from.is_some() == self.messaging_service_sid.is_some() {
            return Err("from, messaging_service_sid: give exactly one".into());
        }
        if self.api_key_sid.is_some() != self.api_key_secret.is_some() {
            return Err("api_key_sid, api_key_secret: give both or neither".into());
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Created {
    sid: String,
    status: String,
}

#[derive(Deserialize)]
struct Failure {
    code: Option<i64>,
    message: Option<String>,
}

/// Sends one SMS.
pub async fn send(
    client: &reqwest::Client,
    config: &TwilioConfig,
    sms: &Sms<'_>,
) -> Result<Receipt, SendError> {
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        config.api_url.trim_end_matches('/'),
        config.account_sid
    );
    let mut form: Vec<(&str, &str)> = vec![("To", sms.to.as_str()), ("Body", sms.text)];
    // A sender given with the message wins; then the account's Messaging Service, then its number.
    match (sms.from, &config.messaging_service_sid, &config.from) {
        (Some(from), _, _) => form.push(("From", from)),
        (None, Some(service), _) => form.push(("MessagingServiceSid", service)),
        (None, None, Some(from)) => form.push(("From", from)),
        (None, None, None) => {
            return Err(SendError::Misconfigured {
                message: "no sender: set from or messaging_service_sid".into(),
            })
        }
    }
    if let Some(cb) = sms.callback_url {
        form.push(("StatusCallback", cb));
    }
    let (user, password) = match (&config.api_key_sid, &config.api_key_secret) {
        (Some(k), Some(s)) => (k.as_str(), s.as_str()),
        _ => (config.account_sid.as_str(), config.auth_token.as_str()),
    };
    let response = client
        .post(url)
        .basic_auth(user, Some(password))
        .form(&form)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let retry = retry_after(&response);
    let body = read_capped(response).await;
    if status == 201 || status == 200 {
        let created: Created = parse(&body)?;
        return Ok(Receipt {
            message_id: Some(created.sid),
            provider_status: created.status,
            http_status: status,
        });
    }
    let failure: Option<Failure> = serde_json::from_str(&body).ok();
    let code = failure.as_ref().and_then(|f| f.code);
    let message = failure
        .and_then(|f| f.message)
        .map(|m| match code {
            Some(c) => format!("{c}: {m}"),
            None => m,
        })
        .unwrap_or_else(|| format!("HTTP {status}: {}", excerpt(&body)));
    Err(match code {
        // Too many requests.
        Some(20429) => SendError::Unavailable {
            message,
            retry_after: retry,
        },
        // Authentication failed; permission denied; sender not owned or not SMS-capable.
        Some(20003 | 20005 | 20404 | 21606 | 21659 | 21212) => SendError::Misconfigured { message },
        // The recipient replied STOP (21610) or cannot receive SMS (21614): suppress.
        Some(c @ (21610 | 21614)) => SendError::Refused {
            message,
            code: Some(c.to_string()),
            suppress: true,
        },
        Some(c)
            if (400..500).contains(&status) && status != 429 && status != 401 && status != 403 =>
        {
            SendError::Refused {
                message,
                code: Some(c.to_string()),
                suppress: false,
            }
        }
        _ => by_status(status, message, retry),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::Phone;
    use wiremock::matchers::{basic_auth, body_string, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn config(server: &MockServer) -> TwilioConfig {
        TwilioConfig {
            account_sid: SID.into(),
            auth_token: "token123".into(),
            api_key_sid: None,
            api_key_secret: None,
            from: Some("+15005550006".into()),
            messaging_service_sid: None,
            api_url: server.uri(),
        }
    }

    fn sms<'a>(to: &'a Phone, callback: Option<&'a str>) -> Sms<'a> {
        Sms {
            to,
            text: "Your code is 123456 & more",
            from: None,
            callback_url: callback,
            reference: "dlv_1",
        }
    }

    fn messages_path() -> String {
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    }

    #[tokio::test]
    async fn sends_form_encoded_with_basic_auth_and_reads_the_sid() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(messages_path()))
            .and(basic_auth(SID, "token123"))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .and(body_string(
                "To=%2B998901234567&Body=Your+code+is+123456+%26+more&From=%2B15005550006&StatusCallback=https%3A%2F%2Fsb.example%2Fhooks%2Ftwilio%2Fk1",
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "sid": "SM1234567890abcdef1234567890abcdef", "status": "queued", "to": "+998901234567"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let to = Phone::parse("+998901234567").unwrap();
        let receipt = send(
            &reqwest::Client::new(),
            &config(&server),
            &sms(&to, Some("https://sb.example/hooks/twilio/k1")),
        )
        .await
        .unwrap();
        assert_eq!(
            receipt.message_id.as_deref(),
            Some("SM1234567890abcdef1234567890abcdef")
        );
        assert_eq!(
            (receipt.provider_status.as_str(), receipt.http_status),
            ("queued", 201)
        );
    }

    #[tokio::test]
    async fn a_messaging_service_and_an_api_key_replace_from_and_the_token() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(messages_path()))
            .and(basic_auth("SK0123", "keysecret"))
            .and(body_string(
                "To=%2B998901234567&Body=Your+code+is+123456+%26+more&MessagingServiceSid=MG42",
            ))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(serde_json::json!({"sid": "SMx", "status": "accepted"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let mut c = config(&server);
        c.from = None;
        c.messaging_service_sid = Some("MG42".into());
        c.api_key_sid = Some("SK0123".into());
        c.api_key_secret = Some("keysecret".into());
        let to = Phone::parse("+998901234567").unwrap();
        let r = send(&reqwest::Client::new(), &c, &sms(&to, None))
            .await
            .unwrap();
        assert_eq!(r.provider_status, "accepted");
    }

    async fn failing(status: u16, body: serde_json::Value, retry: Option<&str>) -> SendError {
        let server = MockServer::start().await;
        let mut answer = ResponseTemplate::new(status).set_body_json(body);
        if let Some(r) = retry {
            answer = answer.insert_header("Retry-After", r);
        }
        Mock::given(method("POST"))
            .respond_with(answer)
            .mount(&server)
            .await;
        let to = Phone::parse("+998901234567").unwrap();
        send(&reqwest::Client::new(), &config(&server), &sms(&to, None))
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn each_documented_error_class_maps_to_what_the_pipeline_does() {
        let e = failing(400, serde_json::json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}), None).await;
        assert_eq!(
            e,
            SendError::Refused {
                message: "21610: Attempt to send to unsubscribed recipient".into(),
                code: Some("21610".into()),
                suppress: true
            }
        );
        assert!(!e.fails_over() && !e.is_retryable());
        let e = failing(400, serde_json::json!({"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}), None).await;
        assert!(
            matches!(
                e,
                SendError::Refused {
                    suppress: false,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = failing(
            429,
            serde_json::json!({"code": 20429, "message": "Too Many Requests", "status": 429}),
            Some("7"),
        )
        .await;
        assert_eq!(
            e,
            SendError::Unavailable {
                message: "20429: Too Many Requests".into(),
                retry_after: Some(std::time::Duration::from_secs(7))
            }
        );
        assert!(e.fails_over() && e.is_retryable());
        let e = failing(
            401,
            serde_json::json!({"code": 20003, "message": "Authenticate", "status": 401}),
            None,
        )
        .await;
        assert!(matches!(e, SendError::Misconfigured { .. }), "{e:?}");
        assert!(e.fails_over() && !e.is_retryable());
        let e = failing(503, serde_json::json!({}), None).await;
        assert!(matches!(e, SendError::Unavailable { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_dead_provider_is_unavailable() {
        let server = MockServer::start().await;
        let mut c = config(&server);
        // A port nothing listens on: the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        c.api_url = format!("http://127.0.0.1:{port}");
        let to = Phone::parse("+998901234567").unwrap();
        let e = send(&reqwest::Client::new(), &c, &sms(&to, None))
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
    }

    #[test]
    fn configuration_is_checked() {
        let mut c = TwilioConfig {
            account_sid: SID.into(),
            auth_token: "t".into(),
            api_key_sid: None,
            api_key_secret: None,
            from: Some("+15005550006".into()),
            messaging_service_sid: Some("MG1".into()),
            api_url: API.into(),
        };
        assert!(c.validate().unwrap_err().contains("exactly one"));
        c.messaging_service_sid = None;
        assert!(c.validate().is_ok());
        c.account_sid = "AC1".into();
        assert!(c.validate().is_err());
    }
}

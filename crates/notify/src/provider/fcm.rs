//! Firebase Cloud Messaging HTTP v1.
//!
//! Authentication is Google's service-account flow: an RS256 JWT (`kid` = the key's id;
//! `iss` = the account's e-mail, `scope` = firebase.messaging, `aud` = the token URI, an hour
//! of validity) is exchanged at the token URI for an access token, which is cached until a
//! minute before it expires. A message goes to `POST /v1/projects/{project}/messages:send`.
//! Errors carry an `FcmError` detail whose `errorCode` decides: `UNREGISTERED` and
//! `SENDER_ID_MISMATCH` mean the device token is dead (suppress: the caller deletes it),
//! `INVALID_ARGUMENT` is not retried, `QUOTA_EXCEEDED`/`UNAVAILABLE`/`INTERNAL` are retried
//! (with `Retry-After`), `THIRD_PARTY_AUTH_ERROR` is an APNs/web-push credential problem.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{by_status, excerpt, parse, read_capped, retry_after, unreachable, Receipt, SendError};

/// FCM's API root.
pub const API: &str = "https://fcm.googleapis.com";

/// FCM refuses messages larger than this (bytes of the message object).
pub const MAX_PAYLOAD: usize = 4096;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The service-account key as Google's console downloads it (other fields are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct FcmConfig {
    /// The Firebase project.
    pub project_id: String,
    /// The key's id (the JWT's `kid`).
    pub private_key_id: String,
    /// The RSA private key, PEM.
    pub private_key: String,
    /// The service account's e-mail (the JWT's `iss`).
    pub client_email: String,
    /// Where tokens are minted.
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
    /// API root (tests point it at a fake server).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

fn default_api() -> String {
    API.to_string()
}

/// One push notification to one device.
#[derive(Clone, Debug)]
pub struct Push<'a> {
    /// The device's registration token.
    pub token: &'a str,
    /// The title (already rendered).
    pub title: &'a str,
    /// The body (already rendered).
    pub body: &'a str,
    /// Data for the app (FCM wants string values).
    pub data: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    expires_in: i64,
}

/// An access token and when to stop using it (epoch seconds).
struct Cached {
    token: String,
    renew_at: i64,
}

/// A Firebase project with its cached access token.
pub struct Fcm {
    config: FcmConfig,
    token: Mutex<Option<Cached>>,
}

/// The message object FCM receives for `push`.
pub fn message(push: &Push<'_>) -> Value {
    json!({
        "token": push.token,
        "notification": {"title": push.title, "body": push.body},
        "data": push.data,
    })
}

impl Fcm {
    /// The adapter for `config` (no request until the first send).
    pub fn new(config: FcmConfig) -> Fcm {
        Fcm {
            config,
            token: Mutex::new(None),
        }
    }

    /// The signed assertion for the token exchange at `now` (epoch seconds).
    fn assertion(&self, now: i64) -> Result<String, SendError> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.config.private_key.as_bytes())
            .map_err(|_| SendError::Misconfigured {
                message: "private_key: not an RSA private key in PEM".into(),
            })?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.config.private_key_id.clone());
        let claims = Claims {
            iss: &self.config.client_email,
            scope: SCOPE,
            aud: &self.config.token_uri,
            iat: now,
            exp: now + 3600,
        };
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| SendError::Misconfigured {
            message: format!("signing failed: {e}"),
        })
    }

    async fn access_token(&self, client: &reqwest::Client) -> Result<String, SendError> {
        let mut cached = self.token.lock().await;
        let now = jiff::Timestamp::now().as_second();
        if let Some(c) = cached.as_ref().filter(|c| c.renew_at > now) {
            return Ok(c.token.clone());
        }
        let assertion = self.assertion(now)?;
        let response = client
            .post(&self.config.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry = retry_after(&response);
        let text = read_capped(response).await;
        if status != 200 {
            let message = format!("token exchange refused (HTTP {status}): {}", excerpt(&text));
            return Err(match status {
                400..=403 => SendError::Misconfigured { message },
                _ => by_status(status, message, retry),
            });
        }
        let token: Token = parse(&text)?;
        // Renewed a minute early, so a token never expires in flight.
        *cached = Some(Cached {
            token: token.access_token.clone(),
            renew_at: now + token.expires_in - 60,
        });
        Ok(token.access_token)
    }

    /// Sends one push notification.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        push: &Push<'_>,
    ) -> Result<Receipt, SendError> {
        let message = message(push);
        let size = message.to_string().len();
        if size > MAX_PAYLOAD {
            return Err(SendError::Refused {
                message: format!("the message is {size} bytes; FCM takes at most {MAX_PAYLOAD}"),
                code: Some("payload-too-large".into()),
                suppress: false,
            });
        }
        let token = self.access_token(client).await?;
        let response = client
            .post(format!(
                "{}/v1/projects/{}/messages:send",
                self.config.api_url.trim_end_matches('/'),
                self.config.project_id
            ))
            .bearer_auth(token)
            .json(&json!({"message": message}))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry = retry_after(&response);
        let text = read_capped(response).await;
        if status == 200 {
            let name = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_string));
            return Ok(Receipt {
                message_id: name,
                provider_status: "sent".into(),
                http_status: status,
            });
        }
        Err(classify(status, &text, retry))
    }
}

/// What an FCM error answer means.
fn classify(status: u16, text: &str, retry: Option<Duration>) -> SendError {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| excerpt(text));
    let code = v["error"]["details"].as_array().and_then(|details| {
        details
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.firebase.fcm.v1.FcmError")
            .and_then(|d| d["errorCode"].as_str())
            .map(str::to_string)
    });
    let message = match &code {
        Some(c) => format!("{c}: {message}"),
        None => format!("HTTP {status}: {message}"),
    };
    match code.as_deref() {
        Some("UNREGISTERED" | "SENDER_ID_MISMATCH") => SendError::Refused {
            message,
            code,
            suppress: true,
        },
        Some("INVALID_ARGUMENT") => SendError::Refused {
            message,
            code,
            suppress: false,
        },
        Some("QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") => SendError::Unavailable {
            message,
            retry_after: retry,
        },
        Some("THIRD_PARTY_AUTH_ERROR") => SendError::Misconfigured { message },
        _ => by_status(status, message, retry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    /// A key generated for these tests only.
    const KEY: &str = include_str!("fcm-test-key.pem");
    const PUBLIC: &str = include_str!("fcm-test-key.pub");

    fn config(server: &MockServer) -> FcmConfig {
        FcmConfig {
            project_id: "shop-app".into(),
            private_key_id: "kid-1".into(),
            private_key: KEY.into(),
            client_email: "push@shop-app.iam.gserviceaccount.com".into(),
            token_uri: format!("{}/token", server.uri()),
            api_url: server.uri(),
        }
    }

    /// Checks the assertion as Google would: RS256 with our public key, `kid`, claims.
    fn assertion_is_valid(req: &Request, token_uri: &str) -> bool {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return false;
        }
        let Some(jwt) = get("assertion") else {
            return false;
        };
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[token_uri]);
        validation.set_issuer(&["push@shop-app.iam.gserviceaccount.com"]);
        let Ok(data) = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation) else {
            return false;
        };
        let c = data.claims;
        data.header.kid.as_deref() == Some("kid-1")
            && c["scope"] == SCOPE
            && c["exp"]
                .as_i64()
                .zip(c["iat"].as_i64())
                .is_some_and(|(e, i)| e - i == 3600)
    }

    async fn mount_token(server: &MockServer, times: u64) {
        let token_uri = format!("{}/token", server.uri());
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(move |req: &Request| assertion_is_valid(req, &token_uri))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"access_token": "ya29.token", "expires_in": 3599, "token_type": "Bearer"}),
            ))
            .expect(times)
            .mount(server)
            .await;
    }

    #[tokio::test]
    async fn mints_a_token_once_and_sends_the_documented_message() {
        let server = MockServer::start().await;
        mount_token(&server, 1).await;
        let data: BTreeMap<String, String> = [("order".to_string(), "42".to_string())].into();
        Mock::given(method("POST"))
            .and(path("/v1/projects/shop-app/messages:send"))
            .and(header("authorization", "Bearer ya29.token"))
            .and(body_json(json!({"message": {
                "token": "dev-token-1",
                "notification": {"title": "Order shipped", "body": "On its way"},
                "data": {"order": "42"},
            }})))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"name": "projects/shop-app/messages/0:1500415314455276%31bd1c9631bd1c96"}),
            ))
            .expect(2)
            .mount(&server)
            .await;
        let fcm = Fcm::new(config(&server));
        let push = Push {
            token: "dev-token-1",
            title: "Order shipped",
            body: "On its way",
            data: &data,
        };
        let client = reqwest::Client::new();
        let r = fcm.send(&client, &push).await.unwrap();
        assert_eq!(
            r.message_id.as_deref(),
            Some("projects/shop-app/messages/0:1500415314455276%31bd1c9631bd1c96")
        );
        // The second send reuses the cached token (the token mock expects one call).
        fcm.send(&client, &push).await.unwrap();
    }

    #[tokio::test]
    async fn a_token_near_expiry_is_renewed() {
        let server = MockServer::start().await;
        mount_token(&server, 1).await;
        Mock::given(method("POST"))
            .and(path("/v1/projects/shop-app/messages:send"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"name": "n"})))
            .mount(&server)
            .await;
        let fcm = Fcm::new(config(&server));
        *fcm.token.lock().await = Some(Cached {
            token: "old".into(),
            renew_at: jiff::Timestamp::now().as_second() - 1,
        });
        let data = BTreeMap::new();
        fcm.send(
            &reqwest::Client::new(),
            &Push {
                token: "t",
                title: "a",
                body: "b",
                data: &data,
            },
        )
        .await
        .unwrap();
        assert_eq!(fcm.token.lock().await.as_ref().unwrap().token, "ya29.token");
    }

    fn fcm_error(status: u16, code: &str) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({"error": {
            "code": status, "message": "Requested entity was not found.", "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
        }}))
    }

    #[tokio::test]
    async fn error_codes_map_as_documented() {
        let cases = [
            (404, "UNREGISTERED", false, false, true),
            (403, "SENDER_ID_MISMATCH", false, false, true),
            (400, "INVALID_ARGUMENT", false, false, false),
            (429, "QUOTA_EXCEEDED", true, true, false),
            (503, "UNAVAILABLE", true, true, false),
            (500, "INTERNAL", true, true, false),
            (401, "THIRD_PARTY_AUTH_ERROR", false, true, false),
        ];
        let data = BTreeMap::new();
        for (status, code, retryable, fails_over, suppress) in cases {
            let server = MockServer::start().await;
            mount_token(&server, 1).await;
            Mock::given(method("POST"))
                .and(path("/v1/projects/shop-app/messages:send"))
                .respond_with(fcm_error(status, code).insert_header("Retry-After", "9"))
                .mount(&server)
                .await;
            let e = Fcm::new(config(&server))
                .send(
                    &reqwest::Client::new(),
                    &Push {
                        token: "t",
                        title: "a",
                        body: "b",
                        data: &data,
                    },
                )
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
            if retryable {
                assert!(
                    matches!(e, SendError::Unavailable { retry_after: Some(d), .. } if d.as_secs() == 9),
                    "{code}: {e:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn oversized_messages_and_bad_keys_are_refused_before_any_request() {
        let server = MockServer::start().await;
        let big: BTreeMap<String, String> = [("blob".to_string(), "x".repeat(5000))].into();
        let e = Fcm::new(config(&server))
            .send(
                &reqwest::Client::new(),
                &Push {
                    token: "t",
                    title: "a",
                    body: "b",
                    data: &big,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Refused { .. }), "{e:?}");
        let mut c = config(&server);
        c.private_key = "not a key".into();
        let data = BTreeMap::new();
        let e = Fcm::new(c)
            .send(
                &reqwest::Client::new(),
                &Push {
                    token: "t",
                    title: "a",
                    body: "b",
                    data: &data,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Misconfigured { .. }), "{e:?}");
        assert!(server.received_requests().await.unwrap().is_empty());
    }
}

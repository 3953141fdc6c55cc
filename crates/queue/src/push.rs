//! HTTP push: Switchboard POSTs a job to its target, signed per the Standard Webhooks spec
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `id.timestamp.body`, with the project's `whsec_` secret). 2xx completes the job; 429, 5xx,
//! timeouts and connection errors retry (honouring `Retry-After`); any other status fails it.

use crate::model::{Job, Target};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The outcome of one delivery.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// 2xx; the response body if it was JSON.
    Done(Option<serde_json::Value>),
    /// Worth retrying, after at least `retry_after_ms` if the target said so.
    Retry {
        /// Why.
        error: String,
        /// From `Retry-After`.
        retry_after_ms: Option<i64>,
    },
    /// Retrying will not help.
    Fail(String),
}

/// A new project secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// `v1,<signature>` for a message.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .unwrap_or_else(|_| secret.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap_or_else(|_| {
        // HMAC accepts keys of any length; this branch cannot be taken.
        Hmac::<Sha256>::new_from_slice(b"").expect("empty key")
    });
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The JSON body sent for a job.
pub fn body(job: &Job) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": job.id,
        "queue": job.queue,
        "kind": job.kind,
        "attempt": job.attempt,
        "payload": job.payload,
    }))
    .unwrap_or_default()
}

fn retry_after_ms(resp: &reqwest::Response) -> Option<i64> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    if let Ok(secs) = v.trim().parse::<i64>() {
        return Some(secs.clamp(0, 86_400) * 1000);
    }
    let at = jiff::fmt::rfc2822::parse(v.trim()).ok()?.timestamp();
    Some((at.as_millisecond() - jiff::Timestamp::now().as_millisecond()).clamp(0, 86_400_000))
}

/// Sends `job` to `target`.
pub async fn deliver(
    client: &reqwest::Client,
    secret: &str,
    job: &Job,
    target: &Target,
) -> Delivery {
    let body = body(job);
    let ts = jiff::Timestamp::now().as_second();
    let msg_id = job.id.to_string();
    let method =
        reqwest::Method::from_bytes(target.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut req = client
        .request(method, &target.url)
        .timeout(Duration::from_millis(job.timeout_ms.max(1) as u64))
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("Switchboard/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", &msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(secret, &msg_id, ts, &body));
    for (k, v) in &target.headers {
        req = req.header(k, v);
    }
    match req.body(body).send().await {
        Err(e) if e.is_timeout() => Delivery::Retry {
            error: format!("timed out after {} ms", job.timeout_ms),
            retry_after_ms: None,
        },
        Err(e) => Delivery::Retry {
            error: format!("request failed: {e}"),
            retry_after_ms: None,
        },
        Ok(resp) => {
            let status = resp.status();
            let retry_after = retry_after_ms(&resp);
            let text = resp.text().await.unwrap_or_default();
            let snippet: String = text.chars().take(500).collect();
            if status.is_success() {
                Delivery::Done(serde_json::from_str(&text).ok())
            } else if status.as_u16() == 429 || status.is_server_error() {
                Delivery::Retry {
                    error: format!("target answered {status}: {snippet}"),
                    retry_after_ms: retry_after,
                }
            } else {
                Delivery::Fail(format!("target answered {status}: {snippet}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}

//! HTTP push: Switchboard POSTs a job to its target, signed per the Standard Webhooks spec
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `id.timestamp.body`, with the project's `whsec_` secret). 2xx completes the job; 429, 5xx,
//! timeouts and connection errors retry (honouring `Retry-After`); any other status fails it.
//!
//! Destinations are guarded by [`Egress`]: a target that is not a public address (and not
//! allowed by the operator) fails the job permanently. Answers are read up to
//! [`MAX_RESPONSE_BYTES`] (a 2xx answer beyond it is stored as [`truncated_result`]). What a
//! job stores about a failed delivery names a plain category (could not connect, DNS lookup
//! failed, TLS failed, timed out), never the client's error chain; a non-2xx answer keeps its
//! status and the start of its body: the target is the tenant's own server, and that text is
//! what they need to debug it.

use crate::egress::{Egress, LookupFailed, Refused};
use crate::model::{truncated_result, Job, Target, MAX_RESULT_BYTES};
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

/// Most bytes of an answer that are read (a job's result limit); the connection is
/// dropped beyond it.
pub const MAX_RESPONSE_BYTES: usize = MAX_RESULT_BYTES;

/// Most characters of an error answer's body kept in the job's error.
const SNIPPET_CHARS: usize = 500;

/// Delivers push jobs through an HTTP client bound to an egress policy.
#[derive(Clone, Debug)]
pub struct Pusher {
    egress: Egress,
    client: reqwest::Client,
}

impl Pusher {
    /// A client that reaches only what `egress` permits.
    pub fn new(egress: Egress) -> Pusher {
        Pusher {
            client: egress.client(),
            egress,
        }
    }

    /// The policy deliveries follow.
    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    /// Sends `job` to `target`.
    pub async fn deliver(&self, secret: &str, job: &Job, target: &Target) -> Delivery {
        // The client resolves names through the policy but connects to IP literals directly.
        if let Err(refused) = self.egress.check_url(&target.url) {
            return Delivery::Fail(refused.to_string());
        }
        let body = body(job);
        let ts = jiff::Timestamp::now().as_second();
        let msg_id = job.id.to_string();
        let method =
            reqwest::Method::from_bytes(target.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut req = self
            .client
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
        let mut resp = match req.body(body).send().await {
            Ok(resp) => resp,
            Err(e) => return transport_failure(&e, job, &target.url),
        };
        let status = resp.status();
        let retry_after = retry_after_ms(&resp);
        let answer = read_capped(&mut resp).await;
        // An unread rest of the body closes the connection instead of draining it.
        drop(resp);
        let snippet = || -> String {
            String::from_utf8_lossy(&answer.bytes)
                .chars()
                .take(SNIPPET_CHARS)
                .collect()
        };
        if status.is_success() {
            Delivery::Done(if answer.truncated {
                Some(truncated_result())
            } else if answer.complete {
                serde_json::from_slice(&answer.bytes).ok()
            } else {
                None
            })
        } else if status.as_u16() == 429 || status.is_server_error() {
            Delivery::Retry {
                error: format!("target answered {status}: {}", snippet()),
                retry_after_ms: retry_after,
            }
        } else {
            Delivery::Fail(format!("target answered {status}: {}", snippet()))
        }
    }
}

/// The start of an answer's body.
struct Answer {
    /// At most [`MAX_RESPONSE_BYTES`].
    bytes: Vec<u8>,
    /// The body was longer.
    truncated: bool,
    /// The body was read to its end (no error, no truncation).
    complete: bool,
}

/// Reads the body chunk by chunk, stopping at [`MAX_RESPONSE_BYTES`].
async fn read_capped(resp: &mut reqwest::Response) -> Answer {
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES - bytes.len();
                if chunk.len() > room {
                    bytes.extend_from_slice(&chunk[..room]);
                    return Answer {
                        bytes,
                        truncated: true,
                        complete: false,
                    };
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => {
                return Answer {
                    bytes,
                    truncated: false,
                    complete: true,
                }
            }
            Err(_) => {
                return Answer {
                    bytes,
                    truncated: false,
                    complete: false,
                }
            }
        }
    }
}

/// The first error of type `T` in `e`'s chain of sources.
fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// A request that got no answer, in plain words (the client's error chain stays in the
/// node's debug log: it names addresses and internals a tenant need not see).
fn transport_failure(e: &reqwest::Error, job: &Job, url: &str) -> Delivery {
    tracing::debug!(job = %job.id, error = ?e, "push delivery failed");
    if let Some(refused) = find_source::<Refused>(e) {
        return Delivery::Fail(refused.to_string());
    }
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .unwrap_or_default();
    let error = if e.is_timeout() {
        format!("timed out after {} ms", job.timeout_ms)
    } else if let Some(lookup) = find_source::<LookupFailed>(e) {
        lookup.to_string()
    } else if e.is_connect() && is_tls(e) {
        format!("TLS failed with `{host}`")
    } else if e.is_connect() {
        format!("could not connect to `{host}`")
    } else {
        format!("the connection to `{host}` failed before an answer")
    };
    Delivery::Retry {
        error,
        retry_after_ms: None,
    }
}

/// The TLS layer reports handshake and certificate failures as `InvalidData` I/O errors
/// (possibly wrapped in another I/O error, whose `source` skips it); TCP connection failures
/// never are.
fn is_tls(e: &reqwest::Error) -> bool {
    let mut io = find_source::<std::io::Error>(e);
    while let Some(err) = io {
        if err.kind() == std::io::ErrorKind::InvalidData {
            return true;
        }
        io = err.get_ref().and_then(|inner| inner.downcast_ref());
    }
    false
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

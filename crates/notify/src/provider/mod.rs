//! Provider adapters: each speaks one provider's documented wire protocol over HTTP and says
//! what happened in the same few terms, so that the pipeline decides retries, failover and
//! suppression without knowing the provider.
//!
//! Adapters get their `reqwest::Client` from the caller (the node's egress-guarded client) and
//! their base URL from their configuration, so tests point them at local fake servers.

pub mod eskiz;
pub mod fcm;
pub mod playmobile;
pub mod resend;
pub mod sendgrid;
pub mod smtp;
pub mod telegram;
pub mod twilio;
pub mod whatsapp;

use std::time::Duration;

use crate::phone::Phone;

/// The most of a provider's answer we read (a provider answering with megabytes is cut off).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One SMS to send.
#[derive(Clone, Debug)]
pub struct Sms<'a> {
    /// The recipient.
    pub to: &'a Phone,
    /// The text (already rendered).
    pub text: &'a str,
    /// Sender name or number; the provider account's default when `None`.
    pub from: Option<&'a str>,
    /// Where the provider reports delivery (our `/hooks/<provider>/…` URL).
    pub callback_url: Option<&'a str>,
    /// Our id of this delivery attempt's message, for providers that take one.
    pub reference: &'a str,
}

/// One e-mail to send.
#[derive(Clone, Debug)]
pub struct Email<'a> {
    /// The recipient's address.
    pub to: &'a str,
    /// The recipient's display name.
    pub to_name: Option<&'a str>,
    /// The sender's address.
    pub from: &'a str,
    /// The sender's display name.
    pub from_name: Option<&'a str>,
    /// Where replies go.
    pub reply_to: Option<&'a str>,
    /// The subject (already rendered).
    pub subject: &'a str,
    /// The plain-text body.
    pub text: Option<&'a str>,
    /// The HTML body.
    pub html: Option<&'a str>,
    /// Extra headers (`List-Unsubscribe`, `List-Unsubscribe-Post`, …).
    pub headers: &'a [(String, String)],
    /// Our id of this delivery, carried to the provider (custom args, tags, idempotency key)
    /// so its events find the delivery again.
    pub reference: &'a str,
}

/// What a provider said when it accepted a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's id of the message (matches its callbacks), when it gives one.
    pub message_id: Option<String>,
    /// The provider's own status word (`queued`, `waiting`, …), for the timeline.
    pub provider_status: String,
    /// The HTTP status of the answer.
    pub http_status: u16,
}

/// Why a send did not go through, in the terms the pipeline acts on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The provider is unavailable, slow or limiting us (5xx, timeouts, 429): retry later,
    /// or fail over to the next provider of the chain now.
    #[error("provider unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
    },
    /// Our account or its configuration is wrong (bad credentials, sender not allowed): the
    /// next provider may work; this one will not until an operator fixes it.
    #[error("provider configuration: {message}")]
    Misconfigured {
        /// What the provider said.
        message: String,
    },
    /// The provider refused this message (invalid number, blocked content): no retry, no
    /// failover — another provider would refuse it too.
    #[error("refused: {message}")]
    Refused {
        /// What the provider said.
        message: String,
        /// The provider's error code, when it gives one.
        code: Option<String>,
        /// The recipient asked not to be contacted or cannot be reached on this channel: put
        /// the address on the suppression list.
        suppress: bool,
    },
}

impl SendError {
    /// Whether the next provider of a failover chain should be tried.
    pub fn fails_over(&self) -> bool {
        !matches!(self, SendError::Refused { .. })
    }

    /// Whether a later attempt with the same provider may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Unavailable { .. })
    }
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer (lossy UTF-8).
pub(crate) async fn read_capped(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// A `Retry-After` in seconds, when present.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A failed request (connection refused, timeout, TLS): the provider is unavailable.
pub(crate) fn unreachable(e: reqwest::Error) -> SendError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    SendError::Unavailable {
        message: what.to_string(),
        retry_after: None,
    }
}

/// The classification shared by providers for statuses they do not describe further.
pub(crate) fn by_status(status: u16, message: String, retry: Option<Duration>) -> SendError {
    match status {
        // Bad credentials, or no such endpoint or account: the configuration is wrong.
        401 | 403 | 404 => SendError::Misconfigured { message },
        408 | 429 | 500..=599 => SendError::Unavailable {
            message,
            retry_after: retry,
        },
        _ => SendError::Refused {
            message,
            code: None,
            suppress: false,
        },
    }
}

/// A provider's success answer as `T`; one we cannot read means the provider is not behaving
/// (retried like an outage), quoted as an excerpt.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, SendError> {
    serde_json::from_str(text).map_err(|_| SendError::Unavailable {
        message: format!("unreadable answer: {}", excerpt(text)),
        retry_after: None,
    })
}

/// A short excerpt of a provider's answer for messages (never the whole body).
pub(crate) fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_string(),
    }
}

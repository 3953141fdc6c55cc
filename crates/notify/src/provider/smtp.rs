//! SMTP through `lettre`: STARTTLS on 587 (the default), implicit TLS on 465, or plain for a
//! trusted local relay. We generate the `Message-ID` and use it as the provider id. Replies
//! 4yz are transient (retried), 5yz permanent; `5.1.1`/550–553 on a recipient puts the address
//! on the suppression list; 530/534/535 are our credentials.
//!
//! The host is resolved here and every address checked with the caller's egress rule before
//! connecting (a tenant's SMTP host must not reach the node's private network); the connection
//! then goes to that address while TLS verifies the configured host name.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::{Email, Receipt, SendError};

/// How the connection is secured.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on a trusted network.
    None,
}

/// An SMTP server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name (verified by TLS).
    pub host: String,
    /// Port; 587 for STARTTLS, 465 for TLS, 25 for none when unset.
    #[serde(default)]
    pub port: Option<u16>,
    /// Connection security.
    #[serde(default)]
    pub security: Security,
    /// User name for AUTH.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for AUTH.
    #[serde(default)]
    pub password: Option<String>,
    /// Seconds allowed for each SMTP step (default 30).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl SmtpConfig {
    fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        })
    }
}

fn mailbox(address: &str, name: Option<&str>) -> Result<Mailbox, SendError> {
    let email = address.parse().map_err(|_| SendError::Refused {
        message: format!("not an e-mail address: {address}"),
        code: None,
        suppress: false,
    })?;
    Ok(Mailbox::new(name.map(str::to_string), email))
}

/// The message for `email`, with `message_id` (`<…@…>`).
pub fn message(email: &Email<'_>, message_id: &str) -> Result<Message, SendError> {
    let mut builder = Message::builder()
        .from(mailbox(email.from, email.from_name)?)
        .to(mailbox(email.to, email.to_name)?)
        .subject(email.subject)
        .message_id(Some(message_id.to_string()));
    if let Some(r) = email.reply_to {
        builder = builder.reply_to(mailbox(r, None)?);
    }
    for (name, value) in email.headers {
        let name = HeaderName::new_from_ascii(name.clone()).map_err(|_| SendError::Refused {
            message: format!("not a header name: {name}"),
            code: None,
            suppress: false,
        })?;
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let built = match (email.text, email.html) {
        (Some(t), Some(h)) => builder.multipart(MultiPart::alternative_plain_html(
            t.to_string(),
            h.to_string(),
        )),
        (None, Some(h)) => builder.singlepart(SinglePart::html(h.to_string())),
        (Some(t), None) => builder.singlepart(SinglePart::plain(t.to_string())),
        (None, None) => builder.singlepart(SinglePart::plain(String::new())),
    };
    built.map_err(|e| SendError::Refused {
        message: format!("cannot build the message: {e}"),
        code: None,
        suppress: false,
    })
}

/// Resolves `host` and returns the first address `allow` accepts; an address it refuses is
/// reported rather than skipped silently.
async fn destination(
    host: &str,
    port: u16,
    allow: &(dyn Fn(IpAddr) -> bool + Sync),
) -> Result<SocketAddr, SendError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| SendError::Unavailable {
            message: format!("cannot resolve {host}"),
            retry_after: None,
        })?
        .collect();
    match addrs.iter().find(|a| allow(a.ip())) {
        Some(a) => Ok(*a),
        None if addrs.is_empty() => Err(SendError::Unavailable {
            message: format!("{host} has no address"),
            retry_after: None,
        }),
        None => Err(SendError::Misconfigured {
            message: format!("{host} resolves to an address this node may not reach"),
        }),
    }
}

/// What an SMTP failure means.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let message = e.to_string();
    let code = e.status().map(|c| c.to_string());
    match code.as_deref() {
        Some("530" | "534" | "535" | "538") => SendError::Misconfigured { message },
        Some(c) if e.is_permanent() => {
            let suppress = message.contains("5.1.1") || matches!(c, "550" | "551" | "553");
            SendError::Refused {
                message,
                code: code.clone(),
                suppress,
            }
        }
        _ if e.is_transient() || e.is_timeout() => SendError::Unavailable {
            message,
            retry_after: None,
        },
        _ => SendError::Unavailable {
            message,
            retry_after: None,
        },
    }
}

/// Sends one e-mail; `allow` is the node's egress rule for the server's address.
pub async fn send(
    config: &SmtpConfig,
    email: &Email<'_>,
    allow: &(dyn Fn(IpAddr) -> bool + Sync),
) -> Result<Receipt, SendError> {
    let domain = email
        .from
        .rsplit('@')
        .next()
        .filter(|d| !d.is_empty())
        .unwrap_or("switchboard.local");
    let message_id = format!("<{}@{domain}>", email.reference);
    let message = message(email, &message_id)?;
    let port = config.port();
    let addr = destination(&config.host, port, allow).await?;
    let tls = |host: &str| {
        TlsParameters::new(host.to_string()).map_err(|e| SendError::Misconfigured {
            message: format!("TLS: {e}"),
        })
    };
    let security = match config.security {
        Security::Starttls => Tls::Required(tls(&config.host)?),
        Security::Tls => Tls::Wrapper(tls(&config.host)?),
        Security::None => Tls::None,
    };
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .port(port)
            .tls(security)
            .timeout(Some(Duration::from_secs(config.timeout_secs.unwrap_or(30))));
    if let (Some(u), Some(p)) = (&config.username, &config.password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let transport = builder.build();
    match transport.send(message).await {
        Ok(response) => Ok(Receipt {
            message_id: Some(message_id),
            provider_status: response.message().collect::<Vec<_>>().join(" "),
            http_status: 0,
        }),
        Err(e) => Err(classify(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A fake SMTP server: answers RCPT TO with `rcpt_reply`, records the DATA it receives.
    async fn fake_smtp(rcpt_reply: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(b"220 fake ESMTP\r\n").await.unwrap();
            let mut data = String::new();
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if in_data {
                    if line == "." {
                        in_data = false;
                        write
                            .write_all(b"250 2.0.0 Ok: queued as ABC123\r\n")
                            .await
                            .unwrap();
                    } else {
                        data.push_str(&line);
                        data.push('\n');
                    }
                    continue;
                }
                let verb = line
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" | "HELO" => b"250-fake\r\n250 8BITMIME\r\n",
                    "MAIL" => b"250 2.1.0 Ok\r\n",
                    "RCPT" => rcpt_reply.as_bytes(),
                    "DATA" => {
                        in_data = true;
                        b"354 End data with <CR><LF>.<CR><LF>\r\n"
                    }
                    "QUIT" => {
                        let _ = write.write_all(b"221 Bye\r\n").await;
                        break;
                    }
                    _ => b"250 Ok\r\n",
                };
                write.write_all(reply).await.unwrap();
            }
            data
        });
        (port, task)
    }

    fn config(port: u16) -> SmtpConfig {
        SmtpConfig {
            host: "localhost".into(),
            port: Some(port),
            security: Security::None,
            username: None,
            password: None,
            timeout_secs: Some(5),
        }
    }

    fn email(h: &[(String, String)]) -> Email<'_> {
        Email {
            to: "anna@example.com",
            to_name: Some("Anna"),
            from: "no-reply@shop.example",
            from_name: Some("Shop"),
            reply_to: None,
            subject: "Your order",
            text: Some("Hello Anna"),
            html: Some("<p>Hello Anna</p>"),
            headers: h,
            reference: "dlv_01",
        }
    }

    fn loopback(ip: IpAddr) -> bool {
        ip.is_loopback()
    }

    #[tokio::test]
    async fn sends_multipart_alternative_with_our_message_id_and_unsubscribe_headers() {
        let (port, server) = fake_smtp("250 2.1.5 Ok\r\n").await;
        let headers = vec![
            (
                "List-Unsubscribe".to_string(),
                "<https://sb.example/u/abc>".to_string(),
            ),
            (
                "List-Unsubscribe-Post".to_string(),
                "List-Unsubscribe=One-Click".to_string(),
            ),
        ];
        let r = send(&config(port), &email(&headers), &loopback)
            .await
            .unwrap();
        assert_eq!(r.message_id.as_deref(), Some("<dlv_01@shop.example>"));
        assert!(
            r.provider_status.contains("queued as ABC123"),
            "{}",
            r.provider_status
        );
        let data = server.await.unwrap();
        for needle in [
            "Message-ID: <dlv_01@shop.example>",
            "List-Unsubscribe: <https://sb.example/u/abc>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Content-Type: multipart/alternative",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: text/html; charset=utf-8",
            "From: Shop <no-reply@shop.example>",
            "To: Anna <anna@example.com>",
        ] {
            assert!(data.contains(needle), "missing {needle} in\n{data}");
        }
        // Text before HTML, as multipart/alternative wants (the last part is preferred).
        assert!(data.find("text/plain").unwrap() < data.find("text/html").unwrap());
    }

    #[tokio::test]
    async fn replies_4xx_are_retried_5xx_failed_and_unknown_users_suppressed() {
        let (port, _server) = fake_smtp("450 4.2.1 Mailbox busy\r\n").await;
        let e = send(&config(port), &email(&[]), &loopback)
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e:?}");

        let (port, _server) = fake_smtp("550 5.1.1 User unknown\r\n").await;
        let e = send(&config(port), &email(&[]), &loopback)
            .await
            .unwrap_err();
        assert!(
            matches!(e, SendError::Refused { suppress: true, .. }),
            "{e:?}"
        );

        let (port, _server) = fake_smtp("554 5.7.1 Message rejected as spam\r\n").await;
        let e = send(&config(port), &email(&[]), &loopback)
            .await
            .unwrap_err();
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
        assert!(!e.fails_over());
    }

    #[tokio::test]
    async fn a_host_the_egress_rule_refuses_is_never_connected() {
        let (port, server) = fake_smtp("250 Ok\r\n").await;
        let e = send(&config(port), &email(&[]), &|_| false)
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Misconfigured { .. }), "{e:?}");
        assert!(e.to_string().contains("may not reach"), "{e}");
        // Nobody connected: the fake server is still waiting.
        assert!(!server.is_finished());
        server.abort();
    }

    #[tokio::test]
    async fn a_dead_server_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = send(&config(port), &email(&[]), &loopback)
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
    }

    #[test]
    fn ports_follow_the_security() {
        let mut c = config(1);
        c.port = None;
        assert_eq!(c.port(), 25);
        c.security = Security::Starttls;
        assert_eq!(c.port(), 587);
        c.security = Security::Tls;
        assert_eq!(c.port(), 465);
    }
}

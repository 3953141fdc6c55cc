//! Signature checks of provider callbacks (each provider's documented scheme). The callers,
//! the `/hooks/<provider>` handlers, pass the raw request: bytes as received, the URL the
//! provider called, the headers.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Twilio's `X-Twilio-Signature` of a form-encoded callback: base64 of HMAC-SHA1 with the
/// auth token over the full URL followed by every POST parameter's name and value, sorted by
/// name (and by value for repeated names).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    B64.encode(mac.finalize().into_bytes())
}

/// The URL without a port and with its port (the scheme's default when it names none): Twilio's
/// SDK validators accept both, because the provider signs the URL as its side saw it, which
/// may differ from ours in just that. The `url` crate hides default ports, so the strings
/// are built by hand.
fn port_spellings(url: &url::Url) -> Option<[String; 2]> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    let (scheme, path) = (url.scheme(), url.path());
    Some([
        format!("{scheme}://{host}{path}{query}"),
        format!("{scheme}://{host}:{port}{path}{query}"),
    ])
}

/// Checks `signature` against `url` and `params` (both port spellings of the URL accepted),
/// in constant time.
pub fn twilio_verify(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let mut urls = vec![url.to_string()];
    if let Some(spellings) = url::Url::parse(url).ok().as_ref().and_then(port_spellings) {
        urls.extend(spellings);
    }
    urls.iter().any(|u| {
        constant_time_eq(
            twilio_signature(auth_token, u, params).as_bytes(),
            signature.as_bytes(),
        )
    })
}

/// Twilio's check of a JSON callback: the URL carries `bodySHA256=<hex of the body's
/// SHA-256>`, which must match, and the signature covers the URL alone.
pub fn twilio_verify_json(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let Some((_, claimed)) = parsed.query_pairs().find(|(k, _)| k == "bodySHA256") else {
        return false;
    };
    let actual = hex::encode(Sha256::digest(body));
    constant_time_eq(actual.as_bytes(), claimed.as_bytes())
        && twilio_verify(auth_token, url, &[], signature)
}

/// Standard Webhooks / Svix (Resend's callbacks): `v1,` + base64 of HMAC-SHA256 with the
/// secret (`whsec_` + base64) over `id.timestamp.body`.
pub fn svix_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = B64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// Why a Standard Webhooks callback was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SvixError {
    /// The timestamp is further than the tolerance from now (replay protection).
    #[error("timestamp outside the tolerance")]
    Stale,
    /// No listed signature matches.
    #[error("no matching signature")]
    Mismatch,
}

/// Checks a `svix-signature` header (space-separated `v1,<b64>` entries; any may match) and
/// that `timestamp` is within `tolerance_secs` of `now`.
pub fn svix_verify(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SvixError> {
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SvixError::Stale);
    }
    let expected = svix_signature(secret, id, timestamp, body).ok_or(SvixError::Mismatch)?;
    header
        .split(' ')
        .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()))
        .then_some(())
        .ok_or(SvixError::Mismatch)
}

/// SendGrid's event webhook: an ECDSA P-256 / SHA-256 signature (base64 DER) over the
/// timestamp header followed by the raw body, checked with the verification key as shown in
/// SendGrid's settings (base64 DER SubjectPublicKeyInfo).
pub fn sendgrid_verify(
    public_key_b64: &str,
    timestamp: &str,
    body: &[u8],
    signature_b64: &str,
) -> bool {
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;
    let Ok(key_der) = B64.decode(public_key_b64.trim()) else {
        return false;
    };
    let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(&key_der) else {
        return false;
    };
    let Ok(sig_der) = B64.decode(signature_b64.trim()) else {
        return false;
    };
    let Ok(sig) = p256::ecdsa::DerSignature::try_from(sig_der.as_slice()) else {
        return false;
    };
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    key.verify(&message, &sig).is_ok()
}

/// Meta's `X-Hub-Signature-256` (WhatsApp Cloud API webhooks): `sha256=` + hex of
/// HMAC-SHA256 with the app secret over the raw body.
pub fn meta_verify(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    constant_time_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes())
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    //! Vectors from the providers' own SDK tests (twilio-python, sendgrid-python,
    //! svix-webhooks), recomputed in `shared/research/notify-anchors.md`.
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn twilio_params() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn twilio_form_signature_matches_the_sdk_vectors() {
        let p = twilio_params();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            twilio_signature("12345", url, &p),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &p
            ),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        assert_eq!(
            twilio_signature("12345", "http://mycompany.com:80/myapp.php?foo=1&bar=2", &p),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        );
        assert_eq!(
            twilio_signature(
                "12345",
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                &p
            ),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        );
        // Both port spellings verify; another token, URL or parameter does not.
        assert!(twilio_verify(
            "12345",
            url,
            &p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(twilio_verify(
            "12345",
            url,
            &p,
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        assert!(twilio_verify(
            "12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!twilio_verify(
            "12346",
            url,
            &p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!twilio_verify(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let mut changed = p.clone();
        changed[2].1 = "1235".into();
        assert!(!twilio_verify(
            "12345",
            url,
            &changed,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn twilio_repeated_parameters_sort_by_value() {
        let p = params(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &p),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn twilio_json_callbacks_sign_the_url_with_the_body_hash() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = hex::encode(Sha256::digest(body));
        assert!(
            hash.starts_with("0a1ff763") && hash.ends_with("6620"),
            "{hash}"
        );
        let url = format!("https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={hash}");
        assert!(twilio_verify_json(
            "12345",
            &url,
            body,
            "a9nBmqA0ju/hNViExpshrM61xv4="
        ));
        // A changed body no longer matches its hash.
        assert!(!twilio_verify_json(
            "12345",
            &url,
            br#"{"property": "value"}"#,
            "a9nBmqA0ju/hNViExpshrM61xv4="
        ));
    }

    #[test]
    fn svix_signature_matches_the_sdk_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(svix_signature(secret, id, ts, body).as_deref(), Some(sig));
        // Any entry of a multi-signature header may match.
        let header = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {sig}");
        assert_eq!(
            svix_verify(secret, id, ts, body, &header, ts + 10, 300),
            Ok(())
        );
        assert_eq!(
            svix_verify(secret, id, ts, body, &header, ts + 301, 300),
            Err(SvixError::Stale)
        );
        assert_eq!(
            svix_verify(secret, id, ts, b"{}", &header, ts, 300),
            Err(SvixError::Mismatch)
        );
        assert_eq!(
            svix_verify(secret, "msg_other", ts, body, sig, ts, 300),
            Err(SvixError::Mismatch)
        );
    }

    const SG_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SG_SIG: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const SG_TS: &str = "1600112502";

    /// The `dropped` event of sendgrid-python's test, compact JSON with sorted keys, + CRLF.
    fn sg_payload() -> Vec<u8> {
        let event = serde_json::json!([{
            "email": "hello@world.com",
            "event": "dropped",
            "reason": "Bounced Address",
            "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
            "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
            "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
            "timestamp": 1600112492,
        }]);
        let mut body = serde_json::to_vec(&event).unwrap();
        body.extend_from_slice(b"\r\n");
        body
    }

    #[test]
    fn sendgrid_signature_matches_the_sdk_vector() {
        let body = sg_payload();
        assert!(sendgrid_verify(SG_KEY, SG_TS, &body, SG_SIG));
        assert!(!sendgrid_verify(SG_KEY, "1600112503", &body, SG_SIG));
        assert!(!sendgrid_verify(
            SG_KEY,
            SG_TS,
            &body[..body.len() - 2],
            SG_SIG
        ));
        let mut other_sig = B64.decode(SG_SIG).unwrap();
        let last = other_sig.len() - 1;
        other_sig[last] ^= 1;
        assert!(!sendgrid_verify(
            SG_KEY,
            SG_TS,
            &body,
            &B64.encode(other_sig)
        ));
        assert!(!sendgrid_verify("not base64!", SG_TS, &body, SG_SIG));
    }

    const META_VECTOR: &str = "0bf7374433906636bed1653bc7c64affb42fa5da9a39e251ab95c2e3a9c06923";

    #[test]
    fn meta_signature_is_hmac_sha256_of_the_raw_body() {
        // Computed independently: printf '%s' '{"object":"whatsapp_business_account"}' |
        //   openssl dgst -sha256 -hmac app-secret
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"app-secret").unwrap();
        mac.update(body);
        let hex_sig = hex::encode(mac.finalize().into_bytes());
        assert_eq!(hex_sig, META_VECTOR);
        assert!(meta_verify(
            "app-secret",
            body,
            &format!("sha256={META_VECTOR}")
        ));
        assert!(meta_verify(
            "app-secret",
            body,
            &format!("sha256={}", META_VECTOR.to_uppercase())
        ));
        assert!(!meta_verify(
            "other",
            body,
            &format!("sha256={META_VECTOR}")
        ));
        assert!(!meta_verify(
            "app-secret",
            b"{}",
            &format!("sha256={META_VECTOR}")
        ));
        assert!(!meta_verify("app-secret", body, META_VECTOR));
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
